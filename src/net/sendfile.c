/* A file's bytes in a connection's write queue: sendfile(2) from the page cache to the socket
 * (on libuv's threadpool, uv_queue_work, so a cold disk stalls a pool thread, never the loop),
 * and, when the socket is full, a wait for it to drain on the loop. Not the queue itself
 * (conn.c) and not what the file is (the caller opened it and closes it in done). */
#include "net/net.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <unistd.h>

/* At most this much per threadpool call: sendfile on a non-blocking socket stops at what the
 * socket buffer takes anyway; the bound keeps one call short when the buffer is huge. */
#define SEND_MAX ((uint64_t)1 << 30)

/* Not uv_fs_sendfile: on some errors (EINVAL, EIO) libuv falls back to reading the file into a
 * buffer and writing it with blocking polls on the pool thread; here an error is an error. */
struct net_file {
    uv_work_t work;
    ssize_t result; /* of the pool's sendfile: bytes, or -errno */
    uint64_t want;  /* what it was asked to send */
    uv_poll_t poll; /* writability of sock, while the socket buffer is full */
    net_conn_t *c;  /* NULL once the connection let go (closed) */
    /* A dup of the connection's socket. The threadpool's sendfile uses it, so that a close of
     * the connection while a call runs cannot let the number be reused by another socket (and
     * a file go to the wrong client); the poll uses it because libuv already watches the
     * original descriptor for reading, and epoll takes one watcher per descriptor. */
    int sock;
    int fd;
    uint64_t off, left;
    void (*done)(void *arg, int status);
    void *arg;
    unsigned fs_busy : 1, poll_init : 1;
};

static void file_free(net_file_t *f, int status)
{
    if (f->sock >= 0)
        close(f->sock);
    void (*done)(void *, int) = f->done;
    void *arg = f->arg;
    free(f);
    done(arg, status);
}

static void on_poll_closed(uv_handle_t *h)
{
    net_file_t *f = h->data;
    file_free(f, f->left ? -ECANCELED : 0);
}

/* Frees f now, or after its poll handle closed. */
static void finish(net_file_t *f)
{
    if (f->poll_init) {
        f->poll.data = f;
        uv_close((uv_handle_t *)&f->poll, on_poll_closed);
        return;
    }
    file_free(f, f->left ? -ECANCELED : 0);
}

void net_file_drop(net_file_t *f)
{
    f->c = NULL;
    if (!f->fs_busy) /* else on_sent frees it when the pool's call returns */
        finish(f);
}

static void send_now(net_file_t *f);

static void on_writable(uv_poll_t *p, int status, int events)
{
    net_file_t *f = p->data;
    (void)events;
    uv_poll_stop(p);
    if (!f->c)
        return;
    if (status < 0) {
        net_conn_close(f->c); /* drops the queue, and so f */
        return;
    }
    send_now(f);
}

static void wait_writable(net_file_t *f)
{
    net_loop_t *loop = f->c->loop;
    if (!f->poll_init) {
        if (uv_poll_init_socket(&loop->uv, &f->poll, f->sock) < 0) {
            net_conn_close(f->c);
            return;
        }
        f->poll_init = 1;
        f->poll.data = f;
    }
    if (uv_poll_start(&f->poll, UV_WRITABLE, on_writable) < 0)
        net_conn_close(f->c);
}

static void send_work(uv_work_t *w)
{
    net_file_t *f = CONTAINER_OF(w, net_file_t, work);
    HANDOFF_ACQUIRE(f);
    uint64_t n = f->want;
    off_t off = (off_t)f->off;
    ssize_t r;
    do
        r = sendfile(f->sock, f->fd, &off, (size_t)n);
    while (r < 0 && errno == EINTR);
    f->result = r < 0 ? (errno == EAGAIN ? UV_EAGAIN : -errno) : r;
    HANDOFF_RELEASE(f);
}

static void on_sent(uv_work_t *w, int status)
{
    net_file_t *f = CONTAINER_OF(w, net_file_t, work);
    HANDOFF_ACQUIRE(f);
    ssize_t r = status < 0 ? status : f->result;
    f->fs_busy = 0;
    net_conn_t *c = f->c;
    if (!c || c->closing) {
        if (!c)
            finish(f); /* the connection closed while the call ran */
        return;        /* else the close in progress drops the queue, and f with it */
    }
    if (r > 0) {
        f->off += (uint64_t)r;
        f->left -= (uint64_t)r;
        c->file_sent += (uint64_t)r;
    }
    if (f->left == 0) {
        net_conn_file_sent(c); /* takes the segment off the queue and goes on */
        finish(f);
        return;
    }
    if (r == UV_EAGAIN || (r > 0 && (uint64_t)r < f->want)) { /* the socket buffer is full */
        wait_writable(f);
        return;
    }
    if (r <= 0) { /* 0: the file is shorter than it was (truncated since its stat) */
        if (r < 0 && r != UV_EPIPE && r != UV_ECONNRESET)
            log_error("sendfile: %s", uv_strerror((int)r));
        net_conn_close(c);
        return;
    }
    send_now(f);
}

static void send_now(net_file_t *f)
{
    net_conn_t *c = f->c;
    f->want = f->left < SEND_MAX ? f->left : SEND_MAX;
    f->fs_busy = 1;
    HANDOFF_RELEASE(f);
    if (uv_queue_work(&c->loop->uv, &f->work, send_work, on_sent) < 0) {
        f->fs_busy = 0;
        net_conn_close(c);
    }
}

void net_file_send(net_conn_t *c, net_file_t *f)
{
    f->c = c;
    if (f->sock < 0) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0 || (f->sock = dup(fd)) < 0) {
            net_conn_close(c);
            return;
        }
    }
    send_now(f);
}

int net_conn_sendfile(net_conn_t *c, int fd, uint64_t off, uint64_t len,
                      void (*done)(void *arg, int status), void *arg)
{
    if (c->closing || c->fake_write) {
        done(arg, -EPIPE);
        return -EPIPE;
    }
    if (len == 0) {
        done(arg, 0);
        return 0;
    }
    net_file_t *f = calloc(1, sizeof *f);
    if (!f) {
        done(arg, -ENOMEM);
        net_conn_close(c);
        return -ENOMEM;
    }
    f->c = c;
    f->sock = -1;
    f->fd = fd;
    f->off = off;
    f->left = len;
    f->done = done;
    f->arg = arg;
    int rc = net_conn_queue_file(c, f, (size_t)len);
    if (rc < 0)
        net_conn_close(c);
    return rc;
}
