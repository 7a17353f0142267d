/* llhttp glue: copies the target and header bytes into the request, enforces every size limit
 * as the bytes arrive (414, 431, 413), and adds the checks llhttp 8 (built in its loose mode)
 * leaves to the server: Host (RFC 9112 §3.2), field-name tokens, control characters in
 * values, transfer codings other than chunked, the CRLF after chunk data, the version (505).
 * It knows nothing of sockets, so the fuzzer drives it directly. */
#include "http/http.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define PARSE(llh) ((http_parse_t *)(llh)->data)

static int fail(http_parse_t *p, int status, const char *detail, const char *limit)
{
    p->err_status = status;
    p->err_detail = detail;
    p->err_limit = limit;
    return -1;
}

static int head_append(roost_req_t *req, const char *at, size_t len)
{
    if (req->head_len + len > req->head_cap) {
        size_t cap = req->head_cap * 2;
        while (cap < req->head_len + len)
            cap *= 2;
        char *h = req->head == req->inline_head ? malloc(cap) : realloc(req->head, cap);
        if (!h)
            return -1;
        if (req->head == req->inline_head)
            memcpy(h, req->inline_head, req->head_len);
        req->head = h;
        req->head_cap = cap;
    }
    memcpy(req->head + req->head_len, at, len);
    req->head_len += len;
    return 0;
}

static int on_message_begin(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    p->in_gap = 0;
    p->cur = p->new_req(p->ud);
    p->body_len = 0;
    if (!p->cur)
        return fail(p, 503, "Server overloaded", NULL);
    return 0;
}

static int on_url(llhttp_t *llh, const char *at, size_t len)
{
    http_parse_t *p = PARSE(llh);
    if (p->cur->head_len + len > p->cfg->http.max_url)
        return fail(p, 414, "URI Too Long", "url");
    return head_append(p->cur, at, len) < 0 ? fail(p, 503, "Out of memory", NULL) : 0;
}

static int on_url_complete(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    p->cur->url_len = (uint32_t)p->cur->head_len;
    return 0;
}

static int on_version_complete(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    if (llh->http_major != 1 || llh->http_minor > 1)
        return fail(p, 505, "HTTP Version Not Supported", NULL);
    return 0;
}

static int header_bytes(http_parse_t *p, const char *at, size_t len)
{
    roost_req_t *req = p->cur;
    if (req->head_len - req->url_len + len > p->cfg->http.max_header_size)
        return fail(p, 431, "Request Header Fields Too Large", "header_size");
    return head_append(req, at, len) < 0 ? fail(p, 503, "Out of memory", NULL) : 0;
}

/* RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 * "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
#define T1(c) [c] = 1
static const uint8_t tchar[256] = {
    T1('!'), T1('#'), T1('$'), T1('%'),           T1('&'),           T1('\''),
    T1('*'), T1('+'), T1('-'), T1('.'),           T1('^'),           T1('_'),
    T1('`'), T1('|'), T1('~'), ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};
#undef T1

static int is_tchar(unsigned char ch)
{
    return tchar[ch]; /* a table: a name's every byte is checked */
}

static int on_header_field(llhttp_t *llh, const char *at, size_t len)
{
    http_parse_t *p = PARSE(llh);
    roost_req_t *req = p->cur;
    /* A field name is a token (RFC 9110 §5.1): loose llhttp lets "Bad Name" through, which a
     * proxy in front may read as another field, or drop. */
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)at[i]))
            return fail(p, 400, "Invalid character in header name", NULL);
    if (!req->in_field) {
        if (req->nheaders >= p->cfg->http.max_headers)
            return fail(p, 431, "Too many header fields", "headers");
        if (req->nheaders == req->headers_cap) {
            int cap = req->headers_cap * 2;
            http_header_t *h = arena_alloc(&req->arena, (size_t)cap * sizeof *h);
            if (!h)
                return fail(p, 503, "Out of memory", NULL);
            memcpy(h, req->headers, (size_t)req->nheaders * sizeof *h);
            req->headers = h;
            req->headers_cap = cap;
        }
        http_header_t *h = &req->headers[req->nheaders++];
        memset(h, 0, sizeof *h);
        h->name_off = (uint32_t)req->head_len;
        req->in_field = 1;
    }
    p->in_gap = 1;
    p->gap_from = at + len;
    p->gap_newline = 0;
    return header_bytes(p, at, len);
}

