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

TEST(url_decode_keeps_plain_bytes_and_decodes_in_place)
{
    CHECK_EQ_STR(dec("%41%62%7e", 0), "Ab~");
    CHECK_EQ_STR(dec("%2B+", 1), "+ ");       /* an escaped plus stays a plus */
    CHECK_EQ_STR(dec("%25%32%30", 0), "%20"); /* decoded once, not twice */
    CHECK_EQ_STR(dec("caf\xc3\xa9", 0), "caf\xc3\xa9");
    char buf[] = "a%20b%2Fc";
    ssize_t n = url_decode(buf, buf, strlen(buf), 0);
    CHECK_EQ_INT(n, 5);
    CHECK(!memcmp(buf, "a b/c", 5));
}

TEST(url_decode_refuses_escapes_cut_short_at_any_point)
{
    CHECK_EQ_STR(dec("%4", 0), "<bad>");
    CHECK_EQ_STR(dec("%", 1), "<bad>");
    CHECK_EQ_STR(dec("a%2", 1), "<bad>");
    CHECK_EQ_STR(dec("%-1", 0), "<bad>");
    CHECK_EQ_STR(dec("%1G", 0), "<bad>");
    CHECK_EQ_STR(dec("% 1", 0), "<bad>");
    CHECK_EQ_STR(dec("%41", 0), "A"); /* the shortest complete escape */
    /* a length that stops inside an escape is refused even when the bytes go on */
    char out[8];
    CHECK_EQ_INT(url_decode(out, "%41", 2, 0), -1);
}

TEST(url_clean_path_merges_slashes_and_keeps_a_trailing_one)
{
    arena_t a = {0};
    CHECK_EQ_STR(clean(&a, "/"), "/");
    CHECK_EQ_STR(clean(&a, "//"), "/");
    CHECK_EQ_STR(clean(&a, "///a//b///"), "/a/b/");
    CHECK_EQ_STR(clean(&a, "/a/"), "/a/");
    CHECK_EQ_STR(clean(&a, "/a"), "/a");
    CHECK_EQ_STR(clean(&a, "/a/b/../"), "/a/");
    CHECK_EQ_STR(clean(&a, "/./"), "/");
    CHECK_EQ_STR(clean(&a, "/."), "/");
    CHECK_EQ_STR(clean(&a, "/.."), "/");
    arena_free(&a);
}

TEST(url_clean_path_never_climbs_above_the_root)
{
    arena_t a = {0};
    CHECK_EQ_STR(clean(&a, "/.."), "/");
    CHECK_EQ_STR(clean(&a, "/../.."), "/");
    CHECK_EQ_STR(clean(&a, "/a/../../../b"), "/b");
    CHECK_EQ_STR(clean(&a, "/static/../../../../etc/passwd"), "/etc/passwd");
    /* encoded dots and slashes are decoded first, then cleaned like the plain ones */
    CHECK_EQ_STR(clean(&a, "/%2e%2e/%2e%2e/etc/passwd"), "/etc/passwd");
    CHECK_EQ_STR(clean(&a, "/%2E./x"), "/x");
    CHECK_EQ_STR(clean(&a, "/a/.%2e/b"), "/b");
    CHECK_EQ_STR(clean(&a, "/..%2f..%2fetc%2fpasswd"), "/etc/passwd");
    CHECK_EQ_STR(clean(&a, "/a%2F..%2F..%2Fb"), "/b");
    /* segments that only look like dots are kept */
    CHECK_EQ_STR(clean(&a, "/.../a"), "/.../a");
    CHECK_EQ_STR(clean(&a, "/..a/.b"), "/..a/.b");
    CHECK_EQ_STR(clean(&a, "/a./b.."), "/a./b..");
    arena_free(&a);
}

TEST(url_clean_path_drops_the_query_and_the_absolute_form)
{
    arena_t a = {0};
    CHECK_EQ_STR(clean(&a, "/a/b?c=/../d"), "/a/b");
    CHECK_EQ_STR(clean(&a, "/?"), "/");
    CHECK_EQ_STR(clean(&a, "http://example.test/a/../b?x"), "/b");
    CHECK_EQ_STR(clean(&a, "HTTPS://example.test:8443/x/"), "/x/");
    CHECK_EQ_STR(clean(&a, "http://example.test"), "/");
    CHECK_EQ_STR(clean(&a, "/a+b"), "/a+b"); /* '+' is a space only in queries */
    arena_free(&a);
}

