/* The buffer types: reference-counted rbuf, growable sbuf, and the request arena. */
#include "base/base.h"
#include "unit.h"

TEST(rbuf_copies_and_counts_references)
{
    rbuf_t *b = rbuf_from("hello", 5);
    CHECK(b != NULL);
    CHECK_EQ_INT(b->len, 5);
    CHECK(!memcmp(b->data, "hello", 5));
    CHECK_EQ_INT(b->data[5], '\0');
    CHECK(rbuf_ref(b) == b);
    CHECK_EQ_INT(atomic_load(&b->refs), 2);
    rbuf_unref(b);
    CHECK_EQ_INT(atomic_load(&b->refs), 1);
    rbuf_unref(b); /* freed: ASan would report a leak otherwise */
    rbuf_unref(NULL);
}

TEST(sbuf_grows_and_formats)
{
    sbuf_t s = {0};
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(sbuf_append(&s, "abc", 3), 0);
    CHECK_EQ_INT(s.len, 3000);
    CHECK(s.cap >= 3000);
    CHECK(!memcmp(s.p + 2997, "abc", 3));
    s.len = 0;
    CHECK_EQ_INT(sbuf_printf(&s, "%d-%s", 42, "x"), 0);
    CHECK_EQ_INT(s.len, 4);
    CHECK(!memcmp(s.p, "42-x", 4));
    sbuf_puts(&s, "!");
    CHECK_EQ_INT(s.len, 5);
    sbuf_free(&s);
    CHECK(s.p == NULL);
}

TEST(mem_grow_doubles_but_stops_at_the_limit)
{
    size_t cap = 0;
    char *p = mem_grow(NULL, &cap, 10, 16, 1000);
    CHECK(p != NULL);
    CHECK_EQ_INT(cap, 16);
    p = mem_grow(p, &cap, 600, 16, 1000); /* 16, 32, ..., 1024 would pass the limit */
    CHECK(p != NULL);
    CHECK_EQ_INT(cap, 1000);
    memset(p, 'x', cap);
    p = mem_grow(p, &cap, 1500, 16, 1000); /* above the limit: doubling is all it does */
    CHECK(p != NULL);
    CHECK_EQ_INT(cap, 2000);
    free(p);
}

TEST(arena_aligns_resets_and_keeps_one_chunk)
{
    arena_t a = {0};
    char *p1 = arena_alloc(&a, 3);
    char *p2 = arena_alloc(&a, 5);
    CHECK(p1 && p2);
    CHECK_EQ_INT((uintptr_t)p1 % 16, 0);
    CHECK_EQ_INT((uintptr_t)p2 % 16, 0);
    CHECK(p2 >= p1 + 16);
    char *big = arena_alloc(&a, 100000); /* its own chunk */
    CHECK(big != NULL);
    memset(big, 1, 100000);
    char *s = arena_strndup(&a, "abcdef", 3);
    CHECK_EQ_STR(s, "abc");
    arena_reset(&a);
    char *again = arena_alloc(&a, 8); /* from the kept chunk */
    CHECK(again != NULL);
    arena_free(&a);
    CHECK(a.head == NULL);
}

TEST(rbuf_new_is_empty_with_room_and_shared_between_owners)
{
    rbuf_t *b = rbuf_new(64);
    CHECK(b != NULL);
    CHECK_EQ_INT(b->len, 0);
    CHECK_EQ_INT(b->cap, 64);
    CHECK_EQ_INT(atomic_load(&b->refs), 1);
    memcpy(b->data, "frame", 5); /* the owner fills it before sharing */
    b->len = 5;
    rbuf_t *owners[4];
    for (int i = 0; i < 4; i++)
        owners[i] = rbuf_ref(b);
    CHECK_EQ_INT(atomic_load(&b->refs), 5);
    rbuf_unref(b);
    for (int i = 0; i < 3; i++)
        rbuf_unref(owners[i]);
    CHECK_EQ_INT(atomic_load(&owners[3]->refs), 1);
    CHECK(!memcmp(owners[3]->data, "frame", 5)); /* still alive for the last owner */
    rbuf_unref(owners[3]);
}

TEST(rbuf_from_empty_and_binary)
{
    rbuf_t *e = rbuf_from(NULL, 0);
    CHECK(e != NULL);
    CHECK_EQ_INT(e->len, 0);
    CHECK_EQ_INT(e->data[0], '\0');
    rbuf_unref(e);
    const char bin[] = {'a', '\0', 'b', '\xff'};
    rbuf_t *b = rbuf_from(bin, sizeof bin);
    CHECK_EQ_INT(b->len, 4);
    CHECK(!memcmp(b->data, bin, 4));
    CHECK_EQ_INT(b->data[4], '\0');
    rbuf_unref(b);
}

TEST(sbuf_reserve_keeps_contents_and_room_for_a_nul)
{
    sbuf_t s = {0};
    CHECK_EQ_INT(sbuf_reserve(&s, 0), 0);
    CHECK(s.p != NULL);
    CHECK(s.cap >= 1);
    CHECK_EQ_INT(sbuf_append(&s, "xyz", 3), 0);
    size_t cap = s.cap;
    CHECK_EQ_INT(sbuf_reserve(&s, cap - 4), 0); /* exactly fits with the NUL */
    CHECK_EQ_INT(s.cap, cap);
    CHECK_EQ_INT(sbuf_reserve(&s, cap - 3), 0); /* one more: grows */
    CHECK(s.cap > cap);
    CHECK(s.cap >= 3 + (cap - 3) + 1);
    CHECK(!memcmp(s.p, "xyz", 3));
    CHECK_EQ_INT(s.len, 3);
    CHECK_EQ_INT(sbuf_reserve(&s, 100000), 0);
    CHECK(s.cap >= 100004);
    CHECK(!memcmp(s.p, "xyz", 3));
    sbuf_free(&s);
    CHECK_EQ_INT(s.cap, 0);
    CHECK_EQ_INT(s.len, 0);
}

