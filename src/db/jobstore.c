/* The job store on SQLite. WAL with synchronous=NORMAL by default: a commit survives the
 * process being killed (kill -9), which is the failure the queue promises to survive; only an
 * OS crash or power loss may lose the last commits. --job-fsync (FULL) pays an fsync per batch
 * to survive those too.
 * Statements are prepared once per connection. */
#include "db/jobstore.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"

#define COLS                                                                                       \
    "id, type, payload, status, priority, attempts, max_retries, timeout_s, run_at, created, "     \
    "started, completed, cur, total, result, error, cancel_requested, idem_key"

enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
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

static const char *const sql[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_INSERT] = "INSERT INTO tasks (type, payload, status, priority, max_retries, timeout_s, "
                 "run_at, created, idem_key) VALUES (?1, ?2, ?9, ?3, ?4, ?5, ?6, ?7, ?8)",
    [Q_BY_KEY] = "SELECT " COLS " FROM tasks WHERE idem_key = ?1",
    /* A select, then one update per row: an UPDATE ... WHERE id IN (SELECT ...) RETURNING
     * builds a temporary table per call, which cost a third of the dispatcher's time. */
    [Q_READY] = "SELECT " COLS " FROM tasks INDEXED BY tasks_ready "
                "WHERE status = 0 AND run_at <= ?1 ORDER BY priority DESC, run_at, id LIMIT ?2",
    [Q_RESERVE] = "UPDATE tasks SET status = 5 WHERE id = ?1",
    [Q_START] = "UPDATE tasks SET status = 1, attempts = ?2, started = ?3 WHERE id = ?1",
    [Q_UNRESERVE] = "UPDATE tasks SET status = 0 WHERE id = ?1 AND status = 5",
    [Q_NEXT_RUN] = "SELECT min(run_at) FROM tasks INDEXED BY tasks_due WHERE status = 0",
    [Q_PROGRESS] = "UPDATE tasks SET cur = ?2, total = ?3 WHERE id = ?1",
    [Q_FINISH] = "UPDATE tasks SET status = ?2, result = ?3, error = ?4, run_at = ?5, "
                 "completed = CASE WHEN ?2 >= 2 THEN ?6 ELSE NULL END, "
                 "attempts = coalesce(?7, attempts), started = coalesce(?8, started) WHERE id = ?1",
    [Q_CANCEL] = "UPDATE tasks SET cancel_requested = 1 WHERE id = ?1",
    [Q_REQUEUE_RUNNING] = "UPDATE tasks SET status = 0 WHERE status = 1",
    [Q_REQUEUE_RESERVED] = "UPDATE tasks SET status = 0 WHERE status = 5",
    [Q_GET] = "SELECT " COLS " FROM tasks WHERE id = ?1",
    [Q_LIST] = "SELECT " COLS " FROM tasks WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    [Q_LIST_STATUS] = "SELECT " COLS " FROM tasks INDEXED BY tasks_by_status "
                      "WHERE status = ?3 AND id < ?1 ORDER BY id DESC LIMIT ?2",
    [Q_COUNTS] = "SELECT status, count(*) FROM tasks GROUP BY status",
    [Q_SLOT] = "SELECT slot FROM schedules WHERE key = ?1",
    [Q_SET_SLOT] = "INSERT INTO schedules (key, slot) VALUES (?1, ?2) "
                   "ON CONFLICT (key) DO UPDATE SET slot = excluded.slot",
};

/* Versioned migrations, applied in order at start-up; the version lives in its own table so
 * that other users of the same database file keep theirs apart. */
static const char *const migrations[] = {
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
};

struct jobstore {
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
};

static const char *const status_names[] = {"pending", "running", "completed", "failed",
                                           "cancelled"};

const char *job_status_name(job_status_t s)
{
    if (s == JOB_RESERVED)
        s = JOB_PENDING; /* to the API, a job waits until it starts */
    return (unsigned)s < ARRAY_LEN(status_names) ? status_names[s] : "unknown";
}

