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

void app_respond_fetch_failure(roost_req_t *req, const roost_fetch_result_t *res)
{
    char detail[256];
    snprintf(detail, sizeof detail, "Upstream call failed: %s (%s)",
             roost_fetch_error_name(res->error), res->error_text);
    roost_respond_error(req, roost_fetch_error_status(res->error), detail);
}

static void proxy_done(roost_req_t *req, const roost_fetch_result_t *res, void *arg)
{
    if (res->error != ROOST_FETCH_OK) {
        app_respond_fetch_failure(req, res);
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
    /* none: roost_fetch passes the request's own trace on */
    roost_fetch_opts_t o = {
        .upstream = name.ptr, .url = path, .traceparent = tpbuf[0] ? tpbuf : NULL};
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

void app_check_absolute_path(const json_t *v, const json_t *loc, json_t *errors)
{
    const char *p = json_string_value(v);
    if (p && p[0] != '/')
        json_array_append_new(errors,
                              roost_error_item("value_error", json_copy((json_t *)loc),
                                               json_incref((json_t *)v),
                                               json_pack("{s:s}", "error", "must start with /"),
                                               "Value error, must start with /"));
}

static const roost_field_t aggregate_fields[] = {
    APP_PATH_FIELD("/", "asked of every upstream, query included"),
    APP_INT_FIELD("concurrency", AGGREGATE_DEFAULT_CONCURRENCY, 1, 1000,
                  .description = "calls at once, like asyncio.Semaphore"),
};
static const roost_schema_t aggregate_schema = {.fields = aggregate_fields,
                                                .nfields = APP_COUNT_OF(aggregate_fields)};

static void aggregate(roost_req_t *req, void *ud)
{
    roost_server_t *srv = roost_req_server(req);
    const char *path = roost_req_query_str(req, "path");
    long long concurrency = roost_req_query_int(req, "concurrency");
    size_t n = 0;
    while (roost_fetch_upstream(srv, (int)n))
        n++;
    roost_fetch_opts_t calls[32];
    for (size_t i = 0; i < n && i < 32; i++)
        calls[i] = (roost_fetch_opts_t){.upstream = roost_fetch_upstream(srv, (int)i), .url = path};
    if (roost_fetch_all(req, calls, n, (unsigned)concurrency, aggregate_done, NULL) < 0)
        roost_respond_error(req, 500, "Cannot start the upstream calls");
}

/* The articles' `def` handler that calls an API (requests/httpx in a thread pool): here a blocking
 * handler whose call still runs on the loop while its worker waits for the answer. */
static void external_done(roost_req_t *req, const roost_fetch_result_t *res, void *arg)
{
    proxy_done(req, res, arg);
}

static void external_api(roost_req_t *req, void *ud)
{
    const char *up = roost_fetch_upstream(roost_req_server(req), 0);
    if (!up) {
        roost_respond_error(req, 503, "No upstream configured (--upstream)");
        return;
    }
    roost_fetch_opts_t o = {.upstream = up, .url = roost_req_query_str(req, "path")};
    if (roost_fetch(req, &o, external_done, NULL) < 0)
        roost_respond_error(req, 500, "Cannot start the upstream call");
}

static const roost_field_t external_fields[] = {
    {.name = "path",
     .type = ROOST_T_STR,
     .has_default = 1,
     .def.s = "/",
     .check = app_check_absolute_path},
};
static const roost_schema_t external_schema = {.fields = external_fields,
                                               .nfields = APP_COUNT_OF(external_fields)};

static const char *const tags_fetch[] = {"upstream calls", NULL};

static const roost_route_opts_t routes[] = {
    {"GET", "/proxy/{upstream}/{path:path}", proxy,
     .summary = "Forward a GET to a configured upstream", .tags = tags_fetch},
    {"GET", "/aggregate", aggregate, .summary = "Call every configured upstream at once",
     .tags = tags_fetch, .query = &aggregate_schema},
    {"GET", "/external-api", external_api, .flags = ROOST_BLOCKING,
     .summary = "Call the first upstream from a blocking handler", .tags = tags_fetch,
     .query = &external_schema},
};

int app_routes_fetch(roost_server_t *srv)
{
    int rc = roost_fetch_init(srv);
    return rc < 0 ? rc : app_register(srv, routes, APP_COUNT_OF(routes), NULL);
}
