/* WebSocket connections (conn.c) and the HTTP upgrade that creates them (upgrade.c): the part
 * of the ws layer that sits on net and http, above the pure codec of ws.h. A connection reads
 * whole messages through ws_reader_t, answers pings, pings idle peers from the loop's timer
 * wheel, limits inbound rate and outbound backlog, and runs the close handshake. */
#ifndef ROOST_WS_CONN_H
#define ROOST_WS_CONN_H

#include <roost/roost.h>

#include "http/http.h"
#include "ws/ws.h"

struct roost_ws {
    net_conn_t *conn;
    roost_server_t *srv;
    const roost_ws_handler_t *h;
    void *ud;
    ws_reader_t reader;
    double tokens;      /* inbound rate: a token bucket refilled at ws_max_rate per second */
    uint64_t tokens_at; /* loop ms of the last refill */
    int close_code;     /* sent or received; 1006 until then */
    unsigned open : 1;  /* on_open has run */
    unsigned awaiting_pong : 1;
    unsigned close_sent : 1;
    /* Set by a layer above that keeps the connection somewhere (the hub, when it joins a
     * room): called once when the connection ends, before on_close; arg is that layer's. */
    void (*detach)(roost_ws_t *ws, void *arg);
    void *detach_arg;
    struct ws_stats *st; /* the server's, from ws_attach on */
};

/* On the connection's loop: sets (fn NULL: clears) the hook called when it ends. */
void ws_set_detach(roost_ws_t *ws, void (*fn)(roost_ws_t *ws, void *arg), void *arg);
/* The server's count of open WebSockets (for --max-connections), in the ws layer's slot; NULL
 * when out of memory. */
_Atomic long *ws_open_count(roost_server_t *srv);

/* The layer's counters on /metrics, in the same slot (open first, for ws_open_count). */
#define WS_NCLOSE 10 /* close codes counted by name; others are code="other" */
typedef struct ws_stats {
    _Atomic long open;
    roost_counter_t *conns, *msgs_in, *msgs_out, *bytes_in, *bytes_out, *slow;
    roost_counter_t *closes[WS_NCLOSE + 1];
} ws_stats_t;
ws_stats_t *ws_stats(roost_server_t *srv);

extern const net_proto_t ws_proto;

/* upgrade.c: takes over the connection once the 101 went out. */
void ws_attach(net_conn_t *c, void *ws);
void ws_drop(void *ws); /* the 101 was never written: free */

/* Queues a frame shared by many connections (a room message) for the end-of-iteration flush.
 * Closes the connection with 1008 instead when its backlog would pass ws_max_backlog. */
int ws_send_shared(roost_ws_t *ws, rbuf_t *frame);
/* The same without counting it in /metrics: a fan-out counts its sends once (ws_count_sent)
 * rather than two atomic adds per member. */
int ws_queue_shared(roost_ws_t *ws, rbuf_t *frame);
void ws_count_sent(ws_stats_t *st, long messages, long bytes);
/* Sends a text message built in a JSON value (not stolen). */
int ws_send_json_borrowed(roost_ws_t *ws, const json_t *msg);
/* Encodes a whole server frame (header + payload) into a new shared buffer. */
rbuf_t *ws_frame_new(unsigned opcode, const void *payload, size_t len);

#endif
