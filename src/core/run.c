/* roost_run: binds, starts the worker pool, the services, the watchdog and the loops, then waits
 * on the main thread for SIGTERM or SIGINT; drains (stop accepting, services told, in-flight work
 * finishes within drain_s, then whatever is left is closed) and tears down in reverse. Not the
 * server object (server.c) nor any protocol. */
#include "core/core.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    roost_server_t *srv;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t poll, deadline;
    int draining, forced;
} runner_t;

static void on_deadline(uv_timer_t *t)
{
    runner_t *r = t->data;
    if (!r->forced) {
        r->forced = 1;
        log_warn("drain: %.1fs passed, closing what is left", r->srv->cfg.net.drain_s);
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
             r->srv->cfg.net.drain_s);
    net_group_drain(r->srv->group);
    core_services_drain(r->srv);
    uv_timer_start(&r->deadline, on_deadline, (uint64_t)(r->srv->cfg.net.drain_s * 1000), 0);
}

/* SIGHUP: new connections get the certificate on disk now; old ones keep theirs. */
static void on_sighup(uv_signal_t *h, int signum)
{
    runner_t *r = h->data;
    (void)signum;
    if (r->srv->tls)
        net_tls_ctx_reload(r->srv->tls);
}

static void on_poll(uv_timer_t *t)
{
    runner_t *r = t->data;
    if (net_group_running(r->srv->group) > 0)
        return;
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
    uv_close((uv_handle_t *)&r->poll, NULL);
    uv_close((uv_handle_t *)&r->deadline, NULL);
}

/* TLS and the per-address limits, when their flags ask for them. */
static int open_security(roost_server_t *srv)
{
    const roost_config_t *cfg = &srv->cfg;
    counters_t *k = srv->counters;
    if (cfg->tls.cert && *cfg->tls.cert) {
        const char *h = "TLS handshakes";
        net_tls_counters_t tk = {
            .handshakes = counters_get(k, "roost_tls_handshakes_total", "result=\"ok\"", h),
            .failed = counters_get(k, "roost_tls_handshakes_total", "result=\"failed\"", h),
            .timeouts = counters_get(k, "roost_tls_handshakes_total", "result=\"timeout\"", h),
            .reloads =
                counters_get(k, "roost_tls_reloads_total", NULL, "Certificate reloads (SIGHUP)"),
        };
        const char *key = cfg->tls.key && *cfg->tls.key ? cfg->tls.key : cfg->tls.cert;
        if (!(srv->tls = net_tls_ctx_new(cfg->tls.cert, key, &tk)))
            return -EINVAL;
    }
    const char *h = "Requests or connections refused by a limit";
    net_iplimit_opts_t lo = {
        .max_conns = cfg->net.max_conns_per_ip,
        .new_per_s = cfg->net.new_conns_per_ip_s,
        .trusted = cfg->net.trusted_ips,
        .c_conns = counters_get(k, "roost_limit_hits_total", "limit=\"conns_per_ip\"", h),
        .c_rate = counters_get(k, "roost_limit_hits_total", "limit=\"new_conns_per_ip\"", h),
    };
    int err;
    srv->iplimit = net_iplimit_new(&lo, &err);
    return err;
}

static void close_security(roost_server_t *srv)
{
    net_tls_ctx_free(srv->tls);
    srv->tls = NULL;
    net_iplimit_free(srv->iplimit);
    srv->iplimit = NULL;
}

static int open_group(roost_server_t *srv)
{
    const roost_config_t *cfg = &srv->cfg;
    int rc = open_security(srv);
    if (rc < 0) {
        close_security(srv);
        return rc;
    }
    net_group_opts_t opts = {
        .host = cfg->net.host,
        .port = cfg->net.port,
        .threads = cfg->net.threads,
        .stall_ms = cfg->net.stall_ms,
        .proto = srv->proto,
        .on_accept = srv->on_accept,
        .on_loop_start = core_loops_init,
        .on_loop_end = core_loops_end,
        .ud = srv,
        .tls = srv->tls,
        .tls_port = cfg->tls.port,
        .tls_handshake_timeout_s = cfg->tls.handshake_timeout_s,
        .iplimit = srv->iplimit,
        .busy_reply = srv->busy_reply,
    };
    srv->group = net_group_new(&opts);
    if (!srv->group) {
        close_security(srv);
        return -ENOMEM;
    }
    rc = net_group_listen(srv->group);
    if (rc < 0) {
        net_group_join_free(srv->group);
        srv->group = NULL;
        close_security(srv);
    }
    return rc;
}

int roost_run(roost_server_t *srv)
{
    const roost_config_t *cfg = &srv->cfg;
    if (!srv->proto || !srv->on_accept)
        return -EINVAL; /* no protocol attached: nothing to serve */
    signal(SIGPIPE, SIG_IGN);
    /* Few threads while idle, up to --workers when blocking calls pile up (growth on demand:
     * 100 concurrent 3 s calls take 3 s, not 3 s x 100 / workers). */
    tpool_opts_t po = {
        .name = "worker",
        .min =
            cfg->http.workers_min < cfg->http.workers ? cfg->http.workers_min : cfg->http.workers,
        .max = cfg->http.workers,
        .idle_s = cfg->http.workers_idle_s,
        .max_queue = cfg->http.worker_queue,
        .stack_size = 256 * 1024, /* handlers are plain C; keeps 1,000 workers cheap */
    };
    srv->pool = tpool_fifo_start(&po);
    if (!srv->pool) {
        log_error("cannot start %d workers", po.min);
        return -ENOMEM;
    }
    int rc = open_group(srv);
    if (rc < 0) {
        tpool_stop(srv->pool);
        srv->pool = NULL;
        return rc;
    }
    uv_loop_t main_loop;
    uv_loop_init(&main_loop);
    runner_t r = {.srv = srv};
    uv_signal_init(&main_loop, &r.sigterm);
    uv_signal_init(&main_loop, &r.sigint);
    uv_signal_init(&main_loop, &r.sighup);
    uv_timer_init(&main_loop, &r.poll);
    uv_timer_init(&main_loop, &r.deadline);
    r.sigterm.data = r.sigint.data = r.sighup.data = r.poll.data = r.deadline.data = &r;
    uv_signal_start(&r.sigterm, on_signal, SIGTERM);
    uv_signal_start(&r.sigint, on_signal, SIGINT);
    uv_signal_start(&r.sighup, on_sighup, SIGHUP);
    uv_timer_start(&r.poll, on_poll, 50, 50);

    core_services_start(srv);
    watchdog_t *wd = watchdog_start(srv->group, cfg->net.stall_ms);
    if ((rc = net_group_start(srv->group)) < 0) {
        log_error("cannot start the loops");
        exit(1);
    }
    log_info("roost listening on %s://%s:%d (%d loops, %d to %d workers)",
             srv->tls && !cfg->tls.port ? "https" : "http", cfg->net.host, cfg->net.port,
             cfg->net.threads, po.min, cfg->http.workers);
    if (srv->tls && cfg->tls.port)
        log_info("roost listening on https://%s:%d", cfg->net.host, cfg->tls.port);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
    watchdog_stop(wd);
    net_group_join_free(srv->group);
    srv->group = NULL;
    close_security(srv);
    core_services_stop(srv);
    tpool_stop(srv->pool);
    srv->pool = NULL;
    log_info("stopped");
    return 0;
}
