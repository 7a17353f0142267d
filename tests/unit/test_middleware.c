/* Middleware through a real session (http_harness): the global list then the route's, in the
 * same order in every phase; on_request may answer and stop the rest; each gets its own zeroed
 * context; on_headers may change the status; body filters see a whole body or a stream's chunks
 * and what they emit is what goes out (with a Content-Length that fits). */
#include <errno.h>

#include "http_harness.h"
#include "unit.h"

static char trace[256];

static void note(const char *what, const void *ud)
{
    strcat(trace, what);
    strcat(trace, (const char *)ud);
    strcat(trace, " ");
}

static void rec_request(roost_req_t *req, void *ctx, void *ud)
{
    note("R", ud);
}

static void rec_headers(roost_req_t *req, void *ctx, void *ud)
{
    note("H", ud);
}

static void rec_done(roost_req_t *req, void *ctx, void *ud)
{
    note("D", ud);
}

#define RECORDER(tag)                                                                              \
    {                                                                                              \
        .name = tag, .on_request = rec_request, .on_headers = rec_headers, .on_done = rec_done,    \
        .ud = tag                                                                                  \
    }

static int handler_runs;

static void hello(roost_req_t *req, void *ud)
{
    handler_runs++;
    note("X", "");
    roost_respond(req, 200, "text/plain", "hello", 5);
}

static void route_middleware(harness_t *h, const char *path, const roost_middleware_t *const *list)
{
    int n = 0;
    http_param_t params[HTTP_MAX_PARAMS];
    char allow[64];
    route_t *r =
        (route_t *)router_match(http_server(h->srv)->router, "GET", str_make(path, strlen(path)),
                                params, &n, allow, sizeof allow);
    r->opts.middleware = list;
}

