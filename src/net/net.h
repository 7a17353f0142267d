/* The net layer: loop threads, listeners, connections and their write queues, one timer wheel
 * per loop and the stall watchdog (the worker pool is base's tpool). It knows nothing of HTTP: a
 * protocol (http, later ws) attaches to a connection through net_proto_t and gets bytes and events.
 *
 * Threads: each net_loop_t runs one libuv loop on its own thread and owns its connections;
 * everything named net_conn_* is called on the owning loop's thread. Other threads hand work to
 * a loop only through net_loop_post (its inbox). */
#ifndef ROOST_NET_H
#define ROOST_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "base/base.h"

typedef struct net_loop net_loop_t;
#define NET_LOOP_CTX_MAX 16 /* per-loop context slots for the layers above */
typedef struct net_conn net_conn_t;
typedef struct net_group net_group_t;

/* ---- timer wheel: one per loop, an intrusive node per connection, O(1) to (re)arm ----
 * Deadlines are in loop milliseconds. Re-arming to a later deadline only stores it: the node
 * moves when its slot comes round (nginx's lazy idea), so a busy keep-alive connection costs no
 * list work per request. */
#define WHEEL_SLOTS 512
typedef struct wheel_node {
    struct wheel_node *prev, *next;
    uint64_t deadline; /* 0: disarmed */
    uint64_t slot_at;  /* the tick whose slot holds the node */
} wheel_node_t;

typedef struct {
    wheel_node_t slots[WHEEL_SLOTS];
    uint64_t tick_ms;
    uint64_t tick; /* last tick processed */
} wheel_t;

void wheel_init(wheel_t *w, uint64_t now_ms, uint64_t tick_ms);
void wheel_arm(wheel_t *w, wheel_node_t *n, uint64_t deadline_ms);
void wheel_disarm(wheel_node_t *n);
/* Calls expire(node, ud) for every node whose deadline is <= now_ms; the node is disarmed first,
 * so expire may re-arm it or free its owner. */
void wheel_advance(wheel_t *w, uint64_t now_ms, void (*expire)(wheel_node_t *, void *), void *ud);

/* ---- inbox: how any thread hands work to a loop; batched, one wake-up per burst ---- */
typedef struct net_msg {
    struct net_msg *next;
    /* Runs on the loop thread. loop is NULL when the loop had already stopped: free and go. */
    void (*fn)(net_loop_t *loop, struct net_msg *msg);
} net_msg_t;
void net_loop_post(net_loop_t *loop, net_msg_t *msg);

/* ---- protocols ---- */
typedef struct net_proto {
    const char *name;
    /* Bytes read; data is the loop's read buffer, valid only during the call. */
    void (*on_data)(net_conn_t *c, char *data, size_t len);
    /* The connection's wheel deadline passed. */
    void (*on_timeout)(net_conn_t *c);
    /* The write queue became empty (after having been non-empty). May be NULL. */
    void (*on_drained)(net_conn_t *c);
    /* The server is draining: finish what is in flight, then close. */
    void (*on_shutdown)(net_conn_t *c);
    /* The peer closed or an error happened: no more reads; the protocol releases its state. The
     * connection memory stays until every net_conn_ref is dropped. */
    void (*on_close)(net_conn_t *c);
    /* Asked for by net_conn_defer: runs once at the end of the loop iteration, on no caller's
     * stack, its writes gathered as in on_data; never after on_close. May be NULL. */
    void (*on_deferred)(net_conn_t *c);
} net_proto_t;

typedef struct net_wseg net_wseg_t;
typedef struct net_file net_file_t;
typedef struct net_tls net_tls_t;
typedef struct net_tls_ctx net_tls_ctx_t;
typedef struct net_iplimit net_iplimit_t;

struct net_conn {
    uv_tcp_t tcp; /* first: the handle is the connection */
    net_loop_t *loop;
    const net_proto_t *proto;
    void *ud; /* the protocol's state */
    wheel_node_t timer;
    net_conn_t *prev, *next; /* the loop's list of connections */
    net_wseg_t *wq_head, *wq_tail;
    size_t wq_bytes; /* queued and not yet written */
    uv_write_t wreq; /* at most one write in flight */
    unsigned wsegs_inflight;
    size_t inflight_bytes; /* of the write in flight */
    uint64_t file_sent;    /* bytes sendfile wrote, ever: progress a write timeout can see */
    int refs;
    unsigned closing : 1; /* uv_close called or pending */
    unsigned close_after_write : 1;
    unsigned reading : 1;
    unsigned paused : 1;        /* reads stopped by the protocol */
    unsigned lingering : 1;     /* FIN sent, discarding input until EOF (see conn.c) */
    unsigned dirty : 1;         /* queued writes wait for the loop's end-of-iteration flush */
    unsigned shutdown_told : 1; /* the drain called its proto's on_shutdown */
    unsigned file_busy : 1;     /* the head of the queue is a file being sent (sendfile.c) */
    unsigned refused : 1;       /* over a per-address limit: answered busy_reply, then closed */
    unsigned ip_held : 1;       /* counted in the group's per-address table until closed */
    unsigned tls_rx : 1;        /* decrypted input waits for the end-of-iteration pass */
    unsigned deferred : 1;      /* net_conn_defer: on_deferred at the end-of-iteration pass */
    net_tls_t *tls;             /* NULL on a plain connection (tls.c) */
    unsigned char ip[16];       /* the peer's address, IPv4 mapped into IPv6 */
    net_conn_t *dirty_next;
    /* Tests only (net_conn_fake): where the bytes go instead of a socket. */
    void (*fake_write)(net_conn_t *c, const void *data, size_t len, void *ud);
    void *fake_ud;
};

