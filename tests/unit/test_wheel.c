/* The timer wheel: order, disarm, re-arm earlier and later, deadlines past one revolution. */
#include "net/net.h"
#include "unit.h"

typedef struct {
    wheel_node_t node;
    int id;
    uint64_t fired_at;
} item_t;

static int fired[64], nfired;
static uint64_t clock_now;

static void on_expire(wheel_node_t *n, void *ud)
{
    item_t *it = CONTAINER_OF(n, item_t, node);
    it->fired_at = clock_now;
    fired[nfired++] = it->id;
}

static void advance_to(wheel_t *w, uint64_t t)
{
    while (clock_now < t) {
        clock_now += 10;
        wheel_advance(w, clock_now, on_expire, NULL);
    }
}

TEST(wheel_fires_in_deadline_order_not_before)
{
    wheel_t w;
    clock_now = 1000;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    wheel_arm(&w, &c.node, 1900);
    wheel_arm(&w, &a.node, 1200);
    wheel_arm(&w, &b.node, 1500);
    advance_to(&w, 1190);
    CHECK_EQ_INT(nfired, 0);
    advance_to(&w, 2000);
    CHECK_EQ_INT(nfired, 3);
    CHECK_EQ_INT(fired[0], 1);
    CHECK_EQ_INT(fired[1], 2);
    CHECK_EQ_INT(fired[2], 3);
    CHECK(a.fired_at >= 1200 && a.fired_at < 1300);
    CHECK(c.fired_at >= 1900 && c.fired_at < 2000);
}

TEST(wheel_disarmed_never_fires)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1};
    wheel_arm(&w, &a.node, 300);
    wheel_disarm(&a.node);
    advance_to(&w, 1000);
    CHECK_EQ_INT(nfired, 0);
}

TEST(wheel_rearm_later_and_earlier)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1}, b = {.id = 2};
    wheel_arm(&w, &a.node, 200);
    wheel_arm(&w, &a.node, 800); /* later: lazily moved */
    wheel_arm(&w, &b.node, 900);
    wheel_arm(&w, &b.node, 300); /* earlier */
    advance_to(&w, 500);
    CHECK_EQ_INT(nfired, 1);
    CHECK_EQ_INT(fired[0], 2);
    advance_to(&w, 1000);
    CHECK_EQ_INT(nfired, 2);
    CHECK(a.fired_at >= 800);
}

TEST(wheel_far_deadlines_survive_revolutions)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1};
    uint64_t far = 50ull * WHEEL_SLOTS * 3 + 125; /* three revolutions and a bit */
    wheel_arm(&w, &a.node, far);
    advance_to(&w, far - 60);
    CHECK_EQ_INT(nfired, 0);
    advance_to(&w, far + 60);
    CHECK_EQ_INT(nfired, 1);
}

TEST(wheel_many_nodes_all_fire_once)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    static item_t items[60];
    for (int i = 0; i < 60; i++) {
        items[i].id = i;
        wheel_arm(&w, &items[i].node, (uint64_t)(i * 97 % 3000) + 10);
    }
    advance_to(&w, 3200);
    CHECK_EQ_INT(nfired, 60);
}
