/* The http layer: llhttp glue with every limit (parse.c), URL paths and queries (url.c), the
 * router (router.c), dispatch (request.c), the middleware chain (middleware.c), responses
 * (response.c), streams (stream.c), handlers that answer later (handoff.c), schemas and the
 * validator (schema.c), error items and JSON bodies (json.c), cursors and pages (cursor.c), a
 * connection's pipeline (session.c) and its part of the server (server.c: routes, after-response
 * tasks), attached to core's server object through a slot and the protocol of accepted
 * connections.
 *
 * A request (roost_req_t) owns copies of its target and header bytes (the read buffer belongs to
 * the loop), an arena for what dies with it, and, once answered, its response. Request objects
 * are recycled per loop, so a keep-alive connection allocates nothing per request. */
#ifndef ROOST_HTTP_H
#define ROOST_HTTP_H

#include <llhttp.h>

#include "base/base.h"
#include "core/core.h"
#include "net/net.h"

typedef struct http_session http_session_t;
typedef struct route route_t;

typedef struct {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len;
} http_header_t;

typedef struct {
    const char *name;
    roost_str_t value;
} http_param_t;

#define HTTP_INLINE_HEAD     1024
#define HTTP_INLINE_HEADERS  24
#define HTTP_MAX_PARAMS      8
#define HTTP_SHARED_COPY_MAX 16384 /* a shared body up to this is copied into the head's write */

/* A request's life. The phase says which thread owns the request now; only that thread
 * touches the fields marked "owner". The one cross-thread hand-off: the loop stores ON_WORKER
 * (release) before it submits the request to the pool, and gets it back when the worker's
 * completion message (net_loop_post: a mutex, so acquire/release) runs on the loop, which
 * then stores RESPONDED. Every other change of phase happens on the loop.
 *
 *   PARSING -> ON_LOOP (dispatch, handler, resume/defer callbacks)
 *           -> ON_WORKER -> RESPONDED                  (a blocking handler)
 *           -> WAITING -> ON_LOOP ...                  (roost_req_wait, roost_defer)
 *           -> STREAMING                                (roost_stream_begin, until its end)
 *           -> RESPONDED -> WRITTEN                     (in pipeline order) */
typedef enum {
    HTTP_REQ_PARSING = 0,
    HTTP_REQ_ON_LOOP,
    HTTP_REQ_ON_WORKER,
    HTTP_REQ_WAITING,
    HTTP_REQ_STREAMING,
    HTTP_REQ_RESPONDED,
    HTTP_REQ_WRITTEN,
} http_phase_t;

/* The request's middleware: the global list then the route's, each with its context. */
typedef struct {
    const roost_middleware_t *mw;
    size_t ctx_off; /* its context: req->mw_ctx + ctx_off (when mw->ctx_size) */
} http_mw_t;

struct roost_req {
    _Atomic uint8_t phase; /* http_phase_t; see above */
    /* ---- loop only ---- */
    roost_req_t *next;    /* the session's pipeline, oldest first */
    http_session_t *sess; /* NULL once the connection is gone */
    /* The session's hook: a response (or a stream's piece) is ready to go out. NULL once the
     * session let go of the request. Dispatch and responses reach the session only here. */
    void (*on_responded)(roost_req_t *req);
    net_conn_t *conn;         /* memory valid while the request holds a ref on it */
    int refs;                 /* the session's, plus one per async owner (worker, waits) */
    _Atomic int waits;        /* roost_req_wait minus resumes run; any thread while > 0 */
    struct http_defer *defer; /* a pending roost_defer timer */
    /* Loop: what a waiting request's helper (an upstream call) cancels when the client leaves. */
    void (*on_gone)(roost_req_t *req, void *arg);
    void *on_gone_arg;
    roost_server_t *srv;    /* any thread, read only */
    struct http_server *hs; /* srv's http slot; any thread, read only */
    net_loop_t *loop;       /* any thread, read only */
    uint64_t start_ns;      /* any thread, read only */

