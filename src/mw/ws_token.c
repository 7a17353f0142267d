/* WebSocket tokens (--ws-token-secret): a JWT (RFC 7519) in ?token= that a route checks before
 * it upgrades. Only alg HS256 (RFC 7518 §3.2) is accepted, never "none" nor an algorithm the
 * token chooses; the MAC is libcrypto's HMAC, compared in constant time. sub must be the user,
 * exp must not have passed, and a rooms claim, when there is one, must list the room. Not the
 * API keys (auth.c). */
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <time.h>

#include "base/base.h"

#define TOKEN_MAX 4096

/* A JSON object from one base64url part of the token; NULL when it is not one. */
static json_t *decode_part(const char *p, size_t n)
{
    unsigned char raw[TOKEN_MAX];
    int len = b64url_decode(p, n, raw, sizeof raw);
    if (len < 0)
        return NULL;
    json_t *j = json_loadb((const char *)raw, (size_t)len, 0, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* 0 when the signature over "header.payload" is the secret's HS256; -EACCES else. */
static int check_signature(const char *secret, const char *token, size_t signed_len,
                           const char *sig, size_t sig_len)
{
    unsigned char want[EVP_MAX_MD_SIZE], got[64];
    unsigned int want_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)token, signed_len,
              want, &want_len))
        return -EACCES;
    int got_len = b64url_decode(sig, sig_len, got, sizeof got);
    if (got_len != (int)want_len || CRYPTO_memcmp(want, got, want_len) != 0)
        return -EACCES;
    return 0;
}

/* 401 for a token that proves nothing, 403 for a good token that does not allow this; 0. */
static int verify(const char *secret, const char *token, const char *room, const char *user,
                  const char **why)
{
    size_t n = strlen(token);
    const char *dot1 = memchr(token, '.', n);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - token)) : NULL;
    *why = "Invalid token";
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', n - (size_t)(dot2 + 1 - token)))
        return 401;
    json_t *head = decode_part(token, (size_t)(dot1 - token));
    const char *alg = json_string_value(json_object_get(head, "alg"));
    int hs256 = alg && !strcmp(alg, "HS256");
    json_decref(head);
    if (!hs256)
        return 401; /* "none", RS256 with our secret as a public key, or no header at all */
    if (check_signature(secret, token, (size_t)(dot2 - token), dot2 + 1,
                        n - (size_t)(dot2 + 1 - token)) < 0)
        return 401;
    json_t *claims = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!claims)
        return 401;
    int status = 0;
    json_t *exp = json_object_get(claims, "exp"), *rooms = json_object_get(claims, "rooms");
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    if (!json_is_number(exp) || json_number_value(exp) <= (double)time(NULL)) {
        *why = "Token expired";
        status = 401;
    } else if (!sub || strcmp(sub, user) != 0) {
        *why = "Token is for another user";
        status = 403;
    } else if (rooms) {
        size_t i;
        json_t *r;
        status = 403;
        *why = "Token does not allow this room";
        json_array_foreach(rooms, i, r)
        {
            if (json_is_string(r) && !strcmp(json_string_value(r), room))
                status = 0;
        }
    }
    json_decref(claims);
    return status;
}

int roost_ws_token_check(roost_req_t *req, const char *room, const char *user)
{
    roost_server_t *srv = roost_req_server(req);
    const char *secret = roost_server_config(srv)->auth.ws_token_secret;
    if (!secret || !*secret)
        return 0;
    const char *token = roost_req_query_str(req, "token");
    const char *why = "Not authenticated";
    int status = 401;
    if (token && *token && strlen(token) < TOKEN_MAX)
        status = verify(secret, token, room, user, &why);
    if (status == 0)
        return 0;
    roost_counter_add(roost_counter(srv, "roost_auth_refused_total", "check=\"ws_token\"",
                                    "Requests refused for want of a key"),
                      1);
    if (status == 401)
        roost_res_header(req, "WWW-Authenticate", "Bearer");
    roost_respond_error(req, status, why);
    return -EACCES;
}
