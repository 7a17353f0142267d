/* The access log: one line per request on stderr (method, target, status, milliseconds), once
 * its last byte went out or its client left. Not a metric and not the slow-request log. Built
 * only on the public API. */
#include "roost/roost.h"

static void access_log_done(roost_req_t *req, void *ctx, void *ud)
{
    roost_str_t m = roost_req_method(req), t = roost_req_target(req);
    roost_log("info", "%.*s %.*s %d %.3fms", (int)m.len, m.ptr, (int)(t.len > 200 ? 200 : t.len),
              t.ptr ? t.ptr : "", roost_res_status(req), (double)roost_req_elapsed_ns(req) / 1e6);
}

const roost_middleware_t roost_mw_access_log = {
    .name = "access-log",
    .on_done = access_log_done,
};
