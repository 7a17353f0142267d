/* The job store's SQL: one statement list with $n placeholders, a PostgreSQL text where the
 * dialects part (SQLite's INDEXED BY hints; PostgreSQL's FOR UPDATE SKIP LOCKED, advisory
 * locks and explicit casts), and each engine's migrations. Both texts of a statement take the
 * same parameters, so store.c runs either without knowing which. Not the operations (store.c). */
#include "jobs/store_sql.h"

#include "base/base.h"
#include "jobs/store.h"

/* A claimable pending job: due, and its concurrency key (if any) below its limit. The count is
 * only a filter; the claim checks it again under the key's lock (store.c). */
#define KEY_FREE                                                                                   \
    "(ckey IS NULL OR (SELECT count(*) FROM tasks a WHERE a.ckey = t.ckey AND "                    \
    "a.status IN (1, 5)) < t.ckey_limit)"
#define READY_ORDER   " ORDER BY priority DESC, run_at, id LIMIT $2"
#define EXPIRED       "SELECT " JOB_COLS " FROM tasks WHERE status IN (1, 5) AND lease_until < $1 "
#define EXPIRED_ORDER "ORDER BY lease_until LIMIT $2"

/* timeout_s is REAL and bound as text ('%.17g'): the column's affinity stores it as a number,
 * and the engine interface needs no floating-point parameter for one column. A token of -1
 * (JOB_TOKEN_ANY) skips the fencing check. */
static const char *const sql[Q_COUNT] = {
    [Q_INSERT] = "INSERT INTO tasks (type, payload, status, priority, max_retries, timeout_s, "
                 "run_at, created, idem_key, trace_id, ckey, ckey_limit, owner, lease_until) "
                 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
                 "RETURNING id",
    [Q_BY_KEY] = "SELECT " JOB_COLS " FROM tasks WHERE idem_key = $1",
    /* A select, then one update per row: an UPDATE ... WHERE id IN (SELECT ...) RETURNING
     * builds a temporary table per call, which cost a third of the dispatcher's time. */
    [Q_READY] = "SELECT " JOB_COLS " FROM tasks AS t INDEXED BY tasks_ready "
                "WHERE status = 0 AND run_at <= $1 AND " KEY_FREE READY_ORDER,
    [Q_EXPIRED] = EXPIRED EXPIRED_ORDER,
    /* Each claim takes a new token: the fencing token every later write of the attempt names
     * (the one read by the claim plus one: the row is locked, FOR UPDATE, or SQLite's alone).
     * No RETURNING: on SQLite it costs a temporary table per row. */
    [Q_RESERVE] = "UPDATE tasks SET status = 5, token = token + 1, lease_until = $2, owner = $3 "
                  "WHERE id = $1",
    [Q_START] = "UPDATE tasks SET status = 1, attempts = $2, started = $3 "
                "WHERE id = $1 AND ($4 < 0 OR token = $4)",
    [Q_UNRESERVE] = "UPDATE tasks SET status = 0, lease_until = NULL, owner = NULL "
                    "WHERE id = $1 AND status = 5 AND ($2 < 0 OR token = $2)",
    [Q_NEXT_RUN] = "SELECT min(run_at) FROM tasks INDEXED BY tasks_due WHERE status = 0",
    [Q_PROGRESS] = "UPDATE tasks SET cur = $2, total = $3 WHERE id = $1 AND ($4 < 0 OR token = $4)",
    [Q_FINISH] = "UPDATE tasks SET status = $2, result = $3, error = $4, run_at = $5, "
                 "completed = CASE WHEN $2 >= 2 THEN $6 ELSE NULL END, "
                 "attempts = coalesce($7, attempts), started = coalesce($8, started), "
                 "lease_until = NULL, owner = NULL WHERE id = $1 AND ($9 < 0 OR token = $9)",
    [Q_CANCEL] = "UPDATE tasks SET cancel_requested = 1 WHERE id = $1",
    /* At start-up: this node's jobs (every job on SQLite, $2 = 1, where one node owns the file).
     * On PostgreSQL other nodes' jobs are theirs until their leases expire. */
    [Q_REQUEUE_RUNNING] = "UPDATE tasks SET status = 0, token = token + 1, lease_until = NULL, "
                          "owner = NULL WHERE status = 1 AND ($2 = 1 OR owner = $1)",
    [Q_REQUEUE_RESERVED] = "UPDATE tasks SET status = 0, token = token + 1, lease_until = NULL, "
                           "owner = NULL WHERE status = 5 AND ($2 = 1 OR owner = $1)",
    [Q_GET] = "SELECT " JOB_COLS " FROM tasks WHERE id = $1",
    [Q_LIST] = "SELECT " JOB_COLS " FROM tasks WHERE id < $1 ORDER BY id DESC LIMIT $2",
    [Q_LIST_STATUS] = "SELECT " JOB_COLS " FROM tasks INDEXED BY tasks_by_status "
                      "WHERE status = $3 AND id < $1 ORDER BY id DESC LIMIT $2",
    [Q_COUNTS] = "SELECT status, count(*) FROM tasks GROUP BY status",
    [Q_SLOT] = "SELECT slot FROM schedules WHERE key = $1",
    /* Only forward: of two nodes that both think they lead, one changes the row. */
    [Q_SET_SLOT] = ("INSERT INTO schedules (key, slot) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET slot = excluded.slot "
                    "WHERE schedules.slot < excluded.slot"),
    [Q_RENEW] = "UPDATE tasks SET lease_until = $3 WHERE id = $1 AND token = $2 "
                "RETURNING cancel_requested",
    [Q_TRY_LOCK] = "SELECT 1 WHERE $1 IS NOT NULL", /* one writer per SQLite file: no lock */
    [Q_KEY_COUNT] = "SELECT count(*) FROM tasks WHERE ckey = $1 AND status IN (1, 5)",
    /* A fixed one-second window per type: n starts in window win. */
    [Q_RATE_TAKE] = ("INSERT INTO job_rates (type, win, n) VALUES ($1, $2, 1) "
                     "ON CONFLICT (type) DO UPDATE SET win = excluded.win, "
                     "n = CASE WHEN job_rates.win = excluded.win THEN job_rates.n + 1 ELSE 1 END "
                     "WHERE job_rates.win <> excluded.win OR job_rates.n < $3 RETURNING n"),
};

