/* process.c: the standard process_* metrics of Prometheus client libraries, read from /proc at
 * each scrape: CPU seconds, resident and virtual memory, open and allowed descriptors, start time. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics/metrics.h"

struct proc_metrics {
    pw_metric *cpu, *rss, *vsize, *fds, *max_fds, *start;
};

/* Fields 14 (utime), 15 (stime), 22 (starttime), 23 (vsize), 24 (rss) of /proc/self/stat. */
static int read_stat(unsigned long long *utime, unsigned long long *stime, unsigned long long *start,
                     unsigned long long *vsize, long long *rss)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    char line[2048];
    char *ok = fgets(line, sizeof line, f);
    fclose(f);
    if (!ok)
        return -1;
    char *p = strrchr(line, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return -1;
    /* after ")": field 3 (state) onwards */
    int n =
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
               utime, stime, start, vsize, rss);
    return n == 5 ? 0 : -1;
}

static double boot_time_s(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    double n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static void collect(void *arg)
{
    struct proc_metrics *pm = arg;
    unsigned long long ut, st, start, vsize;
    long long rss;
    double tick = (double)sysconf(_SC_CLK_TCK);
    if (read_stat(&ut, &st, &start, &vsize, &rss) == 0 && tick > 0) {
        pw_metric_set(pm->cpu, NULL, (double)(ut + st) / tick);
        pw_metric_set(pm->vsize, NULL, (double)vsize);
        pw_metric_set(pm->rss, NULL, (double)rss * (double)sysconf(_SC_PAGESIZE));
        pw_metric_set(pm->start, NULL, boot_time_s() + (double)start / tick);
    }
    pw_metric_set(pm->fds, NULL, open_fds());
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        pw_metric_set(pm->max_fds, NULL, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}

static struct proc_metrics proc;

static void process_init(void)
{
    pw_metrics *r = pw_metrics_default();
    proc.cpu =
        pw_metrics_counter(r, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", NULL);
    proc.rss = pw_metrics_gauge(r, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL);
    proc.vsize = pw_metrics_gauge(r, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL);
    proc.fds = pw_metrics_gauge(r, "process_open_fds", "Number of open file descriptors.", NULL);
    proc.max_fds = pw_metrics_gauge(r, "process_max_fds", "Maximum number of open file descriptors.", NULL);
    proc.start = pw_metrics_gauge(r, "process_start_time_seconds",
                                  "Start time of the process since unix epoch in seconds.", NULL);
    pw_metrics_add_collector(r, collect, &proc);
}

void pw_metrics_process_register(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, process_init);
}
