/* Flags and their ROOST_* environment twins, from one table whose rows name the layer they
 * configure: the table is the --help text, the defaults' listing and the parser, so a new limit is
 * one entry here (and its default in roost_config_init). An embedder's own flags (the app's) join
 * the same parser through roost_config_parse_with. Environment first, flags override. */
#include "base/base.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    roost_flag_kind_t kind;
    size_t offset;       /* in roost_config_t */
    const char *section; /* the layer's part of roost_config_t, a heading of --help */
    double min, max;
    const char *help;
} opt_t;

#define OFF(f)           offsetof(roost_config_t, f)
#define AT(layer, field) OFF(layer.field), #layer /* the offset, and the section it is in */
#define STR              ROOST_FLAG_STR
#define INT              ROOST_FLAG_INT
#define SIZE             ROOST_FLAG_SIZE
#define SECS             ROOST_FLAG_SECS
#define BOOL             ROOST_FLAG_BOOL
#define LIST             ROOST_FLAG_LIST

/* A flag is two lines: its name, kind, field and bounds, then its help. */
/* clang-format off */
static const opt_t opts[] = {
    {"host", STR, AT(net, host), 0, 0,
     "address to listen on"},
    {"port", INT, AT(net, port), 0, 65535,
     "TCP port"},
    {"threads", INT, AT(net, threads), 1, 256,
     "loop threads"},
    {"stall-ms", INT, AT(net, stall_ms), 1, 600000,
     "report a loop stalled longer than this"},
    {"drain-s", SECS, AT(net, drain_s), 0, 3600,
     "on SIGTERM, in-flight work finishes within this"},
    {"max-conns-per-ip", INT, AT(net, max_conns_per_ip), 0, 10000000,
     "open connections per client address, 503 and close above (0: no limit)"},
    {"new-conns-per-ip-s", INT, AT(net, new_conns_per_ip_s), 0, 10000000,
     "new connections a second per client address, bursts of twice that (0: no limit)"},
    {"trusted-ips", STR, AT(net, trusted_ips), 0, 0,
     "comma-separated CIDRs (IPv4, IPv6) exempt from the per-address limits"},
    {"workers", INT, AT(http, workers), 1, 4096,
     "most worker threads for blocking handlers"},
    {"workers-min", INT, AT(http, workers_min), 0, 4096,
     "worker threads kept when idle"},
    {"workers-idle-s", SECS, AT(http, workers_idle_s), 0.01, 86400,
     "a worker idle this long ends (above --workers-min)"},
    {"worker-queue", INT, AT(http, worker_queue), 1, 1048576,
     "blocking requests queued before 503"},
    {"max-url", SIZE, AT(http, max_url), 64, 1048576,
     "request target bytes (414 above)"},
    {"max-header-size", SIZE, AT(http, max_header_size), 256, 16777216,
     "header section bytes (431 above)"},
    {"max-headers", INT, AT(http, max_headers), 1, 10000,
     "header fields (431 above)"},
    {"max-body", SIZE, AT(http, max_body), 0, 4294967296,
     "request body bytes (413 above)"},
    {"max-pipeline", INT, AT(http, max_pipeline), 1, 4096,
     "requests in flight per connection before reading pauses"},
    {"header-timeout-s", SECS, AT(http, header_timeout_s), 0.05, 3600,
     "header section must arrive within this (408)"},
    {"body-timeout-s", SECS, AT(http, body_timeout_s), 0.05, 3600,
     "body must keep arriving within this (408)"},
    {"keepalive-timeout-s", SECS, AT(http, keepalive_timeout_s), 0.05, 86400,
     "idle keep-alive connections closed after this"},
    {"write-timeout-s", SECS, AT(http, write_timeout_s), 0.05, 3600,
     "a client that reads nothing for this long is dropped"},
    {"stream-max-unsent", SIZE, AT(http, stream_max_unsent), 1024, 1073741824,
     "bytes of a streamed answer waiting for a slow client before its producer pauses"},
    {"sse-heartbeat-s", SECS, AT(http, sse_heartbeat_s), 0, 86400,
     "a comment line this often on an event stream, for proxies (0: none)"},
    {"access-log", BOOL, AT(http, access_log), 0, 1,
     "one stderr line per request"},
    {"max-connections", INT, AT(ws, max_connections), 1, 10000000,
     "WebSocket connections (503 on upgrade above)"},
    {"allowed-origins", STR, AT(ws, allowed_origins), 0, 0,
     "comma-separated Origins allowed to open WebSockets (403 else; empty: all)"},
    {"ws-max-message", SIZE, AT(ws, max_message), 125, 1073741824,
     "bytes in one WebSocket message (close 1009 above)"},
    {"ws-max-backlog", SIZE, AT(ws, max_backlog), 4096, 4294967296,
     "unsent bytes to one WebSocket before it is closed (1008)"},
    {"ws-max-rate", INT, AT(ws, max_rate), 1, 1000000,
     "messages per second from one WebSocket, bursts of twice that (close 1008 above)"},
    {"ws-ping-s", SECS, AT(ws, ping_s), 0.1, 86400,
     "ping a WebSocket silent this long"},
    {"ws-pong-timeout-s", SECS, AT(ws, pong_timeout_s), 0.1, 3600,
     "close a WebSocket that does not answer a ping within this"},
    {"upstream", LIST, AT(fetch, upstream), 0, 0,
     "'NAME=URL [max_conns=N] [timeout_ms=N] [retries=N] ...': an upstream (README; repeatable)"},
    {"max-rooms", INT, AT(rooms, max_rooms), 1, 100000000,
     "rooms kept at once; a new room above it is refused (503, or close 1013)"},
    {"history", INT, AT(rooms, history), 0, 1000000,
     "messages kept per room for ?since="},
    {"room-idle-s", SECS, AT(rooms, idle_s), 0.1, 31536000,
     "a room without members this long is freed with its history here (Redis keeps it)"},
    {"redis", STR, AT(redis, url), 0, 0,
     "redis://[[user]:password@]host[:port][/db]: rooms shared by every node (empty: off)"},
    {"node-id", STR, AT(redis, node_id), 0, 0,
     "this node's name in Redis (empty: host:port)"},
    {"presence-ttl-s", SECS, AT(redis, presence_ttl_s), 1, 3600,
     "a node that stops refreshing its members in Redis has them leave after this"},
    {"redis-fail", STR, AT(redis, fail), 0, 0,
     "open|closed: shared limits, cache and idempotency when Redis is slow (closed: 503)"},
    {"redis-wait-ms", INT, AT(redis, wait_ms), 1, 60000,
     "how long a request waits for Redis (shared limits, cache) before --redis-fail applies"},
    {"job-workers", INT, AT(jobs, workers), 1, 1024,
     "threads that run queued jobs"},
    {"job-fsync", BOOL, AT(jobs, fsync), 0, 1,
     "fsync the job store at every commit (synchronous=FULL): survives power loss too"},
    {"job-prefetch", INT, AT(jobs, prefetch), 0, 100000,
     "jobs reserved ahead of the busy job workers, so that each starts its next job at once"},
    {"retry-backoff-s", SECS, AT(jobs, retry_backoff_s), 0.01, 3600,
     "first retry delay of a failed job, doubled per attempt"},
    {"job-lease-s", SECS, AT(jobs, lease_s), 1, 86400,
     "on PostgreSQL: a running job's lease, renewed by its node; past it another node runs it"},
    {"data-dir", STR, AT(data, dir), 0, 0,
     "folder for data files"},
    {"database", STR, AT(data, database), 0, 0,
     "sqlite:PATH or postgresql://user:pass@host:port/db (empty: sqlite:<data-dir>/roost.db)"},
    {"db-pool-size", INT, AT(data, pool_size), 1, 1000,
     "database connections kept open"},
    {"db-pool-overflow", INT, AT(data, pool_overflow), 0, 1000,
     "more database connections opened under load, closed when given back"},
    {"db-pool-timeout-s", SECS, AT(data, pool_timeout_s), 0.001, 3600,
     "wait this long for a database connection, then answer 503"},
    {"cache-max-bytes", SIZE, AT(cache, max_bytes), 4096, 1099511627776,
     "bytes the response cache may hold; the least recently used answers go first"},
    {"rate-limit", LIST, AT(mw, rate_limit), 0, 0,
     "'GLOB rate=N/s|m|h [burst=N] [key=ip|header:X|api-key] [shadow] [name=X]' (429; repeatable)"},
    {"rate-limit-max-keys", INT, AT(mw, rate_limit_max_keys), 1, 100000000,
     "clients the rate limits remember at once (the least recently seen are forgotten)"},
    {"cors-origins", STR, AT(mw, cors_origins), 0, 0,
     "comma-separated origins allowed cross-origin requests, or '*' (empty: CORS off)"},
    {"cors-credentials", BOOL, AT(mw, cors_credentials), 0, 1,
     "Access-Control-Allow-Credentials: true (not with --cors-origins '*')"},
    {"cors-methods", STR, AT(mw, cors_methods), 0, 0,
     "methods a preflight may ask for, or '*'"},
    {"cors-headers", STR, AT(mw, cors_headers), 0, 0,
     "request headers a preflight may ask for, or '*'"},
    {"cors-expose-headers", STR, AT(mw, cors_expose), 0, 0,
     "response headers cross-origin scripts may read (comma-separated)"},
    {"cors-max-age", INT, AT(mw, cors_max_age), 0, 604800,
     "seconds a browser may cache a preflight's answer"},
    {"static", LIST, AT(files, mounts), 0, 0,
     "'URL_PREFIX=DIR': serve the files under DIR at GET URL_PREFIX/... (repeatable)"},
    {"static-max-open", INT, AT(files, max_open), 1, 1048576,
     "files open at once for static answers (503 above)"},
    {"metrics", BOOL, AT(obs, metrics), 0, 1,
     "per-route request series on /metrics"},
    {"tracing", BOOL, AT(obs, tracing), 0, 1,
     "W3C trace context on every request"},
    {"log-format", STR, AT(obs, log_format), 0, 0,
     "log lines (access and error): common or json"},
    {"slow-ms", INT, AT(obs, slow_ms), 0, 86400000,
     "log requests slower than this (0: off)"},
    {"log-buffer", SIZE, AT(obs, log_buffer), 4096, 1073741824,
     "bytes of log lines waiting for the writer; more are dropped"},
    {"otlp-endpoint", STR, AT(obs, otlp_endpoint), 0, 0,
     "send spans as OTLP/HTTP JSON here"},
    {"gzip", BOOL, AT(gzip, on), 0, 1,
     "gzip answers when the client accepts it (on|off)"},
    {"gzip-min-bytes", SIZE, AT(gzip, min_bytes), 0, 4294967296,
     "whole bodies below this go uncompressed"},
    {"gzip-level", INT, AT(gzip, level), 1, 9,
     "compression level, 1 fastest .. 9 smallest"},
    {"gzip-cache-bytes", SIZE, AT(gzip, cache_bytes), 0, 1099511627776,
     "compressed copies of shared bodies (made once, sent many times) kept; 0: compress each"},
    {"tls-cert", STR, AT(tls, cert), 0, 0,
     "PEM certificate (chain after it): serve TLS"},
    {"tls-key", STR, AT(tls, key), 0, 0,
     "PEM private key of --tls-cert"},
    {"tls-port", INT, AT(tls, port), 0, 65535,
     "serve TLS on this port beside plain HTTP on --port (0: TLS on --port)"},
    {"tls-handshake-timeout-s", SECS, AT(tls, handshake_timeout_s), 0.05, 3600,
     "a TLS handshake must end within this (closed)"},
    {"api-key", LIST, AT(auth, api_keys), 0, 0,
     "a key for POST /broadcast, /tasks and the dashboard's data (repeatable; 401 without)"},
    {"api-keys-file", STR, AT(auth, api_keys_file), 0, 0,
     "file of API keys, one a line"},
    {"ws-token-secret", STR, AT(auth, ws_token_secret), 0, 0,
     "/ws/{room}/{user} needs ?token= an HS256 JWT signed with this (401/403 else)"},
};
/* clang-format on */

