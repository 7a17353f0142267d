/* Publishing: a room message gets its id, its one frame and its history slot under the room's
 * lock, then one delivery per loop with members; each loop hands that same frame to its own
 * members. Also joining (welcome, replay of what a client missed), leaving, and direct
 * messages, which ride the same deliveries filtered by user. */
#include "hub/hub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void leave(roost_ws_t *ws, void *arg);

/* The member a connection is, found through its detach hook (the ws layer keeps no room). */
static hub_member_t *member_of(const roost_ws_t *ws)
{
    return ws->detach == leave ? ws->detach_arg : NULL;
}

typedef struct {
    net_msg_t msg;
    room_t *room; /* a reference */
    hub_t *hub;
    rbuf_t *frame;
    uint64_t seq;
    char to[]; /* "" for everyone */
} delivery_t;

static void deliver(net_loop_t *loop, net_msg_t *msg)
{
    delivery_t *d = CONTAINER_OF(msg, delivery_t, msg);
    if (loop) {
        hub_member_t *m = d->room->local[loop->index], *next;
        long sent = 0;
        for (; m; m = next) {
            next = m->next; /* sending may close m's connection, which unlinks m */
            if (m->join_seq >= d->seq || (d->to[0] && strcmp(m->user, d->to) != 0))
                continue;
            sent += ws_queue_shared(m->ws, d->frame) == 0;
        }
        ws_count_sent(ws_stats(d->hub->srv), sent, sent * (long)d->frame->len);
        roost_counter_add(d->hub->c_deliveries, sent);
    }
    rbuf_unref(d->frame);
    hub_room_unref(d->room);
    free(d);
}

void hub_post(hub_t *hub, room_t *r, rbuf_t *frame, uint64_t seq, const char *to)
{
    net_group_t *g = hub->srv->group;
    if (!g)
        return; /* not running: nobody to deliver to */
    size_t tolen = to ? strlen(to) : 0;
    for (int i = 0; i < hub->nloops; i++) {
        if (!r->local_n[i])
            continue;
        delivery_t *d = malloc(sizeof *d + tolen + 1);
        if (!d)
            continue;
        d->msg.fn = deliver;
        d->room = r;
        hub_room_ref(r);
        d->hub = hub;
        d->frame = rbuf_ref(frame);
        d->seq = seq;
        memcpy(d->to, to ? to : "", tolen + 1);
        net_loop_post(net_group_loop(g, i), &d->msg);
    }
}

void hub_local_only(hub_t *hub, room_t *r, rbuf_t *frame, const char *to)
{
    pthread_mutex_lock(&r->lock);
    hub_post(hub, r, frame, ++r->seq, to);
    pthread_mutex_unlock(&r->lock);
}

/* Through Redis, or here only when it is down (the frame then has no id: it is in no history
 * a client could ask for). Returns 0: the id is Redis's, not known yet. Steals o. */
static long long bridge_publish(hub_t *hub, room_t *r, json_t *o, const char *to, long *online)
{
    if (!o)
        return -ENOMEM;
    if (hub_bridge_publish(hub, r, o, to) < 0) {
        roost_counter_add(hub->c_not_bridged, 1);
        rbuf_t *frame = hub_frame_encode(json_incref(o));
        if (frame)
            hub_local_only(hub, r, frame, to);
        rbuf_unref(frame);
    }
    json_decref(o);
    if (online) {
        pthread_mutex_lock(&r->lock);
        *online = r->online;
        pthread_mutex_unlock(&r->lock);
    }
    return 0;
}

