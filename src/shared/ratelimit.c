/* Rate limits shared by every node: the GCRA of gcra.c as one Lua script that Redis runs
 * atomically over all the policies a request matches, with Redis's clock (TIME), so nodes
 * with skewed clocks still agree. One stored TAT per policy and client, in microseconds, that
 * expires (PX) once it is in the past: an absent key reads as a new client, as in rl_table.c.
 * The answers and headers are the local path's (mw/ratelimit.c applies them). Not the local
 * table, and not what --redis-fail does (ratelimit.c in mw, from the err it is given). */
#include "shared/shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mw/mw.h"

/* KEYS: one per asked policy. ARGV: interval_us, burst, shadow for each. Returns one
 * {allowed, remaining, retry_us, window_us, reset_us} per policy checked; it stops after a
 * refusal by a policy that is not shadow (the later ones are not charged). */
static redis_script_t gcra_script = {
    .source =
        "local t = redis.call('TIME')\n"
        "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
        "local out = {}\n"
        "for i = 1, #KEYS do\n"
        "  local T = tonumber(ARGV[3*i-2])\n"
        "  local burst = tonumber(ARGV[3*i-1])\n"
        "  local shadow = ARGV[3*i] == '1'\n"
        "  local stored = tonumber(redis.call('GET', KEYS[i]) or '0') or 0\n"
        "  local tat = math.max(stored, now)\n"
        "  local new_tat = tat + T\n"
        "  local allow_at = new_tat - burst * T\n"
        "  if now < allow_at then\n"
        "    out[#out+1] = {0, 0, allow_at - now, allow_at - now, tat - now}\n"
        "    if not shadow then return out end\n"
        "  else\n"
        "    local ms = math.max(1, math.ceil((new_tat - now) / 1000))\n"
        "    redis.call('SET', KEYS[i], string.format('%d', new_tat), 'PX', string.format('%d', "
        "ms))\n"
        "    local rem = math.floor((now - allow_at) / T)\n"
        "    out[#out+1] = {1, rem, 0, allow_at + (rem + 1) * T - now, new_tat - now}\n"
        "  end\n"
        "end\n"
        "return out\n",
};

#define ASKS_MAX 16 /* policies one request may match in one middleware (more: not checked) */

typedef struct {
    shared_call_t call; /* first */
    mw_rl_query_t *q;   /* the request's: written on the loop only, in done */
    mw_rl_done_fn q_done;
    int n, checked;
    mw_gcra_result_t r[ASKS_MAX]; /* the reply's, written on the client's thread */
} rl_call_t;

static int64_t int_of(const redisReply *e)
{
    return e && e->type == REDIS_REPLY_INTEGER ? (int64_t)e->integer : 0;
}

static int rl_parse(shared_call_t *c, const redisReply *reply)
{
    rl_call_t *rc = (rl_call_t *)c;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 || reply->elements > (size_t)rc->n)
        return -EPROTO;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 5)
            return -EPROTO;
        rc->r[i] = (mw_gcra_result_t){
            .allowed = int_of(e->element[0]) != 0,
            .remaining = (long)int_of(e->element[1]),
            .retry_ns = int_of(e->element[2]) * 1000,
            .window_ns = int_of(e->element[3]) * 1000,
            .reset_ns = int_of(e->element[4]) * 1000,
        };
    }
    rc->checked = (int)reply->elements;
    return 0;
}

static void rl_done(shared_call_t *c, roost_req_t *req, int err)
{
    rl_call_t *rc = (rl_call_t *)c;
    mw_rl_query_t *q = rc->q;
    if (err) {
        q->err = err;
        q->fail_closed = shared_failed(c->sh, SHARED_RATELIMIT);
    } else {
        q->checked = rc->checked;
        for (int i = 0; i < rc->checked; i++)
            q->asks[i].r = rc->r[i];
    }
    rc->q_done(req, q);
}

static void rl_release(shared_call_t *c)
{
    free(c);
}

static int rl_remote(void *ud, roost_req_t *req, mw_rl_query_t *q, mw_rl_done_fn done)
{
    shared_t *sh = ud;
    int n = q->n < ASKS_MAX ? q->n : ASKS_MAX;
    rl_call_t *rc = calloc(1, sizeof *rc);
    const char **argv = roost_req_alloc(req, (size_t)n * 4 * sizeof *argv);
    size_t *lens = roost_req_alloc(req, (size_t)n * 4 * sizeof *lens);
    char *nums = roost_req_alloc(req, (size_t)n * 48);
    if (!rc || !argv || !lens || !nums) {
        free(rc);
        return -ENOMEM;
    }
    q->n = n;
    for (int i = 0; i < n; i++) {
        const mw_rl_ask_t *a = &q->asks[i];
        /* roost:rl:NAME:KEY (the key is bytes: a kind byte then the value). */
        size_t nlen = strlen(a->p->name), klen = 9 + nlen + 1 + a->key_len;
        char *k = roost_req_alloc(req, klen);
        if (!k) {
            free(rc);
            return -ENOMEM;
        }
        memcpy(k, "roost:rl:", 9);
        memcpy(k + 9, a->p->name, nlen);
        k[9 + nlen] = ':';
        memcpy(k + 10 + nlen, a->key, a->key_len);
        argv[i] = k;
        lens[i] = klen;
        int64_t us = a->p->gcra.interval_ns / 1000;
        char *num = nums + i * 48;
        int w = snprintf(num, 48, "%lld", (long long)(us > 0 ? us : 1));
        int w2 = snprintf(num + w + 1, 47 - (size_t)w, "%lld", (long long)a->p->gcra.burst);
        argv[n + 3 * i] = num;
        lens[n + 3 * i] = (size_t)w;
        argv[n + 3 * i + 1] = num + w + 1;
        lens[n + 3 * i + 1] = (size_t)w2;
        argv[n + 3 * i + 2] = a->p->shadow ? "1" : "0";
        lens[n + 3 * i + 2] = 1;
    }
    rc->call.parse = rl_parse;
    rc->call.done = rl_done;
    rc->call.release = rl_release;
    rc->q = q;
    rc->q_done = done;
    rc->n = n;
    int err = shared_call_eval(sh, &rc->call, req, &gcra_script, n, 4 * n, argv, lens);
    if (err < 0)
        free(rc);
    return err;
}

int shared_ratelimit_start(shared_t *sh)
{
    if (shared_script_add(sh, &gcra_script) < 0)
        return -ENOSPC;
    return mw_rl_set_remote(sh->srv, rl_remote, sh);
}
