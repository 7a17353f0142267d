/* Unit tests of the opening handshake (src/ws/handshake.c, RFC 6455 §4.2): each refusal and its
 * status, the §1.3 accept key, the 101 head, origin checks and what counts as an attempt. */
#include "unit.h"

#include "ws/ws.h"

#include <errno.h>
#include <strings.h>

/* A request is a method, a version and up to 8 "Name", "value" pairs; NULL values are absent. */
typedef struct {
    const char *fields[16];
} headers_t;

static ws_slice_t lookup(void *ud, const char *name)
{
    const headers_t *h = ud;
    for (int i = 0; i < 16 && h->fields[i]; i += 2)
        if (strcasecmp(h->fields[i], name) == 0 && h->fields[i + 1])
            return (ws_slice_t){h->fields[i + 1], strlen(h->fields[i + 1])};
    return (ws_slice_t){NULL, 0};
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

/* The §1.3 request, with field i's value replaced by value (i < 0: none replaced). */
static headers_t good(int i, const char *value)
{
    headers_t h = {{"Host", "server.example.com", "Upgrade", "websocket", "Connection", "Upgrade",
                    "Sec-WebSocket-Key", KEY, "Origin", "http://example.com",
                    "Sec-WebSocket-Version", "13"}};
    if (i >= 0)
        h.fields[2 * i + 1] = value;
    return h;
}
enum { F_HOST, F_UPGRADE, F_CONNECTION, F_KEY, F_ORIGIN, F_VERSION };

static int status_of(const char *method, int major, int minor, headers_t h, const char *origins)
{
    ws_request_t req = {method, major, minor, lookup, &h};
    ws_handshake_t hs;
    int rc = ws_handshake(&req, origins, &hs);
    CHECK((rc == 0) == (hs.status == 101));
    CHECK(hs.reason != NULL);
    return hs.status;
}

static int status(headers_t h)
{
    return status_of("GET", 1, 1, h, NULL);
}

TEST(ws_rfc_1_3_example_key_gives_its_accept)
{
    char out[WS_ACCEPT_LEN + 1];
    CHECK_EQ_INT(ws_accept_key(KEY, strlen(KEY), out), 0);
    CHECK_EQ_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(ws_rfc_1_3_request_is_accepted_with_its_101_head)
{
    headers_t h = good(-1, NULL);
    ws_request_t req = {"GET", 1, 1, lookup, &h};
    ws_handshake_t hs;
    char buf[256];
    CHECK_EQ_INT(ws_handshake(&req, "", &hs), 0);
    CHECK_EQ_INT(hs.status, 101);
    CHECK_EQ_STR(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    int n = ws_handshake_response(&hs, NULL, buf, sizeof buf);
    CHECK_EQ_INT(n, (int)strlen(buf));
    CHECK(strcmp(buf, "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                      "\r\n") == 0);
}

TEST(ws_101_head_carries_extra_headers_and_refuses_a_small_buffer)
{
    headers_t h = good(-1, NULL);
    ws_request_t req = {"GET", 1, 1, lookup, &h};
    ws_handshake_t hs;
    char buf[256];
    CHECK_EQ_INT(ws_handshake(&req, NULL, &hs), 0);
    CHECK(ws_handshake_response(&hs, "X-Process-Time: 0.000012\r\n", buf, sizeof buf) > 0);
    CHECK(strstr(buf, "xOo=\r\nX-Process-Time: 0.000012\r\n\r\n") != NULL);
    CHECK_EQ_INT(ws_handshake_response(&hs, NULL, buf, 100), -ENOSPC);
    hs.status = 400;
    CHECK_EQ_INT(ws_handshake_response(&hs, NULL, buf, sizeof buf), -EINVAL);
}

TEST(ws_upgrade_needs_get)
{
    CHECK_EQ_INT(status_of("POST", 1, 1, good(-1, NULL), NULL), 400);
    CHECK_EQ_INT(status_of("get", 1, 1, good(-1, NULL), NULL),
                 400); /* methods are case-sensitive */
}

TEST(ws_upgrade_needs_http_1_1)
{
    CHECK_EQ_INT(status_of("GET", 1, 0, good(-1, NULL), NULL), 400);
    CHECK_EQ_INT(status_of("GET", 2, 0, good(-1, NULL), NULL), 400);
    CHECK_EQ_INT(status_of("GET", 0, 9, good(-1, NULL), NULL), 400);
}

TEST(ws_missing_or_wrong_upgrade_is_426)
{
    CHECK_EQ_INT(status(good(F_UPGRADE, NULL)), 426);
    CHECK_EQ_INT(status(good(F_UPGRADE, "h2c")), 426);
    CHECK_EQ_INT(status(good(F_UPGRADE, "websockets")), 426);
    CHECK_EQ_INT(status(good(F_UPGRADE, "")), 426);
}

TEST(ws_upgrade_token_is_case_insensitive_and_may_be_in_a_list)
{
    CHECK_EQ_INT(status(good(F_UPGRADE, "WebSocket")), 101);
    CHECK_EQ_INT(status(good(F_UPGRADE, "h2c, websocket")), 101);
    CHECK_EQ_INT(status(good(F_UPGRADE, "  websocket\t")), 101);
}

TEST(ws_connection_without_upgrade_token_is_400)
{
    CHECK_EQ_INT(status(good(F_CONNECTION, NULL)), 400);
    CHECK_EQ_INT(status(good(F_CONNECTION, "keep-alive")), 400);
    CHECK_EQ_INT(status(good(F_CONNECTION, "upgraded")), 400);
    CHECK_EQ_INT(status(good(F_CONNECTION, "keep-alive upgrade")), 400); /* not a list */
}

TEST(ws_connection_upgrade_token_is_found_in_a_list_in_any_case)
{
    CHECK_EQ_INT(status(good(F_CONNECTION, "keep-alive, Upgrade")), 101);
    CHECK_EQ_INT(status(good(F_CONNECTION, "UPGRADE")), 101);
    CHECK_EQ_INT(status(good(F_CONNECTION, "close,upgrade , x")), 101);
    CHECK_EQ_INT(status(good(F_CONNECTION, ",,upgrade,")), 101);
}

TEST(ws_version_other_than_13_is_426_with_the_version_header)
{
    const char *bad[] = {"8", "12", "14", "13, 8", "", NULL};
    for (int i = 0; i < 6; i++) {
        headers_t h = good(F_VERSION, bad[i]);
        ws_request_t req = {"GET", 1, 1, lookup, &h};
        ws_handshake_t hs;
        CHECK_EQ_INT(ws_handshake(&req, NULL, &hs), -EPROTONOSUPPORT);
        CHECK_EQ_INT(hs.status, 426);
        CHECK_EQ_STR(hs.header_name, "Sec-WebSocket-Version");
        CHECK_EQ_STR(hs.header_value, "13");
    }
    CHECK_EQ_INT(status(good(F_VERSION, " 13 ")), 101);
}

TEST(ws_key_missing_or_not_16_bytes_of_base64_is_400)
{
    const char *bad[] = {NULL,
                         "",
                         "AAAAAAAAAAAAAAAAAAAA",         /* 15 bytes */
                         "AAAAAAAAAAAAAAAAAAAAAAA=",     /* 17 bytes */
                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 21 bytes */
                         "dGhlIHNhbXBsZSBub25jZQ",       /* padding missing */
                         "dGhlIHNhbXBsZSBub25jZ*==",     /* not the alphabet */
                         "dGhlIHNhbXBsZSBub25j Q==",
                         "dGhlIHNhbXBsZSBub25jZQ==="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(status(good(F_KEY, bad[i])), 400);
}

TEST(ws_key_is_trimmed_before_hashing)
{
    headers_t h = good(F_KEY, " \t" KEY " ");
    ws_request_t req = {"GET", 1, 1, lookup, &h};
    ws_handshake_t hs;
    CHECK_EQ_INT(ws_handshake(&req, NULL, &hs), 0);
    CHECK_EQ_STR(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(ws_origin_not_in_the_list_is_403)
{
    const char *list = "https://chat.example, http://localhost:8000";
    CHECK_EQ_INT(status_of("GET", 1, 1, good(-1, NULL), list), 403);
    CHECK_EQ_INT(status_of("GET", 1, 1, good(F_ORIGIN, "http://localhost:8001"), list), 403);
    CHECK_EQ_INT(status_of("GET", 1, 1, good(F_ORIGIN, "https://chat.example.evil"), list), 403);
    CHECK_EQ_INT(status_of("GET", 1, 1, good(F_ORIGIN, "null"), list), 403);
}

TEST(ws_origin_in_the_list_is_accepted)
{
    const char *list = "https://chat.example/, http://localhost:8000";
    CHECK_EQ_INT(status_of("GET", 1, 1, good(F_ORIGIN, "http://localhost:8000"), list), 101);
    CHECK_EQ_INT(status_of("GET", 1, 1, good(F_ORIGIN, "https://CHAT.example"), list), 101);
}

TEST(ws_empty_or_star_origin_list_allows_all)
{
    CHECK_EQ_INT(status_of("GET", 1, 1, good(-1, NULL), ""), 101);
    CHECK_EQ_INT(status_of("GET", 1, 1, good(-1, NULL), " , "), 101);
    CHECK_EQ_INT(status_of("GET", 1, 1, good(-1, NULL), "*"), 101);
    CHECK_EQ_INT(status_of("GET", 1, 1, good(-1, NULL), "https://a.example, *"), 101);
}

TEST(ws_request_without_origin_passes_the_origin_check)
{
    CHECK_EQ_INT(status_of("GET", 1, 1, good(F_ORIGIN, NULL), "https://chat.example"), 101);
}

TEST(ws_plain_get_is_not_an_upgrade_attempt)
{
    headers_t plain = {{"Host", "x", "Connection", "keep-alive"}};
    headers_t h2c = {{"Upgrade", "h2c", "Connection", "Upgrade"}};
    headers_t ws = {{"Upgrade", "WebSocket"}};
    headers_t key_only = {{"Sec-WebSocket-Key", KEY}};
    CHECK(!ws_is_upgrade(&(ws_request_t){"GET", 1, 1, lookup, &plain}));
    CHECK(!ws_is_upgrade(&(ws_request_t){"GET", 1, 1, lookup, &h2c}));
    CHECK(ws_is_upgrade(&(ws_request_t){"GET", 1, 1, lookup, &ws}));
    CHECK(ws_is_upgrade(&(ws_request_t){"GET", 1, 1, lookup, &key_only}));
    /* An attempt that is incomplete is an attempt, answered 400, not routed as a page. */
    CHECK_EQ_INT(status(ws), 400);
}
