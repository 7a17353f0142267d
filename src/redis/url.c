/* redis:// URLs (redis://[[user]:password@]host[:port][/db], the scheme of redis-cli -u and
 * every client library) and the SHA1 a script is run by. No percent-decoding: a password with
 * '@' or '/' is not supported. */
#include "redis/redis.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* s, NUL-terminated, at *at, which then moves past it; NULL (nothing written) for a part the URL
 * does not have. */
static const char *put(char **at, roost_str_t s)
{
    if (!s.ptr)
        return NULL;
    char *start = *at;
    memcpy(start, s.ptr, s.len);
    start[s.len] = '\0';
    *at += s.len + 1;
    return start;
}

int redis_url_parse(const char *url, redis_url_t *u)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    url_parts_t parts;
    if (url_split(url, &parts) < 0 || !str_eq_nocase(parts.scheme, "redis") || !parts.host.len)
        return -EINVAL;
    int bad = parts.port.ptr && str_to_int(parts.port, 1, 65535, &u->port) < 0;
    if (!bad && parts.path.len)
        bad = str_to_int(parts.path, 0, 1 << 20, &u->db) < 0;
    if (bad)
        return -EINVAL;
    if (!parts.has_password) /* redis://password@host, as some tools write it */
        parts.password = parts.user;
    if (!parts.has_password || !parts.user.len)
        parts.user = str_make(NULL, 0);
    /* The three texts in one allocation: one check, one free. */
    char *at = u->texts = malloc(parts.host.len + parts.user.len + parts.password.len + 3);
    if (!at)
        return -ENOMEM;
    u->host = put(&at, parts.host);
    u->user = put(&at, parts.user);
    u->password = put(&at, parts.password);
    return 0;
}

void redis_url_free(redis_url_t *u)
{
    free(u->texts);
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
