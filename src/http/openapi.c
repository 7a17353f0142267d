/* The OpenAPI 3.1 document of the route table, written from what each route was registered
 * with (roost_route_opts_t): paths and typed parameters from the template, query, path and body
 * schemas as JSON Schema, the 2xx answer, FastAPI's 422 shape, tags, summaries, and the API-key
 * schemes on the routes the auth middleware guards. Made once, on the first call, and kept.
 * Not the serving of it, nor Swagger UI: the application registers those routes. */
#include "http/http.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef ROOST_VERSION
#define ROOST_VERSION "dev"
#endif

/* One lock for every server: it is held only while the first request for the document is
 * answered, and routes no longer change once the server runs. */
static pthread_mutex_t doc_lock = PTHREAD_MUTEX_INITIALIZER;

static json_t *object_schema(const roost_schema_t *s);

/* A bound of an int field is written as an integer, so that it reads as the field's type. */
static json_t *bound(const roost_field_t *f, double v)
{
    return f->type == ROOST_T_INT ? json_integer((json_int_t)v) : json_real(v);
}

static const char *type_name(roost_type_t t)
{
    switch (t) {
    case ROOST_T_STR:
    case ROOST_T_CURSOR: /* an opaque token to pass back */
        return "string";
    case ROOST_T_NUM:
        return "number";
    case ROOST_T_INT:
        return "integer";
    case ROOST_T_BOOL:
        return "boolean";
    case ROOST_T_OBJ:
        return "object";
    case ROOST_T_ARR:
        return "array";
    default:
        return NULL;
    }
}

static json_t *default_value(const roost_field_t *f)
{
    switch (f->type) {
    case ROOST_T_INT:
        return json_integer(f->def.i);
    case ROOST_T_BOOL:
        return json_boolean(f->def.i);
    case ROOST_T_NUM:
        return json_real(f->def.n);
    default:
        return f->def.s ? json_string(f->def.s) : json_null();
    }
}

/* One field as JSON Schema (2020-12, which OpenAPI 3.1 uses as is). */
static json_t *field_schema(const roost_field_t *f)
{
    json_t *s = f->type == ROOST_T_OBJ && f->object ? object_schema(f->object) : json_object();
    const char *type = type_name(f->type);
    if (type && f->nullable) /* Optional[...]: 3.1 lists null among the types */
        json_object_set_new(s, "type", json_pack("[s,s]", type, "null"));
    else if (type)
        json_object_set_new(s, "type", json_string(type));
    if (f->type == ROOST_T_ARR && f->items)
        json_object_set_new(s, "items", field_schema(f->items));
    int is_arr = f->type == ROOST_T_ARR;
    if (f->min_len > 0)
        json_object_set_new(s, is_arr ? "minItems" : "minLength", json_integer(f->min_len));
    if (f->max_len > 0)
        json_object_set_new(s, is_arr ? "maxItems" : "maxLength", json_integer(f->max_len));
    if (f->has_gt)
        json_object_set_new(s, "exclusiveMinimum", bound(f, f->gt));
    if (f->has_ge)
        json_object_set_new(s, "minimum", bound(f, f->ge));
    if (f->has_lt)
        json_object_set_new(s, "exclusiveMaximum", bound(f, f->lt));
    if (f->has_le)
        json_object_set_new(s, "maximum", bound(f, f->le));
    if (f->enum_values) {
        json_t *e = json_array();
        for (const char *const *v = f->enum_values; *v; v++)
            json_array_append_new(e, json_string(*v));
        if (f->nullable)
            json_array_append_new(e, json_null());
        json_object_set_new(s, "enum", e);
    }
    if (f->has_default)
        json_object_set_new(s, "default", default_value(f));
    if (f->description)
        json_object_set_new(s, "description", json_string(f->description));
    return s;
}

static json_t *object_schema(const roost_schema_t *s)
{
    json_t *props = json_object(), *required = json_array();
    for (size_t i = 0; i < s->nfields; i++) {
        const roost_field_t *f = &s->fields[i];
        json_object_set_new(props, f->name, field_schema(f));
        if (f->required && !f->has_default)
            json_array_append_new(required, json_string(f->name));
    }
    json_t *o = json_pack("{s:s,s:o}", "type", "object", "properties", props);
    if (json_array_size(required))
        json_object_set_new(o, "required", required);
    else
        json_decref(required);
    if (s->forbid_extra)
        json_object_set_new(o, "additionalProperties", json_false());
    return o;
}

static const roost_field_t *find_field(const roost_schema_t *s, const char *name)
{
    for (size_t i = 0; s && i < s->nfields; i++)
        if (!strcmp(s->fields[i].name, name))
            return &s->fields[i];
    return NULL;
}

static json_t *parameter(const char *name, const char *in, int required, json_t *schema,
                         const char *description)
{
    json_t *p = json_pack("{s:s,s:s,s:b,s:o}", "name", name, "in", in, "required", required,
                          "schema", schema);
    if (description)
        json_object_set_new(p, "description", json_string(description));
    return p;
}

