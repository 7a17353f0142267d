/* Rate limits as middleware: on_request finds the client's key for each policy whose glob
 * matches the path, runs GCRA on the server's table (rl_table.c) and answers 429 when a policy
 * refuses; on_headers writes the X-RateLimit-* and IETF RateLimit fields
 * (draft-ietf-httpapi-ratelimit-headers-11 §3-4) on every answer a policy covered. Not the
 * arithmetic (gcra.c) nor the table. */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "mw/mw.h"

/* The server's part: the one table, and every middleware made, to free them with it. */
typedef struct rl_mw rl_mw_t;
typedef struct {
    mw_rl_table_t *table;
    rl_mw_t **mws;
    int nmws;
    unsigned next_policy;   /* ids of policies in the table */
    int named_default;      /* policies named "default" so far (the next gets "default-N") */
    mw_rl_remote_fn remote; /* with --redis: the shared table (src/shared), else NULL */
    void *remote_ud;
    roost_counter_t *c_unchecked; /* the shared table gave no answer: let through (open) */
} rl_server_t;

#define ITEM_MAX (MW_RL_NAME_MAX + 64) /* one policy's item in either IETF field */
#define HEAD_MAX (ITEM_MAX + MW_RL_NAME_MAX + 80)

enum { RES_ALLOWED, RES_LIMITED, RES_SHADOW, RES_N };
static const char *const result_names[RES_N] = {"allowed", "limited", "shadow_limited"};

typedef struct {
    mw_rl_policy_t p;
    /* The glob, when it is a plain path or a prefix then one '*' (the common cases), is
     * compared without fnmatch. */
    enum { GLOB_ANY, GLOB_EXACT, GLOB_PREFIX, GLOB_FNMATCH } glob_kind;
    size_t glob_len;     /* GLOB_EXACT: the path's length; GLOB_PREFIX: the prefix's */
    char item[ITEM_MAX]; /* its RateLimit-Policy item: "name";q=N;w=W[;roost-burst=B] */
    size_t item_len;
    /* The constant part of the fields when this policy is the only one on an answer (the
     * common case), made once: "RateLimit-Policy: item\r\nX-RateLimit-Limit: N\r\nRateLimit:
     * "name";r=". What follows it has names of fixed length (copied inline, no call). */
    char head[HEAD_MAX];
    size_t head_len;
    /* The whole block for a client whose bucket was full (remaining burst - 1, t and reset
     * one interval): the answer of every client well within its limit, copied as it is. */
    char full[HEAD_MAX + 100];
    size_t full_len;
    long interval_s; /* the interval in whole seconds, rounded up: t and reset when full */
    unsigned id;
    roost_counter_t *c[RES_N];
} rl_policy_t;

struct rl_mw {
    roost_middleware_t mw;
    rl_server_t *rs;
    int n;
    rl_policy_t pol[];
};

/* Per request: what each policy found, for on_headers. */
typedef struct {
    uint8_t covered; /* matched and not shadow: its fields go on the answer */
    uint8_t limited;
    uint8_t full; /* allowed with a full bucket: the policy's pre-made block */
    long remaining;
    long window_s, reset_s, retry_s;
} rl_seen_t;

/* The per-request context: the query to the shared table (with --redis), then one rl_seen_t
 * per policy. */
typedef struct {
    mw_rl_query_t q; /* first: done gets &q */
    rl_mw_t *m;
    rl_seen_t seen[];
} rl_ctx_t;

static void *server_new(roost_server_t *srv)
{
    rl_server_t *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    rs->table = mw_rl_table_new((size_t)srv->cfg.mw.rate_limit_max_keys);
    if (!rs->table) {
        free(rs);
        return NULL;
    }
    return rs;
}

static void server_free(void *ctx)
{
    rl_server_t *rs = ctx;
    for (int i = 0; i < rs->nmws; i++) {
        for (int j = 0; j < rs->mws[i]->n; j++)
            mw_rl_policy_clear(&rs->mws[i]->pol[j].p);
        free(rs->mws[i]);
    }
    free(rs->mws);
    mw_rl_table_free(rs->table);
    free(rs);
}

static CORE_SERVER_CTX_FN(rl_server_t, rl_server, .name = "ratelimit", .server_new = server_new,
                          .server_free = server_free)

/* ---- the key of a request ---- */

