/* The router: static and parameter segments, typed parameters, methods, 405's Allow list. */
#include "http/http.h"
#include "unit.h"

static void h1(roost_req_t *r, void *u)
{
}

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

static const route_t *match(router_t *r, const char *m, const char *path, http_param_t *p, int *np,
                            char *allow)
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

TEST(router_typed_parameter_keeps_its_type_and_raw_value)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "DELETE", "/users/12345", p, &np, allow);
    CHECK(rt && rt->ud == (void *)3);
    if (rt) {
        CHECK_EQ_STR(rt->name, "DELETE /users/{id:int}");
        CHECK_EQ_INT(rt->nparams, 1);
        CHECK_EQ_STR(rt->param_names[0], "id");
        CHECK_EQ_INT(rt->param_types[0], PARAM_INT);
    }
    CHECK_EQ_INT(np, 1);
    CHECK_EQ_STR(p[0].name, "id");
    CHECK(p[0].value.len == 5 && !memcmp(p[0].value.ptr, "12345", 5));
    /* The router does not check the type: http_dispatch answers 422 for a non-integer. */
    rt = match(r, "GET", "/users/abc", p, &np, allow);
    CHECK(rt && rt->ud == (void *)2 && rt->param_types[0] == PARAM_INT);
    CHECK(np == 1 && p[0].value.len == 3 && !memcmp(p[0].value.ptr, "abc", 3));
    router_free(r);
}