static int on_header_field_complete(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    roost_req_t *req = p->cur;
    http_header_t *h = &req->headers[req->nheaders - 1];
    h->name_len = (uint32_t)req->head_len - h->name_off;
    h->value_off = (uint32_t)req->head_len;
    req->in_field = 0;
    if (h->name_len == 0)
        return fail(p, 400, "Empty header name", NULL);
    if (h->name_len == 4 && strncasecmp(req->head + h->name_off, "host", 4) == 0)
        req->hosts++;
    else if (h->name_len == 11 && !req->traceparent &&
             strncasecmp(req->head + h->name_off, "traceparent", 11) == 0)
        req->traceparent = req->nheaders; /* for trace.c: no header search per request */
    return 0;
}

/* llhttp accepts obsolete line folding (RFC 9112 §5.2 lets a server refuse it, and a proxy
 * that reads the fold differently could be smuggled past): a value span whose gap since the
 * header's name or its previous span holds a line break is a fold, however the bytes were cut
 * into reads. */
static int is_folded(http_parse_t *p, const char *at)
{
    const char *from = p->gap_from ? p->gap_from : p->feed_start;
    return p->in_gap && (p->gap_newline || memchr(from, '\n', (size_t)(at - from)));
}

/* The byte k (1 or 2) before `at` in this buffer, or in the previous one; 0 if unknown. */
static char byte_before(const http_parse_t *p, const char *at, size_t k)
{
    size_t in_buf = (size_t)(at - p->feed_start);
    if (k <= in_buf)
        return at[-(ptrdiff_t)k];
    k -= in_buf;
    return k <= p->tail_len ? p->tail[2 - k] : 0;
}

/* Loose llhttp takes CR and any byte as a line break after an empty value and at the end of
 * the header section ("X:\rY", "\r\n\rY"): a bare CR, which RFC 9112 §2.2 says to refuse or
 * read as SP, and a proxy may read differently. A line break that really ends is "\n". */
static int check_line_end(http_parse_t *p, const char *after)
{
    if (byte_before(p, after, 1) != '\n')
        return fail(p, 400, "Bare CR in the header section", NULL);
    return 0;
}

