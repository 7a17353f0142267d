/* Data threads: the way for a request that only needs a few statements to reach the database
 * without a worker thread of its own. A loop handler holds its request and queues an operation
 * ("op"); a data thread takes the queued ops in a batch, runs them one after the other on one
 * pooled connection, and posts each answer back to its request's loop. A busy server then pays
 * one wake-up per batch instead of one hand-off per request, and ops that are one statement each
 * go to PostgreSQL together, one round trip per group (bench/README.md, "Data"); write ops that
 * follow one another commit together (db_group.c). The threads are a base tpool whose queue
 * hands out batches. It is not a second worker pool: ops must be short and must not wait on
 * anything but the database. */
#include "db/db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define BATCH_MAX 64
/* Statements per round trip: small enough that a blocking pipeline cannot fill the socket
 * buffers (db_pg.c), big enough to take most of the gain (x4.3 at 8 in bench/README.md). */
#define PIPE_MAX 16

typedef struct db_op {
    tpool_work_t link; /* in the runner's list (its run is unused: the batch runs ops) */
    roost_req_t *req;
    roost_db_fn fn;          /* an op of code, */
    roost_db_write_fn write; /* or of code that writes, grouped (db_group.c), */
    db_stmt_t stmt;          /* or (both NULL) of one statement */
    db_param_t params[DB_MAX_PARAMS];
    roost_timer_fn done;
    void *arg;
} db_op_t;

static db_op_t *op_of(tpool_work_t *w)
{
    return w ? CONTAINER_OF(w, db_op_t, link) : NULL;
}

static void op_done(roost_req_t *req, void *arg)
{
    db_op_t *o = arg;
    o->done(req, o->arg); /* the wait ends when this returns */
}

/* Runs stmts[0..n) on c (NULL: the database is unavailable). */
static void run_stmts(db_t *db, db_conn_t *c, db_stmt_t *stmts, int n)
{
    if (!c) {
        for (int i = 0; i < n; i++)
            stmts[i].rows(NULL, -EAGAIN, stmts[i].arg);
    } else if (n > 1 && db->ops->pipeline) {
        db->ops->pipeline(c, stmts, n);
    } else {
        for (int i = 0; i < n; i++) {
            int rc = db_query(c, stmts[i].k, stmts[i].n, stmts[i].p);
            stmts[i].rows(c, rc, stmts[i].arg);
            db->ops->finish(c);
        }
    }
}

/* Runs the write ops w[0..n) as one group on c (NULL: the database is unavailable); returns how
 * many it handled (db_group_run). */
static int run_writes(db_conn_t *c, db_write_t *w, int n)
{
    if (c)
        return db_group_run(c, w, n);
    for (int i = 0; i < n; i++)
        w[i].fn(NULL, -EAGAIN, w[i].arg);
    return n;
}

/* One connection for the batch (a new one if it breaks on the way). Answers are posted as soon
 * as their group is done: a write group's after its COMMIT. */
static void run_batch(db_t *db, db_op_t *o)
{
    db_conn_t *c = NULL;
    if (db_checkout(db, &c) < 0)
        c = NULL;
    while (o) {
        if (c && c->broken) {
            db_checkin(c);
            if (db_checkout(db, &c) < 0)
                c = NULL;
        }
        db_op_t *first = o;
        if (o->fn) {
            o->fn(c, o->arg);
            if (c)
                db->ops->finish(c);
            o = op_of(o->link.next);
        } else if (o->write) {
            db_write_t group[DB_GROUP_MAX];
            int n = 0;
            for (db_op_t *k = o; k && k->write && n < DB_GROUP_MAX; k = op_of(k->link.next))
                group[n++] = (db_write_t){k->write, k->arg};
            for (int done = run_writes(c, group, n); done > 0; done--)
                o = op_of(o->link.next);
        } else {
            db_stmt_t group[PIPE_MAX];
            int n = 0;
            for (; o && !o->fn && !o->write && n < PIPE_MAX; o = op_of(o->link.next))
                group[n++] = o->stmt;
            run_stmts(db, c, group, n);
        }
        for (db_op_t *k = first, *next; k != o; k = next) {
            next = op_of(k->link.next); /* k belongs to its request now */
            roost_req_resume(k->req, op_done, k);
        }
    }
    if (c)
        db_checkin(c);
}

/* The pool's queue is the db_t: its run_queue of ops. */
static int ops_push(void *queue, void *items, int n)
{
    db_t *db = queue;
    tpool_list_append(&db->run_queue, items, n);
    return 0;
}

