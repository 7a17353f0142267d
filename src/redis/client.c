/* The client's thread, its command queue (held while down, bounded, timed out; scripts loaded
 * ahead of their first EVALSHA) and the inbox through which other threads hand it commands and
 * subscriptions. Connecting and reconnecting are conn.c's, subscriptions pubsub.c's, the
 * server's own client server.c's. */
#include "redis/redis.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TICK_MS 50

typedef enum { OP_CMD, OP_SUB, OP_UNSUB, OP_STOP } op_kind_t;

struct redis_op {
    redis_op_t *next;
    op_kind_t kind;
    redis_cmd_t *cmd; /* OP_CMD */
    char channel[];   /* OP_SUB, OP_UNSUB */
};

struct redis_cmd {
    redis_cmd_t *prev, *next; /* the queue, while waiting or sent */
    redis_reply_fn fn;
    void *ud;
    uint64_t deadline_ms;
    int sent;     /* handed to hiredis, which calls on_reply once */
    int finished; /* fn was called (a timeout): the late reply is dropped */
    const redis_script_t *script;
    int argc;
    const char **argv;
    size_t *lens;
};

/* ---- commands ---- */

static void queue_unlink(redis_t *r, redis_cmd_t *k)
{
    DLIST_UNLINK(r->queue_head, r->queue_tail, k, prev, next);
}

/* Calls fn once; the command is freed unless hiredis still holds it. */
static void cmd_finish(redis_t *r, redis_cmd_t *k, const redisReply *reply, int err)
{
    if (!k->finished) {
        k->finished = 1;
        atomic_fetch_sub(&r->inflight, 1);
        if (err)
            roost_counter_add(r->c_failed, 1);
        if (k->fn)
            k->fn(r, reply, err, k->ud);
    }
}

static void cmd_send(redis_t *r, redis_cmd_t *k);

static int is_noscript(const redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_ERROR && !strncmp(reply->str, "NOSCRIPT", 8);
}

static void on_reply(redisAsyncContext *ac, void *replyp, void *privdata)
{
    redis_cmd_t *k = privdata;
    redis_t *r = ac->data ? ((redis_conn_t *)ac->data)->r : NULL;
    const redisReply *reply = replyp;
    if (!r) { /* freed by us (conn_drop): the queue no longer holds it */
        free(k);
        return;
    }
    if (!k->finished && is_noscript(reply) && k->script && !strcmp(k->argv[0], "EVALSHA")) {
        /* The script is not loaded there (Redis restarted): EVAL loads and runs it. */
        k->argv[0] = "EVAL";
        k->argv[1] = k->script->source;
        k->lens[0] = 4;
        k->lens[1] = strlen(k->script->source);
        k->sent = 0;
        cmd_send(r, k);
        return;
    }
    if (!k->finished)
        queue_unlink(r, k);
    cmd_finish(r, k, reply, reply ? 0 : r->stopping ? -ECANCELED : -ECONNRESET);
    free(k);
}

/* SCRIPT LOAD ahead of a script's first use on this connection: without it, the first
 * EVALSHAs of a fresh Redis would come back NOSCRIPT and run again later, out of order. */
static void load_script(redis_t *r, const redis_script_t *s)
{
    for (int i = 0; i < r->nloaded; i++)
        if (r->loaded[i] == s)
            return;
    if (r->nloaded == r->loaded_cap) {
        int cap = r->loaded_cap ? r->loaded_cap * 2 : 8;
        const redis_script_t **v = realloc(r->loaded, (size_t)cap * sizeof *v);
        if (!v)
            return; /* NOSCRIPT will load it */
        r->loaded = v;
        r->loaded_cap = cap;
    }
    const char *argv[3] = {"SCRIPT", "LOAD", s->source};
    if (redisAsyncCommandArgv(r->cmd.ac, NULL, NULL, 3, argv, NULL) == REDIS_OK)
        r->loaded[r->nloaded++] = s;
}

