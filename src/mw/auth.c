/* API keys (--api-key, --api-keys-file): a middleware that answers 401 to a request for one of
 * the routes the application lists unless it carries a key (Authorization: Bearer KEY or
 * X-API-Key: KEY). Keys are kept as SHA-256 digests and compared with CRYPTO_memcmp against
 * every key, so neither the time nor the length of the key tells a guesser anything. Not the
 * WebSocket tokens (ws_token.c). */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "http/http.h"

#define KEYS_MAX 1024

typedef struct {
    unsigned char (*digests)[32];
    int n;
    const char *const *routes; /* the application's, static */
} keyset_t;

static void keyset_free(void *ctx)
{
    keyset_t *k = ctx;
    if (!k)
        return;
    OPENSSL_cleanse(k->digests, (size_t)k->n * 32);
    free(k->digests);
    free(k);
}

static CORE_SLOT_FN(auth_slot, .name = "auth", .server_free = keyset_free)

static void digest(const char *p, size_t n, unsigned char out[32])
{
    unsigned len = 32;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

static int add_key(keyset_t *k, const char *p, size_t n)
{
    while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    while (n && (*p == ' ' || *p == '\t'))
        p++, n--;
    if (!n || *p == '#') /* blank lines and comments in the file */
        return 0;
    if (k->n == KEYS_MAX)
        return -E2BIG;
    digest(p, n, k->digests[k->n++]);
    return 0;
}

static int load_file(keyset_t *k, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    char line[4096];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f))
        rc = add_key(k, line, strcspn(line, "\n"));
    fclose(f);
    return rc;
}

/* 1 when req carries one of the keys. */
static int has_key(const keyset_t *k, roost_req_t *req)
{
    roost_str_t v = roost_req_header(req, "X-API-Key");
    if (!v.ptr) {
        roost_str_t a = roost_req_header(req, "Authorization");
        /* RFC 6750 §2.1: the scheme is case-insensitive, then one space. */
        if (!a.ptr || a.len < 7 || strncasecmp(a.ptr, "Bearer ", 7) != 0)
            return 0;
        v = (roost_str_t){a.ptr + 7, a.len - 7};
    }
    unsigned char d[32];
    digest(v.ptr, v.len, d);
    int found = 0;
    for (int i = 0; i < k->n; i++) /* every key, whichever matches */
        found |= CRYPTO_memcmp(d, k->digests[i], 32) == 0;
    return found;
}

static void api_key_request(roost_req_t *req, void *ctx, void *ud)
{
    const keyset_t *k = ud;
    (void)ctx;
    const char *route = roost_req_route(req);
    if (!route)
        return;
    int listed = 0;
    for (const char *const *r = k->routes; *r && !listed; r++)
        listed = !strcmp(*r, route);
    if (!listed || has_key(k, req))
        return;
    roost_counter_add(roost_counter(roost_req_server(req), "roost_auth_refused_total",
                                    "check=\"api_key\"", "Requests refused for want of a key"),
                      1);
    roost_res_header(req, "WWW-Authenticate", "Bearer");
    roost_respond_error(req, 401, "Not authenticated");
}

int roost_require_api_key(roost_server_t *srv, const char *const *routes)
{
    const roost_auth_config_t *a = &roost_server_config(srv)->auth;
    int has_file = a->api_keys_file && *a->api_keys_file;
    if (!a->api_keys.n && !has_file)
        return 0;
    keyset_t *k = calloc(1, sizeof *k);
    if (!k || !(k->digests = calloc(KEYS_MAX, 32)) || auth_slot() < 0) {
        keyset_free(k);
        return -ENOMEM;
    }
    k->routes = routes;
    int rc = 0;
    for (int i = 0; i < a->api_keys.n && rc == 0; i++)
        rc = add_key(k, a->api_keys.v[i], strlen(a->api_keys.v[i]));
    if (rc == 0 && has_file && (rc = load_file(k, a->api_keys_file)) < 0)
        log_error("--api-keys-file %s: %s", a->api_keys_file, strerror(-rc));
    if (rc == 0 && k->n == 0) {
        log_error("--api-keys-file %s: no key in it", a->api_keys_file);
        rc = -EINVAL;
    }
    roost_middleware_t mw = {.name = "api_key", .on_request = api_key_request, .ud = k};
    if (rc < 0 || (rc = http_openapi_secure(srv, routes)) < 0 || (rc = roost_use(srv, &mw)) < 0) {
        keyset_free(k);
        return rc;
    }
    keyset_free(core_server_ctx_set(srv, auth_slot(), k));
    return 0;
}
