/* roost: the public API of libroost, a multi-loop HTTP/1.1 application server library.
 *
 * A server is N loop threads (one libuv loop each, one listener each on the same port with
 * SO_REUSEPORT) and a bounded pool of worker threads. A route is a method, a path template and a
 * handler; ROOST_LOOP handlers run on the connection's loop and must never block, ROOST_BLOCKING
 * handlers run on a worker (FastAPI's `async def` and `def`). Everything here that is not marked
 * otherwise is called from the thread that runs the handler.
 *
 * Errors: functions that can fail return 0 or a negative errno-style code (-ENOMEM, -EINVAL). */
#ifndef ROOST_H
#define ROOST_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libroost.so is built with -fvisibility=hidden: what this header declares is its whole export
 * list (with src/libroost.map), everything else in the library stays internal. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

typedef struct roost_server roost_server_t;
typedef struct roost_req roost_req_t;

/* A slice: pointer + length, not NUL-terminated unless said so. ptr == NULL means absent. */
typedef struct {
    const char *ptr;
    size_t len;
} roost_str_t;

#define ROOST_LIST_MAX 32
typedef struct {
    const char *v[ROOST_LIST_MAX];
    int n;
} roost_strlist_t; /* a repeatable flag */

/* ---- configuration: every field is a flag (--name) with a ROOST_NAME environment twin ----
 * One section per layer; the flag names are as they were before the sections (--ws-max-rate
 * sets ws.max_rate, --job-workers sets jobs.workers, --db-pool-size sets data.pool_size). */
typedef struct {
    const char *host; /* --host, default 127.0.0.1 */
    int port;         /* --port, default 8000 */
    int threads;      /* --threads: loops, default one per core */
    int stall_ms;     /* --stall-ms: loop stall reported above this, default 100 */
    double drain_s;   /* --drain-s: in-flight work finishes within this on SIGTERM */
    /* Per client address, 0 (off) by default since many clients may share one address (NAT):
     * above them a new connection is answered 503 and closed (docs/security.md). */
    int max_conns_per_ip;    /* --max-conns-per-ip: open connections */
    int new_conns_per_ip_s;  /* --new-conns-per-ip-s: new connections a second, bursts of 2x */
    const char *trusted_ips; /* --trusted-ips: comma-separated CIDRs exempt from both */
} roost_net_config_t;

typedef struct {
    const char *cert; /* --tls-cert: PEM certificate, its chain after it; with key: TLS on */
    const char *key;  /* --tls-key: PEM private key */
    int port;         /* --tls-port: TLS here beside plain HTTP on --port; 0: TLS on --port */
    double handshake_timeout_s; /* --tls-handshake-timeout-s, default 10 */
} roost_tls_config_t;

typedef struct {
    roost_strlist_t api_keys;    /* --api-key (repeatable): keys for the write routes */
    const char *api_keys_file;   /* --api-keys-file: one key a line */
    const char *ws_token_secret; /* --ws-token-secret: /ws/{room}/{user} needs an HS256 JWT */
} roost_auth_config_t;

typedef struct {
    int workers;                /* --workers: most worker threads for blocking handlers, 256 */
    int workers_min;            /* --workers-min: worker threads kept when idle, default 8 */
    double workers_idle_s;      /* --workers-idle-s: a worker idle this long above min ends */
    int worker_queue;           /* --worker-queue: queued blocking jobs before 503, default 1024 */
    size_t max_url;             /* --max-url: request target bytes, 414 above, default 8 KiB */
    size_t max_header_size;     /* --max-header-size: header section bytes, 431, default 32 KiB */
    int max_headers;            /* --max-headers: header fields, 431 above, default 100 */
    size_t max_body;            /* --max-body: request body bytes, 413 above, default 1 MiB */
    int max_pipeline;           /* --max-pipeline: requests in flight per connection, default 64 */
    double header_timeout_s;    /* --header-timeout-s: 408 when the header section is slower */
    double body_timeout_s;      /* --body-timeout-s: 408 when the body is slower */
    double keepalive_timeout_s; /* --keepalive-timeout-s: idle keep-alive closed after this */
    double write_timeout_s;     /* --write-timeout-s: a client that reads nothing is dropped */
    size_t stream_max_unsent;   /* --stream-max-unsent: a stream's backlog before -EAGAIN */
    double sse_heartbeat_s;     /* --sse-heartbeat-s: a comment line on idle event streams */
    int access_log;             /* --access-log: one stderr line per request */
} roost_http_config_t;

typedef struct {
    int max_connections;         /* --max-connections: WebSockets, 503 on upgrade above */
    const char *allowed_origins; /* --allowed-origins: Origins that may open WebSockets */
    size_t max_message;          /* --ws-max-message: bytes per message, close 1009 above */
    size_t max_backlog;          /* --ws-max-backlog: unsent bytes before close 1008 */
    int max_rate;                /* --ws-max-rate: inbound messages per second, 1008 above */
    double ping_s;               /* --ws-ping-s: ping a connection silent this long */
    double pong_timeout_s;       /* --ws-pong-timeout-s: then close it if nothing comes */
} roost_ws_config_t;

typedef struct {
    int history;   /* --history: messages kept per room for ?since= */
    int max_rooms; /* --max-rooms: rooms kept at once, a hard cap */
    double idle_s; /* --room-idle-s: a room empty (and unused) this long is freed */
} roost_rooms_config_t;

/* Scale-out through Redis (src/redis): off while url is empty. */
typedef struct {
    const char *url;       /* --redis: redis://[[user]:password@]host[:port][/db] */
    const char *node_id;   /* --node-id: this node's name in Redis, default host:port */
    double presence_ttl_s; /* --presence-ttl-s: a dead node's members leave after this */
    /* Shared limits, cache and idempotency keys (src/shared): */
    const char *fail; /* --redis-fail open|closed: when Redis does not answer in time */
    int wait_ms;      /* --redis-wait-ms: how long a request waits for Redis, default 50 */
} roost_redis_config_t;

typedef struct {
    int workers;            /* --job-workers: threads running queued jobs, default 8 */
    int prefetch;           /* --job-prefetch: jobs reserved ahead of the workers, 64 */
    int fsync;              /* --job-fsync: synchronous=FULL instead of NORMAL */
    double retry_backoff_s; /* --retry-backoff-s: first retry delay, doubled per attempt */
    double lease_s;         /* --job-lease-s: on PostgreSQL, a claimed job's lease (renewed while it
                             * runs); past it another node runs the job again. Default 30 */
} roost_jobs_config_t;

typedef struct {
    const char *dir;       /* --data-dir: folder for data files, default ./data */
    const char *database;  /* --database: sqlite:PATH or postgresql://...; default
                            * sqlite:<data-dir>/roost.db */
    int pool_size;         /* --db-pool-size: connections kept open, default 10 */
    int pool_overflow;     /* --db-pool-overflow: more under load, default 10 */
    double pool_timeout_s; /* --db-pool-timeout-s: wait for a connection, then 503 */
} roost_data_config_t;

typedef struct {
    roost_strlist_t upstream; /* --upstream 'NAME=URL [max_conns=N] ...', repeatable */
} roost_fetch_config_t;

/* Middleware that ship with the library, configured by flags (src/mw). */
typedef struct {
    /* Rate limits (mw/ratelimit.c): --rate-limit 'PATH_GLOB rate=N/s|m|h [burst=N]
     * [key=ip|header:NAME|api-key] [shadow] [name=NAME]', repeatable; at most
     * --rate-limit-max-keys clients remembered at once (least recently seen forgotten first). */
    roost_strlist_t rate_limit;
    int rate_limit_max_keys;
    /* CORS (mw/cors.c): off while cors_origins is empty. */
    const char *cors_origins; /* --cors-origins: comma-separated origins, or "*" */
    int cors_credentials;     /* --cors-credentials: Access-Control-Allow-Credentials */
    const char *cors_methods; /* --cors-methods: comma-separated, or "*" */
    const char *cors_headers; /* --cors-headers: request headers allowed, or "*" */
    const char *cors_expose;  /* --cors-expose-headers: response headers scripts may read */
    int cors_max_age;         /* --cors-max-age: seconds a preflight may be cached, 3600 */
} roost_mw_config_t;

typedef struct {
    size_t max_bytes; /* --cache-max-bytes: the response cache's bound (LRU), default 64 MiB */
} roost_cache_config_t;

