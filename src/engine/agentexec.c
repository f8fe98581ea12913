/* agentexec.c: agent mode (agentexec.h). State, under x->mu: one record per agent (node), created
 * by its first sync or by the first work dispatched to its node, holding what the agent last said
 * and the works dispatched to the node. A work is one node's images with one result slot each;
 * every image is one assignment for the agent. */
#include "engine/agentexec.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/b64.h"
#include "base/clock.h"
#include "base/digest.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/dockercfg.h"
#include "engine/jobspec.h" /* pw_jobspec_classify_message: the runtime's pull messages read alike */
#include "k8s/k8s.h"

enum res_state { RES_NONE, RES_QUEUED, RES_PULLING, RES_SUCCEEDED, RES_SKIPPED, RES_FAILED };
static const char *const res_names[] = {"", "queued", "pulling", "succeeded", "skipped", "failed"};
#define RES_FINAL(s) ((s) >= RES_SUCCEEDED)

struct result {
    unsigned char state; /* enum res_state */
    int attempts;
    char reason[64];
    char message[512];
};

struct work {
    char *task_id;
    char **images;
    size_t n_images;
    char (*ids)[33];
    struct result *res;
    char *pull_policy;
    int retries;
    int64_t deadline_ms; /* wall clock */
    json_t **auth;       /* n_images: the registry credentials each image gets (secret), or NULL */
    bool creds_pending;  /* the pull secrets are being read: nothing is sent before */
};

/* A work's pull secrets to read (the credentials thread's queue). */
struct creds_job {
    char *task_id, *node;
    char **secrets;
    size_t n_secrets;
    struct creds_job *next;
};

struct agent {
    char *node;
    char *version, *runtime_name, *runtime_version;
    int64_t last_seen_mono, last_seen_ms; /* 0: never synced */
    json_int_t fs_used, fs_capacity, fs_available; /* -1: not said */
    json_t *inv;     /* image name -> true */
    bool inv_full;   /* a full inventory arrived (else the agent is asked for one) */
    json_t *inv_arr; /* the names as an array (pw_imageref_present's form); NULL until asked */
    json_t *known;   /* the unfinished assignment ids the agent's last sync held -> true */
    struct work **works;
    size_t n_works;
    pw_agentexec_answer_fn held_fn; /* the sync being held, or NULL */
    void *held_arg;
    int64_t held_until_mono;
    uint64_t syncs;
};

struct agentexec {
    struct pw_executor base; /* first */
    struct pw_agentexec_settings set;
    struct pw_exec_hooks hooks;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    json_t *index; /* node -> index in v */
    struct agent **v;
    size_t n;
    bool stopping, running;
    pthread_t timer;
    pw_k8s_client *client;
    char *namespace_;
    pthread_cond_t ccond; /* the credentials thread waits on it (with mu) */
    struct creds_job *cq_head, *cq_tail;
    bool creds_running;
    pthread_t creds;
};

static struct agentexec *X(pw_executor *x)
{
    return (struct agentexec *)x;
}

void pw_agentexec_assignment_id(const char *task_id, const char *node, const char *image, char *out)
{
    /* with the NULs: ("ab","c") != ("a","bc") */
    const void *parts[3] = {task_id, node, image};
    size_t lens[3] = {strlen(task_id) + 1, strlen(node) + 1, strlen(image)};
    char hex[PW_SHA256_HEX_LEN + 1];
    pw_sha256_hex(parts, lens, 3, hex);
    memcpy(out, hex, 32);
    out[32] = '\0';
}

/* ---- records ---- */

static struct agent *agent_get(struct agentexec *j, const char *node, bool create)
{
    json_t *ix = json_object_get(j->index, node);
    if (ix)
        return j->v[json_integer_value(ix)];
    if (!create)
        return NULL;
    struct agent *a = pw_xcalloc(1, sizeof *a);
    a->node = pw_xstrdup(node);
    a->fs_used = a->fs_capacity = a->fs_available = -1;
    a->inv = json_object();
    a->known = json_object();
    j->v = pw_xrealloc(j->v, (j->n + 1) * sizeof *j->v);
    j->v[j->n] = a;
    json_object_set_new(j->index, node, json_integer((json_int_t)j->n));
    j->n++;
    return a;
}

