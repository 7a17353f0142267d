/* Unit tests of the ws message reader (src/ws/message.c): fragment assembly with control frames
 * in between, in-place delivery, UTF-8 checked across fragments and failing early, close
 * payloads and codes (RFC 6455 §5.4, §5.5, §7.4, §8.1). */
#include "unit.h"

#include "ws/ws.h"

#include <errno.h>
#include <stdlib.h>

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A masked client frame, payload up to 64 KiB. */
static size_t client_frame(uint8_t *out, unsigned b0, const void *payload, size_t len)
{
    size_t n = 0;
    out[n++] = (uint8_t)b0;
    if (len <= 125) {
        out[n++] = (uint8_t)(0x80 | len);
    } else {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    }
    memcpy(out + n, key, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        out[n + i] = ((const uint8_t *)payload)[i] ^ key[i & 3];
    return n + len;
}

/* Messages as text: "T:payload", "B:payload", "P:", "O:" (pong), "C1000:reason", joined by " ". */
typedef struct {
    char log[4096];
    size_t n;
    const uint8_t *last; /* where the last message's data was */
    size_t last_len;     /* and its length */
    int fail;            /* every callback returns this */
} rec_t;

static void put(rec_t *r, const char *tag, const void *s, size_t len)
{
    size_t t = strlen(tag);
    if (r->n + t + len + 2 < sizeof r->log) {
        if (r->n)
            r->log[r->n++] = ' ';
        memcpy(r->log + r->n, tag, t);
        memcpy(r->log + r->n + t, s, len);
        r->n += t + len;
        r->log[r->n] = 0;
    }
}

static int on_message(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    rec_t *r = ud;
    CHECK(data != NULL);
    r->last = data;
    r->last_len = len;
    put(r, opcode == WS_OP_TEXT ? "T:" : "B:", data, len);
    return r->fail;
}

static int on_ping(void *ud, const uint8_t *data, size_t len)
{
    put(ud, "P:", data, len);
    return ((rec_t *)ud)->fail;
}

static int on_pong(void *ud, const uint8_t *data, size_t len)
{
    put(ud, "O:", data, len);
    return ((rec_t *)ud)->fail;
}

static int on_close(void *ud, unsigned code, const char *reason, size_t len)
{
    char tag[16];
    snprintf(tag, sizeof tag, "C%u:", code);
    put(ud, tag, reason, len);
    return ((rec_t *)ud)->fail;
}

static const ws_handler_t handler = {on_message, on_ping, on_pong, on_close};

/* Reads buf in chunks of step bytes; returns the first error, and in *at how many bytes had
 * been fed when it happened. */
static int read_in(ws_reader_t *r, uint8_t *buf, size_t len, size_t step, size_t *at)
{
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        int rc = ws_read(r, buf + off, n);
        if (rc < 0) {
            if (at)
                *at = off + n;
            return rc;
        }
    }
    return 0;
}

/* Reads a stream with a fresh reader in one chunk and returns the close code (0 when fine). */
static int close_code_of(const uint8_t *stream, size_t len)
{
    uint8_t buf[512];
    ws_reader_t r;
    rec_t rec = {0};
    memcpy(buf, stream, len);
    ws_reader_init(&r, 0, &handler, &rec);
    int rc = read_in(&r, buf, len, len, NULL);
    ws_reader_free(&r);
    return rc < 0 ? ws_close_code_for(rc) : 0;
}