int job_status_parse(const char *name)
{
    for (size_t i = 0; name && i < ARRAY_LEN(status_names); i++)
        if (!strcmp(name, status_names[i]))
            return (int)i;
    return -1;
}

static int migrate(sqlite3 *db)
{
    if (sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS jobs_schema (version INTEGER NOT NULL);", NULL,
                     NULL, NULL) != SQLITE_OK)
        return -1;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT max(version) FROM jobs_schema", -1, &st, NULL))
        return -1;
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    for (int v = version; v < (int)ARRAY_LEN(migrations); v++) {
        char *err = NULL;
        char bump[64];
        snprintf(bump, sizeof bump, "INSERT INTO jobs_schema VALUES (%d);", v + 1);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(db, migrations[v], NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(db, bump, NULL, NULL, &err) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, &err) != SQLITE_OK) {
            log_error("jobs: migration %d failed: %s", v + 1, err ? err : sqlite3_errmsg(db));
            sqlite3_free(err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    return 0;
}

jobstore_t *jobstore_open(const char *path, int writer, int fsync)
{
    jobstore_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        log_error("jobs: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "?");
        jobstore_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_exec(s->db,
                 fsync ? "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                       : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
                 NULL, NULL, NULL);
    if (writer && migrate(s->db) < 0) {
        jobstore_close(s);
        return NULL;
    }
    for (int i = 0; i < Q_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL)) {
            log_error("jobs: cannot prepare [%s]: %s", sql[i], sqlite3_errmsg(s->db));
            jobstore_close(s);
            return NULL;
        }
    return s;
}

void jobstore_close(jobstore_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db);
    free(s);
}

static sqlite3_stmt *stmt(jobstore_t *s, int q)
{
    sqlite3_reset(s->q[q]);
    sqlite3_clear_bindings(s->q[q]);
    return s->q[q];
}

static int run(jobstore_t *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return 0;
    log_error("jobs: %s", sqlite3_errmsg(s->db));
    return -1;
}

int jobstore_begin(jobstore_t *s)
{
    return run(s, stmt(s, Q_BEGIN));
}

int jobstore_commit(jobstore_t *s)
{
    return run(s, stmt(s, Q_COMMIT));
}

void jobstore_rollback(jobstore_t *s)
{
    run(s, stmt(s, Q_ROLLBACK));
}

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void read_row(sqlite3_stmt *st, job_row_t *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->type = col_text(st, 1);
    r->payload = col_text(st, 2);
    r->status = (job_status_t)sqlite3_column_int(st, 3);
    r->priority = sqlite3_column_int(st, 4);
    r->attempts = sqlite3_column_int(st, 5);
    r->max_retries = sqlite3_column_int(st, 6);
    r->timeout_s = sqlite3_column_double(st, 7);
    r->run_at_ms = sqlite3_column_int64(st, 8);
    r->created_ms = sqlite3_column_int64(st, 9);
    r->started_ms = sqlite3_column_int64(st, 10);
    r->completed_ms = sqlite3_column_int64(st, 11);
    r->progress_current = sqlite3_column_int64(st, 12);
    r->progress_total = sqlite3_column_int64(st, 13);
    r->result = col_text(st, 14);
    r->error = col_text(st, 15);
    r->cancel_requested = sqlite3_column_int(st, 16);
    r->idem_key = col_text(st, 17);
}

void job_row_clear(job_row_t *r)
{
    free(r->type);
    free(r->payload);
    free(r->result);
    free(r->error);
    free(r->idem_key);
    memset(r, 0, sizeof *r);
}

static json_t *iso_time(int64_t ms)
{
    if (!ms)
        return json_null();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char buf[40];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    return json_string(buf);
}

static json_t *json_or_null(const char *text)
{
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return v ? v : json_null();
}

json_t *job_row_json(const job_row_t *r)
{
    return job_row_json_with(r, NULL);
}

