/* jobexec.c: Job mode (jobexec.h). State, under x->mu: the live map, one entry per node this
 * executor runs, keyed by the node's deterministic Job name, holding the number of images its Job
 * pulls and the create's progress; and, until the first tick after the Job cache synced, the resumed
 * nodes to adopt. Job creates and deletes are actions queued for the executor threads (under x->amu;
 * creates first: they start work, deletes only tidy up). Informer callbacks run without the
 * informers' locks held, so they may take x->mu; x->mu is never held while waiting for amu's
 * condition. */
#include "engine/jobexec.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/jobspec.h"
#include "k8s/k8s.h"

#define MANAGED_BY_SELECTOR PW_JOB_LABEL_MANAGED_BY "=" PW_JOB_MANAGED_BY

/* A live entry's value: the Job's image count in the low 32 bits, these flags above. */
#define LIVE_CREATING ((json_int_t)1 << 32)   /* the create is in flight */
#define LIVE_CANCELLED ((json_int_t)1 << 33)  /* cancelled while creating: delete once it lands */
#define LIVE_FAILED ((json_int_t)1 << 34)     /* ... and the node had failed (kept if so configured) */
#define LIVE_COUNT(v) ((size_t)((v) & 0xffffffff))

enum act_kind { ACT_CREATE, ACT_DELETE };

struct action {
    enum act_kind kind;
    char *task_id, *node, *job_name;
    json_t *manifest; /* ACT_CREATE */
    struct action *next;
};

/* A copy of one resumed node's work, kept until adoption. */
struct adopt {
    char *task_id, *node;
    char **images;
    size_t n_images;
    char *pull_policy;
    char **pull_secrets;
    size_t n_pull_secrets;
    int retries, timeout_s;
};

struct jobexec {
    struct pw_executor base; /* first: pw_executor * <-> struct jobexec * */
    pw_k8s_client *client;
    char *namespace_, *instance, *helper_image;
    struct pw_jobexec_settings set;
    struct pw_exec_hooks hooks;

    pthread_mutex_t mu;
    json_t *live; /* Job name -> integer (see LIVE_*) */
    struct adopt *adopt;
    size_t n_adopt;
    bool swept;

    pthread_mutex_t amu;
    pthread_cond_t acond;
    struct {
        struct action *head, *tail;
    } aq[2];
    bool a_stopping;

    pthread_t *threads;
    int n_threads;
    pw_k8s_informer *jobs_inf, *pods_inf;
};

static struct jobexec *X(pw_executor *x)
{
    return (struct jobexec *)x;
}

/* ---- informer transforms: keep only what is read ---- */

static json_t *meta_trim(const json_t *obj, const char *annotation)
{
    const json_t *md = json_object_get(obj, "metadata");
    json_t *m = json_object();
    static const char *const keep[] = {"name", "namespace", "resourceVersion", "uid", "deletionTimestamp"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        json_t *v = json_object_get(md, keep[i]);
        if (v)
            json_object_set(m, keep[i], v);
    }
    json_t *task = json_object_get(json_object_get(md, "labels"), PW_JOB_LABEL_TASK);
    if (task) {
        json_t *l = json_object();
        json_object_set(l, PW_JOB_LABEL_TASK, task);
        json_object_set_new(m, "labels", l);
    }
    json_t *ann = annotation ? json_object_get(json_object_get(md, "annotations"), annotation) : NULL;
    if (ann) {
        json_t *a = json_object();
        json_object_set(a, annotation, ann);
        json_object_set_new(m, "annotations", a);
    }
    return m;
}

/* Whether a prewarm Job or pod belongs to this instance: its prewarm.io/instance label names it, or
 * it has none (made before instances existed) and this is the "default" instance. */
static bool ours(const struct jobexec *j, const json_t *obj)
{
    const char *inst = pw_k8s_label(obj, PW_JOB_LABEL_INSTANCE);
    return strcmp(inst ? inst : "default", j->instance) == 0;
}

