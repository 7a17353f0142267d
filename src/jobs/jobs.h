/* The jobs layer: a durable queue in the job store (on the data layer's pool), one dispatcher
 * thread that writes it, and job worker threads fed through a ready heap (workers.c, on base's
 * tpool).
 *
 * The dispatcher is the store's only writer. Everything that changes a job (a submission, a claim,
 * an attempt's end, progress, a cancel, a schedule's tick) reaches it through queues under one
 * mutex, and each wake-up handles everything queued in one transaction: a group commit, so
 * that 20,000 submissions a second cost a few hundred commits, not 20,000. A submission is
 * answered only after its commit. A claimed job is marked reserved in the store before a worker
 * may take it, and running (attempts + 1) at the next commit after it starts, so a crash puts it
 * back to pending and runs it again instead of losing it. With the store on PostgreSQL, nodes
 * share the queue: each claim holds a lease and a fencing token (lease.c, store.h). */
#ifndef ROOST_JOBS_H
#define ROOST_JOBS_H

#include <pthread.h>
#include <roost/roost.h>

#include "base/base.h"
#include "jobs/store.h"

/* Files: queue.c (the public calls: submit, cancel, get, list, types), dispatch.c (the
 * dispatcher's loop, one helper per phase), watch.c (watchers and task rooms told of changes),
 * schedule.c (--schedule), service.c (start, drain, stop, metrics), store.c, store_sql.c and
 * task.c (the store on db/, its SQL per engine, and a row as the API shows it), lease.c (leases,
 * fencing and the schedules' leader across nodes), job.c (what a job function sees), workers.c and
 * order.c (the job workers and their ready heap). */

typedef struct jobs jobs_t;
typedef struct job_workers job_workers_t;

/* A submission waiting for the dispatcher's next commit. */
typedef struct job_submit {
    struct job_submit *next;
    job_row_t row;
    json_t *payload; /* the submitted payload (a copy), for the reply's task */
    int outcome;     /* JOB_SUBMIT_* */
    roost_job_done_fn done;
    void *arg;
} job_submit_t;

enum { JOB_SUBMIT_FAILED = -1, JOB_SUBMIT_STORED, JOB_SUBMIT_REPLAYED, JOB_SUBMIT_RESERVED };

typedef struct job_cancel {
    struct job_cancel *next;
    int64_t id;
    int status; /* the answer: 200, 404, 409 */
    roost_job_done_fn done;
    void *arg;
} job_cancel_t;

typedef struct job_watcher {
    struct job_watcher *next;
    int64_t id;
    roost_job_watch_fn fn;
    void *arg;
    int fresh;    /* not yet sent the current state */
    uint64_t sig; /* a hash of the last state sent (watch.c polls for other nodes' changes) */
} job_watcher_t;

typedef struct {
    char *type;
    char *payload;
    int64_t period_ms;
    char *key;
} job_schedule_t;

/* The ids of the tasks a batch changed, in order (repeats allowed). */
typedef struct {
    int64_t *ids;
    int n, cap;
} job_idset_t;

struct jobs {
    roost_server_t *srv;
    const roost_config_t *cfg;
    strmap_t types;
    job_workers_t *workers;
    int nworkers;
    int max_inflight; /* reserved or running at once */
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* under lock: what the dispatcher has to do */
    job_submit_t *subs, *subs_tail;
    job_cancel_t *cancels;
    roost_job_t *done;
    job_watcher_t *watchers;
    int stopping, wake;
    /* set on SIGTERM, under lock; atomic because workers read it to drop what they take */
    _Atomic int draining;
    job_store_t *store; /* shared; each batch or read checks a connection out */
    /* the dispatcher's own */
    roost_job_t *inflight; /* reserved or running */
    _Atomic int ninflight; /* written by the dispatcher, read by the stopping thread */
    int64_t next_run_ms;   /* the next due time among pending jobs, as of the last batch */
    job_schedule_t *schedules;
    int nschedules;
    /* Across nodes (a store on PostgreSQL): this node's name on the rows it holds, the lease,
     * when leases are renewed next, the schedules' leader lock and when it is checked next,
     * and ready jobs a concurrency key or a rate held back at the last claim. */
    int shared;
    char node[160];
    int64_t lease_ms, next_renew_ms, next_lead_ms, next_poll_ms;
    job_conn_t lead;
    int leading, held_back;
    roost_counter_t *c_rescued, *c_fenced;
    roost_counter_t *c_submitted, *c_started, *c_completed, *c_failed, *c_retried, *c_cancelled,
        *c_run_ms, *c_commits;
};