static void work_free(struct work *w)
{
    if (!w)
        return;
    free(w->task_id);
    for (size_t i = 0; i < w->n_images; i++)
        free(w->images[i]);
    free(w->images);
    free(w->ids);
    free(w->res);
    free(w->pull_policy);
    for (size_t i = 0; w->auth && i < w->n_images; i++)
        json_decref(w->auth[i]);
    free(w->auth);
    free(w);
}

static void agent_free(struct agent *a)
{
    free(a->node);
    free(a->version);
    free(a->runtime_name);
    free(a->runtime_version);
    json_decref(a->inv);
    json_decref(a->inv_arr);
    json_decref(a->known);
    for (size_t i = 0; i < a->n_works; i++)
        work_free(a->works[i]);
    free(a->works);
    free(a);
}

static size_t work_find(const struct agent *a, const char *task_id)
{
    for (size_t i = 0; i < a->n_works; i++)
        if (strcmp(a->works[i]->task_id, task_id) == 0)
            return i;
    return a->n_works;
}

static void work_remove(struct agent *a, size_t i)
{
    work_free(a->works[i]);
    a->works[i] = a->works[--a->n_works];
}

static bool healthy_locked(const struct agentexec *j, const struct agent *a)
{
    return a && a->last_seen_mono &&
           pw_clock_mono_ms() - a->last_seen_mono < (int64_t)j->set.agent_timeout_s * 1000;
}

/* ---- answers ---- */

static void time_str(int64_t ms, char *buf)
{
    pw_time_rfc3339((time_t)(ms / 1000), buf);
}

/* What the agent of a should hold now: every unfinished assignment, and the ids it held that are
 * no longer wanted. *news: something the agent does not know yet. */
static json_t *answer_of(const struct agentexec *j, const struct agent *a, bool *news)
{
    json_t *asg = json_array(), *cancel = json_array();
    json_t *wanted = json_object();
    bool fresh = false;
    for (size_t w = 0; w < a->n_works; w++) {
        const struct work *wk = a->works[w];
        char dl[PW_RFC3339_LEN];
        time_str(wk->deadline_ms, dl);
        for (size_t i = 0; i < wk->n_images && !wk->creds_pending; i++) {
            if (RES_FINAL(wk->res[i].state))
                continue;
            json_array_append_new(asg, json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:i}", "id", wk->ids[i], "task",
                                                 wk->task_id, "image", wk->images[i], "deadline", dl,
                                                 "deadlineUnixMs", (json_int_t)wk->deadline_ms, "pullPolicy",
                                                 wk->pull_policy, "retries", wk->retries));
            if (wk->auth[i]) /* only ever sent over TLS (see creds_apply) */
                json_object_set(json_array_get(asg, json_array_size(asg) - 1), "auth", wk->auth[i]);
            json_object_set_new(wanted, wk->ids[i], json_true());
            if (!json_object_get(a->known, wk->ids[i]))
                fresh = true;
        }
    }
    const char *id;
    json_t *v;
    json_object_foreach(a->known, id, v) {
        if (!json_object_get(wanted, id))
            json_array_append_new(cancel, json_string(id));
    }
    json_decref(wanted);
    *news = fresh || json_array_size(cancel) > 0 || !a->inv_full;
    return json_pack("{s:o, s:o, s:i, s:i, s:b}", "assignments", asg, "cancel", cancel, "pollAfterSeconds", 0,
                     "agentTimeoutSeconds", j->set.agent_timeout_s, "needFullInventory", !a->inv_full);
}

static void answer_held(struct agentexec *j, struct agent *a)
{
    if (!a->held_fn)
        return;
    bool news;
    json_t *resp = answer_of(j, a, &news);
    pw_agentexec_answer_fn fn = a->held_fn;
    void *arg = a->held_arg;
    a->held_fn = NULL;
    a->held_arg = NULL;
    fn(arg, resp);
}

/* ---- reports ---- */

static void status_of(const struct result *r, struct pw_image_status *st)
{
    memset(st, 0, sizeof *st);
    snprintf(st->reason, sizeof st->reason, "%s", r->reason);
    snprintf(st->message, sizeof st->message, "%s", r->message);
    switch (r->state) {
    case RES_SUCCEEDED:
        st->cls = PW_PULL_DONE;
        break;
    case RES_SKIPPED:
        st->cls = PW_PULL_PRESENT;
        break;
    case RES_FAILED:
        st->final = true;
        st->cls = strcmp(r->reason, "ErrImagePull") == 0 ? pw_jobspec_classify_message(r->message)
                                                         : PW_PULL_FAILED_PERMANENT;
        break;
    default:
        st->cls = PW_PULL_WAITING;
    }
}

