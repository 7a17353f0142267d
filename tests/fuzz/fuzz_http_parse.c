/* libFuzzer target for the llhttp glue (src/http/parse.c): the input is a client byte stream,
 * fed whole and then in pieces whose sizes come from the input itself. Every request that
 * completes is checked (its target and headers lie within the bytes it was given) and
 * recycled; the same stream in pieces must give the same number of requests and the same
 * error status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define REQUIRE(c)                                                                             \
    do {                                                                                       \
        if (!(c)) {                                                                            \
            fprintf(stderr, "fuzz_http_parse: %s:%d: %s\n", __FILE__, __LINE__, #c);           \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

typedef struct {
    roost_req_t *live[64];
    int nlive;
    int completed;
} state_t;

static roost_req_t *new_req(void *ud)
{
    state_t *st = ud;
    if (st->nlive == 64)
        return NULL;
    roost_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    http_req_reset(req);
    st->live[st->nlive++] = req;
    return req;
}

static int on_request(void *ud, roost_req_t *req)
{
    state_t *st = ud;
    REQUIRE(req->url_len <= req->head_len);
    for (int i = 0; i < req->nheaders; i++) {
        const http_header_t *h = &req->headers[i];
        REQUIRE(h->name_off + h->name_len <= req->head_len);
        REQUIRE(h->value_off + h->value_len <= req->head_len);
    }
    REQUIRE(req->http_major == 1 && req->http_minor <= 1);
    st->completed++;
    return 0;
}

static void free_all(state_t *st)
{
    for (int i = 0; i < st->nlive; i++)
        http_req_free(st->live[i]);
    st->nlive = 0;
}

static int run(const uint8_t *data, size_t size, const uint8_t *cuts, size_t ncuts, int *status)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    cfg.max_url = 256;
    cfg.max_header_size = 1024;
    cfg.max_headers = 16;
    cfg.max_body = 4096;
    state_t st = {0};
    http_parse_t p;
    http_parse_init(&p, &cfg);
    p.new_req = new_req;
    p.on_request = on_request;
    p.ud = &st;
    char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    size_t off = 0, k = 0;
    *status = 0;
    while (off < size) {
        size_t n = ncuts ? (size_t)(cuts[k++ % ncuts] % 64) + 1 : size - off;
        if (n > size - off)
            n = size - off;
        size_t done = 0;
        while (done < n) {
            ssize_t r = http_parse_feed(&p, copy + off + done, n - done);
            if (r < 0) {
                *status = p.err_status;
                REQUIRE(*status >= 400 && *status <= 505);
                goto out;
            }
            done += (size_t)r;
        }
        off += n;
    }
out:
    free(copy);
    free_all(&st);
    return st.completed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int s1, s2;
    int whole = run(data, size, NULL, 0, &s1);
    size_t ncuts = size > 8 ? 8 : size;
    int pieces = run(data, size, data, ncuts, &s2);
    REQUIRE(whole == pieces);
    REQUIRE(s1 == s2);
    return 0;
}
