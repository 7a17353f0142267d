/* ws: roost's RFC 6455 codec, server side. It turns bytes into frames and messages and messages
 * into bytes, validates the opening handshake and computes its accept key. It is pure: libc and
 * libcrypto only, no sockets, no loop, no timers; the net and http layers feed it bytes and write
 * what it produces. Heartbeats and connection lifetimes live above it. */
#ifndef ROOST_WS_H
#define ROOST_WS_H

#include <stddef.h>
#include <stdint.h>

/* Errors. Every function that can fail returns 0 (or a size) or a negative errno. Three errnos
 * mean "the peer broke the protocol" and each maps to the close code to send (RFC 6455 §7.4.1):
 *
 *   -EPROTO    1002 protocol error: bad framing, unmasked client frame, bad close payload
 *   -EILSEQ    1007 invalid payload data: a text message or close reason that is not UTF-8
 *   -EMSGSIZE  1009 message too big: over the configured limit, known from the frame header
 *
 * Anything else (-ENOMEM, or a callback's own error) maps to 1011 internal error. */

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire: "the close frame had no code" */
    WS_CLOSE_ABNORMAL = 1006,  /* never on the wire: "the connection dropped" */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

/* The close code to send for an error returned by this module (see the table above). */
uint16_t ws_close_code_for(int err);

/* Whether a peer may send this code in a close frame (RFC 6455 §7.4): 1000-1003, 1007-1014
 * (1012-1014 are registered with IANA since) and 3000-4999 (libraries and applications). */
int ws_close_code_valid(unsigned code);

/* UTF-8 (utf8.c). A DFA with one byte of state, so a text message is checked piece by piece as
 * its fragments arrive and fails at the first byte that no valid continuation could follow
 * (RFC 6455 §8.1), not at the end of the message. Rejects overlong forms, surrogates
 * (U+D800-DFFF) and code points above U+10FFFF; ws_utf8_finish rejects a sequence cut short. */

typedef struct {
    uint8_t state; /* 0: between code points; otherwise inside one, or rejected */
} ws_utf8_t;

void ws_utf8_init(ws_utf8_t *u);
/* Returns 0 while everything fed so far is a prefix of valid UTF-8, -EILSEQ from the first byte
 * that is not (and for every call after it). */
int ws_utf8_feed(ws_utf8_t *u, const uint8_t *s, size_t len);
/* At the end of the text: 0 if it ended on a code point boundary, -EILSEQ otherwise. */
int ws_utf8_finish(const ws_utf8_t *u);
/* One complete buffer: feed + finish. */
int ws_utf8_valid(const uint8_t *s, size_t len);

/* Frame parser (frame.c).
 *
 * One ws_parser_t per connection, 64 bytes, embedded in the connection and owned by the caller;
 * it holds no pointers and allocates nothing. ws_parse() takes whatever bytes the socket gave
 * (one byte at a time works) and reports, through callbacks, each frame's header, its payload in
 * pieces as they arrive, and its end. The payload is unmasked IN PLACE in the caller's buffer
 * and each piece points into it: it is valid until the caller reuses that buffer, and a callback
 * may keep it, modify it or copy it. Between calls the parser remembers only the header bytes it
 * has seen (at most 14), the masking key, how much of the payload is left, and whether a
 * fragmented message is open.
 *
 * The rules of a server reading client frames are enforced before any payload is delivered:
 * frames must be masked (§5.3), RSV1-3 must be 0 since no extension is negotiated (§5.2),
 * opcodes are 0, 1, 2, 8, 9, 10 (§5.2), control frames have FIN and at most 125 bytes (§5.5),
 * a continuation needs an open message and a new message needs none (§5.4), the 64-bit length
 * has its top bit clear (§5.2), and a data message (the sum of its fragments) stays within
 * max_message, checked from each frame's header so an oversized payload is never read.
 * Length encodings that are not minimal are accepted: §5.2's "minimal number of bytes MUST be
 * used" binds the sender, the length is bounded by max_message either way, and rejecting them
 * would only break sloppy clients.
 *
 * After a close frame has been delivered, the rest of the input is ignored (the peer may send
 * nothing after it, §5.5.1). After an error every call returns the same error. */

#define WS_MAX_MESSAGE_DEFAULT (1u << 20) /* bytes in one data message */
#define WS_CONTROL_MAX         125        /* payload of a control frame, §5.5 */

typedef struct {
    uint64_t len;    /* payload length from the header */
    uint64_t done;   /* payload bytes delivered before the current piece */
    uint8_t opcode;  /* as on the wire: WS_OP_CONT for a continuation */
    uint8_t message; /* data frames: WS_OP_TEXT or WS_OP_BINARY, also for continuations;
                        control frames: same as opcode */
    uint8_t fin;     /* 1 on the last frame of a message (always 1 on control frames) */
} ws_frame_t;

