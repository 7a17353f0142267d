/* Differential libFuzzer target for the llhttp glue (src/http/parse.c): every request that
 * roost's parser accepts from the input stream is written out again in plain form (method,
 * target, version, its fields, the body with Content-Length as given or as one chunk, trailer
 * fields after it) and parsed by a fresh parser, which must accept it and give the same method,
 * target, version, fields and body. It is not a check of what is refused: fuzz_http_parse is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "fuzz.h"

/* The fields of one request as parsed, and how many of them came before the body (the rest
 * are chunked trailer fields, which llhttp hands over the same way). */
typedef struct {
    roost_req_t *req;
    int head_fields;
    int completed;
} one_t;

static roost_req_t *new_req(void *ud)
{
    one_t *o = ud;
    if (!o->req) {
        o->req = calloc(1, sizeof *o->req);
        if (!o->req)
            return NULL;
    }
    http_req_reset(o->req);
    return o->req;
}

static void on_head(void *ud, roost_req_t *req)
{
    ((one_t *)ud)->head_fields = req->nheaders;
}

static roost_str_t field_name(const roost_req_t *r, int i)
{
    return str_make(r->head + r->headers[i].name_off, r->headers[i].name_len);
}

static roost_str_t field_value(const roost_req_t *r, int i)
{
    return str_make(r->head + r->headers[i].value_off, r->headers[i].value_len);
}

static int slice_eq(roost_str_t a, roost_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void put_fields(sbuf_t *out, const roost_req_t *r, int from, int to)
{
    for (int i = from; i < to; i++) {
        roost_str_t n = field_name(r, i), v = field_value(r, i);
        sbuf_printf(out, "%.*s: %.*s\r\n", (int)n.len, n.ptr, (int)v.len, v.ptr);
    }
}

/* The request in plain form. A chunked body becomes one chunk and the last one. */
static void serialize(sbuf_t *out, const roost_req_t *r, int head_fields)
{
    roost_str_t t = http_req_target(r);
    sbuf_printf(out, "%s %.*s HTTP/%d.%d\r\n", llhttp_method_name((llhttp_method_t)r->method),
                (int)t.len, t.ptr, r->http_major, r->http_minor);
    put_fields(out, r, 0, head_fields);
    sbuf_append(out, "\r\n", 2);
    if (!roost_req_header(r, "transfer-encoding").ptr) {
        sbuf_append(out, r->body.p, r->body.len);
        return;
    }
    if (r->body.len) {
        sbuf_printf(out, "%zx\r\n", r->body.len);
        sbuf_append(out, r->body.p, r->body.len);
        sbuf_append(out, "\r\n", 2);
    }
    sbuf_append(out, "0\r\n", 3);
    put_fields(out, r, head_fields, r->nheaders);
    sbuf_append(out, "\r\n", 2);
}

static void init_parser(http_parse_t *p, const roost_config_t *cfg, one_t *o,
                        int (*on_request)(void *, roost_req_t *))
{
    memset(p, 0, sizeof *p); /* as the session's calloc */
    http_parse_init(p, cfg);
    p->new_req = new_req;
    p->on_head = on_head;
    p->on_request = on_request;
    p->ud = o;
}

static int count_request(void *ud, roost_req_t *req)
{
    ((one_t *)ud)->completed++;
    return 1; /* pause: the request is compared before the parser goes on */
}

static roost_config_t cfg;

/* Parses the plain form of `a` and compares what comes out with it. */
static int check_roundtrip(void *ud, roost_req_t *a)
{
    one_t *orig = ud;
    sbuf_t s = {0};
    serialize(&s, a, orig->head_fields);
    one_t again = {0};
    http_parse_t p;
    init_parser(&p, &cfg, &again, count_request);
    ssize_t n = http_parse_feed(&p, s.p, s.len);
    if (n != (ssize_t)s.len || again.completed != 1) /* the log shows what was sent */
        fprintf(stderr, "re-parse gave %zd of %zu bytes, %d requests (%d %s):\n%.*s\n", n, s.len,
                again.completed, p.err_status, p.err_detail ? p.err_detail : "", (int)s.len, s.p);
    REQUIRE(n == (ssize_t)s.len);
    REQUIRE(again.completed == 1);
    roost_req_t *b = again.req;
    REQUIRE(a->method == b->method);
    REQUIRE(a->http_major == b->http_major && a->http_minor == b->http_minor);
    REQUIRE(slice_eq(http_req_target(a), http_req_target(b)));
    REQUIRE(a->nheaders == b->nheaders);
    for (int i = 0; i < a->nheaders; i++) {
        REQUIRE(slice_eq(field_name(a, i), field_name(b, i)));
        REQUIRE(slice_eq(field_value(a, i), field_value(b, i)));
    }
    REQUIRE(a->body.len == b->body.len);
    REQUIRE(a->body.len == 0 || memcmp(a->body.p, b->body.p, a->body.len) == 0);
    http_req_free(b);
    sbuf_free(&s);
    orig->completed++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    roost_config_init(&cfg);
    cfg.http.max_url = 256;
    cfg.http.max_header_size = 1024;
    cfg.http.max_headers = 16;
    cfg.http.max_body = 4096;
    char *copy = malloc(size ? size : 1); /* its own allocation: ASan sees overreads */
    memcpy(copy, data, size);
    one_t o = {0};
    http_parse_t p;
    init_parser(&p, &cfg, &o, check_roundtrip);
    http_parse_feed(&p, copy, size);
    http_req_free(o.req);
    free(copy);
    return 0;
}
