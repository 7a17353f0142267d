/* Background requests: a copy of a client's request (method, target, headers) run again
 * through its route with no client, its answer dropped once made. The response cache uses it
 * to revalidate a stale answer after serving it (stale-while-revalidate). Not the session's
 * pipeline (session.c): a background request is in none. */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* req->on_responded: the answer (or a stream's piece) is made; nobody reads it. */
static void bg_responded(roost_req_t *bg)
{
    http_phase_t phase = http_req_phase(bg);
    if (phase == HTTP_REQ_STREAMING) {
        bg->res_body.len = 0;
        return;
    }
    if (phase != HTTP_REQ_RESPONDED)
        return;
    bg->on_responded = NULL; /* from here roost_req_gone: a producer stops */
    http_req_set_phase(bg, HTTP_REQ_WRITTEN);
    net_conn_t *c = bg->conn;
    http_req_unref(bg); /* on_done hooks now, or when the last async owner lets go */
    net_conn_unref(c);
}

/* Copies what the route needs to see: the head bytes and the header index into them. */
static int copy_head(roost_req_t *bg, const roost_req_t *req)
{
    if (req->head_len > bg->head_cap) {
        bg->head = malloc(req->head_len);
        if (!bg->head) {
            bg->head = bg->inline_head;
            return -ENOMEM;
        }
        bg->head_cap = req->head_len;
    }
    memcpy(bg->head, req->head, req->head_len);
    bg->head_len = req->head_len;
    bg->url_len = req->url_len;
    if (req->nheaders > bg->headers_cap) {
        bg->headers = arena_alloc(&bg->arena, (size_t)req->nheaders * sizeof *bg->headers);
        if (!bg->headers) {
            bg->headers = bg->inline_headers;
            return -ENOMEM;
        }
        bg->headers_cap = req->nheaders;
    }
    memcpy(bg->headers, req->headers, (size_t)req->nheaders * sizeof *bg->headers);
    bg->nheaders = req->nheaders;
    bg->traceparent = req->traceparent; /* the same index into the copied headers */
    return 0;
}

int http_req_background(roost_req_t *req)
{
    roost_req_t *bg = calloc(1, sizeof *bg);
    if (!bg)
        return -ENOMEM;
    http_req_reset(bg);
    if (copy_head(bg, req) < 0) {
        http_req_free(bg);
        return -ENOMEM;
    }
    bg->method = req->method;
    bg->http_major = req->http_major;
    bg->http_minor = req->http_minor;
    bg->keep_alive = 1;
    bg->background = 1;
    bg->on_responded = bg_responded;
    /* The client's connection, for what handlers read of it (the peer address); a reference
     * keeps its memory (not the socket) while the copy runs. */
    bg->conn = req->conn;
    net_conn_ref(bg->conn);
    bg->srv = req->srv;
    bg->hs = req->hs;
    bg->loop = req->loop;
    bg->refs = 1;
    bg->start_ns = time_now_ns();
    http_dispatch(bg);
    return 0;
}