typedef struct {
    roost_strlist_t mounts; /* --static 'URL_PREFIX=DIR', repeatable */
    int max_open;           /* --static-max-open: files open at once for answers, 503 above */
} roost_files_config_t;
/* Observability (src/obs): per-route metrics, traces, the access and slow logs. */
typedef struct {
    int metrics;               /* --metrics: per-route series on /metrics, default on */
    int tracing;               /* --tracing: W3C trace context on every request, default on */
    const char *log_format;    /* --log-format: "common" or "json" for --access-log */
    int slow_ms;               /* --slow-ms: log requests slower than this, 0 = off */
    size_t log_buffer;         /* --log-buffer: bytes of log lines waiting for the writer */
    const char *otlp_endpoint; /* --otlp-endpoint: OTLP/HTTP JSON traces URL, "" = off */
} roost_obs_config_t;

typedef struct {
    int on;             /* --gzip on|off: the gzip middleware on every route, default on */
    size_t min_bytes;   /* --gzip-min-bytes: smaller whole bodies go plain, default 1000 */
    int level;          /* --gzip-level: 1 (fastest) .. 9 (smallest), default 1 */
    size_t cache_bytes; /* --gzip-cache-bytes: compressed shared bodies kept, default 16 MiB */
} roost_gzip_config_t;

typedef struct {
    roost_net_config_t net;
    roost_http_config_t http;
    roost_ws_config_t ws;
    roost_fetch_config_t fetch;
    roost_rooms_config_t rooms;
    roost_jobs_config_t jobs;
    roost_data_config_t data;
    roost_cache_config_t cache;
    roost_mw_config_t mw;
    roost_files_config_t files;
    roost_obs_config_t obs;
    roost_gzip_config_t gzip;
    roost_tls_config_t tls;
    roost_auth_config_t auth;
    roost_redis_config_t redis;
} roost_config_t;

/* The library's version, "X.Y.Z" (the VERSION file of its source tree); `--version` prints it
 * as "roost X.Y.Z". */
const char *roost_version(void);

/* Fills cfg with the defaults above. */
void roost_config_init(roost_config_t *cfg);

/* Applies ROOST_* environment variables, then argv flags (`--name value` or `--name=value`).
 * Returns 0, 1 when --help was printed (the caller exits 0), or -EINVAL after printing the
 * reason to stderr. The strings in cfg point into argv/environ. */
int roost_config_parse(roost_config_t *cfg, int argc, char **argv);

/* Flags of the embedder's own, parsed by the same parser (environment twins, --help with their
 * defaults, the same errors). value points at the embedder's variable, which holds the default
 * when parsing starts: const char * (STR), int (INT, BOOL), size_t (SIZE), double (SECS),
 * roost_strlist_t (LIST, repeatable). min and max bound numbers. */
typedef enum {
    ROOST_FLAG_STR,
    ROOST_FLAG_INT,
    ROOST_FLAG_SIZE,
    ROOST_FLAG_SECS,
    ROOST_FLAG_BOOL,
    ROOST_FLAG_LIST,
} roost_flag_kind_t;
typedef struct {
    const char *name; /* without the leading "--" */
    roost_flag_kind_t kind;
    void *value;
    double min, max;
    const char *help;
} roost_flag_t;
/* roost_config_parse with extra flags, listed in --help under `section` after the library's. */
int roost_config_parse_with(roost_config_t *cfg, const char *section, const roost_flag_t *extra,
                            size_t nextra, int argc, char **argv);

/* ---- server ---- */

/* Handler flags. */
enum {
    ROOST_LOOP = 0,     /* runs on the connection's loop thread: must not block */
    ROOST_BLOCKING = 1, /* runs on a worker thread: may block */
};

typedef void (*roost_handler_fn)(roost_req_t *req, void *ud);

/* Copies cfg. Returns NULL on bad configuration or out of memory. */
roost_server_t *roost_server_new(const roost_config_t *cfg);
const roost_config_t *roost_server_config(const roost_server_t *srv);

/* ---- schemas: one description for query strings, path parameters and JSON bodies ----
 * Like a pydantic model behind a FastAPI route: a route declares its schemas and the core checks
 * them before the handler runs, answering every error at once in one 422 (roost_error_item's
 * shape). Query and path values are strings, coerced to the field's type as FastAPI does
 * ("?limit=abc" is int_parsing, "?flag=yes" is true); JSON values must have their type, except
 * that an int field takes 5.0 (not 5.5) and a number field an int. Schemas are read, never
 * copied: keep them static. */
typedef enum {
    ROOST_T_ANY, /* anything (also for a value a handler checks itself) */
    ROOST_T_STR,
    ROOST_T_NUM, /* int or real */
    ROOST_T_INT,
    ROOST_T_BOOL,
    ROOST_T_OBJ,    /* a JSON object, checked against .object when not NULL */
    ROOST_T_ARR,    /* a JSON array, each item checked against .items when not NULL */
    ROOST_T_CURSOR, /* a page cursor of tag .cursor_tag: roost_req_query_int gives its id */
} roost_type_t;

typedef struct roost_schema roost_schema_t;
typedef struct roost_field roost_field_t;
struct roost_field {
    const char *name;
    roost_type_t type;
    unsigned required : 1;
    unsigned nullable : 1; /* null is a value (pydantic's Optional) */
    unsigned has_gt : 1, has_ge : 1, has_lt : 1, has_le : 1;
    unsigned has_default : 1;       /* def holds the value of an absent field */
    long min_len, max_len;          /* characters of a string, items of an array; when > 0 */
    double gt, ge, lt, le;          /* numbers, when has_* */
    const char *const *enum_values; /* a string field: one of these (NULL-terminated) */
    union {
        long long i; /* ROOST_T_INT, ROOST_T_BOOL */
        double n;    /* ROOST_T_NUM */
        const char *s;
    } def;
    const roost_schema_t *object; /* ROOST_T_OBJ: its fields */
    const roost_field_t *items;   /* ROOST_T_ARR: each item (its name is not used) */
    char cursor_tag;              /* ROOST_T_CURSOR */
    /* After the type and bounds passed (pydantic's AfterValidator): appends error items at loc
     * (roost_error_item) when v does not fit, e.g. an email address. May be NULL. */
    void (*check)(const json_t *v, const json_t *loc, json_t *errors);
    const char *description; /* for the OpenAPI document */
};

struct roost_schema {
    const roost_field_t *fields;
    size_t nfields;
    /* An unknown member is extra_forbidden (pydantic's extra="forbid"); else it is kept. */
    unsigned forbid_extra : 1;
};

/* The query parameters of a page of a listing: ?cursor= of tag `tag` and ?limit= in [1, max],
 * default def. Used as the first two fields of a route's query schema; see roost_page. */
#define ROOST_PAGE_FIELDS(tag, def_limit, max_limit)                                               \
    {.name = "cursor", .type = ROOST_T_CURSOR, .cursor_tag = (tag), .nullable = 1},                \
    {                                                                                              \
        .name = "limit", .type = ROOST_T_INT, .has_default = 1, .def.i = (def_limit), .has_ge = 1, \
        .ge = 1, .has_le = 1, .le = (max_limit)                                                    \
    }

/* Checks the JSON value `v` (NULL: absent) against the object schema, appending one error item
 * per problem to errors with loc = prefix + the field's path (prefix is borrowed, e.g.
 * ["body", "payload"]). Returns a new object with the coerced values and defaults (the caller
 * owns it), or NULL when errors were appended. Any thread. */
json_t *roost_schema_check(const roost_schema_t *schema, const json_t *v, const json_t *prefix,
                           json_t *errors);
/* The same for one JSON value against one field, at loc (borrowed): the checked value (new
 * reference), or NULL when errors were appended. */
json_t *roost_schema_check_value(const roost_field_t *f, const json_t *v, const json_t *loc,
                                 json_t *errors);

/* Parses the body as JSON and checks it against `schema` (NULL: any object), for a handler that
 * takes no body schema on its route. Returns the validated object (the caller owns it), or NULL
 * after answering 422 with every error found: the handler just returns. */
json_t *roost_req_json(roost_req_t *req, const roost_schema_t *schema);

/* ---- routes ---- */
/* Registers a route before roost_run: the short form of roost_route_ex (no schemas). The
 * template is literal segments and `{name}` or `{name:int}` / `{name:str}` parameters, each a
 * whole segment. A typed parameter that does not parse is answered 422 (int_parsing) before the
 * handler runs. Returns -EEXIST for a duplicate method + template, -EINVAL for a malformed
 * template. */
