/* The opening handshake as a handler sees it: roost_ws_upgrade() checks the request with the
 * codec's ws_handshake() and answers 101, or the error it names. The switch itself happens in
 * the HTTP session when the 101 is written, in pipeline order (http_session's upgrade hook). */
#include "ws/conn.h"

#include <errno.h>
#include <stdlib.h>

static ws_slice_t header_of(void *ud, const char *name)
{
    roost_str_t v = roost_req_header(ud, name);
    return (ws_slice_t){v.ptr, v.len};
}

int roost_ws_upgrade(roost_req_t *req, const roost_ws_handler_t *h, void *ud)
{
    roost_server_t *srv = req->srv;
    const roost_config_t *cfg = &srv->cfg;
    ws_request_t wr = {
        .method = llhttp_method_name((llhttp_method_t)req->method),
        .http_major = req->http_major,
        .http_minor = req->http_minor,
        .header = header_of,
        .ud = req,
    };
    ws_handshake_t hs;
    ws_handshake(&wr, cfg->ws.allowed_origins, &hs);
    if (hs.status != 101) {
        if (hs.header_name)
            roost_res_header(req, hs.header_name, hs.header_value);
        roost_respond_error(req, hs.status, hs.reason);
        return -EINVAL;
    }
    if (req->on_worker) {
        roost_respond_error(req, 500, "WebSocket upgrades need a loop handler");
        return -EINVAL;
    }
    _Atomic long *open = ws_open_count(srv);
    if (!open) {
        roost_respond_error(req, 503, "Out of memory");
        return -ENOMEM;
    }
    if (atomic_fetch_add(open, 1) >= cfg->ws.max_connections) {
        atomic_fetch_sub(open, 1);
        http_count_limit(srv, "connections");
        roost_res_header(req, "Retry-After", "1");
        roost_respond_error(req, 503, "Too many connections");
        return -EBUSY;
    }
    roost_ws_t *ws = calloc(1, sizeof *ws);
    if (!ws) {
        atomic_fetch_sub(open, 1);
        roost_respond_error(req, 503, "Out of memory");
        return -ENOMEM;
    }
    ws->srv = srv;
    ws->h = h;
    ws->ud = ud;
    req->upgrade_attach = ws_attach;
    req->upgrade_drop = ws_drop;
    req->upgrade_arg = ws;
    roost_res_header(req, "Upgrade", "websocket");
    roost_res_header(req, "Connection", "Upgrade");
    roost_res_header(req, "Sec-WebSocket-Accept", hs.accept);
    roost_respond(req, 101, NULL, NULL, 0);
    return 0;
}