TEST(sbuf_append_is_always_nul_terminated)
{
    sbuf_t s = {0};
    CHECK_EQ_INT(sbuf_append(&s, "", 0), 0);
    CHECK_EQ_STR(s.p, "");
    CHECK_EQ_INT(sbuf_puts(&s, "ab"), 0);
    CHECK_EQ_INT(sbuf_append(&s, "cdef", 2), 0);
    CHECK_EQ_STR(s.p, "abcd");
    CHECK_EQ_INT(s.len, 4);
    sbuf_free(&s);
}

TEST(sbuf_printf_longer_than_its_stack_buffer)
{
    sbuf_t s = {0};
    char big[1000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ_INT(sbuf_puts(&s, "<"), 0);
    CHECK_EQ_INT(sbuf_printf(&s, "%s|%d", big, 7), 0); /* 1001 bytes: the second vsnprintf */
    CHECK_EQ_INT(s.len, 1 + 999 + 2);
    CHECK_EQ_INT(s.p[0], '<');
    CHECK_EQ_INT(s.p[999], 'q');
    CHECK_EQ_STR(s.p + 1000, "|7");
    /* exactly 255 and 256 formatted bytes: either side of the stack buffer */
    for (int n = 255; n <= 256; n++) {
        s.len = 0;
        CHECK_EQ_INT(sbuf_printf(&s, "%.*s", n, big), 0);
        CHECK_EQ_INT(s.len, n);
        CHECK_EQ_INT(s.p[n], '\0');
        CHECK_EQ_INT(s.p[n - 1], 'q');
    }
    sbuf_free(&s);
}

TEST(arena_many_small_allocations_are_distinct_and_aligned)
{
    arena_t a = {0};
    char *ptrs[1000];
    for (int i = 0; i < 1000; i++) {
        ptrs[i] = arena_alloc(&a, (size_t)(i % 40) + 1);
        CHECK(ptrs[i] != NULL);
        CHECK_EQ_INT((uintptr_t)ptrs[i] % 16, 0);
        memset(ptrs[i], i & 0xff, (size_t)(i % 40) + 1);
    }
    /* nothing overlapped: every block still holds its own byte */
    for (int i = 0; i < 1000; i++)
        for (int k = 0; k < i % 40 + 1; k++)
            if (ptrs[i][k] != (char)(i & 0xff)) {
                CHECK(!"overlap");
                i = 1000;
                break;
            }
    arena_free(&a);
    CHECK(a.head == NULL && a.cur == NULL && a.end == NULL);
}

TEST(arena_reset_reuses_the_kept_chunk)
{
    arena_t a = {0};
    for (int i = 0; i < 50; i++)
        CHECK(arena_alloc(&a, 1000) != NULL); /* several standard chunks */
    CHECK(arena_alloc(&a, 50000) != NULL);    /* and one of its own */
    arena_reset(&a);
    CHECK(a.head != NULL);
    CHECK_EQ_INT(a.end - a.cur, 4096); /* one whole standard chunk, empty */
    char *start = a.cur;
    char *again = arena_alloc(&a, 16);
    CHECK(again == start);
    CHECK(arena_alloc(&a, 4096 - 16) == start + 16); /* fills it exactly */
    CHECK(a.cur == a.end);
    arena_reset(&a);
    arena_reset(&a); /* twice is fine */
    CHECK(a.cur == start);
    arena_free(&a);
    arena_free(&a); /* and so is freeing a freed arena */
    CHECK(a.head == NULL);
    arena_t empty = {0};
    arena_reset(&empty);
    CHECK(empty.head == NULL && empty.cur == NULL);
    CHECK(arena_alloc(&empty, 0) != NULL);
    arena_free(&empty);
}

TEST(arena_strndup_copies_and_terminates)
{
    arena_t a = {0};
    char *s = arena_strndup(&a, "hello world", 5);
    CHECK_EQ_STR(s, "hello");
    char *e = arena_strndup(&a, "x", 0);
    CHECK_EQ_STR(e, "");
    CHECK(s != e);
    arena_free(&a);
}

TEST(arena_refuses_sizes_that_would_wrap)
{
    arena_t a = {0};
    CHECK(arena_alloc(&a, SIZE_MAX) == NULL);
    CHECK(arena_alloc(&a, SIZE_MAX - 7) == NULL); /* rounded up to 16, this used to wrap to 0 */
    CHECK(arena_alloc(&a, 32) != NULL);
    arena_free(&a);
}

TEST(str_put_uint_writes_every_length_like_printf)
{
    uint64_t vals[] = {
        0,         9,     10,    99,    100,    101,     999,         1000,
        9999,      10000, 12345, 99999, 100000, 1000000, 4294967295u, 10000000000000000000ull,
        UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        char got[32], want[32];
        char *end = str_put_uint(got, vals[i]);
        *end = 0;
        snprintf(want, sizeof want, "%llu", (unsigned long long)vals[i]);
        CHECK_EQ_STR(got, want);
    }
    for (uint64_t v = 0; v < 100000; v += 7) { /* every length and digit pair */
        char got[32], want[32];
        *str_put_uint(got, v) = 0;
        snprintf(want, sizeof want, "%llu", (unsigned long long)v);
        CHECK_EQ_STR(got, want);
    }
}