int roost_route(roost_server_t *srv, const char *method, const char *path_template,
                roost_handler_fn fn, void *ud, unsigned flags);

/* What a route is, in full: roost_route_ex copies this struct but not what it points to (keep the
 * strings, schemas and middleware static). Everything is kept on the route table, from which
 * the OpenAPI document is written. The handler of a route with schemas runs only when they all
 * pass, and reads the values with roost_req_query_int/num/str and roost_req_json_body. */
typedef struct roost_middleware roost_middleware_t;
typedef struct {
    const char *method, *path; /* path: the template, as for roost_route */
    roost_handler_fn handler;
    void *ud;
    unsigned flags;
    const char *summary, *description;
    const char *const *tags; /* NULL-terminated, or NULL */
    const roost_schema_t *query, *path_params, *body;
    const roost_schema_t *response;              /* not checked: documents the 2xx answer */
    int status;                                  /* the success status for the document; 0: 200 */
    const roost_middleware_t *const *middleware; /* this route's, NULL-terminated, or NULL */
} roost_route_opts_t;

/* Registers a route with all its options before roost_run; errors as roost_route. */
int roost_route_ex(roost_server_t *srv, const roost_route_opts_t *opts);

/* ---- the route table as a document (src/http/openapi.c) ---- */
/* The OpenAPI 3.1 document of every route (paths, typed parameters, the schemas, 422 and 401
 * answers, tags, summaries, the API-key schemes on the routes roost_require_api_key guards).
 * Made on the first call, which must come after the last route was registered (a request
 * once roost_run runs), and kept: the text is the server's, valid until roost_server_free;
 * *len (may be NULL) gets its length. NULL on out of memory. Any thread. */
const char *roost_openapi_json(roost_server_t *srv, size_t *len);
/* Every route, "METHOD /template\n" in registration order (the caller frees). NULL: no
 * memory. Any thread once roost_run runs. */
char *roost_routes_text(roost_server_t *srv);

/* ---- man page ---- */
/* A server's manual page (roff, section 1) written from what the server already knows, so that
 * it cannot drift from it: OPTIONS and ENVIRONMENT from the flag table that makes --help (the
 * library's and the embedder's extra flags, each with its argument, default and ROOST_* twin),
 * ENDPOINTS from the registered routes and their summaries. The page's own words come from the
 * caller; text is plain (roff's special characters are escaped here). */
typedef struct {
    const char *title; /* "SIGNALS", "FILES", "SEE ALSO" */
    /* Paragraphs separated by a blank line; a paragraph "TERM\tTEXT" is an indented entry
     * headed by TERM in bold. */
    const char *text;
} roost_man_section_t;
typedef struct {
    const char *name, *version; /* "roost", "1.0.0": the header and footer */
    const char *summary;        /* the NAME line's words after "name - " */
    const char *description;    /* DESCRIPTION, paragraphs as in roost_man_section_t */
    const char *section;        /* the extra flags' section, as for roost_config_parse_with */
    const roost_flag_t *extra;  /* their defaults: the values their variables hold now */
    size_t nextra;
    const roost_man_section_t *more; /* after ENDPOINTS, ended by a NULL title; may be NULL */
} roost_man_t;
/* Writes the page to out, the routes of srv (registered, not running; NULL: no ENDPOINTS).
 * Returns 0, or -EIO when out could not be written. */
int roost_man_write(FILE *out, const roost_man_t *page, roost_server_t *srv);

/* Middleware. A request passes, in this order: every on_request hook (the first that answers, a
 * 401, 429 or 304, or that parks the request with roost_req_wait for a roost_req_resume to
 * answer, ends the phase: later on_request hooks and the handler do not run), the
 * handler, every on_headers hook (may change the status and add headers before they are
 * written), every on_body filter, and, after the response's last byte went to the connection
 * (or the client left), every on_done hook. The order of the list is the order of every phase:
 * the global middleware in roost_use order, then the route's own list; a body filter gets what
 * the handler wrote (or what the filter before it emitted) and emits to the one after it.
 *
 * ctx is the middleware's per-request context: ctx_size bytes, zeroed, from the request's
 * arena (NULL when ctx_size is 0). on_request and on_done run on the loop; on_headers and
 * on_body run on the thread that answers (a worker for a ROOST_BLOCKING handler). */
typedef struct roost_body_next roost_body_next_t;
struct roost_middleware {
    const char *name;
    size_t ctx_size;
    void (*on_request)(roost_req_t *req, void *ctx, void *ud);
    void (*on_headers)(roost_req_t *req, void *ctx, void *ud);
    /* A filter over the body as chunks: p[0..n) is the next piece, last says it is the final one
     * (n may be 0). It emits zero or more pieces with roost_body_emit(next, ...), the last of
     * them with last = 1 once it got last. A whole body comes as one chunk with last = 1; a
     * stream as one chunk per roost_stream_write and a final empty one. Returns 0 or -errno. */
    int (*on_body)(roost_req_t *req, const void *p, size_t n, int last, roost_body_next_t *next,
                   void *ctx, void *ud);
    void (*on_done)(roost_req_t *req, void *ctx, void *ud);
    void *ud;
};
/* From an on_body filter: passes a piece downstream (the next filter, or the connection). */
int roost_body_emit(roost_body_next_t *next, const void *p, size_t n, int last);
/* From on_headers: this middleware's on_body lets this answer through unchanged, so the chain
 * skips it (a whole body that no filter wants is then not walked at all, as gzip does for a
 * small or refused answer). */
void roost_body_pass(roost_req_t *req);
/* Copies *mw; runs on every request, after those registered before it. Before roost_run. */
int roost_use(roost_server_t *srv, const roost_middleware_t *mw);
/* Middleware that ship with the library (src/mw): X-Process-Time on every response, and one
 * access-log line per request on stderr. */
extern const roost_middleware_t roost_mw_timing;
extern const roost_middleware_t roost_mw_access_log;
/* The access log (--access-log, --log-format common|json) and the slow-request log
 * (--slow-ms): one middleware writing through a buffered writer thread; does nothing when both
 * are off. Register it early, so that its times include the later middleware. 0 or -errno. */
int roost_use_logs(roost_server_t *srv);

/* The response cache (src/mw/cache.c), one per server, shared by every loop, bounded by
 * --cache-max-bytes (least recently used out first). A route opts in with the middleware
 * roost_mw_cache gives. Only GET answers are stored, 2xx only, whole (not streams), with their
 * status, Content-Type and body (not the handler's other headers). The key is the method, the
 * path, the query and the values of the request headers named in vary. Every answer says
 * X-Cache: HIT, MISS or STALE, Cache-Control: max-age=<ttl> and a strong ETag from the body;
 * If-None-Match answers 304 on every 2xx GET of the route, cached or not.
 * Concurrent misses of one key make one fill: the others wait (no polling) and get its answer,
 * or, when it is an error (not cached), that same error, unless a stale answer may stand in. */
typedef struct {
    double ttl_s; /* fresh this long after the fill (HIT) */
    /* stale-while-revalidate: this long after ttl_s a stale answer still goes out (STALE) while
     * one request refills (that one waits for the handler, like nginx's proxy_cache_use_stale
     * updating); 0: none */
    double swr_s;
    /* stale-if-error: this long after ttl_s a stale answer replaces a 5xx of the refill */
    double sie_s;
    const char *vary; /* "Accept-Language, X-Tenant": headers the answer depends on, or NULL */
} roost_cache_opts_t;
/* Before roost_run: a middleware for a route's list (roost_route_opts_t.middleware) with these
 * options (copied). The server keeps it; NULL on ENOMEM or an unusable option. */
const roost_middleware_t *roost_mw_cache(roost_server_t *srv, const roost_cache_opts_t *opts);
/* From any thread (a handler that changed what a path answers): drops every stored answer of
 * path (a clean path, e.g. "/users/7"; every query and variant of it). Returns how many. */
