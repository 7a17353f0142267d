/* libFuzzer target for the ws opening handshake: the input picks a method and an HTTP version,
 * then gives an origin list and "Name: value" lines. Asserts (abort) that every answer is one of
 * the documented statuses with what goes with it, and that a 101 carries the right accept key. */
#include "ws/ws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "fuzz.h"

#define MAX_FIELDS 16

typedef struct {
    ws_slice_t name[MAX_FIELDS], value[MAX_FIELDS];
    int n;
} fields_t;

static ws_slice_t lookup(void *ud, const char *name)
{
    const fields_t *f = ud;
    size_t len = strlen(name);
    for (int i = 0; i < f->n; i++)
        if (f->name[i].len == len && strncasecmp(f->name[i].ptr, name, len) == 0)
            return f->value[i];
    return (ws_slice_t){NULL, 0};
}

static ws_slice_t trim(ws_slice_t s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t'))
        s.ptr++, s.len--;
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *methods[] = {"GET", "POST", "get", "HEAD"};
    static const int versions[][2] = {{1, 1}, {1, 0}, {2, 0}, {1, 2}};

    if (size < 2)
        return 0;
    char *text = malloc(size - 2 + 1); /* NUL-terminated for the origin list */
    REQUIRE(text);
    memcpy(text, data + 2, size - 2);
    text[size - 2] = 0;

    /* line 1: the allowed origins; then fields */
    fields_t f = {.n = 0};
    char *line = text, *end = text + (size - 2), *origins = text;
    char *nl = memchr(line, '\n', (size_t)(end - line));
    if (nl) {
        *nl = 0;
        line = nl + 1;
    } else {
        line = end;
    }
    while (line < end && f.n < MAX_FIELDS) {
        nl = memchr(line, '\n', (size_t)(end - line));
        char *stop = nl ? nl : end, *colon = memchr(line, ':', (size_t)(stop - line));
        if (colon) {
            f.name[f.n] = (ws_slice_t){line, (size_t)(colon - line)};
            f.value[f.n] = (ws_slice_t){colon + 1, (size_t)(stop - colon - 1)};
            f.n++;
        }
        line = stop + 1;
    }

    ws_request_t req = {methods[data[0] & 3], versions[data[1] & 3][0], versions[data[1] & 3][1],
                        lookup, &f};
    ws_handshake_t hs;
    int attempt = ws_is_upgrade(&req);
    int rc = ws_handshake(&req, data[1] & 4 ? NULL : origins, &hs);

    REQUIRE(hs.reason != NULL);
    REQUIRE((rc == 0) == (hs.status == 101));
    REQUIRE(hs.status == 101 || hs.status == 400 || hs.status == 403 || hs.status == 426);
    REQUIRE((hs.status == 426) == (hs.header_name != NULL));
    if (!attempt) /* no websocket token: a bad request, or 426 naming the upgrade it needs */
        REQUIRE(hs.status == 400 || hs.status == 426);
    if ((data[1] & 4) || origins[0] == 0)
        REQUIRE(hs.status != 403);
    if (hs.status == 101) {
        char accept[WS_ACCEPT_LEN + 1], head[512];
        ws_slice_t key = trim(lookup(&f, "sec-websocket-key"));
        REQUIRE(attempt && key.len == 24);
        REQUIRE(ws_accept_key(key.ptr, key.len, accept) == 0);
        REQUIRE(strlen(hs.accept) == WS_ACCEPT_LEN && strcmp(accept, hs.accept) == 0);
        int n = ws_handshake_response(&hs, NULL, head, sizeof head);
        REQUIRE(n > 0 && (size_t)n == strlen(head));
        REQUIRE(strncmp(head, "HTTP/1.1 101 ", 13) == 0 && strstr(head, hs.accept));
        REQUIRE(memcmp(head + n - 4, "\r\n\r\n", 4) == 0);
        REQUIRE(ws_handshake_response(&hs, NULL, head, (size_t)n) == -ENOSPC);
    } else {
        char head[8];
        REQUIRE(ws_handshake_response(&hs, NULL, head, sizeof head) < 0);
    }
    free(text);
    return 0;
}
