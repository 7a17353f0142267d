/* A WebSocket connection on its loop: bytes in through the message reader, frames out through
 * the connection's write queue. Heartbeats use the connection's one wheel timer: after
 * ws_ping_s of silence a ping goes out, and after ws_pong_timeout_s more without a byte the
 * connection is closed. Every way out (peer close, protocol error, slow consumer, rate limit,
 * shutdown) goes through close_with(), which sends one close frame and lets conn.c finish. */
#include "ws/conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLOSE_WAIT_MS 2000 /* after our close frame, how long the peer has to take it */

/* The ws layer's part of the server: one counter, made on first use. */
static const int close_codes[WS_NCLOSE] = {1000, 1001, 1002, 1003, 1005,
                                           1006, 1007, 1008, 1009, 1011};

static void *ws_server_new(roost_server_t *srv)
{
    ws_stats_t *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->conns = roost_gauge(srv, "roost_ws_connections", NULL, "WebSocket connections open");
    st->msgs_in = roost_counter(srv, "roost_ws_messages_total", "direction=\"in\"",
                                "WebSocket messages received and sent");
    st->msgs_out = roost_counter(srv, "roost_ws_messages_total", "direction=\"out\"",
                                 "WebSocket messages received and sent");
    st->bytes_in = roost_counter(srv, "roost_ws_bytes_total", "direction=\"in\"",
                                 "WebSocket payload bytes received and sent");
    st->bytes_out = roost_counter(srv, "roost_ws_bytes_total", "direction=\"out\"",
                                  "WebSocket payload bytes received and sent");
    st->slow = roost_counter(srv, "roost_ws_slow_consumer_closes_total", NULL,
                             "WebSockets closed (1008) for a backlog over --ws-max-backlog");
    for (int i = 0; i <= WS_NCLOSE; i++) {
        char labels[32];
        if (i < WS_NCLOSE)
            snprintf(labels, sizeof labels, "code=\"%d\"", close_codes[i]);
        else
            snprintf(labels, sizeof labels, "code=\"other\"");
        st->closes[i] = roost_counter(srv, "roost_ws_closes_total", labels,
                                      "WebSocket connections ended, by close code");
    }
    return st;
}

ws_stats_t *ws_stats(roost_server_t *srv)
{
    return (ws_stats_t *)ws_open_count(srv);
}

CORE_SERVER_CTX_FN(_Atomic long, ws_open_count, .name = "ws", .server_new = ws_server_new,
                   .server_free = free)

void ws_set_detach(roost_ws_t *ws, void (*fn)(roost_ws_t *ws, void *arg), void *arg)
{
    ws->detach = fn;
    ws->detach_arg = arg;
}

static void arm_idle(roost_ws_t *ws)
{
    const roost_config_t *cfg = roost_server_config(ws->srv);
    net_conn_deadline(ws->conn, net_loop_now(ws->conn->loop) + (uint64_t)(cfg->ws.ping_s * 1000));
}

/* A write that meets a reset socket closes the connection at once, and its on_close frees ws:
 * nothing here reads ws after the write, and the connection (whose memory lives until its
 * handle is closed, and which the ref keeps) is what is finished. */
static void close_with(roost_ws_t *ws, unsigned code, const char *reason)
{
    net_conn_t *c = ws->conn;
    if (ws->close_sent || c->closing)
        return;
    uint8_t frame[WS_CONTROL_FRAME_MAX];
    int n = ws_close_frame(frame, code, reason, reason ? strlen(reason) : 0);
    ws->close_sent = 1;
    ws->close_code = (int)code;
    net_conn_ref(c);
    if (n > 0)
        net_conn_write(c, frame, (size_t)n);
    net_conn_close_after_write(c);
    if (!c->closing)
        net_conn_deadline(c, net_loop_now(c->loop) + CLOSE_WAIT_MS);
    net_conn_unref(c);
}

void roost_ws_close(roost_ws_t *ws, int code, const char *reason)
{
    close_with(ws, (unsigned)code, reason);
}

roost_server_t *roost_ws_server(const roost_ws_t *ws)
{
    return ws->srv;
}

rbuf_t *ws_frame_new(unsigned opcode, const void *payload, size_t len)
{
    rbuf_t *b = rbuf_new(WS_HEADER_MAX + len);
    if (!b)
        return NULL;
    size_t h = ws_frame_header((uint8_t *)b->data, opcode, 1, len);
    if (len)
        memcpy(b->data + h, payload, len);
    b->len = h + len;
    return b;
}

/* A slow reader must not grow our memory or hold the others back (DESIGN §3). The bound is on
 * what waits behind the message being written (docs/ws-contract.md): a message sent when
 * nothing else waits is never refused, however big (up to ws_max_message, as an echo), and a
 * connection holds at most that one message plus ws_max_backlog bytes. Past the bound, what is
 * queued is dropped and the connection gets 1008. */