long long roost_room_publish(roost_server_t *srv, const char *name, const char *type,
                             json_t *fields, long *online)
{
    hub_t *hub = hub_get(srv);
    if (!hub || !hub_valid_name(name, strlen(name))) {
        json_decref(fields);
        return hub ? -EINVAL : -ENOMEM;
    }
    room_t *r = hub_room(hub, name, 1);
    if (!r) {
        json_decref(fields);
        return errno == ENOSPC ? -ENOSPC : -ENOMEM;
    }
    /* Published while handling a traced request or running its job: the frame names that
     * trace, so one id links the request, the job and what the room's members receive. */
    const char *trace = roost_trace_is_shared() ? roost_trace_current() : NULL;
    if (trace && (fields || (fields = json_object())) && !json_object_get(fields, "trace_id"))
        json_object_set_new(fields, "trace_id", json_string(trace));
    if (hub->redis) { /* bridged: the id comes from Redis; every node delivers what it hears */
        long long rc = bridge_publish(hub, r, hub_frame_object(r, type, fields, 0), NULL, online);
        hub_room_unref(r);
        return rc;
    }
    pthread_mutex_lock(&r->lock);
    uint64_t id = r->last_id + 1;
    rbuf_t *frame = hub_frame(r, type, fields, id);
    if (!frame) {
        pthread_mutex_unlock(&r->lock);
        hub_room_unref(r);
        return -ENOMEM;
    }
    r->idle_since_ms = time_now_ms(); /* its history is wanted a while yet */
    r->last_id = id;
    hub_history_push(hub, r, id, frame);
    hub_post(hub, r, frame, ++r->seq, NULL);
    if (online)
        *online = r->online;
    pthread_mutex_unlock(&r->lock);
    rbuf_unref(frame);
    hub_room_unref(r);
    return (long long)id;
}

int roost_room_direct(roost_ws_t *ws, const char *to, const char *text, size_t len)
{
    hub_member_t *m = member_of(ws);
    if (!m)
        return -ENOENT;
    hub_t *hub = hub_get(ws->srv);
    room_t *r = m->room;
    if (hub->redis) { /* `to` may be on another node */
        json_t *f = json_pack("{s:s,s:s,s:s%}", "from", m->user, "to", to, "text", text, len);
        return f ? (int)bridge_publish(hub, r, hub_frame_object(r, "direct", f, 0), to, NULL)
                 : -ENOMEM;
    }
    pthread_mutex_lock(&r->lock);
    if (!strmap_get(&r->users, to)) {
        pthread_mutex_unlock(&r->lock);
        return -ENOENT;
    }
    json_t *f = json_pack("{s:s,s:s,s:s%}", "from", m->user, "to", to, "text", text, len);
    rbuf_t *frame = f ? hub_frame(r, "direct", f, 0) : NULL;
    if (frame)
        hub_post(hub, r, frame, ++r->seq, to);
    pthread_mutex_unlock(&r->lock);
    rbuf_unref(frame);
    return frame ? 0 : -ENOMEM;
}

/* ---- membership ---- */

/* A loop's list of members (local or waiting), touched only by that loop's thread. */
static void list_add(hub_member_t **head, hub_member_t *m)
{
    m->prev = NULL;
    m->next = *head;
    if (m->next)
        m->next->prev = m;
    *head = m;
}

