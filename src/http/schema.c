/* The one validator: a route's path, query and body schemas checked before its handler runs,
 * query and path strings coerced as FastAPI coerces them, JSON checked in pydantic's lax mode,
 * every error collected into one 422. It also keeps the validated values for the handler
 * (roost_req_query_*, roost_req_json_body). The wording of the errors is json.c's. */
#include "http/http.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct http_valid {
    json_t *query, *path, *body; /* validated objects, owned */
};

static void fail(json_t *errors, const json_t *loc, const char *type, const json_t *input,
                 json_t *ctx, const char *msg)
{
    json_array_append_new(errors,
                          roost_error_item(type, json_copy((json_t *)loc),
                                           input ? json_incref((json_t *)input) : NULL, ctx, msg));
}

/* A bound as pydantic shows it: 100, not 100.0, when the bound is whole. */
static json_t *number(double v)
{
    if (v == nearbyint(v) && fabs(v) < 9007199254740992.0)
        return json_integer((json_int_t)v);
    return json_real(v);
}

static int check_bounds(const roost_field_t *f, double v, const json_t *loc, const json_t *input,
                        json_t *errors)
{
    size_t before = json_array_size(errors);
    if (f->has_gt && !(v > f->gt))
        fail(errors, loc, "greater_than", input, json_pack("{s:o}", "gt", number(f->gt)), NULL);
    if (f->has_ge && !(v >= f->ge))
        fail(errors, loc, "greater_than_equal", input, json_pack("{s:o}", "ge", number(f->ge)),
             NULL);
    if (f->has_lt && !(v < f->lt))
        fail(errors, loc, "less_than", input, json_pack("{s:o}", "lt", number(f->lt)), NULL);
    if (f->has_le && !(v <= f->le))
        fail(errors, loc, "less_than_equal", input, json_pack("{s:o}", "le", number(f->le)), NULL);
    return json_array_size(errors) > before ? -EINVAL : 0;
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* pydantic's str -> int: optional sign and digits, no spaces, no fraction. */
static int parse_int(const char *s, long long *out)
{
    char *end;
    if (!*s || *s == ' ' || *s == '\t')
        return -EINVAL;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return *end || errno ? -EINVAL : 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "on", "t", "true", "y", "yes"};
    static const char *const no[] = {"0", "off", "f", "false", "n", "no"};
    for (size_t i = 0; i < 6; i++) {
        if (!strcasecmp(s, yes[i]) || !strcasecmp(s, no[i])) {
            *out = !strcasecmp(s, yes[i]);
            return 0;
        }
    }
    return -EINVAL;
}

/* "'a', 'b' or 'c'", as pydantic lists an enum's members. */
static json_t *expected(const char *const *values)
{
    sbuf_t s = {0};
    for (size_t i = 0; values[i]; i++) {
        if (i)
            sbuf_puts(&s, values[i + 1] ? ", " : " or ");
        sbuf_printf(&s, "'%s'", values[i]);
    }
    json_t *out = json_stringn(s.p ? s.p : "", s.len);
    sbuf_free(&s);
    return out;
}

static json_t *check_object(const roost_schema_t *schema, const json_t *obj, const json_t *loc,
                            int strings, json_t *errors);
static json_t *check_value(const roost_field_t *f, const json_t *v, const json_t *loc, int strings,
                           json_t *errors);

static json_t *check_string(const roost_field_t *f, const json_t *v, const json_t *loc,
                            json_t *errors)
{
    if (!json_is_string(v)) {
        fail(errors, loc, "string_type", v, NULL, NULL);
        return NULL;
    }
    size_t n = utf8_chars(json_string_value(v), json_string_length(v));
    if (f->min_len > 0 && n < (size_t)f->min_len) {
        fail(errors, loc, "string_too_short", v,
             json_pack("{s:I}", "min_length", (json_int_t)f->min_len), NULL);
        return NULL;
    }
    if (f->max_len > 0 && n > (size_t)f->max_len) {
        fail(errors, loc, "string_too_long", v,
             json_pack("{s:I}", "max_length", (json_int_t)f->max_len), NULL);
        return NULL;
    }
    if (f->enum_values) {
        size_t i = 0;
        while (f->enum_values[i] && strcmp(f->enum_values[i], json_string_value(v)))
            i++;
        if (!f->enum_values[i]) {
            fail(errors, loc, "enum", v, json_pack("{s:o}", "expected", expected(f->enum_values)),
                 NULL);
            return NULL;
        }
    }
    return json_incref((json_t *)v);
}

