/* The OTLP/HTTP JSON span exporter (--otlp-endpoint): roost_span_emit copies a span into a
 * bounded queue under a short lock and returns; one background thread takes batches off it
 * and POSTs them to the collector with libcurl (its easy interface, in that thread only). A
 * full queue drops the span and counts it, so a slow collector never holds a loop back.
 * Process-wide: one exporter per process. Not where spans are made (http, jobs, fetch, db). */
#include "core/core.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX 8192
#define BATCH_MAX 512

typedef struct {
    char name[64];
    char trace[33], span[17], parent[17];
    int kind, error;
    uint64_t start_ns, end_ns;
    char keys[4][32], values[4][96];
} rec_t;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    rec_t *q; /* a ring of QUEUE_MAX */
    size_t head, len;
    atomic_int running;
    int stop;
    char *url;
    atomic_long exported, dropped, failed;
} ex = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

int roost_span_enabled(void)
{
    return atomic_load_explicit(&ex.running, memory_order_relaxed);
}

void roost_span_emit(const roost_span_t *s)
{
    if (!atomic_load_explicit(&ex.running, memory_order_relaxed) || !s->trace_id || !s->span_id)
        return;
    rec_t r;
    copy(r.name, sizeof r.name, s->name);
    copy(r.trace, sizeof r.trace, s->trace_id);
    copy(r.span, sizeof r.span, s->span_id);
    copy(r.parent, sizeof r.parent, s->parent_span_id);
    r.kind = s->kind;
    r.error = s->error;
    r.start_ns = s->start_ns;
    r.end_ns = s->end_ns;
    for (int i = 0; i < 4; i++) {
        copy(r.keys[i], sizeof r.keys[i], s->attrs[i].key);
        copy(r.values[i], sizeof r.values[i], s->attrs[i].key ? s->attrs[i].value : NULL);
        if (!s->attrs[i].key)
            break;
    }
    pthread_mutex_lock(&ex.lock);
    if (ex.len == QUEUE_MAX) {
        pthread_mutex_unlock(&ex.lock);
        atomic_fetch_add_explicit(&ex.dropped, 1, memory_order_relaxed);
        return;
    }
    ex.q[(ex.head + ex.len++) % QUEUE_MAX] = r;
    if (ex.len == BATCH_MAX)
        pthread_cond_signal(&ex.cond);
    pthread_mutex_unlock(&ex.lock);
}

static json_t *span_json(const rec_t *r)
{
    char start[24], end[24];
    snprintf(start, sizeof start, "%llu", (unsigned long long)r->start_ns);
    snprintf(end, sizeof end, "%llu", (unsigned long long)r->end_ns);
    json_t *attrs = json_array();
    for (int i = 0; i < 4 && r->keys[i][0]; i++)
        json_array_append_new(attrs, json_pack("{s:s,s:{s:s}}", "key", r->keys[i], "value",
                                               "stringValue", r->values[i]));
    json_t *s =
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:o,s:{s:i}}", "traceId", r->trace, "spanId", r->span,
                  "name", r->name, "kind", r->kind, "startTimeUnixNano", start, "endTimeUnixNano",
                  end, "attributes", attrs, "status", "code", r->error ? 2 : 1);
    if (s && r->parent[0])
        json_object_set_new(s, "parentSpanId", json_string(r->parent));
    return s;
}

