/* redis:// URLs (redis://[[user]:password@]host[:port][/db], the scheme of redis-cli -u and
 * every client library) and the SHA1 a script is run by. No percent-decoding: a password with
 * '@' or '/' is not supported. */
#include "redis/redis.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_n(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int parse_int(const char *p, size_t n, int lo, int hi, int *out)
{
    if (n == 0 || n > 9)
        return -EINVAL;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -EINVAL;
        v = v * 10 + (p[i] - '0');
    }
    if (v < lo || v > hi)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

int redis_url_parse(const char *url, redis_url_t *u)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (!url || strncmp(url, "redis://", 8) != 0)
        return -EINVAL;
    const char *p = url + 8, *end = p + strlen(p);
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *hostend = slash ? slash : end;
    const char *at = NULL;
    for (const char *q = p; q < hostend; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) { /* redis://password@host, as some tools write it */
            u->password = dup_n(p, (size_t)(at - p));
        } else {
            if (colon > p)
                u->user = dup_n(p, (size_t)(colon - p));
            u->password = dup_n(colon + 1, (size_t)(at - colon - 1));
        }
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(hostend - p));
    const char *hend = colon ? colon : hostend;
    int bad = hend == p;
    if (!bad && colon)
        bad = parse_int(colon + 1, (size_t)(hostend - colon - 1), 1, 65535, &u->port) < 0;
    if (!bad && slash && slash + 1 < end)
        bad = parse_int(slash + 1, (size_t)(end - slash - 1), 0, 1 << 20, &u->db) < 0;
    if (!bad)
        u->host = dup_n(p, (size_t)(hend - p));
    if (bad || !u->host) {
        redis_url_free(u);
        return -EINVAL;
    }
    return 0;
}

void redis_url_free(redis_url_t *u)
{
    free(u->host);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof *u);
}

void redis_script_init(redis_script_t *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s->source, strlen(s->source), md, &n, EVP_sha1(), NULL);
    for (unsigned i = 0; i < n && i < 20; i++)
        snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}
