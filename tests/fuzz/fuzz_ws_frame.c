/* libFuzzer target for the ws codec's reading side: the input is a client byte stream fed to the
 * frame parser and the message reader whole and in fuzzer-chosen pieces. Asserts (abort) that
 * the events obey the framing rules, that chunking changes nothing, that delivered text is valid
 * UTF-8 by an independent decoder, and that masking round-trips. */
#include "ws/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull; /* FNV-1a */
    return h;
}

static int reference_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp, min;
        size_t len;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if ((s[i] & 0xE0) == 0xC0)
            len = 2, cp = s[i] & 0x1F, min = 0x80;
        else if ((s[i] & 0xF0) == 0xE0)
            len = 3, cp = s[i] & 0x0F, min = 0x800;
        else if ((s[i] & 0xF8) == 0xF0)
            len = 4, cp = s[i] & 0x07, min = 0x10000;
        else
            return 0;
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

/* ---- frame level ---- */

typedef struct {
    uint64_t hash, got;
    int in_frame, closed;
} frames_t;

static int f_frame(void *ud, const ws_frame_t *f)
{
    frames_t *s = ud;
    REQUIRE(!s->in_frame && !s->closed);
    REQUIRE(f->opcode <= 2 || (f->opcode >= 8 && f->opcode <= 10));
    if (f->opcode >= 8)
        REQUIRE(f->fin && f->len <= WS_CONTROL_MAX && f->message == f->opcode);
    else
        REQUIRE(f->message == WS_OP_TEXT || f->message == WS_OP_BINARY);
    REQUIRE(f->done == 0);
    s->in_frame = 1;
    s->got = 0;
    uint8_t t[3] = {f->opcode, f->message, f->fin};
    s->hash = mix(mix(s->hash, t, 3), &f->len, sizeof f->len);
    return 0;
}

static int f_data(void *ud, const ws_frame_t *f, uint8_t *data, size_t len)
{
    frames_t *s = ud;
    REQUIRE(s->in_frame && len > 0 && f->done == s->got && f->done + len <= f->len);
    s->got += len;
    s->hash = mix(s->hash, data, len);
    return 0;
}

static int f_end(void *ud, const ws_frame_t *f)
{
    frames_t *s = ud;
    REQUIRE(s->in_frame && s->got == f->len);
    s->in_frame = 0;
    s->closed = f->opcode == WS_OP_CLOSE;
    s->hash = mix(s->hash, "|", 1);
    return 0;
}

static const ws_callbacks_t frame_cb = {f_frame, f_data, f_end};

/* ---- message level ---- */

typedef struct {
    uint64_t hash;
    int closed;
} msgs_t;

static int m_message(void *ud, unsigned opcode, const uint8_t *data, size_t len)
{
    msgs_t *s = ud;
    REQUIRE(!s->closed && data && (opcode == WS_OP_TEXT || opcode == WS_OP_BINARY));
    if (opcode == WS_OP_TEXT)
        REQUIRE(reference_utf8(data, len) && ws_utf8_valid(data, len) == 0);
    s->hash = mix(mix(mix(s->hash, &opcode, sizeof opcode), &len, sizeof len), data, len);
    /* the header a server would send back decodes to the same length */
    uint8_t h[WS_HEADER_MAX];
    size_t n = ws_frame_header(h, opcode, 1, len);
    uint64_t got = h[1] & 0x7F;
    REQUIRE(h[0] == (0x80 | opcode) && !(h[1] & 0x80));
    if (got == 126) {
        REQUIRE(n == 4 && len > 125);
        got = (uint64_t)h[2] << 8 | h[3];
    } else if (got == 127) {
        REQUIRE(n == 10 && len > 0xFFFF);
        got = 0;
        for (int i = 2; i < 10; i++)
            got = got << 8 | h[i];
    } else {
        REQUIRE(n == 2);
    }
    REQUIRE(got == len);
    return 0;
}

static int m_ping(void *ud, const uint8_t *data, size_t len)
{
    msgs_t *s = ud;
    uint8_t out[WS_CONTROL_FRAME_MAX];
    REQUIRE(!s->closed && len <= WS_CONTROL_MAX);
    REQUIRE(ws_control_frame(out, WS_OP_PONG, data, len) == (int)(2 + len));
    REQUIRE(out[0] == 0x8A && out[1] == len && (len == 0 || memcmp(out + 2, data, len) == 0));
    s->hash = mix(mix(s->hash, "P", 1), data, len);
    return 0;
}

