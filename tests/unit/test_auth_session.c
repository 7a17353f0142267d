/* The dashboard's session cookie (src/mw/auth_session.c): a minted value passes until its
 * expiry, among other cookies; any change to it, another secret, or another cookie's name fails. */
#include <errno.h>
#include <string.h>

#include "mw/mw.h"
#include "unit.h"

static int check_cookie(const unsigned char *secret, const char *header, long long now)
{
    return mw_session_check(secret, header, strlen(header), now);
}

TEST(session_cookie_passes_until_its_expiry_and_only_under_its_secret)
{
    unsigned char secret[MW_SESSION_SECRET], other[MW_SESSION_SECRET];
    CHECK_EQ_INT(mw_session_secret(secret), 0);
    CHECK_EQ_INT(mw_session_secret(other), 0);
    CHECK(memcmp(secret, other, sizeof secret) != 0);
    char value[96], header[160];
    CHECK_EQ_INT(mw_session_mint(secret, 2000, value, sizeof value), 0);
    snprintf(header, sizeof header, "a=1; roost_session=%s; b=2", value);
    CHECK(check_cookie(secret, header, 1999));
    CHECK(!check_cookie(secret, header, 2000)); /* expired */
    CHECK(!check_cookie(other, header, 1999));  /* another process's */
    CHECK_EQ_INT(mw_session_mint(secret, 2000, value, 20), -ENOSPC);
}

TEST(session_cookie_refuses_any_change)
{
    unsigned char secret[MW_SESSION_SECRET];
    CHECK_EQ_INT(mw_session_secret(secret), 0);
    char value[96], header[160];
    CHECK_EQ_INT(mw_session_mint(secret, 5000, value, sizeof value), 0);
    for (size_t i = 0; i < strlen(value); i++) {
        char saved = value[i];
        value[i] = saved == '1' ? '2' : '1';
        snprintf(header, sizeof header, "roost_session=%s", value);
        CHECK(!check_cookie(secret, header, 10));
        value[i] = saved;
    }
    snprintf(header, sizeof header, "xroost_session=%s", value);
    CHECK(!check_cookie(secret, header, 10));
    snprintf(header, sizeof header, "roost_session=%s0", value); /* a longer MAC */
    CHECK(!check_cookie(secret, header, 10));
    CHECK(!check_cookie(secret, "roost_session=", 10));
    CHECK(!check_cookie(secret, "", 10));
    CHECK(!mw_session_check(secret, NULL, 0, 10));
    snprintf(header, sizeof header, "roost_session=%s", value);
    CHECK(check_cookie(secret, header, 10));
}
