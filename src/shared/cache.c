/* The response cache's second level, shared by every node: an answer stored in Redis (SET PX the
 * route's TTL, the bytes of the stored answer) is looked up when the local store misses; a miss
 * takes a short lock (SET NX PX) so one node fills while the others poll for its answer, up to
 * the lock's time, then fill themselves. Eviction drops the path's keys in Redis and tells every
 * node (PUBLISH) to drop it locally. The local store stays the first level (mw/cache.c). Not the
 * rate limits (ratelimit.c) nor the jobs' keys (idem.c). */
#include "shared/shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mw/cache.h"

#define LOCK_MS       3000 /* a fill may take this long before another node fills too */
#define POLL_MS       10   /* how often a node waiting for another's fill looks again */
#define EVICT_CHANNEL "roost:cache:evict"

/* KEYS: value, lock. ARGV: node id, lock ms. {1, bytes, pttl}: a hit; {2}: the caller holds
 * the lock and fills; {0}: another node fills. */
static redis_script_t lookup_script = {
    .source = "local v = redis.call('GET', KEYS[1])\n"
              "if v then return {1, v, redis.call('PTTL', KEYS[1])} end\n"
              "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end\n"
              "return {0}\n",
};

/* KEYS: value, lock, the path's set of keys. ARGV: bytes ('' : none), ttl ms, locked, node. */
static redis_script_t store_script = {
    .source = "if ARGV[1] ~= '' then\n"
              "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
              "  redis.call('SADD', KEYS[3], KEYS[1])\n"
              "  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[2]) then\n"
              "    redis.call('PEXPIRE', KEYS[3], ARGV[2])\n"
              "  end\n"
              "end\n"
              "if ARGV[3] == '1' and redis.call('GET', KEYS[2]) == ARGV[4] then\n"
              "  redis.call('DEL', KEYS[2])\n"
              "end\n"
              "return 1\n",
};

/* KEYS: the path's set. ARGV: channel, path. Drops every key of the path, then tells the
 * nodes. */
static const redis_script_t evict_script = {
    .source = "local ks = redis.call('SMEMBERS', KEYS[1])\n"
              "for i = 1, #ks do redis.call('DEL', ks[i]) end\n"
              "redis.call('DEL', KEYS[1])\n"
              "redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
              "return #ks\n",
};

/* ---- keys and stored bytes ---- */

/* "roost:cache:" kind ":" then the key (or the path). Returns a malloc'd string, its length. */
static char *redis_key(char kind, const char *k, size_t len, size_t *out_len)
{
    char *s = malloc(len + 16);
    if (!s)
        return NULL;
    memcpy(s, "roost:cache:", 12);
    s[12] = kind;
    s[13] = ':';
    memcpy(s + 14, k, len);
    *out_len = len + 14;
    return s;
}

/* "RC1 status type_len etag_len headers_len body_len\n" then the four parts. */
static char *encode(const rbuf_t *b, size_t *out_len)
{
    const cache_resp_t *cr = cache_resp(b);
    char head[96];
    int h = snprintf(head, sizeof head, "RC1 %d %u %u %u %zu\n", cr->status, cr->type_len,
                     cr->etag_len, cr->headers_len, cr->body_len);
    size_t n = (size_t)h + cr->type_len + cr->etag_len + cr->headers_len + cr->body_len;
    char *s = malloc(n);
    if (!s)
        return NULL;
    char *p = s;
    memcpy(p, head, (size_t)h);
    p += h;
    memcpy(p, cache_resp_type(b), cr->type_len);
    p += cr->type_len;
    memcpy(p, cache_resp_etag(b), cr->etag_len);
    p += cr->etag_len;
    memcpy(p, cache_resp_headers(b), cr->headers_len);
    p += cr->headers_len;
    memcpy(p, cache_resp_body(b), cr->body_len);
    *out_len = n;
    return s;
}

