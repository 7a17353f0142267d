/* The router: a trie of path segments; each node holds literal children, at most one
 * parameter child, and the routes that end there by method. Literals win over parameters,
 * with backtracking, so "/users/me" and "/users/{id}" coexist. Matching allocates nothing.
 * Each route keeps all it was registered with (roost_route_opts_t), for the validator and the
 * OpenAPI document; router_each walks them. */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct method_route {
    struct method_route *next;
    char method[16];
    route_t route;
} method_route_t;

typedef struct node {
    char *seg;             /* literal segment, or NULL for the parameter child */
    size_t seg_len;        /* kept: matching compares lengths first, without strlen */
    struct node *children; /* literal children */
    struct node *sibling;
    struct node *param; /* the {name} child */
    struct node *rest;  /* the {name:path} child: the rest of the path, slashes included */
    method_route_t *routes;
    /* With many literal children (the root has one per top-level path): an open-addressed
     * index of them by seg_hash, so a match does not walk the whole sibling list. */
    struct node **index;
    size_t index_size; /* a power of two, or 0: no index */
    int nchildren;
} node_t;

#define INDEX_FROM 8 /* children before a node gets an index */

struct router {
    node_t root;
    route_t **by_id; /* by_id[id - 1]: routes never move (each method_route_t is its own block) */
    int nroutes, cap;
};

router_t *router_new(void)
{
    return calloc(1, sizeof(router_t));
}

static void free_node(node_t *n)
{
    node_t *c = n->children;
    while (c) {
        node_t *next = c->sibling;
        free_node(c);
        free(c);
        c = next;
    }
    if (n->param) {
        free_node(n->param);
        free(n->param);
    }
    if (n->rest) {
        free_node(n->rest);
        free(n->rest);
    }
    method_route_t *m = n->routes;
    while (m) {
        method_route_t *next = m->next;
        free(m->route.name);
        free(m->route.path);
        for (int i = 0; i < m->route.nparams; i++)
            free(m->route.param_names[i]);
        free(m);
        m = next;
    }
    free(n->seg);
    free(n->index);
}

void router_free(router_t *r)
{
    if (!r)
        return;
    free_node(&r->root);
    free(r->by_id);
    free(r);
}

/* Whether literal child c is the segment p[0..len). The first byte before memcmp: most
 * siblings differ there, and the root has one child per top-level path. */
static int seg_is(const node_t *c, const char *p, size_t len)
{
    return c->seg_len == len && (len == 0 || c->seg[0] == p[0]) && !memcmp(c->seg, p, len);
}

static size_t seg_hash(const char *p, size_t len)
{
    return len ? len * 31 + (unsigned char)p[0] * 7 + (unsigned char)p[len - 1] : 0;
}

/* The literal child of n that is p[0..len), or NULL. */
static node_t *child_of(const node_t *n, const char *p, size_t len)
{
    if (n->index) {
        size_t mask = n->index_size - 1;
        for (size_t h = seg_hash(p, len) & mask; n->index[h]; h = (h + 1) & mask)
            if (seg_is(n->index[h], p, len))
                return n->index[h];
        return NULL;
    }
    for (node_t *c = n->children; c; c = c->sibling)
        if (seg_is(c, p, len))
            return c;
    return NULL;
}

/* Adds c to n's children (and to the index, rebuilt a size up when half full). */
static int add_child(node_t *n, node_t *c)
{
    if (n->nchildren + 1 >= INDEX_FROM && (size_t)(n->nchildren + 1) * 2 > n->index_size) {
        size_t size = 32;
        while (size < (size_t)(n->nchildren + 1) * 4)
            size *= 2;
        node_t **index = calloc(size, sizeof *index);
        if (!index)
            return -ENOMEM;
        free(n->index);
        n->index = index;
        n->index_size = size;
        for (node_t *o = n->children; o; o = o->sibling) {
            size_t h = seg_hash(o->seg, o->seg_len) & (size - 1);
            while (index[h])
                h = (h + 1) & (size - 1);
            index[h] = o;
        }
    }
    if (n->index) {
        size_t h = seg_hash(c->seg, c->seg_len) & (n->index_size - 1);
        while (n->index[h])
            h = (h + 1) & (n->index_size - 1);
        n->index[h] = c;
    }
    c->sibling = n->children;
    n->children = c;
    n->nchildren++;
    return 0;
}

