/* One upstream call: its place in the upstream's lane on this loop (run now, wait in the
 * bounded queue, or fail at once), its curl easy handle, the response collected into one shared
 * buffer with a size limit, the first-byte timer, retries with backoff, and its one completion.
 * The multi handle that moves the bytes is multi.c's. */
#include "fetch/fetch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct fetch_call {
    fetch_call_t *prev, *next; /* the loop's calls */
    fetch_call_t *wait_next;   /* the lane's queue */
    fetch_loop_t *fl;
    fetch_upstream_t *up; /* NULL: a whole URL from the embedder, no lane */
    int lane;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url, *method;
    char *body;
    size_t body_len;
    long first_byte_ms;
    size_t max_response;
    uint64_t start_ns;
    int attempts, probe;
    unsigned idempotent : 1, waiting : 1, active : 1, in_multi : 1, got_bytes : 1, too_large : 1,
        first_byte_late : 1, done : 1;
    uv_timer_t timer; /* first byte, retry backoff, or an error delivered after start returns */
    sbuf_t head;      /* the final response's header lines */
    rbuf_t *resp;     /* its body */
    roost_fetch_error_t err;
    const char *err_text;
    int status;
    fetch_cb cb;
    void *arg;
};

static void finish(fetch_call_t *c);
static void start_attempt(fetch_call_t *c);

/* ---- response bytes ---- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    fetch_call_t *c = ud;
    size_t len = size * n;
    c->got_bytes = 1;
    rbuf_t *b = c->resp;
    size_t have = b ? b->len : 0;
    if (have + len > c->max_response) {
        c->too_large = 1;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    if (!b || have + len > b->cap) {
        size_t cap = b ? b->cap * 2 : 16384;
        while (cap < have + len)
            cap *= 2;
        rbuf_t *nb = rbuf_new(cap);
        if (!nb)
            return 0;
        if (b) {
            memcpy(nb->data, b->data, have);
            nb->len = have;
            rbuf_unref(b);
        }
        c->resp = b = nb;
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return len;
}

/* `Keep-Alive: timeout=N` (RFC 9112 has no such field, but servers send it): reuse an idle
 * connection only while the upstream still keeps it, with a second of margin. */
static void note_keepalive(fetch_call_t *c, const char *v, size_t len)
{
    const char *t = memmem(v, len, "timeout=", 8);
    if (!t || !c->up)
        return;
    long s = strtol(t + 8, NULL, 10);
    if (s > 0)
        atomic_store(&c->up->keepalive_ms, s > 1 ? (s - 1) * 1000 : 500);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    fetch_call_t *c = ud;
    size_t len = size * n;
    c->got_bytes = 1;
    if (len >= 5 && !memcmp(p, "HTTP/", 5))
        c->head.len = 0; /* a new response (after a 100 Continue): keep only the last */
    else if (len > 11 && !strncasecmp(p, "keep-alive:", 11))
        note_keepalive(c, p + 11, len - 11);
    if (c->head.len + len > 65536)
        return 0;
    return sbuf_append(&c->head, p, len) < 0 ? 0 : len;
}

/* ---- setting up ---- */

static int method_idempotent(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < ARRAY_LEN(ok); i++)
        if (!strcmp(m, ok[i]))
            return 1;
    return 0;
}

static int valid_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s))
            return 0;
    return 1;
}

static int build_easy(fetch_call_t *c, const roost_fetch_opts_t *o)
{
    CURL *e = c->easy = curl_easy_init();
    if (!e)
        return -ENOMEM;
    long connect_ms = o->connect_timeout_ms, total_ms = o->timeout_ms;
    if (c->up) {
        if (!connect_ms)
            connect_ms = c->up->connect_timeout_ms;
        if (!total_ms)
            total_ms = c->up->timeout_ms;
    }
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is the caller's answer */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms ? connect_ms : 2000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, total_ms ? total_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    if (c->up) {
        long ka = atomic_load(&c->up->keepalive_ms);
        if (ka > 0)
            curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, ka >= 1000 ? ka / 1000 : 1L);
    }
    /* curl resends a request whose reused connection died before any answer byte, whatever
     * its method; a call that must not run twice gets a new connection instead. */
    if (!c->idempotent)
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    if (!strcmp(c->method, "HEAD"))
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(c->method, "GET"))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
    if (c->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    }
    /* No "Expect: 100-continue" round trip for bodies: upstreams are ours and trusted. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    for (const char *const *p = o->headers; h && p && *p; p++)
        h = curl_slist_append(h, *p);
    if (h && o->traceparent && *o->traceparent) {
        char tp[128];
        snprintf(tp, sizeof tp, "traceparent: %.100s", o->traceparent);
        h = curl_slist_append(h, tp);
    }
    if (!h)
        return -ENOMEM;
    c->hdrs = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    return 0;
}

static char *join_url(const char *base, const char *path)
{
    if (!path)
        path = "/";
    size_t bl = strlen(base), pl = strlen(path);
    int slash = path[0] != '/';
    char *u = malloc(bl + pl + 2);
    if (!u)
        return NULL;
    memcpy(u, base, bl);
    if (slash)
        u[bl++] = '/';
    memcpy(u + bl, path, pl + 1);
    return u;
}

/* ---- the timer: one per call, three uses ---- */

