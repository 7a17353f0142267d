/* The job queue's storage: the tasks and schedules tables on the data layer's pool (db/db.h),
 * so that the jobs layer says what it wants (insert a batch, claim ready jobs, record an
 * attempt) and not how. Not the SQL's engine, not the queue's threads. Threads: a job_store_t is
 * shared; a job_conn_t is one checked-out connection, used by the thread that acquired it until
 * it releases it. Errors: 0 or a negative code, as in db/db.h. */
#ifndef ROOST_JOBS_STORE_H
#define ROOST_JOBS_STORE_H

#include <errno.h>
#include <jansson.h>
#include <stdint.h>

#include "db/db.h"

typedef struct job_store job_store_t;

typedef struct {
    job_store_t *store;
    db_conn_t *c;
} job_conn_t;

typedef enum {
    JOB_PENDING,
    JOB_RUNNING,
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_RESERVED, /* claimed into the workers' ready queue, not started: shown as pending */
} job_status_t;

/* task.c: names as the API shows them */
const char *job_status_name(job_status_t s);
int job_status_parse(const char *name); /* -1 when unknown */

/* One row. Its strings point into texts, one allocation that the row owns (job_row_clear frees
 * it); a row made only to be inserted may point at the caller's strings instead (texts NULL). */
typedef struct {
    int64_t id;
    const char *type;
    const char *payload; /* JSON text */
    job_status_t status;
    int priority;
    int attempts, max_retries;
    double timeout_s;                                        /* 0: none */
    int64_t run_at_ms, created_ms, started_ms, completed_ms; /* unix ms; 0: not yet */
    int64_t progress_current, progress_total;
    const char *result; /* JSON text or NULL */
    const char *error;
    int cancel_requested;
    const char *idem_key;
    const char *trace_id; /* the submitting request's trace, or NULL */
    int64_t token;        /* the fencing token: a new one per claim, named by each later write */
    const char *ckey;     /* the concurrency key, or NULL */
    int ckey_limit;       /* at most this many of ckey reserved or running at once */
    char *texts;          /* the allocation the strings point into, or NULL */
} job_row_t;

/* A write of an attempt that does not hold the job any more (its lease expired and another
 * node claimed it) changes nothing and returns this. JOB_TOKEN_ANY skips the check. */
#define JOB_FENCED    (-ESTALE)
#define JOB_TOKEN_ANY (-1)

/* task.c: copies the row's strings (the caller's, texts NULL) into one allocation of its own:
 * 0, or -ENOMEM (the strings are then NULL). */
int job_row_own(job_row_t *r);
void job_row_clear(job_row_t *r);
/* task.c: the task as the API shows it (DESIGN.md "Jobs"). */
json_t *job_row_json(const job_row_t *r);
/* The same with the payload already parsed, which spares parsing it again; takes the
 * payload's reference (NULL: parsed from the row). */
json_t *job_row_json_with(const job_row_t *r, json_t *payload);

/* The jobs schema's migrations, in order (db_migrate's table jobs_schema): exported so that a
 * test can build a database of an older version. */
#define JOB_STORE_NMIGRATIONS 4
extern const char *const job_store_migrations[JOB_STORE_NMIGRATIONS];

/* The schema is added to the pool of the server's own SQLite file (db_share_local): one set of
 * connections and one writer lock for that file, shared with the application's data when
 * --database is that file; or, with --database postgresql://..., to that pool (db_share_jobs),
 * where every node shares the queue: claims skip rows other nodes hold (FOR UPDATE SKIP
 * LOCKED), and each claim holds a lease and a fencing token (job_store_renew). Statements are
 * one list with a PostgreSQL text where the dialects part (store_sql.c).
 *
 * Adds the job statements to db and applies the jobs schema's migrations (table jobs_schema).
 * Takes over the caller's reference to db (job_store_close gives it back). fsync: every batch
 * is synced (synchronous=FULL), not only checkpoints. */
int job_store_open(db_t *db, int fsync, job_store_t **out);
/* 1 when the store is shared by nodes (PostgreSQL): leases, fencing and a schedule leader. */
int job_store_shared(const job_store_t *s);
void job_store_close(job_store_t *s);

/* A connection for the calling thread (the pool's checkout: -EAGAIN when none). */
int job_store_acquire(job_store_t *s, job_conn_t *out);
void job_store_release(job_conn_t *s);

/* Transactions: the dispatcher wraps each batch in one (one commit, one fsync at most). */
int job_store_begin(job_conn_t *s);
int job_store_commit(job_conn_t *s);
void job_store_rollback(job_conn_t *s);