static json_t *transform_job(void *arg, json_t *obj)
{
    if (!ours(arg, obj))
        return NULL; /* another prewarmd's */
    json_t *o = json_object();
    json_object_set_new(o, "metadata", meta_trim(obj, PW_JOB_ANNOTATION_NODE));
    const json_t *st = json_object_get(obj, "status");
    json_t *s = json_object();
    static const char *const keep[] = {"conditions", "failed", "succeeded", "active"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        json_t *v = json_object_get(st, keep[i]);
        if (v)
            json_object_set(s, keep[i], v);
    }
    json_object_set_new(o, "status", s);
    return o;
}

static json_t *transform_pod(void *arg, json_t *obj)
{
    if (!ours(arg, obj))
        return NULL;
    json_t *o = json_object();
    json_object_set_new(o, "metadata", meta_trim(obj, NULL));
    json_t *s = json_object();
    json_t *nn = json_object_get(json_object_get(obj, "spec"), "nodeName");
    if (nn)
        json_object_set(s, "nodeName", nn);
    json_object_set_new(o, "spec", s);
    const json_t *st = json_object_get(obj, "status");
    json_t *ns = json_object();
    static const char *const keep[] = {"phase", "reason", "message", "containerStatuses",
                                       "initContainerStatuses"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        json_t *v = json_object_get(st, keep[i]);
        if (v)
            json_object_set(ns, keep[i], v);
    }
    json_object_set_new(o, "status", ns);
    return o;
}

/* ---- the action queue ---- */

static void act_free(struct action *a)
{
    free(a->task_id);
    free(a->node);
    free(a->job_name);
    json_decref(a->manifest);
    free(a);
}

/* Queues an action for the threads; takes a. */
static void act_push(struct jobexec *j, struct action *a)
{
    pthread_mutex_lock(&j->amu);
    if (j->aq[a->kind].tail)
        j->aq[a->kind].tail->next = a;
    else
        j->aq[a->kind].head = a;
    j->aq[a->kind].tail = a;
    pthread_cond_signal(&j->acond);
    pthread_mutex_unlock(&j->amu);
}

static void queue_delete(struct jobexec *j, const char *task_id, const char *node, const char *job_name)
{
    struct action *a = pw_xcalloc(1, sizeof *a);
    a->kind = ACT_DELETE;
    a->task_id = pw_xstrdup(task_id);
    a->node = pw_xstrdup(node);
    a->job_name = pw_xstrdup(job_name);
    act_push(j, a);
}

/* ---- reading Jobs and pods into reports ---- */

/* A Job's condition of type (status "True"), or NULL. */
static const json_t *job_condition(const json_t *job, const char *type)
{
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(json_object_get(job, "status"), "conditions"), i, c) {
        const char *ty = json_string_value(json_object_get(c, "type"));
        const char *s = json_string_value(json_object_get(c, "status"));
        if (ty && s && strcmp(ty, type) == 0 && strcmp(s, "True") == 0)
            return c;
    }
    return NULL;
}

/* Whether the node behind Job or pod name is live here (and not cancelled); *count its images. */
static bool live_get(struct jobexec *j, const char *name, size_t *count)
{
    pthread_mutex_lock(&j->mu);
    json_t *v = name ? json_object_get(j->live, name) : NULL;
    json_int_t flags = v ? json_integer_value(v) : 0;
    pthread_mutex_unlock(&j->mu);
    if (!v || (flags & LIVE_CANCELLED))
        return false;
    if (count)
        *count = LIVE_COUNT(flags);
    return true;
}

/* Reports what a Job (or its deletion) says of its node: attempts, and a verdict once it has one. */
static void report_job(struct jobexec *j, enum pw_k8s_event type, const json_t *job)
{
    const char *tid = pw_k8s_label(job, PW_JOB_LABEL_TASK);
    const char *node = json_string_value(json_object_get(
        json_object_get(json_object_get(job, "metadata"), "annotations"), PW_JOB_ANNOTATION_NODE));
    if (!tid || !node || !live_get(j, pw_k8s_name(job), NULL))
        return;
    json_int_t failed = json_integer_value(json_object_get(json_object_get(job, "status"), "failed"));
    struct pw_exec_report r = {.task_id = tid, .node = node, .verdict = PW_EXEC_PROGRESS,
                               .attempts = (int)failed + 1};
    const json_t *c;
    if (type == PW_K8S_DELETED) {
        r.verdict = PW_EXEC_FAILED;
        r.reason = "JobDeleted";
        r.message = "the node's Job was deleted by someone else";
    } else if ((c = job_condition(job, "Failed"))) {
        const char *reason = json_string_value(json_object_get(c, "reason"));
        const char *msg = json_string_value(json_object_get(c, "message"));
        r.verdict = PW_EXEC_FAILED;
        r.reason = reason ? reason : "JobFailed";
        r.message = msg ? msg : reason ? reason : "Job failed";
        r.cite_pending = true; /* say which image was still stuck, and why, when the pod told us */
    } else if (job_condition(job, "Complete")) {
        r.verdict = PW_EXEC_SUCCEEDED;
    }
    j->hooks.report(j->hooks.arg, &r);
}

