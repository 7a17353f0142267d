/* JSON request bodies checked against a small schema, with errors in FastAPI's (pydantic v1)
 * shape: every invalid field is listed in one 422, so a client fixes all of them at once. */
#include "http/http.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void add(json_t *errors, const char *field, const char *msg, const char *type, json_t *ctx)
{
    json_t *e = roost_error_item("body", field, msg, type);
    if (ctx)
        json_object_set_new(e, "ctx", ctx);
    json_array_append_new(errors, e);
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static json_t *limit(double v)
{
    return json_pack("{s:f}", "limit_value", v);
}

static void check_bounds(json_t *errors, const roost_field_t *f, double v)
{
    char msg[96];
    if (f->has_gt && !(v > f->gt)) {
        snprintf(msg, sizeof msg, "ensure this value is greater than %g", f->gt);
        add(errors, f->name, msg, "value_error.number.not_gt", limit(f->gt));
    }
    if (f->has_ge && !(v >= f->ge)) {
        snprintf(msg, sizeof msg, "ensure this value is greater than or equal to %g", f->ge);
        add(errors, f->name, msg, "value_error.number.not_ge", limit(f->ge));
    }
    if (f->has_lt && !(v < f->lt)) {
        snprintf(msg, sizeof msg, "ensure this value is less than %g", f->lt);
        add(errors, f->name, msg, "value_error.number.not_lt", limit(f->lt));
    }
    if (f->has_le && !(v <= f->le)) {
        snprintf(msg, sizeof msg, "ensure this value is less than or equal to %g", f->le);
        add(errors, f->name, msg, "value_error.number.not_le", limit(f->le));
    }
}

static void check_field(json_t *errors, const roost_field_t *f, json_t *v)
{
    char msg[96];
    if (!v) {
        if (f->required)
            add(errors, f->name, "field required", "value_error.missing", NULL);
        return;
    }
    if (json_is_null(v)) {
        if (!f->nullable)
            add(errors, f->name, "none is not an allowed value", "type_error.none.not_allowed",
                NULL);
        return;
    }
    switch (f->type) {
    case ROOST_T_STR: {
        if (!json_is_string(v)) {
            add(errors, f->name, "str type expected", "type_error.str", NULL);
            return;
        }
        size_t n = utf8_chars(json_string_value(v), json_string_length(v));
        if (f->min_len > 0 && n < (size_t)f->min_len) {
            snprintf(msg, sizeof msg, "ensure this value has at least %ld characters", f->min_len);
            add(errors, f->name, msg, "value_error.any_str.min_length",
                json_pack("{s:i}", "limit_value", (json_int_t)f->min_len));
        }
        if (f->max_len > 0 && n > (size_t)f->max_len) {
            snprintf(msg, sizeof msg, "ensure this value has at most %ld characters", f->max_len);
            add(errors, f->name, msg, "value_error.any_str.max_length",
                json_pack("{s:i}", "limit_value", (json_int_t)f->max_len));
        }
        return;
    }
    case ROOST_T_NUM:
        if (!json_is_number(v)) {
            add(errors, f->name, "value is not a valid float", "type_error.float", NULL);
            return;
        }
        check_bounds(errors, f, json_number_value(v));
        return;
    case ROOST_T_INT:
        if (!json_is_integer(v)) {
            add(errors, f->name, "value is not a valid integer", "type_error.integer", NULL);
            return;
        }
        check_bounds(errors, f, (double)json_integer_value(v));
        return;
    case ROOST_T_BOOL:
        if (!json_is_boolean(v))
            add(errors, f->name, "value could not be parsed to a boolean", "type_error.bool", NULL);
        return;
    case ROOST_T_ANY:
        return;
    }
}

json_t *roost_req_json(roost_req_t *req, const roost_schema_t *schema)
{
    json_t *errors = json_array();
    if (req->body.len == 0) {
        json_array_append_new(
            errors, roost_error_item("body", NULL, "field required", "value_error.missing"));
        roost_respond_422(req, errors);
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(req->body.p, req->body.len, JSON_DECODE_ANY, &jerr);
    if (!doc) {
        json_t *e = json_pack("{s:[s,I],s:s,s:s}", "loc", "body", (json_int_t)jerr.position, "msg",
                              jerr.text, "type", "value_error.jsondecode");
        if (!e) /* the parser's text may quote invalid UTF-8 from the body */
            e = roost_error_item("body", NULL, "invalid JSON", "value_error.jsondecode");
        json_array_append_new(errors, e);
        roost_respond_422(req, errors);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_array_append_new(
            errors, roost_error_item("body", NULL, "value is not a valid dict", "type_error.dict"));
        json_decref(doc);
        roost_respond_422(req, errors);
        return NULL;
    }
    for (size_t i = 0; schema && i < schema->nfields; i++)
        check_field(errors, &schema->fields[i], json_object_get(doc, schema->fields[i].name));
    if (json_array_size(errors) > 0) {
        json_decref(doc);
        roost_respond_422(req, errors);
        return NULL;
    }
    json_decref(errors);
    return doc;
}
