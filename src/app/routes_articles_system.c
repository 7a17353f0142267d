/* The articles' system endpoints: GET /metrics.json (psutil's cpu_percent, memory_percent,
 * disk_usage and connections, read from /proc and statvfs, no helper process) and GET /read-file
 * (data.txt from --data-dir through libuv's file API: the loop never waits on the disk). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "app/app.h"

#define READ_FILE_MAX (1024 * 1024)
#define CPU_SAMPLE_MS 100

/* Busy and total jiffies of all CPUs (the first line of /proc/stat): 0, or -errno. */
static int cpu_times(unsigned long long *busy, unsigned long long *total)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -errno;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4)
        return -EIO;
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += v[i];
    *busy = *total - v[3] - v[4]; /* idle and iowait */
    return 0;
}

static double cpu_percent(void)
{
    unsigned long long b0, t0, b1, t1;
    if (cpu_times(&b0, &t0) < 0)
        return 0;
    struct timespec ts = {0, CPU_SAMPLE_MS * 1000000L}; /* psutil.cpu_percent(interval=0.1) */
    nanosleep(&ts, NULL);
    if (cpu_times(&b1, &t1) < 0 || t1 <= t0)
        return 0;
    return 100.0 * (double)(b1 - b0) / (double)(t1 - t0);
}

static double memory_percent(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long total = 0, avail = 0, v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemTotal: %llu", &v) == 1)
            total = v;
        else if (sscanf(line, "MemAvailable: %llu", &v) == 1)
            avail = v;
    }
    fclose(f);
    return total ? 100.0 * (double)(total - avail) / (double)total : 0;
}

/* Sockets in /proc/net/tcp and tcp6 (psutil.net_connections' count): one line each. */
static long connections(void)
{
    static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    long n = 0;
    for (size_t i = 0; i < APP_COUNT_OF(files); i++) {
        FILE *f = fopen(files[i], "r");
        if (!f)
            continue;
        char line[512];
        long lines = 0;
        while (fgets(line, sizeof line, f))
            lines++;
        fclose(f);
        n += lines > 0 ? lines - 1 : 0; /* the header */
    }
    return n;
}

static void metrics_json(roost_req_t *req, void *ud)
{
    const char *dir = roost_server_config(roost_req_server(req))->data.dir;
    struct statvfs st;
    double disk = 0;
    if (statvfs(dir, &st) == 0 && st.f_blocks > 0)
        disk = 100.0 * (double)(st.f_blocks - st.f_bfree) /
               (double)(st.f_blocks - st.f_bfree + st.f_bavail);
    roost_respond_json(req, 200,
                       json_pack("{s:f,s:f,s:f,s:I}", "cpu_percent", cpu_percent(),
                                 "memory_percent", memory_percent(), "disk_usage", disk,
                                 "connections", (json_int_t)connections()));
}

static void file_read(roost_req_t *req, int rc, const char *data, size_t len, void *arg)
{
    if (rc == -ENOENT)
        roost_respond_error(req, 404, "data.txt not found");
    else if (rc < 0)
        roost_respond_error(req, rc == -EFBIG ? 413 : 500, strerror(-rc));
    else
        roost_respond_json(req, 200, json_pack("{s:s%}", "content", data, len));
}

static void read_file(roost_req_t *req, void *ud)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/data.txt",
             roost_server_config(roost_req_server(req))->data.dir);
    if (roost_read_file(req, path, READ_FILE_MAX, file_read, NULL) < 0)
        roost_respond_error(req, 500, "Cannot read the file");
}

static const char *const tags_sys[] = {"articles: system", NULL};
static const roost_route_opts_t routes[] = {
    /* blocking: it samples the CPU for 100 ms */
    {"GET", "/metrics.json", metrics_json, .flags = ROOST_BLOCKING, .tags = tags_sys,
     .summary = "CPU, memory, disk and connections, as psutil reports them"},
    {"GET", "/read-file", read_file, .tags = tags_sys,
     .summary = "data.txt from --data-dir, read without blocking the loop"},
};

int app_routes_articles_system(roost_server_t *srv)
{
    return app_register(srv, routes, APP_COUNT_OF(routes), NULL);
}
