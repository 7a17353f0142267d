/* The response cache's inside, shared by its three files: the store (cache_store.c: striped
 * index, LRU under a byte bound, pending fills and their waiters, eviction by path), the stored
 * answer (an immutable rbuf_t, read by any loop without a copy of the entry) and ETags
 * (etag.c). The middleware that uses them is cache.c; the public calls are in roost.h. */
#ifndef ROOST_MW_CACHE_H
#define ROOST_MW_CACHE_H

#include "base/base.h"

/* ---- a stored answer: one rbuf whose bytes are a cache_resp_t, then the NUL-terminated
 * Content-Type, ETag and header lines ("Name: value\r\n", ready to append to a response),
 * then the body. Never written once made. ---- */
typedef struct {
    int status;
    uint32_t type_len, etag_len, headers_len;
    size_t body_len;
} cache_resp_t;

/* A new answer (refs = 1), or NULL on ENOMEM. type and headers may be NULL. */
rbuf_t *cache_resp_new(int status, const char *type, const char *etag, const char *headers,
                       const void *body, size_t body_len);
static inline const cache_resp_t *cache_resp(const rbuf_t *b)
{
    return (const cache_resp_t *)b->data;
}
static inline const char *cache_resp_type(const rbuf_t *b)
{
    return b->data + sizeof(cache_resp_t);
}
static inline const char *cache_resp_etag(const rbuf_t *b)
{
    return cache_resp_type(b) + cache_resp(b)->type_len + 1;
}
static inline const char *cache_resp_headers(const rbuf_t *b)
{
    return cache_resp_etag(b) + cache_resp(b)->etag_len + 1;
}
static inline const char *cache_resp_body(const rbuf_t *b)
{
    return cache_resp_headers(b) + cache_resp(b)->headers_len + 1;
}

/* ---- etag.c ---- */
#define ETAG_SIZE 35 /* '"' + 32 hex digits + '"' + NUL */
/* A strong validator from the body: SHA-256 truncated to 128 bits, quoted (RFC 9110 §8.8.3). */
void etag_of(const void *body, size_t len, char out[ETAG_SIZE]);
/* If-None-Match against an ETag, with the weak comparison RFC 9110 §13.1.2 asks for: "*", or
 * any listed tag whose opaque part equals etag's (W/ ignored). */
int etag_matches(roost_str_t if_none_match, const char *etag);

/* ---- keys: method, path, query, then the value of each header the route varies on ---- */
/* Writes the key into out (cap bytes) and returns its length, or 0 when it does not fit. The
 * path comes first so the store can find every key of one path (eviction). */
size_t cache_key_make(char *out, size_t cap, roost_str_t method, roost_str_t path,
                      roost_str_t query, const roost_str_t *vary_values, int nvary);
uint64_t cache_hash(const void *p, size_t n);

/* ---- the store ---- */
typedef struct cache_store cache_store_t;

/* A request parked on a pending fill; embedded in the caller's context. */
typedef struct cache_waiter {
    struct cache_waiter *next;
} cache_waiter_t;

typedef struct {
    const char *key;
    size_t key_len, path_len; /* key[0 .. path_len) is the path */
} cache_key_t;

typedef enum {
    CACHE_HIT,   /* resp: a fresh answer */
    CACHE_STALE, /* resp: a stale answer within stale-while-revalidate; another request fills */
    CACHE_REVALIDATE, /* resp: a stale answer within stale-while-revalidate; nobody refills yet:
                       * the caller serves it and starts the one refill (cache_fill_done) */
    CACHE_FILL,       /* the caller fills (cache_fill_done); resp: a stale answer or NULL */
    CACHE_WAIT,       /* another request fills; the waiter is parked on it */
} cache_lookup_t;

typedef struct {
    rbuf_t *resp;          /* a reference the caller drops, or NULL */
    uint64_t stored_ns;    /* when resp was stored (for Age) */
    uint64_t sie_until_ns; /* a stale resp may stand in for an error until then */
} cache_found_t;

/* max_bytes bounds the entries' bytes (keys, answers, bookkeeping). NULL on ENOMEM. */
cache_store_t *cache_store_new(size_t max_bytes);
void cache_store_free(cache_store_t *s);
/* Counters to keep (any may be NULL): LRU evictions and the bytes held. */
void cache_store_counters(cache_store_t *s, roost_counter_t *lru_evictions, roost_counter_t *bytes);

/* Any thread. Looks the key up at time now (CLOCK_MONOTONIC ns); see cache_lookup_t. A request
 * that gets CACHE_FILL must end it with cache_fill_done, whatever happens. */
cache_lookup_t cache_lookup(cache_store_t *s, const cache_key_t *k, uint64_t now, cache_waiter_t *w,
                            cache_found_t *out);
/* Ends the fill of k: stores resp (a new reference is taken; NULL stores nothing, an error is
 * never cached) fresh until fresh_until, then servable stale until swr_until (while another
 * request refills) and in place of an error until sie_until. Returns the parked waiters, for
 * the caller to wake. */
cache_waiter_t *cache_fill_done(cache_store_t *s, const cache_key_t *k, rbuf_t *resp, uint64_t now,
                                uint64_t fresh_until, uint64_t swr_until, uint64_t sie_until);
/* Drops every entry of one path (any query, any variant). Returns how many. */
int cache_evict_path(cache_store_t *s, const char *path, size_t len);
size_t cache_store_bytes(const cache_store_t *s);
size_t cache_store_entries(const cache_store_t *s);

/* ---- a second level shared by every node: with --redis, a layer above (src/shared) keeps
 * answers in Redis; the local store stays the first level and the path without it ---- */
typedef enum {
    CACHE_REMOTE_HIT,  /* resp (a reference the callee drops): another node's answer */
    CACHE_REMOTE_FILL, /* nobody has it: this request fills (locked: it holds the nodes' lock) */
    CACHE_REMOTE_FAIL, /* no answer in time (err); fail_closed: answer 503, else fill */
} cache_remote_result_t;

typedef struct cache_remote_q {
    const cache_key_t *key; /* the request's */
    /* filled by the remote: */
    cache_remote_result_t result;
    rbuf_t *resp;
    uint64_t ttl_left_ns; /* a hit: how long it stays fresh */
    int locked, err, fail_closed;
} cache_remote_q_t;

typedef void (*cache_remote_done_fn)(struct roost_req *req, cache_remote_q_t *q);
typedef struct {
    /* On the loop from on_request: parks req (roost_req_wait), fills q, then calls done(req, q)
     * on the loop from a resume, once. < 0: nothing parked, done not called. */
    int (*lookup)(void *ud, struct roost_req *req, cache_remote_q_t *q, cache_remote_done_fn done);
    /* Any thread, no wait: stores resp (NULL: nothing, only let go of the lock when held). */
    void (*store)(void *ud, const cache_key_t *k, const rbuf_t *resp, uint64_t ttl_ns, int locked);
    /* Any thread, no wait: every node drops the path. */
    void (*evict)(void *ud, const char *path, size_t len);
    void *ud;
} cache_remote_t;
/* Main thread, before the loops run. 0 or -ENOMEM. */
int cache_set_remote(roost_server_t *srv, const cache_remote_t *ops);
/* Drops the path from this node's store only (what another node's eviction asks). */
int cache_evict_local(roost_server_t *srv, const char *path, size_t len);

#endif
