/* Named upstreams: the --upstream specs parsed once at start-up, the circuit breaker each
 * upstream shares between the loops (atomics, no lock), and the upstream metrics. The pools and
 * wait queues themselves are per loop (multi.c, call.c). */
#include "fetch/fetch.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double lat_bounds[FETCH_LAT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,  1,     2.5,  10};

static int parse_long(const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        return -EINVAL;
    *out = n;
    return 0;
}

/* One `key=value` option of a spec. */
static int parse_option(fetch_upstream_t *u, const char *key, const char *v)
{
    static const struct {
        const char *key;
        size_t off;
        int is_int;
        long min, max;
    } opts[] = {
        {"max_conns", offsetof(fetch_upstream_t, max_conns), 1, 1, 100000},
        {"max_queue", offsetof(fetch_upstream_t, max_queue), 1, 0, 1000000},
        {"retries", offsetof(fetch_upstream_t, retries), 1, 0, 10},
        {"breaker", offsetof(fetch_upstream_t, breaker_failures), 1, 0, 1000000},
        {"connect_timeout_ms", offsetof(fetch_upstream_t, connect_timeout_ms), 0, 1, 3600000},
        {"timeout_ms", offsetof(fetch_upstream_t, timeout_ms), 0, 1, 3600000},
        {"cool_ms", offsetof(fetch_upstream_t, breaker_cool_ms), 0, 1, 3600000},
    };
    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        if (strcmp(key, opts[i].key))
            continue;
        long n;
        if (parse_long(v, opts[i].min, opts[i].max, &n) < 0)
            return -EINVAL;
        if (opts[i].is_int)
            *(int *)((char *)u + opts[i].off) = (int)n;
        else
            *(long *)((char *)u + opts[i].off) = n;
        return 0;
    }
    return -EINVAL;
}

