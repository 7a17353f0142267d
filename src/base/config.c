/* Flags and their ROOST_* environment twins, from one table: the table is the --help text, the
 * defaults and the parser, so a new limit is one line here. Environment first, flags override. */
#include "base/base.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { OPT_STR, OPT_INT, OPT_SIZE, OPT_SECS, OPT_BOOL, OPT_LIST } opt_kind_t;

typedef struct {
    const char *name;
    opt_kind_t kind;
    size_t offset;
    double min, max;
    const char *help;
} opt_t;

#define OFF(f) offsetof(roost_config_t, f)
static const opt_t options[] = {
    {"host", OPT_STR, OFF(host), 0, 0, "address to listen on"},
    {"port", OPT_INT, OFF(port), 0, 65535, "TCP port"},
    {"threads", OPT_INT, OFF(threads), 1, 256, "loop threads, one per core unless set"},
    {"workers", OPT_INT, OFF(workers), 1, 4096, "worker threads for blocking handlers"},
    {"worker-queue", OPT_INT, OFF(worker_queue), 1, 1 << 20, "blocking requests queued before 503"},
    {"data-dir", OPT_STR, OFF(data_dir), 0, 0, "folder for data files"},
    {"stall-ms", OPT_INT, OFF(stall_ms), 1, 600000, "report a loop stalled longer than this"},
    {"max-url", OPT_SIZE, OFF(max_url), 64, 1 << 20, "request target bytes (414 above)"},
    {"max-header-size", OPT_SIZE, OFF(max_header_size), 256, 1 << 24,
     "header section bytes (431 above)"},
    {"max-headers", OPT_INT, OFF(max_headers), 1, 10000, "header fields (431 above)"},
    {"max-body", OPT_SIZE, OFF(max_body), 0, 1ull << 32, "request body bytes (413 above)"},
    {"max-pipeline", OPT_INT, OFF(max_pipeline), 1, 4096,
     "requests in flight per connection before reading pauses"},
    {"header-timeout-s", OPT_SECS, OFF(header_timeout_s), 0.05, 3600,
     "header section must arrive within this (408)"},
    {"body-timeout-s", OPT_SECS, OFF(body_timeout_s), 0.05, 3600,
     "body must keep arriving within this (408)"},
    {"keepalive-timeout-s", OPT_SECS, OFF(keepalive_timeout_s), 0.05, 86400,
     "idle keep-alive connections closed after this"},
    {"write-timeout-s", OPT_SECS, OFF(write_timeout_s), 0.05, 3600,
     "a client that reads nothing for this long is dropped"},
    {"drain-s", OPT_SECS, OFF(drain_s), 0, 3600, "on SIGTERM, in-flight work finishes within this"},
    {"max-connections", OPT_INT, OFF(max_connections), 1, 10000000,
     "WebSocket connections (503 on upgrade above)"},
    {"allowed-origins", OPT_STR, OFF(allowed_origins), 0, 0,
     "comma-separated Origins allowed to open WebSockets (403 else; empty: all)"},
    {"ws-max-message", OPT_SIZE, OFF(ws_max_message), 125, 1ull << 30,
     "bytes in one WebSocket message (close 1009 above)"},
    {"ws-max-backlog", OPT_SIZE, OFF(ws_max_backlog), 4096, 1ull << 32,
     "unsent bytes to one WebSocket before it is closed (1008)"},
    {"ws-max-rate", OPT_INT, OFF(ws_max_rate), 1, 1000000,
     "messages per second from one WebSocket, bursts of twice that (close 1008 above)"},
    {"ws-ping-s", OPT_SECS, OFF(ws_ping_s), 0.1, 86400, "ping a WebSocket silent this long"},
    {"ws-pong-timeout-s", OPT_SECS, OFF(ws_pong_timeout_s), 0.1, 3600,
     "close a WebSocket that does not answer a ping within this"},
    {"max-rooms", OPT_INT, OFF(max_rooms), 1, 100000000,
     "rooms kept at once; a new room above it is refused (503, or close 1013)"},
    {"history", OPT_INT, OFF(history), 0, 1000000, "messages kept per room for ?since="},
    {"job-workers", OPT_INT, OFF(job_workers), 1, 1024, "threads that run queued jobs"},
    {"job-fsync", OPT_BOOL, OFF(job_fsync), 0, 1,
     "fsync the job store at every commit (synchronous=FULL): survives power loss too"},
    {"job-prefetch", OPT_INT, OFF(job_prefetch), 0, 100000,
     "jobs reserved ahead of the busy job workers, so that each starts its next job at once"},
    {"retry-backoff-s", OPT_SECS, OFF(retry_backoff_s), 0.01, 3600,
     "first retry delay of a failed job, doubled per attempt"},
    {"email-delay-s", OPT_SECS, OFF(email_delay_s), 0, 60, "delay of the email job type"},
    {"exec", OPT_LIST, OFF(exec), 0, 0,
     "'name=/path/cmd fixed args': a command the exec job type may run (repeatable)"},
    {"schedule", OPT_LIST, OFF(schedule), 0, 0,
     "'TYPE every 60s {payload}': enqueue a job once per period (repeatable)"},
    {"database", OPT_STR, OFF(database), 0, 0,
     "sqlite:PATH or postgresql://user:pass@host:port/db (empty: sqlite:<data-dir>/roost.db)"},
    {"db-pool-size", OPT_INT, OFF(db_pool_size), 1, 1000, "database connections kept open"},
    {"db-pool-overflow", OPT_INT, OFF(db_pool_overflow), 0, 1000,
     "more database connections opened under load, closed when given back"},
    {"db-pool-timeout-s", OPT_SECS, OFF(db_pool_timeout_s), 0.001, 3600,
     "wait this long for a database connection, then answer 503"},
    {"upstream", OPT_LIST, OFF(upstream), 0, 0,
     "'NAME=http://host:port [max_conns=100] [max_queue=1000] [connect_timeout_ms=2000] "
     "[timeout_ms=10000] [retries=0] [breaker=5] [cool_ms=5000]': an upstream that handlers "
     "may call (repeatable)"},
    {"access-log", OPT_BOOL, OFF(access_log), 0, 1, "one stderr line per request"},
    {"debug-routes", OPT_BOOL, OFF(debug_routes), 0, 1,
     "test-only routes (GET /debug/block blocks its loop)"},
};

