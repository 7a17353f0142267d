/* libFuzzer target for the one validator: any JSON against a schema with every type, nested
 * objects and arrays. Either the value passes (an object comes back, no error) or it does not
 * (NULL, and every error is a whole pydantic item whose loc starts with the prefix). */
#include <string.h>

#include "http/http.h"
#include "fuzz.h"

static const char *const colors[] = {"red", "green", NULL};
static const roost_field_t item = {.type = ROOST_T_INT, .has_ge = 1, .ge = 0};
static const roost_field_t inner_fields[] = {
    {.name = "n", .type = ROOST_T_NUM, .required = 1, .has_lt = 1, .lt = 1e6},
    {.name = "c", .type = ROOST_T_CURSOR, .cursor_tag = 'u', .nullable = 1},
};
static const roost_schema_t inner = {.fields = inner_fields, .nfields = 2, .forbid_extra = 1};
static const roost_field_t fields[] = {
    {.name = "s", .type = ROOST_T_STR, .min_len = 1, .max_len = 8},
    {.name = "i", .type = ROOST_T_INT, .required = 1, .has_gt = 1, .gt = -5, .has_le = 1, .le = 9},
    {.name = "b", .type = ROOST_T_BOOL, .nullable = 1},
    {.name = "e", .type = ROOST_T_STR, .enum_values = colors},
    {.name = "o", .type = ROOST_T_OBJ, .object = &inner},
    {.name = "a", .type = ROOST_T_ARR, .max_len = 4, .items = &item},
    {.name = "d", .type = ROOST_T_INT, .has_default = 1, .def.i = 3},
    {.name = "x", .type = ROOST_T_ANY},
};
static const roost_schema_t schema = {.fields = fields, .nfields = 8};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!v)
        return 0;
    json_t *errors = json_array(), *prefix = json_pack("[s]", "body");
    json_t *out = roost_schema_check(&schema, v, prefix, errors);
    REQUIRE((out != NULL) == (json_array_size(errors) == 0));
    if (out)
        REQUIRE(json_is_integer(json_object_get(out, "d")));
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        json_t *loc = json_object_get(e, "loc");
        REQUIRE(json_is_string(json_object_get(e, "type")));
        REQUIRE(json_string_length(json_object_get(e, "msg")) > 0);
        REQUIRE(json_object_get(e, "input") != NULL);
        REQUIRE(json_is_array(loc) && !strcmp(json_string_value(json_array_get(loc, 0)), "body"));
    }
    char *text = json_dumps(errors, JSON_COMPACT);
    REQUIRE(text != NULL);
    free(text);
    json_decref(out);
    json_decref(errors);
    json_decref(prefix);
    json_decref(v);
    return 0;
}
