/* The pool of database connections, the same for both engines (SQLAlchemy's QueuePool): `size`
 * connections kept, up to `max_overflow` more opened under load and closed when given back, a
 * checkout that waits up to `timeout_s` and then fails with -EAGAIN (503), and a cheap check of
 * an idle connection before it is handed out, so that one broken by a database restart is
 * replaced instead of failing a request. Also: --database URLs, transactions, migrations. */
#include "db/db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/base.h"

/* ---- URLs ---- */

static char *mask_password(const char *url)
{
    /* scheme://user:password@host... -> scheme://user:***@host... */
    char *out = strdup(url);
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
    if (!out || !at || !colon || colon > at)
        return out;
    free(out);
    size_t n = (size_t)(colon - url) + 1;
    out = malloc(n + 3 + strlen(at) + 1);
    if (out)
        sprintf(out, "%.*s***%s", (int)n, url, at);
    return out;
}

int db_url_parse(db_url_t *url, const char *spec, const char *data_dir)
{
    memset(url, 0, sizeof *url);
    if (!spec)
        spec = "";
    if (!strncmp(spec, "postgresql://", 13) || !strncmp(spec, "postgres://", 11)) {
        url->engine = DB_POSTGRES;
        url->target = strdup(spec);
        url->display = mask_password(spec);
    } else if (!*spec || !strncmp(spec, "sqlite:", 7)) {
        const char *path = *spec ? spec + 7 : "";
        if (!strncmp(path, "//", 2))
            path += 2; /* sqlite:///abs/path and sqlite://relative/path, as SQLAlchemy writes */
        /* Every pooled connection to ":memory:" would be a database of its own. */
        if (strstr(path, ":memory:"))
            return -EINVAL;
        url->engine = DB_SQLITE;
        if (*path) {
            url->target = strdup(path);
        } else {
            const char *dir = data_dir && *data_dir ? data_dir : ".";
            url->target = malloc(strlen(dir) + 10);
            if (url->target)
                sprintf(url->target, "%s/roost.db", dir);
        }
        if (url->target)
            url->display = malloc(strlen(url->target) + 8);
        if (url->display)
            sprintf(url->display, "sqlite:%s", url->target);
    } else {
        return -EINVAL;
    }
    if (!url->target || !url->display) {
        db_url_clear(url);
        return -ENOMEM;
    }
    return 0;
}

void db_url_clear(db_url_t *url)
{
    free(url->target);
    free(url->display);
    url->target = url->display = NULL;
}

/* ---- SQL placeholders ---- */

char *db_sql_for_sqlite(const char *sql)
{
    char *out = strdup(sql);
    if (!out)
        return NULL;
    char quote = 0;
    for (char *p = out; *p; p++) {
        if (quote) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '$' && p[1] >= '1' && p[1] <= '9') {
            *p = '?';
        }
    }
    return out;
}

/* ---- the pool ---- */

/* A thread waiting for a connection. Waiters are served in arrival order: a connection given
 * back goes straight to the oldest one. With one shared condition variable, a thread that gave a
 * connection back could take it again at once, ahead of threads woken for it, and under load
 * some requests waited most of a second (p99 0.9 s against 0.1 s, bench/README.md). */
typedef struct db_waiter {
    struct db_waiter *next;
    pthread_cond_t cond;
    db_conn_t *conn; /* handed over by db_checkin */
    int woken;       /* handed a connection, or told that one may be opened (conn NULL) */
} db_waiter_t;

int db_fail(db_conn_t *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    /* libpq's messages span lines ("...failed: Connection refused\n\tIs the server..."). */
    for (char *p = c->err; *p; p++)
        if (*p == '\n' || *p == '\t')
            *p = ' ';
    size_t n = strlen(c->err);
    while (n && c->err[n - 1] == ' ')
        c->err[--n] = '\0';
    return code;
}

