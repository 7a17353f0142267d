/* The FastAPI articles' concurrency examples at their own paths: `def` handlers (ROOST_BLOCKING,
 * on a worker), `async def` ones (ROOST_LOOP with a loop timer), and a loop handler that hands its
 * CPU step to a worker (roost_req_offload). /bad-example, the mistake the articles warn about
 * (time.sleep in an async handler), exists only with --debug-routes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"

#define MIXED_MAX_ITEM 200 /* item_id * 10000 squares still fit in 64 bits */
#define CPU_ROUNDS     2000000

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- def vs async def ---- */

static void sync_endpoint(roost_req_t *req, void *ud)
{
    sleep_ms(1000); /* time.sleep(1): blocks only this worker */
    roost_respond_json(req, 200, json_pack("{s:s}", "message", "sync done"));
}

static void sync_operation(roost_req_t *req, void *ud)
{
    sleep_ms(3000);
    roost_respond_json(req, 200, json_pack("{s:s}", "result", "sync operation done"));
}

static void async_done(roost_req_t *req, void *arg)
{
    roost_respond_json(req, 200, json_pack("{s:s}", "message", "async done"));
}

static void async_endpoint(roost_req_t *req, void *ud)
{
    roost_defer(req, 1000, async_done, NULL); /* await asyncio.sleep(1) */
}

static void item_done(roost_req_t *req, void *arg)
{
    long long id = roost_req_param_int(req, "item_id");
    char name[64];
    snprintf(name, sizeof name, "Item %lld", id);
    roost_respond_json(req, 200,
                       json_pack("{s:I,s:s,s:f}", "item_id", id, "name", name, "price",
                                 (double)(id % 100) + 9.99));
}

static void read_item(roost_req_t *req, void *ud)
{
    roost_defer(req, 1000, item_done, NULL); /* simulated I/O on the loop */
}

/* ---- /mixed/{item_id}: I/O on the loop, then CPU on a worker ---- */

typedef struct {
    long long item_id;
    unsigned long long sum;
} mixed_t;

static int mixed_cpu(void *arg)
{
    mixed_t *m = arg;
    unsigned long long s = 0, n = (unsigned long long)m->item_id * 10000ULL;
    for (unsigned long long i = 0; i < n; i++)
        s += i * i;
    m->sum = s;
    return 0;
}

static void mixed_answer(roost_req_t *req, void *arg)
{
    mixed_t *m = arg;
    roost_respond_json(req, 200,
                       json_pack("{s:I,s:I}", "item_id", m->item_id, "result", (json_int_t)m->sum));
}

static void mixed_io_done(roost_req_t *req, void *arg)
{
    /* arg lives in the request's arena: nothing to free on any path */
    if (roost_req_offload(req, mixed_cpu, mixed_answer, arg) < 0 && !roost_res_status(req))
        roost_respond_error(req, 500, "Cannot start the CPU step");
}

static void mixed(roost_req_t *req, void *ud)
{
    mixed_t *m = roost_req_alloc(req, sizeof *m);
    m->item_id = roost_req_param_int(req, "item_id");
    roost_defer(req, 500, mixed_io_done, m); /* await asyncio.sleep(0.5) */
}

/* ---- CPU-heavy `def` handlers ---- */

/* The articles' heavy_computation: FNV-1a over the input, many rounds. */
static unsigned long long cpu_work(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    size_t n = strlen(s);
    for (long r = 0; r < CPU_ROUNDS; r++) {
        h ^= (unsigned char)(n ? s[r % (long)n] : (char)r);
        h *= 1099511628211ULL;
    }
    return h;
}

static void process_data(roost_req_t *req, void *ud)
{
    roost_str_t data = roost_req_param(req, "data");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", cpu_work(data.ptr));
    roost_respond_json(req, 200, json_pack("{s:s,s:s}", "data", data.ptr, "result", hex));
}

static void process_image_get(roost_req_t *req, void *ud)
{
    const char *path = roost_req_query_str(req, "file_path");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", cpu_work(path));
    roost_respond_json(req, 200, json_pack("{s:s,s:s}", "file_path", path, "result", hex));
}

/* The trap: a blocking call inside a loop handler stalls every connection of the loop. */
static void bad_example(roost_req_t *req, void *ud)
{
    sleep_ms(1000);
    roost_respond_json(req, 200, json_pack("{s:s}", "message", "this blocked the loop for 1 s"));
}

static const roost_field_t mixed_params[] = {
    {.name = "item_id",
     .type = ROOST_T_INT,
     .has_ge = 1,
     .ge = 0,
     .has_le = 1,
     .le = MIXED_MAX_ITEM},
};
static const roost_schema_t mixed_schema = {.fields = mixed_params, .nfields = 1};
static const roost_field_t image_query[] = {
    {.name = "file_path", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 1024},
};
static const roost_schema_t image_query_schema = {.fields = image_query, .nfields = 1};

static const char *const tags_conc[] = {"articles: concurrency", NULL};
static const roost_route_opts_t routes[] = {
    {"GET", "/sync", sync_endpoint, .flags = ROOST_BLOCKING, .tags = tags_conc,
     .summary = "def: time.sleep(1) on a worker"},
    {"GET", "/sync-operation", sync_operation, .flags = ROOST_BLOCKING, .tags = tags_conc,
     .summary = "def: a 3 s blocking operation on a worker"},
    {"GET", "/async", async_endpoint, .tags = tags_conc,
     .summary = "async def: asyncio.sleep(1) as a loop timer"},
    {"GET", "/mixed/{item_id:int}", mixed, .tags = tags_conc, .path_params = &mixed_schema,
     .summary = "0.5 s on the loop, then sum(i*i) on a worker"},
    {"GET", "/items/{item_id:int}", read_item, .tags = tags_conc,
     .summary = "An item after 1 s of simulated I/O on the loop"},
    {"GET", "/process/{data}", process_data, .flags = ROOST_BLOCKING, .tags = tags_conc,
     .summary = "CPU-heavy work on a worker"},
    {"GET", "/process-image", process_image_get, .flags = ROOST_BLOCKING, .tags = tags_conc,
     .query = &image_query_schema, .summary = "CPU-heavy work on a worker"},
};
static const roost_route_opts_t debug_routes[] = {
    {"GET", "/bad-example", bad_example, .tags = tags_conc,
     .summary = "Blocks its loop for 1 s (test only: the watchdog reports it)"},
};

int app_routes_articles_concurrency(roost_server_t *srv, const app_config_t *cfg)
{
    int rc = app_register(srv, routes, APP_COUNT_OF(routes), NULL);
    if (rc == 0 && cfg->debug_routes)
        rc = app_register(srv, debug_routes, APP_COUNT_OF(debug_routes), NULL);
    return rc;
}
