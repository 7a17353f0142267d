/* The articles' first WebSocket example at its path: /ws/{client_id} answers each text with
 * "[client_id] 收到: text", and speaks the articles' text heartbeat next to the protocol's pings:
 * "__ping__" every --ws-text-ping-s (30 s), the client's "__pong__" taken silently. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

#define CLIENT_ID_MAX 64

typedef struct {
    roost_ws_timer_t *ping;
    uint64_t ping_ms; /* 0: no text heartbeat */
    char id[CLIENT_ID_MAX + 1];
} client_t;

static void text_ping(roost_ws_t *ws, void *arg)
{
    roost_ws_send(ws, 0, "__ping__", 8);
}

static void client_open(roost_ws_t *ws, void *ud)
{
    client_t *c = ud;
    if (c->ping_ms)
        c->ping = roost_ws_every(ws, c->ping_ms, text_ping, c);
}

static void client_message(roost_ws_t *ws, int binary, const char *data, size_t len, void *ud)
{
    client_t *c = ud;
    if (binary || (len == 8 && !memcmp(data, "__pong__", 8)))
        return; /* the heartbeat's answer: the connection is alive, nothing to say */
    size_t n = strlen(c->id) + len + 32;
    char *out = malloc(n);
    if (!out)
        return;
    int k = snprintf(out, n, "[%s] 收到: %.*s", c->id, (int)len, data);
    roost_ws_send(ws, 0, out, (size_t)k);
    free(out);
}

static void client_close(roost_ws_t *ws, int code, void *ud)
{
    client_t *c = ud;
    roost_ws_timer_stop(c->ping);
    free(c);
}

static const roost_ws_handler_t client_handler = {client_open, client_message, client_close};

static void ws_client(roost_req_t *req, void *ud)
{
    roost_str_t id = roost_req_param(req, "client_id");
    if (id.len == 0 || id.len > CLIENT_ID_MAX) {
        roost_respond_error(req, 422, "client_id: 1 to 64 characters");
        return;
    }
    client_t *c = app_calloc(req, sizeof *c);
    if (!c)
        return;
    memcpy(c->id, id.ptr, id.len);
    c->ping_ms = (uint64_t)(((const app_config_t *)ud)->ws_text_ping_s * 1000);
    if (roost_ws_upgrade(req, &client_handler, c) < 0)
        free(c);
}

static const char *const tags_ws[] = {"articles: websockets", NULL};
static const roost_route_opts_t routes[] = {
    {"GET", "/ws/{client_id}", ws_client, .tags = tags_ws,
     /* The summary in ASCII: the man page's is read by groff's default device too, which has
      * no CJK glyphs. */
     .summary = "WebSocket: each text answered with the client's id and 'received'",
     .description = "Each text answered as \"[client_id] 收到: text\" (the article's reply); a "
                    "\"__ping__\" text every --ws-text-ping-s seconds"},
};

int app_routes_articles_ws(roost_server_t *srv, const app_config_t *cfg)
{
    return app_register(srv, routes, APP_COUNT_OF(routes), (void *)cfg);
}
