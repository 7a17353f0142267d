/* The response cache's store: one per server, shared by every loop. Keys are spread over
 * stripes by their path (so a path's variants share a stripe and eviction by path locks one),
 * each stripe with its own lock, hash chains, LRU list and pending fills; no lock is ever held
 * for all requests, and never two stripe locks at once. Not the middleware (cache.c). */
#include "mw/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STRIPES 64  /* a power of two; locks contended by 2 x cores loops at most */
#define BUCKETS 256 /* per stripe; chains stay short below ~16k entries a stripe */

typedef struct entry {
    struct entry *hnext;         /* the bucket's chain */
    struct entry *newer, *older; /* the stripe's LRU list: newest first */
    uint64_t hash, used_ns, stored_ns;
    uint64_t fresh_until, swr_until, sie_until;
    rbuf_t *resp; /* the stripe's reference */
    size_t bytes; /* what it counts against the bound */
    size_t key_len, path_len;
    char key[];
} entry_t;

typedef struct fill {
    struct fill *next;
    uint64_t hash;
    cache_waiter_t *waiters, **tail;
    size_t key_len;
    char key[];
} fill_t;

typedef struct {
    pthread_mutex_t lock;
    entry_t *buckets[BUCKETS];
    entry_t *newest, *oldest;
    fill_t *fills; /* few at a time: a list */
} stripe_t;

struct cache_store {
    size_t max_bytes;
    atomic_size_t bytes, entries;
    roost_counter_t *c_lru, *c_bytes;
    stripe_t stripes[STRIPES];
};

/* FNV-1a on 64 bits with a final mix, so that the low bits (stripe, bucket) depend on every
 * byte. Keys are short: this was not measured against anything faster. */
uint64_t cache_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

size_t cache_key_make(char *out, size_t cap, roost_str_t method, roost_str_t path,
                      roost_str_t query, const roost_str_t *vary_values, int nvary)
{
    /* path NUL method NUL query (NUL value)*: a NUL cannot occur in a clean path or a header
     * value, so two different requests never make one key. An absent header is \x01, not "". */
    size_t need = path.len + 1 + method.len + 1 + query.len;
    for (int i = 0; i < nvary; i++)
        need += 1 + (vary_values[i].ptr ? vary_values[i].len : 1);
    if (need > cap)
        return 0;
    char *p = out;
    memcpy(p, path.ptr, path.len);
    p += path.len;
    *p++ = 0;
    memcpy(p, method.ptr, method.len);
    p += method.len;
    *p++ = 0;
    if (query.len)
        memcpy(p, query.ptr, query.len);
    p += query.len;
    for (int i = 0; i < nvary; i++) {
        *p++ = 0;
        if (vary_values[i].ptr) {
            memcpy(p, vary_values[i].ptr, vary_values[i].len);
            p += vary_values[i].len;
        } else {
            *p++ = 1;
        }
    }
    return (size_t)(p - out);
}

cache_store_t *cache_store_new(size_t max_bytes)
{
    cache_store_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->max_bytes = max_bytes;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&s->stripes[i].lock, NULL);
    return s;
}

static stripe_t *stripe_of(cache_store_t *s, const char *path, size_t len)
{
    return &s->stripes[cache_hash(path, len) & (STRIPES - 1)];
}

static void lru_unlink(stripe_t *st, entry_t *e)
{
    DLIST_UNLINK(st->newest, st->oldest, e, newer, older);
}

static void lru_push(stripe_t *st, entry_t *e)
{
    e->older = st->newest;
    e->newer = NULL;
    if (st->newest)
        st->newest->newer = e;
    st->newest = e;
    if (!st->oldest)
        st->oldest = e;
}

/* Under the stripe's lock: takes e out of its chain and list, and frees it. */
static void entry_drop(cache_store_t *s, stripe_t *st, entry_t *e)
{
    entry_t **pp = &st->buckets[e->hash % BUCKETS];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(st, e);
    atomic_fetch_sub(&s->bytes, e->bytes);
    atomic_fetch_sub(&s->entries, 1);
    roost_counter_add(s->c_bytes, -(long)e->bytes);
    rbuf_unref(e->resp);
    free(e);
}