    /* ---- what was parsed (loop while parsing, then read only) ---- */
    char *head; /* target and header bytes */
    size_t head_len, head_cap;
    uint32_t url_len; /* the target is head[0 .. url_len) */
    http_header_t *headers;
    int nheaders, headers_cap;
    uint8_t method; /* llhttp_method_t */
    uint8_t http_major, http_minor;
    uint8_t keep_alive, expect_continue;
    uint8_t continue_sent; /* loop */
    uint8_t in_field;      /* parser inside a header name */
    uint8_t close_after;   /* loop: the connection ends after this answer */
    uint8_t streamed;      /* loop: roost_stream_begin made this answer a stream */
    uint8_t background;    /* a copy run with no client (http_req_background); read only */
    uint8_t stream_head;   /* loop: a stream's head has been written */
    /* Loop: roost_stream_on_drain's callback, resumed once the backlog is written or the
     * client left (it holds a wait on the request until then). */
    roost_resume_fn drain_fn;
    void *drain_arg;
    struct http_sse *sse;         /* loop: an event stream's heartbeat timer (sse.c) */
    struct http_wstream *wstream; /* a blocking handler's stream (stream_worker.c), or NULL */
    struct http_after *after, *after_tail; /* owner: roost_after_response tasks */
    int hosts;
    /* A 101 answer: once it is written, the connection is handed to attach(conn, arg); if it
     * never is (the client left), drop(arg) frees arg. Loop. */
    void (*upgrade_attach)(net_conn_t *c, void *arg);
    void (*upgrade_drop)(void *arg);
    void *upgrade_arg;
    sbuf_t body;

    /* ---- routing (loop, then read only) ---- */
    roost_str_t path;  /* decoded, normalized (arena) */
    roost_str_t query; /* raw, after '?' */
    const route_t *route;
    /* ---- observability (loop): trace context (trace.c) and what went out ---- */
    uint64_t res_bytes;   /* response body bytes, whole or streamed */
    char trace_id[33];    /* 32 lowercase hex, "" when tracing is off */
    char span_id[17];     /* this request's span */
    char parent_span[17]; /* the caller's span from traceparent, or "" */
    uint8_t trace_flags;
    uint8_t trace_local;      /* no valid traceparent came: the trace began here */
    uint8_t trace_pending;    /* the ids are still to be drawn and written (on the first read) */
    int traceparent;          /* 1 + the index of the first traceparent header, 0: none (parse.c) */
    struct http_valid *valid; /* what the route's schemas validated (schema.c), or NULL */
    http_param_t params[HTTP_MAX_PARAMS];
    int nparams;
    arena_t arena; /* owner */

    /* ---- middleware (set on the loop at dispatch, then the owner's) ---- */
    http_mw_t *mw; /* the server's global chain, or the arena's with the route's */
    char *mw_ctx;  /* every entry's context, zeroed, from the arena */
    int nmw;
    int mw_next;        /* the on_request hook after the one that parked (roost_req_continue) */
    uint8_t has_filter; /* some mw has on_body (that did not pass: roost_body_pass) */
    int mw_cur;         /* the entry whose on_headers runs now */
    uint64_t mw_passed; /* bit i: entry i's on_body lets this answer through (roost_body_pass) */
    uint8_t body_kept;  /* the filters passed the whole body on as it was: res_body (or res_shared)
                           stands */

    /* ---- the response (owner) ---- */
    int status;         /* 0: no answer yet */
    sbuf_t res_headers; /* "Name: value\r\n" lines */
    sbuf_t res_body;    /* whole: the body; streaming: framed bytes not yet written */
    sbuf_t res_tmp;     /* where filters' output collects */
    const char *res_type;
    /* A file answer (http_respond_file): its bytes follow the head by sendfile, never through
     * res_body. done is set while the request owns the file; it goes with it to the connection
     * when written, or is called with -ECANCELED when the request is recycled unwritten. */
    struct {
        int fd;
        uint64_t off, len;
        void (*done)(void *arg, int status);
        void *arg;
    } res_file;
    /* A whole body in a shared, immutable buffer (http_respond_shared: a cache HIT): bytes
     * [off, off+len) of res_shared, written from there; res_body stays empty. Any thread may
     * hold the buffer; this request holds one reference until it is reset. */
    rbuf_t *res_shared;
    size_t res_shared_off, res_shared_len;
    uint8_t res_shared_later; /* loop: serialized without it; write it after the head */

    /* ---- hand-offs ---- */
    tpool_work_t work; /* on the worker pool, for a blocking handler */
    net_msg_t msg;
    http_header_t inline_headers[HTTP_INLINE_HEADERS];
    char inline_head[HTTP_INLINE_HEAD];
};

static inline http_phase_t http_req_phase(const roost_req_t *req)
{
    return (http_phase_t)atomic_load_explicit(&((roost_req_t *)req)->phase, memory_order_relaxed);
}
static inline void http_req_set_phase(roost_req_t *req, http_phase_t p)
{
    atomic_store_explicit(&req->phase, (uint8_t)p, memory_order_relaxed);
}

