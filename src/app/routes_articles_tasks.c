/* The articles' background work at their paths: FastAPI's BackgroundTasks as after-response
 * tasks (/register, /send-notification, /process-data, /search), the task-status example over
 * the durable queue (/start-task, /task-status/{task_id}), and the Celery examples as job types
 * (/process-image, /send-bulk-emails, /encode: job_media.c and the exec type). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/routes_data.h"

/* ---- after-response tasks ---- */

static void register_user(roost_req_t *req, void *ud)
{
    const char *email = roost_req_query_str(req, "email");
    const char *name = roost_req_query_str(req, "name");
    json_t *in = json_pack("{s:s,s:s}", "username", name, "email", email);
    json_t *errors = json_array();
    json_t *prefix = json_pack("[s]", "query");
    data_check_fields(in, data_user_create, DATA_USER_FIELDS, errors, prefix);
    json_decref(prefix);
    if (json_array_size(errors) > 0) {
        json_decref(in);
        roost_respond_422(req, errors);
        return;
    }
    json_decref(errors);
    data_outcome_t o = {0};
    roost_dbconn_t *c;
    int rc = roost_db_acquire(app_data_db(), &c);
    if (rc < 0) {
        data_failed(&o, rc, NULL);
    } else {
        data_create_user(c, in, &o);
        roost_db_release(c);
    }
    json_decref(in);
    if (o.status >= 400 || !o.body) {
        data_respond(req, &o);
        return;
    }
    /* background_tasks.add_task(...) twice: they run in order, after the answer has gone */
    app_log_after_response(req, "emails.log", "welcome email to %s", email);
    app_log_after_response(req, "login_stats.log", "login stats updated for %s", email);
    roost_respond_json(req, 201,
                       json_pack("{s:s,s:o}", "message", "User registered", "user", o.body));
}

static void send_notification(roost_req_t *req, void *ud)
{
    app_log_after_response(req, "notifications.log", "notification to %s: %s",
                           roost_req_query_str(req, "email"), roost_req_query_str(req, "content"));
    roost_respond_json(req, 200,
                       json_pack("{s:s}", "message", "Notification sent in the background"));
}

