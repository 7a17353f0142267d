/* Watchers of tasks (the SSE stream of GET /tasks/{id}/events, roost_job_watch) and the rooms
 * task:{id}: after each commit the dispatcher tells them what changed, reading each changed row
 * once and only when someone looks. Not the dispatcher's loop (dispatch.c). */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int roost_job_watch(roost_server_t *srv, long long id, roost_job_watch_fn fn, void *arg)
{
    jobs_t *j = jobs_get(srv);
    job_watcher_t *w = j ? malloc(sizeof *w) : NULL;
    if (!w)
        return -ENOMEM;
    pthread_mutex_lock(&j->lock);
    *w = (job_watcher_t){.next = j->watchers, .id = id, .fn = fn, .arg = arg, .fresh = 1};
    j->watchers = w;
    jobs_wake(j); /* greeted at the next batch, with the task as it is then */
    pthread_mutex_unlock(&j->lock);
    return 0;
}

/* The task as stored now, or NULL. */
static json_t *read_task(job_conn_t *c, int64_t id)
{
    job_row_t row;
    if (job_store_get(c, id, &row) != 1)
        return NULL;
    json_t *task = job_row_json(&row);
    job_row_clear(&row);
    return task;
}

void jobs_publish(jobs_t *j, job_conn_t *c, const job_idset_t *ch)
{
    pthread_mutex_lock(&j->lock);
    int any_watchers = j->watchers != NULL;
    pthread_mutex_unlock(&j->lock);
    for (int i = 0; i < ch->n; i++) {
        int64_t id = ch->ids[i];
        if (i > 0 && ch->ids[i - 1] == id)
            continue;
        char room[32];
        snprintf(room, sizeof room, "task:%lld", (long long)id);
        int to_room = roost_room_online(j->srv, room) > 0;
        if (!to_room && !any_watchers)
            continue; /* nobody looks: skip reading the row back */
        json_t *task = read_task(c, id);
        if (!task)
            continue;
        if (to_room)
            roost_room_publish(j->srv, room, "task", json_pack("{s:O}", "task", task), NULL);
        if (any_watchers) {
            pthread_mutex_lock(&j->lock);
            for (job_watcher_t **p = &j->watchers; *p;) {
                job_watcher_t *w = *p;
                if (w->id == id && !w->fresh && w->fn(task, w->arg)) {
                    *p = w->next;
                    free(w);
                } else {
                    p = &w->next;
                }
            }
            pthread_mutex_unlock(&j->lock);
        }
        json_decref(task);
    }
}

/* New watchers first get the task as it is now (or NULL: unknown task). */
void jobs_greet_watchers(jobs_t *j, job_conn_t *c)
{
    pthread_mutex_lock(&j->lock);
    for (job_watcher_t **p = &j->watchers; *p;) {
        job_watcher_t *w = *p;
        if (!w->fresh) {
            p = &w->next;
            continue;
        }
        w->fresh = 0;
        json_t *task = read_task(c, w->id);
        if (w->fn(task, w->arg) || !task) {
            *p = w->next;
            free(w);
        } else {
            p = &w->next;
        }
        json_decref(task);
    }
    pthread_mutex_unlock(&j->lock);
}

void jobs_end_watchers(jobs_t *j)
{
    pthread_mutex_lock(&j->lock);
    while (j->watchers) {
        job_watcher_t *w = j->watchers;
        j->watchers = w->next;
        w->fn(NULL, w->arg); /* tell it the end; it frees its state */
        free(w);
    }
    pthread_mutex_unlock(&j->lock);
}