json_t *job_row_json_with(const job_row_t *r, json_t *payload)
{
    double percent = r->progress_total > 0
                         ? 100.0 * (double)r->progress_current / (double)r->progress_total
                         : (r->status == JOB_COMPLETED ? 100.0 : 0.0);
    if (percent > 100)
        percent = 100;
    return json_pack("{s:I,s:s,s:o,s:s,s:i,s:{s:I,s:I,s:f},s:i,s:i,s:o,s:o,s:o,s:o,s:o,s:s?,s:b}",
                     "task_id", (json_int_t)r->id, "type", r->type ? r->type : "", "payload",
                     payload ? payload : json_or_null(r->payload), "status",
                     job_status_name(r->status), "priority", r->priority, "progress", "current",
                     (json_int_t)r->progress_current, "total", (json_int_t)r->progress_total,
                     "percent", percent, "attempts", r->attempts, "max_retries", r->max_retries,
                     "created_at", iso_time(r->created_ms), "started_at", iso_time(r->started_ms),
                     "completed_at", iso_time(r->completed_ms), "run_at", iso_time(r->run_at_ms),
                     "result", json_or_null(r->result), "error", r->error, "cancel_requested",
                     r->cancel_requested);
}

static int by_key(jobstore_t *s, const char *key, job_row_t *r)
{
    sqlite3_stmt *st = stmt(s, Q_BY_KEY);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found)
        read_row(st, r);
    sqlite3_reset(st);
    return found;
}

int jobstore_insert(jobstore_t *s, job_row_t *r)
{
    if (r->idem_key) {
        job_row_t old;
        if (by_key(s, r->idem_key, &old)) {
            job_row_clear(r);
            *r = old;
            return 1;
        }
    }
    sqlite3_stmt *st = stmt(s, Q_INSERT);
    sqlite3_bind_text(st, 1, r->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->payload, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, r->priority);
    sqlite3_bind_int(st, 4, r->max_retries);
    sqlite3_bind_double(st, 5, r->timeout_s);
    sqlite3_bind_int64(st, 6, r->run_at_ms);
    sqlite3_bind_int64(st, 7, r->created_ms);
    if (r->idem_key)
        sqlite3_bind_text(st, 8, r->idem_key, -1, SQLITE_STATIC);
    if (r->status != JOB_RESERVED)
        r->status = JOB_PENDING;
    sqlite3_bind_int(st, 9, (int)r->status);
    if (run(s, st) < 0)
        return -1;
    r->id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

int jobstore_claim(jobstore_t *s, int64_t now_ms, job_row_t *rows, int max)
{
    sqlite3_stmt *st = stmt(s, Q_READY);
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, max);
    int n = 0;
    while (n < max && sqlite3_step(st) == SQLITE_ROW)
        read_row(st, &rows[n++]);
    sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *up = stmt(s, Q_RESERVE);
        sqlite3_bind_int64(up, 1, rows[i].id);
        if (run(s, up) < 0) { /* put back what was reserved, so that none is stranded */
            for (int k = 0; k < n; k++) {
                if (k < i)
                    jobstore_unreserve(s, rows[k].id);
                job_row_clear(&rows[k]);
            }
            return -1;
        }
        rows[i].status = JOB_RESERVED;
    }
    return n;
}

int64_t jobstore_next_run(jobstore_t *s)
{
    sqlite3_stmt *st = stmt(s, Q_NEXT_RUN);
    int64_t next = INT64_MAX;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        next = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return next;
}

int jobstore_progress(jobstore_t *s, int64_t id, int64_t current, int64_t total)
{
    sqlite3_stmt *st = stmt(s, Q_PROGRESS);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, current);
    sqlite3_bind_int64(st, 3, total);
    return run(s, st);
}

static int finish(jobstore_t *s, int64_t id, job_status_t status, const char *result,
                  const char *error, int64_t run_at_ms, int attempts, int64_t started_ms)
{
    sqlite3_stmt *st = stmt(s, Q_FINISH);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, (int)status);
    if (result)
        sqlite3_bind_text(st, 3, result, -1, SQLITE_STATIC);
    if (error)
        sqlite3_bind_text(st, 4, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, run_at_ms);
    sqlite3_bind_int64(st, 6, (int64_t)(time_wall() * 1000));
    if (attempts > 0) {
        sqlite3_bind_int(st, 7, attempts);
        sqlite3_bind_int64(st, 8, started_ms);
    }
    return run(s, st);
}

