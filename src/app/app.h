/* The roost server's own routes, each group registered through the public API only, exactly
 * as an embedder would. */
#ifndef ROOST_APP_H
#define ROOST_APP_H

#include "roost/roost.h"

/* The roost server's own settings: flags the library does not know, parsed by the library's
 * parser in their own section (main.c). Read-only once the server runs. */
typedef struct {
    double email_delay_s;     /* --email-delay-s: the email job's delay */
    roost_strlist_t exec;     /* --exec 'name=/path/cmd args', repeatable */
    roost_strlist_t schedule; /* --schedule 'TYPE every 60s {payload}', repeatable */
    int debug_routes;         /* --debug-routes: test-only routes (a loop that blocks) */
    double ws_text_ping_s;    /* --ws-text-ping-s: the articles' "__ping__" text heartbeat */
} app_config_t;

/* /healthz, /plaintext, /json, /items, /slow-async, /slow-sync, /metrics, /debug/... */
int app_routes_basic(roost_server_t *srv, const app_config_t *cfg);
/* /ws/{room}/{user}, /echo, /broadcast, /rooms... */
int app_routes_rooms(roost_server_t *srv);
/* /tasks..., /send-notification/{email} */
int app_routes_jobs(roost_server_t *srv);
/* sleep, hash, email, exec, noop */
int app_job_types(roost_server_t *srv, const app_config_t *cfg);
int app_email_valid(const char *s);
/* Appends "<UTC time> <message>" to <data-dir>/file after req's response (a background task). */
void app_log_after_response(roost_req_t *req, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* /users..., /accounts..., /transfer, /batch, /db/pool: opens --database first */
int app_routes_data(roost_server_t *srv);
/* The http job type: a webhook with retries, its call on a loop */
int app_job_http(roost_server_t *srv);
/* A schema check: a path sent to an upstream must start with '/' (value_error otherwise). */
void app_check_absolute_path(const json_t *v, const json_t *loc, json_t *errors);
/* /proxy/{upstream}/{path:path}, /aggregate: upstream calls on the loop */
int app_routes_fetch(roost_server_t *srv);
/* A failed upstream call's answer: its status (502, 503, 504) and "Upstream call failed: ...". */
void app_respond_fetch_failure(roost_req_t *req, const roost_fetch_result_t *res);
/* /expensive-query and, with --debug-routes, /debug/cache/...: the response cache */
int app_routes_cache(roost_server_t *srv, const app_config_t *cfg);
/* GET /api/limited: the seed's rate-limited endpoint */
int app_routes_limited(roost_server_t *srv);
/* /large-data, /download-large-file: the big answers (gzip, streaming with backpressure) */
int app_routes_stream(roost_server_t *srv, const app_config_t *cfg);
/* GET / (the chat page), compiled in from web/ */
int app_routes_pages(roost_server_t *srv);
/* GET /openapi.json, /docs (Swagger UI, compiled in) and, with --debug-routes, /debug/routes */
int app_routes_docs(roost_server_t *srv, const app_config_t *cfg);

/* The FastAPI articles' examples at their own paths (routes_articles_*.c, job_media.c) */
int app_routes_articles_concurrency(roost_server_t *srv, const app_config_t *cfg);
int app_routes_articles_system(roost_server_t *srv);
int app_routes_articles_fetch(roost_server_t *srv);
int app_routes_articles_tasks(roost_server_t *srv, const app_config_t *cfg);
int app_routes_articles_ws(roost_server_t *srv, const app_config_t *cfg);
/* process-image (libvips) and bulk-email job types */
int app_job_media(roost_server_t *srv, const app_config_t *cfg);
extern const roost_schema_t app_image_schema, app_bulk_schema; /* their payloads */
extern const char *const app_encode_presets[];                 /* x264's, NULL-terminated */
/* The exec type's args for ffmpeg from an /encode body; NULL when a path leaves --data-dir. */
json_t *app_encode_args(const char *data_dir, const json_t *body);
/* The exec type feeds a command's output here: ffmpeg's -progress lines become job progress. */
typedef struct {
    char line[256];
    size_t len;
    long long total_ms; /* the input's duration, from ffmpeg's log */
} app_exec_progress_t;
void app_exec_progress(roost_job_t *job, app_exec_progress_t *st, const char *p, size_t n);
/* The data routes' database (after app_routes_data) */
roost_db_t *app_data_db(void);
/* GET /items?cursor=&limit=: the articles' cursor pages, on the data layer */
int app_routes_articles_data(roost_server_t *srv);

/* Registers every route of a table, each with ud; -EINVAL when any fails. */
/* GET /metrics/stream: metric snapshots once a second for the dashboard (metrics_stream.c). */
int app_routes_metrics_stream(roost_server_t *srv);

/* --help-man (man.c): the manual page on stdout, the routes made by setup on a server of the
 * default configuration (as main makes them). 0 or a negative error. */
typedef int (*app_setup_fn)(roost_server_t *srv, const roost_config_t *cfg, app_config_t *app);
int app_man(const roost_flag_t *flags, size_t nflags, app_config_t *app, app_setup_fn setup);

int app_register(roost_server_t *srv, const roost_route_opts_t *routes, size_t n, void *ud);
/* Zeroed heap memory for state that outlives the handler (a stream, a WebSocket's); NULL after
 * answering 503 when there is none. */
void *app_calloc(roost_req_t *req, size_t size);
/* A job queue's answer (roost_job_done_fn's task, owned, and status) carried to the request's
 * loop: app_job_resume, on the queue's thread, resumes req with fn(req, answer); fn ends with
 * app_job_answer_free. Out of memory, the task is dropped and the request waits until its
 * connection ends. */
typedef struct {
    json_t *task;
    int status;
} app_job_answer_t;
void app_job_resume(roost_req_t *req, json_t *task, int status, roost_resume_fn fn);
void app_job_answer_free(app_job_answer_t *a);
#define APP_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))
/* A query field from lo to hi, d when absent (FastAPI's Query(d, ge=lo, le=hi)); more
 * designators (a description) may follow. */
#define APP_INT_FIELD(field, d, lo, hi, ...)                                                       \
    {                                                                                              \
        .name = field, .type = ROOST_T_INT, .has_default = 1, .def.i = d, .has_ge = 1, .ge = lo,   \
        .has_le = 1, .le = hi, __VA_ARGS__                                                         \
    }
#define APP_NUM_FIELD(field, d, lo, hi, ...)                                                       \
    {                                                                                              \
        .name = field, .type = ROOST_T_NUM, .has_default = 1, .def.n = d, .has_ge = 1, .ge = lo,   \
        .has_le = 1, .le = hi, __VA_ARGS__                                                         \
    }
/* ?path=, an absolute path asked of an upstream (app_check_absolute_path), d when absent. */
#define APP_PATH_FIELD(d, desc)                                                                    \
    {                                                                                              \
        .name = "path", .type = ROOST_T_STR, .has_default = 1, .def.s = d,                         \
        .check = app_check_absolute_path, .description = desc                                      \
    }

/* A file compiled into the binary with the assembler's .incbin (path from the top folder, and
 * a Makefile dependency line for the object that embeds it): sym[] to sym_end[], followed by
 * a NUL. */
#define APP_EMBED(sym, path)                                                                       \
    __asm__(".section .rodata\n.global " #sym "\n" #sym ":\n.incbin \"" path "\"\n"                \
            ".global " #sym "_end\n" #sym "_end:\n.byte 0\n.previous\n");                          \
    extern const char sym[], sym##_end[]

#endif