static json_t *check_array(const roost_field_t *f, const json_t *v, const json_t *loc,
                           json_t *errors)
{
    if (!json_is_array(v)) {
        fail(errors, loc, "list_type", v, NULL, NULL);
        return NULL;
    }
    size_t n = json_array_size(v);
    const char *type = f->min_len > 0 && n < (size_t)f->min_len   ? "too_short"
                       : f->max_len > 0 && n > (size_t)f->max_len ? "too_long"
                                                                  : NULL;
    if (type) {
        long bound = !strcmp(type, "too_short") ? f->min_len : f->max_len;
        fail(errors, loc, type, v,
             json_pack("{s:s,s:I,s:I}", "field_type", "List",
                       type[4] == 's' ? "min_length" : "max_length", (json_int_t)bound,
                       "actual_length", (json_int_t)n),
             NULL);
        return NULL;
    }
    if (!f->items)
        return json_incref((json_t *)v);
    json_t *out = json_array(), *item_loc = json_copy((json_t *)loc);
    json_array_append_new(item_loc, json_integer(0));
    size_t before = json_array_size(errors);
    for (size_t i = 0; i < n; i++) {
        json_array_set_new(item_loc, json_array_size(item_loc) - 1, json_integer((json_int_t)i));
        json_t *one = NULL;
        const roost_field_t *it = f->items;
        json_t *x = json_array_get(v, i);
        if (json_is_null(x) && it->nullable)
            one = json_null();
        else
            one = check_value(it, x, item_loc, 0, errors);
        if (one)
            json_array_append_new(out, one);
    }
    json_decref(item_loc);
    if (json_array_size(errors) > before) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* One value against one field: the coerced value (new reference), or NULL after errors. When
 * the value is a string from a query or a path (strings), numbers and booleans are parsed from
 * it; a JSON body's strings stay strings, as they always did here (pydantic's strict mode for
 * str -> number: "1" is not an account id). */
