/* The response cache's store and keys (src/mw/cache_store.c, etag.c): LRU order under the
 * byte bound, one fill per key with its waiters, windows, eviction by path, and keys that
 * differ whenever the request differs. */
#include "unit.h"

#include "mw/cache.h"

static cache_key_t key_of(char *buf, size_t cap, const char *path, const char *query,
                          const char *vary_value)
{
    roost_str_t v = {vary_value, vary_value ? strlen(vary_value) : 0};
    size_t n = cache_key_make(buf, cap, (roost_str_t){"GET", 3}, (roost_str_t){path, strlen(path)},
                              (roost_str_t){query, strlen(query)}, &v, 1);
    return (cache_key_t){buf, n, strlen(path)};
}

/* Fills key with a body of n bytes, fresh for an hour from now. */
static void put(cache_store_t *s, const cache_key_t *k, uint64_t now, size_t n)
{
    char body[2048];
    memset(body, 'b', n);
    cache_waiter_t w;
    cache_found_t f;
    CHECK_EQ_INT(cache_lookup(s, k, now, &w, &f), CACHE_FILL);
    rbuf_t *r = cache_resp_new(200, "application/json", "\"t\"", NULL, body, n);
    CHECK(cache_fill_done(s, k, r, now, now + 3600e9, now + 3600e9, now + 3600e9) == NULL);
    rbuf_unref(r);
    rbuf_unref(f.resp);
}

static int lookup(cache_store_t *s, const cache_key_t *k, uint64_t now)
{
    cache_waiter_t w;
    cache_found_t f;
    int rc = cache_lookup(s, k, now, &w, &f);
    if (rc == CACHE_FILL) /* give the fill back */
        cache_fill_done(s, k, NULL, now, 0, 0, 0);
    rbuf_unref(f.resp);
    return rc;
}

TEST(test_cache_keys_differ_by_path_query_and_vary_value)
{
    char a[256], b[256];
    cache_key_t ka = key_of(a, sizeof a, "/x", "q=1", "en");
    cache_key_t kb = key_of(b, sizeof b, "/x", "q=1", "en");
    CHECK(ka.key_len == kb.key_len && !memcmp(a, b, ka.key_len));
    kb = key_of(b, sizeof b, "/x", "q=2", "en");
    CHECK(ka.key_len != kb.key_len || memcmp(a, b, ka.key_len));
    kb = key_of(b, sizeof b, "/x", "q=1", "fr");
    CHECK(ka.key_len != kb.key_len || memcmp(a, b, ka.key_len));
    /* An absent header is not the same as an empty one. */
    ka = key_of(a, sizeof a, "/x", "", NULL);
    kb = key_of(b, sizeof b, "/x", "", "");
    CHECK(ka.key_len != kb.key_len || memcmp(a, b, ka.key_len));
    /* The path cannot bleed into the query: "/x" + "?" + "y" is not "/x?y" + "". */
    ka = key_of(a, sizeof a, "/xy", "", "en");
    kb = key_of(b, sizeof b, "/x", "y", "en");
    CHECK(ka.key_len != kb.key_len || memcmp(a, b, ka.key_len));
    CHECK_EQ_INT(cache_key_make(a, 4, (roost_str_t){"GET", 3}, (roost_str_t){"/long", 5},
                                (roost_str_t){"", 0}, NULL, 0),
                 0);
}

TEST(test_cache_lru_evicts_least_recently_used_under_the_bound)
{
    /* Entries of ~1.2 KB, a bound of 4 KB: three fit. */
    cache_store_t *s = cache_store_new(4096);
    char b1[64], b2[64], b3[64], b4[64];
    cache_key_t k1 = key_of(b1, 64, "/1", "", NULL), k2 = key_of(b2, 64, "/2", "", NULL);
    cache_key_t k3 = key_of(b3, 64, "/3", "", NULL), k4 = key_of(b4, 64, "/4", "", NULL);
    put(s, &k1, 1000, 1000);
    put(s, &k2, 2000, 1000);
    put(s, &k3, 3000, 1000);
    CHECK_EQ_INT(cache_store_entries(s), 3);
    CHECK_EQ_INT(lookup(s, &k1, 4000), CACHE_HIT); /* now 2 is the oldest */
    put(s, &k4, 5000, 1000);
    CHECK_EQ_INT(cache_store_entries(s), 3);
    CHECK(cache_store_bytes(s) <= 4096);
    CHECK_EQ_INT(lookup(s, &k1, 6000), CACHE_HIT);
    CHECK_EQ_INT(lookup(s, &k3, 6000), CACHE_HIT);
    CHECK_EQ_INT(lookup(s, &k4, 6000), CACHE_HIT);
    CHECK_EQ_INT(lookup(s, &k2, 6000), CACHE_FILL);
    /* An answer larger than the whole bound is not stored, and evicts nothing. */
    cache_store_t *tiny = cache_store_new(512);
    put(tiny, &k1, 1000, 1000);
    CHECK_EQ_INT(cache_store_entries(tiny), 0);
    cache_store_free(tiny);
    cache_store_free(s);
}

