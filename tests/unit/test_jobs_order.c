/* Scheduling order: the ready heap starts reserved jobs by priority, then run time, then id,
 * whatever order they were pushed in; retries back off exponentially with bounded jitter. */
#include <stdlib.h>

#include "jobs/order.h"
#include "unit.h"

static roost_job_t *job(int64_t id, int priority, int64_t run_at)
{
    roost_job_t *j = calloc(1, sizeof *j);
    j->row.id = id;
    j->row.priority = priority;
    j->row.run_at_ms = run_at;
    return j;
}

TEST(ready_heap_starts_by_priority_then_run_time_then_id)
{
    roost_job_t *v[] = {job(1, 0, 300), job(2, -5, 100), job(3, 5, 900),
                        job(4, 0, 200), job(5, 0, 200),  job(6, 100, 1000)};
    int64_t want[] = {6, 3, 4, 5, 1, 2};
    ready_heap_t h = {0};
    /* in two batches, the second holding the most urgent */
    CHECK_EQ_INT(ready_push(&h, v, 3), 0);
    CHECK_EQ_INT(ready_push(&h, v + 3, 3), 0);
    for (int i = 0; i < 6; i++) {
        roost_job_t *j = ready_pop(&h);
        CHECK(j != NULL);
        if (j)
            CHECK_EQ_INT(j->row.id, want[i]);
    }
    CHECK(ready_pop(&h) == NULL);
    ready_free(&h);
    for (int i = 0; i < 6; i++)
        free(v[i]);
}

TEST(ready_heap_orders_many_jobs_pushed_one_by_one)
{
    enum { N = 1000 };
    roost_job_t *v[N];
    ready_heap_t h = {0};
    for (int i = 0; i < N; i++) {
        v[i] = job(i + 1, (i * 7919) % 13 - 6, (i * 104729) % 97);
        CHECK_EQ_INT(ready_push(&h, &v[i], 1), 0);
    }
    roost_job_t *prev = NULL;
    int n = 0;
    for (roost_job_t *j; (j = ready_pop(&h)); prev = j, n++)
        if (prev)
            CHECK(!ready_before(j, prev)); /* never a job that should have come first */
    CHECK_EQ_INT(n, N);
    ready_free(&h);
    for (int i = 0; i < N; i++)
        free(v[i]);
}

TEST(ready_before_is_a_strict_order)
{
    roost_job_t *a = job(1, 0, 100), *b = job(2, 0, 100);
    CHECK(ready_before(a, b));
    CHECK(!ready_before(b, a));
    CHECK(!ready_before(a, a));
    free(a);
    free(b);
}

TEST(retry_delay_doubles_per_attempt)
{
    /* unit 0.5: no jitter */
    CHECK_EQ_INT(retry_delay_ms(1.0, 1, 0.5), 1000);
    CHECK_EQ_INT(retry_delay_ms(1.0, 2, 0.5), 2000);
    CHECK_EQ_INT(retry_delay_ms(1.0, 3, 0.5), 4000);
    CHECK_EQ_INT(retry_delay_ms(0.05, 4, 0.5), 400);
}

TEST(retry_delay_jitter_stays_within_twenty_percent)
{
    CHECK_EQ_INT(retry_delay_ms(1.0, 1, 0.0), 800);
    CHECK_EQ_INT(retry_delay_ms(1.0, 1, 1.0), 1200);
    for (int i = 0; i <= 100; i++) {
        int64_t d = retry_delay_ms(2.0, 3, i / 100.0);
        CHECK(d >= 6400 && d <= 9600);
    }
}

TEST(retry_delay_is_capped_at_five_minutes)
{
    CHECK_EQ_INT(retry_delay_ms(1.0, 30, 1.0), 300000);
    CHECK_EQ_INT(retry_delay_ms(1.0, 2000, 0.5), 300000); /* pow overflows to inf: still capped */
    CHECK_EQ_INT(retry_delay_ms(1.0, 0, 0.5), 1000);      /* never below the first delay */
}
