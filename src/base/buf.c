/* rbuf (shared, reference-counted) and sbuf (owned, growable) byte buffers. Nothing here is
 * clever: the point is that there is one of each, used everywhere. */
#include "base/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rbuf_t *rbuf_new(size_t cap)
{
    rbuf_t *b = malloc(sizeof *b + cap + 1);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = 0;
    b->cap = cap;
    return b;
}

rbuf_t *rbuf_from(const void *data, size_t len)
{
    rbuf_t *b = rbuf_new(len);
    if (!b)
        return NULL;
    if (len)
        memcpy(b->data, data, len);
    b->data[len] = '\0';
    b->len = len;
    return b;
}

void rbuf_unref(rbuf_t *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

void *mem_grow(void *p, size_t *cap, size_t need, size_t first, size_t most)
{
    size_t n = *cap ? *cap : first;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (n > most && need <= most)
        n = most; /* doubling need not overshoot the limit */
    void *grown = realloc(p, n);
    if (grown)
        *cap = n;
    return grown;
}

int sbuf_reserve(sbuf_t *s, size_t extra)
{
    if (s->len + extra + 1 <= s->cap)
        return 0;
    char *p = mem_grow(s->p, &s->cap, s->len + extra + 1, 256, SIZE_MAX);
    if (!p)
        return -ENOMEM;
    s->p = p;
    return 0;
}

int sbuf_append(sbuf_t *s, const void *data, size_t len)
{
    if (sbuf_reserve(s, len) < 0)
        return -ENOMEM;
    if (len)
        memcpy(s->p + s->len, data, len);
    s->len += len;
    s->p[s->len] = '\0';
    return 0;
}

int sbuf_puts(sbuf_t *s, const char *str)
{
    return sbuf_append(s, str, strlen(str));
}

int sbuf_printf(sbuf_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof small)
        return sbuf_append(s, small, (size_t)n);
    if (sbuf_reserve(s, (size_t)n) < 0)
        return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
    return 0;
}

void sbuf_free(sbuf_t *s)
{
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}