void roost_config_init(roost_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->net = (roost_net_config_t){
        .host = "127.0.0.1",
        .port = 8000,
        .threads = cores > 0 ? (int)cores : 1,
        .stall_ms = 100,
        .drain_s = 10,
        .trusted_ips = "",
    };
    cfg->tls = (roost_tls_config_t){.cert = "", .key = "", .handshake_timeout_s = 10};
    cfg->auth = (roost_auth_config_t){.api_keys_file = "", .ws_token_secret = ""};
    cfg->http = (roost_http_config_t){
        .workers = 256,
        .workers_min = 8,
        .workers_idle_s = 30,
        .worker_queue = 1024,
        .max_url = 8192,
        .max_header_size = 32768,
        .max_headers = 100,
        .max_body = 1 << 20,
        .max_pipeline = 64,
        .header_timeout_s = 10,
        .body_timeout_s = 10,
        .keepalive_timeout_s = 60,
        .write_timeout_s = 60,
        .stream_max_unsent = 256 * 1024,
        .sse_heartbeat_s = 15,
    };
    cfg->ws = (roost_ws_config_t){
        .max_connections = 100000,
        .allowed_origins = "",
        .max_message = 1 << 20,
        .max_backlog = 1 << 20,
        .max_rate = 100,
        .ping_s = 30,
        .pong_timeout_s = 10,
    };
    cfg->rooms = (roost_rooms_config_t){.history = 100, .max_rooms = 100000, .idle_s = 600};
    cfg->redis = (roost_redis_config_t){
        .url = "", .node_id = "", .presence_ttl_s = 10, .fail = "open", .wait_ms = 50};
    cfg->jobs =
        (roost_jobs_config_t){.workers = 8, .prefetch = 64, .retry_backoff_s = 1, .lease_s = 30};
    cfg->data = (roost_data_config_t){
        .dir = "./data",
        .database = "",
        .pool_size = 10,
        .pool_overflow = 10,
        .pool_timeout_s = 30,
    };
    cfg->cache.max_bytes = 64u << 20;
    cfg->mw = (roost_mw_config_t){
        .rate_limit_max_keys = 100000,
        .cors_origins = "",
        .cors_methods = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
        .cors_headers = "*",
        .cors_expose = "",
        .cors_max_age = 3600,
    };
    cfg->files = (roost_files_config_t){.max_open = 1024};
    cfg->obs = (roost_obs_config_t){.metrics = 1,
                                    .tracing = 1,
                                    .log_format = "common",
                                    .log_buffer = 1 << 20,
                                    .otlp_endpoint = ""};
    /* Level 1: libdeflate's 1 is faster and smaller than zlib's 1 (nginx's default) and 2.5x
     * faster than its own 6 for 15% more bytes on varied JSON (bench/README.md, gzip). */
    cfg->gzip = (roost_gzip_config_t){.on = 1, .min_bytes = 1000, .level = 1};
    cfg->gzip.cache_bytes = 16u << 20;
}

