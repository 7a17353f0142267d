/* Work a loop handler hands to the worker pool and takes back: roost_req_offload runs a CPU step
 * on a worker, then its continuation on the request's loop (run_in_threadpool, then await).
 * Not the blocking handlers (handoff.c), whose whole handler runs on a worker. */
#include "http/http.h"

#include <errno.h>
#include <stdlib.h>

typedef struct {
    tpool_work_t work;
    roost_req_t *req;
    roost_task_fn fn;
    roost_resume_fn done;
    void *arg;
} offload_t;

static void offload_back(roost_req_t *req, void *arg)
{
    offload_t *o = arg;
    roost_resume_fn done = o->done;
    void *a = o->arg;
    free(o);
    done(req, a);
}

static void offload_nothing(roost_req_t *req, void *arg)
{
}

static void offload_run(tpool_work_t *work)
{
    offload_t *o = CONTAINER_OF(work, offload_t, work);
    o->fn(o->arg);
    roost_req_resume(o->req, offload_back, o);
}

int roost_req_offload(roost_req_t *req, roost_task_fn fn, roost_resume_fn done, void *arg)
{
    offload_t *o = malloc(sizeof *o);
    if (!o)
        return -ENOMEM;
    *o = (offload_t){.req = req, .fn = fn, .done = done, .arg = arg};
    o->work.run = offload_run;
    int rc = roost_req_wait(req);
    if (rc < 0) {
        free(o);
        return rc;
    }
    if (!req->srv->pool || tpool_submit(req->srv->pool, &o->work) < 0) {
        http_count_limit(req->srv, "worker_queue");
        free(o);
        roost_res_header(req, "Retry-After", "1");
        roost_respond_error(req, 503, "Server busy: the worker queue is full");
        roost_req_resume(req, offload_nothing, NULL); /* ends the wait taken above */
        return -EBUSY;
    }
    return 0;
}
