/* Streamed responses: roost_stream_begin/write/end/abort on the loop (a blocking handler's
 * calls are carried there by stream_worker.c), each piece through the
 * on_body filters into the request's out bytes (chunked on HTTP/1.1, close-delimited on 1.0);
 * backpressure (a write refused while too much is unsent, a drain callback to go on); and the
 * session's side, http_stream_out, that writes a stream's head once and then its pieces when
 * the stream is at the head of the pipeline. Not whole responses (response.c). */
#include "http/http.h"

#include <errno.h>
#include <string.h>

int roost_stream_begin(roost_req_t *req, int status, const char *content_type)
{
    if (http_on_worker(req))
        return http_worker_stream_begin(req, status, content_type);
    http_phase_t phase = http_req_phase(req);
    if (req->status || (phase != HTTP_REQ_ON_LOOP && phase != HTTP_REQ_WAITING))
        return -EINVAL; /* answered already, or on a worker */
    req->status = status;
    req->res_type =
        content_type ? arena_strndup(&req->arena, content_type, strlen(content_type)) : NULL;
    req->res_body.len = 0;
    req->streamed = 1;
    if (!req->mw)
        http_mw_chain(req, http_server(req->srv), NULL);
    http_mw_headers(req);
    /* HEAD (and a bodyless status) gets the head only: the stream is over at once, and writes
     * fail (-EINVAL), so that the producer stops instead of making bytes nobody may send. */
    int bodyless = req->method == HTTP_HEAD || status < 200 || status == 204 || status == 304;
    http_req_set_phase(req, bodyless ? HTTP_REQ_RESPONDED : HTTP_REQ_STREAMING);
    http_req_responded(req);
    return 0;
}

int roost_stream_write(roost_req_t *req, const void *data, size_t len)
{
    if (http_on_worker(req))
        return len ? http_worker_stream_write(req, data, len) : 0;
    if (!req->streamed || http_req_phase(req) != HTTP_REQ_STREAMING)
        return -EINVAL;
    if (roost_req_gone(req))
        return -EPIPE;
    if (!len)
        return 0;
    /* The cheap bound first; the exact count (which starts a write) only when it is over. */
    size_t max = req->srv->cfg.http.stream_max_unsent, ahead = req->res_body.len;
    if (ahead + net_conn_pending(req->conn) > max &&
        ahead + net_conn_pending(req->conn) - req->conn->wq_bytes + net_conn_unsent(req->conn) >
            max) {
        roost_counter_add(http_server(req->srv)->c_stream_paused, 1);
        return -EAGAIN;
    }
    int rc = http_mw_stream(req, data, len, 0);
    if (rc < 0)
        return rc;
    http_req_responded(req);
    return 0;
}

/* The one ending of a stream, on the request's loop: a whole one sends its last chunk; an
 * aborted one closes the connection instead, so the client must not take the body for whole. */
static void stream_finish(roost_req_t *req, int aborted)
{
    if (http_on_worker(req)) {
        http_worker_stream_end(req, aborted);
        return;
    }
    if (!req->streamed || http_req_phase(req) != HTTP_REQ_STREAMING)
        return;
    http_sse_stop(req);
    if (aborted)
        req->close_after = 1;
    else if (http_mw_stream(req, NULL, 0, 1) < 0)
        log_error("%s: a stream's end was lost (out of memory)",
                  req->route ? req->route->name : "?");
    http_req_set_phase(req, HTTP_REQ_RESPONDED);
    http_req_responded(req);
}

void roost_stream_end(roost_req_t *req)
{
    stream_finish(req, 0);
}

void roost_stream_abort(roost_req_t *req)
{
    stream_finish(req, 1);
}

/* A pending drain callback may go on when the backlog is down to half the limit. Bytes gathered
 * during on_data do not count: they reach the socket when on_data returns, before the callback
 * (posted to the loop) runs. Without this check, a backlog the kernel took at once would never
 * make the queue go from full to empty, and the producer would wait forever. */
static void stream_maybe_drained(roost_req_t *req)
{
    if (!req->drain_fn)
        return;
    if (roost_req_gone(req) ||
        (req->stream_head && req->res_body.len + net_conn_unsent(req->conn) <=
                                 req->srv->cfg.http.stream_max_unsent / 2))
        http_stream_drained(req);
}

int roost_stream_on_drain(roost_req_t *req, roost_resume_fn fn, void *arg)
{
    if (http_on_worker(req))
        return -EINVAL; /* a worker's writes wait for the drain themselves */
    if (!req->streamed || http_req_phase(req) != HTTP_REQ_STREAMING)
        return -EINVAL;
    if (req->drain_fn)
        return -EBUSY;
    roost_req_wait(req);
    req->drain_fn = fn;
    req->drain_arg = arg;
    stream_maybe_drained(req);
    return 0;
}

void http_stream_drained(roost_req_t *req)
{
    roost_resume_fn fn = req->drain_fn;
    if (!fn)
        return;
    req->drain_fn = NULL;
    /* Through the loop's queue, not from here: the writer or the session is on the stack. */
    roost_req_resume(req, fn, req->drain_arg);
}

int http_stream_out(roost_req_t *req, net_conn_t *c, sbuf_t *scratch, const char *date)
{
    if (!req->stream_head) {
        scratch->len = 0;
        http_serialize(req, date, scratch);
        net_conn_write(c, scratch->p, scratch->len);
        req->stream_head = 1;
    }
    if (req->res_body.len) {
        net_conn_write(c, req->res_body.p, req->res_body.len);
        req->res_body.len = 0;
    }
    stream_maybe_drained(req);
    if (http_req_phase(req) != HTTP_REQ_RESPONDED)
        return 0;
    http_req_set_phase(req, HTTP_REQ_WRITTEN);
    return 1;
}