/* The article's counter-example: the client waits for the "email" to go out. */
static void send_notification_sync(roost_req_t *req, void *ud)
{
    const app_config_t *cfg = ud;
    struct timespec ts = {(time_t)cfg->email_delay_s,
                          (long)((cfg->email_delay_s - (double)(time_t)cfg->email_delay_s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    app_log_after_response(req, "notifications.log", "notification to %s: %s",
                           roost_req_query_str(req, "email"), roost_req_query_str(req, "content"));
    roost_respond_json(req, 200, json_pack("{s:s}", "message", "Notification sent"));
}

static void process_data(roost_req_t *req, void *ud)
{
    app_log_after_response(req, "processed.log", "processed %s", roost_req_query_str(req, "data"));
    roost_respond_json(req, 200, json_pack("{s:s}", "message", "Processing started"));
}

static void search(roost_req_t *req, void *ud)
{
    const char *q = roost_req_query_str(req, "q");
    app_log_after_response(req, "search.log", "query %s", q);
    roost_respond_json(req, 200, json_pack("{s:s,s:[]}", "query", q, "results"));
}

/* ---- jobs: submit from the loop, answer {"task_id","status"} ---- */

static void submitted_answer(roost_req_t *req, void *arg)
{
    app_job_answer_t *s = arg;
    if (s->status >= 500 || !s->task)
        roost_respond_error(req, 503, "The task could not be stored");
    else
        roost_respond_json(req, 202,
                           json_pack("{s:O,s:O}", "task_id", json_object_get(s->task, "task_id"),
                                     "status", json_object_get(s->task, "status")));
    app_job_answer_free(s);
}

static void submitted(json_t *task, int status, void *arg)
{
    app_job_resume(arg, task, status, submitted_answer);
}

/* Validates and submits; answers 422 or, once stored, 202 {"task_id","status":"pending"}. */
static void submit(roost_req_t *req, const char *type, json_t *payload)
{
    roost_job_spec_t spec = {.type = type, .payload = payload};
    json_t *errors = json_array();
    if (roost_job_validate(roost_req_server(req), &spec, errors) < 0) {
        roost_respond_422(req, errors);
        json_decref(payload);
        return;
    }
    json_decref(errors);
    roost_req_wait(req);
    if (roost_job_submit(roost_req_server(req), &spec, submitted, req) < 0) {
        roost_respond_error(req, 503, "The task could not be queued");
        roost_req_resume(req, NULL, NULL);
    }
    json_decref(payload);
}

static void start_task(roost_req_t *req, void *ud)
{
    submit(req, "sleep",
           json_pack("{s:I,s:f}", "steps", (json_int_t)roost_req_query_int(req, "duration"),
                     "seconds", 1.0));
}

/* The article's status strings: "pending", "progress: 2/5", "completed" (or failed, cancelled). */
static void task_status(roost_req_t *req, void *ud)
{
    long long id = roost_req_param_int(req, "task_id");
    json_t *t = roost_job_get(roost_req_server(req), id);
    if (!t) {
        roost_respond_error(req, 404, "Task not found");
        return;
    }
    const char *st = json_string_value(json_object_get(t, "status"));
    json_t *p = json_object_get(t, "progress");
    char buf[64];
    if (st && !strcmp(st, "running")) {
        snprintf(buf, sizeof buf, "progress: %lld/%lld",
                 (long long)json_integer_value(json_object_get(p, "current")),
                 (long long)json_integer_value(json_object_get(p, "total")));
        st = buf;
    }
    json_t *out = json_pack("{s:I,s:s}", "task_id", (json_int_t)id, "status", st ? st : "unknown");
    if (json_object_get(t, "result") && !json_is_null(json_object_get(t, "result")))
        json_object_set(out, "result", json_object_get(t, "result"));
    json_decref(t);
    roost_respond_json(req, 200, out);
}

static void process_image(roost_req_t *req, void *ud)
{
    submit(req, "process-image", json_incref(roost_req_json_body(req)));
}

static void send_bulk_emails(roost_req_t *req, void *ud)
{
    submit(req, "bulk-email", json_incref(roost_req_json_body(req)));
}

/* An encode is the exec type running the command configured as --exec 'ffmpeg=...'. */
static void encode(roost_req_t *req, void *ud)
{
    json_t *b = roost_req_json_body(req);
    json_t *args = app_encode_args(roost_server_config(roost_req_server(req))->data.dir, b);
    if (!args) {
        json_t *errors = json_array();
        json_array_append_new(errors,
                              roost_error_item("value_error", roost_loc("body", "input_path"),
                                               json_incref(json_object_get(b, "input_path")),
                                               json_pack("{s:s}", "error", "not under --data-dir"),
                                               "Value error, paths must stay under --data-dir"));
        roost_respond_422(req, errors);
        return;
    }
    submit(req, "exec", json_pack("{s:s,s:o}", "command", "ffmpeg", "args", args));
}

static const roost_field_t register_q[] = {
    {.name = "email", .type = ROOST_T_STR, .required = 1},
    {.name = "name", .type = ROOST_T_STR, .required = 1},
};
static const roost_field_t notify_q[] = {
    {.name = "email", .type = ROOST_T_STR, .required = 1, .max_len = 254},
    {.name = "content", .type = ROOST_T_STR, .required = 1, .max_len = 10000},
};
static const roost_field_t data_q[] = {{.name = "data", .type = ROOST_T_STR, .required = 1}};
static const roost_field_t search_q[] = {{.name = "q", .type = ROOST_T_STR, .required = 1}};
static const roost_field_t duration_q[] = {APP_INT_FIELD("duration", 5, 1, 600)};
static const roost_schema_t register_schema = {.fields = register_q, .nfields = 2},
                            notify_schema = {.fields = notify_q, .nfields = 2},
                            data_schema = {.fields = data_q, .nfields = 1},
                            search_schema = {.fields = search_q, .nfields = 1},
                            duration_schema = {.fields = duration_q, .nfields = 1};

static const roost_field_t encode_f[] = {
    {.name = "input_path", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 255},
    {.name = "output_path", .type = ROOST_T_STR, .required = 1, .min_len = 1, .max_len = 255},
    {.name = "preset",
     .type = ROOST_T_STR,
     .has_default = 1,
     .def.s = "medium",
     .enum_values = app_encode_presets},
};
static const roost_schema_t encode_schema = {.fields = encode_f, .nfields = 3};

static const char *const tags_bg[] = {"articles: background work", NULL};
static const roost_route_opts_t routes[] = {
    {"POST", "/register", register_user, .flags = ROOST_BLOCKING, .tags = tags_bg,
     .query = &register_schema, .status = 201,
     .summary = "Create a user; a welcome email and login stats after the response"},
    {"POST", "/send-notification", send_notification, .tags = tags_bg, .query = &notify_schema,
     .summary = "Answer at once, send after the response"},
    {"POST", "/send-notification-sync", send_notification_sync, .flags = ROOST_BLOCKING,
     .tags = tags_bg, .query = &notify_schema, .summary = "Send, then answer (the slow way)"},
    {"POST", "/process-data", process_data, .tags = tags_bg, .query = &data_schema,
     .summary = "Process after the response"},
    {"GET", "/search", search, .tags = tags_bg, .query = &search_schema,
     .summary = "Search; the query is logged after the response"},
    {"POST", "/start-task", start_task, .tags = tags_bg, .query = &duration_schema, .status = 202,
     .summary = "A durable task of duration steps of 1 s"},
    {"GET", "/task-status/{task_id:int}", task_status, .flags = ROOST_BLOCKING, .tags = tags_bg,
     .summary = "pending, progress: i/n, completed"},
    {"POST", "/process-image", process_image, .tags = tags_bg, .body = &app_image_schema,
     .status = 202, .summary = "Resize and rotate an image under --data-dir (libvips, a job)"},
    {"POST", "/send-bulk-emails", send_bulk_emails, .tags = tags_bg, .body = &app_bulk_schema,
     .status = 202, .summary = "Emails from a template, progress after each (a job)"},
    {"POST", "/encode", encode, .tags = tags_bg, .body = &encode_schema, .status = 202,
     .summary = "ffmpeg through the exec job type, progress from -progress, cancellable"},
};

int app_routes_articles_tasks(roost_server_t *srv, const app_config_t *cfg)
{
    return app_register(srv, routes, APP_COUNT_OF(routes), (void *)cfg);
}
