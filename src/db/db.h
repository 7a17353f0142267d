/* The data store: one interface over SQLite and PostgreSQL, so that the routes say what they
 * want (prepared statement number k with these typed parameters, then rows) and not which engine
 * runs it. The public face is roost_db_* in include/roost/roost.h (db_api.c); this header is what
 * the two engines implement and what the pool drives.
 *
 * Files: db_pool.c (the pool of connections: checkout with a deadline, overflow, checks before
 * use, broken connections replaced; statements), db_url.c (--database URLs, SQL placeholders),
 * db_tx.c (transactions, savepoints), db_migrate.c (migrations), db_sqlite.c and db_pg.c (the
 * engines), db_run.c (data threads), db_group.c (group commit of their write ops), db_api.c (the
 * public functions, metrics, shutdown, the server's shared pools).
 *
 * Threads: a db_t is shared by every thread; a db_conn_t belongs to the thread that checked it
 * out until it is checked in. Everything here blocks: call it from workers, never on a loop.
 *
 * Errors: 0 or a negative code, as in roost.h: -EEXIST a unique constraint, -EINVAL another
 * constraint (check, foreign key, not null), -EDEADLK retry the transaction (deadlock,
 * serialization failure), -EAGAIN the database is unavailable (down, restarting, locked too
 * long, no connection within the pool's timeout), -EIO anything else (logged). */
#ifndef ROOST_DB_H
#define ROOST_DB_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>

#include "base/base.h"
#include "roost/roost.h"

/* The public handles are these structs: roost_db_t is a db_t, roost_dbconn_t a db_conn_t. */
typedef struct roost_db db_t;
typedef struct roost_dbconn db_conn_t;

typedef enum { DB_SQLITE, DB_POSTGRES } db_engine_t;

/* --database, parsed. "" or "sqlite:PATH" (also sqlite://PATH) or postgresql://... (also
 * postgres://, or any libpq "key=value" string with a host). */
typedef struct {
    db_engine_t engine;
    char *target;  /* the SQLite path, or the libpq connection string as given */
    char *display; /* for logs: the URL without its password */
} db_url_t;

/* Fills url (free with db_url_clear). data_dir names the default SQLite file. -EINVAL for a
 * URL of another kind. */
int db_url_parse(db_url_t *url, const char *spec, const char *data_dir);
void db_url_clear(db_url_t *url);

/* A parameter of a prepared statement. */
typedef struct {
    char type; /* 'i' integer, 'b' boolean (0/1), 's' text, 'n' NULL */
    int64_t i;
    const char *s; /* 's': NUL-terminated; NULL is SQL NULL */
} db_param_t;

#define DB_MAX_PARAMS 16

/* Reads one argument of ap per letter of types (NULL: none) into p[DB_MAX_PARAMS]: the count,
 * -E2BIG for more than DB_MAX_PARAMS, -EINVAL for a letter other than i, b, s, n. 's' points
 * at the caller's string. */
int db_params_read(db_param_t *p, const char *types, va_list ap);
#define DB_MAX_STATEMENTS 256 /* per pool, every user's together */

/* One statement of a pipeline: run k with p[0..n), then rows(c, rc, arg) reads its result
 * (rc: 0 or the error; c's current result is the statement's). */
typedef struct {
    int k, n;
    const db_param_t *p;
    void (*rows)(db_conn_t *c, int rc, void *arg);
    void *arg;
} db_stmt_t;

/* What every connection carries; the engines embed it first in their own struct. */
struct roost_dbconn {
    db_t *db;
    db_conn_t *next;         /* the idle list */
    unsigned broken : 1;     /* closed instead of going back to the pool */
    unsigned in_tx : 1;      /* between begin and commit/rollback */
    unsigned write_lock : 1; /* SQLite: holds the process's write lock (db_t.write_mutex) */
    unsigned grouped : 1;    /* running an op of a write group (db_group.c): its transaction */
    char err[256];           /* the last error's message */
    /* [nstmt]: the engine's handle of each statement prepared on this connection (SQLite's
     * sqlite3_stmt, PostgreSQL's statement name), NULL before; the engine's close frees them
     * and the array. It grows when the pool gains statements (db_add_statements). */
    void **stmt;
    int nstmt;
};

/* An engine. Every function but connect runs on the thread that holds the connection. The pool
 * owns a connection's memory: conn_size zeroed bytes (the engine's struct, db_conn_t first). */