static rbuf_t *decode(const char *s, size_t len)
{
    const char *nl = memchr(s, '\n', len < 96 ? len : 96);
    int status;
    unsigned tl, el, hl;
    size_t bl;
    if (!nl || sscanf(s, "RC1 %d %u %u %u %zu", &status, &tl, &el, &hl, &bl) != 5)
        return NULL;
    const char *p = nl + 1;
    if ((size_t)(s + len - p) != (size_t)tl + el + hl + bl || tl > 1024 || el > 64 || hl > 4096)
        return NULL;
    char type[1025], etag[65], headers[4097];
    memcpy(type, p, tl);
    type[tl] = 0;
    memcpy(etag, p + tl, el);
    etag[el] = 0;
    memcpy(headers, p + tl + el, hl);
    headers[hl] = 0;
    return cache_resp_new(status, tl ? type : NULL, etag, headers, p + tl + el + hl, bl);
}

/* ---- a lookup: one request, one or more polls ---- */

typedef struct {
    shared_t *sh;
    cache_remote_q_t *q;
    cache_remote_done_fn done;
    uint64_t deadline_ms;
} lookup_t; /* the request's arena: lives while it waits */

typedef struct {
    shared_call_t call; /* first */
    lookup_t *lk;
    int kind; /* the reply's: 0 wait, 1 hit, 2 fill with the lock */
    char *bytes;
    size_t len;
    long long pttl;
} poll_t;

static int poll_parse(shared_call_t *c, const redisReply *reply)
{
    poll_t *p = (poll_t *)c;
    p->kind = shared_reply_kind(reply);
    if (p->kind != 1)
        return p->kind < 0 ? p->kind : 0;
    if (reply->elements != 3)
        return -EPROTO;
    p->pttl = reply->element[2]->type == REDIS_REPLY_INTEGER ? reply->element[2]->integer : 0;
    return shared_reply_string(reply, 1, &p->bytes, &p->len);
}

static void poll_release(shared_call_t *c)
{
    poll_t *p = (poll_t *)c;
    free(p->bytes);
    free(p);
}

static int poll_send(lookup_t *lk, roost_req_t *req);

static void fill(lookup_t *lk, roost_req_t *req, int locked)
{
    lk->q->result = CACHE_REMOTE_FILL;
    lk->q->locked = locked;
    lk->done(req, lk->q);
}

static void poll_again(roost_req_t *req, void *arg)
{
    lookup_t *lk = arg;
    if (poll_send(lk, req) < 0)
        fill(lk, req, 0);
}

static void poll_done(shared_call_t *c, roost_req_t *req, int err)
{
    poll_t *p = (poll_t *)c;
    lookup_t *lk = p->lk;
    cache_remote_q_t *q = lk->q;
    if (err) {
        q->result = CACHE_REMOTE_FAIL;
        q->err = err;
        q->fail_closed = shared_failed(lk->sh, SHARED_CACHE);
        lk->done(req, q);
        return;
    }
    if (p->kind == 1) {
        rbuf_t *resp = decode(p->bytes, p->len);
        if (!resp) {
            fill(lk, req, 0); /* not ours to read (another version?): fill, and overwrite it */
            return;
        }
        q->result = CACHE_REMOTE_HIT;
        q->resp = resp;
        q->ttl_left_ns = (uint64_t)(p->pttl > 0 ? p->pttl : 1) * 1000000ull;
        lk->done(req, q);
        return;
    }
    if (p->kind == 2 || time_now_ms() >= lk->deadline_ms || roost_req_gone(req)) {
        fill(lk, req, p->kind == 2);
        return;
    }
    roost_defer(req, POLL_MS, poll_again, lk); /* another node fills: look again soon */
}

static int poll_send(lookup_t *lk, roost_req_t *req)
{
    const cache_key_t *k = lk->q->key;
    poll_t *p = calloc(1, sizeof *p);
    size_t vlen, llen;
    char *vkey = redis_key('v', k->key, k->key_len, &vlen);
    char *lkey = redis_key('l', k->key, k->key_len, &llen);
    int rc = -ENOMEM;
    if (p && vkey && lkey) {
        p->call.parse = poll_parse;
        p->call.done = poll_done;
        p->call.release = poll_release;
        p->lk = lk;
        char ms[16];
        snprintf(ms, sizeof ms, "%d", LOCK_MS);
        const char *argv[] = {vkey, lkey, lk->sh->node_id, ms};
        size_t lens[] = {vlen, llen, strlen(lk->sh->node_id), strlen(ms)};
        rc = shared_call_eval(lk->sh, &p->call, req, &lookup_script, 2, 4, argv, lens);
    }
    if (rc < 0)
        free(p);
    free(vkey);
    free(lkey);
    return rc;
}