/* Test seam: a connection on loop with no socket. Every byte written goes at once to
 * fake_write(c, data, len, ud), as if the kernel took it; nothing is ever read (the test calls
 * c->proto->on_data), and closing works as for a socket. Runs the group's on_accept. Loop. */
net_conn_t *net_conn_fake(net_loop_t *loop,
                          void (*fake_write)(net_conn_t *c, const void *data, size_t len, void *ud),
                          void *ud);

/* Calls c's protocol's on_deferred at the end of this loop iteration (once, however often
 * asked): for work that must not run on the caller's stack, such as reading input kept back. */
void net_conn_defer(net_conn_t *c);

/* Writes bytes (copied if they cannot be written at once). While a protocol's on_data runs,
 * writes to that same connection are gathered and sent as one write when it returns. */
int net_conn_write(net_conn_t *c, const void *data, size_t len);
/* Writes a shared buffer's bytes [off, off+len) without copying: a reference is kept until
 * written. */
int net_conn_write_rbuf(net_conn_t *c, rbuf_t *b, size_t off, size_t len);
/* Queues a shared buffer's bytes without writing: every connection written this way during one
 * loop iteration is flushed once at its end, so many frames for one connection (a burst of room
 * messages) leave in one writev. */
int net_conn_queue_rbuf(net_conn_t *c, rbuf_t *b, size_t off, size_t len);
/* Sends [off, off+len) of the open regular file fd after everything written before it, and
 * before anything written after it, with sendfile(2) on libuv's threadpool: the bytes go from
 * the page cache to the socket, never through memory of ours, and a cold disk never stalls the
 * loop. done(arg, status) runs once on the loop: status 0 when the bytes went out, < 0 when
 * the connection closed first or sendfile failed (the connection is then closed). The caller
 * closes fd in done; done may run before this returns. */
int net_conn_sendfile(net_conn_t *c, int fd, uint64_t off, uint64_t len,
                      void (*done)(void *arg, int status), void *arg);
/* Starts writing what is queued now (not waiting for the end of the iteration), then returns
 * the bytes the kernel has not taken yet: the real backlog of a slow reader. */
size_t net_conn_unsent(net_conn_t *c);
/* The same, less the slice at the head of the queue (the one being written): what waits
 * behind it. Can undercount by the part of that slice already sent, never overcount. */
size_t net_conn_unsent_behind_head(net_conn_t *c);
/* Bytes written and not handed to the kernel yet, those gathered during on_data included,
 * without starting a write: what a producer has put ahead of a slow reader. */
size_t net_conn_pending(const net_conn_t *c);
/* Queued bytes behind the head slice, without starting a write (an upper bound of the above). */
size_t net_conn_queued_behind_head(const net_conn_t *c);
/* Drops queued bytes that are not already being written (a slow consumer being closed). */
void net_conn_drop_queued(net_conn_t *c);
/* Closes once the write queue is empty (now if it is). */
void net_conn_close_after_write(net_conn_t *c);
void net_conn_close(net_conn_t *c);
void net_conn_pause(net_conn_t *c);
void net_conn_resume(net_conn_t *c);
static inline void net_conn_ref(net_conn_t *c)
{
    c->refs++;
}
void net_conn_unref(net_conn_t *c);
/* Arms the connection's one timer (loop ms; 0 disarms). */
void net_conn_deadline(net_conn_t *c, uint64_t deadline_ms);
uint64_t net_loop_now(const net_loop_t *loop);

/* Between conn.c and sendfile.c: a file segment at the head of the queue starts (send), is
 * let go by a closing connection (drop: freed now, or when its threadpool call returns), and,
 * sent, leaves the queue (file_sent); wrote goes on after a write like a finished uv_write. */
int net_conn_queue_file(net_conn_t *c, net_file_t *f, size_t len);
void net_file_send(net_conn_t *c, net_file_t *f);
void net_file_drop(net_file_t *f);
void net_conn_file_sent(net_conn_t *c);
void net_conn_wrote(net_conn_t *c);

