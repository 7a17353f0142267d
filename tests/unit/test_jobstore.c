/* The job store's queue operations (src/jobs/store.c) on a real SQLite file, through the data
 * layer's pool: insert, claim order (priority, run
 * time, id; delayed jobs held back), reserve/start/end of an attempt, retry, cancel request,
 * requeue after a crash, idempotency keys, listing and counts as the API sees them, schedule
 * slots, and reopening an existing database. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/store.h"
#include "unit.h"

typedef struct {
    char dir[64], path[96];
    job_store_t *store;
    job_conn_t conn;
    job_conn_t *s; /* &conn once open */
} temp_store_t;

/* A fresh folder and the database's path in it (not opened). */
static int store_dir(temp_store_t *t)
{
    t->store = NULL;
    t->s = NULL;
    snprintf(t->dir, sizeof t->dir, "/tmp/roost-test-jobstore-XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->path, sizeof t->path, "%s/roost.db", t->dir);
    return 0;
}

/* Opens the store as the server does: a pool on the file, the job schema added to it, and one
 * connection checked out for the test. */
static int store_reopen(temp_store_t *t)
{
    char spec[128];
    snprintf(spec, sizeof spec, "sqlite:%s", t->path);
    db_url_t url;
    db_pool_opts_t opts = {2, 0, 1};
    db_t *db = db_url_parse(&url, spec, NULL) == 0 ? db_open(&url, &opts, NULL, 0) : NULL;
    if (!db || job_store_open(db, 0, &t->store) < 0 || job_store_acquire(t->store, &t->conn) < 0) {
        job_store_close(t->store);
        t->store = NULL;
        return -1;
    }
    t->s = &t->conn;
    return 0;
}

static int store_open(temp_store_t *t)
{
    if (store_dir(t) < 0)
        return -1;
    return store_reopen(t);
}

/* Gives the connection back and closes the store (the file stays). */
static void store_shut(temp_store_t *t)
{
    if (t->s)
        job_store_release(t->s);
    job_store_close(t->store);
    t->s = NULL;
    t->store = NULL;
}

static void store_close(temp_store_t *t)
{
    store_shut(t);
    char p[128];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", t->path, suffix[i]);
        unlink(p);
    }
    rmdir(t->dir);
}

/* Inserts a job; returns its id (or -1). */
static int64_t add(job_conn_t *s, int priority, int64_t run_at, const char *key)
{
    job_row_t r = {.type = "noop",
                   .payload = "{}",
                   .priority = priority,
                   .run_at_ms = run_at,
                   .created_ms = 1000,
                   .idem_key = key};
    int rc = job_store_insert(s, &r);
    int64_t id = rc >= 0 ? r.id : -1;
    job_row_clear(&r);
    return id;
}

static int status_of(job_conn_t *s, int64_t id, job_row_t *out)
{
    job_row_t r;
    if (job_store_get(s, id, &r) != 1)
        return -1;
    int st = r.status;
    if (out)
        *out = r;
    else
        job_row_clear(&r);
    return st;
}

static int claim_ids(job_conn_t *s, int64_t now, int max, int64_t *ids)
{
    job_row_t rows[16];
    int n = job_store_claim(s, now, rows, max, NULL);
    for (int i = 0; i < n; i++) {
        ids[i] = rows[i].id;
        job_row_clear(&rows[i]);
    }
    return n;
}

TEST(job_store_claims_by_priority_then_run_time_then_id)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t low = add(t.s, -5, 100, NULL);
    int64_t mid_late = add(t.s, 0, 300, NULL);
    int64_t mid_early = add(t.s, 0, 200, NULL);
    int64_t high = add(t.s, 5, 400, NULL);
    int64_t mid_early2 = add(t.s, 0, 200, NULL); /* same run time: the lower id first */
    int64_t ids[16];
    CHECK_EQ_INT(claim_ids(t.s, 1000, 16, ids), 5);
    CHECK_EQ_INT(ids[0], high);
    CHECK_EQ_INT(ids[1], mid_early);
    CHECK_EQ_INT(ids[2], mid_early2);
    CHECK_EQ_INT(ids[3], mid_late);
    CHECK_EQ_INT(ids[4], low);
    CHECK_EQ_INT(claim_ids(t.s, 1000, 16, ids), 0); /* reserved: never claimed twice */
    store_close(&t);
}

