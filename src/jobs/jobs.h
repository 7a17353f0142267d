/* The jobs layer: a durable queue in the job store, one dispatcher thread that owns the store's
 * writer, and job worker threads fed through a ready heap (workers.c).
 *
 * The dispatcher is the only writer. Everything that changes a job (a submission, a claim, an
 * attempt's end, progress, a cancel, a schedule's tick) reaches it through queues under one
 * mutex, and each wake-up handles everything queued in one transaction: a group commit, so
 * that 20,000 submissions a second cost a few hundred commits, not 20,000. A submission is
 * answered only after its commit. A claimed job is marked reserved in the store before a worker
 * may take it, and running (attempts + 1) at the next commit after it starts, so a crash puts it
 * back to pending and runs it again instead of losing it. */
#ifndef ROOST_JOBS_H
#define ROOST_JOBS_H

#include <roost/roost.h>

#include "http/http.h"
#include "db/jobstore.h"

typedef struct jobs jobs_t;
typedef struct job_workers job_workers_t;

typedef struct job_type {
    roost_job_fn fn;
    roost_job_opts_t opts;
    char name[];
} job_type_t;

struct roost_job {
    jobs_t *jobs;
    job_type_t *type;
    job_row_t row; /* as claimed; not changed while a worker has the job */
    json_t *payload;
    _Atomic int phase;   /* JOB_RESERVED, then JOB_STARTED by a worker or JOB_DROPPED */
    int64_t started_ms;  /* wall ms, set by the worker before phase becomes JOB_STARTED */
    int64_t deadline_ms; /* likewise; 0: none */
    int start_written;   /* the dispatcher has recorded the start */
    int handed_back;     /* the dispatcher's: back from the worker, leaving the in-flight list */
    _Atomic int stop;    /* why it must stop: JOB_STOP_* */
    _Atomic long current, total;
    _Atomic int progress_dirty;
    json_t *result;
    char *error;
    struct roost_job *next;      /* the dispatcher's running list (dispatcher thread only) */
    struct roost_job *done_next; /* the done queue (under the jobs lock) */
};

enum { JOB_GO, JOB_STOP_CANCEL, JOB_STOP_TIMEOUT, JOB_STOP_SHUTDOWN };
enum { JOB_PHASE_RESERVED, JOB_PHASE_STARTED, JOB_PHASE_DROPPED };

/* queue.c */
jobs_t *jobs_get(roost_server_t *srv); /* created with the first job type */
/* From workers to the dispatcher. */
void jobs_attempt_done(jobs_t *jobs, roost_job_t *job);
void jobs_changed(jobs_t *jobs);  /* a job started or reported progress */
int jobs_may_start(jobs_t *jobs); /* 0 once SIGTERM came: what waits stays pending */
/* job.c: on a worker, a job taken from the heap: started (unless the dispatcher dropped it
 * first), run, handed back. */
void jobs_run_on_worker(jobs_t *jobs, roost_job_t *job);
/* workers.c */
job_workers_t *job_workers_start(jobs_t *jobs, int nthreads);
/* Adds n reserved jobs to the heap, all or none (-1: no memory). */
int job_workers_push(job_workers_t *w, roost_job_t **jobs, int n);
void job_workers_stop(job_workers_t *w);

#endif