/* ---- parse.c: bytes in, requests out, every limit enforced ---- */
typedef struct http_parse {
    llhttp_t llh;
    const roost_config_t *cfg;
    roost_req_t *cur; /* the request being parsed */
    size_t body_len;
    const char *feed_start, *feed_end; /* the buffer being parsed */
    /* Between a header's name and its value, or between two spans of its value: where those
     * bytes start in this buffer (NULL: at its start), and whether a line break was among them
     * in an earlier buffer. A value span after a line break is an obsolete fold. */
    const char *gap_from;
    unsigned in_gap : 1, gap_newline : 1;
    /* Chunked framing llhttp 8 leaves loose (parse.c): how many bytes of the CRLF after a
     * chunk's data are still to be checked, whether the chunk being read is the last, and
     * where a chunk-size line's scan is (0: not in one, 1: in its hex digits, 2: in the
     * whitespace after them, which only a ';' may follow). */
    unsigned crlf_want : 2, last_chunk : 1, size_line : 2;
    /* llhttp paused for the feed's own checks (not for on_request), and whether at the end of
     * a header section; the two bytes before the current buffer (tail_len of them known), for
     * checks that look back across reads. */
    unsigned inner_pause : 1, head_end : 1, tail_len : 2;
    char tail[2];
    int err_status; /* set when feed fails */
    const char *err_detail;
    const char *err_limit; /* which limit was hit, for the counter; NULL if none */
    /* A new request starts (return NULL: out of memory). */
    roost_req_t *(*new_req)(void *ud);
    /* The header section is complete and valid (the body may follow). */
    void (*on_head)(void *ud, roost_req_t *req);
    /* The request is complete; it now belongs to the callee. Return 1 to pause parsing. */
    int (*on_request)(void *ud, roost_req_t *req);
    void *ud;
} http_parse_t;

void http_parse_init(http_parse_t *p, const roost_config_t *cfg);
/* Returns the bytes consumed: len, or fewer when on_request paused (feed the rest later).
 * Returns -1 on a protocol error: err_status/err_detail say what to answer, and p->cur (if not
 * NULL) is the request to answer it with. */
ssize_t http_parse_feed(http_parse_t *p, const char *data, size_t len);
/* Resets a request object for reuse (keeps its buffers' capacity). */
void http_req_reset(roost_req_t *req);
void http_req_free(roost_req_t *req);
roost_str_t http_req_target(const roost_req_t *req);

/* ---- url.c ---- */
/* Percent-decodes src into dst (dst may be src); '+' becomes ' ' when plus_is_space. Returns the
 * decoded length, or -1 on a malformed escape or a decoded NUL. */
ssize_t url_decode(char *dst, const char *src, size_t len, int plus_is_space);
/* Decodes the path of a target and removes dot segments (RFC 3986 §5.2.4) so that no `..`
 * climbs above `/`. Returns the arena copy, or .ptr == NULL when malformed. */
roost_str_t url_clean_path(arena_t *a, const char *path, size_t len);
/* Finds `name` in a raw query string and returns its decoded value (arena), .ptr NULL when
 * absent. */
roost_str_t url_query_get(arena_t *a, roost_str_t query, const char *name);

/* ---- router.c: a segment trie per method ---- */
typedef struct router router_t;
enum { PARAM_STR = 0, PARAM_INT = 1, PARAM_PATH = 2 };
struct route {
    char *name; /* "GET /users/{id}" */
    char *path; /* "/users/{id}" */
    roost_handler_fn fn;
    void *ud;
    unsigned flags;
    /* Everything it was registered with (method and path point to this route's copies), for
     * the validator, the middleware chain (opts.middleware) and the OpenAPI document. */
    roost_route_opts_t opts;
    int nparams;
    char *param_names[HTTP_MAX_PARAMS];
    uint8_t param_types[HTTP_MAX_PARAMS];
    int id; /* 1.. in registration order: the index of its metrics (metrics.c); 0 is unmatched */
};

router_t *router_new(void);
void router_free(router_t *r);
int router_add(router_t *r, const char *method, const char *tmpl, roost_handler_fn fn, void *ud,
               unsigned flags);
/* The same with every option (roost_route_ex). */
int router_add_ex(router_t *r, const roost_route_opts_t *opts);
/* Calls fn for every route, in registration order per path (for the OpenAPI document). */
void router_each(const router_t *r, void (*fn)(const route_t *route, void *ud), void *ud);
/* Matches a clean path. On success returns the route and fills params (values point into path,
 * not decoded further). When the path exists for other methods only, returns NULL and writes
 * "GET, HEAD" style into allow (NUL-terminated, empty when the path is unknown). */
const route_t *router_match(const router_t *r, const char *method, roost_str_t path,
                            http_param_t *params, int *nparams, char *allow, size_t allow_size);

