/* One HTTP/1.1 connection: parses what arrives, keeps the pipeline of requests in arrival
 * order, and writes each response only when every earlier one has been written, so a fast
 * request behind a slow (worker) one waits its turn. It also owns the connection's timeouts:
 * header and body (408), keep-alive idle (silent close) and write (drop). It calls dispatch;
 * dispatch and responses reach it only through req->on_responded. Handlers that answer later
 * are handoff.c's, a stream's pieces stream.c's.
 *
 * Requests are recycled per loop (http_loop_t.free), so keep-alive traffic allocates nothing. */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum phase { PHASE_IDLE, PHASE_HEAD, PHASE_BODY, PHASE_WAIT };

typedef struct http_loop http_loop_t;

struct http_session {
    net_conn_t *conn;
    roost_server_t *srv;
    http_server_t *hs; /* the http slot of srv, found once per connection */
    http_loop_t *hl;   /* this loop's http state, likewise */
    http_parse_t parse;
    roost_req_t *head, *tail; /* the pipeline: parsed or being parsed, not yet written */
    int depth;
    enum phase phase;
    char *saved; /* bytes not parsed while the pipeline was full */
    size_t saved_len;
    unsigned dead : 1;     /* no more requests on this connection */
    unsigned shutdown : 1; /* the server is draining */
    unsigned in_feed : 1;
    unsigned closed : 1; /* the connection closed during a feed: free afterwards */
    /* flush() is on the stack: a write that fails closes the connection synchronously, and
     * on_close must not free the session under it. */
    unsigned in_flush : 1;
    unsigned upgraded : 1;        /* the connection now speaks another protocol */
    unsigned upgrade_pending : 1; /* a 101 waits its turn: read nothing more as HTTP */
    /* The client's address, asked of the kernel on first use only: getpeername cost 2.4 us a
     * call here, a tenth of a /json request. "" and peer_asked: it has none. */
    unsigned peer_asked : 1;
    char peer[48];
    uint64_t file_sent_seen; /* conn->file_sent at the last write timeout */
};

struct http_loop {
    roost_req_t *free;
    int nfree;
    sbuf_t out;
};

#define FREE_REQS_PER_LOOP 1024

static int flush(http_session_t *s);
static void feed(http_session_t *s, const char *data, size_t len);
static void session_free(http_session_t *s);
static void session_responded(roost_req_t *req);

/* ---- request objects ---- */

static http_loop_t *loop_state(net_loop_t *loop);

static roost_req_t *req_get(http_session_t *s)
{
    http_loop_t *hl = s->hl;
    roost_req_t *req = hl->free;
    if (req) {
        hl->free = req->next;
        hl->nfree--;
    } else {
        req = calloc(1, sizeof *req);
        if (!req)
            return NULL;
        http_req_reset(req);
    }
    req->next = NULL;
    req->sess = s;
    req->on_responded = session_responded;
    req->conn = s->conn;
    req->srv = s->srv;
    req->hs = s->hs;
    req->loop = s->conn->loop;
    req->refs = 1;
    req->start_ns = time_now_ns();
    return req;
}

void http_req_unref(roost_req_t *req)
{
    if (--req->refs > 0)
        return;
    http_server_t *hs = http_server(req->srv);
    if (hs->metrics && req->status)
        http_metrics_record(hs->metrics, req);
    if (http_trace_on(req) && roost_span_enabled())
        http_trace_end(req);
    http_mw_done(req); /* after the last byte, or the client left */
    if (req->after)
        http_after_submit(req);
    http_loop_t *hl = core_loop_ctx(req->loop, http_slot());
    if (hl && hl->nfree < FREE_REQS_PER_LOOP) {
        http_req_reset(req);
        req->next = hl->free;
        hl->free = req;
        hl->nfree++;
    } else {
        http_req_free(req);
    }
}

/* ---- the per-loop state ---- */

/* net_conn_defer's call, asked for by flush_pipeline when a full pipeline has room again: feeds
 * what was kept back, outside any handler's stack, then reads again. Writes are gathered. */
static void on_deferred(net_conn_t *c)
{
    http_session_t *s = c->ud;
    char *saved = s->saved;
    size_t len = s->saved_len;
    s->saved = NULL;
    s->saved_len = 0;
    feed(s, saved, len);
    free(saved);
    if (s->closed)
        session_free(s);
    else if (!c->closing && !s->saved && !s->dead)
        net_conn_resume(c);
}

