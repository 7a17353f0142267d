/* Loop threads: each runs its own libuv loop with its own SO_REUSEPORT listener on the shared
 * port, an inbox for work from other threads, and one tick timer that drives the timer wheel,
 * the cached Date header and the heartbeat the watchdog reads. Draining (SIGTERM) is a message
 * to each inbox: close the listener, ask every connection to finish, end when none is left. */
#include "net/net.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF_SIZE (64 * 1024)
#define TICK_MS       25 /* heartbeat and wheel driver: well under the smallest sane stall_ms */
#define WHEEL_TICK_MS 50 /* timeouts are in tenths of seconds at best */

struct net_group {
    net_group_opts_t opts;
    int nloops;
    net_loop_t *loops;
    atomic_int running;
};

/* Defined in conn.c */
void net_conn_accept(net_loop_t *loop, uv_stream_t *server, int tls);
void net_conn_expire(wheel_node_t *n, void *ud);

uint64_t net_loop_now(const net_loop_t *loop)
{
    return uv_now(&loop->uv);
}

static void refresh_clock(net_loop_t *loop)
{
    int64_t sec = (int64_t)time_wall();
    if (sec != loop->date_sec) {
        loop->date_sec = sec;
        time_http_date(loop->date, sec);
    }
}

/* ---- inbox ---- */

void net_loop_post(net_loop_t *loop, net_msg_t *msg)
{
    msg->next = NULL;
    pthread_mutex_lock(&loop->inbox_lock);
    if (loop->inbox_closed) {
        pthread_mutex_unlock(&loop->inbox_lock);
        msg->fn(NULL, msg);
        return;
    }
    int was_empty = loop->inbox_head == NULL;
    LIST_APPEND(loop->inbox_head, loop->inbox_tail, msg, next);
    pthread_mutex_unlock(&loop->inbox_lock);
    /* One wake-up per burst: the loop takes the whole list at once. */
    if (was_empty)
        uv_async_send(&loop->inbox_async);
}

/* Runs the messages taken from the inbox, oldest first (each may free itself). */
static void run_msgs(net_loop_t *loop, net_msg_t *m, int count_events)
{
    while (m) {
        net_msg_t *next = m->next;
        if (count_events)
            net_loop_event(loop);
        m->fn(loop, m);
        m = next;
    }
}

static void on_inbox(uv_async_t *a)
{
    net_loop_t *loop = a->data;
    net_msg_t *m;
    LIST_TAKE_LOCKED(m, &loop->inbox_lock, loop->inbox_head, loop->inbox_tail);
    run_msgs(loop, m, 1);
}

/* ---- tick: heartbeat, Date, timeouts ---- */

static void maybe_finish(net_loop_t *loop);

static void on_iteration(uv_prepare_t *p)
{
    net_loop_t *loop = p->data;
    uint64_t n = atomic_load_explicit(&loop->iterations, memory_order_relaxed);
    atomic_store_explicit(&loop->iterations, n + 1, memory_order_relaxed);
}

/* Events per iteration over the last second: a gauge a scrape can read without a rate(). */
static void sample_rate(net_loop_t *loop, uint64_t now_ms)
{
    if (now_ms - loop->rate_at_ms < 1000)
        return;
    uint64_t ev = atomic_load_explicit(&loop->events, memory_order_relaxed);
    uint64_t it = atomic_load_explicit(&loop->iterations, memory_order_relaxed);
    uint64_t dit = it - loop->rate_iters;
    atomic_store_explicit(&loop->events_per_iter_milli,
                          dit ? (ev - loop->rate_events) * 1000 / dit : 0, memory_order_relaxed);
    loop->rate_events = ev;
    loop->rate_iters = it;
    loop->rate_at_ms = now_ms;
}

static void on_tick(uv_timer_t *t)
{
    net_loop_t *loop = t->data;
    uint64_t now_ms = time_now_ms();
    atomic_store_explicit(&loop->heartbeat_ms, now_ms, memory_order_relaxed);
    sample_rate(loop, now_ms);
    refresh_clock(loop);
    wheel_advance(&loop->wheel, uv_now(&loop->uv), net_conn_expire, loop);
    if (net_group_opts(loop->group)->tls && uv_now(&loop->uv) - loop->tls_swept_ms >= 1000) {
        loop->tls_swept_ms = uv_now(&loop->uv);
        net_tls_sweep(loop);
    }
}

/* ---- listening ---- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static int open_listener(net_loop_t *loop, uv_tcp_t *listener, const char *host, int port)
{
    struct sockaddr_storage ss;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    if (rc < 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* One listener per loop on the same port: the kernel spreads connections across loops. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    socklen_t len =
        ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    uv_tcp_init(&loop->uv, listener);
    listener->data = loop;
    if ((rc = uv_tcp_open(listener, fd)) < 0) {
        close(fd);
        return rc;
    }
    if (listener == &loop->listener)
        loop->listening = 1;
    else
        loop->tls_listening = 1;
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    net_loop_t *loop = server->data;
    if (status < 0 || loop->draining)
        return;
    /* --port speaks TLS when a certificate is given and no --tls-port is. */
    const net_group_opts_t *o = &loop->group->opts;
    net_loop_event(loop);
    net_conn_accept(loop, server, o->tls && !o->tls_port);
}

