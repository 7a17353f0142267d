/* Connections to an upstream as file descriptors: curl opens and closes every socket of a
 * connection through the two callbacks here, which it keeps with the connection in its cache,
 * so each loop's lane knows how many are open (for /metrics' open and idle gauges, and to tell
 * curl when no idle one can exist), and a call knows when it failed for want of a descriptor.
 * Not the lanes' queueing (call.c) nor the multi handle (multi.c). */
#include "fetch/fetch.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    fetch_conn_ctx_t *ctx = ud;
    int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            ctx->out_of_fds = 1;
        return CURL_SOCKET_BAD;
    }
    ctx->lane->conns++;
    atomic_fetch_add_explicit(&ctx->lane->up->conns, 1, memory_order_relaxed);
    return fd;
}

/* ud is the lane (the connection may outlive the call that opened it; the lane outlives the
 * multi handle's connections: fetch_loop_close cleans the multi up first). */
static int on_close_socket(void *ud, curl_socket_t fd)
{
    struct fetch_lane *l = ud;
    l->conns--;
    atomic_fetch_sub_explicit(&l->up->conns, 1, memory_order_relaxed);
    return close(fd);
}

void fetch_conns_track(fetch_conn_ctx_t *ctx, CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, ctx);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, ctx->lane);
}

int fetch_conns_none_idle(const struct fetch_lane *l)
{
    /* Every open connection is held by one of the other active calls (this call is counted in
     * active), so curl's search of its cache would walk them all and find none: with
     * thousands of calls in flight that walk, once per new call, was most of the loop's time. */
    return l->conns < l->active;
}