db_t *db_open(db_url_t *url, const db_pool_opts_t *opts, const char *const *sql, int nsql)
{
    db_t *db = calloc(1, sizeof *db);
    if (!db)
        return NULL;
    db->engine = url->engine;
    db->ops = url->engine == DB_SQLITE ? &db_sqlite_ops : &db_pg_ops;
    db->url = *url;
    memset(url, 0, sizeof *url);
    db->opts = *opts;
    pthread_mutex_init(&db->lock, NULL);
    pthread_mutex_init(&db->write_mutex, NULL);
    if (db->opts.size < 1)
        db->opts.size = 1;
    if (db->opts.max_overflow < 0)
        db->opts.max_overflow = 0;
    db->sql = calloc((size_t)nsql + 1, sizeof *db->sql);
    db->nsql = nsql;
    for (int i = 0; db->sql && i < nsql; i++) {
        db->sql[i] = db->engine == DB_SQLITE ? db_sql_for_sqlite(sql[i]) : strdup(sql[i]);
        if (!db->sql[i]) {
            db_close(db);
            return NULL;
        }
    }
    if (!db->sql) {
        db_close(db);
        return NULL;
    }
    if (db->engine == DB_SQLITE) {
        /* The folder of the database file, like --data-dir for the job store. */
        char *dir = strdup(db->url.target), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash && slash != dir) {
            *slash = '\0';
            mkdir(dir, 0755);
        }
        free(dir);
    }
    return db;
}

static void db_free(db_t *db)
{
    for (int i = 0; db->sql && i < db->nsql; i++)
        free(db->sql[i]);
    free(db->sql);
    db_url_clear(&db->url);
    pthread_mutex_destroy(&db->lock);
    pthread_mutex_destroy(&db->write_mutex);
    free(db);
}

void db_close(db_t *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&db->lock);
    db->closing = 1;
    db_conn_t *idle = db->idle;
    db->idle = NULL;
    db->open -= db->nidle;
    db->nidle = 0;
    int last = db->open == 0;
    for (db_waiter_t *w = db->wait_head; w; w = w->next)
        pthread_cond_signal(&w->cond); /* they see `closing` and give up */
    pthread_mutex_unlock(&db->lock);
    while (idle) {
        db_conn_t *next = idle->next;
        db->ops->close(idle);
        idle = next;
    }
    if (last)
        db_free(db);
    else
        log_warn("data: %d connection(s) still checked out at shutdown", db->out);
}

static void deadline_after(struct timespec *ts, double s)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    long long ns = ts->tv_nsec + (long long)(s * 1e9);
    ts->tv_sec += (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

/* Under db->lock. */
static void wake_first(db_t *db, db_conn_t *c)
{
    db_waiter_t *w = db->wait_head;
    if (!w)
        return;
    db->wait_head = w->next;
    if (!db->wait_head)
        db->wait_tail = NULL;
    w->next = NULL;
    w->conn = c;
    w->woken = 1;
    pthread_cond_signal(&w->cond);
}

static void unqueue(db_t *db, db_waiter_t *w)
{
    db_waiter_t **pp = &db->wait_head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            if (db->wait_tail == w)
                db->wait_tail = prev;
            return;
        }
}

/* Waits (db->lock held) until handed a connection (returned in *c), told to retry (0, *c NULL),
 * or out of time (-EAGAIN). */
static int wait_turn(db_t *db, const struct timespec *deadline, db_conn_t **c)
{
    db_waiter_t w = {0};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cond, &ca);
    pthread_condattr_destroy(&ca);
    if (db->wait_tail)
        db->wait_tail->next = &w;
    else
        db->wait_head = &w;
    db->wait_tail = &w;
    db->waiting++;
    while (!w.woken && !db->closing)
        if (pthread_cond_timedwait(&w.cond, &db->lock, deadline) == ETIMEDOUT)
            break;
    db->waiting--;
    if (!w.woken)
        unqueue(db, &w);
    pthread_cond_destroy(&w.cond);
    *c = w.conn;
    return w.woken ? 0 : -EAGAIN;
}