void roost_config_init(roost_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->host = "127.0.0.1";
    cfg->port = 8000;
    cfg->threads = cores > 0 ? (int)cores : 1;
    cfg->workers = 64;
    cfg->worker_queue = 1024;
    cfg->data_dir = "./data";
    cfg->stall_ms = 100;
    cfg->max_url = 8192;
    cfg->max_header_size = 32768;
    cfg->max_headers = 100;
    cfg->max_body = 1 << 20;
    cfg->max_pipeline = 64;
    cfg->header_timeout_s = 10;
    cfg->body_timeout_s = 10;
    cfg->keepalive_timeout_s = 60;
    cfg->write_timeout_s = 60;
    cfg->drain_s = 10;
    cfg->max_connections = 100000;
    cfg->allowed_origins = "";
    cfg->ws_max_message = 1 << 20;
    cfg->ws_max_backlog = 1 << 20;
    cfg->ws_max_rate = 100;
    cfg->ws_ping_s = 30;
    cfg->ws_pong_timeout_s = 10;
    cfg->history = 100;
    cfg->job_workers = 8;
    cfg->max_rooms = 100000;
    cfg->job_prefetch = 64;
    cfg->retry_backoff_s = 1;
    cfg->email_delay_s = 1;
    cfg->database = "";
    cfg->db_pool_size = 10;
    cfg->db_pool_overflow = 10;
    cfg->db_pool_timeout_s = 30;
}

