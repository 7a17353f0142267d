/* The fetch layer: outbound HTTP calls made on the loops, with libcurl's multi-socket API
 * driven by each loop's libuv (a uv_poll per socket, one uv_timer per loop), so that a handler
 * waiting on an upstream blocks nothing. Calls go to named upstreams (--upstream), each with a
 * bounded pool per loop, a bounded wait queue, retries and a circuit breaker.
 *
 * Threads: a fetch_loop_t and every call on it belong to one loop thread. An upstream's circuit
 * breaker and counters are atomics shared by every loop (no lock). */
#ifndef ROOST_FETCH_H
#define ROOST_FETCH_H

#include <curl/curl.h>

#include "base/base.h"
#include "net/net.h"

#define FETCH_MAX_UPSTREAMS        32
#define FETCH_DEFAULT_MAX_RESPONSE (8u << 20)
#define FETCH_LAT_BUCKETS          10

/* ---- upstream.c: the configured upstreams, parsed once, read by every loop ---- */
typedef struct fetch_upstream {
    char *name;
    char *base;    /* scheme://host:port, no trailing slash */
    int max_conns; /* in total, split between the loops */
    int max_queue; /* calls waiting for a connection, in total, split likewise */
    long connect_timeout_ms, timeout_ms;
    int retries;          /* extra attempts of an idempotent call (connect error, 502-504) */
    int breaker_failures; /* consecutive failures that open the circuit */
    long breaker_cool_ms; /* how long it stays open before one probe */
    /* the breaker, shared by the loops */
    atomic_int failures;
    _Atomic uint64_t open_until_ms; /* 0: closed */
    atomic_int probing;             /* one probe call in flight while half-open */
    atomic_long keepalive_ms;       /* the upstream's Keep-Alive: timeout=, minus a margin */
    /* counters, summed at scrape time */
    atomic_long calls[ROOST_FETCH_INVALID + 1]; /* by outcome */
    atomic_long retried;
    atomic_long lat[FETCH_LAT_BUCKETS + 1]; /* per bucket (not cumulative); the last is +Inf */
    atomic_long lat_sum_us;
    atomic_long active, waiting; /* gauges */
    atomic_long conns;           /* sockets open to it, kept-alive ones included (gauge) */
} fetch_upstream_t;

typedef struct fetch_loop fetch_loop_t;
typedef struct fetch {
    roost_server_t *srv;
    int nloops;
    int nupstreams;
    atomic_long out_of_fds; /* calls put back in their queue for want of a descriptor */
    fetch_upstream_t up[FETCH_MAX_UPSTREAMS];
} fetch_t;

/* Parses `NAME=URL [max_conns=N] [max_queue=N] [connect_timeout_ms=N] [timeout_ms=N]
 * [retries=N] [breaker=N] [cool_ms=N]` into the next upstream. -EINVAL (logged) when malformed. */
int fetch_upstream_parse(fetch_t *f, const char *spec);
fetch_upstream_t *fetch_upstream_find(fetch_t *f, const char *name, size_t len);
/* 0: a call may go; -EAGAIN: the circuit is open (counted). *probe is set when this call is
 * the one probe of a half-open circuit. */
int fetch_breaker_enter(fetch_upstream_t *u, uint64_t now_ms, int *probe);
void fetch_breaker_result(fetch_upstream_t *u, int ok, int probe, uint64_t now_ms);
/* Counts a finished call. */
void fetch_upstream_count(fetch_upstream_t *u, roost_fetch_error_t e, double seconds);
/* Appends the upstreams' gauges and latency histograms in Prometheus text. */
void fetch_metrics(fetch_t *f, sbuf_t *out);
void fetch_free(fetch_t *f);

/* ---- multi.c: one curl multi handle per loop ---- */
typedef struct fetch_call fetch_call_t;
struct fetch_loop {
    net_loop_t *loop;
    fetch_t *fetch;
    CURLM *multi;
    uv_timer_t timer;
    int running;
    /* per upstream on this loop: calls running and calls waiting (oldest first) */
    struct fetch_lane {
        fetch_upstream_t *up;
        int active, max_active;
        int nwaiting, max_waiting;
        fetch_call_t *wait_head, *wait_tail;
        int conns;             /* sockets open to the upstream from this loop (call.c) */
        int fd_cap;            /* > 0: out of file descriptors, run at most this many calls */
        uint64_t fd_cap_at_ms; /* when it was set: lifted a second later, to try again */
    } lanes[FETCH_MAX_UPSTREAMS];
    fetch_call_t *calls; /* every call on this loop, for shutdown */
    fetch_call_t *done;  /* calls curl has finished, not handled yet (check_done) */
    unsigned closing : 1;
};

/* ---- conns.c: sockets to an upstream, counted per lane ---- */
typedef struct fetch_conn_ctx {
    struct fetch_lane *lane;
    int out_of_fds; /* set when curl could not open a socket: EMFILE or ENFILE */
} fetch_conn_ctx_t;
/* Has curl open and close easy's sockets through conns.c (ctx must live as long as easy). */
void fetch_conns_track(fetch_conn_ctx_t *ctx, CURL *easy);
/* 1 when every connection of the lane is held by another call: a call must open a new one. */
int fetch_conns_none_idle(const struct fetch_lane *l);

fetch_loop_t *fetch_loop_new(fetch_t *f, net_loop_t *loop);
/* On the loop thread when it ends: fails what is left (cancelled), frees after the handles
 * closed. */
void fetch_loop_close(fetch_loop_t *fl);
int fetch_multi_add(fetch_loop_t *fl, CURL *easy);
void fetch_multi_remove(fetch_loop_t *fl, CURL *easy);

/* ---- api.c: the public calls over the loops' state ---- */
/* The server's upstreams (a core slot), once roost_fetch_init made them; NULL before. */
fetch_t *fetch_of(roost_server_t *srv);
/* This loop's state (made before the loop ran); on the loop's thread. NULL without
 * roost_fetch_init, or for a NULL loop (a message posted while the server stops). */
fetch_loop_t *fetch_loop_of(net_loop_t *loop);

/* ---- call.c: one call, from its start to its one completion ---- */
/* res and what it points to are valid during the call; body (may be NULL) holds res->body's
 * bytes: take a reference to keep them. */
typedef void (*fetch_cb)(const roost_fetch_result_t *res, rbuf_t *body, void *arg);
/* On fl's loop. cb runs exactly once, on this loop, never before fetch_call_start returns
 * (errors found at once are delivered from a zero timer), so a caller may set up what cb reads
 * after starting. Returns the call (a handle for fetch_call_cancel) or NULL when out of memory
 * (cb is then not called). */
fetch_call_t *fetch_call_start(fetch_loop_t *fl, const roost_fetch_opts_t *opts, fetch_cb cb,
                               void *arg);
/* Cancels: cb runs at once with ROOST_FETCH_CANCELLED unless it has already run. */
void fetch_call_cancel(fetch_call_t *c);
/* multi.c calls this when curl is done with the call's current attempt. */
void fetch_call_attempt_done(fetch_call_t *c, CURLcode rc);
/* multi.c: curl reported c's attempt done with rc; fetch_calls_run_done handles it later. */
void fetch_call_curl_done(fetch_call_t *c, CURLcode rc);
/* Takes the calls off curl's multi handle and handles each (fetch_call_attempt_done). */
void fetch_calls_run_done(fetch_loop_t *fl);
/* Fails every call of the loop (shutdown). */
void fetch_calls_abort(fetch_loop_t *fl);

#endif