static void report_work(struct agentexec *j, const struct agent *a, const struct work *w)
{
    struct pw_image_status *st = pw_xcalloc(w->n_images ? w->n_images : 1, sizeof *st);
    int attempts = 0;
    for (size_t i = 0; i < w->n_images; i++) {
        status_of(&w->res[i], &st[i]);
        if (w->res[i].attempts > attempts)
            attempts = w->res[i].attempts;
    }
    struct pw_exec_report r = {.task_id = w->task_id, .node = a->node, .verdict = PW_EXEC_PROGRESS, .images = st,
                               .n_images = w->n_images, .attempts = attempts};
    j->hooks.report(j->hooks.arg, &r);
    free(st);
}

/* ---- the ops ---- */

static void add_work(struct agentexec *j, const struct pw_exec_work *w)
{
    struct agent *a = agent_get(j, w->node, true);
    size_t k = work_find(a, w->task_id);
    if (k < a->n_works)
        work_remove(a, k); /* dispatched again: start over */
    struct work *wk = pw_xcalloc(1, sizeof *wk);
    wk->task_id = pw_xstrdup(w->task_id);
    wk->n_images = w->n_images;
    wk->images = pw_xcalloc(w->n_images ? w->n_images : 1, sizeof *wk->images);
    wk->ids = pw_xcalloc(w->n_images ? w->n_images : 1, sizeof *wk->ids);
    wk->res = pw_xcalloc(w->n_images ? w->n_images : 1, sizeof *wk->res);
    wk->auth = pw_xcalloc(w->n_images ? w->n_images : 1, sizeof *wk->auth);
    for (size_t i = 0; i < w->n_images; i++) {
        wk->images[i] = pw_xstrdup(w->images[i]);
        pw_agentexec_assignment_id(w->task_id, w->node, w->images[i], wk->ids[i]);
    }
    wk->pull_policy = pw_xstrdup(w->pull_policy ? w->pull_policy : "IfNotPresent");
    wk->retries = w->retries;
    int64_t start = w->started_ms ? w->started_ms : pw_clock_real_ms();
    wk->deadline_ms = start + (int64_t)(w->timeout_s > 0 ? w->timeout_s : 600) * 1000;
    a->works = pw_xrealloc(a->works, (a->n_works + 1) * sizeof *a->works);
    a->works[a->n_works++] = wk;
    if (w->n_pull_secrets && j->client) {
        /* the credentials come from Secrets, read on the credentials thread (never under a lock) */
        wk->creds_pending = true;
        struct creds_job *cj = pw_xcalloc(1, sizeof *cj);
        cj->task_id = pw_xstrdup(w->task_id);
        cj->node = pw_xstrdup(w->node);
        cj->secrets = pw_xcalloc(w->n_pull_secrets, sizeof *cj->secrets);
        for (size_t i = 0; i < w->n_pull_secrets; i++)
            cj->secrets[i] = pw_xstrdup(w->pull_secrets[i]);
        cj->n_secrets = w->n_pull_secrets;
        if (j->cq_tail)
            j->cq_tail->next = cj;
        else
            j->cq_head = cj;
        j->cq_tail = cj;
        pthread_cond_signal(&j->ccond);
    }
}

static void ax_dispatch(pw_executor *x, const struct pw_exec_work *w)
{
    struct agentexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    add_work(j, w);
    answer_held(j, agent_get(j, w->node, false)); /* a waiting agent hears at once */
    pthread_mutex_unlock(&j->mu);
}

static void ax_cancel(pw_executor *x, const char *task_id, const char *node, bool failed)
{
    (void)failed; /* an agent leaves nothing behind to keep */
    struct agentexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    struct agent *a = agent_get(j, node, false);
    size_t k = a ? work_find(a, task_id) : 0;
    if (a && k < a->n_works) {
        work_remove(a, k);
        answer_held(j, a);
    }
    pthread_mutex_unlock(&j->mu);
}

static void ax_tick(pw_executor *x)
{
    (void)x; /* deadlines and long polls have the timer thread */
}

static bool ax_healthy(pw_executor *x, const char *node)
{
    struct agentexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    bool ok = healthy_locked(j, agent_get(j, node, false));
    pthread_mutex_unlock(&j->mu);
    return ok;
}

