/* Unit tests of the group commit of write ops (src/db/db_group.c) on a SQLite file: a group whose
 * middle op collides keeps the others and undoes only that one, a grouped op cannot end the
 * group's transaction, a group whose transaction fails commits nothing and tells every op that
 * had kept writes, and an op that lost a deadlock runs again after the commit. PostgreSQL's side is
 * end to end (tests/e2e/test_data_group_commit.py). */
#include "unit.h"

#include "db/db.h"
#include "db_temp.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

enum { Q_INSERT, Q_COUNT, NQ };
static const char *const sql[NQ] = {
    [Q_INSERT] = "INSERT INTO t (name) VALUES ($1)",
    [Q_COUNT] = "SELECT count(*) FROM t WHERE name = $1",
};
static const char *const migrations[] = {
    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"};

/* A database with one connection checked out, for one test. */
typedef struct {
    char path[128];
    db_t *db;
    db_conn_t *c;
} fixture_t;

static int fixture_open(fixture_t *f)
{
    db_pool_opts_t opts = {1, 0, 1};
    f->db = unit_db_open(f->path, &opts, sql, NQ, migrations, 1);
    if (!f->db || db_checkout(f->db, &f->c) < 0) {
        unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
        return -1;
    }
    return 0;
}

static void fixture_close(fixture_t *f)
{
    db_checkin(f->c);
    db_close(f->db);
    unit_db_remove(f->path);
}

/* One op: inserts `name` (or misbehaves as `mode` says) and records what it was told. */
typedef struct {
    const char *name;
    int mode; /* 0 insert, 1 also try to commit the group, 2 release the group's savepoint, 3 lose
               * a deadlock (-EDEADLK) the first time */
    int ran, rc;    /* rc: the insert's */
    int told, lost; /* fn(NULL, lost) calls */
    int commit_rc;  /* mode 1: roost_db_commit's answer */
} op_t;

static int op_fn(roost_dbconn_t *c, int rc, void *arg)
{
    op_t *o = arg;
    if (!c) {
        o->told++;
        o->lost = rc;
        return rc;
    }
    if (++o->ran == 1 && o->mode == 3)
        return o->rc = -EDEADLK;
    o->rc = roost_db_query(c, Q_INSERT, "s", o->name);
    if (o->mode == 1)
        o->commit_rc = roost_db_commit(c);
    if (o->mode == 2)
        db_release(c, "roost_group_op"); /* breaks the group's next step on purpose */
    return o->rc;
}

static long long count_of(db_conn_t *c, const char *name)
{
    long long n = -1;
    if (roost_db_query(c, Q_COUNT, "s", name) == 0 && roost_db_next(c) == 1)
        n = roost_db_int(c, 0);
    c->db->ops->finish(c);
    return n;
}

static int run_group(db_conn_t *c, op_t *ops, int n)
{
    db_write_t w[DB_GROUP_MAX];
    for (int i = 0; i < n; i++)
        w[i] = (db_write_t){op_fn, &ops[i]};
    return db_group_run(c, w, n);
}

TEST(db_group_undoes_only_the_op_that_failed_and_commits_the_others_once)
{
    fixture_t f;
    if (fixture_open(&f) < 0)
        return;
    op_t ops[4] = {{.name = "ann"}, {.name = "bob"}, {.name = "ann"}, {.name = "cid", .mode = 1}};
    CHECK_EQ_INT(run_group(f.c, ops, 4), 4);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(ops[i].ran, 1);
        CHECK_EQ_INT(ops[i].told, 0);
    }
    CHECK_EQ_INT(ops[2].rc, -EEXIST);
    CHECK_EQ_INT(ops[3].commit_rc, -EINVAL); /* a grouped op cannot end the transaction */
    CHECK_EQ_INT(f.c->in_tx, 0);
    CHECK_EQ_INT(count_of(f.c, "ann"), 1);
    CHECK_EQ_INT(count_of(f.c, "bob"), 1);
    CHECK_EQ_INT(count_of(f.c, "cid"), 1);
    CHECK_EQ_INT(atomic_load(&f.db->n_group_commits), 1);
    CHECK_EQ_INT(atomic_load(&f.db->n_grouped_ops), 4);
    CHECK_EQ_INT(atomic_load(&f.db->n_group_lost), 0);
    /* An op alone runs without a savepoint: its failure rolls back, nothing is committed. */
    op_t alone = {.name = "bob"};
    CHECK_EQ_INT(run_group(f.c, &alone, 1), 1);
    CHECK_EQ_INT(alone.rc, -EEXIST);
    CHECK_EQ_INT(alone.told, 0);
    CHECK_EQ_INT(atomic_load(&f.db->n_group_commits), 1);
    CHECK_EQ_INT(count_of(f.c, "bob"), 1);
    /* The connection is usable again, outside any transaction. */
    CHECK_EQ_INT(roost_db_begin(f.c, ROOST_DB_WRITE), 0);
    CHECK_EQ_INT(roost_db_commit(f.c), 0);
    fixture_close(&f);
}

TEST(db_group_whose_transaction_fails_commits_nothing_and_tells_the_kept_ops)
{
    fixture_t f;
    if (fixture_open(&f) < 0)
        return;
    op_t ops[5] = {{.name = "dan"},
                   {.name = "dan"},
                   {.name = "eve", .mode = 2},
                   {.name = "fay"},
                   {.name = "gus"}};
    /* The savepoint's release before ops[3] fails: the group ends there, the rest is the
     * caller's to run in another group. */
    CHECK_EQ_INT(run_group(f.c, ops, 5), 4);
    CHECK_EQ_INT(ops[0].told, 1); /* kept, then lost */
    CHECK(ops[0].lost < 0);
    CHECK_EQ_INT(ops[1].told, 0); /* its own 409 stands */
    CHECK_EQ_INT(ops[2].told, 1);
    CHECK_EQ_INT(ops[3].ran, 0); /* could not run: told */
    CHECK_EQ_INT(ops[3].told, 1);
    CHECK_EQ_INT(ops[4].ran + ops[4].told, 0);
    CHECK_EQ_INT(f.c->in_tx, 0);
    CHECK_EQ_INT(count_of(f.c, "dan"), 0);
    CHECK_EQ_INT(count_of(f.c, "eve"), 0);
    CHECK_EQ_INT(atomic_load(&f.db->n_group_commits), 0);
    CHECK_EQ_INT(atomic_load(&f.db->n_group_lost), 3);
    CHECK_EQ_INT(run_group(f.c, &ops[4], 1), 1);
    CHECK_EQ_INT(count_of(f.c, "gus"), 1);
    fixture_close(&f);
}

TEST(db_group_runs_an_op_that_lost_a_deadlock_again_after_the_commit)
{
    fixture_t f;
    if (fixture_open(&f) < 0)
        return;
    op_t ops[3] = {{.name = "hal"}, {.name = "ida", .mode = 3}, {.name = "jon"}};
    CHECK_EQ_INT(run_group(f.c, ops, 3), 3);
    CHECK_EQ_INT(ops[1].ran, 2);
    CHECK_EQ_INT(ops[1].rc, 0);
    CHECK_EQ_INT(ops[1].told, 0);
    CHECK_EQ_INT(count_of(f.c, "ida"), 1);
    CHECK_EQ_INT(count_of(f.c, "jon"), 1);
    CHECK_EQ_INT(atomic_load(&f.db->n_group_retries), 1);
    CHECK_EQ_INT(atomic_load(&f.db->n_group_commits), 2); /* the group, then the op again alone */
    fixture_close(&f);
}
