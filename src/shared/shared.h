/* The shared layer: with --redis, what every node must agree on lives in Redis: the rate limits
 * (GCRA in one Lua script), the response cache's second level (with a lock so one node fills)
 * and the jobs' idempotency keys. Without --redis nothing here runs and the local tables stay
 * the path. It plugs into the layers below through their hooks (mw.h, cache.h); it does not
 * know rooms (src/hub) nor HTTP beyond parking a request while Redis answers. */
#ifndef ROOST_SHARED_H
#define ROOST_SHARED_H

#include "http/http.h"
#include "redis/redis.h"

typedef struct shared shared_t;

/* What to do when Redis gives no answer within --redis-wait-ms (or is down). */
typedef enum { SHARED_FAIL_OPEN, SHARED_FAIL_CLOSED } shared_fail_t;
/* Which feature failed, for the counter's label. */
typedef enum { SHARED_RATELIMIT, SHARED_CACHE, SHARED_IDEM, SHARED_N } shared_what_t;

/* ---- one Redis call a parked request waits for, with a bound (call.c) ----
 * The caller embeds it in a struct of its own (malloc'd: a late reply may come after the
 * request ended) and sets parse, done and release. */
typedef struct shared_call shared_call_t;
struct shared_call {
    /* On the client's thread: copies what it needs of the reply into the caller's struct;
     * 0, or -EPROTO for an unexpected reply. */
    int (*parse)(shared_call_t *c, const redisReply *reply);
    /* On the request's loop, from a resume, once: err 0 (parse ran and said 0), -ETIMEDOUT
     * (no reply within the bound), -ENOTCONN (Redis down) or -EPROTO. */
    void (*done)(shared_call_t *c, roost_req_t *req, int err);
    /* Frees the caller's struct once neither the client nor the loop holds it. */
    void (*release)(shared_call_t *c);
    /* ---- the call's own ---- */
    shared_t *sh;
    roost_req_t *req;
    uv_timer_t timer;
    _Atomic int refs;    /* the reply's and the timer's (closed by the resume) */
    _Atomic int decided; /* the reply or the timer gave the verdict */
    int err;             /* the verdict, written before the resume is posted */
};

/* On the request's loop: parks req and sends the script; c->done runs once, on the loop.
 * Returns 0, or < 0 when nothing was parked (no client, no memory). */
int shared_call_eval(shared_t *sh, shared_call_t *c, roost_req_t *req, const redis_script_t *s,
                     int numkeys, int argc, const char **argv, const size_t *argvlen);

/* The replies of the layer's scripts are {kind, ...}: the kind (0 or more), or -EPROTO. */
int shared_reply_kind(const redisReply *reply);
/* A malloc'd, NUL-terminated copy of reply->element[i], a string: 0, -EPROTO or -ENOMEM. */
int shared_reply_string(const redisReply *reply, size_t i, char **out, size_t *len);

/* ---- the server's part (call.c) ---- */
struct shared {
    roost_server_t *srv;
    redis_t *redis;
    shared_fail_t fail;
    uint64_t wait_ms;    /* --redis-wait-ms: the bound on one call a request waits for */
    const char *node_id; /* redis_node_id */
    roost_counter_t *c_fail[SHARED_N][2]; /* [what][closed] */
    roost_counter_t *c_late;              /* replies that came after their bound */
    redis_script_t *scripts[8];           /* loaded at every connection (shared_script_add) */
    int nscripts;
};
/* The server's, or NULL without --redis. */
shared_t *shared_of(roost_server_t *srv);
/* Registers a script the layer uses: it is loaded (SCRIPT LOAD) each time Redis comes up, so
 * the first EVALSHA after a restart does not pay NOSCRIPT's second round trip (and commands
 * sent behind it are not overtaken by its retry). Main thread, at start. */
int shared_script_add(shared_t *sh, redis_script_t *s);
/* Counts a failure of what and says whether to answer 503 (--redis-fail closed). */
int shared_failed(shared_t *sh, shared_what_t what);

/* ---- the three users ---- */
int shared_ratelimit_start(shared_t *sh); /* ratelimit.c */
int shared_cache_start(shared_t *sh);     /* cache.c */

/* idem.c: the jobs' idempotency keys. With --redis and a job store of this node's own (not
 * PostgreSQL, whose unique index is shared already), a key is claimed in Redis before submit. */
typedef enum {
    SHARED_IDEM_CLAIMED, /* this request owns the key: submit, then shared_idem_store */
    SHARED_IDEM_REPLAY,  /* answer: the first request's answer (answer, len) */
    SHARED_IDEM_BUSY,    /* the first request is still running on some node: 409 */
    SHARED_IDEM_OPEN,    /* Redis did not answer (--redis-fail open): submit locally */
    SHARED_IDEM_CLOSED,  /* Redis did not answer (--redis-fail closed): 503 */
} shared_idem_t;
typedef void (*shared_idem_fn)(roost_req_t *req, shared_idem_t verdict, const char *answer,
                               size_t len, void *arg);
int shared_idem_start(shared_t *sh); /* idem.c: its scripts */
/* 1 when keys go through Redis on this server. */
int shared_idem_on(roost_server_t *srv);
/* On the loop: parks req until the verdict, given to fn on the loop. 0 or < 0 (not parked). */
int shared_idem_claim(roost_server_t *srv, roost_req_t *req, const char *key, shared_idem_fn fn,
                      void *arg);
/* Any thread: stores the first answer (answer NULL: the submit failed, free the key), then
 * calls done(arg) once Redis has it (or failed), on the client's thread or, when nothing could
 * be sent, at once; done may be NULL (no wait). The client should get its answer from done, so
 * that a repeat on another node finds it. */
void shared_idem_store(roost_server_t *srv, const char *key, const char *answer, size_t len,
                       void (*done)(void *arg), void *arg);

#endif