static void cmd_send(redis_t *r, redis_cmd_t *k)
{
    if (k->sent || r->cmd.state != CONN_UP)
        return;
    if (k->script && !strcmp(k->argv[0], "EVALSHA"))
        load_script(r, k->script);
    if (redisAsyncCommandArgv(r->cmd.ac, on_reply, k, k->argc, k->argv, k->lens) != REDIS_OK) {
        queue_unlink(r, k);
        cmd_finish(r, k, NULL, -ECONNRESET);
        free(k);
        return;
    }
    k->sent = 1;
    roost_counter_add(r->c_commands, 1);
}

static void queue_add(redis_t *r, redis_cmd_t *k)
{
    k->prev = r->queue_tail;
    if (r->queue_tail)
        r->queue_tail->next = k;
    else
        r->queue_head = k;
    r->queue_tail = k;
    cmd_send(r, k);
}

/* A reply late by the command timeout means the connection is stuck: renew it. */
static void expire(redis_t *r, uint64_t now)
{
    int stuck = 0;
    while (r->queue_head && r->queue_head->deadline_ms <= now) {
        redis_cmd_t *k = r->queue_head;
        queue_unlink(r, k);
        roost_counter_add(r->c_timeouts, 1);
        int sent = k->sent;
        cmd_finish(r, k, NULL, -ETIMEDOUT);
        if (sent)
            stuck = 1; /* on_reply frees it */
        else
            free(k);
    }
    if (stuck && r->cmd.state == CONN_UP) {
        log_warn("redis: a command got no reply in %.1fs: reconnecting", r->opts.command_timeout_s);
        redis_conn_drop(&r->cmd);
    }
}

static void on_tick(uv_timer_t *t)
{
    redis_t *r = t->data;
    uint64_t now = uv_now(&r->loop);
    expire(r, now);
    redis_sub_sweep(r, now);
}

/* For conn.c: a new connection sends what waited; a broken one ends what it had sent. */
void redis_cmds_flush(redis_t *r)
{
    for (redis_cmd_t *k = r->queue_head, *next; k; k = next) {
        next = k->next;
        cmd_send(r, k);
    }
}

void redis_cmds_cut(redis_t *r, int err)
{
    for (redis_cmd_t *k = r->queue_head, *next; k; k = next) {
        next = k->next;
        if (!k->sent)
            continue;
        queue_unlink(r, k);
        cmd_finish(r, k, NULL, err); /* on_reply frees it, with the context */
    }
}

/* ---- the thread and its inbox ---- */

/* The loop's own handles: once they are closed, uv_run returns. */
static void close_handles(redis_t *r)
{
    uv_close((uv_handle_t *)&r->cmd.timer, NULL);
    uv_close((uv_handle_t *)&r->sub.timer, NULL);
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->wake, NULL);
}

static void stop(redis_t *r)
{
    r->stopping = 1;
    redis_conn_drop(&r->cmd);
    redis_conn_drop(&r->sub);
    while (r->queue_head) {
        redis_cmd_t *k = r->queue_head;
        queue_unlink(r, k);
        cmd_finish(r, k, NULL, -ECANCELED);
        free(k);
    }
    close_handles(r);
}

static void on_wake(uv_async_t *a)
{
    redis_t *r = a->data;
    redis_op_t *op;
    LIST_TAKE_LOCKED(op, &r->lock, r->inbox_head, r->inbox_tail);
    while (op) {
        redis_op_t *next = op->next;
        if (r->stopping) {
            if (op->kind == OP_CMD) {
                cmd_finish(r, op->cmd, NULL, -ECANCELED);
                free(op->cmd);
            }
        } else if (op->kind == OP_CMD) {
            op->cmd->deadline_ms = uv_now(&r->loop) + (uint64_t)(r->opts.command_timeout_s * 1000);
            queue_add(r, op->cmd);
        } else if (op->kind == OP_SUB || op->kind == OP_UNSUB) {
            redis_sub_change(r, op->channel, op->kind == OP_SUB ? 1 : -1);
        } else {
            stop(r);
        }
        free(op);
        op = next;
    }
}

