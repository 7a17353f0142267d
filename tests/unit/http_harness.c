/* The harness of http_harness.h: a roost server wired to a loop that is never started on its
 * own thread, so a test drives it step by step on the test's thread. */
#include "http_harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void capture(net_conn_t *c, const void *data, size_t len, void *ud)
{
    harness_t *h = ud;
    sbuf_append(&h->out, data, len);
}

void harness_init(harness_t *h)
{
    memset(h, 0, sizeof *h);
    roost_config_t cfg;
    roost_config_init(&cfg);
    cfg.net.threads = 1;
    h->srv = roost_server_new(&cfg);
}

void harness_connect(harness_t *h)
{
    tpool_opts_t po = {.name = "test", .min = 2, .max = 2, .max_queue = 16};
    h->srv->pool = tpool_fifo_start(&po);
    net_group_opts_t opts = {
        .threads = 1,
        .proto = &http_proto,
        .on_accept = http_session_accept,
        .on_loop_start = core_loops_init,
        .on_loop_end = core_loops_end,
        .ud = h->srv,
    };
    h->group = net_group_new(&opts);
    h->loop = net_group_loop(h->group, 0);
    h->conn = net_conn_fake(h->loop, capture, h);
    net_conn_ref(h->conn); /* ours: the memory stays until harness_free */
}

void harness_start(harness_t *h, const char *path, roost_handler_fn fn, unsigned flags)
{
    harness_init(h);
    roost_route(h->srv, "GET", path, fn, NULL, flags);
    harness_connect(h);
}

long harness_find(const harness_t *h, const char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i + n <= h->out.len; i++)
        if (!memcmp(h->out.p + i, text, n))
            return (long)i;
    return -1;
}

void harness_send(harness_t *h, const char *bytes)
{
    size_t n = strlen(bytes);
    char *copy = malloc(n); /* the read buffer is writable in the server */
    memcpy(copy, bytes, n);
    h->conn->proto->on_data(h->conn, copy, n);
    free(copy);
}

static int count_responses(const harness_t *h)
{
    int n = 0;
    for (size_t i = 0; i + 9 <= h->out.len; i++)
        if (!memcmp(h->out.p + i, "HTTP/1.1 ", 9))
            n++;
    return n;
}

int harness_run_until(harness_t *h, int n, int ms)
{
    for (int waited = 0; count_responses(h) < n && waited < ms; waited++) {
        uv_run(&h->loop->uv, UV_RUN_NOWAIT);
        usleep(1000);
    }
    return count_responses(h);
}

void harness_free(harness_t *h)
{
    if (h->conn) {
        net_conn_close(h->conn);
        uv_run(&h->loop->uv, UV_RUN_NOWAIT);
    }
    tpool_stop(h->srv->pool); /* a worker still running posts its completion, ... */
    h->srv->pool = NULL;
    uv_run(&h->loop->uv, UV_RUN_NOWAIT); /* ... which runs here */
    if (h->conn)
        net_conn_unref(h->conn);
    net_group_join_free(h->group);
    roost_server_free(h->srv);
    sbuf_free(&h->out);
}