int roost_cache_evict(roost_server_t *srv, const char *path);
/* Rate limits (GCRA: one stored time per client and policy). Before roost_run, on the main
 * thread. A policy is '[PATH_GLOB] rate=N/s|m|h [burst=N] [key=ip|header:NAME|api-key] [shadow]
 * [name=NAME]': N requests per second, minute or hour, up to `burst` at once (default N); the
 * client is its address, a header's value (its address when the header is absent) or its API key
 * (Authorization: Bearer or X-API-Key; else its address). Over the limit: 429 with Retry-After;
 * every answer it covers carries X-RateLimit-Limit/Remaining/Reset and the IETF RateLimit-Policy
 * and RateLimit fields. `shadow` counts what it would refuse and refuses nothing (and adds no
 * fields). Counted in roost_rate_limit_total{policy,result}. Clients are counted in one table per
 * server shared by every loop (striped locks), so a client gets its limit once, whatever loop
 * its connections are on. Returns a middleware for a route's list (the glob, when given, still
 * filters), owned by the server; NULL after logging why the spec does not parse. */
const roost_middleware_t *roost_rate_limit(roost_server_t *srv, const char *spec);
/* Adds the --rate-limit policies of the configuration as one global middleware (roost_use).
 * -EINVAL after logging a spec that does not parse; 0 when there are none. */
int roost_rate_limit_init(roost_server_t *srv);
/* CORS from the --cors-* flags as a global middleware (roost_use): preflights (OPTIONS with
 * Origin and Access-Control-Request-Method, on any path that has routes) answered 204 or 403,
 * the Access-Control-Allow-* fields on answers to listed origins, Vary: Origin. 0 when
 * --cors-origins is empty (off); -EINVAL after logging a configuration browsers would refuse
 * ('*' with credentials). */
int roost_cors_init(roost_server_t *srv);
/* ---- static files (src/mw/static.c) ----
 * Before roost_run: GET and HEAD url_prefix/PATH answer the file dir/PATH, written with sendfile
 * (never read into memory), with ETag (size and mtime, like nginx) and Last-Modified, 304 for
 * If-None-Match / If-Modified-Since, a single Range (206, or 416), Content-Type from
 * /etc/mime.types. Nothing outside dir is ever served (symlinks are resolved beneath dir); a
 * directory is its index.html or 404. Returns -EINVAL for a prefix that does not start with '/'
 * or a dir that is not a directory, -EEXIST when the prefix is routed already. */
int roost_static(roost_server_t *srv, const char *url_prefix, const char *dir);
/* Before roost_run: roost_static for each --static 'URL_PREFIX=DIR' (-EINVAL, logged, for one
 * that is malformed). */
int roost_static_init(roost_server_t *srv);
/* gzip on every answer the client accepts it for (src/mw/gzip.c), with cfg.gzip's level and
 * minimum: whole bodies of at least min_bytes, streams of a compressible type always (a sync
 * flush per write). Register it after the other middleware, so that it compresses what they
 * emit. Before roost_run; -ENOMEM. */
int roost_use_gzip(roost_server_t *srv);

/* Security (src/mw/auth.c, ws_token.c; docs/security.md). With --api-key or --api-keys-file,
 * requests for the listed routes (as roost_req_route names them: "POST /broadcast") need
 * Authorization: Bearer KEY or X-API-Key: KEY, else 401 {"detail":"Not authenticated"} with
 * WWW-Authenticate: Bearer. routes is NULL-terminated and static. Without a key configured it
 * does nothing. Before roost_run; 0, or -errno (the keys file cannot be read). */
int roost_require_api_key(roost_server_t *srv, const char *const *routes);
/* With --ws-token-secret: 0 when the request's ?token= is an HS256 JWT signed with the secret
 * whose sub is user, exp not passed and rooms claim (if any) lists room; else answers 401 (no
 * token, bad signature, not HS256, expired) or 403 (another user or room) and returns -EACCES.
 * Without a secret: 0. On the loop, in a handler before roost_ws_upgrade. */
int roost_ws_token_check(roost_req_t *req, const char *room, const char *user);

/* Binds, starts the loops and the pool, and runs until SIGTERM or SIGINT; then stops
 * accepting, lets in-flight requests finish within drain_s, and returns 0. */
int roost_run(roost_server_t *srv);
void roost_server_free(roost_server_t *srv);

/* ---- the request, valid until its response is sent ---- */
roost_str_t roost_req_method(const roost_req_t *req);
roost_str_t roost_req_path(const roost_req_t *req);   /* decoded, dot segments removed */
roost_str_t roost_req_target(const roost_req_t *req); /* as sent */
roost_str_t roost_req_header(const roost_req_t *req, const char *name); /* case-insensitive */
roost_str_t roost_req_param(const roost_req_t *req, const char *name);  /* decoded, NUL-ended */
long long roost_req_param_int(const roost_req_t *req, const char *name);
roost_str_t roost_req_query(roost_req_t *req, const char *name); /* decoded, NUL-ended */
/* The values the route's schemas validated before the handler ran, coerced, with defaults
 * (absent and without default: 0, NULL). Not re-parsed: the strings live as long as req. */
long long roost_req_query_int(roost_req_t *req, const char *name);
double roost_req_query_num(roost_req_t *req, const char *name);
const char *roost_req_query_str(roost_req_t *req, const char *name);
/* The body as the route's body schema validated it (defaults filled in), borrowed: valid until
 * the response is sent. NULL when the route has no body schema. */
json_t *roost_req_json_body(roost_req_t *req);
/* One page of a listing whose query schema has ROOST_PAGE_FIELDS: rows holds up to limit + 1
 * items in the listing's order (stolen; the one beyond the page tells that more exist). Returns
 * {"items":[first limit rows],"next_cursor":cursor of tag for the last item's integer id_key, or
 * null,"has_more":bool}. Any thread. */
json_t *roost_page(json_t *rows, long long limit, char tag, const char *id_key);
/* Cursors for pages of rows: opaque (base64url, no escaping needed in a query string), tagged
 * per listing. Decoding gives the id, or -1 for anything that encode did not make with tag. */
#define ROOST_CURSOR_MAX 64
void roost_cursor_encode(char tag, long long id, char out[ROOST_CURSOR_MAX]);
long long roost_cursor_decode(char tag, roost_str_t s);
roost_str_t roost_req_body(const roost_req_t *req);
roost_server_t *roost_req_server(const roost_req_t *req);
/* On the loop: the client's address as text ("127.0.0.1", "::1"; an IPv4-mapped IPv6 address as
 * IPv4) into out (NUL-ended). -ENOTCONN (out "") when the connection has none. */
int roost_req_client_addr(const roost_req_t *req, char *out, size_t size);
const char *roost_req_route(const roost_req_t *req); /* "GET /users/{id}", or NULL */
/* ---- observability: W3C trace context (--tracing, on by default) ---- */
const char *roost_req_trace_id(const roost_req_t *req);       /* 32 hex digits, or NULL */
const char *roost_req_span_id(const roost_req_t *req);        /* this request's span */
const char *roost_req_parent_span_id(const roost_req_t *req); /* the caller's, or NULL */
/* "00-<trace>-<span>-<flags>" naming this request's span as the parent; -ENOENT untraced. */
int roost_req_traceparent(const roost_req_t *req, char out[56]);
/* A traceparent header value: 0 and its parts, or -EINVAL. */
int roost_traceparent_parse(const char *v, size_t len, char trace_id[33], char parent[17],
                            uint8_t *flags);
void roost_trace_new_id(char out[33]);
void roost_span_new_id(char out[17]);
uint64_t roost_res_bytes(const roost_req_t *req); /* response body bytes sent so far */
/* The trace this thread works for (set around handlers, resumes and job runs; NULL, NULL
 * clears it): roost_log lines end " trace_id=...", jobs submitted and room messages published
 * here carry it. The pointers must outlive the work. */
void roost_trace_enter(const char *trace_id, const char *span_id);
const char *roost_trace_current(void);      /* 32 hex digits, or NULL */
const char *roost_trace_current_span(void); /* the span to parent under, or NULL */
/* The current trace began in this request (no traceparent came): logs and jobs carry it, room
 * frames do not (an id no subscriber knows). Cleared by the next roost_trace_enter. */
void roost_trace_mark_local(void);
int roost_trace_is_shared(void); /* a trace is current and not marked local */

/* A finished span for the OTLP exporter (--otlp-endpoint). roost_span_emit copies it into a
 * bounded queue and returns: a background thread sends batches as OTLP/HTTP JSON; a full queue
 * drops the span and counts it (roost_otlp_spans_dropped_total). A no-op without an exporter. */
