/* burst: N one-shot HTTP/1.1 GETs to one URL, one connection each, opened as fast as the
 * server's listen backlog takes them, for bench/fetch/run.sh. One thread, epoll, libc only.
 * Not a general load generator: no keep-alive, no TLS, no request body, http:// URLs only.
 *   cc -O2 -o burst bench/fetch/burst.c
 *   burst [-c CONNECTS_IN_FLIGHT] URL N TIMEOUT_S        (prints one JSON line, see report()) */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX    16384 /* a response head longer than this is an error ("head too long") */
#define READ_BUF    65536
#define MAX_EVENTS  1024
#define SLOW_SYN_NS 900000000ull /* a connect this slow had its SYN dropped (first RTO is 1 s) */

enum phase { P_WAITING, P_CONNECTING, P_WRITING, P_HEAD, P_BODY, P_DONE };
enum body { B_LENGTH, B_CHUNKED, B_CLOSE };
/* The chunked body (RFC 9112 section 7.1), read byte by byte outside the chunks' data. */
enum chunk { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_END, CH_TRAILER_START, CH_TRAILER_LINE };

typedef struct {
    int fd;
    uint8_t phase, body, chunk;
    int status;
    uint64_t t_start, t_connected, t_end; /* CLOCK_MONOTONIC ns; 0 while not reached */
    size_t sent;                          /* request bytes written */
    size_t head_len;
    char *head;         /* the response head so far (HEAD_MAX), freed once parsed */
    uint64_t remaining; /* body bytes left (B_LENGTH) or bytes left of this chunk */
    const char *err;    /* why the call failed, a short stable word for the report */
} call_t;

/* The error counts of the report: a few distinct words, so a linear list is enough. */
typedef struct {
    const char *name;
    int count;
} count_t;

static call_t *calls;
static int ncalls, next_call, connecting, max_connecting = 512, epfd;
static int finished, connect_retries;
static struct sockaddr_storage addr;
static socklen_t addr_len;
static char request[2048];
static size_t request_len;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void finish(call_t *c, const char *err)
{
    c->t_end = now_ns();
    c->err = err;
    if (c->phase == P_CONNECTING)
        connecting--;
    c->phase = P_DONE;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    free(c->head);
    c->head = NULL;
    finished++;
}

/* Opens the next call's connection; 0, or -EAGAIN when the process is short of a descriptor or a
 * local port while other calls still hold theirs (the call is tried again when one finishes). */
static int start_one(void)
{
    call_t *c = &calls[next_call];
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE) && finished < next_call) {
        connect_retries++;
        return -EAGAIN;
    }
    c->t_start = now_ns();
    next_call++;
    if (fd < 0) {
        c->fd = -1;
        c->t_end = c->t_start;
        c->err = "socket failed";
        c->phase = P_DONE;
        finished++;
        return 0;
    }
    c->fd = fd;
    c->phase = P_CONNECTING;
    connecting++;
    int rc = connect(fd, (struct sockaddr *)&addr, addr_len);
    if (rc < 0 && (errno == EADDRNOTAVAIL || errno == EAGAIN) && finished < next_call - 1) {
        /* No free local port (EAGAIN on AF_INET): give this one back and wait. */
        close(fd);
        connecting--;
        c->phase = P_WAITING;
        next_call--;
        connect_retries++;
        return -EAGAIN;
    }
    if (rc < 0 && errno != EINPROGRESS) {
        finish(c, errno == ECONNREFUSED ? "refused" : "connect failed");
        return 0;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)(c - calls)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        finish(c, "epoll_ctl failed");
    return 0;
}

static void start_more(void)
{
    while (next_call < ncalls && connecting < max_connecting)
        if (start_one() < 0)
            break;
}

/* Finds header NAME (lower case, with its colon) in the head; its value, or NULL. */
static const char *header(const char *head, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0) {
            const char *v = p + 2 + n;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    }
    return NULL;
}

/* Reads the body bytes of B_LENGTH and B_CHUNKED; 1 when the response is complete, 0 when
 * more is needed, -1 on a malformed chunk. */