static int valid_name(const char *s, size_t len)
{
    if (!len || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!(s[i] == '-' || s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
              (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
            return 0;
    return 1;
}

int fetch_upstream_parse(fetch_t *f, const char *spec)
{
    if (f->nupstreams == FETCH_MAX_UPSTREAMS) {
        log_error("--upstream: at most %d upstreams", FETCH_MAX_UPSTREAMS);
        return -ENOSPC;
    }
    char *copy = strdup(spec);
    if (!copy)
        return -ENOMEM;
    fetch_upstream_t *u = &f->up[f->nupstreams];
    memset(u, 0, sizeof *u);
    u->max_conns = 100;
    u->max_queue = 1000;
    u->connect_timeout_ms = 2000;
    u->timeout_ms = 10000;
    u->breaker_failures = 5;
    u->breaker_cool_ms = 5000;
    int rc = -EINVAL;
    char *save = NULL;
    char *first = strtok_r(copy, " \t", &save);
    char *eq = first ? strchr(first, '=') : NULL;
    if (!eq || !valid_name(first, (size_t)(eq - first)) ||
        fetch_upstream_find(f, first, (size_t)(eq - first)))
        goto out;
    const char *url = eq + 1;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        goto out;
    size_t ulen = strlen(url);
    while (ulen && url[ulen - 1] == '/')
        ulen--;
    u->name = strndup(first, (size_t)(eq - first));
    u->base = strndup(url, ulen);
    if (!u->name || !u->base) {
        rc = -ENOMEM;
        goto out;
    }
    for (char *tok; (tok = strtok_r(NULL, " \t", &save));) {
        char *e = strchr(tok, '=');
        if (!e)
            goto out;
        *e = 0;
        if (parse_option(u, tok, e + 1) < 0)
            goto out;
    }
    f->nupstreams++;
    rc = 0;
out:
    if (rc < 0) {
        if (rc == -EINVAL)
            log_error("--upstream '%s': expected 'NAME=http://host:port [max_conns=N] "
                      "[max_queue=N] [connect_timeout_ms=N] [timeout_ms=N] [retries=N] "
                      "[breaker=N] [cool_ms=N]'",
                      spec);
        free(u->name);
        free(u->base);
        u->name = u->base = NULL;
    }
    free(copy);
    return rc;
}

fetch_upstream_t *fetch_upstream_find(fetch_t *f, const char *name, size_t len)
{
    for (int i = 0; i < f->nupstreams; i++)
        if (strlen(f->up[i].name) == len && !memcmp(f->up[i].name, name, len))
            return &f->up[i];
    return NULL;
}

/* The breaker: closed until `breaker_failures` calls fail in a row, then open for
 * `breaker_cool_ms` (calls fail at once), then half-open: one probe call goes through and its
 * outcome closes or re-opens it. Sane for one host: a flapping upstream is probed once per
 * cool-down instead of taking every request's time. */
int fetch_breaker_enter(fetch_upstream_t *u, uint64_t now_ms, int *probe)
{
    *probe = 0;
    if (!u->breaker_failures)
        return 0;
    uint64_t until = atomic_load_explicit(&u->open_until_ms, memory_order_relaxed);
    if (!until)
        return 0;
    if (now_ms < until)
        return -EAGAIN;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&u->probing, &expected, 1))
        return -EAGAIN; /* another call is the probe */
    *probe = 1;
    return 0;
}

void fetch_breaker_result(fetch_upstream_t *u, int ok, int probe, uint64_t now_ms)
{
    if (!u->breaker_failures)
        return;
    if (ok) {
        atomic_store(&u->failures, 0);
        atomic_store(&u->open_until_ms, 0);
    } else if (probe || atomic_fetch_add(&u->failures, 1) + 1 >= u->breaker_failures) {
        if (!atomic_load(&u->open_until_ms) || probe)
            log_warn("upstream %s: circuit open for %ld ms", u->name, u->breaker_cool_ms);
        atomic_store(&u->open_until_ms, now_ms + (uint64_t)u->breaker_cool_ms);
    }
    if (probe)
        atomic_store(&u->probing, 0);
}

void fetch_upstream_count(fetch_upstream_t *u, roost_fetch_error_t e, double seconds)
{
    atomic_fetch_add_explicit(&u->calls[e], 1, memory_order_relaxed);
    if (e == ROOST_FETCH_POOL_FULL || e == ROOST_FETCH_CIRCUIT_OPEN || e == ROOST_FETCH_INVALID)
        return; /* never went out: no latency */
    int b = 0;
    while (b < FETCH_LAT_BUCKETS && seconds > lat_bounds[b])
        b++;
    atomic_fetch_add_explicit(&u->lat[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->lat_sum_us, (long)(seconds * 1e6), memory_order_relaxed);
}

/* A metric with one sample per upstream: the atomic_long at offset `field` of each. */
static void per_upstream(fetch_t *f, sbuf_t *out, const char *name, const char *type,
                         const char *help, size_t field)
{
    sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (int i = 0; i < f->nupstreams; i++)
        sbuf_printf(out, "%s{upstream=\"%s\"} %ld\n", name, f->up[i].name,
                    atomic_load((atomic_long *)((char *)&f->up[i] + field)));
}

void fetch_metrics(fetch_t *f, sbuf_t *out)
{
    if (!f->nupstreams)
        return;
    sbuf_puts(out, "# HELP roost_upstream_calls_total Upstream calls by outcome\n"
                   "# TYPE roost_upstream_calls_total counter\n");
    for (int i = 0; i < f->nupstreams; i++)
        for (int e = 0; e <= ROOST_FETCH_INVALID; e++)
            sbuf_printf(out, "roost_upstream_calls_total{upstream=\"%s\",outcome=\"%s\"} %ld\n",
                        f->up[i].name, e ? roost_fetch_error_name(e) : "ok",
                        atomic_load(&f->up[i].calls[e]));
    per_upstream(f, out, "roost_upstream_retries_total", "counter", "Upstream attempts made again",
                 offsetof(fetch_upstream_t, retried));
    per_upstream(f, out, "roost_upstream_active_calls", "gauge",
                 "Upstream calls holding a connection", offsetof(fetch_upstream_t, active));
    per_upstream(f, out, "roost_upstream_waiting_calls", "gauge",
                 "Upstream calls waiting for a connection", offsetof(fetch_upstream_t, waiting));
    sbuf_printf(out,
                "# HELP roost_upstream_out_of_fds_total Upstream calls that found no free file "
                "descriptor and waited in their queue\n"
                "# TYPE roost_upstream_out_of_fds_total counter\nroost_upstream_out_of_fds_total "
                "%ld\n",
                atomic_load(&f->out_of_fds));
    per_upstream(f, out, "roost_upstream_connections", "gauge",
                 "Connections open to the upstream, in use or kept alive",
                 offsetof(fetch_upstream_t, conns));
    /* Idle = open less those held by a call; a call still connecting holds none yet, so during
     * a burst of new connections this reads low (never high), and exact once calls settle. */
    sbuf_puts(out, "# HELP roost_upstream_idle_connections Kept-alive connections waiting for a "
                   "call\n# TYPE roost_upstream_idle_connections gauge\n");
    for (int i = 0; i < f->nupstreams; i++) {
        long idle = atomic_load(&f->up[i].conns) - atomic_load(&f->up[i].active);
        sbuf_printf(out, "roost_upstream_idle_connections{upstream=\"%s\"} %ld\n", f->up[i].name,
                    idle > 0 ? idle : 0);
    }
    sbuf_puts(out, "# HELP roost_upstream_call_duration_seconds Upstream call latency\n"
                   "# TYPE roost_upstream_call_duration_seconds histogram\n");
    for (int i = 0; i < f->nupstreams; i++) {
        fetch_upstream_t *u = &f->up[i];
        long cum = 0;
        for (int b = 0; b <= FETCH_LAT_BUCKETS; b++) {
            cum += atomic_load(&u->lat[b]);
            if (b < FETCH_LAT_BUCKETS)
                sbuf_printf(out,
                            "roost_upstream_call_duration_seconds_bucket{upstream=\"%s\","
                            "le=\"%g\"} %ld\n",
                            u->name, lat_bounds[b], cum);
            else
                sbuf_printf(out,
                            "roost_upstream_call_duration_seconds_bucket{upstream=\"%s\","
                            "le=\"+Inf\"} %ld\n",
                            u->name, cum);
        }
        sbuf_printf(out, "roost_upstream_call_duration_seconds_sum{upstream=\"%s\"} %.6f\n",
                    u->name, (double)atomic_load(&u->lat_sum_us) / 1e6);
        sbuf_printf(out, "roost_upstream_call_duration_seconds_count{upstream=\"%s\"} %ld\n",
                    u->name, cum);
    }
}

void fetch_free(fetch_t *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->nupstreams; i++) {
        free(f->up[i].name);
        free(f->up[i].base);
    }
    free(f);
}
