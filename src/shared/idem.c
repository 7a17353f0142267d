/* The jobs' idempotency keys shared by every node: before a node stores a task with an
 * Idempotency-Key in its own store, it claims the key in Redis (SET NX PX, value "P:" and its
 * node id); when the task is stored the value becomes its first answer ("A:" and the JSON) for
 * a day, so a repeat on any node answers the same (Stripe's rule), and a repeat while the first
 * is still running gets 409. With --database postgresql:// the store's unique index is shared
 * already and this is skipped. Not the submit itself (the app's route and src/jobs). */
#include "shared/shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENDING_MS 60000    /* a claim whose node died mid-submit is free again after this */
#define ANSWER_MS  86400000 /* a first answer is replayed for a day */

/* KEYS: the key. ARGV: pending value, pending ms. {1}: claimed; {0, value}: known. */
static redis_script_t claim_script = {
    .source = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end\n"
              "return {0, redis.call('GET', KEYS[1]) or ''}\n",
};

/* KEYS: the key. ARGV: the answer value ('': the submit failed), ms, our pending value. */
static redis_script_t store_script = {
    .source = "if ARGV[1] == '' then\n"
              "  if redis.call('GET', KEYS[1]) == ARGV[3] then redis.call('DEL', KEYS[1]) end\n"
              "  return 1\n"
              "end\n"
              "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
              "return 1\n",
};

typedef struct {
    shared_call_t call; /* first */
    shared_idem_fn fn;
    void *arg;
    int claimed;
    char *value; /* the known value */
    size_t len;
} idem_call_t;

static int idem_parse(shared_call_t *c, const redisReply *reply)
{
    idem_call_t *ic = (idem_call_t *)c;
    int kind = shared_reply_kind(reply);
    if (kind < 0)
        return kind;
    ic->claimed = kind == 1;
    return ic->claimed ? 0 : shared_reply_string(reply, 1, &ic->value, &ic->len);
}

static void idem_done(shared_call_t *c, roost_req_t *req, int err)
{
    idem_call_t *ic = (idem_call_t *)c;
    if (err) {
        int closed = shared_failed(c->sh, SHARED_IDEM);
        ic->fn(req, closed ? SHARED_IDEM_CLOSED : SHARED_IDEM_OPEN, NULL, 0, ic->arg);
    } else if (ic->claimed) {
        ic->fn(req, SHARED_IDEM_CLAIMED, NULL, 0, ic->arg);
    } else if (ic->len > 2 && memcmp(ic->value, "A:", 2) == 0) {
        ic->fn(req, SHARED_IDEM_REPLAY, ic->value + 2, ic->len - 2, ic->arg);
    } else {
        ic->fn(req, SHARED_IDEM_BUSY, NULL, 0, ic->arg); /* pending, or gone meanwhile */
    }
}

static void idem_release(shared_call_t *c)
{
    idem_call_t *ic = (idem_call_t *)c;
    free(ic->value);
    free(ic);
}

int shared_idem_on(roost_server_t *srv)
{
    const char *db = roost_server_config(srv)->data.database;
    return shared_of(srv) && !(db && strncmp(db, "postgres", 8) == 0);
}

/* "roost:idem:" then the key; "P:" then the node id. */
static char *key_of(const char *key, size_t *len)
{
    size_t n = strlen(key);
    char *k = malloc(n + 12);
    if (k) {
        memcpy(k, "roost:idem:", 11);
        memcpy(k + 11, key, n + 1);
        *len = n + 11;
    }
    return k;
}

int shared_idem_claim(roost_server_t *srv, roost_req_t *req, const char *key, shared_idem_fn fn,
                      void *arg)
{
    shared_t *sh = shared_of(srv);
    idem_call_t *ic = sh ? calloc(1, sizeof *ic) : NULL;
    size_t klen = 0;
    char *k = ic ? key_of(key, &klen) : NULL;
    char pending[160], ms[16];
    int rc = -ENOMEM;
    if (k) {
        snprintf(pending, sizeof pending, "P:%s", sh->node_id);
        snprintf(ms, sizeof ms, "%d", PENDING_MS);
        ic->call.parse = idem_parse;
        ic->call.done = idem_done;
        ic->call.release = idem_release;
        ic->fn = fn;
        ic->arg = arg;
        const char *argv[] = {k, pending, ms};
        size_t lens[] = {klen, strlen(pending), strlen(ms)};
        rc = shared_call_eval(sh, &ic->call, req, &claim_script, 1, 3, argv, lens);
    }
    if (rc < 0)
        free(ic);
    free(k);
    return rc;
}

typedef struct {
    void (*done)(void *arg);
    void *arg;
} stored_t;

static void on_stored(redis_t *r, const redisReply *reply, int err, void *ud)
{
    (void)r;
    stored_t *st = ud;
    if (err || reply->type == REDIS_REPLY_ERROR)
        log_error("shared: the first answer of an Idempotency-Key was not stored in Redis");
    st->done(st->arg);
    free(st);
}

void shared_idem_store(roost_server_t *srv, const char *key, const char *answer, size_t len,
                       void (*done)(void *arg), void *arg)
{
    shared_t *sh = shared_of(srv);
    size_t klen = 0;
    char *k = sh ? key_of(key, &klen) : NULL;
    char *value = answer ? malloc(len + 2) : NULL;
    stored_t *st = done ? malloc(sizeof *st) : NULL;
    if (!k || (answer && !value) || (done && !st)) {
        free(k);
        free(value);
        free(st);
        if (done)
            done(arg);
        return;
    }
    if (st)
        *st = (stored_t){done, arg};
    if (value) {
        memcpy(value, "A:", 2);
        memcpy(value + 2, answer, len);
    }
    char pending[160], ms[16];
    snprintf(pending, sizeof pending, "P:%s", sh->node_id);
    snprintf(ms, sizeof ms, "%d", ANSWER_MS);
    const char *argv[] = {k, value ? value : "", ms, pending};
    size_t lens[] = {klen, value ? len + 2 : 0, strlen(ms), strlen(pending)};
    if (redis_eval(sh->redis, &store_script, 1, 4, argv, lens, st ? on_stored : NULL, st) < 0) {
        shared_failed(sh, SHARED_IDEM);
        free(st);
        if (done)
            done(arg);
    }
    free(k);
    free(value);
}

int shared_idem_start(shared_t *sh)
{
    if (shared_script_add(sh, &claim_script) < 0 || shared_script_add(sh, &store_script) < 0)
        return -ENOSPC;
    return 0;
}