/* Inserts r (its id is set here), pending, or reserved when r->status says so (a job the
 * caller hands to a worker at once). With an idempotency key already used, fills r with the
 * existing row instead and returns 1. Returns 0 on insert, < 0 on error. */
int job_store_insert(job_conn_t *s, job_row_t *r);
/* The same for a job stored reserved by owner with a lease (PostgreSQL). */
int job_store_insert_held(job_conn_t *s, job_row_t *r, const char *lease_owner,
                          int64_t lease_until);
/* How a claim holds what it takes. */
typedef struct {
    const char *owner;   /* the node's name, on the rows it holds (NULL: none) */
    int64_t lease_until; /* unix ms (0: no lease) */
    int (*rate_of)(void *ud, const char *type); /* a type's starts per second, 0: no limit */
    void *ud;
    int held_back; /* out: ready jobs a key or a rate held back (the claim is worth retrying) */
} job_claim_t;
/* Up to max pending jobs with run_at <= now, by priority, run_at, id, each within its
 * concurrency key's limit and its type's rate; each is marked reserved with a new token.
 * Returns how many rows were filled. o may be NULL. */
int job_store_claim(job_conn_t *s, int64_t now_ms, job_row_t *rows, int max, job_claim_t *o);
/* Up to max reserved or running jobs whose lease expired before now (their node died or
 * stalled), claimed again the same way. Returns how many. */
int job_store_claim_expired(job_conn_t *s, int64_t now_ms, job_row_t *rows, int max,
                            job_claim_t *o);
/* Extends a held job's lease: 1 held (*cancel: a cancel was asked), JOB_FENCED lost. */
int job_store_renew(job_conn_t *s, int64_t id, int64_t token, int64_t lease_until, int *cancel);
/* A reserved job has started: running, with its attempt count and start time. 0, or
 * JOB_FENCED when token does not hold it any more. */
int job_store_start(job_conn_t *s, int64_t id, int attempts, int64_t started_ms, int64_t token);
/* A reserved job that never started goes back to pending, its last error kept. */
int job_store_unreserve(job_conn_t *s, int64_t id, int64_t token);
/* The next run_at among pending jobs, or INT64_MAX. */
int64_t job_store_next_run(job_conn_t *s);
/* These three: 0, or JOB_FENCED when token does not hold the job any more. */
int job_store_progress(job_conn_t *s, int64_t id, int64_t current, int64_t total, int64_t token);
/* Ends an attempt: status completed/failed/cancelled with result or error; or pending again
 * (a retry) at run_at_ms. */
int job_store_finish(job_conn_t *s, int64_t id, job_status_t status, const char *result,
                     const char *error, int64_t run_at_ms, int64_t token);
/* The same at the end of an attempt, with its number and start: one write when the start was
 * not recorded yet (a short job starts and ends between two commits). */
int job_store_end_attempt(job_conn_t *s, int64_t id, int attempts, int64_t started_ms,
                          job_status_t status, const char *result, const char *error,
                          int64_t run_at_ms, int64_t token);
int job_store_request_cancel(job_conn_t *s, int64_t id);
/* Jobs left running or reserved by a crash or a stop go back to pending: every one on SQLite,
 * owner's only on PostgreSQL (other nodes' jobs are theirs until their leases expire). Returns
 * how many were running. */
int job_store_requeue_running(job_conn_t *s, const char *owner);
/* 1 and the row when found, 0 when not, < 0 on error. */
int job_store_get(job_conn_t *s, int64_t id, job_row_t *r);
/* Newest first, ids below before_id (0: from the newest), status filter (-1: any). Returns the
 * number of rows (at most max), or < 0. */
int job_store_list(job_conn_t *s, int status, int64_t before_id, job_row_t *rows, int max);
/* Counts per status into counts[5] (reserved jobs count as pending). */
int job_store_counts(job_conn_t *s, long counts[5]);
/* Periodic schedules: the last slot enqueued for a schedule key (0 if none), and its update. */
int64_t job_store_schedule_slot(job_conn_t *s, const char *key);
/* 0 when it moved the slot forward, -EALREADY when the stored one is already there (another
 * node's). */
int job_store_set_schedule_slot(job_conn_t *s, const char *key, int64_t slot);
/* The schedules' leader on PostgreSQL: a session advisory lock held on a connection of its
 * own (lead), so that it ends with the node. 1 leading (lead kept), 0 not (lead released);
 * on SQLite always 1 without a connection. Call it again at each tick: it checks that the
 * connection still holds the lock. job_store_unlead gives it up. */
int job_store_lead(job_store_t *s, job_conn_t *lead);
void job_store_unlead(job_conn_t *lead);

#endif