TEST(ws_reader_delivers_a_whole_frame_in_place)
{
    uint8_t f[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_reader_t r;
    rec_t rec = {0};
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(ws_read(&r, f, sizeof f), 0);
    CHECK_EQ_STR(rec.log, "T:Hello");
    CHECK(rec.last == f + 6); /* no copy */
    CHECK(r.buf == NULL);
}

TEST(ws_reader_assembles_fragments_with_a_ping_between)
{
    uint8_t f[128];
    size_t n = client_frame(f, 0x01, "Hel", 3);
    n += client_frame(f + n, 0x89, "are you there", 13);
    n += client_frame(f + n, 0x00, "lo, ", 4);
    n += client_frame(f + n, 0x8A, "", 0);
    n += client_frame(f + n, 0x80, "world", 5);
    for (size_t step = 1; step <= n; step++) {
        uint8_t buf[128];
        ws_reader_t r;
        rec_t rec = {0};
        memcpy(buf, f, n);
        ws_reader_init(&r, 0, &handler, &rec);
        CHECK_EQ_INT(read_in(&r, buf, n, step, NULL), 0);
        CHECK_EQ_STR(rec.log, "P:are you there O: T:Hello, world");
        CHECK(r.buf == NULL); /* released once delivered */
        ws_reader_free(&r);
    }
}

TEST(ws_reader_copies_a_frame_split_across_reads)
{
    static uint8_t payload[3000], f[3100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 31);
    size_t n = client_frame(f, 0x82, payload, sizeof payload);
    ws_reader_t r;
    rec_t rec = {0};
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(read_in(&r, f, n, 1000, NULL), 0);
    CHECK(rec.n == 2 + sizeof payload && memcmp(rec.log + 2, payload, sizeof payload) == 0);
    CHECK(r.buf == NULL);
}

TEST(ws_reader_empty_messages_are_delivered)
{
    uint8_t f[64];
    size_t n = client_frame(f, 0x81, "", 0);
    n += client_frame(f + n, 0x02, "", 0);
    n += client_frame(f + n, 0x80, "", 0);
    ws_reader_t r;
    rec_t rec = {0};
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(read_in(&r, f, n, 1, NULL), 0);
    CHECK_EQ_STR(rec.log, "T: B:");
}

TEST(ws_reader_utf8_split_across_fragments_is_valid)
{
    /* "κόσμε" and U+1F600, cut inside code points, one frame per byte. */
    const char *text = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80";
    size_t len = strlen(text), n = 0;
    uint8_t f[512];
    for (size_t i = 0; i < len; i++)
        n += client_frame(f + n, (i == 0 ? 0x01 : 0x00) | (i == len - 1 ? 0x80 : 0), text + i, 1);
    ws_reader_t r;
    rec_t rec = {0};
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(read_in(&r, f, n, 7, NULL), 0);
    CHECK(rec.n == 2 + len && memcmp(rec.log + 2, text, len) == 0);
}

TEST(ws_reader_invalid_utf8_fails_at_the_fragment_that_has_it)
{
    /* Autobahn 6.4.1 shape: the bad byte comes in a middle fragment; the connection must fail
     * there, before the last fragment is even sent. */
    uint8_t f[128];
    size_t n = client_frame(f, 0x01, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
    n += client_frame(f + n, 0x00, "\xf4\x90\x80\x80", 4); /* above U+10FFFF */
    size_t bad_end = n;
    n += client_frame(f + n, 0x80, "edited", 6);
    ws_reader_t r;
    rec_t rec = {0};
    size_t at = 0;
    ws_reader_init(&r, 0, &handler, &rec);
    int rc = read_in(&r, f, n, 1, &at);
    CHECK_EQ_INT(rc, -EILSEQ);
    CHECK_EQ_INT(ws_close_code_for(rc), 1007);
    CHECK_EQ_INT(at, bad_end - 2); /* F4 90: the second byte proves it */
    CHECK_EQ_STR(rec.log, "");
    ws_reader_free(&r);
}

TEST(ws_reader_invalid_utf8_in_a_single_frame_fails_at_the_bad_byte)
{
    /* Autobahn 6.3.1: a surrogate (ED A0 80) inside "κόσμε-edited". */
    const char *text = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74";
    uint8_t f[64];
    size_t n = client_frame(f, 0x81, text, strlen(text)), at = 0;
    ws_reader_t r;
    rec_t rec = {0};
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(read_in(&r, f, n, 1, &at), -EILSEQ);
    CHECK_EQ_INT(at, 6 + 13); /* header, then A0 is byte 13 of the payload */
    ws_reader_free(&r);
}

TEST(ws_reader_text_ending_inside_a_code_point_is_1007)
{
    uint8_t f[64];
    size_t n = client_frame(f, 0x01, "ok \xe2\x82", 5);
    n += client_frame(f + n, 0x80, "", 0);
    CHECK_EQ_INT(close_code_of(f, n), 1007);
    n = client_frame(f, 0x81, "\xf0\x9f\x98", 3);
    CHECK_EQ_INT(close_code_of(f, n), 1007);
}

TEST(ws_reader_binary_messages_are_not_utf8_checked)
{
    uint8_t f[64];
    size_t n = client_frame(f, 0x82, "\xff\xfe\xed\xa0\x80", 5);
    CHECK_EQ_INT(close_code_of(f, n), 0);
}

TEST(ws_reader_empty_close_reads_as_1005)
{
    uint8_t f[16];
    ws_reader_t r;
    rec_t rec = {0};
    size_t n = client_frame(f, 0x88, "", 0);
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(ws_read(&r, f, n), 0);
    CHECK_EQ_STR(rec.log, "C1005:");
    uint8_t out[WS_CONTROL_FRAME_MAX]; /* and the echo is an empty close */
    CHECK_EQ_INT(ws_close_frame(out, WS_CLOSE_NO_STATUS, NULL, 0), 2);
}

TEST(ws_reader_close_with_one_byte_is_1002)
{
    uint8_t f[16];
    CHECK_EQ_INT(close_code_of(f, client_frame(f, 0x88, "\x03\xe8", 1)), 1002);
}

TEST(ws_reader_close_codes_not_valid_on_the_wire_are_1002)
{
    const unsigned bad[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                             1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    uint8_t f[16], p[2];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p[0] = (uint8_t)(bad[i] >> 8), p[1] = (uint8_t)bad[i];
        CHECK_EQ_INT(close_code_of(f, client_frame(f, 0x88, p, 2)), 1002);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        p[0] = (uint8_t)(good[i] >> 8), p[1] = (uint8_t)good[i];
        CHECK_EQ_INT(close_code_of(f, client_frame(f, 0x88, p, 2)), 0);
    }
}

TEST(ws_reader_close_reason_that_is_not_utf8_is_1007)
{
    uint8_t f[32];
    CHECK_EQ_INT(close_code_of(f, client_frame(f, 0x88, "\x03\xe8\xce\xba\xff", 5)), 1007);
    CHECK_EQ_INT(close_code_of(f, client_frame(f, 0x88, "\x03\xe8\xce", 3)), 1007);
}

TEST(ws_reader_close_delivers_code_and_reason_and_stops)
{
    uint8_t f[64];
    ws_reader_t r;
    rec_t rec = {0};
    size_t n = client_frame(f, 0x88, "\x03\xe9going \xce\xba", 10);
    n += client_frame(f + n, 0x81, "after", 5);
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK(!ws_parser_closed(&r.parser));
    CHECK_EQ_INT(read_in(&r, f, n - 12, 1, NULL), 0);
    CHECK(!ws_parser_closed(&r.parser)); /* the last byte is still to come */
    CHECK_EQ_INT(read_in(&r, f + n - 12, 12, 1, NULL), 0);
    CHECK_EQ_STR(rec.log, "C1001:going \xce\xba");
    CHECK(ws_parser_closed(&r.parser));
}

TEST(ws_reader_control_payload_split_across_reads_is_whole)
{
    char ping[126];
    uint8_t f[160];
    for (int i = 0; i < 125; i++)
        ping[i] = (char)('a' + i % 26);
    ping[125] = 0;
    size_t n = client_frame(f, 0x02, "x", 1);
    n += client_frame(f + n, 0x89, ping, 125);
    n += client_frame(f + n, 0x80, "y", 1);
    ws_reader_t r;
    rec_t rec = {0};
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(read_in(&r, f, n, 1, NULL), 0);
    char want[200];
    snprintf(want, sizeof want, "P:%s B:xy", ping);
    CHECK_EQ_STR(rec.log, want);
}

TEST(ws_reader_message_over_limit_is_1009)
{
    uint8_t f[64];
    ws_reader_t r;
    rec_t rec = {0};
    size_t n = client_frame(f, 0x01, "0123456789", 10);
    n += client_frame(f + n, 0x80, "x", 1);
    ws_reader_init(&r, 10, &handler, &rec);
    int rc = read_in(&r, f, n, 1, NULL);
    CHECK_EQ_INT(ws_close_code_for(rc), 1009);
    ws_reader_free(&r);
}

/* A message of exactly the limit is a message (the server echoes it: see test_ws_protocol),
 * whole or in fragments, fed in any pieces; one byte more is 1009. */
TEST(ws_reader_message_of_exactly_the_limit_is_delivered)
{
    enum { LIMIT = 60000 };
    static uint8_t payload[LIMIT + 1], stream[2 * LIMIT + 64];
    memset(payload, 'm', sizeof payload);
    size_t whole = client_frame(stream, 0x82, payload, LIMIT);
    size_t frags = client_frame(stream + whole, 0x02, payload, 35000);
    frags += client_frame(stream + whole + frags, 0x80, payload, LIMIT - 35000);
    size_t steps[] = {whole + frags, 4096, 7};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        uint8_t *copy = malloc(whole + frags);
        memcpy(copy, stream, whole + frags);
        ws_reader_t r;
        rec_t rec = {0};
        ws_reader_init(&r, LIMIT, &handler, &rec);
        CHECK_EQ_INT(read_in(&r, copy, whole, steps[i], NULL), 0);
        CHECK_EQ_INT(rec.last_len, LIMIT);
        rec.last_len = 0;
        CHECK_EQ_INT(read_in(&r, copy + whole, frags, steps[i], NULL), 0);
        CHECK_EQ_INT(rec.last_len, LIMIT);
        ws_reader_free(&r);
        free(copy);
    }
    size_t over = client_frame(stream, 0x82, payload, LIMIT + 1);
    ws_reader_t r;
    rec_t rec = {0};
    ws_reader_init(&r, LIMIT, &handler, &rec);
    CHECK_EQ_INT(ws_close_code_for(read_in(&r, stream, over, over, NULL)), 1009);
    ws_reader_free(&r);
}

TEST(ws_reader_handler_error_stops_reading)
{
    uint8_t f[64];
    ws_reader_t r;
    rec_t rec = {.fail = -ECONNRESET};
    size_t n = client_frame(f, 0x81, "one", 3);
    n += client_frame(f + n, 0x81, "two", 3);
    ws_reader_init(&r, 0, &handler, &rec);
    CHECK_EQ_INT(ws_read(&r, f, n), -ECONNRESET);
    CHECK_EQ_STR(rec.log, "T:one");
}

TEST(ws_close_parse_reads_code_and_reason)
{
    unsigned code = 0;
    const char *reason = NULL;
    size_t len = 1;
    CHECK_EQ_INT(ws_close_parse((const uint8_t *)"\x0f\xa0ok", 4, &code, &reason, &len), 0);
    CHECK_EQ_INT(code, 4000);
    CHECK(len == 2 && memcmp(reason, "ok", 2) == 0);
    CHECK_EQ_INT(ws_close_parse(NULL, 0, &code, &reason, &len), 0);
    CHECK_EQ_INT(code, WS_CLOSE_NO_STATUS);
    CHECK_EQ_INT(len, 0);
    /* one byte of an otherwise valid 1000 */
    CHECK_EQ_INT(ws_close_parse((const uint8_t *)"\x03\xe8", 1, &code, &reason, &len), -EPROTO);
    CHECK_EQ_INT(ws_close_parse((const uint8_t *)"\x03\xec", 2, &code, &reason, &len), -EPROTO);
    CHECK_EQ_INT(ws_close_parse((const uint8_t *)"\x03\xe8\xc0\xaf", 4, &code, &reason, &len),
                 -EILSEQ);
}