static void on_deliver(uv_timer_t *t)
{
    finish(t->data);
}

static void fail_soon(fetch_call_t *c, roost_fetch_error_t e, const char *text)
{
    c->err = e;
    c->err_text = text;
    uv_timer_start(&c->timer, on_deliver, 0, 0);
}

static void on_first_byte_late(uv_timer_t *t)
{
    fetch_call_t *c = t->data;
    if (c->got_bytes || !c->in_multi)
        return;
    c->first_byte_late = 1;
    fetch_multi_remove(c->fl, c->easy);
    c->in_multi = 0;
    fetch_call_attempt_done(c, CURLE_OPERATION_TIMEDOUT);
}

static void on_retry(uv_timer_t *t)
{
    start_attempt(t->data);
}

/* ---- lanes ---- */

static struct fetch_lane *lane_of(fetch_call_t *c)
{
    return c->up ? &c->fl->lanes[c->lane] : NULL;
}

static void start_attempt(fetch_call_t *c)
{
    c->attempts++;
    c->got_bytes = c->too_large = c->first_byte_late = 0;
    c->head.len = 0;
    rbuf_unref(c->resp);
    c->resp = NULL;
    if (fetch_multi_add(c->fl, c->easy) < 0) {
        fail_soon(c, ROOST_FETCH_RESET, "cannot add the call to the loop");
        return;
    }
    c->in_multi = 1;
    if (c->first_byte_ms > 0)
        uv_timer_start(&c->timer, on_first_byte_late, (uint64_t)c->first_byte_ms, 0);
}

static void lane_run_next(fetch_loop_t *fl, int lane)
{
    struct fetch_lane *l = &fl->lanes[lane];
    while (l->wait_head && l->active < l->max_active && !fl->closing) {
        fetch_call_t *c = l->wait_head;
        l->wait_head = c->wait_next;
        if (!l->wait_head)
            l->wait_tail = NULL;
        l->nwaiting--;
        atomic_fetch_sub(&c->up->waiting, 1);
        c->waiting = 0;
        c->active = 1;
        l->active++;
        atomic_fetch_add(&c->up->active, 1);
        start_attempt(c);
    }
}

static void lane_leave(fetch_call_t *c)
{
    struct fetch_lane *l = lane_of(c);
    if (!l)
        return;
    if (c->waiting) {
        fetch_call_t **p = &l->wait_head, *prev = NULL;
        while (*p && *p != c) {
            prev = *p;
            p = &(*p)->wait_next;
        }
        if (*p)
            *p = c->wait_next;
        if (l->wait_tail == c)
            l->wait_tail = prev;
        l->nwaiting--;
        atomic_fetch_sub(&c->up->waiting, 1);
        c->waiting = 0;
    }
    if (c->active) {
        c->active = 0;
        l->active--;
        atomic_fetch_sub(&c->up->active, 1);
        lane_run_next(c->fl, c->lane);
    }
}

/* ---- start, end ---- */

static void on_call_closed(uv_handle_t *h)
{
    fetch_call_t *c = h->data;
    free(c);
}

static void call_free(fetch_call_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->fl->calls == c)
        c->fl->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->hdrs);
    free(c->url);
    free(c->method);
    free(c->body);
    sbuf_free(&c->head);
    rbuf_unref(c->resp);
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

static void finish(fetch_call_t *c)
{
    if (c->done)
        return;
    c->done = 1;
    uv_timer_stop(&c->timer);
    if (c->in_multi) {
        fetch_multi_remove(c->fl, c->easy);
        c->in_multi = 0;
    }
    lane_leave(c);
    double secs = (double)(time_now_ns() - c->start_ns) / 1e9;
    if (c->up) {
        int counted = c->err != ROOST_FETCH_POOL_FULL && c->err != ROOST_FETCH_CIRCUIT_OPEN &&
                      c->err != ROOST_FETCH_CANCELLED && c->err != ROOST_FETCH_INVALID;
        if (counted)
            fetch_breaker_result(c->up, c->err == ROOST_FETCH_OK && c->status < 500, c->probe,
                                 time_now_ms());
        else if (c->probe) /* the probe never finished: another call may probe */
            atomic_store(&c->up->probing, 0);
        fetch_upstream_count(c->up, c->err, secs);
    }
    roost_fetch_result_t res = {
        .error = c->err,
        .error_text = c->err_text ? c->err_text : "",
        .status = c->status,
        .headers = {c->head.p ? c->head.p : "", c->head.len},
        .body = {c->resp ? c->resp->data : "", c->resp ? c->resp->len : 0},
        .attempts = c->attempts,
        .seconds = secs,
    };
    char *ct = NULL;
    if (c->easy && c->err == ROOST_FETCH_OK &&
        curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        res.content_type = str_make(ct, strlen(ct));
    c->cb(&res, c->resp, c->arg);
    call_free(c);
}

static roost_fetch_error_t classify(fetch_call_t *c, CURLcode rc, const char **text)
{
    *text = curl_easy_strerror(rc);
    if (c->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        *text = "the response is larger than allowed";
        return ROOST_FETCH_TOO_LARGE;
    }
    if (c->first_byte_late) {
        *text = "no response byte in time";
        return ROOST_FETCH_TIMEOUT;
    }
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return ROOST_FETCH_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return ROOST_FETCH_TIMEOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return ROOST_FETCH_INVALID;
    default:
        return ROOST_FETCH_RESET;
    }
}