/* ---- loops ---- */
typedef struct {
    const char *host;
    int port;
    int threads;
    int stall_ms;
    const net_proto_t *proto;         /* what accepted connections speak */
    void (*on_accept)(net_conn_t *c); /* sets c->proto / c->ud */
    /* On the loop thread: before it runs, and once its connections are gone (on the main
     * thread for a loop that never started). Either may be NULL. */
    void (*on_loop_start)(net_loop_t *loop);
    void (*on_loop_end)(net_loop_t *loop);
    void *ud; /* the group's owner (the server) */
    /* TLS (tls.c): with tls set, --port speaks TLS unless tls_port is set, which then listens
     * for TLS beside the plain port. NULL: plain only, and no TLS cost on any path. */
    net_tls_ctx_t *tls;
    int tls_port;
    double tls_handshake_timeout_s;
    /* Per-address limits (iplimit.c); NULL: none. A refused connection gets busy_reply (the
     * protocol's "too many connections" answer) and is closed. */
    net_iplimit_t *iplimit;
    const char *busy_reply;
} net_group_opts_t;

struct net_loop {
    uv_loop_t uv;
    int index;
    net_group_t *group;
    pthread_t thread;
    uv_tcp_t listener;
    uv_tcp_t tls_listener; /* --tls-port's, beside the plain one */
    int tls_listening;
    uv_timer_t tick;
    uint64_t tls_swept_ms; /* the last net_tls_sweep */
    uv_async_t inbox_async;
    pthread_mutex_t inbox_lock;
    net_msg_t *inbox_head, *inbox_tail;
    int inbox_closed;
    wheel_t wheel;
    net_conn_t *conns; /* every live connection on this loop */
    long nconns;
    _Atomic long nconns_seen; /* nconns, for /metrics from another thread */
    int draining;
    int listening;
    char *rbuf; /* the loop's read buffer, shared by its connections */
    size_t rbuf_size;
    sbuf_t cork; /* writes to cork_conn gathered during its on_data */
    net_conn_t *cork_conn;
    uv_check_t flush_check; /* flushes the dirty connections once per iteration */
    net_conn_t *dirty;
    net_wseg_t *wseg_free; /* write-queue slices kept for reuse (wqueue.c), this thread's only */
    unsigned wseg_nfree;
    char date[30]; /* the current IMF-fixdate, refreshed by the tick */
    int64_t date_sec;
    /* read by the watchdog thread */
    _Atomic uint64_t heartbeat_ms;
    _Atomic(const char *) running; /* what the loop is running now, for stall reports */
    /* Per-loop figures for /metrics, summed by nobody: each has one writer (this loop's thread,
     * or the watchdog for stalls), so a relaxed load and store is the whole cost, no lock and
     * no shared cache line with another loop's hot path. Read when /metrics is scraped. */
    _Atomic uint64_t events;     /* callbacks run: accepts, reads, writes done, inbox messages,
                                  * upstream sockets (net_loop_event) */
    _Atomic uint64_t iterations; /* loop iterations (iter_prepare) */
    _Atomic uint64_t events_per_iter_milli;       /* over the last second, x1000 (the tick) */
    uint64_t rate_events, rate_iters, rate_at_ms; /* the tick's previous sample */
    uv_prepare_t iter_prepare;
    _Atomic uint64_t stalls;   /* watchdog: stalls longer than stall_ms */
    _Atomic uint64_t stall_ms; /* watchdog: their time, added when each one ends */
    /* Per-layer state of the layers above (indexed by core's slots); this loop's thread only. */
    void *ctx[NET_LOOP_CTX_MAX];
};

/* Counts one callback run by the loop (its thread only; see events above). */
static inline void net_loop_event(net_loop_t *loop)
{
    uint64_t n = atomic_load_explicit(&loop->events, memory_order_relaxed);
    atomic_store_explicit(&loop->events, n + 1, memory_order_relaxed);
}

net_group_t *net_group_new(const net_group_opts_t *opts);
/* Binds every loop's listener (SO_REUSEPORT); logs and returns a negative code on failure. */
int net_group_listen(net_group_t *g);
int net_group_start(net_group_t *g);
int net_group_nloops(const net_group_t *g);
net_loop_t *net_group_loop(net_group_t *g, int i);
void *net_group_ud(const net_group_t *g);
/* Stops accepting and asks every connection to finish; the loops end when their connections
 * are gone. net_group_force closes whatever is left. Both return at once. */
