/* Handlers that do not answer before they return: a blocking handler handed to the worker pool
 * and back, a loop handler that waits for a timer (roost_defer) or for another thread to resume
 * it (roost_req_wait, roost_req_resume). Each keeps the request and its connection alive until
 * it is back on the loop. Not the pipeline (session.c) and not the response (response.c). */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>

typedef struct http_defer {
    uv_timer_t timer;
    roost_req_t *req;
    roost_timer_fn fn;
    void *arg;
} http_defer_t;

static void run_loop_fn(roost_req_t *req, roost_resume_fn fn, void *arg)
{
    net_loop_t *loop = req->loop;
    atomic_store(&loop->running, req->route ? req->route->name : NULL);
    http_trace_enter(req);
    fn(req, arg);
    roost_trace_enter(NULL, NULL);
    atomic_store(&loop->running, NULL);
}

/* A loop handler returned: 500 if it gave no answer and nothing will resume it. */
static void loop_handler_returned(roost_req_t *req)
{
    if (http_req_phase(req) != HTTP_REQ_ON_LOOP)
        return; /* answered, streaming, or on a worker */
    if (atomic_load(&req->waits) > 0)
        http_req_set_phase(req, HTTP_REQ_WAITING);
    else
        roost_respond_error(req, 500, "The handler did not respond");
}

/* ---- waiting and resuming ---- */

int roost_req_wait(roost_req_t *req)
{
    if (http_req_phase(req) == HTTP_REQ_ON_WORKER)
        return -EINVAL;
    /* Only the first wait takes the loop-side references: later ones (any thread) ride on it. */
    if (atomic_fetch_add(&req->waits, 1) == 0) {
        req->refs++;
        net_conn_ref(req->conn);
    }
    return 0;
}

/* On the loop: one wait is over. The last one answers 500 if nothing did, ends a stream left
 * open, and lets go of the request. */
static void end_wait(roost_req_t *req)
{
    if (atomic_fetch_sub(&req->waits, 1) > 1) {
        if (http_req_phase(req) == HTTP_REQ_ON_LOOP)
            http_req_set_phase(req, HTTP_REQ_WAITING);
        return;
    }
    http_phase_t phase = http_req_phase(req);
    if (phase == HTTP_REQ_ON_LOOP || phase == HTTP_REQ_WAITING)
        roost_respond_error(req, 500, "The handler did not respond");
    else if (phase == HTTP_REQ_STREAMING)
        roost_stream_end(req);
    net_conn_t *conn = req->conn;
    http_req_unref(req);
    net_conn_unref(conn);
}

static void run_resumed(roost_req_t *req, roost_resume_fn fn, void *arg)
{
    if (fn) {
        if (http_req_phase(req) == HTTP_REQ_WAITING)
            http_req_set_phase(req, HTTP_REQ_ON_LOOP);
        run_loop_fn(req, fn, arg);
    }
    end_wait(req);
}

typedef struct {
    net_msg_t msg;
    roost_req_t *req;
    roost_resume_fn fn;
    void *arg;
} resume_t;

static void on_resume(net_loop_t *loop, net_msg_t *msg)
{
    resume_t *r = CONTAINER_OF(msg, resume_t, msg);
    roost_req_t *req = r->req;
    roost_resume_fn fn = r->fn;
    void *arg = r->arg;
    free(r);
    if (loop) /* a waiting request keeps its connection, and so its loop, alive */
        run_resumed(req, fn, arg);
}

void roost_req_resume(roost_req_t *req, roost_resume_fn fn, void *arg)
{
    resume_t *r = malloc(sizeof *r);
    if (!r) {
        /* Nothing to run it with: the request keeps waiting until its connection is forced. */
        log_error("roost_req_resume: out of memory; a reply is lost");
        return;
    }
    r->req = req;
    r->fn = fn;
    r->arg = arg;
    r->msg.fn = on_resume;
    net_loop_post(req->loop, &r->msg);
}

int roost_req_gone(const roost_req_t *req)
{
    return req->on_responded == NULL;
}

/* ---- roost_defer: a wait that a loop timer resumes ---- */

