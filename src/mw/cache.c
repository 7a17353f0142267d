/* The response cache as a route middleware: on_request answers a HIT or STALE from the store,
 * parks a twin of a miss on the one fill (roost_req_wait, woken by roost_req_resume), or lets
 * the request fill; on_headers stores the fill's answer, wakes its twins, adds ETag /
 * Cache-Control / X-Cache and turns a matching If-None-Match into 304. It reads the answer the
 * handler made on the request itself (http.h), so the body is hashed without a filter's copy.
 * Not the store (cache_store.c) and not the tags (etag.c). */
#include "mw/cache.h"

#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "http/http.h"

#define VARY_MAX 8
#define KEY_MAX  (16 * 1024) /* a longer target or Vary value is not cached */

/* One per server, in the cache's core slot. */
typedef struct cache_route cache_route_t;
typedef struct {
    cache_store_t *store;
    roost_counter_t *c_hit, *c_miss, *c_stale, *c_wait, *c_fill_err, *c_evict, *c_lru, *c_bytes;
    roost_counter_t *c_304, *c_revalidate;
    cache_route_t *routes; /* what roost_mw_cache made, freed with the server */
    cache_remote_t remote; /* with --redis (src/shared): the second level; lookup NULL: none */
    roost_counter_t *c_remote_hit, *c_remote_fail;
} cache_server_t;

/* Every counter of the cache, on /metrics (core_counters_register). */
static const core_counter_def_t counters[] = {
#define LOOKUP(field, result)                                                                      \
    CORE_COUNTER(cache_server_t, field, "roost_cache_lookups_total", "result=\"" result "\"",      \
                 "Response cache lookups by outcome")
#define EVICTION(field, reason)                                                                    \
    CORE_COUNTER(cache_server_t, field, "roost_cache_evictions_total", "reason=\"" reason "\"",    \
                 "Stored answers dropped")
#define COUNTER(field, name, help) CORE_COUNTER(cache_server_t, field, name, NULL, help)
    LOOKUP(c_hit, "hit"),
    LOOKUP(c_miss, "miss"),
    LOOKUP(c_stale, "stale"),
    LOOKUP(c_wait, "coalesced"),
    COUNTER(c_revalidate, "roost_cache_revalidations_total",
            "Background refills of a stale answer (stale-while-revalidate)"),
    EVICTION(c_evict, "invalidate"),
    EVICTION(c_lru, "lru"),
    COUNTER(c_fill_err, "roost_cache_fill_errors_total",
            "Fills whose answer was an error (not cached)"),
    COUNTER(c_bytes, "roost_cache_bytes",
            "Bytes the response cache holds (bound: --cache-max-bytes)"),
    COUNTER(c_304, "roost_cache_not_modified_total", "304 answers to If-None-Match"),
#undef LOOKUP
#undef EVICTION
#undef COUNTER
};

/* One per route that caches: its middleware's ud. */
struct cache_route {
    roost_middleware_t mw;
    cache_server_t *cs;
    cache_route_t *next;
    uint64_t ttl_ns, swr_ns, sie_ns;
    char max_age[32];
    char *vary; /* as given, for the Vary field */
    const char *vary_names[VARY_MAX];
    int nvary;
    char names[];
};

enum { ST_NONE, ST_SERVED, ST_FILL, ST_WAIT };

/* The per-request context (the arena's, zeroed). */
typedef struct {
    cache_waiter_t w;   /* first: the store parks it */
    cache_remote_q_t q; /* the second level's answer */
    roost_req_t *req;
    const cache_route_t *route;
    int state;
    cache_key_t key;
    rbuf_t *stale; /* a stale answer the fill may fall back on, with its window */
    uint64_t stale_stored_ns, stale_sie_until;
    rbuf_t *give; /* what the fill hands a waiter, and how it is labelled */
    uint64_t give_stored_ns;
    const char *give_label;
} cache_ctx_t;

static void *server_new(roost_server_t *srv)
{
    cache_server_t *cs = calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    cs->store = cache_store_new(roost_server_config(srv)->cache.max_bytes);
    if (!cs->store) {
        free(cs);
        return NULL;
    }
    core_counters_register(srv, cs, counters, ARRAY_LEN(counters));
    cache_store_counters(cs->store, cs->c_lru, cs->c_bytes);
    return cs;
}