static void *thread_main(void *arg)
{
    redis_t *r = arg;
    pthread_setname_np(pthread_self(), "roost-redis"); /* for top -H, perf, gdb */
    redis_conn_start(&r->cmd);
    redis_conn_start(&r->sub);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int post(redis_t *r, redis_op_t *op)
{
    pthread_mutex_lock(&r->lock);
    int closed = r->inbox_closed;
    if (!closed) {
        LIST_APPEND(r->inbox_head, r->inbox_tail, op, next);
        if (op->kind == OP_STOP)
            r->inbox_closed = 1;
        uv_async_send(&r->wake);
    }
    pthread_mutex_unlock(&r->lock);
    return closed ? -ENOTCONN : 0;
}

static int submit(redis_t *r, const redis_script_t *script, redis_reply_fn fn, void *ud, int argc,
                  const char **argv, const size_t *argvlen)
{
    if (!r || argc < 1)
        return -EINVAL;
    long inflight = atomic_fetch_add(&r->inflight, 1);
    int err = inflight >= r->opts.max_inflight                         ? -ENOBUFS
              : !atomic_load(&r->up) && inflight >= r->opts.max_queued ? -ENOTCONN
                                                                       : 0;
    /* one block: the op, the command, argv, lengths and a copy of the bytes */
    size_t bytes = 0;
    for (int i = 0; !err && i < argc; i++)
        bytes += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
    redis_op_t *op = err ? NULL : malloc(sizeof *op);
    redis_cmd_t *k =
        op ? calloc(1, sizeof *k + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + bytes) : NULL;
    if (!err && !k)
        err = -ENOMEM;
    if (err) {
        free(op);
        atomic_fetch_sub(&r->inflight, 1);
        roost_counter_add(r->c_failed, 1);
        return err;
    }
    k->fn = fn;
    k->ud = ud;
    k->script = script;
    k->argc = argc;
    k->argv = (const char **)(k + 1);
    k->lens = (size_t *)(k->argv + argc);
    char *p = (char *)(k->lens + argc);
    for (int i = 0; i < argc; i++) {
        k->lens[i] = argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, argv[i], k->lens[i]);
        p[k->lens[i]] = '\0';
        k->argv[i] = p;
        p += k->lens[i] + 1;
    }
    op->next = NULL;
    op->kind = OP_CMD;
    op->cmd = k;
    if (post(r, op) < 0) {
        free(op);
        free(k);
        atomic_fetch_sub(&r->inflight, 1);
        return -ENOTCONN;
    }
    return 0;
}

int redis_command(redis_t *r, redis_reply_fn fn, void *ud, int argc, const char **argv,
                  const size_t *argvlen)
{
    return submit(r, NULL, fn, ud, argc, argv, argvlen);
}

