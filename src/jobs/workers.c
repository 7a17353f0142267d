/* The job workers: threads that take the best reserved job from the ready heap (order.h) and
 * run it. The dispatcher fills the heap, a bounded number ahead of the idle workers, so that a
 * worker that ends a short job starts the next one at once instead of waiting for the
 * dispatcher's next commit: the queue's throughput is then bounded by the store's writes,
 * batched, and not by one round trip per job. The heap has its own lock, so workers never
 * contend with submitters for the dispatcher's. */
#include "jobs/jobs.h"

#include <stdlib.h>

#include "jobs/order.h"

struct job_workers {
    jobs_t *jobs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ready_heap_t ready; /* under lock */
    int stopping;
    int nthreads;
    pthread_t threads[];
};

int job_workers_push(job_workers_t *w, roost_job_t **jobs, int n)
{
    pthread_mutex_lock(&w->lock);
    int rc = ready_push(&w->ready, jobs, n);
    if (rc == 0 && n == 1)
        pthread_cond_signal(&w->cond);
    else if (rc == 0 && n > 1)
        pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return rc;
}

static roost_job_t *take(job_workers_t *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->ready.n && !w->stopping)
        pthread_cond_wait(&w->cond, &w->lock);
    roost_job_t *job = ready_pop(&w->ready);
    pthread_mutex_unlock(&w->lock);
    return job;
}

static void *worker_main(void *arg)
{
    pthread_setname_np(pthread_self(), "roost-job"); /* for top -H, perf, gdb */
    job_workers_t *w = arg;
    roost_job_t *job;
    while ((job = take(w)))
        jobs_run_on_worker(w->jobs, job);
    return NULL;
}

job_workers_t *job_workers_start(jobs_t *jobs, int nthreads)
{
    job_workers_t *w = calloc(1, sizeof *w + (size_t)nthreads * sizeof(pthread_t));
    if (!w)
        return NULL;
    w->jobs = jobs;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    for (; w->nthreads < nthreads; w->nthreads++)
        if (pthread_create(&w->threads[w->nthreads], NULL, worker_main, w) != 0) {
            job_workers_stop(w);
            return NULL;
        }
    return w;
}

/* The dispatcher has already handed back (dropped) what was reserved; the workers take what is
 * left in the heap, so that every job is handed back before they end. */
void job_workers_stop(job_workers_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    ready_free(&w->ready);
    free(w);
}
