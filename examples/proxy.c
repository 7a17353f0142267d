/* proxy.c: one request, every upstream at once. GET /merged/{path} sends GET /{path}?query to
 * each upstream named with --upstream 'NAME=http://host:port' (two, say) in parallel with
 * roost_fetch_all, on the loop, and answers one object with each answer under its upstream's
 * name: the JSON it sent, or {"error", "status"} for a call that failed. Run:
 * ./proxy --port 8000 --upstream 'users=http://127.0.0.1:9001' --upstream 'orders=...' */
#include <roost/roost.h>
#include <stdio.h>
#include <string.h>

#define MAX_CALLS 8

static json_t *answer_of(const roost_fetch_result_t *r)
{
    if (r->error != ROOST_FETCH_OK) /* connect, timeout, circuit open, ... */
        return json_pack("{s:s,s:i}", "error", roost_fetch_error_name(r->error), "status",
                         roost_fetch_error_status(r->error));
    json_t *v = json_loadb(r->body.ptr, r->body.len, 0, NULL);
    return v ? v : json_pack("{s:i,s:s%}", "status", r->status, "text", r->body.ptr, r->body.len);
}

/* On the request's loop, once every call has ended: results in the order of the calls. */
static void merge(roost_req_t *req, const roost_fetch_result_t *results, size_t n, void *arg)
{
    json_t *merged = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(merged, roost_fetch_upstream(roost_req_server(req), (int)i),
                            answer_of(&results[i]));
    roost_respond_json(
        req, 200,
        json_pack("{s:o,s:f}", "upstreams", merged, "seconds", roost_req_elapsed_ns(req) / 1e9));
}

static void merged(roost_req_t *req, void *ud) /* ROOST_LOOP: the calls never block it */
{
    roost_server_t *srv = roost_req_server(req);
    roost_str_t target = roost_req_target(req);
    const char *query = memchr(target.ptr, '?', target.len);
    int qlen = query ? (int)(target.ptr + target.len - query) : 0;
    /* The path goes after each upstream's URL: a request can never pick the host. */
    char *url = roost_req_new(req, strlen(roost_req_param(req, "path").ptr) + qlen + 2);
    if (!url)
        return;
    sprintf(url, "/%s%.*s", roost_req_param(req, "path").ptr, qlen, query ? query : "");
    roost_fetch_opts_t calls[MAX_CALLS];
    size_t n = 0;
    for (; n < MAX_CALLS && roost_fetch_upstream(srv, (int)n); n++)
        calls[n] = (roost_fetch_opts_t){
            .upstream = roost_fetch_upstream(srv, (int)n), .url = url, .timeout_ms = 5000};
    if (n == 0)
        roost_respond_error(req, 503, "No upstream: start with --upstream NAME=URL");
    else if (roost_fetch_all(req, calls, n, 0, merge, NULL) < 0)
        roost_respond_error(req, 500, "The calls could not start");
}

static const roost_route_opts_t route = {"GET", "/merged/{path:path}", merged,
                                         .summary = "Every upstream's answer, merged"};

int main(int argc, char **argv)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    int rc = roost_config_parse(&cfg, argc, argv); /* 1: --help or --version printed */
    roost_server_t *srv = rc == 0 ? roost_server_new(&cfg) : NULL;
    /* roost_fetch_init reads --upstream and readies every loop for calls. */
    if (srv && (roost_fetch_init(srv) < 0 || roost_route_ex(srv, &route) < 0))
        return 1;
    return srv ? roost_run(srv) < 0 : rc < 0 ? 2 : 0;
}
