/* Rooms by name (a registry sharded by hash, each shard with its own mutex), their history
 * rings and the read-only queries: online counts, the room list, who is present. Rooms empty
 * for --room-idle-s are freed (the sweep runs when rooms are made, so that a node seeing
 * millions of short-lived rooms keeps bounded memory without a timer). */
#include "hub/hub.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void room_free(void *p)
{
    room_t *r = p;
    for (int i = 0; i < r->ring_len; i++)
        rbuf_unref(r->ring[(r->ring_head + i) % r->ring_cap].frame);
    strmap_free(&r->users, NULL);
    strmap_free(&r->local_users, NULL);
    strmap_free(&r->remote, hub_remote_free);
    json_decref(r->pending_join);
    json_decref(r->pending_leave);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void hub_free(void *p)
{
    hub_t *hub = p;
    for (int i = 0; i < HUB_SHARDS; i++) {
        strmap_free(&hub->shards[i].rooms, room_free);
        pthread_mutex_destroy(&hub->shards[i].lock);
    }
    free(hub);
}

/* Made on first use by core (a room may first be published to from a worker thread). */
static void *hub_new(roost_server_t *srv)
{
    hub_t *hub = calloc(1, sizeof *hub);
    if (!hub)
        return NULL;
    hub->srv = srv;
    hub->nloops = srv->cfg.net.threads;
    hub->history = srv->cfg.rooms.history;
    hub->max_rooms = srv->cfg.rooms.max_rooms > 0 ? srv->cfg.rooms.max_rooms : 100000;
    hub->idle_ms = (uint64_t)((srv->cfg.rooms.idle_s > 0 ? srv->cfg.rooms.idle_s : 600) * 1000);
    /* A new epoch per process: history lives in memory, so a restart cannot honour ?since. */
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memcpy(rnd, &(uint64_t){time_now_ns()}, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(hub->epoch + 2 * i, 3, "%02x", rnd[i]);
    for (int i = 0; i < HUB_SHARDS; i++)
        pthread_mutex_init(&hub->shards[i].lock, NULL);
    hub->c_rooms = roost_gauge(srv, "roost_rooms", NULL, "Rooms held (--max-rooms)");
    hub->c_freed = roost_counter(srv, "roost_rooms_freed_total", NULL,
                                 "Rooms freed after --room-idle-s without members");
    hub->c_members =
        roost_gauge(srv, "roost_room_members", NULL, "WebSocket connections joined to a room");
    hub->c_deliveries = roost_counter(srv, "roost_room_deliveries_total", NULL,
                                      "Room frames handed to members (the fan-out)");
    hub->c_notices_held =
        roost_counter(srv, "roost_room_notices_held_total", NULL,
                      "Join/leave events held for the end of the room's presence window");
    hub_bridge_init(hub);
    return hub;
}

CORE_SERVER_CTX_FN(hub_t, hub_get, .name = "hub", .server_new = hub_new, .server_free = hub_free)

int hub_valid_name(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

static unsigned shard_of(const char *name)
{
    unsigned h = 5381;
    for (; *name; name++)
        h = h * 33 + (unsigned char)*name;
    return h % HUB_SHARDS;
}

/* One block: the room, its per-loop counts and lists, its history ring, then its name. */
static room_t *room_new(hub_t *hub, const char *name)
{
    size_t nloops = (size_t)hub->nloops, history = (size_t)hub->history, len = strlen(name) + 1;
    room_t *r = calloc(1, sizeof *r + nloops * (sizeof(long) + 2 * sizeof(hub_member_t *)) +
                              history * sizeof(hub_entry_t) + len);
    if (!r)
        return NULL;
    r->local_n = (long *)(r + 1);
    r->local = (hub_member_t **)(r->local_n + nloops);
    r->waiting = r->local + nloops;
    r->ring = (hub_entry_t *)(r->waiting + nloops);
    r->name = memcpy(r->ring + history, name, len);
    r->ring_cap = hub->history;
    pthread_mutex_init(&r->lock, NULL);
    atomic_init(&r->refs, 1);
    r->idle_since_ms = time_now_ms();
    return r;
}

void hub_room_ref(room_t *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void hub_room_hold(hub_held_t *held, hub_t *hub, room_t *r)
{
    held->hub = hub;
    held->room = r;
    hub_room_ref(r);
}

void hub_room_unref(room_t *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1)
        room_free(r);
}

typedef struct {
    hub_t *hub;
    uint64_t now;
    sbuf_t idle; /* room_t pointers */
} sweep_t;

/* Under the shard's lock, where no lookup can take a new reference: a room only the registry
 * holds has no member, delivery, timer or call left. */
static void find_idle(const char *key, void *value, void *ud)
{
    sweep_t *s = ud;
    room_t *r = value;
    if (atomic_load(&r->refs) == 1 && !r->online && s->now - r->idle_since_ms >= s->hub->idle_ms)
        sbuf_append(&s->idle, &r, sizeof r);
}

static void sweep(hub_t *hub, uint64_t now)
{
    for (int i = 0; i < HUB_SHARDS; i++) {
        sweep_t s = {.hub = hub, .now = now};
        pthread_mutex_lock(&hub->shards[i].lock);
        strmap_each(&hub->shards[i].rooms, find_idle, &s);
        room_t **idle = (room_t **)s.idle.p;
        size_t n = s.idle.len / sizeof *idle;
        for (size_t k = 0; k < n; k++)
            strmap_del(&hub->shards[i].rooms, idle[k]->name);
        pthread_mutex_unlock(&hub->shards[i].lock);
        for (size_t k = 0; k < n; k++) {
            hub_room_unref(idle[k]);
            atomic_fetch_sub(&hub->nrooms, 1);
        }
        roost_counter_add(hub->c_rooms, -(long)n);
        roost_counter_add(hub->c_freed, (long)n);
        sbuf_free(&s.idle);
    }
}

static void maybe_sweep(hub_t *hub)
{
    uint64_t now = time_now_ms(), last = atomic_load(&hub->last_sweep_ms);
    if (now - last < 1000 && atomic_load(&hub->nrooms) < hub->max_rooms)
        return;
    if (atomic_compare_exchange_strong(&hub->last_sweep_ms, &last, now))
        sweep(hub, now);
}

room_t *hub_room(hub_t *hub, const char *name, int create)
{
    unsigned sh = shard_of(name);
    pthread_mutex_lock(&hub->shards[sh].lock);
    room_t *r = strmap_get(&hub->shards[sh].rooms, name);
    if (r)
        hub_room_ref(r);
    pthread_mutex_unlock(&hub->shards[sh].lock);
    if (r || !create)
        return r;
    maybe_sweep(hub); /* before this shard's lock: the sweep takes each shard's in turn */
    pthread_mutex_lock(&hub->shards[sh].lock);
    r = strmap_get(&hub->shards[sh].rooms, name);
    if (!r) {
        /* A reservation first, so that shards cannot race past the bound. */
        int err = ENOSPC;
        if (atomic_fetch_add(&hub->nrooms, 1) < hub->max_rooms) {
            err = ENOMEM;
            if ((r = room_new(hub, name)) && strmap_put(&hub->shards[sh].rooms, name, r) < 0) {
                room_free(r);
                r = NULL;
            }
            if (r)
                roost_counter_add(hub->c_rooms, 1);
        }
        if (!r) {
            atomic_fetch_sub(&hub->nrooms, 1);
            errno = err;
        }
    }
    if (r)
        hub_room_ref(r);
    pthread_mutex_unlock(&hub->shards[sh].lock);
    return r;
}

json_t *hub_frame_object(room_t *r, const char *type, json_t *fields, uint64_t id)
{
    json_t *o = json_pack("{s:s,s:s}", "type", type, "room", r->name);
    if (!o) {
        json_decref(fields);
        return NULL;
    }
    if (fields)
        json_object_update(o, fields);
    json_decref(fields);
    if (id)
        json_object_set_new(o, "id", json_integer((json_int_t)id));
    json_object_set_new(o, "ts", json_real((double)(uint64_t)(time_wall() * 1000) / 1000.0));
    return o;
}

rbuf_t *hub_frame_encode(json_t *o)
{
    if (!o)
        return NULL;
    char small[1024];
    size_t n = json_dumpb(o, small, sizeof small, JSON_COMPACT | JSON_REAL_PRECISION(15));
    rbuf_t *frame = NULL;
    if (n && n <= sizeof small) {
        frame = ws_frame_new(WS_OP_TEXT, small, n);
    } else if (n) {
        char *big = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (big)
            frame = ws_frame_new(WS_OP_TEXT, big, strlen(big));
        free(big);
    }
    json_decref(o);
    return frame;
}

rbuf_t *hub_frame(room_t *r, const char *type, json_t *fields, uint64_t id)
{
    return hub_frame_encode(hub_frame_object(r, type, fields, id));
}

void hub_history_push(hub_t *hub, room_t *r, uint64_t id, rbuf_t *frame)
{
    if (!r->ring_cap)
        return;
    if (r->ring_len == r->ring_cap) {
        rbuf_unref(r->ring[r->ring_head].frame);
        r->ring_head = (r->ring_head + 1) % r->ring_cap;
        r->ring_len--;
    }
    hub_entry_t *e = &r->ring[(r->ring_head + r->ring_len) % r->ring_cap];
    e->id = id;
    e->frame = rbuf_ref(frame);
    r->ring_len++;
}

int roost_room_available(roost_server_t *srv, const char *name)
{
    hub_t *hub = hub_get(srv);
    if (!hub)
        return 0;
    if (atomic_load(&hub->nrooms) >= hub->max_rooms)
        maybe_sweep(hub);
    if (atomic_load(&hub->nrooms) < hub->max_rooms)
        return 1;
    room_t *r = hub_room(hub, name, 0);
    hub_room_unref(r);
    return r != NULL;
}

long roost_room_online(roost_server_t *srv, const char *name)
{
    hub_t *hub = hub_get(srv);
    room_t *r = hub ? hub_room(hub, name, 0) : NULL;
    if (!r)
        return 0;
    pthread_mutex_lock(&r->lock);
    long n = r->online;
    pthread_mutex_unlock(&r->lock);
    hub_room_unref(r);
    return n;
}

static void add_room(const char *key, void *value, void *ud)
{
    room_t *r = value;
    pthread_mutex_lock(&r->lock);
    long n = r->online;
    pthread_mutex_unlock(&r->lock);
    json_array_append_new(ud, json_pack("{s:s,s:i}", "room", key, "online", (json_int_t)n));
}

json_t *roost_room_list(roost_server_t *srv)
{
    json_t *list = json_array();
    hub_t *hub = hub_get(srv);
    for (int i = 0; hub && i < HUB_SHARDS; i++) {
        pthread_mutex_lock(&hub->shards[i].lock);
        strmap_each(&hub->shards[i].rooms, add_room, list);
        pthread_mutex_unlock(&hub->shards[i].lock);
    }
    return list;
}

static void add_user(const char *key, void *value, void *ud)
{
    json_array_append_new(ud, json_string(key));
}

static int by_string(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

json_t *roost_room_users(roost_server_t *srv, const char *name)
{
    json_t *users = json_array();
    hub_t *hub = hub_get(srv);
    room_t *r = hub ? hub_room(hub, name, 0) : NULL;
    if (!r)
        return users;
    pthread_mutex_lock(&r->lock);
    strmap_each(&r->users, add_user, users);
    pthread_mutex_unlock(&r->lock);
    hub_room_unref(r);
    /* Sorted for a stable answer: through a plain array of the (owned) values. */
    size_t n = json_array_size(users);
    json_t **v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return users;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(users, i));
    qsort(v, n, sizeof *v, by_string);
    json_array_clear(users);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(users, v[i]);
    free(v);
    return users;
}