/* The value of "Authorization: Bearer X", or of X-API-Key (as auth.c reads keys). */
static roost_str_t api_key(const roost_req_t *req)
{
    roost_str_t v = roost_req_header(req, "Authorization");
    if (v.ptr && v.len > 7 && strncasecmp(v.ptr, "Bearer ", 7) == 0)
        return (roost_str_t){v.ptr + 7, v.len - 7};
    return roost_req_header(req, "X-API-Key");
}

/* The client's key for a policy, without copying it: the header's value, or the client's
 * address (the connection's, asked of the kernel once per connection). *kind tells which, so
 * that a header whose value is an address never shares a bucket with that address. */
static roost_str_t request_key(const roost_req_t *req, const mw_rl_policy_t *p, unsigned *kind)
{
    roost_str_t v = {NULL, 0};
    if (p->key == MW_KEY_HEADER)
        v = roost_req_header(req, p->header);
    else if (p->key == MW_KEY_API_KEY)
        v = api_key(req);
    if (v.ptr && v.len) {
        *kind = p->key == MW_KEY_HEADER ? 1 : 2;
        return v;
    }
    *kind = 0;
    const char *addr = req->sess ? http_session_peer(req->sess) : NULL;
    return addr ? (roost_str_t){addr, strlen(addr)} : (roost_str_t){"", 0};
}

/* ---- the phases ---- */

/* memcmp for the few bytes of a path, inline: the call was a third of the match's cost. Words
 * of 8 (or 4) bytes, the last one overlapping the one before. */
static inline int same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    uint32_t u, v;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return 0;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        if (u != v)
            return 0;
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return u == v;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static int glob_match(const rl_policy_t *pol, roost_str_t path)
{
    switch (pol->glob_kind) {
    case GLOB_ANY:
        return 1;
    case GLOB_EXACT:
        return path.len == pol->glob_len && same_bytes(path.ptr, pol->p.glob, path.len);
    case GLOB_PREFIX:
        return path.len >= pol->glob_len && memcmp(path.ptr, pol->p.glob, pol->glob_len) == 0;
    default: /* the clean path is NUL-ended (an arena copy) */
        return fnmatch(pol->p.glob, path.ptr, 0) == 0;
    }
}

static void glob_classify(rl_policy_t *pol)
{
    const char *g = pol->p.glob;
    if (!g) {
        pol->glob_kind = GLOB_ANY;
        return;
    }
    size_t n = strlen(g), special = strcspn(g, "*?[\\");
    if (special == n) {
        pol->glob_kind = GLOB_EXACT;
        pol->glob_len = n;
    } else if (special == n - 1 && g[n - 1] == '*') {
        pol->glob_kind = GLOB_PREFIX;
        pol->glob_len = n - 1;
    } else {
        pol->glob_kind = GLOB_FNMATCH;
    }
}

/* One policy's answer: counted, kept for on_headers; 1 when it refuses the request. */
static inline __attribute__((always_inline)) int
rl_apply(roost_req_t *req, rl_policy_t *pol, rl_seen_t *seen, const mw_gcra_result_t *r)
{
    int res = r->allowed ? RES_ALLOWED : pol->p.shadow ? RES_SHADOW : RES_LIMITED;
    roost_counter_add(pol->c[res], 1);
    if (pol->p.shadow)
        return 0;
    int64_t t = pol->p.gcra.interval_ns;
    seen->covered = 1;
    seen->remaining = r->remaining;
    if (r->allowed && r->remaining == pol->p.gcra.burst - 1 && r->window_ns == t &&
        r->reset_ns == t) {
        seen->full = 1;
        seen->window_s = seen->reset_s = pol->interval_s;
        return 0;
    }
    seen->limited = !r->allowed;
    seen->window_s = mw_ceil_s(r->window_ns);
    seen->reset_s = mw_ceil_s(r->reset_ns);
    seen->retry_s = mw_ceil_s(r->retry_ns);
    if (r->allowed)
        return 0;
    roost_respond_error(req, 429, "Too Many Requests");
    return 1; /* later policies are not charged for a refused request */
}

/* On the loop, from the shared table's resume: the same answers as the local path. */
static void rl_remote_done(roost_req_t *req, mw_rl_query_t *q)
{
    rl_ctx_t *ctx = (rl_ctx_t *)q;
    rl_mw_t *m = ctx->m;
    if (q->err) {
        if (q->fail_closed) {
            roost_res_header(req, "Retry-After", "1");
            roost_respond_error(req, 503,
                                "Rate limits are unavailable (the shared store, Redis, "
                                "did not answer; --redis-fail closed)");
            return;
        }
        roost_counter_add(m->rs->c_unchecked, 1);
        roost_req_continue(req);
        return;
    }
    for (int i = 0; i < q->checked; i++) {
        mw_rl_ask_t *a = &q->asks[i];
        if (rl_apply(req, &m->pol[a->pol], &ctx->seen[a->pol], &a->r))
            return;
    }
    roost_req_continue(req);
}