TEST(job_store_claim_respects_the_limit_and_holds_delayed_jobs_back)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t due = add(t.s, 0, 500, NULL);
    int64_t later = add(t.s, 100, 5000, NULL); /* high priority, but not yet due */
    int64_t due2 = add(t.s, 0, 600, NULL);
    CHECK_EQ_INT(job_store_next_run(t.s), 500);
    int64_t ids[16];
    CHECK_EQ_INT(claim_ids(t.s, 1000, 1, ids), 1);
    CHECK_EQ_INT(ids[0], due);
    CHECK_EQ_INT(claim_ids(t.s, 1000, 16, ids), 1);
    CHECK_EQ_INT(ids[0], due2);
    CHECK_EQ_INT(job_store_next_run(t.s), 5000); /* only the delayed job waits */
    CHECK_EQ_INT(claim_ids(t.s, 4999, 16, ids), 0);
    CHECK_EQ_INT(claim_ids(t.s, 5000, 16, ids), 1);
    CHECK_EQ_INT(ids[0], later);
    CHECK(job_store_next_run(t.s) == INT64_MAX);
    store_close(&t);
}

TEST(job_store_a_reserved_job_looks_pending_until_it_starts)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t id = add(t.s, 0, 0, NULL);
    int64_t ids[16];
    CHECK_EQ_INT(claim_ids(t.s, 10, 16, ids), 1);
    job_row_t r;
    CHECK_EQ_INT(status_of(t.s, id, &r), JOB_RESERVED);
    CHECK_EQ_STR(job_status_name(r.status), "pending");
    CHECK_EQ_INT(r.attempts, 0);
    job_row_clear(&r);
    long counts[5];
    job_store_counts(t.s, counts);
    CHECK_EQ_INT(counts[JOB_PENDING], 1);
    CHECK_EQ_INT(counts[JOB_RUNNING], 0);
    job_row_t rows[4];
    CHECK_EQ_INT(job_store_list(t.s, JOB_PENDING, 0, rows, 4), 1);
    CHECK_EQ_INT(rows[0].id, id);
    job_row_clear(&rows[0]);

    CHECK_EQ_INT(job_store_start(t.s, id, 1, 1234, JOB_TOKEN_ANY), 0);
    CHECK_EQ_INT(status_of(t.s, id, &r), JOB_RUNNING);
    CHECK_EQ_INT(r.attempts, 1);
    CHECK_EQ_INT(r.started_ms, 1234);
    job_row_clear(&r);
    CHECK_EQ_INT(job_store_list(t.s, JOB_PENDING, 0, rows, 4), 0);
    store_close(&t);
}

TEST(job_store_an_attempt_that_starts_and_ends_between_commits_is_one_write)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t id = add(t.s, 0, 0, NULL);
    int64_t ids[16];
    claim_ids(t.s, 10, 16, ids);
    CHECK_EQ_INT(job_store_end_attempt(t.s, id, 1, 2000, JOB_COMPLETED, "{\"ok\":true}", NULL, 0,
                                       JOB_TOKEN_ANY),
                 0);
    job_row_t r;
    CHECK_EQ_INT(status_of(t.s, id, &r), JOB_COMPLETED);
    CHECK_EQ_INT(r.attempts, 1);
    CHECK_EQ_INT(r.started_ms, 2000);
    CHECK(r.completed_ms > 0);
    CHECK_EQ_STR(r.result, "{\"ok\":true}");
    CHECK(r.error == NULL);
    job_row_clear(&r);
    store_close(&t);
}