TEST(router_explicit_str_type_and_unknown_type)
{
    router_t *r = router_new();
    CHECK_EQ_INT(router_add(r, "GET", "/s/{name:str}", h1, NULL, 0), 0);
    CHECK(router_add(r, "GET", "/f/{x:float}", h1, NULL, 0) < 0);
    CHECK(router_add(r, "GET", "/e/{}", h1, NULL, 0) < 0);
    CHECK(router_add(r, "GET", "/e/{:int}", h1, NULL, 0) < 0);
    /* a refused template with parameters before the bad one must not leak their names */
    CHECK(router_add(r, "GET", "/g/{a}/{b:float}", h1, NULL, 0) < 0);
    CHECK(router_add(r, "GET", "/g/{a}/x{b}", h1, NULL, 0) < 0);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/s/bob", p, &np, allow);
    CHECK(rt && rt->param_types[0] == PARAM_STR);
    CHECK(np == 1 && p[0].value.len == 3 && !memcmp(p[0].value.ptr, "bob", 3));
    CHECK(match(r, "GET", "/f/1.5", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "");
    router_free(r);
}

TEST(router_too_many_parameters_are_refused)
{
    router_t *r = router_new();
    char t[256] = "";
    for (int i = 0; i < HTTP_MAX_PARAMS; i++)
        snprintf(t + strlen(t), sizeof t - strlen(t), "/{p%d}", i);
    CHECK_EQ_INT(router_add(r, "GET", t, h1, NULL, 0), 0);
    snprintf(t + strlen(t), sizeof t - strlen(t), "/{one_more}");
    CHECK(router_add(r, "GET", t, h1, NULL, 0) < 0);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/a/b/c/d/e/f/g/h", p, &np, allow);
    CHECK(rt != NULL);
    CHECK_EQ_INT(np, HTTP_MAX_PARAMS);
    CHECK_EQ_STR(p[7].name, "p7");
    CHECK(p[7].value.len == 1 && p[7].value.ptr[0] == 'h');
    CHECK(match(r, "GET", "/a/b/c/d/e/f/g/h/i", p, &np, allow) == NULL);
    router_free(r);
}

TEST(router_several_methods_on_one_path)
{
    router_t *r = router_new();
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(router_add(r, methods[i], "/things/{id}", h1, (void *)(intptr_t)(i + 1), 0),
                     0);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    for (int i = 0; i < 5; i++) {
        const route_t *rt = match(r, methods[i], "/things/9", p, &np, allow);
        CHECK(rt && rt->ud == (void *)(intptr_t)(i + 1));
        CHECK_EQ_INT(np, 1);
    }
    CHECK(match(r, "OPTIONS", "/things/9", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "GET, HEAD, POST, PUT, PATCH, DELETE");
    CHECK(match(r, "get", "/things/9", p, &np, allow) == NULL); /* methods are case-sensitive */
    CHECK_EQ_STR(allow, "GET, HEAD, POST, PUT, PATCH, DELETE");
    router_free(r);
}

TEST(router_405_without_get_lists_no_head)
{
    router_t *r = router_new();
    router_add(r, "POST", "/submit", h1, NULL, 0);
    router_add(r, "PUT", "/submit", h1, NULL, 0);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    CHECK(match(r, "GET", "/submit", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "POST, PUT");
    CHECK(match(r, "HEAD", "/submit", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "POST, PUT");
    router_free(r);
}

TEST(router_explicit_head_route_wins_over_get)
{
    router_t *r = router_new();
    router_add(r, "GET", "/x", h1, (void *)1, 0);
    router_add(r, "HEAD", "/x", h1, (void *)2, 0);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "HEAD", "/x", p, &np, allow);
    CHECK(rt && rt->ud == (void *)2);
    CHECK(match(r, "POST", "/x", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "GET, HEAD"); /* not twice */
    router_free(r);
}

TEST(router_allow_that_does_not_fit_stays_terminated)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[8];
    CHECK(router_match(r, "PUT", str_make("/users", 6), p, &np, allow, sizeof allow) == NULL);
    CHECK(strlen(allow) < sizeof allow);
    router_free(r);
}

TEST(router_trailing_slash_is_a_different_path)
{
    router_t *r = router_new();
    router_add(r, "GET", "/plain", h1, (void *)1, 0);
    router_add(r, "GET", "/dir/", h1, (void *)2, 0);
    router_add(r, "GET", "/p/{x}", h1, (void *)3, 0);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/plain", p, &np, allow);
    CHECK(rt && rt->ud == (void *)1);
    CHECK(match(r, "GET", "/plain/", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "");
    rt = match(r, "GET", "/dir/", p, &np, allow);
    CHECK(rt && rt->ud == (void *)2);
    CHECK(match(r, "GET", "/dir", p, &np, allow) == NULL);
    CHECK_EQ_STR(allow, "");
    /* an empty segment never fills a parameter */
    CHECK(match(r, "GET", "/p/", p, &np, allow) == NULL);
    rt = match(r, "GET", "/p/v", p, &np, allow);
    CHECK(rt && rt->ud == (void *)3);
    CHECK(match(r, "GET", "/p/v/", p, &np, allow) == NULL);
    router_free(r);
}

TEST(router_backtracks_from_a_literal_dead_end_to_a_parameter)
{
    router_t *r = router_new();
    router_add(r, "GET", "/a/b/d", h1, (void *)1, 0);
    router_add(r, "GET", "/a/{x}/c", h1, (void *)2, 0);
    router_add(r, "GET", "/a/{x}/{y}", h1, (void *)3, 0);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/a/b/d", p, &np, allow);
    CHECK(rt && rt->ud == (void *)1);
    CHECK_EQ_INT(np, 0);
    rt = match(r, "GET", "/a/b/c", p, &np, allow);
    CHECK(rt && rt->ud == (void *)2);
    CHECK(np == 1 && p[0].value.len == 1 && p[0].value.ptr[0] == 'b');
    rt = match(r, "GET", "/a/b/z", p, &np, allow);
    CHECK(rt && rt->ud == (void *)3);
    CHECK_EQ_INT(np, 2);
    CHECK_EQ_STR(p[1].name, "y");
    CHECK(p[1].value.len == 1 && p[1].value.ptr[0] == 'z');
    router_free(r);
}

TEST(router_rejects_paths_that_are_not_absolute)
{
    router_t *r = sample();
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    CHECK(match(r, "GET", "", p, &np, allow) == NULL);
    CHECK(match(r, "GET", "users", p, &np, allow) == NULL);
    CHECK(router_match(r, "GET", str_make(NULL, 0), p, &np, allow, sizeof allow) == NULL);
    CHECK_EQ_STR(allow, "");
    router_free(r);
}

TEST(router_many_static_routes_and_their_misses)
{
    router_t *r = router_new();
    char path[64];
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof path, "/api/v%d/items/%d", i % 3, i);
        CHECK_EQ_INT(router_add(r, i % 2 ? "POST" : "GET", path, h1, (void *)(intptr_t)(i + 1), 0),
                     0);
    }
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof path, "/api/v%d/items/%d", i % 3, i);
        const route_t *rt = match(r, i % 2 ? "POST" : "GET", path, p, &np, allow);
        CHECK(rt && rt->ud == (void *)(intptr_t)(i + 1));
        CHECK(match(r, i % 2 ? "GET" : "POST", path, p, &np, allow) == NULL);
        CHECK_EQ_STR(allow, i % 2 ? "POST" : "GET, HEAD");
        snprintf(path, sizeof path, "/api/v%d/items/%d", (i + 1) % 3, i); /* wrong version */
        CHECK(match(r, "GET", path, p, &np, allow) == NULL);
        CHECK_EQ_STR(allow, "");
    }
    router_free(r);
}

static void count_route(const route_t *route, void *ud)
{
    int *seen = ud;
    seen[0]++;
    if (route->opts.summary && !strcmp(route->opts.summary, "List users"))
        seen[1]++;
}