static int over_backlog(roost_ws_t *ws, size_t more)
{
    const roost_config_t *cfg = roost_server_config(ws->srv);
    net_conn_t *c = ws->conn;
    if (!c->wq_head || net_conn_queued_behind_head(c) + more <= cfg->ws.max_backlog)
        return 0;
    /* Queued is not refused: a burst fanned out in one iteration has not met the socket yet. */
    size_t behind = net_conn_unsent_behind_head(c);
    if (c->closing) /* the flush met a reset socket: c is closed and ws freed */
        return 1;
    if (behind == 0 || behind + more <= cfg->ws.max_backlog)
        return 0;
    http_count_limit(ws->srv, "ws_backlog");
    roost_counter_add(ws->st->slow, 1);
    net_conn_drop_queued(ws->conn);
    close_with(ws, WS_CLOSE_POLICY, "too slow: backlog over the limit");
    return 1;
}

int ws_queue_shared(roost_ws_t *ws, rbuf_t *frame)
{
    if (ws->close_sent || ws->conn->closing)
        return -EPIPE;
    if (over_backlog(ws, frame->len))
        return -ENOBUFS;
    return net_conn_queue_rbuf(ws->conn, frame, 0, frame->len);
}

void ws_count_sent(ws_stats_t *st, long messages, long bytes)
{
    if (!st)
        return;
    roost_counter_add(st->msgs_out, messages);
    roost_counter_add(st->bytes_out, bytes);
}

int ws_send_shared(roost_ws_t *ws, rbuf_t *frame)
{
    int rc = ws_queue_shared(ws, frame);
    if (rc == 0)
        ws_count_sent(ws->st, 1, (long)frame->len);
    return rc;
}

int roost_ws_send(roost_ws_t *ws, int binary, const void *data, size_t len)
{
    if (ws->close_sent || ws->conn->closing)
        return -EPIPE;
    if (over_backlog(ws, len + WS_HEADER_MAX))
        return -ENOBUFS;
    roost_counter_add(ws->st->msgs_out, 1);
    roost_counter_add(ws->st->bytes_out, (long)len);
    unsigned op = binary ? WS_OP_BINARY : WS_OP_TEXT;
    uint8_t small[1024];
    if (len + WS_HEADER_MAX <= sizeof small) {
        size_t h = ws_frame_header(small, op, 1, len);
        memcpy(small + h, data, len);
        return net_conn_write(ws->conn, small, h + len);
    }
    rbuf_t *b = ws_frame_new(op, data, len);
    if (!b)
        return -ENOMEM;
    int rc = net_conn_write_rbuf(ws->conn, b, 0, b->len);
    rbuf_unref(b);
    return rc;
}

int ws_send_json_borrowed(roost_ws_t *ws, const json_t *msg)
{
    char small[512];
    size_t n = json_dumpb(msg, small, sizeof small, JSON_COMPACT);
    if (n == 0)
        return -EINVAL;
    if (n <= sizeof small)
        return roost_ws_send(ws, 0, small, n);
    char *big = json_dumps(msg, JSON_COMPACT);
    if (!big)
        return -ENOMEM;
    int rc = roost_ws_send(ws, 0, big, strlen(big));
    free(big);
    return rc;
}

int roost_ws_send_json(roost_ws_t *ws, json_t *msg)
{
    if (!msg)
        return -ENOMEM;
    int rc = ws_send_json_borrowed(ws, msg);
    json_decref(msg);
    return rc;
}

/* ---- reading ---- */

static int rate_ok(roost_ws_t *ws)
{
    const roost_config_t *cfg = roost_server_config(ws->srv);
    uint64_t now = net_loop_now(ws->conn->loop);
    double burst = 2.0 * cfg->ws.max_rate;
    ws->tokens += (double)(now - ws->tokens_at) * cfg->ws.max_rate / 1000.0;
    if (ws->tokens > burst)
        ws->tokens = burst;
    ws->tokens_at = now;
    if (ws->tokens < 1.0)
        return 0;
    ws->tokens -= 1.0;
    return 1;
}

static int on_message(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    roost_ws_t *ws = ud;
    if (ws->close_sent)
        return 0;
    if (!rate_ok(ws)) {
        http_count_limit(ws->srv, "ws_rate");
        close_with(ws, WS_CLOSE_POLICY, "too many messages");
        return -ECANCELED;
    }
    roost_counter_add(ws->st->msgs_in, 1);
    roost_counter_add(ws->st->bytes_in, (long)len);
    net_conn_t *c = ws->conn; /* held by on_read's ref; ws is gone if the handler closed c */
    if (ws->h->on_message)
        ws->h->on_message(ws, opcode == WS_OP_BINARY, (const char *)data, len, ws->ud);
    return c->closing || ws->close_sent ? -ECANCELED : 0;
}

