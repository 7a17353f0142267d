/* The opening handshake of ws.h, server side (RFC 6455 §4.2): checks an upgrade request, picks
 * its status, computes Sec-WebSocket-Accept with libcrypto and writes the 101 response head. It
 * reads no socket and parses no HTTP: the http layer hands it the request's parts. */
#include "ws/ws.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

/* §1.3: the GUID that makes the accept key prove the server understood WebSocket. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static ws_slice_t trim(ws_slice_t s)
{
    if (!s.ptr)
        return (ws_slice_t){NULL, 0};
    while (s.len && is_ows(s.ptr[0]))
        s.ptr++, s.len--;
    while (s.len && is_ows(s.ptr[s.len - 1]))
        s.len--;
    return s;
}

static int slice_eq(ws_slice_t s, const char *lit)
{
    return s.len == strlen(lit) && strncasecmp(s.ptr, lit, s.len) == 0;
}

/* Splits a comma-separated list (RFC 9110 §5.6.1) at *pos: the next element, trimmed, possibly
 * empty. Returns 0 at the end of the list. */
static int next_element(ws_slice_t list, size_t *pos, ws_slice_t *el)
{
    if (*pos > list.len)
        return 0;
    const char *start = list.ptr + *pos;
    const char *comma = memchr(start, ',', list.len - *pos);
    size_t n = comma ? (size_t)(comma - start) : list.len - *pos;
    *el = trim((ws_slice_t){start, n});
    *pos += n + 1;
    return 1;
}

/* Whether a list field contains token, case-insensitively (Connection and Upgrade tokens are,
 * RFC 9110 §7.6.1 and §7.8). */
static int has_token(ws_slice_t list, const char *token)
{
    ws_slice_t el;
    size_t pos = 0;

    if (!list.ptr)
        return 0;
    while (next_element(list, &pos, &el))
        if (slice_eq(el, token))
            return 1;
    return 0;
}

static ws_slice_t header(const ws_request_t *req, const char *name)
{
    return trim(req->header(req->ud, name));
}

int ws_is_upgrade(const ws_request_t *req)
{
    return has_token(header(req, "Upgrade"), "websocket") ||
           header(req, "Sec-WebSocket-Key").ptr != NULL;
}

static int is_base64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/* §4.2.1: the key is base64 of 16 bytes, so 22 characters and "==". The two spare bits in the
 * last character are not checked: the key is only hashed, never decoded. */
static int key_valid(ws_slice_t key)
{
    if (!key.ptr || key.len != 24 || key.ptr[22] != '=' || key.ptr[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (!is_base64(key.ptr[i]))
            return 0;
    return 1;
}

/* Origins compare as ASCII case-insensitive strings (RFC 6454 §6.2 serializes them in lower
 * case, but configuration may not be). A trailing '/' in the list is forgiven: an origin has no
 * path, and "http://host/" is a common way to write one. */
static int origin_allowed(const char *allowed, ws_slice_t origin)
{
    ws_slice_t list = {allowed, allowed ? strlen(allowed) : 0}, el;
    size_t pos = 0;
    int any = 0;

    if (!origin.ptr || !allowed)
        return 1; /* not a browser (see ws.h), or no list */
    while (next_element(list, &pos, &el)) {
        if (el.len == 0)
            continue;
        any = 1;
        if (el.len > 1 && el.ptr[el.len - 1] == '/')
            el.len--;
        if (slice_eq(el, "*") ||
            (el.len == origin.len && strncasecmp(el.ptr, origin.ptr, el.len) == 0))
            return 1;
    }
    return !any; /* an empty list allows everyone */
}

static int refuse(ws_handshake_t *hs, int status, const char *reason, int err)
{
    hs->status = status;
    hs->reason = reason;
    return err;
}

int ws_handshake(const ws_request_t *req, const char *allowed_origins, ws_handshake_t *hs)
{
    memset(hs, 0, sizeof *hs);

    /* §4.1: "The method of the request MUST be GET, and the HTTP version MUST be at least 1.1." */
    if (!req->method || strcmp(req->method, "GET") != 0)
        return refuse(hs, 400, "WebSocket upgrade needs GET", -EINVAL);
    if (req->http_major != 1 || req->http_minor < 1)
        return refuse(hs, 400, "WebSocket upgrade needs HTTP/1.1", -EINVAL);
    if (!has_token(header(req, "Upgrade"), "websocket")) {
        /* RFC 9110 §15.5.22: a resource that needs an upgrade answers 426 and names it. */
        hs->header_name = "Upgrade";
        hs->header_value = "websocket";
        return refuse(hs, 426, "this resource speaks WebSocket only: Upgrade: websocket",
                      -EPROTONOSUPPORT);
    }
    if (!has_token(header(req, "Connection"), "upgrade"))
        return refuse(hs, 400, "Connection header lacks the upgrade token", -EINVAL);

    /* §4.4: a version we do not speak (or none) is answered with the one we do. */
    ws_slice_t version = header(req, "Sec-WebSocket-Version");
    if (!version.ptr || !slice_eq(version, "13")) {
        hs->header_name = "Sec-WebSocket-Version";
        hs->header_value = "13";
        return refuse(hs, 426, "unsupported Sec-WebSocket-Version, 13 is required",
                      -EPROTONOSUPPORT);
    }

    ws_slice_t key = header(req, "Sec-WebSocket-Key");
    if (!key_valid(key))
        return refuse(hs, 400, "missing or invalid Sec-WebSocket-Key", -EINVAL);

    if (!origin_allowed(allowed_origins, header(req, "Origin")))
        return refuse(hs, 403, "origin not allowed", -EACCES);

    if (ws_accept_key(key.ptr, key.len, hs->accept) < 0)
        return refuse(hs, 500, "SHA-1 failed", -EIO);
    hs->status = 101;
    hs->reason = "Switching Protocols";
    return 0;
}

int ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    /* The key as sent (not decoded) followed by the GUID, §4.2.2 item 5.4. Keys are 24 bytes;
     * anything longer is refused rather than hashed in pieces. */
    char buf[64 + sizeof ws_guid];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (key_len > 64)
        return -EINVAL;
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, ws_guid, sizeof ws_guid - 1);
    if (!EVP_Digest(buf, key_len + sizeof ws_guid - 1, md, &md_len, EVP_sha1(), NULL) ||
        md_len != 20)
        return -EIO;
    EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 characters and a NUL */
    return 0;
}

int ws_handshake_response(const ws_handshake_t *hs, const char *extra, char *buf, size_t cap)
{
    if (hs->status != 101)
        return -EINVAL;
    int n = snprintf(buf, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s\r\n",
                     hs->accept, extra ? extra : "");
    if (n < 0 || (size_t)n >= cap)
        return -ENOSPC;
    return n;
}
