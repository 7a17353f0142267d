/* The dispatcher: one thread, the store's only writer (see jobs.h for why). Each wake-up takes
 * everything queued, writes it in one transaction with the claim of ready jobs, commits, and only
 * then answers submitters, hands the reserved jobs to the workers and tells watchers.
 * jobs_dispatcher_main is that loop on one screen, one helper per phase (redis's
 * aeProcessEvents shape). Not the workers (workers.c), not the SQL (store.c). */
#include "jobs/jobs.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs/order.h"

#define IDLE_WAKE_MS 1000 /* schedules and timeouts are checked at least this often */
#define POLL_MS      200  /* shared store: other nodes' jobs and expired leases looked for */
#define HELD_BACK_MS 50   /* a key or a rate held a ready job back: the claim is tried again */

/* One wake-up's work: what was taken from the queues, and what the batch made of it. */
typedef struct {
    job_submit_t *subs;
    job_cancel_t *cancels;
    roost_job_t *done;
    int draining, stopping;
    int64_t now;
    int no_db;          /* checkouts failed in a row */
    int room;           /* more jobs that may be reserved */
    job_row_t *claimed; /* [max_inflight]: reserved in this batch, handed out after commit */
    int nclaimed;
    roost_job_t **ready; /* [max_inflight] */
    job_idset_t changed;
    job_conn_t c;
} batch_t;

void job_idset_add(job_idset_t *s, int64_t id)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        int64_t *ids = realloc(s->ids, (size_t)cap * sizeof *ids);
        if (!ids)
            return;
        s->ids = ids;
        s->cap = cap;
    }
    s->ids[s->n++] = id;
}

static int64_t backoff_ms(jobs_t *j, int attempts)
{
    uint32_t r = 0;
    RAND_bytes((unsigned char *)&r, sizeof r);
    return retry_delay_ms(j->cfg->jobs.retry_backoff_s, attempts, (double)r / 4294967295.0);
}

static void job_free(roost_job_t *job)
{
    job_row_clear(&job->row);
    json_decref(job->payload);
    json_decref(job->result);
    free(job->error);
    free(job);
}

/* A reserved job that no worker has taken yet is dropped (it never starts); 1 if it was. */
static int drop_reserved(roost_job_t *job)
{
    int reserved = JOB_PHASE_RESERVED;
    return atomic_compare_exchange_strong(&job->phase, &reserved, JOB_PHASE_DROPPED);
}

static roost_job_t *find_inflight(jobs_t *j, int64_t id)
{
    for (roost_job_t *r = j->inflight; r; r = r->next)
        if (r->row.id == id)
            return r;
    return NULL;
}

/* ---- phase 1: sleep until there is work, then take it ---- */

