/* The thread pool (src/base/tpool.c) through its FIFO: it grows with blocked work up to max,
 * shrinks back to min after the idle time, bounds what waits, names its threads, and stop runs
 * what is queued, refuses new work and joins every thread. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "base/base.h"
#include "unit.h"

/* Work items that block until the test opens the gate, then count themselves. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open;
    atomic_int done;
} gate_t;

typedef struct {
    tpool_work_t work;
    gate_t *gate;
    tpool_t *pool; /* set: the item submits `again` after the gate opens */
    tpool_work_t *again;
    int again_rc;
    char name[16];
} item_t;

static gate_t gate_new(void)
{
    return (gate_t){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void item_run(tpool_work_t *w)
{
    item_t *it = CONTAINER_OF(w, item_t, work);
    pthread_getname_np(pthread_self(), it->name, sizeof it->name);
    pthread_mutex_lock(&it->gate->lock);
    while (!it->gate->open)
        pthread_cond_wait(&it->gate->cond, &it->gate->lock);
    pthread_mutex_unlock(&it->gate->lock);
    if (it->pool)
        it->again_rc = tpool_submit(it->pool, it->again);
    atomic_fetch_add(&it->gate->done, 1);
}

/* Submits n items that block on g; each submission must be accepted. */
static void submit_blocked(tpool_t *p, item_t *items, int n, gate_t *g)
{
    for (int i = 0; i < n; i++) {
        items[i] = (item_t){.work.run = item_run, .gate = g};
        CHECK_EQ_INT(tpool_submit(p, &items[i].work), 0);
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Polls the pool's stats until field reaches want (up to 3 s); returns the last value seen. */
#define WAIT_STAT(p, field, want)                                                                  \
    ({                                                                                             \
        tpool_stats_t st_;                                                                         \
        for (int i_ = 0; i_ < 600; i_++) {                                                         \
            tpool_stats(p, &st_);                                                                  \
            if (st_.field == (want))                                                               \
                break;                                                                             \
            sleep_ms(5);                                                                           \
        }                                                                                          \
        st_.field;                                                                                 \
    })

/* Makes n threads busy at once with n items, then lets them end and stops the pool. */
static void busy_then_stop(tpool_t *p, item_t *items, int n)
{
    gate_t g = gate_new();
    submit_blocked(p, items, n, &g);
    CHECK_EQ_INT(WAIT_STAT(p, busy, n), n);
    gate_open(&g);
    tpool_stop(p);
    CHECK_EQ_INT(atomic_load(&g.done), n);
}

static tpool_t *fifo(int min, int max, double idle_s, int max_queue)
{
    tpool_opts_t o = {.name = "test",
                      .min = min,
                      .max = max,
                      .idle_s = idle_s,
                      .max_queue = max_queue,
                      .stack_size = 256 * 1024};
    return tpool_fifo_start(&o);
}

TEST(test_pool_grows_a_thread_per_blocked_item_up_to_max)
{
    gate_t g = gate_new();
    item_t items[6];
    tpool_t *p = fifo(1, 4, 0, 0);
    CHECK(p != NULL);
    tpool_stats_t st;
    tpool_stats(p, &st);
    CHECK_EQ_INT(st.threads, 1); /* min only, before any work */
    submit_blocked(p, items, 3, &g);
    CHECK_EQ_INT(WAIT_STAT(p, busy, 3), 3);
    tpool_stats(p, &st);
    CHECK_EQ_INT(st.threads, 3);
    submit_blocked(p, items + 3, 3, &g);
    CHECK_EQ_INT(WAIT_STAT(p, busy, 4), 4);
    tpool_stats(p, &st);
    CHECK_EQ_INT(st.threads, 4); /* max */
    CHECK_EQ_INT(st.queued, 2);
    CHECK_EQ_INT(st.started, 4);
    gate_open(&g);
    CHECK_EQ_INT(WAIT_STAT(p, queued, 0), 0);
    CHECK_EQ_INT(WAIT_STAT(p, busy, 0), 0);
    CHECK_EQ_INT(atomic_load(&g.done), 6);
    tpool_stop(p);
}

TEST(test_pool_idle_threads_retire_down_to_min)
{
    gate_t g = gate_new();
    item_t items[6];
    tpool_t *p = fifo(2, 6, 0.2, 0);
    submit_blocked(p, items, 6, &g);
    CHECK_EQ_INT(WAIT_STAT(p, threads, 6), 6);
    gate_open(&g);
    CHECK_EQ_INT(WAIT_STAT(p, threads, 2), 2);
    sleep_ms(500); /* the min stay */
    tpool_stats_t st;
    tpool_stats(p, &st);
    CHECK_EQ_INT(st.threads, 2);
    CHECK_EQ_INT(st.retired, 4);
    CHECK_EQ_INT(atomic_load(&g.done), 6);
    /* Retired slots are reused: the pool grows again. */
    gate_t g2 = gate_new();
    submit_blocked(p, items, 4, &g2);
    CHECK_EQ_INT(WAIT_STAT(p, busy, 4), 4);
    gate_open(&g2);
    tpool_stop(p);
    CHECK_EQ_INT(atomic_load(&g2.done), 4);
}

TEST(test_pool_full_queue_is_ebusy_when_max_threads_are_busy)
{
    gate_t g = gate_new();
    item_t items[5];
    tpool_t *p = fifo(1, 2, 0, 2);
    submit_blocked(p, items, 4, &g); /* 2 running (max), 2 waiting (the bound) */
    CHECK_EQ_INT(WAIT_STAT(p, busy, 2), 2);
    items[4] = (item_t){.work.run = item_run, .gate = &g};
    CHECK_EQ_INT(tpool_submit(p, &items[4].work), -EBUSY);
    tpool_stats_t st;
    tpool_stats(p, &st);
    CHECK_EQ_INT(st.full, 1);
    CHECK_EQ_INT(st.queued, 2);
    gate_open(&g);
    tpool_stop(p);
    CHECK_EQ_INT(atomic_load(&g.done), 4); /* the refused one never ran */
}

static void *stop_thread(void *p)
{
    tpool_stop(p);
    return NULL;
}

TEST(test_pool_stop_runs_what_is_queued_refuses_more_and_joins)
{
    gate_t g = gate_new();
    item_t items[5];
    tpool_t *p = fifo(1, 1, 0, 0);
    submit_blocked(p, items, 4, &g);
    items[4] = (item_t){.work.run = item_run, .gate = &g};
    items[0].again = &items[4].work; /* read by items[0] after the gate opens */
    items[0].pool = p;
    CHECK_EQ_INT(WAIT_STAT(p, queued, 3), 3);
    pthread_t stopper;
    pthread_create(&stopper, NULL, stop_thread, p);
    sleep_ms(100); /* stop has begun: it waits for the blocked item */
    gate_open(&g);
    pthread_join(stopper, NULL);
    CHECK_EQ_INT(items[0].again_rc, -EBUSY);
    CHECK_EQ_INT(atomic_load(&g.done), 4); /* the three queued ran before the threads ended */
}

TEST(test_pool_threads_are_named_by_pool_and_index)
{
    item_t items[3];
    busy_then_stop(fifo(0, 3, 0, 0), items, 3); /* one thread each, all at once */
    int seen = 0;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++) {
            char want[32];
            snprintf(want, sizeof want, "roost-test-%d", k);
            if (strcmp(items[i].name, want) == 0)
                seen |= 1 << k;
        }
    CHECK_EQ_INT(seen, 7);
}
