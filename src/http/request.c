/* What a handler reads from its request: method, path, params, query, headers, body. Values
 * that need decoding are decoded on demand into the request's arena. */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

roost_str_t roost_req_method(const roost_req_t *req)
{
    const char *m = llhttp_method_name((llhttp_method_t)req->method);
    return str_make(m, strlen(m));
}

roost_str_t roost_req_path(const roost_req_t *req)
{
    return req->path;
}

roost_str_t roost_req_target(const roost_req_t *req)
{
    return http_req_target(req);
}

roost_str_t roost_req_param(const roost_req_t *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (!strcmp(req->params[i].name, name))
            return req->params[i].value;
    return str_make(NULL, 0);
}

long long roost_req_param_int(const roost_req_t *req, const char *name)
{
    roost_str_t v = roost_req_param(req, name);
    return v.ptr ? strtoll(v.ptr, NULL, 10) : 0;
}

roost_str_t roost_req_query(roost_req_t *req, const char *name)
{
    return url_query_get(&req->arena, req->query, name);
}

roost_str_t roost_req_body(const roost_req_t *req)
{
    return str_make(req->body.p, req->body.len);
}

roost_server_t *roost_req_server(const roost_req_t *req)
{
    return req->srv;
}

const char *roost_req_route(const roost_req_t *req)
{
    return req->route ? req->route->name : NULL;
}

int http_conn_peer(net_conn_t *c, char *out, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (size)
        out[0] = '\0';
    if (!c || uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
        return -ENOTCONN;
    const void *addr = NULL;
    int family = ss.ss_family;
    if (family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
        addr = &a6->sin6_addr;
        /* ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket: one client, one key. */
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            addr = &a6->sin6_addr.s6_addr[12];
            family = AF_INET;
        }
    } else if (family == AF_INET) {
        addr = &((const struct sockaddr_in *)&ss)->sin_addr;
    }
    if (!addr || !inet_ntop(family, addr, out, (socklen_t)size)) {
        if (size)
            out[0] = '\0';
        return -ENOTCONN;
    }
    return 0;
}

int roost_req_client_addr(const roost_req_t *req, char *out, size_t size)
{
    const char *p = req->sess ? http_session_peer(req->sess) : NULL;
    if (!p) {
        if (size)
            out[0] = '\0';
        return -ENOTCONN;
    }
    size_t n = strlen(p);
    if (n >= size)
        return -ENOSPC;
    memcpy(out, p, n + 1);
    return 0;
}

void *roost_req_alloc(roost_req_t *req, size_t size)
{
    return arena_alloc(&req->arena, size);
}

void *roost_req_new(roost_req_t *req, size_t size)
{
    void *p = arena_alloc(&req->arena, size);
    if (!p) {
        roost_respond_error(req, 500, "Out of memory");
        return NULL;
    }
    return memset(p, 0, size);
}

/* A whole-segment integer, like FastAPI's int path parameters (no sign games, no spaces). */
static int parse_int(const char *s, size_t len)
{
    if (len == 0 || len > 19)
        return -EINVAL;
    size_t i = s[0] == '-' || s[0] == '+';
    if (i == len)
        return -EINVAL;
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
    return 0;
}

/* Routes req and runs it: the on_request hooks (which may answer), then the checks that answer
 * 400/404/405/422 (path, then the route's schemas), then the handler. Every answer goes through
 * the same chain's on_headers. */
static void dispatch_route(roost_req_t *req, const char *allow);

void http_dispatch(roost_req_t *req)
{
    http_server_t *hs = req->hs;
    http_req_set_phase(req, HTTP_REQ_ON_LOOP);
    roost_counter_add(hs->c_requests, 1);
    if (req->srv->cfg.obs.tracing)
        http_trace_start(req);
    roost_str_t target = http_req_target(req);
    const char *q = memchr(target.ptr, '?', target.len);
    if (q)
        req->query = str_make(q + 1, target.len - (size_t)(q + 1 - target.ptr));
    req->path = url_clean_path(&req->arena, target.ptr, target.len);
    char allow[128] = "";
    if (req->path.ptr) {
        const char *method = llhttp_method_name((llhttp_method_t)req->method);
        req->route = router_match(hs->router, method, req->path, req->params, &req->nparams, allow,
                                  sizeof allow);
    }
    if (http_mw_chain(req, hs, req->route ? req->route->opts.middleware : NULL) < 0) {
        roost_respond_error(req, 503, "Out of memory");
        return;
    }
    if (http_mw_request(req, 0))
        return;
    dispatch_route(req, allow);
}

/* After the on_request hooks: the checks that answer 400/404/405/422, then the handler. */
static void dispatch_route(roost_req_t *req, const char *allow)
{
    if (!req->path.ptr) {
        roost_respond_error(req, 400, "Invalid request path");
        return;
    }
    if (!req->route) {
        if (allow[0]) {
            roost_res_header(req, "Allow", allow);
            roost_respond_error(req, 405, "Method Not Allowed");
        } else {
            roost_respond_error(req, 404, "Not Found");
        }
        return;
    }
    json_t *errors = NULL;
    for (int i = 0; i < req->nparams; i++) {
        roost_str_t v = req->params[i].value;
        req->params[i].value.ptr = arena_strndup(&req->arena, v.ptr, v.len);
        if (req->route->param_types[i] == PARAM_INT && parse_int(v.ptr, v.len) < 0) {
            if (!errors)
                errors = json_array();
            json_array_append_new(errors, roost_error_item("int_parsing",
                                                           roost_loc("path", req->params[i].name),
                                                           json_stringn(v.ptr, v.len), NULL, NULL));
        }
    }
    if (errors) {
        roost_respond_422(req, errors);
        return;
    }
    if (http_route_validate(req) == 0)
        http_run_handler(req);
}

void roost_req_continue(roost_req_t *req)
{
    if (req->status || http_req_phase(req) != HTTP_REQ_ON_LOOP)
        return; /* answered, or not called from a resume */
    if (http_mw_request(req, req->mw_next))
        return;
    char allow[128] = "";
    if (!req->route && req->path.ptr) {
        /* Only for the Allow field of a 405: match again (the first match's is gone). */
        int nparams = 0;
        http_param_t params[HTTP_MAX_PARAMS];
        const char *method = llhttp_method_name((llhttp_method_t)req->method);
        router_match(req->hs->router, method, req->path, params, &nparams, allow, sizeof allow);
    }
    dispatch_route(req, allow);
}

uint64_t roost_res_bytes(const roost_req_t *req)
{
    return req->res_bytes;
}
