/* The job store on the data layer's pool (SQLite): statements, migrations and the operations
 * of store.h. WAL with synchronous=NORMAL (the pool's setting): a commit survives the process
 * being killed (kill -9), which is the failure the queue promises to survive; only an OS crash
 * or power loss may lose the last commits. --job-fsync turns FULL on around each batch to
 * survive those too. Statements are prepared once per connection by the pool's engine. */
#include "jobs/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define COLS                                                                                       \
    "id, type, payload, status, priority, attempts, max_retries, timeout_s, run_at, created, "     \
    "started, completed, cur, total, result, error, cancel_requested, idem_key, "                  \
    "trace_id"

enum {
    Q_INSERT,
    Q_BY_KEY,
    Q_READY,
    Q_RESERVE,
    Q_START,
    Q_UNRESERVE,
    Q_NEXT_RUN,
    Q_PROGRESS,
    Q_FINISH,
    Q_CANCEL,
    Q_REQUEUE_RUNNING,
    Q_REQUEUE_RESERVED,
    Q_GET,
    Q_LIST,
    Q_LIST_STATUS,
    Q_COUNTS,
    Q_SLOT,
    Q_SET_SLOT,
    Q_COUNT
};

/* timeout_s is REAL and bound as text ('%.17g'): the column's affinity stores it as a number,
 * and the engine interface needs no floating-point parameter for one column. */
static const char *const sql[Q_COUNT] = {
    [Q_INSERT] =
        "INSERT INTO tasks (type, payload, status, priority, max_retries, timeout_s, "
        "run_at, created, idem_key, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
        "RETURNING id",
    [Q_BY_KEY] = "SELECT " COLS " FROM tasks WHERE idem_key = $1",
    /* A select, then one update per row: an UPDATE ... WHERE id IN (SELECT ...) RETURNING
     * builds a temporary table per call, which cost a third of the dispatcher's time. */
    [Q_READY] = "SELECT " COLS " FROM tasks INDEXED BY tasks_ready "
                "WHERE status = 0 AND run_at <= $1 ORDER BY priority DESC, run_at, id LIMIT $2",
    [Q_RESERVE] = "UPDATE tasks SET status = 5 WHERE id = $1",
    [Q_START] = "UPDATE tasks SET status = 1, attempts = $2, started = $3 WHERE id = $1",
    [Q_UNRESERVE] = "UPDATE tasks SET status = 0 WHERE id = $1 AND status = 5",
    [Q_NEXT_RUN] = "SELECT min(run_at) FROM tasks INDEXED BY tasks_due WHERE status = 0",
    [Q_PROGRESS] = "UPDATE tasks SET cur = $2, total = $3 WHERE id = $1",
    [Q_FINISH] = "UPDATE tasks SET status = $2, result = $3, error = $4, run_at = $5, "
                 "completed = CASE WHEN $2 >= 2 THEN $6 ELSE NULL END, "
                 "attempts = coalesce($7, attempts), started = coalesce($8, started) WHERE id = $1",
    [Q_CANCEL] = "UPDATE tasks SET cancel_requested = 1 WHERE id = $1",
    [Q_REQUEUE_RUNNING] = "UPDATE tasks SET status = 0 WHERE status = 1",
    [Q_REQUEUE_RESERVED] = "UPDATE tasks SET status = 0 WHERE status = 5",
    [Q_GET] = "SELECT " COLS " FROM tasks WHERE id = $1",
    [Q_LIST] = "SELECT " COLS " FROM tasks WHERE id < $1 ORDER BY id DESC LIMIT $2",
    [Q_LIST_STATUS] = "SELECT " COLS " FROM tasks INDEXED BY tasks_by_status "
                      "WHERE status = $3 AND id < $1 ORDER BY id DESC LIMIT $2",
    [Q_COUNTS] = "SELECT status, count(*) FROM tasks GROUP BY status",
    [Q_SLOT] = "SELECT slot FROM schedules WHERE key = $1",
    /* (parenthesized: clang takes a last element split over two literals for a missing comma) */
    [Q_SET_SLOT] = ("INSERT INTO schedules (key, slot) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET slot = excluded.slot"),
};

