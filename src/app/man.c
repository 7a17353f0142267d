/* `roost --help-man`: the roost server's manual page, roff on stdout (the Makefile's
 * build/roost.1). The flags and the routes come from the binary itself (roost_man_write); this
 * file holds only the page's prose. Not --help (the library's parser). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/app.h"

static const char description[] =
    "roost is a real-time application server: an HTTP/1.1 (and TLS) server with one event loop "
    "per core, a worker pool that grows on demand for blocking handlers, a router with route "
    "schemas and FastAPI-style JSON errors, upstream calls on the loop, WebSocket rooms, a "
    "durable job queue, SQLite or PostgreSQL, rate limits, a response cache, gzip, CORS, "
    "streaming, server-sent events, static files, Prometheus metrics, traces and a loop-stall "
    "watchdog.\n\n"
    "It serves the routes listed under ENDPOINTS on --host and --port (127.0.0.1:8000 unless "
    "set). Errors are JSON: {\"detail\": ...}, and 422 lists every invalid field of a request "
    "at once.\n\n"
    "The same server is a C library, libroost, with the header roost/roost.h and the "
    "pkg-config name roost.";

static const roost_man_section_t more[] = {
    {"SIGNALS",
     "SIGTERM, SIGINT\tDrain: stop accepting connections, let the requests, streams and "
     "WebSockets in flight finish within --drain-s seconds, then close what is left and exit 0. "
     "Jobs not started stay queued in the job store for the next start.\n\n"
     "SIGHUP\tWith --tls-cert: read the certificate and key again; new connections use them, "
     "connections already open keep theirs."},
    {"FILES", "DATA_DIR/roost.db\tThe SQLite database (the data routes and the job queue) when "
              "--database is not set; DATA_DIR is --data-dir (./data unless set).\n\n"
              "DATA_DIR/notifications.log, DATA_DIR/outbox.log\tWhat the notification and email "
              "examples write in the background.\n\n"
              "DATA_DIR/data.txt\tThe file GET /read-file reads."},
    {"EXIT STATUS",
     "0 after a drain, --help or --version; 1 when the server cannot start (a port in use, a "
     "store that cannot be opened); 2 for a flag that does not parse."},
    {"SEE ALSO", "curl(1), systemctl(1), pkg-config(1); the project's README.md and "
                 "docs/architecture.md."},
    {NULL, NULL},
};

/* The routes open the SQLite store when they are registered: that happens in a folder of its
 * own, removed after, so that writing the page leaves nothing behind. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[512];
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int app_man(const roost_flag_t *flags, size_t nflags, app_config_t *app, app_setup_fn setup)
{
    roost_config_t cfg;
    roost_config_init(&cfg);
    const char *tmp = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/roost-man-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "roost: --help-man: cannot make a folder in %s\n", dir);
        return -errno;
    }
    cfg.data.dir = dir;
    roost_server_t *srv = roost_server_new(&cfg);
    int rc = srv ? setup(srv, &cfg, app) : -ENOMEM;
    if (rc == 0) {
        roost_man_t page = {
            .name = "roost",
            .version = roost_version(),
            .summary = "real-time application server (HTTP, WebSocket rooms, jobs, SQL)",
            .description = description,
            .section = "app",
            .extra = flags,
            .nextra = nflags,
            .more = more,
        };
        rc = roost_man_write(stdout, &page, srv);
    }
    roost_server_free(srv);
    remove_dir(dir);
    return rc;
}
