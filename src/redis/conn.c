/* One connection to Redis (the client has two: commands, pub/sub): connect, AUTH and SELECT
 * before anything else, the connect timeout, and after a failure or a loss another attempt
 * after a capped exponential backoff with jitter. What it carries is client.c's and
 * pubsub.c's. On the client's thread. */
#include "redis/redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static void set_up(redis_t *r)
{
    int up = r->cmd.state == CONN_UP && r->sub.state == CONN_UP;
    if (up == atomic_load(&r->up))
        return;
    atomic_store(&r->up, up);
    roost_counter_add(r->c_up, up ? 1 : -1);
    log_info("redis: %s (%s:%d)", up ? "up" : "down", r->url.host, r->url.port);
    pthread_mutex_lock(&r->listen_lock);
    for (int i = 0, n = r->listeners_off ? 0 : atomic_load(&r->nstate); i < n; i++)
        r->on_state[i].fn(r, up, r->on_state[i].ud);
    pthread_mutex_unlock(&r->listen_lock);
}

static void on_backoff(uv_timer_t *t)
{
    redis_conn_t *c = t->data;
    if (c->state == CONN_DOWN) {
        redis_conn_start(c);
    } else if (c->state != CONN_UP) { /* the connect timeout */
        log_warn("redis: no connection within %.1fs", c->r->opts.connect_timeout_s);
        redis_conn_drop(c);
    }
}

/* The connection ended (hiredis frees its context): try again after the backoff. */
static void conn_lost(redis_conn_t *c)
{
    redis_t *r = c->r;
    c->ac = NULL;
    c->state = CONN_DOWN;
    set_up(r);
    if (r->stopping)
        return;
    double delay = r->opts.backoff_min_s;
    for (int i = 0; i < c->attempts && delay < r->opts.backoff_max_s; i++)
        delay *= 2;
    if (delay > r->opts.backoff_max_s)
        delay = r->opts.backoff_max_s;
    /* up to a quarter less, so that many nodes do not reconnect in step */
    delay *= 1.0 - (double)(rand() % 250) / 1000.0;
    c->attempts++;
    uv_timer_start(&c->timer, on_backoff, (uint64_t)(delay * 1000), 0);
}

void redis_conn_drop(redis_conn_t *c)
{
    redisAsyncContext *ac = c->ac;
    if (!ac)
        return;
    ac->data = NULL; /* its callbacks, run by the free, know it is no longer ours */
    if (!c->is_sub)  /* hiredis calls on_reply for each sent command, with r unknown */
        redis_cmds_cut(c->r, c->r->stopping ? -ECANCELED : -ECONNRESET);
    redisAsyncFree(ac);
    conn_lost(c);
}

static void conn_ready(redis_conn_t *c)
{
    redis_t *r = c->r;
    c->state = CONN_UP;
    c->attempts = 0;
    if (!c->is_sub)
        r->nloaded = 0; /* a new connection, maybe a new (empty) server */
    uv_timer_stop(&c->timer);
    if (c->is_sub)
        redis_sub_ready(r);
    else
        redis_cmds_flush(r);
    set_up(r);
}

static void on_handshake(redisAsyncContext *ac, void *replyp, void *privdata)
{
    redis_conn_t *c = ac->data;
    redisReply *reply = replyp;
    if (!c || !reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis: %s", reply->str);
        redis_conn_drop(c);
        return;
    }
    if (--c->handshake_left == 0)
        conn_ready(c);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    redis_conn_t *c = ac->data;
    if (!c)
        return;
    if (status != REDIS_OK) {
        if (c->attempts == 0)
            log_warn("redis: cannot connect to %s:%d: %s", c->r->url.host, c->r->url.port,
                     ac->errstr);
        conn_lost(c); /* hiredis frees the context after this callback */
        return;
    }
    redis_t *r = c->r;
    c->state = CONN_HANDSHAKE;
    c->handshake_left = 0;
    if (r->url.password) {
        const char *argv[3] = {"AUTH", r->url.user ? r->url.user : r->url.password,
                               r->url.password};
        redisAsyncCommandArgv(ac, on_handshake, c, r->url.user ? 3 : 2, argv, NULL);
        c->handshake_left++;
    }
    if (r->url.db && !c->is_sub) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->url.db);
        const char *argv[2] = {"SELECT", db};
        redisAsyncCommandArgv(ac, on_handshake, c, 2, argv, NULL);
        c->handshake_left++;
    }
    if (!c->handshake_left)
        conn_ready(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_conn_t *c = ac->data;
    if (!c)
        return;
    if (c->state == CONN_UP)
        log_warn("redis: connection lost: %s", ac->errstr[0] ? ac->errstr : "closed");
    conn_lost(c);
}

void redis_conn_start(redis_conn_t *c)
{
    redis_t *r = c->r;
    if (c->attempts > 0)
        roost_counter_add(r->c_reconnects, 1);
    redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
    if (!ac || ac->err || redis_uv_attach(ac, &r->loop) < 0) {
        if (ac)
            redisAsyncFree(ac);
        conn_lost(c);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = CONN_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    uv_timer_start(&c->timer, on_backoff, (uint64_t)(r->opts.connect_timeout_s * 1000), 0);
}
