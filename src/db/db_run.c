/* Data threads: the way for a request that only needs a few statements to reach the database
 * without a worker thread of its own. A loop handler holds its request and queues a job; a data
 * thread takes the queued jobs in a batch, runs them one after the other on one pooled connection,
 * and posts each answer back to its request's loop. A busy server then pays one wake-up per batch
 * instead of one hand-off per request, and jobs that are one statement each go to PostgreSQL
 * together, one round trip per group (bench/README.md, "Data"). It is not a second worker pool:
 * jobs must be short and must not wait on anything but the database. */
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

typedef struct db_job {
    struct db_job *next;
    roost_req_t *req;
    roost_db_fn fn; /* a job of code, or (NULL) of one statement: */
    db_stmt_t stmt;
    db_param_t params[DB_MAX_PARAMS];
    roost_timer_fn done;
    void *arg;
} db_job_t;

struct db_runner {
    db_t *db;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    db_job_t *head, *tail;
    int queued;
    int idle;   /* threads waiting for jobs */
    int waking; /* of those, signalled and not yet running: a burst wakes each thread once */
    int stopping, nthreads;
    pthread_t threads[];
};

static void job_done(roost_req_t *req, void *arg)
{
    db_job_t *j = arg;
    j->done(req, j->arg);
    roost_req_release(req);
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

/* One connection for the batch (a new one if it breaks on the way). Answers are posted as soon
 * as their group is done. */
static void run_batch(db_t *db, db_job_t *j)
{
    db_conn_t *c = NULL;
    if (db_checkout(db, &c) < 0)
        c = NULL;
    while (j) {
        if (c && c->broken) {
            db_checkin(c);
            if (db_checkout(db, &c) < 0)
                c = NULL;
        }
        db_job_t *first = j;
        if (j->fn) {
            j->fn(c, j->arg);
            if (c)
                db->ops->finish(c);
            j = j->next;
        } else {
            db_stmt_t group[PIPE_MAX];
            int n = 0;
            for (; j && !j->fn && n < PIPE_MAX; j = j->next)
                group[n++] = j->stmt;
            run_stmts(db, c, group, n);
        }
        for (db_job_t *k = first, *next; k != j; k = next) {
            next = k->next; /* k belongs to its request now */
            roost_req_post(k->req, job_done, k);
        }
    }
    if (c)
        db_checkin(c);
}

static void *runner_main(void *arg)
{
    pthread_setname_np(pthread_self(), "roost-db"); /* for top -H, perf, gdb */
    db_runner_t *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->head && !r->stopping) {
            r->idle++;
            pthread_cond_wait(&r->cond, &r->lock);
            r->idle--;
            if (r->waking > 0)
                r->waking--;
        }
        if (!r->head)
            break;
        /* Take this thread's share of the queue and wake another thread for the rest: one
         * thread taking everything would run it all on one connection, one round trip after
         * the other, while the others sleep. */
        int share = (r->queued + r->nthreads - 1) / r->nthreads;
        if (share > BATCH_MAX)
            share = BATCH_MAX;
        db_job_t *batch = r->head, *last = batch;
        int taken = 1;
        for (; taken < share && last->next; taken++)
            last = last->next;
        r->head = last->next;
        r->queued -= taken;
        if (!r->head)
            r->tail = NULL;
        last->next = NULL;
        if (r->head && r->idle > r->waking) {
            r->waking++;
            pthread_cond_signal(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);

        run_batch(r->db, batch);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

db_runner_t *db_runner_start(db_t *db, int threads)
{
    db_runner_t *r = calloc(1, sizeof *r + (size_t)threads * sizeof(pthread_t));
    if (!r)
        return NULL;
    r->db = db;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&r->threads[i], &attr, runner_main, r) != 0)
            break;
        r->nthreads++;
    }
    pthread_attr_destroy(&attr);
    if (r->nthreads == 0) {
        db_runner_stop(r);
        return NULL;
    }
    return r;
}

void db_runner_stop(db_runner_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->nthreads; i++)
        pthread_join(r->threads[i], NULL);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

/* Queues j (filled but for its links) for req; answers the request when it cannot. */
static int submit(db_t *db, roost_req_t *req, db_job_t *j)
{
    db_runner_t *r = db->runner;
    pthread_mutex_lock(&r->lock);
    if (r->stopping) {
        pthread_mutex_unlock(&r->lock);
        roost_res_header(req, "Retry-After", "1");
        roost_respond_error(req, 503, "Server shutting down");
        return -EAGAIN;
    }
    roost_req_hold(req); /* on the loop, before a data thread can see the job */
    j->next = NULL;
    j->req = req;
    if (r->tail)
        r->tail->next = j;
    else
        r->head = j;
    r->tail = j;
    r->queued++;
    if (r->idle > r->waking) {
        r->waking++;
        pthread_cond_signal(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static db_job_t *new_job(roost_db_t *db, roost_req_t *req, roost_timer_fn done, void *arg)
{
    db_job_t *j = db->runner ? roost_req_alloc(req, sizeof *j) : NULL;
    if (!j) {
        roost_respond_error(req, 500, "Out of memory");
        return NULL;
    }
    memset(j, 0, sizeof *j);
    j->done = done;
    j->arg = arg;
    return j;
}

int roost_db_run(roost_db_t *db, roost_req_t *req, roost_db_fn fn, roost_timer_fn done, void *arg)
{
    db_job_t *j = new_job(db, req, done, arg);
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    return submit(db, req, j);
}

int roost_db_run_query(roost_db_t *db, roost_req_t *req, roost_db_rows_fn rows, roost_timer_fn done,
                       void *arg, int stmt, const char *types, ...)
{
    db_job_t *j = new_job(db, req, done, arg);
    if (!j)
        return -ENOMEM;
    int n = 0, bad = stmt < 0 || stmt >= db->nsql;
    va_list ap;
    va_start(ap, types);
    for (const char *t = types ? types : ""; *t && !bad; t++) {
        if (n == DB_MAX_PARAMS) {
            bad = 1;
            break;
        }
        db_param_t *p = &j->params[n++];
        p->type = *t;
        switch (*t) {
        case 'i':
            p->i = va_arg(ap, long long);
            break;
        case 'b':
            p->i = va_arg(ap, int) != 0;
            break;
        case 'n':
            break;
        case 's': {
            /* copied: the data thread reads it after the caller has returned */
            const char *v = va_arg(ap, const char *);
            size_t len = v ? strlen(v) : 0;
            char *copy = v ? roost_req_alloc(req, len + 1) : NULL;
            if (copy)
                memcpy(copy, v, len + 1);
            bad = v && !copy;
            p->s = copy;
            break;
        }
        default:
            bad = 1;
        }
    }
    va_end(ap);
    if (bad) {
        roost_respond_error(req, 500, "Bad statement or parameters");
        return -EINVAL;
    }
    j->stmt = (db_stmt_t){.k = stmt, .n = n, .p = j->params, .rows = rows, .arg = arg};
    return submit(db, req, j);
}
