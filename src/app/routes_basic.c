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
    roost_respond(req, 200, "application/json", body, sizeof body - 1);
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
static const roost_schema_t item_schema = {item_fields, 4};

static void create_item(roost_req_t *req, void *ud)
{
    json_t *item = roost_req_json(req, &item_schema);
    if (!item)
        return; /* 422 sent */
    json_t *tax = json_object_get(item, "tax");
    double price = json_number_value(json_object_get(item, "price"));
    double with_tax = price + (tax && json_is_number(tax) ? json_number_value(tax) : 0.0);
    json_t *out = json_pack("{s:O,s:O,s:O,s:O,s:f}", "name", json_object_get(item, "name"),
                            "description", json_object_get(item, "description") ?: json_null(),
                            "price", json_object_get(item, "price"), "tax", tax ?: json_null(),
                            "price_with_tax", with_tax);
    json_decref(item);
    roost_respond_json(req, 200, out);
}

/* ?seconds=S for the slow handlers: a number in [0, 30], default 3; otherwise 422. */
static int slow_seconds(roost_req_t *req, double *out)
{
    roost_str_t v = roost_req_query(req, "seconds");
    *out = SLOW_DEFAULT_S;
    if (!v.ptr)
        return 0;
    char *end = NULL;
    double s = strtod(v.ptr, &end);
    const char *msg = NULL, *type = NULL;
    char text[64];
    if (v.len == 0 || *end || !isfinite(s)) {
        msg = "value is not a valid float";
        type = "type_error.float";
    } else if (s < 0) {
        msg = "ensure this value is greater than or equal to 0";
        type = "value_error.number.not_ge";
    } else if (s > SLOW_MAX_S) {
        snprintf(text, sizeof text, "ensure this value is less than or equal to %g", SLOW_MAX_S);
        msg = text;
        type = "value_error.number.not_le";
    }
    if (msg) {
        json_t *errors = json_array();
        json_array_append_new(errors, roost_error_item("query", "seconds", msg, type));
        roost_respond_422(req, errors);
        return -EINVAL;
    }
    *out = s;
    return 0;
}

static void slow_done(roost_req_t *req, void *arg)
{
    double *s = arg;
    roost_respond_json(req, 200, json_pack("{s:s,s:f}", "message", "done", "seconds", *s));
}

static void slow_async(roost_req_t *req, void *ud)
{
    double s;
    if (slow_seconds(req, &s) < 0)
        return;
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
    double s;
    if (slow_seconds(req, &s) < 0)
        return;
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
    roost_str_t v = roost_req_query(req, "ms");
    long ms = v.ptr ? strtol(v.ptr, NULL, 10) : 200;
    if (ms < 0 || ms > 10000)
        ms = 200;
    sleep_seconds((double)ms / 1000.0);
    roost_respond_json(req, 200, json_pack("{s:i}", "blocked_ms", (json_int_t)ms));
}

int app_routes_basic(roost_server_t *srv, const app_config_t *cfg)
{
    int rc = 0;
    rc |= roost_route(srv, "GET", "/healthz", healthz, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "GET", "/plaintext", plaintext, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "GET", "/json", json_hello, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "POST", "/items", create_item, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "GET", "/slow-async", slow_async, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "GET", "/slow-sync", slow_sync, NULL, ROOST_BLOCKING);
    rc |= roost_route(srv, "GET", "/metrics", metrics, NULL,
                      ROOST_BLOCKING); /* reads the job store */
    if (cfg->debug_routes)
        rc |= roost_route(srv, "GET", "/debug/block", debug_block, NULL, ROOST_LOOP);
    return rc < 0 ? -EINVAL : 0;
}
