/* The worker pool: a fixed set of threads and a bounded FIFO, for blocking handlers and other
 * work that must stay off the loops. Submitting never waits: a full queue is -EBUSY, which the
 * HTTP layer turns into 503, so overload is an answer and not an unbounded backlog. */
#include "net/net.h"

#include <errno.h>
#include <stdlib.h>

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pool_job_t *head, *tail;
    int queued;
    int idle;
    int max_queue;
    int stopping;
    int nthreads;
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    pthread_setname_np(pthread_self(), "roost-worker"); /* for top -H, perf, gdb */
    pool_t *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping) {
            p->idle++;
            pthread_cond_wait(&p->cond, &p->lock);
            p->idle--;
        }
        pool_job_t *job = p->head;
        if (!job)
            break; /* stopping and nothing left */
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);
        job->run(job);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

pool_t *pool_new(int threads, int max_queue)
{
    pool_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->max_queue = max_queue;
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Handlers are plain C; 256 KiB of stack is plenty and keeps 1,000 workers cheap. */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], &attr, worker_main, p) != 0)
            break;
        p->nthreads++;
    }
    pthread_attr_destroy(&attr);
    if (p->nthreads == 0) {
        free(p->threads);
        free(p);
        return NULL;
    }
    return p;
}

int pool_submit(pool_t *p, pool_job_t *job)
{
    pthread_mutex_lock(&p->lock);
    /* Jobs already queued will take idle workers first; the queue bound counts what waits. */
    if (p->stopping || p->queued - p->idle >= p->max_queue) {
        pthread_mutex_unlock(&p->lock);
        return -EBUSY;
    }
    job->next = NULL;
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->queued++;
    if (p->idle > 0)
        pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int pool_queued(pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void pool_stop_free(pool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}
