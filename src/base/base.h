/* The base layer: buffers, arenas, time, logging, counters and configuration. Everything above
 * it (net, http, ws, app) uses these types; this layer uses only libc and the public header.
 *
 * Buffers come in two kinds. `rbuf_t` is immutable once shared: reference-counted, allocated
 * once, handed across threads and to many writers (a response body, a room frame). `sbuf_t` is a
 * plain growable byte string owned by one place (a response being serialized). */
#ifndef ROOST_BASE_H
#define ROOST_BASE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/roost.h"

#define ARRAY_LEN(a)                 (sizeof(a) / sizeof((a)[0]))
#define CONTAINER_OF(p, type, field) ((type *)((char *)(p)-offsetof(type, field)))
#define LIKELY(x)                    __builtin_expect(!!(x), 1)
#define UNLIKELY(x)                  __builtin_expect(!!(x), 0)

/* ---- rbuf: reference-counted bytes; the data follows the header in one allocation ---- */
typedef struct rbuf {
    atomic_int refs;
    size_t len;
    size_t cap;
    char data[];
} rbuf_t;

rbuf_t *rbuf_new(size_t cap);                    /* refs = 1, len = 0; NULL on ENOMEM */
rbuf_t *rbuf_from(const void *data, size_t len); /* a copy of data, refs = 1 */
static inline rbuf_t *rbuf_ref(rbuf_t *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}
void rbuf_unref(rbuf_t *b); /* frees at zero; NULL is fine */

/* ---- sbuf: a growable string owned by one place ---- */
typedef struct {
    char *p;
    size_t len;
    size_t cap;
} sbuf_t;

int sbuf_reserve(sbuf_t *s, size_t extra); /* room for `extra` more bytes (+1 for a NUL) */
int sbuf_append(sbuf_t *s, const void *data, size_t len);
int sbuf_puts(sbuf_t *s, const char *str);
int sbuf_printf(sbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_free(sbuf_t *s);

/* ---- arena: bump allocation for what dies with one request ---- */
typedef struct arena_chunk arena_chunk_t;
typedef struct {
    arena_chunk_t *head;
    char *cur;
    char *end;
} arena_t;

void *arena_alloc(arena_t *a, size_t size); /* 16-byte aligned; NULL on ENOMEM */
char *arena_strndup(arena_t *a, const char *s, size_t len);
void arena_reset(arena_t *a); /* frees every chunk but one, for reuse */
void arena_free(arena_t *a);  /* frees every chunk */

/* ---- slices ---- */
static inline roost_str_t str_make(const char *p, size_t len)
{
    roost_str_t s = {p, len};
    return s;
}
int str_eq_nocase(roost_str_t a, const char *b);        /* b NUL-terminated */
int str_has_token(roost_str_t list, const char *token); /* comma list, case-insensitive */

/* ---- time ---- */
uint64_t time_now_ns(void); /* CLOCK_MONOTONIC */
uint64_t time_now_ms(void);
double time_wall(void); /* seconds since the epoch */
/* Writes an IMF-fixdate (RFC 9110 §5.6.7) for `t` into out (30 bytes incl. NUL). */
void time_http_date(char out[30], int64_t t);

/* ---- logging ---- */
void log_vwrite(const char *level, const char *fmt, va_list ap);
#define log_info(...)  roost_log("info", __VA_ARGS__)
#define log_warn(...)  roost_log("warn", __VA_ARGS__)
#define log_error(...) roost_log("error", __VA_ARGS__)

/* ---- strmap: string keys (copied) to opaque values; the owner locks ---- */
typedef struct strmap_entry strmap_entry_t;
typedef struct {
    strmap_entry_t **b;
    size_t nb, n;
} strmap_t;                                                /* zero-initialised is empty */
void *strmap_get(const strmap_t *m, const char *key);      /* NULL when absent */
int strmap_put(strmap_t *m, const char *key, void *value); /* replaces; -1 on ENOMEM */
void *strmap_del(strmap_t *m, const char *key);            /* the value removed, or NULL */
void strmap_each(const strmap_t *m, void (*fn)(const char *key, void *value, void *ud), void *ud);
void strmap_free(strmap_t *m, void (*free_value)(void *));

/* ---- counters: a registry of named atomics, rendered as Prometheus text ---- */
typedef struct counters counters_t;
counters_t *counters_new(void);
void counters_free(counters_t *c);
roost_counter_t *counters_get(counters_t *c, const char *name, const char *labels,
                              const char *help);
/* Appends every counter as "# HELP/# TYPE" + "name{labels} value" lines. */
void counters_render(counters_t *c, sbuf_t *out);

#endif