static void server_free(void *ctx)
{
    cache_server_t *cs = ctx;
    for (cache_route_t *r = cs->routes, *next; r; r = next) {
        next = r->next;
        free(r->vary);
        free(r);
    }
    cache_store_free(cs->store);
    free(cs);
}

/* The cache's core slot: made on first use (roost_mw_cache, before the loops run). */
static CORE_SERVER_CTX_FN(cache_server_t, cache_server, .name = "cache", .server_new = server_new,
                          .server_free = server_free)

static uint64_t ns_of(double s)
{
    return (uint64_t)(s * 1e9);
}

/* ---- answering from a stored answer ---- */

/* The lines every 2xx answer of the route carries, made once per fill and stored with it, so
 * that a hit appends them in one copy: ETag, Cache-Control and Vary. Returns the length. */
static size_t validator_lines(const cache_route_t *r, const char *etag, char *out, size_t size)
{
    int n = snprintf(out, size, "ETag: %s\r\nCache-Control: %s\r\n%s%s%s", etag, r->max_age,
                     r->vary ? "Vary: " : "", r->vary ? r->vary : "", r->vary ? "\r\n" : "");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

/* "Age: N\r\nX-Cache: label\r\n" without printf (it was the largest part of a hit's cost). */
static void age_and_label(roost_req_t *req, uint64_t stored_ns, const char *label)
{
    char buf[64], digits[20];
    uint64_t age = (time_now_ns() - stored_ns) / 1000000000ull;
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + age % 10);
        age /= 10;
    } while (age);
    size_t n = 0, ll = strlen(label);
    memcpy(buf, "Age: ", 5);
    n = 5;
    while (nd)
        buf[n++] = digits[--nd];
    memcpy(buf + n, "\r\nX-Cache: ", 11);
    n += 11;
    memcpy(buf + n, label, ll);
    n += ll;
    memcpy(buf + n, "\r\n", 2);
    sbuf_append(&req->res_headers, buf, n + 2);
}

/* Answers req from resp (label: HIT or STALE), or 304 when If-None-Match has its tag. */
static void serve(roost_req_t *req, cache_ctx_t *ctx, const cache_route_t *r, rbuf_t *resp,
                  uint64_t stored_ns, const char *label)
{
    const cache_resp_t *cr = cache_resp(resp);
    ctx->state = ST_SERVED;
    sbuf_append(&req->res_headers, cache_resp_headers(resp), cr->headers_len);
    age_and_label(req, stored_ns, label);
    if (cr->status / 100 == 2 &&
        etag_matches(roost_req_header(req, "If-None-Match"), cache_resp_etag(resp))) {
        roost_counter_add(r->cs->c_304, 1);
        roost_respond(req, 304, NULL, NULL, 0);
        return;
    }
    /* No copy into the request: the body is written from the shared answer. */
    http_respond_shared(req, cr->status, cr->type_len ? cache_resp_type(resp) : NULL, resp,
                        (size_t)(cache_resp_body(resp) - resp->data), cr->body_len);
}

/* On a waiter's loop: the fill it waited for ended. */
static void wake(roost_req_t *req, void *arg)
{
    cache_ctx_t *ctx = arg;
    rbuf_t *resp = ctx->give;
    ctx->give = NULL;
    if (resp)
        serve(req, ctx, ctx->route, resp, ctx->give_stored_ns, ctx->give_label);
    else
        roost_respond_error(req, 503, "The cache fill this request waited for was lost");
    rbuf_unref(resp);
}

/* ---- the hooks ---- */

static void wake_all(cache_waiter_t *w, rbuf_t *give, uint64_t give_stored_ns, const char *label);
static void remote_done(roost_req_t *req, cache_remote_q_t *q);

static int make_key(roost_req_t *req, cache_ctx_t *ctx, const cache_route_t *r)
{
    roost_str_t vals[VARY_MAX];
    for (int i = 0; i < r->nvary; i++)
        vals[i] = roost_req_header(req, r->vary_names[i]);
    roost_str_t path = roost_req_path(req);
    size_t cap = path.len + req->query.len + 16;
    for (int i = 0; i < r->nvary; i++)
        cap += 1 + vals[i].len + 1;
    if (cap > KEY_MAX)
        return -E2BIG;
    char *key = roost_req_alloc(req, cap);
    if (!key)
        return -ENOMEM;
    size_t n = cache_key_make(key, cap, roost_req_method(req), path, req->query, vals, r->nvary);
    if (!n)
        return -E2BIG;
    ctx->key = (cache_key_t){key, n, path.len};
    return 0;
}