static void usage(FILE *f, const char *prog)
{
    roost_config_t d;
    roost_config_init(&d);
    fprintf(f,
            "usage: %s [flags]\nEvery flag also reads the environment variable ROOST_<NAME> "
            "(upper case, '-' as '_'); flags win.\n\n",
            prog);
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        const opt_t *o = &options[i];
        const char *p = (const char *)&d + o->offset;
        char def[64] = "";
        switch (o->kind) {
        case OPT_STR:
            snprintf(def, sizeof def, "%s", *(const char *const *)p);
            break;
        case OPT_INT:
            snprintf(def, sizeof def, "%d", *(const int *)p);
            break;
        case OPT_SIZE:
            snprintf(def, sizeof def, "%zu", *(const size_t *)p);
            break;
        case OPT_SECS:
            snprintf(def, sizeof def, "%g", *(const double *)p);
            break;
        case OPT_BOOL:
            snprintf(def, sizeof def, "off");
            break;
        case OPT_LIST:
            snprintf(def, sizeof def, "none");
            break;
        }
        fprintf(f, "  --%-22s %s (default %s)\n", o->name, o->help, def);
    }
    fprintf(f, "  --%-22s %s\n", "help", "print this and exit");
}

static int set_option(roost_config_t *cfg, const opt_t *o, const char *value, const char *from)
{
    char *p = (char *)cfg + o->offset;
    char *end = NULL;
    if (o->kind == OPT_STR) {
        *(const char **)p = value;
        return 0;
    }
    if (o->kind == OPT_LIST) {
        roost_strlist_t *l = (roost_strlist_t *)p;
        if (!value || l->n >= ROOST_LIST_MAX) {
            fprintf(stderr, "roost: %s: --%s takes a value, at most %d times\n", from, o->name,
                    ROOST_LIST_MAX);
            return -EINVAL;
        }
        l->v[l->n++] = value;
        return 0;
    }
    if (o->kind == OPT_BOOL && !value) {
        *(int *)p = 1;
        return 0;
    }
    if (!value || !*value)
        goto bad;
    if (o->kind == OPT_BOOL) {
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "on"))
            *(int *)p = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "off"))
            *(int *)p = 0;
        else
            goto bad;
        return 0;
    }
    errno = 0;
    double v = strtod(value, &end);
    if (errno || *end || v < o->min || v > o->max)
        goto bad;
    if (o->kind != OPT_SECS && v != (double)(long long)v)
        goto bad;
    switch (o->kind) {
    case OPT_INT:
        *(int *)p = (int)v;
        break;
    case OPT_SIZE:
        *(size_t *)p = (size_t)v;
        break;
    case OPT_SECS:
        *(double *)p = v;
        break;
    default:
        break;
    }
    return 0;
bad:
    fprintf(stderr, "roost: %s: --%s needs a value between %g and %g, not '%s'\n", from, o->name,
            o->min, o->max, value ? value : "");
    return -EINVAL;
}

static const opt_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(options); i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

int roost_config_parse(roost_config_t *cfg, int argc, char **argv)
{
    for (size_t i = 0; i < ARRAY_LEN(options); i++) {
        char env[64] = "ROOST_";
        size_t n = 6;
        for (const char *c = options[i].name; *c && n < sizeof env - 1; c++)
            env[n++] = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        env[n] = '\0';
        const char *v = getenv(env);
        if (v && set_option(cfg, &options[i], v, env) < 0)
            return -EINVAL;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout, argv[0]);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "roost: unexpected argument '%s' (see --help)\n", arg);
            return -EINVAL;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const opt_t *o = find_option(name, len);
        if (!o) {
            fprintf(stderr, "roost: unknown flag '%s' (see --help)\n", arg);
            return -EINVAL;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && o->kind != OPT_BOOL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "roost: --%s needs a value\n", o->name);
                return -EINVAL;
            }
            value = argv[++i];
        }
        if (set_option(cfg, o, value, "flag") < 0)
            return -EINVAL;
    }
    return 0;
}
