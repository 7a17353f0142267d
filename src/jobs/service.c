/* The job queue's life with the server: created with the first job type, started once the
 * port is bound (the store on the server's own SQLite pool, crash leftovers requeued, the
 * workers and the dispatcher started), drained on SIGTERM, stopped after the loops, and its
 * gauges on /metrics. The queue is a core service and lives in the jobs layer's server slot; this
 * is the only file of jobs that knows them. */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"

/* The queue lives in the slot from the first roost_job_type until it stops (a service:
 * stopping frees it). */
static CORE_SLOT_FN(jobs_slot, .name = "jobs")

static void jobs_start(void *ud)
{
    jobs_t *j = ud;
    db_t *db = db_share_jobs(j->srv);
    int rc = db ? job_store_open(db, j->cfg->jobs.fsync, &j->store) : -EAGAIN;
    if (rc < 0) {
        log_error("jobs: cannot open the job store; jobs are disabled");
        return;
    }
    /* The node's name on the jobs it holds: the same after a restart on the same port, so
     * that the restart takes its own jobs back at once instead of after their leases. */
    char host[128] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(j->node, sizeof j->node, "%s:%d", host, j->cfg->net.port);
    j->shared = job_store_shared(j->store);
    j->lease_ms = (int64_t)(j->cfg->jobs.lease_s * 1000);
    if (j->shared)
        log_info("jobs: the queue is shared on PostgreSQL as node %s (lease %gs)", j->node,
                 j->cfg->jobs.lease_s);
    job_conn_t c;
    int n = job_store_acquire(j->store, &c) < 0 ? -EAGAIN : job_store_requeue_running(&c, j->node);
    if (n >= 0)
        job_store_release(&c);
    if (n > 0)
        log_info("jobs: %d job(s) were running at the last stop; they run again", n);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!(j->workers = job_workers_start(j, j->nworkers)) ||
        pthread_create(&j->thread, NULL, jobs_dispatcher_main, j) != 0) {
        log_error("jobs: cannot start the job threads");
        return;
    }
    j->started = 1;
}

static void jobs_drain(void *ud)
{
    jobs_t *j = ud;
    pthread_mutex_lock(&j->lock);
    atomic_store(&j->draining, 1); /* no new job starts; running ones finish */
    jobs_wake(j);
    pthread_mutex_unlock(&j->lock);
}

static void jobs_stop(void *ud)
{
    jobs_t *j = ud;
    if (j->started) {
        /* The loops have drained; running jobs had the same drain_s. Whatever still runs is
         * told to stop and goes back to pending. */
        uint64_t end = time_now_ms() + (uint64_t)(j->cfg->net.drain_s * 1000);
        for (;;) {
            pthread_mutex_lock(&j->lock);
            int busy = j->ninflight > 0 || j->done;
            pthread_mutex_unlock(&j->lock);
            if (!busy || time_now_ms() >= end)
                break;
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&j->lock);
        j->stopping = 1; /* the dispatcher tells what still runs to stop */
        jobs_wake(j);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->thread, NULL);
        job_workers_stop(j->workers);
    }
    job_store_close(j->store);
    jobs_end_watchers(j);
    strmap_free(&j->types, free);
    jobs_schedules_free(j);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    core_server_ctx_set(j->srv, jobs_slot(), NULL);
    free(j);
}

static const double run_le[JOB_RUN_NLE] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};