static void on_defer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_defer_fire(uv_timer_t *t)
{
    http_defer_t *d = t->data;
    d->req->defer = NULL;
    run_resumed(d->req, d->fn, d->arg);
    uv_close((uv_handle_t *)t, on_defer_closed);
}

void http_req_gone(roost_req_t *req)
{
    http_stream_drained(req); /* a producer waiting for room learns that the client left */
    http_sse_stop(req);
    if (req->defer)
        uv_timer_start(&req->defer->timer, on_defer_fire, 0, 0);
    void (*fn)(roost_req_t *, void *) = req->on_gone;
    req->on_gone = NULL;
    if (fn)
        fn(req, req->on_gone_arg);
}

void roost_defer(roost_req_t *req, uint64_t ms, roost_timer_fn fn, void *arg)
{
    http_defer_t *d = NULL;
    if (req->defer || http_req_phase(req) == HTTP_REQ_ON_WORKER || !(d = calloc(1, sizeof *d))) {
        roost_respond_error(req, 500, "roost_defer needs a loop handler");
        return;
    }
    d->req = req;
    d->fn = fn;
    d->arg = arg;
    uv_timer_init(&req->loop->uv, &d->timer);
    d->timer.data = d;
    req->defer = d;
    roost_req_wait(req);
    uv_timer_start(&d->timer, on_defer_fire, ms, 0);
}

/* ---- blocking handlers, on the pool ---- */

/* The request whose handler runs on this worker thread now: its stream calls go to the loop
 * (stream_worker.c). */
static _Thread_local roost_req_t *worker_req;

int http_on_worker(const roost_req_t *req)
{
    return worker_req == req;
}

/* On the loop: the worker handed the request back (the message queue orders its writes
 * before this read). */
static void on_worker_done(net_loop_t *loop, net_msg_t *msg)
{
    roost_req_t *req = CONTAINER_OF(msg, roost_req_t, msg);
    net_conn_t *conn = req->conn;
    if (!loop) { /* cannot happen while the request holds its connection; be safe */
        http_req_free(req);
        return;
    }
    http_wstream_free(req);
    if (req->streamed) {
        /* It streamed (stream_worker.c), and its stream is over: the wait the stream held for
         * the worker is over too. */
        if (http_req_phase(req) == HTTP_REQ_STREAMING)
            roost_stream_end(req);
        roost_req_resume(req, NULL, NULL);
    } else {
        atomic_store_explicit(&req->phase, HTTP_REQ_RESPONDED, memory_order_release);
        http_req_responded(req);
    }
    http_req_unref(req);
    net_conn_unref(conn);
}

static void worker_run(tpool_work_t *work)
{
    roost_req_t *req = CONTAINER_OF(work, roost_req_t, work);
    (void)atomic_load_explicit(&req->phase, memory_order_acquire);
    http_trace_enter(req);
    worker_req = req;
    req->route->fn(req, req->route->ud);
    if (req->wstream) /* a stream left open ends with the handler, its bytes all sent */
        http_worker_stream_end(req, 0);
    worker_req = NULL;
    roost_trace_enter(NULL, NULL);
    if (!req->status)
        roost_respond_error(req, 500, "The handler did not respond");
    req->msg.fn = on_worker_done;
    net_loop_post(req->loop, &req->msg);
}

void http_run_handler(roost_req_t *req)
{
    const route_t *route = req->route;
    if (route->flags & ROOST_BLOCKING) {
        req->refs++;
        net_conn_ref(req->conn);
        req->work.run = worker_run;
        /* The hand-off: from here the worker owns the request until on_worker_done. */
        atomic_store_explicit(&req->phase, HTTP_REQ_ON_WORKER, memory_order_release);
        if (tpool_submit(req->srv->pool, &req->work) < 0) {
            http_req_set_phase(req, HTTP_REQ_ON_LOOP);
            req->refs--;
            net_conn_unref(req->conn);
            http_count_limit(req->srv, "worker_queue");
            roost_res_header(req, "Retry-After", "1");
            roost_respond_error(req, 503, "Server busy: the worker queue is full");
        }
        return;
    }
    run_loop_fn(req, route->fn, route->ud);
    loop_handler_returned(req);
}
