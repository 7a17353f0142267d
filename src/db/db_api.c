/* The public face of the data store (roost_db_* in roost.h): opening the pool of --database with
 * the caller's schema, its gauges on /metrics, its shutdown with the server, and thin typed
 * wrappers over db_pool.c. The only file of the data layer that knows the server (a core service).
 */
#include "db/db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "core/core.h"

/* The pools roost_db_open made, so that db_share_local finds the one on the server's own
 * SQLite file instead of opening a second set of connections to it. */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static db_t *shared;

static void forget_shared(db_t *db)
{
    pthread_mutex_lock(&shared_lock);
    for (db_t **p = &shared; *p; p = &(*p)->next_shared)
        if (*p == db) {
            *p = db->next_shared;
            break;
        }
    pthread_mutex_unlock(&shared_lock);
}

/* The same file under two spellings (./data/roost.db, /abs/data/roost.db) is still one file. */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return !strcmp(a, b) || (stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
                             sa.st_ino == sb.st_ino);
}

/* The server's pool on the SQLite file of url (a reference), or NULL when roost_db_open made
 * none. */
static db_t *find_shared(roost_server_t *srv, const db_url_t *url)
{
    pthread_mutex_lock(&shared_lock);
    db_t *db = shared;
    while (db &&
           !(db->srv == srv && db->engine == DB_SQLITE && same_file(db->url.target, url->target)))
        db = db->next_shared;
    if (db)
        atomic_fetch_add(&db->refs, 1);
    pthread_mutex_unlock(&shared_lock);
    return db;
}

/* A pool on url (taken over) for the server's own use (no data threads); NULL on failure. */
static db_t *open_own(roost_server_t *srv, db_url_t *url)
{
    const roost_config_t *cfg = roost_server_config(srv);
    db_pool_opts_t opts = {cfg->data.pool_size, cfg->data.pool_overflow, cfg->data.pool_timeout_s};
    db_t *db = db_open(url, &opts, NULL, 0); /* takes url over */
    if (db)
        db->srv = srv;
    else
        log_error("data: cannot open the database of the job store");
    db_url_clear(url);
    return db;
}

db_t *db_share_local(roost_server_t *srv)
{
    db_url_t url;
    if (db_url_parse(&url, "", roost_server_config(srv)->data.dir) < 0) {
        log_error("data: no memory for the path of the server's roost.db");
        return NULL;
    }
    db_t *db = find_shared(srv, &url);
    if (db) {
        db_url_clear(&url);
        return db;
    }
    return open_own(srv, &url);
}

db_t *db_share_jobs(roost_server_t *srv)
{
    const roost_config_t *cfg = roost_server_config(srv);
    db_url_t url;
    if (db_url_parse(&url, cfg->data.database, cfg->data.dir) < 0 || url.engine != DB_POSTGRES) {
        db_url_clear(&url);
        return db_share_local(srv);
    }
    /* A pool of its own on PostgreSQL: no writer lock to share there, and the dispatcher's
     * batches and the schedules' leader then never take the application's connections. */
    return open_own(srv, &url);
}

static void db_service_stop(void *ud)
{
    db_t *db = ud;
    forget_shared(db);
    db_runner_stop(db);
    db_close(db);
}

static void counter(sbuf_t *out, const char *name, const char *help, const char *engine, long v)
{
    sbuf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s{engine=\"%s\"} %ld\n", name, help, name,
                name, engine, v);
}

