/* The job workers: threads that take the best reserved job from a ready heap (priority first,
 * then run time, then id) and run it. The dispatcher fills the heap, a bounded number ahead of
 * the idle workers, so that a worker that ends a short job starts the next one at once instead
 * of waiting for the dispatcher's next commit: the queue's throughput is then bounded by the
 * store's writes, batched, and not by one round trip per job. The heap has its own lock, so
 * workers never contend with submitters for the dispatcher's. */
#include "jobs/jobs.h"

#include <stdlib.h>

struct job_workers {
    jobs_t *jobs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    roost_job_t **heap; /* under lock */
    int n, cap;
    int stopping;
    int nthreads;
    pthread_t threads[];
};

/* a runs before b */
static int before(const roost_job_t *a, const roost_job_t *b)
{
    if (a->row.priority != b->row.priority)
        return a->row.priority > b->row.priority;
    if (a->row.run_at_ms != b->row.run_at_ms)
        return a->row.run_at_ms < b->row.run_at_ms;
    return a->row.id < b->row.id;
}

static void sift_up(roost_job_t **h, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!before(h[i], h[parent]))
            break;
        roost_job_t *t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

static void sift_down(roost_job_t **h, int n, int i)
{
    for (;;) {
        int best = i, l = 2 * i + 1, r = l + 1;
        if (l < n && before(h[l], h[best]))
            best = l;
        if (r < n && before(h[r], h[best]))
            best = r;
        if (best == i)
            return;
        roost_job_t *t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

int job_workers_push(job_workers_t *w, roost_job_t **jobs, int n)
{
    pthread_mutex_lock(&w->lock);
    if (w->n + n > w->cap) {
        int cap = w->cap ? w->cap : 64;
        while (cap < w->n + n)
            cap *= 2;
        roost_job_t **heap = realloc(w->heap, (size_t)cap * sizeof *heap);
        if (!heap) {
            pthread_mutex_unlock(&w->lock);
            return -1;
        }
        w->heap = heap;
        w->cap = cap;
    }
    for (int i = 0; i < n; i++) {
        w->heap[w->n] = jobs[i];
        sift_up(w->heap, w->n++);
    }
    if (n == 1)
        pthread_cond_signal(&w->cond);
    else if (n > 1)
        pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

static roost_job_t *take(job_workers_t *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->n && !w->stopping)
        pthread_cond_wait(&w->cond, &w->lock);
    roost_job_t *job = NULL;
    if (w->n) {
        job = w->heap[0];
        w->heap[0] = w->heap[--w->n];
        sift_down(w->heap, w->n, 0);
    }
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
    free(w->heap);
    free(w);
}
