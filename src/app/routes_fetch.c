/* Upstream calls over HTTP: GET /proxy/{upstream}/{path:path} forwards a GET to a configured
 * upstream (never to a URL taken from the request: no SSRF), and GET /aggregate calls every
 * configured upstream at once, each result or its error reported (gather with
 * return_exceptions=True). Both run on the loop and block nothing while they wait. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

#define AGGREGATE_DEFAULT_CONCURRENCY 10

/* Percent-encodes what a path may not carry as is (RFC 3986 §3.3: unreserved, sub-delims, ':',
 * '@' and '/' stay). The path arrived decoded, so its '%' signs are data. */
static char *encode_path(roost_str_t p, roost_str_t query)
{
    char *out = malloc(p.len * 3 + query.len + 3);
    if (!out)
        return NULL;
    char *o = out;
    *o++ = '/';
    for (size_t i = 0; i < p.len; i++) {
        unsigned char ch = (unsigned char)p.ptr[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~!$&'()*+,;=:@/", ch))
            *o++ = (char)ch;
        else
            o += sprintf(o, "%%%02X", ch);
    }
    if (query.len) {
        *o++ = '?';
        memcpy(o, query.ptr, query.len);
        o += query.len;
    }
    *o = 0;
    return out;
}

static roost_str_t raw_query(const roost_req_t *req)
{
    roost_str_t t = roost_req_target(req);
    const char *q = t.ptr ? memchr(t.ptr, '?', t.len) : NULL;
    return q ? (roost_str_t){q + 1, (size_t)(t.ptr + t.len - q - 1)} : (roost_str_t){"", 0};
}

static void respond_failure(roost_req_t *req, const roost_fetch_result_t *res)
{
    char detail[256];
    snprintf(detail, sizeof detail, "Upstream call failed: %s (%s)",
             roost_fetch_error_name(res->error), res->error_text);
    roost_respond_error(req, roost_fetch_error_status(res->error), detail);
}

static void proxy_done(roost_req_t *req, const roost_fetch_result_t *res, void *arg)
{
    if (res->error != ROOST_FETCH_OK) {
        respond_failure(req, res);
        return;
    }
    char *ct = res->content_type.ptr ? strndup(res->content_type.ptr, res->content_type.len) : NULL;
    roost_respond(req, res->status, ct, res->body.ptr, res->body.len);
    free(ct);
}

static void proxy(roost_req_t *req, void *ud)
{
    roost_str_t name = roost_req_param(req, "upstream");
    roost_server_t *srv = roost_req_server(req);
    int known = 0;
    for (int i = 0; roost_fetch_upstream(srv, i); i++)
        if (!strcmp(roost_fetch_upstream(srv, i), name.ptr))
            known = 1;
    if (!known) {
        roost_respond_error(req, 404, "Unknown upstream");
        return;
    }
    char *path = encode_path(roost_req_param(req, "path"), raw_query(req));
    if (!path) {
        roost_respond_error(req, 500, "out of memory");
        return;
    }
    roost_str_t tp = roost_req_header(req, "traceparent");
    char tpbuf[128] = "";
    if (tp.ptr && tp.len < sizeof tpbuf)
        memcpy(tpbuf, tp.ptr, tp.len);
    roost_fetch_opts_t o = {.upstream = name.ptr, .url = path, .traceparent = tpbuf};
    if (roost_fetch(req, &o, proxy_done, NULL) < 0)
        roost_respond_error(req, 500, "Cannot start the upstream call");
    free(path);
}

static void aggregate_done(roost_req_t *req, const roost_fetch_result_t *rs, size_t n, void *arg)
{
    roost_server_t *srv = roost_req_server(req);
    json_t *results = json_array();
    for (size_t i = 0; i < n; i++) {
        const roost_fetch_result_t *r = &rs[i];
        json_t *o = json_pack("{s:s}", "upstream", roost_fetch_upstream(srv, (int)i));
        if (r->error == ROOST_FETCH_OK) {
            json_error_t err;
            json_t *body = json_loadb(r->body.ptr, r->body.len, JSON_DECODE_ANY, &err);
            json_object_set_new(o, "status", json_integer(r->status));
            json_object_set_new(o, "body", body ? body : json_stringn(r->body.ptr, r->body.len));
        } else {
            json_object_set_new(o, "error", json_string(roost_fetch_error_name(r->error)));
            json_object_set_new(o, "detail", json_string(r->error_text));
        }
        json_array_append_new(results, o);
    }
    roost_respond_json(req, 200, json_pack("{s:o}", "results", results));
}

static void aggregate(roost_req_t *req, void *ud)
{
    roost_server_t *srv = roost_req_server(req);
    roost_str_t path = roost_req_query(req, "path");
    roost_str_t conc = roost_req_query(req, "concurrency");
    long concurrency = AGGREGATE_DEFAULT_CONCURRENCY;
    if (conc.ptr) {
        char *end;
        concurrency = strtol(conc.ptr, &end, 10);
        if (*end || concurrency < 1 || concurrency > 1000) {
            json_t *errs = json_array();
            json_array_append_new(errs, roost_error_item("query", "concurrency",
                                                         "Input should be between 1 and 1000",
                                                         "value_error"));
            roost_respond_422(req, errs);
            return;
        }
    }
    if (path.ptr && path.ptr[0] != '/') {
        roost_respond_error(req, 400, "path must start with /");
        return;
    }
    size_t n = 0;
    while (roost_fetch_upstream(srv, (int)n))
        n++;
    roost_fetch_opts_t calls[32];
    for (size_t i = 0; i < n && i < 32; i++)
        calls[i] = (roost_fetch_opts_t){.upstream = roost_fetch_upstream(srv, (int)i),
                                        .url = path.ptr ? path.ptr : "/"};
    if (roost_fetch_all(req, calls, n, (unsigned)concurrency, aggregate_done, NULL) < 0)
        roost_respond_error(req, 500, "Cannot start the upstream calls");
}

int app_routes_fetch(roost_server_t *srv)
{
    int rc = roost_fetch_init(srv);
    if (rc < 0)
        return rc;
    rc |= roost_route(srv, "GET", "/proxy/{upstream}/{path:path}", proxy, NULL, ROOST_LOOP);
    rc |= roost_route(srv, "GET", "/aggregate", aggregate, NULL, ROOST_LOOP);
    return rc ? -EINVAL : 0;
}
