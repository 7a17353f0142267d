/* The llhttp glue (src/http/parse.c) driven directly, without sockets: what a request looks
 * like once parsed, pipelining, chunked delivery, and the status each limit or refusal gives. */
#include "http/http.h"
#include "unit.h"

#include <stdlib.h>

#define MAX_REQS 16

/* The fake session: hands out fresh requests and keeps every one, finished or not, so a test
 * can look at them and free them all at the end. */
typedef struct {
    roost_config_t cfg;
    http_parse_t p;
    roost_req_t *all[MAX_REQS];
    int nall;
    roost_req_t *done[MAX_REQS];
    int ndone;
    int heads;
} fake_t;

static roost_req_t *fake_new_req(void *ud)
{
    fake_t *f = ud;
    if (f->nall == MAX_REQS)
        return NULL;
    roost_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    http_req_reset(req);
    f->all[f->nall++] = req;
    return req;
}

static void fake_on_head(void *ud, roost_req_t *req)
{
    ((fake_t *)ud)->heads++;
}

static int fake_on_request(void *ud, roost_req_t *req)
{
    fake_t *f = ud;
    f->done[f->ndone++] = req;
    return 0;
}

static void fake_init(fake_t *f)
{
    memset(f, 0, sizeof *f);
    roost_config_init(&f->cfg);
}

/* Call after changing cfg limits. */
static void fake_start(fake_t *f)
{
    memset(&f->p, 0, sizeof f->p); /* as the session's calloc */
    http_parse_init(&f->p, &f->cfg);
    f->p.new_req = fake_new_req;
    f->p.on_head = fake_on_head;
    f->p.on_request = fake_on_request;
    f->p.ud = f;
}

static void fake_free(fake_t *f)
{
    for (int i = 0; i < f->nall; i++)
        http_req_free(f->all[i]);
    f->nall = f->ndone = 0;
}

/* Feeds s in pieces of `step` bytes (0: whole); returns the error status, or 0. */
static int feed(fake_t *f, const char *s, size_t len, size_t step)
{
    size_t off = 0;
    while (off < len) {
        size_t n = step && step < len - off ? step : len - off;
        ssize_t r = http_parse_feed(&f->p, s + off, n);
        if (r < 0)
            return f->p.err_status;
        off += (size_t)r; /* nothing here pauses, so r == n */
    }
    return 0;
}

/* Parses s with the default limits, fed in `step`-byte pieces; returns the error status. */
static int status_of(const char *s, size_t step)
{
    fake_t f;
    fake_init(&f);
    fake_start(&f);
    int st = feed(&f, s, strlen(s), step);
    fake_free(&f);
    return st;
}

/* Parses s fed in two pieces, split at every position in turn; returns the first status that
 * differs from `want`, or `want` when every split agrees. */
static int status_at_every_split(const char *s, int want)
{
    size_t len = strlen(s);
    for (size_t cut = 1; cut < len; cut++) {
        fake_t f;
        fake_init(&f);
        fake_start(&f);
        int st = 0;
        ssize_t r = http_parse_feed(&f.p, s, cut);
        if (r < 0)
            st = f.p.err_status;
        else if (http_parse_feed(&f.p, s + cut, len - cut) < 0)
            st = f.p.err_status;
        fake_free(&f);
        if (st != want) {
            fprintf(stderr, "    split at %zu gives %d\n", cut, st);
            return st;
        }
    }
    return want;
}

static int header_is(const roost_req_t *req, int i, const char *name, const char *value)
{
    const http_header_t *h = &req->headers[i];
    return h->name_len == strlen(name) && !memcmp(req->head + h->name_off, name, h->name_len) &&
           h->value_len == strlen(value) && !memcmp(req->head + h->value_off, value, h->value_len);
}

static int target_is(const roost_req_t *req, const char *t)
{
    roost_str_t s = http_req_target(req);
    return s.len == strlen(t) && !memcmp(s.ptr, t, s.len);
}

/* One line per request: method, target, headers, body, keep-alive; for comparing deliveries. */
static void summarize(fake_t *f, sbuf_t *out)
{
    for (int i = 0; i < f->ndone; i++) {
        roost_req_t *r = f->done[i];
        roost_str_t t = http_req_target(r);
        sbuf_printf(out, "%d %.*s %d.%d ka=%d", r->method, (int)t.len, t.ptr, r->http_major,
                    r->http_minor, r->keep_alive);
        for (int k = 0; k < r->nheaders; k++) {
            const http_header_t *h = &r->headers[k];
            sbuf_printf(out, " [%.*s=%.*s]", (int)h->name_len, r->head + h->name_off,
                        (int)h->value_len, r->head + h->value_off);
        }
        sbuf_printf(out, " body=%.*s\n", (int)r->body.len, r->body.p ? r->body.p : "");
    }
}