static int on_ping(void *ud, const uint8_t *data, size_t len)
{
    roost_ws_t *ws = ud;
    uint8_t frame[WS_CONTROL_FRAME_MAX];
    int n = ws_control_frame(frame, WS_OP_PONG, data, len);
    if (n > 0 && !ws->close_sent)
        net_conn_write(ws->conn, frame, (size_t)n);
    return 0;
}

static int on_pong(void *ud, const uint8_t *data, size_t len)
{
    return 0; /* any byte from the peer already counted as a sign of life */
}

static int on_peer_close(void *ud, unsigned code, const char *reason, size_t len)
{
    roost_ws_t *ws = ud;
    if (!ws->close_sent)
        close_with(ws, code, NULL); /* echo the code (§5.5.1); 1005 gives an empty close */
    ws->close_code = code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NO_STATUS : (int)code;
    return -ECANCELED;
}

static const ws_handler_t reader_handler = {
    .on_message = on_message,
    .on_ping = on_ping,
    .on_pong = on_pong,
    .on_close = on_peer_close,
};

static void on_data(net_conn_t *c, char *data, size_t len)
{
    roost_ws_t *ws = c->ud;
    if (ws->close_sent)
        return; /* waiting for the peer to take our close: ignore what it still sends */
    ws->awaiting_pong = 0;
    arm_idle(ws);
    int rc = ws_read(&ws->reader, (uint8_t *)data, len);
    if (rc < 0 && rc != -ECANCELED) {
        if (rc == -EMSGSIZE)
            http_count_limit(ws->srv, "ws_message");
        close_with(ws, ws_close_code_for(rc), rc == -EMSGSIZE ? "message too big" : NULL);
    }
}

static void on_timeout(net_conn_t *c)
{
    roost_ws_t *ws = c->ud;
    const roost_config_t *cfg = roost_server_config(ws->srv);
    if (ws->close_sent) { /* the peer never took our close frame */
        net_conn_close(c);
        return;
    }
    if (ws->awaiting_pong) {
        close_with(ws, WS_CLOSE_POLICY, "ping timeout");
        net_conn_close(c); /* a silent peer will not read it: do not wait */
        return;
    }
    uint8_t frame[WS_CONTROL_FRAME_MAX];
    int n = ws_control_frame(frame, WS_OP_PING, NULL, 0);
    ws->awaiting_pong = 1;
    net_conn_deadline(c, net_loop_now(c->loop) + (uint64_t)(cfg->ws.pong_timeout_s * 1000));
    net_conn_write(c, frame, (size_t)n); /* last: a reset socket closes c and frees ws */
}

static void on_shutdown(net_conn_t *c)
{
    close_with(c->ud, WS_CLOSE_GOING_AWAY, "server shutting down");
}

static void on_close(net_conn_t *c)
{
    roost_ws_t *ws = c->ud;
    c->ud = NULL;
    if (ws->detach) {
        void (*fn)(roost_ws_t *, void *) = ws->detach;
        ws->detach = NULL;
        fn(ws, ws->detach_arg);
    }
    if (ws->open && ws->h->on_close)
        ws->h->on_close(ws, ws->close_code, ws->ud);
    ws_reader_free(&ws->reader);
    int k = 0;
    while (k < WS_NCLOSE && close_codes[k] != ws->close_code)
        k++;
    roost_counter_add(ws->st->closes[k], 1);
    roost_counter_add(ws->st->conns, -1);
    atomic_fetch_sub(ws_open_count(ws->srv), 1);
    free(ws);
}

const net_proto_t ws_proto = {.name = "ws",
                              .on_data = on_data,
                              .on_timeout = on_timeout,
                              .on_shutdown = on_shutdown,
                              .on_close = on_close};

void ws_attach(net_conn_t *c, void *arg)
{
    roost_ws_t *ws = arg;
    const roost_config_t *cfg = roost_server_config(ws->srv);
    ws->conn = c;
    ws->st = ws_stats(ws->srv);
    roost_counter_add(ws->st->conns, 1);
    ws->close_code = WS_CLOSE_ABNORMAL;
    ws->tokens = 2.0 * cfg->ws.max_rate;
    ws->tokens_at = net_loop_now(c->loop);
    ws_reader_init(&ws->reader, cfg->ws.max_message, &reader_handler, ws);
    c->proto = &ws_proto;
    c->ud = ws;
    arm_idle(ws);
    net_conn_resume(c);
    ws->open = 1;
    if (ws->h->on_open)
        ws->h->on_open(ws, ws->ud);
}

void ws_drop(void *arg)
{
    roost_ws_t *ws = arg;
    atomic_fetch_sub(ws_open_count(ws->srv), 1);
    if (ws->h->on_close)
        ws->h->on_close(ws, WS_CLOSE_ABNORMAL, ws->ud);
    free(ws);
}
