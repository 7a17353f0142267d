/* GCRA arithmetic (burst, steady rate, retry times, remaining), the --rate-limit spec parser and
 * the bounded table of clients (keys apart, least recently seen forgotten first). */
#include <errno.h>

#include "mw/mw.h"
#include "unit.h"

#define S 1000000000LL /* one second in ns */

/* 10 a minute, bursts of 10: T = 6 s. */
static const mw_gcra_t ten_a_minute = {.interval_ns = 6 * S, .burst = 10};

TEST(gcra_allows_the_burst_then_refuses_the_next_with_its_retry_time)
{
    int64_t now = 1000 * S, tat = 0;
    mw_gcra_result_t r;
    for (int i = 0; i < 10; i++) {
        mw_gcra_check(&ten_a_minute, tat, now, &r);
        CHECK(r.allowed);
        CHECK_EQ_INT(r.remaining, 9 - i);
        tat = r.tat;
    }
    CHECK_EQ_INT(tat, now + 60 * S);                /* full again in a minute */
    mw_gcra_check(&ten_a_minute, tat, now + S, &r); /* the 11th, a second later */
    CHECK(!r.allowed);
    CHECK_EQ_INT(r.remaining, 0);
    CHECK_EQ_INT(r.retry_ns, 5 * S); /* one request's share (6 s) after the first, less 1 s */
    CHECK_EQ_INT(r.tat, tat);        /* a refused request is not charged */
    CHECK_EQ_INT(mw_ceil_s(r.retry_ns), 5);
    CHECK_EQ_INT(r.reset_ns, 59 * S);
}

TEST(gcra_lets_a_refused_client_in_exactly_at_retry_after)
{
    int64_t now = 50 * S, tat = 0;
    mw_gcra_result_t r;
    for (int i = 0; i < 10; i++) {
        mw_gcra_check(&ten_a_minute, tat, now, &r);
        tat = r.tat;
    }
    mw_gcra_check(&ten_a_minute, tat, now, &r);
    CHECK(!r.allowed);
    int64_t at = now + r.retry_ns;
    mw_gcra_check(&ten_a_minute, tat, at - 1, &r);
    CHECK(!r.allowed);
    mw_gcra_check(&ten_a_minute, tat, at, &r);
    CHECK(r.allowed);
    CHECK_EQ_INT(r.remaining, 0);
}

TEST(gcra_refills_one_request_per_interval)
{
    int64_t now = 7 * S, tat = 0;
    mw_gcra_result_t r;
    for (int i = 0; i < 10; i++) {
        mw_gcra_check(&ten_a_minute, tat, now, &r);
        tat = r.tat;
    }
    /* 18 s later three requests' shares are back: this one and two more. */
    mw_gcra_check(&ten_a_minute, tat, now + 18 * S, &r);
    CHECK(r.allowed);
    CHECK_EQ_INT(r.remaining, 2);
    CHECK_EQ_INT(r.window_ns, 6 * S); /* the next share comes back 6 s later */
    /* A client idle for longer than the burst's span starts full again. */
    mw_gcra_check(&ten_a_minute, r.tat, now + 600 * S, &r);
    CHECK(r.allowed);
    CHECK_EQ_INT(r.remaining, 9);
    CHECK_EQ_INT(r.reset_ns, 6 * S);
}

TEST(gcra_without_burst_spaces_requests_evenly)
{
    const mw_gcra_t g = {.interval_ns = S / 2, .burst = 1}; /* 2/s burst=1 */
    mw_gcra_result_t r;
    mw_gcra_check(&g, 0, 10 * S, &r);
    CHECK(r.allowed);
    CHECK_EQ_INT(r.remaining, 0);
    int64_t tat = r.tat;
    mw_gcra_check(&g, tat, 10 * S + S / 4, &r);
    CHECK(!r.allowed);
    CHECK_EQ_INT(r.retry_ns, S / 4);
    CHECK_EQ_INT(mw_ceil_s(r.retry_ns), 1); /* never promises a time that is too early */
    mw_gcra_check(&g, tat, 10 * S + S / 2, &r);
    CHECK(r.allowed);
}

