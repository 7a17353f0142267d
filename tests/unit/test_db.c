/* Unit tests of the data store (src/db/db_*.c) on SQLite files in a temporary folder: the pool
 * (reuse, overflow closed on checkin, a checkout that times out and one that is served by a
 * checkin), error classes, roost_db_query's parameter letters, transactions and savepoints,
 * migrations run once, and concurrent write transactions serialized without SQLITE_BUSY. PostgreSQL
 * is covered end to end (tests/e2e/test_data_*.py start a real server). */
#include "unit.h"

#include "db/db.h"
#include "db_temp.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { Q_INSERT, Q_GET, Q_COUNT, Q_ADD, NQ };
static const char *const sql[NQ] = {
    [Q_INSERT] = "INSERT INTO t (name, n) VALUES ($1, $2) RETURNING id",
    [Q_GET] = "SELECT name, n FROM t WHERE id = $1",
    [Q_COUNT] = "SELECT count(*) FROM t",
    [Q_ADD] = "UPDATE t SET n = n + $2 WHERE id = $1",
};
static const char *const migrations[] = {
    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER CHECK (n >= 0))",
};

static db_t *open_temp(int size, int overflow, double timeout_s, char path[128])
{
    db_pool_opts_t opts = {size, overflow, timeout_s};
    return unit_db_open(path, &opts, sql, NQ, migrations, 1);
}

static long long insert(db_conn_t *c, const char *name, long long n, int *rc_out)
{
    db_param_t p[2] = {{.type = 's', .s = name}, {.type = 'i', .i = n}};
    int rc = db_query(c, Q_INSERT, 2, p);
    long long id = 0;
    if (rc == 0 && (rc = db_next(c)) == 1)
        id = c->db->ops->col_int(c, 0);
    c->db->ops->finish(c);
    if (rc_out)
        *rc_out = rc < 0 ? rc : 0;
    return id;
}

static long long count_rows(db_conn_t *c)
{
    long long n = -1;
    if (db_query(c, Q_COUNT, 0, NULL) == 0 && db_next(c) == 1)
        n = c->db->ops->col_int(c, 0);
    c->db->ops->finish(c);
    return n;
}

