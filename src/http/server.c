/* The server object: routes, middleware and counters registered before roost_run, then the
 * run itself: listeners, loops, pool and watchdog started; the main thread waits for SIGTERM
 * or SIGINT, drains (stop accepting, finish in-flight work within drain_s), and tears down. */
#include "http/http.h"
#include "fetch/fetch.h" /* wired through core slots at the merge */

#include <unistd.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void process_time_after(roost_req_t *req, int status, void *ud)
{
    /* Seconds with 6 decimals, like Starlette's example middleware; integer formatting
     * because printf's floating point showed up at 3% of a /json profile. */
    uint64_t us = (time_now_ns() - req->start_ns) / 1000;
    char v[32];
    snprintf(v, sizeof v, "%lu.%06lu", (unsigned long)(us / 1000000),
             (unsigned long)(us % 1000000));
    roost_res_header(req, "X-Process-Time", v);
}

static void access_log_after(roost_req_t *req, int status, void *ud)
{
    roost_str_t m = roost_req_method(req), t = http_req_target(req);
    log_info("%.*s %.*s %d %.3fms", (int)m.len, m.ptr, (int)(t.len > 200 ? 200 : t.len),
             t.ptr ? t.ptr : "", status, (double)(time_now_ns() - req->start_ns) / 1e6);
}

roost_server_t *roost_server_new(const roost_config_t *cfg)
{
    roost_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->cfg = *cfg;
    srv->router = router_new();
    srv->counters = counters_new();
    if (!srv->router || !srv->counters) {
        roost_server_free(srv);
        return NULL;
    }
    counters_t *k = srv->counters;
    srv->c_requests = counters_get(k, "roost_http_requests_total", NULL, "HTTP requests routed");
    srv->c_stalls =
        counters_get(k, "roost_loop_stalls_total", NULL, "Loop stalls longer than --stall-ms");
    srv->c_stall_ms =
        counters_get(k, "roost_loop_stall_milliseconds_total", NULL, "Time loops spent stalled");
    for (int i = 0; i < HTTP_NLIMITS; i++) {
        char labels[64];
        snprintf(labels, sizeof labels, "limit=\"%s\"", http_limit_names[i]);
        srv->c_limits[i] = counters_get(k, "roost_limit_hits_total", labels,
                                        "Requests or connections refused by a limit");
    }
    srv->c_bad_request = counters_get(k, "roost_http_bad_requests_total", NULL,
                                      "Requests refused as malformed (400, 505)");
    srv->c_tasks_ok = counters_get(k, "roost_background_tasks_total", "result=\"ok\"",
                                   "Background tasks run after a response");
    srv->c_tasks_failed = counters_get(k, "roost_background_tasks_total", "result=\"failed\"",
                                       "Background tasks run after a response");
    roost_middleware_t timing = {"process-time", NULL, process_time_after, NULL};
    roost_use(srv, &timing);
    if (cfg->access_log) {
        roost_middleware_t log = {"access-log", NULL, access_log_after, NULL};
        roost_use(srv, &log);
    }
    return srv;
}

const roost_config_t *roost_server_config(const roost_server_t *srv)
{
    return &srv->cfg;
}

const char *const http_limit_names[HTTP_NLIMITS] = {
    "url",          "header_size", "headers",    "body",       "header_timeout", "body_timeout",
    "worker_queue", "connections", "ws_message", "ws_backlog", "ws_rate",
};

void http_count_limit(roost_server_t *srv, const char *limit)
{
    for (int i = 0; i < HTTP_NLIMITS; i++)
        if (!strcmp(limit, http_limit_names[i]))
            roost_counter_add(srv->c_limits[i], 1);
}

int http_add_service(roost_server_t *srv, const struct http_service *svc)
{
    if (srv->nservices == (int)ARRAY_LEN(srv->services))
        return -ENOSPC;
    srv->services[srv->nservices++] = *svc;
    return 0;
}