TEST(router_keeps_every_route_option_and_walks_the_whole_table)
{
    static const roost_field_t f[] = {{.name = "limit", .type = ROOST_T_INT}};
    static const roost_schema_t q = {.fields = f, .nfields = 1};
    static const roost_middleware_t mw = {.name = "only-here"};
    static const roost_middleware_t *const chain[] = {&mw, NULL};
    static const char *const tags[] = {"users", NULL};
    router_t *r = sample();
    char tmpl[] = "/v2/users";
    roost_route_opts_t o = {.method = "GET",
                            .path = tmpl,
                            .handler = h1,
                            .summary = "List users",
                            .tags = tags,
                            .query = &q,
                            .middleware = chain};
    CHECK_EQ_INT(router_add_ex(r, &o), 0);
    tmpl[1] = 'x'; /* the router keeps its own copy of the template */
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/v2/users", p, &np, allow);
    CHECK(rt != NULL);
    if (rt) {
        CHECK_EQ_STR(rt->opts.path, "/v2/users");
        CHECK_EQ_STR(rt->opts.method, "GET");
        CHECK(rt->opts.query == &q && rt->opts.middleware[0] == &mw);
        CHECK_EQ_STR(rt->opts.tags[0], "users");
    }
    int seen[2] = {0, 0};
    router_each(r, count_route, seen);
    CHECK_EQ_INT(seen[0], 8); /* sample's 7 and this one */
    CHECK_EQ_INT(seen[1], 1);
    router_free(r);
}

TEST(router_path_parameter_takes_the_rest_of_the_path)
{
    router_t *r = router_new();
    CHECK_EQ_INT(router_add(r, "GET", "/proxy/{up}/{rest:path}", h1, (void *)7, 0), 0);
    CHECK_EQ_INT(router_add(r, "GET", "/proxy/{up}/status", h1, (void *)8, 0), 0);
    /* only as the last segment */
    CHECK_EQ_INT(router_add(r, "GET", "/x/{rest:path}/y", h1, NULL, 0), -EINVAL);
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    const route_t *rt = match(r, "GET", "/proxy/api/a/b/c", p, &np, allow);
    CHECK(rt && rt->ud == (void *)7);
    CHECK_EQ_INT(np, 2);
    CHECK(p[1].value.len == 5 && !memcmp(p[1].value.ptr, "a/b/c", 5));
    rt = match(r, "GET", "/proxy/api/", p, &np, allow); /* an empty rest, like Starlette's */
    CHECK(rt && rt->ud == (void *)7 && p[1].value.len == 0);
    rt = match(r, "GET", "/proxy/api/status", p, &np, allow); /* a literal still wins */
    CHECK(rt && rt->ud == (void *)8);
    CHECK(match(r, "GET", "/proxy/api", p, &np, allow) == NULL);
    int seen[2] = {0, 0};
    router_each(r, count_route, seen); /* the walk reaches the {rest:path} route too */
    CHECK_EQ_INT(seen[0], 2);
    router_free(r);
}

TEST(router_indexed_siblings_alike_in_length_and_ends_and_a_parameter_fallback)
{
    /* Over a few siblings a node indexes them by length and first and last byte: siblings
     * alike in all three must still be told apart, and a miss must reach the parameter. */
    router_t *r = router_new();
    char path[64];
    for (int i = 0; i < 26; i++) {
        snprintf(path, sizeof path, "/a%cb", 'a' + i);
        CHECK_EQ_INT(router_add(r, "GET", path, h1, (void *)(intptr_t)(i + 1), 0), 0);
    }
    CHECK_EQ_INT(router_add(r, "GET", "/{name}", h1, (void *)100, 0), 0);
    CHECK_EQ_INT(router_add(r, "GET", "/", h1, (void *)101, 0), 0);
    CHECK(router_add(r, "GET", "/amb", h1, NULL, 0) < 0); /* a duplicate, found by the index */
    http_param_t p[HTTP_MAX_PARAMS];
    int np;
    char allow[128];
    for (int i = 0; i < 26; i++) {
        snprintf(path, sizeof path, "/a%cb", 'a' + i);
        const route_t *rt = match(r, "GET", path, p, &np, allow);
        CHECK(rt && rt->ud == (void *)(intptr_t)(i + 1));
        CHECK_EQ_INT(np, 0);
    }
    const route_t *rt = match(r, "GET", "/a0b", p, &np, allow);
    CHECK(rt && rt->ud == (void *)100);
    CHECK_EQ_INT(np, 1);
    CHECK(p[0].value.len == 3 && !memcmp(p[0].value.ptr, "a0b", 3));
    rt = match(r, "GET", "/", p, &np, allow);
    CHECK(rt && rt->ud == (void *)101);
    router_free(r);
}