/* Versioned migrations, applied in order at start-up by db_migrate; the version lives in
 * jobs_schema, the table the store kept it in before it moved onto the data layer, so that an
 * existing database carries on from its version. */
const char *const job_store_migrations[] = {
    "CREATE TABLE tasks ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, payload TEXT NOT NULL,"
    " status INTEGER NOT NULL, priority INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, max_retries INTEGER NOT NULL DEFAULT 0,"
    " timeout_s REAL NOT NULL DEFAULT 0, run_at INTEGER NOT NULL, created INTEGER NOT NULL,"
    " started INTEGER, completed INTEGER, cur INTEGER NOT NULL DEFAULT 0,"
    " total INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0, idem_key TEXT UNIQUE);"
    "CREATE INDEX tasks_ready ON tasks (status, priority DESC, run_at, id);"
    "CREATE INDEX tasks_by_status ON tasks (status, id);"
    "CREATE TABLE schedules (key TEXT PRIMARY KEY, slot INTEGER NOT NULL);",
    /* 2: the indexes that find work hold pending jobs only (a job leaves them when claimed, so
     * its later changes of status cost them nothing), one of them finds the next due time
     * without a scan, and only jobs with an idempotency key are in the key's index. No
     * AUTOINCREMENT: tasks are never deleted, so ids still only grow, and each commit saves a
     * write of sqlite_sequence. */
    "CREATE TABLE tasks2 ("
    " id INTEGER PRIMARY KEY, type TEXT NOT NULL, payload TEXT NOT NULL,"
    " status INTEGER NOT NULL, priority INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, max_retries INTEGER NOT NULL DEFAULT 0,"
    " timeout_s REAL NOT NULL DEFAULT 0, run_at INTEGER NOT NULL, created INTEGER NOT NULL,"
    " started INTEGER, completed INTEGER, cur INTEGER NOT NULL DEFAULT 0,"
    " total INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0, idem_key TEXT);"
    "INSERT INTO tasks2 SELECT * FROM tasks;"
    "DROP TABLE tasks;"
    "ALTER TABLE tasks2 RENAME TO tasks;"
    "CREATE INDEX tasks_ready ON tasks (priority DESC, run_at, id) WHERE status = 0;"
    "CREATE INDEX tasks_due ON tasks (run_at) WHERE status = 0;"
    "CREATE INDEX tasks_by_status ON tasks (status, id);"
    "CREATE UNIQUE INDEX tasks_idem_key ON tasks (idem_key) WHERE idem_key IS NOT NULL;",
    /* 3: the W3C trace id of the request that submitted the job (NULL: none), so the job's
     * logs, upstream calls and frames join that trace. */
    "ALTER TABLE tasks ADD COLUMN trace_id TEXT;",
};
_Static_assert(ARRAY_LEN(job_store_migrations) == JOB_STORE_NMIGRATIONS, "a migration's count");

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
    s->base = db_add_statements(db, sql, Q_COUNT);
    int rc =
        s->base < 0 ? s->base : db_migrate(db, "jobs", job_store_migrations, JOB_STORE_NMIGRATIONS);
    if (rc < 0) {
        job_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
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

static char *col_text(db_conn_t *c, int i)
{
    const char *t = c->db->ops->col_text(c, i);
    return t ? strdup(t) : NULL;
}

static void read_row(db_conn_t *c, job_row_t *r)
{
    int64_t (*col)(db_conn_t *, int) = c->db->ops->col_int;
    const char *timeout = c->db->ops->col_text(c, 7);
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
}

/* Reads up to max rows of the statement just run; returns how many, or < 0. */
static int read_rows(job_conn_t *s, job_row_t *rows, int max)
{
    int n = 0, rc = 0;
    while (n < max && (rc = db_next(s->c)) == 1)
        read_row(s->c, &rows[n++]);
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

int job_store_insert(job_conn_t *s, job_row_t *r)
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
    db_param_t p[10] = {p_text(r->type),     p_text(r->payload),    p_int(r->status),
                        p_int(r->priority),  p_int(r->max_retries), p_text(timeout),
                        p_int(r->run_at_ms), p_int(r->created_ms),  p_text(r->idem_key),
                        p_text(r->trace_id)};
    int64_t id = 0;
    int rc = first_int(s, Q_INSERT, 10, p, &id);
    if (rc < 0)
        return rc;
    r->id = id;
    return 0;
}

int job_store_claim(job_conn_t *s, int64_t now_ms, job_row_t *rows, int max)
{
    db_param_t p[2] = {p_int(now_ms), p_int(max)};
    int rc = query(s, Q_READY, 2, p);
    int n = rc < 0 ? rc : read_rows(s, rows, max);
    for (int i = 0; i < n; i++) {
        db_param_t id = p_int(rows[i].id);
        if ((rc = run(s, Q_RESERVE, 1, &id)) < 0) { /* put back what was reserved, so that
                                                     * none is stranded */
            for (int k = 0; k < n; k++) {
                if (k < i)
                    job_store_unreserve(s, rows[k].id);
                job_row_clear(&rows[k]);
            }
            return rc;
        }
        rows[i].status = JOB_RESERVED;
    }
    return n;
}

int64_t job_store_next_run(job_conn_t *s)
{
    int64_t next = INT64_MAX;
    first_int(s, Q_NEXT_RUN, 0, NULL, &next);
    return next;
}

int job_store_progress(job_conn_t *s, int64_t id, int64_t current, int64_t total)
{
    db_param_t p[3] = {p_int(id), p_int(current), p_int(total)};
    return run(s, Q_PROGRESS, 3, p);
}

static int finish(job_conn_t *s, int64_t id, job_status_t status, const char *result,
                  const char *error, int64_t run_at_ms, int attempts, int64_t started_ms)
{
    db_param_t p[8] = {p_int(id),
                       p_int(status),
                       p_text(result),
                       p_text(error),
                       p_int(run_at_ms),
                       p_int((int64_t)(time_wall() * 1000)),
                       attempts > 0 ? p_int(attempts) : p_null(),
                       attempts > 0 ? p_int(started_ms) : p_null()};
    return run(s, Q_FINISH, 8, p);
}

int job_store_finish(job_conn_t *s, int64_t id, job_status_t status, const char *result,
                     const char *error, int64_t run_at_ms)
{
    return finish(s, id, status, result, error, run_at_ms, 0, 0);
}

int job_store_end_attempt(job_conn_t *s, int64_t id, int attempts, int64_t started_ms,
                          job_status_t status, const char *result, const char *error,
                          int64_t run_at_ms)
{
    return finish(s, id, status, result, error, run_at_ms, attempts, started_ms);
}

int job_store_request_cancel(job_conn_t *s, int64_t id)
{
    db_param_t p = p_int(id);
    return run(s, Q_CANCEL, 1, &p);
}

int job_store_start(job_conn_t *s, int64_t id, int attempts, int64_t started_ms)
{
    db_param_t p[3] = {p_int(id), p_int(attempts), p_int(started_ms)};
    return run(s, Q_START, 3, p);
}

int job_store_unreserve(job_conn_t *s, int64_t id)
{
    db_param_t p = p_int(id);
    return run(s, Q_UNRESERVE, 1, &p);
}

int job_store_requeue_running(job_conn_t *s)
{
    int rc = query(s, Q_REQUEUE_RUNNING, 0, NULL);
    int n = rc < 0 ? rc : (int)s->c->db->ops->changes(s->c);
    done(s);
    if (rc < 0 || (rc = run(s, Q_REQUEUE_RESERVED, 0, NULL)) < 0)
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
    return run(s, Q_SET_SLOT, 2, p);
}
