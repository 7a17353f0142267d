/* The roost server: flags and environment into the library's configuration and the app's own
 * settings (one parser, one --help), the built-in routes and job types, run. */
#include <stdio.h>
#include <stdlib.h>

#include "app/app.h"

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
    int rc =
        roost_config_parse_with(&cfg, "app", flags, sizeof flags / sizeof flags[0], argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    roost_server_t *srv = roost_server_new(&cfg);
    if (!srv) {
        fprintf(stderr, "roost: cannot create the server\n");
        return 1;
    }
    /* The first two middleware: every later one's time and answer are in what they report. */
    if (roost_use(srv, &roost_mw_timing) < 0 ||
        (cfg.http.access_log && roost_use(srv, &roost_mw_access_log) < 0)) {
        fprintf(stderr, "roost: cannot register the middleware\n");
        return 1;
    }
    /* The data layer first: services stop in reverse order, so the job queue (registered
     * after it) stops before the database it might use. */
    if (app_routes_data(srv) < 0 || app_routes_basic(srv, &app) < 0 || app_routes_rooms(srv) < 0 ||
        app_routes_jobs(srv) < 0 || app_job_types(srv, &app) < 0 || app_routes_pages(srv) < 0 ||
        app_routes_fetch(srv) < 0 || app_job_http(srv) < 0 ||
        /* the FastAPI articles' examples at their own paths */
        app_routes_articles_concurrency(srv, &app) < 0 || app_routes_articles_system(srv) < 0 ||
        app_routes_articles_fetch(srv) < 0 || app_routes_articles_tasks(srv, &app) < 0 ||
        app_routes_articles_ws(srv, &app) < 0 || app_job_media(srv, &app) < 0) {
        fprintf(stderr, "roost: cannot register the routes\n");
        return 1;
    }
    for (int i = 0; i < app.schedule.n; i++)
        if (roost_job_schedule(srv, app.schedule.v[i]) < 0)
            fprintf(stderr, "roost: --schedule '%s': expected 'TYPE every 60s {json payload}'\n",
                    app.schedule.v[i]);
    rc = roost_run(srv);
    roost_server_free(srv);
    return rc < 0 ? 1 : 0;
}
