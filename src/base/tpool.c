/* The one thread pool (base.h, "tpool"): named threads that take work from a queue the user
 * supplies, started on demand up to max and retired after idle_s down to min (libuv's
 * threadpool.c shape, plus growth). It is not a queue: what waits and in which order is the
 * queue's business (tpool_fifo.c, the job workers' heap, the data threads' batches). */
#include "base/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* A thread's place: its index is its name's number, reused once the thread has been joined. */
typedef struct {
    tpool_t *pool;
    pthread_t tid;
    enum { SLOT_FREE, SLOT_RUNNING, SLOT_EXITED } state; /* under lock */
    int index;
} slot_t;

struct tpool {
    tpool_opts_t o;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC, for the idle timeout */
    int nthreads;        /* alive (slots in SLOT_RUNNING) */
    int running;         /* of those, running what they took (busy); the others will look at
                          * the queue before they wait: nthreads - running take work unasked */
    int waiting;         /* in pthread_cond_wait */
    int waking;          /* of those, signalled and not yet back: a burst wakes each once */
    int stopping;
    long started, retired, full;
    slot_t slots[]; /* o.max of them */
};

static void *thread_main(void *arg);

/* Under lock: pthread_create is some tens of microseconds, paid only when work waits and no
 * thread is free. A thread that retired has left its slot to be joined by whoever needs it
 * next; it no longer takes the lock, so joining here cannot deadlock and does not wait long. */
static int spawn(tpool_t *p)
{
    slot_t *s = NULL;
    for (int i = 0; i < p->o.max && !s; i++)
        if (p->slots[i].state != SLOT_RUNNING)
            s = &p->slots[i];
    if (!s)
        return -EAGAIN;
    if (s->state == SLOT_EXITED) {
        pthread_join(s->tid, NULL);
        s->state = SLOT_FREE;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (p->o.stack_size)
        pthread_attr_setstacksize(&attr, p->o.stack_size);
    int rc = pthread_create(&s->tid, &attr, thread_main, s);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -rc;
    s->state = SLOT_RUNNING;
    p->nthreads++;
    p->started++;
    return 0;
}

static void deadline_in(struct timespec *ts, double s)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    double t = (double)ts->tv_sec + (double)ts->tv_nsec / 1e9 + s;
    ts->tv_sec = (time_t)t;
    ts->tv_nsec = (long)((t - (double)ts->tv_sec) * 1e9);
}

/* Under lock: waits until there is work (returns what pop gives) or until this thread must end
 * (NULL): stopping with nothing queued, or idle for idle_s while more than min threads run. */
static void *wait_for_work(tpool_t *p)
{
    struct timespec deadline;
    int may_retire = p->o.idle_s > 0 && p->o.min < p->o.max;
    if (may_retire)
        deadline_in(&deadline, p->o.idle_s);
    while (!p->o.ops->len(p->o.queue)) {
        if (p->stopping)
            return NULL;
        p->waiting++;
        int rc = may_retire ? pthread_cond_timedwait(&p->cond, &p->lock, &deadline)
                            : pthread_cond_wait(&p->cond, &p->lock);
        p->waiting--;
        /* Counted down on any return (a timeout too), so that waking never exceeds the threads
         * really signalled: at worst a push signals once more than needed, never too few. */
        if (p->waking > 0)
            p->waking--;
        if (rc == ETIMEDOUT && !p->o.ops->len(p->o.queue)) {
            if (p->nthreads > p->o.min)
                return NULL;
            deadline_in(&deadline, p->o.idle_s); /* one of the min: wait another period */
        }
    }
    void *taken = p->o.ops->pop(p->o.queue, p->nthreads);
    if (taken)
        p->running++;
    return taken;
}

static void *thread_main(void *arg)
{
    slot_t *s = arg;
    tpool_t *p = s->pool;
    char name[32];
    snprintf(name, sizeof name, "roost-%s-%d", p->o.name, s->index);
    name[15] = '\0'; /* Linux's limit: "roost-worker-100" is cut to "roost-worker-10" */
    pthread_setname_np(pthread_self(), name); /* for top -H, perf, gdb */
    pthread_mutex_lock(&p->lock);
    void *taken;
    while ((taken = wait_for_work(p))) {
        /* A batch leaves the rest to another thread rather than running it all in turn. */
        if (p->o.ops->len(p->o.queue) && p->waiting > p->waking) {
            p->waking++;
            pthread_cond_signal(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
        p->o.ops->run(p->o.queue, taken);
        pthread_mutex_lock(&p->lock);
        p->running--;
    }
    p->nthreads--;
    if (!p->stopping)
        p->retired++;
    s->state = SLOT_EXITED;
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

tpool_t *tpool_start(const tpool_opts_t *opts)
{
    int bad = opts->max < 1 || opts->min < 0 || opts->min > opts->max;
    tpool_t *p = bad ? NULL : calloc(1, sizeof *p + (size_t)opts->max * sizeof(slot_t));
    if (!p) {
        if (opts->ops->destroy)
            opts->ops->destroy(opts->queue); /* the pool's from the call on */
        return NULL;
    }
    p->o = *opts;
    for (int i = 0; i < p->o.max; i++)
        p->slots[i] = (slot_t){.pool = p, .index = i};
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&p->lock);
    while (p->nthreads < p->o.min && spawn(p) == 0)
        ;
    int ok = p->nthreads > 0 || p->o.min == 0;
    pthread_mutex_unlock(&p->lock);
    if (!ok) {
        tpool_stop(p);
        return NULL;
    }
    return p;
}

int tpool_push(tpool_t *p, void *items, int n)
{
    pthread_mutex_lock(&p->lock);
    /* The bound counts what waits beyond the threads that are or may be free to take it. */
    int room = p->o.max_queue + (p->o.max - p->running);
    int rc = 0;
    if (p->stopping) {
        rc = -EBUSY;
    } else if (p->o.max_queue > 0 && p->o.ops->len(p->o.queue) + n > room) {
        p->full++;
        rc = -EBUSY;
    } else if (p->nthreads == 0) {
        rc = spawn(p); /* else nothing would ever run it */
    }
    if (rc == 0)
        rc = p->o.ops->push(p->o.queue, items, n);
    for (int i = 0; rc == 0 && i < n && p->waiting > p->waking; i++) {
        p->waking++;
        pthread_cond_signal(&p->cond);
    }
    /* Growth: a new thread for each item that no free thread will take, up to max. */
    while (rc == 0 && p->o.ops->len(p->o.queue) > p->nthreads - p->running &&
           p->nthreads < p->o.max && spawn(p) == 0)
        ;
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void tpool_stats(tpool_t *p, tpool_stats_t *st)
{
    pthread_mutex_lock(&p->lock);
    st->threads = p->nthreads;
    st->idle = p->nthreads - p->running;
    st->busy = p->running;
    st->queued = p->o.ops->len(p->o.queue);
    st->started = p->started;
    st->retired = p->retired;
    st->full = p->full;
    pthread_mutex_unlock(&p->lock);
}

static void join_all(tpool_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = 1; /* from here no slot changes hands: spawn is only called by pushes */
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->o.max; i++) {
        pthread_mutex_lock(&p->lock);
        int joinable = p->slots[i].state != SLOT_FREE;
        pthread_mutex_unlock(&p->lock);
        if (joinable)
            pthread_join(p->slots[i].tid, NULL);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
}

void tpool_stop(tpool_t *p)
{
    if (!p)
        return;
    join_all(p);
    if (p->o.ops->destroy)
        p->o.ops->destroy(p->o.queue);
    free(p);
}