/* "on", "off", "true", "false", "1" or "0": a bool flag's value given as the next argument. */
static int is_bool_word(const char *v)
{
    char padded[16];
    return strlen(v) < 8 && snprintf(padded, sizeof padded, " %s ", v) > 0 &&
           strstr(" on off true false 1 0 ", padded) != NULL;
}

/* One flag, wherever its value lives: the library's table or an embedder's. */
typedef struct {
    const char *name;
    roost_flag_kind_t kind;
    void *p;
    double min, max;
    const char *help;
} flag_t;

static flag_t lib_flag(const opt_t *o, roost_config_t *cfg)
{
    return (flag_t){o->name, o->kind, (char *)cfg + o->offset, o->min, o->max, o->help};
}

static flag_t extra_flag(const roost_flag_t *f)
{
    return (flag_t){f->name, f->kind, f->value, f->min, f->max, f->help};
}

static void format_value(const flag_t *f, char *out, size_t size)
{
    switch (f->kind) {
    case ROOST_FLAG_STR:
        snprintf(out, size, "%s", *(const char *const *)f->p ? *(const char *const *)f->p : "");
        break;
    case ROOST_FLAG_INT:
        snprintf(out, size, "%d", *(const int *)f->p);
        break;
    case ROOST_FLAG_SIZE:
        snprintf(out, size, "%zu", *(const size_t *)f->p);
        break;
    case ROOST_FLAG_SECS:
        snprintf(out, size, "%g", *(const double *)f->p);
        break;
    case ROOST_FLAG_BOOL:
        snprintf(out, size, "%s", *(const int *)f->p ? "on" : "off");
        break;
    case ROOST_FLAG_LIST:
        snprintf(out, size, "none");
        break;
    }
}

