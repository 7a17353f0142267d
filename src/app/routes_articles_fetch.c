/* The articles' upstream examples at their own paths, all on the loop over roost_fetch and
 * roost_fetch_all against the default upstream (the first --upstream): GET /proxy and /fetch-data
 * (one call), /concurrent-fetch (asyncio.gather of three), /concurrent-with-limit (100 calls
 * under a Semaphore(10)) and /task-group (three calls, all or nothing: a TaskGroup). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

#define LIMIT_CALLS       100
#define LIMIT_CONCURRENCY 10
#define GATHER_CALLS      3

static json_t *body_json(const roost_fetch_result_t *r)
{
    json_error_t err;
    json_t *b = json_loadb(r->body.ptr, r->body.len, JSON_DECODE_ANY, &err);
    return b ? b : json_stringn(r->body.ptr, r->body.len);
}

static const char *default_upstream(roost_req_t *req)
{
    const char *up = roost_fetch_upstream(roost_req_server(req), 0);
    if (!up)
        roost_respond_error(req, 503, "No upstream configured (--upstream)");
    return up;
}

static void one_done(roost_req_t *req, const roost_fetch_result_t *r, void *arg)
{
    if (r->error != ROOST_FETCH_OK)
        app_respond_fetch_failure(req, r);
    else
        roost_respond_json(req, r->status, body_json(r)); /* return response.json() */
}

static void one_call(roost_req_t *req, void *ud)
{
    const char *up = default_upstream(req);
    roost_fetch_opts_t o = {.upstream = up, .url = roost_req_query_str(req, "path")};
    if (up && roost_fetch(req, &o, one_done, NULL) < 0)
        roost_respond_error(req, 500, "Cannot start the upstream call");
}

/* return_exceptions=True: each result or its error, in the order of the calls. */
static void gathered(roost_req_t *req, const roost_fetch_result_t *rs, size_t n, void *arg)
{
    json_t *results = json_array();
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        if (rs[i].error == ROOST_FETCH_OK) {
            ok++;
            json_array_append_new(results, body_json(&rs[i]));
        } else {
            json_array_append_new(results, json_pack("{s:s,s:s}", "error",
                                                     roost_fetch_error_name(rs[i].error), "detail",
                                                     rs[i].error_text));
        }
    }
    roost_respond_json(req, 200,
                       json_pack("{s:o,s:I,s:I}", "results", results, "succeeded", (json_int_t)ok,
                                 "failed", (json_int_t)(n - ok)));
}

/* A TaskGroup: one failure fails the whole request (the results are not partial). */
static void all_or_nothing(roost_req_t *req, const roost_fetch_result_t *rs, size_t n, void *arg)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i].error != ROOST_FETCH_OK || rs[i].status >= 400) {
            char detail[256];
            snprintf(detail, sizeof detail, "Task %zu failed: %s", i,
                     rs[i].error == ROOST_FETCH_OK ? "upstream answered an error"
                                                   : roost_fetch_error_name(rs[i].error));
            roost_respond_error(
                req, rs[i].error == ROOST_FETCH_OK ? 502 : roost_fetch_error_status(rs[i].error),
                detail);
            return;
        }
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(results, body_json(&rs[i]));
    roost_respond_json(req, 200, json_pack("{s:o}", "results", results));
}

static void many(roost_req_t *req, size_t n, unsigned concurrency, roost_fetch_all_fn done)
{
    const char *up = default_upstream(req);
    if (!up)
        return;
    const char *path = roost_req_query_str(req, "path");
    roost_fetch_opts_t calls[LIMIT_CALLS];
    for (size_t i = 0; i < n; i++)
        calls[i] = (roost_fetch_opts_t){.upstream = up, .url = path};
    if (roost_fetch_all(req, calls, n, concurrency, done, NULL) < 0)
        roost_respond_error(req, 500, "Cannot start the upstream calls");
}

static void concurrent_fetch(roost_req_t *req, void *ud)
{
    many(req, GATHER_CALLS, 0, gathered);
}

static void concurrent_with_limit(roost_req_t *req, void *ud)
{
    many(req, LIMIT_CALLS, LIMIT_CONCURRENCY, gathered);
}

static void task_group(roost_req_t *req, void *ud)
{
    many(req, GATHER_CALLS, 0, all_or_nothing);
}

static const roost_field_t path_fields[] = {
    APP_PATH_FIELD("/json", "asked of the default upstream"),
};
static const roost_schema_t path_schema = {.fields = path_fields, .nfields = 1};

static const char *const tags_up[] = {"articles: upstream calls", NULL};
static const roost_route_opts_t routes[] = {
    {"GET", "/proxy", one_call, .tags = tags_up, .query = &path_schema,
     .summary = "await client.get(...) on the default upstream"},
    {"GET", "/fetch-data", one_call, .tags = tags_up, .query = &path_schema,
     .summary = "One call to the default upstream, on the loop"},
    {"GET", "/concurrent-fetch", concurrent_fetch, .tags = tags_up, .query = &path_schema,
     .summary = "asyncio.gather of three calls"},
    {"GET", "/concurrent-with-limit", concurrent_with_limit, .tags = tags_up, .query = &path_schema,
     .summary = "100 calls, at most 10 at once"},
    {"GET", "/task-group", task_group, .tags = tags_up, .query = &path_schema,
     .summary = "Three calls, all or nothing"},
};

int app_routes_articles_fetch(roost_server_t *srv)
{
    return app_register(srv, routes, APP_COUNT_OF(routes), NULL);
}