static http_loop_t *loop_state(net_loop_t *loop)
{
    if (!core_loop_ctx(loop, http_slot())) {
        http_loop_t *hl = calloc(1, sizeof *hl);
        if (!hl)
            abort(); /* at first accept: nothing sensible to do without it */
        core_loop_ctx_set(loop, http_slot(), hl);
    }
    return core_loop_ctx(loop, http_slot());
}

void http_loop_end(net_loop_t *loop, void *ctx)
{
    http_loop_t *hl = ctx;
    while (hl->free) {
        roost_req_t *next = hl->free->next;
        http_req_free(hl->free);
        hl->free = next;
    }
    sbuf_free(&hl->out);
    free(hl);
}

/* ---- timeouts ---- */

static void arm(http_session_t *s, enum phase phase, double seconds)
{
    s->phase = phase;
    uint64_t now = net_loop_now(s->conn->loop);
    net_conn_deadline(s->conn, seconds > 0 ? now + (uint64_t)(seconds * 1000) : 0);
}

/* After the pipeline changed: idle keep-alive, or waiting on handlers, or a stalled reader. */
static void arm_after_flush(http_session_t *s)
{
    const roost_config_t *cfg = &s->srv->cfg;
    if (s->phase == PHASE_HEAD || s->phase == PHASE_BODY)
        return;
    if (s->conn->wq_bytes > 0)
        arm(s, s->depth ? PHASE_WAIT : PHASE_IDLE, cfg->http.write_timeout_s);
    else if (s->depth > 0)
        arm(s, PHASE_WAIT, 0);
    else
        arm(s, PHASE_IDLE, cfg->http.keepalive_timeout_s);
}

/* ---- parser callbacks ---- */

static roost_req_t *on_new_req(void *ud)
{
    http_session_t *s = ud;
    if (s->dead)
        return NULL;
    roost_req_t *req = req_get(s);
    if (!req)
        return NULL;
    LIST_APPEND(s->head, s->tail, req, next);
    s->depth++;
    arm(s, PHASE_HEAD, s->srv->cfg.http.header_timeout_s);
    return req;
}

