/* Route schemas and the one validator: every type and constraint, query strings coerced like
 * FastAPI's, missing and extra fields, several errors in one 422, pydantic v2's exact items, and
 * the page helper. Requests here are bare objects with no connection: the 422 lands in
 * req->res_body. */
#include <stdlib.h>

#include "http/http.h"
#include "unit.h"

typedef struct {
    roost_server_t srv;
    http_server_t hs; /* the http layer's part of the server: no middleware */
    route_t route;
    roost_req_t *req;
} fake_t;

/* A request to a route with these options, with a raw query and a body (may be NULL). */
static roost_req_t *fake(fake_t *f, const roost_route_opts_t *opts, const char *query,
                         const char *body)
{
    memset(f, 0, sizeof *f);
    f->route.name = "TEST /t";
    f->route.opts = *opts;
    f->req = calloc(1, sizeof *f->req);
    core_server_ctx_set(&f->srv, http_slot(), &f->hs);
    f->req->srv = &f->srv;
    f->req->route = &f->route;
    if (query)
        f->req->query = str_make(query, strlen(query));
    if (body)
        sbuf_append(&f->req->body, body, strlen(body));
    return f->req;
}

static void fake_free(fake_t *f)
{
    http_valid_clear(f->req);
    arena_free(&f->req->arena);
    sbuf_free(&f->req->body);
    sbuf_free(&f->req->res_body);
    sbuf_free(&f->req->res_headers);
    free(f->req);
}

/* The response body as a NUL-ended string. */
static const char *answer(roost_req_t *req)
{
    sbuf_append(&req->res_body, "", 1);
    req->res_body.len--;
    return req->res_body.p;
}

/* CHECK_EQ_STR for long JSON texts: prints both whole. */
#define SAME(got, want) same_at(__FILE__, __LINE__, (got), (want))
static void same_at(const char *file, int line, const char *got, const char *want)
{
    if (got && !strcmp(got, want))
        return;
    fprintf(stderr, "    got:  %s\n    want: %s\n", got ? got : "(null)", want);
    unit_fail(file, line, "same text");
}

static char *dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT);
}

/* Checks v against schema at ["body"]: the validated object, or NULL with the errors dumped. */
static json_t *check(const roost_schema_t *schema, const char *text, char **errors_out)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL), *errors = json_array();
    json_t *loc = roost_loc("body", NULL);
    json_t *out = roost_schema_check(schema, v, loc, errors);
    *errors_out = dump(errors);
    json_decref(loc);
    json_decref(errors);
    json_decref(v);
    return out;
}

static const roost_field_t page_fields[] = {ROOST_PAGE_FIELDS('u', 20, 100)};
static const roost_schema_t page_schema = {.fields = page_fields, .nfields = 2};
static const roost_route_opts_t page_route = {"GET", "/t", NULL, .query = &page_schema};

TEST(schema_query_limit_above_le_is_pydantics_exact_item)
{
    fake_t f;
    roost_req_t *req = fake(&f, &page_route, "limit=101", NULL);
    CHECK(http_route_validate(req) < 0);
    CHECK_EQ_INT(req->status, 422);
    SAME(answer(req), "{\"detail\":[{\"type\":\"less_than_equal\",\"loc\":[\"query\","
                      "\"limit\"],\"msg\":\"Input should be less than or equal to "
                      "100\",\"input\":\"101\",\"ctx\":{\"le\":100}}]}");
    fake_free(&f);
}

TEST(schema_query_limit_that_is_no_integer_is_int_parsing)
{
    fake_t f;
    roost_req_t *req = fake(&f, &page_route, "limit=abc", NULL);
    CHECK(http_route_validate(req) < 0);
    SAME(answer(req), "{\"detail\":[{\"type\":\"int_parsing\",\"loc\":[\"query\","
                      "\"limit\"],\"msg\":\"Input should be a valid integer, unable to "
                      "parse string as an integer\",\"input\":\"abc\"}]}");
    fake_free(&f);
}

