/* jobs.c: a job type of one's own on libroost's durable queue (SQLite in --data-dir). "count"
 * counts to payload.steps, a step every payload.ms, reporting its progress. POST /jobs
 * {"steps": 5} submits one (201 and the task; an Idempotency-Key header makes a retry of the
 * POST give the same job), GET /jobs/{id} reads it and GET /jobs/{id}/events
 * streams its progress as server-sent events until it is done. Run: ./jobs --port 8000 */
#include <roost/roost.h>
#include <string.h>

/* On a job worker thread. Stops early when told (cancelled, timed out, the server stops). */
static json_t *count_job(roost_job_t *job, const json_t *payload, void *ud)
{
    long steps = (long)json_integer_value(json_object_get(payload, "steps"));
    long ms = (long)json_integer_value(json_object_get(payload, "ms"));
    for (long i = 1; i <= steps; i++)
        if (roost_job_sleep(job, ms) < 0 || roost_job_progress(job, i, steps) < 0)
            return NULL; /* the result of a stopped job is not kept */
    return json_pack("{s:i}", "counted", (int)steps);
}

static void submit(roost_req_t *req, void *ud)
{
    roost_job_spec_t spec = {.type = "count", .payload = roost_req_json_body(req)};
    roost_str_t key = roost_req_header(req, "idempotency-key"); /* a retried POST: one job */
    char *k = key.ptr ? roost_req_new(req, key.len + 1) : NULL;
    if (key.ptr && !k)
        return; /* answered 500 */
    spec.idempotency_key = k ? memcpy(k, key.ptr, key.len) : NULL;
    roost_job_submit_answer(req, &spec); /* 201 and the task, once it is stored */
}

static void get_job(roost_req_t *req, void *ud) /* ROOST_BLOCKING: reads the database */
{
    json_t *task = roost_job_get(roost_req_server(req), roost_req_param_int(req, "id"));
    if (task)
        roost_respond_json(req, 200, task);
    else
        roost_respond_error(req, 404, "No such job");
}

static void job_events(roost_req_t *req, void *ud)
{
    roost_job_events(req, roost_req_param_int(req, "id"));
}

/* The payload, checked before the handler runs (a 422 when it does not fit); .ge is 0 unless
 * set. */
/* clang-format off */
static const roost_field_t count_fields[] = {
    {.name = "steps", .type = ROOST_T_INT, .required = 1, .has_ge = 1, .ge = 1, .has_le = 1, .le = 99},
    {.name = "ms", .type = ROOST_T_INT, .has_default = 1, .def.i = 100, .has_ge = 1, .has_le = 1,
     .le = 9999},
};
/* clang-format on */
static const roost_schema_t count_payload = {count_fields, 2, .forbid_extra = 1};
static const roost_route_opts_t routes[] = {
    {"POST", "/jobs", submit, .summary = "Count, as a job", .body = &count_payload, .status = 201},
    {"GET", "/jobs/{id:int}", get_job, .flags = ROOST_BLOCKING, .summary = "A job"},
    {"GET", "/jobs/{id:int}/events", job_events, .summary = "A job's progress (SSE)"},
};

int main(int argc, char **argv)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    int rc = roost_config_parse(&cfg, argc, argv); /* 1: --help or --version printed */
    roost_server_t *srv = rc == 0 ? roost_server_new(&cfg) : NULL;
    if (srv && roost_job_type(srv, "count", count_job, NULL) < 0)
        return 1;
    for (size_t i = 0; srv && i < sizeof routes / sizeof routes[0]; i++)
        if (roost_route_ex(srv, &routes[i]) < 0)
            return 1;
    return srv ? roost_run(srv) < 0 : rc < 0 ? 2 : 0;
}
