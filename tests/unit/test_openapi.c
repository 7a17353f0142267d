/* The OpenAPI document (src/http/openapi.c) of a small route table: parameter types from the
 * template, field schemas as JSON Schema, the success status, the 422 and 401 answers, and the
 * methods OpenAPI cannot describe left out. */
#include "http/http.h"
#include "unit.h"

static void h(roost_req_t *r, void *u)
{
}

static const char *const colors[] = {"red", "green", NULL};
static const roost_field_t tag_item = {.type = ROOST_T_STR, .min_len = 1};
static const roost_field_t inner_fields[] = {{.name = "x", .type = ROOST_T_INT, .required = 1}};
static const roost_schema_t inner = {.fields = inner_fields, .nfields = 1};
static const roost_field_t body_fields[] = {
    {.name = "color", .type = ROOST_T_STR, .enum_values = colors, .has_default = 1, .def.s = "red"},
    {.name = "count", .type = ROOST_T_INT, .has_ge = 1, .ge = 1, .has_lt = 1, .lt = 10},
    {.name = "tags", .type = ROOST_T_ARR, .items = &tag_item, .max_len = 3},
    {.name = "at", .type = ROOST_T_OBJ, .object = &inner, .nullable = 1, .required = 1},
    {.name = "note", .type = ROOST_T_ANY, .description = "anything"},
};
static const roost_schema_t body = {.fields = body_fields, .nfields = 5, .forbid_extra = 1};

static json_t *doc_of(roost_server_t *srv)
{
    json_error_t err;
    const char *text = roost_openapi_json(srv, NULL);
    return text ? json_loads(text, 0, &err) : NULL;
}

static roost_server_t *sample(void)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    roost_server_t *srv = roost_server_new(&cfg);
    roost_route(srv, "GET", "/files/{rest:path}", h, NULL, 0);
    roost_route(srv, "PURGE", "/files/{rest:path}", h, NULL, 0);
    roost_route(srv, "GET", "/plain", h, NULL, 0);
    roost_route_ex(srv, &(roost_route_opts_t){.method = "POST",
                                              .path = "/things/{id:int}",
                                              .handler = h,
                                              .summary = "Make a thing",
                                              .body = &body,
                                              .status = 201});
    return srv;
}

TEST(openapi_types_path_parameters_and_skips_unknown_methods)
{
    roost_server_t *srv = sample();
    json_t *doc = doc_of(srv);
    CHECK(doc != NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_t *files = json_object_get(json_object_get(doc, "paths"), "/files/{rest}");
    CHECK_EQ_INT(json_object_size(files), 1); /* GET only: PURGE has no OpenAPI field */
    json_t *p = json_array_get(json_object_get(json_object_get(files, "get"), "parameters"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(p, "in")), "path");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(p, "schema"), "type")),
                 "string");
    json_t *plain = json_object_get(json_object_get(doc, "paths"), "/plain");
    json_t *responses = json_object_get(json_object_get(plain, "get"), "responses");
    CHECK(json_object_get(responses, "200") != NULL);
    CHECK(json_object_get(responses, "422") == NULL); /* nothing to validate */
    json_decref(doc);
    roost_server_free(srv);
}

TEST(openapi_writes_field_schemas_as_json_schema)
{
    roost_server_t *srv = sample();
    json_t *doc = doc_of(srv);
    json_t *op =
        json_object_get(json_object_get(json_object_get(doc, "paths"), "/things/{id}"), "post");
    CHECK(op != NULL);
    CHECK(json_object_get(json_object_get(op, "responses"), "201") != NULL);
    CHECK(json_object_get(json_object_get(op, "responses"), "422") != NULL);
    json_t *id = json_array_get(json_object_get(op, "parameters"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(id, "schema"), "type")),
                 "integer");
    json_t *s = json_object_get(
        json_object_get(json_object_get(json_object_get(op, "requestBody"), "content"),
                        "application/json"),
        "schema");
    char *got = json_dumps(s, JSON_SORT_KEYS | JSON_COMPACT);
    static const char want[] =
        "{\"additionalProperties\":false,\"properties\":{"
        "\"at\":{\"properties\":{\"x\":{\"type\":\"integer\"}},\"required\":[\"x\"],"
        "\"type\":[\"object\",\"null\"]},"
        "\"color\":{\"default\":\"red\",\"enum\":[\"red\",\"green\"],\"type\":\"string\"},"
        "\"count\":{\"exclusiveMaximum\":10,\"minimum\":1,\"type\":\"integer\"},"
        "\"note\":{\"description\":\"anything\"},"
        "\"tags\":{\"items\":{\"minLength\":1,\"type\":\"string\"},\"maxItems\":3,"
        "\"type\":\"array\"}},"
        "\"required\":[\"at\"],\"type\":\"object\"}";
    CHECK(got && !strcmp(got, want));
    if (got && strcmp(got, want))
        fprintf(stderr, "got %s\n", got);
    free(got);
    json_decref(doc);
    roost_server_free(srv);
}

TEST(openapi_marks_the_guarded_routes_only)
{
    roost_server_t *srv = sample();
    static const char *const guarded[] = {"GET /plain", NULL};
    CHECK_EQ_INT(http_openapi_secure(srv, guarded), 0);
    json_t *doc = doc_of(srv);
    json_t *paths = json_object_get(doc, "paths");
    json_t *plain = json_object_get(json_object_get(paths, "/plain"), "get");
    CHECK_EQ_INT(json_array_size(json_object_get(plain, "security")), 2);
    CHECK(json_object_get(json_object_get(plain, "responses"), "401") != NULL);
    json_t *files = json_object_get(json_object_get(paths, "/files/{rest}"), "get");
    CHECK_EQ_INT(json_array_size(json_object_get(files, "security")), 0);
    CHECK(json_object_get(json_object_get(doc, "components"), "securitySchemes") != NULL);
    json_decref(doc);
    roost_server_free(srv);
}

TEST(openapi_lists_every_route_in_registration_order)
{
    roost_server_t *srv = sample();
    char *text = roost_routes_text(srv);
    const char *want = "GET /files/{rest:path}\nPURGE /files/{rest:path}\nGET /plain\n"
                       "POST /things/{id:int}\n";
    CHECK_EQ_STR(text, want);
    free(text);
    roost_server_free(srv);
}
