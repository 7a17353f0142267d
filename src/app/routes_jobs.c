/* The job queue over HTTP (docs/jobs-contract.md): POST /tasks, GET /tasks, GET /tasks/{id},
 * POST /tasks/{id}/cancel, GET /tasks/{id}/events (server-sent events), and the seeds'
 * background task, POST /send-notification/{email}. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/app.h"

#define IDEM_KEY_MAX 200
#define COUNT_OF(a)  (sizeof(a) / sizeof((a)[0]))

/* ---- submitting ---- */

static const roost_field_t task_fields[] = {
    {.name = "type", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 64},
    {.name = "payload", .type = ROOST_T_ANY, .nullable = 1},
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
};
static const roost_schema_t task_schema = {task_fields, COUNT_OF(task_fields)};

typedef struct {
    roost_req_t *req;
    json_t *task;
    int status;
} reply_t;

/* On the loop: the answer the queue's thread prepared. */
static void send_reply(roost_req_t *req, void *arg)
{
    reply_t *r = arg;
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
    json_decref(r->task);
    free(r);
    roost_req_release(req);
}

/* On the queue's thread: hand the answer (and the task, ours now) to the request's loop. */
static void reply_later(json_t *task, int status, void *arg)
{
    reply_t *r = malloc(sizeof *r);
    if (!r) {
        json_decref(task);
        return; /* the request is released when its connection ends */
    }
    r->req = arg;
    r->task = task;
    r->status = status;
    roost_req_post(r->req, send_reply, r);
}

static void create_task(roost_req_t *req, void *ud)
{
    json_t *body = roost_req_json(req, &task_schema);
    if (!body)
        return;
    roost_str_t key = roost_req_header(req, "idempotency-key");
    json_t *errors = json_array();
    json_t *payload = json_object_get(body, "payload");
    if (payload && !json_is_object(payload) && !json_is_null(payload))
        json_array_append_new(
            errors,
            roost_error_item("body", "payload", "value is not a valid dict", "type_error.dict"));
    if (key.ptr && (key.len < 1 || key.len > IDEM_KEY_MAX))
        json_array_append_new(errors,
                              roost_error_item("header", "Idempotency-Key",
                                               "must be 1-200 characters", "value_error.any_str"));
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
    };
    if (spec.idempotency_key) {
        memcpy((char *)spec.idempotency_key, key.ptr, key.len);
        ((char *)spec.idempotency_key)[key.len] = '\0';
    }
    if (json_array_size(errors) == 0)
        roost_job_validate(roost_req_server(req), &spec, errors);
    if (json_array_size(errors) > 0) {
        roost_respond_422(req, errors);
    } else {
        json_decref(errors);
        roost_req_hold(req);
        if (roost_job_submit(roost_req_server(req), &spec, reply_later, req) < 0) {
            roost_respond_error(req, 503, "The task could not be queued");
            roost_req_release(req);
        }
    }
    json_decref(empty);
    json_decref(body);
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

static void list_tasks(roost_req_t *req, void *ud)
{
    roost_str_t status = roost_req_query(req, "status"), limit_s = roost_req_query(req, "limit");
    roost_str_t cursor = roost_req_query(req, "cursor");
    json_t *errors = json_array();
    long limit = 20;
    if (limit_s.ptr) {
        char *end;
        limit = strtol(limit_s.ptr, &end, 10);
        if (!limit_s.len || *end || limit < 1 || limit > 100)
            json_array_append_new(errors, roost_error_item("query", "limit",
                                                           "must be an integer from 1 to 100",
                                                           "value_error.number"));
    }
    static const char *const statuses[] = {"pending", "running", "completed", "failed",
                                           "cancelled"};
    int known = !status.ptr;
    for (size_t i = 0; status.ptr && i < COUNT_OF(statuses); i++)
        known |= !strcmp(status.ptr, statuses[i]);
    if (!known)
        json_array_append_new(errors, roost_error_item("query", "status",
                                                       "must be pending, running, completed, "
                                                       "failed or cancelled",
                                                       "value_error.enum"));
    long long before = 0;
    if (cursor.ptr && cursor.len && (before = roost_cursor_decode('t', cursor)) < 1)
        json_array_append_new(
            errors, roost_error_item("query", "cursor", "invalid cursor", "value_error.cursor"));
    if (json_array_size(errors)) {
        roost_respond_422(req, errors);
        return;
    }
    json_decref(errors);
    json_t *items = roost_job_list(roost_req_server(req), status.ptr, before, (int)limit + 1);
    if (!items) {
        roost_respond_error(req, 503, "The task store is not available");
        return;
    }
    int more = json_array_size(items) > (size_t)limit;
    if (more)
        json_array_remove(items, (size_t)limit);
    json_t *next = json_null();
    if (more) {
        char c[ROOST_CURSOR_MAX];
        json_t *last = json_array_get(items, (size_t)limit - 1);
        roost_cursor_encode('t', (long long)json_integer_value(json_object_get(last, "task_id")),
                            c);
        next = json_string(c);
    }
    roost_respond_json(
        req, 200,
        json_pack("{s:o,s:o,s:b}", "items", items, "next_cursor", next, "has_more", more));
}

