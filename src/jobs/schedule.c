/* Periodic schedules (--schedule 'TYPE every 60s {payload}', Celery beat's job): parsed once,
 * then at each batch a schedule whose period slot (unix time / period) is newer than the one
 * stored enqueues one job, in the batch's transaction, so a slot runs once even across a
 * restart (a missed period runs once). With nodes sharing the store, only the leader (lease.c)
 * runs them, and the slot only moves forward. Not the dispatcher's loop (dispatch.c). */
#include "jobs/jobs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "TYPE every 60s {payload}" */
static int parse_one(const char *spec, job_schedule_t *s)
{
    char type[64], unit = 's';
    double every = 0;
    int used = 0;
    if (sscanf(spec, " %63s every %lf%c%n", type, &every, &unit, &used) < 3 || every <= 0)
        return -EINVAL;
    double mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 0;
    if (!mult)
        return -EINVAL;
    const char *rest = spec + used;
    json_t *payload =
        *rest && strspn(rest, " ") != strlen(rest) ? json_loads(rest, 0, NULL) : json_object();
    if (!json_is_object(payload)) {
        json_decref(payload);
        return -EINVAL;
    }
    s->type = strdup(type);
    s->payload = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    s->period_ms = (int64_t)(every * mult * 1000);
    json_decref(payload);
    if (asprintf(&s->key, "%s every %lldms %s", s->type, (long long)s->period_ms, s->payload) < 0)
        s->key = NULL;
    return s->type && s->payload && s->key ? 0 : -ENOMEM;
}

int jobs_schedule_add(jobs_t *j, const char *spec)
{
    job_schedule_t *s = realloc(j->schedules, (size_t)(j->nschedules + 1) * sizeof *s);
    if (!s)
        return -ENOMEM;
    j->schedules = s;
    s += j->nschedules;
    memset(s, 0, sizeof *s);
    int rc = parse_one(spec, s);
    if (rc < 0) {
        free(s->type);
        free(s->payload);
        free(s->key);
        return rc;
    }
    j->nschedules++;
    return 0;
}

void jobs_schedules_run(jobs_t *j, job_conn_t *c, int64_t now, job_idset_t *ch)
{
    for (int i = 0; i < j->nschedules; i++) {
        job_schedule_t *s = &j->schedules[i];
        int64_t slot = now / s->period_ms;
        if (job_store_schedule_slot(c, s->key) >= slot)
            continue;
        /* The slot first: when another node moved it (two leaders for a moment), no job. */
        if (job_store_set_schedule_slot(c, s->key, slot) != 0)
            continue;
        job_row_t row = {
            .type = s->type, .payload = s->payload, .created_ms = now, .run_at_ms = now};
        if (job_store_insert(c, &row) == 0) {
            roost_counter_add(j->c_submitted, 1);
            job_idset_add(ch, row.id);
        }
    }
}

void jobs_schedules_free(jobs_t *j)
{
    for (int i = 0; i < j->nschedules; i++) {
        free(j->schedules[i].type);
        free(j->schedules[i].payload);
        free(j->schedules[i].key);
    }
    free(j->schedules);
    j->schedules = NULL;
    j->nschedules = 0;
}