static void report_pod(struct jobexec *j, const json_t *pod)
{
    const char *tid = pw_k8s_label(pod, PW_JOB_LABEL_TASK);
    const char *node = json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName"));
    if (!tid || !node)
        return;
    char *name = pw_jobspec_name(tid, node);
    size_t n = 0;
    bool live = live_get(j, name, &n);
    free(name);
    if (!live)
        return;
    struct pw_image_status *st = pw_xcalloc(n ? n : 1, sizeof *st);
    if (pw_jobspec_pod_status(pod, n, st) == 0) {
        struct pw_exec_report r = {.task_id = tid, .node = node, .verdict = PW_EXEC_PROGRESS, .images = st,
                                   .n_images = n};
        j->hooks.report(j->hooks.arg, &r);
    }
    free(st);
}

static void on_job(void *arg, enum pw_k8s_event type, const json_t *obj, const json_t *old)
{
    (void)old;
    report_job(arg, type, obj);
}

static void on_pod(void *arg, enum pw_k8s_event type, const json_t *obj, const json_t *old)
{
    (void)old;
    if (type != PW_K8S_DELETED)
        report_pod(arg, obj);
}

/* The cached Job of name, reported (the Job may have finished before we listened). */
static void report_cached(struct jobexec *j, const char *name)
{
    char *key = pw_xasprintf("%s/%s", j->namespace_, name);
    json_t *job = j->jobs_inf ? pw_k8s_informer_get(j->jobs_inf, key) : NULL;
    if (job)
        report_job(j, PW_K8S_MODIFIED, job);
    json_decref(job);
    free(key);
}

/* ---- the executor threads ---- */

static void exec_create(struct jobexec *j, struct action *a)
{
    char *path = pw_xasprintf("/apis/batch/v1/namespaces/%s/jobs", j->namespace_);
    int status = 0;
    json_t *resp = NULL;
    int rc = pw_k8s_request(j->client, "POST", path, a->manifest, NULL, &status, &resp);
    free(path);
    bool ok = rc == 0 && (status == 201 || status == 200 || status == 409);
    char *msg = NULL;
    if (rc < 0)
        msg = pw_xasprintf("creating Job %s: %s", a->job_name, pw_strerror(rc));
    else if (!ok)
        msg = pw_xasprintf("creating Job %s: HTTP %d: %s", a->job_name, status,
                           pw_k8s_status_message(resp) ? pw_k8s_status_message(resp) : "");
    json_decref(resp);
    pthread_mutex_lock(&j->mu);
    json_t *v = json_object_get(j->live, a->job_name);
    json_int_t flags = v ? json_integer_value(v) : LIVE_CANCELLED;
    bool report = false;
    if (flags & LIVE_CANCELLED) {
        /* cancelled or finished while the create was in flight: do not leave the Job behind */
        json_object_del(j->live, a->job_name);
        if (ok && !((flags & LIVE_FAILED) && j->set.keep_failed_jobs))
            queue_delete(j, a->task_id, a->node, a->job_name);
    } else {
        json_object_set_new(j->live, a->job_name, json_integer(flags & ~LIVE_CREATING));
        report = true;
    }
    pthread_mutex_unlock(&j->mu);
    if (report && !ok) {
        /* the entry stays until the core's cancel, which deletes whatever the create may have made */
        struct pw_exec_report r = {.task_id = a->task_id, .node = a->node, .verdict = PW_EXEC_FAILED,
                                   .reason = "JobCreateFailed", .message = msg};
        j->hooks.report(j->hooks.arg, &r);
    } else if (report) {
        if (status == 409)
            PW_INFO("task %s: adopted the existing Job of node %s", a->task_id, a->node);
        report_cached(j, a->job_name);
    }
    free(msg);
}

