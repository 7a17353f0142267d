/* The pool of database connections, the same for both engines (SQLAlchemy's QueuePool): `size`
 * connections kept, up to `max_overflow` more opened under load and closed when given back, a
 * checkout that waits up to `timeout_s` and then fails with -EAGAIN (503), and a cheap check of
 * an idle connection before it is handed out, so that one broken by a database restart is
 * replaced instead of failing a request. URLs, transactions and migrations have files of their
 * own (db_url.c, db_tx.c, db_migrate.c). */
#include "db/db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/base.h"

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

int db_engine_fail(db_conn_t *c, int code, const char *msg, const char *detail)
{
    db_fail(c, code, "%s", msg);
    if (code == -EIO)
        log_error("data: %s: %s (%s)", c->db->ops->name, c->err, detail);
    return code;
}

int db_prepare(db_conn_t *c, int k)
{
    if (k < c->nstmt && c->stmt[k])
        return 0;
    /* The pool gained statements since this array was sized: room for them all. */
    if (k >= c->nstmt) {
        int n = c->db->nsql; /* k < n: the callers checked it */
        void **p = realloc(c->stmt, (size_t)n * sizeof *p);
        if (!p)
            return db_fail(c, -ENOMEM, "out of memory");
        memset(p + c->nstmt, 0, (size_t)(n - c->nstmt) * sizeof *p);
        c->stmt = p;
        c->nstmt = n;
    }
    return c->db->ops->prepare(c, k);
}

void db_stmt_free_all(db_conn_t *c, void (*drop)(void *handle))
{
    for (int i = 0; i < c->nstmt; i++)
        if (c->stmt[i])
            drop(c->stmt[i]);
    free(c->stmt);
    c->stmt = NULL;
    c->nstmt = 0;
}

/* Connections: the pool owns their memory, the engine what it opens in them. */
static void conn_close(db_conn_t *c)
{
    c->db->ops->close(c);
    free(c);
}

static int conn_open(db_t *db, db_conn_t **out)
{
    db_conn_t *c = calloc(1, db->ops->conn_size);
    if (!c)
        return -ENOMEM;
    c->db = db;
    int rc = db->ops->connect(c);
    if (rc < 0)
        conn_close(c);
    else
        *out = c;
    return rc;
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
    db->refs = 1;
    db->sql = calloc(DB_MAX_STATEMENTS, sizeof *db->sql);
    if (!db->sql || db_add_statements(db, sql, nsql) < 0) {
        db_close(db);
        return NULL;
    }
    if (db->engine == DB_SQLITE) {
        /* The folder of the database file (--data-dir for the default one). */
        char *dir = strdup(db->url.target), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash && slash != dir) {
            *slash = '\0';
            mkdir(dir, 0755);
        }
        free(dir);
    }
    return db;
}

int db_add_statements(db_t *db, const char *const *sql, int n)
{
    pthread_mutex_lock(&db->lock);
    int base = db->nsql, rc = base;
    if (n > DB_MAX_STATEMENTS - base) {
        log_error("data: more than %d statements in one pool", DB_MAX_STATEMENTS);
        rc = -ENOSPC;
    }
    for (int i = 0; rc >= 0 && i < n; i++) {
        db->sql[base + i] = db->engine == DB_SQLITE ? db_sql_for_sqlite(sql[i]) : strdup(sql[i]);
        if (!db->sql[base + i])
            rc = -ENOMEM;
    }
    if (rc >= 0)
        atomic_store(&db->nsql, base + n); /* published after the texts it counts */
    for (int i = 0; rc < 0 && i < n && base + i < DB_MAX_STATEMENTS; i++) {
        free(db->sql[base + i]);
        db->sql[base + i] = NULL;
    }
    pthread_mutex_unlock(&db->lock);
    return rc;
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
    if (!db || atomic_fetch_sub(&db->refs, 1) > 1)
        return; /* another user (the job store, the application) still has it */
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
        conn_close(idle);
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
    LIST_APPEND(db->wait_head, db->wait_tail, &w, next);
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
            int rc = conn_open(db, &c);
            atomic_fetch_add(&db->n_connects, 1);
            if (rc == 0) {
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
        conn_close(c);
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
        conn_close(c);
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