enum { ROOST_SPAN_INTERNAL = 1, ROOST_SPAN_SERVER = 2, ROOST_SPAN_CLIENT = 3 };
typedef struct {
    const char *name;
    const char *trace_id, *span_id, *parent_span_id; /* hex; parent NULL or "" for a root */
    int kind;
    uint64_t start_ns, end_ns; /* unix nanoseconds */
    int error;
    struct {
        const char *key, *value;
    } attrs[4]; /* string attributes; key NULL ends them */
} roost_span_t;
void roost_span_emit(const roost_span_t *span);
int roost_span_enabled(void); /* an exporter runs: worth timing a span */
/* Starts the process's exporter thread (once; the first URL wins). 0 or -errno. */
int roost_otlp_start(const char *url);
void roost_otlp_stop(void);
/* Memory that lives as long as the request. */
void *roost_req_alloc(roost_req_t *req, size_t size);
/* The same, zeroed; NULL after answering 500 "Out of memory" (the handler just returns). */
void *roost_req_new(roost_req_t *req, size_t size);

/* ---- responses: exactly one per request ---- */

/* Adds a response header (copied). Call before the respond functions, or from `after`. */
void roost_res_header(roost_req_t *req, const char *name, const char *value);
/* Sends status + body (copied) with the given Content-Type (NULL: none). */
void roost_respond(roost_req_t *req, int status, const char *content_type, const void *body,
                   size_t len);
/* Sends `body` serialized as JSON, and drops the caller's reference. */
void roost_respond_json(roost_req_t *req, int status, json_t *body);
/* A body made once and sent many times with no copy (a static file's twin): an immutable,
 * reference-counted copy of data; NULL on ENOMEM. Any thread. Filters may keep what they make
 * of it while it lives (gzip keeps its compressed bytes: --gzip-cache-bytes). */
typedef struct rbuf roost_shared_body_t;
roost_shared_body_t *roost_shared_body_new(const void *data, size_t len);
void roost_shared_body_unref(roost_shared_body_t *b); /* drops the caller's reference; NULL ok */
/* Sends b, not copied: the answer holds its own reference until written. */
void roost_respond_shared(roost_req_t *req, int status, const char *content_type,
                          roost_shared_body_t *b);
/* Sends {"detail": detail}. */
void roost_respond_error(roost_req_t *req, int status, const char *detail);
/* Sends FastAPI's 422 shape: {"detail":[errors...]}; steals `errors` (a JSON array). */
void roost_respond_422(roost_req_t *req, json_t *errors);
/* The response's status (0 before any answer); from on_headers, set_status changes it. */
int roost_res_status(const roost_req_t *req);
void roost_res_set_status(roost_req_t *req, int status);
/* Nanoseconds since the request's first byte arrived. */
uint64_t roost_req_elapsed_ns(const roost_req_t *req);
/* One validation error item in pydantic v2's shape, as FastAPI answers it:
 * {"type":type,"loc":loc,"msg":msg,"input":input,"ctx":ctx}. Steals loc (a JSON array, see
 * roost_loc), input (NULL: null) and ctx (NULL: no "ctx" member). msg NULL: pydantic's message
 * for type, worded from ctx ("less_than_equal" + {"le":100}: "Input should be less than or equal
 * to 100"); a type pydantic does not know needs its msg. Returns a new object. */
json_t *roost_error_item(const char *type, json_t *loc, json_t *input, json_t *ctx,
                         const char *msg);
/* A new loc array: [where], or [where, field] when field is not NULL. */
json_t *roost_loc(const char *where, const char *field);

/* ---- handlers that answer later ---- */

/* Calls fn(req, arg) on the request's loop after ms milliseconds. A ROOST_LOOP handler that
 * defers does not respond now; fn responds. If the client goes away first, fn still runs (so
 * it can free arg) and its response is dropped. */
typedef void (*roost_timer_fn)(roost_req_t *req, void *arg);
void roost_defer(roost_req_t *req, uint64_t ms, roost_timer_fn fn, void *arg);

/* ---- streamed responses (chunked): server-sent events, long downloads ----
 * On the loop, or from a blocking (ROOST_BLOCKING) handler on its worker: there each call is
 * carried to the loop and waits for it; roost_stream_write then never says -EAGAIN but blocks
 * while the client is behind (backpressure), and says -EPIPE once it left. A blocking handler
 * that returns with its stream open ends it. roost_stream_on_drain is for loop handlers. */
typedef void (*roost_resume_fn)(roost_req_t *req, void *arg); /* see roost_req_resume */
/* Sends the head now (Transfer-Encoding: chunked; HTTP/1.0 gets a close-delimited body). For
 * HEAD the stream is then over: writes return -EINVAL and end/abort do nothing. */
int roost_stream_begin(roost_req_t *req, int status, const char *content_type);
/* Copies data into the stream. Backpressure: -EAGAIN, taking nothing, while more than
 * --stream-max-unsent bytes wait to be sent (the client reads slower than the producer makes);
 * then call roost_stream_on_drain and write again from its callback. -EPIPE once the client
 * left, -EINVAL when the request does not stream. */
int roost_stream_write(roost_req_t *req, const void *data, size_t len);
/* Runs fn(req, arg) on the loop once everything queued is written, or once the client left
 * (roost_req_gone(req) is then true: free arg, end nothing). The request stays valid until fn
 * has run. One at a time (-EBUSY); -EINVAL when not streaming. Loop. */
int roost_stream_on_drain(roost_req_t *req, roost_resume_fn fn, void *arg);
void roost_stream_end(roost_req_t *req);
/* Ends a stream that cannot be finished (a producer's error): the connection is closed
 * without the last chunk, so the client sees a truncated body, not a complete one. */
void roost_stream_abort(roost_req_t *req);

/* Server-sent events on a stream. roost_sse_start begins it: 200 text/event-stream,
 * Cache-Control: no-cache, "retry: retry_ms" when > 0 (the client's reconnection delay), and a
 * comment line every heartbeat_s seconds when > 0 while the stream is open (proxies keep it;
 * clients ignore it). roost_sse_event writes one whole event: "id:" and "event:" when not NULL,
 * one "data:" line per line of data; returns as roost_stream_write (-EAGAIN: nothing was
 * written). End with roost_stream_end. Loop or a blocking handler's worker. */
int roost_sse_start(roost_req_t *req, long retry_ms, double heartbeat_s);
int roost_sse_event(roost_req_t *req, const char *id, const char *event, const char *data);
/* The Last-Event-ID a reconnecting client sent (the id of the last event it got), or an empty
 * string: where the handler resumes. */
roost_str_t roost_sse_last_id(const roost_req_t *req);

/* ---- answering from elsewhere ---- */
/* A handler that answers later, from another thread or callback, first calls roost_req_wait on
 * the loop (before anything that may resume it can run): req then stays valid, also if the
 * client leaves, until a roost_req_resume has run for each roost_req_wait. While the request
 * waits already, roost_req_wait may be called from any thread (one more resume to come).
 * Returns -EINVAL on a worker thread (a blocking handler just answers). */
int roost_req_wait(roost_req_t *req);
/* From any thread, on a waiting request: runs fn(req, arg) on the request's loop, in the order
 * the calls were made, then ends one wait. When the last wait ends and nothing was answered,
 * the answer is 500 (an open stream is ended). fn may call roost_req_wait to wait again. */
void roost_req_resume(roost_req_t *req, roost_resume_fn fn, void *arg);
/* From the resume fn of a request that an on_request hook parked (roost_req_wait): goes on as
 * if the hook had let it pass: the later on_request hooks, the route's checks, the handler.
 * Nothing when the request was answered meanwhile. Loop. (A hook that asks a remote store, as
 * the shared rate limits do, parks the request then continues it.) */
void roost_req_continue(roost_req_t *req);
/* On the loop: the client has gone, anything sent now is dropped. */
int roost_req_gone(const roost_req_t *req);

/* ---- upstream calls on the loop (libcurl multi driven by libuv) ----
 * A call goes to a named upstream (--upstream 'NAME=URL ...') and a path, or, for an embedder's
 * own code, to a full URL (never put a URL from a request there: that is SSRF). Each upstream has
 * a bounded pool of kept-alive connections per loop, a bounded wait queue, timeouts, retries for
 * idempotent calls and a circuit breaker; a call that finds pool and queue full fails at once
 * with ROOST_FETCH_POOL_FULL instead of waiting without limit. */