static const char simple_get[] = "GET /items/7?q=a%20b HTTP/1.1\r\n"
                                 "Host: example.test\r\n"
                                 "User-Agent: unit \t\r\n"
                                 "Accept: */*\r\n"
                                 "\r\n";

TEST(http_parse_simple_get_has_method_target_and_headers)
{
    fake_t f;
    fake_init(&f);
    fake_start(&f);
    CHECK_EQ_INT(feed(&f, simple_get, strlen(simple_get), 0), 0);
    CHECK_EQ_INT(f.ndone, 1);
    CHECK_EQ_INT(f.heads, 1);
    if (f.ndone == 1) {
        roost_req_t *r = f.done[0];
        CHECK_EQ_INT(r->method, HTTP_GET);
        CHECK(target_is(r, "/items/7?q=a%20b"));
        CHECK_EQ_INT(r->http_major, 1);
        CHECK_EQ_INT(r->http_minor, 1);
        CHECK_EQ_INT(r->keep_alive, 1);
        CHECK_EQ_INT(r->nheaders, 3);
        CHECK(header_is(r, 0, "Host", "example.test"));
        CHECK(header_is(r, 1, "User-Agent", "unit")); /* trailing whitespace trimmed */
        CHECK(header_is(r, 2, "Accept", "*/*"));
        roost_str_t ua = roost_req_header(r, "user-agent");
        CHECK(ua.ptr && ua.len == 4 && !memcmp(ua.ptr, "unit", 4));
        CHECK(roost_req_header(r, "cookie").ptr == NULL);
        CHECK_EQ_INT(r->body.len, 0);
    }
    CHECK(f.p.cur == NULL);
    fake_free(&f);
}

TEST(http_parse_http10_without_host_closes_after)
{
    fake_t f;
    fake_init(&f);
    fake_start(&f);
    const char *s = "GET / HTTP/1.0\r\n\r\n";
    CHECK_EQ_INT(feed(&f, s, strlen(s), 0), 0);
    CHECK_EQ_INT(f.ndone, 1);
    if (f.ndone == 1) {
        CHECK_EQ_INT(f.done[0]->http_minor, 0);
        CHECK_EQ_INT(f.done[0]->keep_alive, 0);
    }
    fake_free(&f);
}

static const char pipelined[] =
    "GET /first HTTP/1.1\r\nHost: h\r\n\r\n"
    "POST /second HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    "PUT /third HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";

TEST(http_parse_pipelined_requests_come_out_in_order)
{
    fake_t f;
    fake_init(&f);
    fake_start(&f);
    CHECK_EQ_INT(feed(&f, pipelined, strlen(pipelined), 0), 0);
    CHECK_EQ_INT(f.ndone, 3);
    if (f.ndone == 3) {
        CHECK_EQ_INT(f.done[0]->method, HTTP_GET);
        CHECK(target_is(f.done[0], "/first"));
        CHECK_EQ_INT(f.done[1]->method, HTTP_POST);
        CHECK(target_is(f.done[1], "/second"));
        CHECK_EQ_INT(f.done[1]->body.len, 5);
        CHECK(!memcmp(f.done[1]->body.p, "hello", 5));
        CHECK_EQ_INT(f.done[2]->method, HTTP_PUT);
        CHECK(target_is(f.done[2], "/third"));
        CHECK_EQ_INT(f.done[2]->body.len, 5);
        CHECK(!memcmp(f.done[2]->body.p, "abcde", 5));
        CHECK(f.done[0] != f.done[1] && f.done[1] != f.done[2]);
    }
    fake_free(&f);
}

TEST(http_parse_byte_at_a_time_gives_the_same_requests)
{
    sbuf_t whole = {0}, bytes = {0}, sevens = {0};
    const char *inputs[] = {simple_get, pipelined};
    for (size_t i = 0; i < 2; i++) {
        fake_t f;
        size_t len = strlen(inputs[i]);
        fake_init(&f);
        fake_start(&f);
        CHECK_EQ_INT(feed(&f, inputs[i], len, 0), 0);
        summarize(&f, &whole);
        fake_free(&f);
        fake_start(&f);
        CHECK_EQ_INT(feed(&f, inputs[i], len, 1), 0);
        summarize(&f, &bytes);
        fake_free(&f);
        fake_start(&f);
        CHECK_EQ_INT(feed(&f, inputs[i], len, 7), 0);
        summarize(&f, &sevens);
        fake_free(&f);
    }
    CHECK(whole.len > 0);
    CHECK(strstr(whole.p, "[User-Agent=unit]") != NULL);
    CHECK(strstr(whole.p, "body=abcde") != NULL);
    CHECK_EQ_STR(bytes.p, whole.p);
    CHECK_EQ_STR(sevens.p, whole.p);
    sbuf_free(&whole);
    sbuf_free(&bytes);
    sbuf_free(&sevens);
}