TEST(job_store_a_retry_waits_for_its_backoff_and_keeps_the_error)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t id = add(t.s, 0, 0, NULL);
    int64_t ids[16];
    claim_ids(t.s, 10, 16, ids);
    job_store_start(t.s, id, 1, 10, JOB_TOKEN_ANY);
    CHECK_EQ_INT(
        job_store_end_attempt(t.s, id, 1, 10, JOB_PENDING, NULL, "boom", 3000, JOB_TOKEN_ANY), 0);
    job_row_t r;
    CHECK_EQ_INT(status_of(t.s, id, &r), JOB_PENDING);
    CHECK_EQ_STR(r.error, "boom");
    CHECK_EQ_INT(r.attempts, 1);
    CHECK(r.completed_ms == 0);
    job_row_clear(&r);
    CHECK_EQ_INT(claim_ids(t.s, 2999, 16, ids), 0);
    CHECK_EQ_INT(job_store_next_run(t.s), 3000);
    CHECK_EQ_INT(claim_ids(t.s, 3000, 16, ids), 1);
    /* the second attempt fails for good */
    job_store_end_attempt(t.s, id, 2, 3000, JOB_FAILED, NULL, "boom again", 3000, JOB_TOKEN_ANY);
    CHECK_EQ_INT(status_of(t.s, id, &r), JOB_FAILED);
    CHECK_EQ_INT(r.attempts, 2);
    CHECK_EQ_STR(r.error, "boom again");
    job_row_clear(&r);
    store_close(&t);
}

TEST(job_store_unreserve_and_requeue_put_jobs_back_to_pending)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t a = add(t.s, 0, 0, NULL), b = add(t.s, 0, 0, NULL), c = add(t.s, 0, 0, NULL);
    int64_t done = add(t.s, 0, 0, NULL);
    int64_t ids[16];
    CHECK_EQ_INT(claim_ids(t.s, 10, 16, ids), 4);
    job_store_start(t.s, a, 1, 10, JOB_TOKEN_ANY);
    job_store_start(t.s, b, 1, 10, JOB_TOKEN_ANY);
    job_store_end_attempt(t.s, done, 1, 10, JOB_COMPLETED, "{}", NULL, 0, JOB_TOKEN_ANY);
    CHECK_EQ_INT(job_store_unreserve(t.s, a, JOB_TOKEN_ANY),
                 0); /* started: not reserved any more, no change */
    CHECK_EQ_INT(status_of(t.s, a, NULL), JOB_RUNNING);
    /* as after kill -9: the running ones (a, b) and the reserved one (c) run again */
    CHECK_EQ_INT(job_store_requeue_running(t.s, NULL), 2);
    CHECK_EQ_INT(status_of(t.s, a, NULL), JOB_PENDING);
    CHECK_EQ_INT(status_of(t.s, b, NULL), JOB_PENDING);
    CHECK_EQ_INT(status_of(t.s, c, NULL), JOB_PENDING);
    CHECK_EQ_INT(status_of(t.s, done, NULL), JOB_COMPLETED);
    job_row_t r;
    status_of(t.s, a, &r);
    CHECK_EQ_INT(r.attempts, 1); /* its next start makes it 2 */
    job_row_clear(&r);
    CHECK_EQ_INT(claim_ids(t.s, 10, 16, ids), 3);
    store_close(&t);
}

TEST(job_store_cancel_request_is_kept_on_the_row)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t id = add(t.s, 0, 0, NULL);
    CHECK_EQ_INT(job_store_request_cancel(t.s, id), 0);
    job_row_t r;
    status_of(t.s, id, &r);
    CHECK_EQ_INT(r.cancel_requested, 1);
    job_row_clear(&r);
    CHECK_EQ_INT(job_store_finish(t.s, id, JOB_CANCELLED, NULL, "cancelled", 0, JOB_TOKEN_ANY), 0);
    CHECK_EQ_INT(status_of(t.s, id, NULL), JOB_CANCELLED);
    store_close(&t);
}

TEST(job_store_an_idempotency_key_returns_the_first_job)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t first = add(t.s, 0, 0, "order-42");
    CHECK(first > 0);
    job_row_t again = {.type = "noop", .payload = "{\"other\":1}", .idem_key = "order-42"};
    CHECK_EQ_INT(job_store_insert(t.s, &again), 1);
    CHECK_EQ_INT(again.id, first);
    CHECK_EQ_STR(again.payload, "{}"); /* the first job's, not the replay's */
    job_row_clear(&again);
    int64_t other = add(t.s, 0, 0, "order-43");
    CHECK(other > first);
    int64_t unkeyed1 = add(t.s, 0, 0, NULL), unkeyed2 = add(t.s, 0, 0, NULL);
    CHECK(unkeyed1 > 0 && unkeyed2 > unkeyed1); /* no key: never a replay */
    store_close(&t);
}

