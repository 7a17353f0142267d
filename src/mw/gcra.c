/* The rate-limit policy spec parser: pure functions, no table, no HTTP. The GCRA arithmetic
 * itself is inline in mw.h; the table of clients is rl_table.c; the middleware that answers 429
 * is ratelimit.c. */
#include "mw/mw.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000LL

static int fail(mw_rl_policy_t *p, char *err, size_t size, const char *what, const char *tok,
                size_t len)
{
    mw_rl_policy_clear(p);
    snprintf(err, size, "%s: '%.*s'", what, (int)len, tok);
    return -EINVAL;
}

/* A whole number in [1, max], the whole of [p, p+len). */
static long number(const char *p, size_t len, long max)
{
    if (len == 0 || len > 10)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v >= 1 && v <= max ? v : -1;
}

static int name_ok(const char *p, size_t len)
{
    if (len == 0 || len >= MW_RL_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)p[i]) && !strchr("_.-", p[i]))
            return 0;
    return 1;
}

/* A header name is an RFC 9110 token. */
static int token_ok(const char *p, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)p[i]) && !strchr("!#$%&'*+-.^_`|~", p[i]))
            return 0;
    return 1;
}

static int is(const char *tok, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(tok, word, len) == 0;
}

static int prefix(const char *tok, size_t len, const char *pre)
{
    size_t n = strlen(pre);
    return len >= n && memcmp(tok, pre, n) == 0;
}

int mw_rl_policy_parse(const char *spec, mw_rl_policy_t *p, char *err, size_t errsize)
{
    memset(p, 0, sizeof *p);
    long burst = 0;
    int first = 1;
    for (const char *s = spec; *s;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        const char *tok = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        size_t len = (size_t)(s - tok);
        int was_first = first;
        first = 0;
        if (prefix(tok, len, "rate=")) {
            const char *v = tok + 5, *slash = memchr(v, '/', len - 5);
            if (!slash || slash + 2 != tok + len)
                return fail(p, err, errsize, "rate is N/s, N/m or N/h", tok, len);
            p->window_s = slash[1] == 's' ? 1 : slash[1] == 'm' ? 60 : slash[1] == 'h' ? 3600 : 0;
            p->count = number(v, (size_t)(slash - v), 1000000000L);
            if (!p->window_s || p->count < 1)
                return fail(p, err, errsize, "rate is N/s, N/m or N/h", tok, len);
        } else if (prefix(tok, len, "burst=")) {
            burst = number(tok + 6, len - 6, 1000000L);
            if (burst < 1)
                return fail(p, err, errsize, "burst is a number from 1 to 1000000", tok, len);
        } else if (is(tok, len, "key=ip")) {
            p->key = MW_KEY_IP;
        } else if (is(tok, len, "key=api-key")) {
            p->key = MW_KEY_API_KEY;
        } else if (prefix(tok, len, "key=header:") && token_ok(tok + 11, len - 11)) {
            p->key = MW_KEY_HEADER;
            free(p->header);
            p->header = strndup(tok + 11, len - 11);
            if (!p->header) {
                mw_rl_policy_clear(p);
                return -ENOMEM;
            }
        } else if (prefix(tok, len, "key=")) {
            return fail(p, err, errsize, "key is ip, header:NAME or api-key", tok, len);
        } else if (is(tok, len, "shadow")) {
            p->shadow = 1;
        } else if (prefix(tok, len, "name=")) {
            if (!name_ok(tok + 5, len - 5))
                return fail(p, err, errsize, "a name is letters, digits, '_', '.' or '-'", tok,
                            len);
            memcpy(p->name, tok + 5, len - 5);
            p->name[len - 5] = '\0';
        } else if (was_first && !memchr(tok, '=', len)) {
            p->glob = strndup(tok, len);
            if (!p->glob) {
                mw_rl_policy_clear(p);
                return -ENOMEM;
            }
        } else {
            return fail(p, err, errsize, "unknown part of a rate limit", tok, len);
        }
    }
    if (!p->count) {
        mw_rl_policy_clear(p);
        snprintf(err, errsize, "no rate=N/s|m|h in '%s'", spec);
        return -EINVAL;
    }
    p->gcra.burst = burst ? burst : (p->count < 1000000L ? p->count : 1000000L);
    p->gcra.interval_ns = p->window_s * NS_PER_S / p->count;
    if (p->gcra.interval_ns < 1)
        p->gcra.interval_ns = 1;
    return 0;
}

void mw_rl_policy_clear(mw_rl_policy_t *p)
{
    free(p->glob);
    free(p->header);
    p->glob = p->header = NULL;
}
