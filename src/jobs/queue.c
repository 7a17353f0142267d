/* The dispatcher: one thread, the store's only writer (see jobs.h for why). Each wake-up takes
 * everything queued (finished attempts, starts, submissions, cancels, progress, schedule ticks),
 * writes it in one transaction, reserves ready jobs up to the in-flight bound (the workers plus
 * --job-prefetch), commits, and only then answers submitters, hands the reserved jobs to the
 * workers' ready heap and tells watchers what changed.
 *
 * Reserving ahead costs some priority order: a job reserved before a higher-priority one was
 * submitted may start first when the bound was reached. Within what is reserved, the heap keeps
 * priority order. */
#include "jobs/jobs.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "jobs/order.h"

/* The queue lives in the jobs layer's server slot from the first roost_job_type until it stops
 * (it is a service: stopping frees it). */
static const core_slot_ops_t jobs_slot_ops = {.name = "jobs"};

static core_slot_t jobs_slot(void)
{
    static atomic_int slot;
    return core_slot_of(&slot, &jobs_slot_ops);
}

#define IDLE_WAKE_MS 1000 /* schedules and timeouts are checked at least this often */

typedef struct submit {
    struct submit *next;
    job_row_t row;
    json_t *payload; /* the submitted payload (a copy), for the reply's task */
    int outcome;     /* SUBMIT_* */
    roost_job_done_fn done;
    void *arg;
} submit_t;

enum { SUBMIT_FAILED = -1, SUBMIT_STORED, SUBMIT_REPLAYED, SUBMIT_RESERVED };

typedef struct cancel {
    struct cancel *next;
    int64_t id;
    roost_job_done_fn done;
    void *arg;
} cancel_t;

typedef struct watcher {
    struct watcher *next;
    int64_t id;
    roost_job_watch_fn fn;
    void *arg;
    int fresh; /* not yet sent the current state */
} watcher_t;

typedef struct {
    char *type;
    char *payload;
    int64_t period_ms;
    char *key;
} schedule_t;

struct jobs {
    roost_server_t *srv;
    strmap_t types;
    char *db_path;
    job_workers_t *workers;
    int nworkers;
    int max_inflight; /* reserved or running at once */
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* under lock: what the dispatcher has to do */
    submit_t *subs, *subs_tail;
    cancel_t *cancels;
    roost_job_t *done;
    watcher_t *watchers;
    int stopping, wake;
    /* set on SIGTERM, under lock; atomic because workers read it to drop what they take */
    _Atomic int draining;
    /* the dispatcher's own */
    jobstore_t *store;
    roost_job_t *inflight; /* reserved or running */
    _Atomic int ninflight; /* written by the dispatcher, read by the stopping thread */
    schedule_t *schedules;
    int nschedules;
    roost_counter_t *c_submitted, *c_started, *c_completed, *c_failed, *c_retried, *c_cancelled,
        *c_run_ms, *c_commits;
};

static int64_t now_ms(void)
{
    return (int64_t)(time_wall() * 1000);
}

static void wake(jobs_t *j)
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
    wake(j);
    pthread_mutex_unlock(&j->lock);
}

int jobs_may_start(jobs_t *j)
{
    return !atomic_load(&j->draining);
}

void jobs_changed(jobs_t *j)
{
    pthread_mutex_lock(&j->lock);
    wake(j); /* the dispatcher looks at every job in flight at each wake-up */
    pthread_mutex_unlock(&j->lock);
}

