/* A hashed timer wheel: WHEEL_SLOTS lists, one per tick modulo the size. A node far in the
 * future waits in its slot and is looked at once per revolution; a node re-armed to a later
 * deadline stays where it is until its slot comes round. No allocation, no syscall. */
#include "net/net.h"

static void unlink_node(wheel_node_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

static void link_node(wheel_t *w, wheel_node_t *n, uint64_t at)
{
    wheel_node_t *head = &w->slots[at % WHEEL_SLOTS];
    n->slot_at = at;
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}

static uint64_t target_tick(const wheel_t *w, uint64_t deadline)
{
    uint64_t t = (deadline + w->tick_ms - 1) / w->tick_ms;
    return t > w->tick ? t : w->tick + 1;
}

void wheel_init(wheel_t *w, uint64_t now_ms, uint64_t tick_ms)
{
    w->tick_ms = tick_ms ? tick_ms : 1;
    w->tick = now_ms / w->tick_ms;
    for (int i = 0; i < WHEEL_SLOTS; i++)
        w->slots[i].prev = w->slots[i].next = &w->slots[i];
}

void wheel_arm(wheel_t *w, wheel_node_t *n, uint64_t deadline_ms)
{
    if (!deadline_ms) {
        wheel_disarm(n);
        return;
    }
    uint64_t at = target_tick(w, deadline_ms);
    n->deadline = deadline_ms;
    if (n->next) {
        if (n->slot_at <= at)
            return; /* its slot comes first: it will be moved then */
        unlink_node(n);
    }
    link_node(w, n, at);
}

void wheel_disarm(wheel_node_t *n)
{
    if (n->next)
        unlink_node(n);
    n->deadline = 0;
}

static void run_slot(wheel_t *w, uint64_t now, void (*expire)(wheel_node_t *, void *), void *ud)
{
    wheel_node_t *head = &w->slots[w->tick % WHEEL_SLOTS];
    if (head->next == head)
        return;
    /* Detach the slot first: nodes re-linked or re-armed by expire() may land in this slot. */
    wheel_node_t pending;
    pending.next = head->next;
    pending.prev = head->prev;
    pending.next->prev = &pending;
    pending.prev->next = &pending;
    head->next = head->prev = head;
    while (pending.next != &pending) {
        wheel_node_t *n = pending.next;
        unlink_node(n);
        if (n->deadline <= now) {
            n->deadline = 0;
            expire(n, ud);
        } else {
            link_node(w, n, target_tick(w, n->deadline));
        }
    }
}

void wheel_advance(wheel_t *w, uint64_t now_ms, void (*expire)(wheel_node_t *, void *), void *ud)
{
    uint64_t to = now_ms / w->tick_ms;
    if (to > w->tick + WHEEL_SLOTS)
        w->tick = to - WHEEL_SLOTS; /* a long gap: one revolution visits every slot */
    while (w->tick < to) {
        w->tick++;
        run_slot(w, now_ms, expire, ud);
    }
}