TEST(test_cache_one_fill_per_key_and_its_waiters)
{
    cache_store_t *s = cache_store_new(1 << 20);
    char b[64];
    cache_key_t k = key_of(b, 64, "/e", "", NULL);
    cache_waiter_t w0, w1, w2;
    cache_found_t f;
    CHECK_EQ_INT(cache_lookup(s, &k, 10, &w0, &f), CACHE_FILL);
    CHECK_EQ_INT(cache_lookup(s, &k, 11, &w1, &f), CACHE_WAIT);
    CHECK_EQ_INT(cache_lookup(s, &k, 12, &w2, &f), CACHE_WAIT);
    /* An error is not stored: the waiters come back in order, and the next lookup fills. */
    cache_waiter_t *w = cache_fill_done(s, &k, NULL, 20, 100, 100, 100);
    CHECK(w == &w1 && w->next == &w2 && w2.next == NULL);
    CHECK_EQ_INT(cache_store_entries(s), 0);
    CHECK_EQ_INT(cache_lookup(s, &k, 30, &w0, &f), CACHE_FILL);
    rbuf_t *r = cache_resp_new(200, NULL, "\"e\"", "ETag: \"e\"\r\n", "ok", 2);
    CHECK(cache_fill_done(s, &k, r, 40, 100, 200, 300) == NULL);
    rbuf_unref(r);
    /* Fresh until 100, stale (while another refills) until 200, for errors until 300. */
    CHECK_EQ_INT(cache_lookup(s, &k, 99, &w0, &f), CACHE_HIT);
    CHECK(f.resp && cache_resp(f.resp)->body_len == 2 && !memcmp(cache_resp_body(f.resp), "ok", 2));
    CHECK_EQ_STR(cache_resp_etag(f.resp), "\"e\"");
    CHECK_EQ_STR(cache_resp_headers(f.resp), "ETag: \"e\"\r\n");
    rbuf_unref(f.resp);
    /* Stale within swr: this one is served stale and refills in the background. */
    CHECK_EQ_INT(cache_lookup(s, &k, 150, &w0, &f), CACHE_REVALIDATE);
    CHECK(f.resp != NULL);
    rbuf_unref(f.resp);
    CHECK_EQ_INT(cache_lookup(s, &k, 151, &w1, &f), CACHE_STALE); /* the others: stale */
    rbuf_unref(f.resp);
    cache_fill_done(s, &k, NULL, 160, 0, 0, 0);
    CHECK_EQ_INT(cache_lookup(s, &k, 250, &w0, &f), CACHE_FILL);
    CHECK(f.resp != NULL && f.sie_until_ns == 300); /* may stand in for an error */
    rbuf_unref(f.resp);
    CHECK_EQ_INT(cache_lookup(s, &k, 251, &w1, &f), CACHE_WAIT); /* past swr: wait */
    cache_fill_done(s, &k, NULL, 260, 0, 0, 0);
    CHECK_EQ_INT(lookup(s, &k, 400), CACHE_FILL); /* past every window: gone */
    CHECK_EQ_INT(cache_store_entries(s), 0);
    cache_store_free(s);
}

TEST(test_cache_evict_path_drops_every_variant_of_that_path_only)
{
    cache_store_t *s = cache_store_new(1 << 20);
    char b[4][64];
    cache_key_t k[4] = {
        key_of(b[0], 64, "/users/1", "", "en"), key_of(b[1], 64, "/users/1", "a=b", "fr"),
        key_of(b[2], 64, "/users/10", "", "en"), key_of(b[3], 64, "/users/1/profile", "", "en")};
    for (int i = 0; i < 4; i++)
        put(s, &k[i], 1, 10);
    CHECK_EQ_INT(cache_evict_path(s, "/users/1", 8), 2);
    CHECK_EQ_INT(lookup(s, &k[2], 2), CACHE_HIT);
    CHECK_EQ_INT(lookup(s, &k[3], 2), CACHE_HIT);
    CHECK_EQ_INT(lookup(s, &k[0], 2), CACHE_FILL);
    cache_store_free(s);
}

TEST(test_etag_if_none_match_lists_weak_and_star)
{
    char t[ETAG_SIZE], u[ETAG_SIZE];
    etag_of("hello", 5, t);
    etag_of("hellp", 5, u);
    CHECK(strlen(t) == 34 && t[0] == '"' && t[33] == '"');
    CHECK(strcmp(t, u) != 0);
    char list[128];
    snprintf(list, sizeof list, "\"x\", W/%s", t);
    CHECK(etag_matches((roost_str_t){list, strlen(list)}, t));
    CHECK(!etag_matches((roost_str_t){list, strlen(list)}, u));
    CHECK(etag_matches((roost_str_t){"*", 1}, u));
    CHECK(!etag_matches((roost_str_t){NULL, 0}, u));
    CHECK(!etag_matches((roost_str_t){"\"", 1}, u));
}