static void db_service_metrics(void *ud, sbuf_t *out)
{
    db_t *db = ud;
    db_status_t st;
    db_status(db, &st);
    const char *e = db->ops->name;
    sbuf_printf(out,
                "# HELP roost_db_pool_size Database connections the pool keeps (--db-pool-size)\n"
                "# TYPE roost_db_pool_size gauge\nroost_db_pool_size{engine=\"%s\"} %d\n"
                "# HELP roost_db_pool_checked_out Database connections in use\n"
                "# TYPE roost_db_pool_checked_out gauge\n"
                "roost_db_pool_checked_out{engine=\"%s\"} %d\n"
                "# HELP roost_db_pool_checked_in Idle database connections\n"
                "# TYPE roost_db_pool_checked_in gauge\n"
                "roost_db_pool_checked_in{engine=\"%s\"} %d\n"
                "# HELP roost_db_pool_overflow Database connections open beyond the pool size\n"
                "# TYPE roost_db_pool_overflow gauge\nroost_db_pool_overflow{engine=\"%s\"} %d\n"
                "# HELP roost_db_pool_waiting Threads waiting for a database connection\n"
                "# TYPE roost_db_pool_waiting gauge\nroost_db_pool_waiting{engine=\"%s\"} %d\n",
                e, st.size, e, st.checked_out, e, st.checked_in, e, st.overflow, e, st.waiting);
    sbuf_printf(out,
                "# HELP roost_db_pool_events_total Database pool events\n"
                "# TYPE roost_db_pool_events_total counter\n"
                "roost_db_pool_events_total{engine=\"%s\",event=\"connect\"} %ld\n"
                "roost_db_pool_events_total{engine=\"%s\",event=\"connect_error\"} %ld\n"
                "roost_db_pool_events_total{engine=\"%s\",event=\"broken\"} %ld\n"
                "roost_db_pool_events_total{engine=\"%s\",event=\"timeout\"} %ld\n",
                e, atomic_load(&db->n_connects), e, atomic_load(&db->n_connect_errors), e,
                atomic_load(&db->n_broken), e, atomic_load(&db->n_timeouts));
    counter(out, "roost_db_group_commits_total",
            "Transactions that committed a group of write ops (roost_db_run_write)", e,
            atomic_load(&db->n_group_commits));
    counter(out, "roost_db_grouped_ops_total", "Write ops run in a group that committed", e,
            atomic_load(&db->n_grouped_ops));
    counter(out, "roost_db_group_lost_ops_total",
            "Write ops answered with an error because their group's transaction failed", e,
            atomic_load(&db->n_group_lost));
    counter(out, "roost_db_group_retries_total",
            "Write ops run again after losing a deadlock to another group", e,
            atomic_load(&db->n_group_retries));
    db_query_metrics(db, out);
}

roost_db_t *roost_db_open(roost_server_t *srv, const roost_db_schema_t *schema)
{
    const roost_config_t *cfg = roost_server_config(srv);
    db_url_t url;
    int rc = db_url_parse(&url, cfg->data.database, cfg->data.dir);
    if (rc < 0) {
        log_error("data: --database '%s' is neither sqlite:PATH nor postgresql://...",
                  cfg->data.database);
        return NULL;
    }
    int n = schema->nstatements, m = schema->nmigrations;
    const char **sql = calloc((size_t)n + 1, sizeof *sql);
    const char **mig = calloc((size_t)m + 1, sizeof *mig);
    db_t *db = NULL;
    if (!sql || !mig)
        goto out;
    for (int i = 0; i < n; i++)
        sql[i] = url.engine == DB_POSTGRES && schema->statements[i].postgres
                     ? schema->statements[i].postgres
                     : schema->statements[i].sql;
    for (int i = 0; i < m; i++)
        mig[i] = url.engine == DB_POSTGRES && schema->migrations[i].postgres
                     ? schema->migrations[i].postgres
                     : schema->migrations[i].sql;
    db_pool_opts_t opts = {cfg->data.pool_size, cfg->data.pool_overflow, cfg->data.pool_timeout_s};
    db = db_open(&url, &opts, sql, n);
    if (!db)
        goto out;
    db->srv = srv;
    if (db_migrate(db, schema->name, mig, m) < 0) {
        db_close(db);
        db = NULL;
        goto out;
    }
    /* One data thread per loop, on both engines. SQLite reads then run in parallel; on
     * PostgreSQL fewer threads make longer pipelines, and one per pooled connection (10)
     * measured 30% slower with a 10x worse p99 than one per loop (bench/README.md). */
    if (db_runner_start(db, cfg->net.threads) < 0) {
        log_error("data: cannot start the data threads");
        db_close(db);
        db = NULL;
        goto out;
    }
    core_service_t svc = {"data", NULL, NULL, db_service_stop, db_service_metrics, db};
    if (core_service_add(srv, &svc) < 0) {
        log_error("data: no room for another service");
        db_close(db);
        db = NULL;
        goto out;
    }
    pthread_mutex_lock(&shared_lock);
    db->next_shared = shared;
    shared = db;
    pthread_mutex_unlock(&shared_lock);
    log_info("data: %s (pool %d + %d overflow, timeout %gs)", db->url.display, opts.size,
             opts.max_overflow, opts.timeout_s);
out:
    db_url_clear(&url);
    free(sql);
    free(mig);
    return db;
}

