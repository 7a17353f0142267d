/* Validation error items in pydantic v2's shape (the one 422 of roost.h) with pydantic's own
 * wording, and roost_req_json for handlers that read a body their route does not declare. The
 * checks themselves are in schema.c; the 422 response in response.c. */
#include "http/http.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* pydantic-core's message templates: {name} is ctx's member, {s} pluralizes the number before. */
static const struct {
    const char *type, *msg;
} messages[] = {
    {"missing", "Field required"},
    {"int_parsing", "Input should be a valid integer, unable to parse string as an integer"},
    {"int_type", "Input should be a valid integer"},
    {"int_from_float", "Input should be a valid integer, got a number with a fractional part"},
    {"float_parsing", "Input should be a valid number, unable to parse string as a number"},
    {"float_type", "Input should be a valid number"},
    {"finite_number", "Input should be a finite number"},
    {"bool_parsing", "Input should be a valid boolean, unable to interpret input"},
    {"bool_type", "Input should be a valid boolean"},
    {"string_type", "Input should be a valid string"},
    {"dict_type", "Input should be a valid dictionary"},
    {"list_type", "Input should be a valid list"},
    {"extra_forbidden", "Extra inputs are not permitted"},
    {"json_invalid", "JSON decode error"},
    {"greater_than", "Input should be greater than {gt}"},
    {"greater_than_equal", "Input should be greater than or equal to {ge}"},
    {"less_than", "Input should be less than {lt}"},
    {"less_than_equal", "Input should be less than or equal to {le}"},
    {"string_too_short", "String should have at least {min_length} character{s}"},
    {"string_too_long", "String should have at most {max_length} character{s}"},
    {"too_short", "List should have at least {min_length} item{s} after validation, not "
                  "{actual_length}"},
    {"too_long", "List should have at most {max_length} item{s} after validation, not "
                 "{actual_length}"},
    {"enum", "Input should be {expected}"},
    {"string_pattern_mismatch", "String should match pattern '{pattern}'"},
    {"value_error", "Value error, {error}"},
    {"decimal_type", "Decimal input should be an integer, float, string or Decimal object"},
    {"decimal_max_places", "Decimal input should have no more than {decimal_places} decimal "
                           "place{s}"},
};

static void put_value(sbuf_t *out, const json_t *v, double *last)
{
    char num[64];
    if (json_is_string(v)) {
        sbuf_append(out, json_string_value(v), json_string_length(v));
        return;
    }
    if (json_is_integer(v)) {
        *last = (double)json_integer_value(v);
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        *last = json_real_value(v);
        snprintf(num, sizeof num, "%.15g", json_real_value(v));
    } else {
        return;
    }
    sbuf_append(out, num, strlen(num));
}

/* Fills a template from ctx into a new string. */
static json_t *word(const char *tmpl, const json_t *ctx)
{
    sbuf_t out = {0};
    double last = 0;
    for (const char *p = tmpl; *p;) {
        const char *open = strchr(p, '{'), *close = open ? strchr(open, '}') : NULL;
        if (!close) {
            sbuf_append(&out, p, strlen(p));
            break;
        }
        sbuf_append(&out, p, (size_t)(open - p));
        char key[32];
        size_t n = (size_t)(close - open - 1);
        snprintf(key, sizeof key, "%.*s", (int)n, open + 1);
        if (!strcmp(key, "s")) {
            if (last != 1)
                sbuf_append(&out, "s", 1);
        } else {
            put_value(&out, json_object_get(ctx, key), &last);
        }
        p = close + 1;
    }
    json_t *s = json_stringn(out.p ? out.p : "", out.len);
    sbuf_free(&out);
    return s;
}

json_t *roost_error_item(const char *type, json_t *loc, json_t *input, json_t *ctx, const char *msg)
{
    json_t *text = NULL;
    if (msg) {
        text = json_string(msg);
    } else {
        for (size_t i = 0; i < sizeof messages / sizeof messages[0] && !text; i++)
            if (!strcmp(messages[i].type, type))
                text = word(messages[i].msg, ctx);
        if (!text)
            text = json_string(type);
    }
    if (!text) /* a msg that is not UTF-8 */
        text = json_string("Invalid input");
    json_t *e = json_pack("{s:s,s:o,s:o,s:o}", "type", type, "loc", loc ? loc : json_array(), "msg",
                          text, "input", input ? input : json_null());
    if (e && ctx)
        json_object_set_new(e, "ctx", ctx);
    else if (ctx)
        json_decref(ctx);
    return e;
}

json_t *roost_loc(const char *where, const char *field)
{
    return field ? json_pack("[ss]", where, field) : json_pack("[s]", where);
}

json_t *http_json_invalid_item(const json_error_t *err)
{
    /* FastAPI's: loc ["body", position], input {}, the parser's reason in ctx. The reason may
     * quote invalid UTF-8 from the body, and is then left out. */
    json_t *reason = json_string(err->text);
    return roost_error_item("json_invalid", json_pack("[sI]", "body", (json_int_t)err->position),
                            json_object(), reason ? json_pack("{s:o}", "error", reason) : NULL,
                            NULL);
}

json_t *roost_req_json(roost_req_t *req, const roost_schema_t *schema)
{
    json_t *errors = json_array(), *out = NULL;
    if (req->body.len == 0) {
        json_array_append_new(
            errors, roost_error_item("missing", roost_loc("body", NULL), NULL, NULL, NULL));
    } else {
        json_error_t jerr;
        json_t *doc = json_loadb(req->body.p, req->body.len, JSON_DECODE_ANY, &jerr);
        json_t *prefix = roost_loc("body", NULL);
        static const roost_schema_t any = {0};
        if (!doc)
            json_array_append_new(errors, http_json_invalid_item(&jerr));
        else
            out = roost_schema_check(schema ? schema : &any, doc, prefix, errors);
        json_decref(prefix);
        json_decref(doc);
    }
    if (!out) {
        roost_respond_422(req, errors);
        return NULL;
    }
    json_decref(errors);
    return out;
}