int jobstore_finish(jobstore_t *s, int64_t id, job_status_t status, const char *result,
                    const char *error, int64_t run_at_ms)
{
    return finish(s, id, status, result, error, run_at_ms, 0, 0);
}

int jobstore_end_attempt(jobstore_t *s, int64_t id, int attempts, int64_t started_ms,
                         job_status_t status, const char *result, const char *error,
                         int64_t run_at_ms)
{
    return finish(s, id, status, result, error, run_at_ms, attempts, started_ms);
}

int jobstore_request_cancel(jobstore_t *s, int64_t id)
{
    sqlite3_stmt *st = stmt(s, Q_CANCEL);
    sqlite3_bind_int64(st, 1, id);
    return run(s, st);
}

int jobstore_start(jobstore_t *s, int64_t id, int attempts, int64_t started_ms)
{
    sqlite3_stmt *st = stmt(s, Q_START);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, attempts);
    sqlite3_bind_int64(st, 3, started_ms);
    return run(s, st);
}

int jobstore_unreserve(jobstore_t *s, int64_t id)
{
    sqlite3_stmt *st = stmt(s, Q_UNRESERVE);
    sqlite3_bind_int64(st, 1, id);
    return run(s, st);
}

int jobstore_requeue_running(jobstore_t *s)
{
    if (run(s, stmt(s, Q_REQUEUE_RUNNING)) < 0)
        return -1;
    int n = sqlite3_changes(s->db);
    return run(s, stmt(s, Q_REQUEUE_RESERVED)) < 0 ? -1 : n;
}

int jobstore_get(jobstore_t *s, int64_t id, job_row_t *r)
{
    sqlite3_stmt *st = stmt(s, Q_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_row(st, r);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int list(jobstore_t *s, int status, int64_t before_id, job_row_t *rows, int max)
{
    sqlite3_stmt *st = stmt(s, status >= 0 ? Q_LIST_STATUS : Q_LIST);
    sqlite3_bind_int64(st, 1, before_id > 0 ? before_id : INT64_MAX);
    sqlite3_bind_int(st, 2, max);
    if (status >= 0)
        sqlite3_bind_int(st, 3, status);
    int n = 0;
    while (n < max && sqlite3_step(st) == SQLITE_ROW)
        read_row(st, &rows[n++]);
    sqlite3_reset(st);
    return n;
}

int jobstore_list(jobstore_t *s, int status, int64_t before_id, job_row_t *rows, int max)
{
    if (status != JOB_PENDING)
        return list(s, status, before_id, rows, max);
    /* Pending as the API sees it is pending or reserved: a page of each (both newest first, in
     * index order), merged, the newest max kept. */
    job_row_t *pend = calloc((size_t)max, sizeof *pend), *resv = calloc((size_t)max, sizeof *resv);
    int n = pend && resv ? 0 : -1;
    if (n == 0) {
        int np = list(s, JOB_PENDING, before_id, pend, max);
        int nr = list(s, JOB_RESERVED, before_id, resv, max);
        int i = 0, k = 0;
        while (n < max && (i < np || k < nr))
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

int jobstore_counts(jobstore_t *s, long counts[5])
{
    memset(counts, 0, 5 * sizeof *counts);
    sqlite3_stmt *st = stmt(s, Q_COUNTS);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int k = sqlite3_column_int(st, 0);
        if (k == JOB_RESERVED)
            k = JOB_PENDING;
        if (k >= 0 && k < 5)
            counts[k] += (long)sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return 0;
}

int64_t jobstore_schedule_slot(jobstore_t *s, const char *key)
{
    sqlite3_stmt *st = stmt(s, Q_SLOT);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int64_t slot = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return slot;
}

int jobstore_set_schedule_slot(jobstore_t *s, const char *key, int64_t slot)
{
    sqlite3_stmt *st = stmt(s, Q_SET_SLOT);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, slot);
    return run(s, st);
}
