/* roost_fetch and roost_fetch_all: a call started for a request, on the request's loop. A loop
 * handler gets its callback on the loop and answers there; a blocking handler waits on its
 * worker (the call itself still runs on the loop) and gets its callback on the worker. */
#include "core/core.h"
#include "fetch/fetch.h"
#include "http/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *roost_fetch_error_name(roost_fetch_error_t e)
{
    static const char *const names[] = {
        [ROOST_FETCH_OK] = "ok",
        [ROOST_FETCH_CONNECT] = "connect",
        [ROOST_FETCH_TIMEOUT] = "timeout",
        [ROOST_FETCH_TOO_LARGE] = "too_large",
        [ROOST_FETCH_POOL_FULL] = "pool_full",
        [ROOST_FETCH_CIRCUIT_OPEN] = "circuit_open",
        [ROOST_FETCH_RESET] = "reset",
        [ROOST_FETCH_CANCELLED] = "cancelled",
        [ROOST_FETCH_INVALID] = "invalid",
    };
    return (unsigned)e < ARRAY_LEN(names) ? names[e] : "unknown";
}

int roost_fetch_error_status(roost_fetch_error_t e)
{
    switch (e) {
    case ROOST_FETCH_OK:
        return 200;
    case ROOST_FETCH_TIMEOUT:
        return 504;
    case ROOST_FETCH_POOL_FULL:
    case ROOST_FETCH_CIRCUIT_OPEN:
    case ROOST_FETCH_CANCELLED:
        return 503;
    case ROOST_FETCH_INVALID:
        return 404;
    default:
        return 502;
    }
}

static void server_free(void *ctx)
{
    fetch_free(ctx);
}

/* Each loop's curl multi is made on the loop thread before it runs, and closed when the loop
 * has ended its connections. */
static void *loop_init(net_loop_t *loop, roost_server_t *srv);
static void loop_free(net_loop_t *loop, void *ctx)
{
    fetch_loop_close(ctx);
}

static CORE_SLOT_FN(fetch_slot, .name = "fetch", .server_free = server_free, .loop_init = loop_init,
                    .loop_free = loop_free)

fetch_t *fetch_of(roost_server_t *srv)
{
    return core_server_ctx(srv, fetch_slot());
}

static void *loop_init(net_loop_t *loop, roost_server_t *srv)
{
    fetch_t *f = fetch_of(srv);
    return f ? fetch_loop_new(f, loop) : NULL;
}

fetch_loop_t *fetch_loop_of(net_loop_t *loop)
{
    return loop ? core_loop_ctx(loop, fetch_slot()) : NULL;
}

static void metrics(void *ud, sbuf_t *out)
{
    fetch_metrics(ud, out);
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT); /* not thread-safe: before the loops start */
}

int roost_fetch_init(roost_server_t *srv)
{
    if (fetch_of(srv))
        return 0;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    const roost_config_t *cfg = roost_server_config(srv);
    fetch_t *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    f->srv = srv;
    f->nloops = cfg->net.threads > 0 ? cfg->net.threads : 1;
    for (int i = 0; i < cfg->fetch.upstream.n; i++) {
        int rc = fetch_upstream_parse(f, cfg->fetch.upstream.v[i]);
        if (rc < 0) {
            fetch_free(f);
            return rc;
        }
    }
    core_service_t svc = {.name = "fetch", .metrics = metrics, .ud = f};
    if (core_service_add(srv, &svc) < 0) {
        fetch_free(f);
        return -ENOMEM;
    }
    core_server_ctx_set(srv, fetch_slot(), f);
    return 0;
}

const char *roost_fetch_upstream(roost_server_t *srv, int i)
{
    fetch_t *f = fetch_of(srv);
    return f && i >= 0 && i < f->nupstreams ? f->up[i].name : NULL;
}

static int on_loop_thread(const roost_req_t *req)
{
    return pthread_equal(pthread_self(), req->loop->thread);
}

/* ---- kept results: what a callback got, copied out of the call (the body shared) ---- */

typedef struct {
    roost_fetch_result_t res;
    rbuf_t *body;
    char *text; /* headers, then content type, then the error text, NUL after each */
} kept_t;

