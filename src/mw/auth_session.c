/* Session cookies for a browser (the dashboard) when API keys are set: a page cannot put a key
 * in an EventSource's headers, so it trades the key once (POST /auth/session, auth.c) for a
 * cookie holding "<expiry>.<HMAC-SHA256(secret, expiry)>", checked in constant time. The
 * secret is random per process: a restart ends every session. Not the keys (auth.c). */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "mw/mw.h"

#define MAC_HEX 64

int mw_session_secret(unsigned char secret[MW_SESSION_SECRET])
{
    return RAND_bytes(secret, MW_SESSION_SECRET) == 1 ? 0 : -EIO;
}

/* The MAC of an expiry, as 64 lowercase hex digits and a NUL. */
static int mac_hex(const unsigned char *secret, long long exp, char out[MAC_HEX + 1])
{
    char msg[48];
    int n = snprintf(msg, sizeof msg, "roost-session.%lld", exp);
    unsigned char mac[32];
    unsigned len = sizeof mac;
    if (!HMAC(EVP_sha256(), secret, MW_SESSION_SECRET, (const unsigned char *)msg, (size_t)n, mac,
              &len) ||
        len != sizeof mac)
        return -EIO;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < sizeof mac; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[MAC_HEX] = '\0';
    return 0;
}

int mw_session_mint(const unsigned char *secret, long long exp, char *out, size_t cap)
{
    char mac[MAC_HEX + 1];
    if (mac_hex(secret, exp, mac) < 0)
        return -EIO;
    int n = snprintf(out, cap, "%lld.%s", exp, mac);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : 0;
}

/* The value of cookie `name` in a Cookie header ("a=1; b=2", RFC 6265 §5.4), or NULL. */
static const char *cookie_value(const char *h, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = h + len;
    while (h < end) {
        while (h < end && (*h == ' ' || *h == ';'))
            h++;
        const char *pair = h;
        while (h < end && *h != ';')
            h++;
        if ((size_t)(h - pair) > nl && !memcmp(pair, name, nl) && pair[nl] == '=') {
            *vlen = (size_t)(h - pair) - nl - 1;
            return pair + nl + 1;
        }
    }
    return NULL;
}

int mw_session_check(const unsigned char *secret, const char *cookie_header, size_t len,
                     long long now)
{
    size_t vl = 0;
    const char *v = cookie_header ? cookie_value(cookie_header, len, MW_SESSION_COOKIE, &vl) : NULL;
    if (!v)
        return 0;
    long long exp = 0;
    size_t i = 0;
    for (; i < vl && i < 18 && v[i] >= '0' && v[i] <= '9'; i++)
        exp = exp * 10 + (v[i] - '0');
    if (i == 0 || i >= vl || v[i] != '.' || vl - i - 1 != MAC_HEX)
        return 0;
    char want[MAC_HEX + 1];
    if (mac_hex(secret, exp, want) < 0)
        return 0;
    /* Constant time over the whole MAC; the expiry is checked only once the MAC holds. */
    return CRYPTO_memcmp(want, v + i + 1, MAC_HEX) == 0 && exp > now;
}
