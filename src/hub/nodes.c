/* Presence across nodes (with --redis): each node announces, on one channel all nodes hear
 * (so that every node can answer counts, even for rooms it has no member in), which of a
 * room's users it holds ("P node room\n{"user": connections, ...}"): at once (within a tick)
 * when they change, and every --presence-ttl-s / 3 anyway. Every node keeps the others' last
 * announcements and adds them to the room's online count and user list; one not renewed within
 * the TTL is dropped and its users leave (the node died). A node that starts watching a room
 * asks the others to announce at once ("Q node room"). Announcements are applied on loop 0, where
 * the join/leave notices (presence.c, coalesced as for local members) have their timers. */
#include "hub/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 250

void hub_remote_free(void *p)
{
    hub_remote_t *rm = p;
    strmap_free(&rm->users, NULL);
    free(rm);
}

static void map_add(strmap_t *m, const char *user, long delta)
{
    intptr_t n = (intptr_t)strmap_get(m, user) + delta;
    if (n > 0)
        strmap_put(m, user, (void *)n);
    else
        strmap_del(m, user);
}

void hub_users_add(room_t *r, const char *user, long delta)
{
    map_add(&r->users, user, delta);
}

static net_loop_t *loop0(hub_t *hub)
{
    return hub->srv->group ? net_group_loop(hub->srv->group, 0) : NULL;
}

/* ---- announcing this node's members ---- */

static void add_user(const char *key, void *value, void *ud)
{
    json_object_set_new(ud, key, json_integer((json_int_t)(intptr_t)value));
}

static void publish(hub_t *hub, room_t *r, char kind, const char *json)
{
    size_t n = strlen(hub->node) + strlen(r->name) + strlen(json) + 5;
    char *msg = malloc(n);
    if (msg) {
        int len = snprintf(msg, n, "%c %s %s\n%s", kind, hub->node, r->name, json);
        redis_command(hub->redis, NULL, NULL, 3,
                      (const char *[]){"PUBLISH", HUB_PRESENCE_CHANNEL, msg},
                      (const size_t[]){7, strlen(HUB_PRESENCE_CHANNEL), (size_t)len});
    }
    free(msg);
}

static void announce(hub_t *hub, room_t *r)
{
    json_t *users = json_object();
    strmap_each(&r->local_users, add_user, users);
    char *json = json_dumps(users, JSON_COMPACT);
    json_decref(users);
    if (json)
        publish(hub, r, 'P', json);
    free(json);
}

void hub_nodes_query(hub_t *hub, room_t *r)
{
    r->presence_dirty = 1;
    publish(hub, r, 'Q', "");
}

/* ---- others' announcements ---- */

typedef struct {
    hub_t *hub;
    room_t *room;
    net_loop_t *loop;
    strmap_t *other; /* users in the other map, or NULL */
    int join;
    long delta_online;
} diff_t;

/* A user in one map and not (or with another count) in the other. */
static void diff_one(const char *user, void *value, void *ud)
{
    diff_t *d = ud;
    intptr_t n = (intptr_t)value, m = d->other ? (intptr_t)strmap_get(d->other, user) : 0;
    if (d->join ? n <= m : m > 0)
        return;
    long delta = d->join ? (long)(n - m) : -(long)n;
    hub_users_add(d->room, user, delta);
    d->delta_online += delta;
    hub_notice(d->hub, d->room, d->join, user, d->loop);
}

/* With the room locked, on loop 0: the node's members are now `users` (NULL: it is gone). */
static void replace_remote(hub_t *hub, room_t *r, net_loop_t *loop, const char *node,
                           hub_remote_t *now)
{
    hub_remote_t *old = strmap_get(&r->remote, node);
    diff_t d = {.hub = hub, .room = r, .loop = loop};
    if (old) { /* who left, or has fewer connections there */
        d.other = now ? &now->users : NULL;
        d.join = 0;
        strmap_each(&old->users, diff_one, &d);
    }
    if (now) { /* who came, or has more */
        d.other = old ? &old->users : NULL;
        d.join = 1;
        strmap_each(&now->users, diff_one, &d);
    }
    r->online += d.delta_online;
    if (r->online == 0)
        r->idle_since_ms = time_now_ms();
    if (old)
        hub_remote_free(strmap_del(&r->remote, node));
    if (now && strmap_put(&r->remote, node, now) < 0)
        hub_remote_free(now);
}

typedef struct {
    net_msg_t msg;
    hub_t *hub;
    room_t *room;
    int query;
    hub_remote_t *now;
    char node[];
} remote_msg_t;

static void apply(net_loop_t *loop, net_msg_t *msg)
{
    remote_msg_t *m = CONTAINER_OF(msg, remote_msg_t, msg);
    room_t *r = m->room;
    if (loop) {
        pthread_mutex_lock(&r->lock);
        if (m->query) {
            r->presence_dirty = r->local_total > 0;
        } else {
            replace_remote(m->hub, r, loop, m->node, m->now);
            m->now = NULL;
        }
        pthread_mutex_unlock(&r->lock);
    }
    if (m->now)
        hub_remote_free(m->now);
    hub_room_unref(r);
    free(m);
}

