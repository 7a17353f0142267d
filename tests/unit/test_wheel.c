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

TEST(wheel_past_deadline_fires_on_the_next_tick)
{
    wheel_t w;
    clock_now = 5000;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1};
    wheel_arm(&w, &a.node, 10); /* long gone */
    wheel_advance(&w, clock_now, on_expire, NULL);
    CHECK_EQ_INT(nfired, 0); /* the current tick is already processed */
    advance_to(&w, 5050);
    CHECK_EQ_INT(nfired, 1);
    CHECK_EQ_INT(a.node.deadline, 0);
    CHECK(a.node.next == NULL);
}

TEST(wheel_zero_deadline_and_repeated_disarm)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1}, b = {.id = 2};
    wheel_disarm(&a.node); /* never armed */
    wheel_arm(&w, &a.node, 300);
    wheel_arm(&w, &a.node, 0); /* 0 means disarm */
    CHECK(a.node.next == NULL);
    wheel_arm(&w, &b.node, 300);
    wheel_disarm(&b.node);
    wheel_disarm(&b.node);
    advance_to(&w, 2000);
    CHECK_EQ_INT(nfired, 0);
    wheel_arm(&w, &b.node, 2100); /* usable again after a disarm */
    advance_to(&w, 2200);
    CHECK_EQ_INT(nfired, 1);
    CHECK_EQ_INT(fired[0], 2);
}

TEST(wheel_rearm_later_many_times_fires_once_at_the_last)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 7};
    /* a keep-alive connection: each request pushes the deadline back */
    for (uint64_t t = 0; t < 5000; t += 100) {
        wheel_arm(&w, &a.node, t + 1000);
        advance_to(&w, t + 100);
        CHECK_EQ_INT(nfired, 0);
    }
    advance_to(&w, 5800);
    CHECK_EQ_INT(nfired, 0);
    advance_to(&w, 6000);
    CHECK_EQ_INT(nfired, 1);
    CHECK(a.fired_at >= 5900 && a.fired_at < 5960);
}

TEST(wheel_rearm_later_by_several_revolutions)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 10);
    item_t a = {.id = 1};
    uint64_t far = 10ull * WHEEL_SLOTS * 4;
    wheel_arm(&w, &a.node, 100);
    wheel_arm(&w, &a.node, far); /* stays in the early slot, moved when it comes round */
    advance_to(&w, far - 10);
    CHECK_EQ_INT(nfired, 0);
    advance_to(&w, far + 10);
    CHECK_EQ_INT(nfired, 1);
    CHECK(a.fired_at >= far);
}

TEST(wheel_same_slot_different_revolutions)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1}, b = {.id = 2};
    wheel_arm(&w, &b.node, 1000 + 50ull * WHEEL_SLOTS); /* the same slot, one turn later */
    wheel_arm(&w, &a.node, 1000);
    advance_to(&w, 1100);
    CHECK_EQ_INT(nfired, 1);
    CHECK_EQ_INT(fired[0], 1);
    advance_to(&w, 1000 + 50ull * WHEEL_SLOTS - 10);
    CHECK_EQ_INT(nfired, 1);
    advance_to(&w, 1000 + 50ull * WHEEL_SLOTS + 50);
    CHECK_EQ_INT(nfired, 2);
    CHECK_EQ_INT(fired[1], 2);
}

TEST(wheel_long_gap_fires_everything_due_once)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    static item_t items[40];
    for (int i = 0; i < 40; i++) {
        items[i] = (item_t){.id = i};
        wheel_arm(&w, &items[i].node, (uint64_t)i * 5000 + 100); /* up to ~8 revolutions */
    }
    /* the loop was blocked: one advance far ahead */
    clock_now = 100000;
    wheel_advance(&w, clock_now, on_expire, NULL);
    CHECK_EQ_INT(nfired, 20); /* deadlines 100 .. 95100 */
    for (int i = 0; i < 40; i++)
        CHECK_EQ_INT(items[i].node.deadline == 0, i < 20);
    advance_to(&w, 200000);
    CHECK_EQ_INT(nfired, 40);
    for (int i = 20; i < 40; i++)
        CHECK(items[i].fired_at >= (uint64_t)i * 5000 + 100);
}

typedef struct {
    wheel_t *w;
    item_t *other;
    int period;
} ctl_t;

/* Expiry that re-arms itself (a periodic timer) and disarms another node due in the same slot. */
static void on_expire_ctl(wheel_node_t *n, void *ud)
{
    ctl_t *c = ud;
    item_t *it = CONTAINER_OF(n, item_t, node);
    on_expire(n, NULL);
    if (it->id == 1) {
        if (c->other)
            wheel_disarm(&c->other->node);
        c->other = NULL;
        wheel_arm(c->w, n, clock_now + (uint64_t)c->period);
    }
}

TEST(wheel_expire_may_rearm_itself_and_disarm_others)
{
    wheel_t w;
    clock_now = 0;
    nfired = 0;
    wheel_init(&w, clock_now, 50);
    item_t a = {.id = 1}, b = {.id = 2};
    ctl_t c = {.w = &w, .other = &b, .period = 200};
    wheel_arm(&w, &a.node, 500);
    wheel_arm(&w, &b.node, 500); /* after a in the same slot: a's expiry takes it out */
    while (clock_now < 1600) {
        clock_now += 10;
        wheel_advance(&w, clock_now, on_expire_ctl, &c);
    }
    /* a fired at 500, 700, 900, 1100, 1300, 1500; b was disarmed before its turn */
    CHECK_EQ_INT(nfired, 6);
    for (int i = 0; i < nfired; i++)
        CHECK_EQ_INT(fired[i], 1);
    CHECK_EQ_INT(b.node.deadline, 0);
    CHECK(b.node.next == NULL);
    wheel_disarm(&a.node);
}

enum { MANY = 5000 };
static item_t many[MANY];
static uint64_t many_due[MANY];
static int many_count[MANY], many_early, many_late;

static void on_expire_many(wheel_node_t *n, void *ud)
{
    item_t *it = CONTAINER_OF(n, item_t, node);
    uint64_t tick_ms = *(uint64_t *)ud;
    many_count[it->id]++;
    if (clock_now < many_due[it->id])
        many_early++;
    if (clock_now >= many_due[it->id] + tick_ms + 7)
        many_late++;
}

TEST(wheel_thousands_of_nodes_fire_once_on_time)
{
    wheel_t w;
    uint64_t tick_ms = 20;
    clock_now = 12345;
    wheel_init(&w, clock_now, tick_ms);
    many_early = many_late = 0;
    uint32_t seed = 1;
    for (int i = 0; i < MANY; i++) {
        seed = seed * 1103515245u + 12345u;
        many[i] = (item_t){.id = i};
        many_count[i] = 0;
        many_due[i] = clock_now + 1 + (seed >> 8) % 60000;
        wheel_arm(&w, &many[i].node, many_due[i]);
    }
    /* re-arm a third of them, some earlier, some later */
    for (int i = 0; i < MANY; i += 3) {
        seed = seed * 1103515245u + 12345u;
        many_due[i] = clock_now + 1 + (seed >> 8) % 60000;
        wheel_arm(&w, &many[i].node, many_due[i]);
    }
    uint64_t end = clock_now + 61000;
    while (clock_now < end) {
        clock_now += 7;
        wheel_advance(&w, clock_now, on_expire_many, &tick_ms);
    }
    int once = 0;
    for (int i = 0; i < MANY; i++)
        once += many_count[i] == 1;
    CHECK_EQ_INT(once, MANY);
    CHECK_EQ_INT(many_early, 0);
    CHECK_EQ_INT(many_late, 0);
}
