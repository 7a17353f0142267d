/* libFuzzer target for the llhttp glue (src/http/parse.c): the input is a client byte stream,
 * fed whole and then in pieces whose sizes come from the input's first bytes. Every request that
 * completes is checked (its target and headers lie within the bytes it was given), hashed, and
 * recycled as the session does; the stream in pieces must give the same requests and the same
 * error status. Everything is freed at the end of each input, so LeakSanitizer sees any leak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "fuzz.h"

#define MAX_OBJECTS 8

typedef struct {
    roost_req_t *all[MAX_OBJECTS]; /* every object allocated, for the final free */
    int nall;
    roost_req_t *spare[MAX_OBJECTS]; /* recycled, ready for the next request */
    int nspare;
    int completed;
    int pause_every; /* on_request pauses the parser every n-th request (0: never) */
    uint64_t hash;
} state_t;

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull; /* FNV-1a */
    return h;
}

static roost_req_t *new_req(void *ud)
{
    state_t *st = ud;
    if (st->nspare)
        return st->spare[--st->nspare];
    if (st->nall == MAX_OBJECTS)
        return NULL; /* the parser answers 503; never reached while requests are recycled */
    roost_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    http_req_reset(req);
    st->all[st->nall++] = req;
    return req;
}

static int on_request(void *ud, roost_req_t *req)
{
    state_t *st = ud;
    REQUIRE(req->url_len <= req->head_len);
    REQUIRE(req->head_len <= req->head_cap);
    for (int i = 0; i < req->nheaders; i++) {
        const http_header_t *h = &req->headers[i];
        REQUIRE(h->name_len > 0);
        REQUIRE(h->name_off >= req->url_len);
        REQUIRE(h->name_off + h->name_len <= h->value_off);
        REQUIRE(h->value_off + h->value_len <= req->head_len);
        for (uint32_t k = 0; k < h->value_len; k++) {
            unsigned char ch = (unsigned char)req->head[h->value_off + k];
            REQUIRE(ch >= 0x20 || ch == '\t');
            REQUIRE(ch != 0x7f);
        }
    }
    REQUIRE(req->http_major == 1 && req->http_minor <= 1);
    REQUIRE(req->body.len <= 4096);
    uint8_t meta[4] = {req->method, req->http_minor, req->keep_alive, (uint8_t)req->nheaders};
    st->hash = mix(st->hash, meta, sizeof meta);
    st->hash = mix(st->hash, req->head, req->head_len);
    for (int i = 0; i < req->nheaders; i++)
        st->hash = mix(st->hash, &req->headers[i], sizeof req->headers[i]);
    st->hash = mix(st->hash, req->body.p, req->body.len);
    st->completed++;
    /* answered at once: the object goes back for the next request, as session.c does */
    http_req_reset(req);
    st->spare[st->nspare++] = req;
    return st->pause_every && st->completed % st->pause_every == 0;
}

static void free_all(state_t *st)
{
    for (int i = 0; i < st->nall; i++)
        http_req_free(st->all[i]);
    st->nall = st->nspare = 0;
}

typedef struct {
    int completed;
    int status;
    uint64_t hash;
} result_t;

static result_t run(const uint8_t *data, size_t size, const uint8_t *cuts, size_t ncuts,
                    int pause_every)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    cfg.http.max_url = 256;
    cfg.http.max_header_size = 1024;
    cfg.http.max_headers = 16;
    cfg.http.max_body = 4096;
    state_t st = {.hash = 0xcbf29ce484222325ull, .pause_every = pause_every};
    http_parse_t p = {0}; /* as the session's calloc */
    http_parse_init(&p, &cfg);
    p.new_req = new_req;
    p.on_request = on_request;
    p.ud = &st;
    result_t res = {0};
    size_t off = 0, k = 0;
    while (off < size) {
        size_t n = ncuts ? (size_t)(cuts[k++ % ncuts] % 64) + 1 : size - off;
        if (n > size - off)
            n = size - off;
        /* each piece in its own allocation, so ASan sees any read past its end */
        char *piece = malloc(n);
        memcpy(piece, data + off, n);
        size_t done = 0;
        int stalls = 0;
        while (done < n) {
            ssize_t r = http_parse_feed(&p, piece + done, n - done);
            if (r < 0) {
                res.status = p.err_status;
                REQUIRE(res.status >= 400 && res.status <= 505);
                REQUIRE(p.err_detail != NULL);
                free(piece);
                goto out;
            }
            REQUIRE((size_t)r <= n - done);
            stalls = r ? 0 : stalls + 1;
            REQUIRE(stalls < 2); /* a pause consumes the request it ended */
            done += (size_t)r;
        }
        free(piece);
        off += n;
    }
out:
    /* The request being parsed (or refused) is still ours to free. */
    free_all(&st);
    res.completed = st.completed;
    res.hash = st.hash;
    return res;
}

/* A size limit is checked when llhttp hands over a span, which it does at the end of each piece:
 * a target that is both too long and malformed further on is 414 in pieces but may be 400 whole.
 * Any other difference in status is a bug. */
static int same_refusal(int a, int b)
{
    if (a == b)
        return 1;
    if (!a || !b)
        return 0;
    return a == 413 || a == 414 || a == 431 || b == 413 || b == 414 || b == 431;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    result_t whole = run(data, size, NULL, 0, 0);
    size_t ncuts = size > 8 ? 8 : size;
    result_t pieces = run(data, size, data, ncuts, 0);
    REQUIRE(whole.completed == pieces.completed);
    REQUIRE(same_refusal(whole.status, pieces.status));
    REQUIRE(whole.hash == pieces.hash);
    result_t paused = run(data, size, data + 1, ncuts ? ncuts - 1 : 0, 1);
    REQUIRE(whole.completed == paused.completed);
    REQUIRE(same_refusal(whole.status, paused.status));
    REQUIRE(whole.hash == paused.hash);
    return 0;
}
