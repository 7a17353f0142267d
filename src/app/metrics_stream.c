/* GET /metrics/stream: server-sent events of metric snapshots for the dashboard's charts, one a
 * second. A sampler thread (a core service, so never a loop) renders /metrics once a second,
 * reduces it to the dashboard's numbers (requests per second, p50 and p99 latency from the
 * duration histogram's deltas, stalls, worker queue, WebSockets, fan-out, jobs) and keeps the
 * last five minutes; each stream gets that history first, then every new snapshot. Not
 * /metrics itself (routes_basic.c) nor the page (pages.c). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "core/core.h"

#define HISTORY  300 /* snapshots: five minutes */
#define SNAP_MAX 512

static const char *const les[] = {"0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5",
                                  "0.75",  "1",    "2.5",   "5",    "7.5",   "10",  "+Inf"};
#define NLE (sizeof les / sizeof les[0])

typedef struct {
    double t, requests, buckets[NLE], stalls, stall_ms, deliveries, jobs_done;
} sample_t;

typedef struct {
    roost_server_t *srv;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop, started;
    atomic_int draining;
    char snaps[HISTORY][SNAP_MAX];
    long seq; /* snapshots made; the newest is snaps[(seq - 1) % HISTORY] */
    sample_t prev;
    int have_prev;
} sampler_t;

/* Sum of the samples of `name` (exactly: followed by '{' or ' ') whose line holds `filter`. */
static double metric_sum(const char *text, const char *name, const char *filter)
{
    double sum = 0;
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) != 0 || (p[nl] != '{' && p[nl] != ' '))
            continue;
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (filter) {
            char line[1024];
            snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1),
                     p);
            if (!strstr(line, filter))
                continue;
        }
        const char *sp = memrchr(p, ' ', len);
        if (sp)
            sum += strtod(sp + 1, NULL);
    }
    return sum;
}

/* Prometheus' histogram_quantile over one second's bucket deltas, in milliseconds; -1: none. */
static double quantile(const double *d, double q)
{
    double total = d[NLE - 1];
    if (total <= 0)
        return -1;
    double rank = q * total, below = 0, lo = 0;
    for (size_t i = 0; i < NLE; i++) {
        double hi = i + 1 < NLE ? strtod(les[i], NULL) : lo;
        if (d[i] >= rank) {
            double in = d[i] - below;
            return 1000 * (in > 0 ? lo + (hi - lo) * (rank - below) / in : hi);
        }
        below = d[i];
        lo = hi;
    }
    return 1000 * lo;
}

static void sample(sampler_t *s)
{
    char *text = roost_metrics_text(s->srv);
    if (!text)
        return;
    sample_t now = {.t = time_wall()};
    now.requests = metric_sum(text, "roost_http_requests_total", NULL);
    for (size_t i = 0; i < NLE; i++) {
        char f[32];
        snprintf(f, sizeof f, "le=\"%s\"", les[i]);
        now.buckets[i] = metric_sum(text, "roost_http_request_duration_seconds_bucket", f);
    }
    now.stalls = metric_sum(text, "roost_loop_stalls_total", NULL);
    now.stall_ms = 1000 * metric_sum(text, "roost_loop_stall_seconds_total", NULL);
    now.deliveries = metric_sum(text, "roost_room_deliveries_total", NULL);
    now.jobs_done = metric_sum(text, "roost_job_events_total", "event=\"completed\"") +
                    metric_sum(text, "roost_job_events_total", "event=\"failed\"");
    double queue = metric_sum(text, "roost_worker_queue_depth", NULL),
           busy = metric_sum(text, "roost_worker_busy", NULL),
           ws = metric_sum(text, "roost_ws_connections", NULL),
           depth = metric_sum(text, "roost_jobs_queue_depth", NULL);
    free(text);
    if (s->have_prev && now.t > s->prev.t) {
        double dt = now.t - s->prev.t, d[NLE];
        for (size_t i = 0; i < NLE; i++)
            d[i] = now.buckets[i] - s->prev.buckets[i];
        double p50 = quantile(d, 0.5), p99 = quantile(d, 0.99);
        char snap[SNAP_MAX];
        snprintf(snap, sizeof snap,
                 "{\"t\":%.3f,\"rps\":%.2f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"stalls\":%.0f,"
                 "\"stall_ms\":%.0f,\"worker_queue\":%.0f,\"worker_busy\":%.0f,\"ws\":%.0f,"
                 "\"fanout_per_s\":%.2f,\"jobs_per_s\":%.2f,\"queue_depth\":%.0f}",
                 now.t, (now.requests - s->prev.requests) / dt, p50 < 0 ? 0 : p50,
                 p99 < 0 ? 0 : p99, now.stalls - s->prev.stalls, now.stall_ms - s->prev.stall_ms,
                 queue, busy, ws, (now.deliveries - s->prev.deliveries) / dt,
                 (now.jobs_done - s->prev.jobs_done) / dt, depth);
        pthread_mutex_lock(&s->lock);
        memcpy(s->snaps[s->seq % HISTORY], snap, sizeof snap);
        s->seq++;
        pthread_mutex_unlock(&s->lock);
    }
    s->prev = now;
    s->have_prev = 1;
}

