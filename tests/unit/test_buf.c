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