static int on_header_value(llhttp_t *llh, const char *at, size_t len)
{
    http_parse_t *p = PARSE(llh);
    /* An empty value ("X:\r\n") comes as a zero-length span at the start of the next line:
     * no bytes, nothing to check but its line break, which is not a fold. (A value cut at the
     * end of a read also gives zero-length spans, after some of its bytes.) */
    if (len == 0) {
        const roost_req_t *req = p->cur;
        if (req->head_len == req->headers[req->nheaders - 1].value_off)
            return check_line_end(p, at);
        return 0;
    }
    if (is_folded(p, at))
        return fail(p, 400, "Obsolete line folding in a header", NULL);
    p->gap_from = at + len;
    p->gap_newline = 0;
    /* RFC 9110 §5.5: field values are visible characters, SP and HTAB; llhttp lets some
     * control bytes through, so they are refused here. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)at[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(p, 400, "Invalid character in header value", NULL);
    }
    return header_bytes(p, at, len);
}

static int on_header_value_complete(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    roost_req_t *req = p->cur;
    http_header_t *h = &req->headers[req->nheaders - 1];
    uint32_t end = (uint32_t)req->head_len;
    p->in_gap = 0;
    while (end > h->value_off && (req->head[end - 1] == ' ' || req->head[end - 1] == '\t'))
        end--;
    h->value_len = end - h->value_off;
    return 0;
}

/* A chunk-size line comes next: llhttp pauses there so that http_parse_feed can read the
 * line's start itself (see skip_bws). */
static int start_size_line(http_parse_t *p)
{
    if (!(p->llh.flags & F_CHUNKED))
        return 0;
    p->size_line = 1;
    p->inner_pause = 1;
    return HPE_PAUSED;
}

static int check_transfer_encoding(http_parse_t *p, roost_req_t *req)
{
    int n = 0;
    for (int i = 0; i < req->nheaders; i++) {
        http_header_t *h = &req->headers[i];
        if (h->name_len != 17 || strncasecmp(req->head + h->name_off, "transfer-encoding", 17))
            continue;
        n++;
        roost_str_t v = str_make(req->head + h->value_off, h->value_len);
        if (!str_eq_nocase(v, "chunked"))
            return fail(p, 400, "Unsupported transfer coding", NULL);
    }
    if (n > 1)
        return fail(p, 400, "Repeated Transfer-Encoding", NULL);
    if (n && p->llh.http_minor == 0)
        return fail(p, 400, "Transfer-Encoding in HTTP/1.0", NULL);
    return 0;
}

static int on_headers_complete(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    roost_req_t *req = p->cur;
    req->method = llh->method;
    req->http_major = llh->http_major;
    req->http_minor = llh->http_minor;
    if (req->http_major != 1 || req->http_minor > 1)
        return fail(p, 505, "HTTP Version Not Supported", NULL);
    if (req->hosts > 1 || (req->hosts == 0 && req->http_minor == 1))
        return fail(p, 400, req->hosts ? "Repeated Host header" : "Missing Host header", NULL);
    /* Every Transfer-Encoding field, llhttp's flag or not: it sets none for an empty value,
     * which a proxy in front may read otherwise. */
    if (check_transfer_encoding(p, req) < 0)
        return -1;
    if ((llh->flags & F_CONTENT_LENGTH) && llh->content_length > p->cfg->http.max_body)
        return fail(p, 413, "Request body too large", "body");
    req->keep_alive = llhttp_should_keep_alive(llh) ? 1 : 0;
    roost_str_t expect = roost_req_header(req, "expect");
    if (expect.ptr && req->http_minor == 1 && str_eq_nocase(expect, "100-continue"))
        req->expect_continue = 1;
    if (p->on_head)
        p->on_head(p->ud, req);
    /* Paused, so that the feed sees where the section ended (check_line_end), and where a
     * chunked body's first size line starts. */
    start_size_line(p);
    p->head_end = 1;
    p->inner_pause = 1;
    return HPE_PAUSED;
}

/* Checks the bytes [at, end) against what is left of the CRLF that ends a chunk's data
 * (RFC 9112 §7.1): loose llhttp skips any two bytes there, so "5\r\nhelloXX0\r\n\r\n" would
 * end the body early and let the bytes after it be read as the next request. */
static int check_chunk_crlf(http_parse_t *p, const char *at, const char *end)
{
    for (; p->crlf_want && at < end; at++, p->crlf_want--)
        if (*at != "\r\n"[2 - p->crlf_want])
            return fail(p, 400, "Chunk data not followed by CRLF", NULL);
    return 0;
}

static int on_body(llhttp_t *llh, const char *at, size_t len)
{
    http_parse_t *p = PARSE(llh);
    p->body_len += len;
    if (p->body_len > p->cfg->http.max_body)
        return fail(p, 413, "Request body too large", "body");
    if (sbuf_append(&p->cur->body, at, len) < 0)
        return fail(p, 503, "Out of memory", NULL);
    /* In a chunk, content_length is what is left of its data: 0 when this span ended it. */
    if ((llh->flags & F_CHUNKED) && llh->content_length == 0) {
        p->crlf_want = 2;
        return check_chunk_crlf(p, at + len, p->feed_end);
    }
    return 0;
}

static int on_chunk_header(llhttp_t *llh)
{
    PARSE(llh)->last_chunk = llh->content_length == 0;
    return 0;
}

static int on_chunk_complete(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    return p->last_chunk ? 0 : start_size_line(p);
}

static int on_message_complete(llhttp_t *llh)
{
    http_parse_t *p = PARSE(llh);
    roost_req_t *req = p->cur;
    req->keep_alive = llhttp_should_keep_alive(llh) ? 1 : 0;
    p->cur = NULL;
    return p->on_request(p->ud, req) ? HPE_PAUSED : 0;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_url_complete = on_url_complete,
    .on_version_complete = on_version_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = on_message_complete,
};

void http_parse_init(http_parse_t *p, const roost_config_t *cfg)
{
    llhttp_init(&p->llh, HTTP_REQUEST, &settings);
    p->llh.data = p;
    /* llhttp 8 checks the version's digits (HTTP/DIGIT.DIGIT) and then which pairs it knows;
     * with the second check off, a malformed version stays its error (400) and a well-formed
     * one roost does not speak is on_version_complete's 505. It has no setter for this flag. */
    p->llh.lenient_flags |= LENIENT_VERSION;
    p->cfg = cfg;
    p->cur = NULL;
    p->in_gap = p->gap_newline = 0;
    p->crlf_want = p->last_chunk = p->size_line = 0;
    p->inner_pause = p->head_end = p->tail_len = 0;
    p->err_status = 0;
    p->err_detail = NULL;
    p->err_limit = NULL;
}

/* RFC 9112 §7.1.1 allows whitespace (BWS) between a chunk's size and a ';' that starts its
 * extensions; llhttp 8 has no lenient flag for it, so the feed leaves those bytes out: from
 * `at`, the hex digits go to llhttp, the whitespace is skipped, and a ';' ends the scan.
 * Returns where llhttp should go on reading (*upto: up to where it may read before that), or
 * NULL when the whitespace is followed by something other than ';'. */
static const char *skip_bws(http_parse_t *p, const char *at, const char *end, const char **upto)
{
    *upto = p->size_line == 2 ? at : end; /* whitespace from the previous read goes on */
    for (; at < end && p->size_line; at++) {
        unsigned char ch = (unsigned char)*at;
        if (ch == ' ' || ch == '\t') {
            if (p->size_line == 1) {
                *upto = at;
                p->size_line = 2;
            }
        } else if (p->size_line == 2) {
            if (ch != ';') {
                fail(p, 400, "Invalid character in chunk size", NULL);
                return NULL;
            }
            p->size_line = 0;
            return at;
        } else if (!isxdigit(ch)) {
            p->size_line = 0; /* llhttp judges the rest of the line */
        }
    }
    return p->size_line == 2 ? end : *upto;
}

/* The buffer was consumed up to `upto`: keeps its last two bytes for byte_before, and returns
 * how many bytes were consumed. */
static ssize_t keep_tail(http_parse_t *p, const char *upto)
{
    char b1 = byte_before(p, upto, 1), b2 = byte_before(p, upto, 2);
    size_t known = p->tail_len + (size_t)(upto - p->feed_start);
    p->tail[0] = b2;
    p->tail[1] = b1;
    p->tail_len = known > 2 ? 2 : known;
    return upto - p->feed_start;
}

static ssize_t feed_error(http_parse_t *p, llhttp_errno_t err)
{
    switch (err) {
    case HPE_USER:
        return -1;
    case HPE_INVALID_VERSION:
        /* A malformed version (not HTTP/DIGIT.DIGIT, RFC 9112 §2.3); a well-formed one roost
         * does not speak gets 505 from on_version_complete. */
        fail(p, 400, "Invalid HTTP version", NULL);
        return -1;
    default:
        fail(p, 400, llhttp_get_error_reason(&p->llh), NULL);
        if (!p->err_detail)
            p->err_detail = "Bad Request";
        return -1;
    }
}

ssize_t http_parse_feed(http_parse_t *p, const char *data, size_t len)
{
    const char *pos = data, *end = data + len;
    p->err_status = 0;
    p->feed_start = data;
    p->feed_end = end;
    p->gap_from = NULL;
    if (check_chunk_crlf(p, data, end) < 0)
        return -1;
    llhttp_errno_t err = HPE_OK;
    for (;;) {
        const char *upto = end;
        if (p->size_line) {
            const char *next = skip_bws(p, pos, end, &upto);
            if (!next)
                return -1;
            if (upto < next) { /* digits, then whitespace left out */
                err = llhttp_execute(&p->llh, pos, (size_t)(upto - pos));
                if (err != HPE_OK)
                    break;
                pos = next;
                if (p->size_line) /* the whitespace runs on into the next read */
                    break;
                continue;
            }
        }
        err = llhttp_execute(&p->llh, pos, (size_t)(end - pos));
        if (err == HPE_PAUSED && p->inner_pause) { /* see on_headers_complete, on_chunk_... */
            pos = llhttp_get_error_pos(&p->llh);
            llhttp_resume(&p->llh);
            p->inner_pause = 0;
            if (p->head_end && check_line_end(p, pos) < 0)
                return -1;
            p->head_end = 0;
            continue;
        }
        break;
    }
    if (err == HPE_OK && p->in_gap) { /* the gap goes on into the next read */
        const char *from = p->gap_from ? p->gap_from : data;
        if (memchr(from, '\n', (size_t)(data + len - from)))
            p->gap_newline = 1;
    }
    if (err != HPE_OK && p->err_status) /* a callback refused: HPE_USER or HPE_CB_* */
        return -1;
    switch (err) {
    case HPE_OK:
        return keep_tail(p, end);
    case HPE_PAUSED:
        llhttp_resume(&p->llh);
        return keep_tail(p, llhttp_get_error_pos(&p->llh));
    case HPE_PAUSED_UPGRADE:
        /* No protocol switch is offered here (the ws layer takes over upgrades before this
         * point), so the request was answered as a plain one; go on with what follows. */
        llhttp_resume_after_upgrade(&p->llh);
        return keep_tail(p, llhttp_get_error_pos(&p->llh));
    default:
        return feed_error(p, err);
    }
}

roost_str_t http_req_target(const roost_req_t *req)
{
    return str_make(req->head, req->url_len);
}

roost_str_t roost_req_header(const roost_req_t *req, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < req->nheaders; i++) {
        const http_header_t *h = &req->headers[i];
        if (h->name_len == n && strncasecmp(req->head + h->name_off, name, n) == 0)
            return str_make(req->head + h->value_off, h->value_len);
    }
    return str_make(NULL, 0);
}

