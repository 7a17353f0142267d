/* The job store on the data layer's pool (SQLite or PostgreSQL): the operations of store.h
 * over the statements of store_sql.c. SQLite: WAL with synchronous=NORMAL (the pool's
 * setting): a commit survives the process being killed (kill -9), which is the failure the
 * queue promises to survive; only an OS crash or power loss may lose the last commits.
 * --job-fsync turns FULL on around each batch to survive those too. */
#include "jobs/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "jobs/store_sql.h"

struct job_store {
    db_t *db;
    int base; /* the first job statement's number in the pool */
    int fsync;
};

int job_store_open(db_t *db, int fsync, job_store_t **out)
{
    *out = NULL;
    job_store_t *s = calloc(1, sizeof *s);
    if (!s) {
        db_close(db);
        return -ENOMEM;
    }
    s->db = db;
    s->fsync = fsync;
    const char *texts[Q_COUNT];
    for (int k = 0; k < Q_COUNT; k++)
        texts[k] = job_store_sql(db->engine, k);
    s->base = db_add_statements(db, texts, Q_COUNT);
    int pg = db->engine == DB_POSTGRES;
    int rc = s->base < 0
                 ? s->base
                 : db_migrate(db, "jobs", pg ? job_store_pg_migrations : job_store_migrations,
                              pg ? JOB_STORE_PG_NMIGRATIONS : JOB_STORE_NMIGRATIONS);
    if (rc < 0) {
        job_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int job_store_shared(const job_store_t *s)
{
    return s->db->engine == DB_POSTGRES;
}

void job_store_close(job_store_t *s)
{
    if (!s)
        return;
    db_close(s->db);
    free(s);
}

int job_store_acquire(job_store_t *s, job_conn_t *out)
{
    out->store = s;
    return db_checkout(s->db, &out->c);
}

void job_store_release(job_conn_t *s)
{
    db_checkin(s->c);
    s->c = NULL;
}

/* Parameters, by type. */
static db_param_t p_int(int64_t v)
{
    return (db_param_t){.type = 'i', .i = v};
}

static db_param_t p_text(const char *v)
{
    return (db_param_t){.type = 's', .s = v}; /* NULL: SQL NULL */
}

static db_param_t p_null(void)
{
    return (db_param_t){.type = 'n'};
}

/* Runs statement q; its rows (if any) are then read with db_next. */
static int query(job_conn_t *s, int q, int n, const db_param_t *p)
{
    int rc = db_query(s->c, s->store->base + q, n, p);
    if (rc < 0)
        log_error("jobs: %s", s->c->err);
    return rc;
}

static void done(job_conn_t *s)
{
    s->c->db->ops->finish(s->c);
}

/* Runs statement q for its effect. */
static int run(job_conn_t *s, int q, int n, const db_param_t *p)
{
    int rc = query(s, q, n, p);
    done(s);
    return rc;
}

/* Runs a write of an attempt: JOB_FENCED when it changed no row (the token lost the job). */
static int run_fenced(job_conn_t *s, int q, int n, const db_param_t *p)
{
    int rc = query(s, q, n, p);
    if (rc == 0 && s->c->db->ops->changes(s->c) == 0)
        rc = JOB_FENCED;
    done(s);
    return rc;
}

/* --job-fsync: FULL only around the dispatcher's batches, since the pool's other users (the
 * application's data, readers of tasks) keep NORMAL. */
static void set_sync(job_conn_t *s, int full)
{
    if (s->store->fsync)
        s->c->db->ops->exec(
            s->c, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", NULL);
}

int job_store_begin(job_conn_t *s)
{
    set_sync(s, 1);
    int rc = db_begin(s->c, 1);
    if (rc < 0) {
        log_error("jobs: %s", s->c->err);
        set_sync(s, 0);
    }
    return rc;
}

int job_store_commit(job_conn_t *s)
{
    int rc = db_commit(s->c);
    if (rc < 0)
        log_error("jobs: %s", s->c->err);
    set_sync(s, 0);
    return rc;
}

void job_store_rollback(job_conn_t *s)
{
    db_rollback(s->c);
    set_sync(s, 0);
}

/* The current row into r, its strings copied (job_row_own): 0 or -ENOMEM. */
static int read_row(db_conn_t *c, job_row_t *r)
{
    int64_t (*col)(db_conn_t *, int) = c->db->ops->col_int;
    const char *(*col_text)(db_conn_t *, int) = c->db->ops->col_text;
    const char *timeout = col_text(c, 7);
    memset(r, 0, sizeof *r);
    r->id = col(c, 0);
    r->type = col_text(c, 1);
    r->payload = col_text(c, 2);
    r->status = (job_status_t)col(c, 3);
    r->priority = (int)col(c, 4);
    r->attempts = (int)col(c, 5);
    r->max_retries = (int)col(c, 6);
    r->timeout_s = timeout ? strtod(timeout, NULL) : 0;
    r->run_at_ms = col(c, 8);
    r->created_ms = col(c, 9);
    r->started_ms = col(c, 10);
    r->completed_ms = col(c, 11);
    r->progress_current = col(c, 12);
    r->progress_total = col(c, 13);
    r->result = col_text(c, 14);
    r->error = col_text(c, 15);
    r->cancel_requested = (int)col(c, 16);
    r->idem_key = col_text(c, 17);
    r->trace_id = col_text(c, 18);
    r->token = col(c, 19);
    r->ckey = col_text(c, 20);
    r->ckey_limit = (int)col(c, 21);
    return job_row_own(r);
}

/* Reads up to max rows of the statement just run; returns how many, or < 0. */
static int read_rows(job_conn_t *s, job_row_t *rows, int max)
{
    int n = 0, rc = 0;
    while (n < max && (rc = db_next(s->c)) == 1 && (rc = read_row(s->c, &rows[n])) == 0)
        n++;
    done(s);
    if (rc < 0) {
        while (n > 0)
            job_row_clear(&rows[--n]);
        return rc;
    }
    return n;
}

/* The first column of the first row as an integer: 1 and *v when there is one (not NULL), 0
 * when not, < 0 on error. */
static int first_int(job_conn_t *s, int q, int n, const db_param_t *p, int64_t *v)
{
    int rc = query(s, q, n, p);
    if (rc == 0 && (rc = db_next(s->c)) == 1 && s->c->db->ops->is_null(s->c, 0))
        rc = 0;
    if (rc == 1)
        *v = s->c->db->ops->col_int(s->c, 0);
    done(s);
    return rc;
}

int job_store_insert_held(job_conn_t *s, job_row_t *r, const char *lease_owner, int64_t lease_until)
{
    if (r->idem_key) {
        db_param_t key = p_text(r->idem_key);
        job_row_t old;
        int rc = query(s, Q_BY_KEY, 1, &key);
        if (rc < 0 || (rc = read_rows(s, &old, 1)) < 0)
            return rc;
        if (rc == 1) {
            job_row_clear(r);
            *r = old;
            return 1;
        }
    }
    if (r->status != JOB_RESERVED)
        r->status = JOB_PENDING;
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%.17g", r->timeout_s);
    int held = r->status == JOB_RESERVED;
    r->token = 0; /* a job stored reserved is held with token 0; each claim takes a new one */
    db_param_t p[14] = {p_text(r->type),
                        p_text(r->payload),
                        p_int(r->status),
                        p_int(r->priority),
                        p_int(r->max_retries),
                        p_text(timeout),
                        p_int(r->run_at_ms),
                        p_int(r->created_ms),
                        p_text(r->idem_key),
                        p_text(r->trace_id),
                        p_text(r->ckey),
                        p_int(r->ckey_limit),
                        p_text(held ? lease_owner : NULL),
                        held && lease_until ? p_int(lease_until) : p_null()};
    int64_t id = 0;
    int rc = first_int(s, Q_INSERT, 14, p, &id);
    if (rc < 0)
        return rc;
    r->id = id;
    return 0;
}

int job_store_insert(job_conn_t *s, job_row_t *r)
{
    return job_store_insert_held(s, r, NULL, 0);
}

/* A transaction-long lock on name (prefix + value) if no other node holds it: 1, else 0. */
static int try_lock(job_conn_t *s, const char *prefix, const char *value)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", prefix, value);
    db_param_t p = p_text(name);
    int64_t got = 0;
    return first_int(s, Q_TRY_LOCK, 1, &p, &got) == 1 && got == 1;
}

/* A pending job's key and rate allow it to start now: under the key's lock, fewer than its
 * limit of the key are reserved or running (this transaction's reservations included), and
 * its type's count of starts this second is below the rate. 1 yes, 0 no. */
static int admit(job_conn_t *s, const job_row_t *r, int64_t now_ms, const job_claim_t *o)
{
    if (r->ckey) {
        db_param_t key = p_text(r->ckey);
        int64_t n = 0;
        if (!try_lock(s, "roost job key ", r->ckey) || first_int(s, Q_KEY_COUNT, 1, &key, &n) < 0 ||
            n >= (r->ckey_limit > 0 ? r->ckey_limit : 1))
            return 0;
    }
    int rate = o && o->rate_of ? o->rate_of(o->ud, r->type) : 0;
    if (rate > 0) {
        db_param_t p[3] = {p_text(r->type), p_int(now_ms / 1000), p_int(rate)};
        int64_t n = 0;
        if (!try_lock(s, "roost job rate ", r->type) || first_int(s, Q_RATE_TAKE, 3, p, &n) != 1)
            return 0;
    }
    return 1;
}

/* Reserves the rows read by a claim's select (in place, the skipped ones dropped). */
static int reserve(job_conn_t *s, int64_t now_ms, job_row_t *rows, int n, job_claim_t *o, int check)
{
    db_param_t p[3] = {p_int(0), o && o->lease_until ? p_int(o->lease_until) : p_null(),
                       p_text(o ? o->owner : NULL)};
    int kept = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        if (rc < 0 ||
            (check && (rows[i].ckey || (o && o->rate_of)) && !admit(s, &rows[i], now_ms, o))) {
            if (rc == 0 && o)
                o->held_back++;
            job_row_clear(&rows[i]);
            continue;
        }
        p[0] = p_int(rows[i].id);
        if ((rc = run_fenced(s, Q_RESERVE, 3, p)) < 0) {
            if (rc == JOB_FENCED) /* gone meanwhile: not claimed, nothing to undo */
                rc = 0;
            job_row_clear(&rows[i]);
            continue;
        }
        rows[i].status = JOB_RESERVED;
        rows[i].token++;
        if (i != kept)
            rows[kept] = rows[i];
        kept++;
    }
    if (rc < 0) { /* put back what was reserved, so that none is stranded */
        while (kept > 0) {
            kept--;
            job_store_unreserve(s, rows[kept].id, rows[kept].token);
            job_row_clear(&rows[kept]);
        }
        return rc;
    }
    return kept;
}

int job_store_claim(job_conn_t *s, int64_t now_ms, job_row_t *rows, int max, job_claim_t *o)
{
    db_param_t p[2] = {p_int(now_ms), p_int(max)};
    int rc = query(s, Q_READY, 2, p);
    int n = rc < 0 ? rc : read_rows(s, rows, max);
    return n <= 0 ? n : reserve(s, now_ms, rows, n, o, 1);
}

int job_store_claim_expired(job_conn_t *s, int64_t now_ms, job_row_t *rows, int max, job_claim_t *o)
{
    db_param_t p[2] = {p_int(now_ms), p_int(max)};
    int rc = query(s, Q_EXPIRED, 2, p);
    int n = rc < 0 ? rc : read_rows(s, rows, max);
    /* They hold their key's place and were counted by the rate when they first started. */
    return n <= 0 ? n : reserve(s, now_ms, rows, n, o, 0);
}

int job_store_renew(job_conn_t *s, int64_t id, int64_t token, int64_t lease_until, int *cancel)
{
    db_param_t p[3] = {p_int(id), p_int(token), p_int(lease_until)};
    int64_t c = 0;
    int rc = first_int(s, Q_RENEW, 3, p, &c);
    if (rc == 0)
        return JOB_FENCED;
    if (rc == 1)
        *cancel = c != 0;
    return rc;
}

int64_t job_store_next_run(job_conn_t *s)
{
    int64_t next = INT64_MAX;
    first_int(s, Q_NEXT_RUN, 0, NULL, &next);
    return next;
}

int job_store_progress(job_conn_t *s, int64_t id, int64_t current, int64_t total, int64_t token)
{
    db_param_t p[4] = {p_int(id), p_int(current), p_int(total), p_int(token)};
    return run_fenced(s, Q_PROGRESS, 4, p);
}

static int finish(job_conn_t *s, int64_t id, job_status_t status, const char *result,
                  const char *error, int64_t run_at_ms, int attempts, int64_t started_ms,
                  int64_t token)
{
    db_param_t p[9] = {p_int(id),
                       p_int(status),
                       p_text(result),
                       p_text(error),
                       p_int(run_at_ms),
                       p_int((int64_t)(time_wall() * 1000)),
                       attempts > 0 ? p_int(attempts) : p_null(),
                       attempts > 0 ? p_int(started_ms) : p_null(),
                       p_int(token)};
    return run_fenced(s, Q_FINISH, 9, p);
}

int job_store_finish(job_conn_t *s, int64_t id, job_status_t status, const char *result,
                     const char *error, int64_t run_at_ms, int64_t token)
{
    return finish(s, id, status, result, error, run_at_ms, 0, 0, token);
}

int job_store_end_attempt(job_conn_t *s, int64_t id, int attempts, int64_t started_ms,
                          job_status_t status, const char *result, const char *error,
                          int64_t run_at_ms, int64_t token)
{
    return finish(s, id, status, result, error, run_at_ms, attempts, started_ms, token);
}

int job_store_request_cancel(job_conn_t *s, int64_t id)
{
    db_param_t p = p_int(id);
    return run(s, Q_CANCEL, 1, &p);
}

int job_store_start(job_conn_t *s, int64_t id, int attempts, int64_t started_ms, int64_t token)
{
    db_param_t p[4] = {p_int(id), p_int(attempts), p_int(started_ms), p_int(token)};
    return run_fenced(s, Q_START, 4, p);
}

int job_store_unreserve(job_conn_t *s, int64_t id, int64_t token)
{
    db_param_t p[2] = {p_int(id), p_int(token)};
    return run(s, Q_UNRESERVE, 2, p);
}

int job_store_requeue_running(job_conn_t *s, const char *owner)
{
    db_param_t p[2] = {p_text(owner), p_int(!job_store_shared(s->store))};
    int rc = query(s, Q_REQUEUE_RUNNING, 2, p);
    int n = rc < 0 ? rc : (int)s->c->db->ops->changes(s->c);
    done(s);
    if (rc < 0 || (rc = run(s, Q_REQUEUE_RESERVED, 2, p)) < 0)
        return rc;
    return n;
}

int job_store_get(job_conn_t *s, int64_t id, job_row_t *r)
{
    db_param_t p = p_int(id);
    int rc = query(s, Q_GET, 1, &p);
    return rc < 0 ? rc : read_rows(s, r, 1);
}

static int list(job_conn_t *s, int status, int64_t before_id, job_row_t *rows, int max)
{
    db_param_t p[3] = {p_int(before_id > 0 ? before_id : INT64_MAX), p_int(max), p_int(status)};
    int rc = query(s, status >= 0 ? Q_LIST_STATUS : Q_LIST, status >= 0 ? 3 : 2, p);
    return rc < 0 ? rc : read_rows(s, rows, max);
}

int job_store_list(job_conn_t *s, int status, int64_t before_id, job_row_t *rows, int max)
{
    if (status != JOB_PENDING)
        return list(s, status, before_id, rows, max);
    /* Pending as the API sees it is pending or reserved: a page of each (both newest first, in
     * index order), merged, the newest max kept. */
    job_row_t *pend = calloc((size_t)max, sizeof *pend), *resv = calloc((size_t)max, sizeof *resv);
    int n = pend && resv ? 0 : -ENOMEM;
    if (n == 0) {
        int np = list(s, JOB_PENDING, before_id, pend, max);
        int nr = np < 0 ? 0 : list(s, JOB_RESERVED, before_id, resv, max);
        if (np < 0 || nr < 0) {
            n = np < 0 ? np : nr;
            np = np < 0 ? 0 : np;
            nr = 0;
        }
        int i = 0, k = 0;
        while (n >= 0 && n < max && (i < np || k < nr))
            rows[n++] = k == nr || (i < np && pend[i].id > resv[k].id) ? pend[i++] : resv[k++];
        while (i < np)
            job_row_clear(&pend[i++]);
        while (k < nr)
            job_row_clear(&resv[k++]);
    }
    free(pend);
    free(resv);
    return n;
}

int job_store_counts(job_conn_t *s, long counts[5])
{
    memset(counts, 0, 5 * sizeof *counts);
    int rc = query(s, Q_COUNTS, 0, NULL);
    while (rc >= 0 && (rc = db_next(s->c)) == 1) {
        int k = (int)s->c->db->ops->col_int(s->c, 0);
        if (k == JOB_RESERVED)
            k = JOB_PENDING;
        if (k >= 0 && k < 5)
            counts[k] += (long)s->c->db->ops->col_int(s->c, 1);
    }
    done(s);
    return rc < 0 ? rc : 0;
}

int64_t job_store_schedule_slot(job_conn_t *s, const char *key)
{
    db_param_t p = p_text(key);
    int64_t slot = 0;
    first_int(s, Q_SLOT, 1, &p, &slot);
    return slot;
}

int job_store_set_schedule_slot(job_conn_t *s, const char *key, int64_t slot)
{
    db_param_t p[2] = {p_text(key), p_int(slot)};
    int rc = query(s, Q_SET_SLOT, 2, p);
    if (rc == 0 && s->c->db->ops->changes(s->c) == 0)
        rc = -EALREADY;
    done(s);
    return rc;
}

int job_store_lead(job_store_t *s, job_conn_t *lead)
{
    if (!job_store_shared(s))
        return 1;
    int64_t got = 0;
    if (lead->c) { /* leading: still, if its connection is alive */
        if (lead->c->db->ops->exec(lead->c, "SELECT 1", &got) == 0 && got == 1)
            return 1;
        lead->c->broken = 1; /* the server dropped it, and with it the lock */
        job_store_unlead(lead);
    }
    if (job_store_acquire(s, lead) < 0) {
        lead->c = NULL;
        return 0;
    }
    if (lead->c->db->ops->exec(lead->c,
                               "SELECT pg_try_advisory_lock(hashtext('roost jobs leader'))::int",
                               &got) == 0 &&
        got == 1)
        return 1;
    job_store_release(lead);
    return 0;
}

void job_store_unlead(job_conn_t *lead)
{
    if (!lead->c)
        return;
    lead->c->db->ops->exec(lead->c, "SELECT pg_advisory_unlock_all()", NULL);
    job_store_release(lead);
}
