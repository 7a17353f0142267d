/* Responses: what a handler sets (status, headers, body) and how it goes on the wire. Every
 * whole response has Date and Content-Length (a stream's head says chunked, see stream.c), and
 * says Connection: close when the connection ends after it, so a client never has to guess. */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUT_LIT(p, lit) put(p, lit, sizeof(lit) - 1)

static char *put_uint(char *p, size_t v)
{
    return str_put_uint(p, v);
}

void http_serialize(roost_req_t *req, const char *date, sbuf_t *out)
{
    int status = req->status;
    const char *reason = http_reason(status);
    size_t type_len = req->res_type ? strlen(req->res_type) : 0;
    int bodyless = status < 200 || status == 204 || status == 304;
    int send_body = !bodyless && req->method != HTTP_HEAD && !req->res_file.done;
    size_t body_len = req->res_file.done ? (size_t)req->res_file.len : http_res_body_len(req);
    /* A shared body this small is copied into the head's write; a larger one goes by
     * reference after it (a second iovec costs more than copying a few KiB). */
    const char *body = req->res_body.p;
    size_t copy_len = req->res_body.len;
    req->res_shared_later = 0;
    if (req->res_shared && send_body) {
        if (req->res_shared_len <= HTTP_SHARED_COPY_MAX) {
            body = req->res_shared->data + req->res_shared_off;
            copy_len = req->res_shared_len;
        } else {
            copy_len = 0;
            req->res_shared_later = 1;
        }
    }
    size_t need =
        160 + strlen(reason) + type_len + req->res_headers.len + (send_body ? copy_len : 0);
    if (sbuf_reserve(out, need) < 0)
        return;
    char *p = out->p + out->len;
    p = PUT_LIT(p, "HTTP/1.1 ");
    if (status >= 100 && status <= 999) { /* three digits (RFC 9110 §15): no loop */
        *p++ = (char)('0' + status / 100);
        *p++ = (char)('0' + status / 10 % 10);
        *p++ = (char)('0' + status % 10);
    } else {
        p = put_uint(p, (size_t)status);
    }
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = PUT_LIT(p, "\r\nServer: roost\r\nDate: ");
    p = put(p, date, 29);
    if (type_len) {
        p = PUT_LIT(p, "\r\nContent-Type: ");
        p = put(p, req->res_type, type_len);
    }
    if (req->streamed) {
        if (req->http_minor == 1)
            p = PUT_LIT(p, "\r\nTransfer-Encoding: chunked");
        send_body = 0; /* the pieces follow as they come */
    } else if (!bodyless) {
        p = PUT_LIT(p, "\r\nContent-Length: ");
        p = put_uint(p, body_len);
    }
    if (req->close_after)
        p = PUT_LIT(p, "\r\nConnection: close");
    else if (req->http_minor == 0)
        p = PUT_LIT(p, "\r\nConnection: keep-alive");
    p = PUT_LIT(p, "\r\n");
    if (req->res_headers.len)
        p = put(p, req->res_headers.p, req->res_headers.len);
    p = PUT_LIT(p, "\r\n");
    if (send_body && copy_len)
        p = put(p, body, copy_len);
    req->res_bytes += send_body ? http_res_body_len(req) : 0;
    out->len = (size_t)(p - out->p);
}

void roost_res_header(roost_req_t *req, const char *name, const char *value)
{
    sbuf_t *h = &req->res_headers;
    size_t nl = strlen(name), vl = strlen(value);
    if (sbuf_reserve(h, nl + vl + 4) < 0)
        return;
    /* A CR or LF in a header would let a value forge headers: drop such a header. */
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return;
    sbuf_append(h, name, nl);
    sbuf_append(h, ": ", 2);
    sbuf_append(h, value, vl);
    sbuf_append(h, "\r\n", 2);
}

/* Takes the answer's status and type; 0, or -EALREADY when the request has one. */
static int respond_begin(roost_req_t *req, int status, const char *content_type)
{
    if (req->status) {
        log_error("%s: a second response was ignored", req->route ? req->route->name : "?");
        return -EALREADY;
    }
    req->status = status;
    req->res_type =
        content_type ? arena_strndup(&req->arena, content_type, strlen(content_type)) : NULL;
    req->res_body.len = 0;
    return 0;
}