static void on_tls_connection(uv_stream_t *server, int status)
{
    net_loop_t *loop = server->data;
    if (status < 0 || loop->draining)
        return;
    net_loop_event(loop);
    net_conn_accept(loop, server, 1);
}

static void close_listeners(net_loop_t *loop)
{
    if (loop->listening) {
        loop->listening = 0;
        uv_close((uv_handle_t *)&loop->listener, on_handle_closed);
    }
    if (loop->tls_listening) {
        loop->tls_listening = 0;
        uv_close((uv_handle_t *)&loop->tls_listener, on_handle_closed);
    }
}

/* ---- draining ---- */

static void maybe_finish(net_loop_t *loop)
{
    if (!loop->draining || loop->nconns > 0)
        return;
    net_msg_t *m;
    pthread_mutex_lock(&loop->inbox_lock);
    int already = loop->inbox_closed;
    loop->inbox_closed = 1;
    LIST_TAKE(m, loop->inbox_head, loop->inbox_tail);
    pthread_mutex_unlock(&loop->inbox_lock);
    if (already)
        return;
    run_msgs(loop, m, 0); /* anything posted before the close still runs here */
    uv_close((uv_handle_t *)&loop->inbox_async, on_handle_closed);
    uv_close((uv_handle_t *)&loop->tick, on_handle_closed);
    uv_close((uv_handle_t *)&loop->flush_check, on_handle_closed);
    uv_close((uv_handle_t *)&loop->iter_prepare, on_handle_closed);
    if (loop->group->opts.on_loop_end)
        loop->group->opts.on_loop_end(loop);
}

/* Called by conn.c whenever a connection's memory is released. */
void net_loop_conn_gone(net_loop_t *loop)
{
    loop->nconns--;
    atomic_store_explicit(&loop->nconns_seen, loop->nconns, memory_order_relaxed);
    maybe_finish(loop);
}

static void on_drain_msg(net_loop_t *loop, net_msg_t *msg)
{
    free(msg);
    if (!loop || loop->draining)
        return;
    loop->draining = 1;
    close_listeners(loop);
    /* A shutdown call may close other connections too (a room's goodbye meets a reset
     * socket), which unlinks them: when the saved next is one, the walk starts again from the
     * head, and each connection's flag makes sure it is told once. */
    net_conn_t *c = loop->conns;
    while (c) {
        net_conn_t *next = c->next;
        if (!c->proto && !c->closing) {
            /* No protocol yet (a TLS handshake, a refused client): nothing in flight to finish,
             * and its close touches no other connection. */
            net_conn_close(c);
        } else if (!c->shutdown_told && !c->closing && c->proto && c->proto->on_shutdown) {
            c->shutdown_told = 1;
            if (next)
                net_conn_ref(next);
            c->proto->on_shutdown(c);
            if (next) {
                int unlinked = next->closing;
                net_conn_unref(next);
                if (unlinked)
                    next = loop->conns;
            }
        }
        c = next;
    }
    maybe_finish(loop);
}

static void on_force_msg(net_loop_t *loop, net_msg_t *msg)
{
    free(msg);
    if (!loop)
        return;
    /* Closing one connection can close others (see above); each close unlinks its own. */
    while (loop->conns)
        net_conn_close(loop->conns);
    maybe_finish(loop);
}

static void post_all(net_group_t *g, void (*fn)(net_loop_t *, net_msg_t *))
{
    for (int i = 0; i < g->nloops; i++) {
        net_msg_t *m = calloc(1, sizeof *m);
        if (!m)
            continue;
        m->fn = fn;
        net_loop_post(&g->loops[i], m);
    }
}

void net_group_drain(net_group_t *g)
{
    post_all(g, on_drain_msg);
}

void net_group_force(net_group_t *g)
{
    post_all(g, on_force_msg);
}

/* ---- threads ---- */

static void *loop_main(void *arg)
{
    pthread_setname_np(pthread_self(), "roost-loop"); /* for top -H, perf, gdb */
    net_loop_t *loop = arg;
    atomic_store(&loop->heartbeat_ms, time_now_ms());
    if (loop->group->opts.on_loop_start)
        loop->group->opts.on_loop_start(loop);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    atomic_fetch_sub(&loop->group->running, 1);
    return NULL;
}

