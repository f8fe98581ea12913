/* fakeexec.c: the fake executor for unit tests (fakeexec.h). */
#include "fakeexec.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

struct fwork {
    char *key; /* "task/node" */
    char task[32], node[128];
    struct pw_fakeexec_work w;
    bool live;
    size_t dispatches, cancels, failed_cancels, resumed;
};

struct fakeexec {
    struct pw_executor base;
    const char *mode;
    struct pw_exec_hooks hooks;
    pthread_mutex_t mu;
    struct fwork *v;
    size_t n;
    json_t *unhealthy; /* node -> true */
    json_t *inventory; /* node -> array */
    size_t ticks;
    int start_rc;
};

static struct fakeexec *F(pw_executor *x)
{
    return (struct fakeexec *)x;
}

/* The record of (task, node), made when create (under f->mu). */
static struct fwork *find(struct fakeexec *f, const char *task, const char *node, bool create)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i].task, task) == 0 && strcmp(f->v[i].node, node) == 0)
            return &f->v[i];
    if (!create)
        return NULL;
    f->v = pw_xrealloc(f->v, (f->n + 1) * sizeof *f->v);
    struct fwork *r = &f->v[f->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->task, sizeof r->task, "%s", task);
    snprintf(r->node, sizeof r->node, "%s", node);
    return r;
}

static void take(struct fwork *r, const struct pw_exec_work *w)
{
    r->live = true;
    r->w.n_images = w->n_images;
    for (size_t i = 0; i < w->n_images && i < 8; i++)
        snprintf(r->w.images[i], sizeof r->w.images[i], "%s", w->images[i]);
    r->w.retries = w->retries;
    r->w.timeout_s = w->timeout_s;
    r->w.started_ms = w->started_ms ? w->started_ms : pw_clock_real_ms();
}

static int fx_start(pw_executor *x, const struct pw_exec_work *resume, size_t n)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    int rc = f->start_rc;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct fwork *r = find(f, resume[i].task_id, resume[i].node, true);
        take(r, &resume[i]);
        r->resumed++;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void fx_dispatch(pw_executor *x, const struct pw_exec_work *w)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    struct fwork *r = find(f, w->task_id, w->node, true);
    take(r, w); /* a repeated dispatch replaces the same work: still one */
    r->dispatches++;
    pthread_mutex_unlock(&f->mu);
}

static void fx_cancel(pw_executor *x, const char *task_id, const char *node, bool failed)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    struct fwork *r = find(f, task_id, node, false);
    if (r && r->live) {
        r->live = false;
        r->cancels++;
        r->failed_cancels += failed;
    }
    pthread_mutex_unlock(&f->mu);
}

/* Fails the live works past their deadline (the report outside the lock). */
static void fx_tick(pw_executor *x)
{
    struct fakeexec *f = F(x);
    int64_t now = pw_clock_real_ms();
    pthread_mutex_lock(&f->mu);
    f->ticks++;
    size_t n = 0;
    char(*due)[2][128] = pw_xcalloc(f->n ? f->n : 1, sizeof *due);
    for (size_t i = 0; i < f->n; i++) {
        struct fwork *r = &f->v[i];
        if (r->live && r->w.timeout_s > 0 && now >= r->w.started_ms + (int64_t)r->w.timeout_s * 1000) {
            r->live = false;
            snprintf(due[n][0], sizeof due[n][0], "%s", r->task);
            snprintf(due[n][1], sizeof due[n][1], "%s", r->node);
            n++;
        }
    }
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < n; i++) {
        struct pw_exec_report rep = {.task_id = due[i][0], .node = due[i][1], .verdict = PW_EXEC_FAILED,
                                     .reason = "DeadlineExceeded", .message = "the node's time limit passed",
                                     .cite_pending = true};
        f->hooks.report(f->hooks.arg, &rep);
    }
    free(due);
}

static bool fx_healthy(pw_executor *x, const char *node)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    bool ok = !json_object_get(f->unhealthy, node);
    pthread_mutex_unlock(&f->mu);
    return ok;
}

