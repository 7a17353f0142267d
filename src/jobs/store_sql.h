/* The job store's statements and migrations, one text per engine where they differ
 * (store_sql.c). Private to store.c: the rest of the jobs layer sees store.h only. */
#ifndef ROOST_JOBS_STORE_SQL_H
#define ROOST_JOBS_STORE_SQL_H

#include "db/db.h"

#define JOB_COLS                                                                                   \
    "id, type, payload, status, priority, attempts, max_retries, timeout_s, run_at, created, "     \
    "started, completed, cur, total, result, error, cancel_requested, idem_key, "                  \
    "trace_id, token, ckey, ckey_limit"

enum {
    Q_INSERT,
    Q_BY_KEY,
    Q_READY,
    Q_EXPIRED,
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
    Q_RENEW,
    Q_TRY_LOCK,
    Q_KEY_COUNT,
    Q_RATE_TAKE,
    Q_COUNT
};

/* Statement k's text for the engine. */
const char *job_store_sql(db_engine_t engine, int k);

#define JOB_STORE_PG_NMIGRATIONS 1
extern const char *const job_store_pg_migrations[JOB_STORE_PG_NMIGRATIONS];

#endif