static void respond_end(roost_req_t *req);

void roost_respond(roost_req_t *req, int status, const char *content_type, const void *body,
                   size_t len)
{
    if (respond_begin(req, status, content_type) < 0)
        return;
    if (len && sbuf_append(&req->res_body, body, len) < 0) {
        req->status = 503;
        req->res_body.len = 0;
    }
    respond_end(req);
}

void http_respond_shared(roost_req_t *req, int status, const char *content_type, rbuf_t *b,
                         size_t off, size_t len)
{
    if (respond_begin(req, status, content_type) < 0)
        return;
    if (len) {
        req->res_shared = rbuf_ref(b);
        req->res_shared_off = off;
        req->res_shared_len = len;
    }
    respond_end(req);
}

roost_shared_body_t *roost_shared_body_new(const void *data, size_t len)
{
    return rbuf_from(data, len);
}

void roost_shared_body_unref(roost_shared_body_t *b)
{
    rbuf_unref(b);
}

void roost_respond_shared(roost_req_t *req, int status, const char *content_type,
                          roost_shared_body_t *b)
{
    http_respond_shared(req, status, content_type, b, 0, b->len);
}

void http_res_shared_release(roost_req_t *req)
{
    rbuf_unref(req->res_shared);
    req->res_shared = NULL;
    req->res_shared_len = 0;
    req->res_shared_later = 0;
}

/* The answer is made: the middleware's on_headers and filters, then to the session. */
static void respond_end(roost_req_t *req)
{
    if (!req->mw) /* answered before dispatch (a parse error): the global chain */
        http_mw_chain(req, http_server(req->srv), NULL);
    http_mw_respond(req);
    /* On a worker the hand-back (handoff.c) marks it responded, on the loop. */
    if (http_req_phase(req) == HTTP_REQ_ON_WORKER)
        return;
    http_req_set_phase(req, HTTP_REQ_RESPONDED);
    http_req_responded(req);
}

void http_respond_file(roost_req_t *req, int status, const char *content_type, int fd, uint64_t off,
                       uint64_t len, void (*done)(void *arg, int status), void *arg)
{
    if (req->status || req->res_file.done) {
        done(arg, -EINVAL);
        log_error("%s: a second response was ignored", req->route ? req->route->name : "?");
        return;
    }
    req->res_file.fd = fd;
    req->res_file.off = off;
    req->res_file.len = len;
    req->res_file.done = done;
    req->res_file.arg = arg;
    roost_respond(req, status, content_type, NULL, 0);
}

void http_res_file_release(roost_req_t *req)
{
    void (*done)(void *, int) = req->res_file.done;
    req->res_file.done = NULL;
    if (done)
        done(req->res_file.arg, -ECANCELED);
}

int roost_res_status(const roost_req_t *req)
{
    return req->status;
}

void roost_res_set_status(roost_req_t *req, int status)
{
    if (status >= 100 && status <= 999)
        req->status = status;
}

uint64_t roost_req_elapsed_ns(const roost_req_t *req)
{
    return time_now_ns() - req->start_ns;
}

void roost_respond_json(roost_req_t *req, int status, json_t *body)
{
    if (!body) { /* a json_pack that failed (bad UTF-8, no memory) */
        static const char fallback[] = "{\"detail\":\"Internal Server Error\"}";
        roost_respond(req, 500, "application/json", fallback, sizeof fallback - 1);
        return;
    }
    char small[512];
    size_t n = json_dumpb(body, small, sizeof small, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (n <= sizeof small) {
        roost_respond(req, status, "application/json", small, n);
    } else {
        char *big = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (big)
            roost_respond(req, status, "application/json", big, strlen(big));
        else
            roost_respond_error(req, 500, "Cannot encode the response");
        free(big);
    }
    json_decref(body);
}

void roost_respond_error(roost_req_t *req, int status, const char *detail)
{
    roost_respond_json(req, status, json_pack("{s:s}", "detail", detail ? detail : ""));
}

void roost_respond_422(roost_req_t *req, json_t *errors)
{
    roost_respond_json(req, 422, json_pack("{s:o}", "detail", errors));
}
