/* A string-keyed hash map with separate chaining (keys copied, values opaque), for the few
 * tables roost keeps by name: rooms, and the users present in a room. Not thread-safe: its
 * owner locks. FNV-1a hashing; the table doubles when it averages two entries per bucket. */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

struct strmap_entry {
    strmap_entry_t *next;
    uint64_t hash;
    void *value;
    char key[];
};

static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void strmap_free(strmap_t *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->nb; i++) {
        strmap_entry_t *e = m->b[i];
        while (e) {
            strmap_entry_t *next = e->next;
            if (free_value)
                free_value(e->value);
            free(e);
            e = next;
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}

static strmap_entry_t **slot(const strmap_t *m, const char *key, uint64_t h)
{
    strmap_entry_t **p = &m->b[h & (m->nb - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
        p = &(*p)->next;
    return p;
}

void *strmap_get(const strmap_t *m, const char *key)
{
    if (!m->n)
        return NULL;
    strmap_entry_t *e = *slot(m, key, hash_of(key));
    return e ? e->value : NULL;
}

static int grow(strmap_t *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    strmap_entry_t **b = calloc(nb, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        strmap_entry_t *e = m->b[i];
        while (e) {
            strmap_entry_t *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

int strmap_put(strmap_t *m, const char *key, void *value)
{
    if ((m->n + 1 > 2 * m->nb) && grow(m) < 0)
        return -1;
    uint64_t h = hash_of(key);
    strmap_entry_t **p = slot(m, key, h);
    if (*p) {
        (*p)->value = value;
        return 0;
    }
    size_t len = strlen(key);
    strmap_entry_t *e = malloc(sizeof *e + len + 1);
    if (!e)
        return -1;
    e->next = NULL;
    e->hash = h;
    e->value = value;
    memcpy(e->key, key, len + 1);
    *p = e;
    m->n++;
    return 0;
}

void *strmap_del(strmap_t *m, const char *key)
{
    if (!m->n)
        return NULL;
    strmap_entry_t **p = slot(m, key, hash_of(key));
    strmap_entry_t *e = *p;
    if (!e)
        return NULL;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->n--;
    return v;
}

void strmap_each(const strmap_t *m, void (*fn)(const char *key, void *value, void *ud), void *ud)
{
    for (size_t i = 0; i < m->nb; i++)
        for (strmap_entry_t *e = m->b[i]; e; e = e->next)
            fn(e->key, e->value, ud);
}