static void list_del(hub_member_t **head, hub_member_t *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        *head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

static void users_add(room_t *r, const char *user, long delta)
{
    hub_users_add(r, user, delta);
    intptr_t n = (intptr_t)strmap_get(&r->local_users, user) + delta;
    if (n > 0)
        strmap_put(&r->local_users, user, (void *)n);
    else
        strmap_del(&r->local_users, user);
    r->local_total += delta;
    r->presence_dirty = 1;
}

/* Which history frames a client that saw up to `since` needs; NULL result with *reset set when
 * the ring does not reach back that far (or the epoch is not ours). */
static rbuf_t **replay(hub_t *hub, room_t *r, long long since, const char *epoch, int *n,
                       int *reset)
{
    *n = 0;
    *reset = 0;
    if (since < 0)
        return NULL;
    if ((epoch && strcmp(epoch, hub->epoch) != 0) || (uint64_t)since > r->last_id) {
        *reset = 1;
        return NULL;
    }
    if ((uint64_t)since == r->last_id)
        return NULL;
    uint64_t oldest = r->ring_len ? r->ring[r->ring_head].id : r->last_id + 1;
    if ((uint64_t)since + 1 < oldest) {
        *reset = 1;
        return NULL;
    }
    rbuf_t **out = malloc((size_t)r->ring_len * sizeof *out);
    if (!out)
        return NULL;
    for (int i = 0; i < r->ring_len; i++) {
        hub_entry_t *e = &r->ring[(r->ring_head + i) % r->ring_cap];
        if (e->id > (uint64_t)since)
            out[(*n)++] = rbuf_ref(e->frame);
    }
    return out;
}

int roost_room_join(roost_ws_t *ws, const char *name, const char *user, long long since,
                    const char *epoch)
{
    hub_t *hub = hub_get(ws->srv);
    if (member_of(ws) || ws->detach || !hub)
        return -EINVAL;
    room_t *r = hub_room(hub, name, 1);
    if (!r)
        return errno == ENOSPC ? -ENOSPC : -ENOMEM;
    size_t ulen = strlen(user);
    hub_member_t *m = calloc(1, sizeof *m + ulen + 1); /* holds the lookup's reference */
    if (!m) {
        hub_room_unref(r);
        return -ENOMEM;
    }
    net_loop_t *loop = ws->conn->loop;
    m->ws = ws;
    m->room = r;
    m->loop = loop->index;
    memcpy(m->user, user, ulen + 1);

    pthread_mutex_lock(&r->lock);
    r->online++;
    roost_counter_add(hub->c_members, 1);
    r->local_n[m->loop]++;
    users_add(r, user, 1);
    hub_notice(hub, r, 1, user, loop);
    ws_set_detach(ws, leave, m);
    if (hub->redis) {
        /* Welcomed when Redis tells the room's epoch, last id and history (bridge.c). */
        if (r->local_total == 1) {
            hub_bridge_watch(hub, r, 1);
            hub_nodes_query(hub, r);
        }
        hub_nodes_start(hub);
        m->waiting = 1;
        m->serial = atomic_fetch_add(&hub->serials, 1) + 1;
        list_add(&r->waiting[m->loop], m);
        hub_bridge_join(hub, r, m, since, epoch);
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    m->join_seq = r->seq; /* the join notice and everything before it are not for m */
    int nreplay, reset;
    rbuf_t **frames = replay(hub, r, since, epoch, &nreplay, &reset);
    json_t *welcome = json_pack("{s:s,s:s,s:s,s:i,s:s,s:I}", "type", "welcome", "room", name,
                                "user", user, "online", (json_int_t)r->online, "epoch", hub->epoch,
                                "last_id", (json_int_t)r->last_id);
    json_t *reset_msg = reset ? json_pack("{s:s,s:s,s:s,s:I}", "type", "reset", "room", name,
                                          "epoch", hub->epoch, "last_id", (json_int_t)r->last_id)
                              : NULL;
    pthread_mutex_unlock(&r->lock);

    /* Linked after the lock: deliveries for later events are handled by this same thread, so
     * none can slip between the snapshot above and this line. */
    list_add(&r->local[m->loop], m);

    roost_ws_send_json(ws, welcome);
    if (reset_msg)
        roost_ws_send_json(ws, reset_msg);
    for (int i = 0; i < nreplay; i++) {
        ws_send_shared(ws, frames[i]);
        rbuf_unref(frames[i]);
    }
    free(frames);
    return 0;
}

void hub_member_link(room_t *r, hub_member_t *m)
{
    list_del(&r->waiting[m->loop], m);
    m->waiting = 0;
    m->join_seq = r->seq;
    list_add(&r->local[m->loop], m);
}

/* The connection's detach hook: it ended, so it leaves the room. */
static void leave(roost_ws_t *ws, void *arg)
{
    hub_member_t *m = arg;
    room_t *r = m->room;
    hub_t *hub = hub_get(ws->srv);
    pthread_mutex_lock(&r->lock);
    list_del(m->waiting ? &r->waiting[m->loop] : &r->local[m->loop], m);
    r->online--;
    roost_counter_add(hub->c_members, -1);
    r->local_n[m->loop]--;
    users_add(r, m->user, -1);
    if (hub->redis && r->local_total == 0)
        hub_bridge_watch(hub, r, 0);
    if (r->online == 0)
        r->idle_since_ms = time_now_ms();
    hub_notice(hub, r, 0, m->user, ws->conn->loop);
    pthread_mutex_unlock(&r->lock);
    free(m);
    hub_room_unref(r);
}

const char *roost_ws_room(const roost_ws_t *ws)
{
    hub_member_t *m = member_of(ws);
    return m ? m->room->name : NULL;
}

const char *roost_ws_user(const roost_ws_t *ws)
{
    hub_member_t *m = member_of(ws);
    return m ? m->user : NULL;
}