typedef enum {
    ROOST_FETCH_OK = 0,       /* a response arrived (any status) */
    ROOST_FETCH_CONNECT,      /* could not connect (refused, DNS, unreachable) */
    ROOST_FETCH_TIMEOUT,      /* connect, first byte or total time passed */
    ROOST_FETCH_TOO_LARGE,    /* the response passed max_response */
    ROOST_FETCH_POOL_FULL,    /* every connection busy and the wait queue full */
    ROOST_FETCH_CIRCUIT_OPEN, /* the upstream failed too often lately: not tried */
    ROOST_FETCH_RESET,        /* the connection broke during the exchange */
    ROOST_FETCH_CANCELLED,    /* the client went away, or the server is stopping */
    ROOST_FETCH_INVALID,      /* unknown upstream, bad URL or options */
} roost_fetch_error_t;

typedef struct {
    const char *method;         /* NULL: GET */
    const char *upstream;       /* a configured upstream's name, or NULL (then url is whole) */
    const char *url;            /* with upstream: the path and query appended to its URL */
    const char *const *headers; /* "Name: value" lines, NULL-terminated, or NULL */
    const void *body;           /* request body, copied at the start of the call */
    size_t body_len;
    long connect_timeout_ms;    /* 0: the upstream's (default 2000) */
    long first_byte_timeout_ms; /* 0: none beyond the total */
    long timeout_ms;            /* total; 0: the upstream's (default 10000) */
    size_t max_response;        /* body bytes; 0: 8 MiB */
    const char *traceparent;    /* W3C trace context to pass on, or NULL */
} roost_fetch_opts_t;

typedef struct {
    roost_fetch_error_t error;
    const char *error_text; /* what went wrong, for a log line or a detail */
    int status;             /* the upstream's HTTP status, when error is ROOST_FETCH_OK */
    roost_str_t content_type;
    roost_str_t headers; /* the response's header lines, as received */
    roost_str_t body;    /* valid during the callback (a shared buffer: not copied) */
    int attempts;
    double seconds;
} roost_fetch_result_t;

const char *roost_fetch_error_name(roost_fetch_error_t e); /* "connect", "timeout", ... */
/* The HTTP status a handler answers for a failed call: 502, 504, 503 (pool full, circuit
 * open), 404 (unknown upstream). */
int roost_fetch_error_status(roost_fetch_error_t e);

/* From a ROOST_LOOP handler: starts the call and returns at once; done(req, res, arg) runs on
 * the request's loop when it ends and answers (500 if it does not). If the client goes away
 * first, the call is cancelled and done still runs (to free arg), its answer dropped.
 * From a ROOST_BLOCKING handler: waits for the result (off the loop) and calls done on the
 * worker. Returns 0, or < 0 when nothing was started (done is not called). */
typedef void (*roost_fetch_done_fn)(roost_req_t *req, const roost_fetch_result_t *res, void *arg);
int roost_fetch(roost_req_t *req, const roost_fetch_opts_t *opts, roost_fetch_done_fn done,
                void *arg);
/* Several calls at once, at most `concurrency` running (0: all), each ending in a result or an
 * error (asyncio.gather(return_exceptions=True)); done runs once, when all are done, with the
 * results in the order of calls. Same threads and rules as roost_fetch. */
typedef void (*roost_fetch_all_fn)(roost_req_t *req, const roost_fetch_result_t *results, size_t n,
                                   void *arg);
int roost_fetch_all(roost_req_t *req, const roost_fetch_opts_t *calls, size_t n,
                    unsigned concurrency, roost_fetch_all_fn done, void *arg);
/* From any thread while the server runs, for work that has no request (a job): runs the call on
 * one of the loops (in turn) and then done(res, arg) on that loop. Returns 0, or < 0 when
 * nothing was started (done is not called): -EAGAIN when the server is not running. */
typedef void (*roost_fetch_cb)(const roost_fetch_result_t *res, void *arg);
int roost_fetch_detached(roost_server_t *srv, const roost_fetch_opts_t *opts, roost_fetch_cb done,
                         void *arg);
/* Before roost_run, on the main thread: reads --upstream (-EINVAL, logged, when one is
 * malformed) and readies every loop for upstream calls. Without it roost_fetch fails. */
int roost_fetch_init(roost_server_t *srv);
/* Names of the configured upstreams, in configuration order (NULL past the last). */
const char *roost_fetch_upstream(roost_server_t *srv, int i);

/* ---- background tasks: after the response, on the worker pool, in order ---- */
/* fn returns 0, or a negative code for a failure (logged and counted; the response is gone
 * already). free_fn(arg), when not NULL, runs after fn (also when fn never runs). */
typedef int (*roost_task_fn)(void *arg);
void roost_after_response(roost_req_t *req, roost_task_fn fn, void *arg, void (*free_fn)(void *));

/* ---- work off the loop for a ROOST_LOOP handler (src/http/offload.c, readfile.c) ---- */
/* On the loop: runs fn(arg) on a worker (a CPU step), then done(req, arg) on the request's loop,
 * which answers (FastAPI's run_in_threadpool). Returns 0; -EBUSY after answering 503 when the
 * worker queue is full, -ENOMEM or -EINVAL when nothing was started (then done is not called
 * and the caller frees arg; after -EBUSY it must not answer). */
int roost_req_offload(roost_req_t *req, roost_task_fn fn, roost_resume_fn done, void *arg);
/* On the loop: reads the whole file at path (at most max bytes, else -EFBIG) with libuv's file
 * API, never blocking the loop, then done(req, rc, data, len, arg) on the loop: rc 0 or -errno
 * (-ENOENT when absent); data is NUL-ended and valid during the call. Returns 0, or < 0 when
 * nothing was started (done is not called). */
typedef void (*roost_file_fn)(roost_req_t *req, int rc, const char *data, size_t len, void *arg);
int roost_read_file(roost_req_t *req, const char *path, size_t max, roost_file_fn done, void *arg);

/* ---- WebSockets (RFC 6455) ---- */
typedef struct roost_ws roost_ws_t;
typedef struct {
    /* The 101 has been queued; the connection is open. */
    void (*on_open)(roost_ws_t *ws, void *ud);
    /* A complete message: text (valid UTF-8) or binary. data is valid during the call. */
    void (*on_message)(roost_ws_t *ws, int binary, const char *data, size_t len, void *ud);
    /* The connection is gone (code: what was sent or received, 1006 if it dropped). The
     * handle is invalid after this returns; free ud here. */
    void (*on_close)(roost_ws_t *ws, int code, void *ud);
} roost_ws_handler_t;

/* In a ROOST_LOOP handler: checks the opening handshake and answers 101 (then the connection
 * speaks WebSocket and calls h on its loop), or answers 400/403/426/503 itself. ud is passed
 * to every callback. Returns 0 when upgrading, a negative code when an error was answered (the
 * handler must then free ud itself). */
int roost_ws_upgrade(roost_req_t *req, const roost_ws_handler_t *h, void *ud);
/* On the connection's loop. Sends one message (copied); binary or text. */
int roost_ws_send(roost_ws_t *ws, int binary, const void *data, size_t len);
/* Sends a JSON value as a text message and drops the caller's reference. */
int roost_ws_send_json(roost_ws_t *ws, json_t *msg);
/* Starts the close handshake with this code and reason. */
void roost_ws_close(roost_ws_t *ws, int code, const char *reason);
roost_server_t *roost_ws_server(const roost_ws_t *ws);

/* On the connection's loop: calls fn(ws, arg) there every ms milliseconds until
 * roost_ws_timer_stop (call it in on_close at the latest). NULL when out of memory or ms is 0. */
typedef struct roost_ws_timer roost_ws_timer_t;
typedef void (*roost_ws_timer_fn)(roost_ws_t *ws, void *arg);
roost_ws_timer_t *roost_ws_every(roost_ws_t *ws, uint64_t ms, roost_ws_timer_fn fn, void *arg);
void roost_ws_timer_stop(roost_ws_timer_t *t);

/* ---- rooms: membership on the loops, fan-out of one shared frame per message ---- */
/* On the connection's loop: joins ws to room as user, sends it the welcome frame and, when
 * since >= 0, what it missed (or a reset, when epoch is not NULL and differs or the history
 * does not reach back), and tells the others. A connection is in at most one room and leaves it
 * when it closes. */
int roost_room_join(roost_ws_t *ws, const char *room, const char *user, long long since,
                    const char *epoch);
