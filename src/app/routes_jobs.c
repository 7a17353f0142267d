/* The job queue over HTTP (docs/jobs-contract.md): POST /tasks, GET /tasks, GET /tasks/{id},
 * POST /tasks/{id}/cancel, GET /tasks/{id}/events (server-sent events), and the seeds'
 * background task, POST /send-notification/{email}. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"
#include "shared/shared.h"

#define IDEM_KEY_MAX 200
#define COUNT_OF(a)  (sizeof(a) / sizeof((a)[0]))

/* ---- submitting ---- */

static const roost_field_t task_fields[] = {
    {.name = "type", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 64},
    {.name = "payload", .type = ROOST_T_OBJ, .nullable = 1},
    {.name = "priority", .type = ROOST_T_INT, .has_ge = 1, .ge = -100, .has_le = 1, .le = 100},
    {.name = "delay_s", .type = ROOST_T_NUM, .has_ge = 1, .ge = 0, .has_le = 1, .le = 2592000},
    {.name = "max_retries", .type = ROOST_T_INT, .has_ge = 1, .ge = 0, .has_le = 1, .le = 100},
    {.name = "timeout_s",
     .type = ROOST_T_NUM,
     .nullable = 1,
     .has_gt = 1,
     .gt = 0,
     .has_le = 1,
     .le = 86400},
    {.name = "concurrency_key", .type = ROOST_T_STR, .nullable = 1, .min_len = 1, .max_len = 200},
};
static const roost_schema_t task_schema = {.fields = task_fields, .nfields = COUNT_OF(task_fields)};

/* A submit whose Idempotency-Key this node claimed in Redis (--redis): its first answer is
 * stored there for the other nodes before the client gets it. */
typedef struct {
    roost_req_t *req;
    json_t *task;
    int status;
    char key[];
} claimed_t;

/* On the loop: the answer the queue's thread prepared. */
static void send_reply(roost_req_t *req, void *arg)
{
    app_job_answer_t *r = arg;
    if (!roost_req_gone(req)) {
        if (r->status == 503)
            roost_respond_error(req, 503, "The task could not be stored");
        else if (r->status == 404)
            roost_respond_error(req, 404, "Task not found");
        else if (r->status == 409)
            roost_respond_json(
                req, 409,
                json_pack("{s:s,s:O}", "detail", "The task has already finished", "task", r->task));
        else {
            if (r->status == 200 && r->task && json_object_get(r->task, "task_id") &&
                roost_req_route(req) && !strcmp(roost_req_route(req), "POST /tasks")) {
                roost_res_header(req, "Idempotent-Replayed", "true");
                r->status = 201; /* a replay answers as the first request did */
            }
            roost_respond_json(req, r->status, json_incref(r->task));
        }
    }
    app_job_answer_free(r);
}

/* On the queue's thread: hand the answer (and the task, ours now) to the request's loop. */
static void reply_later(json_t *task, int status, void *arg)
{
    app_job_resume(arg, task, status, send_reply);
}

/* Redis has the first answer (or failed): now the client gets it. Any thread. */
static void claimed_stored(void *arg)
{
    claimed_t *c = arg;
    reply_later(c->task, c->status, c->req);
    free(c);
}

/* On the queue's thread, for a claimed key: the answer goes to Redis before the client, so a
 * repeat on another node after this answer always finds it. */
static void reply_claimed(json_t *task, int status, void *arg)
{
    claimed_t *c = arg;
    char *answer = task && (status == 201 || status == 200) ? json_dumps(task, JSON_COMPACT) : NULL;
    c->task = task;
    c->status = status;
    shared_idem_store(roost_req_server(c->req), c->key, answer, answer ? strlen(answer) : 0,
                      claimed_stored, c);
    free(answer);
}

static void submit(roost_req_t *req, int claimed);

/* On the loop: what Redis says of the request's Idempotency-Key. */
static void idem_verdict(roost_req_t *req, shared_idem_t verdict, const char *answer, size_t len,
                         void *arg)
{
    (void)arg;
    json_t *task;
    switch (verdict) {
    case SHARED_IDEM_CLAIMED:
    case SHARED_IDEM_OPEN:
        submit(req, verdict == SHARED_IDEM_CLAIMED);
        break;
    case SHARED_IDEM_REPLAY:
        task = json_loadb(answer, len, 0, NULL);
        if (!task) {
            roost_respond_error(req, 503,
                                "The first answer for this Idempotency-Key is unreadable");
            break;
        }
        roost_res_header(req, "Idempotent-Replayed", "true");
        roost_respond_json(req, 201, task);
        break;
    case SHARED_IDEM_BUSY:
        roost_res_header(req, "Retry-After", "1");
        roost_respond_error(req, 409,
                            "A request with this Idempotency-Key is still being processed");
        break;
    case SHARED_IDEM_CLOSED:
        roost_res_header(req, "Retry-After", "1");
        roost_respond_error(req, 503,
                            "Idempotency keys are unavailable (Redis did not answer; "
                            "--redis-fail closed)");
        break;
    }
}

