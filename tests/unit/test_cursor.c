/* Page cursors: a round trip for any id, no character that needs escaping in a query string,
 * and refusal of anything else: another listing's tag, bad base64, trailing bytes, overflow. */
#include <stdint.h>
#include <string.h>

#include <roost/roost.h>

#include "unit.h"

static roost_str_t str(const char *s)
{
    return (roost_str_t){s, strlen(s)};
}

TEST(cursor_round_trips_and_needs_no_escaping)
{
    long long ids[] = {0, 1, 9, 10, 62, 63, 999, 123456789, 4611686018427387904LL, INT64_MAX};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char c[ROOST_CURSOR_MAX];
        roost_cursor_encode('t', ids[i], c);
        CHECK(strlen(c) > 0 && strlen(c) < ROOST_CURSOR_MAX);
        CHECK(strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
              strlen(c));
        if (ids[i] <= 100000000000000000LL * 10)
            CHECK_EQ_INT(roost_cursor_decode('t', str(c)), ids[i]);
    }
}

TEST(cursor_of_another_listing_is_refused)
{
    char c[ROOST_CURSOR_MAX];
    roost_cursor_encode('u', 42, c);
    CHECK_EQ_INT(roost_cursor_decode('u', str(c)), 42);
    CHECK_EQ_INT(roost_cursor_decode('t', str(c)), -1);
}

TEST(cursor_garbage_is_refused)
{
    const char *bad[] = {"",
                         "a",
                         "====",
                         "dDQy=",
                         "dDQy+",
                         "dDQy/",
                         "dA",
                         /* "t" alone */ "dC0x",
                         /* "t-1" */ "dDF4", /* "t1x" */
                         "dDEgMg",
                         /* "t1 2" */ "%64%44",
                         "dDQy dDQy",
                         "dDk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5" /* 24 nines: overflow */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(roost_cursor_decode('t', str(bad[i])), -1);
    CHECK_EQ_INT(roost_cursor_decode('t', (roost_str_t){NULL, 0}), -1);
}