static json_t *ax_inventory(pw_executor *x, const char *node)
{
    struct agentexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    struct agent *a = agent_get(j, node, false);
    json_t *arr = NULL;
    if (a && a->last_seen_mono) {
        if (!a->inv_arr) {
            a->inv_arr = json_array();
            const char *k;
            json_t *v;
            json_object_foreach(a->inv, k, v) {
                json_array_append_new(a->inv_arr, json_string(k));
            }
        }
        arr = json_incref(a->inv_arr);
    }
    pthread_mutex_unlock(&j->mu);
    return arr;
}

/* ---- credentials: the tasks' imagePullSecrets, matched per image ---- */

static void creds_job_free(struct creds_job *cj)
{
    free(cj->task_id);
    free(cj->node);
    for (size_t i = 0; i < cj->n_secrets; i++)
        free(cj->secrets[i]);
    free(cj->secrets);
    free(cj);
}

/* Reads the secrets of cj into one auths object (the first secret's keys win). Without the lock. */
static json_t *creds_read(struct agentexec *j, const struct creds_job *cj)
{
    json_t *auths = json_object();
    for (size_t i = 0; i < cj->n_secrets; i++) {
        char *path = pw_xasprintf("/api/v1/namespaces/%s/secrets/%s", j->namespace_, cj->secrets[i]);
        int status = 0;
        json_t *sec = NULL;
        int rc = pw_k8s_request(j->client, "GET", path, NULL, NULL, &status, &sec);
        free(path);
        const char *type = json_string_value(json_object_get(sec, "type"));
        const json_t *data = json_object_get(sec, "data");
        const char *b64 = json_string_value(json_object_get(data, ".dockerconfigjson"));
        if (!b64)
            b64 = json_string_value(json_object_get(data, ".dockercfg"));
        if (rc != 0 || status != 200 || !b64) {
            /* as the kubelet: a pull secret that cannot be read is skipped, the pull goes on without it */
            PW_WARN("task %s: imagePullSecret %s/%s cannot be used (%s); pulling without it", cj->task_id,
                    j->namespace_, cj->secrets[i],
                    rc != 0 ? pw_strerror(rc) : status == 404 ? "not found" : status != 200 ? "not readable"
                                                                                             : "not a docker config");
            json_decref(sec);
            continue;
        }
        void *text = NULL;
        size_t n = 0;
        json_t *one = NULL;
        const char *why = "not base64";
        if (pw_b64_decode(b64, strlen(b64), &text, &n) == 0 && pw_dockercfg_parse(text, n, &one, &why) == 0) {
            const char *k;
            json_t *v;
            json_object_foreach(one, k, v) {
                if (!json_object_get(auths, k))
                    json_object_set(auths, k, v);
            }
            json_decref(one);
        } else {
            PW_WARN("task %s: imagePullSecret %s/%s (type %s) cannot be read: %s", cj->task_id, j->namespace_,
                    cj->secrets[i], type ? type : "?", why);
        }
        if (text)
            memset(text, 0, n);
        free(text);
        json_decref(sec);
    }
    return auths;
}

/* Gives the work of cj its images' credentials (under j->mu). Over plain HTTP an image that needs
 * them fails, CredentialsRequireTLS: secrets never travel in the clear. */
static void creds_apply(struct agentexec *j, const struct creds_job *cj, const json_t *auths)
{
    struct agent *a = agent_get(j, cj->node, false);
    size_t k = a ? work_find(a, cj->task_id) : 0;
    if (!a || k >= a->n_works || !a->works[k]->creds_pending)
        return; /* finished or cancelled meanwhile */
    struct work *wk = a->works[k];
    bool failed = false;
    for (size_t i = 0; i < wk->n_images; i++) {
        json_t *m = pw_dockercfg_match(auths, wk->images[i]);
        if (m && !j->set.tls) {
            struct result *r = &wk->res[i];
            r->state = RES_FAILED;
            snprintf(r->reason, sizeof r->reason, "CredentialsRequireTLS");
            snprintf(r->message, sizeof r->message,
                     "the image's registry needs the credentials of the task's imagePullSecrets, which prewarmd "
                     "sends to agents only over TLS (--agent-listen with --tls-cert and --tls-key)");
            failed = true;
            json_decref(m);
            continue;
        }
        wk->auth[i] = m;
    }
    wk->creds_pending = false;
    if (failed) {
        report_work(j, a, wk);
        bool done = true;
        for (size_t i = 0; i < wk->n_images; i++)
            done &= RES_FINAL(wk->res[i].state);
        if (done)
            work_remove(a, k);
    }
    answer_held(j, a);
}