static int feed_body(call_t *c, const char *p, size_t n)
{
    if (c->body == B_CLOSE)
        return 0;
    if (c->body == B_LENGTH) {
        c->remaining -= n < c->remaining ? n : c->remaining;
        return c->remaining == 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        switch (c->chunk) {
        case CH_SIZE:
        case CH_EXT:
            if (ch == '\n') {
                c->chunk = c->remaining ? CH_DATA : CH_TRAILER_START;
            } else if (c->chunk == CH_SIZE && ch != '\r') {
                int d = ch >= '0' && ch <= '9'   ? ch - '0'
                        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                 : -1;
                if (d < 0 && (ch == ';' || ch == ' ' || ch == '\t'))
                    c->chunk = CH_EXT;
                else if (d < 0 || c->remaining >> 60)
                    return -1;
                else
                    c->remaining = c->remaining * 16 + (uint64_t)d;
            }
            break;
        case CH_DATA: {
            size_t take = n - i < c->remaining ? n - i : c->remaining;
            c->remaining -= take;
            i += take - 1;
            if (c->remaining == 0)
                c->chunk = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            if (ch == '\n')
                c->chunk = CH_SIZE;
            break;
        case CH_TRAILER_START:
            if (ch == '\n')
                return 1;
            if (ch != '\r')
                c->chunk = CH_TRAILER_LINE;
            break;
        case CH_TRAILER_LINE:
            if (ch == '\n')
                c->chunk = CH_TRAILER_START;
            break;
        }
    }
    return 0;
}

/* Adds bytes to the head until its blank line; then parses the status and the body's framing
 * (RFC 9112 section 6.3) and feeds what followed the head to feed_body. */
static int feed_head(call_t *c, const char *p, size_t n)
{
    if (!c->head && !(c->head = malloc(HEAD_MAX + 1)))
        return -1;
    size_t take = n < HEAD_MAX - c->head_len ? n : HEAD_MAX - c->head_len;
    memcpy(c->head + c->head_len, p, take);
    size_t old = c->head_len;
    c->head_len += take;
    c->head[c->head_len] = '\0';
    char *end = strstr(c->head + (old > 3 ? old - 3 : 0), "\r\n\r\n");
    if (!end) {
        if (c->head_len == HEAD_MAX)
            c->err = "head too long";
        return c->head_len == HEAD_MAX ? -1 : 0;
    }
    size_t head_size = (size_t)(end + 4 - c->head);
    end[2] = '\0'; /* header() stops at the last header's CRLF */
    if (strncmp(c->head, "HTTP/1.", 7) != 0 || c->head_len < 12) {
        c->err = "not HTTP";
        return -1;
    }
    c->status = atoi(c->head + 9);
    const char *te = header(c->head, "transfer-encoding:");
    const char *cl = header(c->head, "content-length:");
    c->phase = P_BODY;
    if (c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200))
        return 1; /* no body; an interim 1xx is not expected from a GET without Expect */
    if (te && strncasecmp(te, "chunked", 7) == 0) {
        c->body = B_CHUNKED;
        c->chunk = CH_SIZE;
        c->remaining = 0;
    } else if (cl) {
        c->body = B_LENGTH;
        c->remaining = strtoull(cl, NULL, 10);
        if (c->remaining == 0)
            return 1;
    } else {
        c->body = B_CLOSE;
    }
    /* What came after the head: the bytes of this read past head_size - old. */
    size_t used = head_size - old;
    int rc = feed_body(c, p + used, n - used);
    free(c->head);
    c->head = NULL;
    return rc;
}

static void on_readable(call_t *c)
{
    static char buf[READ_BUF];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            finish(c, errno == ECONNRESET ? "reset" : "recv failed");
            return;
        }
        if (n == 0) {
            int complete = c->phase == P_BODY && c->body == B_CLOSE;
            finish(c, complete ? NULL : c->phase == P_HEAD ? "closed before head" : "short body");
            return;
        }
        int rc = c->phase == P_HEAD ? feed_head(c, buf, (size_t)n) : feed_body(c, buf, (size_t)n);
        if (rc != 0) {
            finish(c, rc > 0 ? NULL : c->err ? c->err : "bad body");
            return;
        }
    }
}