static json_t *check_value(const roost_field_t *f, const json_t *v, const json_t *loc, int strings,
                           json_t *errors)
{
    static const char *const null_type[] = {
        [ROOST_T_STR] = "string_type",   [ROOST_T_NUM] = "float_type", [ROOST_T_INT] = "int_type",
        [ROOST_T_BOOL] = "bool_type",    [ROOST_T_OBJ] = "dict_type",  [ROOST_T_ARR] = "list_type",
        [ROOST_T_CURSOR] = "string_type"};
    if (json_is_null(v) && f->type != ROOST_T_ANY) {
        if (f->nullable)
            return json_null();
        fail(errors, loc, null_type[f->type], v, NULL, NULL);
        return NULL;
    }
    const char *s = strings ? json_string_value(v) : NULL;
    switch (f->type) {
    case ROOST_T_ANY:
        return json_incref((json_t *)v);
    case ROOST_T_STR:
        return check_string(f, v, loc, errors);
    case ROOST_T_INT: {
        long long i = 0;
        if (s && parse_int(s, &i) < 0) {
            fail(errors, loc, "int_parsing", v, NULL, NULL);
            return NULL;
        }
        if (!s && json_is_integer(v)) {
            i = json_integer_value(v);
        } else if (!s && json_is_real(v)) {
            double d = json_real_value(v);
            if (d != nearbyint(d) || fabs(d) > 9.2e18) {
                fail(errors, loc, "int_from_float", v, NULL, NULL);
                return NULL;
            }
            i = (long long)d;
        } else if (!s) {
            fail(errors, loc, "int_type", v, NULL, NULL);
            return NULL;
        }
        return check_bounds(f, (double)i, loc, v, errors) < 0 ? NULL : json_integer(i);
    }
    case ROOST_T_NUM: {
        double d = 0;
        if (s) {
            char *end;
            d = strtod(s, &end);
            if (!*s || *end || isspace((unsigned char)*s)) {
                fail(errors, loc, "float_parsing", v, NULL, NULL);
                return NULL;
            }
        } else if (json_is_number(v)) {
            d = json_number_value(v);
        } else {
            fail(errors, loc, "float_type", v, NULL, NULL);
            return NULL;
        }
        if (!isfinite(d)) {
            fail(errors, loc, "finite_number", v, NULL, NULL);
            return NULL;
        }
        if (check_bounds(f, d, loc, v, errors) < 0)
            return NULL;
        return json_is_integer(v) ? json_incref((json_t *)v) : json_real(d);
    }
    case ROOST_T_BOOL: {
        int b = 0;
        if (json_is_boolean(v))
            return json_incref((json_t *)v);
        if (s && parse_bool(s, &b) == 0)
            return json_boolean(b);
        fail(errors, loc, s ? "bool_parsing" : "bool_type", v, NULL, NULL);
        return NULL;
    }
    case ROOST_T_OBJ: /* nested values come from JSON: no strings to parse */
        if (!json_is_object(v)) {
            fail(errors, loc, "dict_type", v, NULL, NULL);
            return NULL;
        }
        return f->object ? check_object(f->object, v, loc, 0, errors) : json_incref((json_t *)v);
    case ROOST_T_ARR:
        return check_array(f, v, loc, errors);
    case ROOST_T_CURSOR: {
        s = json_string_value(v);
        if (!s) {
            fail(errors, loc, "string_type", v, NULL, NULL);
            return NULL;
        }
        if (!*s)
            return json_null(); /* ?cursor= is the first page */
        long long id = roost_cursor_decode(f->cursor_tag, str_make(s, json_string_length(v)));
        if (id < 0) {
            fail(errors, loc, "value_error", v, json_pack("{s:s}", "error", "Invalid cursor"),
                 NULL);
            return NULL;
        }
        return json_integer(id);
    }
    }
    return NULL;
}

static json_t *check_object(const roost_schema_t *schema, const json_t *obj, const json_t *loc,
                            int strings, json_t *errors)
{
    json_t *out = json_copy((json_t *)obj), *field_loc = json_copy((json_t *)loc);
    json_array_append_new(field_loc, json_null());
    size_t last = json_array_size(field_loc) - 1, before = json_array_size(errors);
    for (size_t i = 0; i < schema->nfields; i++) {
        const roost_field_t *f = &schema->fields[i];
        json_array_set_new(field_loc, last, json_string(f->name));
        json_t *v = json_object_get(obj, f->name);
        if (!v) {
            json_t *def = NULL;
            if (f->has_default)
                def = f->type == ROOST_T_INT    ? json_integer(f->def.i)
                      : f->type == ROOST_T_BOOL ? json_boolean(f->def.i)
                      : f->type == ROOST_T_NUM  ? json_real(f->def.n)
                      : f->def.s                ? json_string(f->def.s)
                                                : json_null();
            else if (f->required)
                /* FastAPI shows the whole body as the input of a missing body member, and null
                 * for a missing query or path parameter. */
                fail(errors, field_loc, "missing", strings ? NULL : obj, NULL, NULL);
            if (def)
                json_object_set_new(out, f->name, def);
            continue;
        }
        json_t *ok = check_value(f, v, field_loc, strings, errors);
        size_t n = json_array_size(errors);
        if (ok && f->check)
            f->check(ok, field_loc, errors);
        if (ok && json_array_size(errors) == n)
            json_object_set_new(out, f->name, ok);
        else
            json_decref(ok);
    }
    if (schema->forbid_extra) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)obj, key, v)
        {
            size_t i = 0;
            while (i < schema->nfields && strcmp(schema->fields[i].name, key))
                i++;
            if (i == schema->nfields) {
                json_array_set_new(field_loc, last, json_string(key));
                fail(errors, field_loc, "extra_forbidden", v, NULL, NULL);
            }
        }
    }
    json_decref(field_loc);
    if (json_array_size(errors) > before) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *roost_schema_check_value(const roost_field_t *f, const json_t *v, const json_t *loc,
                                 json_t *errors)
{
    return check_value(f, v, loc, 0, errors);
}