/* ---- background tasks ---- */

struct http_after {
    struct http_after *next;
    roost_task_fn fn;
    void *arg;
    void (*free_fn)(void *);
};

typedef struct {
    pool_job_t job;
    roost_server_t *srv;
    struct http_after *tasks;
} after_job_t;

void roost_after_response(roost_req_t *req, roost_task_fn fn, void *arg, void (*free_fn)(void *))
{
    struct http_after *t = malloc(sizeof *t);
    if (!t) {
        log_error("background task dropped: out of memory");
        roost_counter_add(req->srv->c_tasks_failed, 1);
        if (free_fn)
            free_fn(arg);
        return;
    }
    *t = (struct http_after){NULL, fn, arg, free_fn};
    if (req->after_tail)
        req->after_tail->next = t;
    else
        req->after = t;
    req->after_tail = t;
}

static void run_tasks(roost_server_t *srv, struct http_after *t, int run)
{
    while (t) {
        struct http_after *next = t->next;
        int rc = run ? t->fn(t->arg) : -ECANCELED;
        if (rc < 0) {
            log_warn("background task failed: %s", strerror(-rc));
            roost_counter_add(srv->c_tasks_failed, 1);
        } else {
            roost_counter_add(srv->c_tasks_ok, 1);
        }
        if (t->free_fn)
            t->free_fn(t->arg);
        free(t);
        t = next;
    }
}

static void after_job_run(pool_job_t *job)
{
    after_job_t *a = CONTAINER_OF(job, after_job_t, job);
    run_tasks(a->srv, a->tasks, 1); /* in the order they were added */
    free(a);
}

