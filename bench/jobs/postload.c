/* postload: sends exactly N HTTP/1.1 POSTs of one JSON body over C keep-alive connections
 * (one request in flight per connection, like C clients each waiting for its answer), and
 * prints one JSON line: {"requests", "ok", "seconds", "p50_ms", "p99_ms", "max_ms", "t0" (epoch
 * seconds at the first request), "statuses"}.
 * "ok" counts the answers with the expected status.
 *
 *   postload HOST PORT PATH BODY N CONNECTIONS [EXPECTED_STATUS=201]
 *
 * Built by bench/jobs/run.sh (cc -O2); only for benchmarks. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    char buf[16384];
    size_t len;
    size_t sent;  /* bytes of the current request written */
    double start; /* when the current request was started */
    int busy;
} conn_t;

static char *request;
static size_t request_len;
static long total, started_n, done_n, ok_n;
static int expected = 201;
static double *lat;
static long statuses[600];

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int connect_to(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("postload: connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void start_request(conn_t *c)
{
    if (started_n >= total) {
        c->busy = 0;
        return;
    }
    started_n++;
    c->busy = 1;
    c->sent = 0;
    c->start = now();
}

/* Returns 1 when the buffer holds a whole response (and consumes it), 0 when more is needed. */
static int take_response(conn_t *c)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    long clen = 0;
    for (char *p = c->buf; p < end; p++) {
        if ((p == c->buf || p[-1] == '\n') && !strncasecmp(p, "content-length:", 15)) {
            clen = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (c->len < head + (size_t)clen)
        return 0;
    int status = atoi(c->buf + 9);
    if (status > 0 && status < 600)
        statuses[status]++;
    if (status == expected)
        ok_n++;
    lat[done_n++] = now() - c->start;
    memmove(c->buf, c->buf + head + clen, c->len - head - (size_t)clen);
    c->len -= head + (size_t)clen;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: postload HOST PORT PATH BODY N CONNECTIONS [EXPECTED_STATUS]\n");
        return 2;
    }
    const char *host = argv[1], *path = argv[3], *body = argv[4];
    int port = atoi(argv[2]);
    total = atol(argv[5]);
    int nconn = atoi(argv[6]);
    if (argc > 7)
        expected = atoi(argv[7]);
    if (total <= 0 || nconn <= 0)
        return 2;
    if (nconn > total)
        nconn = (int)total;
    request_len = (size_t)asprintf(&request,
                                   "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                                   "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                                   path, host, port, strlen(body), body);
    lat = calloc((size_t)total, sizeof *lat);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    int ep = epoll_create1(0);
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = connect_to(host, port);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
    double t0 = now(), wall0 = wall();
    for (int i = 0; i < nconn; i++)
        start_request(&conns[i]);
    struct epoll_event evs[256];
    while (done_n < total) {
        int n = epoll_wait(ep, evs, 256, 30000);
        if (n <= 0) {
            fprintf(stderr, "postload: no progress for 30 s (%ld of %ld answered)\n", done_n,
                    total);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            for (;;) { /* edge-triggered: write what we can, read what there is */
                int progressed = 0;
                if (c->busy && c->sent < request_len) {
                    ssize_t w = write(c->fd, request + c->sent, request_len - c->sent);
                    if (w > 0) {
                        c->sent += (size_t)w;
                        progressed = 1;
                    } else if (w < 0 && errno != EAGAIN) {
                        perror("postload: write");
                        return 1;
                    }
                }
                ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
                if (r == 0) {
                    fprintf(stderr, "postload: the server closed a connection\n");
                    return 1;
                }
                if (r < 0 && errno != EAGAIN) {
                    perror("postload: read");
                    return 1;
                }
                if (r > 0) {
                    c->len += (size_t)r;
                    progressed = 1;
                    while (c->busy && c->sent == request_len && take_response(c)) {
                        start_request(c);
                    }
                }
                if (!progressed)
                    break;
            }
        }
    }
    double secs = now() - t0;
    qsort(lat, (size_t)total, sizeof *lat, cmp);
    printf(
        "{\"requests\": %ld, \"ok\": %ld, \"seconds\": %.3f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, "
        "\"max_ms\": %.2f, \"t0\": %.6f, \"statuses\": {",
        total, ok_n, secs, lat[total / 2] * 1000, lat[(long)(total * 0.99)] * 1000,
        lat[total - 1] * 1000, wall0);
    int first = 1;
    for (int s = 0; s < 600; s++)
        if (statuses[s]) {
            printf("%s\"%d\": %ld", first ? "" : ", ", s, statuses[s]);
            first = 0;
        }
    printf("}}\n");
    return 0;
}
