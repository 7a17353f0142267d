/* Rooms shared by several nodes through Redis (--redis). A publish runs one script that gives
 * the room's next id (a hash: id, epoch), appends the frame to the room's stream (MAXLEN ~
 * --history) and PUBLISHes it on the room's channel. Every node subscribes to the rooms it has
 * members in and hands what comes to them as one shared frame, the publisher's node included
 * (it never delivers its own publish directly), so ids and order are the same everywhere.
 * A join asks Redis for the room's epoch, last id and, with ?since=, the stream after it; the
 * member is welcomed on its loop when that answer comes. Redis down: delivery here only. */
#include "hub/hub.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 128

/* KEYS: the room's hash, its stream, its channel; ARGV: the frame's JSON without its closing
 * brace, the history length, an epoch for a room Redis does not know (anymore). */
static redis_script_t publish_script = {
    .source = "local id = redis.call('HINCRBY', KEYS[1], 'id', 1)\n"
              "if not redis.call('HGET', KEYS[1], 'epoch') then\n"
              "  redis.call('HSET', KEYS[1], 'epoch', ARGV[3])\n"
              "  redis.call('DEL', KEYS[2])\n"
              "end\n"
              "local msg = ARGV[1] .. ',\"id\":' .. id .. '}'\n"
              "if tonumber(ARGV[2]) > 0 then\n"
              "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 'm', msg)\n"
              "end\n"
              "redis.call('PUBLISH', KEYS[3], id .. ' \\n' .. msg)\n"
              "return id\n"};

/* KEYS: hash, stream; ARGV: a new epoch, since (-1: none), the client's epoch (or "").
 * Returns {epoch, last_id, id1, frame1, id2, frame2, ...}: the stream after since. */
static redis_script_t sync_script = {
    .source =
        "local epoch = redis.call('HGET', KEYS[1], 'epoch')\n"
        "if not epoch then\n"
        "  epoch = ARGV[1]\n"
        "  redis.call('HSET', KEYS[1], 'epoch', epoch)\n"
        "  redis.call('DEL', KEYS[2])\n"
        "end\n"
        "local last = tonumber(redis.call('HGET', KEYS[1], 'id') or '0')\n"
        "local since = tonumber(ARGV[2])\n"
        "local out = {epoch, last}\n"
        "if since >= 0 and since < last and (ARGV[3] == '' or ARGV[3] == epoch) then\n"
        "  for _, e in ipairs(redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+', 'COUNT',\n"
        "                                 last - since)) do\n"
        "    table.insert(out, tonumber(string.match(e[1], '^(%d+)')))\n"
        "    table.insert(out, e[2][2])\n"
        "  end\n"
        "end\n"
        "return out\n"};

static void keys(const room_t *r, char hash[KEY_MAX], char stream[KEY_MAX], char chan[KEY_MAX])
{
    snprintf(hash, KEY_MAX, "roost:room:%s:state", r->name);
    snprintf(stream, KEY_MAX, "roost:room:%s:log", r->name);
    snprintf(chan, KEY_MAX, "roost:room:%s", r->name);
}

static void new_epoch(char out[17])
{
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memcpy(rnd, &(uint64_t){time_now_ns()}, sizeof rnd);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", rnd[i]);
}

/* ---- publishing ---- */

typedef struct {
    hub_held_t held;
    char to[65];
    char json[]; /* the frame without its id, for local delivery if Redis fails us */
} pub_t;

static void local_fallback(hub_t *hub, room_t *r, const char *json, const char *to)
{
    roost_counter_add(hub->c_not_bridged, 1);
    rbuf_t *frame = ws_frame_new(WS_OP_TEXT, json, strlen(json));
    if (frame)
        hub_local_only(hub, r, frame, to);
    rbuf_unref(frame);
}

static void on_published(redis_t *rd, const redisReply *reply, int err, void *ud)
{
    pub_t *p = ud;
    if (err || !reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            log_warn("redis: room %s: %s", p->held.room->name, reply->str);
        local_fallback(p->held.hub, p->held.room, p->json, p->to[0] ? p->to : NULL);
    }
    hub_room_unref(p->held.room);
    free(p);
}