/* ---- cancelling ---- */

static void cancel_task(roost_req_t *req, void *ud)
{
    roost_req_hold(req);
    if (roost_job_cancel(roost_req_server(req), roost_req_param_int(req, "id"), reply_later, req) <
        0) {
        roost_respond_error(req, 503, "Out of memory");
        roost_req_release(req);
    }
}

/* ---- server-sent events: one event per change of a task ---- */

typedef struct {
    roost_req_t *req;
    _Atomic int refs;   /* the watcher's and one per event in flight */
    _Atomic int gone;   /* the client left: the watcher stops at its next call */
    int started, ended; /* on the loop */
    long seq;
} sse_t;

typedef struct {
    sse_t *sse;
    char *text; /* NULL: the task is unknown or the server stops */
    int final;
} sse_event_t;

static void sse_unref(sse_t *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        roost_req_release(s->req);
        free(s);
    }
}

static void sse_deliver(roost_req_t *req, void *arg)
{
    sse_event_t *e = arg;
    sse_t *s = e->sse;
    if (roost_req_gone(req)) {
        atomic_store(&s->gone, 1);
    } else if (!s->ended) {
        if (!e->text) {
            if (s->started)
                roost_stream_end(req);
            else
                roost_respond_error(req, 404, "Task not found");
            s->ended = 1;
        } else {
            if (!s->started) {
                roost_res_header(req, "Cache-Control", "no-cache");
                roost_stream_begin(req, 200, "text/event-stream");
                s->started = 1;
            }
            char head[64];
            int n = snprintf(head, sizeof head, "event: task\nid: %ld\ndata: ", ++s->seq);
            roost_stream_write(req, head, (size_t)n);
            roost_stream_write(req, e->text, strlen(e->text));
            roost_stream_write(req, "\n\n", 2);
            if (e->final) {
                roost_stream_end(req);
                s->ended = 1;
            }
        }
    }
    free(e->text);
    free(e);
    sse_unref(s);
}

/* On the queue's thread. Returns 1 to stop watching. */
static int sse_watch(json_t *task, void *arg)
{
    sse_t *s = arg;
    if (atomic_load(&s->gone)) {
        sse_unref(s);
        return 1;
    }
    sse_event_t *e = calloc(1, sizeof *e);
    if (!e)
        return 0;
    e->sse = s;
    e->text = task ? json_dumps(task, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    int final = !task || roost_job_final(json_string_value(json_object_get(task, "status")));
    e->final = final;
    atomic_fetch_add(&s->refs, 1);
    roost_req_post(s->req, sse_deliver, e); /* e is the loop's now: it may be freed already */
    if (final) {
        sse_unref(s); /* the watcher's reference */
        return 1;
    }
    return 0;
}

static void task_events(roost_req_t *req, void *ud)
{
    sse_t *s = calloc(1, sizeof *s);
    if (!s) {
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    s->req = req;
    atomic_init(&s->refs, 1);
    roost_req_hold(req);
    if (roost_job_watch(roost_req_server(req), roost_req_param_int(req, "id"), sse_watch, s) < 0) {
        roost_respond_error(req, 503, "Out of memory");
        roost_req_release(req);
        free(s);
    }
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
        json_array_append_new(errors, roost_error_item("path", "email",
                                                       "value is not a valid email address",
                                                       "value_error.email"));
        roost_respond_422(req, errors);
        return;
    }
    app_log_after_response(req, "notifications.log", "notification to %s", email.ptr);
    roost_respond_json(req, 200,
                       json_pack("{s:s}", "message", "Notification sent in the background"));
}

int app_routes_jobs(roost_server_t *srv)
{
    int rc = 0;
    rc |= roost_route(srv, "POST", "/tasks", create_task, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "GET", "/tasks", list_tasks, NULL, ROOST_BLOCKING);
    rc |= roost_route(srv, "GET", "/tasks/{id:int}", get_task, NULL, ROOST_BLOCKING);
    rc |= roost_route(srv, "POST", "/tasks/{id:int}/cancel", cancel_task, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "GET", "/tasks/{id:int}/events", task_events, NULL, ROOST_LOOP);
    rc |=
        roost_route(srv, "POST", "/send-notification/{email}", send_notification, NULL, ROOST_LOOP);
    return rc < 0 ? -EINVAL : 0;
}