int db_checkout(db_t *db, db_conn_t **out)
{
    struct timespec deadline;
    int have_deadline = 0;
    *out = NULL;
    pthread_mutex_lock(&db->lock);
    for (;;) {
        if (db->closing) {
            pthread_mutex_unlock(&db->lock);
            return -EAGAIN;
        }
        db_conn_t *c = db->idle;
        if (c) {
            db->idle = c->next;
            db->nidle--;
            db->out++;
        } else if (db->open < db->opts.size + db->opts.max_overflow) {
            db->open++;
            db->out++;
            pthread_mutex_unlock(&db->lock);
            int rc = db->ops->connect(db, &c);
            atomic_fetch_add(&db->n_connects, 1);
            if (rc == 0) {
                c->db = db;
                *out = c;
                return 0;
            }
            /* Fail now rather than wait: a database that refuses connections is down, and a
             * 503 at once is what the client needs. */
            atomic_fetch_add(&db->n_connect_errors, 1);
            pthread_mutex_lock(&db->lock);
            db->open--;
            db->out--;
            wake_first(db, NULL); /* room for a connection: let a waiter try */
            pthread_mutex_unlock(&db->lock);
            return rc;
        } else {
            if (!have_deadline) {
                deadline_after(&deadline, db->opts.timeout_s);
                have_deadline = 1;
            }
            if (wait_turn(db, &deadline, &c) < 0) {
                if (!db->closing)
                    atomic_fetch_add(&db->n_timeouts, 1);
                pthread_mutex_unlock(&db->lock);
                return -EAGAIN;
            }
            if (!c)
                continue; /* a slot was freed: open a connection */
        }
        pthread_mutex_unlock(&db->lock);
        c->next = NULL;
        if (db->ops->check(c) == 0) {
            c->err[0] = '\0';
            *out = c;
            return 0;
        }
        /* Broken while idle (the server restarted or dropped us): replace it. */
        atomic_fetch_add(&db->n_broken, 1);
        db->ops->close(c);
        pthread_mutex_lock(&db->lock);
        db->out--;
        db->open--;
    }
}

void db_checkin(db_conn_t *c)
{
    if (!c)
        return;
    db_t *db = c->db;
    db->ops->finish(c);
    if (c->in_tx && db_rollback(c) < 0)
        c->broken = 1;
    if (c->write_lock) { /* cannot happen outside a transaction; never leave it held */
        c->write_lock = 0;
        pthread_mutex_unlock(&db->write_mutex);
    }
    pthread_mutex_lock(&db->lock);
    if (!c->broken && !db->closing && db->wait_head) {
        wake_first(db, c); /* stays checked out, by the waiter now */
        pthread_mutex_unlock(&db->lock);
        return;
    }
    db->out--;
    /* Overflow connections (beyond `size` idle ones) are closed, as in SQLAlchemy. */
    int drop = c->broken || db->closing || db->nidle >= db->opts.size;
    if (drop) {
        db->open--;
        wake_first(db, NULL);
    } else {
        c->next = db->idle;
        db->idle = c;
        db->nidle++;
    }
    int last = db->closing && db->open == 0;
    pthread_mutex_unlock(&db->lock);
    if (drop) {
        if (c->broken)
            atomic_fetch_add(&db->n_broken, 1);
        db->ops->close(c);
    }
    if (last)
        db_free(db);
}

void db_status(db_t *db, db_status_t *st)
{
    pthread_mutex_lock(&db->lock);
    st->size = db->opts.size;
    st->checked_in = db->nidle;
    st->checked_out = db->out;
    st->overflow = db->open > db->opts.size ? db->open - db->opts.size : 0;
    st->max_overflow = db->opts.max_overflow;
    st->waiting = db->waiting;
    pthread_mutex_unlock(&db->lock);
}

/* ---- statements and transactions ---- */

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

/* ---- migrations ---- */

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
        log_info("data: applied migration %d", v + 1);
    }
    if ((rc = db_commit(c)) < 0)
        goto out;
    for (int k = 0; k < db->nsql; k++)
        if ((rc = db->ops->prepare(c, k)) < 0) {
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