static void cache_request(roost_req_t *req, void *c, void *ud)
{
    cache_ctx_t *ctx = c;
    cache_route_t *r = ud;
    ctx->req = req;
    ctx->route = r;
    if (req->method != HTTP_GET || !req->path.ptr || make_key(req, ctx, r) < 0)
        return; /* not cacheable: the handler answers, on_headers still tags it */
    if (req->background) {
        /* The revalidation a stale hit started: the fill is this request's already. */
        ctx->state = ST_FILL;
        return;
    }
    cache_found_t f;
    switch (cache_lookup(r->cs->store, &ctx->key, time_now_ns(), &ctx->w, &f)) {
    case CACHE_HIT:
        roost_counter_add(r->cs->c_hit, 1);
        serve(req, ctx, r, f.resp, f.stored_ns, "HIT");
        rbuf_unref(f.resp);
        break;
    case CACHE_STALE:
        roost_counter_add(r->cs->c_stale, 1);
        serve(req, ctx, r, f.resp, f.stored_ns, "STALE");
        rbuf_unref(f.resp);
        break;
    case CACHE_REVALIDATE:
        /* Served stale now; the handler runs again in the background (a copy of this
         * request with no client), and its answer replaces the stale one. */
        roost_counter_add(r->cs->c_stale, 1);
        roost_counter_add(r->cs->c_revalidate, 1);
        serve(req, ctx, r, f.resp, f.stored_ns, "STALE");
        rbuf_unref(f.resp);
        if (http_req_background(req) < 0) {
            cache_waiter_t *w = cache_fill_done(r->cs->store, &ctx->key, NULL, 0, 0, 0, 0);
            wake_all(w, NULL, 0, NULL);
        }
        break;
    case CACHE_WAIT:
        /* The fill posts the wake-up to this loop, so it runs after this hook returns and the
         * wait is taken: the order is safe even if the fill ends on a worker right now. */
        roost_counter_add(r->cs->c_wait, 1);
        ctx->state = ST_WAIT;
        roost_req_wait(req);
        break;
    case CACHE_FILL:
        roost_counter_add(r->cs->c_miss, 1);
        ctx->state = ST_FILL;
        ctx->stale = f.resp;
        ctx->stale_stored_ns = f.stored_ns;
        ctx->stale_sie_until = f.sie_until_ns;
        if (r->cs->remote.lookup) {
            /* The second level first: another node may have it, or be filling it. */
            ctx->q.key = &ctx->key;
            r->cs->remote.lookup(r->cs->remote.ud, req, &ctx->q, remote_done);
        }
        break;
    }
}

/* Hands `give` (NULL: a 503) to each parked waiter, on its own loop. */
static void wake_all(cache_waiter_t *w, rbuf_t *give, uint64_t give_stored_ns, const char *label)
{
    while (w) {
        cache_waiter_t *next = w->next;
        cache_ctx_t *wc = (cache_ctx_t *)w;
        wc->give = give ? rbuf_ref(give) : NULL;
        wc->give_stored_ns = give_stored_ns;
        wc->give_label = label;
        roost_req_resume(wc->req, wake, wc);
        w = next;
    }
}

/* Ends this request's fill: stores resp (NULL: nothing) and hands `give` to every waiter. */
static void end_fill_ttl(cache_ctx_t *ctx, const cache_route_t *r, rbuf_t *resp, rbuf_t *give,
                         uint64_t give_stored_ns, const char *label, uint64_t ttl_ns)
{
    uint64_t now = time_now_ns(), fresh = now + ttl_ns;
    cache_waiter_t *w = cache_fill_done(r->cs->store, &ctx->key, resp, now, fresh,
                                        fresh + r->swr_ns, fresh + r->sie_ns);
    ctx->state = ST_SERVED;
    wake_all(w, give, give_stored_ns, label);
}