typedef struct {
    ws_frame_t frame;     /* the frame being read */
    uint64_t msg_len;     /* bytes announced so far by the open data message's frames */
    uint64_t max_message; /* limit on msg_len, -EMSGSIZE above */
    uint8_t key[4];       /* masking key of the frame being read */
    uint8_t hdr[14];      /* header bytes, when the header arrives split across calls */
    uint8_t hdr_len;      /* how many of them */
    uint8_t state;        /* header, payload, closed or failed */
    uint8_t open;         /* opcode of the fragmented message in progress, 0 if none */
    int16_t err;          /* the sticky error once failed */
} ws_parser_t;

/* Each callback may be NULL. Return 0 to go on; a negative errno stops ws_parse, which returns
 * it (and keeps returning it). on_data is called zero or more times per frame, never with len 0,
 * with f->done the offset of the piece in the frame's payload. */
typedef struct {
    int (*on_frame)(void *ud, const ws_frame_t *f);
    int (*on_data)(void *ud, const ws_frame_t *f, uint8_t *data, size_t len);
    int (*on_frame_end)(void *ud, const ws_frame_t *f);
} ws_callbacks_t;

/* max_message 0 means WS_MAX_MESSAGE_DEFAULT. */
void ws_parser_init(ws_parser_t *p, uint64_t max_message);
/* Consumes all of data[0..len). Returns 0, or a negative errno (ws_close_code_for() says what
 * close code to send). */
int ws_parse(ws_parser_t *p, uint8_t *data, size_t len, const ws_callbacks_t *cb, void *ud);
/* 1 once a close frame has been read entirely. */
int ws_parser_closed(const ws_parser_t *p);

/* XORs data with the 4-byte key, starting at key byte offset & 3 (the payload offset of data[0],
 * so a payload can be unmasked in pieces). Masking and unmasking are the same operation. */
void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], uint64_t offset);

/* Message reader (message.c): the parser plus what a server does with frames. It assembles
 * fragmented data messages while control frames interleave, validates text as it arrives,
 * buffers control payloads (at most 125 bytes, inline) and parses close frames, then calls the
 * handler once per complete message or control frame.
 *
 * A message whose single frame arrives within one ws_read() call is delivered in place from the
 * caller's buffer, without a copy. Only a message that is fragmented or split across reads is
 * copied into the reader's buffer, which grows with the bytes that actually arrive (never ahead
 * of them, so a large announced length costs nothing until it is sent) and is freed as soon as
 * the message is delivered: an idle connection holds no buffer. ws_reader_free() releases it
 * when the connection ends mid-message. */

typedef struct {
    /* A complete text (valid UTF-8) or binary message; data is valid during the call only. */
    int (*on_message)(void *ud, unsigned opcode, const uint8_t *data, size_t len);
    /* Answer with ws_control_frame(out, WS_OP_PONG, data, len) (§5.5.2). */
    int (*on_ping)(void *ud, const uint8_t *data, size_t len);
    int (*on_pong)(void *ud, const uint8_t *data, size_t len);
    /* A valid close frame; code is WS_CLOSE_NO_STATUS when it had no payload. Answer with
     * ws_close_frame(out, code, NULL, 0), which echoes an empty close for 1005 (§5.5.1). */
    int (*on_close)(void *ud, unsigned code, const char *reason, size_t len);
} ws_handler_t;

typedef struct {
    ws_parser_t parser;
    const ws_handler_t *handler;
    void *ud;
    uint8_t *buf; /* the message being assembled; malloc'd, NULL between messages */
    size_t len, cap;
    const uint8_t *direct; /* the current frame's payload in the caller's buffer */
    ws_utf8_t utf8;        /* the text message being read */
    uint8_t ctl_len;
    uint8_t ctl[WS_CONTROL_MAX];
} ws_reader_t;

/* handler and ud are kept, not copied: handler must outlive the reader. A handler callback must
 * not free the reader; to stop reading it returns a negative errno, which ws_read returns. */
void ws_reader_init(ws_reader_t *r, uint64_t max_message, const ws_handler_t *handler, void *ud);
void ws_reader_free(ws_reader_t *r);
/* Like ws_parse: 0, or a negative errno to turn into a close code with ws_close_code_for(). */
int ws_read(ws_reader_t *r, uint8_t *data, size_t len);

