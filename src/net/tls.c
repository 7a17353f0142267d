/* TLS on a connection: OpenSSL over two BIOs of roost's own (ciphertext read from the loop's
 * buffer, ciphertext written to a buffer), so that the socket stays libuv's and the handshake
 * runs on the loop without blocking (never on a worker). The server's context can be
 * reloaded (SIGHUP) while connections live: each SSL holds a reference to the SSL_CTX it was
 * made from. Not the write queue (conn.c) nor any protocol. */
#include "net/net.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

struct net_tls_ctx {
    pthread_mutex_t lock; /* guards cur: taken per accepted connection and per reload */
    SSL_CTX *cur;
    char *cert, *key;
    net_tls_counters_t k;
};

struct net_tls {
    SSL *ssl;
    BIO *in, *out; /* ciphertext from the peer (reads `held`, then `in_p`); to it (into `sent`) */
    sbuf_t sent;   /* ciphertext not yet given to the write path */
    const char *in_p; /* the loop's read buffer, borrowed during net_tls_on_read only */
    size_t in_len;
    sbuf_t held;     /* ciphertext the SSL did not take before the read buffer was reused */
    size_t held_off; /* what of `held` was read already */
    net_tls_ctx_t *ctx;
    int handshaking;
    unsigned active : 1;  /* read or written since the last sweep */
    unsigned trimmed : 1; /* its record buffers were freed by a sweep */
};

/* The output BIO appends to the connection's sbuf: a memory BIO would clear its whole buffer
 * (memset of its high-water mark) on every reset, and read-to-discard costs a copy. */
static int out_write(BIO *b, const char *data, int len)
{
    net_tls_t *s = BIO_get_data(b);
    return sbuf_append(&s->sent, data, (size_t)len) < 0 ? -1 : len;
}

/* The input BIO reads the loop's buffer in place: a memory BIO would first copy every byte read
 * into its own growing buffer (BIO_write), and cost more per call. Only bytes the SSL leaves
 * when the protocol pauses are copied, into `held`, before the loop reuses its buffer. */
static int in_read(BIO *b, char *out, int outl)
{
    net_tls_t *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t held = s->held.len - s->held_off;
    const char *src = held ? s->held.p + s->held_off : s->in_p;
    size_t n = held ? held : s->in_len;
    if (!n) {
        BIO_set_retry_read(b); /* "later", not end of file */
        return -1;
    }
    if (n > (size_t)outl)
        n = (size_t)outl;
    memcpy(out, src, n);
    if (held) {
        s->held_off += n;
        if (s->held_off == s->held.len)
            s->held.len = s->held_off = 0;
    } else {
        s->in_p += n;
        s->in_len -= n;
    }
    return (int)n;
}

/* Both BIOs: "pending" is what the input holds unread, or the output holds unsent. */
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    net_tls_t *s = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
    case BIO_CTRL_WPENDING:
        return b == s->in ? (long)(s->held.len - s->held_off + s->in_len) : (long)s->sent.len;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *out_method, *in_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_methods_init(void)
{
    out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "roost-out");
    in_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "roost-in");
    if (!out_method || !in_method) {
        BIO_meth_free(out_method);
        BIO_meth_free(in_method);
        out_method = in_method = NULL;
        return;
    }
    BIO_meth_set_write(out_method, out_write);
    BIO_meth_set_ctrl(out_method, bio_ctrl);
    BIO_meth_set_create(out_method, bio_create);
    BIO_meth_set_read(in_method, in_read);
    BIO_meth_set_ctrl(in_method, bio_ctrl);
    BIO_meth_set_create(in_method, bio_create);
}

/* Decrypted input goes here, not in the loop's read buffer, which holds the ciphertext being
 * read; one TLS record is at most 16 KiB of plaintext. One per loop thread. */
static _Thread_local char plain[16384];

static const unsigned char alpn_http11[] = "\x08http/1.1";
#define SENT_KEEP_MAX (64 * 1024)