static void *creds_main(void *arg)
{
    struct agentexec *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stopping) {
        struct creds_job *cj = j->cq_head;
        if (!cj) {
            pthread_cond_wait(&j->ccond, &j->mu);
            continue;
        }
        j->cq_head = cj->next;
        if (!j->cq_head)
            j->cq_tail = NULL;
        pthread_mutex_unlock(&j->mu);
        json_t *auths = creds_read(j, cj);
        pthread_mutex_lock(&j->mu);
        creds_apply(j, cj, auths);
        json_decref(auths);
        creds_job_free(cj);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- the timer: held syncs whose wait ended, works past their deadline ---- */

static void expire(struct agentexec *j)
{
    int64_t mono = pw_clock_mono_ms(), real = pw_clock_real_ms();
    for (size_t i = 0; i < j->n; i++) {
        struct agent *a = j->v[i];
        if (a->held_fn && mono >= a->held_until_mono)
            answer_held(j, a);
        for (size_t k = 0; k < a->n_works;) {
            struct work *w = a->works[k];
            if (real < w->deadline_ms) {
                k++;
                continue;
            }
            char *msg = pw_xasprintf("the node's pulls did not finish by their deadline%s",
                                     healthy_locked(j, a) ? "" : " (its agent is not syncing)");
            struct pw_exec_report r = {.task_id = w->task_id, .node = a->node, .verdict = PW_EXEC_FAILED,
                                       .reason = "DeadlineExceeded", .message = msg, .cite_pending = true};
            j->hooks.report(j->hooks.arg, &r);
            free(msg);
            work_remove(a, k);
            answer_held(j, a);
        }
    }
}

static void *timer_main(void *arg)
{
    struct agentexec *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->stopping) {
        expire(j);
        struct timespec ts;
        pw_clock_deadline_ts(200, &ts);
        pthread_cond_timedwait(&j->cond, &j->mu, &ts);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static int ax_start(pw_executor *x, const struct pw_exec_work *resume, size_t n)
{
    struct agentexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    for (size_t i = 0; i < n; i++)
        add_work(j, &resume[i]);
    pthread_mutex_unlock(&j->mu);
    bool creds_ok = pthread_create(&j->creds, NULL, creds_main, j) == 0;
    if (!creds_ok || pthread_create(&j->timer, NULL, timer_main, j) != 0) {
        if (creds_ok) {
            pthread_mutex_lock(&j->mu);
            j->stopping = true;
            pthread_cond_broadcast(&j->ccond);
            pthread_mutex_unlock(&j->mu);
            pthread_join(j->creds, NULL);
            j->stopping = false;
        }
        PW_ERROR("cannot start the agent executor's timer thread");
        pthread_mutex_lock(&j->mu);
        for (size_t i = 0; i < j->n; i++)
            agent_free(j->v[i]);
        j->n = 0;
        json_object_clear(j->index);
        pthread_mutex_unlock(&j->mu);
        return PW_ENOMEM;
    }
    j->running = true;
    return 0;
}

static void ax_free(pw_executor *x)
{
    struct agentexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    j->stopping = true;
    pthread_cond_broadcast(&j->cond);
    pthread_cond_broadcast(&j->ccond);
    pthread_mutex_unlock(&j->mu);
    if (j->running) {
        pthread_join(j->timer, NULL);
        pthread_join(j->creds, NULL);
    }
    while (j->cq_head) {
        struct creds_job *cj = j->cq_head;
        j->cq_head = cj->next;
        creds_job_free(cj);
    }
    for (size_t i = 0; i < j->n; i++) {
        answer_held(j, j->v[i]); /* a held sync hears before the server closes */
        agent_free(j->v[i]);
    }
    free(j->v);
    json_decref(j->index);
    free(j->namespace_);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cond);
    pthread_cond_destroy(&j->ccond);
    free(j);
}

static const struct pw_executor_ops agentexec_ops = {
    .mode = "agent",
    .start = ax_start,
    .dispatch = ax_dispatch,
    .cancel = ax_cancel,
    .tick = ax_tick,
    .healthy = ax_healthy,
    .inventory = ax_inventory,
    .free = ax_free,
};

int pw_agentexec_new(const struct pw_agentexec_config *cfg, pw_executor **out)
{
    if (!cfg || !cfg->hooks.report)
        return PW_EINVAL;
    struct agentexec *j = pw_xcalloc(1, sizeof *j);
    j->base.ops = &agentexec_ops;
    j->set = cfg->settings;
    if (j->set.agent_timeout_s <= 0)
        j->set.agent_timeout_s = PW_AGENTEXEC_DEFAULT_TIMEOUT_S;
    if (j->set.poll_ms <= 0)
        j->set.poll_ms = PW_AGENTEXEC_DEFAULT_POLL_MS;
    j->hooks = cfg->hooks;
    j->client = cfg->client;
    j->namespace_ = pw_xstrdup(cfg->namespace_ ? cfg->namespace_ : "prewarm");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cond, NULL);
    pthread_cond_init(&j->ccond, NULL);
    j->index = json_object();
    *out = &j->base;
    return 0;
}

