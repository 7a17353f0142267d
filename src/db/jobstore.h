/* The job queue's storage: a small interface over one SQLite database (WAL), so that the jobs
 * layer says what it wants (insert a batch, claim ready jobs, record an attempt) and not how.
 * A later PostgreSQL implementation provides the same functions.
 *
 * Threads: a jobstore_t is one connection, used by one thread at a time. The dispatcher owns a
 * writer; handlers that read (GET /tasks) open readers of their own (WAL lets them read while
 * the writer writes). */
#ifndef ROOST_JOBSTORE_H
#define ROOST_JOBSTORE_H

#include <jansson.h>
#include <stdint.h>

typedef struct jobstore jobstore_t;

typedef enum {
    JOB_PENDING,
    JOB_RUNNING,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_RESERVED, /* claimed into the workers' ready queue, not started: shown as pending */
} job_status_t;

const char *job_status_name(job_status_t s);
int job_status_parse(const char *name); /* -1 when unknown */

/* One row. Strings are owned by the row (job_row_clear frees them). */
typedef struct {
    int64_t id;
    char *type;
    char *payload; /* JSON text */
    job_status_t status;
    int priority;
    int attempts, max_retries;
    double timeout_s;                                        /* 0: none */
    int64_t run_at_ms, created_ms, started_ms, completed_ms; /* unix ms; 0: not yet */
    int64_t progress_current, progress_total;
    char *result; /* JSON text or NULL */
    char *error;
    int cancel_requested;
    char *idem_key;
} job_row_t;

void job_row_clear(job_row_t *r);
/* The task as the API shows it (DESIGN.md "Jobs"). */
json_t *job_row_json(const job_row_t *r);
/* The same with the payload already parsed, which spares parsing it again; takes the
 * payload's reference (NULL: parsed from the row). */
json_t *job_row_json_with(const job_row_t *r, json_t *payload);

/* Opens (creating) the database; a writer applies the schema migrations. fsync: every commit
 * is synced (synchronous=FULL), not only checkpoints. */
jobstore_t *jobstore_open(const char *path, int writer, int fsync);
void jobstore_close(jobstore_t *s);

/* Transactions: the dispatcher wraps each batch in one (one commit, one fsync at most). */
int jobstore_begin(jobstore_t *s);
int jobstore_commit(jobstore_t *s);
void jobstore_rollback(jobstore_t *s);

/* Inserts r (its id is set here), pending, or reserved when r->status says so (a job the
 * caller hands to a worker at once). With an idempotency key already used, fills r with the
 * existing row instead and returns 1. Returns 0 on insert, < 0 on error. */
int jobstore_insert(jobstore_t *s, job_row_t *r);
/* Up to max pending jobs with run_at <= now, by priority, run_at, id; each is marked reserved.
 * Returns how many rows were filled. */
int jobstore_claim(jobstore_t *s, int64_t now_ms, job_row_t *rows, int max);
/* A reserved job has started: running, with its attempt count and start time. */
int jobstore_start(jobstore_t *s, int64_t id, int attempts, int64_t started_ms);
/* A reserved job that never started goes back to pending, its last error kept. */
int jobstore_unreserve(jobstore_t *s, int64_t id);
/* The next run_at among pending jobs, or INT64_MAX. */
int64_t jobstore_next_run(jobstore_t *s);
int jobstore_progress(jobstore_t *s, int64_t id, int64_t current, int64_t total);
/* Ends an attempt: status completed/failed/cancelled with result or error; or pending again
 * (a retry) at run_at_ms. */
int jobstore_finish(jobstore_t *s, int64_t id, job_status_t status, const char *result,
                    const char *error, int64_t run_at_ms);
/* The same at the end of an attempt, with its number and start: one write when the start was
 * not recorded yet (a short job starts and ends between two commits). */
int jobstore_end_attempt(jobstore_t *s, int64_t id, int attempts, int64_t started_ms,
                         job_status_t status, const char *result, const char *error,
                         int64_t run_at_ms);
int jobstore_request_cancel(jobstore_t *s, int64_t id);
/* Jobs left running or reserved by a crash or a stop go back to pending. Returns how many
 * were running. */
int jobstore_requeue_running(jobstore_t *s);
/* 1 and the row when found, 0 when not, < 0 on error. */
int jobstore_get(jobstore_t *s, int64_t id, job_row_t *r);
/* Newest first, ids below before_id (0: from the newest), status filter (-1: any). Returns the
 * number of rows (at most max), or < 0. */
int jobstore_list(jobstore_t *s, int status, int64_t before_id, job_row_t *rows, int max);
/* Counts per status into counts[5] (reserved jobs count as pending). */
int jobstore_counts(jobstore_t *s, long counts[5]);
/* Periodic schedules: the last slot enqueued for a schedule key (0 if none), and its update. */
int64_t jobstore_schedule_slot(jobstore_t *s, const char *key);
int jobstore_set_schedule_slot(jobstore_t *s, const char *key, int64_t slot);

#endif