json_t *roost_schema_check(const roost_schema_t *schema, const json_t *v, const json_t *prefix,
                           json_t *errors)
{
    if (!json_is_object(v)) {
        fail(errors, prefix, v ? "dict_type" : "missing", v, NULL, NULL);
        return NULL;
    }
    return check_object(schema, v, prefix, 0, errors);
}

/* ---- before the handler ---- */

/* The query's or the path's values for the schema's fields, as JSON strings. */
static json_t *strings_of(roost_req_t *req, const roost_schema_t *schema, int path)
{
    json_t *o = json_object();
    for (size_t i = 0; i < schema->nfields; i++) {
        const char *name = schema->fields[i].name;
        roost_str_t v = path ? roost_req_param(req, name) : roost_req_query(req, name);
        if (v.ptr)
            json_object_set_new(o, name, json_stringn(v.ptr, v.len));
    }
    return o;
}

static json_t *check_strings(roost_req_t *req, const roost_schema_t *schema, int path,
                             json_t *errors)
{
    json_t *in = strings_of(req, schema, path), *loc = roost_loc(path ? "path" : "query", NULL);
    json_t *out = check_object(schema, in, loc, 1, errors);
    json_decref(loc);
    json_decref(in);
    return out;
}

static json_t *check_body(roost_req_t *req, const roost_schema_t *schema, json_t *errors)
{
    json_t *loc = roost_loc("body", NULL), *out = NULL;
    if (req->body.len == 0) {
        fail(errors, loc, "missing", NULL, NULL, NULL);
    } else {
        json_error_t jerr;
        json_t *doc = json_loadb(req->body.p, req->body.len, JSON_DECODE_ANY, &jerr);
        if (!doc)
            json_array_append_new(errors, http_json_invalid_item(&jerr));
        else
            out = roost_schema_check(schema, doc, loc, errors);
        json_decref(doc);
    }
    json_decref(loc);
    return out;
}

int http_route_validate(roost_req_t *req)
{
    const roost_route_opts_t *o = &req->route->opts;
    http_valid_clear(req);
    if (!o->query && !o->path_params && !o->body)
        return 0;
    struct http_valid *v = calloc(1, sizeof *v);
    json_t *errors = json_array();
    if (!v || !errors) {
        free(v);
        json_decref(errors);
        roost_respond_error(req, 500, "Out of memory");
        return -ENOMEM;
    }
    req->valid = v;
    if (o->path_params)
        v->path = check_strings(req, o->path_params, 1, errors);
    if (o->query)
        v->query = check_strings(req, o->query, 0, errors);
    if (o->body)
        v->body = check_body(req, o->body, errors);
    if (json_array_size(errors) > 0) {
        http_valid_clear(req);
        roost_respond_422(req, errors);
        return -EINVAL;
    }
    json_decref(errors);
    return 0;
}

void http_valid_clear(roost_req_t *req)
{
    struct http_valid *v = req->valid;
    if (!v)
        return;
    json_decref(v->query);
    json_decref(v->path);
    json_decref(v->body);
    free(v);
    req->valid = NULL;
}

/* ---- what the handler reads ---- */

static json_t *query_value(roost_req_t *req, const char *name)
{
    return req->valid ? json_object_get(req->valid->query, name) : NULL;
}

long long roost_req_query_int(roost_req_t *req, const char *name)
{
    json_t *v = query_value(req, name);
    if (json_is_integer(v))
        return json_integer_value(v);
    return json_is_boolean(v) ? json_is_true(v) : (long long)json_number_value(v);
}

double roost_req_query_num(roost_req_t *req, const char *name)
{
    return json_number_value(query_value(req, name));
}

const char *roost_req_query_str(roost_req_t *req, const char *name)
{
    return json_string_value(query_value(req, name));
}

json_t *roost_req_json_body(roost_req_t *req)
{
    return req->valid ? req->valid->body : NULL;
}