/* ---- schema.c: the one validator ---- */
/* Right before the handler: checks the route's path, query and body schemas. Returns 0 (the
 * validated values are on req->valid), or -EINVAL after answering 422 with every error. */
int http_route_validate(roost_req_t *req);
/* Drops what validation kept (when the request object is reset or freed). */
void http_valid_clear(roost_req_t *req);
/* json.c: FastAPI's answer to a body that is not JSON, at ["body", position]. */
json_t *http_json_invalid_item(const json_error_t *err);

/* ---- response.c ---- */
/* Serializes req's response (status line, Date, lengths, headers, body) into out. */
void http_serialize(roost_req_t *req, const char *date, sbuf_t *out);
const char *http_reason(int status);
/* Answers status with len bytes of the open file fd from off as the body (Content-Length: len;
 * a HEAD gets the length and no body), written by sendfile after the head, on the loop. The
 * file is the request's from now on: done(arg, status) runs on the loop once it is no longer
 * needed (sent, not sent, or the client left) and closes fd; arg must outlive the request (not
 * its arena). The body filters do not see it: a file goes out as it is on disk. Loop. */
void http_respond_file(roost_req_t *req, int status, const char *content_type, int fd, uint64_t off,
                       uint64_t len, void (*done)(void *arg, int status), void *arg);
/* Lets go of a file answer that was not written (done(arg, -ECANCELED)). */
void http_res_file_release(roost_req_t *req);
/* Answers with bytes [off, off+len) of the shared buffer b as the body, without copying them
 * into the request: a reference is taken. A small body is copied once, into the connection's
 * gathered write; a large one is written from b. A body filter that changes the bytes (gzip)
 * makes its own; one that passes them on leaves them shared. Owner thread. */
void http_respond_shared(roost_req_t *req, int status, const char *content_type, rbuf_t *b,
                         size_t off, size_t len);
/* The whole body's length, shared or not (for on_headers hooks). */
static inline size_t http_res_body_len(const roost_req_t *req)
{
    return req->res_shared ? req->res_shared_len : req->res_body.len;
}
/* Drops the shared body (when the request is reset or freed). */
void http_res_shared_release(roost_req_t *req);

/* ---- session.c: one connection's pipeline and timeouts ---- */
extern const net_proto_t http_proto;
void http_session_accept(net_conn_t *c);
/* The http slot's per-loop free: the loop's request free list. */
void http_loop_end(net_loop_t *loop, void *ctx);
/* The client's address as text, asked of the kernel once per connection; NULL if none. Loop. */
const char *http_session_peer(http_session_t *s);
/* Drops the session's reference on a request (the last one recycles it). Loop. */
void http_req_unref(roost_req_t *req);

/* ---- request.c ---- */
/* A connection's peer address as text (IPv4-mapped IPv6 as IPv4): 0, or -ENOTCONN (out "")
 * when it has none (a test's fake connection). */
int http_conn_peer(net_conn_t *c, char *out, size_t size);
/* Routes a complete request and runs its middleware and handler. Loop. */
void http_dispatch(roost_req_t *req);
/* Tells the session a response or a stream's piece is ready (loop, when it has one). */
static inline void http_req_responded(roost_req_t *req)
{
    if (req->on_responded)
        req->on_responded(req);
}

/* ---- background.c: a request run again with no client ---- */
/* Runs a copy of req (method, target, headers; not the body) through its route's middleware
 * and handler on req's loop, with no client: its answer is made and dropped. It has `background`
 * set, so that the middleware that asked for it (the cache's revalidation) knows it; the global
 * middleware (rate limits, the access log) does not run for it. 0, or -ENOMEM. Loop. */
int http_req_background(roost_req_t *req);

/* ---- stream_worker.c: the stream calls of a blocking handler, run on the loop ---- */
/* Whether req's blocking handler runs on this thread now (handoff.c). */
int http_on_worker(const roost_req_t *req);
int http_worker_stream_begin(roost_req_t *req, int status, const char *content_type);
int http_worker_sse_start(roost_req_t *req, long retry_ms, double heartbeat_s);
/* Blocks while the client is behind (backpressure); -EPIPE once it left. */
int http_worker_stream_write(roost_req_t *req, const void *data, size_t len);
/* Ends (abort: aborts) once every written byte is in the stream; waits for it. */
void http_worker_stream_end(roost_req_t *req, int abort);
/* Loop, once the handler returned: frees req's worker stream. */
void http_wstream_free(roost_req_t *req);
typedef struct http_wstream http_wstream_t;

