/* The middleware chain of one request: the global list then the route's, each entry with its
 * zeroed per-request context, and the phases that walk it (on_request, on_headers, the on_body
 * filters, on_done). It does not decide when a phase runs: dispatch, responses, streams and the
 * session do. Hooks run in list order in every phase (see roost.h). */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A context's place in the request's block: 16-byte aligned. */
static size_t ctx_room(const roost_middleware_t *m)
{
    return (m->ctx_size + 15) & ~(size_t)15;
}

int roost_use(roost_server_t *srv, const roost_middleware_t *mw)
{
    http_server_t *hs = http_server(srv);
    roost_middleware_t *m = realloc(hs->mw, (size_t)(hs->nmw + 1) * sizeof *m);
    if (!m)
        return -ENOMEM;
    hs->mw = m;
    hs->mw[hs->nmw++] = *mw;
    http_mw_t *chain = realloc(hs->chain, (size_t)hs->nmw * sizeof *chain);
    if (!chain)
        return -ENOMEM;
    hs->chain = chain;
    hs->chain_ctx = 0;
    hs->chain_filters = 0;
    for (int i = 0; i < hs->nmw; i++) {
        chain[i] = (http_mw_t){&hs->mw[i], hs->chain_ctx};
        hs->chain_ctx += ctx_room(&hs->mw[i]);
        hs->chain_filters |= hs->mw[i].on_body != NULL;
    }
    return 0;
}

/* Where a filter emits: the next entry of the chain that filters, or the sink. */
struct roost_body_next {
    roost_req_t *req;
    int i;
};

static void *ctx_of(const roost_req_t *req, int i)
{
    const http_mw_t *e = &req->mw[i];
    return e->mw->ctx_size ? req->mw_ctx + e->ctx_off : NULL;
}

/* The contexts, zeroed, in one block of the arena. */
static int alloc_ctx(roost_req_t *req, size_t size)
{
    req->mw_ctx = NULL;
    if (!size)
        return 0;
    req->mw_ctx = arena_alloc(&req->arena, size);
    if (!req->mw_ctx)
        return -ENOMEM;
    memset(req->mw_ctx, 0, size);
    return 0;
}

/* Entries past the mask's 64 bits cannot pass: their filters always run. MW_NONE as mw_cur:
 * no on_headers runs now, a roost_body_pass marks nothing. */
#define MW_NONE 64

int http_mw_chain(roost_req_t *req, const http_server_t *hs, const roost_middleware_t *const *route)
{
    int nglobal = req->background ? 0 : hs->nmw; /* no client: only the route's own */
    req->nmw = 0;
    req->has_filter = 0;
    req->mw_passed = 0;
    req->mw_cur = MW_NONE;
    if (!route || !*route) {
        /* The common case: the entries are the server's (measured: building them per request
         * was ~130 instructions of a ~6,000-instruction /plaintext request). */
        req->mw = nglobal ? hs->chain : NULL;
        if (alloc_ctx(req, nglobal ? hs->chain_ctx : 0) < 0)
            return -ENOMEM;
        req->nmw = nglobal;
        req->has_filter = nglobal && hs->chain_filters;
        return 0;
    }
    int n = nglobal;
    for (const roost_middleware_t *const *r = route; *r; r++)
        n++;
    http_mw_t *mw = arena_alloc(&req->arena, (size_t)n * sizeof *mw);
    if (!mw)
        return -ENOMEM;
    size_t size = nglobal ? hs->chain_ctx : 0;
    memcpy(mw, hs->chain, (size_t)nglobal * sizeof *mw);
    for (int i = nglobal; i < n; i++) {
        mw[i] = (http_mw_t){route[i - nglobal], size};
        size += ctx_room(route[i - nglobal]);
    }
    if (alloc_ctx(req, size) < 0)
        return -ENOMEM;
    for (int i = 0; i < n; i++)
        req->has_filter |= mw[i].mw->on_body != NULL;
    req->mw = mw;
    req->nmw = n;
    return 0;
}

int http_mw_request(roost_req_t *req, int from)
{
    for (int i = from; i < req->nmw; i++) {
        const roost_middleware_t *m = req->mw[i].mw;
        if (m->on_request) {
            /* From roost_req_continue the request waits already: a hook parks it when it adds
             * a wait of its own. */
            int waits = atomic_load(&req->waits);
            m->on_request(req, ctx_of(req, i), m->ud);
            if (req->status)
                return 1;
            if (atomic_load(&req->waits) > waits) {
                /* It parked the request (a cache fill's twin, a shared rate limit): its resume
                 * answers or continues (roost_req_continue). */
                req->mw_next = i + 1;
                http_req_set_phase(req, HTTP_REQ_WAITING);
                return 1;
            }
        }
    }
    return 0;
}