/* EVALSHA sha numkeys argv...; on NOSCRIPT, on_reply sends it again as EVAL source ... */
int redis_eval(redis_t *r, const redis_script_t *s, int numkeys, int argc, const char **argv,
               const size_t *argvlen, redis_reply_fn fn, void *ud)
{
    enum { MAX_ARGS = 64 };
    if (!s || !s->sha[0] || argc < numkeys || argc + 3 > MAX_ARGS)
        return -EINVAL;
    const char *v[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char nk[16];
    snprintf(nk, sizeof nk, "%d", numkeys);
    v[0] = "EVALSHA", v[1] = s->sha, v[2] = nk;
    lens[0] = 7, lens[1] = 40, lens[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        v[i + 3] = argv[i];
        lens[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    return submit(r, s, fn, ud, argc + 3, v, lens);
}

static int post_channel(redis_t *r, op_kind_t kind, const char *channel)
{
    size_t n = channel ? strlen(channel) : 0;
    if (!r || !n)
        return -EINVAL;
    redis_op_t *op = malloc(sizeof *op + n + 1);
    if (!op)
        return -ENOMEM;
    op->next = NULL;
    op->kind = kind;
    memcpy(op->channel, channel, n + 1);
    int rc = post(r, op);
    if (rc < 0)
        free(op);
    return rc;
}

int redis_subscribe(redis_t *r, const char *channel)
{
    return post_channel(r, OP_SUB, channel);
}

int redis_unsubscribe(redis_t *r, const char *channel)
{
    return post_channel(r, OP_UNSUB, channel);
}

int redis_up(const redis_t *r)
{
    return r && atomic_load(&r->up);
}

int redis_on_state(redis_t *r, redis_state_fn fn, void *ud)
{
    pthread_mutex_lock(&r->lock);
    int n = atomic_load(&r->nstate), rc = n < REDIS_LISTENERS ? 0 : -ENOSPC;
    if (!rc) {
        r->on_state[n].fn = fn;
        r->on_state[n].ud = ud;
        atomic_store(&r->nstate, n + 1);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

int redis_on_message(redis_t *r, const char *prefix, redis_message_fn fn, void *ud)
{
    char *p = strdup(prefix ? prefix : "");
    if (!p)
        return -ENOMEM;
    pthread_mutex_lock(&r->lock);
    int n = atomic_load(&r->nmessage), rc = n < REDIS_LISTENERS ? 0 : -ENOSPC;
    if (!rc) {
        r->on_message[n].fn = fn;
        r->on_message[n].ud = ud;
        r->on_message[n].prefix = p;
        atomic_store(&r->nmessage, n + 1);
    }
    pthread_mutex_unlock(&r->lock);
    if (rc)
        free(p);
    return rc;
}

static void defaults(redis_opts_t *o)
{
    if (o->connect_timeout_s <= 0)
        o->connect_timeout_s = 2;
    if (o->command_timeout_s <= 0)
        o->command_timeout_s = 2;
    if (o->backoff_min_s <= 0)
        o->backoff_min_s = 0.1;
    if (o->backoff_max_s < o->backoff_min_s)
        o->backoff_max_s = o->backoff_min_s > 5 ? o->backoff_min_s : 5;
    if (o->max_queued <= 0)
        o->max_queued = 1000;
    if (o->max_inflight <= 0)
        o->max_inflight = 100000;
}

/* What the client counts, on /metrics (with a server). */
static const core_counter_def_t redis_counters[] = {
    CORE_GAUGE(redis_t, c_up, "roost_redis_up", NULL, "1 while Redis is connected"),
    CORE_COUNTER(redis_t, c_reconnects, "roost_redis_reconnects_total", NULL,
                 "Connection attempts to Redis after the first"),
    CORE_COUNTER(redis_t, c_failed, "roost_redis_commands_failed_total", NULL,
                 "Redis commands refused, timed out or cut off"),
    CORE_COUNTER(redis_t, c_timeouts, "roost_redis_command_timeouts_total", NULL,
                 "Redis commands without a reply in time"),
    CORE_COUNTER(redis_t, c_commands, "roost_redis_commands_total", NULL, "Redis commands sent"),
    CORE_COUNTER(redis_t, c_messages, "roost_redis_messages_total", NULL,
                 "Messages received on subscribed Redis channels"),
};

redis_t *redis_new(const redis_opts_t *opts)
{
    redis_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->opts = *opts;
    r->opts.url = NULL;
    defaults(&r->opts);
    if (redis_url_parse(opts->url, &r->url) < 0 || uv_loop_init(&r->loop) < 0)
        goto fail;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->listen_lock, NULL);
    r->cmd.r = r->sub.r = r;
    r->sub.is_sub = 1;
    uv_async_init(&r->loop, &r->wake, on_wake);
    r->wake.data = r;
    uv_timer_init(&r->loop, &r->tick);
    r->tick.data = r;
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(&r->loop, &r->cmd.timer);
    r->cmd.timer.data = &r->cmd;
    uv_timer_init(&r->loop, &r->sub.timer);
    r->sub.timer.data = &r->sub;
    if (opts->srv)
        core_counters_register(opts->srv, r, redis_counters, ARRAY_LEN(redis_counters));
    if (pthread_create(&r->thread, NULL, thread_main, r) != 0) {
        close_handles(r);
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
        goto fail;
    }
    return r;
fail:
    redis_url_free(&r->url);
    free(r);
    return NULL;
}

void redis_free(redis_t *r)
{
    if (!r)
        return;
    redis_op_t *op = calloc(1, sizeof *op);
    if (op) {
        op->kind = OP_STOP;
        post(r, op);
    }
    pthread_join(r->thread, NULL);
    uv_loop_close(&r->loop);
    redis_sub_free(r);
    free(r->loaded);
    for (int i = 0; i < r->nmessage; i++)
        free(r->on_message[i].prefix);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->listen_lock);
    redis_url_free(&r->url);
    free(r);
}

void redis_listeners_stop(redis_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->listen_lock);
    r->listeners_off = 1;
    pthread_mutex_unlock(&r->listen_lock);
}