const char *roost_db_engine(const roost_db_t *db)
{
    return db->ops->name;
}

json_t *roost_db_pool_status(roost_db_t *db)
{
    db_status_t st;
    db_status(db, &st);
    return json_pack("{s:s,s:i,s:i,s:i,s:i,s:i}", "engine", db->ops->name, "size", st.size,
                     "checked_in", st.checked_in, "checked_out", st.checked_out, "overflow",
                     st.overflow, "max_overflow", st.max_overflow);
}

int roost_db_acquire(roost_db_t *db, roost_dbconn_t **out)
{
    return db_checkout(db, out);
}

void roost_db_release(roost_dbconn_t *c)
{
    db_checkin(c);
}

int db_params_read(db_param_t *p, const char *types, va_list ap)
{
    int n = 0;
    for (const char *t = types ? types : ""; *t; t++) {
        if (n == DB_MAX_PARAMS)
            return -E2BIG;
        db_param_t *q = &p[n++];
        q->type = *t;
        q->s = NULL;
        q->i = 0;
        switch (*t) {
        case 'i':
            q->i = va_arg(ap, long long);
            break;
        case 'b':
            q->i = va_arg(ap, int) != 0;
            break;
        case 's':
            q->s = va_arg(ap, const char *);
            break;
        case 'n':
            break;
        default:
            return -EINVAL;
        }
    }
    return n;
}

int roost_db_query(roost_dbconn_t *c, int stmt, const char *types, ...)
{
    db_param_t p[DB_MAX_PARAMS];
    va_list ap;
    va_start(ap, types);
    int n = db_params_read(p, types, ap);
    va_end(ap);
    if (n == -E2BIG)
        return db_fail(c, -EINVAL, "more than %d parameters", DB_MAX_PARAMS);
    if (n < 0)
        return db_fail(c, -EINVAL, "unknown parameter type '%c'", types[strspn(types, "ibsn")]);
    return db_query(c, stmt, n, p);
}

int roost_db_next(roost_dbconn_t *c)
{
    return db_next(c);
}

long long roost_db_int(roost_dbconn_t *c, int col)
{
    return c->db->ops->col_int(c, col);
}

const char *roost_db_text(roost_dbconn_t *c, int col)
{
    return c->db->ops->col_text(c, col);
}

int roost_db_is_null(roost_dbconn_t *c, int col)
{
    return c->db->ops->is_null(c, col);
}

long long roost_db_changes(roost_dbconn_t *c)
{
    return c->db->ops->changes(c);
}

const char *roost_db_error(const roost_dbconn_t *c)
{
    return c->err;
}

/* An op of a write group runs inside the group's transaction: ending it would commit or undo the
 * other ops' writes under them. */
static int refused_in_group(roost_dbconn_t *c)
{
    return db_fail(c, -EINVAL, "a grouped write op cannot begin or end a transaction");
}

int roost_db_begin(roost_dbconn_t *c, int mode)
{
    return c->grouped ? refused_in_group(c) : db_begin(c, mode == ROOST_DB_WRITE);
}

int roost_db_commit(roost_dbconn_t *c)
{
    return c->grouped ? refused_in_group(c) : db_commit(c);
}

int roost_db_rollback(roost_dbconn_t *c)
{
    return c->grouped ? refused_in_group(c) : db_rollback(c);
}

int roost_db_savepoint(roost_dbconn_t *c, const char *name)
{
    return db_savepoint(c, name);
}

int roost_db_release_savepoint(roost_dbconn_t *c, const char *name)
{
    return db_release(c, name);
}

int roost_db_rollback_to(roost_dbconn_t *c, const char *name)
{
    return db_rollback_to(c, name);
}
