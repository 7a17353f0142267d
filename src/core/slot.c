/* Per-layer context slots (nginx's ctx[module]): a process-wide registry of slot operations, and
 * the contexts they make on each server and each loop. A layer above core keeps its state here
 * instead of adding a field to the server or the loop. Not the services (service.c). */
#include "core/core.h"

#include <errno.h>
#include <pthread.h>

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const core_slot_ops_t *registry[CORE_SLOTS_MAX]; /* [0] stays empty: 0 = unregistered */
static atomic_int nslots = 1;

core_slot_t core_slot_new(const core_slot_ops_t *ops)
{
    pthread_mutex_lock(&registry_lock);
    int n = atomic_load(&nslots), slot = -ENOSPC;
    for (int i = 1; i < n; i++)
        if (registry[i] == ops)
            slot = i;
    if (slot < 0 && n < CORE_SLOTS_MAX) {
        registry[n] = ops;
        slot = n;
        atomic_store(&nslots, n + 1); /* after the entry: readers check the count first */
    }
    pthread_mutex_unlock(&registry_lock);
    if (slot < 0)
        log_error("core: no slot left for '%s' (%d taken)", ops->name, CORE_SLOTS_MAX - 1);
    return slot;
}

core_slot_t core_slot_of(atomic_int *cache, const core_slot_ops_t *ops)
{
    /* Acquire/release: whoever sees the cached slot also sees its registry entry. */
    int slot = atomic_load_explicit(cache, memory_order_acquire);
    if (slot <= 0) {
        slot = core_slot_new(ops);
        atomic_store_explicit(cache, slot, memory_order_release);
    }
    return slot;
}

static const core_slot_ops_t *ops_of(core_slot_t slot)
{
    return slot > 0 && slot < atomic_load(&nslots) ? registry[slot] : NULL;
}

void *core_server_ctx(roost_server_t *srv, core_slot_t slot)
{
    const core_slot_ops_t *ops = ops_of(slot);
    if (!ops)
        return NULL;
    void *ctx = atomic_load(&srv->ctx[slot]);
    if (ctx || !ops->server_new)
        return ctx;
    /* Lazily, from whichever thread asks first (a room can be published to from a worker). */
    void *mine = ops->server_new(srv);
    if (!mine)
        return NULL;
    void *expected = NULL;
    if (atomic_compare_exchange_strong(&srv->ctx[slot], &expected, mine))
        return mine;
    if (ops->server_free)
        ops->server_free(mine); /* another thread won */
    return expected;
}

void *core_server_ctx_set(roost_server_t *srv, core_slot_t slot, void *ctx)
{
    if (!ops_of(slot))
        return NULL;
    return atomic_exchange(&srv->ctx[slot], ctx);
}

void core_server_ctx_free_all(roost_server_t *srv)
{
    for (int i = atomic_load(&nslots) - 1; i > 0; i--) {
        void *ctx = atomic_exchange(&srv->ctx[i], NULL);
        if (ctx && registry[i]->server_free)
            registry[i]->server_free(ctx);
    }
}

void *core_loop_ctx(net_loop_t *loop, core_slot_t slot)
{
    return slot > 0 && slot < CORE_SLOTS_MAX ? loop->ctx[slot] : NULL;
}

void core_loop_ctx_set(net_loop_t *loop, core_slot_t slot, void *ctx)
{
    if (slot > 0 && slot < CORE_SLOTS_MAX)
        loop->ctx[slot] = ctx;
}

void core_loops_init(net_loop_t *loop)
{
    roost_server_t *srv = core_loop_server(loop);
    int n = atomic_load(&nslots);
    for (int i = 1; i < n; i++)
        if (registry[i]->loop_init && !loop->ctx[i])
            loop->ctx[i] = registry[i]->loop_init(loop, srv);
}

void core_loops_end(net_loop_t *loop)
{
    for (int i = atomic_load(&nslots) - 1; i > 0; i--) {
        void *ctx = loop->ctx[i];
        loop->ctx[i] = NULL;
        if (ctx && registry[i]->loop_free)
            registry[i]->loop_free(loop, ctx);
    }
}