TEST(job_store_lists_newest_first_in_pages_with_a_status_filter)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t id[6];
    for (int i = 0; i < 6; i++)
        id[i] = add(t.s, 0, 0, NULL);
    int64_t ids[16];
    CHECK_EQ_INT(claim_ids(t.s, 10, 2, ids), 2); /* id[0], id[1] reserved: still pending */
    job_store_end_attempt(t.s, id[0], 1, 10, JOB_COMPLETED, "{}", NULL, 0, JOB_TOKEN_ANY);
    job_row_t rows[8];
    int n = job_store_list(t.s, -1, 0, rows, 3);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(rows[0].id, id[5]);
    CHECK_EQ_INT(rows[2].id, id[3]);
    for (int i = 0; i < n; i++)
        job_row_clear(&rows[i]);
    n = job_store_list(t.s, -1, id[3], rows, 8); /* the next page: below the last id seen */
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(rows[0].id, id[2]);
    for (int i = 0; i < n; i++)
        job_row_clear(&rows[i]);
    n = job_store_list(t.s, JOB_PENDING, 0, rows, 8); /* pending and reserved, merged */
    CHECK_EQ_INT(n, 5);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(rows[i].id, id[5 - i]);
        job_row_clear(&rows[i]);
    }
    n = job_store_list(t.s, JOB_PENDING, id[2], rows, 2);
    CHECK_EQ_INT(n, 1); /* id[0] is completed */
    CHECK_EQ_INT(rows[0].id, id[1]);
    for (int i = 0; i < n; i++)
        job_row_clear(&rows[i]);
    n = job_store_list(t.s, JOB_COMPLETED, 0, rows, 8);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(rows[0].id, id[0]);
    job_row_clear(&rows[0]);
    long counts[5];
    job_store_counts(t.s, counts);
    CHECK_EQ_INT(counts[JOB_PENDING], 5);
    CHECK_EQ_INT(counts[JOB_COMPLETED], 1);
    store_close(&t);
}

TEST(job_store_schedule_slots_are_per_key_and_survive_reopening)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    CHECK_EQ_INT(job_store_schedule_slot(t.s, "noop every 1000ms {}"), 0);
    CHECK_EQ_INT(job_store_set_schedule_slot(t.s, "noop every 1000ms {}", 77), 0);
    CHECK_EQ_INT(job_store_set_schedule_slot(t.s, "hash every 60000ms {}", 5), 0);
    CHECK_EQ_INT(job_store_set_schedule_slot(t.s, "noop every 1000ms {}", 78), 0);
    int64_t id = add(t.s, 3, 0, NULL);
    store_shut(&t);
    CHECK(store_reopen(&t) == 0); /* migrations again: nothing to do, nothing lost */
    if (!t.s)
        return;
    CHECK_EQ_INT(job_store_schedule_slot(t.s, "noop every 1000ms {}"), 78);
    CHECK_EQ_INT(job_store_schedule_slot(t.s, "hash every 60000ms {}"), 5);
    job_row_t r;
    CHECK_EQ_INT(status_of(t.s, id, &r), JOB_PENDING);
    CHECK_EQ_INT(r.priority, 3);
    job_row_clear(&r);
    CHECK(add(t.s, 0, 0, NULL) > id); /* ids keep growing */
    store_close(&t);
}

/* A database written by the first schema (AUTOINCREMENT, full indexes) is migrated in place:
 * its jobs keep their ids and states, and new ids continue above them. */
