/* Migrations: a schema's numbered steps applied once each, in one transaction, the version
 * kept in <name>_schema so that several schemas (the application's, the job store's) share a
 * database without sharing a version; then every statement of the pool prepared once, so that
 * a typo fails the start and not the first request. */
#include "db/db.h"

#include <stdio.h>

#include "base/base.h"

int db_migrate(db_t *db, const char *name, const char *const *migrations, int n)
{
    db_conn_t *c;
    int rc = db_checkout(db, &c);
    if (rc < 0) {
        log_error("data: cannot connect to %s", db->url.display);
        return rc;
    }
    char sql[256];
    int64_t version = 0;
    if ((rc = db_begin(c, 1)) < 0)
        goto out;
    if (db->engine == DB_POSTGRES) {
        /* Two servers starting at once: the second waits here, then sees the new version. */
        snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(hashtext('roost %s schema'))",
                 name);
        if ((rc = db->ops->exec(c, sql, NULL)) < 0)
            goto out;
    }
    snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s_schema (version INTEGER NOT NULL)",
             name);
    if ((rc = db->ops->exec(c, sql, NULL)) < 0)
        goto out;
    snprintf(sql, sizeof sql, "SELECT coalesce(max(version), 0) FROM %s_schema", name);
    if ((rc = db->ops->exec(c, sql, &version)) < 0)
        goto out;
    for (int v = (int)version; v < n; v++) {
        snprintf(sql, sizeof sql, "INSERT INTO %s_schema (version) VALUES (%d)", name, v + 1);
        if ((rc = db->ops->exec(c, migrations[v], NULL)) < 0 ||
            (rc = db->ops->exec(c, sql, NULL)) < 0) {
            log_error("data: migration %d failed: %s", v + 1, c->err);
            goto out;
        }
        if (version > 0) /* an upgrade is worth a line per step; a new database is not */
            log_info("data: schema %s: applied migration %d", name, v + 1);
    }
    if (version == 0 && n > 0)
        log_info("data: created schema %s at version %d", name, n);
    if ((rc = db_commit(c)) < 0)
        goto out;
    for (int k = 0; k < db->nsql; k++)
        if ((rc = db_prepare(c, k)) < 0) {
            log_error("data: statement %d does not prepare: %s", k, c->err);
            goto out;
        }
out:
    if (rc < 0 && c->err[0])
        log_error("data: %s", c->err);
    db_rollback(c);
    db_checkin(c);
    return rc;
}
