/* The basic endpoints: health, the two benchmark answers, FastAPI's first example (POST
 * /items), the slow handlers that show the two kinds of handler (a loop timer vs a blocked
 * worker), /metrics, and the test-only route that blocks a loop for the watchdog to catch. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"

#define SLOW_DEFAULT_S 3.0
#define SLOW_MAX_S     30.0

static void healthz(roost_req_t *req, void *ud)
{
    static const char body[] = "{\"status\":\"ok\"}";
    /* With --redis it also says whether Redis is reachable; still 200: rooms work here. */
    static const char up[] = "{\"status\":\"ok\",\"redis\":\"up\"}";
    static const char down[] = "{\"status\":\"ok\",\"redis\":\"down\"}";
    int redis = roost_redis_state(roost_req_server(req));
    if (redis < 0)
        roost_respond(req, 200, "application/json", body, sizeof body - 1);
    else if (redis)
        roost_respond(req, 200, "application/json", up, sizeof up - 1);
    else
        roost_respond(req, 200, "application/json", down, sizeof down - 1);
}

static void plaintext(roost_req_t *req, void *ud)
{
    static const char body[] = "Hello, World!";
    roost_respond(req, 200, "text/plain", body, sizeof body - 1);
}

static void json_hello(roost_req_t *req, void *ud)
{
    /* Serialized per request, as the benchmark's rules ask for /json. */
    json_t *o = json_pack("{s:s}", "message", "Hello, World!");
    roost_respond_json(req, 200, o);
}

static const roost_field_t item_fields[] = {
    {.name = "name", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 100},
    {.name = "description", .type = ROOST_T_STR, .nullable = 1},
    {.name = "price", .type = ROOST_T_NUM, .required = 1, .has_gt = 1, .gt = 0},
    {.name = "tax", .type = ROOST_T_NUM, .nullable = 1},
};
static const roost_schema_t item_schema = {.fields = item_fields, .nfields = 4};

static const roost_field_t item_out_fields[] = {
    {.name = "name", .type = ROOST_T_STR, .required = 1},
    {.name = "description", .type = ROOST_T_STR, .nullable = 1},
    {.name = "price", .type = ROOST_T_NUM, .required = 1},
    {.name = "tax", .type = ROOST_T_NUM, .nullable = 1},
    {.name = "price_with_tax", .type = ROOST_T_NUM, .required = 1},
};
static const roost_schema_t item_out_schema = {.fields = item_out_fields, .nfields = 5};

static void create_item(roost_req_t *req, void *ud)
{
    json_t *item = roost_req_json_body(req); /* validated: description and tax may be absent */
    json_t *tax = json_object_get(item, "tax");
    double price = json_number_value(json_object_get(item, "price"));
    double with_tax = price + json_number_value(tax);
    json_t *out = json_pack("{s:O,s:O,s:O,s:O,s:f}", "name", json_object_get(item, "name"),
                            "description", json_object_get(item, "description") ?: json_null(),
                            "price", json_object_get(item, "price"), "tax", tax ?: json_null(),
                            "price_with_tax", with_tax);
    roost_respond_json(req, 200, out);
}

/* ?seconds=S for the slow handlers: a number in [0, 30], default 3. */
static const roost_field_t slow_fields[] = {
    APP_NUM_FIELD("seconds", SLOW_DEFAULT_S, 0, SLOW_MAX_S),
};
static const roost_schema_t slow_schema = {.fields = slow_fields, .nfields = 1};

static void slow_done(roost_req_t *req, void *arg)
{
    double *s = arg;
    roost_respond_json(req, 200, json_pack("{s:s,s:f}", "message", "done", "seconds", *s));
}

static void slow_async(roost_req_t *req, void *ud)
{
    double s = roost_req_query_num(req, "seconds");
    double *arg = roost_req_alloc(req, sizeof *arg);
    *arg = s;
    roost_defer(req, (uint64_t)(s * 1000), slow_done, arg);
}