#define JOB_RUN_NLE 10 /* the run-time histogram's bounds (service.c) */
typedef struct job_type {
    roost_job_fn fn;
    roost_job_opts_t opts;
    /* Run time of its attempts, on /metrics: per bucket (not cumulative; the last is +Inf). */
    _Atomic long run_n[JOB_RUN_NLE + 1], run_ms;
    char name[];
} job_type_t;
/* service.c: counts one attempt's run time in its type's histogram. */
void jobs_type_ran(job_type_t *t, int64_t ms);

struct roost_job {
    jobs_t *jobs;
    job_type_t *type;
    job_row_t row; /* as claimed; not changed while a worker has the job */
    json_t *payload;
    _Atomic int phase;   /* JOB_RESERVED, then JOB_STARTED by a worker or JOB_DROPPED */
    int64_t started_ms;  /* wall ms, set by the worker before phase becomes JOB_STARTED */
    int64_t deadline_ms; /* likewise; 0: none */
    int start_written;   /* the dispatcher has recorded the start */
    int lost;            /* the dispatcher's: its token lost the job (lease expired) */
    int handed_back;     /* the dispatcher's: back from the worker, leaving the in-flight list */
    _Atomic int stop;    /* why it must stop: JOB_STOP_* */
    _Atomic long current, total;
    _Atomic int progress_dirty;
    json_t *result;
    char *error;
    int no_retry;                /* roost_job_no_retry */
    int64_t retry_in_ms;         /* roost_job_retry_in; 0: the backoff */
    struct roost_job *next;      /* the dispatcher's running list (dispatcher thread only) */
    struct roost_job *done_next; /* the done queue (under the jobs lock) */
};

/* JOB_STOP_LOST: another node holds the job now (this node's lease expired). */
enum { JOB_GO, JOB_STOP_CANCEL, JOB_STOP_TIMEOUT, JOB_STOP_SHUTDOWN, JOB_STOP_LOST };
enum { JOB_PHASE_RESERVED, JOB_PHASE_STARTED, JOB_PHASE_DROPPED };

/* queue.c */
/* From workers to the dispatcher. */
void jobs_attempt_done(jobs_t *jobs, roost_job_t *job);
void jobs_changed(jobs_t *jobs);  /* a job started or reported progress */
int jobs_may_start(jobs_t *jobs); /* 0 once SIGTERM came: what waits stays pending */
void jobs_wake(jobs_t *jobs);     /* under jobs->lock: the dispatcher has work */
int64_t jobs_now_ms(void);        /* wall clock, unix ms */
/* service.c */
jobs_t *jobs_get(roost_server_t *srv);    /* created with the first job type */
jobs_t *jobs_create(roost_server_t *srv); /* registers the service; NULL: no memory */
/* dispatch.c: the dispatcher thread */
void *jobs_dispatcher_main(void *arg);
void job_idset_add(job_idset_t *s, int64_t id); /* no memory: the change is not published */
/* watch.c, on the dispatcher with its batch's connection: new watchers get the task as it is,
 * then each changed task goes to its watchers and its room task:{id}. */
void jobs_greet_watchers(jobs_t *jobs, job_conn_t *c);
void jobs_publish(jobs_t *jobs, job_conn_t *c, const job_idset_t *changed);
void jobs_end_watchers(jobs_t *jobs); /* at stop: each is told the end (NULL) */
/* On a shared store: watched tasks that another node changed join changed. */
void jobs_poll_watchers(jobs_t *jobs, job_conn_t *c, int64_t now, job_idset_t *changed);
/* lease.c: on a shared store, leases of the jobs in flight renewed (lost ones told to stop),
 * the schedules' leader kept or sought, and a write that lost its job counted. */
void jobs_renew_leases(jobs_t *jobs, job_conn_t *c, int64_t now);
int jobs_lead(jobs_t *jobs, int64_t now);
void jobs_lost(jobs_t *jobs, roost_job_t *job, const char *what);
/* The claim's options for this node at now (owner, lease, rates). */
job_claim_t jobs_claim_opts(jobs_t *jobs, int64_t now);
/* schedule.c */
/* Adds one schedule; -EINVAL when spec is not "TYPE every 60s {payload}". Before the start. */
int jobs_schedule_add(jobs_t *jobs, const char *spec);
void jobs_schedules_run(jobs_t *jobs, job_conn_t *c, int64_t now, job_idset_t *changed);
void jobs_schedules_free(jobs_t *jobs);
/* job.c: on a worker, a job taken from the heap: started (unless the dispatcher dropped it
 * first), run, handed back. */
void jobs_run_on_worker(jobs_t *jobs, roost_job_t *job);
/* workers.c: --job-workers threads of a base tpool over the ready heap */
job_workers_t *job_workers_start(jobs_t *jobs, int nthreads);
/* Adds n reserved jobs to the heap, all or none: 0, -ENOMEM, or -EBUSY once stopping. */
int job_workers_push(job_workers_t *w, roost_job_t **jobs, int n);
void job_workers_stop(job_workers_t *w);

#endif
