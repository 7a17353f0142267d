/* The shared layer's server part (roost_shared_start: the --redis-fail mode, the counters, the
 * three users started) and the one mechanism they share: a request parked on one Redis call
 * with a bound, so a slow or absent Redis costs a request --redis-wait-ms at most and never
 * blocks a loop. Not the scripts (ratelimit.c, cache.c, idem.c) nor the client (src/redis). */
#include "shared/shared.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a parked request's call ----
 * The first of the reply (client's thread) and the timer (loop) decides, through one atomic
 * flag, and resumes the request straight from where it is: one hop to the loop per call. The
 * timer is stopped and closed by the resume, so the loop (and the call) outlive it. */

static void call_unref(shared_call_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        c->release(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    call_unref(h->data);
}

static void on_resume(roost_req_t *req, void *arg)
{
    shared_call_t *c = arg;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed); /* the timer's reference */
    c->done(c, req, c->err);
}

/* Any thread: 1 when this verdict is the one the request gets. */
static int decide(shared_call_t *c, int err)
{
    if (atomic_exchange(&c->decided, 1))
        return 0;
    c->err = err;
    roost_req_resume(c->req, on_resume, c);
    return 1;
}

static void on_timer(uv_timer_t *t)
{
    decide(t->data, -ETIMEDOUT);
}

/* On the client's thread: parse (into the caller's struct, which only a reply's verdict
 * reads), then decide. */
static void on_reply(redis_t *r, const redisReply *reply, int err, void *ud)
{
    (void)r;
    shared_call_t *c = ud;
    int rerr;
    if (err)
        rerr = err == -ETIMEDOUT ? -ETIMEDOUT : -ENOTCONN;
    else if (reply->type == REDIS_REPLY_ERROR)
        rerr = -EPROTO;
    else
        rerr = c->parse(c, reply);
    if (rerr == -EPROTO)
        log_error("shared: Redis answered %.*s", reply ? (int)reply->len : 0,
                  reply && reply->str ? reply->str : "an unexpected reply");
    if (!decide(c, rerr))
        roost_counter_add(c->sh->c_late, 1);
    call_unref(c); /* the reply's reference */
}

int shared_call_eval(shared_t *sh, shared_call_t *c, roost_req_t *req, const redis_script_t *s,
                     int numkeys, int argc, const char **argv, const size_t *argvlen)
{
    c->sh = sh;
    c->req = req;
    atomic_init(&c->decided, 0);
    atomic_init(&c->refs, 2); /* the reply's and the timer's */
    if (roost_req_wait(req) < 0)
        return -EINVAL;
    uv_timer_init(&req->loop->uv, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_timer, sh->wait_ms, 0);
    /* Down: no command is queued to wait for a reconnection; the verdict is given now. */
    int rc = redis_up(sh->redis)
                 ? redis_eval(sh->redis, s, numkeys, argc, argv, argvlen, on_reply, c)
                 : -ENOTCONN;
    if (rc < 0) {
        atomic_fetch_sub(&c->refs, 1); /* no reply will come; the timer's keeps it */
        decide(c, rc == -ENOMEM ? -ENOMEM : -ENOTCONN);
    }
    return 0;
}

int shared_reply_kind(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[0]->integer < 0 ||
        reply->element[0]->integer > INT_MAX)
        return -EPROTO;
    return (int)reply->element[0]->integer;
}

int shared_reply_string(const redisReply *reply, size_t i, char **out, size_t *len)
{
    if (reply->elements <= i || reply->element[i]->type != REDIS_REPLY_STRING)
        return -EPROTO;
    const redisReply *e = reply->element[i];
    *out = malloc(e->len + 1);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, e->str, e->len);
    (*out)[e->len] = 0;
    *len = e->len;
    return 0;
}

/* ---- the server's part ---- */

static void server_free(void *p)
{
    free(p);
}

static const core_slot_ops_t slot_ops = {.name = "shared", .server_free = server_free};
static atomic_int slot_cache;

shared_t *shared_of(roost_server_t *srv)
{
    return core_server_ctx(srv, core_slot_of(&slot_cache, &slot_ops));
}

int shared_failed(shared_t *sh, shared_what_t what)
{
    int closed = sh->fail == SHARED_FAIL_CLOSED;
    roost_counter_add(sh->c_fail[what][closed], 1);
    return closed;
}

int shared_script_add(shared_t *sh, redis_script_t *s)
{
    if (sh->nscripts == (int)ARRAY_LEN(sh->scripts))
        return -ENOSPC;
    redis_script_init(s);
    sh->scripts[sh->nscripts++] = s;
    return 0;
}

/* On the client's thread: Redis is up (maybe a new one, without our scripts). */
static void on_state(redis_t *r, int up, void *ud)
{
    shared_t *sh = ud;
    for (int i = 0; up && i < sh->nscripts; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", sh->scripts[i]->source};
        redis_command(r, NULL, NULL, 3, argv, NULL);
    }
}

static const char *const what_names[SHARED_N] = {"ratelimit", "cache", "idempotency"};

int roost_shared_start(roost_server_t *srv)
{
    redis_t *r = redis_of(srv);
    const roost_config_t *cfg = roost_server_config(srv);
    if (!r || shared_of(srv))
        return 0;
    const char *fail = cfg->redis.fail ? cfg->redis.fail : "open";
    if (strcmp(fail, "open") != 0 && strcmp(fail, "closed") != 0) {
        log_error("--redis-fail %s: expected open or closed", fail);
        return -EINVAL;
    }
    shared_t *sh = calloc(1, sizeof *sh);
    if (!sh)
        return -ENOMEM;
    sh->srv = srv;
    sh->redis = r;
    sh->fail = strcmp(fail, "closed") == 0 ? SHARED_FAIL_CLOSED : SHARED_FAIL_OPEN;
    sh->wait_ms = cfg->redis.wait_ms > 0 ? (uint64_t)cfg->redis.wait_ms : 50;
    sh->node_id = redis_node_id(srv);
    for (int w = 0; w < SHARED_N; w++)
        for (int closed = 0; closed < 2; closed++) {
            char labels[96];
            snprintf(labels, sizeof labels, "what=\"%s\",mode=\"%s\"", what_names[w],
                     closed ? "closed" : "open");
            sh->c_fail[w][closed] =
                roost_counter(srv, "roost_redis_shared_failures_total", labels,
                              "Shared checks Redis did not answer within --redis-wait-ms (or "
                              "while down), by feature and --redis-fail mode");
        }
    sh->c_late = roost_counter(srv, "roost_redis_shared_late_total", NULL,
                               "Redis replies that came after their request stopped waiting");
    core_server_ctx_set(srv, core_slot_of(&slot_cache, &slot_ops), sh);
    if (shared_ratelimit_start(sh) < 0 || shared_cache_start(sh) < 0 || shared_idem_start(sh) < 0 ||
        redis_on_state(r, on_state, sh) < 0)
        return -ENOMEM;
    return 0;
}