void http_req_reset(roost_req_t *req)
{
    if (req->upgrade_drop) /* answered 101 but never written: the client left */
        req->upgrade_drop(req->upgrade_arg);
    req->upgrade_attach = NULL;
    req->upgrade_drop = NULL;
    req->upgrade_arg = NULL;
    http_res_file_release(req);
    http_res_shared_release(req);
    http_valid_clear(req);
    if (req->head != req->inline_head)
        free(req->head);
    req->head = req->inline_head;
    req->head_cap = sizeof req->inline_head;
    req->head_len = 0;
    req->url_len = 0;
    arena_reset(&req->arena);
    req->headers = req->inline_headers;
    req->headers_cap = HTTP_INLINE_HEADERS;
    req->nheaders = 0;
    req->hosts = 0;
    req->traceparent = 0;
    req->keep_alive = req->expect_continue = req->continue_sent = req->in_field = 0;
    req->close_after = req->streamed = req->stream_head = req->background = 0;
    http_req_set_phase(req, HTTP_REQ_PARSING);
    atomic_store(&req->waits, 0);
    req->defer = NULL;
    req->on_gone = NULL;
    req->drain_fn = NULL;
    http_sse_stop(req);
    req->drain_arg = NULL;
    req->on_responded = NULL;
    req->mw = NULL;
    req->mw_ctx = NULL;
    req->nmw = 0;
    req->has_filter = 0;
    req->mw_passed = 0;
    /* Keep buffer capacity for the next request, but not a large one. */
    if (req->body.cap > 65536)
        sbuf_free(&req->body);
    if (req->res_body.cap > 65536)
        sbuf_free(&req->res_body);
    if (req->res_tmp.cap > 65536)
        sbuf_free(&req->res_tmp);
    req->res_tmp.len = 0;
    req->body.len = req->res_body.len = req->res_headers.len = 0;
    req->path = req->query = str_make(NULL, 0);
    req->route = NULL;
    req->res_bytes = 0;
    req->trace_id[0] = req->span_id[0] = req->parent_span[0] = '\0';
    req->trace_flags = 0;
    req->trace_pending = 0;
    req->nparams = 0;
    req->status = 0;
    req->res_type = NULL;
    req->next = NULL;
}

void http_req_free(roost_req_t *req)
{
    if (!req)
        return;
    if (req->upgrade_drop)
        req->upgrade_drop(req->upgrade_arg);
    http_res_file_release(req);
    http_res_shared_release(req);
    http_valid_clear(req);
    if (req->head != req->inline_head)
        free(req->head);
    arena_free(&req->arena);
    sbuf_free(&req->body);
    sbuf_free(&req->res_body);
    sbuf_free(&req->res_tmp);
    sbuf_free(&req->res_headers);
    free(req);
}