static void sleep_until_work(jobs_t *j)
{
    if (j->wake || j->stopping)
        return;
    int64_t now = jobs_now_ms();
    int64_t wait = j->next_run_ms <= now ? 0 : j->next_run_ms - now;
    if (j->ninflight >= j->max_inflight || j->draining || wait > IDLE_WAKE_MS)
        wait = IDLE_WAKE_MS;
    if (j->nschedules && wait > 100)
        wait = 100;
    if (j->shared && wait > POLL_MS)
        wait = POLL_MS;
    if (j->held_back && wait < HELD_BACK_MS)
        wait = HELD_BACK_MS;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (wait % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (wait > 0)
        pthread_cond_timedwait(&j->cond, &j->lock, &ts);
}

static void take_work(jobs_t *j, batch_t *b)
{
    pthread_mutex_lock(&j->lock);
    sleep_until_work(j);
    j->wake = 0;
    b->subs = j->subs;
    j->subs = j->subs_tail = NULL;
    b->cancels = j->cancels;
    j->cancels = NULL;
    b->done = j->done;
    j->done = NULL;
    b->draining = j->draining;
    b->stopping = j->stopping;
    pthread_mutex_unlock(&j->lock);
    b->now = jobs_now_ms();
    b->changed.n = 0;
    b->nclaimed = 0;
}

/* Submissions and cancels taken while there is no database are answered 503 at once (the
 * client may retry; nothing was stored). */
static void refuse_taken(batch_t *b)
{
    for (job_submit_t *s = b->subs, *next; s; s = next) {
        next = s->next;
        s->done(NULL, 503, s->arg);
        job_row_clear(&s->row);
        json_decref(s->payload);
        free(s);
    }
    b->subs = NULL;
    for (job_cancel_t *c = b->cancels, *next; c; c = next) {
        next = c->next;
        c->done(NULL, 503, c->arg);
        free(c);
    }
    b->cancels = NULL;
}

/* The batch's connection. The pool waits up to --db-pool-timeout-s; when even that fails (the
 * pool exhausted by the application's data, or PostgreSQL down: then at once), new work is
 * refused, finished attempts go back to the done queue for the next try (giving up would lose
 * them), and the dispatcher waits 200 ms. -EAGAIN: try again; -ETIMEDOUT: at the stop, 5 s
 * without a database: the dispatcher ends, and the jobs this node still holds run again
 * elsewhere once their leases expire. */
static int connect_batch(jobs_t *j, batch_t *b)
{
    if (job_store_acquire(j->store, &b->c) == 0) {
        b->no_db = 0;
        return 0;
    }
    if (b->no_db++ % 300 == 0)
        log_warn("jobs: no database connection for the dispatcher; retrying");
    refuse_taken(b);
    if (b->stopping && b->no_db > 25) {
        log_error("jobs: no database at the stop; jobs held here run again after their lease");
        return -ETIMEDOUT;
    }
    pthread_mutex_lock(&j->lock);
    for (roost_job_t *job = b->done, *next; job; job = next) {
        next = job->done_next;
        job->done_next = j->done;
        j->done = job;
    }
    b->done = NULL;
    jobs_wake(j);
    pthread_mutex_unlock(&j->lock);
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    return -EAGAIN;
}

/* ---- phase 2: in the transaction ---- */

/* The worker has the job and it started: record that (running, attempts + 1). */
static void record_start(jobs_t *j, batch_t *b, roost_job_t *job)
{
    if (job->start_written || atomic_load(&job->phase) != JOB_PHASE_STARTED)
        return;
    job->start_written = 1;
    if (job_store_start(&b->c, job->row.id, job->row.attempts + 1, job->started_ms,
                        job->row.token) == JOB_FENCED)
        jobs_lost(j, job, "start");
    roost_counter_add(j->c_started, 1);
    job_idset_add(&b->changed, job->row.id);
}

static void finish_attempt(jobs_t *j, batch_t *b, roost_job_t *job)
{
    if (atomic_load(&job->phase) == JOB_PHASE_DROPPED) {
        job_store_unreserve(&b->c, job->row.id, job->row.token); /* never started: pending
                                                                  * again, unless it was
                                                                  * cancelled meanwhile */
        return;
    }
    if (!job->start_written)
        roost_counter_add(j->c_started, 1); /* started and ended between two commits */
    int stop = atomic_load(&job->stop);
    int64_t now = jobs_now_ms();
    const job_row_t *r = &job->row;
    int attempts = r->attempts + 1;
    roost_counter_add(j->c_run_ms, (long)(now - job->started_ms));
    if (job->type)
        jobs_type_ran(job->type, now - job->started_ms);
    if (job->lost) { /* another node runs it: nothing of this attempt is written */
        jobs_lost(j, job, "result");
        return;
    }
    if (atomic_exchange(&job->progress_dirty, 0)) /* its last report, not yet written */
        job_store_progress(&b->c, r->id, atomic_load(&job->current), atomic_load(&job->total),
                           r->token);
    job_status_t status;
    const char *error = NULL;
    char *result = NULL;
    int64_t run_at = r->run_at_ms;
    if (stop == JOB_STOP_SHUTDOWN) {
        status = JOB_PENDING; /* runs again after the restart */
        run_at = now;
    } else if (stop == JOB_STOP_CANCEL) {
        status = JOB_CANCELLED;
        error = "cancelled";
        roost_counter_add(j->c_cancelled, 1);
    } else if (stop == JOB_STOP_TIMEOUT || job->error) {
        error = stop == JOB_STOP_TIMEOUT ? "timed out" : job->error;
        if (attempts <= r->max_retries && !job->no_retry) {
            status = JOB_PENDING;
            run_at = now + (job->retry_in_ms ? job->retry_in_ms : backoff_ms(j, attempts));
            roost_counter_add(j->c_retried, 1);
        } else {
            status = JOB_FAILED;
            roost_counter_add(j->c_failed, 1);
        }
    } else {
        status = JOB_COMPLETED;
        result = json_dumps(job->result, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        roost_counter_add(j->c_completed, 1);
    }
    if (job_store_end_attempt(&b->c, r->id, attempts, job->started_ms, status, result, error,
                              run_at, r->token) == JOB_FENCED)
        jobs_lost(j, job, "result");
    free(result);
    job_idset_add(&b->changed, r->id);
}

/* Finished attempts are written, and leave the in-flight list in one pass. */
static void end_attempts(jobs_t *j, batch_t *b)
{
    if (!b->done)
        return;
    for (roost_job_t *job = b->done; job; job = job->done_next) {
        job->handed_back = 1;
        finish_attempt(j, b, job);
    }
    int n = 0;
    for (roost_job_t **p = &j->inflight; *p;) {
        if ((*p)->handed_back) {
            *p = (*p)->next;
        } else {
            p = &(*p)->next;
            n++;
        }
    }
    atomic_store(&j->ninflight, n);
}

/* Jobs in flight: starts and progress written; when draining, what no worker took is dropped
 * (a worker hands it back, then it is pending). */
static void note_inflight(jobs_t *j, batch_t *b)
{
    for (roost_job_t *job = j->inflight; job; job = job->next) {
        if (b->draining || b->stopping)
            drop_reserved(job);
        record_start(j, b, job);
        if (atomic_exchange(&job->progress_dirty, 0) && !job->lost) {
            if (job_store_progress(&b->c, job->row.id, atomic_load(&job->current),
                                   atomic_load(&job->total), job->row.token) == JOB_FENCED)
                jobs_lost(j, job, "progress");
            job_idset_add(&b->changed, job->row.id);
        }
    }
}

/* When nothing stored is due, new jobs that are due now and fit in flight are stored reserved,
 * and go to the workers without a claim's read and write. */
static void store_submissions(jobs_t *j, batch_t *b)
{
    b->room = b->draining || b->stopping ? 0 : j->max_inflight - j->ninflight;
    int ndue = 0;
    for (job_submit_t *s = b->subs; s; s = s->next)
        ndue += s->row.run_at_ms <= b->now;
    int reserve_new = ndue > 0 && ndue <= b->room && job_store_next_run(&b->c) > b->now;
    job_claim_t held = jobs_claim_opts(j, b->now);
    for (job_submit_t *s = b->subs; s; s = s->next) {
        /* A key or a rate is checked by the claim: such a job waits for it. */
        job_type_t *t = strmap_get(&j->types, s->row.type);
        if (reserve_new && s->row.run_at_ms <= b->now && !s->row.ckey &&
            !(t && t->opts.rate_per_s > 0))
            s->row.status = JOB_RESERVED;
        int rc = job_store_insert_held(&b->c, &s->row, held.owner, held.lease_until);
        if (rc < 0) {
            s->outcome = JOB_SUBMIT_FAILED;
        } else if (rc == 1) {
            s->outcome = JOB_SUBMIT_REPLAYED;
        } else {
            s->outcome = s->row.status == JOB_RESERVED ? JOB_SUBMIT_RESERVED : JOB_SUBMIT_STORED;
            b->room -= s->outcome == JOB_SUBMIT_RESERVED;
            roost_counter_add(j->c_submitted, 1);
            job_idset_add(&b->changed, s->row.id);
        }
    }
}

/* A pending job, or a reserved one no worker took, is cancelled at once; a running one is told
 * to stop and the request kept on its row. */
static int cancel_one(jobs_t *j, batch_t *b, int64_t id)
{
    job_row_t row;
    if (job_store_get(&b->c, id, &row) != 1)
        return 404;
    int status = 200;
    roost_job_t *job = row.status == JOB_RESERVED ? find_inflight(j, row.id) : NULL;
    if (row.status == JOB_PENDING || (row.status == JOB_RESERVED && (!job || drop_reserved(job)))) {
        job_store_finish(&b->c, row.id, JOB_CANCELLED, NULL, "cancelled", row.run_at_ms, row.token);
        roost_counter_add(j->c_cancelled, 1);
        job_idset_add(&b->changed, row.id);
    } else if (row.status == JOB_RUNNING || row.status == JOB_RESERVED) {
        if (!job)
            job = find_inflight(j, row.id);
        if (job) {
            record_start(j, b, job); /* it started since the row was read */
            int go = JOB_GO;
            atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_CANCEL);
        }
        job_store_request_cancel(&b->c, row.id);
        job_idset_add(&b->changed, row.id);
    } else {
        status = 409;
    }
    job_row_clear(&row);
    return status;
}

static void apply_cancels(jobs_t *j, batch_t *b)
{
    for (job_cancel_t *c = b->cancels; c; c = c->next)
        c->status = cancel_one(j, b, c->id);
}

/* Up to the in-flight bound (the workers plus --job-prefetch). Reserving ahead costs some
 * priority order: a job reserved before a higher-priority one was submitted may start first
 * when the bound was reached. Within what is reserved, the heap keeps priority order. */
static void claim_ready(jobs_t *j, batch_t *b)
{
    job_claim_t o = jobs_claim_opts(j, b->now);
    int n = b->room > 0 ? job_store_claim(&b->c, b->now, b->claimed, b->room, &o) : 0;
    b->nclaimed = n > 0 ? n : 0;
    j->held_back = o.held_back;
    /* Shared store: jobs whose node died (its lease expired) run here, after the new ones. */
    int room = b->room - b->nclaimed;
    if (j->shared && room > 0) {
        n = job_store_claim_expired(&b->c, b->now, b->claimed + b->nclaimed, room, &o);
        if (n > 0) {
            for (int i = 0; i < n; i++)
                log_info("jobs: task %lld: its lease expired; it runs again here",
                         (long long)b->claimed[b->nclaimed + i].id);
            roost_counter_add(j->c_rescued, n);
            b->nclaimed += n;
        }
    }
}

static void commit_batch(jobs_t *j, batch_t *b)
{
    roost_counter_add(j->c_commits, 1);
    if (job_store_commit(&b->c) == 0)
        return;
    job_store_rollback(&b->c);
    log_error("jobs: a batch could not be committed; its submissions get 503");
    for (job_submit_t *s = b->subs; s; s = s->next)
        s->outcome = JOB_SUBMIT_FAILED;
    for (int i = 0; i < b->nclaimed; i++)
        job_row_clear(&b->claimed[i]);
    b->nclaimed = 0;
}

/* ---- phase 3: committed; now answer, hand out and tell ---- */

static void answer_submitters(batch_t *b)
{
    for (roost_job_t *job = b->done, *next; job; job = next) {
        next = job->done_next;
        job_free(job);
    }
    for (job_submit_t *s = b->subs, *next; s; s = next) {
        next = s->next;
        if (s->outcome == JOB_SUBMIT_FAILED) {
            s->done(NULL, 503, s->arg);
        } else {
            int replayed = s->outcome == JOB_SUBMIT_REPLAYED;
            json_t *task = job_row_json_with(&s->row, replayed ? NULL : s->payload);
            if (!replayed)
                s->payload = NULL;                       /* now the task's */
            s->done(task, replayed ? 200 : 201, s->arg); /* the task is done's now */
        }
        if (s->outcome == JOB_SUBMIT_RESERVED)
            b->claimed[b->nclaimed++] = s->row; /* handed to a worker next, with the claimed */
        else
            job_row_clear(&s->row);
        json_decref(s->payload);
        free(s);
    }
}

static void answer_cancels(batch_t *b)
{
    for (job_cancel_t *c = b->cancels, *next; c; c = next) {
        next = c->next;
        json_t *task = NULL;
        job_row_t row;
        if (c->status != 404 && job_store_get(&b->c, c->id, &row) == 1) {
            task = job_row_json(&row);
            job_row_clear(&row);
        }
        c->done(task, c->status, c->arg); /* the task is done's now */
        free(c);
    }
}

static void hand_out(jobs_t *j, batch_t *b)
{
    int nready = 0;
    for (int i = 0; i < b->nclaimed; i++) {
        roost_job_t *job = calloc(1, sizeof *job);
        if (job) {
            job->jobs = j;
            job->row = b->claimed[i];
            job->type = strmap_get(&j->types, job->row.type); /* the worker parses the payload */
        }
        if (!job || !job->type) {
            /* Cannot run it now (unknown type after a restart, or no memory): back to pending
             * later, so nothing is lost. */
            job_store_finish(&b->c, b->claimed[i].id, JOB_PENDING, NULL,
                             job ? "unknown job type" : "could not start", b->now + 1000,
                             b->claimed[i].token);
            if (job)
                job_free(job);
            else
                job_row_clear(&b->claimed[i]);
            continue;
        }
        job->next = j->inflight;
        j->inflight = job;
        atomic_fetch_add(&j->ninflight, 1);
        b->ready[nready++] = job;
    }
    if (nready && job_workers_push(j->workers, b->ready, nready) < 0)
        for (int i = 0; i < nready; i++) { /* handed back through the done queue */
            drop_reserved(b->ready[i]);
            jobs_attempt_done(j, b->ready[i]);
        }
}

/* Running jobs past their timeout, or still running at the stop, are told to stop. */
static void enforce_deadlines(jobs_t *j, batch_t *b)
{
    for (roost_job_t *job = j->inflight; job; job = job->next) {
        if (atomic_load(&job->phase) != JOB_PHASE_STARTED)
            continue;
        int go = JOB_GO;
        if (b->stopping)
            atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_SHUTDOWN);
        else if (job->deadline_ms && b->now >= job->deadline_ms)
            atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_TIMEOUT);
    }
}