/* This thread's share of the queue; the pool wakes another thread for the rest: one thread
 * taking everything would run it all on one connection, one round trip after the other, while
 * the others sleep. */
static void *ops_pop(void *queue, int nthreads)
{
    db_t *db = queue;
    int share = (db->run_queue.n + nthreads - 1) / nthreads;
    return tpool_list_take(&db->run_queue, share < BATCH_MAX ? share : BATCH_MAX);
}

static int ops_len(void *queue)
{
    return ((db_t *)queue)->run_queue.n;
}

static void ops_run(void *queue, void *taken)
{
    run_batch(queue, op_of(taken));
}

/* No destroy: the queue lives in the db_t, and the pool stops before the db_t is freed. */
static const tpool_queue_ops_t batch_ops = {ops_push, ops_pop, ops_len, ops_run, NULL};

int db_runner_start(db_t *db, int threads)
{
    /* Short ops on plain C and the database's client: 256 KiB of stack is plenty. */
    tpool_opts_t o = {.name = "data",
                      .min = threads,
                      .max = threads,
                      .stack_size = 256 << 10,
                      .ops = &batch_ops,
                      .queue = db};
    db->runner = tpool_start(&o);
    return db->runner ? 0 : -ENOMEM;
}

void db_runner_stop(db_t *db)
{
    tpool_stop(db->runner); /* runs what is queued, then joins */
    db->runner = NULL;
}

/* Queues o (filled but for its link) for req; answers the request when it cannot. */
static int submit(db_t *db, roost_req_t *req, db_op_t *o)
{
    roost_req_wait(req); /* on the loop, before a data thread can see the op */
    o->req = req;
    if (tpool_push(db->runner, &o->link, 1) < 0) { /* only when stopping */
        roost_res_header(req, "Retry-After", "1");
        roost_respond_error(req, 503, "Server shutting down");
        roost_req_resume(req, NULL, NULL); /* ends the wait */
        return -EAGAIN;
    }
    return 0;
}

/* An op of req's: code (fn), code that writes (write), or one statement (both NULL: the caller
 * fills o->stmt). NULL when there is none to be had (the request is answered). */
static db_op_t *new_op(roost_db_t *db, roost_req_t *req, roost_db_fn fn, roost_db_write_fn write,
                       roost_timer_fn done, void *arg)
{
    if (!db->runner) { /* no data threads: the service has stopped */
        roost_respond_error(req, 500, "Out of memory");
        return NULL;
    }
    db_op_t *o = roost_req_new(req, sizeof *o);
    if (o) {
        o->fn = fn;
        o->write = write;
        o->done = done;
        o->arg = arg;
    }
    return o;
}

int roost_db_run(roost_db_t *db, roost_req_t *req, roost_db_fn fn, roost_timer_fn done, void *arg)
{
    db_op_t *o = new_op(db, req, fn, NULL, done, arg);
    return o ? submit(db, req, o) : -ENOMEM;
}

int roost_db_run_write(roost_db_t *db, roost_req_t *req, roost_db_write_fn fn, roost_timer_fn done,
                       void *arg)
{
    db_op_t *o = new_op(db, req, NULL, fn, done, arg);
    return o ? submit(db, req, o) : -ENOMEM;
}

int roost_db_run_query(roost_db_t *db, roost_req_t *req, roost_db_rows_fn rows, roost_timer_fn done,
                       void *arg, int stmt, const char *types, ...)
{
    db_op_t *o = new_op(db, req, NULL, NULL, done, arg);
    if (!o)
        return -ENOMEM;
    va_list ap;
    va_start(ap, types);
    int n = stmt < 0 || stmt >= db->nsql ? -EINVAL : db_params_read(o->params, types, ap);
    va_end(ap);
    int bad = n < 0;
    for (int i = 0; i < n && !bad; i++) {
        db_param_t *p = &o->params[i];
        if (p->type != 's' || !p->s)
            continue;
        /* copied: the data thread reads it after the caller has returned */
        size_t len = strlen(p->s);
        char *copy = roost_req_alloc(req, len + 1);
        if (copy)
            memcpy(copy, p->s, len + 1);
        bad = !copy;
        p->s = copy;
    }
    if (bad) {
        roost_respond_error(req, 500, "Bad statement or parameters");
        return -EINVAL;
    }
    o->stmt = (db_stmt_t){.k = stmt, .n = n, .p = o->params, .rows = rows, .arg = arg};
    return submit(db, req, o);
}