TEST(schema_query_values_are_coerced_and_defaults_filled)
{
    fake_t f;
    char c[ROOST_CURSOR_MAX];
    roost_cursor_encode('u', 4242, c);
    char q[128];
    snprintf(q, sizeof q, "cursor=%s&limit=7", c);
    roost_req_t *req = fake(&f, &page_route, q, NULL);
    CHECK_EQ_INT(http_route_validate(req), 0);
    CHECK_EQ_INT(req->status, 0);
    CHECK_EQ_INT(roost_req_query_int(req, "limit"), 7);
    CHECK_EQ_INT(roost_req_query_int(req, "cursor"), 4242);
    fake_free(&f);

    req = fake(&f, &page_route, NULL, NULL);
    CHECK_EQ_INT(http_route_validate(req), 0);
    CHECK_EQ_INT(roost_req_query_int(req, "limit"), 20); /* the default */
    CHECK_EQ_INT(roost_req_query_int(req, "cursor"), 0);
    fake_free(&f);
}

TEST(schema_cursor_of_another_listing_is_a_value_error)
{
    fake_t f;
    char c[ROOST_CURSOR_MAX], q[128];
    roost_cursor_encode('t', 5, c);
    snprintf(q, sizeof q, "cursor=%s", c);
    roost_req_t *req = fake(&f, &page_route, q, NULL);
    CHECK(http_route_validate(req) < 0);
    CHECK(strstr(answer(req), "\"type\":\"value_error\",\"loc\":[\"query\",\"cursor\"],"
                              "\"msg\":\"Value error, Invalid cursor\""));
    fake_free(&f);
}

static const roost_field_t coerce_fields[] = {
    {.name = "flag", .type = ROOST_T_BOOL},
    {.name = "ratio", .type = ROOST_T_NUM, .has_lt = 1, .lt = 1},
    {.name = "n", .type = ROOST_T_INT, .required = 1},
    {.name = "name", .type = ROOST_T_STR, .has_default = 1, .def.s = "anon"},
};
static const roost_schema_t coerce_schema = {.fields = coerce_fields, .nfields = 4};
static const roost_route_opts_t coerce_route = {"GET", "/t", NULL, .query = &coerce_schema};

TEST(schema_query_strings_become_booleans_and_numbers_like_fastapi)
{
    static const char *const yes[] = {"flag=true&n=1", "flag=1&n=1", "flag=YES&n=1", "flag=on&n=1"};
    for (size_t i = 0; i < 4; i++) {
        fake_t f;
        roost_req_t *req = fake(&f, &coerce_route, yes[i], NULL);
        CHECK_EQ_INT(http_route_validate(req), 0);
        CHECK_EQ_INT(roost_req_query_int(req, "flag"), 1);
        fake_free(&f);
    }
    fake_t f;
    roost_req_t *req = fake(&f, &coerce_route, "flag=off&ratio=0.25&n=-3", NULL);
    CHECK_EQ_INT(http_route_validate(req), 0);
    CHECK_EQ_INT(roost_req_query_int(req, "flag"), 0);
    CHECK(roost_req_query_num(req, "ratio") == 0.25);
    CHECK_EQ_INT(roost_req_query_int(req, "n"), -3);
    SAME(roost_req_query_str(req, "name"), "anon");
    fake_free(&f);
}

TEST(schema_query_reports_every_bad_parameter_in_one_answer)
{
    fake_t f;
    roost_req_t *req = fake(&f, &coerce_route, "flag=maybe&ratio=x", NULL);
    CHECK(http_route_validate(req) < 0);
    json_t *root = json_loads(answer(req), 0, NULL), *detail = json_object_get(root, "detail");
    CHECK_EQ_INT(json_array_size(detail), 3);
    const char *types[] = {"bool_parsing", "float_parsing", "missing"};
    const char *fields[] = {"flag", "ratio", "n"};
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(detail, i);
        SAME(json_string_value(json_object_get(e, "type")), types[i]);
        SAME(json_string_value(json_array_get(json_object_get(e, "loc"), 1)), fields[i]);
    }
    /* a missing query parameter's input is null, as FastAPI shows it */
    CHECK(json_is_null(json_object_get(json_array_get(detail, 2), "input")));
    json_decref(root);
    fake_free(&f);
}

