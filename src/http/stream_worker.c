/* Streams from a blocking handler. roost_stream_begin and roost_sse_start made on a worker run
 * on the request's loop while the worker waits (one hand-off). Writes do not wait for the loop:
 * they gather in the stream's pending bytes, and one message at a time tells the loop to take
 * them; the worker blocks only while the pending bytes are over --stream-max-unsent (the loop
 * takes none while the client is behind: backpressure, so memory stays bounded), and learns
 * there that the client left (-EPIPE). The end waits until every byte is in the stream. Not the
 * stream itself (stream.c). */
#include "http/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

/* One blocking handler's stream: made on the worker at begin, freed on the loop when the
 * handler has returned (handoff.c). The lock guards everything below it. */
struct http_wstream {
    net_msg_t msg; /* "take the pending bytes": posted only while `posted` is 0 */
    roost_req_t *req;
    size_t limit;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* the loop took bytes, finished, or failed */
    sbuf_t pending;
    uint8_t posted;   /* msg is on the loop's queue, or the loop waits for a drain */
    uint8_t ending;   /* 1: end, 2: abort, once every pending byte is in */
    uint8_t finished; /* the stream is over (ended, aborted, or failed) */
    int err;          /* -EPIPE once the client left, or the write's error */
};

/* ---- on the loop ---- */

static void take_pending(roost_req_t *req, void *arg);

/* Moves the pending bytes into the stream, then ends it if asked. Loop. */
static void take_pending(roost_req_t *req, void *arg)
{
    http_wstream_t *w = arg;
    pthread_mutex_lock(&w->lock);
    int rc = 0;
    if (w->pending.len && !w->finished) {
        rc = roost_stream_write(req, w->pending.p, w->pending.len);
        /* The client is behind: take them once it has read (or left: then -EPIPE). */
        if (rc == -EAGAIN && (rc = roost_stream_on_drain(req, take_pending, w)) == 0) {
            pthread_mutex_unlock(&w->lock);
            return; /* posted stays set: the drain takes the place of a message */
        }
        if (rc == 0)
            w->pending.len = 0;
    }
    w->posted = 0;
    if (rc < 0 && !w->finished) {
        w->err = rc == -EINVAL ? -EPIPE : rc; /* -EINVAL: a HEAD's stream, over at once */
        w->finished = 1;
        w->pending.len = 0;
    }
    if (w->ending && !w->finished) {
        if (w->ending == 2)
            roost_stream_abort(req);
        else
            roost_stream_end(req);
        w->finished = 1;
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void on_take(net_loop_t *loop, net_msg_t *msg)
{
    http_wstream_t *w = CONTAINER_OF(msg, http_wstream_t, msg);
    if (!loop) { /* cannot happen while the worker holds the request's connection */
        pthread_mutex_lock(&w->lock);
        w->err = -EPIPE;
        w->finished = 1;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return;
    }
    take_pending(w->req, w);
}

void http_wstream_free(roost_req_t *req)
{
    http_wstream_t *w = req->wstream;
    if (!w)
        return;
    req->wstream = NULL;
    sbuf_free(&w->pending);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* ---- the start: one call run on the loop while the worker waits ---- */

typedef struct {
    net_msg_t msg;
    roost_req_t *req;
    int status;
    const char *type; /* NULL: roost_sse_start */
    long retry_ms;
    double heartbeat_s;
    int rc, done; /* under the stream's lock, signalled on its cond */
} begin_t;

/* The stream starts as a loop handler's would. The request keeps one wait for as long as the
 * worker may write (ended when the handler returns: handoff.c), so that a drain's resume does
 * not end the stream under the worker. */
static void on_begin(net_loop_t *loop, net_msg_t *msg)
{
    begin_t *b = CONTAINER_OF(msg, begin_t, msg);
    roost_req_t *req = b->req;
    int rc = -EPIPE;
    if (loop) {
        http_req_set_phase(req, HTTP_REQ_ON_LOOP);
        rc = b->type ? roost_stream_begin(req, b->status, b->type)
                     : roost_sse_start(req, b->retry_ms, b->heartbeat_s);
        if (req->streamed)
            roost_req_wait(req);
        else
            http_req_set_phase(req, HTTP_REQ_ON_WORKER); /* refused: the worker still owns it */
    }
    http_wstream_t *w = req->wstream;
    pthread_mutex_lock(&w->lock);
    b->rc = rc;
    b->done = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static int begin_on_loop(roost_req_t *req, begin_t *b)
{
    if (req->wstream)
        return -EINVAL; /* begun already */
    http_wstream_t *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->req = req;
    w->limit = req->srv->cfg.http.stream_max_unsent;
    w->msg.fn = on_take;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    req->wstream = w; /* freed by the loop after the handler returned, streaming or not */
    b->req = req;
    b->msg.fn = on_begin;
    pthread_mutex_lock(&w->lock);
    net_loop_post(req->loop, &b->msg);
    while (!b->done)
        pthread_cond_wait(&w->cond, &w->lock);
    if (!req->streamed) /* refused (or an answer already): nothing to stream */
        w->finished = 1;
    pthread_mutex_unlock(&w->lock);
    return b->rc;
}

/* ---- on the worker ---- */

int http_worker_stream_begin(roost_req_t *req, int status, const char *content_type)
{
    begin_t b = {.status = status, .type = content_type ? content_type : ""};
    return begin_on_loop(req, &b);
}

int http_worker_sse_start(roost_req_t *req, long retry_ms, double heartbeat_s)
{
    begin_t b = {.retry_ms = retry_ms, .heartbeat_s = heartbeat_s};
    return begin_on_loop(req, &b);
}

/* Tells the loop there is something to do, unless it knows already. Under the lock. */
static void poke(http_wstream_t *w)
{
    if (w->posted)
        return;
    w->posted = 1;
    net_loop_post(w->req->loop, &w->msg);
}

int http_worker_stream_write(roost_req_t *req, const void *data, size_t len)
{
    http_wstream_t *w = req->wstream;
    if (!w)
        return -EINVAL;
    pthread_mutex_lock(&w->lock);
    while (!w->finished && !w->ending && w->pending.len >= w->limit)
        pthread_cond_wait(&w->cond, &w->lock); /* backpressure: the client is behind */
    int rc = w->finished ? (w->err ? w->err : -EINVAL) : w->ending ? -EINVAL : 0;
    if (rc == 0 && sbuf_append(&w->pending, data, len) < 0)
        rc = -ENOMEM;
    if (rc == 0)
        poke(w);
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void http_worker_stream_end(roost_req_t *req, int abort)
{
    http_wstream_t *w = req->wstream;
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    if (!w->finished) {
        if (!w->ending)
            w->ending = abort ? 2 : 1;
        poke(w);
        while (!w->finished)
            pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
}
