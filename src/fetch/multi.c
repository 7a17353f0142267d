/* One libcurl multi handle per loop, driven by that loop's libuv: curl says which sockets to
 * watch (a uv_poll each) and when to wake it (one uv_timer), and roost tells curl what happened
 * (curl_multi_socket_action). Nothing here blocks; DNS goes through curl's threaded resolver.
 * The shape of curl's own multi-uv example, with the loop's lifetime rules of roost. */
#include "fetch/fetch.h"

#include <errno.h>
#include <stdlib.h>

typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    fetch_loop_t *fl;
} fetch_sock_t;

/* Every finished transfer's message is read first, and only then are the handles removed:
 * curl_multi_remove_handle walks the messages still queued, so removing each as it is read
 * cost O(n) per call when thousands of answers arrived in one iteration (O(n^2) in all). */
static void check_done(fetch_loop_t *fl)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(fl->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        fetch_call_t *c = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        fetch_call_curl_done(c, m->data.result);
    }
    fetch_calls_run_done(fl);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    fetch_sock_t *s = h->data;
    fetch_loop_t *fl = s->fl;
    net_loop_event(fl->loop);
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(fl->multi, s->fd, flags, &fl->running);
    check_done(fl);
}

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    fetch_loop_t *fl = userp;
    fetch_sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(fl->multi, fd, NULL);
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || uv_poll_init_socket(&fl->loop->uv, &s->poll, fd) < 0) {
            free(s);
            return -1; /* curl fails the transfer */
        }
        s->fd = fd;
        s->fl = fl;
        s->poll.data = s;
        curl_multi_assign(fl->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    fetch_loop_t *fl = t->data;
    net_loop_event(fl->loop);
    curl_multi_socket_action(fl->multi, CURL_SOCKET_TIMEOUT, 0, &fl->running);
    check_done(fl);
}

/* curl asks for a wake-up: -1 cancels; 0 means "as soon as you can", which must not be a call
 * from inside this callback (curl forbids re-entry), so it is a zero timer too. */
static int on_curl_timer(CURLM *multi, long ms, void *userp)
{
    fetch_loop_t *fl = userp;
    if (ms < 0)
        uv_timer_stop(&fl->timer);
    else
        uv_timer_start(&fl->timer, on_timer, (uint64_t)ms, 0);
    return 0;
}

fetch_loop_t *fetch_loop_new(fetch_t *f, net_loop_t *loop)
{
    fetch_loop_t *fl = calloc(1, sizeof *fl);
    if (!fl)
        return NULL;
    fl->fetch = f;
    fl->loop = loop;
    fl->multi = curl_multi_init();
    if (!fl->multi) {
        free(fl);
        return NULL;
    }
    curl_multi_setopt(fl->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(fl->multi, CURLMOPT_SOCKETDATA, fl);
    curl_multi_setopt(fl->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(fl->multi, CURLMOPT_TIMERDATA, fl);
    /* Each loop keeps its share of every upstream's kept-alive connections. */
    int cache = 0;
    for (int i = 0; i < f->nupstreams; i++) {
        fetch_upstream_t *u = &f->up[i];
        struct fetch_lane *l = &fl->lanes[i];
        l->up = u;
        l->max_active = (u->max_conns + f->nloops - 1) / f->nloops;
        l->max_waiting = (u->max_queue + f->nloops - 1) / f->nloops;
        cache += l->max_active;
    }
    curl_multi_setopt(fl->multi, CURLMOPT_MAXCONNECTS, (long)(cache > 0 ? cache : 16));
    uv_timer_init(&loop->uv, &fl->timer);
    fl->timer.data = fl;
    return fl;
}

int fetch_multi_add(fetch_loop_t *fl, CURL *easy)
{
    return curl_multi_add_handle(fl->multi, easy) == CURLM_OK ? 0 : -ENOMEM;
}

void fetch_multi_remove(fetch_loop_t *fl, CURL *easy)
{
    curl_multi_remove_handle(fl->multi, easy);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void fetch_loop_close(fetch_loop_t *fl)
{
    if (!fl)
        return;
    fl->closing = 1;
    fetch_calls_abort(fl);
    /* Cleanup closes the cached connections; their sockets leave through on_socket. */
    curl_multi_cleanup(fl->multi);
    fl->multi = NULL;
    uv_close((uv_handle_t *)&fl->timer, on_timer_closed);
}