TEST(middleware_global_then_route_in_one_order_for_every_phase)
{
    static const roost_middleware_t third = RECORDER("3");
    static const roost_middleware_t *const route_list[] = {&third, NULL};
    harness_t h;
    harness_init(&h);
    roost_middleware_t one = RECORDER("1"), two = RECORDER("2");
    roost_use(h.srv, &one);
    roost_use(h.srv, &two);
    roost_route(h.srv, "GET", "/hello", hello, NULL, ROOST_LOOP);
    route_middleware(&h, "/hello", route_list);
    harness_connect(&h);
    trace[0] = '\0';
    harness_send(&h, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(harness_run_until(&h, 1, 1000), 1);
    CHECK_EQ_STR(trace, "R1 R2 R3 X H1 H2 H3 D1 D2 D3 ");
    harness_free(&h);
}

/* Registers mws (NULL-terminated) and one route, sends one GET and waits for its answer. */
static void get_once(harness_t *h, const roost_middleware_t *const *mws, const char *path,
                     roost_handler_fn fn)
{
    harness_init(h);
    for (; *mws; mws++)
        roost_use(h->srv, *mws);
    roost_route(h->srv, "GET", path, fn, NULL, ROOST_LOOP);
    harness_connect(h);
    char request[64];
    snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    harness_send(h, request);
    CHECK_EQ_INT(harness_run_until(h, 1, 1000), 1);
}

/* ---- on_request answers ---- */

static void limit_request(roost_req_t *req, void *ctx, void *ud)
{
    roost_res_header(req, "Retry-After", "1");
    roost_respond_error(req, 429, "Too Many Requests");
}

static const roost_middleware_t limit = {.name = "limit", .on_request = limit_request};
static const roost_middleware_t later = RECORDER("2");

TEST(middleware_on_request_answer_skips_later_hooks_and_the_handler)
{
    harness_t h;
    trace[0] = '\0';
    handler_runs = 0;
    get_once(&h, (const roost_middleware_t *const[]){&limit, &later, NULL}, "/hello", hello);
    CHECK(harness_find(&h, "HTTP/1.1 429 ") == 0);
    CHECK(harness_find(&h, "Retry-After: 1\r\n") > 0);
    CHECK_EQ_INT(handler_runs, 0);
    CHECK_EQ_STR(trace, "H2 D2 "); /* its answer still passes the later on_headers */
    harness_free(&h);
}

/* ---- on_request parks, its resume continues (roost_req_continue) ---- */

static void go_on(roost_req_t *req, void *arg)
{
    note("C", "");
    roost_req_continue(req);
}

static void park_request(roost_req_t *req, void *ctx, void *ud)
{
    note("P", "");
    roost_req_wait(req);
    roost_req_resume(req, go_on, NULL); /* runs after this hook returned, on the loop */
}

static const roost_middleware_t park = {.name = "park", .on_request = park_request};

TEST(middleware_parked_request_continues_with_the_later_hooks_and_the_handler)
{
    harness_t h;
    trace[0] = '\0';
    handler_runs = 0;
    get_once(&h, (const roost_middleware_t *const[]){&park, &later, NULL}, "/hello", hello);
    CHECK(harness_find(&h, "HTTP/1.1 200 ") == 0);
    CHECK_EQ_INT(handler_runs, 1);
    CHECK_EQ_STR(trace, "P C R2 X H2 D2 "); /* the hook after the parked one ran once */
    harness_free(&h);
}

TEST(middleware_parked_then_continued_request_still_gets_the_routes_404)
{
    harness_t h;
    trace[0] = '\0';
    harness_init(&h);
    roost_use(h.srv, &park);
    roost_route(h.srv, "GET", "/hello", hello, NULL, ROOST_LOOP);
    harness_connect(&h);
    harness_send(&h, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(harness_run_until(&h, 1, 1000), 1);
    CHECK(harness_find(&h, "HTTP/1.1 404 ") == 0);
    CHECK_EQ_STR(trace, "P C ");
    harness_free(&h);
}

/* ---- contexts and on_headers ---- */

typedef struct {
    int seen; /* zero at on_request, then set */
    int status_at_headers;
} count_ctx_t;

static int contexts_ok;

static void ctx_request(roost_req_t *req, void *ctx, void *ud)
{
    count_ctx_t *c = ctx;
    if (c && c->seen == 0)
        c->seen = 1;
}

static void ctx_headers(roost_req_t *req, void *ctx, void *ud)
{
    count_ctx_t *c = ctx;
    c->status_at_headers = roost_res_status(req);
    roost_res_set_status(req, 203);
    roost_res_header(req, "X-Seen", c->seen ? "yes" : "no");
}

static void ctx_done(roost_req_t *req, void *ctx, void *ud)
{
    count_ctx_t *c = ctx;
    if (c->seen == 1 && c->status_at_headers == 200)
        contexts_ok++;
}

TEST(middleware_context_is_zeroed_per_request_and_on_headers_sets_the_status)
{
    harness_t h;
    harness_init(&h);
    roost_middleware_t m = {.name = "ctx",
                            .ctx_size = sizeof(count_ctx_t),
                            .on_request = ctx_request,
                            .on_headers = ctx_headers,
                            .on_done = ctx_done};
    roost_use(h.srv, &m);
    roost_route(h.srv, "GET", "/hello", hello, NULL, ROOST_LOOP);
    harness_connect(&h);
    contexts_ok = 0;
    harness_send(&h,
                 "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(harness_run_until(&h, 2, 1000), 2);
    CHECK(harness_find(&h, "HTTP/1.1 203 ") == 0);
    CHECK(harness_find(&h, "X-Seen: yes\r\n") > 0);
    CHECK_EQ_INT(contexts_ok, 2);
    harness_free(&h);
}

/* ---- body filters ---- */

static int upper_filter(roost_req_t *req, const void *p, size_t n, int last,
                        roost_body_next_t *next, void *ctx, void *ud)
{
    char buf[64];
    if (n > sizeof buf)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char ch = ((const char *)p)[i];
        buf[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
    }
    return roost_body_emit(next, buf, n, last);
}

/* Holds everything back and emits it once, wrapped: a filter that changes the length. */
static int wrap_filter(roost_req_t *req, const void *p, size_t n, int last, roost_body_next_t *next,
                       void *ctx, void *ud)
{
    sbuf_t *held = ctx;
    sbuf_append(held, p, n);
    if (!last)
        return 0;
    int rc = roost_body_emit(next, "[", 1, 0);
    if (rc == 0)
        rc = roost_body_emit(next, held->p, held->len, 0);
    if (rc == 0)
        rc = roost_body_emit(next, "]", 1, 1);
    sbuf_free(held);
    return rc;
}

static void streamer(roost_req_t *req, void *ud)
{
    roost_stream_begin(req, 200, "text/plain");
    roost_stream_write(req, "hello ", 6);
    roost_stream_write(req, "world", 5);
    roost_stream_end(req);
}

static const roost_middleware_t upper = {.name = "upper", .on_body = upper_filter};
static const roost_middleware_t wrap = {
    .name = "wrap", .ctx_size = sizeof(sbuf_t), .on_body = wrap_filter};

TEST(middleware_body_filter_uppercases_a_streamed_body_chunk_by_chunk)
{
    harness_t h;
    get_once(&h, (const roost_middleware_t *const[]){&upper, NULL}, "/stream", streamer);
    CHECK(harness_find(&h, "Transfer-Encoding: chunked\r\n") > 0);
    CHECK(harness_find(&h, "\r\n\r\n6\r\nHELLO \r\n5\r\nWORLD\r\n0\r\n\r\n") > 0);
    harness_free(&h);
}

TEST(middleware_body_filters_chain_over_a_whole_body_with_its_new_length)
{
    harness_t h;
    get_once(&h, (const roost_middleware_t *const[]){&upper, &wrap, NULL}, "/hello", hello);
    CHECK(harness_find(&h, "Content-Length: 7\r\n") > 0);
    CHECK(harness_find(&h, "\r\n\r\n[HELLO]") > 0);
    harness_free(&h);
}

/* A filter that lets every answer through from on_headers: its on_body must not run. */
static int pass_body_calls;

static void pass_headers(roost_req_t *req, void *ctx, void *ud)
{
    roost_body_pass(req);
}

static int pass_filter(roost_req_t *req, const void *p, size_t n, int last, roost_body_next_t *next,
                       void *ctx, void *ud)
{
    pass_body_calls++;
    return roost_body_emit(next, "changed", 7, last);
}

static const roost_middleware_t passer = {
    .name = "passer", .on_headers = pass_headers, .on_body = pass_filter};

TEST(middleware_body_pass_skips_that_filter_and_keeps_the_others)
{
    harness_t h;
    pass_body_calls = 0;
    get_once(&h, (const roost_middleware_t *const[]){&passer, NULL}, "/hello", hello);
    CHECK(harness_find(&h, "\r\n\r\nhello") > 0);
    CHECK_EQ_INT(pass_body_calls, 0);
    harness_free(&h);

    get_once(&h, (const roost_middleware_t *const[]){&passer, &upper, NULL}, "/stream", streamer);
    CHECK(harness_find(&h, "\r\n\r\n6\r\nHELLO \r\n5\r\nWORLD\r\n0\r\n\r\n") > 0);
    CHECK_EQ_INT(pass_body_calls, 0);
    harness_free(&h);
}
