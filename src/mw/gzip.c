/* gzip: compresses an answer when its client accepts gzip (Accept-Encoding, q-values honoured).
 * Whole bodies of at least --gzip-min-bytes go through libdeflate in one call; streams (chunked,
 * SSE) of a compressible type are always compressed, with zlib and a sync flush per write so
 * that every piece reaches the client at once. A shared body (made once, sent many times: a
 * cache HIT, roost_respond_shared) is compressed once and its gzip kept, bounded by
 * --gzip-cache-bytes, as nginx's gzip_static keeps a file's. Never HEAD, 1xx/204/206/304, a
 * body that has a Content-Encoding already, or a type that is compressed already. */
#include "http/http.h"

#include <errno.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "core/core.h"

/* The filter's counters, on /metrics. */
enum {
    C_WHOLE,
    C_STREAM,
    C_IN,
    C_OUT,
    C_SMALL,
    C_REFUSED,
    C_TYPE,
    C_HIT,
    C_STORED,
    C_EVICTED,
    C_UNSTORED,
    C_COUNT
};
static const char *const counter_defs[C_COUNT][3] = {
    {"roost_gzip_responses_total", "mode=\"whole\"", "answers compressed with gzip"},
    {"roost_gzip_responses_total", "mode=\"stream\"", "answers compressed with gzip"},
    {"roost_gzip_bytes_in_total", NULL, "body bytes given to the gzip filter"},
    {"roost_gzip_bytes_out_total", NULL, "gzip bytes the filter sent on"},
    {"roost_gzip_skipped_total", "reason=\"small\"", "answers sent plain though gzip could apply"},
    {"roost_gzip_skipped_total", "reason=\"not_accepted\"",
     "answers sent plain though gzip could apply"},
    {"roost_gzip_skipped_total", "reason=\"type\"", "answers sent plain though gzip could apply"},
    {"roost_gzip_cache_total", "result=\"hit\"",
     "compressed shared bodies, by what became of them"},
    {"roost_gzip_cache_total", "result=\"stored\"",
     "compressed shared bodies, by what became of them"},
    {"roost_gzip_cache_total", "result=\"evicted\"",
     "compressed shared bodies, by what became of them"},
    {"roost_gzip_cache_total", "result=\"too_big\"",
     "compressed shared bodies, by what became of them"},
};

/* A shared body's gzip. The entry holds a reference on the source: its bytes cannot change and
 * its address cannot be reused by another body while the entry lives. */
#define GZ_CACHE_MAX 64
typedef struct {
    rbuf_t *src; /* NULL: a free slot */
    size_t off, len;
    int level;
    rbuf_t *gz;
    uint64_t used; /* the last hit's tick: the least recently used goes first */
} gz_cached_t;

typedef struct {
    size_t min_bytes;
    int level;
    roost_counter_t *c[C_COUNT];
    /* The cache, shared by the loops: held for a scan of 64 pointers, never while compressing. */
    pthread_mutex_t lock;
    size_t cache_max, cache_bytes; /* bytes kept alive: sources and their gzip */
    uint64_t tick;
    gz_cached_t cache[GZ_CACHE_MAX];
} gz_state_t;

enum { GZ_NONE, GZ_WHOLE, GZ_STREAM };

typedef struct {
    int mode;
    z_stream *z; /* a stream's deflate state, from its first piece to its last (or on_done) */
    sbuf_t pend; /* a whole body that came in more than one piece, until the last */
} gz_ctx_t;

/* ---- the server's state (counters and settings), in a core slot ---- */

static void *gz_state_new(roost_server_t *srv)
{
    gz_state_t *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    const roost_gzip_config_t *cfg = &roost_server_config(srv)->gzip;
    st->min_bytes = cfg->min_bytes;
    st->level = cfg->level;
    st->cache_max = cfg->cache_bytes;
    pthread_mutex_init(&st->lock, NULL);
    for (int i = 0; i < C_COUNT; i++)
        st->c[i] = roost_counter(srv, counter_defs[i][0], counter_defs[i][1], counter_defs[i][2]);
    return st;
}

static void gz_state_free(void *p)
{
    gz_state_t *st = p;
    for (int i = 0; i < GZ_CACHE_MAX; i++) {
        rbuf_unref(st->cache[i].src);
        rbuf_unref(st->cache[i].gz);
    }
    pthread_mutex_destroy(&st->lock);
    free(st);
}