/* ---- sync ---- */

static bool opt_string(const json_t *o, const char *key, const char *field, struct pw_field_errors *errs)
{
    const json_t *v = json_object_get(o, key);
    if (v && !json_is_string(v) && !json_is_null(v)) {
        pw_field_errors_add(errs, field, "must be a string");
        return false;
    }
    return true;
}

static bool is_id(const char *s)
{
    if (!s || strlen(s) != 32)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static int state_of(const char *s)
{
    for (int i = RES_QUEUED; i <= RES_FAILED; i++)
        if (s && strcmp(s, res_names[i]) == 0)
            return i;
    return -1;
}

static bool names_ok(const json_t *arr, const char *field, struct pw_field_errors *errs)
{
    if (!arr)
        return true;
    if (!json_is_array(arr)) {
        pw_field_errors_add(errs, field, "must be an array of image names");
        return false;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v) || !*json_string_value(v)) {
            char f[128];
            snprintf(f, sizeof f, "%s[%zu]", field, i);
            pw_field_errors_add(errs, f, "must be a non-empty string");
            return false;
        }
    }
    return true;
}

/* Checks the whole request before anything is recorded. */
static bool sync_valid(const json_t *b, struct pw_field_errors *errs)
{
    if (!json_is_object(b)) {
        pw_field_errors_add(errs, "body", "must be a JSON object");
        return false;
    }
    opt_string(b, "node", "node", errs);
    opt_string(b, "cluster", "cluster", errs); /* checked against the cluster synced with by the API */
    opt_string(b, "agentVersion", "agentVersion", errs);
    const json_t *rt = json_object_get(b, "runtime");
    if (rt && !json_is_object(rt))
        pw_field_errors_add(errs, "runtime", "must be an object {name, version}");
    else if (rt) {
        opt_string(rt, "name", "runtime.name", errs);
        opt_string(rt, "version", "runtime.version", errs);
    }
    const json_t *fs = json_object_get(b, "imageFs");
    if (fs && !json_is_object(fs))
        pw_field_errors_add(errs, "imageFs", "must be an object {usedBytes, capacityBytes, availableBytes}");
    else if (fs) {
        static const char *const keys[] = {"usedBytes", "capacityBytes", "availableBytes"};
        for (size_t i = 0; i < 3; i++) {
            const json_t *v = json_object_get(fs, keys[i]);
            if (v && (!json_is_integer(v) || json_integer_value(v) < 0)) {
                char f[64];
                snprintf(f, sizeof f, "imageFs.%s", keys[i]);
                pw_field_errors_add(errs, f, "must be a non-negative integer");
            }
        }
    }
    const json_t *inv = json_object_get(b, "inventory");
    if (inv && !json_is_object(inv))
        pw_field_errors_add(errs, "inventory", "must be an object {full, images} or {added, removed}");
    else if (inv) {
        const json_t *full = json_object_get(inv, "full");
        if (full && !json_is_boolean(full))
            pw_field_errors_add(errs, "inventory.full", "must be a boolean");
        names_ok(json_object_get(inv, "images"), "inventory.images", errs);
        names_ok(json_object_get(inv, "added"), "inventory.added", errs);
        names_ok(json_object_get(inv, "removed"), "inventory.removed", errs);
    }
    const json_t *asg = json_object_get(b, "assignments");
    if (asg && !json_is_array(asg))
        pw_field_errors_add(errs, "assignments", "must be an array");
    size_t i;
    const json_t *a;
    json_array_foreach(asg, i, a) {
        char f[96];
        snprintf(f, sizeof f, "assignments[%zu]", i);
        if (!json_is_object(a)) {
            pw_field_errors_add(errs, f, "must be an object {id, state, reason, message, attempts}");
            continue;
        }
        if (!is_id(json_string_value(json_object_get(a, "id")))) {
            snprintf(f, sizeof f, "assignments[%zu].id", i);
            pw_field_errors_add(errs, f, "must be an assignment id (32 lowercase hex characters)");
        }
        if (state_of(json_string_value(json_object_get(a, "state"))) < 0) {
            snprintf(f, sizeof f, "assignments[%zu].state", i);
            pw_field_errors_add(errs, f, "must be one of: queued, pulling, succeeded, skipped, failed");
        }
        const json_t *att = json_object_get(a, "attempts");
        if (att && (!json_is_integer(att) || json_integer_value(att) < 0 || json_integer_value(att) > 1000)) {
            snprintf(f, sizeof f, "assignments[%zu].attempts", i);
            pw_field_errors_add(errs, f, "must be an integer 0-1000");
        }
        snprintf(f, sizeof f, "assignments[%zu].reason", i);
        opt_string(a, "reason", f, errs);
        snprintf(f, sizeof f, "assignments[%zu].message", i);
        opt_string(a, "message", f, errs);
    }
    const json_t *wait = json_object_get(b, "wait");
    if (wait && !json_is_boolean(wait))
        pw_field_errors_add(errs, "wait", "must be a boolean");
    return errs->n == 0;
}

