/* When jobs run: the ready heap, reserved jobs in the order they start (priority first, then
 * run time, then id; the store claims in the same order), and the delay before a retry. */
#ifndef ROOST_JOBS_ORDER_H
#define ROOST_JOBS_ORDER_H

#include "jobs/jobs.h"

/* A binary heap. No lock: its owner (workers.c) holds one. */
typedef struct {
    roost_job_t **v;
    int n, cap;
} ready_heap_t;

/* a starts before b */
int ready_before(const roost_job_t *a, const roost_job_t *b);
/* Adds n jobs, all or none (-1: no memory). */
int ready_push(ready_heap_t *h, roost_job_t **jobs, int n);
/* The job that starts next, taken out; NULL when empty. */
roost_job_t *ready_pop(ready_heap_t *h);
void ready_free(ready_heap_t *h);

/* Before attempt attempts + 1: first_s doubled per failed attempt, times a jitter of +-20%
 * from unit (uniform in [0, 1]) so that retries do not herd, at most 5 minutes. */
int64_t retry_delay_ms(double first_s, int attempts, double unit);

#endif
