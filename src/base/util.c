/* Small helpers that every layer needs: case-insensitive slices, base64url, clocks, the HTTP
 * date, the end of a waiting thread, and the one log line format ("<UTC time> <level> <message>",
 * or a JSON object with --log-format json; one line an event, on stderr). */
#include "base/base.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int str_eq_nocase(roost_str_t a, const char *b)
{
    size_t n = strlen(b);
    return a.ptr && a.len == n && strncasecmp(a.ptr, b, n) == 0;
}

/* Two digits a step from a table, written from the end once the length is known: about a
 * third of the instructions of a digit-at-a-time loop (header fields of every answer). */
static const char digit_pairs[201] = "00010203040506070809101112131415161718192021222324"
                                     "25262728293031323334353637383940414243444546474849"
                                     "50515253545556575859606162636465666768697071727374"
                                     "75767778798081828384858687888990919293949596979899";

static int digits_of(uint64_t v)
{
    int n = 1;
    for (;;) {
        if (v < 10)
            return n;
        if (v < 100)
            return n + 1;
        if (v < 1000)
            return n + 2;
        if (v < 10000)
            return n + 3;
        v /= 10000;
        n += 4;
    }
}

char *str_put_uint_any(char *p, uint64_t v)
{
    int n = digits_of(v);
    char *end = p + n;
    while (v >= 100) {
        unsigned i = (unsigned)(v % 100) * 2;
        v /= 100;
        *--end = digit_pairs[i + 1];
        *--end = digit_pairs[i];
    }
    if (v >= 10) {
        *--end = digit_pairs[v * 2 + 1];
        *--end = digit_pairs[v * 2];
    } else {
        *--end = (char)('0' + v);
    }
    return p + n;
}

int str_list_next(const char **p, const char *end, roost_str_t *item)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t' || *s == ','))
        s++;
    if (s >= end) {
        *p = s;
        return 0;
    }
    const char *e = s;
    while (e < end && *e != ',')
        e++;
    *p = e;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *item = str_make(s, (size_t)(e - s));
    return 1;
}

int str_has_token(roost_str_t list, const char *token)
{
    size_t tlen = strlen(token);
    if (!list.ptr)
        return 0;
    roost_str_t item;
    for (const char *p = list.ptr; str_list_next(&p, list.ptr + list.len, &item);)
        if (item.len == tlen && strncasecmp(item.ptr, token, tlen) == 0)
            return 1;
    return 0;
}

int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1)
        return -EINVAL;
    size_t len = 0;
    /* A quartet at a time through EVP_DecodeBlock: no allocation, the last one padded. */
    for (size_t i = 0; i < n; i += 4) {
        unsigned char quad[4] = {'=', '=', '=', '='}, raw[3];
        size_t k = n - i < 4 ? n - i : 4;
        for (size_t j = 0; j < k; j++) {
            char ch = in[i + j];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
                return -EINVAL;
            quad[j] = (unsigned char)(ch == '-' ? '+' : ch == '_' ? '/' : ch);
        }
        if (EVP_DecodeBlock(raw, quad, 4) != 3)
            return -EINVAL;
        size_t got = k == 4 ? 3 : k - 1; /* 2 characters are 1 byte, 3 are 2 */
        if (len + got > cap)
            return -EINVAL;
        memcpy(out + len, raw, got);
        len += got;
    }
    return (int)len;
}

void thread_stop_join(pthread_t thread, pthread_mutex_t *lock, pthread_cond_t *cond, int *stop)
{
    pthread_mutex_lock(lock);
    *stop = 1;
    pthread_cond_signal(cond);
    pthread_mutex_unlock(lock);
    pthread_join(thread, NULL);
    pthread_mutex_destroy(lock);
    pthread_cond_destroy(cond);
}

uint64_t time_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t time_now_ms(void)
{
    return time_now_ns() / 1000000u;
}

double time_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t time_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void time_http_date(char out[30], int64_t t)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    char tmp[80]; /* wide enough for any int fields, so the compiler can prove no truncation */
    snprintf(tmp, sizeof tmp, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    memcpy(out, tmp, 29);
    out[29] = '\0';
}

/* The trace this thread works for now (a request's handler, a job's run): error logs, jobs
 * submitted and frames published here carry it. Pointers into the caller's storage. */
static _Thread_local const char *cur_trace, *cur_span;
static _Thread_local int cur_local;
static _Thread_local void (*cur_fill)(const void *);
static _Thread_local const void *cur_fill_arg;

void roost_trace_enter(const char *trace_id, const char *span_id)
{
    cur_trace = trace_id && trace_id[0] ? trace_id : NULL;
    cur_span = cur_trace ? span_id : NULL;
    cur_local = 0;
    cur_fill = NULL;
}

void trace_enter_lazy(char *trace_id, char *span_id, void (*fill)(const void *), const void *arg)
{
    cur_trace = trace_id;
    cur_span = span_id;
    cur_local = 0;
    cur_fill = fill;
    cur_fill_arg = arg;
}

/* The ids' text, written on the first read of a lazily entered trace. */
static void filled(void)
{
    if (cur_fill) {
        void (*fill)(const void *) = cur_fill;
        cur_fill = NULL;
        fill(cur_fill_arg);
    }
}

void roost_trace_mark_local(void)
{
    cur_local = 1;
}

int roost_trace_is_shared(void)
{
    return cur_trace && !cur_local;
}

const char *roost_trace_current(void)
{
    filled();
    return cur_trace;
}

const char *roost_trace_current_span(void)
{
    filled();
    return cur_span;
}

/* --log-format json: every log line is one JSON object, as the access log's are. */
static atomic_int log_json;

void log_set_json(int on)
{
    atomic_store_explicit(&log_json, on, memory_order_relaxed);
}

/* Appends s as the inside of a JSON string: quotes, backslashes and control bytes escaped. */
static size_t json_escape_into(char *out, size_t size, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20)
            n += (size_t)snprintf(out + n, size - n, "\\u%04x", ch);
        else
            out[n++] = (char)ch;
    }
    return n;
}

void log_vwrite(const char *level, const char *fmt, va_list ap)
{
    struct timespec ts;
    struct tm tm;
    char when[96], msg[900], line[1024 + 200]; /* when: room for any int fields */
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    vsnprintf(msg, sizeof msg, fmt, ap);
    filled();
    size_t len;
    if (atomic_load_explicit(&log_json, memory_order_relaxed)) {
        len = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                               when, level);
        len += json_escape_into(line + len, sizeof line - len - 60, msg);
        len += (size_t)snprintf(line + len, sizeof line - len, "\",\"trace_id\":%s%s%s}",
                                cur_trace ? "\"" : "", cur_trace ? cur_trace : "null",
                                cur_trace ? "\"" : "");
    } else {
        len = (size_t)snprintf(line, sizeof line, "%s %s %s", when, level, msg);
        if (cur_trace) /* " trace_id=" + 32 hex: always fits after a 900-byte message */
            len += (size_t)snprintf(line + len, sizeof line - len, " trace_id=%s", cur_trace);
    }
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write(2) per line keeps lines from different threads whole. */
    fwrite(line, 1, len, stderr);
}

void roost_log(const char *level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}
