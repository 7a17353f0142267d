/* A task's progress as server-sent events (roost_job_events): the queue's watcher hands each
 * change of the task to the request's loop, which writes it as one event. Not the watching itself
 * (watch.c) nor any route: the embedder picks the path (the app's is GET /tasks/{id}/events). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/jobs.h"

#define SSE_RETRY_MS 3000 /* the client's reconnection delay */

/* The watcher (the queue's thread) keeps one wait on the request for itself and takes one more
 * for each event it resumes the request with; its last resume frees the state on the loop,
 * after every event it posted (resumes run in the order they were made). */
typedef struct {
    roost_req_t *req;
    _Atomic int gone;   /* the client left: the watcher stops at its next call */
    int started, ended; /* on the loop */
    long seq;
} sse_t;

typedef struct {
    sse_t *sse;
    char *text; /* NULL: the task is unknown or the server stops */
    int final;
} sse_event_t;

static void sse_deliver(roost_req_t *req, void *arg)
{
    sse_event_t *e = arg;
    sse_t *s = e->sse;
    if (roost_req_gone(req)) {
        atomic_store(&s->gone, 1);
    } else if (!s->ended) {
        if (!e->text) {
            if (s->started)
                roost_stream_end(req);
            else
                roost_respond_error(req, 404, "Task not found");
            s->ended = 1;
        } else {
            if (!s->started) {
                const roost_config_t *cfg = roost_server_config(roost_req_server(req));
                roost_sse_start(req, SSE_RETRY_MS, cfg->http.sse_heartbeat_s);
                s->started = 1;
            }
            char id[24];
            snprintf(id, sizeof id, "%ld", ++s->seq);
            /* Each event is the task's whole state: one refused under backpressure is replaced
             * by the next. A final one refused ends the stream unfinished; the client reconnects
             * (Last-Event-ID) and gets the final state as its first event. */
            if (roost_sse_event(req, id, "task", e->text) < 0 && e->final) {
                roost_stream_abort(req);
                s->ended = 1;
            } else if (e->final) {
                roost_stream_end(req);
                s->ended = 1;
            }
        }
    }
    free(e->text);
    free(e);
}

/* On the loop, the watcher's last resume: every event before it has run. */
static void sse_finish(roost_req_t *req, void *arg)
{
    free(arg);
}

/* On the queue's thread. Returns 1 to stop watching. */
static int sse_watch(json_t *task, void *arg)
{
    sse_t *s = arg;
    if (atomic_load(&s->gone)) {
        roost_req_resume(s->req, sse_finish, s);
        return 1;
    }
    sse_event_t *e = calloc(1, sizeof *e);
    if (!e)
        return 0;
    e->sse = s;
    e->text = task ? json_dumps(task, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    int final = !task || roost_job_final(json_string_value(json_object_get(task, "status")));
    e->final = final;
    roost_req_t *req = s->req;
    roost_req_wait(req); /* our own wait keeps the request waiting: any thread may add one */
    roost_req_resume(req, sse_deliver, e);
    if (final) {
        roost_req_resume(req, sse_finish, s); /* the watcher's wait */
        return 1;
    }
    return 0;
}

int roost_job_events(roost_req_t *req, long long id)
{
    sse_t *s = calloc(1, sizeof *s);
    if (!s) {
        roost_respond_error(req, 503, "Out of memory");
        return -ENOMEM;
    }
    s->req = req;
    /* A reconnecting client's ids go on from its last one. */
    roost_str_t last = roost_sse_last_id(req);
    if (last.len && last.len < 20) {
        char buf[24];
        memcpy(buf, last.ptr, last.len);
        buf[last.len] = 0;
        char *end;
        long v = strtol(buf, &end, 10);
        if (!*end && v > 0)
            s->seq = v;
    }
    roost_req_wait(req);
    if (roost_job_watch(roost_req_server(req), id, sse_watch, s) < 0) {
        roost_respond_error(req, 503, "Out of memory");
        roost_req_resume(req, sse_finish, s);
        return -ENOMEM;
    }
    return 0;
}
