/* The base layer: buffers, arenas, time, logging, counters, configuration and the one thread
 * pool skeleton. Everything above
 * it (net, http, ws, app) uses these types; this layer uses only libc and the public header.
 *
 * Buffers come in two kinds. `rbuf_t` is immutable once shared: reference-counted, allocated
 * once, handed across threads and to many writers (a response body, a room frame). `sbuf_t` is a
 * plain growable byte string owned by one place (a response being serialized). */
#ifndef ROOST_BASE_H
#define ROOST_BASE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/roost.h"

#define ARRAY_LEN(a)                 (sizeof(a) / sizeof((a)[0]))
#define CONTAINER_OF(p, type, field) ((type *)((char *)(p)-offsetof(type, field)))
#define LIKELY(x)                    __builtin_expect(!!(x), 1)
#define UNLIKELY(x)                  __builtin_expect(!!(x), 0)

/* A hand-off through code built without ThreadSanitizer (libuv's threadpool: uv_queue_work and
 * its after-work callback): HANDOFF_RELEASE(p) where p is handed over, HANDOFF_ACQUIRE(p) where
 * it is taken, so that TSan sees the order libuv's own mutex gives. Nothing in other builds. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HANDOFF_RELEASE(p) __tsan_release(p)
#define HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#endif
#endif
#ifndef HANDOFF_RELEASE
#define HANDOFF_RELEASE(p) ((void)(p))
#define HANDOFF_ACQUIRE(p) ((void)(p))
#endif
/* Appends item to the singly linked list (head, tail) whose link field is `link`. */
#define LIST_APPEND(head, tail, item, link)                                                        \
    do {                                                                                           \
        if (tail)                                                                                  \
            (tail)->link = (item);                                                                 \
        else                                                                                       \
            (head) = (item);                                                                       \
        (tail) = (item);                                                                           \
    } while (0)
/* Moves the whole singly linked list (head, tail) to dst and leaves it empty: how a loop takes
 * its inbox at once, under the lock the other threads append under. */
#define LIST_TAKE(dst, head, tail) ((dst) = (head), (head) = (tail) = NULL)
#define LIST_TAKE_LOCKED(dst, lock, head, tail)                                                    \
    do {                                                                                           \
        pthread_mutex_lock(lock);                                                                  \
        LIST_TAKE(dst, head, tail);                                                                \
        pthread_mutex_unlock(lock);                                                                \
    } while (0)
/* Unlinks item from the doubly linked list (head, tail) whose links are `prev` (towards head)
 * and `next` (towards tail); item's links are left NULL. */
#define DLIST_UNLINK(head, tail, item, prev, next)                                                 \
    do {                                                                                           \
        if ((item)->prev)                                                                          \
            (item)->prev->next = (item)->next;                                                     \
        else                                                                                       \
            (head) = (item)->next;                                                                 \
        if ((item)->next)                                                                          \
            (item)->next->prev = (item)->prev;                                                     \
        else                                                                                       \
            (tail) = (item)->prev;                                                                 \
        (item)->prev = (item)->next = NULL;                                                        \
    } while (0)

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

/* Grows the heap block p of *cap bytes to hold need bytes: the capacity doubles from *cap (first
 * when 0), but stops at most when need fits under it. Returns the block, *cap updated, or NULL on
 * ENOMEM with p and *cap as they were. Cold: inlined into sbuf_reserve, it kept sbuf_append from
 * inlining that, 30 instructions a request more (bench/core/instr.sh, /plaintext). */
void *mem_grow(void *p, size_t *cap, size_t need, size_t first, size_t most) __attribute__((cold));

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
/* The next item of a comma-separated list from *p (up to end), blanks around it left out, and
 * *p moved past it; 0 when no item is left. */
int str_list_next(const char **p, const char *end, roost_str_t *item);

/* The decimal s (at most 9 digits, no sign) from lo to hi into *out; -EINVAL otherwise. */
int str_to_int(roost_str_t s, int lo, int hi, int *out);

