/* Entity tags for the response cache: a strong tag from the body's bytes, and the
 * If-None-Match test (RFC 9110 §8.8.3, §13.1.2). Not the cache's freshness: that is cache.c. */
#include "mw/cache.h"

#include <openssl/sha.h>
#include <string.h>

void etag_of(const void *body, size_t len, char out[ETAG_SIZE])
{
    /* SHA-256 rather than a 64-bit hash: a collision would serve one body under another's tag
     * to every client that revalidates, and the hash runs once per fill, not per hit. */
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(body, len, md);
    out[0] = '"';
    for (int i = 0; i < 16; i++) {
        out[1 + 2 * i] = hex[md[i] >> 4];
        out[2 + 2 * i] = hex[md[i] & 15];
    }
    out[33] = '"';
    out[34] = 0;
}

int etag_matches(roost_str_t inm, const char *etag)
{
    /* A quoted tag has no quote inside, so where etag (quotes included) occurs in the list it
     * is one whole member, unless something other than a separator or W/ glues onto it. */
    size_t el = strlen(etag);
    if (!inm.ptr)
        return 0;
    const char *end = inm.ptr + inm.len;
    for (const char *p = inm.ptr; p < end && (*p == ' ' || *p == '\t' || *p == ','); p++)
        if (p + 1 < end && p[1] == '*')
            return 1;
    if (inm.len && inm.ptr[0] == '*')
        return 1;
    for (const char *p = inm.ptr; (p = memmem(p, (size_t)(end - p), etag, el)); p += el) {
        const char *after = p + el;
        int starts = p == inm.ptr || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t' ||
                     (p - inm.ptr >= 2 && p[-1] == '/' && p[-2] == 'W');
        if (starts && (after == end || *after == ',' || *after == ' ' || *after == '\t'))
            return 1;
    }
    return 0;
}
