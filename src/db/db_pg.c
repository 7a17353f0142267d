/* The PostgreSQL engine over libpq's blocking calls: one PGconn per pooled connection, named
 * statements prepared on first use per connection, parameters and rows in text format. Errors
 * are classified by SQLSTATE; a connection that lost its server is marked broken, so the pool
 * closes it and the next checkout opens a new one (which fails fast, -EAGAIN, while the server is
 * down). It is not the pool, and it runs on workers, never on a loop. */
#include "db/db.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define PG_NAME_SIZE 16 /* "s<k>": a statement's name on the server */

typedef struct {
    db_conn_t base; /* first: a db_conn_t * is a pg_conn_t * */
    PGconn *pg;
    PGresult *res;
    int row, nrows;
    char num[DB_MAX_PARAMS][24]; /* integer parameters as text */
} pg_conn_t;

static void ignore_notice(void *arg, const char *message)
{
    /* "relation already exists, skipping" and friends: not worth a stderr line each. */
}

/* Classifies a failed result (res may be NULL: the connection failed before an answer). */
static int fail(pg_conn_t *c, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(c->pg);
    int code = -EIO;
    if (PQstatus(c->pg) != CONNECTION_OK) {
        code = -EAGAIN;
    } else if (state) {
        if (!strcmp(state, "23505"))
            code = -EEXIST; /* unique_violation */
        else if (!strncmp(state, "23", 2))
            code = -EINVAL; /* other integrity constraints */
        else if (!strcmp(state, "40P01") || !strcmp(state, "40001"))
            code = -EDEADLK; /* deadlock, serialization failure: retry the transaction */
        else if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3) || !strncmp(state, "53", 2))
            code = -EAGAIN; /* connection exception, shutdown, insufficient resources */
    }
    if (code == -EAGAIN && (PQstatus(c->pg) != CONNECTION_OK || (state && strncmp(state, "53", 2))))
        c->base.broken = 1;
    return db_engine_fail(&c->base, code, msg, state ? state : "no state");
}

static void pg_finish(db_conn_t *base)
{
    pg_conn_t *c = (pg_conn_t *)base;
    if (c->res) {
        PQclear(c->res);
        c->res = NULL;
    }
    c->row = c->nrows = 0;
}

static void pg_close(db_conn_t *base)
{
    pg_conn_t *c = (pg_conn_t *)base;
    pg_finish(base);
    PQfinish(c->pg);
    db_stmt_free_all(base, free);
}

static int pg_connect(db_conn_t *base)
{
    pg_conn_t *c = (pg_conn_t *)base;
    db_t *db = base->db;
    /* The URL comes last, so that its own connect_timeout or application_name win. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *values[] = {"5", "roost", db->url.target, NULL};
    c->pg = PQconnectdbParams(keys, values, 1);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        db_fail(base, -EAGAIN, "%s", c->pg ? PQerrorMessage(c->pg) : "out of memory");
        /* Once a second at most: during an outage every request tries. */
        long long now = (long long)time_now_ms(), last = atomic_load(&db->last_warn_ms);
        if (now - last >= 1000 && atomic_compare_exchange_strong(&db->last_warn_ms, &last, now))
            log_warn("data: cannot connect to %s: %s", db->url.display, base->err);
        return -EAGAIN;
    }
    PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
    return 0;
}

static int pg_check(db_conn_t *base)
{
    pg_conn_t *c = (pg_conn_t *)base;
    if (PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return -1;
    /* An idle connection has nothing to read: we never LISTEN. Anything there is the server
     * saying goodbye (a shutdown or a terminated backend sends an error, then closes), and
     * finding it costs one poll() instead of a round trip like SQLAlchemy's pre-ping. */
    struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
    int n = poll(&p, 1, 0);
    return n == 0 ? 0 : -1;
}

static int pg_exec(db_conn_t *base, const char *sql, int64_t *first)
{
    pg_conn_t *c = (pg_conn_t *)base;
    pg_finish(base);
    PGresult *res = PQexec(c->pg, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        rc = fail(c, res);
    } else if (!strcmp(sql, "COMMIT") && !strcmp(PQcmdStatus(res), "ROLLBACK")) {
        /* COMMIT of a transaction that an error aborted rolls back and says so only here. */
        rc = db_fail(base, -EIO, "the transaction was aborted by an earlier error");
    } else if (first) {
        *first = st == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)
                     ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                     : 0;
    }
    PQclear(res);
    return rc;
}

static int pg_prepare(db_conn_t *base, int k)
{
    pg_conn_t *c = (pg_conn_t *)base;
    char *name = malloc(PG_NAME_SIZE);
    if (!name)
        return db_fail(base, -ENOMEM, "out of memory");
    snprintf(name, PG_NAME_SIZE, "s%d", k);
    PGresult *res = PQprepare(c->pg, name, base->db->sql[k], 0, NULL);
    int rc = res && PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : fail(c, res);
    PQclear(res);
    if (rc == 0)
        base->stmt[k] = name; /* the handle: the name it is prepared under */
    else
        free(name);
    return rc;
}

