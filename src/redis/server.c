/* The server's Redis client: made by redis_server_start from --redis, kept in the redis layer's
 * slot and freed by a service after the loops ended (services stop in reverse order, so every
 * layer that registered later, and may use it, has stopped first). */
#include "redis/redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    _Atomic(redis_t *) client;
    char node_id[128];
} redis_server_t;

static void server_free(void *p)
{
    redis_server_t *s = p;
    redis_free(atomic_load(&s->client));
    free(s);
}

static const core_slot_ops_t slot_ops = {.name = "redis", .server_free = server_free};
static atomic_int slot_cache;

static redis_server_t *server_of(roost_server_t *srv)
{
    return core_server_ctx(srv, core_slot_of(&slot_cache, &slot_ops));
}

redis_t *redis_of(roost_server_t *srv)
{
    redis_server_t *s = srv ? server_of(srv) : NULL;
    return s ? atomic_load(&s->client) : NULL;
}

const char *redis_node_id(roost_server_t *srv)
{
    redis_server_t *s = server_of(srv);
    return s ? s->node_id : "";
}

/* Draining: the loops end soon, and listeners hand messages to them. */
static void drain(void *ud)
{
    redis_server_t *s = ud;
    redis_listeners_stop(atomic_load(&s->client));
}

static void stop(void *ud)
{
    redis_server_t *s = ud;
    redis_free(atomic_exchange(&s->client, NULL));
}

int redis_server_start(roost_server_t *srv)
{
    const roost_config_t *cfg = roost_server_config(srv);
    if (!cfg->redis.url || !*cfg->redis.url || server_of(srv))
        return 0;
    redis_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    if (cfg->redis.node_id && *cfg->redis.node_id)
        snprintf(s->node_id, sizeof s->node_id, "%s", cfg->redis.node_id);
    else
        snprintf(s->node_id, sizeof s->node_id, "%s:%d", cfg->net.host, cfg->net.port);
    redis_t *r = redis_new(&(redis_opts_t){.url = cfg->redis.url, .srv = srv});
    if (!r) {
        log_error("--redis %s: expected redis://[[user]:password@]host[:port][/db]",
                  cfg->redis.url);
        free(s);
        return -EINVAL;
    }
    atomic_store(&s->client, r);
    core_service_t svc = {.name = "redis", .drain = drain, .stop = stop, .ud = s};
    if (core_service_add(srv, &svc) < 0) {
        server_free(s);
        return -ENOMEM;
    }
    core_server_ctx_set(srv, core_slot_of(&slot_cache, &slot_ops), s);
    return 0;
}

int roost_redis_start(roost_server_t *srv)
{
    return redis_server_start(srv);
}

int roost_redis_state(roost_server_t *srv)
{
    redis_t *r = redis_of(srv);
    return r ? redis_up(r) : -1;
}
