/* Connections: accept, read into the loop's shared buffer, pause and resume, deadlines, close
 * (with a linger so the peer reads our last answer), and the end-of-iteration pass (TLS input,
 * on_deferred, flush). Writes made during a protocol's on_data are gathered (corked) into one
 * write; the write queue itself is wqueue.c's. A connection's memory outlives its socket while
 * anything (a worker) still holds a ref. */
#include "net/net.h"

#include <stdlib.h>
#include <string.h>

void net_loop_conn_gone(net_loop_t *loop);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    net_loop_t *loop = ((net_conn_t *)h)->loop;
    (void)suggested;
    buf->base = loop->rbuf;
    buf->len = loop->rbuf_size;
}

#define LINGER_MS 2000

static void on_linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0) /* EOF from the peer: it has read our answer */
        net_conn_close((net_conn_t *)s);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    net_conn_t *c = req->data;
    free(req);
    if (status < 0)
        net_conn_close(c);
    net_conn_unref(c);
}

/* Closing a socket with unread input makes the kernel send RST, which can destroy the answer
 * we just wrote before the client reads it. Like nginx's lingering close: send FIN, discard
 * what still arrives, and close on the client's EOF or after LINGER_MS. */
static void linger_close(net_conn_t *c)
{
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req || c->lingering) {
        free(req);
        net_conn_close(c);
        return;
    }
    if (UNLIKELY(c->tls))
        net_tls_close_notify(c); /* queued before the FIN, which waits for the writes */
    c->lingering = 1;
    req->data = c;
    net_conn_ref(c);
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        net_conn_unref(c);
        net_conn_close(c);
        return;
    }
    wheel_arm(&c->loop->wheel, &c->timer, uv_now(&c->loop->uv) + LINGER_MS);
    if (c->reading)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_linger_read);
}

static void finish_close_if_done(net_conn_t *c)
{
    if (c->close_after_write && !c->wq_head && !c->closing && !c->lingering)
        linger_close(c);
}

/* Ends the gathering of c's writes that began with loop->cork_conn = c: one write of them all. */
static void uncork(net_conn_t *c)
{
    net_loop_t *loop = c->loop;
    loop->cork_conn = NULL;
    if (loop->cork.len) {
        size_t clen = loop->cork.len;
        loop->cork.len = 0;
        if (!c->closing)
            net_conn_write(c, loop->cork.p, clen);
    }
}