static int pg_query(db_conn_t *base, int k, int n, const db_param_t *p)
{
    pg_conn_t *c = (pg_conn_t *)base;
    pg_finish(base);
    const char *values[DB_MAX_PARAMS];
    for (int i = 0; i < n; i++) {
        switch (p[i].type) {
        case 'i':
            snprintf(c->num[i], sizeof c->num[i], "%" PRId64, p[i].i);
            values[i] = c->num[i];
            break;
        case 'b':
            values[i] = p[i].i ? "t" : "f";
            break;
        case 's':
            values[i] = p[i].s;
            break;
        default:
            values[i] = NULL;
            break;
        }
    }
    PGresult *res = PQexecPrepared(c->pg, base->stmt[k], n, values, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int rc = fail(c, res);
        PQclear(res);
        return rc;
    }
    c->res = res;
    c->row = -1;
    c->nrows = PQntuples(res);
    return 0;
}

static int pg_next(db_conn_t *base)
{
    pg_conn_t *c = (pg_conn_t *)base;
    if (!c->res || c->row + 1 >= c->nrows)
        return 0;
    c->row++;
    return 1;
}

static int pg_is_null(db_conn_t *base, int col)
{
    pg_conn_t *c = (pg_conn_t *)base;
    return !c->res || c->row < 0 || c->row >= c->nrows || col >= PQnfields(c->res) ||
           PQgetisnull(c->res, c->row, col);
}

static const char *pg_col_text(db_conn_t *base, int col)
{
    pg_conn_t *c = (pg_conn_t *)base;
    return pg_is_null(base, col) ? NULL : PQgetvalue(c->res, c->row, col);
}

static int64_t pg_col_int(db_conn_t *base, int col)
{
    const char *v = pg_col_text(base, col);
    if (!v)
        return 0;
    if (v[0] == 't' || v[0] == 'f') /* booleans */
        return v[0] == 't';
    return strtoll(v, NULL, 10);
}

static int64_t pg_changes(db_conn_t *base)
{
    pg_conn_t *c = (pg_conn_t *)base;
    return c->res ? strtoll(PQcmdTuples(c->res), NULL, 10) : 0;
}

/* libpq's pipeline mode: every statement is sent with a Sync after it (so that each runs in a
 * transaction of its own and an error aborts nothing after it), then the results are read in
 * order: one round trip for the lot instead of one each. With 8 single-row selects per round
 * trip, this PostgreSQL answered 4.3x more of them per second (pgbench, bench/README.md). The
 * connection stays blocking: a batch is a few small statements (db_run.c caps it), far below
 * what the socket buffers hold, so neither side can block on a full buffer. */
static void pg_pipeline(db_conn_t *base, db_stmt_t *s, int n)
{
    pg_conn_t *c = (pg_conn_t *)base;
    pg_finish(base);
    int rc = 0, sent = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = db_prepare(base, s[i].k); /* PQprepare waits for its answer: not in the pipeline */
    if (rc == 0 && !PQenterPipelineMode(c->pg))
        rc = fail(c, NULL);
    for (; rc == 0 && sent < n; sent++) {
        const char *values[DB_MAX_PARAMS];
        for (int i = 0; i < s[sent].n; i++) {
            const db_param_t *p = &s[sent].p[i];
            if (p->type == 'i') {
                snprintf(c->num[i], sizeof c->num[i], "%" PRId64, p->i);
                values[i] = c->num[i];
            } else {
                values[i] = p->type == 'b' ? (p->i ? "t" : "f") : p->type == 's' ? p->s : NULL;
            }
        }
        if (!PQsendQueryPrepared(c->pg, base->stmt[s[sent].k], s[sent].n, values, NULL, NULL, 0) ||
            !PQpipelineSync(c->pg))
            rc = fail(c, NULL);
    }
    for (int i = 0; i < n; i++) {
        if (rc < 0 || i >= sent) { /* not sent, or the connection is gone */
            if (rc == 0)
                rc = db_fail(base, -EAGAIN, "the connection failed in a pipeline");
            base->broken = 1;
            s[i].rows(base, rc, s[i].arg);
            continue;
        }
        PGresult *res = PQgetResult(c->pg);
        int got = res != NULL;
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        int qrc = 0;
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            c->res = res;
            c->row = -1;
            c->nrows = PQntuples(res);
        } else {
            qrc = fail(c, res);
            PQclear(res);
        }
        s[i].rows(base, qrc, s[i].arg);
        pg_finish(base);
        if (PQstatus(c->pg) != CONNECTION_OK) {
            rc = -EAGAIN;
            continue;
        }
        /* After a statement's result: NULL, then the Sync's PGRES_PIPELINE_SYNC. */
        while (got && (res = PQgetResult(c->pg)) != NULL)
            PQclear(res);
        res = got ? PQgetResult(c->pg) : NULL;
        if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
            rc = db_fail(base, -EAGAIN, "pipeline out of step");
        PQclear(res);
    }
    if (rc < 0 || !PQexitPipelineMode(c->pg))
        base->broken = 1;
}

const db_ops_t db_pg_ops = {.name = "postgresql", DB_ENGINE_OPS(pg), .pipeline = pg_pipeline};
