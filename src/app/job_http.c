/* The http job type: a webhook with retries, roost as a task queue for any backend. Payload
 * {"upstream": NAME, "method", "path", "headers": {name: value}, "body"}: the call runs on a loop
 * (roost_fetch_detached) while no job worker waits for it. 2xx completes with the answer's status
 * and body; 429, 5xx and failed calls are retried with the job's backoff (or the answer's
 * Retry-After); other 4xx fail at once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/app.h"

#define HTTP_JOB_MAX_HEADERS 32

static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", NULL};

static const roost_field_t http_fields[] = {
    {.name = "upstream", .type = ROOST_T_STR, .required = 1, .min_len = 1},
    {.name = "method",
     .type = ROOST_T_STR,
     .has_default = 1,
     .def.s = "GET",
     .enum_values = methods},
    {.name = "path",
     .type = ROOST_T_STR,
     .has_default = 1,
     .def.s = "/",
     .check = app_check_absolute_path},
    {.name = "headers", .type = ROOST_T_OBJ, .nullable = 1},
    {.name = "body", .type = ROOST_T_ANY, .nullable = 1},
};
static const roost_schema_t http_schema = {.fields = http_fields,
                                           .nfields = APP_COUNT_OF(http_fields)};

/* The payload's schema, then: the upstream is one of --upstream, headers are strings. */
static void http_validate(const json_t *p, json_t *errors, void *ud)
{
    roost_server_t *srv = ud;
    json_t *prefix = json_pack("[s,s]", "body", "payload");
    json_decref(roost_schema_check(&http_schema, p, prefix, errors));
    json_decref(prefix);
    const char *name = json_string_value(json_object_get(p, "upstream"));
    int known = 0;
    for (int i = 0; name && roost_fetch_upstream(srv, i); i++)
        known |= !strcmp(roost_fetch_upstream(srv, i), name);
    if (name && !known)
        json_array_append_new(
            errors,
            roost_error_item("value_error", json_pack("[s,s,s]", "body", "payload", "upstream"),
                             json_string(name), NULL,
                             "Value error, not one of the upstreams configured with --upstream"));
    const char *k;
    json_t *v;
    json_t *h = json_object_get(p, "headers");
    if (json_is_object(h) && json_object_size(h) > HTTP_JOB_MAX_HEADERS)
        json_array_append_new(errors,
                              roost_error_item("value_error",
                                               json_pack("[s,s,s]", "body", "payload", "headers"),
                                               NULL, NULL, "Value error, at most 32 headers"));
    json_object_foreach(h, k, v)
    {
        if (!json_is_string(v) || strpbrk(k, ":\r\n ") || strpbrk(json_string_value(v), "\r\n"))
            json_array_append_new(
                errors, roost_error_item("string_type",
                                         json_pack("[s,s,s,s]", "body", "payload", "headers", k),
                                         json_incref(v), NULL, NULL));
    }
}

/* Retry-After in seconds (RFC 9110 §10.2.3; an HTTP-date is left to the backoff). */
static double retry_after(roost_str_t headers)
{
    const char *p = headers.ptr, *end = headers.ptr + headers.len;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((eol ? eol : end) - p);
        if (len > 12 && !strncasecmp(p, "retry-after:", 12))
            return strtod(p + 12, NULL);
        p = eol ? eol + 1 : NULL;
    }
    return 0;
}

static void http_done(const roost_fetch_result_t *r, void *arg)
{
    roost_job_t *job = arg;
    if (r->error == ROOST_FETCH_CANCELLED) { /* the loops are stopping: run it after restart */
        roost_job_abandon(job);
        return;
    }
    if (r->error != ROOST_FETCH_OK) {
        roost_job_fail(job, "upstream call failed: %s (%s)", roost_fetch_error_name(r->error),
                       r->error_text);
        if (r->error == ROOST_FETCH_INVALID)
            roost_job_no_retry(job);
        roost_job_finish(job, NULL);
        return;
    }
    if (r->status >= 200 && r->status < 300) {
        json_t *body = json_loadb(r->body.ptr, r->body.len, JSON_DECODE_ANY, NULL);
        if (!body)
            body = json_stringn(r->body.ptr, r->body.len);
        roost_job_finish(job, json_pack("{s:i,s:o}", "status", r->status, "body", body));
        return;
    }
    roost_job_fail(job, "upstream answered %d", r->status);
    if (r->status == 429 || r->status >= 500)
        roost_job_retry_in(job, retry_after(r->headers));
    else
        roost_job_no_retry(job);
    roost_job_finish(job, NULL);
}

static json_t *http_job(roost_job_t *job, const json_t *p, void *ud)
{
    const char *lines[HTTP_JOB_MAX_HEADERS + 2] = {0};
    char *owned[HTTP_JOB_MAX_HEADERS + 1] = {0};
    int n = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(p, "headers"), k, v)
    {
        if (n == HTTP_JOB_MAX_HEADERS || asprintf(&owned[n], "%s: %s", k, json_string_value(v)) < 0)
            break;
        lines[n] = owned[n];
        n++;
    }
    json_t *b = json_object_get(p, "body");
    char *body = NULL;
    if (json_is_string(b)) {
        body = strdup(json_string_value(b));
    } else if (b && !json_is_null(b)) {
        body = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
        lines[n++] = "Content-Type: application/json";
    }
    const char *method = json_string_value(json_object_get(p, "method"));
    const char *path = json_string_value(json_object_get(p, "path"));
    roost_fetch_opts_t o = {
        .method = method ? method : "GET",
        .upstream = json_string_value(json_object_get(p, "upstream")),
        .url = path ? path : "/",
        .headers = lines,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    int rc = roost_fetch_detached(roost_job_server(job), &o, http_done, job); /* copies o */
    for (int i = 0; owned[i]; i++)
        free(owned[i]);
    free(body);
    if (rc < 0) {
        roost_job_fail(job, "cannot start the upstream call: %s", strerror(-rc));
        return NULL;
    }
    return ROOST_JOB_PENDING; /* http_done finishes it; job is not touched here again */
}

int app_job_http(roost_server_t *srv)
{
    roost_job_opts_t o = {.validate = http_validate, .ud = srv};
    return roost_job_type(srv, "http", http_job, &o);
}
