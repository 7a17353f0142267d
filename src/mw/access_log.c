/* The access log and the slow-request log: once a request's last byte went out (or its client
 * left), --access-log writes one line (common format, or JSON with --log-format json) with the
 * route template, status, bytes, duration and trace id, and --slow-ms N one "slow request" line
 * for a request slower than N ms. Lines go through a buffered writer thread (base/logq.c): a
 * full buffer drops lines and counts them in roost_log_dropped_total, never blocking a loop.
 * Not a metric (http/metrics.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "core/core.h"
#include "roost/roost.h"

typedef struct {
    logq_t *q;
    int json, access, slow_ms;
    roost_counter_t *c_dropped, *c_slow;
} access_log_t;

/* The request line's target, at most 200 bytes; JSON-escaped for the JSON format, otherwise
 * with quotes, backslashes and control bytes hex-escaped (nginx does the same). */
static size_t put_target(char *out, size_t size, roost_str_t t, int json)
{
    size_t n = 0, len = t.len > 200 ? 200 : t.len;
    for (size_t i = 0; i < len && n + 7 < size; i++) {
        unsigned char c = (unsigned char)t.ptr[i];
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7f)
            n += (size_t)snprintf(out + n, size - n, json ? "\\u%04x" : "\\x%02X", c);
        else
            out[n++] = (char)c;
    }
    out[n] = '\0';
    return n;
}

static void put_line(access_log_t *a, const char *line, int n)
{
    if (n <= 0)
        return;
    if (logq_write(a->q, line, (size_t)n < 2048 ? (size_t)n : 2048) < 0)
        roost_counter_add(a->c_dropped, 1);
}

static void access_log_done(roost_req_t *req, void *ctx, void *ud)
{
    access_log_t *a = ud;
    uint64_t ns = roost_req_elapsed_ns(req);
    int slow = a->slow_ms > 0 && ns >= (uint64_t)a->slow_ms * 1000000u;
    if (!a->access && !slow)
        return;
    roost_str_t m = roost_req_method(req);
    char target[1500], ts[40], line[2048];
    put_target(target, sizeof target, roost_req_target(req), a->json);
    const char *route = roost_req_route(req), *trace = roost_req_trace_id(req);
    const char *tmpl = route ? strchr(route, ' ') + 1 : "unmatched";
    double ms = (double)ns / 1e6;
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n;
    if (a->access) {
        if (a->json) {
            strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
            n = snprintf(line, sizeof line,
                         "{\"time\":\"%s.%03ldZ\",\"method\":\"%.*s\",\"target\":\"%s\","
                         "\"route\":\"%s\",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,"
                         "\"trace_id\":%s%s%s}\n",
                         ts, now.tv_nsec / 1000000, (int)m.len, m.ptr, target, tmpl,
                         roost_res_status(req), (unsigned long long)roost_res_bytes(req), ms,
                         trace ? "\"" : "", trace ? trace : "null", trace ? "\"" : "");
        } else {
            strftime(ts, sizeof ts, "%d/%b/%Y:%H:%M:%S +0000", &tm);
            n = snprintf(line, sizeof line,
                         "- - - [%s] \"%.*s %s\" %d %llu route=\"%s\" duration_ms=%.3f "
                         "trace_id=%s\n",
                         ts, (int)m.len, m.ptr, target, roost_res_status(req),
                         (unsigned long long)roost_res_bytes(req), tmpl, ms, trace ? trace : "-");
        }
        put_line(a, line, n);
    }
    if (slow) {
        roost_counter_add(a->c_slow, 1);
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(line, sizeof line,
                     "%s.%03ldZ warn slow request: %.*s %s route=\"%s\" status=%d "
                     "duration_ms=%.3f trace_id=%s\n",
                     ts, now.tv_nsec / 1000000, (int)m.len, m.ptr, target, tmpl,
                     roost_res_status(req), ms, trace ? trace : "-");
        put_line(a, line, n);
    }
}

/* The same line as before, written at once: kept for embedders that roost_use it directly. */
static void access_log_plain(roost_req_t *req, void *ctx, void *ud)
{
    roost_str_t m = roost_req_method(req), t = roost_req_target(req);
    roost_log("info", "%.*s %.*s %d %.3fms", (int)m.len, m.ptr, (int)(t.len > 200 ? 200 : t.len),
              t.ptr ? t.ptr : "", roost_res_status(req), (double)roost_req_elapsed_ns(req) / 1e6);
}

const roost_middleware_t roost_mw_access_log = {
    .name = "access-log",
    .on_done = access_log_plain,
};

static void logs_stop(void *ud)
{
    access_log_t *a = ud;
    logq_free(a->q);
    free(a);
}

static void logs_metrics(void *ud, sbuf_t *out)
{
    access_log_t *a = ud;
    sbuf_printf(out,
                "# HELP roost_log_lines_total Access and slow-request log lines buffered\n"
                "# TYPE roost_log_lines_total counter\nroost_log_lines_total %ld\n",
                logq_lines(a->q));
}

int roost_use_logs(roost_server_t *srv)
{
    const roost_config_t *cfg = roost_server_config(srv);
    if (!cfg->http.access_log && cfg->obs.slow_ms <= 0)
        return 0;
    access_log_t *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->access = cfg->http.access_log;
    a->json = cfg->obs.log_format && !strcmp(cfg->obs.log_format, "json");
    a->slow_ms = cfg->obs.slow_ms;
    a->c_dropped = roost_counter(srv, "roost_log_dropped_total", NULL,
                                 "Log lines dropped because the log buffer was full");
    a->c_slow = roost_counter(srv, "roost_http_slow_requests_total", NULL,
                              "Requests slower than --slow-ms");
    a->q = logq_new(STDERR_FILENO, cfg->obs.log_buffer ? cfg->obs.log_buffer : 1 << 20);
    if (!a->q) {
        free(a);
        return -ENOMEM;
    }
    roost_middleware_t mw = {.name = "access-log", .on_done = access_log_done, .ud = a};
    core_service_t svc = {.name = "logs", .stop = logs_stop, .metrics = logs_metrics, .ud = a};
    if (core_service_add(srv, &svc) < 0) {
        logs_stop(a);
        return -ENOMEM;
    }
    return roost_use(srv, &mw);
}
