/* Group commit of write ops (roost_db_run_write): the write ops a data thread takes one after the
 * other run in one transaction, each inside a savepoint, and commit once, so a busy server pays
 * one WAL flush per group instead of one per request, as the job store's dispatcher does for its
 * batches. One op's failure (a unique violation) rolls back only its savepoint. Not the queue
 * (db_run.c) nor transactions in general (db_tx.c). */
#include "db/db.h"

#include <errno.h>

/* One name, released and set again between ops: the group never nests savepoints. */
#define GROUP_SAVEPOINT "roost_group_op"

enum { NOT_RUN = -1, UNDONE = 0, KEPT = 1 };

/* The group failed at w[end - 1]: nothing of it is committed. Every op whose writes were kept,
 * and the one that could not run, hears rc; an op that undid itself already has its answer. */
static int group_fail(db_conn_t *c, const db_write_t *w, const signed char *state, int end, int rc)
{
    db_t *db = c->db;
    c->grouped = 0;
    db_rollback(c);
    for (int i = 0; i < end; i++) {
        if (state[i] == UNDONE)
            continue;
        w[i].fn(NULL, rc, w[i].arg);
        atomic_fetch_add_explicit(&db->n_group_lost, 1, memory_order_relaxed);
    }
    return end;
}

/* One transaction over w[0..n); see db_group_run. The ops that lost a deadlock (-EDEADLK) in a
 * group that then committed are copied to retry[*nretry]. */
static int group_once(db_conn_t *c, const db_write_t *w, int n, db_write_t *retry, int *nretry)
{
    db_t *db = c->db;
    signed char state[DB_GROUP_MAX] = {0};
    int deadlocked[DB_GROUP_MAX];
    *nretry = 0;
    for (int i = 0; i < n; i++)
        state[i] = NOT_RUN;
    /* An op alone needs no savepoint (a round trip): its failure rolls the transaction back. */
    int sp = n > 1;
    int rc = db_begin(c, 1);
    if (rc == 0 && sp)
        rc = db_savepoint(c, GROUP_SAVEPOINT);
    if (rc < 0)
        return group_fail(c, w, state, 1, rc);
    c->grouped = 1; /* the op's own roost_db_begin/commit/rollback are refused */
    int fresh = 1;  /* the savepoint holds nothing yet */
    for (int i = 0; i < n; i++) {
        if (!fresh) {
            /* One round trip: release the last op's savepoint into the group, open the next. */
            db->ops->finish(c);
            rc = db->ops->exec(
                c, "RELEASE SAVEPOINT " GROUP_SAVEPOINT "; SAVEPOINT " GROUP_SAVEPOINT, NULL);
            if (rc < 0)
                return group_fail(c, w, state, i + 1, rc);
        }
        rc = w[i].fn(c, 0, w[i].arg);
        db->ops->finish(c);
        state[i] = rc == 0 ? KEPT : UNDONE;
        deadlocked[i] = rc == -EDEADLK;
        /* Rolled back to, a savepoint stays open and empty: the next op reuses it as it is. */
        fresh = rc < 0;
        if (rc < 0 && sp && (rc = db_rollback_to(c, GROUP_SAVEPOINT)) < 0)
            return group_fail(c, w, state, i + 1, rc);
    }
    c->grouped = 0;
    if (sp || state[0] == KEPT) {
        rc = db_commit(c);
        if (rc < 0)
            return group_fail(c, w, state, n, rc);
        atomic_fetch_add_explicit(&db->n_group_commits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&db->n_grouped_ops, n, memory_order_relaxed);
    } else {
        db_rollback(c); /* the op alone failed: nothing to keep */
    }
    for (int i = 0; i < n; i++)
        if (deadlocked[i])
            retry[(*nretry)++] = w[i];
    return n;
}

/* Two groups that write the same keys in opposite orders (two clients sending the same new
 * username at once, updates of the same rows) wait for each other until PostgreSQL's deadlock
 * check (deadlock_timeout, 1 s) fails one op of one group: a wait that single-statement
 * transactions never had. Its group goes on without it, and once that group has committed
 * (releasing what the other waited for), the op runs again; the last try's answer stands. */
int db_group_run(db_conn_t *c, const db_write_t *w, int n)
{
    db_write_t retry[DB_GROUP_MAX];
    int m;
    if (n > DB_GROUP_MAX)
        n = DB_GROUP_MAX;
    int handled = group_once(c, w, n, retry, &m);
    for (int round = 0; m > 0 && round < DB_GROUP_RETRIES && !c->broken; round++) {
        atomic_fetch_add_explicit(&c->db->n_group_retries, m, memory_order_relaxed);
        /* Reads retry[0..m) while writing a prefix of it: the copy never overtakes the read. */
        group_once(c, retry, m, retry, &m);
    }
    return handled;
}
