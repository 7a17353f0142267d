/* The roost server: flags and environment into the library's configuration and the app's own
 * settings (one parser, one --help), the built-in routes and job types, run; --help-man writes
 * the manual page of the same flags and routes (man.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

/* Everything between making the server and running it: the middleware, the routes and who
 * needs a key. Shared with --help-man, whose ENDPOINTS are these very routes. -EINVAL for a
 * configuration error (exit 2), another negative error else (exit 1). */
static int setup(roost_server_t *srv, const roost_config_t *cfg, app_config_t *app)
{
    /* First, so that it stops last: every layer that may use Redis stops before it. */
    if (roost_redis_start(srv) < 0 || roost_rooms_start(srv) < 0 || roost_shared_start(srv) < 0)
        return -EINVAL;
    /* The first two middleware: every later one's time and answer are in what they report. */
    if (roost_use(srv, &roost_mw_timing) < 0 || roost_use_logs(srv) < 0) {
        fprintf(stderr, "roost: cannot register the middleware\n");
        return -ENOMEM;
    }
    /* CORS before the rate limits: a preflight is answered without being counted, and a 429
     * still carries the CORS fields a browser needs to read it. */
    if (roost_cors_init(srv) < 0 || roost_rate_limit_init(srv) < 0)
        return -EINVAL;
    /* Last: it compresses what every other filter emitted. */
    if (cfg->gzip.on && roost_use_gzip(srv) < 0) {
        fprintf(stderr, "roost: cannot register the gzip middleware\n");
        return -ENOMEM;
    }
    /* The data layer first: services stop in reverse order, so the job queue (registered
     * after it) stops before the database it might use. */
    if (app_routes_data(srv) < 0 || app_routes_basic(srv, app) < 0 || app_routes_rooms(srv) < 0 ||
        app_routes_jobs(srv) < 0 || app_job_types(srv, app) < 0 || app_routes_pages(srv) < 0 ||
        app_routes_fetch(srv) < 0 || app_job_http(srv) < 0 || app_routes_cache(srv, app) < 0 ||
        app_routes_limited(srv) < 0 || roost_static_init(srv) < 0 ||
        app_routes_metrics_stream(srv) < 0 || app_routes_stream(srv, app) < 0 ||
        /* the FastAPI articles' examples at their own paths */
        app_routes_articles_concurrency(srv, app) < 0 || app_routes_articles_system(srv) < 0 ||
        app_routes_articles_fetch(srv) < 0 || app_routes_articles_tasks(srv, app) < 0 ||
        app_routes_articles_ws(srv, app) < 0 || app_job_media(srv, app) < 0 ||
        app_routes_articles_data(srv) < 0 || app_routes_docs(srv, app) < 0) {
        fprintf(stderr, "roost: cannot register the routes\n");
        return -EIO;
    }
    /* The routes that change state, and the dashboard's data, need a key when keys are set;
     * GET /healthz and the pages never do. */
    static const char *const keyed[] = {
        "POST /broadcast",
        "POST /tasks",
        "POST /tasks/{id:int}/cancel",
        "GET /tasks",
        "GET /tasks/{id:int}",
        "GET /tasks/{id:int}/events",
        "GET /rooms",
        NULL,
    };
    if (roost_require_api_key(srv, keyed) < 0) {
        fprintf(stderr, "roost: cannot load the API keys\n");
        return -EIO;
    }
    return 0;
}

int main(int argc, char **argv)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    app_config_t app = {.email_delay_s = 1, .ws_text_ping_s = 30}; /* the defaults --help shows */
    const roost_flag_t flags[] = {
        {"email-delay-s", ROOST_FLAG_SECS, &app.email_delay_s, 0, 60,
         "delay of the email job type"},
        {"exec", ROOST_FLAG_LIST, &app.exec, 0, 0,
         "'name=/path/cmd fixed args': a command the exec job type may run (repeatable)"},
        {"schedule", ROOST_FLAG_LIST, &app.schedule, 0, 0,
         "'TYPE every 60s {payload}': enqueue a job once per period (repeatable)"},
        {"debug-routes", ROOST_FLAG_BOOL, &app.debug_routes, 0, 1,
         "test-only routes (GET /debug/block blocks its loop)"},
        {"ws-text-ping-s", ROOST_FLAG_SECS, &app.ws_text_ping_s, 0, 3600,
         "/ws/{client_id}: a \"__ping__\" text this often (0: none)"},
    };
    /* Hidden (the build's build/roost.1): the page of the defaults, whatever the environment. */
    if (argc == 2 && !strcmp(argv[1], "--help-man"))
        return app_man(flags, sizeof flags / sizeof flags[0], &app, setup) < 0 ? 1 : 0;
    int rc =
        roost_config_parse_with(&cfg, "app", flags, sizeof flags / sizeof flags[0], argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    roost_server_t *srv = roost_server_new(&cfg);
    if (!srv) {
        fprintf(stderr, "roost: cannot create the server\n");
        return 1;
    }
    if ((rc = setup(srv, &cfg, &app)) < 0) {
        roost_server_free(srv);
        return rc == -EINVAL ? 2 : 1;
    }
    for (int i = 0; i < app.schedule.n; i++)
        if (roost_job_schedule(srv, app.schedule.v[i]) < 0)
            fprintf(stderr, "roost: --schedule '%s': expected 'TYPE every 60s {json payload}'\n",
                    app.schedule.v[i]);
    if (cfg.obs.otlp_endpoint && *cfg.obs.otlp_endpoint &&
        roost_otlp_start(cfg.obs.otlp_endpoint) < 0)
        fprintf(stderr, "roost: --otlp-endpoint: cannot start the exporter\n");
    rc = roost_run(srv);
    roost_otlp_stop(); /* sends the spans still queued */
    roost_server_free(srv);
    return rc < 0 ? 1 : 0;
}