void net_conn_deliver(net_conn_t *c, char *data, size_t len)
{
    c->loop->cork_conn = c;
    c->proto->on_data(c, data, len);
    uncork(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    net_conn_t *c = (net_conn_t *)s;
    net_loop_event(c->loop);
    if (n < 0) {
        net_conn_close(c);
        return;
    }
    if (n == 0)
        return;
    net_conn_ref(c);
    if (UNLIKELY(c->tls))
        net_tls_on_read(c, buf->base, (size_t)n);
    else
        net_conn_deliver(c, buf->base, (size_t)n);
    finish_close_if_done(c);
    net_conn_unref(c);
}

/* The connection is ready for its protocol (at accept, or once its TLS handshake is done): a
 * connection over a per-address limit gets the protocol's busy answer instead. */
void net_conn_secured(net_conn_t *c)
{
    const net_group_opts_t *o = net_group_opts(c->loop->group);
    wheel_disarm(&c->timer);
    if (c->refused) {
        if (o->busy_reply)
            net_conn_write(c, o->busy_reply, strlen(o->busy_reply));
        net_conn_close_after_write(c);
        return;
    }
    o->on_accept(c);
}

/* A new connection joins its loop (holding the socket's reference). */
static void adopt(net_loop_t *loop, net_conn_t *c)
{
    c->loop = loop;
    c->refs = 1; /* the socket's */
    c->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = c;
    loop->conns = c;
    loop->nconns++;
    atomic_store_explicit(&loop->nconns_seen, loop->nconns, memory_order_relaxed);
}

void net_conn_accept(net_loop_t *loop, uv_stream_t *server, int tls)
{
    const net_group_opts_t *o = net_group_opts(loop->group);
    net_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(&loop->uv, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (o->iplimit) {
        net_conn_peer_ip(c);
        int rc = net_iplimit_take(o->iplimit, c->ip, uv_now(&loop->uv));
        c->refused = rc < 0;
        c->ip_held = rc == 1;
    }
    adopt(loop, c);
    if (tls) {
        if (net_tls_conn_start(c, o->tls) < 0) {
            net_conn_close(c);
            return;
        }
        /* Until the handshake ends the connection has no protocol; this timer is its only one. */
        wheel_arm(&loop->wheel, &c->timer,
                  uv_now(&loop->uv) + (uint64_t)(o->tls_handshake_timeout_s * 1000));
    } else {
        net_conn_secured(c);
    }
    if (c->closing || c->close_after_write)
        return;
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

net_conn_t *net_conn_fake(net_loop_t *loop,
                          void (*fake_write)(net_conn_t *c, const void *data, size_t len, void *ud),
                          void *ud)
{
    net_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    uv_tcp_init(&loop->uv, &c->tcp); /* never connected: only so that closing is the same */
    c->fake_write = fake_write;
    c->fake_ud = ud;
    adopt(loop, c);
    net_conn_secured(c);
    return c;
}

static void unlink_conn(net_conn_t *c)
{
    net_loop_t *loop = c->loop;
    if (c->prev)
        c->prev->next = c->next;
    else if (loop->conns == c)
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void on_closed(uv_handle_t *h)
{
    net_conn_t *c = (net_conn_t *)h;
    net_wqueue_free(c);
    net_tls_conn_free(c);
    net_conn_unref(c);
}

void net_conn_unref(net_conn_t *c)
{
    if (--c->refs > 0)
        return;
    net_loop_t *loop = c->loop;
    free(c);
    net_loop_conn_gone(loop);
}

void net_conn_close(net_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    wheel_disarm(&c->timer);
    unlink_conn(c);
    if (c->ip_held) {
        c->ip_held = 0;
        net_iplimit_release(net_group_opts(c->loop->group)->iplimit, c->ip);
    }
    if (c->loop->cork_conn == c)
        c->loop->cork.len = 0;
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void net_conn_close_after_write(net_conn_t *c)
{
    c->close_after_write = 1;
    if (c->reading && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    if (c->loop->cork_conn != c)
        finish_close_if_done(c);
}

void net_conn_wrote(net_conn_t *c)
{
    if (c->wq_head) {
        net_wqueue_flush(c);
        return;
    }
    if (c->close_after_write) {
        finish_close_if_done(c);
        return;
    }
    if (c->proto && c->proto->on_drained)
        c->proto->on_drained(c);
}

static void on_flush_check(uv_check_t *h)
{
    net_loop_t *loop = h->data;
    net_conn_t *c = loop->dirty;
    loop->dirty = NULL;
    uv_check_stop(h);
    while (c) {
        net_conn_t *next = c->dirty_next;
        c->dirty_next = NULL;
        c->dirty = 0;
        if (UNLIKELY(c->tls_rx)) { /* resumed with decrypted input waiting */
            c->tls_rx = 0;
            if (!c->closing && !c->paused) {
                net_tls_on_read(c, NULL, 0);
                finish_close_if_done(c);
            }
        }
        if (c->deferred) {
            c->deferred = 0;
            if (!c->closing && c->proto->on_deferred) {
                c->loop->cork_conn = c;
                c->proto->on_deferred(c);
                uncork(c);
                finish_close_if_done(c); /* as after on_data: its last answer may close */
            }
        }
        net_wqueue_flush(c);
        net_conn_unref(c);
        c = next;
    }
}

/* Puts c on the loop's list for the end-of-iteration pass (TLS input, on_deferred, flush). */
void net_conn_mark_dirty(net_conn_t *c)
{
    net_loop_t *loop = c->loop;
    if (c->dirty)
        return;
    c->dirty = 1;
    net_conn_ref(c); /* the flush list's */
    c->dirty_next = loop->dirty;
    loop->dirty = c;
    if (!uv_is_active((uv_handle_t *)&loop->flush_check)) {
        loop->flush_check.data = loop;
        uv_check_start(&loop->flush_check, on_flush_check);
    }
}

void net_conn_defer(net_conn_t *c)
{
    c->deferred = 1;
    net_conn_mark_dirty(c);
}

void net_conn_pause(net_conn_t *c)
{
    c->paused = 1;
    if (c->reading && !c->closing) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

void net_conn_resume(net_conn_t *c)
{
    c->paused = 0;
    if (!c->reading && !c->closing && !c->close_after_write && !c->lingering) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    /* Over TLS, records read before the pause may hold more requests: not from here (the
     * protocol is calling us), at the end of this iteration. */
    if (UNLIKELY(c->tls) && !c->closing && net_tls_has_input(c)) {
        c->tls_rx = 1;
        net_conn_mark_dirty(c);
    }
}

void net_conn_deadline(net_conn_t *c, uint64_t deadline_ms)
{
    if (!c->closing && !c->lingering)
        wheel_arm(&c->loop->wheel, &c->timer, deadline_ms);
}

void net_conn_expire(wheel_node_t *n, void *ud)
{
    net_conn_t *c = CONTAINER_OF(n, net_conn_t, timer);
    (void)ud;
    if (c->lingering)
        net_conn_close(c);
    else if (net_tls_handshaking(c) && !c->closing)
        net_tls_expire(c);
    else if (!c->closing && c->proto && c->proto->on_timeout)
        c->proto->on_timeout(c);
}
