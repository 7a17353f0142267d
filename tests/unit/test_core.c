/* The core server object: services start in registration order, drain in that order and stop
 * in reverse; per-layer slots give each layer its own server and loop context. */
#include "unit.h"

#include "core/core.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

static char trace[64];

static void note(char what, void *ud)
{
    size_t n = strlen(trace);
    if (n + 2 < sizeof trace) {
        trace[n] = what;
        trace[n + 1] = *(const char *)ud;
        trace[n + 2] = '\0';
    }
}
static void svc_start(void *ud)
{
    note('s', ud);
}
static void svc_drain(void *ud)
{
    note('d', ud);
}
static void svc_stop(void *ud)
{
    note('x', ud);
}
static void svc_metrics(void *ud, sbuf_t *out)
{
    sbuf_printf(out, "svc_%s 1\n", (const char *)ud);
}

static roost_server_t *new_server(void)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    return core_server_new(&cfg);
}

TEST(core_services_start_and_drain_in_order_and_stop_in_reverse)
{
    roost_server_t *srv = new_server();
    CHECK(srv != NULL);
    static const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        core_service_t s = {names[i], svc_start, svc_drain, svc_stop, NULL, (void *)names[i]};
        CHECK_EQ_INT(core_service_add(srv, &s), 0);
    }
    core_service_t quiet = {"no-callbacks", NULL, NULL, NULL, NULL, NULL};
    CHECK_EQ_INT(core_service_add(srv, &quiet), 0);
    trace[0] = '\0';
    core_services_start(srv);
    CHECK_EQ_STR(trace, "sasbsc");
    trace[0] = '\0';
    core_services_drain(srv);
    CHECK_EQ_STR(trace, "dadbdc");
    trace[0] = '\0';
    core_services_stop(srv);
    CHECK_EQ_STR(trace, "xcxbxa");
    trace[0] = '\0';
    core_services_stop(srv); /* stopped services are forgotten: never stopped twice */
    CHECK_EQ_STR(trace, "");
    roost_server_free(srv);
}

TEST(core_services_metrics_appear_in_the_metrics_text)
{
    roost_server_t *srv = new_server();
    core_service_t s = {"m", NULL, NULL, NULL, svc_metrics, (void *)"queue"};
    CHECK_EQ_INT(core_service_add(srv, &s), 0);
    char *text = roost_metrics_text(srv);
    CHECK(text && strstr(text, "svc_queue 1\n"));
    CHECK(text && strstr(text, "roost_loop_stalls_total"));
    free(text);
    roost_server_free(srv);
}

static int made, freed;
static void *ctx_new(roost_server_t *srv)
{
    made++;
    return malloc(8);
}
static void ctx_free(void *ctx)
{
    freed++;
    free(ctx);
}
static const core_slot_ops_t lazy_ops = {
    .name = "test-lazy", .server_new = ctx_new, .server_free = ctx_free};
static const core_slot_ops_t set_ops = {.name = "test-set", .server_free = ctx_free};

TEST(core_slots_registered_once_with_a_context_per_server)
{
    core_slot_t a = core_slot_new(&lazy_ops), b = core_slot_new(&set_ops);
    CHECK(a > 0 && b > 0 && a != b);
    CHECK_EQ_INT(core_slot_new(&lazy_ops), a); /* same ops, same slot */
    roost_server_t *s1 = new_server(), *s2 = new_server();
    made = freed = 0;
    void *c1 = core_server_ctx(s1, a);
    CHECK(c1 != NULL);
    CHECK(core_server_ctx(s1, a) == c1); /* made once */
    void *c2 = core_server_ctx(s2, a);
    CHECK(c2 != NULL && c2 != c1); /* one per server */
    CHECK_EQ_INT(made, 2);
    /* A slot without server_new has nothing until its layer sets it. */
    CHECK(core_server_ctx(s1, b) == NULL);
    void *mine = malloc(8);
    CHECK(core_server_ctx_set(s1, b, mine) == NULL);
    CHECK(core_server_ctx(s1, b) == mine);
    CHECK(core_server_ctx(s2, b) == NULL);
    CHECK(core_server_ctx(s1, 0) == NULL); /* 0: not registered */
    roost_server_free(s1);                 /* frees c1 and mine */
    CHECK_EQ_INT(freed, 2);
    roost_server_free(s2);
    CHECK_EQ_INT(freed, 3);
}

static void *loop_ctx_init(net_loop_t *loop, roost_server_t *srv)
{
    int *p = malloc(sizeof *p);
    *p = loop->index + 100;
    return p;
}
static int loop_frees;
static void loop_ctx_free(net_loop_t *loop, void *ctx)
{
    loop_frees++;
    free(ctx);
}
static const core_slot_ops_t loop_ops = {
    .name = "test-loop", .loop_init = loop_ctx_init, .loop_free = loop_ctx_free};

TEST(core_slots_give_each_loop_its_own_context)
{
    core_slot_t s = core_slot_new(&loop_ops);
    CHECK(s > 0);
    roost_server_t *srv = new_server();
    net_group_opts_t opts = {.host = "127.0.0.1", .threads = 2, .ud = srv};
    net_group_t *g = net_group_new(&opts);
    CHECK(g != NULL);
    net_loop_t *l0 = net_group_loop(g, 0), *l1 = net_group_loop(g, 1);
    CHECK(core_loop_server(l0) == srv);
    core_loops_init(l0);
    core_loops_init(l1);
    int *c0 = core_loop_ctx(l0, s), *c1 = core_loop_ctx(l1, s);
    CHECK(c0 && *c0 == 100);
    CHECK(c1 && *c1 == 101);
    loop_frees = 0;
    core_loops_end(l0);
    CHECK(core_loop_ctx(l0, s) == NULL);
    CHECK_EQ_INT(loop_frees, 1);
    core_loops_end(l1);
    CHECK_EQ_INT(loop_frees, 2);
    net_group_join_free(g);
    roost_server_free(srv);
}

/* roost_run itself: a service that asks the server to stop as soon as it starts sees the whole
 * life: start in order, drain in order on SIGTERM, stop in reverse once the loops ended. */
static void svc_start_then_term(void *ud)
{
    note('s', ud);
    raise(SIGTERM); /* roost_run's signal watcher takes it once its main loop runs */
}

static void no_accept(net_conn_t *c)
{
    net_conn_close(c);
}

static const net_proto_t no_proto = {.name = "none"};

TEST(core_run_starts_drains_and_stops_services_in_order)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    cfg.net.port = 0; /* any free port */
    cfg.net.threads = 1;
    cfg.http.workers = 1;
    roost_server_t *srv = core_server_new(&cfg);
    CHECK_EQ_INT(roost_run(srv), -EINVAL); /* no protocol attached: nothing to serve */
    core_server_protocol(srv, &no_proto, no_accept);
    core_service_t a = {"a", svc_start, svc_drain, svc_stop, NULL, (void *)"a"};
    core_service_t b = {"b", svc_start_then_term, svc_drain, svc_stop, NULL, (void *)"b"};
    CHECK_EQ_INT(core_service_add(srv, &a), 0);
    CHECK_EQ_INT(core_service_add(srv, &b), 0);
    trace[0] = '\0';
    CHECK_EQ_INT(roost_run(srv), 0);
    CHECK_EQ_STR(trace, "sasbdadbxbxa");
    CHECK(srv->pool == NULL && srv->group == NULL);
    roost_server_free(srv);
}
