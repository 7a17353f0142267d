/* Server-sent events on a stream (the WHATWG event-stream format): the start (type, no-cache,
 * retry:), whole events (id:, event:, one data: line per line), comment heartbeats from a loop
 * timer while the stream is open, and the client's Last-Event-ID. Not the stream itself
 * (stream.c): an event goes out through roost_stream_write, with its backpressure. */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct http_sse {
    uv_timer_t timer;
    roost_req_t *req;
};

static void beat(uv_timer_t *t)
{
    struct http_sse *s = t->data;
    /* A comment line: clients ignore it, proxies see traffic. Refused under backpressure, which
     * is fine: a client that is behind has bytes coming already. */
    static const char ping[] = ": ping\n\n";
    roost_stream_write(s->req, ping, sizeof ping - 1);
}

static void sse_closed(uv_handle_t *h)
{
    free(h->data);
}

void http_sse_stop(roost_req_t *req)
{
    struct http_sse *s = req->sse;
    if (!s)
        return;
    req->sse = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sse_closed);
}

int roost_sse_start(roost_req_t *req, long retry_ms, double heartbeat_s)
{
    if (http_on_worker(req)) /* the heartbeat timer is the loop's: start it all there */
        return http_worker_sse_start(req, retry_ms, heartbeat_s);
    roost_res_header(req, "Cache-Control", "no-cache");
    roost_res_header(req, "X-Accel-Buffering", "no"); /* nginx in front: do not buffer */
    int rc = roost_stream_begin(req, 200, "text/event-stream");
    if (rc < 0)
        return rc;
    if (retry_ms > 0) {
        char line[40];
        int n = snprintf(line, sizeof line, "retry: %ld\n\n", retry_ms);
        rc = roost_stream_write(req, line, (size_t)n);
        if (rc < 0)
            return rc;
    }
    if (heartbeat_s > 0) {
        struct http_sse *s = calloc(1, sizeof *s);
        if (!s)
            return -ENOMEM;
        s->req = req;
        uv_timer_init(&req->loop->uv, &s->timer);
        s->timer.data = s;
        uint64_t ms = (uint64_t)(heartbeat_s * 1000);
        uv_timer_start(&s->timer, beat, ms ? ms : 1, ms ? ms : 1);
        req->sse = s;
    }
    return 0;
}

/* Appends "name: value\n" once per line of value (a field value cannot hold a newline). */
static int field_lines(sbuf_t *b, const char *name, const char *v)
{
    do {
        size_t n = strcspn(v, "\r\n");
        if (sbuf_printf(b, "%s: %.*s\n", name, (int)n, v) < 0)
            return -ENOMEM;
        v += n;
        if (*v == '\r' && v[1] == '\n')
            v++;
    } while (*v && *++v);
    return 0;
}

int roost_sse_event(roost_req_t *req, const char *id, const char *event, const char *data)
{
    sbuf_t b = {0};
    int rc = 0;
    /* id and event are one line each: anything after a line break is dropped. */
    if (id && sbuf_printf(&b, "id: %.*s\n", (int)strcspn(id, "\r\n"), id) < 0)
        rc = -ENOMEM;
    if (!rc && event && sbuf_printf(&b, "event: %.*s\n", (int)strcspn(event, "\r\n"), event) < 0)
        rc = -ENOMEM;
    if (!rc)
        rc = field_lines(&b, "data", data ? data : "");
    if (!rc && sbuf_append(&b, "\n", 1) < 0)
        rc = -ENOMEM;
    if (!rc)
        rc = roost_stream_write(req, b.p, b.len); /* whole or not at all */
    sbuf_free(&b);
    return rc;
}

roost_str_t roost_sse_last_id(const roost_req_t *req)
{
    return roost_req_header(req, "last-event-id");
}
