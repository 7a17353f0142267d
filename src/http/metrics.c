/* Per-route request metrics: roost_http_requests_total{route,method,status} and histograms of
 * duration, request and response body size, labelled by the route template ("unmatched" for
 * every request no route took, so scanners cannot grow the series). Recording is an array index
 * by route id and a few relaxed adds on the calling thread's shard: no lock, no hashing; a
 * scrape sums the shards. Not the named counters (base/counters.c) nor the process gauges. */
#include "http/http.h"

#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS     16
#define ROUTES_MAX 1024 /* ids above this are counted in roost_http_metrics_routes_over_total */
#define NMETH      10   /* DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE PATCH, other */
#define NSTATUS    8    /* distinct status codes kept per route and method */

/* The bounds as integers (nanoseconds, bytes): a request is placed with integer compares, no
 * conversion; the text's le labels are the same values as %g of seconds and bytes. */
#define MS 1000000ull
static const uint64_t dur_le_ns[] = {5 * MS,    10 * MS,   25 * MS,   50 * MS,   75 * MS,
                                     100 * MS,  250 * MS,  500 * MS,  750 * MS,  1000 * MS,
                                     2500 * MS, 5000 * MS, 7500 * MS, 10000 * MS};
#define NDUR (sizeof dur_le_ns / sizeof dur_le_ns[0])
static const uint64_t size_le[] = {0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304};
#define NSIZE (sizeof size_le / sizeof size_le[0])

typedef struct {
    atomic_long n[NSIZE + 1]; /* per bucket, not cumulative; the last is +Inf */
    atomic_long sum;
} hist_t;

typedef struct {
    atomic_int code[NSTATUS]; /* 0: free; claimed with a compare-and-swap */
    atomic_long count[NSTATUS];
    atomic_long other; /* a ninth distinct code and beyond */
    atomic_long dur[NDUR + 1];
    atomic_long dur_ns;
    hist_t req, res;
} cell_t;

typedef struct __attribute__((aligned(64))) {
    _Atomic(_Atomic(cell_t *) *) cells; /* [(ROUTES_MAX + 1) * NMETH], made on first use */
} shard_t;

struct http_metrics {
    shard_t shards[SHARDS];
    atomic_long over, status_over;
    unsigned gen; /* tells this set from a freed one at the same address (the cell cache) */
};

struct http_metrics *http_metrics_new(void)
{
    static atomic_uint gens;
    struct http_metrics *m = calloc(1, sizeof(struct http_metrics));
    if (m)
        m->gen = atomic_fetch_add(&gens, 1) + 1;
    return m;
}

void http_metrics_free(struct http_metrics *m)
{
    if (!m)
        return;
    for (int s = 0; s < SHARDS; s++) {
        _Atomic(cell_t *) *cells = atomic_load(&m->shards[s].cells);
        for (int i = 0; cells && i < (ROUTES_MAX + 1) * NMETH; i++)
            free(atomic_load(&cells[i]));
        free(cells);
    }
    free(m);
}

/* The first SHARDS - 1 threads that record own a shard each: their adds are a plain load and
 * store (one writer; a scrape reads whole longs). Later threads share the last shard, with
 * locked adds: never an owner's, whose plain load and store could undo a sharer's add. */
static atomic_uint next_shard;
static _Thread_local unsigned my_shard = ~0u;
static _Thread_local int my_own;

static int method_index(unsigned m)
{
    if (m <= HTTP_TRACE)
        return (int)m;
    return m == HTTP_PATCH ? 8 : 9;
}

static const char *method_label(int i)
{
    if (i == 9)
        return "other";
    return llhttp_method_name(i == 8 ? HTTP_PATCH : (llhttp_method_t)i);
}

/* A slot array or cell, made once; two threads on one shard may race: the loser frees its own. */
static void *claim(void *_Atomic *slot, size_t size)
{
    void *p = atomic_load_explicit(slot, memory_order_acquire);
    if (p)
        return p;
    void *mine = calloc(1, size), *none = NULL;
    if (!mine)
        return NULL;
    if (atomic_compare_exchange_strong(slot, &none, mine))
        return mine;
    free(mine);
    return none;
}

/* own is a constant in each copy of count() below: an owner's add is a plain load and store. */
static inline void add(atomic_long *a, long n, int own)
{
    if (own)
        atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + n,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(a, n, memory_order_relaxed);
}

/* Buckets are upper bounds (le): the first bound v does not exceed. */
static inline size_t bucket(const uint64_t *le, size_t n, uint64_t v)
{
    size_t i = 0;
    while (i < n && v > le[i])
        i++;
    return i;
}