static void exec_delete(struct jobexec *j, struct action *a)
{
    char *path = pw_xasprintf("/apis/batch/v1/namespaces/%s/jobs/%s?propagationPolicy=Background",
                              j->namespace_, a->job_name);
    json_t *body = json_pack("{s:s}", "propagationPolicy", "Background");
    int status = 0;
    int rc = pw_k8s_request(j->client, "DELETE", path, body, NULL, &status, NULL);
    json_decref(body);
    free(path);
    if (status == 404)
        PW_DEBUG("Job %s/%s (task %s, node %s) was already gone", j->namespace_, a->job_name, a->task_id, a->node);
    else if (rc < 0 || status >= 300)
        PW_WARN("deleting Job %s/%s failed: %s (HTTP %d)", j->namespace_, a->job_name,
                rc < 0 ? pw_strerror(rc) : "refused", status);
}

static void *exec_main(void *arg)
{
    struct jobexec *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->amu);
        while (!j->aq[ACT_CREATE].head && !j->aq[ACT_DELETE].head && !j->a_stopping)
            pthread_cond_wait(&j->acond, &j->amu);
        int k = j->aq[ACT_CREATE].head ? ACT_CREATE : ACT_DELETE;
        struct action *a = j->aq[k].head;
        if (!a || j->a_stopping) {
            pthread_mutex_unlock(&j->amu);
            return NULL;
        }
        j->aq[k].head = a->next;
        if (!j->aq[k].head)
            j->aq[k].tail = NULL;
        pthread_mutex_unlock(&j->amu);
        if (j->hooks.may_write && !j->hooks.may_write(j->hooks.arg))
            PW_WARN("not leading: Job %s of task %s, node %s is left to the leader (%s dropped)", a->job_name,
                    a->task_id, a->node, a->kind == ACT_CREATE ? "create" : "delete");
        else if (a->kind == ACT_CREATE)
            exec_create(j, a);
        else
            exec_delete(j, a);
        act_free(a);
    }
}

/* ---- the ops ---- */

/* Builds w's Job, registers w's node as creating and queues the create (under j->mu). False when the
 * manifest cannot be built. */
static bool create_locked(struct jobexec *j, const struct pw_exec_work *w)
{
    json_t *no_tolerations = j->set.tolerate_noexecute ? NULL : json_array();
    struct pw_jobspec_params p = {
        .task_id = w->task_id,
        .node_name = w->node,
        .namespace_ = j->namespace_,
        .images = w->images,
        .n_images = w->n_images,
        .pull_policy = w->pull_policy,
        .pull_secrets = w->pull_secrets,
        .n_pull_secrets = w->n_pull_secrets,
        .backoff_limit = w->retries,
        .active_deadline_s = w->timeout_s,
        .ttl_s = j->set.job_ttl_s,
        .helper_image = j->helper_image,
        .tolerations = no_tolerations,
        .instance = j->instance,
    };
    json_t *job = pw_jobspec_build(&p);
    json_decref(no_tolerations);
    if (!job)
        return false;
    struct action *a = pw_xcalloc(1, sizeof *a);
    a->kind = ACT_CREATE;
    a->task_id = pw_xstrdup(w->task_id);
    a->node = pw_xstrdup(w->node);
    a->job_name = pw_jobspec_name(w->task_id, w->node);
    a->manifest = job;
    json_object_set_new(j->live, a->job_name, json_integer((json_int_t)w->n_images | LIVE_CREATING));
    act_push(j, a);
    return true;
}

static void jx_dispatch(pw_executor *x, const struct pw_exec_work *w)
{
    struct jobexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    bool ok = create_locked(j, w);
    pthread_mutex_unlock(&j->mu);
    if (!ok) {
        struct pw_exec_report r = {.task_id = w->task_id, .node = w->node, .verdict = PW_EXEC_FAILED,
                                   .reason = "JobCreateFailed", .message = "could not build the Job manifest"};
        j->hooks.report(j->hooks.arg, &r);
    }
}

