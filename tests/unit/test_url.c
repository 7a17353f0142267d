/* Percent-decoding, path cleaning (no climbing above "/"), query lookup. */
#include "http/http.h"
#include "unit.h"

static const char *dec(const char *in, int plus)
{
    static char out[256];
    ssize_t n = url_decode(out, in, strlen(in), plus);
    if (n < 0)
        return "<bad>";
    out[n] = '\0';
    return out;
}

TEST(url_decode_escapes_and_plus)
{
    CHECK_EQ_STR(dec("a%20b", 0), "a b");
    CHECK_EQ_STR(dec("%2Fx%2f", 0), "/x/");
    CHECK_EQ_STR(dec("%c3%A9", 0), "\xc3\xa9");
    CHECK_EQ_STR(dec("a+b", 1), "a b");
    CHECK_EQ_STR(dec("a+b", 0), "a+b");
    CHECK_EQ_STR(dec("", 0), "");
}

TEST(url_decode_refuses_malformed_escapes_and_nul)
{
    CHECK_EQ_STR(dec("%G1", 0), "<bad>");
    CHECK_EQ_STR(dec("abc%4", 0), "<bad>");
    CHECK_EQ_STR(dec("%", 0), "<bad>");
    CHECK_EQ_STR(dec("a%00b", 0), "<bad>");
}

static const char *clean(arena_t *a, const char *in)
{
    roost_str_t s = url_clean_path(a, in, strlen(in));
    return s.ptr ? s.ptr : "<bad>";
}

TEST(url_clean_path_removes_dot_segments)
{
    arena_t a = {0};
    CHECK_EQ_STR(clean(&a, "/a/../b"), "/b");
    CHECK_EQ_STR(clean(&a, "/a/./b"), "/a/b");
    CHECK_EQ_STR(clean(&a, "/../../etc/passwd"), "/etc/passwd");
    CHECK_EQ_STR(clean(&a, "/a/b/../../.."), "/");
    CHECK_EQ_STR(clean(&a, "/%2e%2e/%2E%2e/x"), "/x");
    CHECK_EQ_STR(clean(&a, "/plaintext?x=1"), "/plaintext");
    CHECK_EQ_STR(clean(&a, "/a%20b"), "/a b");
    arena_free(&a);
}

TEST(url_clean_path_refuses_bad_escapes)
{
    arena_t a = {0};
    CHECK_EQ_STR(clean(&a, "/a%zz"), "<bad>");
    CHECK_EQ_STR(clean(&a, "/a%00"), "<bad>");
    arena_free(&a);
}

static const char *q(arena_t *a, const char *query, const char *name)
{
    roost_str_t v = url_query_get(a, str_make(query, strlen(query)), name);
    return v.ptr ? v.ptr : "<none>";
}

TEST(url_query_get_finds_and_decodes)
{
    arena_t a = {0};
    CHECK_EQ_STR(q(&a, "seconds=3&x=1", "seconds"), "3");
    CHECK_EQ_STR(q(&a, "ab=1&a=2", "a"), "2");
    CHECK_EQ_STR(q(&a, "a=1&a=2", "a"), "1");
    CHECK_EQ_STR(q(&a, "name=a+b%21", "name"), "a b!");
    CHECK_EQ_STR(q(&a, "empty=&x=1", "empty"), "");
    CHECK_EQ_STR(q(&a, "x=1", "missing"), "<none>");
    CHECK_EQ_STR(q(&a, "", "x"), "<none>");
    arena_free(&a);
}