/* "/tasks/{id:int}" -> "/tasks/{id}": OpenAPI names a parameter; its type is in its schema. */
static char *openapi_path(const char *tmpl)
{
    char *out = malloc(strlen(tmpl) + 1), *o = out;
    if (!out)
        return NULL;
    int in_param = 0;
    for (const char *p = tmpl; *p; p++) {
        if (*p == '{')
            in_param = 1;
        else if (*p == '}')
            in_param = 0;
        else if (in_param == 1 && *p == ':')
            in_param = 2; /* skip the type up to '}' */
        if (in_param != 2)
            *o++ = *p;
    }
    *o = '\0';
    return out;
}

/* FastAPI's operationId shape: "get_tasks__id__", unique per method and template. */
static json_t *operation_id(const route_t *rt, const char *path)
{
    char id[256];
    size_t n = 0;
    for (const char *p = rt->opts.method; *p && n < sizeof id - 1; p++)
        id[n++] = (char)tolower((unsigned char)*p);
    for (const char *p = path; *p && n < sizeof id - 1; p++)
        id[n++] = isalnum((unsigned char)*p) ? *p : '_';
    id[n] = '\0';
    return json_string(id);
}

static json_t *parameters(const route_t *rt)
{
    json_t *list = json_array();
    for (int i = 0; i < rt->nparams; i++) {
        const char *name = rt->param_names[i];
        const roost_field_t *f = find_field(rt->opts.path_params, name);
        json_t *schema =
            f ? field_schema(f)
              : json_pack("{s:s}", "type", rt->param_types[i] == PARAM_INT ? "integer" : "string");
        const char *desc = f && f->description                ? f->description
                           : rt->param_types[i] == PARAM_PATH ? "the rest of the path, slashes "
                                                                "included"
                                                              : NULL;
        json_array_append_new(list, parameter(name, "path", 1, schema, desc));
    }
    const roost_schema_t *q = rt->opts.query;
    for (size_t i = 0; q && i < q->nfields; i++) {
        const roost_field_t *f = &q->fields[i];
        json_array_append_new(list, parameter(f->name, "query", f->required && !f->has_default,
                                              field_schema(f), f->description));
    }
    return list;
}

static int is_secured(const http_server_t *hs, const route_t *rt)
{
    for (int i = 0; i < hs->nsecured; i++)
        for (const char *const *r = hs->secured[i]; *r; r++)
            if (!strcmp(*r, rt->name))
                return 1;
    return 0;
}

/* Whether the validator may answer 422 before the handler: a schema, or a typed parameter. */
static int may_refuse(const route_t *rt)
{
    if (rt->opts.query || rt->opts.path_params || rt->opts.body)
        return 1;
    for (int i = 0; i < rt->nparams; i++)
        if (rt->param_types[i] == PARAM_INT)
            return 1;
    return 0;
}