static void jx_cancel(pw_executor *x, const char *task_id, const char *node, bool failed)
{
    struct jobexec *j = X(x);
    char *name = pw_jobspec_name(task_id, node);
    pthread_mutex_lock(&j->mu);
    json_t *v = json_object_get(j->live, name);
    if (v) {
        json_int_t flags = json_integer_value(v);
        if (flags & LIVE_CREATING) {
            json_object_set_new(j->live, name, json_integer(flags | LIVE_CANCELLED | (failed ? LIVE_FAILED : 0)));
        } else {
            json_object_del(j->live, name);
            if (!(failed && j->set.keep_failed_jobs))
                queue_delete(j, task_id, node, name);
        }
    }
    pthread_mutex_unlock(&j->mu);
    free(name);
}

static bool jx_healthy(pw_executor *x, const char *node)
{
    (void)x;
    (void)node;
    return true; /* any node can run a Job */
}

/* ---- sweep and adoption ---- */

struct leftover {
    char *name, *task, *node;
};

struct leftovers {
    struct leftover *v;
    size_t n;
};

static int collect_job(void *arg, const json_t *job)
{
    struct leftovers *l = arg;
    const char *tid = pw_k8s_label(job, PW_JOB_LABEL_TASK);
    const char *node = json_string_value(json_object_get(
        json_object_get(json_object_get(job, "metadata"), "annotations"), PW_JOB_ANNOTATION_NODE));
    const char *name = pw_k8s_name(job);
    if (!name || json_object_get(json_object_get(job, "metadata"), "deletionTimestamp"))
        return 0; /* being deleted already */
    l->v = pw_xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n++] = (struct leftover){pw_xstrdup(name), pw_xstrdup(tid ? tid : ""), pw_xstrdup(node ? node : "")};
    return 0;
}

static void adopt_fini(struct adopt *a)
{
    free(a->task_id);
    free(a->node);
    for (size_t i = 0; i < a->n_images; i++)
        free(a->images[i]);
    free(a->images);
    free(a->pull_policy);
    for (size_t i = 0; i < a->n_pull_secrets; i++)
        free(a->pull_secrets[i]);
    free(a->pull_secrets);
}

/* Deletes the prewarm Jobs nobody will use (no live node here, and the core's fate says so). */
static void sweep(struct jobexec *j)
{
    struct leftovers l = {0};
    pw_k8s_informer_each(j->jobs_inf, collect_job, &l);
    size_t deleted = 0;
    for (size_t i = 0; i < l.n; i++) {
        struct leftover *o = &l.v[i];
        pthread_mutex_lock(&j->mu);
        bool live = json_object_get(j->live, o->name) != NULL;
        pthread_mutex_unlock(&j->mu);
        if (!live) {
            enum pw_exec_fate f = j->hooks.fate(j->hooks.arg, o->task, o->node);
            if (f == PW_EXEC_FATE_DONE || f == PW_EXEC_FATE_UNKNOWN ||
                (f == PW_EXEC_FATE_FAILED && !j->set.keep_failed_jobs)) {
                queue_delete(j, o->task, o->node, o->name);
                deleted++;
            }
        }
        free(o->name);
        free(o->task);
        free(o->node);
    }
    free(l.v);
    if (deleted)
        PW_INFO("start-up: deleting %zu leftover prewarm Jobs (finished nodes, finished or unknown tasks)", deleted);
}

/* Resumed running nodes: a Job in the cache is adopted (its state reported now, its pod's through
 * the informer's events); a missing one is created again (the node never got it, or it was deleted
 * after finishing while prewarmd was down). */
