/* The router: static and parameter segments, typed parameters, methods, 405's Allow list. */
#include "http/http.h"
#include "unit.h"

static void h1(roost_req_t *r, void *u) {}

static router_t *sample(void)
{
    router_t *r = router_new();
    router_add(r, "GET", "/users", h1, NULL, 0);
    router_add(r, "POST", "/users", h1, NULL, 0);
    router_add(r, "GET", "/users/me", h1, (void *)1, 0);
    router_add(r, "GET", "/users/{id:int}", h1, (void *)2, 0);
    router_add(r, "DELETE", "/users/{id:int}", h1, (void *)3, 0);
    router_add(r, "GET", "/rooms/{room}/users/{user}", h1, (void *)4, 0);
    router_add(r, "GET", "/", h1, (void *)5, 0);
    return r;
}

static const route_t *match(router_t *r, const char *m, const char *path, http_param_t *p,
                            int *np, char *allow)
{
    return router_match(r, m, str_make(path, strlen(path)), p, np, allow, 128);
}

TEST(router_matches_static_and_root)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/users", p, &np, allow);
    CHECK(rt != NULL);
    CHECK_EQ_INT(np, 0);
    rt = match(r, "GET", "/", p, &np, allow);
    CHECK(rt && rt->ud == (void *)5);
    router_free(r);
}

TEST(router_static_segment_wins_over_a_parameter)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/users/me", p, &np, allow);
    CHECK(rt && rt->ud == (void *)1);
    rt = match(r, "GET", "/users/42", p, &np, allow);
    CHECK(rt && rt->ud == (void *)2);
    CHECK_EQ_INT(np, 1);
    CHECK_EQ_STR(p[0].name, "id");
    CHECK_EQ_INT(p[0].value.len, 2);
    CHECK(!memcmp(p[0].value.ptr, "42", 2));
    CHECK_EQ_INT(rt->param_types[0], PARAM_INT);
    router_free(r);
}

TEST(router_captures_several_parameters)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/rooms/lobby/users/alice", p, &np, allow);
    CHECK(rt && rt->ud == (void *)4);
    CHECK_EQ_INT(np, 2);
    CHECK_EQ_STR(p[0].name, "room");
    CHECK(p[0].value.len == 5 && !memcmp(p[0].value.ptr, "lobby", 5));
    CHECK_EQ_STR(p[1].name, "user");
    CHECK(p[1].value.len == 5 && !memcmp(p[1].value.ptr, "alice", 5));
    CHECK_EQ_INT(rt->param_types[0], PARAM_STR);
    router_free(r);
}

TEST(router_unknown_path_is_404_with_empty_allow)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    CHECK(match(r, "GET", "/nope", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "");
    CHECK(match(r, "GET", "/users/1/extra", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "");
    CHECK(match(r, "GET", "/rooms/lobby/users", p, &np, allow) == NULL);
    router_free(r);
}

TEST(router_wrong_method_lists_allow_with_head)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    CHECK(match(r, "PUT", "/users", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "GET, HEAD, POST");
    CHECK(match(r, "POST", "/users/7", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "GET, HEAD, DELETE");
    router_free(r);
}

TEST(router_head_falls_back_to_get)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "HEAD", "/users/me", p, &np, allow);
    CHECK(rt && rt->ud == (void *)1);
    router_free(r);
}

TEST(router_refuses_duplicates_and_bad_templates)
{
    router_t *r = sample();
    CHECK(router_add(r, "GET", "/users", h1, NULL, 0) < 0);
    CHECK(router_add(r, "GET", "no-slash", h1, NULL, 0) < 0);
    CHECK(router_add(r, "GET", "/a/{unclosed", h1, NULL, 0) < 0);
    router_free(r);
}

TEST(router_many_routes)
{
    router_t *r = router_new();
    char path[64];
    for (int i = 0; i < 500; i++) {
        snprintf(path, sizeof path, "/r%d/{x}", i);
        CHECK_EQ_INT(router_add(r, "GET", path, h1, (void *)(intptr_t)(i + 1), 0), 0);
    }
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    for (int i = 0; i < 500; i += 37) {
        snprintf(path, sizeof path, "/r%d/v", i);
        const route_t *rt = match(r, "GET", path, p, &np, allow);
        CHECK(rt && rt->ud == (void *)(intptr_t)(i + 1));
    }
    router_free(r);
}
