/* The server object: configuration, counters, services and per-layer contexts, created by the
 * protocol layer's roost_server_new and freed here. Also the public calls that need nothing but
 * the core: the configuration, counters and the metrics text. Not the run (run.c). */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

roost_server_t *core_server_new(const roost_config_t *cfg)
{
    roost_server_t *srv = calloc(1, sizeof *srv);
    if (!srv)
        return NULL;
    srv->cfg = *cfg;
    log_set_json(cfg->obs.log_format && !strcmp(cfg->obs.log_format, "json"));
    srv->counters = counters_new();
    if (!srv->counters) {
        free(srv);
        return NULL;
    }
    return srv;
}

void core_server_protocol(roost_server_t *srv, const net_proto_t *proto,
                          void (*on_accept)(net_conn_t *c))
{
    srv->proto = proto;
    srv->on_accept = on_accept;
}

roost_server_t *core_loop_server(const net_loop_t *loop)
{
    return net_group_ud(loop->group);
}

const roost_config_t *roost_server_config(const roost_server_t *srv)
{
    return &srv->cfg;
}

roost_counter_t *roost_counter(roost_server_t *srv, const char *name, const char *labels,
                               const char *help)
{
    return counters_get(srv->counters, name, labels, help);
}

roost_counter_t *roost_gauge(roost_server_t *srv, const char *name, const char *labels,
                             const char *help)
{
    return counters_get_kind(srv->counters, name, labels, help, 1);
}

void core_counters_register(roost_server_t *srv, void *obj, const core_counter_def_t *defs,
                            size_t n)
{
    for (size_t i = 0; i < n; i++)
        *(roost_counter_t **)((char *)obj + defs[i].off) = counters_get_kind(
            srv->counters, defs[i].name, defs[i].labels, defs[i].help, defs[i].gauge);
}

char *roost_metrics_text(roost_server_t *srv)
{
    sbuf_t out = {0};
    counters_render(srv->counters, &out);
    if (srv->pool) {
        tpool_stats_t st;
        tpool_stats(srv->pool, &st);
        sbuf_printf(
            &out,
            "# HELP roost_worker_queue_depth Blocking work waiting for a worker\n"
            "# TYPE roost_worker_queue_depth gauge\nroost_worker_queue_depth %d\n"
            "# HELP roost_worker_threads Worker threads alive (--workers-min to --workers)\n"
            "# TYPE roost_worker_threads gauge\nroost_worker_threads %d\n"
            "# HELP roost_worker_busy Worker threads running a handler or a task\n"
            "# TYPE roost_worker_busy gauge\nroost_worker_busy %d\n"
            "# HELP roost_worker_idle Worker threads waiting for work\n"
            "# TYPE roost_worker_idle gauge\nroost_worker_idle %d\n"
            "# HELP roost_worker_threads_started_total Worker threads started\n"
            "# TYPE roost_worker_threads_started_total counter\n"
            "roost_worker_threads_started_total %ld\n"
            "# HELP roost_worker_threads_retired_total Worker threads ended after "
            "--workers-idle-s\n"
            "# TYPE roost_worker_threads_retired_total counter\n"
            "roost_worker_threads_retired_total %ld\n",
            st.queued, st.threads, st.busy, st.idle, st.started, st.retired);
    }
    core_loop_metrics(srv, &out);
    for (int i = 0; i < srv->nservices; i++)
        if (srv->services[i].metrics)
            srv->services[i].metrics(srv->services[i].ud, &out);
    core_otlp_metrics(&out);
    core_process_metrics(&out);
    return out.p;
}

void roost_server_free(roost_server_t *srv)
{
    if (!srv)
        return;
    /* A server freed without running (a setup error, --help-man) still stops its services:
     * stop is what frees them. After roost_run the list is already empty. */
    core_services_stop(srv);
    core_server_ctx_free_all(srv);
    counters_free(srv->counters);
    free(srv->services);
    free(srv);
}