void cache_store_free(cache_store_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < STRIPES; i++) {
        stripe_t *st = &s->stripes[i];
        while (st->oldest)
            entry_drop(s, st, st->oldest);
        for (fill_t *f = st->fills, *next; f; f = next) {
            next = f->next;
            free(f);
        }
        pthread_mutex_destroy(&st->lock);
    }
    free(s);
}

void cache_store_counters(cache_store_t *s, roost_counter_t *lru_evictions, roost_counter_t *bytes)
{
    s->c_lru = lru_evictions;
    s->c_bytes = bytes;
}

static entry_t *find(stripe_t *st, const cache_key_t *k, uint64_t h)
{
    for (entry_t *e = st->buckets[h % BUCKETS]; e; e = e->hnext)
        if (e->hash == h && e->key_len == k->key_len && !memcmp(e->key, k->key, k->key_len))
            return e;
    return NULL;
}

static fill_t *find_fill(stripe_t *st, const cache_key_t *k, uint64_t h, fill_t ***link)
{
    for (fill_t **pp = &st->fills; *pp; pp = &(*pp)->next) {
        fill_t *f = *pp;
        if (f->hash == h && f->key_len == k->key_len && !memcmp(f->key, k->key, k->key_len)) {
            if (link)
                *link = pp;
            return f;
        }
    }
    return NULL;
}

cache_lookup_t cache_lookup(cache_store_t *s, const cache_key_t *k, uint64_t now, cache_waiter_t *w,
                            cache_found_t *out)
{
    uint64_t h = cache_hash(k->key, k->key_len);
    stripe_t *st = stripe_of(s, k->key, k->path_len);
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&st->lock);
    entry_t *e = find(st, k, h);
    if (e && now >= e->swr_until && now >= e->sie_until) {
        entry_drop(s, st, e); /* of no use any more */
        e = NULL;
    }
    if (e) {
        e->used_ns = now;
        lru_unlink(st, e);
        lru_push(st, e);
        out->stored_ns = e->stored_ns;
        out->sie_until_ns = e->sie_until;
        if (now < e->fresh_until) {
            out->resp = rbuf_ref(e->resp);
            pthread_mutex_unlock(&st->lock);
            return CACHE_HIT;
        }
    }
    fill_t *f = find_fill(st, k, h, NULL);
    if (f) {
        /* Someone refills: a stale answer within its window goes out at once (nginx's
         * proxy_cache_use_stale updating); without one, wait for the fill. */
        if (e && now < e->swr_until) {
            out->resp = rbuf_ref(e->resp);
            pthread_mutex_unlock(&st->lock);
            return CACHE_STALE;
        }
        w->next = NULL;
        *f->tail = w;
        f->tail = &w->next;
        pthread_mutex_unlock(&st->lock);
        return CACHE_WAIT;
    }
    f = malloc(sizeof *f + k->key_len);
    if (f) {
        f->hash = h;
        f->waiters = NULL;
        f->tail = &f->waiters;
        f->key_len = k->key_len;
        memcpy(f->key, k->key, k->key_len);
        f->next = st->fills;
        st->fills = f;
    }
    /* Without memory for the fill record the request still fills; its twins fill too. */
    if (e)
        out->resp = rbuf_ref(e->resp); /* for stale-if-error, or to serve while revalidating */
    pthread_mutex_unlock(&st->lock);
    return e && f && now < e->swr_until ? CACHE_REVALIDATE : CACHE_FILL;
}

/* Evicts the least recently used entry of the whole store: each stripe's oldest is its
 * candidate, and the oldest of those goes. Only fills that pass the bound pay for the scan;
 * a hit only reorders its own stripe. Returns 0 when the store is empty. */
static int evict_lru(cache_store_t *s)
{
    for (int tries = 0; tries < 4; tries++) {
        int best = -1;
        uint64_t best_used = UINT64_MAX;
        for (int i = 0; i < STRIPES; i++) {
            stripe_t *st = &s->stripes[i];
            pthread_mutex_lock(&st->lock);
            if (st->oldest && st->oldest->used_ns < best_used) {
                best_used = st->oldest->used_ns;
                best = i;
            }
            pthread_mutex_unlock(&st->lock);
        }
        if (best < 0)
            return 0;
        stripe_t *st = &s->stripes[best];
        pthread_mutex_lock(&st->lock);
        entry_t *e = st->oldest;
        /* Used again since the scan: look again (a few times, then take it anyway). */
        if (e && (e->used_ns == best_used || tries == 3)) {
            entry_drop(s, st, e);
            roost_counter_add(s->c_lru, 1);
            pthread_mutex_unlock(&st->lock);
            return 1;
        }
        pthread_mutex_unlock(&st->lock);
    }
    return 1;
}

