/* roost_job_submit_answer: a handler's whole "submit this job and answer with the task", the
 * queue's callback (its own thread) handed to the request's loop. Not the queue (queue.c) nor
 * the task's later states (events.c streams them). */
#include <errno.h>

#include "jobs/jobs.h"

typedef struct {
    roost_req_t *req;
    json_t *task; /* ours, or NULL */
    int status;   /* 201; 200: a replay of its Idempotency-Key; 503: not stored */
} stored_t;       /* request memory: the request waits until answer_stored has run */

static void answer_stored(roost_req_t *req, void *arg)
{
    stored_t *st = arg;
    if (st->task && st->status < 500) {
        if (st->status == 200) /* the job exists once; the client sees the first answer again */
            roost_res_header(req, "Idempotent-Replayed", "true");
        roost_respond_json(req, 201, st->task);
    } else {
        json_decref(st->task);
        roost_respond_error(req, 503, "The job could not be stored");
    }
}

/* On the queue's thread. */
static void job_stored(json_t *task, int status, void *arg)
{
    stored_t *st = arg;
    st->task = task;
    st->status = status;
    roost_req_resume(st->req, answer_stored, st);
}

int roost_job_submit_answer(roost_req_t *req, const roost_job_spec_t *spec)
{
    roost_server_t *srv = roost_req_server(req);
    json_t *errors = json_array();
    if (!errors) {
        roost_respond_error(req, 503, "Out of memory");
        return -ENOMEM;
    }
    if (roost_job_validate(srv, spec, errors) < 0) {
        roost_respond_422(req, errors);
        return -EINVAL;
    }
    json_decref(errors);
    stored_t *st = roost_req_new(req, sizeof *st);
    if (!st)
        return -ENOMEM; /* answered 500 */
    st->req = req;
    roost_req_wait(req); /* before the queue's thread can resume it */
    int rc = roost_job_submit(srv, spec, job_stored, st);
    if (rc < 0) {
        roost_respond_error(req, 503, "The job could not be queued");
        roost_req_resume(req, NULL, NULL); /* no callback will end the wait */
    }
    return rc;
}