static void adopt_resumed(struct jobexec *j)
{
    size_t adopted = 0, recreated = 0;
    for (size_t i = 0; i < j->n_adopt; i++) {
        struct adopt *a = &j->adopt[i];
        char *name = pw_jobspec_name(a->task_id, a->node);
        char *key = pw_xasprintf("%s/%s", j->namespace_, name);
        bool live = live_get(j, name, NULL);
        json_t *job = live ? pw_k8s_informer_get(j->jobs_inf, key) : NULL;
        if (job) {
            report_job(j, PW_K8S_MODIFIED, job);
            adopted++;
        } else if (live) {
            struct pw_exec_work w = {
                .task_id = a->task_id,
                .node = a->node,
                .images = (const char *const *)a->images,
                .n_images = a->n_images,
                .pull_policy = a->pull_policy,
                .pull_secrets = (const char *const *)a->pull_secrets,
                .n_pull_secrets = a->n_pull_secrets,
                .retries = a->retries,
                .timeout_s = a->timeout_s,
            };
            jx_dispatch(&j->base, &w);
            recreated++;
        }
        json_decref(job);
        free(key);
        free(name);
        adopt_fini(a);
    }
    free(j->adopt);
    j->adopt = NULL;
    j->n_adopt = 0;
    if (adopted || recreated)
        PW_INFO("start-up: adopted %zu running Jobs, created %zu missing ones", adopted, recreated);
}

static void jx_tick(pw_executor *x)
{
    struct jobexec *j = X(x);
    if (j->swept || !j->jobs_inf || !pw_k8s_informer_synced(j->jobs_inf))
        return;
    j->swept = true; /* only the loop thread ticks */
    sweep(j);
    adopt_resumed(j);
}

/* ---- start and stop ---- */

static int informer(struct jobexec *j, const char *path, const char *selector, pw_k8s_informer_fn fn,
                    pw_k8s_transform_fn tr, pw_k8s_informer **out)
{
    struct pw_k8s_informer_opts o = {
        .path = path, .label_selector = selector, .on_event = fn, .transform = tr, .arg = j};
    int rc = pw_k8s_informer_start(j->client, &o, out);
    if (rc != 0)
        PW_ERROR("cannot start the informer of %s: %s", path, pw_strerror(rc));
    return rc;
}

/* Stops and joins the first n threads; queued actions are dropped (Jobs are left as they are). */
static void threads_stop(struct jobexec *j, int n)
{
    pthread_mutex_lock(&j->amu);
    j->a_stopping = true;
    for (int k = 0; k < 2; k++) {
        while (j->aq[k].head) {
            struct action *a = j->aq[k].head;
            j->aq[k].head = a->next;
            act_free(a);
        }
        j->aq[k].tail = NULL;
    }
    pthread_cond_broadcast(&j->acond);
    pthread_mutex_unlock(&j->amu);
    for (int i = 0; i < n; i++)
        pthread_join(j->threads[i], NULL);
}

/* Back to what pw_jobexec_new made (a failed start; the first n_threads threads run). */
static void start_undo(struct jobexec *j, int n_threads)
{
    pw_k8s_informer_free(j->pods_inf);
    pw_k8s_informer_free(j->jobs_inf);
    j->pods_inf = j->jobs_inf = NULL;
    threads_stop(j, n_threads);
    j->a_stopping = false;
    free(j->threads);
    j->threads = NULL;
    json_object_clear(j->live);
    for (size_t i = 0; i < j->n_adopt; i++)
        adopt_fini(&j->adopt[i]);
    free(j->adopt);
    j->adopt = NULL;
    j->n_adopt = 0;
}

static char **strv_dup(const char *const *v, size_t n)
{
    char **out = pw_xcalloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = pw_xstrdup(v[i]);
    return out;
}