static void create_task(roost_req_t *req, void *ud)
{
    submit(req, -1);
}

/* claimed -1: first pass (may ask Redis for the key); 0 or 1: after Redis's verdict. */
static void submit(roost_req_t *req, int claimed)
{
    json_t *body = roost_req_json_body(req);
    roost_str_t key = roost_req_header(req, "idempotency-key");
    json_t *errors = json_array();
    json_t *payload = json_object_get(body, "payload");
    if (key.ptr && (key.len < 1 || key.len > IDEM_KEY_MAX))
        json_array_append_new(
            errors,
            roost_error_item(key.len ? "string_too_long" : "string_too_short",
                             roost_loc("header", "Idempotency-Key"), json_stringn(key.ptr, key.len),
                             key.len ? json_pack("{s:i}", "max_length", IDEM_KEY_MAX)
                                     : json_pack("{s:i}", "min_length", 1),
                             NULL));
    json_t *empty = json_object();
    json_t *timeout = json_object_get(body, "timeout_s");
    roost_job_spec_t spec = {
        .type = json_string_value(json_object_get(body, "type")),
        .payload = json_is_object(payload) ? payload : empty,
        .priority = (int)json_integer_value(json_object_get(body, "priority")),
        .delay_s = json_number_value(json_object_get(body, "delay_s")),
        .timeout_s = json_is_number(timeout) ? json_number_value(timeout) : 0,
        .max_retries = (int)json_integer_value(json_object_get(body, "max_retries")),
        .idempotency_key = key.ptr ? roost_req_alloc(req, key.len + 1) : NULL,
        .concurrency_key = json_string_value(json_object_get(body, "concurrency_key")),
    };
    if (spec.idempotency_key) {
        memcpy((char *)spec.idempotency_key, key.ptr, key.len);
        ((char *)spec.idempotency_key)[key.len] = '\0';
    }
    if (json_array_size(errors) == 0)
        roost_job_validate(roost_req_server(req), &spec, errors);
    if (json_array_size(errors) > 0) {
        roost_respond_422(req, errors);
    } else if (claimed < 0 && spec.idempotency_key && shared_idem_on(roost_req_server(req)) &&
               shared_idem_claim(roost_req_server(req), req, spec.idempotency_key, idem_verdict,
                                 NULL) == 0) {
        json_decref(errors); /* parked: idem_verdict goes on */
    } else {
        json_decref(errors);
        claimed_t *c = claimed == 1 ? malloc(sizeof *c + strlen(spec.idempotency_key) + 1) : NULL;
        if (c) {
            c->req = req;
            strcpy(c->key, spec.idempotency_key);
        }
        roost_req_wait(req);
        if (roost_job_submit(roost_req_server(req), &spec, c ? reply_claimed : reply_later,
                             c ? (void *)c : req) < 0) {
            if (c)
                shared_idem_store(roost_req_server(req), c->key, NULL, 0, NULL, NULL);
            free(c);
            roost_respond_error(req, 503, "The task could not be queued");
            roost_req_resume(req, NULL, NULL); /* nothing will: end the wait */
        }
    }
    json_decref(empty);
}

/* ---- reading ---- */

static void get_task(roost_req_t *req, void *ud)
{
    json_t *t = roost_job_get(roost_req_server(req), roost_req_param_int(req, "id"));
    if (t)
        roost_respond_json(req, 200, t);
    else
        roost_respond_error(req, 404, "Task not found");
}

static const char *const statuses[] = {"pending", "running",   "completed",
                                       "failed",  "cancelled", NULL};
static const roost_field_t list_fields[] = {
    ROOST_PAGE_FIELDS('t', 20, 100),
    {.name = "status", .type = ROOST_T_STR, .enum_values = statuses},
};
static const roost_schema_t list_schema = {.fields = list_fields, .nfields = 3};

static void list_tasks(roost_req_t *req, void *ud)
{
    long long limit = roost_req_query_int(req, "limit");
    json_t *rows = roost_job_list(roost_req_server(req), roost_req_query_str(req, "status"),
                                  roost_req_query_int(req, "cursor"), (int)limit + 1);
    if (!rows) {
        roost_respond_error(req, 503, "The task store is not available");
        return;
    }
    roost_respond_json(req, 200, roost_page(rows, limit, 't', "task_id"));
}

/* ---- cancelling ---- */

static void cancel_task(roost_req_t *req, void *ud)
{
    roost_req_wait(req);
    if (roost_job_cancel(roost_req_server(req), roost_req_param_int(req, "id"), reply_later, req) <
        0) {
        roost_respond_error(req, 503, "Out of memory");
        roost_req_resume(req, NULL, NULL);
    }
}

/* ---- server-sent events: one event per change of a task (src/jobs/events.c) ---- */

static void task_events(roost_req_t *req, void *ud)
{
    roost_job_events(req, roost_req_param_int(req, "id"));
}

/* ---- the seeds' background task ---- */

typedef struct {
    char *path;
    char *line;
} append_t;

