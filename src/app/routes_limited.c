/* The seed's rate-limited endpoint: GET /api/limited, 10 requests a minute per X-Client-ID (the
 * client's address when the header is absent), with the limit as a middleware on the route's own
 * list, built from the same spec language as --rate-limit. */
#include <errno.h>

#include "app/app.h"

static void limited(roost_req_t *req, void *ud)
{
    static const char body[] = "{\"message\":\"ok\"}";
    roost_respond(req, 200, "application/json", body, sizeof body - 1);
}

/* Filled at start-up (the middleware belongs to the server), read by the route table. */
static const roost_middleware_t *limited_mw[2];
static const char *const tags_limits[] = {"limits", NULL};

static const roost_route_opts_t routes[] = {
    {"GET", "/api/limited", limited, .summary = "10 requests a minute per X-Client-ID",
     .tags = tags_limits, .middleware = limited_mw},
};

int app_routes_limited(roost_server_t *srv)
{
    limited_mw[0] = roost_rate_limit(srv, "rate=10/m burst=10 key=header:X-Client-ID name=limited");
    if (!limited_mw[0])
        return -EINVAL;
    return app_register(srv, routes, APP_COUNT_OF(routes), NULL);
}
