/* The core layer: the server object that belongs to no protocol. It owns the configuration, the
 * counters, the loop group, the worker pool, a list of services (start, drain, stop) and one
 * context slot per layer on the server and on each loop (nginx's ctx[module]). It runs the
 * server: signals, drain deadline, watchdog. It knows nothing of HTTP, WebSockets, rooms or jobs:
 * those layers attach themselves through this header. Core includes base and net only. */
#ifndef ROOST_CORE_H
#define ROOST_CORE_H

#include "base/base.h"
#include "net/net.h"

/* ---- slots: per-layer state without a field in a shared struct ----
 * A layer registers its slot once (core_slot_new with the same ops returns the same slot;
 * core_slot_of caches it) and then finds its state with core_server_ctx / core_loop_ctx. Slots are
 * global to the process, contexts are per server and per loop. */
#define CORE_SLOTS_MAX NET_LOOP_CTX_MAX
typedef int core_slot_t; /* 1 .. CORE_SLOTS_MAX-1; 0 means "not registered yet" */

typedef struct {
    const char *name; /* the layer, for logs */
    /* Creates the layer's server context on first use by core_server_ctx (any thread; when two
     * threads race, the loser's context is given to server_free). NULL: the layer sets its
     * context itself with core_server_ctx_set. */
    void *(*server_new)(roost_server_t *srv);
    /* Frees the server context when the server is freed (if it is still set). May be NULL. */
    void (*server_free)(void *ctx);
    /* On the loop thread, before the loop runs: returns the layer's context for this loop (or
     * NULL). Only for slots registered before roost_run; a later one sets its loop contexts
     * itself with core_loop_ctx_set. May be NULL. */
    void *(*loop_init)(net_loop_t *loop, roost_server_t *srv);
    /* On the loop thread once the loop has ended its connections (or on the main thread for a
     * loop that never started), for a context that is set. Slots are freed in reverse order of
     * registration. May be NULL. */
    void (*loop_free)(net_loop_t *loop, void *ctx);
} core_slot_ops_t;

/* Registers ops (which must outlive the process, e.g. static const). Returns the slot, the same
 * one for the same ops, or -ENOSPC when CORE_SLOTS_MAX are taken. Thread-safe. */
core_slot_t core_slot_new(const core_slot_ops_t *ops);
/* The same, cached in *cache (a static of the layer, zero at first). */
core_slot_t core_slot_of(atomic_int *cache, const core_slot_ops_t *ops);
/* That idiom written once. CORE_SLOT_FN(name, ops...) defines `core_slot_t name(void)`, the
 * slot of the ops given as designated initializers; CORE_SERVER_CTX_FN(type, name, ops...)
 * defines `type *name(roost_server_t *srv)`, the server context in that slot. Put `static`
 * before either for a file's own. */
#define CORE_SLOT_FN(name, ...)                                                                    \
    core_slot_t name(void)                                                                         \
    {                                                                                              \
        static const core_slot_ops_t ops_ = {__VA_ARGS__};                                         \
        static atomic_int slot_;                                                                   \
        return core_slot_of(&slot_, &ops_);                                                        \
    }
#define CORE_SERVER_CTX_FN(type, name, ...)                                                        \
    type *name(roost_server_t *srv)                                                                \
    {                                                                                              \
        static const core_slot_ops_t ops_ = {__VA_ARGS__};                                         \
        static atomic_int slot_;                                                                   \
        return core_server_ctx(srv, core_slot_of(&slot_, &ops_));                                  \
    }
void *core_server_ctx(roost_server_t *srv, core_slot_t slot);
/* Sets (or clears, with NULL) a server context; returns the previous one. */
void *core_server_ctx_set(roost_server_t *srv, core_slot_t slot, void *ctx);
/* On the loop's thread only. */
void *core_loop_ctx(net_loop_t *loop, core_slot_t slot);
void core_loop_ctx_set(net_loop_t *loop, core_slot_t slot, void *ctx);

