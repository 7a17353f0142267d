/* Named counters (base/counters.c): every thread's adds are summed exactly, whether the thread
 * owns a slot or shares the last one, and counters past the first chunk keep their own values
 * and are rendered with them. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "unit.h"

#define THREADS 24 /* more than the slots: some threads share */
#define ADDS    20000

static roost_counter_t *shared_total, *shared_gauge;

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < ADDS; i++) {
        roost_counter_add(shared_total, 1);
        roost_counter_add(shared_gauge, 1);
        roost_counter_add(shared_gauge, -1);
    }
    return NULL;
}

TEST(counters_sum_every_threads_adds_exactly)
{
    counters_t *c = counters_new();
    CHECK(c != NULL);
    shared_total = counters_get(c, "t_total", NULL, "adds");
    shared_gauge = counters_get_kind(c, "t_open", NULL, "up and down", 1);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, bump, NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(roost_counter_get(shared_total), (long)THREADS * ADDS);
    CHECK_EQ_INT(roost_counter_get(shared_gauge), 0);
    counters_free(c);
}

TEST(counters_past_one_chunk_keep_their_own_values)
{
    counters_t *c = counters_new();
    CHECK(c != NULL);
    roost_counter_t *k[200];
    for (int i = 0; i < 200; i++) {
        char labels[32];
        snprintf(labels, sizeof labels, "n=\"%d\"", i);
        k[i] = counters_get(c, "t_many_total", labels, "many");
        CHECK(k[i] != NULL);
        roost_counter_add(k[i], i);
    }
    CHECK(counters_get(c, "t_many_total", "n=\"150\"", NULL) == k[150]); /* found, not new */
    for (int i = 0; i < 200; i++)
        CHECK_EQ_INT(roost_counter_get(k[i]), i);
    sbuf_t out = {0};
    counters_render(c, &out);
    sbuf_append(&out, "", 1);
    CHECK(strstr(out.p, "t_many_total{n=\"199\"} 199\n") != NULL);
    CHECK(strstr(out.p, "t_many_total{n=\"64\"} 64\n") != NULL);
    sbuf_free(&out);
    counters_free(c);
}