TEST(rl_policy_parses_every_part)
{
    mw_rl_policy_t p;
    char err[128];
    CHECK_EQ_INT(mw_rl_policy_parse("/api/* rate=10/m burst=20 key=header:X-Client-ID shadow "
                                    "name=api",
                                    &p, err, sizeof err),
                 0);
    CHECK_EQ_STR(p.glob, "/api/*");
    CHECK_EQ_INT(p.count, 10);
    CHECK_EQ_INT(p.window_s, 60);
    CHECK_EQ_INT(p.gcra.burst, 20);
    CHECK_EQ_INT(p.gcra.interval_ns, 6 * S);
    CHECK_EQ_INT(p.key, MW_KEY_HEADER);
    CHECK_EQ_STR(p.header, "X-Client-ID");
    CHECK(p.shadow);
    CHECK_EQ_STR(p.name, "api");
    mw_rl_policy_clear(&p);

    CHECK_EQ_INT(mw_rl_policy_parse("rate=5/h key=api-key", &p, err, sizeof err), 0);
    CHECK(p.glob == NULL);
    CHECK_EQ_INT(p.gcra.burst, 5); /* default: the count */
    CHECK_EQ_INT(p.gcra.interval_ns, 720 * S);
    CHECK_EQ_INT(p.key, MW_KEY_API_KEY);
    CHECK(!p.shadow);
    mw_rl_policy_clear(&p);
}

TEST(rl_policy_refuses_what_does_not_parse)
{
    mw_rl_policy_t p;
    char err[128];
    const char *bad[] = {
        "/x",                  /* no rate */
        "/x rate=10",          /* no unit */
        "/x rate=10/d",        /* unknown unit */
        "/x rate=0/s",         /* zero */
        "/x rate=-1/s",        /* sign */
        "/x rate=1/s burst=0", /* zero burst */
        "/x rate=1/s key=cookie",
        "/x rate=1/s key=header:",
        "/x rate=1/s key=header:a b",
        "/x rate=1/s name=a\"b", /* would break the RateLimit field's string */
        "/x rate=1/s fast",      /* unknown word */
        "/x /y rate=1/s",        /* a second glob */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = mw_rl_policy_parse(bad[i], &p, err, sizeof err);
        if (rc != -EINVAL)
            fprintf(stderr, "    accepted: %s\n", bad[i]);
        CHECK_EQ_INT(rc, -EINVAL);
        CHECK(err[0] != '\0');
    }
}

TEST(rl_table_keeps_clients_and_policies_apart)
{
    mw_rl_table_t *t = mw_rl_table_new(1000);
    const mw_gcra_t g = {.interval_ns = S, .burst = 2};
    mw_gcra_result_t r;
    int64_t now = 100 * S;
    mw_rl_table_check(t, 0, "a", 1, &g, now, &r);
    mw_rl_table_check(t, 0, "a", 1, &g, now, &r);
    CHECK(r.allowed);
    mw_rl_table_check(t, 0, "a", 1, &g, now, &r);
    CHECK(!r.allowed); /* a has used its burst */
    mw_rl_table_check(t, 0, "b", 1, &g, now, &r);
    CHECK(r.allowed); /* b has not */
    mw_rl_table_check(t, 1, "a", 1, &g, now, &r);
    CHECK(r.allowed); /* nor has a under another policy */
    CHECK_EQ_INT(mw_rl_table_keys(t), 3);
    mw_rl_table_free(t);
}

