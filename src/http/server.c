/* The http layer's part of the server: roost_server_new makes core's server object and attaches
 * http to it (its slot with routes, middleware and counters, and the protocol of accepted
 * connections); routes and after-response tasks. Not the run (src/core/run.c). */
#include "http/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void http_server_free(void *ctx)
{
    http_server_t *hs = ctx;
    router_free(hs->router);
    http_metrics_free(hs->metrics);
    free(hs->mw);
    free(hs->chain);
    free(hs->secured);
    free(hs->openapi);
    free(hs);
}

CORE_SLOT_FN(http_slot, .name = "http", .server_free = http_server_free, .loop_free = http_loop_end)

http_server_t *http_server(roost_server_t *srv)
{
    return core_server_ctx(srv, http_slot());
}

static void http_metrics_service(void *ud, sbuf_t *out)
{
    http_server_t *hs = ud;
    http_metrics_render(hs->metrics, hs->router, out);
}

roost_server_t *roost_server_new(const roost_config_t *cfg)
{
    roost_server_t *srv = core_server_new(cfg);
    if (!srv)
        return NULL;
    http_server_t *hs = calloc(1, sizeof *hs);
    if (hs)
        hs->router = router_new();
    if (!hs || !hs->router || http_slot() < 0) {
        if (hs)
            http_server_free(hs);
        roost_server_free(srv);
        return NULL;
    }
    core_server_ctx_set(srv, http_slot(), hs);
    core_server_protocol(srv, &http_proto, http_session_accept);
    srv->busy_reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                      "Content-Length: 33\r\nConnection: close\r\n\r\n"
                      "{\"detail\":\"Too many connections\"}";
    counters_t *k = srv->counters;
    /* With --metrics off, one unlabelled total stands in for the per-route series. */
    if (cfg->obs.metrics) {
        hs->metrics = http_metrics_new();
        core_service_t svc = {.name = "http", .metrics = http_metrics_service, .ud = hs};
        if (!hs->metrics || core_service_add(srv, &svc) < 0) {
            roost_server_free(srv);
            return NULL;
        }
    } else {
        hs->c_requests = counters_get(k, "roost_http_requests_total", NULL, "HTTP requests routed");
    }
    for (int i = 0; i < HTTP_NLIMITS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "limit=\"%s\"", http_limit_names[i]);
        hs->c_limits[i] = counters_get(k, "roost_limit_hits_total", labels,
                                       "Requests or connections refused by a limit");
    }
    hs->c_stream_paused = counters_get(k, "roost_stream_paused_total", NULL,
                                       "stream writes refused (-EAGAIN) while the client lags");
    hs->c_bad_request = counters_get(k, "roost_http_bad_requests_total", NULL,
                                     "Requests refused as malformed (400, 505)");
    hs->c_tasks_ok = counters_get(k, "roost_background_tasks_total", "result=\"ok\"",
                                  "Background tasks run after a response");
    hs->c_tasks_failed = counters_get(k, "roost_background_tasks_total", "result=\"failed\"",
                                      "Background tasks run after a response");
    return srv;
}

const char *const http_limit_names[HTTP_NLIMITS] = {
    "url",          "header_size", "headers",    "body",       "header_timeout", "body_timeout",
    "worker_queue", "connections", "ws_message", "ws_backlog", "ws_rate",
};

void http_count_limit(roost_server_t *srv, const char *limit)
{
    for (int i = 0; i < HTTP_NLIMITS; i++)
        if (!strcmp(limit, http_limit_names[i]))
            roost_counter_add(http_server(srv)->c_limits[i], 1);
}

/* ---- background tasks ---- */

struct http_after {
    struct http_after *next;
    roost_task_fn fn;
    void *arg;
    void (*free_fn)(void *);
};

typedef struct {
    tpool_work_t work;
    roost_server_t *srv;
    struct http_after *tasks;
} after_work_t;

void roost_after_response(roost_req_t *req, roost_task_fn fn, void *arg, void (*free_fn)(void *))
{
    struct http_after *t = malloc(sizeof *t);
    if (!t) {
        log_error("background task dropped: out of memory");
        roost_counter_add(http_server(req->srv)->c_tasks_failed, 1);
        if (free_fn)
            free_fn(arg);
        return;
    }
    *t = (struct http_after){NULL, fn, arg, free_fn};
    LIST_APPEND(req->after, req->after_tail, t, next);
}

static void run_tasks(roost_server_t *srv, struct http_after *t, int run)
{
    while (t) {
        struct http_after *next = t->next;
        int rc = run ? t->fn(t->arg) : -ECANCELED;
        if (rc < 0) {
            log_warn("background task failed: %s", strerror(-rc));
            roost_counter_add(http_server(srv)->c_tasks_failed, 1);
        } else {
            roost_counter_add(http_server(srv)->c_tasks_ok, 1);
        }
        if (t->free_fn)
            t->free_fn(t->arg);
        free(t);
        t = next;
    }
}

static void after_work_run(tpool_work_t *work)
{
    after_work_t *a = CONTAINER_OF(work, after_work_t, work);
    run_tasks(a->srv, a->tasks, 1); /* in the order they were added */
    free(a);
}

void http_after_submit(roost_req_t *req)
{
    struct http_after *tasks = req->after;
    req->after = req->after_tail = NULL;
    after_work_t *a = malloc(sizeof *a);
    if (a) {
        a->srv = req->srv;
        a->tasks = tasks;
        a->work.run = after_work_run;
    }
    if (!a || !req->srv->pool || tpool_submit(req->srv->pool, &a->work) < 0) {
        log_error("background tasks dropped: the worker queue is full");
        free(a);
        run_tasks(req->srv, tasks, 0);
    }
}

int roost_route(roost_server_t *srv, const char *method, const char *path_template,
                roost_handler_fn fn, void *ud, unsigned flags)
{
    if (!fn)
        return -EINVAL;
    return router_add(http_server(srv)->router, method, path_template, fn, ud, flags);
}