/* ---- handoff.c: worker hand-off, roost_defer, roost_req_wait/resume ---- */
/* Runs the route's handler on the loop or hands it to the pool. Loop. */
void http_run_handler(roost_req_t *req);
/* The client left: a pending roost_defer fires now (its answer is dropped), and the on_gone
 * hook runs (once). */
void http_req_gone(roost_req_t *req);

/* ---- stream.c: the loop writes a stream's head once, then its pieces ---- */
/* Writes what a streamed response has ready; returns 1 once its last byte is written. */
int http_stream_out(roost_req_t *req, net_conn_t *c, sbuf_t *scratch, const char *date);
/* The connection's queue emptied, or the client left: resumes a pending drain callback. */
void http_stream_drained(roost_req_t *req);
/* ---- sse.c ---- */
/* Stops an event stream's heartbeats (its end, or the client left). */
void http_sse_stop(roost_req_t *req);

/* ---- middleware.c: the chain ---- */
/* Sets up req's chain: the global middleware of hs, then route (NULL-terminated, may be NULL),
 * each with a zeroed context from the arena (one block); a request with no route middleware
 * shares hs->chain. Loop. Returns 0 or -ENOMEM (the chain is then empty). */
int http_mw_chain(roost_req_t *req, const struct http_server *hs,
                  const roost_middleware_t *const *route);
/* Runs on_request hooks, from the first (from: 0) until one answers or parks the request;
 * returns 1 if one did (req->mw_next is then the hook after it). */
int http_mw_request(roost_req_t *req, int from);
/* Runs on_headers hooks then the body filters over the whole res_body. */
void http_mw_respond(roost_req_t *req);
/* Runs on_headers hooks (a stream's head). */
void http_mw_headers(roost_req_t *req);
/* Passes a stream's piece through the filters into res_body, framed. */
int http_mw_stream(roost_req_t *req, const void *p, size_t n, int last);
/* Runs on_done hooks, once. Loop. */
void http_mw_done(roost_req_t *req);

/* ---- server.c: shared by the layer ---- */
/* Every limit has a counter roost_limit_hits_total{limit=name}. */
#define HTTP_NLIMITS 11
extern const char *const http_limit_names[HTTP_NLIMITS];
/* The http layer's part of the server, in its core slot (the server object is core's). */
typedef struct http_server {
    router_t *router;
    roost_middleware_t *mw; /* roost_use, in order */
    int nmw;
    /* The global chain made once, shared (read only) by requests that add no route
     * middleware; their contexts are chain_ctx bytes of the request's arena. */
    http_mw_t *chain;
    size_t chain_ctx;
    uint8_t chain_filters;
    roost_counter_t *c_requests, *c_bad_request;
    roost_counter_t *c_limits[HTTP_NLIMITS];
    roost_counter_t *c_tasks_ok, *c_tasks_failed;
    struct http_metrics *metrics;     /* per-route series (metrics.c), NULL with --metrics off */
    roost_counter_t *c_stream_paused; /* roost_stream_write answered -EAGAIN */
    /* openapi.c: the route lists that need an API key (static, the application's), and the
     * document, made on its first request */
    const char *const **secured;
    int nsecured;
    char *openapi;
} http_server_t;
core_slot_t http_slot(void);
http_server_t *http_server(roost_server_t *srv);

/* ---- per-route metrics (metrics.c) and trace context (trace.c) ---- */
struct http_metrics *http_metrics_new(void);
void http_metrics_free(struct http_metrics *m);
/* Records a finished request: an array index and a few relaxed adds on this thread's shard. */
void http_metrics_record(struct http_metrics *m, const roost_req_t *req);
void http_metrics_render(struct http_metrics *m, const router_t *r, sbuf_t *out);
const route_t *router_route(const router_t *r, int id);
int router_count(const router_t *r);
/* Takes the traceparent header when valid, else starts a trace; a new span either way. */
void http_trace_start(roost_req_t *req);
/* This thread works for req's trace now (roost_trace_enter, marked local when it began here). */
void http_trace_enter(const roost_req_t *req);
/* The request's server span, to the exporter when one runs. */
void http_trace_end(roost_req_t *req);
/* 1 when the request has a trace (tracing on); its ids read through roost_req_trace_id. */
int http_trace_on(const roost_req_t *req);

void http_count_limit(roost_server_t *srv, const char *limit);

/* ---- openapi.c ---- */
/* The auth middleware's routes (NULL-terminated, static) get the API-key security schemes in
 * the OpenAPI document. Before roost_run; 0 or -ENOMEM. */
int http_openapi_secure(roost_server_t *srv, const char *const *routes);
/* Hands a request's background tasks to the worker pool (and takes them off the request). */
void http_after_submit(roost_req_t *req);

#endif
