/* Watchers of tasks (the SSE stream of GET /tasks/{id}/events, roost_job_watch) and the rooms
 * task:{id}: after each commit the dispatcher tells them what changed, reading each changed row
 * once and only when someone looks. With nodes sharing the store (PostgreSQL), a watched task
 * may change on another node: each watcher keeps a hash of what it was last sent, and watched
 * tasks are read back every POLL_MS, so an SSE watcher on any node sees every state the poll
 * catches (progress steps closer than POLL_MS may merge; the final state always arrives).
 * Rooms task:{id} reach other nodes through the rooms' own bridge (--redis), not from here.
 * Not the dispatcher's loop (dispatch.c). */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS 200

/* FNV-1a of the task's JSON text: a change of anything the watcher would see. */
static uint64_t task_sig(const json_t *task)
{
    char *text = task ? json_dumps(task, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = text; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    free(text);
    return h;
}

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
                if (w->id != id || w->fresh) {
                    p = &w->next;
                    continue;
                }
                w->sig = j->shared ? task_sig(task) : 0;
                if (w->fn(task, w->arg)) {
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
        w->sig = j->shared ? task_sig(task) : 0;
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

static int in_set(const job_idset_t *s, int64_t id)
{
    for (int i = 0; i < s->n; i++)
        if (s->ids[i] == id)
            return 1;
    return 0;
}

void jobs_poll_watchers(jobs_t *j, job_conn_t *c, int64_t now, job_idset_t *ch)
{
    if (!j->shared || now < j->next_poll_ms)
        return;
    j->next_poll_ms = now + POLL_MS;
    /* The watched ids and what each was sent, taken under the lock; read after it. */
    int n = 0, cap = 0;
    struct {
        int64_t id;
        uint64_t sig;
    } *seen = NULL;
    pthread_mutex_lock(&j->lock);
    for (job_watcher_t *w = j->watchers; w; w = w->next)
        cap += !w->fresh;
    seen = cap ? malloc((size_t)cap * sizeof *seen) : NULL;
    for (job_watcher_t *w = j->watchers; seen && w; w = w->next)
        if (!w->fresh) {
            seen[n].id = w->id;
            seen[n++].sig = w->sig;
        }
    pthread_mutex_unlock(&j->lock);
    for (int i = 0; i < n; i++) {
        if (in_set(ch, seen[i].id))
            continue; /* changed here: published anyway */
        json_t *task = read_task(c, seen[i].id);
        if (task && task_sig(task) != seen[i].sig)
            job_idset_add(ch, seen[i].id); /* published (and sig updated) by jobs_publish */
        json_decref(task);
    }
    free(seen);
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
