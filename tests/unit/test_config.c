/* The flag parser: library flags land in their layer's section, an embedder's own flags are
 * parsed by the same parser (flags, environment twins, bounds). */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>

#include "roost/roost.h"

TEST(config_flags_fill_their_layer_sections)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    char *argv[] = {
        "roost", "--port",         "9001", "--max-body=200", "--ws-max-rate", "7", "--job-workers",
        "3",     "--db-pool-size", "4",    "--history=0",    "--workers-min", "2", NULL};
    CHECK_EQ_INT(roost_config_parse(&cfg, 13, argv), 0);
    CHECK_EQ_INT(cfg.net.port, 9001);
    CHECK_EQ_INT(cfg.http.max_body, 200);
    CHECK_EQ_INT(cfg.ws.max_rate, 7);
    CHECK_EQ_INT(cfg.jobs.workers, 3);
    CHECK_EQ_INT(cfg.data.pool_size, 4);
    CHECK_EQ_INT(cfg.rooms.history, 0);
    CHECK_EQ_INT(cfg.http.workers_min, 2);
    CHECK_EQ_INT(cfg.http.workers, 256); /* untouched: the default */
}

TEST(config_extra_flags_use_the_same_parser)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    double delay = 1;
    int debug = 0;
    roost_strlist_t exec = {0};
    const roost_flag_t extra[] = {
        {"email-delay-s", ROOST_FLAG_SECS, &delay, 0, 60, "delay"},
        {"debug-routes", ROOST_FLAG_BOOL, &debug, 0, 1, "debug"},
        {"exec", ROOST_FLAG_LIST, &exec, 0, 0, "commands"},
    };
    setenv("ROOST_EMAIL_DELAY_S", "0.5", 1);
    char *argv[] = {"roost",  "--debug-routes", "--exec", "a=/bin/true", "--exec=b=/bin/false",
                    "--port", "9002",           NULL};
    CHECK_EQ_INT(roost_config_parse_with(&cfg, "app", extra, 3, 7, argv), 0);
    unsetenv("ROOST_EMAIL_DELAY_S");
    CHECK(delay == 0.5);
    CHECK_EQ_INT(debug, 1);
    CHECK_EQ_INT(exec.n, 2);
    CHECK_EQ_STR(exec.v[1], "b=/bin/false");
    CHECK_EQ_INT(cfg.net.port, 9002);
    char *bad[] = {"roost", "--email-delay-s", "61", NULL};
    CHECK_EQ_INT(roost_config_parse_with(&cfg, "app", extra, 3, 3, bad), -EINVAL);
    /* Without the extra table the app's flag is unknown to the library. */
    char *unknown[] = {"roost", "--debug-routes", NULL};
    CHECK_EQ_INT(roost_config_parse(&cfg, 2, unknown), -EINVAL);
}
