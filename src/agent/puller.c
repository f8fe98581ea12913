/* puller.c: the agent's assignment table and its pool of pull threads (puller.h). An entry a pull
 * thread holds (busy) is never freed by anyone else: apply marks it stop, and the thread frees it
 * when its call returns. */
#include "agent/puller.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

enum st { ST_QUEUED, ST_PULLING, ST_SUCCEEDED, ST_SKIPPED, ST_FAILED };
static const char *const st_names[] = {"queued", "pulling", "succeeded", "skipped", "failed"};

struct asg {
    char id[33];
    char *task, *image, *policy;
    int retries;
    int64_t deadline_ms;
    char *auth_user, *auth_pass, *auth_b64, *auth_server, *auth_idtoken, *auth_regtoken; /* never logged */
    bool has_auth;
    enum st state;
    char reason[64];
    char message[512];
    int attempts;
    double duration_s;
    int stop;    /* read by the pull's progress callback */
    bool busy;   /* a pull thread holds it */
    bool wanted; /* in prewarmd's last answer */
};

struct pw_puller {
    struct pw_puller_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct asg **v;
    size_t n;
    bool stopping;
    pthread_t *threads;
    int n_threads;
    uint64_t pulls;
};

static void secret_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static void asg_free(struct asg *a)
{
    free(a->task);
    free(a->image);
    free(a->policy);
    secret_free(a->auth_user);
    secret_free(a->auth_pass);
    secret_free(a->auth_b64);
    free(a->auth_server);
    secret_free(a->auth_idtoken);
    secret_free(a->auth_regtoken);
    free(a);
}

static size_t find(const pw_puller *p, const char *id)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i]->id, id) == 0)
            return i;
    return p->n;
}

/* Removes entry i keeping the order (the queue is served first in, first out). */
static void remove_at(pw_puller *p, size_t i)
{
    asg_free(p->v[i]);
    memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof *p->v);
    p->n--;
}

/* What one pull came to, made without the lock and applied under it. */
struct outcome {
    enum st state; /* ST_PULLING: cancelled */
    char reason[64];
    char message[512];
    double duration_s;
};