TEST(url_clean_path_refuses_targets_without_a_leading_slash)
{
    arena_t a = {0};
    CHECK_EQ_STR(clean(&a, ""), "<bad>");
    CHECK_EQ_STR(clean(&a, "a/b"), "<bad>");
    CHECK_EQ_STR(clean(&a, "*"), "<bad>");
    CHECK_EQ_STR(clean(&a, "?x=1"), "<bad>");
    CHECK_EQ_STR(clean(&a, "%2Fa"), "<bad>"); /* the slash must be literal */
    CHECK_EQ_STR(clean(&a, "/a%2"), "<bad>");
    arena_free(&a);
}

TEST(url_query_get_edge_cases)
{
    arena_t a = {0};
    CHECK_EQ_STR(q(&a, "a=1&ab=2", "ab"), "2");
    CHECK_EQ_STR(q(&a, "ab=1", "a"), "<none>");
    CHECK_EQ_STR(q(&a, "xa=1", "a"), "<none>");
    CHECK_EQ_STR(q(&a, "flag&x=1", "flag"), ""); /* a bare name has an empty value */
    CHECK_EQ_STR(q(&a, "x=1&flag", "flag"), "");
    CHECK_EQ_STR(q(&a, "&&a=1&&", "a"), "1");
    CHECK_EQ_STR(q(&a, "a=1=2", "a"), "1=2");         /* only the first '=' splits */
    CHECK_EQ_STR(q(&a, "my%20key=v", "my key"), "v"); /* names are decoded too */
    CHECK_EQ_STR(q(&a, "my+key=v", "my key"), "v");
    CHECK_EQ_STR(q(&a, "a=%zz&a=2", "a"), "<none>"); /* a malformed first value is refused */
    CHECK_EQ_STR(q(&a, "a=%00", "a"), "<none>");
    CHECK_EQ_STR(q(&a, "a=x%26y%3Dz", "a"), "x&y=z");
    CHECK_EQ_STR(q(&a, "A=1", "a"), "<none>"); /* case-sensitive */
    roost_str_t v = url_query_get(&a, str_make(NULL, 0), "a");
    CHECK(v.ptr == NULL);
    /* the query slice is not NUL-terminated: only len bytes count */
    v = url_query_get(&a, str_make("a=123&b=4", 4), "a");
    CHECK(v.ptr && v.len == 2 && !strcmp(v.ptr, "12"));
    CHECK(url_query_get(&a, str_make("a=123&b=4", 4), "b").ptr == NULL);
    arena_free(&a);
}

TEST(url_query_get_skips_names_too_long_to_compare)
{
    arena_t a = {0};
    char query[400], name[200];
    memset(name, 'n', 150);
    name[150] = '\0';
    snprintf(query, sizeof query, "%s=long&n=short", name);
    CHECK_EQ_STR(q(&a, query, "n"), "short");
    CHECK_EQ_STR(q(&a, query, name), "<none>"); /* names of 128 bytes and more are skipped */
    arena_free(&a);
}

/* url_split (src/base/url.c): connection URLs of --database and --redis. */
static int is(roost_str_t s, const char *want)
{
    return want ? s.ptr && s.len == strlen(want) && !memcmp(s.ptr, want, s.len) : !s.ptr;
}

TEST(url_split_gives_each_part_and_marks_absent_ones)
{
    url_parts_t u;
    CHECK_EQ_INT(url_split("postgresql://app:p@ss@db.local:5433/shop", &u), 0);
    CHECK(is(u.scheme, "postgresql") && is(u.user, "app") && is(u.password, "p@ss"));
    CHECK(u.has_password && is(u.host, "db.local") && is(u.port, "5433") && is(u.path, "shop"));
    CHECK_EQ_INT(url_split("redis://secret@h", &u), 0);
    CHECK(is(u.user, "secret") && !u.has_password && is(u.host, "h"));
    CHECK(is(u.port, NULL) && is(u.path, NULL));
    CHECK_EQ_INT(url_split("redis://h:/", &u), 0);
    CHECK(is(u.port, "") && is(u.path, ""));
    CHECK_EQ_INT(url_split("postgresql://u:pw@/db?host=/run/postgresql", &u), 0);
    CHECK(is(u.password, "pw") && u.host.len == 0 && is(u.path, "db?host=/run/postgresql"));
    CHECK_EQ_INT(url_split("host:1", &u), -EINVAL);
    CHECK_EQ_INT(url_split(NULL, &u), -EINVAL);
}
