/* The API's documentation: GET /openapi.json (the library writes it from the route table),
 * GET /docs (Swagger UI, from npm's swagger-ui-dist, compiled in at build time like the
 * dashboard's uPlot: never committed, nothing loaded from elsewhere at run time) and, with
 * --debug-routes, GET /debug/routes (the route table as text, which the tests compare with the
 * document). Not the document itself (src/http/openapi.c). */
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

APP_EMBED(docs_page, "web/docs.html");
APP_EMBED(swagger_js, "node_modules/swagger-ui-dist/swagger-ui-bundle.js");
APP_EMBED(swagger_css, "node_modules/swagger-ui-dist/swagger-ui.css");

static void openapi(roost_req_t *req, void *ud)
{
    size_t len;
    const char *doc = roost_openapi_json(roost_req_server(req), &len);
    if (!doc) {
        roost_respond_error(req, 500, "Internal Server Error");
        return;
    }
    roost_respond(req, 200, "application/json", doc, len);
}

static void docs(roost_req_t *req, void *ud)
{
    roost_res_header(req, "Cache-Control", "no-cache");
    roost_respond(req, 200, "text/html; charset=utf-8", docs_page,
                  (size_t)(docs_page_end - docs_page));
}

/* The two files change only with the binary: a browser may keep them an hour. */
static void asset(roost_req_t *req, const char *type, const char *start, const char *end)
{
    roost_res_header(req, "Cache-Control", "max-age=3600");
    roost_respond(req, 200, type, start, (size_t)(end - start));
}

static void docs_script(roost_req_t *req, void *ud)
{
    asset(req, "text/javascript; charset=utf-8", swagger_js, swagger_js_end);
}

static void docs_style(roost_req_t *req, void *ud)
{
    asset(req, "text/css; charset=utf-8", swagger_css, swagger_css_end);
}

static void debug_routes(roost_req_t *req, void *ud)
{
    char *text = roost_routes_text(roost_req_server(req));
    if (!text) {
        roost_respond_error(req, 500, "Internal Server Error");
        return;
    }
    roost_respond(req, 200, "text/plain; charset=utf-8", text, strlen(text));
    free(text);
}

static const char *const tags_docs[] = {"docs", NULL};
static const roost_route_opts_t routes[] = {
    {"GET", "/openapi.json", openapi, .summary = "This API as an OpenAPI 3.1 document",
     .tags = tags_docs},
    {"GET", "/docs", docs, .summary = "Swagger UI on /openapi.json", .tags = tags_docs},
    {"GET", "/docs/swagger-ui-bundle.js", docs_script, .summary = "Swagger UI's script",
     .tags = tags_docs},
    {"GET", "/docs/swagger-ui.css", docs_style, .summary = "Swagger UI's style sheet",
     .tags = tags_docs},
};
static const roost_route_opts_t debug[] = {
    {"GET", "/debug/routes", debug_routes, .summary = "Every route, one a line (test only)",
     .tags = tags_docs},
};

int app_routes_docs(roost_server_t *srv, const app_config_t *cfg)
{
    int rc = app_register(srv, routes, APP_COUNT_OF(routes), NULL);
    if (rc == 0 && cfg->debug_routes)
        rc = app_register(srv, debug, APP_COUNT_OF(debug), NULL);
    return rc;
}