static void keep(kept_t *k, const roost_fetch_result_t *res, rbuf_t *body)
{
    k->res = *res;
    k->body = body ? rbuf_ref(body) : NULL;
    size_t hl = res->headers.len, cl = res->content_type.len, el = strlen(res->error_text);
    k->text = malloc(hl + cl + el + 3);
    if (!k->text) { /* keep the outcome, lose the details */
        k->res.headers = k->res.content_type = str_make("", 0);
        k->res.error_text = "";
        return;
    }
    if (hl)
        memcpy(k->text, res->headers.ptr, hl);
    k->text[hl] = 0;
    if (cl)
        memcpy(k->text + hl + 1, res->content_type.ptr, cl);
    k->text[hl + 1 + cl] = 0;
    memcpy(k->text + hl + cl + 2, res->error_text, el + 1);
    k->res.headers = str_make(k->text, hl);
    k->res.content_type = cl ? str_make(k->text + hl + 1, cl) : str_make(NULL, 0);
    k->res.error_text = k->text + hl + cl + 2;
    k->res.body = body ? str_make(body->data, body->len) : str_make("", 0);
}

static void unkeep(kept_t *k)
{
    rbuf_unref(k->body);
    free(k->text);
}

/* ---- one or many calls for a request ----
 * A batch is roost_fetch (n = 1) or roost_fetch_all: the options deep-copied (calls that wait
 * for their turn start after the handler returned), the results kept in order. */

typedef struct {
    roost_fetch_opts_t opts;
    char *strings; /* every string of opts, in one block */
    const char **headers;
} call_spec_t;

typedef struct batch batch_t;
typedef struct {
    batch_t *b;
    fetch_call_t *call; /* while it runs */
} slot_t;

struct batch {
    roost_req_t *req;
    fetch_loop_t *fl;
    size_t n, next, running, finished;
    size_t concurrency;
    call_spec_t *specs;
    kept_t *results;
    slot_t *slots;
    roost_fetch_done_fn done_one;
    roost_fetch_all_fn done_all;
    void *arg;
    uint64_t start_ns; /* wall: the client spans' start (one for the batch) */
    /* a blocking handler waits on its worker for the whole batch */
    int blocking, complete;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    net_msg_t msg;
};

static char *copy_str(char **dst, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*dst, s, n);
    char *r = *dst;
    *dst += n;
    return r;
}

/* The caller's traceparent, else one naming a new span of the request's trace (or the trace
 * this thread works for, in a job), so the upstream's spans join the request's trace. */
static const char *pass_trace(roost_req_t *req, const roost_fetch_opts_t *o, char tp[56])
{
    if (o->traceparent && *o->traceparent)
        return o->traceparent;
    const char *trace = req ? roost_req_trace_id(req) : NULL;
    if (!trace)
        trace = roost_trace_current();
    if (!trace)
        return NULL;
    char span[17];
    roost_span_new_id(span);
    snprintf(tp, 56, "00-%s-%s-01", trace, span);
    return tp;
}

static int spec_copy(call_spec_t *d, const roost_fetch_opts_t *o)
{
    size_t need = 0, nh = 0;
    const char *strs[] = {o->method, o->upstream, o->url, o->traceparent};
    for (size_t i = 0; i < ARRAY_LEN(strs); i++)
        need += strs[i] ? strlen(strs[i]) + 1 : 0;
    for (const char *const *h = o->headers; h && *h; h++, nh++)
        need += strlen(*h) + 1;
    need += o->body_len;
    d->opts = *o;
    d->strings = malloc(need + 1);
    d->headers = nh ? calloc(nh + 1, sizeof *d->headers) : NULL;
    if (!d->strings || (nh && !d->headers))
        return -ENOMEM;
    char *p = d->strings;
    d->opts.method = copy_str(&p, o->method);
    d->opts.upstream = copy_str(&p, o->upstream);
    d->opts.url = copy_str(&p, o->url);
    d->opts.traceparent = copy_str(&p, o->traceparent);
    for (size_t i = 0; i < nh; i++)
        d->headers[i] = copy_str(&p, o->headers[i]);
    d->opts.headers = nh ? (const char *const *)d->headers : NULL;
    if (o->body_len) {
        memcpy(p, o->body, o->body_len);
        d->opts.body = p;
    }
    return 0;
}

static void batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->specs) {
            free(b->specs[i].strings);
            free(b->specs[i].headers);
        }
        if (b->results)
            unkeep(&b->results[i]);
    }
    free(b->specs);
    free(b->results);
    free(b->slots);
    if (b->blocking) {
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->cond);
    }
    free(b);
}

