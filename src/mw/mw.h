/* The mw layer's inside: the pieces of the built-in middleware that are worth testing alone.
 * GCRA arithmetic and rate-limit policy specs (gcra.c), the bounded table of clients shared by
 * the loops (rl_table.c). The middleware themselves are in the public API (roost.h); this header
 * is not, and holds nothing about HTTP. */
#ifndef ROOST_MW_H
#define ROOST_MW_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* ---- gcra.c: the generic cell rate algorithm (ATM's GCRA, as in redis-cell or throttled) ----
 * One stored value per client: its theoretical arrival time (TAT), the time at which its bucket
 * would be full again. A request at `now` is allowed when now >= max(TAT, now) + T - burst * T;
 * then TAT becomes max(TAT, now) + T. No timestamps kept, no window edges. */
typedef struct {
    int64_t interval_ns; /* T: the period divided by the count (10/m: 6 s) */
    int64_t burst;       /* requests allowed at once, >= 1 */
} mw_gcra_t;

typedef struct {
    int allowed;
    int64_t tat;       /* what to store: the new TAT when allowed, the stored one when not */
    long remaining;    /* requests allowed right after this one (0 when refused) */
    int64_t retry_ns;  /* refused: until one request is allowed; 0 when allowed */
    int64_t window_ns; /* until `remaining` grows by one (the IETF field's t) */
    int64_t reset_ns;  /* until the whole burst is back */
} mw_gcra_result_t;

/* stored: the client's TAT, 0 (or any time before now) for a client not seen lately. Inline:
 * it runs under a stripe's lock on every request a policy covers, and the call with its result
 * through memory was half its cost (callgrind, /json with a rate limit). */
static inline void mw_gcra_check(const mw_gcra_t *g, int64_t stored, int64_t now,
                                 mw_gcra_result_t *out)
{
    int64_t t = g->interval_ns;
    if (stored <= now) { /* a full bucket: no division (remaining is burst - 1) */
        *out = (mw_gcra_result_t){.allowed = 1,
                                  .tat = now + t,
                                  .remaining = (long)g->burst - 1,
                                  .window_ns = t,
                                  .reset_ns = t};
        return;
    }
    int64_t new_tat = stored + t;
    int64_t allow_at = new_tat - g->burst * t; /* the earliest time this request fits */
    if (now < allow_at) {
        *out = (mw_gcra_result_t){.tat = stored,
                                  .retry_ns = allow_at - now,
                                  .window_ns = allow_at - now,
                                  .reset_ns = stored - now};
        return;
    }
    long remaining = (long)((now - allow_at) / t);
    /* One more request fits once now reaches allow_at + (remaining + 1) * T. */
    *out = (mw_gcra_result_t){.allowed = 1,
                              .tat = new_tat,
                              .remaining = remaining,
                              .window_ns = allow_at + (remaining + 1) * t - now,
                              .reset_ns = new_tat - now};
}
/* Whole seconds for a header, rounded up so a client that waits that long is not refused. */
static inline long mw_ceil_s(int64_t ns)
{
    return ns <= 0 ? 0 : (long)((ns + 999999999) / 1000000000);
}

typedef enum { MW_KEY_IP, MW_KEY_HEADER, MW_KEY_API_KEY } mw_key_kind_t;

#define MW_RL_NAME_MAX 48
typedef struct {
    char name[MW_RL_NAME_MAX]; /* [A-Za-z0-9_.-]; "" until given or defaulted by the caller */
    char *glob;                /* fnmatch pattern on the path, or NULL: every path */
    long count;                /* the rate as written: count per window_s */
    long window_s;             /* 1, 60 or 3600 */
    mw_gcra_t gcra;
    mw_key_kind_t key;
    char *header; /* MW_KEY_HEADER: its name */
    int shadow;
} mw_rl_policy_t;

/* Parses '[PATH_GLOB] rate=N/s|m|h [burst=N] [key=ip|header:NAME|api-key] [shadow]
 * [name=NAME]' into p (glob and header allocated: mw_rl_policy_clear frees them). Returns 0, or
 * -EINVAL with the reason in err. */
