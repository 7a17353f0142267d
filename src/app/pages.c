/* The pages under web/, compiled into the binary (the assembler's .incbin), so the server
 * needs no files at run time and a page cannot drift from the binary that serves it. */
#include <stddef.h>

#include "app/app.h"

APP_EMBED(page_index, "web/index.html");
APP_EMBED(page_dashboard, "web/dashboard.html");
/* uPlot for the dashboard's charts, from node_modules (npm, package.json) at build time: never
 * committed, and nothing loaded from elsewhere at run time. */
APP_EMBED(uplot_js, "node_modules/uplot/dist/uPlot.iife.min.js");
APP_EMBED(uplot_css, "node_modules/uplot/dist/uPlot.min.css");

static void serve(roost_req_t *req, const char *start, const char *end)
{
    roost_res_header(req, "Cache-Control", "no-cache");
    roost_respond(req, 200, "text/html; charset=utf-8", start, (size_t)(end - start));
}

static void index_page(roost_req_t *req, void *ud)
{
    serve(req, page_index, page_index_end);
}

static void dashboard_page(roost_req_t *req, void *ud)
{
    serve(req, page_dashboard, page_dashboard_end);
}

static void uplot_script(roost_req_t *req, void *ud)
{
    roost_res_header(req, "Cache-Control", "max-age=3600");
    roost_respond(req, 200, "text/javascript; charset=utf-8", uplot_js,
                  (size_t)(uplot_js_end - uplot_js));
}

static void uplot_style(roost_req_t *req, void *ud)
{
    roost_res_header(req, "Cache-Control", "max-age=3600");
    roost_respond(req, 200, "text/css; charset=utf-8", uplot_css,
                  (size_t)(uplot_css_end - uplot_css));
}

static const char *const tags_pages[] = {"pages", NULL};
static const roost_route_opts_t routes[] = {
    {"GET", "/", index_page, .summary = "The chat page", .tags = tags_pages},
    {"GET", "/dashboard", dashboard_page, .summary = "Jobs and rooms, live", .tags = tags_pages},
    {"GET", "/dashboard/uplot.min.js", uplot_script, .tags = tags_pages,
     .summary = "uPlot, the dashboard's charts"},
    {"GET", "/dashboard/uplot.min.css", uplot_style, .tags = tags_pages,
     .summary = "uPlot's style sheet"},
};

int app_routes_pages(roost_server_t *srv)
{
    return app_register(srv, routes, APP_COUNT_OF(routes), NULL);
}
