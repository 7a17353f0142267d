/* Unit tests of the incremental UTF-8 validator (src/ws/utf8.c): the Autobahn 6.x families,
 * failure at the earliest byte, state carried across pieces, the ASCII fast path, and an
 * exhaustive comparison with a plain decoder over short sequences. */
#include "unit.h"

#include "ws/ws.h"

#include <errno.h>

static int valid(const char *s)
{
    return ws_utf8_valid((const uint8_t *)s, strlen(s)) == 0;
}

/* Index of the byte at which feeding s one byte at a time fails, or -1 if it never does
 * (a truncated ending fails only at finish: -2). */
static long fail_index(const char *s)
{
    ws_utf8_t u;
    size_t n = strlen(s);
    ws_utf8_init(&u);
    for (size_t i = 0; i < n; i++)
        if (ws_utf8_feed(&u, (const uint8_t *)s + i, 1) < 0)
            return (long)i;
    return ws_utf8_finish(&u) < 0 ? -2 : -1;
}

/* A plain decoder, written differently from the DFA, as the reference: decode, then reject
 * overlong forms, surrogates and values above U+10FFFF. */
static int reference_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

TEST(ws_utf8_accepts_ascii_and_empty)
{
    CHECK(valid(""));
    CHECK(valid("Hello-\x7f\x01 world, all ASCII and longer than a word"));
}

