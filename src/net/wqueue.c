/* The write queue of a connection: slices that try to go out at once (uv_try_write) and are
 * only queued, copied or referenced, when the socket is full; shared buffers written without a
 * copy; files through sendfile.c; what a slow reader has not taken yet. Writes made while the
 * connection's on_data runs are gathered (corked) by conn.c into one write. */
#include "net/net.h"

#include <stdlib.h>
#include <string.h>

struct net_wseg {
    net_wseg_t *next;
    rbuf_t *buf;
    const char *ptr;
    size_t len;       /* for a file: the bytes still to send */
    net_file_t *file; /* a file's bytes (sendfile.c) instead of ptr, or NULL */
};

#define MAX_IOVS 16
/* Slices kept per loop. A fan-out queues one slice per member and frees them all when the
 * writes complete: glibc's per-thread cache keeps 7 of a size, so a 5,000-member burst went to
 * malloc's slow paths (~230 instructions a delivery, bench/core/fanout-instr.sh). 8,192 slices
 * are 320 KiB a loop at most. */
#define WSEG_KEEP 8192

static net_wseg_t *wseg_new(net_loop_t *loop)
{
    net_wseg_t *w = loop->wseg_free;
    if (!w)
        return malloc(sizeof *w);
    loop->wseg_free = w->next;
    loop->wseg_nfree--;
    return w;
}

static void wseg_free(net_loop_t *loop, net_wseg_t *w)
{
    if (loop->wseg_nfree >= WSEG_KEEP) {
        free(w);
        return;
    }
    w->next = loop->wseg_free;
    loop->wseg_free = w;
    loop->wseg_nfree++;
}

void net_loop_wsegs_free(net_loop_t *loop)
{
    while (loop->wseg_free) {
        net_wseg_t *w = loop->wseg_free;
        loop->wseg_free = w->next;
        free(w);
    }
    loop->wseg_nfree = 0;
}

void net_wqueue_free(net_conn_t *c)
{
    net_wseg_t *w = c->wq_head;
    while (w) {
        net_wseg_t *next = w->next;
        if (w->file)
            net_file_drop(w->file);
        rbuf_unref(w->buf);
        wseg_free(c->loop, w);
        w = next;
    }
    c->wq_head = c->wq_tail = NULL;
    c->wq_bytes = 0;
}

static void on_write(uv_write_t *req, int status)
{
    net_conn_t *c = CONTAINER_OF(req, net_conn_t, wreq);
    net_loop_event(c->loop);
    for (unsigned i = 0; i < c->wsegs_inflight && c->wq_head; i++) {
        net_wseg_t *w = c->wq_head;
        c->wq_head = w->next;
        c->wq_bytes -= w->len;
        rbuf_unref(w->buf);
        wseg_free(c->loop, w);
    }
    if (!c->wq_head)
        c->wq_tail = NULL;
    c->wsegs_inflight = 0;
    c->inflight_bytes = 0;
    if (c->closing)
        return;
    if (status < 0) {
        net_conn_close(c);
        return;
    }
    net_conn_wrote(c);
}

void net_conn_file_sent(net_conn_t *c)
{
    net_wseg_t *w = c->wq_head;
    c->wq_head = w->next;
    if (!c->wq_head)
        c->wq_tail = NULL;
    c->wq_bytes -= w->len;
    c->file_busy = 0;
    wseg_free(c->loop, w);
    net_conn_wrote(c);
}

void net_wqueue_flush(net_conn_t *c)
{
    if (UNLIKELY(c->tls) && !c->closing)
        net_tls_push(c, 0); /* what was encrypted this iteration joins the queue */
    if (c->wsegs_inflight || c->file_busy || !c->wq_head || c->closing)
        return;
    if (c->wq_head->file) {
        c->file_busy = 1;
        net_file_send(c, c->wq_head->file);
        return;
    }
    uv_buf_t bufs[MAX_IOVS];
    unsigned n = 0;
    size_t bytes = 0;
    for (net_wseg_t *w = c->wq_head; w && n < MAX_IOVS && !w->file; w = w->next, n++) {
        bufs[n] = uv_buf_init((char *)w->ptr, (unsigned)w->len);
        bytes += w->len;
    }
    c->wsegs_inflight = n;
    c->inflight_bytes = bytes;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_write) < 0) {
        c->wsegs_inflight = 0;
        c->inflight_bytes = 0;
        net_conn_close(c);
    }
}

static int enqueue(net_conn_t *c, rbuf_t *b, const char *ptr, size_t len)
{
    net_wseg_t *w = wseg_new(c->loop);
    if (!w) {
        rbuf_unref(b);
        net_conn_close(c);
        return -ENOMEM;
    }
    *w = (net_wseg_t){.buf = b, .ptr = ptr, .len = len};
    LIST_APPEND(c->wq_head, c->wq_tail, w, next);
    c->wq_bytes += len;
    return 0;
}