/* ---- url.c: scheme://[user[:password]@]host[:port][/path], split in place ---- */
typedef struct {
    roost_str_t scheme, user, password, host;
    roost_str_t port; /* ptr NULL without a ':' after the host */
    roost_str_t path; /* after the '/', ptr NULL without one */
    int has_password; /* a ':' in the user part */
} url_parts_t;
/* Slices of url into out (url must outlive them); -EINVAL without a scheme. The host may be
 * empty (libpq's postgresql://user:pw@/db?host=/run/postgresql): the caller decides. */
int url_split(const char *url, url_parts_t *out);

/* Ends a thread that waits on cond under lock until *stop: sets it, wakes the thread, joins it,
 * then destroys lock and cond. */
void thread_stop_join(pthread_t thread, pthread_mutex_t *lock, pthread_cond_t *cond, int *stop);
/* Writes v in decimal at p (no NUL) and returns the end: for hot paths where printf's cost
 * shows (3% of a /json profile for X-Process-Time, more for the rate limit's fields). */
char *str_put_uint_any(char *p, uint64_t v);
static inline char *str_put_uint(char *p, uint64_t v)
{
    if (v < 10) { /* most numbers of header fields: a status digit, seconds, small counts */
        *p = (char)('0' + v);
        return p + 1;
    }
    return str_put_uint_any(p, v);
}
/* Unpadded base64url (RFC 4648 §5) into out; the decoded length, or -EINVAL for a character
 * outside the alphabet, a bad length, or more than cap bytes. */
int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap);

/* ---- time ---- */
uint64_t time_now_ns(void); /* CLOCK_MONOTONIC */
uint64_t time_now_ms(void);
double time_wall(void);      /* seconds since the epoch */
uint64_t time_wall_ns(void); /* nanoseconds since the epoch */
/* Writes an IMF-fixdate (RFC 9110 §5.6.7) for `t` into out (30 bytes incl. NUL). */
void time_http_date(char out[30], int64_t t);

/* ---- logging ---- */
void log_vwrite(const char *level, const char *fmt, va_list ap);
/* As roost_trace_enter, for ids drawn but not yet written: fill(arg) writes their text into
 * trace_id and span_id on the first roost_trace_current or log line that reads them (most
 * requests never log, so most ids are never formatted). */
void trace_enter_lazy(char *trace_id, char *span_id, void (*fill)(const void *), const void *arg);
/* 1: every line a JSON object {time, level, msg, trace_id} (--log-format json); 0: text. */
void log_set_json(int on);
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

/* ---- logq: a bounded buffer of log lines and the thread that writes it (logq.c) ---- */
typedef struct logq logq_t;
logq_t *logq_new(int fd, size_t cap);
/* Appends a whole line; -ENOBUFS (the line dropped and counted) when the buffer is full. */
int logq_write(logq_t *q, const char *line, size_t n);
long logq_dropped(const logq_t *q);
long logq_lines(const logq_t *q);
void logq_free(logq_t *q); /* writes what is buffered first */

/* ---- counters: a registry of named atomics, rendered as Prometheus text ---- */
typedef struct counters counters_t;
counters_t *counters_new(void);
void counters_free(counters_t *c);
roost_counter_t *counters_get(counters_t *c, const char *name, const char *labels,
                              const char *help);
/* The same, rendered as a gauge when gauge is set (added to with +1 and -1). */
roost_counter_t *counters_get_kind(counters_t *c, const char *name, const char *labels,
                                   const char *help, int gauge);
/* Appends every counter as "# HELP/# TYPE" + "name{labels} value" lines. */
void counters_render(counters_t *c, sbuf_t *out);

/* ---- config.c: the flag table, walked by --help and by the man page (src/http/man.c) ---- */
typedef struct {
    const char *section; /* "net", "http", ... or the embedder's; NULL for an action */
    const char *name;    /* without the leading "--" */
    roost_flag_kind_t kind;
    const char *help;
    char def[64]; /* the default as --help prints it */
    int action;   /* --help and the like: no value, no environment twin */
} config_flag_info_t;
/* Calls fn for every flag in --help's order: the library's sections with their defaults, the
 * embedder's extra flags (defs: their defaults formatted earlier, or NULL for the variables'
 * current values), then the actions. */
