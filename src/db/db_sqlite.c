/* The SQLite engine: one sqlite3 handle per pooled connection, WAL (readers never wait for the
 * writer), synchronous=NORMAL (a commit survives the process being killed; only an OS crash or
 * power loss may take the last ones, and FULL would add an fsync to every commit), statements
 * prepared once per connection. Writes in this process take db_t.write_mutex, so writers queue
 * on a mutex instead of sleeping in SQLite's busy handler; it is not the pool. */
#include "db/db.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define BUSY_TIMEOUT_MS 5000

typedef struct {
    db_conn_t base; /* first: a db_conn_t * is a sq_conn_t * */
    sqlite3 *h;
    sqlite3_stmt *cur; /* the statement whose rows are being read */
    int row_pending;   /* its first row was stepped by query() and not yet returned */
    int stmt_lock;     /* an autocommit write holds write_mutex until the statement ends */
} sq_conn_t;

static int fail(sq_conn_t *c, int rc)
{
    int code;
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        code = rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY ? -EEXIST
                                                                                    : -EINVAL;
        break;
    case SQLITE_BUSY:
        /* A read snapshot that a write cannot build on: the transaction must start over. */
        code = rc == SQLITE_BUSY_SNAPSHOT ? -EDEADLK : -EAGAIN;
        break;
    case SQLITE_LOCKED:
        code = -EAGAIN;
        break;
    default:
        code = -EIO;
    }
    char detail[16];
    snprintf(detail, sizeof detail, "%d", rc);
    return db_engine_fail(&c->base, code, sqlite3_errmsg(c->h), detail);
}

static void sq_finish(db_conn_t *base)
{
    sq_conn_t *c = (sq_conn_t *)base;
    if (c->cur) {
        sqlite3_reset(c->cur);
        c->cur = NULL;
    }
    c->row_pending = 0;
    if (c->stmt_lock) {
        c->stmt_lock = 0;
        pthread_mutex_unlock(&base->db->write_mutex);
    }
}

static void finalize(void *st)
{
    sqlite3_finalize(st);
}

static void sq_close(db_conn_t *base)
{
    sq_conn_t *c = (sq_conn_t *)base;
    sq_finish(base);
    db_stmt_free_all(base, finalize);
    sqlite3_close_v2(c->h);
}

static int sq_connect(db_conn_t *base)
{
    sq_conn_t *c = (sq_conn_t *)base;
    db_t *db = base->db;
    int rc =
        sqlite3_open_v2(db->url.target, &c->h,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_error("data: cannot open %s: %s", db->url.target,
                  c->h ? sqlite3_errmsg(c->h) : "out of memory");
        return -EAGAIN;
    }
    sqlite3_extended_result_codes(c->h, 1);
    sqlite3_busy_timeout(c->h, BUSY_TIMEOUT_MS);
    char *err = NULL;
    rc = sqlite3_exec(c->h,
                      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                      "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
                      NULL, NULL, &err);
    if (rc != SQLITE_OK) {
        log_error("data: %s: %s", db->url.target, err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        return -EAGAIN;
    }
    return 0;
}

static int sq_check(db_conn_t *base)
{
    return 0; /* a file does not go away like a server does */
}

static int sq_exec(db_conn_t *base, const char *sql, int64_t *first)
{
    sq_conn_t *c = (sq_conn_t *)base;
    sq_finish(base);
    if (!first) {
        if (!strcmp(sql, "ROLLBACK") && sqlite3_get_autocommit(c->h))
            return 0; /* SQLite already rolled back (after some errors it does) */
        int rc = sqlite3_exec(c->h, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : fail(c, rc);
    }
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(c->h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(c, rc);
    rc = sqlite3_step(st);
    *first = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = fail(c, rc);
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    return 0;
}

static int sq_prepare(db_conn_t *base, int k)
{
    sq_conn_t *c = (sq_conn_t *)base;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(c->h, base->db->sql[k], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    base->stmt[k] = st;
    return rc == SQLITE_OK ? 0 : fail(c, rc);
}

static int sq_query(db_conn_t *base, int k, int n, const db_param_t *p)
{
    sq_conn_t *c = (sq_conn_t *)base;
    sq_finish(base);
    sqlite3_stmt *st = base->stmt[k];
    if (sqlite3_bind_parameter_count(st) != n)
        return db_fail(base, -EINVAL, "statement %d takes %d parameters, not %d", k,
                       sqlite3_bind_parameter_count(st), n);
    for (int i = 0; i < n; i++) {
        int rc;
        switch (p[i].type) {
        case 'i':
        case 'b':
            rc = sqlite3_bind_int64(st, i + 1, p[i].i);
            break;
        case 's':
            rc = p[i].s ? sqlite3_bind_text(st, i + 1, p[i].s, -1, SQLITE_TRANSIENT)
                        : sqlite3_bind_null(st, i + 1);
            break;
        default:
            rc = sqlite3_bind_null(st, i + 1);
            break;
        }
        if (rc != SQLITE_OK)
            return fail(c, rc);
    }
    if (!base->in_tx && !sqlite3_stmt_readonly(st)) {
        pthread_mutex_lock(&base->db->write_mutex);
        c->stmt_lock = 1;
    } else if (base->in_tx && !base->write_lock && !sqlite3_stmt_readonly(st)) {
        /* A read transaction that writes after all: writers still go one at a time. */
        pthread_mutex_lock(&base->db->write_mutex);
        base->write_lock = 1;
    }
    c->cur = st;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        c->row_pending = 1;
        return 0;
    }
    if (rc == SQLITE_DONE) {
        sq_finish(base);
        return 0;
    }
    rc = fail(c, rc);
    sq_finish(base);
    return rc;
}

static int sq_next(db_conn_t *base)
{
    sq_conn_t *c = (sq_conn_t *)base;
    if (c->row_pending) {
        c->row_pending = 0;
        return 1;
    }
    if (!c->cur)
        return 0;
    int rc = sqlite3_step(c->cur);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc != SQLITE_DONE)
        rc = fail(c, rc);
    else
        rc = 0;
    sq_finish(base);
    return rc;
}

static int sq_is_null(db_conn_t *base, int col)
{
    sq_conn_t *c = (sq_conn_t *)base;
    return !c->cur || sqlite3_column_type(c->cur, col) == SQLITE_NULL;
}

static int64_t sq_col_int(db_conn_t *base, int col)
{
    sq_conn_t *c = (sq_conn_t *)base;
    return c->cur ? sqlite3_column_int64(c->cur, col) : 0;
}

static const char *sq_col_text(db_conn_t *base, int col)
{
    sq_conn_t *c = (sq_conn_t *)base;
    return c->cur ? (const char *)sqlite3_column_text(c->cur, col) : NULL;
}

static int64_t sq_changes(db_conn_t *base)
{
    return sqlite3_changes64(((sq_conn_t *)base)->h);
}

const db_ops_t db_sqlite_ops = {.name = "sqlite", DB_ENGINE_OPS(sq)};