/* From any thread: publishes {"type": type, "room": room, "id": n, "ts": t, ...fields} to the
 * room (stored in its history). Steals fields (an object, may be NULL). Returns the message id
 * (> 0), 0 with --redis (Redis gives the id; the frame reaches this node's members through it
 * too) or a negative code. *online, when not NULL, gets the room's count. */
long long roost_room_publish(roost_server_t *srv, const char *room, const char *type,
                             json_t *fields, long *online);
/* On the connection's loop: sends {"type":"direct","room","from","to","text","ts"} to every
 * connection of `to` in ws's room. -ENOENT when `to` is not there. */
int roost_room_direct(roost_ws_t *ws, const char *to, const char *text, size_t len);
/* From any thread. */
long roost_room_online(roost_server_t *srv, const char *room);
/* 1 when the room exists or may still be created (--max-rooms), else 0. Joining or publishing
 * to a room that cannot be created gives -ENOSPC. */
int roost_room_available(roost_server_t *srv, const char *room);
json_t *roost_room_list(roost_server_t *srv);                    /* [{"room","online"}] */
json_t *roost_room_users(roost_server_t *srv, const char *room); /* sorted unique names */
/* The room and user a connection joined as (NULL before joining). */
const char *roost_ws_room(const roost_ws_t *ws);
const char *roost_ws_user(const roost_ws_t *ws);

/* ---- jobs: a durable queue (SQLite, <data-dir>/roost.db; or the --database PostgreSQL, shared
 * by every node: docs/scale-out.md) run by job worker threads ---- */
typedef struct roost_job roost_job_t;
/* Runs on a job worker thread: returns the result (stolen; NULL means {}), or NULL after
 * roost_job_fail(). Long jobs report progress and stop when told to. */
typedef json_t *(*roost_job_fn)(roost_job_t *job, const json_t *payload, void *ud);
typedef struct {
    /* Before a job is accepted: appends FastAPI error items for a payload that does not fit
     * (loc ["body", "payload", field]). May be NULL. */
    void (*validate)(const json_t *payload, json_t *errors, void *ud);
    void *ud;
    /* Per-key limits (cluster-wide on PostgreSQL): at most key_limit jobs of this type with the
     * same concurrency_key run at once (0: 1); at most rate_per_s of this type start in any
     * one second (0: no limit). */
    int key_limit;
    int rate_per_s;
} roost_job_opts_t;
/* Before roost_run. -EEXIST for a name already registered. */
int roost_job_type(roost_server_t *srv, const char *name, roost_job_fn fn,
                   const roost_job_opts_t *opts);
/* Before roost_run: enqueues a job once per period, like Celery beat, from a spec
 * 'TYPE every 60s {json payload}' (s, m or h). -EINVAL for a spec that does not parse. */
int roost_job_schedule(roost_server_t *srv, const char *spec);
/* From the job: reports progress; returns < 0 when the job must stop now (cancelled, timed
 * out, or the server is stopping): return at once, the result is ignored. */