int hub_bridge_publish(hub_t *hub, room_t *r, const json_t *o, const char *to)
{
    if (!redis_up(hub->redis))
        return -ENOTCONN;
    char *json = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15));
    size_t n = json ? strlen(json) : 0;
    pub_t *p = n > 2 ? malloc(sizeof *p + n + 1) : NULL;
    if (!p) {
        free(json);
        return -ENOMEM;
    }
    hub_room_hold(&p->held, hub, r);
    snprintf(p->to, sizeof p->to, "%s", to ? to : "");
    memcpy(p->json, json, n + 1);
    free(json);
    char hash[KEY_MAX], stream[KEY_MAX], chan[KEY_MAX];
    keys(r, hash, stream, chan);
    int rc;
    if (to) {
        /* A direct message: no id, no history; only the nodes with `to` deliver it. */
        char *msg = malloc(n + strlen(p->to) + 4);
        if (!msg) {
            hub_room_unref(r);
            free(p);
            return -ENOMEM;
        }
        int len = sprintf(msg, "0 %s\n%s", p->to, p->json);
        rc = redis_command(hub->redis, on_published, p, 3, (const char *[]){"PUBLISH", chan, msg},
                           (const size_t[]){7, strlen(chan), (size_t)len});
        free(msg);
    } else {
        char hist[16], epoch[17];
        snprintf(hist, sizeof hist, "%d", hub->history);
        new_epoch(epoch);
        const char *argv[] = {hash, stream, chan, p->json, hist, epoch};
        size_t lens[] = {strlen(hash), strlen(stream), strlen(chan), n - 1, strlen(hist), 16};
        rc = redis_eval(hub->redis, &publish_script, 3, 6, argv, lens, on_published, p);
    }
    if (rc < 0) {
        hub_room_unref(r);
        free(p);
    }
    return rc;
}

/* ---- receiving ---- */

