/* The per-loop families of /metrics (label loop="N"): connections, events and iterations, events
 * per iteration over the last second, and stalls (count and seconds). Each loop keeps its own
 * single-writer figures in its net_loop_t (net.h); this only reads them at scrape time. Not the
 * watchdog that finds stalls (net/watchdog.c) nor the loop itself (net/loop.c). */
#include "core/core.h"

static uint64_t rd(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* One family: its HELP and TYPE always (an empty family when no loop runs), then a sample per
 * loop of what pick reads. */
static void family(sbuf_t *out, net_group_t *g, const char *name, const char *type,
                   const char *help, double (*pick)(net_loop_t *loop))
{
    sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (int i = 0; g && i < net_group_nloops(g); i++)
        sbuf_printf(out, "%s{loop=\"%d\"} %.17g\n", name, i, pick(net_group_loop(g, i)));
}

static double pick_conns(net_loop_t *l)
{
    return (double)atomic_load_explicit(&l->nconns_seen, memory_order_relaxed);
}
static double pick_events(net_loop_t *l)
{
    return (double)rd(&l->events);
}
static double pick_iterations(net_loop_t *l)
{
    return (double)rd(&l->iterations);
}
static double pick_per_iter(net_loop_t *l)
{
    return (double)rd(&l->events_per_iter_milli) / 1000.0;
}
static double pick_stalls(net_loop_t *l)
{
    return (double)rd(&l->stalls);
}
static double pick_stall_s(net_loop_t *l)
{
    return (double)rd(&l->stall_ms) / 1000.0;
}

void core_loop_metrics(roost_server_t *srv, sbuf_t *out)
{
    net_group_t *g = srv->group;
    family(out, g, "roost_loop_connections", "gauge", "Connections open, by event loop",
           pick_conns);
    family(out, g, "roost_loop_events_total", "counter",
           "Callbacks run by the loop: accepts, reads, writes done, inbox messages, upstream "
           "sockets",
           pick_events);
    family(out, g, "roost_loop_iterations_total", "counter", "Event loop iterations",
           pick_iterations);
    family(out, g, "roost_loop_events_per_iteration", "gauge",
           "Callbacks per loop iteration over the last second", pick_per_iter);
    family(out, g, "roost_loop_stalls_total", "counter", "Loop stalls longer than --stall-ms",
           pick_stalls);
    family(out, g, "roost_loop_stall_seconds_total", "counter",
           "Time loops spent stalled (added when a stall ends)", pick_stall_s);
}
