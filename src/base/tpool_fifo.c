/* The FIFO discipline of the thread pool (base.h): work items run in the order they were
 * submitted. A list of work items that the FIFO takes one at a time (HTTP workers, background
 * tasks) and the data threads take in batches. Not the job workers' priority heap. */
#include "base/base.h"

#include <stdlib.h>

void tpool_list_append(tpool_list_t *l, tpool_work_t *first, int n)
{
    tpool_work_t *last = first;
    for (int i = 1; i < n; i++)
        last = last->next;
    last->next = NULL;
    tpool_work_t **link = l->tail ? &l->tail->next : &l->head;
    *link = first;
    l->tail = last;
    l->n += n;
}

tpool_work_t *tpool_list_take(tpool_list_t *l, int k)
{
    tpool_work_t *first = l->head, *last = first;
    if (!first || k < 1)
        return NULL;
    int taken = 1;
    for (; taken < k && last->next; taken++)
        last = last->next;
    l->head = last->next;
    l->n -= taken;
    if (!l->head)
        l->tail = NULL;
    last->next = NULL;
    return first;
}

static int fifo_push(void *queue, void *items, int n)
{
    tpool_list_append(queue, items, n);
    return 0;
}

static void *fifo_pop(void *queue, int nthreads)
{
    return tpool_list_take(queue, 1);
}

static int fifo_len(void *queue)
{
    return ((tpool_list_t *)queue)->n;
}

static void fifo_run(void *queue, void *taken)
{
    tpool_work_t *w = taken;
    w->run(w);
}

static const tpool_queue_ops_t fifo_ops = {fifo_push, fifo_pop, fifo_len, fifo_run, free};

tpool_t *tpool_fifo_start(const tpool_opts_t *opts)
{
    tpool_list_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    tpool_opts_t o = *opts;
    o.ops = &fifo_ops;
    o.queue = l;
    return tpool_start(&o);
}

int tpool_submit(tpool_t *p, tpool_work_t *work)
{
    return tpool_push(p, work, 1);
}
