/* API keys (--api-key, --api-keys-file): a middleware that answers 401 to a request for one of
 * the routes the application lists unless it carries a key (Authorization: Bearer KEY or
 * X-API-Key: KEY). Keys are kept as SHA-256 digests and compared with CRYPTO_memcmp against
 * every key, so neither the time nor the length of the key tells a guesser anything. A browser
 * trades a key for a session cookie (POST /auth/session; auth_session.c), which then passes too.
 * Not the WebSocket tokens (ws_token.c). */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/core.h"
#include "http/http.h"
#include "mw/mw.h"
#include "net/net.h"

#define KEYS_MAX 1024

typedef struct {
    unsigned char (*digests)[32];
    int n;
    const char *const *routes;               /* the application's, static */
    unsigned char secret[MW_SESSION_SECRET]; /* signs the session cookies */
} keyset_t;

static void keyset_free(void *ctx)
{
    keyset_t *k = ctx;
    if (!k)
        return;
    OPENSSL_cleanse(k->digests, (size_t)k->n * 32);
    OPENSSL_cleanse(k->secret, sizeof k->secret);
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

/* 1 when req carries one of the keys in a header; 0 when it carries none or a wrong one. */
static int has_header_key(const keyset_t *k, roost_req_t *req)
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

/* 1 when req carries a key, or a session cookie that a key bought and that has not expired. */
static int has_key(const keyset_t *k, roost_req_t *req)
{
    if (has_header_key(k, req))
        return 1;
    roost_str_t c = roost_req_header(req, "Cookie");
    return c.ptr && mw_session_check(k->secret, c.ptr, c.len, (long long)time(NULL));
}

static void refuse(roost_req_t *req)
{
    roost_counter_add(roost_counter(roost_req_server(req), "roost_auth_refused_total",
                                    "check=\"api_key\"", "Requests refused for want of a key"),
                      1);
    roost_res_header(req, "WWW-Authenticate", "Bearer");
    roost_respond_error(req, 401, "Not authenticated");
}

/* POST /auth/session: a key in a header (never a cookie: a session does not extend itself)
 * buys a session cookie. HttpOnly: the page's scripts never see it; SameSite=Strict: another
 * site's page cannot make the browser send it (no cross-site request forgery); Secure over
 * TLS. The page keeps no key: the browser sends the cookie with fetch and EventSource alike. */
static void session_login(roost_req_t *req, void *ud)
{
    const keyset_t *k = ud;
    if (!has_header_key(k, req)) {
        refuse(req);
        return;
    }
    char tok[96], cookie[256];
    long long exp = (long long)time(NULL) + MW_SESSION_MAX_AGE_S;
    int tls = req->conn && req->conn->tls;
    if (mw_session_mint(k->secret, exp, tok, sizeof tok) < 0) {
        roost_respond_error(req, 500, "Cannot make a session");
        return;
    }
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s",
             MW_SESSION_COOKIE, tok, MW_SESSION_MAX_AGE_S, tls ? "; Secure" : "");
    roost_res_header(req, "Set-Cookie", cookie);
    roost_res_header(req, "Cache-Control", "no-store");
    roost_respond(req, 204, NULL, NULL, 0);
}

/* DELETE /auth/session: the browser forgets its cookie (signing out). */
static void session_logout(roost_req_t *req, void *ud)
{
    (void)ud;
    roost_res_header(req, "Set-Cookie",
                     MW_SESSION_COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    roost_respond(req, 204, NULL, NULL, 0);
}

static const char *const session_tags[] = {"auth", NULL};

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
    refuse(req);
}

int roost_require_api_key(roost_server_t *srv, const char *const *routes)
{
    const roost_auth_config_t *a = &roost_server_config(srv)->auth;
    int has_file = a->api_keys_file && *a->api_keys_file;
    if (!a->api_keys.n && !has_file)
        return 0;
    keyset_t *k = calloc(1, sizeof *k);
    if (!k || !(k->digests = calloc(KEYS_MAX, 32)) || auth_slot() < 0 ||
        mw_session_secret(k->secret) < 0) {
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
    if (rc == 0)
        rc = roost_route_ex(srv, &(roost_route_opts_t){.method = "POST",
                                                       .path = "/auth/session",
                                                       .handler = session_login,
                                                       .ud = k,
                                                       .status = 204,
                                                       .tags = session_tags,
                                                       .summary = "A session cookie for a key"});
    if (rc == 0)
        rc = roost_route_ex(srv, &(roost_route_opts_t){.method = "DELETE",
                                                       .path = "/auth/session",
                                                       .handler = session_logout,
                                                       .status = 204,
                                                       .tags = session_tags,
                                                       .summary = "Ends the session"});
    if (rc < 0 || (rc = http_openapi_secure(srv, routes)) < 0 || (rc = roost_use(srv, &mw)) < 0) {
        keyset_free(k);
        return rc;
    }
    keyset_free(core_server_ctx_set(srv, auth_slot(), k));
    return 0;
}
