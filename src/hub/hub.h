/* The hub: rooms shared by every loop. A room's shared state (ids, history ring, presence,
 * per-loop member counts) sits behind the room's own mutex, so no lock is shared by all rooms or
 * all loops; its members sit in one list per loop, touched only by that loop's thread.
 *
 * A room message is encoded once into one immutable frame (rbuf_t). Under the room's lock it
 * gets its id, enters the history ring, and a delivery (a reference to that frame) is posted to
 * the inbox of every loop that has members in the room; posting under the lock keeps ids in
 * order on every loop. Each loop then queues the same frame to its members, and the net layer
 * writes what a connection got during one loop iteration in one writev. */
#ifndef ROOST_HUB_H
#define ROOST_HUB_H

#include <roost/roost.h>

#include "redis/redis.h"
#include "ws/conn.h"

#define HUB_SHARDS       16
#define HUB_NOTICE_MS    100 /* presence notices: at most one frame per room per window */
#define HUB_NOTICE_NAMES 100 /* names listed in one coalesced notice */
/* A big room's window is longer: a notice costs one frame per member here, so from
 * HUB_NOTICE_BIG members on the window grows with them, keeping the room's notices to about
 * HUB_NOTICE_BUDGET frames a second on this node (up to HUB_NOTICE_MAX_MS). */
#define HUB_NOTICE_BIG    500
#define HUB_NOTICE_BUDGET 1000
#define HUB_NOTICE_MAX_MS 5000

typedef struct room room_t;

typedef struct hub_member {
    struct hub_member *prev, *next; /* the room's list on this loop */
    roost_ws_t *ws;
    room_t *room;
    uint64_t join_seq; /* events up to this one happened before the join */
    int loop;
    int waiting;     /* bridged: in the room's waiting list until Redis told its state */
    uint64_t serial; /* bridged: finds it again when that answer comes */
    char user[];
} hub_member_t;

typedef struct {
    uint64_t id;
    rbuf_t *frame;
} hub_entry_t;

struct room {
    /* Held by the registry (1), each lookup until its caller lets go (hub_room_unref), each
     * member, delivery, notice timer and Redis call in flight: the room is freed by whoever
     * lets go last once the idle sweep took it out of the registry. */
    _Atomic long refs;
    uint64_t idle_since_ms; /* the last time it was empty or published to (under the lock) */
    pthread_mutex_t lock;
    char *name;
    uint64_t last_id; /* room messages: 1, 2, 3 ... */
    uint64_t seq;     /* every delivery event (messages, notices, directs) */
    long online;
    strmap_t users;    /* user name -> connections (intptr_t) */
    hub_entry_t *ring; /* history, oldest at ring_head */
    int ring_cap, ring_len, ring_head;
    long *local_n;          /* members per loop (changed under the lock) */
    hub_member_t **local;   /* members per loop (touched only by that loop) */
    hub_member_t **waiting; /* bridged: joined, not yet welcomed (per loop, like local) */
    char epoch[40];         /* bridged: the room's epoch in Redis, "" until known */
    /* Bridged presence (nodes.c): online and users above count every node's members. */
    long local_total;     /* members on this node */
    strmap_t local_users; /* user -> connections on this node */
    strmap_t remote;      /* node id -> hub_remote_t, as its last announcement said */
    int presence_dirty;   /* this node's members changed since its last announcement */
    /* presence notices waiting for the end of the window */
    uint64_t notice_at;
    json_t *pending_join, *pending_leave; /* arrays of names */
    long more_join, more_leave;
    int notice_scheduled;
};

typedef struct hub {
    roost_server_t *srv;
    int nloops;
    int history;
    char epoch[17];
    long max_rooms;
    _Atomic long nrooms;
    uint64_t idle_ms;               /* --room-idle-s */
    _Atomic uint64_t last_sweep_ms; /* idle rooms are looked for at most once a second ... */
    roost_counter_t *c_freed;       /* ... or when --max-rooms is reached */
    /* On /metrics: rooms made, members joined (gauges), frames handed to members. */
    roost_counter_t *c_rooms, *c_members, *c_deliveries;
    roost_counter_t *c_notices_held; /* presence events held for the end of a window */
    /* With --redis (bridge.c): the client, and publishes delivered only here. */
    redis_t *redis;
    roost_counter_t *c_not_bridged, *c_resets;
    _Atomic uint64_t serials;
    _Atomic int ticking;      /* nodes.c's timer runs (on loop 0) */
    uint64_t next_refresh_ms; /* loop 0 only */
    const char *node;
    struct {
        pthread_mutex_t lock;
        strmap_t rooms;
    } shards[HUB_SHARDS];
} hub_t;

