/* The roost server: flags and environment into a configuration, the built-in routes, run. */
#include <stdio.h>
#include <stdlib.h>

#include "app/app.h"

int main(int argc, char **argv)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    int rc = roost_config_parse(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    roost_server_t *srv = roost_server_new(&cfg);
    if (!srv) {
        fprintf(stderr, "roost: cannot create the server\n");
        return 1;
    }
    if (app_routes_basic(srv) < 0 || app_routes_rooms(srv) < 0 || app_routes_jobs(srv) < 0 ||
        app_job_types(srv) < 0 || app_routes_pages(srv) < 0 || app_routes_fetch(srv) < 0 ||
        app_routes_data(srv) < 0) {
        fprintf(stderr, "roost: cannot register the routes\n");
        return 1;
    }
    rc = roost_run(srv);
    roost_server_free(srv);
    return rc < 0 ? 1 : 0;
}
