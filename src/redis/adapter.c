/* hiredis on a libuv loop: the shape of hiredis's adapters/libuv.h (one uv_poll per context,
 * started and stopped as hiredis asks), with one change. Debian's 0.14 adapter drops a poll
 * error (status < 0), which is how libuv reports a refused connect: hiredis then never learns
 * and the context hangs in "connecting". Here an error is passed to hiredis as readable and
 * writable, so it reads the socket's error and calls the connect or disconnect callback. */
#include "redis/redis.h"

#include <errno.h>
#include <stdlib.h>

typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
} uv_events_t;

static void on_poll(uv_poll_t *h, int status, int events)
{
    uv_events_t *e = h->data;
    if (status < 0)
        events = e->events; /* let hiredis find the error on the socket */
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
}

/* hiredis asks for one kind of event at a time to be added or removed (the four hooks below). */
static void want(void *p, int kind, int on)
{
    uv_events_t *e = p;
    e->events = on ? e->events | kind : e->events & ~kind;
    if (e->events)
        uv_poll_start(&e->poll, e->events, on_poll);
    else
        uv_poll_stop(&e->poll);
}

static void add_read(void *p)
{
    want(p, UV_READABLE, 1);
}

static void del_read(void *p)
{
    want(p, UV_READABLE, 0);
}

static void add_write(void *p)
{
    want(p, UV_WRITABLE, 1);
}

static void del_write(void *p)
{
    want(p, UV_WRITABLE, 0);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* hiredis frees the context after this: the poll outlives it until its close callback. */
static void cleanup(void *p)
{
    uv_events_t *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, on_closed);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return -EINVAL;
    uv_events_t *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    int rc = uv_poll_init(loop, &e->poll, ac->c.fd);
    if (rc < 0) {
        free(e);
        return rc;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.data = e;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}