/* Next segment of p (after a '/'); returns its end. */
static const char *seg_end(const char *p, const char *end)
{
    while (p < end && *p != '/')
        p++;
    return p;
}

int router_add(router_t *r, const char *method, const char *tmpl, roost_handler_fn fn, void *ud,
               unsigned flags)
{
    roost_route_opts_t o = {
        .method = method, .path = tmpl, .handler = fn, .ud = ud, .flags = flags};
    return router_add_ex(r, &o);
}

int router_add_ex(router_t *r, const roost_route_opts_t *opts)
{
    const char *method = opts->method, *tmpl = opts->path;
    if (!tmpl || tmpl[0] != '/' || !method || strlen(method) >= 16)
        return -EINVAL;
    route_t route = {0};
    int err;
    node_t *n = &r->root;
    const char *p = tmpl + 1, *end = tmpl + strlen(tmpl);
    while (p <= end && !(p == end && p[-1] == '/' && p - 1 == tmpl)) {
        const char *e = seg_end(p, end);
        size_t len = (size_t)(e - p);
        if (len >= 2 && p[0] == '{' && e[-1] == '}') {
            if (route.nparams == HTTP_MAX_PARAMS)
                goto invalid;
            const char *colon = memchr(p, ':', len);
            size_t nlen = colon ? (size_t)(colon - p - 1) : len - 2;
            uint8_t type = PARAM_STR;
            if (colon) {
                size_t tlen = (size_t)(e - 1 - colon - 1);
                if (tlen == 3 && !strncmp(colon + 1, "int", 3))
                    type = PARAM_INT;
                else if (tlen == 4 && !strncmp(colon + 1, "path", 4) && e == end)
                    type = PARAM_PATH; /* Starlette's {name:path}: only as the last segment */
                else if (!(tlen == 3 && !strncmp(colon + 1, "str", 3)))
                    goto invalid;
            }
            if (nlen == 0)
                goto invalid;
            if (!(route.param_names[route.nparams] = strndup(p + 1, nlen)))
                goto nomem;
            route.param_types[route.nparams++] = type;
            node_t **child = type == PARAM_PATH ? &n->rest : &n->param;
            if (!*child && !(*child = calloc(1, sizeof **child)))
                goto nomem;
            n = *child;
        } else if (memchr(p, '{', len) || memchr(p, '}', len)) {
            goto invalid; /* a parameter must be a whole segment: "{name}" */
        } else {
            node_t *c = child_of(n, p, len);
            if (!c) {
                if (!(c = calloc(1, sizeof *c)) || !(c->seg = strndup(p, len))) {
                    free(c);
                    goto nomem;
                }
                c->seg_len = len;
                if (add_child(n, c) < 0) {
                    free(c->seg);
                    free(c);
                    goto nomem;
                }
            }
            n = c;
        }
        if (e == end)
            break;
        p = e + 1;
    }
    for (method_route_t *m = n->routes; m; m = m->next)
        if (!strcmp(m->method, method)) {
            err = -EEXIST;
            goto fail;
        }
    if (r->nroutes == r->cap) {
        int cap = r->cap ? r->cap * 2 : 32;
        route_t **by = realloc(r->by_id, (size_t)cap * sizeof *by);
        if (!by)
            goto nomem;
        r->by_id = by;
        r->cap = cap;
    }
    method_route_t *m = calloc(1, sizeof *m);
    if (!m)
        goto nomem;
    strcpy(m->method, method);
    route.fn = opts->handler;
    route.ud = opts->ud;
    route.flags = opts->flags;
    size_t nl = strlen(method) + strlen(tmpl) + 2;
    route.name = malloc(nl);
    route.path = strdup(tmpl);
    if (!route.name || !route.path) {
        free(route.name);
        free(route.path);
        free(m);
        goto nomem;
    }
    snprintf(route.name, nl, "%s %s", method, tmpl);
    route.opts = *opts;
    route.opts.method = m->method;
    route.opts.path = route.path;
    route.id = r->nroutes + 1;
    m->route = route;
    m->next = n->routes;
    n->routes = m;
    r->by_id[r->nroutes++] = &m->route;
    return 0;

    /* The nodes made so far stay in the trie, without routes: they never match. */
invalid:
    err = -EINVAL;
    goto fail;
nomem:
    err = -ENOMEM;
fail:
    for (int i = 0; i < route.nparams; i++)
        free(route.param_names[i]);
    return err;
}

