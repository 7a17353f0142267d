/* roost_ws_every: a repeating timer on a WebSocket connection's loop, for heartbeats an
 * application speaks in its own messages (the articles' "__ping__" text). Not the protocol's
 * ping/pong, which conn.c sends on its own idle deadline. */
#include "ws/conn.h"

#include <stdlib.h>

struct roost_ws_timer {
    uv_timer_t t;
    roost_ws_t *ws;
    roost_ws_timer_fn fn;
    void *arg;
};

static void on_tick(uv_timer_t *t)
{
    roost_ws_timer_t *w = CONTAINER_OF(t, roost_ws_timer_t, t);
    w->fn(w->ws, w->arg);
}

roost_ws_timer_t *roost_ws_every(roost_ws_t *ws, uint64_t ms, roost_ws_timer_fn fn, void *arg)
{
    roost_ws_timer_t *w = calloc(1, sizeof *w);
    if (!w || ms == 0) {
        free(w);
        return NULL;
    }
    *w = (roost_ws_timer_t){.ws = ws, .fn = fn, .arg = arg};
    uv_timer_init(&ws->conn->loop->uv, &w->t);
    uv_timer_start(&w->t, on_tick, ms, ms);
    return w;
}

static void on_closed(uv_handle_t *h)
{
    free(CONTAINER_OF((uv_timer_t *)h, roost_ws_timer_t, t));
}

void roost_ws_timer_stop(roost_ws_timer_t *w)
{
    if (!w)
        return;
    uv_timer_stop(&w->t);
    uv_close((uv_handle_t *)&w->t, on_closed);
}