int mw_rl_policy_parse(const char *spec, mw_rl_policy_t *p, char *err, size_t errsize);
void mw_rl_policy_clear(mw_rl_policy_t *p);

/* ---- rl_table.c: the clients' TATs, bounded, shared by every loop ----
 * Striped: a key's hash picks one of up to 64 stripes, each with its own lock, hash chains and
 * LRU list, so two loops contend only when they touch the same stripe at the same moment. A
 * stripe that is full forgets its least recently seen key: nothing is lost when that key's TAT
 * is past (it reads as a new client), else the client gets a fresh burst (counted). */
typedef struct mw_rl_table mw_rl_table_t;
mw_rl_table_t *mw_rl_table_new(size_t max_keys);
void mw_rl_table_free(mw_rl_table_t *t);
/* Runs GCRA for (policy, key) at now and stores the result; any thread. policy is any number
 * that keeps apart keys that must not share a bucket (the middleware: its id and the key's kind).
 */
void mw_rl_table_check(mw_rl_table_t *t, unsigned policy, const void *key, size_t len,
                       const mw_gcra_t *g, int64_t now, mw_gcra_result_t *out);
size_t mw_rl_table_keys(mw_rl_table_t *t);
/* Keys forgotten to make room: while their TAT was still ahead (state lost) or already past. */
void mw_rl_table_evictions(mw_rl_table_t *t, long *live, long *expired);

/* ---- a shared table: with --redis, a layer above (src/shared) checks the rate limits in Redis
 * for every node at once; the local table stays the path without it ---- */
typedef struct {
    const mw_rl_policy_t *p;
    const char *key; /* the client's key (the request's arena) */
    size_t key_len;
    int pol;            /* the policy's index in its middleware */
    mw_gcra_result_t r; /* filled for the first `checked` asks */
} mw_rl_ask_t;

typedef struct mw_rl_query {
    mw_rl_ask_t *asks; /* in the policies' order; the store stops after a refusal (not shadow) */
    int n;
    int checked;     /* filled: asks answered (the later ones were not charged) */
    int err;         /* filled: 0, or why the store gave no answer (-ETIMEDOUT, -ENOTCONN...) */
    int fail_closed; /* filled with err: answer 503 (--redis-fail closed) instead of allowing */
} mw_rl_query_t;

/* Called on the loop from on_request: parks req (roost_req_wait) and, once q is filled, calls
 * done(req, q) on the loop from a resume (exactly once). < 0: nothing parked, done not called. */
typedef void (*mw_rl_done_fn)(struct roost_req *req, mw_rl_query_t *q);
typedef int (*mw_rl_remote_fn)(void *ud, struct roost_req *req, mw_rl_query_t *q,
                               mw_rl_done_fn done);
/* Main thread, before the loops run. 0 or -ENOMEM. */
int mw_rl_set_remote(roost_server_t *srv, mw_rl_remote_fn fn, void *ud);

/* ---- auth_session.c: a browser's session cookie, traded for an API key (auth.c) ----
 * The value is "<expiry, unix seconds>.<hex HMAC-SHA256 of it under a per-process secret>". */
#define MW_SESSION_COOKIE    "roost_session"
#define MW_SESSION_SECRET    32
#define MW_SESSION_MAX_AGE_S (8 * 3600) /* a working day; then the page asks for the key again */
int mw_session_secret(unsigned char secret[MW_SESSION_SECRET]); /* random; 0 or -EIO */
/* The cookie's value for a session ending at exp into out: 0, or -ENOSPC / -EIO. */
int mw_session_mint(const unsigned char *secret, long long exp, char *out, size_t cap);
/* 1 when a Cookie header (NULL: none) holds a session cookie of this secret not yet expired. */
int mw_session_check(const unsigned char *secret, const char *cookie_header, size_t len,
                     long long now);

#endif