TEST(db_rows_round_trip_and_errors_are_classified)
{
    char path[128];
    db_t *db = open_temp(2, 0, 1, path);
    CHECK(db != NULL);
    if (!db)
        return;
    db_conn_t *c;
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    int rc;
    long long id = insert(c, "alpha", 5, &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK(id > 0);
    db_param_t p = {.type = 'i', .i = id};
    CHECK_EQ_INT(db_query(c, Q_GET, 1, &p), 0);
    CHECK_EQ_INT(db_next(c), 1);
    CHECK_EQ_STR(db->ops->col_text(c, 0), "alpha");
    CHECK_EQ_INT(db->ops->col_int(c, 1), 5);
    CHECK_EQ_INT(db_next(c), 0);
    CHECK_EQ_INT(db_next(c), 0); /* stays at the end */

    insert(c, "alpha", 1, &rc);
    CHECK_EQ_INT(rc, -EEXIST);
    CHECK(strstr(c->err, "UNIQUE") != NULL);
    insert(c, "beta", -1, &rc);
    CHECK_EQ_INT(rc, -EINVAL);                          /* the CHECK constraint */
    CHECK_EQ_INT(db_query(c, Q_GET, 0, NULL), -EINVAL); /* wrong parameter count */
    CHECK_EQ_INT(db_query(c, NQ, 0, NULL), -EINVAL);    /* no such statement */
    CHECK_EQ_INT(count_rows(c), 1);
    db_param_t add[2] = {{.type = 'i', .i = id}, {.type = 'i', .i = 2}};
    CHECK_EQ_INT(db_query(c, Q_ADD, 2, add), 0);
    CHECK_EQ_INT(db->ops->changes(c), 1);

    /* The public call reads its parameters from a types string. */
    CHECK_EQ_INT(roost_db_query(c, Q_INSERT, "si", "gamma", 7LL), 0);
    CHECK_EQ_INT(roost_db_next(c), 1);
    long long id2 = roost_db_int(c, 0);
    CHECK_EQ_INT(roost_db_query(c, Q_GET, "i", id2), 0);
    CHECK_EQ_INT(roost_db_next(c), 1);
    CHECK_EQ_STR(roost_db_text(c, 0), "gamma");
    CHECK_EQ_INT(roost_db_int(c, 1), 7);

    CHECK_EQ_INT(roost_db_query(c, Q_GET, "x", id2), -EINVAL);
    CHECK_EQ_STR(roost_db_error(c), "unknown parameter type 'x'");
    rc = roost_db_query(c, Q_GET, "iiiiiiiiiiiiiiiii", 1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL,
                        1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL, 1LL);
    CHECK_EQ_INT(rc, -EINVAL);
    CHECK_EQ_STR(roost_db_error(c), "more than 16 parameters");
    db_checkin(c);
    db_close(db);
    unit_db_remove(path);
}

TEST(db_transactions_and_savepoints)
{
    char path[128];
    db_t *db = open_temp(1, 0, 1, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    db_conn_t *c;
    db_checkout(db, &c);
    CHECK_EQ_INT(db_begin(c, 1), 0);
    CHECK_EQ_INT(db_begin(c, 1), -EINVAL); /* no nesting: savepoints are for that */
    insert(c, "kept", 1, NULL);
    CHECK_EQ_INT(db_savepoint(c, "sp"), 0);
    insert(c, "undone", 1, NULL);
    int rc;
    insert(c, "kept", 1, &rc); /* fails inside the savepoint */
    CHECK_EQ_INT(rc, -EEXIST);
    CHECK_EQ_INT(db_rollback_to(c, "sp"), 0);
    CHECK(strstr(c->err, "UNIQUE") != NULL); /* the error survives the rollback */
    CHECK_EQ_INT(db_release(c, "sp"), 0);
    CHECK_EQ_INT(db_savepoint(c, "bad name"), -EINVAL);
    CHECK_EQ_INT(db_commit(c), 0);
    CHECK_EQ_INT(count_rows(c), 1);

    CHECK_EQ_INT(db_begin(c, 1), 0);
    insert(c, "rolled back", 1, NULL);
    CHECK_EQ_INT(db_rollback(c), 0);
    CHECK_EQ_INT(count_rows(c), 1);
    CHECK_EQ_INT(db_savepoint(c, "sp"), -EINVAL); /* outside a transaction */

    /* A connection given back inside a transaction is rolled back, and its write lock freed. */
    CHECK_EQ_INT(db_begin(c, 1), 0);
    insert(c, "abandoned", 1, NULL);
    db_checkin(c);
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    CHECK_EQ_INT(c->in_tx, 0);
    CHECK_EQ_INT(count_rows(c), 1);
    CHECK_EQ_INT(db_begin(c, 1), 0); /* would deadlock if the write lock were still held */
    CHECK_EQ_INT(db_commit(c), 0);
    db_checkin(c);
    db_close(db);
    unit_db_remove(path);
}

TEST(db_migrations_run_once)
{
    char path[128];
    db_t *db = open_temp(1, 0, 1, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    CHECK_EQ_INT(db_migrate(db, "test", migrations, 1), 0); /* again: nothing to do */
    db_conn_t *c;
    db_checkout(db, &c);
    int64_t v = 0;
    CHECK_EQ_INT(db->ops->exec(c, "SELECT count(*) FROM test_schema", &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(db->ops->exec(c, "SELECT max(version) FROM test_schema", &v), 0);
    CHECK_EQ_INT(v, 1);
    db_checkin(c);
    db_close(db);
    unit_db_remove(path);
}

TEST(db_pool_reuses_and_closes_overflow_on_checkin)
{
    char path[128];
    db_t *db = open_temp(1, 2, 1, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    db_conn_t *a, *b, *c, *d;
    db_status_t st;
    CHECK_EQ_INT(db_checkout(db, &a), 0);
    db_checkin(a);
    CHECK_EQ_INT(db_checkout(db, &b), 0);
    CHECK(a == b); /* the warm one */
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    CHECK_EQ_INT(db_checkout(db, &d), 0);
    db_status(db, &st);
    CHECK_EQ_INT(st.checked_out, 3);
    CHECK_EQ_INT(st.overflow, 2);
    db_checkin(b);
    db_checkin(c);
    db_checkin(d);
    db_status(db, &st);
    CHECK_EQ_INT(st.checked_out, 0);
    CHECK_EQ_INT(st.checked_in, 1);
    CHECK_EQ_INT(st.overflow, 0);
    CHECK_EQ_INT(st.size, 1);
    CHECK_EQ_INT(st.max_overflow, 2);
    db_close(db);
    unit_db_remove(path);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(db_checkout_times_out_when_the_pool_is_exhausted)
{
    char path[128];
    db_t *db = open_temp(1, 0, 0.1, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    db_conn_t *a, *b;
    CHECK_EQ_INT(db_checkout(db, &a), 0);
    double t0 = now_s();
    CHECK_EQ_INT(db_checkout(db, &b), -EAGAIN);
    double waited = now_s() - t0;
    CHECK(waited >= 0.09 && waited < 2.0);
    CHECK_EQ_INT(atomic_load(&db->n_timeouts), 1);
    db_checkin(a);
    db_close(db);
    unit_db_remove(path);
}

struct handoff {
    db_t *db;
    db_conn_t *held;
};

static void *give_back_later(void *arg)
{
    struct handoff *h = arg;
    usleep(50 * 1000);
    db_checkin(h->held);
    return NULL;
}

TEST(db_waiting_checkout_is_served_by_a_checkin)
{
    char path[128];
    db_t *db = open_temp(1, 0, 5, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    struct handoff h = {db, NULL};
    CHECK_EQ_INT(db_checkout(db, &h.held), 0);
    pthread_t t;
    pthread_create(&t, NULL, give_back_later, &h);
    db_conn_t *c;
    double t0 = now_s();
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    CHECK(c == h.held);
    CHECK(now_s() - t0 < 2.0);
    pthread_join(t, NULL);
    db_checkin(c);
    db_close(db);
    unit_db_remove(path);
}

struct writer {
    db_t *db;
    long long id;
    int failures;
};

static void *add_many(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < 200; i++) {
        db_conn_t *c;
        if (db_checkout(w->db, &c) < 0) {
            w->failures++;
            continue;
        }
        /* read-modify-write in a write transaction: loses nothing only if serialized */
        db_param_t p = {.type = 'i', .i = w->id};
        long long n = -1;
        int rc = db_begin(c, 1);
        if (rc == 0 && (rc = db_query(c, Q_GET, 1, &p)) == 0 && db_next(c) == 1)
            n = c->db->ops->col_int(c, 1);
        c->db->ops->finish(c);
        db_param_t add[2] = {{.type = 'i', .i = w->id}, {.type = 'i', .i = 1}};
        if (rc == 0 && n >= 0)
            rc = db_query(c, Q_ADD, 2, add);
        if (rc == 0)
            rc = db_commit(c);
        if (rc < 0 || n < 0) {
            w->failures++;
            db_rollback(c);
        }
        db_checkin(c);
    }
    return NULL;
}

TEST(db_sqlite_write_transactions_from_many_threads_are_serialized)
{
    char path[128];
    db_t *db = open_temp(4, 4, 5, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    db_conn_t *c;
    db_checkout(db, &c);
    long long id = insert(c, "counter", 0, NULL);
    db_checkin(c);
    struct writer w[6];
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        w[i] = (struct writer){db, id, 0};
        pthread_create(&t[i], NULL, add_many, &w[i]);
    }
    int failures = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        failures += w[i].failures;
    }
    CHECK_EQ_INT(failures, 0);
    db_checkout(db, &c);
    db_param_t p = {.type = 'i', .i = id};
    long long n = -1;
    if (db_query(c, Q_GET, 1, &p) == 0 && db_next(c) == 1)
        n = db->ops->col_int(c, 1);
    CHECK_EQ_INT(n, 1200);
    db_checkin(c);
    db_close(db);
    unit_db_remove(path);
}

struct queued {
    db_t *db;
    int order; /* when this thread got its connection */
    _Atomic int *served;
};

static void *checkout_in_turn(void *arg)
{
    struct queued *q = arg;
    db_conn_t *c;
    if (db_checkout(q->db, &c) == 0) {
        q->order = atomic_fetch_add(q->served, 1);
        usleep(10 * 1000);
        db_checkin(c);
    }
    return NULL;
}

TEST(db_waiters_are_served_in_arrival_order)
{
    char path[128];
    db_t *db = open_temp(1, 0, 5, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    _Atomic int served = 0;
    db_conn_t *held;
    CHECK_EQ_INT(db_checkout(db, &held), 0);
    struct queued q[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        q[i] = (struct queued){db, -1, &served};
        pthread_create(&t[i], NULL, checkout_in_turn, &q[i]);
        usleep(30 * 1000); /* each is waiting before the next arrives */
    }
    db_status_t st;
    db_status(db, &st);
    CHECK_EQ_INT(st.waiting, 3);
    db_checkin(held); /* goes to the first waiter, which hands it to the second, ... */
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(q[i].order, i);
    db_close(db);
    unit_db_remove(path);
}

TEST(db_a_returned_connection_goes_to_the_waiter_not_back_to_its_returner)
{
    char path[128];
    db_t *db = open_temp(1, 0, 5, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    _Atomic int served = 0;
    db_conn_t *c;
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    struct queued waiter = {db, -1, &served};
    pthread_t t;
    pthread_create(&t, NULL, checkout_in_turn, &waiter);
    usleep(30 * 1000);
    db_checkin(c);
    CHECK_EQ_INT(db_checkout(db, &c), 0); /* waits for the waiter's turn to end */
    int mine = atomic_fetch_add(&served, 1);
    pthread_join(t, NULL);
    CHECK_EQ_INT(waiter.order, 0);
    CHECK_EQ_INT(mine, 1);
    db_checkin(c);
    db_close(db);
    unit_db_remove(path);
}

/* A second user of a pool (the job store beside the application) adds its statements and its
 * own schema; a connection opened before runs them, and the pool lives until both let go. */
TEST(db_a_second_schema_shares_the_pool_and_its_connections)
{
    char path[128];
    db_t *db = open_temp(1, 0, 1, path);
    if (!db)
        return unit_fail(__FILE__, __LINE__, "cannot open a temporary database");
    db_conn_t *c;
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    CHECK_EQ_INT(count_rows(c), 0); /* the connection is open and warm */
    db_checkin(c);

    static const char *const more[] = {"INSERT INTO u (v) VALUES ($1)", "SELECT sum(v) FROM u"};
    static const char *const more_migrations[] = {"CREATE TABLE u (v INTEGER NOT NULL)"};
    int base = db_add_statements(db, more, 2);
    CHECK_EQ_INT(base, NQ);
    db->refs++; /* as db_share_local does for the second user */
    CHECK_EQ_INT(db_migrate(db, "second", more_migrations, 1), 0);
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    db_param_t p = {.type = 'i', .i = 20};
    CHECK_EQ_INT(db_query(c, base, 1, &p), 0);
    p.i = 22;
    CHECK_EQ_INT(db_query(c, base, 1, &p), 0);
    CHECK_EQ_INT(db_query(c, base + 1, 0, NULL), 0);
    CHECK_EQ_INT(db_next(c), 1);
    CHECK_EQ_INT(db->ops->col_int(c, 0), 42);
    c->db->ops->finish(c);
    CHECK_EQ_INT(count_rows(c), 0); /* the first schema's statements still run */
    db_checkin(c);

    db_close(db); /* the first user lets go: the second still works */
    CHECK_EQ_INT(db_checkout(db, &c), 0);
    CHECK_EQ_INT(db_query(c, base + 1, 0, NULL), 0);
    CHECK_EQ_INT(db_next(c), 1);
    CHECK_EQ_INT(db->ops->col_int(c, 0), 42);
    db_checkin(c);
    db_close(db);
    unit_db_remove(path);
}