/* Tries the socket first; returns how many bytes went out, or a negative code (closed). */
static ssize_t try_now(net_conn_t *c, const char *data, size_t len)
{
    if (UNLIKELY(c->tls)) { /* encrypted now: the ciphertext is what gets queued */
        if (net_tls_write(c, data, len) < 0 || net_tls_push(c, 1) < 0)
            return -EPIPE;
        return (ssize_t)len;
    }
    if (c->wq_head)
        return 0;
    if (c->fake_write) {
        c->fake_write(c, data, len, c->fake_ud);
        return (ssize_t)len;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        return 0;
    if (n < 0) {
        net_conn_close(c);
        return n;
    }
    return n;
}

int net_conn_send_raw(net_conn_t *c, const char *data, size_t len, int now)
{
    if (c->closing)
        return -EPIPE;
    size_t n = 0;
    if (now && !c->wq_head) {
        if (c->fake_write) {
            c->fake_write(c, data, len, c->fake_ud);
            return 0;
        }
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (rc < 0 && rc != UV_EAGAIN) {
            net_conn_close(c);
            return rc;
        }
        n = rc > 0 ? (size_t)rc : 0;
        if (n == len)
            return 0;
    }
    rbuf_t *b = rbuf_from(data + n, len - n);
    if (!b) {
        net_conn_close(c);
        return -ENOMEM;
    }
    int rc = enqueue(c, b, b->data, b->len);
    if (now && rc == 0)
        net_wqueue_flush(c);
    return rc;
}

int net_conn_write(net_conn_t *c, const void *data, size_t len)
{
    if (c->closing)
        return -EPIPE;
    if (!len)
        return 0;
    net_loop_t *loop = c->loop;
    if (loop->cork_conn == c)
        return sbuf_append(&loop->cork, data, len);
    ssize_t n = try_now(c, data, len);
    if (n < 0)
        return (int)n;
    if ((size_t)n == len)
        return 0;
    rbuf_t *b = rbuf_from((const char *)data + n, len - (size_t)n);
    if (!b) {
        net_conn_close(c);
        return -ENOMEM;
    }
    int rc = enqueue(c, b, b->data, b->len);
    net_wqueue_flush(c);
    return rc;
}

/* Before bytes that skip the gathering: what was gathered for c during its on_data goes into
 * the queue first, so the order holds (over TLS, encrypted into the output the flush sends).
 * -EPIPE: c is closing, nothing may be written. */
static int spill_cork(net_conn_t *c)
{
    if (c->closing)
        return -EPIPE;
    net_loop_t *loop = c->loop;
    if (loop->cork_conn != c || !loop->cork.len)
        return 0;
    size_t clen = loop->cork.len;
    loop->cork.len = 0;
    if (UNLIKELY(c->tls))
        return net_tls_write(c, loop->cork.p, clen) < 0 ? -EPIPE : 0;
    rbuf_t *cb = rbuf_from(loop->cork.p, clen);
    if (!cb)
        return -ENOMEM;
    return enqueue(c, cb, cb->data, clen);
}

int net_conn_write_rbuf(net_conn_t *c, rbuf_t *b, size_t off, size_t len)
{
    int rc = spill_cork(c);
    if (rc < 0)
        return rc;
    ssize_t n = try_now(c, b->data + off, len);
    if (n < 0)
        return (int)n;
    if ((size_t)n == len)
        return 0;
    rc = enqueue(c, rbuf_ref(b), b->data + off + n, len - (size_t)n);
    net_wqueue_flush(c);
    return rc;
}

int net_conn_queue_rbuf(net_conn_t *c, rbuf_t *b, size_t off, size_t len)
{
    int rc = spill_cork(c);
    if (rc < 0)
        return rc;
    /* Over TLS the slice is encrypted now into the connection's output buffer, which the
     * end-of-iteration flush sends with everything else encrypted meanwhile. */
    rc = UNLIKELY(c->tls) ? net_tls_write(c, b->data + off, len)
                          : enqueue(c, rbuf_ref(b), b->data + off, len);
    if (rc < 0)
        return rc;
    net_conn_mark_dirty(c);
    return 0;
}

int net_conn_queue_file(net_conn_t *c, net_file_t *f, size_t len)
{
    int rc = spill_cork(c);
    if (rc == 0)
        rc = enqueue(c, NULL, NULL, len);
    if (rc < 0) {
        net_file_drop(f);
        return rc;
    }
    c->wq_tail->file = f;
    net_wqueue_flush(c);
    return 0;
}

size_t net_conn_unsent(net_conn_t *c)
{
    net_wqueue_flush(c); /* libuv writes at once what the socket takes */
    size_t waiting = c->wq_bytes - c->inflight_bytes + net_tls_pending(c);
    return waiting + uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

size_t net_conn_pending(const net_conn_t *c)
{
    return c->wq_bytes + (c->loop->cork_conn == c ? c->loop->cork.len : 0);
}

size_t net_conn_queued_behind_head(const net_conn_t *c)
{
    return (c->wq_head ? c->wq_bytes - c->wq_head->len : 0) + net_tls_pending(c);
}

size_t net_conn_unsent_behind_head(net_conn_t *c)
{
    size_t unsent = net_conn_unsent(c);
    size_t head = c->wq_head ? c->wq_head->len : 0;
    return unsent > head ? unsent - head : 0;
}

void net_conn_drop_queued(net_conn_t *c)
{
    if (c->tls)
        return; /* ciphertext cannot lose a record in the middle of the stream */
    net_wseg_t **p = &c->wq_head, *keep_tail = NULL;
    for (unsigned i = 0; i < c->wsegs_inflight + c->file_busy && *p; i++) {
        keep_tail = *p;
        p = &(*p)->next;
    }
    net_wseg_t *w = *p;
    *p = NULL;
    c->wq_tail = keep_tail;
    while (w) {
        net_wseg_t *next = w->next;
        c->wq_bytes -= w->len;
        if (w->file)
            net_file_drop(w->file);
        rbuf_unref(w->buf);
        wseg_free(c->loop, w);
        w = next;
    }
}