/* The flags the parser acts on instead of setting a value: listed last, in --help and the man
 * page alike. */
static const struct {
    const char *name, *help;
} actions[] = {
    {"help", "print this and exit"},
    {"version", "print \"roost X.Y.Z\" and exit"},
};

void config_env_name(const char *flag, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "ROOST_");
    for (const char *c = flag; *c && n + 1 < size; c++)
        out[n++] = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
    out[n < size ? n : size - 1] = '\0';
}

/* defs: the embedder's defaults, formatted before the environment was applied; NULL: the
 * current values of its variables. */
void config_walk(const char *section, const roost_flag_t *extra, size_t nextra, char (*defs)[64],
                 void (*fn)(const config_flag_info_t *f, void *ud), void *ud)
{
    roost_config_t d;
    roost_config_init(&d);
    for (const opt_t *o = opts; o < opts + ARRAY_LEN(opts); o++) {
        flag_t f = lib_flag(o, &d);
        config_flag_info_t info = {
            .section = o->section, .name = o->name, .kind = o->kind, .help = o->help};
        if (o->offset == OFF(net.threads)) /* the build machine's count is no default */
            snprintf(info.def, sizeof info.def, "one per core");
        else
            format_value(&f, info.def, sizeof info.def);
        fn(&info, ud);
    }
    for (size_t i = 0; i < nextra; i++) {
        flag_t f = extra_flag(&extra[i]);
        config_flag_info_t info = {
            .section = section ? section : "app", .name = f.name, .kind = f.kind, .help = f.help};
        if (defs)
            snprintf(info.def, sizeof info.def, "%s", defs[i]);
        else
            format_value(&f, info.def, sizeof info.def);
        fn(&info, ud);
    }
    for (size_t i = 0; i < ARRAY_LEN(actions); i++) {
        config_flag_info_t info = {.name = actions[i].name, .help = actions[i].help, .action = 1};
        fn(&info, ud);
    }
}

