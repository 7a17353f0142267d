/* The stall watchdog: a thread that wakes every stall_ms/4 and compares each loop's heartbeat
 * (stamped by the loop's tick) with the clock. A loop silent for longer than stall_ms is stuck
 * in a callback: report it once with what it was running, and again when it recovers. */
#include "net/net.h"

#include <stdlib.h>
#include <time.h>

struct watchdog {
    net_group_t *group;
    int stall_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
};

static void *watchdog_main(void *arg)
{
    pthread_setname_np(pthread_self(), "roost-watchdog"); /* for top -H, perf, gdb */
    watchdog_t *w = arg;
    int n = net_group_nloops(w->group);
    uint64_t *stalled_since = calloc((size_t)n, sizeof *stalled_since);
    const char **what = calloc((size_t)n, sizeof *what);
    /* A tick is late by up to one tick interval plus scheduling noise; never look closer. */
    uint64_t period = (uint64_t)(w->stall_ms / 4 > 5 ? w->stall_ms / 4 : 5);
    pthread_mutex_lock(&w->lock);
    while (!w->stop && stalled_since && what) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(period * 1000000u);
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        if (w->stop)
            break;
        uint64_t now = time_now_ms();
        for (int i = 0; i < n; i++) {
            net_loop_t *loop = net_group_loop(w->group, i);
            uint64_t beat = atomic_load_explicit(&loop->heartbeat_ms, memory_order_relaxed);
            uint64_t late = now > beat ? now - beat : 0;
            if (late > (uint64_t)w->stall_ms && !stalled_since[i]) {
                const char *running = atomic_load(&loop->running);
                stalled_since[i] = beat;
                what[i] = running;
                atomic_fetch_add_explicit(&loop->stalls, 1, memory_order_relaxed);
                log_warn("loop %d stalled: no tick for %llu ms, running %s", i,
                         (unsigned long long)late, running ? running : "(no handler)");
            } else if (stalled_since[i] && beat > stalled_since[i]) {
                uint64_t took = beat - stalled_since[i];
                atomic_fetch_add_explicit(&loop->stall_ms, took, memory_order_relaxed);
                log_warn("loop %d stall ended after about %llu ms (%s)", i,
                         (unsigned long long)took, what[i] ? what[i] : "no handler");
                stalled_since[i] = 0;
            }
        }
    }
    pthread_mutex_unlock(&w->lock);
    free(stalled_since);
    free(what);
    return NULL;
}

watchdog_t *watchdog_start(net_group_t *g, int stall_ms)
{
    watchdog_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->group = g;
    w->stall_ms = stall_ms;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, watchdog_main, w) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

void watchdog_stop(watchdog_t *w)
{
    if (!w)
        return;
    thread_stop_join(w->thread, &w->lock, &w->cond, &w->stop);
    free(w);
}