/* room.c */
hub_t *hub_get(roost_server_t *srv); /* created on first use */
/* The room, with a reference the caller gives back with hub_room_unref; create: made when
 * missing, unless --max-rooms are there (NULL, errno ENOSPC). */
room_t *hub_room(hub_t *hub, const char *name, int create);
void hub_room_ref(room_t *r);
void hub_room_unref(room_t *r);
/* A room held by work that ends later (a Redis reply, a timer): hub_room_hold takes the
 * reference, hub_room_unref(held.room) gives it back. */
typedef struct {
    hub_t *hub;
    room_t *room;
} hub_held_t;
void hub_room_hold(hub_held_t *held, hub_t *hub, room_t *r);
int hub_valid_name(const char *s, size_t len);
/* With the room locked: a frame for {"type",...fields,"room"} (+ "id" when id > 0) and "ts". */
rbuf_t *hub_frame(room_t *r, const char *type, json_t *fields, uint64_t id);
void hub_history_push(hub_t *hub, room_t *r, uint64_t id, rbuf_t *frame);

/* fanout.c: with the room locked, posts frame (event seq) to every loop with members; to, when
 * not NULL, limits it to that user's connections. */
void hub_post(hub_t *hub, room_t *r, rbuf_t *frame, uint64_t seq, const char *to);

/* bridge.c: rooms shared through Redis (when hub->redis is set). */
void hub_bridge_init(hub_t *hub);
/* Publishes o (the frame's object, without its id; to: a direct message's user, or NULL)
 * through Redis: 0, or < 0 when Redis is down (the caller delivers it here only, counted).
 * A publish that fails later is delivered here then. */
int hub_bridge_publish(hub_t *hub, room_t *r, const json_t *o, const char *to);
/* Delivers frame to this node's members only (no id, no history): Redis was not there. */
void hub_local_only(hub_t *hub, room_t *r, rbuf_t *frame, const char *to);
/* With the room locked: m joined (counted, in r->waiting); its welcome comes from Redis. */
void hub_bridge_join(hub_t *hub, room_t *r, hub_member_t *m, long long since, const char *epoch);
/* With the room locked: the room's first local member came (1) or its last one left (0). */
void hub_bridge_watch(hub_t *hub, room_t *r, int watching);
/* The frame's JSON object: {"type","room",...fields,"ts"} (+ "id" when id > 0). Steals fields. */
json_t *hub_frame_object(room_t *r, const char *type, json_t *fields, uint64_t id);
rbuf_t *hub_frame_encode(json_t *o); /* and decrefs o */
/* nodes.c: presence across nodes. Each node announces its members of a room on the room's
 * channel when they change and every --presence-ttl-s / 3; another node's announcement counts
 * until the TTL passes without a new one (a node killed -9 has its members leave then). */
typedef struct {
    strmap_t users; /* user -> connections (intptr_t) */
    uint64_t expires_ms;
} hub_remote_t;
#define HUB_PRESENCE_CHANNEL "roost:presence"
void hub_nodes_init(hub_t *hub);  /* subscribes to the presence channel */
void hub_nodes_start(hub_t *hub); /* the tick on loop 0; any thread, once */
/* With the room locked: this node starts watching r; the others announce their members. */
void hub_nodes_query(hub_t *hub, room_t *r);
void hub_users_add(room_t *r, const char *user, long delta); /* with the room locked */
void hub_remote_free(void *p);

/* fanout.c, on m's loop with the room locked: m leaves r->waiting for the members list. */
void hub_member_link(room_t *r, hub_member_t *m);

/* presence.c: join and leave notices, coalesced per window; with the room locked. */
void hub_notice(hub_t *hub, room_t *r, int join, const char *user, net_loop_t *loop);

#endif
