/* libFuzzer target for the router: a fixed table of templates, any path, every method. A match
 * must return parameters that lie inside the path; a miss must leave a well-formed Allow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "fuzz.h"

static void h(roost_req_t *r, void *u)
{
}

static router_t *table(void)
{
    static router_t *r;
    if (r)
        return r;
    r = router_new();
    static const char *const t[][2] = {
        {"GET", "/"},
        {"GET", "/users"},
        {"POST", "/users"},
        {"GET", "/users/me"},
        {"GET", "/users/{id:int}"},
        {"PUT", "/users/{id:int}"},
        {"GET", "/ws/{room}/{user}"},
        {"GET", "/rooms/{room}/count"},
        {"GET", "/a/b/c/d"},
        {"DELETE", "/tasks/{id:int}"},
        {"POST", "/tasks/{id:int}/cancel"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        REQUIRE(router_add(r, t[i][0], t[i][1], h, NULL, 0) == 0);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"};
    router_t *r = table();
    char *path = malloc(size + 1);
    memcpy(path, data, size);
    path[size] = '\0';
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        http_param_t params[HTTP_MAX_PARAMS];
        int np = -1;
        char allow[128];
        const route_t *rt =
            router_match(r, methods[m], str_make(path, size), params, &np, allow, sizeof allow);
        if (rt) {
            REQUIRE(np == rt->nparams);
            for (int i = 0; i < np; i++) {
                REQUIRE(params[i].value.ptr >= path);
                REQUIRE(params[i].value.ptr + params[i].value.len <= path + size);
                REQUIRE(params[i].value.len > 0);
            }
        } else {
            REQUIRE(strlen(allow) < sizeof allow);
        }
    }
    free(path);
    return 0;
}
