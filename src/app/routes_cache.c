/* The routes that the response cache serves: the seed's GET /expensive-query (two seconds of
 * work on a worker, cached 60 s) and GET /users/{id}/profile (cached 600 s, evicted when the
 * user changes, see routes_data.c), and, with --debug-routes, routes with short windows and a
 * switch to make them fail, for the tests of stale answers and of the byte bound. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "app/routes_data.h"

#define EXPENSIVE_S 2.0

static double unix_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void expensive_query(roost_req_t *req, void *ud)
{
    sleep_ms((long)(EXPENSIVE_S * 1000)); /* the seed's time.sleep(2): a worker may block */
    roost_respond_json(
        req, 200, json_pack("{s:s,s:f}", "data", "expensive result", "computed_at", unix_now()));
}

/* ---- GET /users/{id}/profile: the user's row, on a data thread, as a profile ---- */

typedef struct {
    json_t *user; /* the row, or NULL */
    int rc;       /* the query's error, or -ENOENT */
} profile_t;

static void profile_row(roost_dbconn_t *c, int rc, void *arg)
{
    profile_t *p = arg;
    if (!c) {
        p->rc = -EAGAIN;
        return;
    }
    if (rc < 0 || (rc = roost_db_next(c)) < 0) {
        p->rc = rc;
        return;
    }
    p->rc = rc == 1 ? 0 : -ENOENT;
    if (rc == 1)
        p->user = data_user_json(c);
}

static void profile_done(roost_req_t *req, void *arg)
{
    profile_t *p = arg;
    if (p->rc == -ENOENT) {
        roost_respond_error(req, 404, "User not found");
        return;
    }
    if (p->rc < 0) {
        data_outcome_t o = {0};
        data_failed(&o, p->rc, NULL);
        data_respond(req, &o);
        return;
    }
    json_t *u = p->user;
    const char *name = json_string_value(json_object_get(u, "full_name"));
    const char *username = json_string_value(json_object_get(u, "username"));
    roost_respond_json(req, 200,
                       json_pack("{s:O,s:O,s:s,s:O,s:O,s:f}", "id", json_object_get(u, "id"),
                                 "username", json_object_get(u, "username"), "display_name",
                                 name && name[0] ? name
                                 : username      ? username
                                                 : "",
                                 "email", json_object_get(u, "email"), "is_active",
                                 json_object_get(u, "is_active"), "generated_at", unix_now()));
    json_decref(u);
}

static void user_profile(roost_req_t *req, void *ud)
{
    profile_t *p = roost_req_alloc(req, sizeof *p);
    if (!p) {
        roost_respond_error(req, 500, "Out of memory");
        return;
    }
    memset(p, 0, sizeof *p);
    roost_db_run_query(ud, req, profile_row, profile_done, p, S_USER_GET, "i",
                       roost_req_param_int(req, "id"));
}

/* ---- test-only: short windows, a failure switch, bodies of a chosen size ---- */

static atomic_int flaky_fail, flaky_delay_ms, flaky_n;

static void flaky(roost_req_t *req, void *ud)
{
    sleep_ms(atomic_load(&flaky_delay_ms));
    if (atomic_load(&flaky_fail)) {
        roost_respond_error(req, 503, "failing on purpose");
        return;
    }
    roost_respond_json(
        req, 200,
        json_pack("{s:i,s:f}", "n", (json_int_t)atomic_fetch_add(&flaky_n, 1), "at", unix_now()));
}

static void flaky_set(roost_req_t *req, void *ud)
{
    json_t *in = roost_req_json(req, NULL);
    if (!in)
        return;
    atomic_store(&flaky_fail, json_is_true(json_object_get(in, "fail")));
    atomic_store(&flaky_delay_ms, (int)json_integer_value(json_object_get(in, "delay_ms")));
    json_decref(in);
    roost_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void blob(roost_req_t *req, void *ud)
{
    char pad[1001]; /* per call: a shared lazily filled one was a race between loops (TSan) */
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    char body[2200];
    /* The same bytes every time: a second server's fill has the same ETag. */
    int n = snprintf(body, sizeof body, "{\"id\":%lld,\"pad\":\"%.1000s\"}",
                     roost_req_param_int(req, "id"), pad);
    roost_respond(req, 200, "application/json", body, (size_t)n);
}

/* {kib} KiB of bytes that differ from line to line, so that a misplaced or repeated slice of a
 * shared body shows. */
static void big(roost_req_t *req, void *ud)
{
    size_t n = (size_t)roost_req_param_int(req, "kib") * 1024;
    char *b = n ? roost_req_alloc(req, n) : NULL;
    if (n && !b) {
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        b[i] = i % 64 == 63 ? '\n' : (char)('!' + (i / 64 + i) % 90);
    roost_respond(req, 200, "text/plain", b, n);
}

static const char *const tags_cache[] = {"cache", NULL};
static const roost_middleware_t *expensive_mw[2], *profile_mw[2], *flaky_mw[2], *blob_mw[2],
    *big_mw[2];

static const roost_route_opts_t routes[] = {
    {"GET", "/expensive-query", expensive_query, .flags = ROOST_BLOCKING,
     .summary = "Two seconds of work, cached 60 s", .tags = tags_cache, .middleware = expensive_mw},
};

static const roost_route_opts_t debug_routes[] = {
    {"GET", "/debug/cache/flaky", flaky, .flags = ROOST_BLOCKING,
     .summary = "Cached 1 s, stale 1 s while revalidating, 30 s on error (test only)",
     .tags = tags_cache, .middleware = flaky_mw},
    {"POST", "/debug/cache/flaky", flaky_set, .summary = "Make it fail or slow (test only)",
     .tags = tags_cache},
    {"GET", "/debug/cache/blob/{id:int}", blob, .summary = "A 1 KB answer, cached (test only)",
     .tags = tags_cache, .middleware = blob_mw},
    {"GET", "/debug/cache/big/{kib:int}", big, .summary = "KIB KiB of text, cached (test only)",
     .tags = tags_cache, .middleware = big_mw},
};

static const roost_route_opts_t data_routes[] = {
    {"GET", "/users/{id:int}/profile", user_profile, .summary = "A user's profile, cached 600 s",
     .tags = tags_cache, .middleware = profile_mw},
};

int app_routes_cache(roost_server_t *srv, const app_config_t *cfg)
{
    expensive_mw[0] = roost_mw_cache(srv, &(roost_cache_opts_t){.ttl_s = 60});
    flaky_mw[0] = roost_mw_cache(srv, &(roost_cache_opts_t){.ttl_s = 1, .swr_s = 1, .sie_s = 30});
    blob_mw[0] = roost_mw_cache(srv, &(roost_cache_opts_t){.ttl_s = 600, .vary = "X-Tenant"});
    big_mw[0] = roost_mw_cache(srv, &(roost_cache_opts_t){.ttl_s = 600});
    if (!expensive_mw[0] || !flaky_mw[0] || !blob_mw[0] || !big_mw[0])
        return -ENOMEM;
    int rc = app_register(srv, routes, APP_COUNT_OF(routes), NULL);
    if (rc == 0 && cfg->debug_routes)
        rc = app_register(srv, debug_routes, APP_COUNT_OF(debug_routes), NULL);
    return rc;
}

int app_routes_cache_data(roost_server_t *srv, roost_db_t *db)
{
    profile_mw[0] = roost_mw_cache(srv, &(roost_cache_opts_t){.ttl_s = 600});
    if (!profile_mw[0])
        return -ENOMEM;
    return app_register(srv, data_routes, APP_COUNT_OF(data_routes), db);
}