static int jx_start(pw_executor *x, const struct pw_exec_work *resume, size_t n)
{
    struct jobexec *j = X(x);
    /* the resumed nodes are live before the informers start, so their first events count */
    j->adopt = pw_xcalloc(n ? n : 1, sizeof *j->adopt);
    j->n_adopt = n;
    for (size_t i = 0; i < n; i++) {
        const struct pw_exec_work *w = &resume[i];
        struct adopt *a = &j->adopt[i];
        a->task_id = pw_xstrdup(w->task_id);
        a->node = pw_xstrdup(w->node);
        a->images = strv_dup(w->images, w->n_images);
        a->n_images = w->n_images;
        a->pull_policy = pw_xstrdup(w->pull_policy ? w->pull_policy : "IfNotPresent");
        a->pull_secrets = strv_dup(w->pull_secrets, w->n_pull_secrets);
        a->n_pull_secrets = w->n_pull_secrets;
        a->retries = w->retries;
        a->timeout_s = w->timeout_s;
        char *name = pw_jobspec_name(w->task_id, w->node);
        json_object_set_new(j->live, name, json_integer((json_int_t)w->n_images));
        free(name);
    }
    char *jobs = pw_xasprintf("/apis/batch/v1/namespaces/%s/jobs", j->namespace_);
    char *pods = pw_xasprintf("/api/v1/namespaces/%s/pods", j->namespace_);
    /* only this instance's Jobs and pods: another prewarmd's are not ours to adopt or sweep. The
     * "default" instance also owns Jobs without the label (made before instances existed), so it
     * lists every prewarm Job and its transforms drop the other instances' */
    char *sel = strcmp(j->instance, "default") == 0
                    ? pw_xstrdup(MANAGED_BY_SELECTOR)
                    : pw_xasprintf("%s,%s=%s", MANAGED_BY_SELECTOR, PW_JOB_LABEL_INSTANCE, j->instance);
    int rc = informer(j, jobs, sel, on_job, transform_job, &j->jobs_inf);
    if (rc == 0)
        rc = informer(j, pods, sel, on_pod, transform_pod, &j->pods_inf);
    free(sel);
    free(jobs);
    free(pods);
    if (rc != 0) {
        start_undo(j, 0);
        return rc;
    }
    j->threads = pw_xcalloc((size_t)j->set.threads, sizeof *j->threads);
    for (int i = 0; i < j->set.threads; i++)
        if (pthread_create(&j->threads[i], NULL, exec_main, j) != 0) {
            PW_ERROR("cannot start the Job executor's threads");
            start_undo(j, i);
            return PW_ENOMEM;
        }
    j->n_threads = j->set.threads;
    return 0;
}

static void jx_free(pw_executor *x)
{
    struct jobexec *j = X(x);
    /* the threads first: they read the informers' caches (report_cached); then the informers, whose
     * callbacks use everything below (the engine loop, the one enqueuer of actions, has stopped) */
    threads_stop(j, j->n_threads);
    pw_k8s_informer_free(j->pods_inf);
    pw_k8s_informer_free(j->jobs_inf);
    for (size_t i = 0; i < j->n_adopt; i++)
        adopt_fini(&j->adopt[i]);
    free(j->adopt);
    json_decref(j->live);
    free(j->threads);
    free(j->namespace_);
    free(j->instance);
    free(j->helper_image);
    pthread_mutex_destroy(&j->mu);
    pthread_mutex_destroy(&j->amu);
    pthread_cond_destroy(&j->acond);
    free(j);
}

static const struct pw_executor_ops jobexec_ops = {
    .mode = "job",
    .start = jx_start,
    .dispatch = jx_dispatch,
    .cancel = jx_cancel,
    .tick = jx_tick,
    .healthy = jx_healthy,
    .free = jx_free,
};

int pw_jobexec_new(const struct pw_jobexec_config *cfg, pw_executor **out)
{
    if (!cfg || !cfg->client || !cfg->namespace_ || !cfg->instance || !cfg->hooks.report || !cfg->hooks.fate)
        return PW_EINVAL;
    struct jobexec *j = pw_xcalloc(1, sizeof *j);
    j->base.ops = &jobexec_ops;
    j->client = cfg->client;
    j->namespace_ = pw_xstrdup(cfg->namespace_);
    j->instance = pw_xstrdup(*cfg->instance ? cfg->instance : "default");
    j->set = cfg->settings;
    j->helper_image = pw_xstrdup(cfg->settings.helper_image ? cfg->settings.helper_image
                                                            : PW_JOBEXEC_DEFAULT_HELPER_IMAGE);
    j->set.helper_image = j->helper_image;
    if (j->set.job_ttl_s <= 0)
        j->set.job_ttl_s = PW_JOBEXEC_DEFAULT_JOB_TTL_S;
    if (j->set.threads <= 0)
        j->set.threads = PW_JOBEXEC_DEFAULT_THREADS;
    j->hooks = cfg->hooks;
    pthread_mutex_init(&j->mu, NULL);
    j->live = json_object();
    pthread_mutex_init(&j->amu, NULL);
    pthread_cond_init(&j->acond, NULL);
    *out = &j->base;
    return 0;
}
