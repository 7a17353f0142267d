/* The articles' Celery examples as job types: process-image (resize and rotate with libvips,
 * paths only under --data-dir, the output path as the result) and bulk-email (one template,
 * progress after each address); and what /encode needs from the exec type: its arguments and
 * ffmpeg's -progress lines read as the job's progress. Not the queue (src/jobs). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "app/app.h"

#define BULK_MAX 1000

const char *const app_encode_presets[] = {"ultrafast", "superfast", "veryfast", "faster",   "fast",
                                          "medium",    "slow",      "slower",   "veryslow", NULL};

/* A relative path without ".." segments, so that it stays under --data-dir. */
static int safe_rel_path(const char *p)
{
    if (!p || !*p || p[0] == '/')
        return 0;
    for (const char *s = p; s; s = strchr(s, '/')) {
        if (*s == '/')
            s++;
        if (!strncmp(s, "..", 2) && (s[2] == '/' || s[2] == '\0'))
            return 0;
    }
    return 1;
}

static void check_rel_path(const json_t *v, const json_t *loc, json_t *errors)
{
    if (!safe_rel_path(json_string_value(v)))
        json_array_append_new(
            errors,
            roost_error_item("value_error", json_copy((json_t *)loc), json_incref((json_t *)v),
                             json_pack("{s:s}", "error", "must stay under --data-dir"),
                             "Value error, the path must stay under --data-dir"));
}

/* ---- process-image ---- */

static const char *const op_types[] = {"resize", "rotate", NULL};
static const roost_field_t op_fields[] = {
    {.name = "type", .type = ROOST_T_STR, .required = 1, .enum_values = op_types},
    {.name = "width", .type = ROOST_T_INT, .has_ge = 1, .ge = 1, .has_le = 1, .le = 10000},
    {.name = "height", .type = ROOST_T_INT, .has_ge = 1, .ge = 1, .has_le = 1, .le = 10000},
    {.name = "angle", .type = ROOST_T_NUM, .has_ge = 1, .ge = -360, .has_le = 1, .le = 360},
};
static const roost_schema_t op_schema = {.fields = op_fields, .nfields = APP_COUNT_OF(op_fields)};
static const roost_field_t op_item = {.type = ROOST_T_OBJ, .object = &op_schema};
static const roost_field_t image_fields[] = {
    {.name = "image_path",
     .type = ROOST_T_STR,
     .required = 1,
     .max_len = 255,
     .check = check_rel_path},
    {.name = "operations", .type = ROOST_T_ARR, .required = 1, .max_len = 20, .items = &op_item},
};
const roost_schema_t app_image_schema = {.fields = image_fields,
                                         .nfields = APP_COUNT_OF(image_fields)};

/* A job's payload against its schema, errors located under body.payload. */
static void check_payload(const roost_schema_t *schema, const json_t *p, json_t *errors)
{
    json_t *prefix = json_pack("[s,s]", "body", "payload");
    json_decref(roost_schema_check(schema, p, prefix, errors));
    json_decref(prefix);
}

static void image_validate(const json_t *p, json_t *errors, void *ud)
{
    check_payload(&app_image_schema, p, errors);
}

static VipsImage *apply_op(VipsImage *in, const json_t *op)
{
    VipsImage *out = NULL;
    const char *type = json_string_value(json_object_get(op, "type"));
    int rc;
    if (!strcmp(type, "resize")) {
        long w = (long)json_integer_value(json_object_get(op, "width"));
        long h = (long)json_integer_value(json_object_get(op, "height"));
        double hs = w > 0 ? (double)w / in->Xsize : 1, vs = h > 0 ? (double)h / in->Ysize : hs;
        if (w <= 0)
            hs = vs;
        rc = vips_resize(in, &out, hs, "vscale", vs, NULL);
    } else {
        rc = vips_rotate(in, &out, json_number_value(json_object_get(op, "angle")), NULL);
    }
    return rc == 0 ? out : NULL;
}

/* libvips starts on the first image job, not with the server: VIPS_INIT loads its format
 * modules (poppler, ImageMagick, HEIF, JPEG XL, OpenSlide) and their libraries, most of a
 * server's resident memory at start (about 25 of 40 MB) for a job type that may never run. */
static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ready;

static void vips_start(void)
{
    if (VIPS_INIT("roost") != 0) {
        roost_log("error", "libvips: %s", vips_error_buffer());
        return;
    }
    vips_concurrency_set(1); /* one thread per job: the job workers are the parallelism */
    vips_ready = 1;
}