static const char *const colors[] = {"red", "green", "blue", NULL};
static const roost_field_t all_fields[] = {
    {.name = "s", .type = ROOST_T_STR, .min_len = 2, .max_len = 4},
    {.name = "one", .type = ROOST_T_STR, .min_len = 1},
    {.name = "i", .type = ROOST_T_INT, .has_gt = 1, .gt = 0, .has_le = 1, .le = 10},
    {.name = "x", .type = ROOST_T_NUM, .has_ge = 1, .ge = 0.5, .has_lt = 1, .lt = 2},
    {.name = "b", .type = ROOST_T_BOOL},
    {.name = "color", .type = ROOST_T_STR, .enum_values = colors},
    {.name = "opt", .type = ROOST_T_STR, .nullable = 1},
    {.name = "any", .type = ROOST_T_ANY},
};
static const roost_schema_t all_schema = {.fields = all_fields, .nfields = 8};

/* The errors a body gives against schema at ["body"], as a JSON array (empty when valid). */
static json_t *errors_of(const roost_schema_t *schema, const char *body)
{
    char *text;
    json_t *out = check(schema, body, &text), *errors = json_loads(text, 0, NULL);
    CHECK((out == NULL) == (json_array_size(errors) > 0));
    json_decref(out);
    free(text);
    return errors;
}

/* The body gives exactly one error, of this type, message and ctx (NULL: no ctx). */
static void check_one(const char *body, const char *type, const char *msg, const char *ctx)
{
    json_t *errors = errors_of(&all_schema, body), *e = json_array_get(errors, 0);
    CHECK_EQ_INT(json_array_size(errors), 1);
    SAME(json_string_value(json_object_get(e, "type")), type);
    SAME(json_string_value(json_object_get(e, "msg")), msg);
    char *c = json_object_get(e, "ctx") ? dump(json_object_get(e, "ctx")) : NULL;
    SAME(c ? c : "(none)", ctx ? ctx : "(none)");
    free(c);
    json_decref(errors);
}

static void check_valid(const char *body)
{
    json_t *errors = errors_of(&all_schema, body);
    CHECK_EQ_INT(json_array_size(errors), 0);
    json_decref(errors);
}

TEST(schema_strings_check_type_length_in_characters_and_enum)
{
    check_one("{\"s\":5}", "string_type", "Input should be a valid string", NULL);
    check_one("{\"s\":\"a\"}", "string_too_short", "String should have at least 2 characters",
              "{\"min_length\":2}");
    check_one("{\"one\":\"\"}", "string_too_short", "String should have at least 1 character",
              "{\"min_length\":1}");
    check_one("{\"s\":\"abcde\"}", "string_too_long", "String should have at most 4 characters",
              "{\"max_length\":4}");
    check_valid("{\"s\":\"\xc3\xa9t\xc3\xa9\"}"); /* 3 characters in 5 bytes */
    check_one("{\"color\":\"pink\"}", "enum", "Input should be 'red', 'green' or 'blue'",
              "{\"expected\":\"'red', 'green' or 'blue'\"}");
    check_valid("{\"color\":\"green\"}");
}

TEST(schema_numbers_check_type_and_every_bound)
{
    check_one("{\"i\":\"5\"}", "int_type", "Input should be a valid integer", NULL);
    check_one("{\"i\":2.5}", "int_from_float",
              "Input should be a valid integer, got a number with a fractional part", NULL);
    check_valid("{\"i\":2.0}");
    check_one("{\"i\":0}", "greater_than", "Input should be greater than 0", "{\"gt\":0}");
    check_one("{\"i\":11}", "less_than_equal", "Input should be less than or equal to 10",
              "{\"le\":10}");
    check_valid("{\"i\":10}");
    check_one("{\"x\":\"1\"}", "float_type", "Input should be a valid number", NULL);
    check_one("{\"x\":0.25}", "greater_than_equal", "Input should be greater than or equal to 0.5",
              "{\"ge\":0.5}");
    check_one("{\"x\":2}", "less_than", "Input should be less than 2", "{\"lt\":2}");
    check_valid("{\"x\":1}");
}

TEST(schema_booleans_null_and_any)
{
    check_one("{\"b\":\"yes\"}", "bool_type", "Input should be a valid boolean", NULL);
    check_valid("{\"b\":false}");
    check_one("{\"s\":null}", "string_type", "Input should be a valid string", NULL);
    check_valid("{\"opt\":null}");
    check_valid("{\"any\":[1,{\"a\":null}]}");
}

TEST(schema_body_that_is_not_an_object_is_dict_type)
{
    json_t *errors = errors_of(&all_schema, "[1,2]");
    SAME(json_string_value(json_object_get(json_array_get(errors, 0), "type")), "dict_type");
    json_decref(errors);
}