static json_t *json_content(json_t *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

static json_t *responses(const route_t *rt, int secured)
{
    json_t *r = json_object();
    char code[8];
    snprintf(code, sizeof code, "%d", rt->opts.status ? rt->opts.status : 200);
    json_t *ok = json_pack("{s:s}", "description", "Successful Response");
    if (rt->opts.response)
        json_object_set_new(ok, "content", json_content(object_schema(rt->opts.response)));
    json_object_set_new(r, code, ok);
    if (secured)
        json_object_set_new(
            r, "401",
            json_pack("{s:s,s:o}", "description", "Not authenticated", "content",
                      json_content(json_pack("{s:s,s:{s:{s:s}}}", "type", "object", "properties",
                                             "detail", "type", "string"))));
    if (may_refuse(rt))
        json_object_set_new(
            r, "422",
            json_pack("{s:s,s:o}", "description", "Validation Error", "content",
                      json_content(
                          json_pack("{s:s}", "$ref", "#/components/schemas/HTTPValidationError"))));
    return r;
}

static json_t *operation(const http_server_t *hs, const route_t *rt, const char *path,
                         json_t *all_tags)
{
    const roost_route_opts_t *o = &rt->opts;
    json_t *op = json_object();
    if (o->tags) {
        json_t *tags = json_array();
        for (const char *const *t = o->tags; *t; t++) {
            json_array_append_new(tags, json_string(*t));
            if (!json_object_get(all_tags, *t))
                json_object_set_new(all_tags, *t, json_true());
        }
        json_object_set_new(op, "tags", tags);
    }
    if (o->summary)
        json_object_set_new(op, "summary", json_string(o->summary));
    if (o->description)
        json_object_set_new(op, "description", json_string(o->description));
    json_object_set_new(op, "operationId", operation_id(rt, path));
    json_t *params = parameters(rt);
    if (json_array_size(params))
        json_object_set_new(op, "parameters", params);
    else
        json_decref(params);
    if (o->body)
        json_object_set_new(
            op, "requestBody",
            json_pack("{s:b,s:o}", "required", 1, "content", json_content(object_schema(o->body))));
    int secured = is_secured(hs, rt);
    json_object_set_new(op, "responses", responses(rt, secured));
    if (secured) /* either scheme will do */
        json_object_set_new(op, "security", json_pack("[{s:[]},{s:[]}]", "bearer", "apiKey"));
    else if (hs->nsecured) /* said outright: this one needs no key */
        json_object_set_new(op, "security", json_array());
    /* The route as roost names it (roost_req_route, roost_routes_text), for tools and tests. */
    json_object_set_new(op, "x-roost-route", json_string(rt->name));
    return op;
}

/* FastAPI's error components, with the input and ctx members pydantic 2 adds. */
static const char validation_schemas[] =
    "{\"ValidationError\": {\"title\": \"ValidationError\", \"type\": \"object\","
    "  \"required\": [\"loc\", \"msg\", \"type\"],"
    "  \"properties\": {"
    "    \"loc\": {\"type\": \"array\","
    "            \"items\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"integer\"}]}},"
    "    \"msg\": {\"type\": \"string\"}, \"type\": {\"type\": \"string\"},"
    "    \"input\": {}, \"ctx\": {\"type\": \"object\"}}},"
    " \"HTTPValidationError\": {\"title\": \"HTTPValidationError\", \"type\": \"object\","
    "  \"properties\": {\"detail\": {\"type\": \"array\","
    "    \"items\": {\"$ref\": \"#/components/schemas/ValidationError\"}}}}}";

static json_t *components(const http_server_t *hs)
{
    json_t *schemas = json_loads(validation_schemas, 0, NULL);
    json_t *c = json_pack("{s:o}", "schemas", schemas);
    if (hs->nsecured) /* RFC 6750 bearer, or the same key in X-API-Key (src/mw/auth.c) */
        json_object_set_new(c, "securitySchemes",
                            json_pack("{s:{s:s,s:s},s:{s:s,s:s,s:s}}", "bearer", "type", "http",
                                      "scheme", "bearer", "apiKey", "type", "apiKey", "in",
                                      "header", "name", "X-API-Key"));
    return c;
}

/* Only the methods OpenAPI has a field for; a route of another method is left out. */
static int documented_method(const char *m)
{
    static const char *const known[] = {"GET",     "PUT",  "POST",  "DELETE",
                                        "OPTIONS", "HEAD", "PATCH", "TRACE"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(m, known[i]))
            return 1;
    return 0;
}

static json_t *build(const http_server_t *hs)
{
    json_t *paths = json_object(), *all_tags = json_object();
    int n = router_count(hs->router);
    for (int id = 1; id <= n; id++) { /* registration order */
        const route_t *rt = router_route(hs->router, id);
        if (!documented_method(rt->opts.method))
            continue;
        char *path = openapi_path(rt->path), method[16];
        if (!path)
            continue;
        size_t i = 0;
        for (; rt->opts.method[i] && i < sizeof method - 1; i++)
            method[i] = (char)tolower((unsigned char)rt->opts.method[i]);
        method[i] = '\0';
        json_t *item = json_object_get(paths, path);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, path, item);
        }
        json_object_set_new(item, method, operation(hs, rt, path, all_tags));
        free(path);
    }
    json_t *tags = json_array();
    const char *name;
    json_t *v;
    json_object_foreach(all_tags, name, v)
        json_array_append_new(tags, json_pack("{s:s}", "name", name));
    json_decref(all_tags);
    /* servers: the document's own origin, whichever host and port it was fetched from */
    return json_pack("{s:s,s:{s:s,s:s},s:[{s:s}],s:o,s:o,s:o}", "openapi", "3.1.0", "info", "title",
                     "roost", "version", ROOST_VERSION, "servers", "url", "/", "paths", paths,
                     "components", components(hs), "tags", tags);
}

const char *roost_openapi_json(roost_server_t *srv, size_t *len)
{
    http_server_t *hs = http_server(srv);
    pthread_mutex_lock(&doc_lock);
    if (!hs->openapi) {
        json_t *doc = build(hs);
        hs->openapi = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
    }
    pthread_mutex_unlock(&doc_lock);
    if (len)
        *len = hs->openapi ? strlen(hs->openapi) : 0;
    return hs->openapi;
}

int http_openapi_secure(roost_server_t *srv, const char *const *routes)
{
    http_server_t *hs = http_server(srv);
    const char *const **more = realloc(hs->secured, (size_t)(hs->nsecured + 1) * sizeof *more);
    if (!more)
        return -ENOMEM;
    more[hs->nsecured++] = routes;
    hs->secured = more;
    return 0;
}

char *roost_routes_text(roost_server_t *srv)
{
    const router_t *r = http_server(srv)->router;
    sbuf_t out = {0};
    int rc = sbuf_puts(&out, ""); /* "" for a server without routes */
    for (int id = 1; id <= router_count(r) && rc == 0; id++)
        rc = sbuf_printf(&out, "%s\n", router_route(r, id)->name);
    if (rc < 0) {
        sbuf_free(&out);
        return NULL;
    }
    return out.p;
}