int roost_job_progress(roost_job_t *job, long current, long total);
/* Sleeps up to ms, returning early (< 0) when the job must stop. */
int roost_job_sleep(roost_job_t *job, long ms);
int roost_job_stopped(roost_job_t *job);
/* Sets the attempt's error (a failed attempt: retried while attempts <= max_retries). */
void roost_job_fail(roost_job_t *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After roost_job_fail: the attempt is not retried (the job fails now), e.g. a 4xx answer. */
void roost_job_no_retry(roost_job_t *job);
/* After roost_job_fail: the next attempt waits this long instead of the backoff (Retry-After). */
void roost_job_retry_in(roost_job_t *job, double seconds);
/* A job whose work runs elsewhere (an upstream call on a loop) returns ROOST_JOB_PENDING: its job
 * worker is free at once, and the job stays running until roost_job_finish is called, exactly
 * once, from any thread, with the result (stolen; NULL after roost_job_fail). Once the work that
 * finishes it has started, the job function must not touch job again. A cancel or a timeout is
 * not seen by such a job until it finishes. */
#define ROOST_JOB_PENDING ((json_t *)&roost_job_pending_marker)
extern const int roost_job_pending_marker;
void roost_job_finish(roost_job_t *job, json_t *result);
/* The work could not be done because the server is stopping: the job runs again after the
 * restart (as a job the drain stopped). Instead of roost_job_finish. */
void roost_job_abandon(roost_job_t *job);
long long roost_job_id(const roost_job_t *job);
roost_server_t *roost_job_server(const roost_job_t *job);

/* What to enqueue. */
typedef struct {
    const char *type;
    json_t *payload;           /* borrowed: copied by roost_job_submit */
    int priority;              /* higher first */
    double delay_s, timeout_s; /* timeout 0: none */
    int max_retries;
    const char *idempotency_key; /* or NULL */
    const char *concurrency_key; /* or NULL: at most the type's key_limit of it run at once */
} roost_job_spec_t;
/* Called on the queue's thread once the job is stored (task: the task JSON, now the callee's
 * to json_decref, or NULL; status 201, or 200 for an idempotent replay, or 503 when it could
 * not be stored). The queue keeps no reference, so the task may go to another thread. */
typedef void (*roost_job_done_fn)(json_t *task, int status, void *arg);
/* Checks the type and its payload: -EINVAL with FastAPI error items appended to errors. */
int roost_job_validate(roost_server_t *srv, const roost_job_spec_t *spec, json_t *errors);
/* From any thread, for a spec that validates: done is called once it is stored. -EINVAL for
 * an unknown type, -ENOMEM; done is then not called. */
int roost_job_submit(roost_server_t *srv, const roost_job_spec_t *spec, roost_job_done_fn done,
                     void *arg);
/* From a ROOST_LOOP handler: checks spec (422 with every error), submits it and answers 201 with
 * the task once it is stored (a replayed idempotency_key: the same task, with Idempotent-Replayed:
 * true), 503 when it could not be. Returns 0, or < 0 after answering the error. */
int roost_job_submit_answer(roost_req_t *req, const roost_job_spec_t *spec);
/* Cancels: done(task, 200) when cancelled or asked to stop; 404 unknown; 409 finished (the
 * task is the callee's, as for submit). */
int roost_job_cancel(roost_server_t *srv, long long id, roost_job_done_fn done, void *arg);
/* Blocking reads (call them from ROOST_BLOCKING handlers): the task or NULL; a page of tasks,
 * newest first, below cursor id (0: newest), status NULL for any. */
json_t *roost_job_get(roost_server_t *srv, long long id);
json_t *roost_job_list(roost_server_t *srv, const char *status, long long before_id, int limit);
/* Calls fn(task, arg) on the queue's thread for every change of task id, starting with its
 * current state, until fn returns nonzero (it also should when the task has ended). */
typedef int (*roost_job_watch_fn)(json_t *task, void *arg);
int roost_job_watch(roost_server_t *srv, long long id, roost_job_watch_fn fn, void *arg);
/* A status is final: completed, failed or cancelled. */
int roost_job_final(const char *status);
/* From a ROOST_LOOP handler: answers with task id's changes as server-sent events (event "task",
 * data the task's JSON), its current state first, ending after a final one; ids count on from a
 * reconnecting client's Last-Event-ID. 404 when there is no such task. Returns 0, or -ENOMEM after
 * answering 503. */
int roost_job_events(roost_req_t *req, long long id);

/* ---- Redis: rooms shared by several nodes (--redis) ---- */
/* With --redis: starts the server's Redis client, which connects (and reconnects) on its own
 * thread; rooms are bridged through it from then on. 0 without --redis; -EINVAL for a bad URL.
 * Main thread, before roost_run. */
int roost_redis_start(roost_server_t *srv);
/* Makes the rooms now rather than at their first use: with --redis, this node then hears the
 * other nodes' presence from the start (counts on every node). Main thread, after
 * roost_redis_start. */
int roost_rooms_start(roost_server_t *srv);
/* -1 without --redis, else 1 while Redis is connected and 0 while it is not. Any thread. */
int roost_redis_state(roost_server_t *srv);
/* With --redis: rate limits, the response cache (a second level) and the jobs' idempotency keys
 * shared by every node through Redis (src/shared). 0 without --redis; -EINVAL for a bad
 * --redis-fail. Main thread, after roost_redis_start, before roost_run. */
int roost_shared_start(roost_server_t *srv);

/* ---- counters, exported on /metrics ---- */
typedef struct roost_counter roost_counter_t;
/* Registers (or finds) a counter named `name` with a label set like `limit="body"` (may be NULL).
 * Registration takes a lock: do it once, at start-up; adding is a relaxed atomic, safe and
 * lock-free from any thread. */
roost_counter_t *roost_counter(roost_server_t *srv, const char *name, const char *labels,
                               const char *help);
/* A gauge: a counter rendered as "# TYPE gauge", moved with roost_counter_add(+n / -n). */
roost_counter_t *roost_gauge(roost_server_t *srv, const char *name, const char *labels,
                             const char *help);
void roost_counter_add(roost_counter_t *c, long n);
long roost_counter_get(const roost_counter_t *c);
/* Every counter and gauge in Prometheus text format; the caller frees the string. */
char *roost_metrics_text(roost_server_t *srv);

/* Logs one line to stderr: "<iso time> <level> <message>". */
void roost_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- data: SQL on SQLite or PostgreSQL through one pool and one interface ----
 * --database picks the engine: SQLite in <data-dir>/roost.db by default (or sqlite:PATH), or
 * PostgreSQL (postgresql://user:password@host:port/db). SQL is written once with PostgreSQL's
 * $1..$n placeholders; a statement whose dialects differ gives PostgreSQL its own text. The
 * calls below block, so make them from ROOST_BLOCKING handlers or other threads, never on a
 * loop; except roost_db_pool_status, and roost_db_run / roost_db_run_query, which a ROOST_LOOP
 * handler calls to queue its statements for a data thread.
 *
 * Errors: 0 or a negative code: -EEXIST a unique constraint was violated; -EINVAL another
 * constraint (check, not null) or a misuse; -EDEADLK the transaction lost a deadlock or a
 * serialization race and should be run again; -EAGAIN the database is unavailable (down,
 * restarting, or no connection within --db-pool-timeout-s: answer 503); -EIO anything else
 * (logged). roost_db_error() has the database's message. */
typedef struct roost_db roost_db_t;
typedef struct roost_dbconn roost_dbconn_t;

typedef struct {
    const char *sql;      /* both engines */
    const char *postgres; /* PostgreSQL's text when it differs (DDL, FOR UPDATE), or NULL */
} roost_sql_t;

typedef struct {
    const char *name;              /* the version is kept in table <name>_schema */
    const roost_sql_t *migrations; /* applied in order at start-up, each once (idempotent) */
    int nmigrations;
    const roost_sql_t *statements; /* prepared once per connection; named by their index */
    int nstatements;
} roost_db_schema_t;

/* Before roost_run: opens the database of --database, applies the schema's migrations and
 * checks that every statement prepares. Closed when the server stops. NULL on failure (logged):
 * the caller should not start. */
roost_db_t *roost_db_open(roost_server_t *srv, const roost_db_schema_t *schema);
const char *roost_db_engine(const roost_db_t *db); /* "sqlite" or "postgresql" */
/* {"engine","size","checked_in","checked_out","overflow","max_overflow"}, like SQLAlchemy's
 * pool status; overflow counts the connections open beyond size. Does not block. */
json_t *roost_db_pool_status(roost_db_t *db);

/* A connection for the calling thread until roost_db_release. An idle one is checked first (one
 * its server dropped is replaced); else a new one is opened while fewer than size + overflow
 * exist; else the call waits up to --db-pool-timeout-s. -EAGAIN when none can be had. */
int roost_db_acquire(roost_db_t *db, roost_dbconn_t **out);
/* Gives it back; a transaction still open is rolled back. */
void roost_db_release(roost_dbconn_t *c);

/* Runs statement `stmt` with one argument per letter of `types`: 'i' long long, 'b' int used as
 * a boolean, 's' const char * (NULL is SQL NULL), 'n' SQL NULL (no argument). Its rows are then
 * read with roost_db_next. */
int roost_db_query(roost_dbconn_t *c, int stmt, const char *types, ...);
int roost_db_next(roost_dbconn_t *c); /* 1: a row is current; 0: no more; < 0: an error */
/* Columns of the current row, from 0. Text is valid until the next call on c; NULL for SQL
 * NULL. Booleans read as 0 and 1 on both engines. */
long long roost_db_int(roost_dbconn_t *c, int col);
const char *roost_db_text(roost_dbconn_t *c, int col);
int roost_db_is_null(roost_dbconn_t *c, int col);
long long roost_db_changes(roost_dbconn_t *c); /* rows changed by the last statement */
const char *roost_db_error(const roost_dbconn_t *c);

/* From a ROOST_LOOP handler, for work that is only a few statements: waits (roost_req_wait), runs
 * fn(c, arg) on a data thread with a pooled connection (c is NULL when none could be had: the
 * database is unavailable), then done(req, arg) on the request's loop (roost_req_resume), which
 * answers. Data threads take queued jobs in batches on one connection, so a busy server pays one
 * wake-up per batch instead of one worker hand-off per request. fn must not open a transaction it
 * does not close. Returns 0, or < 0 after answering (500, or 503 when the server is stopping); done
 * is then not called. */
typedef void (*roost_db_fn)(roost_dbconn_t *c, void *arg);
int roost_db_run(roost_db_t *db, roost_req_t *req, roost_db_fn fn, roost_timer_fn done, void *arg);
/* The same for a job that is one prepared statement, run with the parameters given here (typed
 * as for roost_db_query; strings are copied): then rows(c, rc, arg) reads its result on the data
 * thread (rc: 0 or the statement's error; c is NULL when no connection could be had), then
 * done(req, arg) answers on the loop. On PostgreSQL the statements queued together go to the
 * server in one round trip (pipeline mode), each still in a transaction of its own. */
typedef void (*roost_db_rows_fn)(roost_dbconn_t *c, int rc, void *arg);
int roost_db_run_query(roost_db_t *db, roost_req_t *req, roost_db_rows_fn rows, roost_timer_fn done,
                       void *arg, int stmt, const char *types, ...);
/* The same for an op that writes a few rows (create, update, delete) and opens no transaction of
 * its own: the write ops a data thread takes one after the other run in ONE transaction, each in
 * a savepoint, and commit together (group commit: one WAL flush for the group instead of one per
 * request). fn(c, 0, arg) runs the op and returns 0 to keep its writes, or < 0 when it failed
 * (a statement's error, such as a unique violation): its savepoint is rolled back and the others
 * stand. done(req, arg) runs only after the group's COMMIT succeeded, so that a success answered
 * is on disk. When the op could not run (c is NULL: no connection), or its kept writes were lost
 * with the group (its COMMIT or transaction failed; nothing of it was committed), fn(NULL, rc,
 * arg) is called, again if it had run, before done: answer rc as an error (-EAGAIN: 503). An op
 * that returns -EDEADLK (it waited on another group's rows until PostgreSQL broke the deadlock) is
 * run again, fn(c, 0, arg), after its group committed: fn must then start its answer afresh. fn
 * must not begin, commit or roll back (refused with -EINVAL): an op with its own transaction goes
 * through roost_db_run, which never groups. */
typedef int (*roost_db_write_fn)(roost_dbconn_t *c, int rc, void *arg);
int roost_db_run_write(roost_db_t *db, roost_req_t *req, roost_db_write_fn fn, roost_timer_fn done,
                       void *arg);

/* Transactions. ROOST_DB_WRITE declares that the transaction will write: on SQLite it takes the
 * write lock at its start (BEGIN IMMEDIATE; one writer at a time), so that reading then writing
 * cannot fail halfway; on PostgreSQL lock the rows you will change with SELECT ... FOR UPDATE. */
enum { ROOST_DB_READ = 0, ROOST_DB_WRITE = 1 };
int roost_db_begin(roost_dbconn_t *c, int mode);
int roost_db_commit(roost_dbconn_t *c);
int roost_db_rollback(roost_dbconn_t *c);
/* Savepoints inside a transaction; name is an identifier ([A-Za-z_][A-Za-z0-9_]*). After an
 * error, roll back to the savepoint to go on with the transaction. */
int roost_db_savepoint(roost_dbconn_t *c, const char *name);
int roost_db_release_savepoint(roost_dbconn_t *c, const char *name);
int roost_db_rollback_to(roost_dbconn_t *c, const char *name);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#ifdef __cplusplus
}
#endif
#endif
