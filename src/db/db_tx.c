/* Statements and transactions on a checked-out connection, the same for both engines: a
 * prepared statement by number, BEGIN (SQLite writers under the process's write lock),
 * COMMIT, ROLLBACK, and named savepoints. Not the pool (db_pool.c), not the engines. */
#include "db/db.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const double db_query_le[DB_QUERY_NLE] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};

/* Timed into the histogram; a span of the trace this thread works for, when spans go out. */
int db_query(db_conn_t *c, int k, int n, const db_param_t *p)
{
    if (k < 0 || k >= c->db->nsql || n < 0 || n > DB_MAX_PARAMS)
        return db_fail(c, -EINVAL, "no statement %d with %d parameters", k, n);
    db_t *db = c->db;
    uint64_t t0 = time_now_ns();
    int rc = db_prepare(c, k);
    if (rc == 0)
        rc = db->ops->query(c, k, n, p);
    else
        db->ops->finish(c); /* the previous statement ends either way, as query would end it */
    uint64_t ns = time_now_ns() - t0;
    int b = 0;
    while (b < DB_QUERY_NLE && (double)ns > db_query_le[b] * 1e9)
        b++;
    atomic_fetch_add_explicit(&db->q_n[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->q_ns, (long)ns, memory_order_relaxed);
    const char *trace = roost_trace_current();
    if (trace && roost_span_enabled()) {
        char span[17];
        uint64_t end = time_wall_ns();
        roost_span_new_id(span);
        roost_span_t sp = {.name = "db query",
                           .trace_id = trace,
                           .span_id = span,
                           .parent_span_id = roost_trace_current_span(),
                           .kind = ROOST_SPAN_CLIENT,
                           .start_ns = end - ns,
                           .end_ns = end,
                           .error = rc < 0,
                           .attrs = {{"db.system", db->ops->name}}};
        roost_span_emit(&sp);
    }
    return rc;
}

void db_query_metrics(db_t *db, sbuf_t *out)
{
    const char *e = db->ops->name;
    sbuf_printf(out, "# HELP roost_db_query_duration_seconds Time of a statement's execution\n"
                     "# TYPE roost_db_query_duration_seconds histogram\n");
    long cum = 0;
    for (int i = 0; i <= DB_QUERY_NLE; i++) {
        cum += atomic_load_explicit(&db->q_n[i], memory_order_relaxed);
        if (i < DB_QUERY_NLE)
            sbuf_printf(out,
                        "roost_db_query_duration_seconds_bucket{engine=\"%s\",le=\"%g\"} %ld\n", e,
                        db_query_le[i], cum);
        else
            sbuf_printf(out,
                        "roost_db_query_duration_seconds_bucket{engine=\"%s\",le=\"+Inf\"} %ld\n",
                        e, cum);
    }
    sbuf_printf(out,
                "roost_db_query_duration_seconds_sum{engine=\"%s\"} %.9f\n"
                "roost_db_query_duration_seconds_count{engine=\"%s\"} %ld\n",
                e, (double)atomic_load(&db->q_ns) / 1e9, e, cum);
}

int db_next(db_conn_t *c)
{
    return c->db->ops->next(c);
}

static void write_unlock(db_conn_t *c)
{
    if (c->write_lock) {
        c->write_lock = 0;
        pthread_mutex_unlock(&c->db->write_mutex);
    }
}

int db_begin(db_conn_t *c, int write)
{
    db_t *db = c->db;
    if (c->in_tx)
        return db_fail(c, -EINVAL, "a transaction is already open");
    db->ops->finish(c);
    int rc;
    if (db->engine == DB_SQLITE && write) {
        pthread_mutex_lock(&db->write_mutex);
        c->write_lock = 1;
        rc = db->ops->exec(c, "BEGIN IMMEDIATE", NULL);
    } else {
        rc = db->ops->exec(c, "BEGIN", NULL);
    }
    if (rc < 0) {
        write_unlock(c);
        return rc;
    }
    c->in_tx = 1;
    return 0;
}

int db_commit(db_conn_t *c)
{
    if (!c->in_tx)
        return db_fail(c, -EINVAL, "no transaction is open");
    c->db->ops->finish(c);
    int rc = c->db->ops->exec(c, "COMMIT", NULL);
    if (rc < 0) {
        db_rollback(c); /* SQLite keeps a transaction whose COMMIT failed open */
        return rc;
    }
    c->in_tx = 0;
    write_unlock(c);
    return 0;
}

int db_rollback(db_conn_t *c)
{
    if (!c->in_tx)
        return 0;
    c->db->ops->finish(c);
    char keep[sizeof c->err];
    memcpy(keep, c->err, sizeof keep); /* the error that made the caller roll back */
    int rc = c->db->ops->exec(c, "ROLLBACK", NULL);
    if (rc < 0)
        c->broken = 1;
    else
        memcpy(c->err, keep, sizeof keep);
    c->in_tx = 0;
    write_unlock(c);
    return rc;
}

static int savepoint_sql(db_conn_t *c, const char *verb, const char *name)
{
    if (!c->in_tx)
        return db_fail(c, -EINVAL, "savepoints need a transaction");
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 63 ||
        !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
          name[0] == '_'))
        return db_fail(c, -EINVAL, "bad savepoint name");
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
              (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
            return db_fail(c, -EINVAL, "bad savepoint name");
    char sql[128];
    snprintf(sql, sizeof sql, "%s %s", verb, name);
    c->db->ops->finish(c);
    return c->db->ops->exec(c, sql, NULL);
}

int db_savepoint(db_conn_t *c, const char *name)
{
    return savepoint_sql(c, "SAVEPOINT", name);
}

int db_release(db_conn_t *c, const char *name)
{
    return savepoint_sql(c, "RELEASE SAVEPOINT", name);
}

int db_rollback_to(db_conn_t *c, const char *name)
{
    char keep[sizeof c->err];
    memcpy(keep, c->err, sizeof keep);
    int rc = savepoint_sql(c, "ROLLBACK TO SAVEPOINT", name);
    if (rc == 0)
        memcpy(c->err, keep, sizeof keep);
    return rc;
}
