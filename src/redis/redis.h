/* The redis layer: one Redis client per node on hiredis's async API, driven by libuv on its own
 * thread (so no server loop ever waits on Redis, and the client's life is not tied to a loop's
 * drain). Two connections: one for commands (pipelined, replies in order) and one for pub/sub.
 * It reconnects with capped exponential backoff, sends AUTH/SELECT first and re-subscribes every
 * channel after a reconnect; it times commands out and bounds what waits while Redis is down.
 * It knows nothing of rooms: the hub (and the shared rate limits) build on this header.
 *
 * Threads: every function here may be called from any thread. Every callback runs on the
 * client's thread and must not block; hand the result to a loop with net_loop_post. */
#ifndef ROOST_REDIS_H
#define ROOST_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "core/core.h"

typedef struct redis redis_t;

/* A command's end: err 0 and reply (which may be a REDIS_REPLY_ERROR; valid only during the
 * call), or err < 0 and reply NULL: -ETIMEDOUT (no reply within the command timeout),
 * -ECONNRESET (the connection broke after it was sent: it may or may not have run),
 * -ECANCELED (the client is being freed). */
typedef void (*redis_reply_fn)(redis_t *r, const redisReply *reply, int err, void *ud);
/* A message published on a subscribed channel; data is not NUL-terminated. */
typedef void (*redis_message_fn)(redis_t *r, const char *channel, const char *data, size_t len,
                                 void *ud);
/* The client went up (both connections ready, channels re-subscribed) or down. */
typedef void (*redis_state_fn)(redis_t *r, int up, void *ud);

typedef struct {
    const char *url;          /* redis://[[user]:password@]host[:port][/db] */
    double connect_timeout_s; /* default 2 */
    double command_timeout_s; /* default 2: then -ETIMEDOUT and the connection is renewed */
    double backoff_min_s;     /* default 0.1, doubled per failed attempt ... */
    double backoff_max_s;     /* ... up to this, default 5 */
    int max_queued;           /* commands held while down, default 1000; more fail at once */
    int max_inflight;         /* commands sent or held at once, default 100000 */
    roost_server_t *srv;      /* for the counters on /metrics; may be NULL */
} redis_opts_t;

/* Parses a URL into host, port, db, user and password (NULL when the URL has none); the texts
 * are copies in one allocation, which redis_url_free releases. 0, -EINVAL or -ENOMEM. */
typedef struct {
    const char *host, *user, *password;
    int port, db;
    char *texts; /* the allocation host, user and password point into */
} redis_url_t;
int redis_url_parse(const char *url, redis_url_t *out);
void redis_url_free(redis_url_t *u);

/* Starts the client's thread, which connects at once (and keeps trying). NULL: bad URL or
 * ENOMEM. */
redis_t *redis_new(const redis_opts_t *opts);
/* Stops the thread; commands still pending get -ECANCELED first. */
void redis_free(redis_t *r);
/* 1 while both connections are ready. */
int redis_up(const redis_t *r);

/* Listeners, from any thread, never removed: up to REDIS_LISTENERS each. on_message gets the
 * messages of channels starting with prefix. -ENOSPC. */
#define REDIS_LISTENERS 8
int redis_on_state(redis_t *r, redis_state_fn fn, void *ud);
int redis_on_message(redis_t *r, const char *prefix, redis_message_fn fn, void *ud);
/* No listener runs once this returns (it waits for one running now): called when the server
 * drains, so that no message reaches a loop that is about to be freed. Commands still work. */
void redis_listeners_stop(redis_t *r);

/* Sends a command (the arguments are copied; argvlen may be NULL for C strings); fn (may be
 * NULL) gets its reply. Returns 0 (fn will be called exactly once) or, without calling fn,
 * -ENOTCONN (Redis is down and max_queued commands wait already), -ENOBUFS (max_inflight),
 * -ENOMEM, -EINVAL. While down, a command waits (up to the command timeout) for the
 * reconnection. */
int redis_command(redis_t *r, redis_reply_fn fn, void *ud, int argc, const char **argv,
                  const size_t *argvlen);

