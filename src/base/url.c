/* Connection URLs (scheme://[user[:password]@]host[:port][/path]) split into slices of the
 * string, for the services that take one (--database, --redis): what each part means, and the
 * defaults, are the service's. No percent-decoding and no IPv6 literals; not for request
 * targets (src/http/url.c). */
#include "base/base.h"

#include <errno.h>
#include <string.h>

int url_split(const char *url, url_parts_t *out)
{
    memset(out, 0, sizeof *out);
    const char *sep = url ? strstr(url, "://") : NULL;
    if (!sep || sep == url)
        return -EINVAL;
    out->scheme = str_make(url, (size_t)(sep - url));
    const char *p = sep + 3, *end = p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *hostend = slash ? slash : end;
    const char *at = NULL; /* the last '@' before the path: a password may hold one */
    for (const char *q = p; q < hostend; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        out->user = str_make(p, (size_t)((colon ? colon : at) - p));
        if (colon) {
            out->has_password = 1;
            out->password = str_make(colon + 1, (size_t)(at - colon - 1));
        }
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(hostend - p));
    out->host = str_make(p, (size_t)((colon ? colon : hostend) - p));
    if (colon)
        out->port = str_make(colon + 1, (size_t)(hostend - colon - 1));
    if (slash)
        out->path = str_make(slash + 1, (size_t)(end - slash - 1));
    return 0;
}

int str_to_int(roost_str_t s, int lo, int hi, int *out)
{
    if (s.len == 0 || s.len > 9)
        return -EINVAL;
    long v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -EINVAL;
        v = v * 10 + (s.ptr[i] - '0');
    }
    if (v < lo || v > hi)
        return -EINVAL;
    *out = (int)v;
    return 0;
}