void net_group_drain(net_group_t *g);
void net_group_force(net_group_t *g);
const net_group_opts_t *net_group_opts(const net_group_t *g);
/* Frees the write-queue slices a loop keeps for reuse (conn.c), once its connections are gone. */
void net_loop_wsegs_free(net_loop_t *loop);
/* Waits for every loop thread to end (after drain), then frees the group. */
void net_group_join_free(net_group_t *g);
/* Loop threads not yet ended. */
int net_group_running(net_group_t *g);

/* ---- TLS (tls.c): a layer between the socket and the protocol, on the loop thread ----
 * Ciphertext read from the socket is read in place by the connection's input BIO and plaintext
 * comes out into a per-thread buffer for the protocol's on_data; what the protocol writes is
 * encrypted into the connection's output BIO, which the write path sends as its slices. The
 * protocol's on_accept runs once the handshake is done. The SSL_CTX is OpenSSL-refcounted: a reload
 * (SIGHUP) makes a new one for new connections while old connections keep theirs. */
typedef struct {
    roost_counter_t *handshakes, *failed, *timeouts, *reloads;
} net_tls_counters_t;
/* Loads cert (PEM, chain after the leaf) and key; logs and returns NULL on failure. Main. */
net_tls_ctx_t *net_tls_ctx_new(const char *cert, const char *key, const net_tls_counters_t *k);
/* Loads the files again; on failure logs and keeps the current context. Any thread. */
int net_tls_ctx_reload(net_tls_ctx_t *t);
void net_tls_ctx_free(net_tls_ctx_t *t);
/* For conn.c. */
int net_tls_conn_start(net_conn_t *c, net_tls_ctx_t *t);
void net_tls_conn_free(net_conn_t *c);
/* Feeds ciphertext (len may be 0: only what the SSL already holds) and delivers plaintext
 * while the protocol has not paused the connection. */
void net_tls_on_read(net_conn_t *c, const char *data, size_t len);
/* Input the SSL holds that was not delivered (the connection was paused meanwhile). */
int net_tls_has_input(const net_conn_t *c);
int net_tls_write(net_conn_t *c, const void *data, size_t len);
int net_tls_push(net_conn_t *c, int now);
size_t net_tls_pending(const net_conn_t *c);
void net_tls_close_notify(net_conn_t *c);
void net_tls_expire(net_conn_t *c);
int net_tls_handshaking(const net_conn_t *c);
/* Every second from the loop's tick: frees the record buffers of connections idle since the
 * last sweep (busy ones keep theirs: no allocation per record). */
void net_tls_sweep(net_loop_t *loop);
/* conn.c, for tls.c: hands plaintext to the protocol (corked), and the handshake's end. */
void net_conn_deliver(net_conn_t *c, char *data, size_t len);
void net_conn_secured(net_conn_t *c);
/* conn.c, for tls.c: sends ciphertext, trying the socket first when now is set. */
int net_conn_send_raw(net_conn_t *c, const char *data, size_t len, int now);
/* conn.c and wqueue.c between them: write what the queue holds, free it at close; put c on
 * its loop's end-of-iteration pass. */
void net_wqueue_flush(net_conn_t *c);
void net_wqueue_free(net_conn_t *c);
void net_conn_mark_dirty(net_conn_t *c);

/* ---- per-address connection limits (iplimit.c), shared by the loops, striped locks ---- */
typedef struct {
    int max_conns;       /* open connections per address; 0: no limit */
    int new_per_s;       /* new connections a second, bursts of twice that; 0: no limit */
    const char *trusted; /* comma-separated CIDRs (IPv4, IPv6) never limited */
    roost_counter_t *c_conns, *c_rate;
} net_iplimit_opts_t;
/* NULL with *err set when trusted does not parse, or when both limits are 0 (err 0). */
net_iplimit_t *net_iplimit_new(const net_iplimit_opts_t *o, int *err);
void net_iplimit_free(net_iplimit_t *l);
/* Counts a new connection from ip (16 bytes, v4-mapped); -EBUSY (counted) when over a limit,
 * 1 when held (the caller releases it), 0 when exempt. Any loop thread. */
int net_iplimit_take(net_iplimit_t *l, const unsigned char ip[16], uint64_t now_ms);
void net_iplimit_release(net_iplimit_t *l, const unsigned char ip[16]);
/* Sets c->ip: the peer's address, IPv4 mapped (::ffff:a.b.c.d). */
void net_conn_peer_ip(net_conn_t *c);
/* Parses "a.b.c.d/n" or "x::y/n" (no "/n": one address) into a v4-mapped address and a prefix
 * length over 128 bits. For the flag's check and tests. */
int net_cidr_parse(const char *s, size_t len, unsigned char addr[16], int *bits);

/* ---- stall watchdog ---- */
typedef struct watchdog watchdog_t;
/* Stalls are counted in each loop's stalls and stall_ms. */
watchdog_t *watchdog_start(net_group_t *g, int stall_ms);
void watchdog_stop(watchdog_t *w);

#endif
