/* The queue's public calls (roost_job_* in roost.h): types, validation, submissions and cancels
 * handed to the dispatcher's queues, and blocking reads on a pooled connection. What other
 * threads hand to the dispatcher arrives here; the dispatcher itself is dispatch.c. */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int64_t jobs_now_ms(void)
{
    return (int64_t)(time_wall() * 1000);
}

void jobs_wake(jobs_t *j)
{
    j->wake = 1;
    pthread_cond_signal(&j->cond);
}

/* ---- what other threads hand to the dispatcher ---- */

void jobs_attempt_done(jobs_t *j, roost_job_t *job)
{
    pthread_mutex_lock(&j->lock);
    job->done_next = j->done;
    j->done = job;
    jobs_wake(j);
    pthread_mutex_unlock(&j->lock);
}

int jobs_may_start(jobs_t *j)
{
    return !atomic_load(&j->draining);
}

void jobs_changed(jobs_t *j)
{
    pthread_mutex_lock(&j->lock);
    jobs_wake(j); /* the dispatcher looks at every job in flight at each wake-up */
    pthread_mutex_unlock(&j->lock);
}

int roost_job_validate(roost_server_t *srv, const roost_job_spec_t *spec, json_t *errors)
{
    jobs_t *j = jobs_get(srv);
    job_type_t *t = j && spec->type ? strmap_get(&j->types, spec->type) : NULL;
    if (!t) {
        json_array_append_new(
            errors, roost_error_item("value_error", roost_loc("body", "type"),
                                     json_string(spec->type ? spec->type : ""),
                                     json_pack("{s:s}", "error", "unknown job type"), NULL));
        return -EINVAL;
    }
    size_t before = json_array_size(errors);
    if (t->opts.validate) {
        json_t *empty = json_object();
        t->opts.validate(spec->payload ? spec->payload : empty, errors, t->opts.ud);
        json_decref(empty);
    }
    return json_array_size(errors) > before ? -EINVAL : 0;
}

int roost_job_submit(roost_server_t *srv, const roost_job_spec_t *spec, roost_job_done_fn done,
                     void *arg)
{
    jobs_t *j = jobs_get(srv);
    if (!j || !spec->type || !strmap_get(&j->types, spec->type))
        return -EINVAL;
    job_submit_t *s = calloc(1, sizeof *s);
    char *payload =
        spec->payload ? json_dumps(spec->payload, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    if (!s || (spec->payload && !payload)) {
        free(s);
        free(payload);
        return -ENOMEM;
    }
    int64_t now = jobs_now_ms();
    s->row.type = spec->type;
    s->row.payload = payload ? payload : "{}";
    s->row.priority = spec->priority;
    s->row.max_retries = spec->max_retries;
    s->row.timeout_s = spec->timeout_s;
    s->row.created_ms = now;
    s->row.run_at_ms = now + (int64_t)(spec->delay_s * 1000);
    s->row.idem_key = spec->idempotency_key;
    if (spec->concurrency_key) {
        job_type_t *t = strmap_get(&j->types, spec->type);
        s->row.ckey = spec->concurrency_key;
        s->row.ckey_limit = t->opts.key_limit > 0 ? t->opts.key_limit : 1;
    }
    s->row.trace_id = roost_trace_current(); /* the submitting request's, if any */
    int rc = job_row_own(&s->row);           /* the row's copies, kept until the batch */
    free(payload);
    if (rc < 0) {
        free(s);
        return rc;
    }
    /* A copy of its own: jansson objects are not shared between threads (their reference
     * counts are atomic, but nothing else is), so each one has one owner at a time. */
    s->payload = spec->payload ? json_deep_copy(spec->payload) : NULL;
    s->done = done;
    s->arg = arg;
    pthread_mutex_lock(&j->lock);
    LIST_APPEND(j->subs, j->subs_tail, s, next);
    jobs_wake(j);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

int roost_job_cancel(roost_server_t *srv, long long id, roost_job_done_fn done, void *arg)
{
    jobs_t *j = jobs_get(srv);
    job_cancel_t *c = j ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return -ENOMEM;
    c->id = id;
    c->done = done;
    c->arg = arg;
    pthread_mutex_lock(&j->lock);
    c->next = j->cancels;
    j->cancels = c;
    jobs_wake(j);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

int roost_job_final(const char *status)
{
    int s = job_status_parse(status);
    return s == JOB_COMPLETED || s == JOB_FAILED || s == JOB_CANCELLED;
}

/* ---- reads, on the caller's thread with a pooled connection ---- */

json_t *roost_job_get(roost_server_t *srv, long long id)
{
    jobs_t *j = jobs_get(srv);
    job_conn_t c;
    if (!j || !j->store || job_store_acquire(j->store, &c) < 0)
        return NULL;
    job_row_t row;
    int found = job_store_get(&c, id, &row);
    job_store_release(&c);
    if (found != 1)
        return NULL;
    json_t *t = job_row_json(&row);
    job_row_clear(&row);
    return t;
}

json_t *roost_job_list(roost_server_t *srv, const char *status, long long before_id, int limit)
{
    jobs_t *j = jobs_get(srv);
    if (!j || !j->store || limit < 1 || limit > 1000)
        return NULL;
    job_row_t *rows = calloc((size_t)limit, sizeof *rows);
    job_conn_t c;
    if (!rows || job_store_acquire(j->store, &c) < 0) {
        free(rows);
        return NULL;
    }
    int n = job_store_list(&c, status ? job_status_parse(status) : -1, before_id, rows, limit);
    job_store_release(&c);
    json_t *items = n < 0 ? NULL : json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(items, job_row_json(&rows[i]));
        job_row_clear(&rows[i]);
    }
    free(rows);
    return items;
}

/* ---- types ---- */

int roost_job_type(roost_server_t *srv, const char *name, roost_job_fn fn,
                   const roost_job_opts_t *opts)
{
    jobs_t *j = jobs_get(srv);
    if (!j && !(j = jobs_create(srv)))
        return -ENOMEM;
    if (strmap_get(&j->types, name))
        return -EEXIST;
    size_t len = strlen(name);
    job_type_t *t = calloc(1, sizeof *t + len + 1);
    if (!t)
        return -ENOMEM;
    t->fn = fn;
    if (opts)
        t->opts = *opts;
    memcpy(t->name, name, len + 1);
    return strmap_put(&j->types, name, t) < 0 ? -ENOMEM : 0;
}

roost_server_t *roost_job_server(const roost_job_t *job)
{
    return job->jobs->srv;
}