void fetch_call_attempt_done(fetch_call_t *c, CURLcode rc)
{
    c->in_multi = 0;
    uv_timer_stop(&c->timer);
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        c->status = (int)status;
        c->err = ROOST_FETCH_OK;
        c->err_text = NULL;
    } else {
        c->err = classify(c, rc, &c->err_text);
    }
    /* A kept-alive connection the upstream had closed, found dead before any response byte,
     * is retried once on a new connection by curl itself (Curl_retry_request); what is left
     * here are the configured retries, with exponential backoff from 100 ms. */
    int retry = c->up && c->idempotent && !c->fl->closing && c->attempts <= c->up->retries &&
                (c->err == ROOST_FETCH_CONNECT ||
                 (c->err == ROOST_FETCH_OK && c->status >= 502 && c->status <= 504));
    if (!retry) {
        finish(c);
        return;
    }
    atomic_fetch_add(&c->up->retried, 1);
    uv_timer_start(&c->timer, on_retry, 100u << (c->attempts - 1 < 5 ? c->attempts - 1 : 5), 0);
}

fetch_call_t *fetch_call_start(fetch_loop_t *fl, const roost_fetch_opts_t *o, fetch_cb cb,
                               void *arg)
{
    fetch_call_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fl = fl;
    c->cb = cb;
    c->arg = arg;
    c->start_ns = time_now_ns();
    c->max_response = o->max_response ? o->max_response : FETCH_DEFAULT_MAX_RESPONSE;
    c->first_byte_ms = o->first_byte_timeout_ms;
    uv_timer_init(&fl->loop->uv, &c->timer);
    c->timer.data = c;
    c->next = fl->calls;
    if (fl->calls)
        fl->calls->prev = c;
    fl->calls = c;

    c->method = strdup(o->method ? o->method : "GET");
    if (!c->method) {
        fail_soon(c, ROOST_FETCH_INVALID, "out of memory");
        return c;
    }
    c->idempotent = method_idempotent(c->method);
    if (!valid_token(c->method)) {
        fail_soon(c, ROOST_FETCH_INVALID, "not a method");
        return c;
    }
    if (o->upstream) {
        c->up = fetch_upstream_find(fl->fetch, o->upstream, strlen(o->upstream));
        if (!c->up) {
            fail_soon(c, ROOST_FETCH_INVALID, "unknown upstream");
            return c;
        }
        c->lane = (int)(c->up - fl->fetch->up);
        c->url = join_url(c->up->base, o->url);
    } else if (o->url) {
        c->url = strdup(o->url);
    }
    if (!c->url) {
        fail_soon(c, ROOST_FETCH_INVALID, "no URL");
        return c;
    }
    if (o->body && o->body_len) {
        c->body = malloc(o->body_len);
        if (!c->body) {
            fail_soon(c, ROOST_FETCH_INVALID, "out of memory");
            return c;
        }
        memcpy(c->body, o->body, o->body_len);
        c->body_len = o->body_len;
    }
    if (build_easy(c, o) < 0) {
        fail_soon(c, ROOST_FETCH_INVALID, "out of memory");
        return c;
    }
    if (fl->closing) {
        fail_soon(c, ROOST_FETCH_CANCELLED, "the server is stopping");
        return c;
    }
    if (!c->up) {
        start_attempt(c);
        return c;
    }
    if (fetch_breaker_enter(c->up, time_now_ms(), &c->probe) < 0) {
        fail_soon(c, ROOST_FETCH_CIRCUIT_OPEN, "the upstream's circuit is open");
        return c;
    }
    struct fetch_lane *l = lane_of(c);
    if (l->active < l->max_active) {
        c->active = 1;
        l->active++;
        atomic_fetch_add(&c->up->active, 1);
        start_attempt(c);
    } else if (l->nwaiting < l->max_waiting) {
        c->waiting = 1;
        LIST_APPEND(l->wait_head, l->wait_tail, c, wait_next);
        l->nwaiting++;
        atomic_fetch_add(&c->up->waiting, 1);
    } else {
        if (c->probe) { /* the probe never went: let another call probe */
            atomic_store(&c->up->probing, 0);
            c->probe = 0;
        }
        fail_soon(c, ROOST_FETCH_POOL_FULL, "every connection is busy and the queue is full");
    }
    return c;
}

void fetch_call_cancel(fetch_call_t *c)
{
    if (c->done)
        return;
    c->err = ROOST_FETCH_CANCELLED;
    c->err_text = "cancelled";
    c->status = 0;
    finish(c);
}

void fetch_calls_abort(fetch_loop_t *fl)
{
    while (fl->calls) /* a finished call leaves the list */
        fetch_call_cancel(fl->calls);
}