TEST(ws_utf8_accepts_each_length_at_its_boundaries)
{
    CHECK(valid("\xc2\x80"));         /* U+0080 */
    CHECK(valid("\xdf\xbf"));         /* U+07FF */
    CHECK(valid("\xe0\xa0\x80"));     /* U+0800 */
    CHECK(valid("\xed\x9f\xbf"));     /* U+D7FF, just below the surrogates */
    CHECK(valid("\xee\x80\x80"));     /* U+E000, just above them */
    CHECK(valid("\xef\xbf\xbd"));     /* U+FFFD (Autobahn 6.23) */
    CHECK(valid("\xef\xbf\xbf"));     /* U+FFFF: a noncharacter, still valid (6.22) */
    CHECK(valid("\xf0\x90\x80\x80")); /* U+10000 */
    CHECK(valid("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
    CHECK(valid("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")); /* κόσμε, Autobahn 6.2 */
}

TEST(ws_utf8_rejects_overlong_forms)
{
    /* Autobahn 6.17-6.19: overlong "/", maximum overlongs, overlong NUL. */
    const char *bad[] = {"\xc0\xaf",
                         "\xe0\x80\xaf",
                         "\xf0\x80\x80\xaf",
                         "\xc1\xbf",
                         "\xe0\x9f\xbf",
                         "\xf0\x8f\xbf\xbf",
                         "\xc0\x80",
                         "\xe0\x80\x80",
                         "\xf0\x80\x80\x80",
                         "\xf8\x80\x80\x80\xaf",
                         "\xfc\x80\x80\x80\x80\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!valid(bad[i]));
}

TEST(ws_utf8_rejects_surrogates)
{
    /* Autobahn 6.20 (single) and 6.21 (paired, as CESU-8 would write them). */
    CHECK(!valid("\xed\xa0\x80"));
    CHECK(!valid("\xed\xad\xbf"));
    CHECK(!valid("\xed\xbf\xbf"));
    CHECK(!valid("\xed\xa0\x80\xed\xb0\x80"));
    CHECK(!valid("\xed\xaf\xbf\xed\xbf\xbf"));
}

TEST(ws_utf8_rejects_code_points_above_10ffff)
{
    CHECK(!valid("\xf4\x90\x80\x80")); /* U+110000 */
    CHECK(!valid("\xf7\xbf\xbf\xbf"));
    CHECK(!valid("\xf5\x80\x80\x80"));
    CHECK(!valid("\xf8\x88\x80\x80\x80")); /* 5- and 6-byte forms, Autobahn 6.8 */
    CHECK(!valid("\xfc\x84\x80\x80\x80\x80"));
}

TEST(ws_utf8_rejects_stray_continuations_and_impossible_bytes)
{
    CHECK(!valid("\x80")); /* Autobahn 6.10 */
    CHECK(!valid("\xbf"));
    CHECK(!valid("a\x80\xbf\x80"));
    CHECK(!valid("\xc0 ")); /* 6.13: lonely start followed by a space */
    CHECK(!valid("\xe0 \x80"));
    CHECK(!valid("\xfe")); /* 6.16 */
    CHECK(!valid("\xff"));
    CHECK(!valid("\xfe\xfe\xff\xff"));
    CHECK(!valid("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
                 "edited")); /* 6.3.1 */
}

TEST(ws_utf8_truncated_sequence_fails_only_at_finish)
{
    /* Autobahn 6.14/6.15: last byte missing. Each is a valid prefix until the end. */
    const char *cut[] = {"\xc2", "\xe0\xa0", "\xe1\x80", "\xf0\x90\x80", "\xf4\x8f\xbf", "ok\xf1"};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++)
        CHECK_EQ_INT(fail_index(cut[i]), -2);
}

TEST(ws_utf8_fails_at_the_earliest_byte_that_proves_it)
{
    CHECK_EQ_INT(fail_index("ab\xc0\x80"), 2);       /* C0 can start nothing */
    CHECK_EQ_INT(fail_index("\xe0\x80\x80"), 1);     /* overlong known at the second byte */
    CHECK_EQ_INT(fail_index("\xed\xa0\x80"), 1);     /* surrogate known at the second byte */
    CHECK_EQ_INT(fail_index("\xf0\x80\x80\x80"), 1); /* overlong */
    CHECK_EQ_INT(fail_index("\xf4\x90\x80\x80"), 1); /* above U+10FFFF */
    CHECK_EQ_INT(fail_index("\xf5\x80\x80\x80"), 0);
    CHECK_EQ_INT(fail_index("\xe1\x80 "), 2); /* sequence interrupted */
    CHECK_EQ_INT(fail_index("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80"), 12);
}

TEST(ws_utf8_errors_are_sticky)
{
    ws_utf8_t u;
    ws_utf8_init(&u);
    CHECK_EQ_INT(ws_utf8_feed(&u, (const uint8_t *)"\xff", 1), -EILSEQ);
    CHECK_EQ_INT(ws_utf8_feed(&u, (const uint8_t *)"fine", 4), -EILSEQ);
    CHECK_EQ_INT(ws_utf8_finish(&u), -EILSEQ);
}

TEST(ws_utf8_state_carries_across_every_split)
{
    const char *s = "a\xc2\x80\xe0\xa0\x80\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf\xed\x9f\xbf z";
    size_t n = strlen(s);
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            ws_utf8_t u;
            ws_utf8_init(&u);
            CHECK_EQ_INT(ws_utf8_feed(&u, (const uint8_t *)s, a), 0);
            CHECK_EQ_INT(ws_utf8_feed(&u, (const uint8_t *)s + a, b - a), 0);
            CHECK_EQ_INT(ws_utf8_feed(&u, (const uint8_t *)s + b, n - b), 0);
            CHECK_EQ_INT(ws_utf8_finish(&u), 0);
        }
}

TEST(ws_utf8_fast_path_finds_a_bad_byte_at_any_position_and_alignment)
{
    uint8_t buf[80];
    for (size_t align = 0; align < 8; align++)
        for (size_t pos = 0; pos < 64; pos++) {
            memset(buf, 'x', sizeof buf);
            buf[align + pos] = 0x80;
            CHECK_EQ_INT(ws_utf8_valid(buf + align, 64), -EILSEQ);
            buf[align + pos] = 0xC3; /* a good 2-byte sequence in the middle of ASCII */
            buf[align + pos + 1] = 0xA9;
            CHECK_EQ_INT(ws_utf8_valid(buf + align, 66), 0);
        }
}

TEST(ws_utf8_matches_a_plain_decoder_on_all_short_sequences)
{
    /* Every 1- and 2-byte sequence, every 3-byte one starting at C0 or above, and 4-byte ones
     * with every lead and second byte and a spread of the rest. */
    uint8_t s[4];
    int mismatches = 0;
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        mismatches += (ws_utf8_valid(s, 1) == 0) != reference_valid(s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            mismatches += (ws_utf8_valid(s, 2) == 0) != reference_valid(s, 2);
            if (a < 0xC0)
                continue;
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                mismatches += (ws_utf8_valid(s, 3) == 0) != reference_valid(s, 3);
                if (a < 0xF0)
                    continue;
                for (unsigned d = 0x70; d < 0xD0; d += 0x0F) {
                    s[3] = (uint8_t)d;
                    mismatches += (ws_utf8_valid(s, 4) == 0) != reference_valid(s, 4);
                }
            }
        }
    }
    CHECK_EQ_INT(mismatches, 0);
}