static const char *const pg_sql[Q_COUNT] = {
    [Q_READY] = "SELECT " JOB_COLS " FROM tasks AS t WHERE status = 0 AND run_at <= $1 "
                "AND " KEY_FREE READY_ORDER " FOR UPDATE SKIP LOCKED",
    [Q_EXPIRED] = EXPIRED EXPIRED_ORDER " FOR UPDATE SKIP LOCKED",
    [Q_START] = "UPDATE tasks SET status = 1, attempts = $2, started = $3 "
                "WHERE id = $1 AND ($4::bigint < 0 OR token = $4::bigint)",
    [Q_UNRESERVE] = "UPDATE tasks SET status = 0, lease_until = NULL, owner = NULL "
                    "WHERE id = $1 AND status = 5 AND ($2::bigint < 0 OR token = $2::bigint)",
    [Q_NEXT_RUN] = "SELECT min(run_at) FROM tasks WHERE status = 0",
    [Q_PROGRESS] = "UPDATE tasks SET cur = $2, total = $3 "
                   "WHERE id = $1 AND ($4::bigint < 0 OR token = $4::bigint)",
    [Q_FINISH] = "UPDATE tasks SET status = $2::int, result = $3, error = $4, run_at = $5, "
                 "completed = CASE WHEN $2::int >= 2 THEN $6::bigint ELSE NULL END, "
                 "attempts = coalesce($7::int, attempts), started = coalesce($8::bigint, started), "
                 "lease_until = NULL, owner = NULL "
                 "WHERE id = $1 AND ($9::bigint < 0 OR token = $9::bigint)",
    [Q_REQUEUE_RUNNING] = "UPDATE tasks SET status = 0, token = token + 1, lease_until = NULL, "
                          "owner = NULL WHERE status = 1 AND ($2::int = 1 OR owner = $1)",
    [Q_REQUEUE_RESERVED] = "UPDATE tasks SET status = 0, token = token + 1, lease_until = NULL, "
                           "owner = NULL WHERE status = 5 AND ($2::int = 1 OR owner = $1)",
    [Q_LIST_STATUS] = "SELECT " JOB_COLS " FROM tasks "
                      "WHERE status = $3 AND id < $1 ORDER BY id DESC LIMIT $2",
    /* Held to the transaction's end; a key another node is claiming now is skipped, not
     * waited for, so that two claims never wait on each other. */
    [Q_TRY_LOCK] = "SELECT pg_try_advisory_xact_lock(hashtext($1))::int",
};