static void on_message(redis_t *rd, const char *channel, const char *data, size_t len, void *ud)
{
    hub_t *hub = ud;
    const char *name = channel + strlen("roost:room:");
    const char *nl = memchr(data, '\n', len), *sp = memchr(data, ' ', len);
    if (!nl || !sp || sp > nl)
        return;
    uint64_t id = strtoull(data, NULL, 10);
    char to[65] = "";
    if (nl - sp - 1 > 0 && nl - sp - 1 < (long)sizeof to)
        memcpy(to, sp + 1, (size_t)(nl - sp - 1));
    room_t *r = hub_room(hub, name, 0);
    if (!r)
        return;
    rbuf_t *frame = ws_frame_new(WS_OP_TEXT, nl + 1, len - (size_t)(nl + 1 - data));
    if (!frame) {
        hub_room_unref(r);
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (id) {
        if (id > r->last_id)
            r->last_id = id;
        hub_history_push(hub, r, id, frame);
    }
    hub_post(hub, r, frame, ++r->seq, to[0] ? to : NULL);
    pthread_mutex_unlock(&r->lock);
    rbuf_unref(frame);
    hub_room_unref(r);
}

void hub_bridge_watch(hub_t *hub, room_t *r, int watching)
{
    char chan[KEY_MAX];
    snprintf(chan, sizeof chan, "roost:room:%s", r->name);
    if (watching)
        redis_subscribe(hub->redis, chan);
    else
        redis_unsubscribe(hub->redis, chan);
}

/* ---- joining: the room's state from Redis, then the welcome on the member's loop ---- */

typedef struct {
    net_msg_t msg;
    hub_held_t held;
    uint64_t serial;
    int loop;
    long long since;
    char client_epoch[40];
    /* the answer */
    int ok;
    char epoch[40];
    uint64_t last_id;
    int n;
    uint64_t *ids;
    rbuf_t **frames;
} sync_t;

static void sync_free(sync_t *s)
{
    for (int i = 0; i < s->n; i++)
        rbuf_unref(s->frames[i]);
    free(s->frames);
    free(s->ids);
    hub_room_unref(s->held.room);
    free(s);
}

static hub_member_t *find_waiting(room_t *r, int loop, uint64_t serial)
{
    for (hub_member_t *m = r->waiting[loop]; m; m = m->next)
        if (m->serial == serial)
            return m;
    return NULL;
}

/* On the member's loop: welcome, reset or replay, then live frames. */
static void welcome(net_loop_t *loop, net_msg_t *msg)
{
    sync_t *s = CONTAINER_OF(msg, sync_t, msg);
    room_t *r = s->held.room;
    hub_member_t *m = loop ? find_waiting(r, s->loop, s->serial) : NULL;
    if (!m) { /* it left meanwhile */
        sync_free(s);
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (s->ok) {
        snprintf(r->epoch, sizeof r->epoch, "%s", s->epoch);
        if (s->last_id > r->last_id)
            r->last_id = s->last_id;
    }
    long long since = s->since;
    int reset = 0;
    if (!s->ok) {
        reset = since >= 0; /* history cannot be read: say so */
    } else if (since >= 0) {
        reset = (s->client_epoch[0] && strcmp(s->client_epoch, r->epoch) != 0) ||
                (uint64_t)since > r->last_id ||
                ((uint64_t)since < s->last_id && (!s->n || s->ids[0] != (uint64_t)since + 1));
    }
    /* What came through the channel after Redis read the stream: from the ring. */
    uint64_t after = s->n ? s->ids[s->n - 1] : since >= 0 ? (uint64_t)since : r->last_id;
    int nring = 0;
    rbuf_t **ring = !reset && since >= 0 ? malloc((size_t)(r->ring_len + 1) * sizeof *ring) : NULL;
    for (int i = 0; ring && i < r->ring_len; i++) {
        hub_entry_t *e = &r->ring[(r->ring_head + i) % r->ring_cap];
        if (e->id > after)
            ring[nring++] = rbuf_ref(e->frame);
    }
    /* Never told by Redis: this process's epoch, which Redis's will differ from (reset). */
    const char *epoch = r->epoch[0] ? r->epoch : s->held.hub->epoch;
    json_t *w = json_pack("{s:s,s:s,s:s,s:i,s:s,s:I}", "type", "welcome", "room", r->name, "user",
                          m->user, "online", (json_int_t)r->online, "epoch", epoch, "last_id",
                          (json_int_t)r->last_id);
    json_t *reset_msg = reset ? json_pack("{s:s,s:s,s:s,s:I}", "type", "reset", "room", r->name,
                                          "epoch", epoch, "last_id", (json_int_t)r->last_id)
                              : NULL;
    hub_member_link(r, m); /* deliveries after this snapshot (seq) are m's */
    pthread_mutex_unlock(&r->lock);
    roost_ws_send_json(m->ws, w);
    if (reset_msg)
        roost_ws_send_json(m->ws, reset_msg);
    for (int i = 0; !reset && i < s->n; i++)
        ws_send_shared(m->ws, s->frames[i]);
    for (int i = 0; i < nring; i++) {
        ws_send_shared(m->ws, ring[i]);
        rbuf_unref(ring[i]);
    }
    free(ring);
    sync_free(s);
}

static void on_synced(redis_t *rd, const redisReply *reply, int err, void *ud)
{
    sync_t *s = ud;
    if (!err && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
        s->ok = 1;
        snprintf(s->epoch, sizeof s->epoch, "%s", reply->element[0]->str);
        s->last_id = (uint64_t)reply->element[1]->integer;
        size_t n = (reply->elements - 2) / 2;
        s->ids = calloc(n + 1, sizeof *s->ids);
        s->frames = calloc(n + 1, sizeof *s->frames);
        for (size_t i = 0; s->ids && s->frames && i < n; i++) {
            const redisReply *id = reply->element[2 + 2 * i], *f = reply->element[3 + 2 * i];
            if (id->type != REDIS_REPLY_INTEGER || f->type != REDIS_REPLY_STRING)
                break;
            if (!(s->frames[s->n] = ws_frame_new(WS_OP_TEXT, f->str, f->len)))
                break;
            s->ids[s->n++] = (uint64_t)id->integer;
        }
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_warn("redis: room %s: %s", s->held.room->name, reply->str);
    }
    net_group_t *g = s->held.hub->srv->group;
    if (!g) {
        sync_free(s);
        return;
    }
    s->msg.fn = welcome;
    net_loop_post(net_group_loop(g, s->loop), &s->msg);
}

void hub_bridge_join(hub_t *hub, room_t *r, hub_member_t *m, long long since, const char *epoch)
{
    sync_t *s = calloc(1, sizeof *s);
    if (!s)
        return; /* m waits unwelcomed; it can leave */
    hub_room_hold(&s->held, hub, r);
    s->serial = m->serial;
    s->loop = m->loop;
    s->since = since;
    snprintf(s->client_epoch, sizeof s->client_epoch, "%s", epoch ? epoch : "");
    char hash[KEY_MAX], stream[KEY_MAX], chan[KEY_MAX], fresh[17], since_s[24];
    keys(r, hash, stream, chan);
    new_epoch(fresh);
    snprintf(since_s, sizeof since_s, "%lld", since);
    const char *argv[] = {hash, stream, fresh, since_s, s->client_epoch};
    /* Redis down: welcomed at once with what is here, rather than after the command timeout */
    if (!redis_up(hub->redis) ||
        redis_eval(hub->redis, &sync_script, 2, 5, argv, NULL, on_synced, s) < 0)
        on_synced(hub->redis, NULL, -ENOTCONN, s);
}

/* ---- Redis back: rooms whose history was lost (a new epoch) tell their members ---- */

static void on_resynced(redis_t *rd, const redisReply *reply, int err, void *ud)
{
    hub_held_t *rs = ud;
    room_t *r = rs->room;
    if (!err && reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
        const char *epoch = reply->element[0]->str;
        uint64_t last = (uint64_t)reply->element[1]->integer;
        pthread_mutex_lock(&r->lock);
        if (r->epoch[0] && strcmp(r->epoch, epoch) != 0) {
            snprintf(r->epoch, sizeof r->epoch, "%s", epoch);
            r->last_id = last;
            roost_counter_add(rs->hub->c_resets, 1);
            json_t *f = json_pack("{s:s,s:I}", "epoch", epoch, "last_id", (json_int_t)last);
            rbuf_t *frame = hub_frame_encode(hub_frame_object(r, "reset", f, 0));
            if (frame)
                hub_post(rs->hub, r, frame, ++r->seq, NULL);
            rbuf_unref(frame);
        }
        pthread_mutex_unlock(&r->lock);
    }
    hub_room_unref(r);
    free(rs);
}

static void resync_room(const char *key, void *value, void *ud)
{
    hub_t *hub = ud;
    room_t *r = value;
    pthread_mutex_lock(&r->lock);
    int watched = r->local_total > 0;
    if (watched)
        hub_nodes_query(hub, r); /* presence announcements were lost while down */
    watched = watched && r->epoch[0];
    pthread_mutex_unlock(&r->lock);
    if (!watched)
        return;
    hub_held_t *rs = malloc(sizeof *rs);
    if (!rs)
        return;
    hub_room_hold(rs, hub, r);
    char hash[KEY_MAX], stream[KEY_MAX], chan[KEY_MAX], fresh[17];
    keys(r, hash, stream, chan);
    new_epoch(fresh);
    const char *argv[] = {hash, stream, fresh, "-1", ""};
    if (redis_eval(hub->redis, &sync_script, 2, 5, argv, NULL, on_resynced, rs) < 0) {
        hub_room_unref(r);
        free(rs);
    }
}

static void on_state(redis_t *rd, int up, void *ud)
{
    hub_t *hub = ud;
    if (!up)
        return;
    for (int i = 0; i < HUB_SHARDS; i++) {
        pthread_mutex_lock(&hub->shards[i].lock);
        strmap_each(&hub->shards[i].rooms, resync_room, hub);
        pthread_mutex_unlock(&hub->shards[i].lock);
    }
}

static void scripts_init(void)
{
    redis_script_init(&publish_script);
    redis_script_init(&sync_script);
}

void hub_bridge_init(hub_t *hub)
{
    hub->redis = redis_of(hub->srv);
    if (!hub->redis)
        return;
    hub->node = redis_node_id(hub->srv);
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, scripts_init);
    hub->c_not_bridged =
        roost_counter(hub->srv, "roost_redis_publishes_not_bridged_total", NULL,
                      "Room publishes delivered on this node only (Redis down or failing)");
    hub->c_resets = roost_counter(hub->srv, "roost_room_epoch_resets_total", NULL,
                                  "Rooms whose history Redis lost (a new epoch, reset sent)");
    redis_on_message(hub->redis, "roost:room:", on_message, hub);
    redis_on_state(hub->redis, on_state, hub);
    hub_nodes_init(hub);
}

int roost_rooms_start(roost_server_t *srv)
{
    return hub_get(srv) ? 0 : -ENOMEM;
}