static int append_line(void *arg)
{
    append_t *a = arg;
    FILE *f = fopen(a->path, "a");
    if (!f)
        return -errno;
    int rc = fputs(a->line, f) < 0 ? -EIO : 0;
    if (fclose(f) != 0)
        rc = -EIO;
    return rc;
}

static void append_free(void *arg)
{
    append_t *a = arg;
    free(a->path);
    free(a->line);
    free(a);
}

void app_log_after_response(roost_req_t *req, const char *file, const char *fmt, ...)
{
    append_t *a = calloc(1, sizeof *a);
    if (!a)
        return;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int ok = vasprintf(&msg, fmt, ap) >= 0;
    va_end(ap);
    if (!ok || asprintf(&a->line, "%s %s\n", stamp, msg) < 0 ||
        asprintf(&a->path, "%s/%s", roost_server_config(roost_req_server(req))->data.dir, file) <
            0) {
        free(msg);
        append_free(a);
        return;
    }
    free(msg);
    roost_after_response(req, append_line, a, append_free);
}

static void send_notification(roost_req_t *req, void *ud)
{
    roost_str_t email = roost_req_param(req, "email");
    if (!app_email_valid(email.ptr)) {
        json_t *errors = json_array();
        json_array_append_new(
            errors, roost_error_item(
                        "value_error", roost_loc("path", "email"), json_string(email.ptr),
                        json_pack("{s:s}", "error", "value is not a valid email address"), NULL));
        roost_respond_422(req, errors);
        return;
    }
    app_log_after_response(req, "notifications.log", "notification to %s", email.ptr);
    roost_respond_json(req, 200,
                       json_pack("{s:s}", "message", "Notification sent in the background"));
}

static const char *const tags_tasks[] = {"tasks", NULL};

/* A task as the queue answers it (job_row_json), for the OpenAPI document. */
static const char *const task_states[] = {"pending", "running",   "completed",
                                          "failed",  "cancelled", NULL};
static const roost_field_t progress_fields[] = {
    {.name = "current", .type = ROOST_T_INT, .required = 1, .description = "steps done"},
    {.name = "total", .type = ROOST_T_INT, .required = 1, .description = "0: not known"},
    {.name = "percent", .type = ROOST_T_NUM, .required = 1, .description = "0 to 100"},
};
static const roost_schema_t progress_schema = {.fields = progress_fields, .nfields = 3};
static const roost_field_t task_out_fields[] = {
    {.name = "task_id", .type = ROOST_T_INT, .required = 1},
    {.name = "type", .type = ROOST_T_STR, .required = 1, .description = "the job type"},
    {.name = "payload", .type = ROOST_T_ANY, .required = 1},
    {.name = "status", .type = ROOST_T_STR, .required = 1, .enum_values = task_states},
    {.name = "priority", .type = ROOST_T_INT, .required = 1},
    {.name = "progress", .type = ROOST_T_OBJ, .required = 1, .object = &progress_schema},
    {.name = "attempts", .type = ROOST_T_INT, .required = 1},
    {.name = "max_retries", .type = ROOST_T_INT, .required = 1},
    {.name = "created_at", .type = ROOST_T_STR, .required = 1, .nullable = 1},
    {.name = "started_at", .type = ROOST_T_STR, .required = 1, .nullable = 1},
    {.name = "completed_at", .type = ROOST_T_STR, .required = 1, .nullable = 1},
    {.name = "run_at", .type = ROOST_T_STR, .required = 1, .nullable = 1},
    {.name = "result", .type = ROOST_T_ANY, .required = 1},
    {.name = "error", .type = ROOST_T_STR, .required = 1, .nullable = 1},
    {.name = "cancel_requested", .type = ROOST_T_BOOL, .required = 1},
    {.name = "trace_id", .type = ROOST_T_STR, .nullable = 1},
};
static const roost_schema_t task_out = {.fields = task_out_fields,
                                        .nfields = COUNT_OF(task_out_fields)};
static const roost_route_opts_t routes[] = {
    {"POST", "/tasks", create_task, .summary = "Submit a task", .tags = tags_tasks,
     .body = &task_schema, .status = 201, .response = &task_out},
    {"GET", "/tasks", list_tasks, .flags = ROOST_BLOCKING, .summary = "List tasks, newest first",
     .tags = tags_tasks, .query = &list_schema},
    {"GET", "/tasks/{id:int}", get_task, .flags = ROOST_BLOCKING, .summary = "A task",
     .tags = tags_tasks, .response = &task_out},
    {"POST", "/tasks/{id:int}/cancel", cancel_task, .summary = "Cancel a task", .tags = tags_tasks},
    {"GET", "/tasks/{id:int}/events", task_events, .summary = "A task's progress (SSE)",
     .tags = tags_tasks},
    {"POST", "/send-notification/{email}", send_notification,
     .summary = "Answer, then log a notification in the background", .tags = tags_tasks},
};

int app_routes_jobs(roost_server_t *srv)
{
    return app_register(srv, routes, APP_COUNT_OF(routes), NULL);
}
