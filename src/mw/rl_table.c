/* The rate limits' table of clients: one TAT per (policy, key), at most max_keys of them, shared
 * by every loop through striped locks. Keys are kept as a 128-bit keyed hash, not as text, so an
 * entry has a fixed size and a long header value costs no memory: two keys that collide would
 * share a bucket, which with 128 bits and seeds drawn at start is not a practical event. Not the
 * GCRA arithmetic (gcra.c) nor anything of HTTP (ratelimit.c).
 *
 * Why shared and not one table per loop: SO_REUSEPORT spreads one client's connections over the
 * loops, so per-loop tables would give a client up to --threads times its limit. A stripe's
 * lock is held for one lookup and a few stores (measured on bench/mw/ratelimit.sh). */
#include "mw/mw.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define STRIPES_MAX 64
#define NONE        0u /* entry index 0 is never used: it means "no entry" */

typedef struct {
    uint64_t h1, h2;
    int64_t tat;
    uint32_t chain;              /* next in the bucket */
    uint32_t lru_prev, lru_next; /* lru_prev toward the most recently seen */
} entry_t;

typedef struct {
    atomic_int busy;   /* the stripe's lock (stripe_lock) */
    uint32_t *buckets; /* heads, mask + 1 of them */
    uint32_t mask;
    entry_t *e; /* e[1..cap] */
    uint32_t cap, used;
    uint32_t newest, oldest;
    long evicted_live, evicted_expired;
} __attribute__((aligned(64))) stripe_t;

struct mw_rl_table {
    uint64_t seed1, seed2, k1, k2, k3, k4; /* random at start: hash2's seeds and factors */
    unsigned nstripes;
    char *mem; /* every stripe's entries and buckets, one block */
    stripe_t s[];
};

/* A 64-bit bijective finalizer: every bit of x reaches every bit of the result. */
static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    x ^= x >> 33;
    return x;
}

/* The 128-bit product of a and b folded to 64 bits: one multiply spreads every bit of either
 * over the whole result. */
static inline uint64_t fold(uint64_t a, uint64_t b)
{
    __uint128_t m = (__uint128_t)a * b;
    return (uint64_t)m ^ (uint64_t)(m >> 64);
}

static inline uint64_t load8(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t load4(const unsigned char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* A stripe is held for one lookup and a few stores (~100 instructions): a spin lock, since a
 * futex mutex's lock and unlock cost half as much again (callgrind, 57 instructions a
 * request). A holder descheduled mid-hold (2 cores shared by many threads) is waited for with
 * sched_yield, not by burning the slice. */
static inline void stripe_lock(stripe_t *s)
{
    int spins = 0;
    while (atomic_exchange_explicit(&s->busy, 1, memory_order_acquire)) {
        while (atomic_load_explicit(&s->busy, memory_order_relaxed))
            if (++spins > 100)
                sched_yield();
    }
}

static inline void stripe_unlock(stripe_t *s)
{
    atomic_store_explicit(&s->busy, 0, memory_order_release);
}

/* Keyed: two lanes, each from its own random seed, take the key 16 bytes at a time through
 * fold with secret factors, so which inputs collide depends on the seeds. The words of a key
 * of 4-16 bytes are its first and last 4 or 8 (they overlap when it is shorter: with the length
 * in the hash, the words still give every byte). An address or a short header value is one
 * round: ~35 instructions where a finalizer per 8 bytes and lane took ~110 (callgrind, /json
 * with a rate limit). */
static void hash2(const mw_rl_table_t *t, unsigned policy, const unsigned char *p, size_t len,
                  uint64_t *h1, uint64_t *h2)
{
    uint64_t x = ((uint64_t)policy << 32) ^ len;
    uint64_t a = t->seed1, b = t->seed2, w0, w1;
    if (len > 16) {
        size_t left = len;
        do {
            a = fold(a ^ load8(p), t->k1 ^ load8(p + 8));
            b = fold(b ^ load8(p), t->k2 ^ load8(p + 8));
            p += 16;
            left -= 16;
        } while (left > 16);
        p -= 16 - left; /* the last 16 bytes, overlapping the round before */
        w0 = load8(p);
        w1 = load8(p + 8);
    } else if (len >= 8) {
        w0 = load8(p);
        w1 = load8(p + len - 8);
    } else if (len >= 4) {
        w0 = load4(p);
        w1 = load4(p + len - 4);
    } else {
        w0 = len ? (uint64_t)p[0] << 16 | (uint64_t)p[len / 2] << 8 | p[len - 1] : 0;
        w1 = 0;
    }
    a = fold(a ^ w0, t->k1 ^ w1);
    b = fold(b ^ w0, t->k2 ^ w1);
    *h1 = fold(a ^ x, t->k3);
    *h2 = fold(b ^ x, t->k4);
}

mw_rl_table_t *mw_rl_table_new(size_t max_keys)
{
    if (max_keys < 1)
        max_keys = 1;
    unsigned n = STRIPES_MAX;
    while (n > 1 && n > max_keys)
        n /= 2;
    mw_rl_table_t *t = aligned_alloc(64, (sizeof *t + n * sizeof(stripe_t) + 63) / 64 * 64);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t + n * sizeof(stripe_t));
    uint64_t r[6];
    if (getrandom(r, sizeof r, 0) != sizeof r) {
        r[0] = time_now_ns() ^ (uintptr_t)t;
        for (int i = 1; i < 6; i++)
            r[i] = mix(r[i - 1] + (uint64_t)i);
    }
    t->seed1 = r[0];
    t->seed2 = r[1];
    /* Odd factors: a multiply by one loses no bit of the other operand. */
    t->k1 = r[2] | 1;
    t->k2 = r[3] | 1;
    t->k3 = r[4] | 1;
    t->k4 = r[5] | 1;
    t->nstripes = n;
    uint32_t cap = (uint32_t)(max_keys / n), nb = 1;
    while (nb < cap)
        nb *= 2;
    /* A stripe's part: its entries, then its buckets, rounded to a cache line so that no two
     * stripes share one. calloc: pages are touched only as keys arrive. */
    size_t part = (((size_t)cap + 1) * sizeof(entry_t) + nb * sizeof(uint32_t) + 63) / 64 * 64;
    t->mem = calloc(n, part);
    if (!t->mem) {
        free(t);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        stripe_t *s = &t->s[i];
        s->e = (entry_t *)(t->mem + i * part);
        s->buckets = (uint32_t *)(s->e + cap + 1);
        s->mask = nb - 1;
        s->cap = cap;
    }
    return t;
}

