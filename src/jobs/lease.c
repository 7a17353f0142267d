/* What the queue does when nodes share it (a job store on PostgreSQL): each job in flight holds
 * a lease renewed here while it runs; a job whose renewal changes nothing lost its lease (this
 * node stalled past it and another node claimed it) and is told to stop, its later writes
 * refused by the fencing token; the schedules run on one leader at a time. On SQLite one node
 * owns the file: none of this runs. Not the claim (store.c), not the dispatcher's loop. */
#include "jobs/jobs.h"

#include <stdlib.h>

#define LEAD_CHECK_MS 1000 /* how often the leader's lock is checked, or sought */

static int rate_of(void *ud, const char *type)
{
    jobs_t *j = ud;
    job_type_t *t = strmap_get(&j->types, type);
    return t ? t->opts.rate_per_s : 0;
}

job_claim_t jobs_claim_opts(jobs_t *j, int64_t now)
{
    return (job_claim_t){.owner = j->shared ? j->node : NULL,
                         .lease_until = j->shared ? now + j->lease_ms : 0,
                         .rate_of = rate_of,
                         .ud = j};
}

void jobs_lost(jobs_t *j, roost_job_t *job, const char *what)
{
    roost_counter_add(j->c_fenced, 1);
    if (job->lost)
        return;
    job->lost = 1;
    log_warn("jobs: task %lld: its lease expired and another node holds it; this node's %s is "
             "dropped",
             (long long)job->row.id, what);
    int go = JOB_GO;
    atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_LOST);
}

/* A third of the lease: two renewals may fail (a slow batch, a reconnect) before it lapses. */
void jobs_renew_leases(jobs_t *j, job_conn_t *c, int64_t now)
{
    if (!j->shared || now < j->next_renew_ms)
        return;
    j->next_renew_ms = now + j->lease_ms / 3;
    for (roost_job_t *job = j->inflight; job; job = job->next) {
        if (job->lost || job->handed_back)
            continue;
        int cancel = 0;
        int rc = job_store_renew(c, job->row.id, job->row.token, now + j->lease_ms, &cancel);
        if (rc == JOB_FENCED) {
            jobs_lost(j, job, "attempt");
        } else if (rc == 1 && cancel) { /* asked on another node */
            int go = JOB_GO;
            atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_CANCEL);
        }
    }
}

int jobs_lead(jobs_t *j, int64_t now)
{
    if (!j->shared)
        return 1;
    if (now < j->next_lead_ms)
        return j->leading;
    j->next_lead_ms = now + LEAD_CHECK_MS;
    int was = j->leading;
    j->leading = job_store_lead(j->store, &j->lead);
    if (j->leading != was)
        log_info("jobs: this node %s the schedules' leader",
                 j->leading ? "is now" : "is no longer");
    return j->leading;
}