static int loop_init(net_group_t *g, net_loop_t *loop, int index)
{
    int rc;
    memset(loop, 0, sizeof *loop);
    loop->index = index;
    loop->group = g;
    if ((rc = uv_loop_init(&loop->uv)) < 0)
        return rc;
    loop->uv.data = loop;
    pthread_mutex_init(&loop->inbox_lock, NULL);
    uv_async_init(&loop->uv, &loop->inbox_async, on_inbox);
    loop->inbox_async.data = loop;
    uv_timer_init(&loop->uv, &loop->tick);
    loop->tick.data = loop;
    uv_check_init(&loop->uv, &loop->flush_check);
    loop->flush_check.data = loop;
    /* Counts iterations; unreferenced, so it never keeps a draining loop alive. */
    uv_prepare_init(&loop->uv, &loop->iter_prepare);
    loop->iter_prepare.data = loop;
    uv_prepare_start(&loop->iter_prepare, on_iteration);
    uv_unref((uv_handle_t *)&loop->iter_prepare);
    loop->rbuf_size = READ_BUF_SIZE;
    loop->rbuf = malloc(loop->rbuf_size);
    if (!loop->rbuf)
        return -ENOMEM;
    wheel_init(&loop->wheel, uv_now(&loop->uv), WHEEL_TICK_MS);
    refresh_clock(loop);
    return 0;
}

net_group_t *net_group_new(const net_group_opts_t *opts)
{
    net_group_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->opts = *opts;
    g->nloops = opts->threads > 0 ? opts->threads : 1;
    g->loops = calloc((size_t)g->nloops, sizeof *g->loops);
    if (!g->loops) {
        free(g);
        return NULL;
    }
    for (int i = 0; i < g->nloops; i++) {
        if (loop_init(g, &g->loops[i], i) < 0) {
            log_error("loop %d: cannot initialise", i);
            return NULL;
        }
    }
    return g;
}

int net_group_listen(net_group_t *g)
{
    for (int i = 0; i < g->nloops; i++) {
        int rc = open_listener(&g->loops[i], &g->loops[i].listener, g->opts.host, g->opts.port);
        if (rc < 0) {
            log_error("cannot listen on %s:%d: %s", g->opts.host, g->opts.port, uv_strerror(rc));
            return rc;
        }
        if (g->opts.tls && g->opts.tls_port) {
            net_loop_t *loop = &g->loops[i];
            rc = open_listener(loop, &loop->tls_listener, g->opts.host, g->opts.tls_port);
            if (rc < 0) {
                log_error("cannot listen on %s:%d: %s", g->opts.host, g->opts.tls_port,
                          uv_strerror(rc));
                return rc;
            }
        }
    }
    return 0;
}

int net_group_start(net_group_t *g)
{
    for (int i = 0; i < g->nloops; i++) {
        net_loop_t *loop = &g->loops[i];
        int rc = uv_listen((uv_stream_t *)&loop->listener, 4096, on_connection);
        if (rc == 0 && loop->tls_listening)
            rc = uv_listen((uv_stream_t *)&loop->tls_listener, 4096, on_tls_connection);
        if (rc < 0) {
            log_error("listen: %s", uv_strerror(rc));
            return rc;
        }
        uv_timer_start(&loop->tick, on_tick, TICK_MS, TICK_MS);
        atomic_fetch_add(&g->running, 1);
        if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0) {
            atomic_fetch_sub(&g->running, 1);
            return -EAGAIN;
        }
    }
    return 0;
}

int net_group_running(net_group_t *g)
{
    return atomic_load(&g->running);
}

int net_group_nloops(const net_group_t *g)
{
    return g->nloops;
}

net_loop_t *net_group_loop(net_group_t *g, int i)
{
    return &g->loops[i];
}

void *net_group_ud(const net_group_t *g)
{
    return g->opts.ud;
}

const net_group_opts_t *net_group_opts(const net_group_t *g)
{
    return &g->opts;
}

void net_group_join_free(net_group_t *g)
{
    for (int i = 0; i < g->nloops; i++) {
        net_loop_t *loop = &g->loops[i];
        if (loop->thread)
            pthread_join(loop->thread, NULL);
        close_listeners(loop); /* a loop that never started */
        if (!loop->inbox_closed) {
            uv_close((uv_handle_t *)&loop->inbox_async, on_handle_closed);
            uv_close((uv_handle_t *)&loop->tick, on_handle_closed);
            uv_close((uv_handle_t *)&loop->flush_check, on_handle_closed);
            uv_close((uv_handle_t *)&loop->iter_prepare, on_handle_closed);
            if (g->opts.on_loop_end)
                g->opts.on_loop_end(loop);
        }
        uv_run(&loop->uv, UV_RUN_NOWAIT);
        uv_loop_close(&loop->uv);
        net_loop_wsegs_free(loop);
        pthread_mutex_destroy(&loop->inbox_lock);
        sbuf_free(&loop->cork);
        free(loop->rbuf);
    }
    free(g->loops);
    free(g);
}