static void *sampler_main(void *arg)
{
    sampler_t *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        if (s->stop)
            break;
        pthread_mutex_unlock(&s->lock);
        sample(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void sampler_start(void *ud)
{
    sampler_t *s = ud;
    s->started = pthread_create(&s->thread, NULL, sampler_main, s) == 0;
}

/* Ends the sampler thread and waits for it. */
static void sampler_halt(sampler_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (s->started)
        pthread_join(s->thread, NULL);
    s->started = 0;
}

/* At SIGTERM: streams end at their next tick, and the sampler ends now, before the server tears
 * down the loops, the pool and the services it reads (ThreadSanitizer saw it read them during
 * the stop). */
static void sampler_drain(void *ud)
{
    atomic_store(&((sampler_t *)ud)->draining, 1);
    sampler_halt(ud);
}

static void sampler_stop(void *ud)
{
    sampler_t *s = ud;
    sampler_halt(s);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

/* ---- one stream ---- */

typedef struct {
    sampler_t *s;
    long sent; /* snapshots written: the next to send is number `sent` */
    int ticks;
} stream_t;

/* Writes the snapshots this stream has not had (at most the history). */
static void catch_up(roost_req_t *req, stream_t *st)
{
    sampler_t *s = st->s;
    pthread_mutex_lock(&s->lock);
    if (st->sent > s->seq) /* an id from before a restart */
        st->sent = s->seq;
    if (s->seq - st->sent > HISTORY)
        st->sent = s->seq - HISTORY;
    for (; st->sent < s->seq; st->sent++) {
        char ev[SNAP_MAX + 64];
        int n = snprintf(ev, sizeof ev, "event: snapshot\nid: %ld\ndata: %s\n\n", st->sent + 1,
                         s->snaps[st->sent % HISTORY]);
        roost_stream_write(req, ev, (size_t)n);
    }
    pthread_mutex_unlock(&s->lock);
}

static void tick(roost_req_t *req, void *arg)
{
    stream_t *st = arg;
    /* An hour at most, then the browser's EventSource reconnects: no stream outlives a drain. */
    if (roost_req_gone(req) || atomic_load(&st->s->draining) || ++st->ticks > 7200) {
        roost_stream_end(req);
        free(st);
        return;
    }
    catch_up(req, st);
    roost_defer(req, 500, tick, st);
}

static void metrics_stream(roost_req_t *req, void *ud)
{
    stream_t *st = app_calloc(req, sizeof *st);
    if (!st)
        return;
    st->s = ud;
    /* A reconnecting EventSource says what it had: only newer snapshots, then. */
    roost_str_t last = roost_req_header(req, "Last-Event-ID");
    if (last.ptr && last.len < 20) {
        char id[20];
        memcpy(id, last.ptr, last.len);
        id[last.len] = '\0';
        long n = strtol(id, NULL, 10);
        st->sent = n > 0 ? n : 0;
    }
    roost_res_header(req, "Cache-Control", "no-cache");
    roost_stream_begin(req, 200, "text/event-stream");
    roost_stream_write(req, "retry: 1000\n\n", 13);
    catch_up(req, st);
    roost_defer(req, 500, tick, st);
}

static const char *const tags_obs[] = {"pages", NULL};

int app_routes_metrics_stream(roost_server_t *srv)
{
    sampler_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->srv = srv;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    core_service_t svc = {"metrics-stream", sampler_start, sampler_drain, sampler_stop, NULL, s};
    if (core_service_add(srv, &svc) < 0) {
        sampler_stop(s);
        return -ENOMEM;
    }
    static const roost_route_opts_t routes[] = {
        {"GET", "/metrics/stream", metrics_stream, .tags = tags_obs,
         .summary = "Metric snapshots once a second (server-sent events)"},
    };
    return app_register(srv, routes, APP_COUNT_OF(routes), s);
}