typedef struct {
    const char *name; /* "sqlite" or "postgresql" */
    size_t conn_size;
    /* Opens c (c->db set): 0 ready to use, -EAGAIN when the database cannot be reached. The
     * pool calls close after it either way. */
    int (*connect)(db_conn_t *c);
    /* Releases what connect and the prepared statements hold; the pool then frees c. */
    void (*close)(db_conn_t *c);
    /* Before a checkout hands out an idle connection: 0 usable, < 0 broken. Must be cheap
     * (no round trip). */
    int (*check)(db_conn_t *c);
    /* Runs SQL without parameters (BEGIN, SAVEPOINT, migrations: several statements); when
     * first is not NULL it gets the first column of the first row as an integer (0: none). */
    int (*exec)(db_conn_t *c, const char *sql, int64_t *first);
    /* Prepares statement k on this connection into c->stmt[k], which is there and NULL (call
     * db_prepare, which prepares on first use). */
    int (*prepare)(db_conn_t *c, int k);
    /* Runs statement k, prepared (db_query prepares it); its first row (if any) is then current
     * for next(). */
    int (*query)(db_conn_t *c, int k, int n, const db_param_t *p);
    int (*next)(db_conn_t *c); /* 1 a row, 0 the end, < 0 an error */
    int (*is_null)(db_conn_t *c, int col);
    int64_t (*col_int)(db_conn_t *c, int col);
    const char *(*col_text)(db_conn_t *c, int col);
    int64_t (*changes)(db_conn_t *c);
    /* Ends the current statement's result (and, on SQLite, its implicit write). */
    void (*finish)(db_conn_t *c);
    /* Runs s[0..n) in order, each in a transaction of its own, calling each one's rows() in
     * order; sends them all before reading any result (one round trip). NULL: one by one. */
    void (*pipeline)(db_conn_t *c, db_stmt_t *s, int n);
} db_ops_t;

/* The members every engine has, from the prefix of its names: DB_ENGINE_OPS(pg) is pg_conn_t
 * and pg_connect, pg_close, ... pg_finish. An engine's table adds its name and what it has
 * beyond them (pipeline). */