/* With --redis: one policy's question to the shared table, its key stored as text: a kind
 * byte then the value (so an address never shares a header's bucket). */
static int ask_add(roost_req_t *req, mw_rl_ask_t *a, const rl_policy_t *pol, int i, roost_str_t v,
                   unsigned kind)
{
    char *k = roost_req_alloc(req, v.len + 1);
    if (!k)
        return -ENOMEM;
    k[0] = "ahk"[kind];
    memcpy(k + 1, v.ptr, v.len);
    *a = (mw_rl_ask_t){.p = &pol->p, .key = k, .key_len = v.len + 1, .pol = i};
    return 0;
}

static void rl_request(roost_req_t *req, void *c, void *ud)
{
    rl_mw_t *m = ud;
    rl_ctx_t *ctx = c;
    rl_seen_t *seen = ctx->seen;
    roost_str_t path = roost_req_path(req);
    if (!path.ptr)
        return; /* a malformed path is answered 400 by dispatch */
    ctx->m = m;
    /* With --redis, every matching policy goes in one question to the shared table, which
     * parks the request until it answers (rl_remote_done). */
    mw_rl_ask_t *asks = m->rs->remote ? roost_req_alloc(req, (size_t)m->n * sizeof *asks) : NULL;
    if (m->rs->remote && !asks) {
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    int n = 0;
    int64_t now = (int64_t)req->start_ns; /* when it arrived: one clock read less */
    for (int i = 0; i < m->n; i++) {
        rl_policy_t *pol = &m->pol[i];
        if (!glob_match(pol, path))
            continue;
        unsigned kind;
        roost_str_t key = request_key(req, &pol->p, &kind);
        if (asks) {
            if (ask_add(req, &asks[n++], pol, i, key, kind) < 0) {
                roost_respond_error(req, 503, "Out of memory");
                return;
            }
            continue;
        }
        mw_gcra_result_t r;
        mw_rl_table_check(m->rs->table, pol->id << 2 | kind, key.ptr, key.len, &pol->p.gcra, now,
                          &r);
        if (rl_apply(req, pol, &seen[i], &r))
            return;
    }
    if (n == 0)
        return;
    ctx->q = (mw_rl_query_t){.asks = asks, .n = n};
    if (m->rs->remote(m->rs->remote_ud, req, &ctx->q, rl_remote_done) < 0)
        roost_counter_add(m->rs->c_unchecked, 1); /* not parked: let it through */
}

/* Field values are written by hand: with snprintf, formatting was the largest part of the
 * rate limit's cost in a /json profile (vfprintf and friends, ~15% of the server's cycles). */
static char *put_long(char *p, long v)
{
    return str_put_uint(p, v < 0 ? 0 : (uint64_t)v);
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define ITEMS_MAX (ROOST_LIST_MAX * ITEM_MAX)

/* One policy's fields at p: its constant part, then three numbers between names of fixed
 * length (remaining written once, copied); the end. p has room for head_len + 160 bytes. */
static char *fields_one(char *p, const rl_policy_t *pol, const rl_seen_t *s, int retry)
{
    char *r = p = put(p, pol->head, pol->head_len);
    p = put_long(p, s->remaining);
    size_t rlen = (size_t)(p - r);
    p = put_long(put(p, ";t=", 3), s->window_s);
    p = put(p, "\r\nX-RateLimit-Remaining: ", 25);
    /* remaining < burst <= 1,000,000: at most 7 digits, so one 8-byte copy, inline (there is
     * room for the spare byte, which the next put overwrites). */
    if (rlen <= 8)
        memcpy(p, r, 8);
    else
        memcpy(p, r, rlen);
    p += rlen;
    p = put_long(put(p, "\r\nX-RateLimit-Reset: ", 21), s->reset_s);
    if (retry)
        p = put_long(put(p, "\r\nRetry-After: ", 15), s->retry_s);
    return put(p, "\r\n", 2);
}

/* One policy on the answer, straight into the header block, in one reserve: the pre-made
 * block of a full bucket (callgrind: ~40 instructions where writing the numbers took ~200),
 * else the fields written. */
static void rl_headers_one(roost_req_t *req, const rl_policy_t *pol, const rl_seen_t *s)
{
    sbuf_t *h = &req->res_headers;
    size_t need = pol->head_len + 160;
    if (h->len + need + 1 > h->cap && sbuf_reserve(h, need) < 0) /* the call only to grow */
        return;
    if (s->full) {
        memcpy(h->p + h->len, pol->full, pol->full_len);
        h->len += pol->full_len;
        return;
    }
    char *p = fields_one(h->p + h->len, pol, s, s->limited && roost_res_status(req) == 429);
    h->len = (size_t)(p - h->p);
}

/* Writes the fields as header lines in one piece onto the response's header block: every byte
 * is ours (names fixed, numbers, policy names checked at start-up), so the per-field copy and
 * CR/LF scan of roost_res_header is skipped; it was most of this middleware's cost (callgrind:
 * ~380 instructions a field). */
static void rl_headers(roost_req_t *req, void *ctx, void *ud)
{
    rl_mw_t *m = ud;
    rl_seen_t *seen = ((rl_ctx_t *)ctx)->seen;
    if (m->n == 1) {
        if (seen[0].covered)
            rl_headers_one(req, &m->pol[0], &seen[0]);
        return;
    }
    int tight = -1; /* the policy closest to refusing: the X-RateLimit-* fields are its */
    char out[2 * ITEMS_MAX + 256], state[ITEMS_MAX];
    char *p = out, *sp = state;
    p = put(p, "RateLimit-Policy: ", 18);
    for (int i = 0; i < m->n; i++) {
        if (!seen[i].covered)
            continue;
        const rl_policy_t *pol = &m->pol[i];
        if (tight < 0 || seen[i].remaining < seen[tight].remaining ||
            (seen[i].remaining == seen[tight].remaining && seen[i].window_s > seen[tight].window_s))
            tight = i;
        /* Lists of items, ", " between them (RFC 9651 §3.1). */
        if (sp != state) {
            p = put(p, ", ", 2);
            sp = put(sp, ", ", 2);
        }
        p = put(p, pol->item, pol->item_len);
        sp = put(sp, "\"", 1);
        sp = put(sp, pol->p.name, strlen(pol->p.name));
        sp = put_long(put(sp, "\";r=", 4), seen[i].remaining);
        sp = put_long(put(sp, ";t=", 3), seen[i].window_s);
    }
    if (tight < 0)
        return;
    const rl_seen_t *s = &seen[tight];
    p = put(p, "\r\nRateLimit: ", 13);
    p = put(p, state, (size_t)(sp - state));
    p = put_long(put(p, "\r\nX-RateLimit-Limit: ", 21), m->pol[tight].p.count);
    p = put_long(put(p, "\r\nX-RateLimit-Remaining: ", 25), s->remaining);
    p = put_long(put(p, "\r\nX-RateLimit-Reset: ", 21), s->reset_s);
    if (roost_res_status(req) == 429 && s->limited)
        p = put_long(put(p, "\r\nRetry-After: ", 15), s->retry_s);
    p = put(p, "\r\n", 2);
    sbuf_append(&req->res_headers, out, (size_t)(p - out));
}

/* ---- building ---- */

static void rl_metrics(void *ud, sbuf_t *out)
{
    rl_server_t *rs = ud;
    long live, expired;
    mw_rl_table_evictions(rs->table, &live, &expired);
    sbuf_printf(out,
                "# HELP roost_rate_limit_keys Clients the rate limits remember "
                "(--rate-limit-max-keys at most)\n"
                "# TYPE roost_rate_limit_keys gauge\nroost_rate_limit_keys %zu\n"
                "# HELP roost_rate_limit_evicted_total Clients forgotten to make room; "
                "state=\"live\": still inside their limit's memory (they get a fresh burst)\n"
                "# TYPE roost_rate_limit_evicted_total counter\n"
                "roost_rate_limit_evicted_total{state=\"live\"} %ld\n"
                "roost_rate_limit_evicted_total{state=\"expired\"} %ld\n",
                mw_rl_table_keys(rs->table), live, expired);
}

static rl_mw_t *rl_new(roost_server_t *srv, const char *const *specs, int n)
{
    rl_server_t *rs = rl_server(srv);
    if (!rs)
        return NULL;
    if (rs->nmws == 0) {
        core_service_t svc = {.name = "ratelimit", .metrics = rl_metrics, .ud = rs};
        if (core_service_add(srv, &svc) < 0)
            return NULL;
    }
    rl_mw_t *m = calloc(1, sizeof *m + (size_t)n * sizeof m->pol[0]);
    rl_mw_t **mws = realloc(rs->mws, (size_t)(rs->nmws + 1) * sizeof *mws);
    if (!m || !mws) {
        free(m);
        return NULL;
    }
    rs->mws = mws;
    rs->mws[rs->nmws++] = m; /* freed with the server from here on, also on failure */
    m->rs = rs;
    for (int i = 0; i < n; i++) {
        rl_policy_t *pol = &m->pol[i];
        char err[256];
        int rc = mw_rl_policy_parse(specs[i], &pol->p, err, sizeof err);
        if (rc < 0) {
            roost_log("error", "rate limit '%s': %s", specs[i], rc == -EINVAL ? err : "no memory");
            return NULL;
        }
        m->n = i + 1;
        if (!pol->p.name[0]) {
            if (rs->named_default++)
                snprintf(pol->p.name, sizeof pol->p.name, "default-%d", rs->named_default);
            else
                snprintf(pol->p.name, sizeof pol->p.name, "default");
        }
        pol->id = rs->next_policy++;
        glob_classify(pol);
        char item[ITEM_MAX];
        int w = snprintf(item, sizeof item, "\"%s\";q=%ld;w=%ld", pol->p.name, pol->p.count,
                         pol->p.window_s);
        if (pol->p.gcra.burst != pol->p.count)
            w += snprintf(item + w, sizeof item - (size_t)w, ";roost-burst=%ld",
                          (long)pol->p.gcra.burst);
        memcpy(pol->item, item, (size_t)w + 1);
        pol->item_len = (size_t)w;
        char head[sizeof pol->head];
        w = snprintf(head, sizeof head,
                     "RateLimit-Policy: %s\r\nX-RateLimit-Limit: %ld\r\nRateLimit: \"%s\";r=", item,
                     pol->p.count, pol->p.name);
        memcpy(pol->head, head, (size_t)w + 1);
        pol->head_len = (size_t)w;
        pol->interval_s = mw_ceil_s(pol->p.gcra.interval_ns);
        rl_seen_t full = {.remaining = (long)pol->p.gcra.burst - 1,
                          .window_s = pol->interval_s,
                          .reset_s = pol->interval_s};
        char block[sizeof pol->head + 160];
        pol->full_len = (size_t)(fields_one(block, pol, &full, 0) - block);
        memcpy(pol->full, block, pol->full_len);
        for (int r = 0; r < RES_N; r++) {
            char labels[128];
            snprintf(labels, sizeof labels, "policy=\"%s\",result=\"%s\"", pol->p.name,
                     result_names[r]);
            pol->c[r] = roost_counter(srv, "roost_rate_limit_total", labels,
                                      "Requests a rate-limit policy checked, by result");
            if (!pol->c[r])
                return NULL;
        }
    }
    m->mw = (roost_middleware_t){
        .name = "rate-limit",
        .ctx_size = sizeof(rl_ctx_t) + (size_t)n * sizeof(rl_seen_t),
        .on_request = rl_request,
        .on_headers = rl_headers,
        .ud = m,
    };
    return m;
}

const roost_middleware_t *roost_rate_limit(roost_server_t *srv, const char *spec)
{
    rl_mw_t *m = rl_new(srv, &spec, 1);
    return m ? &m->mw : NULL;
}

int mw_rl_set_remote(roost_server_t *srv, mw_rl_remote_fn fn, void *ud)
{
    rl_server_t *rs = rl_server(srv);
    if (!rs)
        return -ENOMEM;
    rs->c_unchecked = roost_counter(srv, "roost_rate_limit_unchecked_total", NULL,
                                    "Requests let through unchecked: the shared rate-limit store "
                                    "(Redis) gave no answer in time (--redis-fail open)");
    rs->remote = fn;
    rs->remote_ud = ud;
    return 0;
}

int roost_rate_limit_init(roost_server_t *srv)
{
    const roost_strlist_t *l = &srv->cfg.mw.rate_limit;
    if (l->n == 0)
        return 0;
    rl_mw_t *m = rl_new(srv, l->v, l->n);
    if (!m)
        return -EINVAL;
    return roost_use(srv, &m->mw);
}