TEST(job_store_migrates_a_database_of_the_first_schema)
{
    temp_store_t t;
    CHECK(store_dir(&t) == 0);
    sqlite3 *db;
    CHECK(sqlite3_open(t.path, &db) == SQLITE_OK);
    /* As the store wrote it before it moved onto the data layer: its own version table with
     * one row per version, then migration 1 (which migration 2 must carry forward). */
    const char *rows =
        "CREATE TABLE jobs_schema (version INTEGER NOT NULL);"
        "INSERT INTO jobs_schema VALUES (1);"
        "INSERT INTO tasks (id, type, payload, status, run_at, created, idem_key)"
        " VALUES (7, 'noop', '{}', 2, 0, 1, 'k7'), (9, 'noop', '{\"a\":1}', 0, 0, 1, NULL);"
        "INSERT INTO schedules VALUES ('noop every 1000ms {}', 12);";
    CHECK(sqlite3_exec(db, job_store_migrations[0], NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db, rows, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(store_reopen(&t) == 0);
    if (!t.s)
        return;
    CHECK_EQ_INT(status_of(t.s, 7, NULL), JOB_COMPLETED);
    job_row_t r;
    CHECK_EQ_INT(status_of(t.s, 9, &r), JOB_PENDING);
    CHECK_EQ_STR(r.payload, "{\"a\":1}");
    job_row_clear(&r);
    CHECK_EQ_INT(job_store_schedule_slot(t.s, "noop every 1000ms {}"), 12);
    CHECK_EQ_INT(add(t.s, 0, 0, "k7"), 7); /* the key still replays */
    CHECK(add(t.s, 0, 0, NULL) > 9);
    int64_t ids[16];
    CHECK_EQ_INT(claim_ids(t.s, 10, 16, ids), 2);
    CHECK_EQ_INT(ids[0], 9);
    store_close(&t);
}

/* --job-fsync: the dispatcher's batches run with synchronous=FULL (an fsync per commit), and
 * the pooled connection goes back with the pool's NORMAL for the application's data. */
TEST(job_store_fsync_is_full_inside_a_batch_and_normal_after)
{
    temp_store_t t;
    CHECK(store_dir(&t) == 0);
    char spec[128];
    snprintf(spec, sizeof spec, "sqlite:%s", t.path);
    db_url_t url;
    db_pool_opts_t opts = {1, 0, 1};
    db_t *db = db_url_parse(&url, spec, NULL) == 0 ? db_open(&url, &opts, NULL, 0) : NULL;
    CHECK(db && job_store_open(db, 1, &t.store) == 0);
    if (!t.store)
        return;
    CHECK_EQ_INT(job_store_acquire(t.store, &t.conn), 0);
    t.s = &t.conn;
    int64_t level = -1;
    CHECK_EQ_INT(job_store_begin(t.s), 0);
    CHECK_EQ_INT(db->ops->exec(t.s->c, "PRAGMA synchronous", &level), 0);
    CHECK_EQ_INT(level, 2); /* FULL */
    CHECK(add(t.s, 0, 0, NULL) > 0);
    CHECK_EQ_INT(job_store_commit(t.s), 0);
    CHECK_EQ_INT(db->ops->exec(t.s->c, "PRAGMA synchronous", &level), 0);
    CHECK_EQ_INT(level, 1); /* NORMAL */
    store_close(&t);
}

/* A job with a concurrency key is claimed while fewer than its limit of the key are held. */
static int64_t add_keyed(job_conn_t *s, const char *type, const char *ckey, int limit)
{
    job_row_t r = {.type = type,
                   .payload = "{}",
                   .run_at_ms = 1,
                   .created_ms = 1,
                   .ckey = ckey,
                   .ckey_limit = limit};
    int64_t id = job_store_insert(s, &r) >= 0 ? r.id : -1;
    job_row_clear(&r);
    return id;
}

static int rate_two(void *ud, const char *type)
{
    return !strcmp(type, "tick") ? 2 : 0;
}

TEST(job_store_claims_hold_concurrency_keys_and_type_rates)
{
    temp_store_t t;
    CHECK(store_open(&t) == 0);
    if (!t.s)
        return;
    int64_t a1 = add_keyed(t.s, "noop", "a", 1), a2 = add_keyed(t.s, "noop", "a", 1);
    int64_t b1 = add_keyed(t.s, "noop", "b", 2), b2 = add_keyed(t.s, "noop", "b", 2);
    int64_t b3 = add_keyed(t.s, "noop", "b", 2);
    for (int i = 0; i < 5; i++)
        add_keyed(t.s, "tick", NULL, 0);
    job_row_t rows[16];
    job_claim_t o = {.rate_of = rate_two};
    int n = job_store_claim(t.s, 1000, rows, 16, &o);
    /* a: 1 of 2; b: 2 of 3; tick: 2 of 5 in this second */
    CHECK_EQ_INT(n, 5);
    CHECK(o.held_back > 0);
    int got_a = 0, got_b = 0, got_tick = 0;
    for (int i = 0; i < n; i++) {
        got_a += rows[i].ckey && !strcmp(rows[i].ckey, "a");
        got_b += rows[i].ckey && !strcmp(rows[i].ckey, "b");
        got_tick += !strcmp(rows[i].type, "tick");
        job_row_clear(&rows[i]);
    }
    CHECK_EQ_INT(got_a, 1);
    CHECK_EQ_INT(got_b, 2);
    CHECK_EQ_INT(got_tick, 2);
    /* the next second: two more ticks, still no more of a or b until one ends */
    o.held_back = 0;
    n = job_store_claim(t.s, 2000, rows, 16, &o);
    CHECK_EQ_INT(n, 2);
    for (int i = 0; i < n; i++)
        job_row_clear(&rows[i]);
    job_store_end_attempt(t.s, a1, 1, 10, JOB_COMPLETED, "{}", NULL, 0, JOB_TOKEN_ANY);
    n = job_store_claim(t.s, 2000, rows, 16, &o);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(n == 1 ? rows[0].id : 0, a2);
    for (int i = 0; i < n; i++)
        job_row_clear(&rows[i]);
    (void)b1, (void)b2, (void)b3;
    store_close(&t);
}

TEST(job_store_a_lost_lease_fences_the_old_holder_and_counts_attempts_exactly)
{
    temp_store_t t;
    job_row_t rows[2];
    job_claim_t o = {.owner = "node-a", .lease_until = 5000};
    if (store_open(&t) < 0 || !t.s) {
        CHECK(!"the store opens");
        return;
    }
    int64_t id = add(t.s, 0, 0, NULL);
    CHECK_EQ_INT(job_store_claim(t.s, 10, rows, 2, &o), 1);
    int64_t old = rows[0].token;
    job_row_clear(&rows[0]);
    CHECK_EQ_INT(job_store_start(t.s, id, 1, 10, old), 0);
    /* node-a stalls; its lease ends; node-b claims the job again with a new token */
    CHECK_EQ_INT(job_store_claim_expired(t.s, 4999, rows, 2, NULL), 0);
    job_claim_t ob = {.owner = "node-b", .lease_until = 20000};
    CHECK_EQ_INT(job_store_claim_expired(t.s, 5001, rows, 2, &ob), 1);
    int64_t now = rows[0].token;
    CHECK(now != old);
    CHECK_EQ_INT(rows[0].attempts, 1);
    job_row_clear(&rows[0]);
    int cancel = 0;
    CHECK_EQ_INT(job_store_renew(t.s, id, old, 30000, &cancel), JOB_FENCED);
    CHECK_EQ_INT(job_store_renew(t.s, id, now, 30000, &cancel), 1);
    CHECK_EQ_INT(job_store_start(t.s, id, 2, 5001, now), 0);
    /* node-a wakes: its progress and its result change nothing */
    CHECK_EQ_INT(job_store_progress(t.s, id, 9, 9, old), JOB_FENCED);
    CHECK_EQ_INT(
        job_store_end_attempt(t.s, id, 1, 10, JOB_COMPLETED, "{\"by\":\"a\"}", NULL, 0, old),
        JOB_FENCED);
    CHECK_EQ_INT(
        job_store_end_attempt(t.s, id, 2, 5001, JOB_COMPLETED, "{\"by\":\"b\"}", NULL, 0, now), 0);
    job_row_t r;
    CHECK_EQ_INT(status_of(t.s, id, &r), JOB_COMPLETED);
    CHECK_EQ_INT(r.attempts, 2);
    CHECK_EQ_STR(r.result, "{\"by\":\"b\"}");
    job_row_clear(&r);
    store_close(&t);
}
