/* Statements and transactions on a checked-out connection, the same for both engines: a
 * prepared statement by number, BEGIN (SQLite writers under the process's write lock),
 * COMMIT, ROLLBACK, and named savepoints. Not the pool (db_pool.c), not the engines. */
#include "db/db.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int db_query(db_conn_t *c, int k, int n, const db_param_t *p)
{
    if (k < 0 || k >= c->db->nsql || n < 0 || n > DB_MAX_PARAMS)
        return db_fail(c, -EINVAL, "no statement %d with %d parameters", k, n);
    return c->db->ops->query(c, k, n, p);
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