/* A Lua script run by its SHA1 (EVALSHA). The client sends SCRIPT LOAD ahead of a script's
 * first EVALSHA on each connection (pipelined, so order is kept); if Redis still answers
 * NOSCRIPT (a SCRIPT FLUSH), it is sent again with EVAL, after what was sent meanwhile. Define
 * it once, static: the client remembers it by address. */
typedef struct {
    const char *source;
    char sha[41]; /* filled by redis_script_init */
} redis_script_t;
void redis_script_init(redis_script_t *s);
/* EVALSHA sha numkeys keys... args...: argv holds the keys then the args. Same returns as
 * redis_command. */
int redis_eval(redis_t *r, const redis_script_t *s, int numkeys, int argc, const char **argv,
               const size_t *argvlen, redis_reply_fn fn, void *ud);

/* Channels: the client subscribes while up and again after every reconnect. Counted: a channel
 * subscribed twice needs two unsubscribes. 0, -ENOMEM or -EINVAL. */
int redis_subscribe(redis_t *r, const char *channel);
int redis_unsubscribe(redis_t *r, const char *channel);

/* ---- the server's client (server.c): the one every layer above shares ---- */
/* With --redis: starts the server's client (once; later calls return 0) and a service that
 * frees it after the loops ended. Without --redis: 0 and nothing. Main thread, before run. */
int redis_server_start(roost_server_t *srv);
/* The server's client, or NULL without --redis. */
redis_t *redis_of(roost_server_t *srv);
/* --node-id, or host:port of the server. */
const char *redis_node_id(roost_server_t *srv);

/* ---- internals, between the files of this layer ---- */
typedef enum { CONN_DOWN, CONN_CONNECTING, CONN_HANDSHAKE, CONN_UP } redis_conn_state_t;

typedef struct {
    redis_t *r;
    redisAsyncContext *ac; /* NULL while down */
    int is_sub;            /* the pub/sub connection */
    redis_conn_state_t state;
    int attempts; /* failed in a row, for the backoff */
    int handshake_left;
    uv_timer_t timer; /* the connect timeout, then the backoff */
} redis_conn_t;

typedef struct redis_cmd redis_cmd_t;
typedef struct redis_op redis_op_t;

struct redis {
    redis_opts_t opts;
    redis_url_t url;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t tick; /* command timeouts, idle unsubscribes */
    pthread_mutex_t lock;
    redis_op_t *inbox_head, *inbox_tail;
    int inbox_closed;
    _Atomic int up;
    _Atomic long inflight;
    int stopping;
    redis_conn_t cmd, sub;
    redis_cmd_t *queue_head, *queue_tail; /* waiting or sent, oldest first */
    const redis_script_t **loaded;        /* SCRIPT LOADed on the current command connection */
    int nloaded, loaded_cap;
    strmap_t channels; /* channel -> redis_channel_t, this thread only */
    struct {
        redis_state_fn fn;
        void *ud;
    } on_state[REDIS_LISTENERS];
    struct {
        redis_message_fn fn;
        void *ud;
        char *prefix;
    } on_message[REDIS_LISTENERS];
    _Atomic int nstate, nmessage; /* entries are written before the count grows */
    pthread_mutex_t listen_lock;  /* held while a listener runs; see redis_listeners_stop */
    int listeners_off;
    roost_counter_t *c_up, *c_reconnects, *c_failed, *c_timeouts, *c_commands, *c_messages;
};

/* conn.c and client.c, on the client's thread */
void redis_conn_start(redis_conn_t *c);
void redis_conn_drop(redis_conn_t *c);    /* ends it now, and tries again after the backoff */
void redis_cmds_flush(redis_t *r);        /* the command connection is ready: send what waits */
void redis_cmds_cut(redis_t *r, int err); /* it broke: end what was sent with err */
/* pubsub.c, on the client's thread */
void redis_sub_ready(redis_t *r); /* the pub/sub connection is ready: subscribe all */
void redis_sub_change(redis_t *r, const char *channel, int delta);
void redis_sub_sweep(redis_t *r, uint64_t now_ms); /* unsubscribes channels idle a while */
void redis_sub_free(redis_t *r);
/* adapter.c: hiredis on a libuv loop (hiredis's own adapter, with errors passed on). */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
