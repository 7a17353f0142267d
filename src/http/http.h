/* The http layer: llhttp glue with every limit (parse.c), URL paths and queries (url.c), the
 * router (router.c), responses (response.c), JSON validation (json.c), a connection's pipeline
 * (session.c) and its part of the server (server.c: routes, middleware, after-response
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

#define HTTP_INLINE_HEAD    1024
#define HTTP_INLINE_HEADERS 24
#define HTTP_MAX_PARAMS     8

struct roost_req {
    roost_req_t *next;        /* the session's pipeline, oldest first */
    http_session_t *sess;     /* NULL once the connection is gone */
    net_conn_t *conn;         /* memory valid while the request holds a ref on it */
    int refs;                 /* the session's, plus one per async owner (worker, timer) */
    struct http_defer *defer; /* a pending roost_defer timer */
    roost_server_t *srv;
    net_loop_t *loop;
    uint64_t start_ns;

    /* what was parsed: target and header bytes copied into head */
    char *head;
    size_t head_len, head_cap;
    uint32_t url_len; /* the target is head[0 .. url_len) */
    http_header_t *headers;
    int nheaders, headers_cap;
    uint8_t method; /* llhttp_method_t */
    uint8_t http_major, http_minor;
    unsigned keep_alive : 1;
    unsigned expect_continue : 1, continue_sent : 1;
    /* A response exists. Its own byte, not a bit-field: a worker sets it while the loop reads
     * the bit-fields (inflight first) of the same request. */
    uint8_t responded;
    unsigned in_field : 1;  /* parser inside a header name */
    unsigned written : 1;   /* the response went to the connection */
    unsigned inflight : 1;  /* on a worker or deferred: the loop must not answer for it */
    unsigned on_worker : 1; /* a worker thread runs the handler now */
    unsigned close_after : 1;
    unsigned streaming : 1;   /* roost_stream_begin: the body goes out in pieces */
    unsigned stream_head : 1; /* its head has been written */
    unsigned stream_ended : 1;
    unsigned held : 1;                     /* roost_req_hold */
    struct http_after *after, *after_tail; /* roost_after_response tasks */
    int hosts;
    /* A 101 answer: once it is written, the connection is handed to attach(conn, arg); if it
     * never is (the client left), drop(arg) frees arg. */
    void (*upgrade_attach)(net_conn_t *c, void *arg);
    void (*upgrade_drop)(void *arg);
    void *upgrade_arg;
    sbuf_t body;

    /* routing */
    roost_str_t path;  /* decoded, normalized (arena) */
    roost_str_t query; /* raw, after '?' */
    const route_t *route;
    http_param_t params[HTTP_MAX_PARAMS];
    int nparams;
    arena_t arena;

    /* the response */
    int status;
    sbuf_t res_headers; /* "Name: value\r\n" lines */
    sbuf_t res_body;
    const char *res_type;

    /* hand-offs */
    pool_job_t job;
    net_msg_t msg;
    http_header_t inline_headers[HTTP_INLINE_HEADERS];
    char inline_head[HTTP_INLINE_HEAD];
};

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
    roost_handler_fn fn;
    void *ud;
    unsigned flags;
    int nparams;
    char *param_names[HTTP_MAX_PARAMS];
    uint8_t param_types[HTTP_MAX_PARAMS];
};

router_t *router_new(void);
void router_free(router_t *r);
int router_add(router_t *r, const char *method, const char *tmpl, roost_handler_fn fn, void *ud,
               unsigned flags);
/* Matches a clean path. On success returns the route and fills params (values point into path,
 * not decoded further). When the path exists for other methods only, returns NULL and writes
 * "GET, HEAD" style into allow (NUL-terminated, empty when the path is unknown). */
const route_t *router_match(const router_t *r, const char *method, roost_str_t path,
                            http_param_t *params, int *nparams, char *allow, size_t allow_size);

/* ---- response.c ---- */
/* Serializes req's response (status line, Date, lengths, headers, body) into out. */
void http_serialize(roost_req_t *req, const char *date, sbuf_t *out);
const char *http_reason(int status);

/* ---- session.c: one connection's pipeline ---- */
extern const net_proto_t http_proto;
void http_session_accept(net_conn_t *c);
/* Called by roost_respond* once the response is complete (any thread). */
void http_session_responded(roost_req_t *req);
/* The http slot's per-loop free: the loop's request free list. */
void http_loop_end(net_loop_t *loop, void *ctx);
/* Routes a complete request and runs its handler (on the loop, or hands it to the pool). */
void http_dispatch(roost_req_t *req);

/* ---- server.c: shared by the layer ---- */
/* Every limit has a counter roost_limit_hits_total{limit=name}. */
#define HTTP_NLIMITS 11
extern const char *const http_limit_names[HTTP_NLIMITS];
/* The http layer's part of the server, in its core slot (the server object is core's). */
typedef struct http_server {
    router_t *router;
    roost_middleware_t *mw;
    int nmw;
    roost_counter_t *c_requests, *c_bad_request;
    roost_counter_t *c_limits[HTTP_NLIMITS];
    roost_counter_t *c_tasks_ok, *c_tasks_failed;
} http_server_t;
core_slot_t http_slot(void);
http_server_t *http_server(roost_server_t *srv);

void http_count_limit(roost_server_t *srv, const char *limit);
/* Hands a request's background tasks to the worker pool (and takes them off the request). */
void http_after_submit(roost_req_t *req);
void http_run_handler(roost_req_t *req);

#endif
