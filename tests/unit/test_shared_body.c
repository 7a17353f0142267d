/* Answers whose body is a shared buffer (http_respond_shared, what a cache HIT uses) and
 * streams from a blocking handler (stream_worker.c), through a real session (http_harness):
 * the bytes out are the buffer's, small and large, through a filter that passes them on and
 * one that changes them; the buffer's references all come back; a worker's writes arrive whole
 * and in order, and its return ends the stream. */
#include <errno.h>
#include <stdlib.h>

#include "http_harness.h"
#include "unit.h"

static rbuf_t *shared;

static void shared_handler(roost_req_t *req, void *ud)
{
    /* The body is bytes [4, len) of the buffer: an offset must be honoured. */
    http_respond_shared(req, 200, "text/plain", shared, 4, shared->len - 4);
}

static rbuf_t *pattern(size_t n)
{
    rbuf_t *b = rbuf_new(n);
    for (size_t i = 0; i < n; i++)
        b->data[i] = (char)('a' + (i * 7 + i / 26) % 26);
    b->len = n;
    return b;
}

static int pass_filter(roost_req_t *req, const void *p, size_t n, int last, roost_body_next_t *next,
                       void *ctx, void *ud)
{
    return roost_body_emit(next, p, n, last);
}

static int upper_filter(roost_req_t *req, const void *p, size_t n, int last,
                        roost_body_next_t *next, void *ctx, void *ud)
{
    char *buf = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(((const char *)p)[i] & ~0x20);
    int rc = roost_body_emit(next, buf, n, last);
    free(buf);
    return rc;
}

static const roost_middleware_t pass = {.name = "pass", .on_body = pass_filter};
static const roost_middleware_t upper = {.name = "upper", .on_body = upper_filter};

/* One GET of a shared body of n bytes (+4 skipped) through mw (may be NULL); checks the bytes. */
static void shared_once(size_t n, const roost_middleware_t *mw, int upper_case)
{
    harness_t h;
    shared = pattern(n + 4);
    harness_init(&h);
    if (mw)
        roost_use(h.srv, mw);
    roost_route(h.srv, "GET", "/s", shared_handler, NULL, ROOST_LOOP);
    harness_connect(&h);
    harness_send(&h, "GET /s HTTP/1.1\r\nHost: x\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(harness_run_until(&h, 2, 2000), 2);
    char want[64];
    snprintf(want, sizeof want, "Content-Length: %zu\r\n", n);
    CHECK(harness_find(&h, want) > 0);
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = upper_case ? (char)(shared->data[4 + i] & ~0x20) : shared->data[4 + i];
    /* Both answers carry the whole body, right after their heads. */
    const char *p = h.out.p, *end = h.out.p + h.out.len;
    for (int k = 0; k < 2; k++) {
        const char *head_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        CHECK(head_end != NULL);
        if (!head_end)
            break;
        p = head_end + 4;
        CHECK((size_t)(end - p) >= n && memcmp(p, body, n) == 0);
        p += n;
    }
    CHECK(p == end);
    free(body);
    harness_free(&h);
    CHECK_EQ_INT(atomic_load(&shared->refs), 1); /* every request let go of it */
    rbuf_unref(shared);
}

TEST(shared_body_small_is_written_whole_twice)
{
    shared_once(100, NULL, 0);
}

TEST(shared_body_large_is_written_from_the_buffer)
{
    shared_once(300 * 1024, NULL, 0);
}

TEST(shared_body_through_a_filter_that_passes_it_on)
{
    shared_once(100, &pass, 0);
    shared_once(64 * 1024, &pass, 0);
}

TEST(shared_body_through_a_filter_that_changes_it)
{
    shared_once(100, &upper, 1);
    shared_once(64 * 1024, &upper, 1);
}

/* ---- a blocking handler's stream ---- */

static void worker_streamer(roost_req_t *req, void *ud)
{
    CHECK_EQ_INT(roost_stream_begin(req, 200, "text/plain"), 0);
    CHECK_EQ_INT(roost_stream_write(req, "hello ", 6), 0);
    CHECK_EQ_INT(roost_stream_write(req, "world", 5), 0);
    CHECK_EQ_INT(roost_stream_on_drain(req, NULL, NULL), -EINVAL); /* writes wait themselves */
    /* returns with the stream open: the end comes with the handler's return */
}

TEST(worker_stream_arrives_in_order_and_ends_with_the_handler)
{
    harness_t h;
    harness_start(&h, "/w", worker_streamer, ROOST_BLOCKING);
    harness_send(&h, "GET /w HTTP/1.1\r\nHost: x\r\n\r\nGET /w HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 40 && harness_find(&h, "0\r\n\r\nHTTP/1.1 200") < 0; i++)
        harness_run_until(&h, 3, 50); /* turns the loop; the worker runs meanwhile */
    for (int i = 0; i < 40; i++) {    /* the second answer's last chunk */
        long first = harness_find(&h, "0\r\n\r\n");
        if (first >= 0 && strstr(h.out.p + first + 5, "0\r\n\r\n"))
            break;
        harness_run_until(&h, 3, 50);
    }
    CHECK(harness_find(&h, "Transfer-Encoding: chunked\r\n") > 0);
    /* The two writes, whole and in order, in one chunk or two. */
    long a = harness_find(&h, "hello ");
    long b = harness_find(&h, "world");
    CHECK(a > 0 && b > a);
    const char *second = strstr(h.out.p + b, "HTTP/1.1 200");
    CHECK(second != NULL);
    CHECK(second && strstr(second, "world") && strstr(second, "0\r\n\r\n"));
    harness_free(&h);
}