void jobs_type_ran(job_type_t *t, int64_t ms)
{
    int b = 0;
    while (b < JOB_RUN_NLE && (double)ms > run_le[b] * 1000)
        b++;
    atomic_fetch_add_explicit(&t->run_n[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&t->run_ms, (long)ms, memory_order_relaxed);
}

static void type_histogram(const char *name, void *value, void *ud)
{
    job_type_t *t = value;
    sbuf_t *out = ud;
    if (strpbrk(name, "\"\\\n"))
        return; /* not fit for a label value unescaped; no real type is named so */
    long cum = 0;
    for (int i = 0; i <= JOB_RUN_NLE; i++) {
        cum += atomic_load_explicit(&t->run_n[i], memory_order_relaxed);
        if (i < JOB_RUN_NLE)
            sbuf_printf(out, "roost_job_run_seconds_bucket{type=\"%s\",le=\"%g\"} %ld\n", name,
                        run_le[i], cum);
        else
            sbuf_printf(out, "roost_job_run_seconds_bucket{type=\"%s\",le=\"+Inf\"} %ld\n", name,
                        cum);
    }
    sbuf_printf(out,
                "roost_job_run_seconds_sum{type=\"%s\"} %.3f\n"
                "roost_job_run_seconds_count{type=\"%s\"} %ld\n",
                name, (double)atomic_load(&t->run_ms) / 1000, name, cum);
}

static void jobs_metrics(void *ud, sbuf_t *out)
{
    jobs_t *j = ud;
    sbuf_printf(out, "# HELP roost_job_run_seconds Run time of job attempts, by type\n"
                     "# TYPE roost_job_run_seconds histogram\n");
    strmap_each(&j->types, type_histogram, out);
    job_conn_t c;
    long counts[5];
    if (!j->store || job_store_acquire(j->store, &c) < 0)
        return;
    int rc = job_store_counts(&c, counts);
    job_store_release(&c);
    if (rc < 0)
        return;
    sbuf_printf(out, "# HELP roost_jobs Jobs in the queue by status\n# TYPE roost_jobs gauge\n");
    for (int s = 0; s < 5; s++)
        sbuf_printf(out, "roost_jobs{status=\"%s\"} %ld\n", job_status_name(s), counts[s]);
    sbuf_printf(out,
                "# HELP roost_jobs_queue_depth Jobs waiting to run\n"
                "# TYPE roost_jobs_queue_depth gauge\nroost_jobs_queue_depth %ld\n",
                counts[JOB_PENDING]);
}

jobs_t *jobs_get(roost_server_t *srv)
{
    return core_server_ctx(srv, jobs_slot());
}

jobs_t *jobs_create(roost_server_t *srv)
{
    jobs_t *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->srv = srv;
    j->cfg = roost_server_config(srv);
    j->nworkers = j->cfg->jobs.workers;
    j->max_inflight = j->cfg->jobs.workers + j->cfg->jobs.prefetch;
    pthread_mutex_init(&j->lock, NULL);
    const char *help = "Job queue events";
    j->c_submitted = roost_counter(srv, "roost_job_events_total", "event=\"submitted\"", help);
    j->c_started = roost_counter(srv, "roost_job_events_total", "event=\"started\"", help);
    j->c_completed = roost_counter(srv, "roost_job_events_total", "event=\"completed\"", help);
    j->c_failed = roost_counter(srv, "roost_job_events_total", "event=\"failed\"", help);
    j->c_retried = roost_counter(srv, "roost_job_events_total", "event=\"retried\"", help);
    j->c_cancelled = roost_counter(srv, "roost_job_events_total", "event=\"cancelled\"", help);
    j->c_run_ms = roost_counter(srv, "roost_job_run_milliseconds_total", NULL,
                                "Time spent running job attempts");
    j->c_rescued = roost_counter(srv, "roost_jobs_lease_rescued_total", NULL,
                                 "Jobs claimed again because the lease of their node expired");
    j->c_fenced =
        roost_counter(srv, "roost_jobs_fenced_total", NULL,
                      "Writes of an attempt refused: its lease had passed to another node");
    j->c_commits = roost_counter(srv, "roost_job_store_commits_total", NULL,
                                 "Transactions of the job store (each holds a batch of changes)");
    core_service_t svc = {"jobs", jobs_start, jobs_drain, jobs_stop, jobs_metrics, j};
    if (core_service_add(srv, &svc) < 0) {
        pthread_mutex_destroy(&j->lock);
        free(j);
        return NULL;
    }
    core_server_ctx_set(srv, jobs_slot(), j);
    return j;
}

int roost_job_schedule(roost_server_t *srv, const char *spec)
{
    jobs_t *j = jobs_get(srv);
    if (!j && !(j = jobs_create(srv)))
        return -ENOMEM;
    return jobs_schedule_add(j, spec);
}