void *jobs_dispatcher_main(void *arg)
{
    pthread_setname_np(pthread_self(), "roost-jobs"); /* for top -H, perf, gdb */
    jobs_t *j = arg;
    batch_t b = {0};
    b.claimed = calloc((size_t)j->max_inflight, sizeof *b.claimed);
    b.ready = calloc((size_t)j->max_inflight, sizeof *b.ready);
    for (;;) {
        take_work(j, &b);
        int rc = connect_batch(j, &b);
        if (rc == -ETIMEDOUT)
            break;
        if (rc < 0)
            continue;
        job_store_begin(&b.c);
        end_attempts(j, &b);
        note_inflight(j, &b);
        store_submissions(j, &b);
        apply_cancels(j, &b);
        jobs_renew_leases(j, &b.c, b.now);
        if (!b.draining && j->nschedules && jobs_lead(j, b.now))
            jobs_schedules_run(j, &b.c, b.now, &b.changed);
        claim_ready(j, &b);
        commit_batch(j, &b);
        answer_submitters(&b);
        answer_cancels(&b);
        hand_out(j, &b);
        enforce_deadlines(j, &b);
        jobs_greet_watchers(j, &b.c);
        jobs_poll_watchers(j, &b.c, b.now, &b.changed);
        jobs_publish(j, &b.c, &b.changed);
        j->next_run_ms = job_store_next_run(&b.c);
        job_store_release(&b.c);
        if (b.stopping && !j->ninflight && !j->subs && !j->done)
            break;
    }
    job_store_unlead(&j->lead);
    free(b.claimed);
    free(b.ready);
    free(b.changed.ids);
    return NULL;
}