static json_t *image_job(roost_job_t *job, const json_t *p, void *ud)
{
    pthread_once(&vips_once, vips_start);
    if (!vips_ready) {
        roost_job_fail(job, "libvips did not start");
        return NULL;
    }
    const char *dir = roost_server_config(roost_job_server(job))->data.dir;
    const char *rel = json_string_value(json_object_get(p, "image_path"));
    char in_path[4096], out_rel[512], out_path[4096];
    snprintf(in_path, sizeof in_path, "%s/%s", dir, rel);
    const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
    snprintf(out_rel, sizeof out_rel, "processed_%lld_%s", roost_job_id(job), base);
    snprintf(out_path, sizeof out_path, "%s/%s", dir, out_rel);
    VipsImage *img = vips_image_new_from_file(in_path, NULL);
    if (!img) {
        roost_job_fail(job, "cannot read %s: %s", rel, vips_error_buffer());
        vips_error_clear();
        roost_job_no_retry(job);
        return NULL;
    }
    json_t *ops = json_object_get(p, "operations");
    size_t n = json_array_size(ops);
    for (size_t i = 0; i < n && img; i++) {
        VipsImage *next = apply_op(img, json_array_get(ops, i));
        g_object_unref(img);
        img = next;
        if (roost_job_progress(job, (long)i + 1, (long)n + 1) < 0) {
            if (img)
                g_object_unref(img);
            return NULL;
        }
    }
    if (!img || vips_image_write_to_file(img, out_path, NULL) != 0) {
        roost_job_fail(job, "cannot process %s: %s", rel, vips_error_buffer());
        vips_error_clear();
        if (img)
            g_object_unref(img);
        return NULL;
    }
    json_t *res = json_pack("{s:s,s:i,s:i}", "output_path", out_rel, "width", img->Xsize, "height",
                            img->Ysize);
    g_object_unref(img);
    return res;
}

/* ---- bulk-email ---- */

static const roost_field_t email_item = {.type = ROOST_T_STR, .min_len = 3, .max_len = 254};
static const roost_field_t bulk_fields[] = {
    {.name = "emails",
     .type = ROOST_T_ARR,
     .required = 1,
     .min_len = 1,
     .max_len = BULK_MAX,
     .items = &email_item},
    {.name = "template", .type = ROOST_T_STR, .required = 1, .max_len = 10000},
};
const roost_schema_t app_bulk_schema = {.fields = bulk_fields,
                                        .nfields = APP_COUNT_OF(bulk_fields)};

static void bulk_validate(const json_t *p, json_t *errors, void *ud)
{
    check_payload(&app_bulk_schema, p, errors);
}

static json_t *bulk_job(roost_job_t *job, const json_t *p, void *ud)
{
    const app_config_t *cfg = ud;
    json_t *emails = json_object_get(p, "emails");
    long total = (long)json_array_size(emails);
    char path[4096];
    snprintf(path, sizeof path, "%s/outbox.log",
             roost_server_config(roost_job_server(job))->data.dir);
    roost_job_progress(job, 0, total);
    for (long i = 0; i < total; i++) {
        if (roost_job_sleep(job, (long)(cfg->email_delay_s * 1000)) < 0)
            return NULL;
        FILE *f = fopen(path, "a");
        if (!f) {
            roost_job_fail(job, "cannot open %s: %s", path, strerror(errno));
            return NULL;
        }
        fprintf(f, "To: %s\n\n%s\n.\n", json_string_value(json_array_get(emails, (size_t)i)),
                json_string_value(json_object_get(p, "template")));
        fclose(f);
        if (roost_job_progress(job, i + 1, total) < 0) /* {"current","total","percent"} */
            return NULL;
    }
    return json_pack("{s:i}", "sent", (int)total);
}

/* ---- encode: the exec type's arguments and ffmpeg's progress ---- */

json_t *app_encode_args(const char *data_dir, const json_t *body)
{
    const char *in = json_string_value(json_object_get(body, "input_path"));
    const char *out = json_string_value(json_object_get(body, "output_path"));
    const char *preset = json_string_value(json_object_get(body, "preset"));
    if (!safe_rel_path(in) || !safe_rel_path(out))
        return NULL;
    char ip[4096], op[4096];
    snprintf(ip, sizeof ip, "%s/%s", data_dir, in);
    snprintf(op, sizeof op, "%s/%s", data_dir, out);
    return json_pack("[s,s,s,s,s]", "-i", ip, "-preset", preset ? preset : "medium", op);
}

/* "  Duration: 00:00:01.00," on ffmpeg's log, then "out_time_us=N" lines from -progress. */
static void progress_line(roost_job_t *job, app_exec_progress_t *st, const char *line)
{
    int h, m;
    double s;
    long long us;
    const char *d = strstr(line, "Duration: ");
    if (d && !st->total_ms && sscanf(d, "Duration: %d:%d:%lf", &h, &m, &s) == 3)
        st->total_ms = (long long)(((h * 60 + m) * 60 + s) * 1000);
    else if (sscanf(line, "out_time_us=%lld", &us) == 1 && st->total_ms > 0 && us >= 0) {
        long long ms = us / 1000 < st->total_ms ? us / 1000 : st->total_ms;
        roost_job_progress(job, (long)ms, (long)st->total_ms);
    } else if (!strcmp(line, "progress=end") && st->total_ms > 0)
        roost_job_progress(job, (long)st->total_ms, (long)st->total_ms);
}

void app_exec_progress(roost_job_t *job, app_exec_progress_t *st, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' || p[i] == '\r') {
            st->line[st->len] = '\0';
            if (st->len)
                progress_line(job, st, st->line);
            st->len = 0;
        } else if (st->len < sizeof st->line - 1) {
            st->line[st->len++] = p[i];
        }
    }
}

int app_job_media(roost_server_t *srv, const app_config_t *cfg)
{
    const roost_job_opts_t image_o = {.validate = image_validate},
                           bulk_o = {.validate = bulk_validate, .ud = (void *)cfg};
    int rc = roost_job_type(srv, "process-image", image_job, &image_o);
    if (rc == 0)
        rc = roost_job_type(srv, "bulk-email", bulk_job, &bulk_o);
    return rc;
}