static int passed(const roost_req_t *req, int i)
{
    return i < MW_NONE && (req->mw_passed >> i) & 1;
}

void roost_body_pass(roost_req_t *req)
{
    if (req->mw_cur < MW_NONE)
        req->mw_passed |= 1ull << req->mw_cur;
}

void http_mw_headers(roost_req_t *req)
{
    for (int i = 0; i < req->nmw; i++) {
        const roost_middleware_t *m = req->mw[i].mw;
        if (m->on_headers) {
            req->mw_cur = i;
            m->on_headers(req, ctx_of(req, i), m->ud);
        }
    }
    req->mw_cur = MW_NONE;
    if (!req->mw_passed || !req->has_filter)
        return;
    /* Every filter let this answer through: the body goes out as the handler made it. */
    req->has_filter = 0;
    for (int i = 0; i < req->nmw && !req->has_filter; i++)
        req->has_filter = req->mw[i].mw->on_body && !passed(req, i);
}

/* The end of the chain: a whole body collects in res_tmp; a stream's pieces go, framed as
 * chunks on HTTP/1.1 (RFC 9112 §7.1), into res_body for the session to write. */
static int sink(roost_req_t *req, const void *p, size_t n, int last)
{
    if (http_req_phase(req) != HTTP_REQ_STREAMING) {
        /* A body that every filter passed on unchanged stays as it was (no copy): the
         * handler's bytes, or the shared buffer they point into. */
        const char *body =
            req->res_shared ? req->res_shared->data + req->res_shared_off : req->res_body.p;
        size_t len = req->res_shared ? req->res_shared_len : req->res_body.len;
        if (last && !req->res_tmp.len && p == body && n == len) {
            req->body_kept = 1;
            return 0;
        }
        return n ? sbuf_append(&req->res_tmp, p, n) : 0;
    }
    sbuf_t *b = &req->res_body;
    req->res_bytes += n;
    int chunked = req->http_minor == 1;
    if (n && chunked && sbuf_printf(b, "%zx\r\n", n) < 0)
        return -ENOMEM;
    if (n && sbuf_append(b, p, n) < 0)
        return -ENOMEM;
    if (n && chunked && sbuf_append(b, "\r\n", 2) < 0)
        return -ENOMEM;
    if (last && chunked && sbuf_append(b, "0\r\n\r\n", 5) < 0)
        return -ENOMEM;
    return 0;
}

int roost_body_emit(roost_body_next_t *next, const void *p, size_t n, int last)
{
    roost_req_t *req = next->req;
    for (int i = next->i; i < req->nmw; i++) {
        const roost_middleware_t *m = req->mw[i].mw;
        if (m->on_body && !passed(req, i)) {
            roost_body_next_t after = {req, i + 1};
            return m->on_body(req, p, n, last, &after, ctx_of(req, i), m->ud);
        }
    }
    return sink(req, p, n, last);
}

void http_mw_respond(roost_req_t *req)
{
    http_mw_headers(req);
    if (!req->has_filter || req->res_file.done)
        return; /* the body goes out as the handler wrote it (or the file as on disk) */
    req->res_tmp.len = 0;
    req->body_kept = 0;
    roost_body_next_t first = {req, 0};
    const char *body = req->res_body.p;
    size_t len = req->res_body.len;
    if (req->res_shared) {
        body = req->res_shared->data + req->res_shared_off;
        len = req->res_shared_len;
    }
    int rc = roost_body_emit(&first, body, len, 1);
    if (rc == 0 && req->body_kept)
        return; /* passed on unchanged: the handler's (or the shared) bytes are the body */
    http_res_shared_release(req); /* the filters made the body: res_tmp */
    if (rc < 0) {
        log_error("%s: a body filter failed; the answer is 500",
                  req->route ? req->route->name : "?");
        req->status = 500;
        req->res_type = NULL;
        req->res_tmp.len = 0;
        req->res_body.len = 0;
        return;
    }
    sbuf_t t = req->res_body;
    req->res_body = req->res_tmp;
    req->res_tmp = t;
}

int http_mw_stream(roost_req_t *req, const void *p, size_t n, int last)
{
    roost_body_next_t first = {req, 0};
    return roost_body_emit(&first, p, n, last);
}

void http_mw_done(roost_req_t *req)
{
    int n = req->nmw;
    req->nmw = 0; /* once */
    for (int i = 0; i < n; i++) {
        const roost_middleware_t *m = req->mw[i].mw;
        if (m->on_done)
            m->on_done(req, ctx_of(req, i), m->ud);
    }
}
