/* CORS (the Fetch standard's CORS protocol) as a global middleware: a preflight (OPTIONS with
 * Origin and Access-Control-Request-Method) on a path that has routes is answered here, 204 or
 * 403, before the router would answer 405; answers to a listed origin get
 * Access-Control-Allow-Origin (and -Credentials, -Expose-Headers). An origin not in the list
 * gets no CORS field at all. Not the WebSocket origin check (--allowed-origins, ws/upgrade.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

typedef struct {
    char *origins; /* the list, copied; "*" alone: any */
    int any_origin, credentials;
    const char *methods, *headers, *expose;
    int any_method, any_header;
    char max_age[16];
    uint8_t vary; /* the answer depends on Origin: Vary: Origin on every answer */
} cors_t;

typedef struct {
    uint8_t allowed;   /* Origin is listed: the answer gets the CORS fields */
    uint8_t preflight; /* answered here */
} cors_req_t;

static void cors_free(void *ctx)
{
    cors_t *c = ctx;
    free(c->origins);
    free(c);
}

static CORE_SLOT_FN(cors_slot, .name = "cors", .server_free = cors_free)

/* Whether the comma-separated list holds [v, v+len), ignoring case and blanks around items. */
static int list_has(const char *list, const char *v, size_t len)
{
    roost_str_t item;
    for (const char *p = list, *end = list + strlen(list); str_list_next(&p, end, &item);)
        if (item.len == len && len && strncasecmp(item.ptr, v, len) == 0)
            return 1;
    return 0;
}

/* Every item of the requested header list is allowed. */
static int headers_allowed(const cors_t *c, roost_str_t req)
{
    if (c->any_header || !req.ptr)
        return 1;
    for (size_t i = 0; i < req.len;) {
        while (i < req.len && (req.ptr[i] == ' ' || req.ptr[i] == ','))
            i++;
        size_t j = i;
        while (j < req.len && req.ptr[j] != ',')
            j++;
        size_t end = j;
        while (end > i && req.ptr[end - 1] == ' ')
            end--;
        if (end > i && !list_has(c->headers, req.ptr + i, end - i))
            return 0;
        i = j;
    }
    return 1;
}

/* A path any route answers, for some method. */
static int path_routed(roost_req_t *req)
{
    if (!req->path.ptr)
        return 0;
    http_param_t params[HTTP_MAX_PARAMS];
    int n = 0;
    char allow[128];
    return router_match(http_server(req->srv)->router, "GET", req->path, params, &n, allow,
                        sizeof allow) ||
           allow[0];
}

/* Header values are slices: a copy that ends in NUL, from the request's arena. */
static const char *dup_value(roost_req_t *req, roost_str_t v)
{
    char *s = roost_req_alloc(req, v.len + 1);
    if (s) {
        memcpy(s, v.ptr, v.len);
        s[v.len] = '\0';
    }
    return s;
}

static void cors_request(roost_req_t *req, void *ctx, void *ud)
{
    cors_t *c = ud;
    cors_req_t *r = ctx;
    roost_str_t origin = roost_req_header(req, "Origin");
    if (!origin.ptr)
        return;
    r->allowed = c->any_origin || list_has(c->origins, origin.ptr, origin.len);
    roost_str_t method = roost_req_header(req, "Access-Control-Request-Method");
    if (req->method != HTTP_OPTIONS || !method.ptr || !path_routed(req))
        return;
    r->preflight = 1;
    if (!r->allowed) {
        roost_respond_error(req, 403, "Disallowed CORS origin");
        return;
    }
    roost_str_t asked = roost_req_header(req, "Access-Control-Request-Headers");
    const char *bad = !c->any_method && !list_has(c->methods, method.ptr, method.len)
                          ? "Disallowed CORS method"
                      : !headers_allowed(c, asked) ? "Disallowed CORS headers"
                                                   : NULL;
    if (bad) {
        r->allowed = 0; /* a refused preflight carries no CORS field */
        roost_respond_error(req, 403, bad);
        return;
    }
    /* '*' as a value is a wildcard only without credentials (Fetch §3.2.5): echo instead. */
    const char *m = c->any_method ? dup_value(req, method) : c->methods;
    if (m)
        roost_res_header(req, "Access-Control-Allow-Methods", m);
    const char *h = c->any_header ? (asked.ptr ? dup_value(req, asked) : NULL) : c->headers;
    if (h && *h)
        roost_res_header(req, "Access-Control-Allow-Headers", h);
    roost_res_header(req, "Access-Control-Max-Age", c->max_age);
    roost_respond(req, 204, NULL, NULL, 0);
}

static void cors_headers(roost_req_t *req, void *ctx, void *ud)
{
    cors_t *c = ud;
    cors_req_t *r = ctx;
    if (c->vary)
        roost_res_header(req, "Vary", "Origin");
    if (!r->allowed)
        return;
    if (c->any_origin && !c->credentials) {
        roost_res_header(req, "Access-Control-Allow-Origin", "*");
    } else {
        const char *o = dup_value(req, roost_req_header(req, "Origin"));
        if (o)
            roost_res_header(req, "Access-Control-Allow-Origin", o);
    }
    if (c->credentials)
        roost_res_header(req, "Access-Control-Allow-Credentials", "true");
    if (!r->preflight && *c->expose)
        roost_res_header(req, "Access-Control-Expose-Headers", c->expose);
}

static int is_star(const char *s)
{
    while (*s == ' ')
        s++;
    return s[0] == '*' && !s[1 + strspn(s + 1, " ")];
}

int roost_cors_init(roost_server_t *srv)
{
    const roost_mw_config_t *cfg = &srv->cfg.mw;
    if (!cfg->cors_origins || !cfg->cors_origins[strspn(cfg->cors_origins, " ,")])
        return 0;
    int any = list_has(cfg->cors_origins, "*", 1);
    if (any && cfg->cors_credentials) {
        roost_log("error", "--cors-origins '*' with --cors-credentials: browsers refuse "
                           "credentials with a wildcard origin; list the origins instead");
        return -EINVAL;
    }
    if (any && !is_star(cfg->cors_origins)) {
        roost_log("error", "--cors-origins: '*' stands alone, not in a list");
        return -EINVAL;
    }
    cors_t *c = calloc(1, sizeof *c);
    if (!c || !(c->origins = strdup(cfg->cors_origins))) {
        free(c);
        return -ENOMEM;
    }
    c->any_origin = any;
    c->credentials = cfg->cors_credentials;
    c->methods = cfg->cors_methods ? cfg->cors_methods : "";
    c->headers = cfg->cors_headers ? cfg->cors_headers : "";
    c->expose = cfg->cors_expose ? cfg->cors_expose : "";
    c->any_method = is_star(c->methods);
    c->any_header = is_star(c->headers);
    c->vary = !c->any_origin || c->credentials;
    snprintf(c->max_age, sizeof c->max_age, "%d", cfg->cors_max_age);
    core_server_ctx_set(srv, cors_slot(), c); /* freed with the server */
    roost_middleware_t mw = {
        .name = "cors",
        .ctx_size = sizeof(cors_req_t),
        .on_request = cors_request,
        .on_headers = cors_headers,
        .ud = c,
    };
    return roost_use(srv, &mw);
}
