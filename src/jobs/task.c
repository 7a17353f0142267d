/* A job row in memory (its strings in one allocation) and as the API shows it: status names, ISO
 * times, progress in percent, the stored JSON texts parsed back (DESIGN.md "Jobs"). No storage
 * here (store.c), no threads. */
#include "jobs/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"

static const char *const status_names[] = {"pending", "running", "completed", "failed",
                                           "cancelled"};

const char *job_status_name(job_status_t s)
{
    if (s == JOB_RESERVED)
        s = JOB_PENDING; /* to the API, a job waits until it starts */
    return (unsigned)s < ARRAY_LEN(status_names) ? status_names[s] : "unknown";
}

int job_status_parse(const char *name)
{
    for (size_t i = 0; name && i < ARRAY_LEN(status_names); i++)
        if (!strcmp(name, status_names[i]))
            return (int)i;
    return -1;
}

int job_row_own(job_row_t *r)
{
    const char **text[] = {&r->type,     &r->payload,  &r->result, &r->error,
                           &r->idem_key, &r->trace_id, &r->ckey};
    size_t len[ARRAY_LEN(text)], size = 1; /* 1: a row without strings still owns a block */
    for (size_t i = 0; i < ARRAY_LEN(text); i++)
        size += len[i] = *text[i] ? strlen(*text[i]) + 1 : 0;
    char *at = r->texts = malloc(size);
    for (size_t i = 0; i < ARRAY_LEN(text); i++) {
        if (!at) {
            *text[i] = NULL;
        } else if (*text[i]) {
            *text[i] = memcpy(at, *text[i], len[i]);
            at += len[i];
        }
    }
    return r->texts ? 0 : -ENOMEM;
}

void job_row_clear(job_row_t *r)
{
    free(r->texts);
    memset(r, 0, sizeof *r);
}

static json_t *iso_time(int64_t ms)
{
    if (!ms)
        return json_null();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

static json_t *json_or_null(const char *text)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_null();
}

json_t *job_row_json(const job_row_t *r)
{
    return job_row_json_with(r, NULL);
}

json_t *job_row_json_with(const job_row_t *r, json_t *payload)
{
    double percent = r->progress_total > 0
                         ? 100.0 * (double)r->progress_current / (double)r->progress_total
                         : (r->status == JOB_COMPLETED ? 100.0 : 0.0);
    if (percent > 100)
        percent = 100;
    json_t *t = json_pack(
        "{s:I,s:s,s:o,s:s,s:i,s:{s:I,s:I,s:f},s:i,s:i,s:o,s:o,s:o,s:o,s:o,s:s?,s:b}", "task_id",
        (json_int_t)r->id, "type", r->type ? r->type : "", "payload",
        payload ? payload : json_or_null(r->payload), "status", job_status_name(r->status),
        "priority", r->priority, "progress", "current", (json_int_t)r->progress_current, "total",
        (json_int_t)r->progress_total, "percent", percent, "attempts", r->attempts, "max_retries",
        r->max_retries, "created_at", iso_time(r->created_ms), "started_at",
        iso_time(r->started_ms), "completed_at", iso_time(r->completed_ms), "run_at",
        iso_time(r->run_at_ms), "result", json_or_null(r->result), "error", r->error,
        "cancel_requested", r->cancel_requested);
    if (t)
        json_object_set_new(t, "trace_id", r->trace_id ? json_string(r->trace_id) : json_null());
    if (t && r->ckey)
        json_object_set_new(t, "concurrency_key", json_string(r->ckey));
    return t;
}