static const roost_field_t strict_fields[] = {
    {.name = "a", .type = ROOST_T_INT, .required = 1},
    {.name = "b", .type = ROOST_T_STR, .required = 1},
};
static const roost_schema_t loose = {.fields = strict_fields, .nfields = 2},
                            strict = {.fields = strict_fields, .nfields = 2, .forbid_extra = 1};

TEST(schema_missing_fields_are_listed_and_extra_ones_refused_only_when_asked)
{
    json_t *errors = errors_of(&loose, "{\"c\":1}");
    char *text = dump(errors);
    /* FastAPI shows the whole body as the input of a missing member */
    SAME(text, "[{\"type\":\"missing\",\"loc\":[\"body\",\"a\"],\"msg\":\"Field "
               "required\",\"input\":{\"c\":1}},{\"type\":\"missing\",\"loc\":[\"body\","
               "\"b\"],\"msg\":\"Field required\",\"input\":{\"c\":1}}]");
    free(text);
    json_decref(errors);

    errors = errors_of(&loose, "{\"a\":1,\"b\":\"x\",\"c\":1}");
    CHECK_EQ_INT(json_array_size(errors), 0);
    json_decref(errors);

    errors = errors_of(&strict, "{\"a\":1,\"b\":\"x\",\"c\":1}");
    text = dump(errors);
    SAME(text, "[{\"type\":\"extra_forbidden\",\"loc\":[\"body\",\"c\"],\"msg\":\"Extra "
               "inputs are not permitted\",\"input\":1}]");
    free(text);
    json_decref(errors);
}

TEST(schema_several_errors_come_in_one_answer_in_field_order)
{
    json_t *errors = errors_of(&all_schema, "{\"s\":\"a\",\"i\":99,\"x\":\"no\",\"b\":1}");
    const char *types[] = {"string_too_short", "less_than_equal", "float_type", "bool_type"};
    CHECK_EQ_INT(json_array_size(errors), 4);
    for (size_t i = 0; i < 4; i++)
        SAME(json_string_value(json_object_get(json_array_get(errors, i), "type")), types[i]);
    json_decref(errors);
}

static const roost_field_t tag_item = {.type = ROOST_T_STR, .min_len = 1};
static const roost_field_t point_fields[] = {
    {.name = "x", .type = ROOST_T_INT, .required = 1},
};
static const roost_schema_t point = {.fields = point_fields, .nfields = 1};
static const roost_field_t nested_fields[] = {
    {.name = "tags", .type = ROOST_T_ARR, .max_len = 3, .items = &tag_item},
    {.name = "at", .type = ROOST_T_OBJ, .object = &point},
    {.name = "n", .type = ROOST_T_INT, .has_default = 1, .def.i = 5},
};
static const roost_schema_t nested = {.fields = nested_fields, .nfields = 3};

/* The body gives n errors, and their JSON text holds each of the pieces. */
static void check_has(const char *body, size_t n, const char *const *pieces)
{
    json_t *errors = errors_of(&nested, body);
    char *text = dump(errors);
    CHECK_EQ_INT(json_array_size(errors), n);
    for (size_t i = 0; pieces[i]; i++)
        if (!strstr(text, pieces[i]))
            SAME(text, pieces[i]);
    free(text);
    json_decref(errors);
}

TEST(schema_nested_objects_and_array_items_have_their_path_in_loc)
{
    check_has("{\"tags\":[\"a\",\"\",3],\"at\":{\"x\":\"1\"}}", 3,
              (const char *const[]){"\"loc\":[\"body\",\"tags\",1],\"msg\":\"String should "
                                    "have at least 1 character\"",
                                    "\"type\":\"string_type\",\"loc\":[\"body\",\"tags\",2]",
                                    "\"type\":\"int_type\",\"loc\":[\"body\",\"at\",\"x\"]", NULL});
    check_has("{\"tags\":[\"a\",\"b\",\"c\",\"d\"]}", 1,
              (const char *const[]){"\"type\":\"too_long\"",
                                    "\"msg\":\"List should have at most 3 items after "
                                    "validation, not 4\"",
                                    NULL});
    check_has("{\"tags\":\"a\",\"at\":[]}", 2,
              (const char *const[]){"\"type\":\"list_type\"", "\"type\":\"dict_type\"", NULL});

    char *unused;
    json_t *out = check(&nested, "{\"tags\":[\"a\"]}", &unused);
    CHECK_EQ_INT(json_integer_value(json_object_get(out, "n")), 5); /* the default is filled */
    json_decref(out);
    free(unused);
}