/* On the redis thread: "P node room\n{users}" or "Q node room\n". */
static void on_presence(redis_t *rd, const char *channel, const char *data, size_t len, void *ud)
{
    hub_t *hub = ud;
    net_loop_t *loop = loop0(hub);
    const char *nl = memchr(data, '\n', len);
    hub_nodes_start(hub); /* others' members expire here even with none of ours */
    char kind, node[128], name[80];
    if (!loop || !nl || len < 2 || (data[0] != 'P' && data[0] != 'Q') || data[1] != ' ' ||
        nl - data > 200)
        return;
    char head[256];
    memcpy(head, data, (size_t)(nl - data));
    head[nl - data] = '\0';
    if (sscanf(head, "%c %127s %79s", &kind, node, name) != 3 || !strcmp(node, hub->node) ||
        !hub_valid_name(name, strlen(name)))
        return;
    const char *json = nl + 1;
    size_t jlen = len - (size_t)(json - data);
    int query = kind == 'Q';
    /* another node's members make the room known here too (bounded by --max-rooms) */
    room_t *r = hub_room(hub, name, !query && jlen > 2);
    if (!r)
        return;
    size_t n = strlen(node);
    remote_msg_t *m = calloc(1, sizeof *m + n + 1); /* holds the lookup's reference */
    if (!m) {
        hub_room_unref(r);
        return;
    }
    m->hub = hub;
    m->room = r;
    m->query = query;
    memcpy(m->node, node, n + 1);
    if (!query) {
        json_t *users = json_loadb(json, jlen, 0, NULL);
        const char *user;
        json_t *count;
        if (json_is_object(users) && (m->now = calloc(1, sizeof *m->now))) {
            json_object_foreach(users, user, count)
            {
                if (json_integer_value(count) > 0 && hub_valid_name(user, strlen(user)))
                    strmap_put(&m->now->users, user, (void *)(intptr_t)json_integer_value(count));
            }
            m->now->expires_ms =
                time_now_ms() + (uint64_t)(hub->srv->cfg.redis.presence_ttl_s * 1000);
        }
        json_decref(users);
        if (!m->now) {
            hub_room_unref(r);
            free(m);
            return;
        }
    }
    m->msg.fn = apply;
    net_loop_post(loop, &m->msg);
}

/* ---- the tick, on loop 0 ---- */

typedef struct {
    sbuf_t nodes; /* each NUL-terminated */
    uint64_t now;
} expired_t;

static void find_expired(const char *node, void *value, void *ud)
{
    expired_t *e = ud;
    hub_remote_t *rm = value;
    if (rm->expires_ms <= e->now)
        sbuf_append(&e->nodes, node, strlen(node) + 1);
}

typedef struct {
    hub_t *hub;
    net_loop_t *loop;
    uint64_t now;
    int refresh;
} tick_t;

static void tick_room(const char *key, void *value, void *ud)
{
    tick_t *t = ud;
    room_t *r = value;
    pthread_mutex_lock(&r->lock);
    if (r->presence_dirty || (t->refresh && r->local_total > 0)) {
        announce(t->hub, r);
        r->presence_dirty = 0;
    }
    expired_t e = {.now = t->now};
    strmap_each(&r->remote, find_expired, &e);
    for (size_t off = 0; off < e.nodes.len; off += strlen(e.nodes.p + off) + 1)
        replace_remote(t->hub, r, t->loop, e.nodes.p + off, NULL);
    sbuf_free(&e.nodes);
    pthread_mutex_unlock(&r->lock);
}

static void on_tick(uv_timer_t *timer)
{
    hub_t *hub = timer->data;
    net_loop_t *loop = CONTAINER_OF(timer->loop, net_loop_t, uv);
    tick_t t = {.hub = hub, .loop = loop, .now = time_now_ms()};
    if (t.now >= hub->next_refresh_ms && redis_up(hub->redis)) {
        t.refresh = 1;
        hub->next_refresh_ms = t.now + (uint64_t)(hub->srv->cfg.redis.presence_ttl_s * 1000 / 3);
    }
    for (int i = 0; i < HUB_SHARDS; i++) {
        pthread_mutex_lock(&hub->shards[i].lock);
        strmap_each(&hub->shards[i].rooms, tick_room, &t);
        pthread_mutex_unlock(&hub->shards[i].lock);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

/* Loop 0's end closes the timer (core runs loop_free for the slot's context). */
static void timer_end(net_loop_t *loop, void *ctx)
{
    uv_close(ctx, on_timer_closed);
}
static const core_slot_ops_t timer_slot_ops = {.name = "hub-nodes-timer", .loop_free = timer_end};

static atomic_int timer_slot;

typedef struct {
    net_msg_t msg;
    hub_t *hub;
} start_msg_t;

static void start_timer(net_loop_t *loop, net_msg_t *msg)
{
    hub_t *hub = CONTAINER_OF(msg, start_msg_t, msg)->hub;
    free(msg);
    uv_timer_t *t = loop ? malloc(sizeof *t) : NULL;
    if (!t)
        return;
    uv_timer_init(&loop->uv, t);
    t->data = hub;
    uv_timer_start(t, on_tick, TICK_MS, TICK_MS);
    core_loop_ctx_set(loop, core_slot_of(&timer_slot, &timer_slot_ops), t);
}

void hub_nodes_init(hub_t *hub)
{
    redis_on_message(hub->redis, HUB_PRESENCE_CHANNEL, on_presence, hub);
    redis_subscribe(hub->redis, HUB_PRESENCE_CHANNEL);
}

void hub_nodes_start(hub_t *hub)
{
    int expected = 0;
    net_loop_t *loop = loop0(hub);
    if (!loop || !atomic_compare_exchange_strong(&hub->ticking, &expected, 1))
        return;
    start_msg_t *m = malloc(sizeof *m);
    if (!m)
        return;
    m->msg.fn = start_timer;
    m->hub = hub;
    net_loop_post(loop, &m->msg);
}