static void end_fill(cache_ctx_t *ctx, const cache_route_t *r, rbuf_t *resp, rbuf_t *give,
                     uint64_t give_stored_ns, const char *label)
{
    const cache_server_t *cs = r->cs;
    if (cs->remote.store && ctx->state == ST_FILL)
        cs->remote.store(cs->remote.ud, &ctx->key, resp, r->ttl_ns, ctx->q.locked);
    end_fill_ttl(ctx, r, resp, give, give_stored_ns, label, r->ttl_ns);
}

/* On the loop, from the second level's resume: another node's answer, or this request fills. */
static void remote_done(roost_req_t *req, cache_remote_q_t *q)
{
    cache_ctx_t *ctx = CONTAINER_OF(q, cache_ctx_t, q);
    const cache_route_t *r = ctx->route;
    if (q->result == CACHE_REMOTE_HIT) {
        roost_counter_add(r->cs->c_remote_hit, 1);
        uint64_t now = time_now_ns();
        end_fill_ttl(ctx, r, q->resp, q->resp, now, "HIT", q->ttl_left_ns);
        serve(req, ctx, r, q->resp, now, "HIT");
        rbuf_unref(q->resp);
        q->resp = NULL;
        return;
    }
    if (q->result == CACHE_REMOTE_FAIL) {
        roost_counter_add(r->cs->c_remote_fail, 1);
        if (q->fail_closed) {
            end_fill_ttl(ctx, r, NULL, NULL, 0, NULL, 0); /* the twins get a 503 too */
            roost_respond_error(req, 503,
                                "The shared cache (Redis) did not answer "
                                "(--redis-fail closed)");
            return;
        }
    }
    roost_req_continue(req); /* the handler fills, on_headers stores in both levels */
}

/* Puts a stored answer in place of the error the handler made (stale-if-error). */
static void replace_answer(roost_req_t *req, const rbuf_t *resp)
{
    const cache_resp_t *cr = cache_resp(resp);
    req->status = cr->status;
    req->res_type =
        cr->type_len ? arena_strndup(&req->arena, cache_resp_type(resp), cr->type_len) : NULL;
    req->res_headers.len = 0;
    req->res_body.len = 0;
    if (sbuf_append(&req->res_body, cache_resp_body(resp), cr->body_len) < 0)
        req->status = 503;
}

static void cache_headers(roost_req_t *req, void *c, void *ud)
{
    cache_ctx_t *ctx = c;
    cache_route_t *r = ud;
    if (ctx->state == ST_SERVED || ctx->state == ST_WAIT)
        return; /* answered from the cache (or a waiter's 500 when it never woke) */
    if (req->streamed || req->method != HTTP_GET) {
        if (ctx->state == ST_FILL)
            end_fill(ctx, r, NULL, NULL, 0, NULL);
        return;
    }
    int ok = req->status / 100 == 2;
    char etag[ETAG_SIZE], lines[512];
    size_t nlines = 0;
    if (ok) {
        etag_of(req->res_body.p, req->res_body.len, etag);
        nlines = validator_lines(r, etag, lines, sizeof lines);
    }
    if (ctx->state == ST_FILL) {
        uint64_t now = time_now_ns();
        if (ok) {
            rbuf_t *resp = cache_resp_new(req->status, req->res_type, etag, lines, req->res_body.p,
                                          req->res_body.len);
            end_fill(ctx, r, resp, resp, now, "HIT");
            rbuf_unref(resp);
        } else if (ctx->stale && req->status >= 500 && now < ctx->stale_sie_until) {
            roost_counter_add(r->cs->c_fill_err, 1);
            roost_counter_add(r->cs->c_stale, 1);
            end_fill(ctx, r, NULL, ctx->stale, ctx->stale_stored_ns, "STALE");
            replace_answer(req, ctx->stale);
            sbuf_append(&req->res_headers, cache_resp_headers(ctx->stale),
                        cache_resp(ctx->stale)->headers_len);
            age_and_label(req, ctx->stale_stored_ns, "STALE");
            return;
        } else {
            /* The error is not cached; the twins get this same answer rather than each running
             * the handler again (a failing backend would otherwise get a stampede anyway). */
            roost_counter_add(r->cs->c_fill_err, 1);
            rbuf_t *err = cache_resp_new(req->status, req->res_type, "", NULL, req->res_body.p,
                                         req->res_body.len);
            end_fill(ctx, r, NULL, err, now, "MISS");
            rbuf_unref(err);
        }
        roost_res_header(req, "X-Cache", "MISS");
    }
    if (!ok)
        return;
    sbuf_append(&req->res_headers, lines, nlines);
    if (etag_matches(roost_req_header(req, "If-None-Match"), etag)) {
        roost_counter_add(r->cs->c_304, 1);
        req->status = 304;
        req->res_body.len = 0;
    }
}