TEST(http_parse_many_headers_outgrow_the_inline_array)
{
    fake_t f;
    sbuf_t s = {0};
    fake_init(&f);
    fake_start(&f);
    sbuf_puts(&s, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 60; i++)
        sbuf_printf(&s, "X-H%d: value-%d-0123456789\r\n", i, i);
    sbuf_puts(&s, "\r\n");
    CHECK_EQ_INT(feed(&f, s.p, s.len, 0), 0);
    CHECK_EQ_INT(f.ndone, 1);
    if (f.ndone == 1) {
        roost_req_t *r = f.done[0];
        CHECK_EQ_INT(r->nheaders, 61);
        CHECK(header_is(r, 1, "X-H0", "value-0-0123456789"));
        CHECK(header_is(r, 60, "X-H59", "value-59-0123456789"));
        CHECK(r->head != r->inline_head); /* past HTTP_INLINE_HEAD bytes */
    }
    fake_free(&f);
    sbuf_free(&s);
}

/* ---- limits ---- */

static int limited(size_t max_url, size_t max_header_size, int max_headers, size_t max_body,
                   const char *s, const char **limit)
{
    fake_t f;
    fake_init(&f);
    f.cfg.http.max_url = max_url;
    f.cfg.http.max_header_size = max_header_size;
    f.cfg.http.max_headers = max_headers;
    f.cfg.http.max_body = max_body;
    fake_start(&f);
    int st = feed(&f, s, strlen(s), 0);
    *limit = f.p.err_limit;
    fake_free(&f);
    return st;
}

TEST(http_parse_url_over_max_url_is_414)
{
    const char *limit;
    char s[256], path[80];
    memset(path, 'a', sizeof path);
    path[0] = '/';
    snprintf(s, sizeof s, "GET %.64s HTTP/1.1\r\nHost: h\r\n\r\n", path); /* exactly 64 */
    CHECK_EQ_INT(limited(64, 1024, 10, 100, s, &limit), 0);
    snprintf(s, sizeof s, "GET %.65s HTTP/1.1\r\nHost: h\r\n\r\n", path);
    CHECK_EQ_INT(limited(64, 1024, 10, 100, s, &limit), 414);
    CHECK_EQ_STR(limit, "url");
}

TEST(http_parse_too_many_headers_is_431)
{
    const char *limit;
    const char *three = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    const char *four = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    CHECK_EQ_INT(limited(1024, 1024, 3, 100, three, &limit), 0);
    CHECK_EQ_INT(limited(1024, 1024, 3, 100, four, &limit), 431);
    CHECK_EQ_STR(limit, "headers");
}

TEST(http_parse_header_section_too_big_is_431)
{
    const char *limit;
    char s[1024], v[600];
    memset(v, 'v', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n\r\n", v);
    CHECK_EQ_INT(limited(1024, 1024, 10, 100, s, &limit), 0);
    CHECK_EQ_INT(limited(1024, 256, 10, 100, s, &limit), 431);
    CHECK_EQ_STR(limit, "header_size");
}

TEST(http_parse_content_length_over_max_body_is_413_before_the_body)
{
    const char *limit;
    const char *ten = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789";
    const char *eleven = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    CHECK_EQ_INT(limited(1024, 1024, 10, 10, ten, &limit), 0);
    CHECK_EQ_INT(limited(1024, 1024, 10, 10, eleven, &limit), 413);
    CHECK_EQ_STR(limit, "body");
}

TEST(http_parse_chunked_body_over_max_body_is_413)
{
    const char *limit;
    const char *s = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
    CHECK_EQ_INT(limited(1024, 1024, 10, 12, s, &limit), 0);
    CHECK_EQ_INT(limited(1024, 1024, 10, 11, s, &limit), 413);
    CHECK_EQ_STR(limit, "body");
}

/* ---- refusals ---- */

TEST(http_parse_content_length_with_transfer_encoding_is_400)
{
    const char *s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    CHECK_EQ_INT(status_of(s, 0), 400);
    CHECK_EQ_INT(status_of(s, 1), 400);
}

TEST(http_parse_two_different_content_lengths_is_400)
{
    const char *s = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
                    "abcd";
    CHECK_EQ_INT(status_of(s, 0), 400);
    CHECK_EQ_INT(status_of(s, 1), 400);
}

TEST(http_parse_transfer_codings_other_than_chunked_are_400)
{
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n"
                           "\r\n0\r\n\r\n",
                           0),
                 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0),
                 400);
}

TEST(http_parse_missing_or_repeated_host_on_11_is_400)
{
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 0), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nhOsT: a\r\n\r\n", 0), 0);
}

TEST(http_parse_http2_version_is_505)
{
    CHECK_EQ_INT(status_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 0), 505);
    CHECK_EQ_INT(status_of("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 0), 505);
    CHECK_EQ_INT(status_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 1), 505);
}