/* ALPN (RFC 7301): roost speaks HTTP/1.1 only, so that is the one protocol it selects; a client
 * offering none of it is answered without ALPN rather than refused, like nginx. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, alpn_http11, sizeof alpn_http11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static void log_ssl_error(const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    log_error("tls: %s: %s", what, buf[0] ? buf : "failed");
}

static SSL_CTX *make_ctx(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_error("SSL_CTX_new");
        return NULL;
    }
    /* TLS 1.2 and 1.3 only: 1.0 and 1.1 are deprecated (RFC 8996). */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* Resumption by tickets (stateless, so every loop resumes every session); the context's
     * ticket keys are random per context, so a reload ends resumption of older sessions. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"roost", 5);
    /* Not SSL_MODE_RELEASE_BUFFERS: it frees and allocates the ~17 KiB record buffers around
     * every record (~1,300 instructions a request, callgrind); net_tls_sweep frees them once a
     * connection has been idle for a second instead, so idle connections stay small. */
    /* Take every whole record the read buffer holds in one BIO read, not a header then a body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* AES-128-GCM first (AES-NI; 10 rounds, not AES-256's 14), ChaCha20 first only for a client
     * that prefers it (one without AES hardware lists it first). */
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                  "TLS_CHACHA20_POLY1305_SHA256");
    SSL_CTX_set_options(ctx, SSL_OP_PRIORITIZE_CHACHA);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        log_ssl_error(cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_error(key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

net_tls_ctx_t *net_tls_ctx_new(const char *cert, const char *key, const net_tls_counters_t *k)
{
    SSL_CTX *ctx = make_ctx(cert, key);
    if (!ctx)
        return NULL;
    net_tls_ctx_t *t = calloc(1, sizeof *t);
    if (!t || !(t->cert = strdup(cert)) || !(t->key = strdup(key))) {
        SSL_CTX_free(ctx);
        if (t)
            free(t->cert);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->cur = ctx;
    t->k = *k;
    return t;
}

int net_tls_ctx_reload(net_tls_ctx_t *t)
{
    SSL_CTX *ctx = make_ctx(t->cert, t->key);
    if (!ctx)
        return -EINVAL; /* keep serving the certificate that works */
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->cur;
    t->cur = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* live connections hold their own references */
    roost_counter_add(t->k.reloads, 1);
    log_info("tls: certificate reloaded from %s", t->cert);
    return 0;
}

void net_tls_ctx_free(net_tls_ctx_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->cur);
    pthread_mutex_destroy(&t->lock);
    free(t->cert);
    free(t->key);
    free(t);
}

int net_tls_conn_start(net_conn_t *c, net_tls_ctx_t *t)
{
    net_tls_t *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    pthread_mutex_lock(&t->lock);
    s->ssl = SSL_new(t->cur);
    pthread_mutex_unlock(&t->lock);
    pthread_once(&bio_once, bio_methods_init);
    s->in = in_method ? BIO_new(in_method) : NULL;
    s->out = out_method ? BIO_new(out_method) : NULL;
    if (!s->ssl || !s->in || !s->out) {
        SSL_free(s->ssl);
        BIO_free(s->in);
        BIO_free(s->out);
        free(s);
        return -ENOMEM;
    }
    BIO_set_data(s->in, s);
    BIO_set_data(s->out, s);
    SSL_set_bio(s->ssl, s->in, s->out); /* the SSL owns both now */
    SSL_set_accept_state(s->ssl);
    s->ctx = t;
    s->handshaking = 1;
    c->tls = s;
    return 0;
}

void net_tls_conn_free(net_conn_t *c)
{
    if (!c->tls)
        return;
    SSL_free(c->tls->ssl);
    sbuf_free(&c->tls->sent);
    sbuf_free(&c->tls->held);
    free(c->tls);
    c->tls = NULL;
}

int net_tls_handshaking(const net_conn_t *c)
{
    return c->tls && c->tls->handshaking;
}

size_t net_tls_pending(const net_conn_t *c)
{
    return c->tls ? c->tls->sent.len : 0;
}

/* Moves the ciphertext gathered in the output BIO to the write path: tried on the socket at
 * once when now is set, else queued for the loop's end-of-iteration flush. */
int net_tls_push(net_conn_t *c, int now)
{
    net_tls_t *s = c->tls;
    size_t n = s->sent.len;
    if (!n)
        return 0;
    s->sent.len = 0; /* send_raw copies what the socket does not take at once */
    int rc = net_conn_send_raw(c, s->sent.p, n, now);
    /* One big message (a 1 MiB echo) must not leave its size allocated for the connection's
     * life; 64 KiB covers the usual bursts. */
    if (c->tls && s->sent.cap > SENT_KEEP_MAX)
        sbuf_free(&s->sent);
    return rc;
}

int net_tls_write(net_conn_t *c, const void *data, size_t len)
{
    net_tls_t *s = c->tls;
    s->active = 1;
    s->trimmed = 0;
    while (len) {
        /* Into a memory BIO a write only fails on a broken session. */
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        int n = SSL_write(s->ssl, data, chunk);
        if (n <= 0) {
            ERR_clear_error();
            net_conn_close(c);
            return -EPIPE;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return 0;
}

int net_tls_has_input(const net_conn_t *c)
{
    const net_tls_t *s = c->tls;
    /* SSL_has_pending: decrypted bytes, or records read ahead but not yet decrypted. */
    return s && !s->handshaking && (SSL_has_pending(s->ssl) || s->held.len > s->held_off);
}

void net_tls_close_notify(net_conn_t *c)
{
    if (!c->tls || c->tls->handshaking)
        return;
    if (SSL_shutdown(c->tls->ssl) < 0)
        ERR_clear_error();
    net_tls_push(c, 1);
}

void net_tls_expire(net_conn_t *c)
{
    roost_counter_add(c->tls->ctx->k.timeouts, 1);
    net_conn_close(c);
}

/* A handshake step; 1 when done, 0 when it needs more bytes, -1 when it failed. */
static int handshake(net_conn_t *c)
{
    net_tls_t *s = c->tls;
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        s->handshaking = 0;
        roost_counter_add(s->ctx->k.handshakes, 1);
        return 1;
    }
    int err = SSL_get_error(s->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
        return 0;
    /* A plain-HTTP request or garbage: the alert (if any) is sent, then the socket closes. */
    roost_counter_add(s->ctx->k.failed, 1);
    ERR_clear_error();
    return -1;
}

static void process(net_conn_t *c);

void net_tls_on_read(net_conn_t *c, const char *data, size_t len)
{
    net_tls_t *s = c->tls;
    s->active = 1;
    s->trimmed = 0;
    if (len && s->held.len > s->held_off) { /* behind bytes held from before: keep the order */
        if (sbuf_append(&s->held, data, len) < 0) {
            net_conn_close(c);
            return;
        }
    } else if (len) {
        s->in_p = data;
        s->in_len = len;
    }
    process(c);
    /* The SSL is freed only once the handle has closed (conn.c's on_closed), so s is alive. */
    if (s->in_len && !c->closing && sbuf_append(&s->held, s->in_p, s->in_len) < 0)
        net_conn_close(c);
    s->in_p = NULL;
    s->in_len = 0;
}

/* Handshake steps, then records decrypted and delivered while the protocol takes them. */
static void process(net_conn_t *c)
{
    net_tls_t *s = c->tls;
    if (s->handshaking) {
        int rc = handshake(c);
        net_tls_push(c, 1);
        if (rc < 0 && c->tls) {
            net_conn_close_after_write(c);
            return;
        }
        if (rc == 0 || c->closing)
            return;
        net_conn_secured(c);
        if (c->closing || c->close_after_write)
            return;
    }
    /* A paused protocol (a full pipeline) takes no more: what stays in the SSL is delivered
     * after net_conn_resume (conn.c's tls_rx). */
    while (c->tls && !c->closing && !c->close_after_write && !c->paused) {
        /* Nothing buffered anywhere: no SSL_read only to hear "want read". */
        if (!s->in_len && s->held.len == s->held_off && !SSL_has_pending(s->ssl))
            break;
        int n = SSL_read(s->ssl, plain, (int)sizeof plain);
        if (n > 0) {
            net_conn_deliver(c, plain, (size_t)n);
            continue;
        }
        int err = SSL_get_error(c->tls->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            break;
        ERR_clear_error();
        /* close_notify or a broken record: no more input either way. */
        net_conn_close(c);
        return;
    }
    if (c->tls && !c->closing)
        net_tls_push(c, 1); /* TLS 1.3 post-handshake messages, key updates */
}

void net_tls_sweep(net_loop_t *loop)
{
    for (net_conn_t *c = loop->conns; c; c = c->next) {
        net_tls_t *s = c->tls;
        if (!s || s->handshaking || c->closing)
            continue;
        if (s->active)
            s->active = 0;
        else if (!s->trimmed) {
            s->trimmed = SSL_free_buffers(s->ssl) == 1; /* 0: a record is half read; later */
            if (!s->sent.len)
                sbuf_free(&s->sent);
        }
    }
}