void http_after_submit(roost_req_t *req)
{
    struct http_after *tasks = req->after;
    req->after = req->after_tail = NULL;
    after_job_t *a = malloc(sizeof *a);
    if (a) {
        a->srv = req->srv;
        a->tasks = tasks;
        a->job.run = after_job_run;
    }
    if (!a || !req->srv->pool || pool_submit(req->srv->pool, &a->job) < 0) {
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
    return router_add(srv->router, method, path_template, fn, ud, flags);
}

int roost_use(roost_server_t *srv, const roost_middleware_t *mw)
{
    roost_middleware_t *m = realloc(srv->mw, (size_t)(srv->nmw + 1) * sizeof *m);
    if (!m)
        return -ENOMEM;
    srv->mw = m;
    srv->mw[srv->nmw++] = *mw;
    return 0;
}

roost_counter_t *roost_counter(roost_server_t *srv, const char *name, const char *labels,
                               const char *help)
{
    return counters_get(srv->counters, name, labels, help);
}

char *roost_metrics_text(roost_server_t *srv)
{
    sbuf_t out = {0};
    counters_render(srv->counters, &out);
    if (srv->pool)
        sbuf_printf(&out,
                    "# HELP roost_worker_queue_depth Blocking jobs waiting for a worker\n"
                    "# TYPE roost_worker_queue_depth gauge\nroost_worker_queue_depth %d\n",
                    pool_queued(srv->pool));
    for (int i = 0; i < srv->nservices; i++)
        if (srv->services[i].metrics)
            srv->services[i].metrics(srv->services[i].ud, &out);
    if (fetch_of(srv))
        fetch_metrics(fetch_of(srv), &out);
    return out.p;
}

/* ---- running ---- */

typedef struct {
    roost_server_t *srv;
    uv_signal_t sigterm, sigint;
    uv_timer_t poll, deadline;
    int draining, forced;
} runner_t;

static void on_deadline(uv_timer_t *t)
{
    runner_t *r = t->data;
    if (!r->forced) {
        r->forced = 1;
        log_warn("drain: %.1fs passed, closing what is left", r->srv->cfg.drain_s);
        net_group_force(r->srv->group);
        /* Connections still waiting on a worker end when it returns; give it a moment. */
        uv_timer_start(t, on_deadline, 1000, 0);
        return;
    }
    /* A blocking handler cannot be interrupted; its client has already been cut off. Leave
     * without running exit handlers under threads that still run. */
    log_warn("drain: blocking handlers still running after the deadline; exiting anyway");
    _exit(0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    runner_t *r = h->data;
    if (r->draining)
        return;
    r->draining = 1;
    log_info("%s: draining (up to %.1fs)", signum == SIGTERM ? "SIGTERM" : "SIGINT",
             r->srv->cfg.drain_s);
    net_group_drain(r->srv->group);
    for (int i = 0; i < r->srv->nservices; i++)
        if (r->srv->services[i].drain)
            r->srv->services[i].drain(r->srv->services[i].ud);
    uv_timer_start(&r->deadline, on_deadline, (uint64_t)(r->srv->cfg.drain_s * 1000), 0);
}

static void on_poll(uv_timer_t *t)
{
    runner_t *r = t->data;
    if (net_group_running(r->srv->group) > 0)
        return;
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->poll, NULL);
    uv_close((uv_handle_t *)&r->deadline, NULL);
}

int roost_run(roost_server_t *srv)
{
    const roost_config_t *cfg = &srv->cfg;
    signal(SIGPIPE, SIG_IGN);
    srv->pool = pool_new(cfg->workers, cfg->worker_queue);
    if (!srv->pool) {
        log_error("cannot start %d workers", cfg->workers);
        return -ENOMEM;
    }
    net_group_opts_t opts = {
        .host = cfg->host,
        .port = cfg->port,
        .threads = cfg->threads,
        .stall_ms = cfg->stall_ms,
        .proto = &http_proto,
        .on_accept = http_session_accept,
        .on_loop_end = http_loop_end,
        .ud = srv,
    };
    if (fetch_setup(srv, cfg->threads, &cfg->upstream) < 0)
        return -EINVAL;
    srv->group = net_group_new(&opts);
    if (!srv->group)
        return -ENOMEM;
    int rc = net_group_listen(srv->group);
    if (rc < 0) {
        net_group_join_free(srv->group);
        srv->group = NULL;
        return rc;
    }
    uv_loop_t main_loop;
    uv_loop_init(&main_loop);
    runner_t r = {.srv = srv};
    uv_signal_init(&main_loop, &r.sigterm);
    uv_signal_init(&main_loop, &r.sigint);
    uv_timer_init(&main_loop, &r.poll);
    uv_timer_init(&main_loop, &r.deadline);
    r.sigterm.data = r.sigint.data = r.poll.data = r.deadline.data = &r;
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_timer_start(&r.poll, on_poll, 50, 50);

    for (int i = 0; i < srv->nservices; i++)
        if (srv->services[i].start)
            srv->services[i].start(srv->services[i].ud);
    watchdog_t *wd = watchdog_start(srv->group, cfg->stall_ms, srv->c_stalls, srv->c_stall_ms);
    if ((rc = net_group_start(srv->group)) < 0) {
        log_error("cannot start the loops");
        exit(1);
    }
    log_info("roost listening on http://%s:%d (%d loops, %d workers)", cfg->host, cfg->port,
             cfg->threads, cfg->workers);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
    watchdog_stop(wd);
    net_group_join_free(srv->group);
    srv->group = NULL;
    for (int i = 0; i < srv->nservices; i++)
        if (srv->services[i].stop)
            srv->services[i].stop(srv->services[i].ud);
    srv->nservices = 0;
    pool_stop_free(srv->pool);
    srv->pool = NULL;
    log_info("stopped");
    return 0;
}

void roost_server_free(roost_server_t *srv)
{
    if (!srv)
        return;
    if (srv->hub_free && srv->hub)
        srv->hub_free(srv->hub);
    router_free(srv->router);
    counters_free(srv->counters);
    free(srv->mw);
    free(srv);
}
