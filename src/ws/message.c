/* The message reader of ws.h: frames from frame.c become complete messages, pings, pongs and
 * closes. It assembles fragments (copying only when it must), validates text as it arrives and
 * parses close payloads and codes (RFC 6455 §5.4, §5.5, §7). It does not write anything back:
 * answering pings and closes is the caller's, through encode.c. */
#include "base/base.h"
#include "ws/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint16_t ws_close_code_for(int err)
{
    switch (err) {
    case -EPROTO:
        return WS_CLOSE_PROTOCOL;
    case -EILSEQ:
        return WS_CLOSE_INVALID_DATA;
    case -EMSGSIZE:
        return WS_CLOSE_TOO_BIG;
    default:
        return WS_CLOSE_INTERNAL;
    }
}

int ws_close_code_valid(unsigned code)
{
    /* §7.4.1 defines 1000-1011 but reserves 1004, and 1005/1006 only report local conditions;
     * 1012-1014 were registered with IANA since; 1015 is local-only like 1006; 1016-2999 are
     * reserved for future RFCs and 0-999 unused (§7.4.2). */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

int ws_close_parse(const uint8_t *payload, size_t len, unsigned *code, const char **reason,
                   size_t *reason_len)
{
    *reason = "";
    *reason_len = 0;
    if (len == 0) { /* a close without a code is allowed; it reads as 1005, §7.1.5 */
        *code = WS_CLOSE_NO_STATUS;
        return 0;
    }
    if (len == 1) /* the code is two bytes or absent, §5.5.1 */
        return -EPROTO;
    *code = (unsigned)payload[0] << 8 | payload[1];
    if (!ws_close_code_valid(*code))
        return -EPROTO;
    if (ws_utf8_valid(payload + 2, len - 2) < 0) /* the reason is UTF-8, §5.5.1 */
        return -EILSEQ;
    *reason = (const char *)payload + 2;
    *reason_len = len - 2;
    return 0;
}

void ws_reader_init(ws_reader_t *r, uint64_t max_message, const ws_handler_t *handler, void *ud)
{
    memset(r, 0, sizeof *r);
    ws_parser_init(&r->parser, max_message);
    r->handler = handler;
    r->ud = ud;
}

void ws_reader_free(ws_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = 0;
}

/* Makes room for len + n bytes, growing with what has arrived rather than with what the headers
 * announce: a client may announce a megabyte and send one byte. */
static int reserve(ws_reader_t *r, size_t n)
{
    size_t need = r->len + n;

    if (need <= r->cap)
        return 0;
    uint8_t *b = mem_grow(r->buf, &r->cap, need, 1024, (size_t)r->parser.max_message);
    if (!b)
        return -ENOMEM;
    r->buf = b;
    return 0;
}

static int on_frame(void *ud, const ws_frame_t *f)
{
    ws_reader_t *r = ud;

    r->direct = NULL;
    if (f->opcode & 0x8)
        r->ctl_len = 0;
    else if (f->opcode != WS_OP_CONT)
        ws_utf8_init(&r->utf8); /* a new message */
    return 0;
}

static int on_data(void *ud, const ws_frame_t *f, uint8_t *data, size_t len)
{
    ws_reader_t *r = ud;

    if (f->opcode & 0x8) { /* the parser keeps control payloads within 125 bytes */
        memcpy(r->ctl + r->ctl_len, data, len);
        r->ctl_len += (uint8_t)len;
        return 0;
    }
    /* Text is checked piece by piece so that invalid UTF-8 fails the connection at the first
     * bad byte that has arrived, even in a message still being sent (§8.1). */
    if (f->message == WS_OP_TEXT && ws_utf8_feed(&r->utf8, data, len) < 0)
        return -EILSEQ;
    /* A whole single-frame message in this buffer: deliver it where it lies. */
    if (f->opcode != WS_OP_CONT && f->fin && f->done == 0 && len == f->len) {
        r->direct = data;
        return 0;
    }
    int rc = reserve(r, len);
    if (rc < 0)
        return rc;
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    return 0;
}

static int deliver_control(ws_reader_t *r, unsigned opcode)
{
    const ws_handler_t *h = r->handler;
    const char *reason;
    size_t reason_len;
    unsigned code;
    int rc;

    switch (opcode) {
    case WS_OP_PING:
        return h->on_ping ? h->on_ping(r->ud, r->ctl, r->ctl_len) : 0;
    case WS_OP_PONG:
        return h->on_pong ? h->on_pong(r->ud, r->ctl, r->ctl_len) : 0;
    default:
        if ((rc = ws_close_parse(r->ctl, r->ctl_len, &code, &reason, &reason_len)) < 0)
            return rc;
        return h->on_close ? h->on_close(r->ud, code, reason, reason_len) : 0;
    }
}

static int on_frame_end(void *ud, const ws_frame_t *f)
{
    ws_reader_t *r = ud;
    const ws_handler_t *h = r->handler;
    const uint8_t *data = r->direct ? r->direct : r->buf;
    size_t len = r->direct ? (size_t)f->len : r->len;
    int rc = 0;

    if (f->opcode & 0x8)
        return deliver_control(r, f->opcode);
    if (!f->fin)
        return 0;
    if (f->message == WS_OP_TEXT && ws_utf8_finish(&r->utf8) < 0)
        return -EILSEQ; /* the message ends inside a code point */
    if (h->on_message)
        rc = h->on_message(r->ud, f->message, data ? data : (const uint8_t *)"", len);
    r->direct = NULL;
    ws_reader_free(r); /* an idle connection holds no buffer */
    return rc;
}

static const ws_callbacks_t reader_callbacks = {
    .on_frame = on_frame,
    .on_data = on_data,
    .on_frame_end = on_frame_end,
};

int ws_read(ws_reader_t *r, uint8_t *data, size_t len)
{
    return ws_parse(&r->parser, data, len, &reader_callbacks, r);
}
