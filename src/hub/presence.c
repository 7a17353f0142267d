/* Join and leave notices. Telling n members about each of n joins costs O(n^2) writes, which is
 * what makes a 10,000-user room fall over when everyone reconnects at once. So notices are
 * rate-limited per room: the first in a HUB_NOTICE_MS window goes out at once; later ones in
 * the window are gathered and sent as one frame per kind when it ends, listing the names (up
 * to HUB_NOTICE_NAMES, and how many more). The online count in each frame is exact when the
 * frame is built. A room with many members here gets a longer window (HUB_NOTICE_BIG): during
 * a reconnect storm of 10,000 clients its members would otherwise get ten notices a second
 * each, most of the writes the node makes. */
#include "hub/hub.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uv_timer_t timer;
    hub_held_t held;
} notice_timer_t;

static void send_notice(hub_t *hub, room_t *r, int join, json_t *fields)
{
    json_object_set_new(fields, "online", json_integer(r->online));
    rbuf_t *frame = hub_frame(r, join ? "join" : "leave", fields, 0);
    if (!frame)
        return;
    hub_post(hub, r, frame, ++r->seq, NULL);
    rbuf_unref(frame);
}

static void flush_pending(hub_t *hub, room_t *r, int join)
{
    json_t **names = join ? &r->pending_join : &r->pending_leave;
    long *more = join ? &r->more_join : &r->more_leave;
    size_t n = json_array_size(*names);
    if (!n)
        return;
    json_t *last = json_array_get(*names, n - 1);
    json_t *fields = json_pack("{s:O,s:o}", "user", last, "users", *names);
    *names = NULL;
    if (*more)
        json_object_set_new(fields, "more", json_integer(*more));
    *more = 0;
    send_notice(hub, r, join, fields);
}

static void on_timer_closed(uv_handle_t *h)
{
    notice_timer_t *nt = h->data;
    hub_room_unref(nt->held.room);
    free(nt);
}

static void on_window_end(uv_timer_t *t)
{
    notice_timer_t *nt = t->data;
    room_t *r = nt->held.room;
    pthread_mutex_lock(&r->lock);
    flush_pending(nt->held.hub, r, 1);
    flush_pending(nt->held.hub, r, 0);
    r->notice_at = uv_now(t->loop);
    r->notice_scheduled = 0;
    pthread_mutex_unlock(&r->lock);
    uv_close((uv_handle_t *)t, on_timer_closed);
}

/* A join and a leave of one name in the same window cancel out: the others were never told of
 * the first, so they need not hear of either. */
static int cancel(json_t *names, const char *user)
{
    for (size_t i = 0; i < json_array_size(names); i++)
        if (!strcmp(json_string_value(json_array_get(names, i)), user)) {
            json_array_remove(names, i);
            return 1;
        }
    return 0;
}

/* The room's window: what one notice costs here is one frame per member on this node. */
static uint64_t window_ms(const room_t *r)
{
    if (r->local_total < HUB_NOTICE_BIG)
        return HUB_NOTICE_MS;
    uint64_t ms = (uint64_t)r->local_total * 1000 / HUB_NOTICE_BUDGET;
    return ms < HUB_NOTICE_MS ? HUB_NOTICE_MS : ms > HUB_NOTICE_MAX_MS ? HUB_NOTICE_MAX_MS : ms;
}

void hub_notice(hub_t *hub, room_t *r, int join, const char *user, net_loop_t *loop)
{
    uint64_t now = net_loop_now(loop), window = window_ms(r);
    if (!r->notice_scheduled && now >= r->notice_at + window) {
        r->notice_at = now;
        send_notice(hub, r, join, json_pack("{s:s}", "user", user));
        return;
    }
    roost_counter_add(hub->c_notices_held, 1);
    if (r->notice_scheduled && cancel(join ? r->pending_leave : r->pending_join, user))
        return;
    json_t **names = join ? &r->pending_join : &r->pending_leave;
    if (!*names)
        *names = json_array();
    if (json_array_size(*names) < HUB_NOTICE_NAMES)
        json_array_append_new(*names, json_string(user));
    else
        (*(join ? &r->more_join : &r->more_leave))++;
    if (r->notice_scheduled)
        return;
    notice_timer_t *nt = malloc(sizeof *nt);
    if (!nt)
        return;
    hub_room_hold(&nt->held, hub, r);
    uv_timer_init(&loop->uv, &nt->timer);
    nt->timer.data = nt;
    uint64_t due = r->notice_at + window;
    uv_timer_start(&nt->timer, on_window_end, due > now ? due - now : 0, 0);
    r->notice_scheduled = 1;
}