const char *job_store_sql(db_engine_t engine, int k)
{
    return engine == DB_POSTGRES && pg_sql[k] ? pg_sql[k] : sql[k];
}

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
    /* 4: the claim's fencing token and lease (used on PostgreSQL, where nodes share the
     * queue), concurrency keys, and the per-type start counts of rate limits. */
    "ALTER TABLE tasks ADD COLUMN token INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN lease_until INTEGER;"
    "ALTER TABLE tasks ADD COLUMN owner TEXT;"
    "ALTER TABLE tasks ADD COLUMN ckey TEXT;"
    "ALTER TABLE tasks ADD COLUMN ckey_limit INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX tasks_ckey ON tasks (ckey) WHERE ckey IS NOT NULL AND status IN (1, 5);"
    "CREATE TABLE job_rates (type TEXT PRIMARY KEY, win INTEGER NOT NULL, n INTEGER NOT NULL);",
};
_Static_assert(ARRAY_LEN(job_store_migrations) == JOB_STORE_NMIGRATIONS, "a migration's count");

/* PostgreSQL's schema starts at SQLite's latest. */
const char *const job_store_pg_migrations[] = {
    "CREATE TABLE tasks ("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, type TEXT NOT NULL,"
    " payload TEXT NOT NULL, status INTEGER NOT NULL, priority INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, max_retries INTEGER NOT NULL DEFAULT 0,"
    " timeout_s DOUBLE PRECISION NOT NULL DEFAULT 0, run_at BIGINT NOT NULL,"
    " created BIGINT NOT NULL, started BIGINT, completed BIGINT, cur BIGINT NOT NULL DEFAULT 0,"
    " total BIGINT NOT NULL DEFAULT 0, result TEXT, error TEXT,"
    " cancel_requested INTEGER NOT NULL DEFAULT 0, idem_key TEXT, trace_id TEXT,"
    " token BIGINT NOT NULL DEFAULT 0, lease_until BIGINT, owner TEXT, ckey TEXT,"
    " ckey_limit INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX tasks_ready ON tasks (priority DESC, run_at, id) WHERE status = 0;"
    "CREATE INDEX tasks_due ON tasks (run_at) WHERE status = 0;"
    "CREATE INDEX tasks_by_status ON tasks (status, id);"
    "CREATE INDEX tasks_leased ON tasks (lease_until) WHERE status IN (1, 5);"
    "CREATE INDEX tasks_ckey ON tasks (ckey) WHERE ckey IS NOT NULL AND status IN (1, 5);"
    "CREATE UNIQUE INDEX tasks_idem_key ON tasks (idem_key) WHERE idem_key IS NOT NULL;"
    "CREATE TABLE schedules (key TEXT PRIMARY KEY, slot BIGINT NOT NULL);"
    "CREATE TABLE job_rates (type TEXT PRIMARY KEY, win BIGINT NOT NULL, n INTEGER NOT NULL);",
};