typedef struct {
    FILE *out;
    const char *section; /* the last section printed */
} usage_state_t;

static void usage_line(const config_flag_info_t *f, void *ud)
{
    usage_state_t *u = ud;
    if (f->action) {
        fprintf(u->out, "%s  --%-22s %s\n", u->section ? "\n" : "", f->name, f->help);
        u->section = NULL;
        return;
    }
    if (!u->section || strcmp(u->section, f->section) != 0)
        fprintf(u->out, "\n%s:\n", f->section);
    u->section = f->section;
    fprintf(u->out, "  --%-22s %s (default %s)\n", f->name, f->help, f->def);
}

static void usage(FILE *out, const char *prog, const char *section, const roost_flag_t *extra,
                  size_t nextra, char (*defs)[64])
{
    fprintf(out,
            "usage: %s [flags]\nEvery flag also reads the environment variable ROOST_<NAME> "
            "(upper case, '-' as '_'); flags win.\n",
            prog);
    usage_state_t u = {out, NULL};
    config_walk(section, extra, nextra, defs, usage_line, &u);
}

static int set_flag(const flag_t *f, const char *value, const char *from)
{
    char *end = NULL;
    if (f->kind == ROOST_FLAG_STR) {
        *(const char **)f->p = value;
        return 0;
    }
    if (f->kind == ROOST_FLAG_LIST) {
        roost_strlist_t *l = f->p;
        if (!value || l->n >= ROOST_LIST_MAX) {
            fprintf(stderr, "roost: %s: --%s takes a value, at most %d times\n", from, f->name,
                    ROOST_LIST_MAX);
            return -EINVAL;
        }
        l->v[l->n++] = value;
        return 0;
    }
    if (f->kind == ROOST_FLAG_BOOL && !value) {
        *(int *)f->p = 1;
        return 0;
    }
    if (!value || !*value)
        goto bad;
    if (f->kind == ROOST_FLAG_BOOL) {
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "on"))
            *(int *)f->p = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "off"))
            *(int *)f->p = 0;
        else
            goto bad;
        return 0;
    }
    errno = 0;
    double v = strtod(value, &end);
    if (errno || *end || v < f->min || v > f->max)
        goto bad;
    if (f->kind != ROOST_FLAG_SECS && v != (double)(long long)v)
        goto bad;
    if (f->kind == ROOST_FLAG_INT)
        *(int *)f->p = (int)v;
    else if (f->kind == ROOST_FLAG_SIZE)
        *(size_t *)f->p = (size_t)v;
    else
        *(double *)f->p = v;
    return 0;