int roost_job_validate(roost_server_t *srv, const roost_job_spec_t *spec, json_t *errors)
{
    jobs_t *j = jobs_get(srv);
    job_type_t *t = j && spec->type ? strmap_get(&j->types, spec->type) : NULL;
    if (!t) {
        json_array_append_new(
            errors, roost_error_item("body", "type", "unknown job type", "value_error.job_type"));
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
    submit_t *s = calloc(1, sizeof *s);
    char *payload = spec->payload
                        ? json_dumps(spec->payload, JSON_COMPACT | JSON_REAL_PRECISION(15))
                        : strdup("{}");
    if (!s || !payload) {
        free(s);
        free(payload);
        return -ENOMEM;
    }
    int64_t now = now_ms();
    s->row.type = strdup(spec->type);
    s->row.payload = payload;
    s->row.priority = spec->priority;
    s->row.max_retries = spec->max_retries;
    s->row.timeout_s = spec->timeout_s;
    s->row.created_ms = now;
    s->row.run_at_ms = now + (int64_t)(spec->delay_s * 1000);
    s->row.idem_key = spec->idempotency_key ? strdup(spec->idempotency_key) : NULL;
    /* A copy of its own: jansson objects are not shared between threads (their reference
     * counts are atomic, but nothing else is), so each one has one owner at a time. */
    s->payload = spec->payload ? json_deep_copy(spec->payload) : NULL;
    s->done = done;
    s->arg = arg;
    pthread_mutex_lock(&j->lock);
    if (j->subs_tail)
        j->subs_tail->next = s;
    else
        j->subs = s;
    j->subs_tail = s;
    wake(j);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

int roost_job_cancel(roost_server_t *srv, long long id, roost_job_done_fn done, void *arg)
{
    jobs_t *j = jobs_get(srv);
    cancel_t *c = j ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return -ENOMEM;
    c->id = id;
    c->done = done;
    c->arg = arg;
    pthread_mutex_lock(&j->lock);
    c->next = j->cancels;
    j->cancels = c;
    wake(j);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

int roost_job_watch(roost_server_t *srv, long long id, roost_job_watch_fn fn, void *arg)
{
    jobs_t *j = jobs_get(srv);
    watcher_t *w = j ? calloc(1, sizeof *w) : NULL;
    if (!w)
        return -ENOMEM;
    w->id = id;
    w->fn = fn;
    w->arg = arg;
    w->fresh = 1;
    pthread_mutex_lock(&j->lock);
    w->next = j->watchers;
    j->watchers = w;
    wake(j);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

int roost_job_final(const char *status)
{
    int s = job_status_parse(status);
    return s == JOB_COMPLETED || s == JOB_FAILED || s == JOB_CANCELLED;
}

/* ---- reads, on the caller's thread with a reader of its own ---- */

/* One reader per thread that reads (HTTP workers), closed when the thread ends. */
static pthread_key_t reader_key;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;

static void close_reader(void *r)
{
    jobstore_close(r);
}

static void make_reader_key(void)
{
    pthread_key_create(&reader_key, close_reader);
}

static jobstore_t *get_reader(jobs_t *j)
{
    pthread_once(&reader_once, make_reader_key);
    jobstore_t *r = pthread_getspecific(reader_key);
    if (!r && (r = jobstore_open(j->db_path, 0, 0)))
        pthread_setspecific(reader_key, r);
    return r;
}

json_t *roost_job_get(roost_server_t *srv, long long id)
{
    jobs_t *j = jobs_get(srv);
    jobstore_t *r = j ? get_reader(j) : NULL;
    job_row_t row;
    if (!r || jobstore_get(r, id, &row) != 1)
        return NULL;
    json_t *t = job_row_json(&row);
    job_row_clear(&row);
    return t;
}

json_t *roost_job_list(roost_server_t *srv, const char *status, long long before_id, int limit)
{
    jobs_t *j = jobs_get(srv);
    jobstore_t *r = j ? get_reader(j) : NULL;
    if (!r || limit < 1 || limit > 1000)
        return NULL;
    job_row_t *rows = calloc((size_t)limit, sizeof *rows);
    if (!rows)
        return NULL;
    int n = jobstore_list(r, status ? job_status_parse(status) : -1, before_id, rows, limit);
    json_t *items = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(items, job_row_json(&rows[i]));
        job_row_clear(&rows[i]);
    }
    free(rows);
    return items;
}

/* ---- the dispatcher ---- */

typedef struct {
    int64_t *ids;
    int n, cap;
} idset_t;

static void changed(idset_t *s, int64_t id)
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
    return retry_delay_ms(j->srv->cfg.jobs.retry_backoff_s, attempts, (double)r / 4294967295.0);
}

/* The worker has the job and it started: record that (running, attempts + 1). */
static void record_start(jobs_t *j, roost_job_t *job, idset_t *ch)
{
    if (job->start_written || atomic_load(&job->phase) != JOB_PHASE_STARTED)
        return;
    job->start_written = 1;
    jobstore_start(j->store, job->row.id, job->row.attempts + 1, job->started_ms);
    roost_counter_add(j->c_started, 1);
    changed(ch, job->row.id);
}

static void finish_attempt(jobs_t *j, roost_job_t *job, idset_t *ch)
{
    if (atomic_load(&job->phase) == JOB_PHASE_DROPPED) {
        jobstore_unreserve(j->store, job->row.id); /* never started: pending again, unless
                                                    * it was cancelled meanwhile */
        return;
    }
    if (!job->start_written)
        roost_counter_add(j->c_started, 1); /* started and ended between two commits */
    int stop = atomic_load(&job->stop);
    int64_t now = now_ms();
    const job_row_t *r = &job->row;
    int attempts = r->attempts + 1;
    roost_counter_add(j->c_run_ms, (long)(now - job->started_ms));
    if (atomic_exchange(&job->progress_dirty, 0)) /* its last report, not yet written */
        jobstore_progress(j->store, r->id, atomic_load(&job->current), atomic_load(&job->total));
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
        if (attempts <= r->max_retries) {
            status = JOB_PENDING;
            run_at = now + backoff_ms(j, attempts);
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
    jobstore_end_attempt(j->store, r->id, attempts, job->started_ms, status, result, error, run_at);
    free(result);
    changed(ch, r->id);
}

static void job_free(roost_job_t *job)
{
    job_row_clear(&job->row);
    json_decref(job->payload);
    json_decref(job->result);
    free(job->error);
    free(job);
}

/* Takes the jobs handed back (marked by the caller) out of the in-flight list, in one pass. */
static void unlink_handed_back(jobs_t *j)
{
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

static roost_job_t *find_inflight(jobs_t *j, int64_t id)
{
    for (roost_job_t *r = j->inflight; r; r = r->next)
        if (r->row.id == id)
            return r;
    return NULL;
}

/* A reserved job that no worker has taken yet is dropped (it never starts); 1 if it was. */
static int drop_reserved(roost_job_t *job)
{
    int reserved = JOB_PHASE_RESERVED;
    return atomic_compare_exchange_strong(&job->phase, &reserved, JOB_PHASE_DROPPED);
}

static int handle_cancel(jobs_t *j, cancel_t *c, idset_t *ch)
{
    job_row_t row;
    int found = jobstore_get(j->store, c->id, &row);
    if (found != 1)
        return 404;
    int status = 200;
    roost_job_t *job = row.status == JOB_RESERVED ? find_inflight(j, row.id) : NULL;
    if (row.status == JOB_PENDING || (row.status == JOB_RESERVED && (!job || drop_reserved(job)))) {
        jobstore_finish(j->store, row.id, JOB_CANCELLED, NULL, "cancelled", row.run_at_ms);
        roost_counter_add(j->c_cancelled, 1);
        changed(ch, row.id);
    } else if (row.status == JOB_RUNNING || row.status == JOB_RESERVED) {
        if (!job)
            job = find_inflight(j, row.id);
        if (job) {
            record_start(j, job, ch); /* it started since the row was read */
            int go = JOB_GO;
            atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_CANCEL);
        }
        jobstore_request_cancel(j->store, row.id);
        changed(ch, row.id);
    } else {
        status = 409;
    }
    job_row_clear(&row);
    return status;
}

static void run_schedules(jobs_t *j, int64_t now, idset_t *ch)
{
    for (int i = 0; i < j->nschedules; i++) {
        schedule_t *s = &j->schedules[i];
        int64_t slot = now / s->period_ms;
        if (jobstore_schedule_slot(j->store, s->key) >= slot)
            continue;
        job_row_t row = {
            .type = s->type, .payload = s->payload, .created_ms = now, .run_at_ms = now};
        if (jobstore_insert(j->store, &row) == 0 &&
            jobstore_set_schedule_slot(j->store, s->key, slot) == 0) {
            roost_counter_add(j->c_submitted, 1);
            changed(ch, row.id);
        }
    }
}

static void publish(jobs_t *j, idset_t *ch)
{
    pthread_mutex_lock(&j->lock);
    int any_watchers = j->watchers != NULL;
    pthread_mutex_unlock(&j->lock);
    for (int i = 0; i < ch->n; i++) {
        int64_t id = ch->ids[i];
        if (i > 0 && ch->ids[i - 1] == id)
            continue;
        char room[32];
        snprintf(room, sizeof room, "task:%lld", (long long)id);
        int to_room = roost_room_online(j->srv, room) > 0;
        if (!to_room && !any_watchers)
            continue; /* nobody looks: skip reading the row back */
        job_row_t row;
        if (jobstore_get(j->store, id, &row) != 1)
            continue;
        json_t *task = job_row_json(&row);
        job_row_clear(&row);
        if (to_room)
            roost_room_publish(j->srv, room, "task", json_pack("{s:O}", "task", task), NULL);
        if (any_watchers) {
            pthread_mutex_lock(&j->lock);
            for (watcher_t **p = &j->watchers; *p;) {
                watcher_t *w = *p;
                if (w->id == id && !w->fresh && w->fn(task, w->arg)) {
                    *p = w->next;
                    free(w);
                } else {
                    p = &w->next;
                }
            }
            pthread_mutex_unlock(&j->lock);
        }
        json_decref(task);
    }
}

/* New watchers first get the task as it is now (or NULL: unknown task). */
static void greet_watchers(jobs_t *j)
{
    pthread_mutex_lock(&j->lock);
    for (watcher_t **p = &j->watchers; *p;) {
        watcher_t *w = *p;
        if (!w->fresh) {
            p = &w->next;
            continue;
        }
        w->fresh = 0;
        job_row_t row;
        json_t *task = NULL;
        if (jobstore_get(j->store, w->id, &row) == 1) {
            task = job_row_json(&row);
            job_row_clear(&row);
        }
        if (w->fn(task, w->arg) || !task) {
            *p = w->next;
            free(w);
        } else {
            p = &w->next;
        }
        json_decref(task);
    }
    pthread_mutex_unlock(&j->lock);
}

static roost_job_t *reserved_job(jobs_t *j, job_row_t *row)
{
    roost_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->jobs = j;
    job->row = *row;
    job->type = strmap_get(&j->types, row->type);
    return job; /* the worker parses the payload */
}

static void sleep_until_work(jobs_t *j)
{
    if (j->wake || j->stopping)
        return;
    int64_t next = jobstore_next_run(j->store);
    int64_t now = now_ms();
    int64_t wait = next <= now ? 0 : next - now;
    if (j->ninflight >= j->max_inflight || j->draining || wait > IDLE_WAKE_MS)
        wait = IDLE_WAKE_MS;
    if (j->nschedules && wait > 100)
        wait = 100;
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

static void *dispatcher_main(void *arg)
{
    pthread_setname_np(pthread_self(), "roost-jobs"); /* for top -H, perf, gdb */
    jobs_t *j = arg;
    job_row_t *claimed = calloc((size_t)j->max_inflight, sizeof *claimed);
    roost_job_t **ready = calloc((size_t)j->max_inflight, sizeof *ready);
    idset_t ch = {0};
    for (;;) {
        /* Sleep until something is queued, a delayed job is due, or the idle period ends. */
        pthread_mutex_lock(&j->lock);
        sleep_until_work(j);
        j->wake = 0;
        submit_t *subs = j->subs;
        j->subs = j->subs_tail = NULL;
        cancel_t *cancels = j->cancels;
        j->cancels = NULL;
        roost_job_t *done = j->done;
        j->done = NULL;
        int draining = j->draining, stopping = j->stopping;
        pthread_mutex_unlock(&j->lock);

        int64_t now = now_ms();
        ch.n = 0;
        jobstore_begin(j->store);
        for (roost_job_t *job = done; job; job = job->done_next) {
            job->handed_back = 1;
            finish_attempt(j, job, &ch);
        }
        if (done)
            unlink_handed_back(j);
        for (roost_job_t *job = j->inflight; job; job = job->next) {
            if (draining || stopping) /* no new job starts: what waits goes back to pending */
                drop_reserved(job);   /* a worker hands it back, then it is pending */
            record_start(j, job, &ch);
            if (atomic_exchange(&job->progress_dirty, 0)) {
                jobstore_progress(j->store, job->row.id, atomic_load(&job->current),
                                  atomic_load(&job->total));
                changed(&ch, job->row.id);
            }
        }
        /* When nothing stored is due, new jobs that are due now and fit in flight are stored
         * reserved, and go to the workers without a claim's read and write. */
        int room = draining || stopping ? 0 : j->max_inflight - j->ninflight;
        int ndue = 0;
        for (submit_t *s = subs; s; s = s->next)
            ndue += s->row.run_at_ms <= now;
        int reserve_new = ndue > 0 && ndue <= room && jobstore_next_run(j->store) > now;
        for (submit_t *s = subs; s; s = s->next) {
            if (reserve_new && s->row.run_at_ms <= now)
                s->row.status = JOB_RESERVED;
            int rc = jobstore_insert(j->store, &s->row);
            if (rc < 0) {
                s->outcome = SUBMIT_FAILED;
            } else if (rc == 1) {
                s->outcome = SUBMIT_REPLAYED;
            } else {
                s->outcome = s->row.status == JOB_RESERVED ? SUBMIT_RESERVED : SUBMIT_STORED;
                room -= s->outcome == SUBMIT_RESERVED;
                roost_counter_add(j->c_submitted, 1);
                changed(&ch, s->row.id);
            }
        }
        int ncancel = 0;
        for (cancel_t *c = cancels; c; c = c->next)
            ncancel++;
        int cancel_status[ncancel > 0 ? ncancel : 1], ci = 0;
        for (cancel_t *c = cancels; c; c = c->next)
            cancel_status[ci++] = handle_cancel(j, c, &ch);
        if (!draining)
            run_schedules(j, now, &ch);
        int nclaimed = 0;
        if (room > 0)
            nclaimed = jobstore_claim(j->store, now, claimed, room);
        if (nclaimed < 0)
            nclaimed = 0;
        roost_counter_add(j->c_commits, 1);
        if (jobstore_commit(j->store) < 0) {
            jobstore_rollback(j->store);
            log_error("jobs: a batch could not be committed; its submissions get 503");
            for (submit_t *s = subs; s; s = s->next)
                s->outcome = SUBMIT_FAILED;
            for (int i = 0; i < nclaimed; i++)
                job_row_clear(&claimed[i]);
            nclaimed = 0;
        }

        /* Committed: now answer, hand out and tell. */
        for (roost_job_t *job = done, *next; job; job = next) {
            next = job->done_next;
            job_free(job);
        }
        for (submit_t *s = subs, *next; s; s = next) {
            next = s->next;
            if (s->outcome == SUBMIT_FAILED) {
                s->done(NULL, 503, s->arg);
            } else {
                int replayed = s->outcome == SUBMIT_REPLAYED;
                json_t *task = job_row_json_with(&s->row, replayed ? NULL : s->payload);
                if (!replayed)
                    s->payload = NULL;                       /* now the task's */
                s->done(task, replayed ? 200 : 201, s->arg); /* the task is done's now */
            }
            if (s->outcome == SUBMIT_RESERVED)
                claimed[nclaimed++] = s->row; /* handed to a worker below, with the claimed */
            else
                job_row_clear(&s->row);
            json_decref(s->payload);
            free(s);
        }
        ci = 0;
        for (cancel_t *c = cancels, *next; c; c = next) {
            next = c->next;
            json_t *task = NULL;
            job_row_t row;
            if (cancel_status[ci] != 404 && jobstore_get(j->store, c->id, &row) == 1) {
                task = job_row_json(&row);
                job_row_clear(&row);
            }
            c->done(task, cancel_status[ci++], c->arg); /* the task is done's now */
            free(c);
        }
        int nready = 0;
        for (int i = 0; i < nclaimed; i++) {
            roost_job_t *job = reserved_job(j, &claimed[i]);
            if (!job || !job->type) {
                /* Cannot run it now (unknown type after a restart, or no memory): back to
                 * pending later, so nothing is lost. */
                jobstore_finish(j->store, claimed[i].id, JOB_PENDING, NULL,
                                job ? "unknown job type" : "could not start", now + 1000);
                if (job)
                    job_free(job);
                else
                    job_row_clear(&claimed[i]);
                continue;
            }
            job->next = j->inflight;
            j->inflight = job;
            atomic_fetch_add(&j->ninflight, 1);
            ready[nready++] = job;
        }
        if (nready && job_workers_push(j->workers, ready, nready) < 0)
            for (int i = 0; i < nready; i++) { /* handed back through the done queue */
                drop_reserved(ready[i]);
                jobs_attempt_done(j, ready[i]);
            }
        for (roost_job_t *job = j->inflight; job; job = job->next) {
            if (atomic_load(&job->phase) != JOB_PHASE_STARTED)
                continue;
            int go = JOB_GO;
            if (stopping)
                atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_SHUTDOWN);
            else if (job->deadline_ms && now >= job->deadline_ms)
                atomic_compare_exchange_strong(&job->stop, &go, JOB_STOP_TIMEOUT);
        }
        greet_watchers(j);
        publish(j, &ch);
        if (stopping && !j->ninflight && !j->subs && !j->done)
            break;
    }
    free(claimed);
    free(ready);
    free(ch.ids);
    return NULL;
}

/* ---- life cycle ---- */

static void jobs_start(void *ud)
{
    jobs_t *j = ud;
    const roost_config_t *cfg = &j->srv->cfg;
    mkdir(cfg->data.dir, 0755);
    if (asprintf(&j->db_path, "%s/roost.db", cfg->data.dir) < 0 ||
        !(j->store = jobstore_open(j->db_path, 1, j->srv->cfg.jobs.fsync))) {
        log_error("jobs: cannot open the job store in %s; jobs are disabled", cfg->data.dir);
        return;
    }
    int n = jobstore_requeue_running(j->store);
    if (n > 0)
        log_info("jobs: %d job(s) were running at the last stop; they run again", n);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (!(j->workers = job_workers_start(j, j->nworkers)) ||
        pthread_create(&j->thread, NULL, dispatcher_main, j) != 0) {
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
    wake(j);
    pthread_mutex_unlock(&j->lock);
}

static void jobs_stop(void *ud)
{
    jobs_t *j = ud;
    if (j->started) {
        /* The loops have drained; running jobs had the same drain_s. Whatever still runs is
         * told to stop and goes back to pending. */
        uint64_t end = time_now_ms() + (uint64_t)(j->srv->cfg.net.drain_s * 1000);
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
        wake(j);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->thread, NULL);
        job_workers_stop(j->workers);
    }
    jobstore_close(j->store);
    pthread_mutex_lock(&j->lock);
    while (j->watchers) {
        watcher_t *w = j->watchers;
        j->watchers = w->next;
        w->fn(NULL, w->arg); /* tell it the end; it frees its state */
        free(w);
    }
    pthread_mutex_unlock(&j->lock);
    strmap_free(&j->types, free);
    for (int i = 0; i < j->nschedules; i++) {
        free(j->schedules[i].type);
        free(j->schedules[i].payload);
        free(j->schedules[i].key);
    }
    free(j->schedules);
    free(j->db_path);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cond);
    core_server_ctx_set(j->srv, jobs_slot(), NULL);
    free(j);
}

static void jobs_metrics(void *ud, sbuf_t *out)
{
    jobs_t *j = ud;
    jobstore_t *r = j->db_path ? get_reader(j) : NULL;
    long counts[5];
    if (!r || jobstore_counts(r, counts) < 0)
        return;
    sbuf_printf(out, "# HELP roost_jobs Jobs in the queue by status\n# TYPE roost_jobs gauge\n");
    for (int s = 0; s < 5; s++)
        sbuf_printf(out, "roost_jobs{status=\"%s\"} %ld\n", job_status_name(s), counts[s]);
    sbuf_printf(out,
                "# HELP roost_jobs_queue_depth Jobs waiting to run\n"
                "# TYPE roost_jobs_queue_depth gauge\nroost_jobs_queue_depth %ld\n",
                counts[JOB_PENDING]);
}

/* "TYPE every 60s {payload}" */
static int parse_schedule(jobs_t *j, const char *spec, schedule_t *s)
{
    char type[64], unit = 's';
    double every = 0;
    int used = 0;
    if (sscanf(spec, " %63s every %lf%c%n", type, &every, &unit, &used) < 3 || every <= 0)
        return -EINVAL;
    double mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
    if (!mult)
        return -EINVAL;
    const char *rest = spec + used;
    json_t *payload =
        *rest && strspn(rest, " ") != strlen(rest) ? json_loads(rest, 0, NULL) : json_object();
    if (!json_is_object(payload)) {
        json_decref(payload);
        return -EINVAL;
    }
    s->type = strdup(type);
    s->payload = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    s->period_ms = (int64_t)(every * mult * 1000);
    json_decref(payload);
    if (asprintf(&s->key, "%s every %lldms %s", s->type, (long long)s->period_ms, s->payload) < 0)
        s->key = NULL;
    return s->type && s->payload && s->key ? 0 : -ENOMEM;
}

jobs_t *jobs_get(roost_server_t *srv)
{
    return core_server_ctx(srv, jobs_slot());
}

static jobs_t *jobs_create(roost_server_t *srv)
{
    jobs_t *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->srv = srv;
    j->nworkers = srv->cfg.jobs.workers;
    j->max_inflight = srv->cfg.jobs.workers + srv->cfg.jobs.prefetch;
    pthread_mutex_init(&j->lock, NULL);
    counters_t *k = srv->counters;
    const char *help = "Job queue events";
    j->c_submitted = counters_get(k, "roost_job_events_total", "event=\"submitted\"", help);
    j->c_started = counters_get(k, "roost_job_events_total", "event=\"started\"", help);
    j->c_completed = counters_get(k, "roost_job_events_total", "event=\"completed\"", help);
    j->c_failed = counters_get(k, "roost_job_events_total", "event=\"failed\"", help);
    j->c_retried = counters_get(k, "roost_job_events_total", "event=\"retried\"", help);
    j->c_cancelled = counters_get(k, "roost_job_events_total", "event=\"cancelled\"", help);
    j->c_run_ms = counters_get(k, "roost_job_run_milliseconds_total", NULL,
                               "Time spent running job attempts");
    j->c_commits = counters_get(k, "roost_job_store_commits_total", NULL,
                                "Transactions of the job store (each holds a batch of changes)");
    core_service_t svc = {"jobs", jobs_start, jobs_drain, jobs_stop, jobs_metrics, j};
    if (core_service_add(srv, &svc) < 0) {
        free(j);
        return NULL;
    }
    core_server_ctx_set(srv, jobs_slot(), j);
    return j;
}

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

int roost_job_schedule(roost_server_t *srv, const char *spec)
{
    jobs_t *j = jobs_get(srv);
    if (!j && !(j = jobs_create(srv)))
        return -ENOMEM;
    schedule_t *s = realloc(j->schedules, (size_t)(j->nschedules + 1) * sizeof *s);
    if (!s)
        return -ENOMEM;
    j->schedules = s;
    s += j->nschedules;
    memset(s, 0, sizeof *s);
    int rc = parse_schedule(j, spec, s);
    if (rc < 0) {
        free(s->type);
        free(s->payload);
        free(s->key);
        return rc;
    }
    j->nschedules++;
    return 0;
}

roost_server_t *roost_job_server(const roost_job_t *job)
{
    return job->jobs->srv;
}
