/* Named counters for /metrics: registered at start-up (or lazily, under a mutex), then bumped
 * with relaxed atomic adds from any thread, so the hot path takes no lock. Each counter has a
 * cache line per thread slot: loops bumping the same counter do not bounce one line between
 * cores; a read sums the slots. */
#include "base/base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 16

struct __attribute__((aligned(64))) slot {
    atomic_long v;
    char pad[64 - sizeof(atomic_long)];
};

struct __attribute__((aligned(64))) roost_counter {
    struct slot slots[SLOTS];
    struct roost_counter *next;
    char *name;
    char *labels;
    char *help;
    int gauge; /* rendered as a gauge: it goes up and down (+1/-1 adds) */
};

struct counters {
    pthread_mutex_t lock;
    struct roost_counter *head, *tail;
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
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
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
    if (!k && (k = aligned_alloc(64, sizeof *k))) {
        memset(k, 0, sizeof *k);
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

static atomic_uint next_slot;
static _Thread_local unsigned my_slot = ~0u;

void roost_counter_add(roost_counter_t *k, long n)
{
    if (!k)
        return;
    if (my_slot == ~0u)
        my_slot = atomic_fetch_add(&next_slot, 1) % SLOTS;
    atomic_fetch_add_explicit(&k->slots[my_slot].v, n, memory_order_relaxed);
}

long roost_counter_get(const roost_counter_t *k)
{
    long sum = 0;
    for (int i = 0; k && i < SLOTS; i++)
        sum += atomic_load_explicit(&((roost_counter_t *)k)->slots[i].v, memory_order_relaxed);
    return sum;
}