void mw_rl_table_free(mw_rl_table_t *t)
{
    if (t)
        free(t->mem);
    free(t);
}

static void lru_unlink(stripe_t *s, uint32_t i)
{
    entry_t *e = &s->e[i];
    if (e->lru_prev)
        s->e[e->lru_prev].lru_next = e->lru_next;
    else
        s->newest = e->lru_next;
    if (e->lru_next)
        s->e[e->lru_next].lru_prev = e->lru_prev;
    else
        s->oldest = e->lru_prev;
}

static void lru_push(stripe_t *s, uint32_t i)
{
    entry_t *e = &s->e[i];
    e->lru_prev = NONE;
    e->lru_next = s->newest;
    if (s->newest)
        s->e[s->newest].lru_prev = i;
    s->newest = i;
    if (!s->oldest)
        s->oldest = i;
}

static void chain_unlink(stripe_t *s, uint32_t i)
{
    uint32_t *at = &s->buckets[s->e[i].h1 & s->mask];
    while (*at != i)
        at = &s->e[*at].chain;
    *at = s->e[i].chain;
}

/* An entry for a new key: a free one, else the least recently seen one. */
static uint32_t take(stripe_t *s, int64_t now)
{
    if (s->used < s->cap)
        return ++s->used;
    uint32_t i = s->oldest;
    if (s->e[i].tat > now)
        s->evicted_live++;
    else
        s->evicted_expired++;
    lru_unlink(s, i);
    chain_unlink(s, i);
    return i;
}

void mw_rl_table_check(mw_rl_table_t *t, unsigned policy, const void *key, size_t len,
                       const mw_gcra_t *g, int64_t now, mw_gcra_result_t *out)
{
    uint64_t h1, h2;
    hash2(t, policy, key, len, &h1, &h2);
    stripe_t *s = &t->s[(h2 >> 58) & (t->nstripes - 1)];
    stripe_lock(s);
    uint32_t i = s->buckets[h1 & s->mask];
    while (i != NONE && (s->e[i].h1 != h1 || s->e[i].h2 != h2))
        i = s->e[i].chain;
    mw_gcra_check(g, i != NONE ? s->e[i].tat : 0, now, out);
    if (i != NONE) {
        s->e[i].tat = out->tat;
        if (s->newest != i) {
            lru_unlink(s, i);
            lru_push(s, i);
        }
    } else if (out->allowed && s->cap) {
        i = take(s, now);
        entry_t *e = &s->e[i];
        e->h1 = h1;
        e->h2 = h2;
        e->tat = out->tat;
        uint32_t *b = &s->buckets[h1 & s->mask];
        e->chain = *b;
        *b = i;
        lru_push(s, i);
    }
    stripe_unlock(s);
}

size_t mw_rl_table_keys(mw_rl_table_t *t)
{
    size_t n = 0;
    for (unsigned i = 0; i < t->nstripes; i++) {
        stripe_lock(&t->s[i]);
        n += t->s[i].used;
        stripe_unlock(&t->s[i]);
    }
    return n;
}

void mw_rl_table_evictions(mw_rl_table_t *t, long *live, long *expired)
{
    *live = *expired = 0;
    for (unsigned i = 0; i < t->nstripes; i++) {
        stripe_lock(&t->s[i]);
        *live += t->s[i].evicted_live;
        *expired += t->s[i].evicted_expired;
        stripe_unlock(&t->s[i]);
    }
}
