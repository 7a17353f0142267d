/* Per-address limits (src/net/iplimit.c): CIDR parsing, open connections counted and released,
 * the token bucket's burst and refill, trusted prefixes; and base64url (base), which the
 * WebSocket tokens decode with. */
#include "net/net.h"
#include "unit.h"

static void v4(unsigned char ip[16], unsigned a, unsigned b, unsigned c, unsigned d)
{
    memset(ip, 0, 16);
    ip[10] = ip[11] = 0xff;
    ip[12] = (unsigned char)a, ip[13] = (unsigned char)b, ip[14] = (unsigned char)c;
    ip[15] = (unsigned char)d;
}

TEST(cidr_parse_takes_v4_v6_and_bare_addresses_and_refuses_the_rest)
{
    unsigned char a[16], want[16];
    int bits;
    CHECK_EQ_INT(net_cidr_parse("10.1.0.0/16", 11, a, &bits), 0);
    v4(want, 10, 1, 0, 0);
    CHECK(memcmp(a, want, 16) == 0);
    CHECK_EQ_INT(bits, 96 + 16);
    CHECK_EQ_INT(net_cidr_parse(" 127.0.0.1 ", 11, a, &bits), 0);
    CHECK_EQ_INT(bits, 128);
    CHECK_EQ_INT(net_cidr_parse("2001:db8::/32", 13, a, &bits), 0);
    CHECK_EQ_INT(bits, 32);
    CHECK_EQ_INT(a[0], 0x20);
    CHECK_EQ_INT(a[1], 0x01);
    CHECK(net_cidr_parse("10.0.0.0/33", 11, a, &bits) < 0);
    CHECK(net_cidr_parse("::1/129", 7, a, &bits) < 0);
    CHECK(net_cidr_parse("300.0.0.1", 9, a, &bits) < 0);
    CHECK(net_cidr_parse("10.0.0.0/", 9, a, &bits) < 0);
    CHECK(net_cidr_parse("", 0, a, &bits) < 0);
}

TEST(iplimit_is_off_when_both_limits_are_zero)
{
    net_iplimit_opts_t o = {0};
    int err = 1;
    CHECK(net_iplimit_new(&o, &err) == NULL);
    CHECK_EQ_INT(err, 0);
}

/* A table with one of the two limits; both count into *hits (of the registry *k). */
static net_iplimit_t *limit_with(int max_conns, int new_per_s, counters_t **k,
                                 roost_counter_t **hits)
{
    *k = counters_new();
    *hits = counters_get(*k, "hits", NULL, NULL);
    net_iplimit_opts_t o = {max_conns, new_per_s, NULL, *hits, *hits};
    int err;
    net_iplimit_t *l = net_iplimit_new(&o, &err);
    CHECK(l != NULL);
    return l;
}

TEST(iplimit_counts_open_connections_per_address_and_releases_them)
{
    counters_t *k;
    roost_counter_t *hits;
    net_iplimit_t *l = limit_with(2, 0, &k, &hits);
    unsigned char a[16], b[16];
    v4(a, 192, 0, 2, 1);
    v4(b, 192, 0, 2, 2);
    CHECK_EQ_INT(net_iplimit_take(l, a, 0), 1);
    CHECK_EQ_INT(net_iplimit_take(l, a, 0), 1);
    CHECK_EQ_INT(net_iplimit_take(l, a, 0), -EBUSY);
    CHECK_EQ_INT(net_iplimit_take(l, b, 0), 1); /* another address */
    CHECK_EQ_INT(roost_counter_get(hits), 1);
    net_iplimit_release(l, a);
    CHECK_EQ_INT(net_iplimit_take(l, a, 0), 1);
    net_iplimit_release(l, a);
    net_iplimit_release(l, a);
    net_iplimit_release(l, b);
    net_iplimit_free(l);
    counters_free(k);
}

TEST(iplimit_new_connections_burst_twice_the_rate_then_refill)
{
    counters_t *k;
    roost_counter_t *hits;
    net_iplimit_t *l = limit_with(0, 5, &k, &hits);
    unsigned char a[16];
    v4(a, 198, 51, 100, 7);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(net_iplimit_take(l, a, 1000), 1);
        net_iplimit_release(l, a);
    }
    CHECK_EQ_INT(net_iplimit_take(l, a, 1000), -EBUSY);
    CHECK_EQ_INT(net_iplimit_take(l, a, 1100), -EBUSY); /* half a token */
    CHECK_EQ_INT(net_iplimit_take(l, a, 1200), 1);      /* 200 ms at 5/s: one */
    net_iplimit_release(l, a);
    CHECK_EQ_INT(roost_counter_get(hits), 2);
    net_iplimit_free(l);
    counters_free(k);
}

TEST(iplimit_trusted_prefixes_are_never_counted)
{
    net_iplimit_opts_t o = {.max_conns = 1, .trusted = "10.0.0.0/8, 2001:db8::/32"};
    int err;
    net_iplimit_t *l = net_iplimit_new(&o, &err);
    CHECK(l != NULL);
    unsigned char a[16];
    v4(a, 10, 200, 3, 4);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(net_iplimit_take(l, a, 0), 0);
    v4(a, 11, 0, 0, 1);
    CHECK_EQ_INT(net_iplimit_take(l, a, 0), 1);
    CHECK_EQ_INT(net_iplimit_take(l, a, 0), -EBUSY);
    net_iplimit_release(l, a);
    net_iplimit_free(l);
    o.trusted = "10.0.0.0/8,nonsense";
    CHECK(net_iplimit_new(&o, &err) == NULL);
    CHECK_EQ_INT(err, -EINVAL);
}

TEST(b64url_decode_unpadded_and_refuses_other_alphabets)
{
    unsigned char out[16];
    CHECK_EQ_INT(b64url_decode("aGk", 3, out, sizeof out), 2);
    CHECK(memcmp(out, "hi", 2) == 0);
    CHECK_EQ_INT(b64url_decode("-_-_", 4, out, sizeof out), 3);
    CHECK_EQ_INT(out[0], 0xfb);
    CHECK_EQ_INT(b64url_decode("", 0, out, sizeof out), 0);
    CHECK(b64url_decode("a+b/", 4, out, sizeof out) < 0);
    CHECK(b64url_decode("aGk=", 4, out, sizeof out) < 0);
    CHECK(b64url_decode("a", 1, out, sizeof out) < 0);
    CHECK(b64url_decode("aGVsbG8gd29ybGQ", 15, out, 4) < 0); /* more than cap */
}
