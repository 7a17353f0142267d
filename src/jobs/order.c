/* When jobs run (order.h). */
#include "jobs/order.h"

#include <math.h>
#include <stdlib.h>

#define MAX_RETRY_DELAY_MS (300 * 1000)

int ready_before(const roost_job_t *a, const roost_job_t *b)
{
    if (a->row.priority != b->row.priority)
        return a->row.priority > b->row.priority;
    if (a->row.run_at_ms != b->row.run_at_ms)
        return a->row.run_at_ms < b->row.run_at_ms;
    return a->row.id < b->row.id;
}

static void swap(roost_job_t **v, int i, int k)
{
    roost_job_t *t = v[i];
    v[i] = v[k];
    v[k] = t;
}

static void sift_up(roost_job_t **v, int i)
{
    while (i > 0 && ready_before(v[i], v[(i - 1) / 2])) {
        swap(v, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(roost_job_t **v, int n, int i)
{
    for (;;) {
        int best = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ready_before(v[l], v[best]))
            best = l;
        if (r < n && ready_before(v[r], v[best]))
            best = r;
        if (best == i)
            return;
        swap(v, i, best);
        i = best;
    }
}

int ready_push(ready_heap_t *h, roost_job_t **jobs, int n)
{
    if (h->n + n > h->cap) {
        int cap = h->cap ? h->cap : 64;
        while (cap < h->n + n)
            cap *= 2;
        roost_job_t **v = realloc(h->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        h->v[h->n] = jobs[i];
        sift_up(h->v, h->n++);
    }
    return 0;
}

roost_job_t *ready_pop(ready_heap_t *h)
{
    if (!h->n)
        return NULL;
    roost_job_t *top = h->v[0];
    h->v[0] = h->v[--h->n];
    sift_down(h->v, h->n, 0);
    return top;
}

void ready_free(ready_heap_t *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

int64_t retry_delay_ms(double first_s, int attempts, double unit)
{
    double ms = first_s * 1000.0 * pow(2.0, attempts > 1 ? attempts - 1 : 0) * (0.8 + 0.4 * unit);
    return ms > MAX_RETRY_DELAY_MS ? MAX_RETRY_DELAY_MS : (int64_t)ms;
}