static const roost_route_opts_t body_route = {"POST", "/t", NULL, .body = &nested};

TEST(schema_route_body_is_parsed_once_and_kept_for_the_handler)
{
    fake_t f;
    roost_req_t *req = fake(&f, &body_route, NULL, "{\"tags\":[\"x\"]}");
    CHECK_EQ_INT(http_route_validate(req), 0);
    json_t *body = roost_req_json_body(req);
    CHECK_EQ_INT(json_integer_value(json_object_get(body, "n")), 5);
    SAME(json_string_value(json_array_get(json_object_get(body, "tags"), 0)), "x");
    fake_free(&f);

    req = fake(&f, &body_route, NULL, NULL);
    CHECK(http_route_validate(req) < 0);
    SAME(answer(req), "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\"],\"msg\":"
                      "\"Field required\",\"input\":null}]}");
    fake_free(&f);

    req = fake(&f, &body_route, NULL, "{\"tags\":");
    CHECK(http_route_validate(req) < 0);
    CHECK(strstr(answer(req), "{\"type\":\"json_invalid\",\"loc\":[\"body\",8],\"msg\":\"JSON "
                              "decode error\",\"input\":{},\"ctx\":{\"error\":"));
    fake_free(&f);
}

static const roost_field_t id_field[] = {
    {.name = "id", .type = ROOST_T_INT, .required = 1, .has_ge = 1, .ge = 1}};
static const roost_schema_t id_schema = {.fields = id_field, .nfields = 1};
static const roost_route_opts_t path_route = {"GET", "/t/{id}", NULL, .path_params = &id_schema};

TEST(schema_path_parameters_are_coerced_and_checked)
{
    fake_t f;
    roost_req_t *req = fake(&f, &path_route, NULL, NULL);
    req->nparams = 1;
    req->params[0].name = "id";
    req->params[0].value = str_make("0", 1);
    CHECK(http_route_validate(req) < 0);
    CHECK(strstr(answer(req), "\"type\":\"greater_than_equal\",\"loc\":[\"path\",\"id\"]"));
    fake_free(&f);
}

TEST(schema_error_item_builder_words_known_types_and_keeps_a_given_message)
{
    json_t *e = roost_error_item("less_than_equal", roost_loc("query", "limit"), json_string("101"),
                                 json_pack("{s:i}", "le", 100), NULL);
    char *text = dump(e);
    SAME(text, "{\"type\":\"less_than_equal\",\"loc\":[\"query\",\"limit\"],\"msg\":"
               "\"Input should be less than or equal to 100\",\"input\":\"101\","
               "\"ctx\":{\"le\":100}}");
    free(text);
    json_decref(e);
    e = roost_error_item("value_error", roost_loc("body", NULL), NULL,
                         json_pack("{s:s}", "error", "unknown job type"), NULL);
    SAME(json_string_value(json_object_get(e, "msg")), "Value error, unknown job type");
    json_decref(e);
    e = roost_error_item("my_own", roost_loc("header", "X"), NULL, NULL, "Mine");
    SAME(json_string_value(json_object_get(e, "msg")), "Mine");
    CHECK(json_is_null(json_object_get(e, "input")) && !json_object_get(e, "ctx"));
    json_decref(e);
}

static json_t *rows(int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:i}", "id", 100 - i));
    return a;
}

TEST(page_has_more_and_a_cursor_only_when_a_row_is_left_over)
{
    json_t *p = roost_page(rows(3), 2, 'u', "id");
    CHECK_EQ_INT(json_array_size(json_object_get(p, "items")), 2);
    CHECK(json_is_true(json_object_get(p, "has_more")));
    const char *c = json_string_value(json_object_get(p, "next_cursor"));
    CHECK(c && roost_cursor_decode('u', str_make(c, strlen(c))) == 99);
    json_decref(p);

    p = roost_page(rows(2), 2, 'u', "id");
    CHECK_EQ_INT(json_array_size(json_object_get(p, "items")), 2);
    CHECK(json_is_false(json_object_get(p, "has_more")));
    CHECK(json_is_null(json_object_get(p, "next_cursor")));
    json_decref(p);
}