static json_t *fx_inventory(pw_executor *x, const char *node)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    json_t *v = json_deep_copy(json_object_get(f->inventory, node));
    pthread_mutex_unlock(&f->mu);
    return v;
}

static void fx_free(pw_executor *x)
{
    struct fakeexec *f = F(x);
    free(f->v);
    json_decref(f->unhealthy);
    json_decref(f->inventory);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static const struct pw_executor_ops fake_ops[2] = {
    {.mode = "job", .start = fx_start, .dispatch = fx_dispatch, .cancel = fx_cancel, .tick = fx_tick,
     .healthy = fx_healthy, .inventory = fx_inventory, .free = fx_free},
    {.mode = "agent", .start = fx_start, .dispatch = fx_dispatch, .cancel = fx_cancel, .tick = fx_tick,
     .healthy = fx_healthy, .inventory = fx_inventory, .free = fx_free},
};

pw_executor *pw_fakeexec_new(const char *mode, const struct pw_exec_hooks *hooks)
{
    struct fakeexec *f = pw_xcalloc(1, sizeof *f);
    f->base.ops = &fake_ops[strcmp(mode, "agent") == 0];
    f->mode = f->base.ops->mode;
    f->hooks = *hooks;
    pthread_mutex_init(&f->mu, NULL);
    f->unhealthy = json_object();
    f->inventory = json_object();
    return &f->base;
}

int pw_fakeexec_factory(void *arg, const char *mode, const struct pw_exec_hooks *hooks, pw_executor **out)
{
    pw_executor **slots = arg;
    *out = pw_fakeexec_new(mode, hooks);
    slots[strcmp(mode, "agent") == 0] = *out;
    return 0;
}

bool pw_fakeexec_live(pw_executor *x, const char *task_id, const char *node, struct pw_fakeexec_work *w)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    struct fwork *r = find(f, task_id, node, false);
    bool live = r && r->live;
    if (live && w)
        *w = r->w;
    pthread_mutex_unlock(&f->mu);
    return live;
}

/* The counter at offset off of (task, node)'s record (0 when none). */
static size_t counter(pw_executor *x, const char *task_id, const char *node, size_t off)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    struct fwork *r = find(f, task_id, node, false);
    size_t v = r ? *(const size_t *)((const char *)r + off) : 0;
    pthread_mutex_unlock(&f->mu);
    return v;
}

size_t pw_fakeexec_dispatches(pw_executor *x, const char *task_id, const char *node)
{
    return counter(x, task_id, node, offsetof(struct fwork, dispatches));
}

size_t pw_fakeexec_cancels(pw_executor *x, const char *task_id, const char *node, size_t *failed)
{
    if (failed)
        *failed = counter(x, task_id, node, offsetof(struct fwork, failed_cancels));
    return counter(x, task_id, node, offsetof(struct fwork, cancels));
}

size_t pw_fakeexec_resumed(pw_executor *x, const char *task_id, const char *node)
{
    return counter(x, task_id, node, offsetof(struct fwork, resumed));
}

size_t pw_fakeexec_ticks(pw_executor *x)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    size_t n = f->ticks;
    pthread_mutex_unlock(&f->mu);
    return n;
}

void pw_fakeexec_set_healthy(pw_executor *x, const char *node, bool healthy)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    if (healthy)
        json_object_del(f->unhealthy, node);
    else
        json_object_set_new(f->unhealthy, node, json_true());
    pthread_mutex_unlock(&f->mu);
}

void pw_fakeexec_set_inventory(pw_executor *x, const char *node, const json_t *images)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    if (images)
        json_object_set_new(f->inventory, node, json_deep_copy(images));
    else
        json_object_del(f->inventory, node);
    pthread_mutex_unlock(&f->mu);
}

void pw_fakeexec_report(pw_executor *x, const struct pw_exec_report *r)
{
    struct fakeexec *f = F(x);
    f->hooks.report(f->hooks.arg, r);
}

void pw_fakeexec_fail_start(pw_executor *x, int rc)
{
    struct fakeexec *f = F(x);
    pthread_mutex_lock(&f->mu);
    f->start_rc = rc;
    pthread_mutex_unlock(&f->mu);
}