int roost_route_ex(roost_server_t *srv, const roost_route_opts_t *opts)
{
    if (!opts || !opts->handler)
        return -EINVAL;
    return router_add_ex(http_server(srv)->router, opts);
}

const route_t *router_route(const router_t *r, int id)
{
    return id >= 1 && id <= r->nroutes ? r->by_id[id - 1] : NULL;
}

int router_count(const router_t *r)
{
    return r->nroutes;
}

static void each_node(const node_t *n, void (*fn)(const route_t *, void *), void *ud)
{
    for (const method_route_t *m = n->routes; m; m = m->next)
        fn(&m->route, ud);
    for (const node_t *c = n->children; c; c = c->sibling)
        each_node(c, fn, ud);
    if (n->param)
        each_node(n->param, fn, ud);
    if (n->rest) /* the {name:path} routes */
        each_node(n->rest, fn, ud);
}

void router_each(const router_t *r, void (*fn)(const route_t *route, void *ud), void *ud)
{
    each_node(&r->root, fn, ud);
}

/* Depth-first: the node reached by the whole path, literals tried before the parameter. */
static const node_t *walk(const node_t *n, const char *p, const char *end, http_param_t *params,
                          int depth, int *nparams)
{
    if (p > end)
        return n;
    const char *e = seg_end(p, end);
    size_t len = (size_t)(e - p);
    const char *next = e == end ? end + 1 : e + 1;
    const node_t *c = child_of(n, p, len); /* literal segments are unique among siblings */
    if (c) {
        const node_t *found = walk(c, next, end, params, depth, nparams);
        if (found && found->routes)
            return found;
    }
    if (n->param && len > 0 && depth < HTTP_MAX_PARAMS) {
        params[depth].value = str_make(p, len);
        const node_t *found = walk(n->param, next, end, params, depth + 1, nparams);
        if (found && found->routes) {
            if (*nparams < depth + 1)
                *nparams = depth + 1;
            return found;
        }
    }
    if (n->rest && n->rest->routes && depth < HTTP_MAX_PARAMS) { /* last: it takes the rest */
        params[depth].value = str_make(p, (size_t)(end - p));
        if (*nparams < depth + 1)
            *nparams = depth + 1;
        return n->rest;
    }
    return NULL;
}

static const route_t *take(const method_route_t *m, http_param_t *params)
{
    for (int i = 0; i < m->route.nparams && i < HTTP_MAX_PARAMS; i++)
        params[i].name = m->route.param_names[i];
    return &m->route;
}

const route_t *router_match(const router_t *r, const char *method, roost_str_t path,
                            http_param_t *params, int *nparams, char *allow, size_t allow_size)
{
    allow[0] = '\0';
    *nparams = 0;
    if (!path.ptr || !path.len || path.ptr[0] != '/')
        return NULL;
    const char *end = path.ptr + path.len;
    const node_t *n =
        path.len == 1 ? &r->root : walk(&r->root, path.ptr + 1, end, params, 0, nparams);
    if (!n || !n->routes)
        return NULL;
    const method_route_t *get = NULL;
    for (const method_route_t *m = n->routes; m; m = m->next) {
        if (!strcmp(m->method, method))
            return take(m, params);
        if (!strcmp(m->method, "GET"))
            get = m;
    }
    if (get && !strcmp(method, "HEAD")) /* RFC 9110 §9.3.2: HEAD is GET without the body */
        return take(get, params);
    /* Known path, other method: list what is allowed, in registration order (the list is
     * newest first). */
    const char *names[33];
    int k = 0;
    for (const method_route_t *m = n->routes; m && k < 32; m = m->next)
        names[k++] = m->method;
    size_t used = 0;
    for (int i = k - 1; i >= 0; i--) {
        const char *name = names[i];
        if (get && !strcmp(name, "HEAD"))
            continue; /* listed after GET */
        int w = snprintf(allow + used, allow_size - used, "%s%s", used ? ", " : "", name);
        if (w < 0 || (size_t)w >= allow_size - used)
            return NULL;
        used += (size_t)w;
        if (!strcmp(name, "GET")) {
            w = snprintf(allow + used, allow_size - used, ", HEAD");
            if (w < 0 || (size_t)w >= allow_size - used)
                return NULL;
            used += (size_t)w;
        }
    }
    return NULL;
}