TEST(http_parse_control_character_in_a_value_is_400)
{
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
                           "b\r\n\r\n",
                           0),
                 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb\r\n\r\n", 0), 0);
}

TEST(http_parse_garbage_is_400)
{
    CHECK_EQ_INT(status_of("HELLO\r\n\r\n", 0), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 0), 400);
}

static const char folded[] = "GET / HTTP/1.1\r\n"
                             "Host: h\r\n"
                             "X-Folded: first\r\n"
                             " second\r\n"
                             "\r\n";

TEST(http_parse_obs_fold_is_400_in_one_buffer)
{
    CHECK_EQ_INT(status_of(folded, 0), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 0), 400);
}

TEST(http_parse_obs_fold_is_400_split_anywhere)
{
    CHECK_EQ_INT(status_at_every_split(folded, 400), 400);
}

TEST(http_parse_obs_fold_is_400_in_pieces_of_any_size)
{
    for (size_t step = 1; step <= strlen(folded); step++)
        CHECK_EQ_INT(status_of(folded, step), 400);
}

TEST(http_parse_value_split_across_reads_is_not_a_fold)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: abcdefghij\r\n\r\n";
    CHECK_EQ_INT(status_at_every_split(s, 0), 0);
    CHECK_EQ_INT(status_of(s, 1), 0);
}

/* ---- the request after an error ---- */

TEST(http_parse_error_leaves_the_request_to_answer_with)
{
    fake_t f;
    fake_init(&f);
    fake_start(&f);
    const char *s = "GET /ok HTTP/1.1\r\nHost: h\r\n\r\nGET /bad HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(feed(&f, s, strlen(s), 0), 400);
    CHECK_EQ_INT(f.ndone, 1);
    CHECK(f.p.cur != NULL);
    CHECK(f.p.cur == f.all[1]);
    CHECK(f.p.err_detail != NULL && strstr(f.p.err_detail, "Host") != NULL);
    fake_free(&f);
}

static int pause_on_request(void *ud, roost_req_t *req)
{
    fake_on_request(ud, req);
    return 1;
}

TEST(http_parse_pause_returns_the_bytes_consumed)
{
    fake_t f;
    fake_init(&f);
    fake_start(&f);
    f.p.on_request = pause_on_request;
    const char *one = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t n1 = strlen(one);
    char s[128];
    snprintf(s, sizeof s, "%sGET /b HTTP/1.1\r\nHost: h\r\n\r\n", one);
    ssize_t r = http_parse_feed(&f.p, s, strlen(s));
    CHECK_EQ_INT(r, n1);
    CHECK_EQ_INT(f.ndone, 1);
    r = http_parse_feed(&f.p, s + n1, strlen(s) - n1);
    CHECK_EQ_INT(r, strlen(s) - n1);
    CHECK_EQ_INT(f.ndone, 2);
    if (f.ndone == 2)
        CHECK(target_is(f.done[1], "/b"));
    fake_free(&f);
}

/* ---- empty values (RFC 9110 §5.5: a field value may be empty) ---- */

static const char empty_values[] = "GET / HTTP/1.1\r\n"
                                   "Host: h\r\n"
                                   "X-Empty:\r\n"
                                   "X-Blank: \t \r\n"
                                   "X-Last:\r\n"
                                   "\r\n";

TEST(http_parse_empty_header_values_are_accepted)
{
    fake_t f;
    fake_init(&f);
    fake_start(&f);
    CHECK_EQ_INT(feed(&f, empty_values, strlen(empty_values), 0), 0);
    CHECK_EQ_INT(f.ndone, 1);
    if (f.ndone == 1) {
        roost_req_t *r = f.done[0];
        CHECK_EQ_INT(r->nheaders, 4);
        CHECK(header_is(r, 1, "X-Empty", ""));
        CHECK(header_is(r, 2, "X-Blank", ""));
        CHECK(header_is(r, 3, "X-Last", ""));
        roost_str_t v = roost_req_header(r, "x-empty");
        CHECK(v.ptr != NULL && v.len == 0); /* present, and empty */
    }
    fake_free(&f);
}

TEST(http_parse_empty_header_values_in_pieces_of_any_size)
{
    CHECK_EQ_INT(status_at_every_split(empty_values, 0), 0);
    for (size_t step = 1; step <= strlen(empty_values); step++)
        CHECK_EQ_INT(status_of(empty_values, step), 0);
}

TEST(http_parse_fold_after_an_empty_value_is_400)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n continued\r\n\r\n";
    CHECK_EQ_INT(status_of(s, 0), 400);
    CHECK_EQ_INT(status_at_every_split(s, 400), 400);
    for (size_t step = 1; step <= strlen(s); step++)
        CHECK_EQ_INT(status_of(s, step), 400);
}