void config_walk(const char *section, const roost_flag_t *extra, size_t nextra, char (*defs)[64],
                 void (*fn)(const config_flag_info_t *f, void *ud), void *ud);
/* "max-body" -> "ROOST_MAX_BODY", cut to size. */
void config_env_name(const char *flag, char *out, size_t size);

/* ---- tpool: one thread pool; each user brings its queue discipline (tpool.c) ----
 * The pool owns the threads (named "roost-<name>-<i>", stack size, start, stop, join), grows from
 * min towards max when work is queued and no thread is idle, and lets a thread above min exit
 * after idle_s without work. What waits, and in which order, is the user's queue: a FIFO
 * (tpool_fifo.c: HTTP workers, background tasks), the job workers' priority heap, the data
 * threads' batches. Every queue callback but run is called under the pool's lock. */
typedef struct tpool tpool_t;
typedef struct {
    /* Adds n items (their shape is the queue's); 0 or -errno, all or none. */
    int (*push)(void *queue, void *items, int n);
    /* What one thread runs next (an item, or a batch taken for a pool of nthreads); NULL: none. */
    void *(*pop)(void *queue, int nthreads);
    int (*len)(void *queue); /* items waiting */
    /* On a pool thread, without the lock: runs what pop returned. */
    void (*run)(void *queue, void *taken);
    void (*destroy)(void *queue); /* by tpool_stop once the threads are joined; may be NULL */
} tpool_queue_ops_t;

typedef struct {
    const char *name;  /* thread names "roost-<name>-<i>" (Linux keeps 15 characters) */
    int min, max;      /* threads kept, threads at most (min <= max, max >= 1) */
    double idle_s;     /* a thread above min idle this long exits; 0: never */
    int max_queue;     /* items waiting beyond the idle and the startable threads; 0: no bound */
    size_t stack_size; /* 0: the system default */
    const tpool_queue_ops_t *ops;
    void *queue;
} tpool_opts_t;

typedef struct {
    int threads, idle, busy, queued;
    long started, retired; /* threads started (min included) and retired after idle_s, ever */
    long full;             /* pushes refused by max_queue */
} tpool_stats_t;

/* Starts opts->min threads; NULL when none could start (or ENOMEM). The queue is the pool's from
 * this call on: ops->destroy frees it at tpool_stop, or here on failure. */
tpool_t *tpool_start(const tpool_opts_t *opts);
/* Queues n items, waking idle threads or starting new ones up to max. Never waits for room:
 * -EBUSY when stopping or when max_queue would be passed; the queue's push error; -EAGAIN when no
 * thread runs and none could start. */
int tpool_push(tpool_t *p, void *items, int n);
void tpool_stats(tpool_t *p, tpool_stats_t *st);
/* Refuses further pushes, lets the threads run everything queued, joins them, then destroys the
 * queue (ops->destroy) and frees the pool. NULL is fine. */
void tpool_stop(tpool_t *p);

/* The FIFO discipline (tpool_fifo.c): a work item is embedded in its owner's struct, which run()
 * recovers (CONTAINER_OF) and frees if it must. */
typedef struct tpool_work {
    struct tpool_work *next;
    void (*run)(struct tpool_work *work); /* on a pool thread; unused by batch queues */
} tpool_work_t;
/* The list under it, for queues of work items taken one at a time or in batches. */
typedef struct {
    tpool_work_t *head, *tail;
    int n;
} tpool_list_t;
void tpool_list_append(tpool_list_t *l, tpool_work_t *first, int n); /* n items linked by next */
tpool_work_t *tpool_list_take(tpool_list_t *l, int k); /* up to k from the head, NULL-ended */
/* A pool over a FIFO of work items (opts->ops and opts->queue are ignored); tpool_stop frees it. */
tpool_t *tpool_fifo_start(const tpool_opts_t *opts);
int tpool_submit(tpool_t *p, tpool_work_t *work); /* tpool_push of one item */

#endif
