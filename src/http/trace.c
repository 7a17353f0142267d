/* W3C Trace Context for every request: a valid `traceparent` header is taken (its trace id kept,
 * its span id the parent), anything else starts a new trace; each request gets its own span id.
 * Ids come from a per-thread xoshiro256** generator seeded from libcrypto's RAND_bytes, so
 * the hot path makes no system call, and are drawn and written as hex only when something reads
 * them (a log line, a span, an upstream call, a job): most requests never do, and drawing and
 * writing three ids was most of what tracing cost a /json request (callgrind). Not the export
 * of spans (core/otlp.c) nor the logs. */
#include "http/http.h"

#include <errno.h>
#include <llhttp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

static _Thread_local uint64_t rng[4];
static _Thread_local int rng_ready;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next64(void)
{
    if (!rng_ready) {
        if (RAND_bytes((unsigned char *)rng, sizeof rng) != 1 || !(rng[0] | rng[1] | rng[2]))
            rng[0] = time_now_ns() | 1, rng[1] = (uint64_t)(uintptr_t)&rng_ready;
        rng_ready = 1;
    }
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

/* 16 lowercase hex digits of v, eight at a time: the nibbles spread one to a byte, then each
 * byte becomes its digit with no branch (a loop of 16 was half of what a request's ids cost). */
static void hex32(char *out, uint32_t v)
{
    uint64_t x = v;
    x = ((x & 0xFFFF0000u) << 16) | (x & 0xFFFFu);
    x = ((x & 0x0000FF000000FF00ull) << 8) | (x & 0x000000FF000000FFull);
    x = ((x & 0x00F000F000F000F0ull) << 4) | (x & 0x000F000F000F000Full);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    x = __builtin_bswap64(x); /* the most significant nibble first in memory */
#endif
    uint64_t letter = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull; /* >= 10 */
    x += 0x3030303030303030ull + letter * ('a' - '0' - 10);
    memcpy(out, &x, 8);
}

static void hex64(char *out, uint64_t v)
{
    hex32(out, (uint32_t)(v >> 32));
    hex32(out + 8, (uint32_t)v);
}

static uint64_t nonzero64(void)
{
    uint64_t a;
    do
        a = next64();
    while (!a);
    return a;
}

/* Fills out (n hex digits + NUL) with a random, non-zero id. */
static void random_id(char *out, int n)
{
    hex64(out, nonzero64());
    if (n == 32)
        hex64(out + 16, next64());
    out[n] = '\0';
}

/* Draws the ids and writes them as hex, once, on the thread that reads them first (each thread
 * has its own generator). The request is the caller's to change: the const of the readers
 * below is the API's promise to the handler, not to this cache. */
static void ids(const roost_req_t *creq)
{
    roost_req_t *req = (roost_req_t *)creq;
    if (!req->trace_pending)
        return;
    req->trace_pending = 0;
    if (req->trace_local)
        random_id(req->trace_id, 32);
    random_id(req->span_id, 16);
}

static void fill_ids(const void *req)
{
    ids(req);
}

int http_trace_on(const roost_req_t *req)
{
    return req->trace_pending || req->trace_id[0];
}

static int lower_hex(const char *p, size_t n, int nonzero)
{
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        any |= c != '0';
    }
    return any || !nonzero;
}

int roost_traceparent_parse(const char *v, size_t len, char trace_id[33], char parent[17],
                            uint8_t *flags)
{
    /* version "-" trace-id "-" parent-id "-" flags; version ff is invalid; a later version may
     * append "-..." fields, version 00 may not (W3C Trace Context §3.2). */
    if (!v || len < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return -EINVAL;
    if (!lower_hex(v, 2, 0) || !memcmp(v, "ff", 2) || !lower_hex(v + 3, 32, 1) ||
        !lower_hex(v + 36, 16, 1) || !lower_hex(v + 53, 2, 0))
        return -EINVAL;
    if (len > 55 && (!memcmp(v, "00", 2) || v[55] != '-'))
        return -EINVAL;
    memcpy(trace_id, v + 3, 32);
    trace_id[32] = '\0';
    memcpy(parent, v + 36, 16);
    parent[16] = '\0';
    unsigned f = 0;
    sscanf(v + 53, "%2x", &f);
    *flags = (uint8_t)f;
    return 0;
}

void roost_trace_new_id(char out[33])
{
    random_id(out, 32);
}

void roost_span_new_id(char out[17])
{
    random_id(out, 16);
}

/* The parser noted where the first traceparent header is (req->traceparent), so a request
 * without one costs no header search here, and no id is drawn until one is read. */
void http_trace_start(roost_req_t *req)
{
    const http_header_t *h = req->traceparent ? &req->headers[req->traceparent - 1] : NULL;
    if (!h || roost_traceparent_parse(req->head + h->value_off, h->value_len, req->trace_id,
                                      req->parent_span, &req->trace_flags) < 0) {
        req->trace_local = 1;
        req->parent_span[0] = '\0';
        req->trace_flags = 1; /* sampled: every request is recorded */
    } else
        req->trace_local = 0;
    req->trace_pending = 1;
}

void http_trace_enter(const roost_req_t *req)
{
    roost_req_t *r = (roost_req_t *)req; /* the text is filled in place, on the first read */
    if (req->trace_pending)
        trace_enter_lazy(r->trace_id, r->span_id, fill_ids, req);
    else
        roost_trace_enter(req->trace_id, req->span_id);
    if (req->trace_local)
        roost_trace_mark_local();
}

const char *roost_req_trace_id(const roost_req_t *req)
{
    ids(req);
    return req->trace_id[0] ? req->trace_id : NULL;
}

const char *roost_req_span_id(const roost_req_t *req)
{
    ids(req);
    return req->span_id[0] ? req->span_id : NULL;
}

const char *roost_req_parent_span_id(const roost_req_t *req)
{
    return req->parent_span[0] ? req->parent_span : NULL;
}

int roost_req_traceparent(const roost_req_t *req, char out[56])
{
    ids(req);
    if (!req->trace_id[0])
        return -ENOENT;
    snprintf(out, 56, "00-%s-%s-%02x", req->trace_id, req->span_id, req->trace_flags);
    return 0;
}

void http_trace_end(roost_req_t *req)
{
    ids(req);
    char status[8];
    uint64_t now = time_now_ns(), wall = time_wall_ns();
    snprintf(status, sizeof status, "%d", req->status);
    roost_span_t sp = {
        .name = req->route ? req->route->name : "unmatched",
        .trace_id = req->trace_id,
        .span_id = req->span_id,
        .parent_span_id = req->parent_span,
        .kind = ROOST_SPAN_SERVER,
        .start_ns = wall - (now - req->start_ns),
        .end_ns = wall,
        .error = req->status >= 500,
        .attrs = {{"http.route", req->route ? req->route->path : "unmatched"},
                  {"http.request.method", llhttp_method_name((llhttp_method_t)req->method)},
                  {"http.response.status_code", status}},
    };
    roost_span_emit(&sp);
}
