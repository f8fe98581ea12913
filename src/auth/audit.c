/* audit.c: the audit log (audit.h). A line is built with jansson, then written with one write(2) on
 * an O_APPEND descriptor, so lines never interleave; rotation renames PATH.k-1 to PATH.k down to
 * PATH to PATH.1 and opens a fresh PATH. */
#include "auth/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#define AUDIT_DEFAULT_MAX (100LL << 20)
#define AUDIT_DEFAULT_KEEP 5

struct pw_audit {
    pthread_mutex_t mu;
    char *path; /* NULL: stderr */
    int fd;
    long long size, max;
    int keep;
    size_t lines, rotations;
    bool warned;
};

static int audit_open(pw_audit *a)
{
    int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return PW_EIO;
    struct stat st;
    a->size = fstat(fd, &st) == 0 ? (long long)st.st_size : 0;
    a->fd = fd;
    return 0;
}

int pw_audit_new(const struct pw_audit_config *cfg, pw_audit **out, char *why, size_t why_n)
{
    pw_audit *a = pw_xcalloc(1, sizeof *a);
    a->max = cfg->max_bytes > 0 ? cfg->max_bytes : AUDIT_DEFAULT_MAX;
    a->keep = cfg->keep > 0 ? cfg->keep : AUDIT_DEFAULT_KEEP;
    a->fd = STDERR_FILENO;
    if (cfg->path && *cfg->path && strcmp(cfg->path, "-") != 0) {
        a->path = pw_xstrdup(cfg->path);
        if (audit_open(a) != 0) {
            snprintf(why, why_n, "cannot open the audit log %s: %s", cfg->path, strerror(errno));
            free(a->path);
            free(a);
            return PW_EIO;
        }
    }
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return 0;
}

void pw_audit_free(pw_audit *a)
{
    if (!a)
        return;
    if (a->path && a->fd >= 0)
        close(a->fd);
    pthread_mutex_destroy(&a->mu);
    free(a->path);
    free(a);
}

/* Shifts the rotated files and opens a new PATH (a->mu held). */
static void audit_rotate(pw_audit *a)
{
    size_t n = strlen(a->path) + 16;
    char *from = pw_xmalloc(n), *to = pw_xmalloc(n);
    for (int k = a->keep; k >= 1; k--) {
        if (k == 1)
            snprintf(from, n, "%s", a->path);
        else
            snprintf(from, n, "%s.%d", a->path, k - 1);
        snprintf(to, n, "%s.%d", a->path, k);
        rename(from, to); /* a missing one is fine */
    }
    free(from);
    free(to);
    close(a->fd);
    a->fd = -1;
    if (audit_open(a) != 0)
        PW_ERROR("audit: cannot reopen %s after rotating it: %s", a->path, strerror(errno));
    a->rotations++;
}

static json_t *event_json(const struct pw_audit_event *ev)
{
    char ts[40];
    int64_t ms = pw_clock_real_ms();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%03dZ", (int)(ms % 1000));
    json_t *o = json_pack("{s:s}", "time", ts);
    json_object_set_new(o, "user", json_string(ev->user ? ev->user : ""));
    json_t *g = json_array();
    for (size_t i = 0; i < ev->n_groups; i++)
        json_array_append_new(g, json_string(ev->groups[i]));
    json_object_set_new(o, "groups", g);
    if (ev->verb)
        json_object_set_new(o, "verb", json_string(ev->verb));
    if (ev->method)
        json_object_set_new(o, "method", json_string(ev->method));
    if (ev->path)
        json_object_set_new(o, "path", json_string(ev->path));
    if (ev->task_id)
        json_object_set_new(o, "taskId", json_string(ev->task_id));
    json_object_set_new(o, "code", json_integer(ev->code));
    if (ev->source)
        json_object_set_new(o, "source", json_string(ev->source));
    if (ev->reason)
        json_object_set_new(o, "reason", json_string(ev->reason));
    return o;
}

void pw_audit_write(pw_audit *a, const struct pw_audit_event *ev)
{
    json_t *o = event_json(ev);
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!line)
        return;
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps' NUL becomes the newline; the length says where it ends */
    pthread_mutex_lock(&a->mu);
    if (a->path && a->size > 0 && a->size + (long long)n + 1 > a->max)
        audit_rotate(a);
    ssize_t w = a->fd >= 0 ? write(a->fd, line, n + 1) : -1;
    if (w == (ssize_t)(n + 1)) {
        a->size += (long long)w;
        a->lines++;
    } else if (!a->warned) {
        a->warned = true;
        PW_ERROR("audit: cannot write the audit log %s: %s", a->path ? a->path : "(stderr)",
                 w < 0 ? strerror(errno) : "short write");
    }
    pthread_mutex_unlock(&a->mu);
    free(line);
}

void pw_audit_counts(pw_audit *a, size_t *lines, size_t *rotations)
{
    pthread_mutex_lock(&a->mu);
    *lines = a->lines;
    *rotations = a->rotations;
    pthread_mutex_unlock(&a->mu);
}