int pw_agentexec_sync_validate(const json_t *body, struct pw_field_errors *errs)
{
    errs->n = 0;
    return sync_valid(body, errs) ? 0 : PW_EINVAL;
}

static void set_text(char **dst, const json_t *v)
{
    if (!json_is_string(v))
        return;
    free(*dst);
    *dst = pw_xstrdup(json_string_value(v));
}

static void inventory_apply(struct agent *a, const json_t *inv)
{
    if (!inv)
        return;
    size_t i;
    const json_t *v;
    if (json_is_true(json_object_get(inv, "full"))) {
        json_object_clear(a->inv);
        a->inv_full = true;
    }
    json_array_foreach(json_object_get(inv, "images"), i, v) {
        json_object_set_new(a->inv, json_string_value(v), json_true());
    }
    json_array_foreach(json_object_get(inv, "added"), i, v) {
        json_object_set_new(a->inv, json_string_value(v), json_true());
    }
    json_array_foreach(json_object_get(inv, "removed"), i, v) {
        json_object_del(a->inv, json_string_value(v));
    }
    json_decref(a->inv_arr);
    a->inv_arr = NULL;
}

/* Records one reported assignment; true when it changed a result of a work (*w_out). */
static bool result_apply(struct agent *a, const json_t *r, size_t *w_out)
{
    const char *id = json_string_value(json_object_get(r, "id"));
    int st = state_of(json_string_value(json_object_get(r, "state")));
    for (size_t w = 0; w < a->n_works; w++) {
        struct work *wk = a->works[w];
        for (size_t i = 0; i < wk->n_images; i++) {
            if (strcmp(wk->ids[i], id) != 0)
                continue;
            struct result *res = &wk->res[i];
            if (RES_FINAL(res->state))
                return false; /* a result stands: a repeat changes nothing */
            int att = (int)json_integer_value(json_object_get(r, "attempts"));
            const char *reason = json_string_value(json_object_get(r, "reason"));
            const char *msg = json_string_value(json_object_get(r, "message"));
            bool changed = res->state != st || res->attempts != att;
            res->state = (unsigned char)st;
            res->attempts = att;
            snprintf(res->reason, sizeof res->reason, "%s", reason ? reason : "");
            snprintf(res->message, sizeof res->message, "%s", msg ? msg : "");
            *w_out = w;
            return changed;
        }
    }
    return false; /* not (or no longer) assigned */
}