static void sleep_seconds(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void slow_sync(roost_req_t *req, void *ud)
{
    double s = roost_req_query_num(req, "seconds");
    sleep_seconds(s); /* a blocking call: fine here, this handler runs on a worker */
    slow_done(req, &s);
}

static void metrics(roost_req_t *req, void *ud)
{
    char *text = roost_metrics_text(roost_req_server(req));
    roost_respond(req, 200, "text/plain; version=0.0.4", text ? text : "", text ? strlen(text) : 0);
    free(text);
}

/* Test-only: the mistake the watchdog exists for, a blocking call inside a loop handler. */
static void debug_block(roost_req_t *req, void *ud)
{
    long ms = (long)roost_req_query_int(req, "ms");
    sleep_seconds((double)ms / 1000.0);
    roost_respond_json(req, 200, json_pack("{s:i}", "blocked_ms", (json_int_t)ms));
}

/* An error logged while serving: the line carries the request's trace id (test only). */
static void log_error_answer(roost_req_t *req, const char *where)
{
    roost_log("error", "debug: an error while serving \"%s\"", where);
    roost_respond_json(req, 500, json_pack("{s:s}", "detail", "logged"));
}

static void debug_log_error(roost_req_t *req, void *ud)
{
    (void)ud;
    log_error_answer(req, "a loop handler");
}

static void debug_log_error_sync(roost_req_t *req, void *ud)
{
    (void)ud;
    log_error_answer(req, "a blocking handler");
}

static const char *const tags_basic[] = {"basic", NULL};

/* The JSON answers, for the OpenAPI document. */
static const roost_field_t status_fields[] = {
    {.name = "status", .type = ROOST_T_STR, .required = 1}};
static const roost_field_t message_fields[] = {
    {.name = "message", .type = ROOST_T_STR, .required = 1}};
static const roost_schema_t status_out = {.fields = status_fields, .nfields = 1},
                            message_out = {.fields = message_fields, .nfields = 1};

static const roost_route_opts_t routes[] = {
    {"GET", "/healthz", healthz, .summary = "Health check", .tags = tags_basic,
     .response = &status_out},
    {"GET", "/plaintext", plaintext, .summary = "Hello, World! as text", .tags = tags_basic},
    {"GET", "/json", json_hello, .summary = "Hello, World! as JSON", .tags = tags_basic,
     .response = &message_out},
    {"POST", "/items", create_item, .summary = "Create an item (FastAPI's first example)",
     .tags = tags_basic, .body = &item_schema, .response = &item_out_schema},
    {"GET", "/slow-async", slow_async, .summary = "Wait on a loop timer", .tags = tags_basic,
     .query = &slow_schema},
    {"GET", "/slow-sync", slow_sync, .flags = ROOST_BLOCKING, .summary = "Sleep on a worker",
     .tags = tags_basic, .query = &slow_schema},
    /* blocking: it reads the job store */
    {"GET", "/metrics", metrics, .flags = ROOST_BLOCKING, .summary = "Prometheus metrics",
     .tags = tags_basic},
};

static const roost_field_t block_fields[] = {
    APP_INT_FIELD("ms", 200, 0, 10000),
};
static const roost_schema_t block_schema = {.fields = block_fields, .nfields = 1};
static const roost_route_opts_t debug_routes[] = {
    {"GET", "/debug/block", debug_block, .summary = "Block a loop (test only)", .tags = tags_basic,
     .query = &block_schema},
    {"GET", "/debug/log-error", debug_log_error, .summary = "Log an error (test only)",
     .tags = tags_basic},
    {"GET", "/debug/log-error-sync", debug_log_error_sync, .flags = ROOST_BLOCKING,
     .summary = "Log an error from a worker (test only)", .tags = tags_basic},
};

int app_register(roost_server_t *srv, const roost_route_opts_t *table, size_t n, void *ud)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        roost_route_opts_t o = table[i];
        o.ud = ud;
        if (roost_route_ex(srv, &o) < 0) {
            roost_log("error", "cannot register %s %s", o.method, o.path);
            rc = -EINVAL;
        }
    }
    return rc;
}

void *app_calloc(roost_req_t *req, size_t size)
{
    void *p = calloc(1, size);
    if (!p)
        roost_respond_error(req, 503, "Out of memory");
    return p;
}

void app_job_resume(roost_req_t *req, json_t *task, int status, roost_resume_fn fn)
{
    app_job_answer_t *a = malloc(sizeof *a);
    if (!a) {
        json_decref(task);
        return;
    }
    *a = (app_job_answer_t){task, status};
    roost_req_resume(req, fn, a);
}

void app_job_answer_free(app_job_answer_t *a)
{
    json_decref(a->task);
    free(a);
}

int app_routes_basic(roost_server_t *srv, const app_config_t *cfg)
{
    int rc = app_register(srv, routes, APP_COUNT_OF(routes), NULL);
    if (rc == 0 && cfg->debug_routes)
        rc = app_register(srv, debug_routes, APP_COUNT_OF(debug_routes), NULL);
    return rc;
}