static batch_t *batch_new(roost_req_t *req, const roost_fetch_opts_t *calls, size_t n,
                          size_t concurrency)
{
    batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->req = req;
    b->start_ns = time_wall_ns();
    b->n = n;
    b->concurrency = concurrency && concurrency < n ? concurrency : n;
    b->specs = calloc(n, sizeof *b->specs);
    b->results = calloc(n, sizeof *b->results);
    b->slots = calloc(n, sizeof *b->slots);
    if (!b->specs || !b->results || !b->slots) {
        batch_free(b);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        b->slots[i].b = b;
        char tp[56];
        roost_fetch_opts_t o = calls[i];
        o.traceparent = pass_trace(req, &calls[i], tp);
        if (spec_copy(&b->specs[i], &o) < 0) {
            batch_free(b);
            return NULL;
        }
    }
    return b;
}

/* Each call as a client span of the trace it passed on (its traceparent names the span). */
static void client_spans(batch_t *b)
{
    uint64_t end = time_wall_ns();
    for (size_t i = 0; i < b->n; i++) {
        const roost_fetch_opts_t *o = &b->specs[i].opts;
        char trace[33], span[17], status[8];
        uint8_t flags;
        if (!o->traceparent ||
            roost_traceparent_parse(o->traceparent, strlen(o->traceparent), trace, span, &flags))
            continue;
        const roost_fetch_result_t *r = &b->results[i].res;
        snprintf(status, sizeof status, "%d", r->status);
        roost_span_t sp = {.name = "upstream call",
                           .trace_id = trace,
                           .span_id = span,
                           .parent_span_id = b->req ? roost_req_span_id(b->req) : NULL,
                           .kind = ROOST_SPAN_CLIENT,
                           .start_ns = b->start_ns,
                           .end_ns = end,
                           .error = r->error != ROOST_FETCH_OK,
                           .attrs = {{"upstream", o->upstream ? o->upstream : "url"},
                                     {"url.path", o->url ? o->url : ""},
                                     {"http.response.status_code", status}}};
        roost_span_emit(&sp);
    }
}

/* The batch is complete: a loop handler's callback answers on the loop; a blocking handler's
 * worker is woken and calls it there. */
