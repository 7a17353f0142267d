/* A bump allocator for memory that dies with one request (decoded params, copied headers):
 * chunks are freed together by arena_reset, so handlers never free piece by piece. */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

struct arena_chunk {
    arena_chunk_t *next;
    size_t size;
    char data[] __attribute__((aligned(16)));
};

#define ARENA_CHUNK 4096

void *arena_alloc(arena_t *a, size_t size)
{
    if (size > SIZE_MAX / 2) /* rounding up, or adding the chunk header, would wrap */
        return NULL;
    size = (size + 15) & ~(size_t)15;
    if ((size_t)(a->end - a->cur) < size || !a->cur) {
        size_t want = size > ARENA_CHUNK / 2 ? size : ARENA_CHUNK;
        arena_chunk_t *c = malloc(sizeof *c + want);
        if (!c)
            return NULL;
        c->size = want;
        c->next = a->head;
        a->head = c;
        a->cur = c->data;
        a->end = c->data + want;
    }
    void *p = a->cur;
    a->cur += size;
    return p;
}

char *arena_strndup(arena_t *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* Keeps one standard chunk, so a recycled request allocates nothing on the next use. */
void arena_reset(arena_t *a)
{
    arena_chunk_t *keep = NULL, *c = a->head;
    while (c) {
        arena_chunk_t *next = c->next;
        if (!keep && c->size == ARENA_CHUNK)
            keep = c;
        else
            free(c);
        c = next;
    }
    a->head = keep;
    if (keep) {
        keep->next = NULL;
        a->cur = keep->data;
        a->end = keep->data + keep->size;
    } else {
        a->cur = a->end = NULL;
    }
}

void arena_free(arena_t *a)
{
    arena_reset(a);
    free(a->head);
    a->head = NULL;
    a->cur = a->end = NULL;
}