#define DB_ENGINE_OPS(e)                                                                           \
    .conn_size = sizeof(e##_conn_t), .connect = e##_connect, .close = e##_close,                   \
    .check = e##_check, .exec = e##_exec, .prepare = e##_prepare, .query = e##_query,              \
    .next = e##_next, .is_null = e##_is_null, .col_int = e##_col_int, .col_text = e##_col_text,    \
    .changes = e##_changes, .finish = e##_finish

extern const db_ops_t db_sqlite_ops;
extern const db_ops_t db_pg_ops;

typedef struct {
    int size;         /* connections kept open */
    int max_overflow; /* more, opened under load and closed when given back */
    double timeout_s; /* a checkout waits this long for a connection, then -EAGAIN */
} db_pool_opts_t;

struct roost_db {
    roost_server_t *srv; /* set by roost_db_open */
    db_engine_t engine;
    const db_ops_t *ops;
    db_url_t url;
    db_pool_opts_t opts;
    /* Statements, in the engine's dialect: $n placeholders become ?n on SQLite. Room for
     * DB_MAX_STATEMENTS, allocated once: db_add_statements appends while other threads read
     * sql[k] for k < nsql, so the array never moves. */
    char **sql;
    _Atomic int nsql;
    _Atomic int refs;             /* db_open's and db_share's references; the last db_close frees */
    struct roost_db *next_shared; /* the server's shared pools (db_api.c) */

    pthread_mutex_t lock;
    struct db_waiter *wait_head, *wait_tail; /* threads waiting for a connection, FIFO */
    db_conn_t *idle; /* most recently used first: warm connections, cold ones age out */
    int nidle;
    int open;    /* connections open or being opened */
    int out;     /* checked out */
    int waiting; /* threads waiting for a connection */
    int closing;
    /* counters for /metrics */
    _Atomic long n_connects, n_connect_errors, n_broken, n_timeouts;
#define DB_QUERY_NLE 10
    /* Query time (db_tx.c): per bucket of db_query_le, not cumulative; the last is +Inf. */
    _Atomic long q_n[DB_QUERY_NLE + 1], q_ns;
    _Atomic long long last_warn_ms; /* rate of "cannot connect" log lines */
    /* Group commit (db_group.c): groups committed, the ops in them, and ops whose kept writes a
     * failed group lost (they answered the error). */
    _Atomic long n_group_commits, n_grouped_ops, n_group_lost, n_group_retries;

    /* SQLite: one writer at a time in this process. Writers queue on a mutex instead of
     * polling SQLite's busy handler (which sleeps in steps of up to 100 ms); busy_timeout then
     * only covers other processes. The job store shares the pool, so its batches queue here
     * too. */
    pthread_mutex_t write_mutex;

    /* The data threads of roost_db_run (db_run.c): a tpool whose queue is this db_t, and the
     * ops queued (under the tpool's lock). */
    tpool_t *runner;
    tpool_list_t run_queue;
};

/* ---- db_pool.c, db_tx.c, db_migrate.c ---- */

/* Opens a pool over url (taken over: freed with the pool) for these statements (SQL with
 * $1..$n placeholders, copied and translated for the engine). Connects once to prove the URL
 * works. NULL on failure (logged). */
db_t *db_open(db_url_t *url, const db_pool_opts_t *opts, const char *const *sql, int nsql);
/* Drops a reference; the last closes idle connections and frees the pool; connections still
 * checked out are closed when they come back (the pool then stays allocated: shutdown only). */
void db_close(db_t *db);
/* Appends n statements (as for db_open) for another user of the same pool, such as the job
 * store beside the application's schema; returns the index of the first (that user's statement
 * k is then base + k), or -ENOMEM / -ENOSPC past DB_MAX_STATEMENTS. Connections open already
 * prepare them on first use. */
int db_add_statements(db_t *db, const char *const *sql, int n);

int db_checkout(db_t *db, db_conn_t **out);
void db_checkin(db_conn_t *c);

typedef struct {
    int size, checked_in, checked_out, overflow, max_overflow, waiting;
} db_status_t;
void db_status(db_t *db, db_status_t *st);

/* Transactions. write: the transaction will write (SQLite: BEGIN IMMEDIATE under the write
 * lock, so that a read-then-write cannot fail halfway). */
int db_begin(db_conn_t *c, int write);
int db_commit(db_conn_t *c);
int db_rollback(db_conn_t *c);
/* name: a plain identifier ([A-Za-z_][A-Za-z0-9_]*), else -EINVAL. */
int db_savepoint(db_conn_t *c, const char *name);
int db_release(db_conn_t *c, const char *name);
int db_rollback_to(db_conn_t *c, const char *name);

/* Statement k with n parameters, prepared on this connection the first time; rows with db_next
 * and the column accessors. */
int db_query(db_conn_t *c, int k, int n, const db_param_t *p);
/* Prepares statement k on c unless it is already (0 then, without a call to the engine). */
int db_prepare(db_conn_t *c, int k);
/* The query-time histogram's bounds, in seconds, and its text (db_tx.c). */
extern const double db_query_le[DB_QUERY_NLE];
void db_query_metrics(db_t *db, sbuf_t *out);
int db_next(db_conn_t *c);

/* Applies migrations[version..] in one transaction, recording the version in table
 * <name>_schema; idempotent, and safe when several processes start at once. Then prepares every
 * statement once, so that a typo fails the start and not the first request. */
int db_migrate(db_t *db, const char *name, const char *const *migrations, int n);

/* ---- db_api.c ---- */

/* The pool of the server's own SQLite file, <data-dir>/roost.db, for the layers above (the job
 * store): the one roost_db_open opened when --database names that file, so that the file has
 * one set of connections and one writer lock; else a pool of its own (no data threads). A
 * reference either way: give it back with db_close. Call it after roost_db_open (from a
 * service's start); NULL on failure (logged). */
db_t *db_share_local(roost_server_t *srv);
/* The job store's pool: on the --database PostgreSQL when it is one (so that every node shares
 * the queue; a pool of its own beside the application's, sized by the same --db-pool-* flags),
 * else db_share_local's. */
db_t *db_share_jobs(roost_server_t *srv);

/* ---- db_run.c: data threads for roost_db_run ---- */
int db_runner_start(db_t *db, int threads);
void db_runner_stop(db_t *db); /* runs what is queued, then joins */

/* ---- db_group.c: group commit of write ops ---- */

/* At most this many ops in one transaction: each op's savepoint that writes takes a
 * subtransaction id, and PostgreSQL keeps 64 per backend in shared memory (PGPROC's subxid
 * cache); past that, every snapshot in the cluster has to look subtransactions up on disk. */
#define DB_GROUP_MAX 32
/* Times an op that lost a deadlock to another group runs again (db_group.c). */
#define DB_GROUP_RETRIES 3

typedef struct {
    roost_db_write_fn fn;
    void *arg;
} db_write_t;

/* Runs w[0..n) (n <= DB_GROUP_MAX) on c in one write transaction, each op inside a savepoint
 * (rolled back when its fn returns < 0), and commits once. Returns how many ops it handled, from
 * the first: all n, or fewer when the transaction itself failed (BEGIN, a savepoint, a
 * connection lost), so that the caller goes on with the rest on a working connection. When the
 * group fails, each handled op whose writes it had kept (or that could not run) is told with
 * fn(NULL, rc, arg); nothing of the group is then committed. An op whose fn returned -EDEADLK
 * runs again after the commit (fn(c, 0, arg) once more), up to DB_GROUP_RETRIES times. */
int db_group_run(db_conn_t *c, const db_write_t *w, int n);

/* ---- db_url.c ---- */

/* "$1" -> "?1" outside quotes (SQLite's numbered parameters). The caller frees. */
char *db_sql_for_sqlite(const char *sql);

/* For the engine's close: drop(handle) for each prepared statement, then frees the array. */
void db_stmt_free_all(db_conn_t *c, void (*drop)(void *handle));

/* Sets c->err (printf) and returns code. */
int db_fail(db_conn_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* An engine's failed call, classified as code: recorded (db_fail) and, when it is no ordinary
 * outcome (-EIO: not a constraint, a conflict or a lost connection), logged with the engine's
 * name and its own detail (SQLSTATE, result code). Returns code. */
int db_engine_fail(db_conn_t *c, int code, const char *msg, const char *detail);

#endif