static void finish(struct outcome *o, enum st s, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void finish(struct outcome *o, enum st s, const char *reason, const char *fmt, ...)
{
    o->state = s;
    snprintf(o->reason, sizeof o->reason, "%s", reason ? reason : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->message, sizeof o->message, fmt, ap);
    va_end(ap);
}

/* ---- one pull ---- */

/* Registry failures that may pass: worth another attempt while the deadline allows. */
static bool transient(const char *msg)
{
    static const char *const words[] = {"connection refused", "i/o timeout", "connection reset", "no route to host",
                                        "502 Bad Gateway", "503 Service Unavailable", "504 Gateway Timeout",
                                        "500 Internal Server Error", "unexpected EOF", "TLS handshake timeout",
                                        "too many requests", "429"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(msg, words[i]))
            return true;
    return false;
}

static bool invalid_name(const struct pw_cri_status *st)
{
    return st->grpc == PW_CRI_GRPC_INVALID_ARGUMENT || strstr(st->message, "invalid reference format") ||
           strstr(st->message, "failed to parse image reference");
}

/* Below the floor of free space on the image filesystem? *msg_out (caller frees) says so. A
 * mountpoint the agent cannot see (another mount namespace) skips the check, logged once. */
static bool space_short(pw_puller *p, char **msg_out)
{
    if (p->cfg.min_free_bytes <= 0 && p->cfg.min_free_percent <= 0)
        return false;
    struct pw_cri_fs fs;
    struct pw_cri_status st;
    if (pw_cri_fs_info(p->cfg.cri, 10000, &fs, &st) != 0)
        return false; /* the pull itself will say what is wrong with the runtime */
    struct statvfs sv;
    if (statvfs(fs.mountpoint, &sv) != 0) {
        static int warned;
        if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
            PW_WARN("cannot read the free space of the image filesystem %s (not visible to the agent?): "
                    "--min-free-bytes/--min-free-percent are not checked",
                    fs.mountpoint);
        return false;
    }
    unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    unsigned long long total = (unsigned long long)sv.f_blocks * sv.f_frsize;
    double pct = total ? 100.0 * (double)avail / (double)total : 0;
    if ((p->cfg.min_free_bytes > 0 && avail < (unsigned long long)p->cfg.min_free_bytes) ||
        (p->cfg.min_free_percent > 0 && pct < p->cfg.min_free_percent)) {
        *msg_out = pw_xasprintf("the image filesystem %s has %llu bytes (%.1f%%) free, below the agent's floor "
                                "(--min-free-bytes %lld, --min-free-percent %g); nothing was pulled",
                                fs.mountpoint, avail, pct, p->cfg.min_free_bytes, p->cfg.min_free_percent);
        return true;
    }
    return false;
}

/* Serves a (held busy: its fields other than stop and attempts are this thread's to read). */
static void pull_one(pw_puller *p, struct asg *a, struct outcome *o)
{
    int64_t t0 = pw_clock_mono_ms();
    struct pw_cri_status st = {0};
    bool never = strcmp(a->policy, "Never") == 0, always = strcmp(a->policy, "Always") == 0;
    int64_t left = a->deadline_ms - pw_clock_real_ms();
    if (left <= 0) {
        finish(o, ST_FAILED, "DeadlineExceeded", "the assignment's deadline had passed before its pull started");
        return;
    }
    struct pw_cri_image *held = NULL;
    int rc = pw_cri_image_status(p->cfg.cri, a->image, left < 10000 ? (int)left : 10000, &held, &st);
    if (rc == PW_EUNAVAIL) {
        finish(o, ST_FAILED, "RuntimeUnavailable", "the container runtime is unavailable: %s", st.message);
        return;
    }
    if (rc == 0 && held && !always) {
        pw_cri_images_free(held, 1);
        finish(o, ST_SKIPPED, "AlreadyPresent", "the runtime already holds the image");
        return;
    }
    pw_cri_images_free(held, held ? 1 : 0);
    if (rc != 0 && invalid_name(&st)) {
        finish(o, ST_FAILED, "InvalidImageName", "%s", st.message);
        return;
    }
    if (never) {
        finish(o, ST_FAILED, "ErrImageNeverPull", "the image is not present and pullPolicy is Never");
        return;
    }
    char *why = NULL;
    if (space_short(p, &why)) {
        finish(o, ST_FAILED, "InsufficientDiskSpace", "%s", why);
        free(why);
        return;
    }
    struct pw_cri_auth auth = {a->auth_user, a->auth_pass, a->auth_b64, a->auth_server, a->auth_idtoken,
                               a->auth_regtoken};
    int64_t backoff = 1000;
    for (;;) {
        left = a->deadline_ms - pw_clock_real_ms();
        if (left <= 0) {
            finish(o, ST_FAILED, "DeadlineExceeded", "the pull did not finish by the deadline%s%s",
                   st.message[0] ? "; last error: " : "", st.message);
            return;
        }
        int attempt = __atomic_add_fetch(&a->attempts, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&p->pulls, 1, __ATOMIC_RELAXED);
        rc = pw_cri_pull(p->cfg.cri, a->image, a->has_auth ? &auth : NULL, left > 0x7fffffff ? 0x7fffffff : (int)left,
                         &a->stop, NULL, &st);
        if (rc == 0) {
            o->duration_s = (double)(pw_clock_mono_ms() - t0) / 1000.0;
            finish(o, ST_SUCCEEDED, "", "pulled in %.3fs", o->duration_s);
            return;
        }
        if (rc == PW_ECANCELED)
            return; /* the caller drops it */
        if (rc == PW_EUNAVAIL) {
            finish(o, ST_FAILED, "RuntimeUnavailable", "the container runtime is unavailable: %s", st.message);
            return;
        }
        if (rc == PW_ETIMEDOUT) {
            finish(o, ST_FAILED, "DeadlineExceeded", "the pull did not finish by the deadline: %s", st.message);
            return;
        }
        if (invalid_name(&st)) {
            finish(o, ST_FAILED, "InvalidImageName", "%s", st.message);
            return;
        }
        bool again = (transient(st.message) || st.grpc == PW_CRI_GRPC_UNAVAILABLE) && attempt <= a->retries &&
                     pw_clock_real_ms() + backoff < a->deadline_ms;
        if (!again) {
            finish(o, ST_FAILED, "ErrImagePull", "%s", st.message[0] ? st.message : pw_strerror(rc));
            return;
        }
        PW_INFO("pull of %s failed (attempt %d of %d), retrying in %llds: %s", a->image, attempt,
                a->retries + 1, (long long)(backoff / 1000), st.message);
        for (int64_t slept = 0; slept < backoff && !__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE); slept += 100)
            pw_clock_sleep_ms(100);
        if (__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE))
            return;
        backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
    }
}

static void *worker(void *arg)
{
    pw_puller *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct asg *a = NULL;
        for (size_t i = 0; i < p->n && !a; i++)
            if (p->v[i]->state == ST_QUEUED && !p->v[i]->busy)
                a = p->v[i];
        if (!a && p->stopping)
            break;
        if (!a) {
            pthread_cond_wait(&p->cond, &p->mu);
            continue;
        }
        a->busy = true;
        a->state = ST_PULLING;
        pthread_mutex_unlock(&p->mu);
        p->cfg.changed(p->cfg.arg);
        struct outcome o = {.state = ST_PULLING};
        pull_one(p, a, &o);
        pthread_mutex_lock(&p->mu);
        a->busy = false;
        a->state = o.state;
        memcpy(a->reason, o.reason, sizeof a->reason);
        memcpy(a->message, o.message, sizeof a->message);
        a->duration_s = o.duration_s;
        if (a->stop || a->state == ST_PULLING) { /* cancelled: prewarmd no longer wants it */
            PW_INFO("assignment %s (%s) stopped", a->id, a->image);
            remove_at(p, find(p, a->id));
        } else {
            PW_INFO("assignment %s (%s): %s%s%s", a->id, a->image, st_names[a->state], a->reason[0] ? ", " : "",
                    a->reason);
        }
        pthread_mutex_unlock(&p->mu);
        p->cfg.changed(p->cfg.arg);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the table ---- */

static char *dup_str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? pw_xstrdup(s) : NULL;
}