static int cache_lookup_remote(void *ud, roost_req_t *req, cache_remote_q_t *q,
                               cache_remote_done_fn done)
{
    lookup_t *lk = roost_req_alloc(req, sizeof *lk);
    if (!lk)
        return -ENOMEM;
    *lk = (lookup_t){.sh = ud, .q = q, .done = done, .deadline_ms = time_now_ms() + LOCK_MS};
    return poll_send(lk, req);
}

/* ---- storing and evicting: sent, not waited for ---- */

static void cache_store_remote(void *ud, const cache_key_t *k, const rbuf_t *resp, uint64_t ttl_ns,
                               int locked)
{
    shared_t *sh = ud;
    if (!resp && !locked)
        return;
    size_t blen = 0, vlen, llen, plen;
    char *bytes = resp ? encode(resp, &blen) : NULL;
    char *vkey = redis_key('v', k->key, k->key_len, &vlen);
    char *lkey = redis_key('l', k->key, k->key_len, &llen);
    char *pkey = redis_key('p', k->key, k->path_len, &plen);
    if (vkey && lkey && pkey && (bytes || !resp)) {
        char ms[24];
        unsigned long long ttl_ms = ttl_ns / 1000000ull;
        snprintf(ms, sizeof ms, "%llu", ttl_ms ? ttl_ms : 1);
        const char *argv[] = {vkey,       lkey, pkey, bytes ? bytes : "", ms, locked ? "1" : "0",
                              sh->node_id};
        size_t lens[] = {vlen, llen, plen, blen, strlen(ms), 1, strlen(sh->node_id)};
        if (redis_eval(sh->redis, &store_script, 3, 7, argv, lens, NULL, NULL) < 0)
            shared_failed(sh, SHARED_CACHE);
    }
    free(bytes);
    free(vkey);
    free(lkey);
    free(pkey);
}

static void cache_evict_remote(void *ud, const char *path, size_t len)
{
    shared_t *sh = ud;
    size_t plen;
    char *pkey = redis_key('p', path, len, &plen);
    if (!pkey)
        return;
    /* EVAL, not EVALSHA: a NOSCRIPT's retry would run after the commands pipelined behind it,
     * and a lookup right after an eviction must not find the evicted answer. Evictions are
     * rare; the script's text is small. */
    const char *argv[] = {"EVAL", evict_script.source, "1", pkey, EVICT_CHANNEL, path};
    size_t lens[] = {4, strlen(evict_script.source), 1, plen, strlen(EVICT_CHANNEL), len};
    if (redis_command(sh->redis, NULL, NULL, 6, argv, lens) < 0)
        shared_failed(sh, SHARED_CACHE);
    free(pkey);
}

/* On the client's thread: another node (or this one) evicted a path. */
static void on_evict(redis_t *r, const char *channel, const char *data, size_t len, void *ud)
{
    (void)r;
    (void)channel;
    shared_t *sh = ud;
    cache_evict_local(sh->srv, data, len);
}

int shared_cache_start(shared_t *sh)
{
    if (shared_script_add(sh, &lookup_script) < 0 || shared_script_add(sh, &store_script) < 0)
        return -ENOSPC;
    cache_remote_t ops = {
        .lookup = cache_lookup_remote,
        .store = cache_store_remote,
        .evict = cache_evict_remote,
        .ud = sh,
    };
    if (redis_on_message(sh->redis, EVICT_CHANNEL, on_evict, sh) < 0 ||
        redis_subscribe(sh->redis, EVICT_CHANNEL) < 0)
        return -ENOMEM;
    return cache_set_remote(sh->srv, &ops);
}