static void deliver(batch_t *b)
{
    if (roost_span_enabled())
        client_spans(b);
    if (b->done_one) {
        b->done_one(b->req, &b->results[0].res, b->arg);
        return;
    }
    roost_fetch_result_t *rs = malloc(b->n * sizeof *rs);
    if (!rs) {
        roost_respond_error(b->req, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        rs[i] = b->results[i].res;
    b->done_all(b->req, rs, b->n, b->arg);
    free(rs);
}

static void on_resumed(roost_req_t *req, void *arg)
{
    batch_t *b = arg;
    deliver(b);
    batch_free(b);
}

static void batch_complete(batch_t *b)
{
    if (b->blocking) {
        pthread_mutex_lock(&b->lock);
        b->complete = 1;
        pthread_cond_signal(&b->cond);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    b->req->on_gone = NULL;
    roost_req_resume(b->req, on_resumed, b); /* answers on the loop, then the wait ends */
}

/* The client left: calls not started yet end as cancelled, running and waiting ones are
 * cancelled (each reports to on_call_done); the batch then completes, its answer dropped. The
 * batch outlives this: it is freed by the resume that completing it posts. */
static void on_client_gone(roost_req_t *req, void *arg)
{
    batch_t *b = arg;
    while (b->next < b->n) {
        size_t i = b->next++;
        b->results[i].res = (roost_fetch_result_t){.error = ROOST_FETCH_CANCELLED,
                                                   .error_text = "the client went away"};
        b->finished++;
    }
    if (b->finished == b->n) {
        batch_complete(b);
        return;
    }
    for (size_t i = 0; i < b->n; i++)
        if (b->slots[i].call)
            fetch_call_cancel(b->slots[i].call);
}

/* On the loop: the request waits for the batch, whose calls the client's leaving cancels (until
 * batch_complete). */
static void batch_wait(batch_t *b)
{
    roost_req_wait(b->req);
    b->req->on_gone = on_client_gone;
    b->req->on_gone_arg = b;
}

static void batch_start_next(batch_t *b);

static void on_call_done(const roost_fetch_result_t *res, rbuf_t *body, void *arg)
{
    slot_t *s = arg;
    batch_t *b = s->b;
    keep(&b->results[s - b->slots], res, body);
    s->call = NULL;
    b->running--;
    b->finished++;
    if (b->finished == b->n)
        batch_complete(b);
    else
        batch_start_next(b);
}

static void batch_start_next(batch_t *b)
{
    while (b->next < b->n && b->running < b->concurrency) {
        size_t i = b->next++;
        b->running++;
        b->slots[i].call = fetch_call_start(b->fl, &b->specs[i].opts, on_call_done, &b->slots[i]);
        if (!b->slots[i].call) { /* out of memory: this one fails, the rest go on */
            roost_fetch_result_t res = {.error = ROOST_FETCH_INVALID,
                                        .error_text = "out of memory"};
            on_call_done(&res, NULL, &b->slots[i]);
            return; /* on_call_done started the next ones */
        }
    }
}

/* On the request's loop: a blocking handler's batch starts here. */
static void on_start_msg(net_loop_t *loop, net_msg_t *msg)
{
    batch_t *b = CONTAINER_OF(msg, batch_t, msg);
    b->fl = fetch_loop_of(loop);
    if (!b->fl) {
        for (size_t i = 0; i < b->n; i++)
            b->results[i].res = (roost_fetch_result_t){.error = ROOST_FETCH_CANCELLED,
                                                       .error_text = "the server is stopping"};
        b->finished = b->n;
        batch_complete(b);
        return;
    }
    batch_start_next(b);
}

static int batch_run(batch_t *b)
{
    roost_req_t *req = b->req;
    if (on_loop_thread(req)) {
        b->fl = fetch_loop_of(req->loop);
        if (!b->fl) {
            batch_free(b);
            return -ENOMEM;
        }
        batch_wait(b);
        batch_start_next(b);
        return 0;
    }
    /* A worker: the calls run on the loop; this thread waits, then answers itself. */
    b->blocking = 1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    b->msg.fn = on_start_msg;
    net_loop_post(req->loop, &b->msg);
    pthread_mutex_lock(&b->lock);
    while (!b->complete)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
    deliver(b);
    batch_free(b);
    return 0;
}

int roost_fetch(roost_req_t *req, const roost_fetch_opts_t *opts, roost_fetch_done_fn done,
                void *arg)
{
    if (!req || !opts || !done)
        return -EINVAL;
    batch_t *b = batch_new(req, opts, 1, 1);
    if (!b)
        return -ENOMEM;
    b->done_one = done;
    b->arg = arg;
    return batch_run(b);
}

int roost_fetch_all(roost_req_t *req, const roost_fetch_opts_t *calls, size_t n,
                    unsigned concurrency, roost_fetch_all_fn done, void *arg)
{
    if (!req || (!calls && n) || !done)
        return -EINVAL;
    if (!n) {
        done(req, NULL, 0, arg);
        return 0;
    }
    batch_t *b = batch_new(req, calls, n, concurrency);
    if (!b)
        return -ENOMEM;
    b->done_all = done;
    b->arg = arg;
    return batch_run(b);
}

/* ---- calls without a request ---- */

typedef struct {
    net_msg_t msg;
    call_spec_t spec;
    roost_fetch_cb done;
    void *arg;
} detached_t;

static void detached_free(detached_t *d)
{
    free(d->spec.strings);
    free(d->spec.headers);
    free(d);
}

static void on_detached_done(const roost_fetch_result_t *res, rbuf_t *body, void *arg)
{
    detached_t *d = arg;
    d->done(res, d->arg);
    detached_free(d);
}

static void on_detached_start(net_loop_t *loop, net_msg_t *msg)
{
    detached_t *d = CONTAINER_OF(msg, detached_t, msg);
    fetch_loop_t *fl = fetch_loop_of(loop);
    if (fl && fetch_call_start(fl, &d->spec.opts, on_detached_done, d))
        return;
    roost_fetch_result_t res = {.error = ROOST_FETCH_CANCELLED,
                                .error_text = "the server is stopping"};
    d->done(&res, d->arg);
    detached_free(d);
}

int roost_fetch_detached(roost_server_t *srv, const roost_fetch_opts_t *opts, roost_fetch_cb done,
                         void *arg)
{
    static atomic_uint turn;
    net_group_t *g = srv->group;
    if (!opts || !done)
        return -EINVAL;
    if (!g || !fetch_of(srv))
        return -EAGAIN;
    detached_t *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    if (spec_copy(&d->spec, opts) < 0) {
        detached_free(d);
        return -ENOMEM;
    }
    d->done = done;
    d->arg = arg;
    d->msg.fn = on_detached_start;
    unsigned i = atomic_fetch_add(&turn, 1) % (unsigned)net_group_nloops(g);
    net_loop_post(net_group_loop(g, (int)i), &d->msg);
    return 0;
}