static void on_writable(call_t *c)
{
    if (c->phase == P_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            finish(c, err == ECONNREFUSED ? "refused"
                      : err == ETIMEDOUT  ? "connect timeout"
                                          : "connect failed");
            return;
        }
        connecting--;
        c->t_connected = now_ns();
        c->phase = P_WRITING;
    }
    ssize_t n = send(c->fd, request + c->sent, request_len - c->sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        finish(c, errno == ECONNRESET || errno == EPIPE ? "reset" : "send failed");
        return;
    }
    c->sent += (size_t)n;
    if (c->sent < request_len)
        return;
    c->phase = P_HEAD;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(c - calls)};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        finish(c, "epoll_ctl failed");
}

static int parse_url(const char *url, char *host, size_t host_size, char *port, const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    const char *colon = memchr(h, ':', slash ? (size_t)(slash - h) : strlen(h));
    const char *host_end = colon ? colon : slash ? slash : h + strlen(h);
    if ((size_t)(host_end - h) >= host_size || host_end == h)
        return -EINVAL;
    memcpy(host, h, (size_t)(host_end - h));
    host[host_end - h] = '\0';
    if (colon)
        snprintf(port, 8, "%.*s", (int)((slash ? slash : h + strlen(h)) - colon - 1), colon + 1);
    else
        strcpy(port, "80");
    *path = slash ? slash : "/";
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n): the smallest value with q of the values at or
 * below it. */
static double pct_s(const uint64_t *v, size_t n, double q)
{
    size_t k = (size_t)(q * (double)n + 0.999999);
    return n ? (double)v[(k ? k : 1) - 1] / 1e9 : 0;
}

static void count(count_t *counts, int *ncounts, const char *name)
{
    for (int i = 0; i < *ncounts; i++) {
        if (strcmp(counts[i].name, name) == 0) {
            counts[i].count++;
            return;
        }
    }
    counts[(*ncounts)++] = (count_t){name, 1};
}

static void print_counts(const char *key, const count_t *counts, int ncounts)
{
    printf(",\"%s\":{", key);
    for (int i = 0; i < ncounts; i++)
        printf("%s\"%s\":%d", i ? "," : "", counts[i].name, counts[i].count);
    printf("}");
}

/* One JSON line: n, ok (2xx), wall_s (first connect to last response of any status), p50_s,
 * p99_s and max_s of the 2xx calls (connect to last byte), statuses (complete responses per
 * code), errors (calls with none, per cause; "timeout: ..." says which phase the deadline
 * found), connect_p99_s and connect_max_s, slow_connects (connects over 0.9 s: a dropped SYN),
 * connected_s (when the last connect completed), connect_retries (times a call had to wait for
 * a descriptor or a local port, held by calls in flight) and client_cpu_s (this process's user +
 * system time). */