static struct asg *asg_of(const json_t *j)
{
    const char *id = json_string_value(json_object_get(j, "id"));
    const char *image = json_string_value(json_object_get(j, "image"));
    if (!id || strlen(id) != 32 || !image || !*image)
        return NULL;
    struct asg *a = pw_xcalloc(1, sizeof *a);
    memcpy(a->id, id, 33);
    a->task = pw_xstrdup(json_string_value(json_object_get(j, "task")) ? json_string_value(json_object_get(j, "task")) : "");
    a->image = pw_xstrdup(image);
    const char *pol = json_string_value(json_object_get(j, "pullPolicy"));
    a->policy = pw_xstrdup(pol ? pol : "IfNotPresent");
    a->retries = (int)json_integer_value(json_object_get(j, "retries"));
    a->deadline_ms = json_integer_value(json_object_get(j, "deadlineUnixMs"));
    if (a->deadline_ms <= 0)
        a->deadline_ms = pw_clock_real_ms() + 600000;
    const json_t *auth = json_object_get(j, "auth");
    if (json_is_object(auth)) {
        a->has_auth = true;
        a->auth_user = dup_str(auth, "username");
        a->auth_pass = dup_str(auth, "password");
        a->auth_b64 = dup_str(auth, "auth");
        a->auth_server = dup_str(auth, "serverAddress");
        a->auth_idtoken = dup_str(auth, "identityToken");
        a->auth_regtoken = dup_str(auth, "registryToken");
    }
    a->state = ST_QUEUED;
    return a;
}

void pw_puller_apply(pw_puller *p, const json_t *assignments, const json_t *cancel)
{
    bool added = false;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        p->v[i]->wanted = false;
    size_t k;
    const json_t *j;
    json_array_foreach(assignments, k, j) {
        const char *id = json_string_value(json_object_get(j, "id"));
        size_t i = id ? find(p, id) : p->n;
        if (i < p->n) {
            p->v[i]->wanted = true;
            continue;
        }
        struct asg *a = asg_of(j);
        if (!a) {
            PW_WARN("prewarmd sent a malformed assignment (#%zu): skipped", k);
            continue;
        }
        a->wanted = true;
        p->v = pw_xrealloc(p->v, (p->n + 1) * sizeof *p->v);
        p->v[p->n++] = a;
        added = true;
    }
    (void)cancel; /* what prewarmd cancels it no longer lists: the sweep below stops it */
    for (size_t i = p->n; i-- > 0;) {
        struct asg *a = p->v[i];
        if (a->wanted)
            continue;
        if (a->busy)
            __atomic_store_n(&a->stop, 1, __ATOMIC_RELEASE); /* its thread drops it */
        else
            remove_at(p, i); /* queued and cancelled, or finished and recorded by prewarmd */
    }
    if (added)
        pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

json_t *pw_puller_report(pw_puller *p)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++) {
        const struct asg *a = p->v[i];
        if (a->stop)
            continue;
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i}", "id", a->id, "state", st_names[a->state], "reason",
                              a->reason, "message", a->message, "attempts", __atomic_load_n(&a->attempts, __ATOMIC_RELAXED));
        if (a->state == ST_SUCCEEDED)
            json_object_set_new(o, "durationSeconds", json_real(a->duration_s));
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&p->mu);
    return arr;
}

uint64_t pw_puller_pulls(pw_puller *p)
{
    return __atomic_load_n(&p->pulls, __ATOMIC_RELAXED);
}

int pw_puller_new(const struct pw_puller_config *cfg, pw_puller **out)
{
    if (!cfg || !cfg->cri || !cfg->changed)
        return PW_EINVAL;
    pw_puller *p = pw_xcalloc(1, sizeof *p);
    p->cfg = *cfg;
    if (p->cfg.max_parallel <= 0)
        p->cfg.max_parallel = 2;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->threads = pw_xcalloc((size_t)p->cfg.max_parallel, sizeof *p->threads);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (p->cfg.thread_stack)
        pthread_attr_setstacksize(&attr, p->cfg.thread_stack);
    for (int i = 0; i < p->cfg.max_parallel; i++) {
        if (pthread_create(&p->threads[i], &attr, worker, p) != 0) {
            pthread_attr_destroy(&attr);
            p->n_threads = i;
            pw_puller_free(p);
            return PW_ENOMEM;
        }
    }
    pthread_attr_destroy(&attr);
    p->n_threads = p->cfg.max_parallel;
    *out = p;
    return 0;
}

void pw_puller_free(pw_puller *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i]->state == ST_QUEUED && !p->v[i]->busy)
            p->v[i]->state = ST_FAILED; /* nobody starts it now */
        __atomic_store_n(&p->v[i]->stop, 1, __ATOMIC_RELEASE);
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    for (size_t i = 0; i < p->n; i++)
        asg_free(p->v[i]);
    free(p->v);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}
