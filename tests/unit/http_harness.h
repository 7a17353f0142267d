/* A server and one connection without sockets, for the session and middleware tests: the
 * connection is net_conn_fake (every byte written is captured in out), the loop is a real
 * libuv loop the test turns by hand, and blocking handlers run on a real worker pool. */
#ifndef ROOST_HTTP_HARNESS_H
#define ROOST_HTTP_HARNESS_H

#include "http/http.h"

typedef struct {
    roost_server_t *srv;
    net_group_t *group;
    net_loop_t *loop;
    net_conn_t *conn; /* NULL once closed */
    int conn_closed;  /* the connection's memory is gone */
    sbuf_t out;       /* every byte written to the connection */
} harness_t;

/* Step 1: a server to add routes and middleware to. */
void harness_init(harness_t *h);
/* Steps 1 and 2 with one route. */
void harness_start(harness_t *h, const char *path, roost_handler_fn fn, unsigned flags);
/* Step 2: a pool, a loop (not running) and one accepted connection. */
void harness_connect(harness_t *h);
/* Feeds bytes as if read from the socket. */
void harness_send(harness_t *h, const char *bytes);
/* Turns the loop until out holds n responses (counted by status lines) or ms passed;
 * returns how many it holds. */
int harness_run_until(harness_t *h, int n, int ms);
/* Where text first appears in out, -1 if it does not. */
long harness_find(const harness_t *h, const char *text);
/* Closes the connection (if still open), turns the loop until its memory is gone, frees all. */
void harness_free(harness_t *h);

#endif
