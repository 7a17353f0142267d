/* The standard process_* gauges Prometheus clients export, read from /proc/self at scrape time:
 * CPU seconds, resident and virtual memory, open and most file descriptors, start time. Linux
 * only; a value that cannot be read is left out. Not the server's own counters (server.c). */
#include "core/core.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Fields 14 (utime), 15 (stime) and 22 (starttime) of /proc/self/stat, in clock ticks. */
static int read_stat(unsigned long *utime, unsigned long *stime, unsigned long long *start)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return -1;
    return sscanf(p + 2,
                  "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                  "%*d %llu",
                  utime, stime, start) == 3
               ? 0
               : -1;
}

static double boot_time(void)
{
    char line[256];
    double bt = -1;
    FILE *f = fopen("/proc/stat", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &bt) == 1)
            break;
    if (f)
        fclose(f);
    return bt;
}

/* Linux 6.2 and later give the count as the size of /proc/self/fd, without a walk of every
 * descriptor (the dashboard samples once a second, and a server with 20,000 connections spent
 * a few percent of its CPU listing them); older kernels say 0 there: count the entries. */
static long open_fds(void)
{
    struct stat st;
    if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0)
        return (long)st.st_size;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long fds = 0;
    for (struct dirent *e; (e = readdir(d));)
        fds += e->d_name[0] != '.';
    closedir(d);
    return fds - 1; /* less the one opendir holds */
}

void core_process_metrics(sbuf_t *out)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long ut, st;
    unsigned long long start;
    if (tick > 0 && read_stat(&ut, &st, &start) == 0) {
        sbuf_printf(out,
                    "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
                    "seconds.\n# TYPE process_cpu_seconds_total counter\n"
                    "process_cpu_seconds_total %.2f\n",
                    (double)(ut + st) / (double)tick);
        double bt = boot_time();
        if (bt > 0)
            sbuf_printf(out,
                        "# HELP process_start_time_seconds Start time of the process since unix "
                        "epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds %.2f\n",
                        bt + (double)start / (double)tick);
    }
    long vm_pages = 0, rss_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &vm_pages, &rss_pages) == 2)
            sbuf_printf(out,
                        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %ld\n"
                        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
                        "# TYPE process_virtual_memory_bytes gauge\n"
                        "process_virtual_memory_bytes %ld\n",
                        rss_pages * page, vm_pages * page);
        fclose(f);
    }
    /* The limit that caps connections (a proxied call holds two descriptors). */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY)
        sbuf_printf(out,
                    "# HELP process_max_fds Maximum number of open file descriptors.\n"
                    "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
                    (unsigned long long)nofile.rlim_cur);
    long fds = open_fds();
    if (fds >= 0)
        sbuf_printf(out,
                    "# HELP process_open_fds Number of open file descriptors.\n"
                    "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n",
                    fds);
}