static void on_head(void *ud, roost_req_t *req)
{
    http_session_t *s = ud;
    const llhttp_t *llh = &s->parse.llh;
    if ((llh->flags & F_CHUNKED) || llh->content_length > 0)
        arm(s, PHASE_BODY, s->srv->cfg.http.body_timeout_s);
    if (req->expect_continue && s->head == req) {
        /* RFC 9110 §10.1.1: say 100 only when the answer will not come first anyway. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        net_conn_write(s->conn, cont, sizeof cont - 1);
        req->continue_sent = 1;
    }
}

static int on_request(void *ud, roost_req_t *req)
{
    http_session_t *s = ud;
    s->phase = PHASE_WAIT;
    /* The handler may answer at once, and flush() then recycles the request: hold it until
     * dispatch has returned and checked whether an answer exists. */
    req->refs++;
    http_dispatch(req);
    if (req->upgrade_attach)
        s->upgrade_pending = 1;
    http_req_unref(req);
    /* Pause llhttp when no more requests may start: the pipeline is full or the connection
     * is ending (its last answer said Connection: close). */
    return s->dead || s->closed || s->upgrade_pending || s->depth >= s->srv->cfg.http.max_pipeline;
}

/* ---- feeding bytes ---- */

static void fail_current(http_session_t *s, int status, const char *detail, const char *limit)
{
    roost_req_t *req = s->parse.cur;
    s->dead = 1;
    s->parse.cur = NULL;
    if (limit)
        http_count_limit(s->srv, limit);
    else
        roost_counter_add(s->hs->c_bad_request, 1);
    if (!req || http_req_phase(req) != HTTP_REQ_PARSING) {
        net_conn_close_after_write(s->conn);
        flush(s);
        return;
    }
    req->close_after = 1;
    req->keep_alive = 0;
    roost_respond_error(req, status, detail);
}

static void feed(http_session_t *s, const char *data, size_t len)
{
    s->in_feed = 1;
    while (len > 0 && !s->dead && !s->closed) {
        ssize_t n = http_parse_feed(&s->parse, data, len);
        if (n < 0) {
            fail_current(s, s->parse.err_status, s->parse.err_detail, s->parse.err_limit);
            break;
        }
        data += n;
        len -= (size_t)n;
        if (s->upgraded) { /* what follows the upgrade request is the new protocol's */
            net_conn_t *c = s->conn;
            if (len && !c->closing)
                c->proto->on_data(c, (char *)data, len);
            break;
        }
        if (len && !s->dead && !s->closed &&
            (s->upgrade_pending || s->depth >= s->srv->cfg.http.max_pipeline)) {
            /* Pipeline full, or an upgrade waits its turn: keep the rest, stop reading until
             * answers go out. */
            s->saved = malloc(len);
            if (!s->saved) {
                net_conn_close(s->conn);
                break;
            }
            memcpy(s->saved, data, len);
            s->saved_len = len;
            net_conn_pause(s->conn);
            break;
        }
    }
    s->in_feed = 0;
}

static void session_free(http_session_t *s)
{
    free(s->saved);
    free(s);
}

static void on_data(net_conn_t *c, char *data, size_t len)
{
    http_session_t *s = c->ud;
    if (s->dead)
        return;
    if (s->phase == PHASE_BODY)
        arm(s, PHASE_BODY, s->srv->cfg.http.body_timeout_s);
    feed(s, data, len);
    if (s->closed) {
        session_free(s);
        return;
    }
    arm_after_flush(s);
}

/* ---- the pipeline ---- */

static void drop_pipeline(http_session_t *s)
{
    roost_req_t *req = s->head;
    s->head = s->tail = NULL;
    s->depth = 0;
    while (req) {
        roost_req_t *next = req->next;
        req->sess = NULL;
        req->on_responded = NULL;
        req->next = NULL;
        http_req_gone(req); /* the client left: a timer fires now, its answer is dropped */
        http_req_unref(req);
        req = next;
    }
}

static void write_response(http_session_t *s, roost_req_t *req)
{
    net_loop_t *loop = s->conn->loop;
    if (s->shutdown || !req->keep_alive)
        req->close_after = 1;
    if (loop->cork_conn == s->conn) {
        http_serialize(req, loop->date, &loop->cork); /* straight into the gathered write */
    } else {
        sbuf_t *out = &loop_state(loop)->out;
        out->len = 0;
        http_serialize(req, loop->date, out);
        net_conn_write(s->conn, out->p, out->len);
    }
    if (req->res_shared_later) /* a large shared body: written from the buffer, after the head */
        net_conn_write_rbuf(s->conn, req->res_shared, req->res_shared_off, req->res_shared_len);
    if (req->res_file.done) {
        int bodyless = req->status < 200 || req->status == 204 || req->status == 304;
        if (bodyless || req->method == HTTP_HEAD) {
            http_res_file_release(req);
        } else { /* the file follows the head in the write queue, and is the connection's */
            void (*done)(void *, int) = req->res_file.done;
            req->res_file.done = NULL;
            net_conn_sendfile(s->conn, req->res_file.fd, req->res_file.off, req->res_file.len, done,
                              req->res_file.arg);
        }
    }
    http_req_set_phase(req, HTTP_REQ_WRITTEN);
}

/* The 101 went out: hand the connection to the new protocol. Nothing may follow the upgrade
 * request in the pipeline (parsing paused on it); bytes already read but not parsed go to the
 * new protocol, here or by feed() when it is on the stack. */
static void upgrade(http_session_t *s, roost_req_t *req)
{
    void (*attach)(net_conn_t *, void *) = req->upgrade_attach;
    void *arg = req->upgrade_arg;
    req->upgrade_attach = NULL;
    req->upgrade_drop = NULL;
    req->upgrade_arg = NULL;
    http_req_unref(req);
    net_conn_t *c = s->conn;
    s->dead = 1;
    s->upgraded = 1;
    s->parse.cur = NULL;
    drop_pipeline(s);
    attach(c, arg); /* sets c->proto and c->ud */
    if (s->in_feed) {
        s->closed = 1; /* on_data or the resume path frees the session after feed() */
        return;
    }
    if (s->saved && !c->closing)
        c->proto->on_data(c, s->saved, s->saved_len);
    session_free(s);
}

static void flush_pipeline(http_session_t *s)
{
    roost_req_t *req;
    while ((req = s->head) && !s->conn->closing) {
        http_phase_t phase = http_req_phase(req);
        if (req->streamed && (phase == HTTP_REQ_STREAMING || phase == HTTP_REQ_RESPONDED)) {
            if (s->shutdown || !req->keep_alive || req->http_minor == 0)
                req->close_after = 1;
            int done =
                http_stream_out(req, s->conn, &loop_state(s->conn->loop)->out, s->conn->loop->date);
            if (s->closed)
                return; /* the write failed: on_close let go of the pipeline */
            if (!done)
                break;
        } else if (phase != HTTP_REQ_RESPONDED) {
            if (req->expect_continue && !req->continue_sent && s->phase == PHASE_BODY &&
                req == s->parse.cur) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                net_conn_write(s->conn, cont, sizeof cont - 1);
                req->continue_sent = 1;
            }
            break;
        } else {
            write_response(s, req);
            if (s->closed)
                return;
        }
        s->head = req->next;
        if (!s->head)
            s->tail = NULL;
        s->depth--;
        req->sess = NULL;
        req->on_responded = NULL;
        int close = req->close_after;
        if (req->upgrade_attach && !close) {
            upgrade(s, req);
            return;
        }
        http_req_unref(req);
        if (close) {
            s->dead = 1;
            s->parse.cur = NULL;
            drop_pipeline(s);
            net_conn_close_after_write(s->conn);
            return;
        }
    }
    if (s->shutdown && s->depth == 0 && !s->conn->closing) {
        net_conn_close_after_write(s->conn);
        return;
    }
    if (s->saved && s->depth < s->srv->cfg.http.max_pipeline && !s->dead && !s->upgrade_pending)
        net_conn_defer(s->conn); /* on_deferred feeds the rest */
}