static CORE_SERVER_CTX_FN(gz_state_t, gz_state, .name = "gzip", .server_new = gz_state_new,
                          .server_free = gz_state_free)

/* ---- the cache of compressed shared bodies ---- */

/* The gzip of src's [off, off+len) at level, with a reference for the caller; NULL: none. */
static rbuf_t *cache_get(gz_state_t *st, const rbuf_t *src, size_t off, size_t len, int level)
{
    rbuf_t *gz = NULL;
    pthread_mutex_lock(&st->lock);
    for (int i = 0; i < GZ_CACHE_MAX; i++) {
        gz_cached_t *e = &st->cache[i];
        if (e->src == src && e->off == off && e->len == len && e->level == level) {
            e->used = ++st->tick;
            gz = rbuf_ref(e->gz);
            break;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return gz;
}

static void cache_drop(gz_state_t *st, gz_cached_t *e)
{
    st->cache_bytes -= e->len + e->gz->len;
    rbuf_unref(e->src);
    rbuf_unref(e->gz);
    *e = (gz_cached_t){0};
}

/* Keeps a copy of the n bytes of gzip made from src's [off, off+len), making room by dropping
 * the least recently used; a body bigger than the whole cache is not kept. */
static void cache_put(gz_state_t *st, rbuf_t *src, size_t off, size_t len, int level,
                      const void *gz_bytes, size_t n)
{
    if (len + n > st->cache_max) {
        roost_counter_add(st->c[C_UNSTORED], 1);
        return;
    }
    rbuf_t *gz = rbuf_from(gz_bytes, n);
    if (!gz)
        return;
    pthread_mutex_lock(&st->lock);
    gz_cached_t *slot = NULL;
    for (;;) {
        gz_cached_t *oldest = NULL;
        slot = NULL;
        for (int i = 0; i < GZ_CACHE_MAX; i++) {
            gz_cached_t *e = &st->cache[i];
            if (!e->src) {
                slot = slot ? slot : e;
                continue;
            }
            if (e->src == src && e->off == off && e->len == len && e->level == level) {
                /* Another loop made it meanwhile: keep theirs. */
                pthread_mutex_unlock(&st->lock);
                rbuf_unref(gz);
                return;
            }
            if (!oldest || e->used < oldest->used)
                oldest = e;
        }
        if (slot && st->cache_bytes + len + n <= st->cache_max)
            break;
        cache_drop(st, oldest); /* the bound holds at least this body: oldest is not NULL */
        roost_counter_add(st->c[C_EVICTED], 1);
    }
    *slot = (gz_cached_t){
        .src = rbuf_ref(src), .off = off, .len = len, .level = level, .gz = gz, .used = ++st->tick};
    st->cache_bytes += len + n;
    pthread_mutex_unlock(&st->lock);
    roost_counter_add(st->c[C_STORED], 1);
}

/* ---- per thread: a libdeflate compressor and an output buffer, reused across answers ---- */

typedef struct {
    struct libdeflate_compressor *c;
    int level;
    sbuf_t out;
} gz_thread_t;

static pthread_key_t gz_key;
static pthread_once_t gz_key_once = PTHREAD_ONCE_INIT;

static void gz_thread_free(void *p)
{
    gz_thread_t *t = p;
    if (t->c)
        libdeflate_free_compressor(t->c);
    sbuf_free(&t->out);
    free(t);
}

static void gz_key_make(void)
{
    pthread_key_create(&gz_key, gz_thread_free);
}

static gz_thread_t *gz_thread(void)
{
    pthread_once(&gz_key_once, gz_key_make);
    gz_thread_t *t = pthread_getspecific(gz_key);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t || pthread_setspecific(gz_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    t->out.len = 0;
    return t;
}

/* ---- what may be compressed ---- */

/* The q-value (in thousandths) of a parameter list like ";q=0.5" or ";level=1;q=0"; 1000
 * without q. RFC 9110 §12.4.2: at most three decimals. */
static int qvalue(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            int q = 0, scale = 1000;
            if (p < end && *p >= '0' && *p <= '1')
                q = (*p++ - '0') * 1000;
            if (p < end && *p == '.')
                for (p++; p < end && *p >= '0' && *p <= '9' && scale > 1; p++) {
                    scale /= 10;
                    q += (*p - '0') * scale;
                }
            return q > 1000 ? 1000 : q;
        }
        while (p < end && *p != ';')
            p++;
    }
    return 1000;
}

/* Accept-Encoding allows gzip: "gzip" (or "x-gzip") with q > 0, else "*" with q > 0. Without
 * the field, plain (RFC 9110 allows any coding then, but clients that send none expect none). */
static int gz_accepts(roost_str_t v)
{
    int q_gzip = -1, q_any = -1;
    const char *p = v.ptr, *end = v.ptr + v.len;
    while (p && p < end) {
        const char *e = memchr(p, ',', (size_t)(end - p));
        if (!e)
            e = end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *t = p;
        while (p < e && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t n = (size_t)(p - t);
        if ((n == 4 && !strncasecmp(t, "gzip", 4)) || (n == 6 && !strncasecmp(t, "x-gzip", 6)))
            q_gzip = qvalue(p, e);
        else if (n == 1 && *t == '*')
            q_any = qvalue(p, e);
        p = e + 1;
    }
    return q_gzip >= 0 ? q_gzip > 0 : q_any > 0;
}

/* Types whose bytes are compressed already, or unknown: gzip would cost time for nothing. */
static int gz_type_ok(const char *type)
{
    if (!type)
        return 0;
    static const char *const prefixes[] = {"image/", "video/", "audio/", "font/woff"};
    static const char *const exact[] = {
        "application/zip",
        "application/gzip",
        "application/x-gzip",
        "application/zstd",
        "application/x-xz",
        "application/x-bzip2",
        "application/x-7z-compressed",
        "application/x-rar-compressed",
        "application/pdf",
        "application/octet-stream",
    };
    size_t n = strcspn(type, "; \t");
    if (n == 13 && !strncasecmp(type, "image/svg+xml", 13))
        return 1;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (!strncasecmp(type, prefixes[i], strlen(prefixes[i])))
            return 0;
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (n == strlen(exact[i]) && !strncasecmp(type, exact[i], n))
            return 0;
    return 1;
}

/* A Content-Encoding among the headers the handler added: the body is encoded already. */
static int encoded_already(const roost_req_t *req)
{
    static const char name[] = "content-encoding:";
    const char *p = req->res_headers.p, *end = p + req->res_headers.len;
    while (p && p < end) {
        if ((size_t)(end - p) >= sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1))
            return 1;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    return 0;
}

static void gz_headers(roost_req_t *req, void *ctx, void *ud)
{
    gz_ctx_t *g = ctx;
    gz_state_t *st = ud;
    int s = req->status;
    /* Cheapest first: most answers of a busy API are small. */
    if (!req->streamed && http_res_body_len(req) < st->min_bytes) {
        roost_counter_add(st->c[C_SMALL], 1);
        roost_body_pass(req);
        return;
    }
    if (req->method == HTTP_HEAD || s < 200 || s == 204 || s == 206 || s == 304 ||
        encoded_already(req)) {
        roost_body_pass(req);
        return;
    }
    if (!gz_type_ok(req->res_type)) {
        roost_counter_add(st->c[C_TYPE], 1);
        roost_body_pass(req);
        return;
    }
    /* From here the answer depends on Accept-Encoding: caches must know (RFC 9110 §12.5.5). */
    roost_res_header(req, "Vary", "Accept-Encoding");
    if (!gz_accepts(roost_req_header(req, "accept-encoding"))) {
        roost_counter_add(st->c[C_REFUSED], 1);
        roost_body_pass(req);
        return;
    }
    roost_res_header(req, "Content-Encoding", "gzip");
    g->mode = req->streamed ? GZ_STREAM : GZ_WHOLE;
    roost_counter_add(g->mode == GZ_STREAM ? st->c[C_STREAM] : st->c[C_WHOLE], 1);
}

/* ---- the filters ---- */

/* The shared buffer whose bytes p is, when the body reached this filter whole and unchanged. */
static rbuf_t *shared_source(const roost_req_t *req, const void *p, size_t n, int last)
{
    rbuf_t *b = req->res_shared;
    if (!b || !last || n != req->res_shared_len || p != b->data + req->res_shared_off)
        return NULL;
    return b;
}

static int gz_whole(roost_req_t *req, gz_ctx_t *g, gz_state_t *st, const void *p, size_t n,
                    int last, roost_body_next_t *next)
{
    rbuf_t *src = st->cache_max && !g->pend.len ? shared_source(req, p, n, last) : NULL;
    size_t off = src ? req->res_shared_off : 0;
    if (src) {
        rbuf_t *hit = cache_get(st, src, off, n, st->level);
        if (hit) {
            roost_counter_add(st->c[C_HIT], 1);
            roost_counter_add(st->c[C_IN], (long)n);
            roost_counter_add(st->c[C_OUT], (long)hit->len);
            int rc = roost_body_emit(next, hit->data, hit->len, 1);
            rbuf_unref(hit);
            return rc;
        }
    }
    if (!last || g->pend.len) { /* a filter before this one cut the body: gather it */
        if (n && sbuf_append(&g->pend, p, n) < 0)
            return -ENOMEM;
        if (!last)
            return 0;
        p = g->pend.p;
        n = g->pend.len;
    }
    gz_thread_t *t = gz_thread();
    if (!t)
        return -ENOMEM;
    if (!t->c || t->level != st->level) {
        if (t->c)
            libdeflate_free_compressor(t->c);
        t->c = libdeflate_alloc_compressor(st->level);
        t->level = st->level;
        if (!t->c)
            return -ENOMEM;
    }
    size_t bound = libdeflate_gzip_compress_bound(t->c, n);
    if (sbuf_reserve(&t->out, bound) < 0)
        return -ENOMEM;
    size_t out = libdeflate_gzip_compress(t->c, n ? p : "", n, t->out.p, bound);
    if (!out)
        return -ENOMEM; /* cannot happen with the bound */
    roost_counter_add(st->c[C_IN], (long)n);
    roost_counter_add(st->c[C_OUT], (long)out);
    if (src)
        cache_put(st, src, off, n, st->level, t->out.p, out);
    return roost_body_emit(next, t->out.p, out, 1);
}

static int gz_stream(gz_ctx_t *g, gz_state_t *st, const void *p, size_t n, int last,
                     roost_body_next_t *next)
{
    if (!g->z) {
        g->z = calloc(1, sizeof *g->z);
        /* windowBits 15 + 16: a gzip wrapper; memLevel 8 is zlib's default. */
        if (!g->z ||
            deflateInit2(g->z, st->level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(g->z);
            g->z = NULL;
            return -ENOMEM;
        }
    }
    gz_thread_t *t = gz_thread();
    if (!t)
        return -ENOMEM;
    z_stream *z = g->z;
    z->next_in = (Bytef *)(n ? p : "");
    z->avail_in = (uInt)n;
    /* A sync flush ends every write on a byte boundary: the client inflates it whole now. */
    int flush = last ? Z_FINISH : Z_SYNC_FLUSH, rc;
    do {
        if (sbuf_reserve(&t->out, 16384) < 0)
            return -ENOMEM;
        z->next_out = (Bytef *)t->out.p + t->out.len;
        z->avail_out = 16384;
        rc = deflate(z, flush);
        t->out.len += 16384 - z->avail_out;
    } while (rc == Z_OK && (z->avail_out == 0 || (last && rc != Z_STREAM_END)));
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
        return -EIO;
    if (last) {
        deflateEnd(z);
        free(z);
        g->z = NULL;
    }
    roost_counter_add(st->c[C_IN], (long)n);
    roost_counter_add(st->c[C_OUT], (long)t->out.len);
    if (!t->out.len && !last)
        return 0;
    return roost_body_emit(next, t->out.p, t->out.len, last);
}

static int gz_body(roost_req_t *req, const void *p, size_t n, int last, roost_body_next_t *next,
                   void *ctx, void *ud)
{
    gz_ctx_t *g = ctx;
    if (g->mode == GZ_WHOLE)
        return gz_whole(req, g, ud, p, n, last, next);
    if (g->mode == GZ_STREAM)
        return gz_stream(g, ud, p, n, last, next);
    return roost_body_emit(next, p, n, last);
}

static void gz_done(roost_req_t *req, void *ctx, void *ud)
{
    gz_ctx_t *g = ctx;
    if (g->z) { /* the client left mid-stream */
        deflateEnd(g->z);
        free(g->z);
        g->z = NULL;
    }
    sbuf_free(&g->pend);
}

int roost_use_gzip(roost_server_t *srv)
{
    gz_state_t *st = gz_state(srv);
    if (!st)
        return -ENOMEM;
    const roost_middleware_t mw = {
        .name = "gzip",
        .ctx_size = sizeof(gz_ctx_t),
        .on_headers = gz_headers,
        .on_body = gz_body,
        .on_done = gz_done,
        .ud = st,
    };
    return roost_use(srv, &mw);
}