static void cache_done(roost_req_t *req, void *c, void *ud)
{
    cache_ctx_t *ctx = c;
    if (ctx->state == ST_FILL) /* no answer went through on_headers: never strand the twins */
        end_fill(ctx, ud, NULL, NULL, 0, NULL);
    rbuf_unref(ctx->stale);
    ctx->stale = NULL;
    rbuf_unref(ctx->give);
    ctx->give = NULL;
}

/* ---- the public calls ---- */

static int parse_vary(cache_route_t *r, const char *vary)
{
    char *p = r->names;
    for (const char *s = vary; *s;) {
        while (*s == ' ' || *s == ',' || *s == '\t')
            s++;
        const char *e = s;
        while (*e && *e != ',' && *e != ' ' && *e != '\t')
            e++;
        if (e == s)
            break;
        if (r->nvary == VARY_MAX)
            return -EINVAL;
        memcpy(p, s, (size_t)(e - s));
        p[e - s] = 0;
        r->vary_names[r->nvary++] = p;
        p += e - s + 1;
        s = e;
    }
    return 0;
}

/* Every route's middleware but its ud (the route). */
static const roost_middleware_t cache_mw = {
    .name = "cache",
    .ctx_size = sizeof(cache_ctx_t),
    .on_request = cache_request,
    .on_headers = cache_headers,
    .on_done = cache_done,
};

const roost_middleware_t *roost_mw_cache(roost_server_t *srv, const roost_cache_opts_t *opts)
{
    cache_server_t *cs = cache_server(srv);
    const char *vary = opts->vary ? opts->vary : "";
    /* The Vary line is stored with each answer (a 512-byte block): keep it short, one line. */
    if (!cs || !(opts->ttl_s > 0) || opts->swr_s < 0 || opts->sie_s < 0 || strlen(vary) > 256 ||
        strpbrk(vary, "\r\n"))
        return NULL;
    cache_route_t *r = calloc(1, sizeof *r + strlen(vary) + 1);
    if (!r)
        return NULL;
    if (parse_vary(r, vary) < 0 || (vary[0] && !(r->vary = strdup(vary)))) {
        free(r);
        return NULL;
    }
    r->cs = cs;
    r->ttl_ns = ns_of(opts->ttl_s);
    r->swr_ns = ns_of(opts->swr_s);
    r->sie_ns = ns_of(opts->sie_s);
    snprintf(r->max_age, sizeof r->max_age, "max-age=%lld", (long long)ceil(opts->ttl_s));
    r->mw = cache_mw;
    r->mw.ud = r;
    r->next = cs->routes;
    cs->routes = r;
    return &r->mw;
}

int cache_evict_local(roost_server_t *srv, const char *path, size_t len)
{
    cache_server_t *cs = cache_server(srv);
    if (!cs)
        return -ENOMEM;
    int n = cache_evict_path(cs->store, path, len);
    roost_counter_add(cs->c_evict, n);
    return n;
}

int roost_cache_evict(roost_server_t *srv, const char *path)
{
    cache_server_t *cs = cache_server(srv);
    if (cs && cs->remote.evict)
        cs->remote.evict(cs->remote.ud, path, strlen(path));
    return cache_evict_local(srv, path, strlen(path));
}

int cache_set_remote(roost_server_t *srv, const cache_remote_t *ops)
{
    cache_server_t *cs = cache_server(srv);
    if (!cs)
        return -ENOMEM;
    cs->c_remote_hit = roost_counter(srv, "roost_cache_lookups_total", "result=\"shared_hit\"",
                                     "Response cache lookups by outcome");
    cs->c_remote_fail = roost_counter(srv, "roost_cache_shared_failures_total", NULL,
                                      "Lookups the shared cache (Redis) did not answer in time");
    cs->remote = *ops;
    return 0;
}
