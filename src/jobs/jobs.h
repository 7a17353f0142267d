/* The jobs layer: a durable queue in the job store, one dispatcher thread that owns the store's
 * writer, and a pool of job worker threads.
 *
 * The dispatcher is the only writer. Everything that changes a job (a submission, a claim, an
 * attempt's end, progress, a cancel, a schedule's tick) reaches it through queues under one
 * mutex, and each wake-up handles everything queued in one transaction: a group commit, so
 * that 20,000 submissions a second cost a few hundred commits, not 20,000. A submission is
 * answered only after its commit; a running job is marked in the store before it starts, so a
 * crash re-runs it (attempts + 1) instead of losing it. */
#ifndef ROOST_JOBS_H
#define ROOST_JOBS_H

#include <roost/roost.h>

#include "http/http.h"
#include "store/jobstore.h"

typedef struct jobs jobs_t;

typedef struct job_type {
    roost_job_fn fn;
    roost_job_opts_t opts;
    char name[];
} job_type_t;

struct roost_job {
    pool_job_t pj;
    jobs_t *jobs;
    job_type_t *type;
    job_row_t row; /* as claimed */
    json_t *payload;
    int64_t deadline_ms; /* wall ms; 0: none */
    _Atomic int stop;    /* why it must stop: JOB_STOP_* */
    _Atomic long current, total;
    _Atomic int progress_dirty;
    json_t *result;
    char *error;
    struct roost_job *next;      /* the dispatcher's running list (dispatcher thread only) */
    struct roost_job *done_next; /* the done queue (under the jobs lock) */
};

enum { JOB_GO, JOB_STOP_CANCEL, JOB_STOP_TIMEOUT, JOB_STOP_SHUTDOWN };

/* queue.c */
jobs_t *jobs_get(roost_server_t *srv); /* created with the first job type */
/* job.c: called by the dispatcher; a worker runs the job and hands it back. */
void jobs_run_on_worker(pool_job_t *pj);
void jobs_attempt_done(jobs_t *jobs, roost_job_t *job);
void jobs_progress_changed(jobs_t *jobs);

#endif
