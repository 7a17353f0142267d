/* The seeds' big answers: GET /large-data (10,000 items as one JSON list, what the gzip
 * middleware is measured on) and GET /download-large-file (lines streamed as they are made,
 * paused while the client does not read). Not the SSE of jobs (routes_jobs.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"

/* ---- GET /large-data: [{"id":0,"data":"xxx..."}, ...], like the article's list of dicts ---- */

static roost_shared_body_t *large_body;
static pthread_once_t large_once = PTHREAD_ONCE_INIT;

/* The list never changes: serialized once and sent with no copy, as a static file would be
 * (a copy of its 1.2 MB was 4% of a gzip answer's time). */
static void large_make(void)
{
    char x[101];
    memset(x, 'x', 100);
    x[100] = 0;
    size_t cap = 10000 * 140 + 2, len = 0;
    char *b = malloc(cap);
    if (!b)
        return;
    b[len++] = '[';
    for (int i = 0; i < 10000; i++)
        len += (size_t)snprintf(b + len, cap - len, "%s{\"id\":%d,\"data\":\"%s\"}", i ? "," : "",
                                i, x);
    b[len++] = ']';
    large_body = roost_shared_body_new(b, len);
    free(b);
}

static void large_data(roost_req_t *req, void *ud)
{
    pthread_once(&large_once, large_make);
    if (!large_body) {
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    roost_respond_shared(req, 200, "application/json", large_body);
}

/* ---- GET /download-large-file?lines=N&line_delay_ms=M ---- */

typedef struct {
    long i, lines;
    long delay_ms; /* between lines, to watch them arrive one by one; 0: as fast as read */
} download_t;

static void download_pump(roost_req_t *req, void *arg);

/* Makes lines until the stream pushes back, the file ends, or (with a delay) one line. */
static void download_pump(roost_req_t *req, void *arg)
{
    download_t *d = arg;
    if (roost_req_gone(req)) {
        free(d);
        return;
    }
    char line[160];
    static const char x[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    while (d->i < d->lines) {
        int n = snprintf(line, sizeof line, "Line %ld: %s\n", d->i, x);
        int rc = roost_stream_write(req, line, (size_t)n);
        if (rc == -EAGAIN && roost_stream_on_drain(req, download_pump, d) == 0)
            return; /* the client is behind: go on once it has read */
        if (rc < 0) {
            roost_stream_abort(req);
            free(d);
            return;
        }
        d->i++;
        if (d->delay_ms && d->i < d->lines) {
            roost_defer(req, (uint64_t)d->delay_ms, download_pump, d);
            return;
        }
    }
    roost_stream_end(req);
    free(d);
}

static void download(roost_req_t *req, void *ud)
{
    download_t *d = calloc(1, sizeof *d);
    if (!d) {
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    d->lines = roost_req_query_int(req, "lines");
    d->delay_ms = roost_req_query_int(req, "line_delay_ms");
    roost_res_header(req, "Content-Disposition", "attachment; filename=large.txt");
    if (roost_stream_begin(req, 200, "text/plain") < 0) {
        free(d);
        roost_respond_error(req, 500, "Cannot stream");
        return;
    }
    download_pump(req, d);
}

/* ---- GET /download-large-file-sync: the same lines from a blocking handler ----
 * FastAPI's `def` generator in a StreamingResponse: a plain loop on a worker; each write waits
 * while the client is behind, and fails once it left. */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void download_sync(roost_req_t *req, void *ud)
{
    long lines = roost_req_query_int(req, "lines"),
         delay = roost_req_query_int(req, "line_delay_ms");
    static const char x[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    roost_res_header(req, "Content-Disposition", "attachment; filename=large.txt");
    if (roost_stream_begin(req, 200, "text/plain") < 0) {
        roost_respond_error(req, 500, "Cannot stream");
        return;
    }
    for (long i = 0; i < lines; i++) {
        char line[160];
        int n = snprintf(line, sizeof line, "Line %ld: %s\n", i, x);
        if (roost_stream_write(req, line, (size_t)n) < 0) {
            roost_stream_abort(req); /* the client left */
            return;
        }
        if (delay && i + 1 < lines)
            sleep_ms(delay);
    }
    roost_stream_end(req);
}

/* Test-only: server-sent events from a blocking handler, `events` of them `delay_ms` apart. */
static void sse_sync(roost_req_t *req, void *ud)
{
    long events = roost_req_query_int(req, "events"), delay = roost_req_query_int(req, "delay_ms");
    if (roost_sse_start(req, 2000, 0.05) < 0) {
        roost_respond_error(req, 500, "Cannot stream");
        return;
    }
    for (long i = 0; i < events; i++) {
        char id[24], data[64];
        snprintf(id, sizeof id, "%ld", i + 1);
        snprintf(data, sizeof data, "{\"n\":%ld}", i);
        if (roost_sse_event(req, id, "tick", data) < 0)
            return; /* the client left: the stream ends with the handler */
        if (delay)
            sleep_ms(delay);
    }
    roost_stream_end(req);
}

static const roost_field_t download_fields[] = {
    APP_INT_FIELD("lines", 1000, 0, 100000000),
    APP_INT_FIELD("line_delay_ms", 0, 0, 10000),
};
static const roost_schema_t download_schema = {.fields = download_fields, .nfields = 2};

/* Test-only: a body of `bytes` text bytes with the status, type and Content-Encoding asked for,
 * for the answers gzip must leave alone (304, 206, an encoded body, an image). */
static void debug_body(roost_req_t *req, void *ud)
{
    long long n = roost_req_query_int(req, "bytes");
    const char *enc = roost_req_query_str(req, "encoding");
    char *b = roost_req_alloc(req, (size_t)n + 1);
    if (!b) {
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    for (long long i = 0; i < n; i++)
        b[i] = (char)('a' + i % 7);
    if (enc && *enc)
        roost_res_header(req, "Content-Encoding", enc);
    roost_respond(req, (int)roost_req_query_int(req, "status"), roost_req_query_str(req, "type"), b,
                  (size_t)n);
}

static const roost_field_t debug_fields[] = {
    APP_INT_FIELD("bytes", 4000, 0, 1000000),
    APP_INT_FIELD("status", 200, 200, 599),
    {.name = "type", .type = ROOST_T_STR, .has_default = 1, .def.s = "text/plain"},
    {.name = "encoding", .type = ROOST_T_STR, .has_default = 1, .def.s = ""},
};
static const roost_schema_t debug_schema = {.fields = debug_fields, .nfields = 4};

static const roost_field_t sse_fields[] = {
    APP_INT_FIELD("events", 5, 0, 1000000),
    APP_INT_FIELD("delay_ms", 0, 0, 10000),
};
static const roost_schema_t sse_schema = {.fields = sse_fields, .nfields = 2};

static const char *const tags_stream[] = {"streaming", NULL};

static const roost_route_opts_t routes[] = {
    {"GET", "/large-data", large_data, .summary = "10,000 items (gzip's benchmark)",
     .tags = tags_stream},
    {"GET", "/download-large-file", download, .summary = "Lines streamed as they are made",
     .tags = tags_stream, .query = &download_schema},
    {"GET", "/download-large-file-sync", download_sync, .flags = ROOST_BLOCKING,
     .summary = "The same lines from a blocking handler (a worker thread)", .tags = tags_stream,
     .query = &download_schema},
};

static const roost_route_opts_t debug_routes[] = {
    {"GET", "/debug/body", debug_body, .summary = "A body with a chosen status, type, encoding",
     .tags = tags_stream, .query = &debug_schema},
    {"GET", "/debug/sse-sync", sse_sync, .flags = ROOST_BLOCKING,
     .summary = "Server-sent events from a blocking handler (test only)", .tags = tags_stream,
     .query = &sse_schema},
};

int app_routes_stream(roost_server_t *srv, const app_config_t *cfg)
{
    int rc = app_register(srv, routes, APP_COUNT_OF(routes), NULL);
    if (rc == 0 && cfg->debug_routes)
        rc = app_register(srv, debug_routes, APP_COUNT_OF(debug_routes), NULL);
    return rc;
}