/* Parses a close frame's payload (§5.5.1, §7.1.5, §7.1.6). Empty: *code = WS_CLOSE_NO_STATUS.
 * Returns -EPROTO for a 1-byte payload or a code not valid on the wire, -EILSEQ for a reason
 * that is not UTF-8. The reason points into payload. */
int ws_close_parse(const uint8_t *payload, size_t len, unsigned *code, const char **reason,
                   size_t *reason_len);

/* Frame encoder (encode.c). Server frames are never masked (§5.1), so a frame built once can be
 * written to any number of connections as is: a header from ws_frame_header() followed by the
 * payload, e.g. as two iovecs. */

#define WS_HEADER_MAX        10                   /* 2 + 8-byte length, no mask */
#define WS_CONTROL_FRAME_MAX (2 + WS_CONTROL_MAX) /* a whole control frame */

/* Writes the header of a frame with this opcode, FIN bit and payload length, using the minimal
 * length encoding. Returns its size: 2, 4 or 10. */
size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], unsigned opcode, int fin, uint64_t len);

/* Writes a whole control frame (ping, pong or close). Returns its size, or -EINVAL when the
 * payload is over 125 bytes or the opcode is not a control opcode. */
int ws_control_frame(uint8_t out[WS_CONTROL_FRAME_MAX], unsigned opcode, const void *payload,
                     size_t len);

/* Writes a close frame. code 0 or WS_CLOSE_NO_STATUS gives an empty payload (code 1005 must not
 * be sent, §7.4.1); otherwise the code and the reason, cut at a UTF-8 boundary to fit 123 bytes.
 * Returns its size, or -EINVAL for a code that may not be sent. */
int ws_close_frame(uint8_t out[WS_CONTROL_FRAME_MAX], unsigned code, const char *reason,
                   size_t reason_len);

/* Opening handshake (handshake.c, RFC 6455 §4.2). The http layer describes the request through
 * ws_request_t; header() looks a field up by name, case-insensitively, and returns its value
 * (ptr NULL when absent). A field that appears more than once (Connection, Upgrade) should come
 * back as its values joined with ", " (RFC 9110 §5.3). */

typedef struct {
    const char *ptr; /* not NUL-terminated; NULL when absent */
    size_t len;
} ws_slice_t;

typedef ws_slice_t (*ws_header_fn)(void *ud, const char *name);

typedef struct {
    const char *method; /* NUL-terminated, e.g. "GET" */
    int http_major, http_minor;
    ws_header_fn header;
    void *ud;
} ws_request_t;

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

typedef struct {
    int status;         /* 101 when the upgrade may proceed; else 400, 403, 426 (or 500) */
    const char *reason; /* a short English explanation for the error body and the log */
    /* A header the error response must carry, or NULL: on 426, Sec-WebSocket-Version: 13
     * tells the client which version to retry with (§4.4). */
    const char *header_name, *header_value;
    char accept[WS_ACCEPT_LEN + 1]; /* on 101: Sec-WebSocket-Accept, NUL-terminated */
} ws_handshake_t;

/* Whether the request tries to upgrade to WebSocket at all: an Upgrade field listing the
 * websocket token, or a Sec-WebSocket-Key field. A plain GET is not, and is routed as usual; an
 * attempt goes through ws_handshake() and gets either 101 or an error. */
int ws_is_upgrade(const ws_request_t *req);

/* Checks the request (§4.2.1) and fills hs. allowed_origins is a comma-separated list of
 * origins (e.g. "https://a.example, http://localhost:8000"); NULL, empty or "*" allows every
 * origin. A request without Origin is allowed: browsers always send it and the check exists to
 * stop other sites' pages (§10.2), while a non-browser client could send any value anyway.
 * Returns 0 with hs->status 101, or -EINVAL (400), -EACCES (403), -EPROTONOSUPPORT (426) or,
 * should libcrypto fail, -EIO (500). */
int ws_handshake(const ws_request_t *req, const char *allowed_origins, ws_handshake_t *hs);

/* Computes Sec-WebSocket-Accept: base64(SHA-1(key + the §1.3 GUID)), NUL-terminated. Returns 0,
 * -EINVAL for a key over 64 bytes (a valid one has 24), or -EIO when libcrypto fails. */
int ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* Writes the 101 Switching Protocols response head for a successful hs, then extra (complete
 * "Name: value\r\n" lines, or NULL), then the blank line. No subprotocol or extension is ever
 * selected (§4.2.2). Returns its length, -EINVAL when hs is not a success, or -ENOSPC when cap
 * is too small (nothing usable is written then). */
int ws_handshake_response(const ws_handshake_t *hs, const char *extra, char *buf, size_t cap);

#endif