TEST(rl_table_forgets_the_least_recently_seen_when_full)
{
    mw_rl_table_t *t = mw_rl_table_new(1); /* one stripe of one key */
    const mw_gcra_t g = {.interval_ns = 60 * S, .burst = 1};
    mw_gcra_result_t r;
    int64_t now = 5 * S;
    mw_rl_table_check(t, 0, "a", 1, &g, now, &r);
    mw_rl_table_check(t, 0, "a", 1, &g, now, &r);
    CHECK(!r.allowed);
    mw_rl_table_check(t, 0, "b", 1, &g, now, &r); /* takes a's place */
    CHECK(r.allowed);
    CHECK_EQ_INT(mw_rl_table_keys(t), 1);
    long live, expired;
    mw_rl_table_evictions(t, &live, &expired);
    CHECK_EQ_INT(live, 1); /* a was still limited: counted as state lost */
    CHECK_EQ_INT(expired, 0);
    mw_rl_table_check(t, 0, "a", 1, &g, now, &r);
    CHECK(r.allowed); /* forgotten: a fresh burst */
    mw_rl_table_free(t);
}

TEST(rl_table_holds_long_keys_by_hash)
{
    mw_rl_table_t *t = mw_rl_table_new(64);
    const mw_gcra_t g = {.interval_ns = S, .burst = 1};
    char k1[300], k2[300];
    memset(k1, 'x', sizeof k1);
    memcpy(k2, k1, sizeof k2);
    k2[299] = 'y'; /* differs only in its last byte */
    mw_gcra_result_t r;
    mw_rl_table_check(t, 0, k1, sizeof k1, &g, S, &r);
    mw_rl_table_check(t, 0, k1, sizeof k1, &g, S, &r);
    CHECK(!r.allowed);
    mw_rl_table_check(t, 0, k2, sizeof k2, &g, S, &r);
    CHECK(r.allowed);
    mw_rl_table_free(t);
}

/* The hash reads keys of 1-3, 4-7, 8-16 and more bytes differently (overlapping words): a key
 * of every length, and one byte changed at every place, is each a client of its own. */
TEST(rl_table_tells_apart_keys_of_every_length_and_every_byte)
{
    mw_rl_table_t *t = mw_rl_table_new(4096);
    const mw_gcra_t g = {.interval_ns = S, .burst = 1};
    mw_gcra_result_t r;
    char k[40];
    memset(k, 'a', sizeof k);
    size_t n = 0;
    for (size_t len = 0; len <= sizeof k; len++, n++) {
        mw_rl_table_check(t, 0, k, len, &g, S, &r);
        CHECK(r.allowed); /* "aaa" is not "aa" */
    }
    for (size_t len = 1; len <= sizeof k; len++)
        for (size_t at = 0; at < len; at++, n++) {
            k[at] = 'b';
            mw_rl_table_check(t, 0, k, len, &g, S, &r);
            CHECK(r.allowed);
            k[at] = 'a';
        }
    CHECK_EQ_INT(mw_rl_table_keys(t), n);
    mw_rl_table_check(t, 0, k, 17, &g, S, &r); /* each is still remembered: refused now */
    CHECK(!r.allowed);
    mw_rl_table_free(t);
}

/* A client whose bucket is full (new, or idle a whole burst's span) takes the short path: the
 * same answer as the formula gives one nanosecond into a bucket that is not quite full. */
TEST(gcra_full_bucket_answers_like_the_formula)
{
    int64_t now = 100 * S;
    mw_gcra_result_t full, almost;
    mw_gcra_check(&ten_a_minute, now - 1, now, &full);
    CHECK(full.allowed);
    CHECK_EQ_INT(full.remaining, 9);
    CHECK_EQ_INT(full.window_ns, 6 * S);
    CHECK_EQ_INT(full.reset_ns, 6 * S);
    CHECK_EQ_INT(full.tat, now + 6 * S);
    mw_gcra_check(&ten_a_minute, now + 1, now, &almost); /* 1 ns of one share still in use */
    CHECK(almost.allowed);
    CHECK_EQ_INT(almost.remaining, 8);
    CHECK_EQ_INT(almost.window_ns, 1); /* the 9th share is back 1 ns later */
    CHECK_EQ_INT(almost.reset_ns, 6 * S + 1);
}
