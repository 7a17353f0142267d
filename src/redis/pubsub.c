/* Subscriptions, on the client's thread: a count per channel (several members of a room on one
 * node need one subscription), SUBSCRIBE while the pub/sub connection is up and again after each
 * reconnect, and messages handed to the listener whose prefix matches. A channel whose count
 * fell to zero is unsubscribed only after REDIS_UNSUB_IDLE_MS: a room emptied and joined again
 * at once keeps its subscription, and hiredis 0.14 drops the callback of a channel subscribed
 * again before the reply to its UNSUBSCRIBE came (it deletes it on that reply). */
#include "redis/redis.h"

#include <stdlib.h>
#include <string.h>

#define REDIS_UNSUB_IDLE_MS 2000
#define SWEEP_EVERY_MS      500

typedef struct {
    long count;
    uint64_t zero_since;
    int subscribed;    /* SUBSCRIBE sent on the current connection */
    int unsub_pending; /* UNSUBSCRIBE sent, its reply not yet in */
} channel_t;

static void dispatch(redis_t *r, const redisReply *ch, const redisReply *data)
{
    if (ch->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING)
        return;
    roost_counter_add(r->c_messages, 1);
    pthread_mutex_lock(&r->listen_lock);
    for (int i = 0, n = r->listeners_off ? 0 : atomic_load(&r->nmessage); i < n; i++) {
        const char *prefix = r->on_message[i].prefix;
        if (!strncmp(ch->str, prefix, strlen(prefix)))
            r->on_message[i].fn(r, ch->str, data->str, data->len, r->on_message[i].ud);
    }
    pthread_mutex_unlock(&r->listen_lock);
}

static void send_sub(redis_t *r, const char *name, channel_t *ch, int sub);

static void on_sub_reply(redisAsyncContext *ac, void *replyp, void *privdata)
{
    redis_t *r = privdata;
    const redisReply *reply = replyp;
    if (!reply || !ac->data || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str;
    if (!strcmp(kind, "message")) {
        dispatch(r, reply->element[1], reply->element[2]);
    } else if (!strcmp(kind, "unsubscribe") && reply->element[1]->type == REDIS_REPLY_STRING) {
        const char *name = reply->element[1]->str;
        channel_t *ch = strmap_get(&r->channels, name);
        if (!ch)
            return;
        ch->unsub_pending = 0;
        ch->subscribed = 0;
        if (ch->count > 0) /* joined again meanwhile */
            send_sub(r, name, ch, 1);
    }
}

static void send_sub(redis_t *r, const char *name, channel_t *ch, int sub)
{
    if (r->sub.state != CONN_UP)
        return;
    const char *argv[2] = {sub ? "SUBSCRIBE" : "UNSUBSCRIBE", name};
    if (redisAsyncCommandArgv(r->sub.ac, on_sub_reply, r, 2, argv, NULL) != REDIS_OK)
        return;
    if (sub)
        ch->subscribed = 1;
    else
        ch->unsub_pending = 1;
}

static void resubscribe(const char *name, void *value, void *ud)
{
    redis_t *r = ud;
    channel_t *ch = value;
    ch->subscribed = ch->unsub_pending = 0;
    if (ch->count > 0)
        send_sub(r, name, ch, 1);
}

void redis_sub_ready(redis_t *r)
{
    strmap_each(&r->channels, resubscribe, r);
}

void redis_sub_change(redis_t *r, const char *name, int delta)
{
    channel_t *ch = strmap_get(&r->channels, name);
    if (!ch) {
        if (delta < 0 || !(ch = calloc(1, sizeof *ch)))
            return;
        if (strmap_put(&r->channels, name, ch) < 0) {
            free(ch);
            return;
        }
    }
    ch->count += delta;
    if (ch->count <= 0) {
        ch->count = 0;
        ch->zero_since = uv_now(&r->loop);
    } else if (!ch->subscribed && !ch->unsub_pending) {
        send_sub(r, name, ch, 1);
    }
}

typedef struct {
    redis_t *r;
    uint64_t now;
    sbuf_t gone; /* names to forget, each NUL-terminated */
} sweep_t;

static void sweep_one(const char *name, void *value, void *ud)
{
    sweep_t *s = ud;
    channel_t *ch = value;
    if (ch->count > 0 || ch->unsub_pending || s->now - ch->zero_since < REDIS_UNSUB_IDLE_MS)
        return;
    if (ch->subscribed && s->r->sub.state == CONN_UP)
        send_sub(s->r, name, ch, 0);
    else if (!ch->subscribed) /* while down, the next connection will not subscribe it */
        sbuf_append(&s->gone, name, strlen(name) + 1);
}

void redis_sub_sweep(redis_t *r, uint64_t now)
{
    static _Thread_local uint64_t last;
    if (now - last < SWEEP_EVERY_MS)
        return;
    last = now;
    sweep_t s = {.r = r, .now = now};
    strmap_each(&r->channels, sweep_one, &s);
    for (size_t off = 0; off < s.gone.len; off += strlen(s.gone.p + off) + 1)
        free(strmap_del(&r->channels, s.gone.p + off));
    sbuf_free(&s.gone);
}

void redis_sub_free(redis_t *r)
{
    strmap_free(&r->channels, free);
}