static inline void hist_add(hist_t *h, uint64_t v, int own)
{
    add(&h->n[bucket(size_le, NSIZE, v)], 1, own);
    if (v) /* most requests have no body: their sum stays as it is */
        add(&h->sum, (long)v, own);
}

/* The cell of (route, method) in this thread's shard, made on first use; NULL without memory. */
static cell_t *cell_of(struct http_metrics *m, int key)
{
    shard_t *sh = &m->shards[my_shard];
    _Atomic(cell_t *) *cells =
        claim((void *_Atomic *)&sh->cells, sizeof(cell_t *) * (ROUTES_MAX + 1) * NMETH);
    return cells ? claim((void *_Atomic *)&cells[key], sizeof(cell_t)) : NULL;
}

/* One request into its cell. Inlined twice, for an owner and for a sharer, so that the owner's
 * adds carry no test: with the cell cache and the integer bounds, recording a /json request
 * went from 157 to 115 instructions, 19 of them the clock read (callgrind). */
static inline __attribute__((always_inline)) void count(struct http_metrics *m, cell_t *c,
                                                        const roost_req_t *req, int own)
{
    int status = req->status, i;
    for (i = 0; i < NSTATUS; i++) {
        int code = atomic_load_explicit(&c->code[i], memory_order_relaxed), none = 0;
        if (code == status)
            break;
        if (!code && (atomic_compare_exchange_strong(&c->code[i], &none, status) || none == status))
            break;
    }
    if (i < NSTATUS) {
        add(&c->count[i], 1, own);
    } else {
        add(&c->other, 1, own);
        atomic_fetch_add(&m->status_over, 1); /* shared by every shard */
    }
    uint64_t ns = time_now_ns() - req->start_ns;
    add(&c->dur[bucket(dur_le_ns, NDUR, ns)], 1, own);
    add(&c->dur_ns, (long)ns, own);
    hist_add(&c->req, req->body.len, own);
    hist_add(&c->res, req->res_bytes, own);
}

/* The last cell this thread recorded into: a loop serving one route over and over finds it
 * with one compare instead of two array walks. */
static _Thread_local struct {
    unsigned gen;
    int key;
    cell_t *c;
} last;

void http_metrics_record(struct http_metrics *m, const roost_req_t *req)
{
    int id = req->route ? req->route->id : 0;
    if (id > ROUTES_MAX) {
        atomic_fetch_add(&m->over, 1); /* shared by every shard */
        return;
    }
    int key = id * NMETH + method_index(req->method);
    cell_t *c = last.c;
    if (last.gen != m->gen || last.key != key) {
        if (my_shard == ~0u) {
            unsigned n = atomic_fetch_add(&next_shard, 1);
            my_own = n < SHARDS - 1;
            my_shard = my_own ? n : SHARDS - 1;
        }
        if (!(c = cell_of(m, key)))
            return;
        last.gen = m->gen, last.key = key, last.c = c;
    }
    if (my_own)
        count(m, c, req, 1);
    else
        count(m, c, req, 0);
}

/* ---- the scrape ---- */

typedef struct {
    long codes[NSTATUS * SHARDS];
    long counts[NSTATUS * SHARDS];
    int ncodes;
    long other;
    long dur[NDUR + 1], dur_ns;
    long req[NSIZE + 1], req_sum, res[NSIZE + 1], res_sum;
    int seen;
} sum_t;

static long get(atomic_long *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

static void sum_cell(sum_t *s, cell_t *c)
{
    s->seen = 1;
    for (int i = 0; i < NSTATUS; i++) {
        int code = atomic_load_explicit(&c->code[i], memory_order_relaxed);
        if (!code)
            break;
        int k = 0;
        while (k < s->ncodes && s->codes[k] != code)
            k++;
        if (k == s->ncodes)
            s->codes[s->ncodes++] = code;
        s->counts[k] += get(&c->count[i]);
    }
    s->other += get(&c->other);
    for (size_t i = 0; i <= NDUR; i++)
        s->dur[i] += get(&c->dur[i]);
    s->dur_ns += get(&c->dur_ns);
    for (size_t i = 0; i <= NSIZE; i++) {
        s->req[i] += get(&c->req.n[i]);
        s->res[i] += get(&c->res.n[i]);
    }
    s->req_sum += get(&c->req.sum);
    s->res_sum += get(&c->res.sum);
}

/* A label value as the text format wants it: backslash, quote and newline escaped. */
static void put_label(sbuf_t *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sbuf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            sbuf_append(out, "\\n", 2);
        else
            sbuf_append(out, v, 1);
    }
}

static void put_labels(sbuf_t *out, const char *route, int meth)
{
    sbuf_append(out, "route=\"", 7);
    put_label(out, route);
    sbuf_printf(out, "\",method=\"%s\"", method_label(meth));
}