bad:
    fprintf(stderr, "roost: %s: --%s needs a value between %g and %g, not '%s'\n", from, f->name,
            f->min, f->max, value ? value : "");
    return -EINVAL;
}

static int find_flag(roost_config_t *cfg, const roost_flag_t *extra, size_t nextra,
                     const char *name, size_t len, flag_t *out)
{
    for (const opt_t *o = opts; o < opts + ARRAY_LEN(opts); o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
            *out = lib_flag(o, cfg);
            return 0;
        }
    for (size_t i = 0; i < nextra; i++)
        if (strlen(extra[i].name) == len && strncmp(extra[i].name, name, len) == 0) {
            *out = extra_flag(&extra[i]);
            return 0;
        }
    return -ENOENT;
}

static int apply_env(const flag_t *f)
{
    char env[64];
    config_env_name(f->name, env, sizeof env);
    const char *v = getenv(env);
    return v ? set_flag(f, v, env) : 0;
}

#define EXTRA_MAX 64 /* an embedder's own flags */

int roost_config_parse_with(roost_config_t *cfg, const char *section, const roost_flag_t *extra,
                            size_t nextra, int argc, char **argv)
{
    if (nextra > EXTRA_MAX) {
        fprintf(stderr, "roost: at most %d extra flags\n", EXTRA_MAX);
        return -EINVAL;
    }
    char defs[EXTRA_MAX][64];
    for (size_t i = 0; i < nextra; i++) {
        flag_t f = extra_flag(&extra[i]);
        format_value(&f, defs[i], sizeof defs[i]);
    }
    for (const opt_t *o = opts; o < opts + ARRAY_LEN(opts); o++) {
        flag_t f = lib_flag(o, cfg);
        if (apply_env(&f) < 0)
            return -EINVAL;
    }
    for (size_t i = 0; i < nextra; i++) {
        flag_t f = extra_flag(&extra[i]);
        if (apply_env(&f) < 0)
            return -EINVAL;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout, argv[0], section, extra, nextra, defs);
            return 1;
        }
        if (!strcmp(arg, "--version")) {
            printf("roost %s\n", roost_version());
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "roost: unexpected argument '%s' (see --help)\n", arg);
            return -EINVAL;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        flag_t f;
        if (find_flag(cfg, extra, nextra, name, len, &f) < 0) {
            fprintf(stderr, "roost: unknown flag '%s' (see --help)\n", arg);
            return -EINVAL;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && f.kind != ROOST_FLAG_BOOL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "roost: --%s needs a value\n", f.name);
                return -EINVAL;
            }
            value = argv[++i];
        } else if (!value && i + 1 < argc && is_bool_word(argv[i + 1])) {
            value = argv[++i]; /* "--metrics off" as well as "--metrics=off" */
        }
        if (set_flag(&f, value, "flag") < 0)
            return -EINVAL;
    }
    return 0;
}

int roost_config_parse(roost_config_t *cfg, int argc, char **argv)
{
    return roost_config_parse_with(cfg, NULL, NULL, 0, argc, argv);
}