/* One ExportTraceServiceRequest of n spans, as OTLP/HTTP's JSON encoding has it. */
static char *batch_json(const rec_t *rs, size_t n)
{
    json_t *spans = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(spans, span_json(&rs[i]));
    json_t *doc = json_pack("{s:[{s:{s:[{s:s,s:{s:s}}]},s:[{s:{s:s},s:o}]}]}", "resourceSpans",
                            "resource", "attributes", "key", "service.name", "value", "stringValue",
                            "roost", "scopeSpans", "scope", "name", "roost", "spans", spans);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

static void send_batch(CURL *h, const rec_t *rs, size_t n)
{
    char *body = batch_json(rs, n);
    if (!body) {
        atomic_fetch_add(&ex.failed, (long)n);
        return;
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, ex.url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long code = 0;
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK && code >= 200 && code < 300)
        atomic_fetch_add(&ex.exported, (long)n);
    else
        atomic_fetch_add(&ex.failed, (long)n);
    curl_slist_free_all(hdr);
    free(body);
}

static void *exporter(void *arg)
{
    CURL *h = curl_easy_init();
    rec_t *batch = malloc(BATCH_MAX * sizeof *batch);
    pthread_mutex_lock(&ex.lock);
    for (;;) {
        if (!ex.len && ex.stop)
            break;
        if (ex.len < BATCH_MAX && !ex.stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1; /* a batch at least once a second */
            pthread_cond_timedwait(&ex.cond, &ex.lock, &ts);
        }
        size_t n = ex.len < BATCH_MAX ? ex.len : BATCH_MAX;
        for (size_t i = 0; i < n && batch; i++)
            batch[i] = ex.q[(ex.head + i) % QUEUE_MAX];
        ex.head = (ex.head + n) % QUEUE_MAX;
        ex.len -= n;
        pthread_mutex_unlock(&ex.lock);
        if (n && h && batch)
            send_batch(h, batch, n);
        else if (n)
            atomic_fetch_add(&ex.failed, (long)n);
        pthread_mutex_lock(&ex.lock);
    }
    pthread_mutex_unlock(&ex.lock);
    free(batch);
    if (h)
        curl_easy_cleanup(h);
    return NULL;
}

int roost_otlp_start(const char *url)
{
    if (!url || !*url)
        return -EINVAL;
    pthread_mutex_lock(&ex.lock);
    int rc = 0;
    if (!ex.running) {
        ex.q = malloc(QUEUE_MAX * sizeof *ex.q);
        ex.url = strdup(url);
        ex.stop = 0;
        if (!ex.q || !ex.url) {
            rc = -ENOMEM;
        } else if ((rc = -pthread_create(&ex.thread, NULL, exporter, NULL)) == 0) {
            atomic_store(&ex.running, 1);
        }
        if (rc < 0) {
            free(ex.q);
            free(ex.url);
            ex.q = NULL;
            ex.url = NULL;
        }
    }
    pthread_mutex_unlock(&ex.lock);
    return rc;
}

/* Sends what is queued, then ends the thread. */
void roost_otlp_stop(void)
{
    pthread_mutex_lock(&ex.lock);
    if (!ex.running) {
        pthread_mutex_unlock(&ex.lock);
        return;
    }
    atomic_store(&ex.running, 0);
    ex.stop = 1;
    pthread_cond_signal(&ex.cond);
    pthread_mutex_unlock(&ex.lock);
    pthread_join(ex.thread, NULL);
    free(ex.q);
    free(ex.url);
    ex.q = NULL;
    ex.url = NULL;
    ex.len = ex.head = 0;
}

void core_otlp_metrics(sbuf_t *out)
{
    if (!ex.url && !atomic_load(&ex.exported) && !atomic_load(&ex.dropped))
        return;
    sbuf_printf(out,
                "# HELP roost_otlp_spans_exported_total Spans the collector accepted\n"
                "# TYPE roost_otlp_spans_exported_total counter\n"
                "roost_otlp_spans_exported_total %ld\n"
                "# HELP roost_otlp_spans_dropped_total Spans dropped: the exporter's queue of %d "
                "was full\n# TYPE roost_otlp_spans_dropped_total counter\n"
                "roost_otlp_spans_dropped_total %ld\n"
                "# HELP roost_otlp_spans_failed_total Spans the collector did not take\n"
                "# TYPE roost_otlp_spans_failed_total counter\nroost_otlp_spans_failed_total %ld\n",
                atomic_load(&ex.exported), QUEUE_MAX, atomic_load(&ex.dropped),
                atomic_load(&ex.failed));
}
