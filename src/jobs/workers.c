/* The job workers: a thread pool (base.h, tpool) whose queue is the ready heap (order.h), so a
 * worker takes the best reserved job. The dispatcher fills the heap, a bounded number ahead of
 * the idle workers, so that a worker that ends a short job starts the next one at once instead
 * of waiting for the dispatcher's next commit: the queue's throughput is then bounded by the
 * store's writes, batched, and not by one round trip per job. The heap is under the pool's lock,
 * so workers never contend with submitters for the dispatcher's. */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdlib.h>

#include "jobs/order.h"

struct job_workers {
    jobs_t *jobs;
    ready_heap_t ready; /* under the pool's lock */
    tpool_t *pool;
};

static int heap_push(void *queue, void *items, int n)
{
    job_workers_t *w = queue;
    return ready_push(&w->ready, items, n) < 0 ? -ENOMEM : 0;
}

static void *heap_pop(void *queue, int nthreads)
{
    job_workers_t *w = queue;
    return ready_pop(&w->ready);
}

static int heap_len(void *queue)
{
    job_workers_t *w = queue;
    return w->ready.n;
}

static void heap_run(void *queue, void *taken)
{
    job_workers_t *w = queue;
    jobs_run_on_worker(w->jobs, taken);
}

static void heap_free(void *queue)
{
    job_workers_t *w = queue;
    ready_free(&w->ready);
    free(w);
}

static const tpool_queue_ops_t heap_ops = {heap_push, heap_pop, heap_len, heap_run, heap_free};

job_workers_t *job_workers_start(jobs_t *jobs, int nthreads)
{
    job_workers_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->jobs = jobs;
    /* A fixed number: --job-workers is how many jobs run at once, not a ceiling to grow to. */
    tpool_opts_t o = {"job", nthreads, nthreads, .ops = &heap_ops, .queue = w};
    tpool_t *pool = tpool_start(&o); /* w is the pool's from here: heap_free */
    if (pool)
        w->pool = pool; /* before any push: no thread reads it */
    return pool ? w : NULL;
}

int job_workers_push(job_workers_t *w, roost_job_t **jobs, int n)
{
    return tpool_push(w->pool, jobs, n);
}

/* The dispatcher has already handed back (dropped) what was reserved; the workers take what is
 * left in the heap, so that every job is handed back before they end. */
void job_workers_stop(job_workers_t *w)
{
    if (w)
        tpool_stop(w->pool); /* frees w (heap_free) */
}
