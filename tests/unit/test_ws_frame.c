/* Unit tests of the ws frame parser, masking and frame encoder (src/ws/frame.c, encode.c):
 * every RFC 6455 §5 rule a server enforces, the §5.7 examples, and feeding in any chunking.
 * Message assembly and close payloads are in test_ws_message.c. */
#include "unit.h"

#include "ws/ws.h"

#include <errno.h>
#include <stdlib.h>

/* The §5.7 example key. */
static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Builds a masked client frame with the minimal length encoding. */
static size_t client_frame(uint8_t *out, unsigned b0, const void *payload, size_t len)
{
    size_t n = 0;
    out[n++] = (uint8_t)b0;
    if (len <= 125) {
        out[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[n++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(out + n, key, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        out[n + i] = ((const uint8_t *)payload)[i] ^ key[i & 3];
    return n + len;
}

/* Records events as text: "[op len]" or "[op+ len]" (FIN clear), the payload, "|" at the end. */
typedef struct {
    char log[1024];
    size_t n;
    int events, fail_at; /* the fail_at-th event returns -ECANCELED (0: never) */
} rec_t;

static void put(rec_t *r, const void *s, size_t len)
{
    if (r->n + len < sizeof r->log) {
        memcpy(r->log + r->n, s, len);
        r->n += len;
        r->log[r->n] = 0;
    }
}

static int rec_frame(void *ud, const ws_frame_t *f)
{
    rec_t *r = ud;
    char s[48];
    put(r, s,
        (size_t)snprintf(s, sizeof s, "[%x%s %llu]", f->opcode, f->fin ? "" : "+",
                         (unsigned long long)f->len));
    return ++r->events == r->fail_at ? -ECANCELED : 0;
}

static int rec_data(void *ud, const ws_frame_t *f, uint8_t *data, size_t len)
{
    rec_t *r = ud;
    CHECK(len > 0);
    CHECK(f->done + len <= f->len);
    put(r, data, len);
    return ++r->events == r->fail_at ? -ECANCELED : 0;
}

static int rec_end(void *ud, const ws_frame_t *f)
{
    rec_t *r = ud;
    put(r, "|", 1);
    return ++r->events == r->fail_at ? -ECANCELED : 0;
}

static const ws_callbacks_t rec_cb = {rec_frame, rec_data, rec_end};

/* Feeds buf in chunks of step bytes; returns the first error. */
static int feed(ws_parser_t *p, uint8_t *buf, size_t len, size_t step, rec_t *r)
{
    for (size_t off = 0; off < len; off += step) {
        int rc = ws_parse(p, buf + off, len - off < step ? len - off : step, &rec_cb, r);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Parses one buffer in one go with a fresh parser; returns the close code (0 when fine). */
static int close_code_of(const uint8_t *frame, size_t len)
{
    uint8_t buf[256];
    ws_parser_t p;
    rec_t r = {0};
    memcpy(buf, frame, len);
    ws_parser_init(&p, 0);
    int rc = feed(&p, buf, len, len, &r);
    return rc < 0 ? ws_close_code_for(rc) : 0;
}

TEST(ws_parser_fits_in_64_bytes)
{
    CHECK(sizeof(ws_parser_t) <= 64);
}

TEST(ws_rfc_5_7_masked_hello_is_unmasked_in_place)
{
    uint8_t buf[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_parser_t p;
    rec_t r = {0};
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(ws_parse(&p, buf, sizeof buf, &rec_cb, &r), 0);
    CHECK_EQ_STR(r.log, "[1 5]Hello|");
    CHECK(memcmp(buf + 6, "Hello", 5) == 0); /* in the caller's buffer, no copy */
}

TEST(ws_rfc_5_7_masked_hello_byte_at_a_time)
{
    uint8_t buf[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_parser_t p;
    rec_t r = {0};
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(feed(&p, buf, sizeof buf, 1, &r), 0);
    CHECK_EQ_STR(r.log, "[1 5]Hello|");
}

TEST(ws_rfc_5_7_masked_pong_is_parsed)
{
    uint8_t buf[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_parser_t p;
    rec_t r = {0};
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(feed(&p, buf, sizeof buf, 3, &r), 0);
    CHECK_EQ_STR(r.log, "[a 5]Hello|");
}

/* A stream of every kind of frame gives the same events whatever the chunk size. */
TEST(ws_any_chunking_gives_the_same_events)
{
    static char big[300];
    uint8_t stream[1024];
    size_t n = 0;
    memset(big, 'x', sizeof big);
    n += client_frame(stream + n, 0x01, "Hel", 3);
    n += client_frame(stream + n, 0x89, "pi", 2);
    n += client_frame(stream + n, 0x00, "lo ", 3);
    n += client_frame(stream + n, 0x80, "", 0);
    n += client_frame(stream + n, 0x82, big, sizeof big);
    n += client_frame(stream + n, 0x8A, "", 0);
    n += client_frame(stream + n, 0x81, "end", 3);
    char want[1024];
    snprintf(want, sizeof want, "[1+ 3]Hel|[9 2]pi|[0+ 3]lo |[0 0]|[2 300]%.300s|[a 0]|[1 3]end|",
             big);
    for (size_t step = 1; step <= n; step++) {
        uint8_t buf[1024];
        ws_parser_t p;
        rec_t r = {0};
        memcpy(buf, stream, n);
        ws_parser_init(&p, 0);
        CHECK_EQ_INT(feed(&p, buf, n, step, &r), 0);
        CHECK_EQ_STR(r.log, want);
    }
}

TEST(ws_unmasked_client_frame_is_1002)
{
    const uint8_t hello[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}; /* the §5.7 server frame */
    CHECK_EQ_INT(close_code_of(hello, sizeof hello), 1002);
}

TEST(ws_rsv_bits_without_extension_are_1002)
{
    uint8_t f[16];
    for (unsigned rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        size_t n = client_frame(f, 0x81 | rsv, "a", 1);
        CHECK_EQ_INT(close_code_of(f, n), 1002);
    }
}

TEST(ws_reserved_opcodes_are_1002)
{
    uint8_t f[16];
    for (unsigned op = 0; op < 16; op++) {
        int ok = op == 1 || op == 2 || (op >= 8 && op <= 10); /* 0 continues nothing */
        size_t n = client_frame(f, 0x80 | op, "", 0);
        CHECK_EQ_INT(close_code_of(f, n), ok ? 0 : 1002);
    }
}

TEST(ws_control_frame_without_fin_is_1002)
{
    uint8_t f[16];
    for (unsigned op = 8; op <= 10; op++) {
        size_t n = client_frame(f, op, "", 0);
        CHECK_EQ_INT(close_code_of(f, n), 1002);
    }
}

TEST(ws_control_frame_over_125_bytes_is_1002)
{
    static uint8_t f[512], payload[126];
    size_t n = client_frame(f, 0x89, payload, 125);
    CHECK_EQ_INT(close_code_of(f, n), 0);
    n = client_frame(f, 0x89, payload, 126); /* 16-bit length form */
    CHECK_EQ_INT(close_code_of(f, n), 1002);
    const uint8_t len127[] = {0x88, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1};
    CHECK_EQ_INT(close_code_of(len127, sizeof len127), 1002);
}

TEST(ws_continuation_without_message_is_1002)
{
    uint8_t f[16];
    CHECK_EQ_INT(close_code_of(f, client_frame(f, 0x80, "a", 1)), 1002);
    CHECK_EQ_INT(close_code_of(f, client_frame(f, 0x00, "a", 1)), 1002);
}

TEST(ws_continuation_after_finished_message_is_1002)
{
    uint8_t f[32];
    size_t n = client_frame(f, 0x81, "a", 1);
    n += client_frame(f + n, 0x80, "b", 1);
    CHECK_EQ_INT(close_code_of(f, n), 1002);
}

TEST(ws_new_message_inside_fragmented_one_is_1002)
{
    uint8_t f[32];
    for (unsigned op = 1; op <= 2; op++) {
        size_t n = client_frame(f, 0x01, "a", 1);
        n += client_frame(f + n, 0x80 | op, "b", 1);
        CHECK_EQ_INT(close_code_of(f, n), 1002);
    }
}

TEST(ws_control_frames_between_fragments_are_allowed)
{
    uint8_t f[64];
    ws_parser_t p;
    rec_t r = {0};
    size_t n = client_frame(f, 0x02, "ab", 2);
    n += client_frame(f + n, 0x89, "p", 1);
    n += client_frame(f + n, 0x8A, "q", 1);
    n += client_frame(f + n, 0x00, "cd", 2);
    n += client_frame(f + n, 0x88, "", 0);
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(feed(&p, f, n, 1, &r), 0);
    CHECK_EQ_STR(r.log, "[2+ 2]ab|[9 1]p|[a 1]q|[0+ 2]cd|[8 0]|");
}

TEST(ws_continuation_frames_carry_the_message_opcode)
{
    uint8_t f[64];
    ws_parser_t p;
    size_t n = client_frame(f, 0x01, "ab", 2);
    n += client_frame(f + n, 0x80, "cd", 2);
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(ws_parse(&p, f, 8, &rec_cb, &(rec_t){0}), 0);
    CHECK_EQ_INT(p.frame.message, WS_OP_TEXT);
    CHECK_EQ_INT(ws_parse(&p, f + 8, n - 8, &rec_cb, &(rec_t){0}), 0);
    CHECK_EQ_INT(p.frame.opcode, WS_OP_CONT);
    CHECK_EQ_INT(p.frame.message, WS_OP_TEXT);
}

TEST(ws_64bit_length_with_top_bit_set_is_1002)
{
    const uint8_t f[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    CHECK_EQ_INT(close_code_of(f, sizeof f), 1002);
}

TEST(ws_non_minimal_length_encoding_is_accepted)
{
    /* "Hi" with a 16-bit and with a 64-bit length: see ws.h for why this is accepted. */
    uint8_t a[] = {0x81, 0xFE, 0, 2, 0, 0, 0, 0, 'H', 'i'};
    uint8_t b[] = {0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 'H', 'i'};
    ws_parser_t p;
    rec_t r = {0};
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(feed(&p, a, sizeof a, 1, &r), 0);
    CHECK_EQ_INT(feed(&p, b, sizeof b, 1, &r), 0);
    CHECK_EQ_STR(r.log, "[1 2]Hi|[1 2]Hi|");
}

TEST(ws_16_and_64_bit_lengths_are_decoded)
{
    static uint8_t payload[70000], f[70100];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    size_t lens[] = {126, 65535, 65536, 70000};
    for (int i = 0; i < 4; i++) {
        ws_parser_t p;
        size_t n = client_frame(f, 0x82, payload, lens[i]);
        ws_parser_init(&p, 1 << 20);
        CHECK_EQ_INT(n, lens[i] + (lens[i] <= 0xFFFF ? 8 : 14));
        CHECK_EQ_INT(ws_parse(&p, f, n, &(ws_callbacks_t){0}, NULL), 0);
        CHECK_EQ_INT(p.frame.len, lens[i]);
        CHECK(memcmp(f + n - lens[i], payload, lens[i]) == 0);
    }
}

TEST(ws_message_over_limit_is_1009_before_its_payload)
{
    /* Only the header of a 1 MiB + 1 frame is fed: the limit is known from it. */
    const uint8_t f[] = {0x82, 0xFF, 0, 0, 0, 0, 0, 0x10, 0, 1, 1, 2, 3, 4};
    ws_parser_t p;
    rec_t r = {0};
    ws_parser_init(&p, 0);
    int rc = feed(&p, (uint8_t *)(uintptr_t)f, sizeof f, 1, &r);
    CHECK_EQ_INT(rc, -EMSGSIZE);
    CHECK_EQ_INT(ws_close_code_for(rc), 1009);
    CHECK_EQ_STR(r.log, ""); /* no frame was reported */
}

TEST(ws_fragments_summing_over_limit_are_1009)
{
    uint8_t f[128];
    ws_parser_t p;
    rec_t r = {0};
    size_t n = client_frame(f, 0x02, "abcd", 4);
    n += client_frame(f + n, 0x89, "0123456789", 10); /* control frames do not count */
    n += client_frame(f + n, 0x00, "efgh", 4);
    size_t ok = n;
    n += client_frame(f + n, 0x80, "ijk", 3);
    ws_parser_init(&p, 10);
    CHECK_EQ_INT(feed(&p, f, ok, 1, &r), 0);
    CHECK_EQ_INT(feed(&p, f + ok, n - ok, 1, &r), -EMSGSIZE);
}

TEST(ws_message_at_limit_is_accepted_and_limit_resets_per_message)
{
    uint8_t f[128];
    ws_parser_t p;
    rec_t r = {0};
    size_t n = client_frame(f, 0x01, "abcde", 5);
    n += client_frame(f + n, 0x80, "fghij", 5);
    n += client_frame(f + n, 0x81, "0123456789", 10);
    ws_parser_init(&p, 10);
    CHECK_EQ_INT(feed(&p, f, n, 1, &r), 0);
    CHECK_EQ_STR(r.log, "[1+ 5]abcde|[0 5]fghij|[1 10]0123456789|");
}

TEST(ws_bad_first_byte_fails_before_the_second_arrives)
{
    uint8_t b = 0xC1; /* RSV1 */
    ws_parser_t p;
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(ws_parse(&p, &b, 1, &rec_cb, &(rec_t){0}), -EPROTO);
}

TEST(ws_errors_are_sticky)
{
    uint8_t f[32];
    ws_parser_t p;
    rec_t r = {0};
    size_t n = client_frame(f, 0xF1, "a", 1);
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(feed(&p, f, n, n, &r), -EPROTO);
    n = client_frame(f, 0x81, "a", 1);
    CHECK_EQ_INT(feed(&p, f, n, n, &r), -EPROTO);
    CHECK_EQ_INT(ws_parse(&p, f, 0, &rec_cb, &r), -EPROTO);
}

TEST(ws_input_after_a_close_frame_is_ignored)
{
    uint8_t f[64];
    ws_parser_t p;
    rec_t r = {0};
    size_t n = client_frame(f, 0x88, "\x03\xe8", 2);
    n += client_frame(f + n, 0x81, "late", 4);
    f[n++] = 0xFF; /* garbage too */
    ws_parser_init(&p, 0);
    CHECK_EQ_INT(feed(&p, f, n, 1, &r), 0);
    CHECK(ws_parser_closed(&p));
    CHECK_EQ_STR(r.log, "[8 2]\x03\xe8|");
}

TEST(ws_callback_error_stops_the_parser)
{
    uint8_t f[64];
    size_t n = client_frame(f, 0x81, "ab", 2);
    n += client_frame(f + n, 0x81, "cd", 2);
    for (int at = 1; at <= 3; at++) {
        uint8_t buf[64];
        ws_parser_t p;
        rec_t r = {.fail_at = at};
        memcpy(buf, f, n);
        ws_parser_init(&p, 0);
        CHECK_EQ_INT(feed(&p, buf, n, n, &r), -ECANCELED);
        CHECK_EQ_INT(r.events, at);
        CHECK_EQ_INT(ws_close_code_for(-ECANCELED), 1011);
    }
}

TEST(ws_close_code_for_maps_errors)
{
    CHECK_EQ_INT(ws_close_code_for(-EPROTO), 1002);
    CHECK_EQ_INT(ws_close_code_for(-EILSEQ), 1007);
    CHECK_EQ_INT(ws_close_code_for(-EMSGSIZE), 1009);
    CHECK_EQ_INT(ws_close_code_for(-ENOMEM), 1011);
}

TEST(ws_mask_matches_bytewise_xor_at_any_alignment_and_offset)
{
    uint8_t ref[80], buf[96];
    for (size_t align = 0; align < 8; align++)
        for (unsigned off = 0; off < 8; off++)
            for (size_t len = 0; len <= 70; len += 1 + len / 8) {
                for (size_t i = 0; i < len; i++)
                    ref[i] = buf[align + i] = (uint8_t)(i * 7 + 3);
                for (size_t i = 0; i < len; i++)
                    ref[i] ^= key[(off + i) & 3];
                ws_mask(buf + align, len, key, off);
                CHECK(memcmp(buf + align, ref, len) == 0);
            }
}

TEST(ws_frame_header_uses_minimal_length_encoding)
{
    uint8_t h[WS_HEADER_MAX];
    CHECK_EQ_INT(ws_frame_header(h, WS_OP_TEXT, 1, 0), 2);
    CHECK_EQ_INT(ws_frame_header(h, WS_OP_TEXT, 1, 125), 2);
    CHECK_EQ_INT(h[1], 125);
    CHECK_EQ_INT(ws_frame_header(h, WS_OP_TEXT, 1, 126), 4);
    CHECK_EQ_INT(ws_frame_header(h, WS_OP_TEXT, 1, 65535), 4);
    CHECK_EQ_INT(ws_frame_header(h, WS_OP_TEXT, 1, 65536), 10);
    CHECK_EQ_INT(ws_frame_header(h, WS_OP_TEXT, 1, 1ull << 40), 10);
    CHECK_EQ_INT(h[1], 127);
    CHECK_EQ_INT(h[4], 1);
}

TEST(ws_frame_header_matches_rfc_5_7_server_examples)
{
    uint8_t h[WS_HEADER_MAX];
    const uint8_t hello[] = {0x81, 0x05}, hel[] = {0x01, 0x03}, lo[] = {0x80, 0x02},
                  ping[] = {0x89, 0x05}, b256[] = {0x82, 0x7E, 0x01, 0x00},
                  b64k[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0};
    CHECK(ws_frame_header(h, WS_OP_TEXT, 1, 5) == 2 && memcmp(h, hello, 2) == 0);
    CHECK(ws_frame_header(h, WS_OP_TEXT, 0, 3) == 2 && memcmp(h, hel, 2) == 0);
    CHECK(ws_frame_header(h, WS_OP_CONT, 1, 2) == 2 && memcmp(h, lo, 2) == 0);
    CHECK(ws_frame_header(h, WS_OP_PING, 1, 5) == 2 && memcmp(h, ping, 2) == 0);
    CHECK(ws_frame_header(h, WS_OP_BINARY, 1, 256) == 4 && memcmp(h, b256, 4) == 0);
    CHECK(ws_frame_header(h, WS_OP_BINARY, 1, 65536) == 10 && memcmp(h, b64k, 10) == 0);
}

TEST(ws_control_frame_refuses_long_payloads_and_data_opcodes)
{
    uint8_t out[WS_CONTROL_FRAME_MAX], payload[126] = {0};
    CHECK_EQ_INT(ws_control_frame(out, WS_OP_PING, payload, 125), 127);
    CHECK_EQ_INT(ws_control_frame(out, WS_OP_PING, payload, 126), -EINVAL);
    CHECK_EQ_INT(ws_control_frame(out, WS_OP_TEXT, payload, 1), -EINVAL);
}

TEST(ws_pong_echoes_the_ping_payload)
{
    uint8_t out[WS_CONTROL_FRAME_MAX];
    const uint8_t want[] = {0x8A, 0x05, 'H', 'e', 'l', 'l', 'o'};
    CHECK_EQ_INT(ws_control_frame(out, WS_OP_PONG, "Hello", 5), 7);
    CHECK(memcmp(out, want, 7) == 0);
}

TEST(ws_close_frame_carries_code_and_reason)
{
    uint8_t out[WS_CONTROL_FRAME_MAX];
    const uint8_t want[] = {0x88, 0x06, 0x03, 0xE9, 'b', 'y', 'e', '!'};
    CHECK_EQ_INT(ws_close_frame(out, 1001, "bye!", 4), 8);
    CHECK(memcmp(out, want, 8) == 0);
    CHECK_EQ_INT(ws_close_frame(out, 1000, NULL, 0), 4);
}

TEST(ws_close_frame_for_1005_is_empty)
{
    uint8_t out[WS_CONTROL_FRAME_MAX];
    CHECK_EQ_INT(ws_close_frame(out, WS_CLOSE_NO_STATUS, "x", 1), 2);
    CHECK_EQ_INT(out[0], 0x88);
    CHECK_EQ_INT(out[1], 0);
    CHECK_EQ_INT(ws_close_frame(out, 0, NULL, 0), 2);
}

TEST(ws_close_frame_refuses_codes_not_for_the_wire)
{
    uint8_t out[WS_CONTROL_FRAME_MAX];
    CHECK_EQ_INT(ws_close_frame(out, 1006, NULL, 0), -EINVAL);
    CHECK_EQ_INT(ws_close_frame(out, 999, NULL, 0), -EINVAL);
    CHECK_EQ_INT(ws_close_frame(out, 5000, NULL, 0), -EINVAL);
}

TEST(ws_close_frame_cuts_a_long_reason_at_a_utf8_boundary)
{
    char reason[200];
    uint8_t out[WS_CONTROL_FRAME_MAX];
    /* "é" (2 bytes) repeated: keeping 123 bytes would split the 62nd. */
    for (int i = 0; i < (int)sizeof reason; i += 2)
        reason[i] = (char)0xC3, reason[i + 1] = (char)0xA9;
    int n = ws_close_frame(out, 1000, reason, sizeof reason);
    CHECK_EQ_INT(n, 2 + 2 + 122);
    CHECK_EQ_INT(ws_utf8_valid(out + 4, (size_t)n - 4), 0);
    CHECK_EQ_INT(out[1], n - 2);
}