static int m_pong(void *ud, const uint8_t *data, size_t len)
{
    msgs_t *s = ud;
    REQUIRE(!s->closed && len <= WS_CONTROL_MAX);
    s->hash = mix(mix(s->hash, "O", 1), data, len);
    return 0;
}

static int m_close(void *ud, unsigned code, const char *reason, size_t len)
{
    msgs_t *s = ud;
    uint8_t out[WS_CONTROL_FRAME_MAX];
    REQUIRE(!s->closed);
    REQUIRE(code == WS_CLOSE_NO_STATUS || ws_close_code_valid(code));
    REQUIRE(reference_utf8((const uint8_t *)reason, len) && len <= WS_CONTROL_MAX - 2);
    int n = ws_close_frame(out, code, reason, len);
    REQUIRE(n == (code == WS_CLOSE_NO_STATUS ? 2 : (int)(4 + len)));
    s->closed = 1;
    s->hash = mix(mix(mix(s->hash, "C", 1), &code, sizeof code), reason, len);
    return 0;
}

static const ws_handler_t handler = {m_message, m_ping, m_pong, m_close};

/* Feeds a copy of data in pieces whose sizes come from seed (0: all at once). */
static int run(int reader, const uint8_t *data, size_t size, uint64_t max, uint32_t seed,
               uint64_t *hash)
{
    uint8_t *buf = malloc(size ? size : 1);
    int rc = 0;
    REQUIRE(buf);
    memcpy(buf, data, size);
    if (reader) {
        ws_reader_t r;
        msgs_t s = {14695981039346656037ull, 0};
        ws_reader_init(&r, max, &handler, &s);
        for (size_t off = 0, n; off < size && rc == 0; off += n) {
            seed = seed * 1103515245u + 12345u;
            n = seed == 0 ? size : 1 + (seed >> 16) % (seed & 1 ? 3 : 64);
            n = n > size - off ? size - off : n;
            rc = ws_read(&r, buf + off, n);
            REQUIRE(ws_read(&r, buf + off, 0) == rc); /* empty input changes nothing */
        }
        REQUIRE(!s.closed || ws_parser_closed(&r.parser));
        ws_reader_free(&r);
        *hash = s.hash;
    } else {
        ws_parser_t p;
        frames_t s = {14695981039346656037ull, 0, 0, 0};
        ws_parser_init(&p, max);
        for (size_t off = 0, n; off < size && rc == 0; off += n) {
            seed = seed * 1103515245u + 12345u;
            n = seed == 0 ? size : 1 + (seed >> 16) % (seed & 1 ? 3 : 64);
            n = n > size - off ? size - off : n;
            rc = ws_parse(&p, buf + off, n, &frame_cb, &s);
        }
        REQUIRE(s.closed == ws_parser_closed(&p));
        if (rc < 0)
            REQUIRE(ws_parse(&p, buf, size, &frame_cb, &s) == rc); /* sticky */
        *hash = s.hash;
    }
    free(buf);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t seed = data[0] | 1u;
    /* small limits exercise 1009; 0 is the default */
    uint64_t max = data[1] < 0xF0 ? data[1] : 0;
    data += 2, size -= 2;

    for (int reader = 0; reader <= 1; reader++) {
        uint64_t whole, pieces;
        int a = run(reader, data, size, max, 0, &whole);
        int b = run(reader, data, size, max, seed, &pieces);
        /* Errors come from a header or a payload byte, so every chunking reaches the same one
         * having reported the same frames, bytes and messages. */
        REQUIRE(a == b && whole == pieces);
        REQUIRE(a == 0 || ws_close_code_valid(ws_close_code_for(a)));
    }

    /* UTF-8: the DFA agrees with the plain decoder, and splitting changes nothing */
    int v = ws_utf8_valid(data, size) == 0;
    REQUIRE(v == reference_utf8(data, size));
    ws_utf8_t u;
    size_t cut = size ? seed % (size + 1) : 0;
    ws_utf8_init(&u);
    int inc = ws_utf8_feed(&u, data, cut) == 0 && ws_utf8_feed(&u, data + cut, size - cut) == 0 &&
              ws_utf8_finish(&u) == 0;
    REQUIRE(inc == v);

    /* masking twice from any offset restores the bytes */
    if (size >= 4) {
        uint8_t *m = malloc(size);
        REQUIRE(m);
        memcpy(m, data, size);
        ws_mask(m + 1, size - 1, data, seed);
        for (size_t i = 1; i < size; i++)
            REQUIRE(m[i] == (data[i] ^ data[(seed + i - 1) & 3]));
        ws_mask(m + 1, size - 1, data, seed);
        REQUIRE(memcmp(m, data, size) == 0);
        free(m);
    }
    return 0;
}
