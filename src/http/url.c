/* Request targets: percent-decoding (RFC 3986 §2.1), the clean path that routing sees (decoded,
 * slashes merged, dot segments removed per §5.2.4 so nothing climbs above "/"), and query
 * parameters decoded on demand (application/x-www-form-urlencoded rules: '+' is a space). */
#include "http/http.h"

#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ssize_t url_decode(char *dst, const char *src, size_t len, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return -1;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        dst[o++] = c;
    }
    return (ssize_t)o;
}

/* src decoded into a NUL-terminated copy in a, its length in *n; NULL when out of memory or
 * when src is malformed. */
static char *decode_copy(arena_t *a, const char *src, size_t len, int plus_is_space, size_t *n)
{
    char *buf = arena_alloc(a, len + 1);
    ssize_t got = buf ? url_decode(buf, src, len, plus_is_space) : -1;
    if (got < 0)
        return NULL;
    buf[got] = '\0';
    *n = (size_t)got;
    return buf;
}

roost_str_t url_clean_path(arena_t *a, const char *path, size_t len)
{
    roost_str_t bad = {NULL, 0};
    /* absolute-form (RFC 9112 §3.2.2): skip scheme and authority */
    if (len > 7 &&
        (strncasecmp(path, "http://", 7) == 0 || strncasecmp(path, "https://", 8) == 0)) {
        size_t skip = path[4] == ':' ? 7 : 8;
        const char *p = skip < len ? memchr(path + skip, '/', len - skip) : NULL;
        if (!p)
            return str_make("/", 1);
        len -= (size_t)(p - path);
        path = p;
    }
    const char *q = memchr(path, '?', len);
    if (q)
        len = (size_t)(q - path);
    if (len == 0 || path[0] != '/')
        return bad;
    size_t n;
    char *buf = decode_copy(a, path, len, 0, &n);
    if (!buf)
        return bad;
    int trailing_slash = n > 1 && buf[n - 1] == '/';
    /* Rewrite in place: each segment is copied after the output so far, "." dropped, ".."
     * removes the last output segment (never the root). */
    size_t out = 0;
    size_t i = 0, end = n;
    while (i < end) {
        while (i < end && buf[i] == '/')
            i++;
        size_t s = i;
        while (i < end && buf[i] != '/')
            i++;
        size_t seglen = i - s;
        if (seglen == 0)
            break;
        if (seglen == 1 && buf[s] == '.')
            continue;
        if (seglen == 2 && buf[s] == '.' && buf[s + 1] == '.') {
            while (out > 0 && buf[out - 1] != '/')
                out--;
            if (out > 0)
                out--;
            continue;
        }
        buf[out++] = '/';
        memmove(buf + out, buf + s, seglen);
        out += seglen;
    }
    /* A trailing slash is kept: "/a/" and "/a" are different resources. */
    if (out == 0 || (trailing_slash && buf[out - 1] != '/'))
        buf[out++] = '/';
    buf[out] = '\0';
    return str_make(buf, out);
}

roost_str_t url_query_get(arena_t *a, roost_str_t query, const char *name)
{
    roost_str_t none = {NULL, 0};
    size_t nlen = strlen(name);
    const char *p = query.ptr, *end = query.ptr + query.len;
    if (!p)
        return none;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        char key[128];
        size_t klen = (size_t)(kend - p);
        if (klen < sizeof key) {
            ssize_t kn = url_decode(key, p, klen, 1);
            if (kn == (ssize_t)nlen && memcmp(key, name, nlen) == 0) {
                const char *v = eq ? eq + 1 : stop;
                size_t vn;
                char *out = decode_copy(a, v, (size_t)(stop - v), 1, &vn);
                return out ? str_make(out, vn) : none;
            }
        }
        p = amp ? amp + 1 : end;
    }
    return none;
}