/* ---- services: things that live beside the loops (the job queue, the data threads) ----
 * Started in registration order once the port is bound and before the loops run; told in the
 * same order when draining starts; stopped in reverse order after the loops ended and before
 * the worker pool stops, so a service may use what was registered before it. */
typedef struct {
    const char *name;
    void (*start)(void *ud);                /* may be NULL */
    void (*drain)(void *ud);                /* may be NULL */
    void (*stop)(void *ud);                 /* also frees; may be NULL */
    void (*metrics)(void *ud, sbuf_t *out); /* appends Prometheus text; may be NULL */
    void *ud;
} core_service_t;

/* Appends the process_* gauges from /proc/self (process.c). */
void core_process_metrics(sbuf_t *out);
/* Per-loop families: connections, events, iterations, stalls (loop_metrics.c). */
void core_loop_metrics(roost_server_t *srv, sbuf_t *out);
/* Appends the span exporter's counters, once it ran (otlp.c). */
void core_otlp_metrics(sbuf_t *out);

/* Before roost_run, from the main thread. -ENOMEM. */
int core_service_add(roost_server_t *srv, const core_service_t *svc);
void core_services_start(roost_server_t *srv);
void core_services_drain(roost_server_t *srv);
/* Stops every service (reverse order) and forgets them. */
void core_services_stop(roost_server_t *srv);

/* ---- the server object ---- */
struct roost_server {
    roost_config_t cfg;
    counters_t *counters;
    net_group_t *group; /* while running */
    tpool_t *pool;      /* the HTTP workers (blocking handlers, background tasks), while running */
    /* What accepted connections speak, set by the protocol layer (http). */
    const net_proto_t *proto;
    void (*on_accept)(net_conn_t *c);
    const char *busy_reply; /* the protocol's answer to a connection over a per-address limit */
    net_tls_ctx_t *tls;     /* with --tls-cert, while running; reloaded on SIGHUP */
    net_iplimit_t *iplimit; /* with --max-conns-per-ip or --new-conns-per-ip-s, while running */
    core_service_t *services;
    int nservices, services_cap;
    _Atomic(void *) ctx[CORE_SLOTS_MAX]; /* per-layer server contexts, by slot */
};

/* Copies cfg; the caller (the protocol layer's roost_server_new) attaches its protocol. */
roost_server_t *core_server_new(const roost_config_t *cfg);
/* The protocol of accepted connections; on_accept sets c->proto and c->ud. */
void core_server_protocol(roost_server_t *srv, const net_proto_t *proto,
                          void (*on_accept)(net_conn_t *c));
/* The server a loop belongs to. */
roost_server_t *core_loop_server(const net_loop_t *loop);

/* A row of a layer's counter table: what core_counters_register makes (a counter or a gauge,
 * as roost_counter / roost_gauge) and the roost_counter_t * field of the layer's struct it goes
 * in. One static table says what a layer counts, instead of a run of registrations. */
typedef struct {
    int gauge;
    size_t off; /* offsetof the field */
    const char *name, *labels, *help;
} core_counter_def_t;
/* clang-format off */
#define CORE_COUNTER(type, field, name, labels, help) {0, offsetof(type, field), name, labels, help}
#define CORE_GAUGE(type, field, name, labels, help)   {1, offsetof(type, field), name, labels, help}
/* clang-format on */
/* Registers every row of defs[n] into obj's fields. Start-up, as roost_counter. */
void core_counters_register(roost_server_t *srv, void *obj, const core_counter_def_t *defs,
                            size_t n);

/* slot.c, for run.c: runs every registered loop_init / loop_free on the loop thread. */
void core_loops_init(net_loop_t *loop);
void core_loops_end(net_loop_t *loop);
/* Frees every server context that is set (reverse order of registration). */
void core_server_ctx_free_all(roost_server_t *srv);

#endif