/* Writes what the pipeline has ready. Returns 1 when the connection closed meanwhile and the
 * session is freed (unless a feed, which frees it, is on the stack). */
static int flush(http_session_t *s)
{
    int outer = !s->in_flush;
    s->in_flush = 1;
    flush_pipeline(s);
    if (!outer)
        return 0;
    s->in_flush = 0;
    if (s->closed && !s->in_feed) {
        session_free(s);
        return 1;
    }
    return s->closed;
}

/* req->on_responded: an answer, or a stream's piece, may go out now. */
static void session_responded(roost_req_t *req)
{
    http_session_t *s = req->sess;
    if (!s)
        return;
    if (flush(s))
        return;
    if (!s->in_feed && !s->conn->closing)
        arm_after_flush(s);
}

/* ---- connection events ---- */

static void on_timeout(net_conn_t *c)
{
    http_session_t *s = c->ud;
    if (s->phase == PHASE_HEAD || s->phase == PHASE_BODY) {
        int head = s->phase == PHASE_HEAD;
        s->phase = PHASE_WAIT;
        fail_current(s, 408,
                     head ? "Timed out reading the request header"
                          : "Timed out reading the request body",
                     head ? "header_timeout" : "body_timeout");
        return;
    }
    /* A file in the write queue that went on moving since the last timeout is a slow reader,
     * not a stalled one: --write-timeout-s counts from its last progress. */
    if (c->wq_bytes > 0 && c->file_sent != s->file_sent_seen) {
        s->file_sent_seen = c->file_sent;
        arm(s, s->phase, s->srv->cfg.http.write_timeout_s);
        return;
    }
    /* Idle keep-alive, or a client that stopped reading what we write. */
    net_conn_close(c);
}

static void on_drained(net_conn_t *c)
{
    http_session_t *s = c->ud;
    if (s && s->head && s->head->streamed)
        http_stream_drained(s->head);
    arm_after_flush(c->ud);
}

static void on_shutdown(net_conn_t *c)
{
    http_session_t *s = c->ud;
    s->shutdown = 1;
    if (s->depth == 0)
        net_conn_close_after_write(c);
}

static void on_close(net_conn_t *c)
{
    http_session_t *s = c->ud;
    c->ud = NULL;
    s->parse.cur = NULL;
    drop_pipeline(s);
    if (s->in_feed || s->in_flush)
        s->closed = 1; /* feed() or flush() is on the stack: it frees the session */
    else
        session_free(s);
}

const net_proto_t http_proto = {
    .name = "http",
    .on_data = on_data,
    .on_timeout = on_timeout,
    .on_drained = on_drained,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .on_deferred = on_deferred,
};

const char *http_session_peer(http_session_t *s)
{
    if (!s->peer_asked) {
        s->peer_asked = 1;
        http_conn_peer(s->conn, s->peer, sizeof s->peer);
    }
    return s->peer[0] ? s->peer : NULL;
}

void http_session_accept(net_conn_t *c)
{
    roost_server_t *srv = net_group_ud(c->loop->group);
    http_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        net_conn_close(c);
        return;
    }
    s->conn = c;
    s->srv = srv;
    s->hs = http_server(srv);
    s->hl = loop_state(c->loop);
    http_parse_init(&s->parse, &srv->cfg);
    s->parse.new_req = on_new_req;
    s->parse.on_head = on_head;
    s->parse.on_request = on_request;
    s->parse.ud = s;
    c->proto = &http_proto;
    c->ud = s;
    arm(s, PHASE_IDLE, srv->cfg.http.keepalive_timeout_s);
}