cache_waiter_t *cache_fill_done(cache_store_t *s, const cache_key_t *k, rbuf_t *resp, uint64_t now,
                                uint64_t fresh_until, uint64_t swr_until, uint64_t sie_until)
{
    uint64_t h = cache_hash(k->key, k->key_len);
    stripe_t *st = stripe_of(s, k->key, k->path_len);
    entry_t *e = NULL;
    size_t bytes = 0;
    if (resp) {
        bytes = sizeof *e + k->key_len + sizeof(rbuf_t) + resp->len;
        if (bytes <= s->max_bytes && (e = malloc(sizeof *e + k->key_len))) {
            memset(e, 0, sizeof *e);
            e->hash = h;
            e->used_ns = e->stored_ns = now;
            e->fresh_until = fresh_until;
            e->swr_until = swr_until;
            e->sie_until = sie_until;
            e->resp = rbuf_ref(resp);
            e->bytes = bytes;
            e->key_len = k->key_len;
            e->path_len = k->path_len;
            memcpy(e->key, k->key, k->key_len);
        }
    }
    cache_waiter_t *waiters = NULL;
    pthread_mutex_lock(&st->lock);
    fill_t **link = NULL;
    fill_t *f = find_fill(st, k, h, &link);
    if (f) {
        *link = f->next;
        waiters = f->waiters;
    }
    if (e) {
        entry_t *old = find(st, k, h);
        if (old)
            entry_drop(s, st, old);
        e->hnext = st->buckets[h % BUCKETS];
        st->buckets[h % BUCKETS] = e;
        lru_push(st, e);
        atomic_fetch_add(&s->bytes, bytes);
        atomic_fetch_add(&s->entries, 1);
        roost_counter_add(s->c_bytes, (long)bytes);
    }
    pthread_mutex_unlock(&st->lock);
    free(f);
    while (atomic_load(&s->bytes) > s->max_bytes && evict_lru(s))
        ;
    return waiters;
}

int cache_evict_path(cache_store_t *s, const char *path, size_t len)
{
    stripe_t *st = stripe_of(s, path, len);
    int n = 0;
    pthread_mutex_lock(&st->lock);
    for (entry_t *e = st->newest, *next; e; e = next) {
        next = e->older;
        if (e->path_len == len && !memcmp(e->key, path, len)) {
            entry_drop(s, st, e);
            n++;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return n;
}

size_t cache_store_bytes(const cache_store_t *s)
{
    return atomic_load(&((cache_store_t *)s)->bytes);
}

size_t cache_store_entries(const cache_store_t *s)
{
    return atomic_load(&((cache_store_t *)s)->entries);
}

rbuf_t *cache_resp_new(int status, const char *type, const char *etag, const char *headers,
                       const void *body, size_t body_len)
{
    const char *parts[3] = {type ? type : "", etag, headers ? headers : ""};
    size_t lens[3], total = sizeof(cache_resp_t) + body_len;
    for (int i = 0; i < 3; i++)
        total += (lens[i] = strlen(parts[i])) + 1;
    rbuf_t *b = rbuf_new(total);
    if (!b)
        return NULL;
    cache_resp_t r = {.status = status,
                      .type_len = (uint32_t)lens[0],
                      .etag_len = (uint32_t)lens[1],
                      .headers_len = (uint32_t)lens[2],
                      .body_len = body_len};
    char *p = b->data;
    memcpy(p, &r, sizeof r);
    p += sizeof r;
    for (int i = 0; i < 3; i++) {
        memcpy(p, parts[i], lens[i] + 1);
        p += lens[i] + 1;
    }
    if (body_len)
        memcpy(p, body, body_len);
    b->len = total;
    return b;
}