static void put_hist(sbuf_t *out, const char *name, const char *route, int meth, const long *n,
                     const uint64_t *le, double unit, size_t nle, double sum)
{
    long cum = 0;
    for (size_t i = 0; i <= nle; i++) {
        cum += n[i];
        sbuf_printf(out, "%s_bucket{", name);
        put_labels(out, route, meth);
        if (i < nle)
            sbuf_printf(out, ",le=\"%g\"} %ld\n", (double)le[i] / unit, cum);
        else
            sbuf_printf(out, ",le=\"+Inf\"} %ld\n", cum);
    }
    sbuf_printf(out, "%s_sum{", name);
    put_labels(out, route, meth);
    sbuf_printf(out, "} %.9g\n%s_count{", sum, name);
    put_labels(out, route, meth);
    sbuf_printf(out, "} %ld\n", cum);
}

enum { FAM_TOTAL, FAM_DUR, FAM_REQ, FAM_RES, NFAM };

static const char *const fam_head[NFAM] = {
    "# HELP roost_http_requests_total HTTP requests answered, by route template, method and "
    "status\n# TYPE roost_http_requests_total counter\n",
    "# HELP roost_http_request_duration_seconds Time from a request's first byte to its last "
    "answer byte\n# TYPE roost_http_request_duration_seconds histogram\n",
    "# HELP roost_http_request_size_bytes Request body bytes\n"
    "# TYPE roost_http_request_size_bytes histogram\n",
    "# HELP roost_http_response_size_bytes Response body bytes\n"
    "# TYPE roost_http_response_size_bytes histogram\n",
};

static void render_one(int fam, const sum_t *s, const char *route, int meth, sbuf_t *out)
{
    switch (fam) {
    case FAM_TOTAL:
        for (int k = 0; k < s->ncodes; k++) {
            sbuf_append(out, "roost_http_requests_total{", 26);
            put_labels(out, route, meth);
            sbuf_printf(out, ",status=\"%ld\"} %ld\n", s->codes[k], s->counts[k]);
        }
        if (s->other) {
            sbuf_append(out, "roost_http_requests_total{", 26);
            put_labels(out, route, meth);
            sbuf_printf(out, ",status=\"other\"} %ld\n", s->other);
        }
        break;
    case FAM_DUR:
        put_hist(out, "roost_http_request_duration_seconds", route, meth, s->dur, dur_le_ns, 1e9,
                 NDUR, (double)s->dur_ns / 1e9);
        break;
    case FAM_REQ:
        put_hist(out, "roost_http_request_size_bytes", route, meth, s->req, size_le, 1, NSIZE,
                 (double)s->req_sum);
        break;
    default:
        put_hist(out, "roost_http_response_size_bytes", route, meth, s->res, size_le, 1, NSIZE,
                 (double)s->res_sum);
    }
}

void http_metrics_render(struct http_metrics *m, const router_t *r, sbuf_t *out)
{
    int nroutes = router_count(r);
    if (nroutes > ROUTES_MAX)
        nroutes = ROUTES_MAX;
    /* Sum once per (route, method), then write each family whole: the text format wants a
     * family's samples together. */
    sum_t *sums = calloc((size_t)(nroutes + 1) * NMETH, sizeof *sums);
    if (!sums)
        return;
    for (int sh = 0; sh < SHARDS; sh++) {
        _Atomic(cell_t *) *cells = atomic_load_explicit(&m->shards[sh].cells, memory_order_acquire);
        for (int i = 0; cells && i < (nroutes + 1) * NMETH; i++) {
            cell_t *c = atomic_load_explicit(&cells[i], memory_order_acquire);
            if (c)
                sum_cell(&sums[i], c);
        }
    }
    for (int fam = 0; fam < NFAM; fam++) {
        sbuf_append(out, fam_head[fam], strlen(fam_head[fam]));
        for (int i = 0; i < (nroutes + 1) * NMETH; i++) {
            if (!sums[i].seen)
                continue;
            const route_t *rt = router_route(r, i / NMETH);
            render_one(fam, &sums[i], rt ? rt->path : "unmatched", i % NMETH, out);
        }
    }
    free(sums);
    sbuf_printf(out,
                "# HELP roost_http_metrics_routes_over_total Requests of routes past the %d "
                "with series\n# TYPE roost_http_metrics_routes_over_total counter\n"
                "roost_http_metrics_routes_over_total %ld\n"
                "# HELP roost_http_metrics_status_over_total Requests whose status was past the "
                "%d kept per route, counted as status=\"other\"\n"
                "# TYPE roost_http_metrics_status_over_total counter\n"
                "roost_http_metrics_status_over_total %ld\n",
                ROUTES_MAX, get(&m->over), NSTATUS, get(&m->status_over));
}
