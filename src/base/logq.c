/* A buffered log writer: callers (the loops) append whole lines to a bounded buffer under a
 * short lock and return; one thread writes the buffer out to a file descriptor. When the buffer
 * is full the line is dropped and counted, so a slow disk or a blocked stderr never holds a loop
 * back. Not the formatting of lines (mw/access_log.c) nor roost_log (util.c, written at once). */
#include "base/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct logq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    char *buf, *spare; /* lines waiting; the writer's buffer while it writes */
    size_t len, cap;
    int fd, stop;
    atomic_long dropped, written;
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void *writer(void *arg)
{
    logq_t *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->len && !q->stop)
            pthread_cond_wait(&q->cond, &q->lock);
        if (!q->len && q->stop)
            break;
        /* Swap: callers fill the other buffer while this one is written. */
        char *full = q->buf;
        size_t n = q->len;
        q->buf = q->spare;
        q->spare = full;
        q->len = 0;
        pthread_mutex_unlock(&q->lock);
        write_all(q->fd, full, n);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

logq_t *logq_new(int fd, size_t cap)
{
    logq_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->buf = malloc(cap);
    q->spare = malloc(cap);
    q->cap = cap;
    q->fd = fd;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    if (!q->buf || !q->spare || pthread_create(&q->thread, NULL, writer, q) != 0) {
        free(q->buf);
        free(q->spare);
        free(q);
        return NULL;
    }
    return q;
}

int logq_write(logq_t *q, const char *line, size_t n)
{
    pthread_mutex_lock(&q->lock);
    if (q->len + n > q->cap) {
        pthread_mutex_unlock(&q->lock);
        atomic_fetch_add_explicit(&q->dropped, 1, memory_order_relaxed);
        return -ENOBUFS;
    }
    memcpy(q->buf + q->len, line, n);
    int wake = q->len == 0;
    q->len += n;
    if (wake)
        pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    atomic_fetch_add_explicit(&q->written, 1, memory_order_relaxed);
    return 0;
}

long logq_dropped(const logq_t *q)
{
    return atomic_load_explicit(&((logq_t *)q)->dropped, memory_order_relaxed);
}

long logq_lines(const logq_t *q)
{
    return atomic_load_explicit(&((logq_t *)q)->written, memory_order_relaxed);
}

/* Writes what is buffered, then ends the thread and frees q. */
void logq_free(logq_t *q)
{
    if (!q)
        return;
    thread_stop_join(q->thread, &q->lock, &q->cond, &q->stop);
    free(q->buf);
    free(q->spare);
    free(q);
}