static void report(uint64_t t0)
{
    uint64_t *lat = calloc((size_t)ncalls + 1, sizeof *lat);
    uint64_t *con = calloc((size_t)ncalls + 1, sizeof *con);
    static char codes[1000][4];
    count_t statuses[64], errors[64];
    int nstatuses = 0, nerrors = 0;
    size_t nlat = 0, ncon = 0;
    uint64_t last = 0, last_connect = 0;
    if (!lat || !con) {
        fprintf(stderr, "burst: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < ncalls; i++) {
        call_t *c = &calls[i];
        if (c->t_connected) {
            con[ncon++] = c->t_connected - c->t_start;
            last_connect = c->t_connected > last_connect ? c->t_connected : last_connect;
        }
        if (c->phase != P_DONE) {
            static const char *why[] = {"timeout: not started", "timeout: connecting",
                                        "timeout: sending", "timeout: waiting for the head",
                                        "timeout: reading the body"};
            count(errors, &nerrors, why[c->phase]);
            continue;
        }
        if (c->err) {
            count(errors, &nerrors, c->err);
            continue;
        }
        last = c->t_end > last ? c->t_end : last;
        int code = c->status >= 100 && c->status <= 999 ? c->status : 0;
        snprintf(codes[code], sizeof codes[code], "%d", code);
        if (nstatuses < 64)
            count(statuses, &nstatuses, codes[code]);
        if (code >= 200 && code < 300)
            lat[nlat++] = c->t_end - c->t_start;
    }
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    qsort(con, ncon, sizeof *con, cmp_u64);
    size_t slow = 0;
    for (size_t i = 0; i < ncon; i++)
        slow += con[i] >= SLOW_SYN_NS;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("{\"n\":%d,\"ok\":%zu,", ncalls, nlat);
    if (last)
        printf("\"wall_s\":%.3f,", (double)(last - t0) / 1e9);
    else
        printf("\"wall_s\":null,");
    if (nlat)
        printf("\"p50_s\":%.3f,\"p99_s\":%.3f,\"max_s\":%.3f", pct_s(lat, nlat, 0.5),
               pct_s(lat, nlat, 0.99), (double)lat[nlat - 1] / 1e9);
    else
        printf("\"p50_s\":null,\"p99_s\":null,\"max_s\":null");
    print_counts("statuses", statuses, nstatuses);
    print_counts("errors", errors, nerrors);
    printf(",\"connect_p99_s\":%.3f,\"connect_max_s\":%.3f,\"slow_connects\":%zu,"
           "\"connected_s\":%.3f,\"connect_retries\":%d,\"client_cpu_s\":%.3f}\n",
           pct_s(con, ncon, 0.99), ncon ? (double)con[ncon - 1] / 1e9 : 0, slow,
           last_connect ? (double)(last_connect - t0) / 1e9 : 0, connect_retries, cpu);
    free(lat);
    free(con);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt != 'c' || (max_connecting = atoi(optarg)) < 1) {
            fprintf(stderr, "usage: burst [-c CONNECTS_IN_FLIGHT] URL N TIMEOUT_S\n");
            return 2;
        }
    }
    if (argc - optind != 3) {
        fprintf(stderr, "usage: burst [-c CONNECTS_IN_FLIGHT] URL N TIMEOUT_S\n");
        return 2;
    }
    char host[256], port[8];
    const char *path;
    ncalls = atoi(argv[optind + 1]);
    double timeout_s = atof(argv[optind + 2]);
    if (parse_url(argv[optind], host, sizeof host, port, &path) < 0 || ncalls < 1 ||
        timeout_s <= 0) {
        fprintf(stderr, "burst: want http://host[:port]/path, N >= 1 and TIMEOUT_S > 0\n");
        return 2;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "burst: %s: %s\n", host, gai_strerror(rc));
        return 2;
    }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addr_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n",
                                   path, host, port);
    if (request_len >= sizeof request) {
        fprintf(stderr, "burst: URL too long\n");
        return 2;
    }
    /* One descriptor per call: the soft limit up to the hard one (what ulimit -n would do). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    calls = calloc((size_t)ncalls, sizeof *calls);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!calls || epfd < 0) {
        perror("burst");
        return 1;
    }
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(timeout_s * 1e9);
    struct epoll_event evs[MAX_EVENTS];
    start_more();
    while (finished < ncalls) {
        uint64_t now = now_ns();
        if (now >= deadline)
            break;
        /* At most 100 ms a wait, so calls waiting for a descriptor are tried again. */
        uint64_t wait_ms = (deadline - now) / 1000000 + 1;
        int n = epoll_wait(epfd, evs, MAX_EVENTS, wait_ms < 100 ? (int)wait_ms : 100);
        if (n < 0 && errno != EINTR) {
            perror("burst: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            call_t *c = &calls[evs[i].data.u32];
            if (c->phase == P_CONNECTING || c->phase == P_WRITING)
                on_writable(c);
            else if (c->phase == P_HEAD || c->phase == P_BODY)
                on_readable(c);
        }
        start_more();
    }
    report(t0);
    return 0;
}