int pw_agentexec_sync(pw_executor *x, const char *node, const json_t *body, pw_agentexec_answer_fn answer,
                      void *arg, struct pw_field_errors *errs)
{
    struct agentexec *j = X(x);
    errs->n = 0;
    if (!sync_valid(body, errs))
        return PW_EINVAL;
    pthread_mutex_lock(&j->mu);
    struct agent *a = agent_get(j, node, true);
    answer_held(j, a); /* replaced by this one */
    bool was_healthy = healthy_locked(j, a);
    a->last_seen_mono = pw_clock_mono_ms();
    a->last_seen_ms = pw_clock_real_ms();
    a->syncs++;
    set_text(&a->version, json_object_get(body, "agentVersion"));
    const json_t *rt = json_object_get(body, "runtime");
    set_text(&a->runtime_name, json_object_get(rt, "name"));
    set_text(&a->runtime_version, json_object_get(rt, "version"));
    const json_t *fs = json_object_get(body, "imageFs");
    if (fs) {
        const json_t *v;
        if ((v = json_object_get(fs, "usedBytes")))
            a->fs_used = json_integer_value(v);
        if ((v = json_object_get(fs, "capacityBytes")))
            a->fs_capacity = json_integer_value(v);
        if ((v = json_object_get(fs, "availableBytes")))
            a->fs_available = json_integer_value(v);
    }
    inventory_apply(a, json_object_get(body, "inventory"));
    /* results first, then what the agent holds unfinished (known) */
    bool *touched = pw_xcalloc(a->n_works ? a->n_works : 1, sizeof *touched);
    size_t nw = a->n_works;
    json_object_clear(a->known);
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(body, "assignments"), i, r) {
        size_t w = nw;
        if (result_apply(a, r, &w) && w < nw)
            touched[w] = true;
        int st = state_of(json_string_value(json_object_get(r, "state")));
        if (!RES_FINAL(st))
            json_object_set_new(a->known, json_string_value(json_object_get(r, "id")), json_true());
    }
    for (size_t w = nw; w-- > 0;) {
        if (!touched[w])
            continue;
        struct work *wk = a->works[w];
        report_work(j, a, wk);
        bool done = true;
        for (size_t k = 0; k < wk->n_images; k++)
            done &= RES_FINAL(wk->res[k].state);
        if (done)
            work_remove(a, w); /* the core finishes the node from the report */
    }
    free(touched);
    if (!was_healthy)
        PW_INFO("agent of node %s is syncing (version %s, runtime %s %s)", node, a->version ? a->version : "?",
                a->runtime_name ? a->runtime_name : "?", a->runtime_version ? a->runtime_version : "?");
    bool news;
    json_t *resp = answer_of(j, a, &news);
    const json_t *wait = json_object_get(body, "wait");
    if (news || json_is_false(wait)) {
        answer(arg, resp);
    } else {
        json_decref(resp);
        a->held_fn = answer;
        a->held_arg = arg;
        a->held_until_mono = pw_clock_mono_ms() + j->set.poll_ms;
    }
    pthread_mutex_unlock(&j->mu);
    return 0;
}

/* ---- listing ---- */

static int agent_cmp(const void *p, const void *q)
{
    return strcmp((*(struct agent *const *)p)->node, (*(struct agent *const *)q)->node);
}

static json_t *int_or_null(json_int_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

json_t *pw_agentexec_list(pw_executor *x)
{
    struct agentexec *j = X(x);
    pthread_mutex_lock(&j->mu);
    struct agent **v = pw_xcalloc(j->n ? j->n : 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++)
        if (j->v[i]->last_seen_mono)
            v[n++] = j->v[i];
    qsort(v, n, sizeof *v, agent_cmp);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct agent *a = v[i];
        char seen[PW_RFC3339_LEN];
        time_str(a->last_seen_ms, seen);
        size_t active = 0;
        for (size_t w = 0; w < a->n_works; w++)
            for (size_t k = 0; k < a->works[w]->n_images; k++)
                active += !RES_FINAL(a->works[w]->res[k].state);
        json_array_append_new(
            items, json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:b, s:I, s:{s:o, s:o, s:o}, s:I}", "node", a->node,
                             "agentVersion", a->version ? a->version : "", "runtime", "name",
                             a->runtime_name ? a->runtime_name : "", "version",
                             a->runtime_version ? a->runtime_version : "", "lastSeen", seen, "healthy",
                             healthy_locked(j, a), "images", (json_int_t)json_object_size(a->inv), "imageFs",
                             "usedBytes", int_or_null(a->fs_used), "capacityBytes", int_or_null(a->fs_capacity),
                             "availableBytes", int_or_null(a->fs_available), "assignments", (json_int_t)active));
    }
    free(v);
    pthread_mutex_unlock(&j->mu);
    return json_pack("{s:o}", "items", items);
}
