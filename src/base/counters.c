/* Named counters for /metrics: registered at start-up (or lazily, under a mutex), then bumped
 * from any thread with no lock and no locked instruction for the first threads. Slot-major, like
 * the kernel's per-CPU areas: counters live in chunks of CHUNK, and each thread slot has its own
 * contiguous run of a chunk, so one thread's counters share its cache lines and no line is
 * written by two threads; a read sums the slots. Not the per-route series (http/metrics.c). */
#include "base/base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 16
#define CHUNK 64 /* counters per chunk: one slot's run is 512 bytes, eight whole lines */

/* SLOTS runs of CHUNK values: counter i of slot s is v[s * CHUNK + i]. */
struct chunk {
    struct chunk *next;
    _Alignas(64) atomic_long v[SLOTS * CHUNK];
};

struct roost_counter {
    atomic_long *v; /* slot 0's value; slot s's is v[s * CHUNK] */
    struct roost_counter *next;
    char *name;
    char *labels;
    char *help;
    int gauge; /* rendered as a gauge: it goes up and down (+1/-1 adds) */
};

struct counters {
    pthread_mutex_t lock;
    struct roost_counter *head, *tail;
    struct chunk *chunks; /* the newest first */
    int used;             /* counters given out of the newest chunk */
};

counters_t *counters_new(void)
{
    counters_t *c = calloc(1, sizeof *c);
    if (c)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

void counters_free(counters_t *c)
{
    if (!c)
        return;
    struct roost_counter *k = c->head;
    while (k) {
        struct roost_counter *next = k->next;
        free(k->name);
        free(k->labels);
        free(k->help);
        free(k);
        k = next;
    }
    for (struct chunk *ch = c->chunks, *next; ch; ch = next) {
        next = ch->next;
        free(ch);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* A counter with the next free place of the newest chunk (a new chunk when it is full). Under
 * c->lock. */
static struct roost_counter *new_counter(counters_t *c)
{
    if (!c->chunks || c->used == CHUNK) {
        struct chunk *ch = aligned_alloc(64, sizeof *ch);
        if (!ch)
            return NULL;
        memset(ch, 0, sizeof *ch);
        ch->next = c->chunks;
        c->chunks = ch;
        c->used = 0;
    }
    struct roost_counter *k = calloc(1, sizeof *k);
    if (k)
        k->v = &c->chunks->v[c->used++];
    return k;
}

roost_counter_t *counters_get(counters_t *c, const char *name, const char *labels, const char *help)
{
    return counters_get_kind(c, name, labels, help, 0);
}

roost_counter_t *counters_get_kind(counters_t *c, const char *name, const char *labels,
                                   const char *help, int gauge)
{
    pthread_mutex_lock(&c->lock);
    struct roost_counter *k;
    for (k = c->head; k; k = k->next)
        if (strcmp(k->name, name) == 0 && same(k->labels, labels))
            break;
    if (!k && (k = new_counter(c))) {
        k->name = strdup(name);
        k->labels = strdup(labels ? labels : "");
        k->help = strdup(help ? help : name);
        k->gauge = gauge;
        /* Appended in order so that one metric's label sets stay together when rendered. */
        LIST_APPEND(c->head, c->tail, k, next);
    }
    pthread_mutex_unlock(&c->lock);
    return k;
}

void counters_render(counters_t *c, sbuf_t *out)
{
    /* Prometheus wants a family's samples together; counters registered later (a new label
     * set) may sit apart in the list, so each family is gathered on its first appearance. */
    pthread_mutex_lock(&c->lock);
    for (struct roost_counter *k = c->head; k; k = k->next) {
        int seen = 0;
        for (struct roost_counter *j = c->head; j != k && !seen; j = j->next)
            seen = strcmp(j->name, k->name) == 0;
        if (seen)
            continue;
        sbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", k->name, k->help, k->name,
                    k->gauge ? "gauge" : "counter");
        for (struct roost_counter *j = k; j; j = j->next) {
            if (strcmp(j->name, k->name) != 0)
                continue;
            long v = roost_counter_get(j);
            if (j->labels[0])
                sbuf_printf(out, "%s{%s} %ld\n", j->name, j->labels, v);
            else
                sbuf_printf(out, "%s %ld\n", j->name, v);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

/* The first SLOTS - 1 threads that bump a counter own a slot: their add is a plain load and
 * store (one writer; a read sees whole longs). Later threads share the last slot with locked
 * adds, never an owner's slot, whose plain store could undo a sharer's add. */
static atomic_uint next_slot;
static _Thread_local unsigned my_slot = ~0u;
static _Thread_local int my_own;

void roost_counter_add(roost_counter_t *k, long n)
{
    if (!k)
        return;
    if (my_slot == ~0u) {
        unsigned i = atomic_fetch_add(&next_slot, 1);
        my_own = i < SLOTS - 1;
        my_slot = my_own ? i : SLOTS - 1;
    }
    atomic_long *v = &k->v[my_slot * CHUNK];
    if (my_own)
        atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

long roost_counter_get(const roost_counter_t *k)
{
    long sum = 0;
    for (int i = 0; k && i < SLOTS; i++)
        sum += atomic_load_explicit(&k->v[i * CHUNK], memory_order_relaxed);
    return sum;
}
