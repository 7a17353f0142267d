/* The HTTP session on a connection without a socket (http_harness): pipelined requests are
 * answered in order, a blocking handler's answer comes back from its worker, a handler that
 * waits is resumed from another thread, and a connection that closes while its request is on
 * a worker frees everything once the worker is done (ASan reports a leak or a use after free). */
#include <pthread.h>
#include <unistd.h>

#include "http_harness.h"
#include "unit.h"

static void answer_a(roost_req_t *req, void *ud)
{
    roost_respond(req, 200, "text/plain", "A", 1);
}

static void answer_b(roost_req_t *req, void *ud)
{
    roost_respond(req, 200, "text/plain", "B", 1);
}

static void slow_worker(roost_req_t *req, void *ud)
{
    usleep(30 * 1000);
    roost_respond(req, 200, "text/plain", "SLOW", 4);
}

static void silent_worker(roost_req_t *req, void *ud)
{
    usleep(30 * 1000);
}

TEST(session_pipelined_requests_answered_in_order)
{
    harness_t h;
    harness_init(&h);
    roost_route(h.srv, "GET", "/a", answer_a, NULL, ROOST_LOOP);
    roost_route(h.srv, "GET", "/b", answer_b, NULL, ROOST_LOOP);
    harness_connect(&h);
    harness_send(&h, "GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(harness_run_until(&h, 3, 1000), 3);
    long b1 = harness_find(&h, "\r\n\r\nB"), a = harness_find(&h, "\r\n\r\nA");
    CHECK(b1 >= 0 && a > b1);
    CHECK(harness_find(&h, "\r\n\r\nAHTTP/1.1") == a); /* the third follows the second */
    CHECK(h.out.len > 5 && !memcmp(h.out.p + h.out.len - 5, "\r\n\r\nB", 5));
    harness_free(&h);
}

/* GET path (answered later, with marker in its body) pipelined with GET /a: nothing is
 * written until path's answer is back on the loop, then both go out in order. */
static void check_later_answer_keeps_its_turn(const char *path, roost_handler_fn fn, unsigned flags,
                                              const char *marker)
{
    harness_t h;
    harness_start(&h, path, fn, flags);
    roost_route(h.srv, "GET", "/a", answer_a, NULL, ROOST_LOOP); /* added after: still served */
    char request[128];
    snprintf(request, sizeof request,
             "GET %s HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n", path);
    harness_send(&h, request);
    CHECK_EQ_INT(h.out.len, 0); /* /a is ready but waits for the first */
    CHECK_EQ_INT(harness_run_until(&h, 2, 2000), 2);
    long first = harness_find(&h, marker), a = harness_find(&h, "\r\n\r\nA");
    CHECK(first > 0 && a > first);
    harness_free(&h);
}

TEST(session_worker_answer_comes_back_before_a_later_fast_one)
{
    check_later_answer_keeps_its_turn("/slow", slow_worker, ROOST_BLOCKING, "SLOW");
}

/* A handler that ends without an answer, on a worker or through its resume, is answered 500. */
static void check_answers_500(const char *path, roost_handler_fn fn, unsigned flags)
{
    harness_t h;
    harness_start(&h, path, fn, flags);
    char request[64];
    snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    harness_send(&h, request);
    CHECK_EQ_INT(harness_run_until(&h, 1, 2000), 1);
    CHECK(harness_find(&h, "HTTP/1.1 500 ") == 0);
    harness_free(&h);
}

TEST(session_worker_handler_without_answer_is_500)
{
    check_answers_500("/silent", silent_worker, ROOST_BLOCKING);
}

/* ---- waiting and resuming from another thread ---- */

static void resumed(roost_req_t *req, void *arg)
{
    roost_respond(req, 200, "text/plain", arg, strlen(arg));
}

static void *resume_later(void *arg)
{
    usleep(20 * 1000);
    roost_req_resume(arg, resumed, "RESUMED");
    return NULL;
}

static pthread_t resumer;

static void waits_for_thread(roost_req_t *req, void *ud)
{
    roost_req_wait(req);
    pthread_create(&resumer, NULL, resume_later, req);
}

TEST(session_wait_then_resume_from_another_thread)
{
    check_later_answer_keeps_its_turn("/wait", waits_for_thread, ROOST_LOOP, "RESUMED");
    pthread_join(resumer, NULL);
}

static void *resume_nothing(void *arg)
{
    usleep(10 * 1000);
    roost_req_resume(arg, NULL, NULL);
    return NULL;
}

static void waits_for_nothing(roost_req_t *req, void *ud)
{
    roost_req_wait(req);
    pthread_create(&resumer, NULL, resume_nothing, req);
}

TEST(session_resume_that_does_not_answer_is_500)
{
    check_answers_500("/wait", waits_for_nothing, ROOST_LOOP);
    pthread_join(resumer, NULL);
}

/* ---- the client leaves while its request is elsewhere ---- */

TEST(session_close_during_worker_handoff_frees_everything)
{
    harness_t h;
    harness_start(&h, "/slow", slow_worker, ROOST_BLOCKING);
    harness_send(&h, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    net_conn_close(h.conn); /* the client left while the first is on a worker */
    CHECK_EQ_INT(harness_run_until(&h, 1, 100), 0);
    /* The worker finishes against a request whose connection is gone: nothing is written, the
     * request and the connection's memory go when it is back on the loop (ASan checks). */
    usleep(60 * 1000);
    CHECK_EQ_INT(harness_run_until(&h, 1, 50), 0);
    harness_free(&h);
}

TEST(session_close_while_waiting_ends_the_wait_on_resume)
{
    harness_t h;
    harness_start(&h, "/wait", waits_for_thread, ROOST_LOOP);
    harness_send(&h, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n");
    net_conn_close(h.conn);
    pthread_join(resumer, NULL);
    CHECK_EQ_INT(harness_run_until(&h, 1, 50), 0); /* the resume ran; its answer is dropped */
    harness_free(&h);
}
