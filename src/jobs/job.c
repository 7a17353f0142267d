/* What a job function sees: its progress, its stop flag, sleeping that wakes on a stop, and its
 * error. Runs on job worker threads; it talks to the dispatcher only through atomics and the
 * dispatcher's queues. */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void jobs_run_on_worker(jobs_t *jobs, roost_job_t *job)
{
    job->started_ms = (int64_t)(time_wall() * 1000);
    if (job->row.timeout_s > 0)
        job->deadline_ms = job->started_ms + (int64_t)(job->row.timeout_s * 1000);
    int reserved = JOB_PHASE_RESERVED;
    int next = jobs_may_start(jobs) ? JOB_PHASE_STARTED : JOB_PHASE_DROPPED;
    if (!atomic_compare_exchange_strong(&job->phase, &reserved, next) ||
        next == JOB_PHASE_DROPPED) {
        jobs_attempt_done(jobs, job); /* cancelled or drained before it could start */
        return;
    }
    jobs_changed(jobs);
    job->payload = json_loads(job->row.payload, 0, NULL);
    if (!job->payload)
        job->payload = json_object(); /* stored by roost_job_submit: always an object */
    /* The job runs in the submitting request's trace, under a span of its own. */
    char span[17] = "";
    uint64_t t0 = time_wall_ns();
    if (job->row.trace_id)
        roost_span_new_id(span);
    roost_trace_enter(job->row.trace_id, span);
    json_t *result = job->type->fn(job, job->payload, job->type->opts.ud);
    roost_trace_enter(NULL, NULL);
    if (result == ROOST_JOB_PENDING)
        return; /* roost_job_finish ends it, elsewhere: job may already be gone */
    if (job->row.trace_id && roost_span_enabled()) {
        roost_span_t sp = {.name = "job run",
                           .trace_id = job->row.trace_id,
                           .span_id = span,
                           .kind = ROOST_SPAN_INTERNAL,
                           .start_ns = t0,
                           .end_ns = time_wall_ns(),
                           .error = job->error != NULL,
                           .attrs = {{"job.type", job->row.type}}};
        roost_span_emit(&sp);
    }
    roost_job_finish(job, result);
}

const int roost_job_pending_marker = 1;

void roost_job_finish(roost_job_t *job, json_t *result)
{
    if (job->error) {
        json_decref(result);
        result = NULL;
    } else if (!result) {
        result = json_object();
    }
    job->result = result;
    jobs_attempt_done(job->jobs, job);
}

void roost_job_abandon(roost_job_t *job)
{
    int go = JOB_GO;
    atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_SHUTDOWN);
    roost_job_finish(job, NULL);
}

void roost_job_no_retry(roost_job_t *job)
{
    job->no_retry = 1;
}

void roost_job_retry_in(roost_job_t *job, double seconds)
{
    job->retry_in_ms = seconds > 0 ? (int64_t)(seconds * 1000) : 0;
}

static int check_deadline(roost_job_t *job)
{
    if (job->deadline_ms && (int64_t)(time_wall() * 1000) >= job->deadline_ms) {
        int go = JOB_GO;
        atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_TIMEOUT);
    }
    return atomic_load(&job->stop);
}

int roost_job_stopped(roost_job_t *job)
{
    return check_deadline(job) != JOB_GO;
}

int roost_job_progress(roost_job_t *job, long current, long total)
{
    atomic_store(&job->current, current);
    atomic_store(&job->total, total);
    if (!atomic_exchange(&job->progress_dirty, 1))
        jobs_changed(job->jobs);
    return roost_job_stopped(job) ? -ECANCELED : 0;
}

int roost_job_sleep(roost_job_t *job, long ms)
{
    /* In short naps, so a cancel or a timeout is seen within 20 ms. */
    uint64_t end = time_now_ms() + (uint64_t)(ms > 0 ? ms : 0);
    for (;;) {
        if (roost_job_stopped(job))
            return -ECANCELED;
        uint64_t now = time_now_ms();
        if (now >= end)
            return 0;
        uint64_t nap = end - now < 20 ? end - now : 20;
        struct timespec ts = {0, (long)nap * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void roost_job_fail(roost_job_t *job, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(job->error);
    if (vasprintf(&job->error, fmt, ap) < 0)
        job->error = strdup("the job failed");
    va_end(ap);
}

long long roost_job_id(const roost_job_t *job)
{
    return job->row.id;
}
