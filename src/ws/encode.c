/* The frame encoder of ws.h: server frame headers (never masked, RFC 6455 §5.1) and whole
 * control frames (ping, pong, close). Data payloads are not copied here: the caller writes a
 * header and its payload side by side. */
#include "ws/ws.h"

#include <errno.h>
#include <string.h>

size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], unsigned opcode, int fin, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len <= 125) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xFFFF) { /* the minimal encoding is a MUST for senders, §5.2 */
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

int ws_control_frame(uint8_t out[WS_CONTROL_FRAME_MAX], unsigned opcode, const void *payload,
                     size_t len)
{
    if (len > WS_CONTROL_MAX ||
        (opcode != WS_OP_CLOSE && opcode != WS_OP_PING && opcode != WS_OP_PONG))
        return -EINVAL;
    size_t n = ws_frame_header(out, opcode, 1, len);
    if (len)
        memcpy(out + n, payload, len);
    return (int)(n + len);
}

/* The longest prefix of s, at most max bytes, that does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    while (max > 0 && ((uint8_t)s[max] & 0xC0) == 0x80)
        max--; /* s[max] continues a sequence: the cut would split it */
    return max;
}

int ws_close_frame(uint8_t out[WS_CONTROL_FRAME_MAX], unsigned code, const char *reason,
                   size_t reason_len)
{
    uint8_t payload[WS_CONTROL_MAX];

    if (code == 0 || code == WS_CLOSE_NO_STATUS)
        return ws_control_frame(out, WS_OP_CLOSE, NULL, 0);
    if (!ws_close_code_valid(code))
        return -EINVAL;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    reason_len = reason ? utf8_cut(reason, reason_len, WS_CONTROL_MAX - 2) : 0;
    if (reason_len)
        memcpy(payload + 2, reason, reason_len);
    return ws_control_frame(out, WS_OP_CLOSE, payload, 2 + reason_len);
}
