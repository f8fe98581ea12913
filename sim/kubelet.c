/* kubelet.c: the simulated kubelets, one per node, all run by the world thread. For each pod bound to a
 * node (spec.nodeName) the kubelet admits it after the pod start latency (rejecting it for NoExecute
 * taints it does not tolerate), then brings its containers up in order the way the real SyncPod does:
 * init containers one after another, each to completion, then the app containers: for each, the image
 * (imagePullPolicy, the node's platform, pull secrets checked against the catalogue's credentials,
 * pulls through the physical model with the kubelet's back-off), then create and start, where the
 * command must exist in the image or on a volume an init container filled, else the runtime's
 * StartError. Pod status and Events follow the real kubelet's shapes and messages.
 *
 * Thread model: the world thread only, with world->lock held. */
#include "sim/world_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/b64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "sim/podstats.h"
#include "sim/sched.h"

#define RUN_S 0.1            /* how long a known command runs before it exits (model seconds) */
#define BACKOFF_FIRST_S 10.0 /* the kubelet's image and crash-loop back-off: 10 s doubling to 300 s */
#define BACKOFF_MAX_S 300.0
#define PODGC_DELAY_S 2.0 /* pods of a deleted node are removed that long after it */

enum cphase {
    C_NEW = 0,      /* not begun */
    C_PULL_WAIT,    /* pull queued or running in the model */
    C_PULL_BACKOFF, /* the last pull failed; waiting for the back-off */
    C_BLOCKED,      /* InvalidImageName, ErrImageNeverPull: stays */
    C_CREATING,     /* image present; create + start takes the container start latency */
    C_RUNNING,
    C_RESTART_WAIT, /* CrashLoopBackOff (restartPolicy OnFailure/Always) */
    C_DONE
};

struct kpull;

struct kcont {
    char *name, *image;
    bool init;
    const json_t *spec; /* borrowed from the pod's spec (kept alive by kpod->obj) */
    const struct sim_image *img;
    enum cphase phase;
    char *wait_reason, *wait_msg;
    double t_next, t_announce;
    double backoff;
    bool announced;
    struct kpull *pull;
    int exit_code;
    char *term_reason, *term_msg;
    int64_t started_ms, finished_ms, created_ms;
    char container_id[65];
    char *image_id;
    char *norm_image;
    int restarts;
    json_t *last_state; /* previous termination, or NULL */
    bool pulled;        /* the kubelet pulled its image (not already present) */
};

struct kpod {
    char *key, *ns, *name, *uid;
    struct sim_wnode *node;
    json_t *spec;     /* the pod's spec as first seen; released once the pod is terminal */
    char restart[16]; /* spec.restartPolicy */
    json_t *involved;
    struct kcont *c; /* init containers first */
    int ninit, ncont;
    bool accepted, terminal, rejected, deleting;
    double evict_from; /* model time an untolerated-after-a-while NoExecute taint was first seen, or NAN */
    double accept_at;
    int64_t start_ms, init_done_ms, ready_ms, done_ms;
    char pod_ip[16];
    char *reason, *message;
    bool dirty;
    bool started_reported; /* every container started once: told podstats.c */
};

struct kpull {
    struct kpod *pod; /* NULL once the pod went away (the pull goes on) */
    int ci;
    struct sim_wnode *node;
    const struct sim_image *img;
    char *ref;
    char *fail_msg; /* NULL: the pull succeeds */
    int64_t id;
    bool running;
    struct kpull *next, *prev;
};

struct kstate {
    struct kpull *pulls; /* every live pull */
};

static struct kstate *kst(struct sim_world *w)
{
    if (!w->kubelet)
        w->kubelet = pw_xcalloc(1, sizeof(struct kstate));
    return w->kubelet;
}

/* ---------------------------------- helpers ---------------------------------- */

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? pw_xstrdup(s) : NULL;
}

static void now_rfc(int64_t ms, char out[PW_RFC3339_LEN])
{
    pw_time_rfc3339((time_t)(ms / 1000), out);
}

/* Go's time.Duration text, rounded to the millisecond: "512ms", "1.2s", "2m3.5s". */
static void go_dur(double s, char *out, size_t n)
{
    long ms = lround(s * 1000);
    if (ms < 1000) {
        snprintf(out, n, "%ldms", ms);
        return;
    }
    char sec[32];
    long m = ms / 60000;
    long rest = ms % 60000;
    snprintf(sec, sizeof sec, "%ld.%03ld", rest / 1000, rest % 1000);
    char *e = sec + strlen(sec) - 1;
    while (*e == '0')
        *e-- = '\0';
    if (*e == '.')
        *e = '\0';
    if (m)
        snprintf(out, n, "%ldm%ss", m, sec);
    else
        snprintf(out, n, "%ss", sec);
}

static void event(struct sim_world *w, struct kpod *p, const struct kcont *c, const char *type, const char *reason,
                  const char *msg)
{
    char fp[320];
    if (c)
        snprintf(fp, sizeof fp, "spec.%s{%s}", c->init ? "initContainers" : "containers", c->name);
    sim_world_event(w, p->involved, type, reason, msg, "kubelet", p->node ? p->node->name : NULL, c ? fp : NULL);
}

static void eventf(struct sim_world *w, struct kpod *p, const struct kcont *c, const char *type, const char *reason,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void eventf(struct sim_world *w, struct kpod *p, const struct kcont *c, const char *type, const char *reason,
                   const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    event(w, p, c, type, reason, buf);
}

static const char *restart_policy(const struct kpod *p)
{
    return p->restart;
}

static void free_pull(struct sim_world *w, struct kpull *k)
{
    struct kstate *s = kst(w);
    if (k->prev)
        k->prev->next = k->next;
    else
        s->pulls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    free(k->ref);
    free(k->fail_msg);
    free(k);
}

static void free_pod(struct sim_world *w, struct kpod *p)
{
    for (int i = 0; i < p->ncont; i++) {
        struct kcont *c = &p->c[i];
        if (c->pull) {
            if (!c->pull->running && sim_model_cancel(w->model, c->pull->id) == 0)
                free_pull(w, c->pull);
            else
                c->pull->pod = NULL;
        }
        free(c->name);
        free(c->image);
        free(c->wait_reason);
        free(c->wait_msg);
        free(c->term_reason);
        free(c->term_msg);
        free(c->image_id);
        free(c->norm_image);
        json_decref(c->last_state);
    }
    free(p->c);
    json_decref(p->spec);
    json_decref(p->involved);
    free(p->key);
    free(p->ns);
    free(p->name);
    free(p->uid);
    free(p->reason);
    free(p->message);
    free(p);
}

/* ---------------------------------- status ---------------------------------- */

static json_t *cont_status(const struct kcont *c)
{
    char t1[PW_RFC3339_LEN], t2[PW_RFC3339_LEN];
    bool running = c->phase == C_RUNNING;
    json_t *s =
        json_pack("{s:s, s:s, s:s, s:b, s:i, s:b}", "name", c->name, "image",
                  c->norm_image && c->image_id ? c->norm_image : c->image, "imageID", c->image_id ? c->image_id : "",
                  "ready", running && !c->init, "restartCount", c->restarts, "started", running);
    json_t *state;
    if (running) {
        now_rfc(c->started_ms, t1);
        state = json_pack("{s:{s:s}}", "running", "startedAt", t1);
    } else if (c->phase == C_DONE) {
        now_rfc(c->started_ms ? c->started_ms : c->finished_ms, t1);
        now_rfc(c->finished_ms, t2);
        json_t *term = json_pack("{s:i, s:s, s:s, s:s, s:s}", "exitCode", c->exit_code, "reason",
                                 c->term_reason ? c->term_reason : "Completed", "startedAt", t1, "finishedAt", t2,
                                 "containerID", "");
        json_object_set_new(term, "containerID", json_sprintf("containerd://%s", c->container_id));
        if (c->term_msg)
            json_object_set_new(term, "message", json_string(c->term_msg));
        state = json_pack("{s:o}", "terminated", term);
    } else {
        json_t *wt = json_pack("{s:s}", "reason", c->wait_reason ? c->wait_reason : "ContainerCreating");
        if (c->wait_msg)
            json_object_set_new(wt, "message", json_string(c->wait_msg));
        state = json_pack("{s:o}", "waiting", wt);
    }
    json_object_set_new(s, "state", state);
    json_object_set_new(s, "lastState", c->last_state ? json_incref(c->last_state) : json_object());
    if (c->container_id[0])
        json_object_set_new(s, "containerID", json_sprintf("containerd://%s", c->container_id));
    return s;
}

static json_t *pod_condition(const char *type, bool ok, int64_t ms, const char *reason, const char *msg)
{
    char t[PW_RFC3339_LEN];
    now_rfc(ms, t);
    json_t *c = json_pack("{s:s, s:s, s:n, s:s}", "type", type, "status", ok ? "True" : "False", "lastProbeTime",
                          "lastTransitionTime", t);
    if (!ok && reason)
        json_object_set_new(c, "reason", json_string(reason));
    if (!ok && msg)
        json_object_set_new(c, "message", json_string(msg));
    return c;
}

/* The kubelet's getPhase: Pending while an init container or any container waits; Running while one
 * runs; at the end Succeeded when all exited 0, else Failed (restartPolicy Never). */
static const char *pod_phase(const struct kpod *p)
{
    if (p->rejected)
        return "Failed";
    if (!p->accepted)
        return "Pending";
    for (int i = 0; i < p->ninit; i++)
        if (p->c[i].phase != C_DONE || p->c[i].exit_code != 0) {
            if (p->c[i].phase == C_DONE && strcmp(restart_policy(p), "Never") == 0)
                return "Failed";
            return "Pending";
        }
    int waiting = 0, running = 0, stopped = 0, ok = 0;
    for (int i = p->ninit; i < p->ncont; i++) {
        const struct kcont *c = &p->c[i];
        if (c->phase == C_RUNNING)
            running++;
        else if (c->phase == C_DONE) {
            stopped++;
            ok += c->exit_code == 0;
        } else if (c->phase == C_RESTART_WAIT)
            running++;
        else
            waiting++;
    }
    if (waiting)
        return "Pending";
    if (running)
        return "Running";
    if (stopped == ok)
        return "Succeeded";
    return strcmp(restart_policy(p), "Never") == 0 ? "Failed" : "Running";
}

static json_t *build_status(struct sim_world *w, struct kpod *p)
{
    (void)w;
    const char *phase = pod_phase(p);
    json_t *st = json_pack("{s:s}", "phase", phase);
    char t[PW_RFC3339_LEN];
    if (p->rejected) {
        json_object_set_new(st, "reason", json_string(p->reason));
        json_object_set_new(st, "message", json_string(p->message));
        now_rfc(p->start_ms, t);
        json_object_set_new(st, "startTime", json_string(t));
        return st;
    }
    json_object_set_new(st, "hostIP", json_string(p->node->ip));
    json_object_set_new(st, "hostIPs", json_pack("[{s:s}]", "ip", p->node->ip));
    json_object_set_new(st, "podIP", json_string(p->pod_ip));
    json_object_set_new(st, "podIPs", json_pack("[{s:s}]", "ip", p->pod_ip));
    now_rfc(p->start_ms, t);
    json_object_set_new(st, "startTime", json_string(t));
    json_object_set_new(st, "qosClass", json_string("BestEffort"));

    bool done = strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0;
    char unready[1024] = "", uninit[1024] = "";
    bool all_ready = true, inited = true;
    for (int i = 0; i < p->ncont; i++) {
        const struct kcont *c = &p->c[i];
        char *dst = c->init ? uninit : unready;
        bool ok = c->init ? (c->phase == C_DONE && c->exit_code == 0) : c->phase == C_RUNNING;
        if (!ok) {
            if (c->init)
                inited = false;
            else
                all_ready = false;
            size_t l = strlen(dst);
            snprintf(dst + l, 1024 - l, "%s%s", l ? " " : "", c->name);
        }
    }
    char m1[1100], m2[1100];
    snprintf(m1, sizeof m1, "containers with incomplete status: [%s]", uninit);
    snprintf(m2, sizeof m2, "containers with unready status: [%s]", unready);
    json_t *conds = json_array();
    json_array_append_new(conds, pod_condition("PodReadyToStartContainers", !done, p->start_ms, NULL, NULL));
    json_array_append_new(conds, pod_condition("Initialized", inited, p->init_done_ms ? p->init_done_ms : p->start_ms,
                                               "ContainersNotInitialized", m1));
    const char *nr = done ? "PodCompleted" : "ContainersNotReady";
    bool ready = all_ready && !done;
    int64_t rms = p->done_ms ? p->done_ms : (p->ready_ms ? p->ready_ms : p->start_ms);
    json_array_append_new(conds, pod_condition("Ready", ready, rms, nr, done ? NULL : m2));
    json_array_append_new(conds, pod_condition("ContainersReady", ready, rms, nr, done ? NULL : m2));
    json_array_append_new(conds, pod_condition("PodScheduled", true, p->start_ms, NULL, NULL));
    json_object_set_new(st, "conditions", conds);
    if (p->ninit) {
        json_t *ics = json_array();
        for (int i = 0; i < p->ninit; i++)
            json_array_append_new(ics, cont_status(&p->c[i]));
        json_object_set_new(st, "initContainerStatuses", ics);
    }
    json_t *cs = json_array();
    for (int i = p->ninit; i < p->ncont; i++)
        json_array_append_new(cs, cont_status(&p->c[i]));
    json_object_set_new(st, "containerStatuses", cs);
    return st;
}

struct status_arg {
    const char *uid;
    json_t *status;
};

static int set_status(void *arg, json_t *obj)
{
    struct status_arg *a = arg;
    const char *uid = json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
    if (!uid || strcmp(uid, a->uid) != 0)
        return PW_ENOTFOUND;
    json_t *old = json_object_get(obj, "status");
    if (old && json_equal(old, a->status))
        return 1;
    json_object_set(obj, "status", a->status);
    return 0;
}

static void write_status(struct sim_world *w, struct kpod *p)
{
    if (!p->dirty)
        return;
    p->dirty = false;
    struct status_arg a = {.uid = p->uid, .status = build_status(w, p)};
    int rc = sim_store_mutate(w->sim->store, "pods", p->ns, p->name, set_status, &a, NULL);
    json_decref(a.status);
    if (rc != 0 && rc != PW_ENOTFOUND)
        PW_WARN("kubesim kubelet: status of pod %s: %s", p->key, pw_strerror(rc));
}

/* ---------------------------------- images ---------------------------------- */

static const char *pull_policy(const struct kcont *c)
{
    const char *pol = json_string_value(json_object_get(c->spec, "imagePullPolicy"));
    if (pol && *pol)
        return pol;
    return sim_ref_is_latest(c->image) ? "Always" : "IfNotPresent";
}

/* "https://registry.example.com/v1/" -> "registry.example.com" */
static void registry_host(const char *s, char *out, size_t n)
{
    const char *p = strstr(s, "://");
    p = p ? p + 3 : s;
    size_t len = strcspn(p, "/");
    snprintf(out, n, "%.*s", (int)len, p);
    if (strcmp(out, "index.docker.io") == 0 || strcmp(out, "registry-1.docker.io") == 0)
        snprintf(out, n, "docker.io");
}

/* True when one of the pod's imagePullSecrets (type kubernetes.io/dockerconfigjson, in its namespace)
 * holds the image's registry credentials. */
static bool has_credentials(struct sim_world *w, const struct kpod *p, const struct sim_image *img)
{
    json_t *secrets = json_object_get(p->spec, "imagePullSecrets");
    size_t i;
    json_t *ref;
    bool ok = false;
    json_array_foreach(secrets, i, ref)
    {
        const char *name = json_string_value(json_object_get(ref, "name"));
        json_t *sec = NULL;
        if (!name || sim_store_get(w->sim->store, "secrets", p->ns, name, &sec) != 0)
            continue;
        const char *type = json_string_value(json_object_get(sec, "type"));
        const char *data = json_string_value(json_object_get(json_object_get(sec, "data"), ".dockerconfigjson"));
        void *text = NULL;
        size_t text_len = 0;
        if (type && strcmp(type, "kubernetes.io/dockerconfigjson") == 0 && data &&
            pw_b64_decode(data, strlen(data), &text, &text_len) != 0)
            text = NULL;
        json_t *cfg = text ? json_loads(text, 0, NULL) : NULL;
        const char *key;
        json_t *entry;
        json_object_foreach(json_object_get(cfg, "auths"), key, entry)
        {
            char host[256];
            registry_host(key, host, sizeof host);
            if (strcmp(host, img->auth_registry) != 0)
                continue;
            const char *u = json_string_value(json_object_get(entry, "username"));
            const char *pw = json_string_value(json_object_get(entry, "password"));
            void *pair = NULL;
            size_t pair_len = 0;
            const char *auth = json_string_value(json_object_get(entry, "auth"));
            if ((!u || !pw) && auth && pw_b64_decode(auth, strlen(auth), &pair, &pair_len) == 0) {
                char *colon = strchr(pair, ':');
                if (colon) {
                    *colon = '\0';
                    u = pair;
                    pw = colon + 1;
                }
            }
            if (u && pw && strcmp(u, img->auth_user) == 0 && strcmp(pw, img->auth_pass) == 0)
                ok = true;
            free(pair);
        }
        json_decref(cfg);
        free(text);
        json_decref(sec);
        if (ok)
            break;
    }
    return ok;
}

/* Why a pull of c's image on p's node fails, as containerd says it (caller frees), or NULL. */
static char *pull_failure(struct sim_world *w, const struct kpod *p, const struct kcont *c, const char *norm)
{
    if (!c->img)
        return pw_xasprintf("rpc error: code = NotFound desc = failed to pull and unpack image \"%s\": failed to "
                            "resolve reference \"%s\": %s: not found",
                            norm, norm, norm);
    if (c->img->auth_user && !has_credentials(w, p, c->img)) {
        char repo[SIM_REF_MAX];
        sim_ref_repo(norm, repo, sizeof repo);
        const char *path = strchr(repo, '/');
        return pw_xasprintf("rpc error: code = Unknown desc = failed to pull and unpack image \"%s\": failed to "
                            "resolve reference \"%s\": failed to authorize: failed to fetch anonymous token: "
                            "unexpected status from GET request to https://%s/token?scope=repository%%3A%s%%3Apull"
                            "&service=%s: 401 Unauthorized",
                            norm, norm, c->img->auth_registry, path ? path + 1 : repo, c->img->auth_registry);
    }
    if (!sim_image_platform(c->img, p->node->arch))
        return pw_xasprintf("rpc error: code = NotFound desc = failed to pull and unpack image \"%s\": no match for "
                            "platform in manifest: not found",
                            norm);
    return NULL;
}

/* ---------------------------------- containers ---------------------------------- */

static void pod_sync(struct sim_world *w, struct kpod *p);
static void release_spec(struct kpod *p);

static void set_waiting(struct kpod *p, struct kcont *c, const char *reason, const char *msg)
{
    set_str(&c->wait_reason, reason);
    set_str(&c->wait_msg, msg);
    p->dirty = true;
}

static void to_creating(struct sim_world *w, struct kpod *p, struct kcont *c)
{
    c->phase = C_CREATING;
    c->t_next = sim_world_now(w) + w->sim->opt.container_start_ms / 1000.0;
    set_waiting(p, c, c->init ? "PodInitializing" : "ContainerCreating", NULL);
    sim_world_timer(w, c->t_next, SIM_T_POD, p->key);
}

/* Begins c's image: validation, pull policy, presence; a pull is queued in the model when needed. */
static void begin_image(struct sim_world *w, struct kpod *p, struct kcont *c)
{
    char norm[SIM_REF_MAX];
    if (sim_ref_normalize(c->image, norm, sizeof norm) != 0) {
        bool upper = false;
        for (const char *q = c->image; *q && *q != ':' && *q != '@'; q++)
            upper = upper || (*q >= 'A' && *q <= 'Z');
        char *msg = pw_xasprintf("Failed to apply default image tag \"%s\": couldn't parse image reference \"%s\": "
                                 "invalid reference format%s",
                                 c->image, c->image, upper ? ": repository name must be lowercase" : "");
        c->phase = C_BLOCKED;
        set_waiting(p, c, "InvalidImageName", msg);
        event(w, p, c, "Warning", "InspectFailed", msg);
        event(w, p, c, "Warning", "Failed", "Error: InvalidImageName");
        free(msg);
        return;
    }
    set_str(&c->norm_image, norm);
    c->img = sim_catalog_find(w->cat, c->image);
    const char *pol = pull_policy(c);
    bool present = c->img && sim_world_node_holds(p->node, c->img) && sim_image_platform(c->img, p->node->arch) &&
                   sim_model_has_platform(w->model, p->node->midx, sim_image_platform(c->img, p->node->arch));
    if (present && strcmp(pol, "Always") != 0) {
        eventf(w, p, c, "Normal", "Pulled", "Container image \"%s\" already present on machine", c->image);
        sim_world_node_hold(w, p->node, c->img, c->image);
        to_creating(w, p, c);
        return;
    }
    if (strcmp(pol, "Never") == 0) {
        char *msg = pw_xasprintf("Container image \"%s\" is not present with pull policy of Never", c->image);
        c->phase = C_BLOCKED;
        set_waiting(p, c, "ErrImageNeverPull", msg);
        event(w, p, c, "Warning", "ErrImageNeverPull", msg);
        event(w, p, c, "Warning", "Failed", "Error: ErrImageNeverPull");
        free(msg);
        return;
    }
    c->pulled = true;
    struct kpull *k = pw_xcalloc(1, sizeof *k);
    k->pod = p;
    k->ci = (int)(c - p->c);
    k->node = p->node;
    k->img = c->img;
    k->ref = pw_xstrdup(c->image);
    k->fail_msg = pull_failure(w, p, c, norm);
    const struct sim_platform *plat = c->img ? sim_image_platform(c->img, p->node->arch) : NULL;
    k->id = sim_model_pull(w->model, p->node->midx, plat, k->fail_msg == NULL, (uint64_t)(uintptr_t)k);
    struct kstate *s = kst(w);
    k->next = s->pulls;
    if (s->pulls)
        s->pulls->prev = k;
    s->pulls = k;
    c->pull = k;
    c->phase = C_PULL_WAIT;
}

static double next_backoff(double cur)
{
    if (cur <= 0)
        return BACKOFF_FIRST_S;
    return cur * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : cur * 2;
}

void sim_kubelet_on_pull(struct sim_world *w, const struct sim_model_evt *e)
{
    struct kpull *k = (struct kpull *)(uintptr_t)e->cookie;
    struct kpod *p = k->pod;
    struct kcont *c = p ? &p->c[k->ci] : NULL;
    if (e->type == SIM_PULL_STARTED) {
        k->running = true;
        if (p)
            eventf(w, p, c, "Normal", "Pulling", "Pulling image \"%s\"", c->image);
        return;
    }
    if (e->ok) {
        if (!k->node->gone)
            sim_world_node_hold(w, k->node, k->img, k->ref);
    }
    if (!p) {
        free_pull(w, k);
        return;
    }
    c->pull = NULL;
    if (e->ok) {
        char d1[32], d2[32];
        go_dur((e->now - e->started_at) / w->scale, d1, sizeof d1);
        go_dur((e->now - e->queued_at) / w->scale, d2, sizeof d2);
        const struct sim_platform *plat = sim_image_platform(k->img, p->node->arch);
        eventf(w, p, c, "Normal", "Pulled",
               "Successfully pulled image \"%s\" in %s (%s including waiting). Image "
               "size: %" PRIu64 " bytes.",
               c->image, d1, d2, plat ? plat->size : 0);
        c->backoff = 0;
        to_creating(w, p, c);
    } else {
        eventf(w, p, c, "Warning", "Failed", "Failed to pull image \"%s\": %s", c->image, k->fail_msg);
        event(w, p, c, "Warning", "Failed", "Error: ErrImagePull");
        set_waiting(p, c, "ErrImagePull", k->fail_msg);
        c->phase = C_PULL_BACKOFF;
        c->backoff = next_backoff(c->backoff);
        c->t_next = e->now + c->backoff;
        c->t_announce = e->now + (c->backoff < 2 ? c->backoff / 2 : 1.0);
        c->announced = false;
        sim_world_timer(w, c->t_announce, SIM_T_POD, p->key);
        sim_world_timer(w, c->t_next, SIM_T_POD, p->key);
    }
    free_pull(w, k);
    pod_sync(w, p);
    write_status(w, p);
    release_spec(p);
}

/* Exit code of c's command, or -1 with *msg (caller frees) when the runtime cannot start it. */
static bool on_filled_volume(const struct kpod *p, const struct kcont *c, const char *path)
{
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(c->spec, "volumeMounts"), i, vm)
    {
        const char *mp = json_string_value(json_object_get(vm, "mountPath"));
        const char *vol = json_string_value(json_object_get(vm, "name"));
        if (!mp || !vol)
            continue;
        size_t n = strlen(mp);
        while (n > 1 && mp[n - 1] == '/')
            n--;
        if (strncmp(path, mp, n) != 0 || path[n] != '/')
            continue;
        for (int k = 0; k < p->ninit; k++) {
            const struct kcont *ic = &p->c[k];
            if (ic->phase != C_DONE || ic->exit_code != 0)
                continue;
            size_t j;
            json_t *ivm;
            json_array_foreach(json_object_get(ic->spec, "volumeMounts"), j, ivm)
            {
                const char *iv = json_string_value(json_object_get(ivm, "name"));
                if (iv && strcmp(iv, vol) == 0 && !json_is_true(json_object_get(ivm, "readOnly")))
                    return true;
            }
        }
    }
    return false;
}

static int exit_of_shell(const char *script)
{
    while (*script == ' ')
        script++;
    if (strncmp(script, "exit", 4) == 0) {
        int code = atoi(script + 4);
        return code & 255;
    }
    if (strcmp(script, "false") == 0)
        return 1;
    return 0;
}

static int command_result(const struct kpod *p, const struct kcont *c, char **msg)
{
    json_t *cmd = json_object_get(c->spec, "command");
    json_t *args = json_object_get(c->spec, "args");
    const char *argv0 = json_string_value(json_array_get(cmd, 0));
    json_t *rest = cmd;
    size_t first_arg = 1;
    if (!argv0) {
        /* no command: the image's entrypoint, which exists; args may name a program for it */
        return 0;
    }
    (void)rest;
    char path[1024];
    bool found = false;
    if (strchr(argv0, '/')) {
        snprintf(path, sizeof path, "%s", argv0);
        found = argv0[0] == '/' && ((c->img && sim_image_has_exe(c->img, argv0)) || on_filled_volume(p, c, argv0));
        if (!found) {
            *msg = pw_xasprintf("failed to create containerd task: failed to create shim task: OCI runtime create "
                                "failed: runc create failed: unable to start container process: exec: \"%s\": stat "
                                "%s: no such file or directory: unknown",
                                argv0, argv0);
            return -1;
        }
    } else {
        static const char *PATHS[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"};
        for (size_t i = 0; i < sizeof PATHS / sizeof PATHS[0] && !found; i++) {
            snprintf(path, sizeof path, "%s/%s", PATHS[i], argv0);
            found = c->img && sim_image_has_exe(c->img, path);
        }
        if (!found) {
            *msg = pw_xasprintf("failed to create containerd task: failed to create shim task: OCI runtime create "
                                "failed: runc create failed: unable to start container process: exec: \"%s\": "
                                "executable file not found in $PATH: unknown",
                                argv0);
            return -1;
        }
    }
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (strcmp(base, "false") == 0)
        return 1;
    if (strcmp(base, "sh") == 0 || strcmp(base, "bash") == 0 || strcmp(base, "ash") == 0) {
        /* sh -c "script": the script from the rest of command, then args */
        json_t *all = json_array();
        for (size_t i = first_arg; i < json_array_size(cmd); i++)
            json_array_append(all, json_array_get(cmd, i));
        json_array_extend(all, args);
        int code = 0;
        for (size_t i = 0; i + 1 < json_array_size(all); i++)
            if (strcmp(json_string_value(json_array_get(all, i)) ? json_string_value(json_array_get(all, i)) : "",
                       "-c") == 0) {
                const char *script = json_string_value(json_array_get(all, i + 1));
                code = script ? exit_of_shell(script) : 0;
                break;
            }
        json_decref(all);
        return code;
    }
    return 0;
}

static bool should_restart(const struct kpod *p, int exit_code)
{
    const char *rp = restart_policy(p);
    if (strcmp(rp, "Always") == 0)
        return true;
    return strcmp(rp, "OnFailure") == 0 && exit_code != 0;
}

static void finish_container(struct sim_world *w, struct kpod *p, struct kcont *c, int code, const char *reason,
                             const char *msg)
{
    c->exit_code = code;
    set_str(&c->term_reason, reason);
    set_str(&c->term_msg, msg);
    c->finished_ms = pw_clock_real_ms();
    c->phase = C_DONE;
    p->dirty = true;
    if (should_restart(p, code)) {
        json_decref(c->last_state);
        json_t *cs = cont_status(c);
        c->last_state = json_incref(json_object_get(cs, "state"));
        json_decref(cs);
        c->restarts++;
        c->backoff = next_backoff(c->backoff);
        c->phase = C_RESTART_WAIT;
        c->t_next = sim_world_now(w) + c->backoff;
        char *m = pw_xasprintf("back-off %.0fs restarting failed container=%s pod=%s_%s(%s)", c->backoff, c->name,
                               p->name, p->ns, p->uid);
        set_waiting(p, c, "CrashLoopBackOff", m);
        eventf(w, p, c, "Warning", "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c->name,
               p->name, p->ns, p->uid);
        free(m);
        sim_world_timer(w, c->t_next, SIM_T_POD, p->key);
    }
}

/* Whether a container's command is one of prewarm's own daemons, which run until stopped (the
 * catalogue does not say which executables are services; an image's entrypoint always is). */
static bool is_daemon(const json_t *spec)
{
    const char *cmd = json_string_value(json_array_get(json_object_get(spec, "command"), 0));
    const char *base = cmd ? strrchr(cmd, '/') : NULL;
    base = base ? base + 1 : cmd;
    return base && (strcmp(base, "prewarm-agent") == 0 || strcmp(base, "prewarmd") == 0);
}

static void start_container(struct sim_world *w, struct kpod *p, struct kcont *c)
{
    char hex[65];
    static const char H[] = "0123456789abcdef";
    for (int i = 0; i < 64; i += 16) {
        uint64_t r = sim_world_rand(w);
        for (int j = 0; j < 16; j++, r >>= 4)
            hex[i + j] = H[r & 15];
    }
    hex[64] = '\0';
    memcpy(c->container_id, hex, sizeof hex);
    if (c->img) {
        free(c->image_id);
        c->image_id = pw_xasprintf("%s@%s", c->img->repo, c->img->digest);
    }
    c->created_ms = pw_clock_real_ms();
    eventf(w, p, c, "Normal", "Created", "Created container %s", c->name);
    char *msg = NULL;
    int code = command_result(p, c, &msg);
    if (code < 0) {
        eventf(w, p, c, "Warning", "Failed", "Error: %s", msg);
        c->started_ms = 0;
        finish_container(w, p, c, 128, "StartError", msg);
        free(msg);
        return;
    }
    eventf(w, p, c, "Normal", "Started", "Started container %s", c->name);
    c->started_ms = c->created_ms;
    c->phase = C_RUNNING;
    c->exit_code = code;
    p->dirty = true;
    if ((!json_array_size(json_object_get(c->spec, "command")) || is_daemon(c->spec)) && !c->init &&
        strcmp(restart_policy(p), "Always") == 0) {
        c->t_next = INFINITY; /* a service's own entrypoint (nginx, redis, ...) keeps running */
        return;
    }
    c->t_next = sim_world_now(w) + RUN_S;
    sim_world_timer(w, c->t_next, SIM_T_POD, p->key);
}

/* Moves c forward as far as time allows. Returns true when c no longer holds up the next container
 * (for app containers: started or failed its pull; for init containers: completed). */
static void step(struct sim_world *w, struct kpod *p, struct kcont *c, double now)
{
    switch (c->phase) {
    case C_NEW:
        begin_image(w, p, c);
        break;
    case C_PULL_BACKOFF:
        if (!c->announced && now >= c->t_announce) {
            char *m = pw_xasprintf("Back-off pulling image \"%s\"", c->image);
            set_waiting(p, c, "ImagePullBackOff", m);
            event(w, p, c, "Normal", "BackOff", m);
            free(m);
            c->announced = true;
        }
        if (now >= c->t_next)
            begin_image(w, p, c);
        break;
    case C_CREATING:
        if (now >= c->t_next)
            start_container(w, p, c);
        break;
    case C_RUNNING:
        if (now >= c->t_next)
            finish_container(w, p, c, c->exit_code, c->exit_code ? "Error" : "Completed", NULL);
        break;
    case C_RESTART_WAIT:
        if (now >= c->t_next)
            to_creating(w, p, c);
        break;
    default:
        break;
    }
}

static bool holds_up(const struct kcont *c)
{
    return c->phase == C_NEW || c->phase == C_PULL_WAIT || c->phase == C_CREATING;
}

/* Admission: NoExecute taints the pod does not tolerate reject it. */
static bool admit(struct sim_world *w, struct kpod *p)
{
    json_t *node = NULL;
    if (sim_store_get(w->sim->store, "nodes", "", p->node->name, &node) != 0)
        return true;
    json_t *tols = json_object_get(p->spec, "tolerations");
    size_t i;
    json_t *t;
    bool ok = true;
    json_array_foreach(json_object_get(json_object_get(node, "spec"), "taints"), i, t)
    {
        const char *eff = json_string_value(json_object_get(t, "effect"));
        if (!eff || strcmp(eff, "NoExecute") != 0 || sim_sched_tolerates(tols, t))
            continue;
        const char *key = json_string_value(json_object_get(t, "key"));
        const char *val = json_string_value(json_object_get(t, "value"));
        p->rejected = true;
        set_str(&p->reason, "TaintToleration");
        char *m = pw_xasprintf("Pod was rejected: Predicate TaintToleration failed: node(s) had untolerated taint "
                               "{%s: %s}",
                               key ? key : "", val ? val : "");
        set_str(&p->message, m);
        free(m);
        ok = false;
        break;
    }
    json_decref(node);
    return ok;
}

/* Once every app container has started: the pod's start latency and image hits go to podstats.c. */
static void report_started(struct sim_world *w, struct kpod *p)
{
    if (p->started_reported || p->ncont == p->ninit)
        return;
    for (int i = p->ninit; i < p->ncont; i++)
        if (!p->c[i].started_ms)
            return;
    p->started_reported = true;
    struct sim_podstats_cont *cs = pw_xcalloc((size_t)p->ncont, sizeof *cs);
    for (int i = 0; i < p->ncont; i++)
        cs[i] = (struct sim_podstats_cont){.img = p->c[i].img, .pulled = p->c[i].pulled};
    sim_podstats_started(w, p->key, p->node, cs, p->ncont);
    free(cs);
}

static void pod_sync(struct sim_world *w, struct kpod *p)
{
    if (p->terminal || p->deleting || p->node->gone || !p->node->ready)
        return;
    double now = sim_world_now(w);
    if (!p->accepted) {
        if (now < p->accept_at)
            return;
        p->accepted = true;
        p->start_ms = pw_clock_real_ms();
        p->dirty = true;
        if (!admit(w, p)) {
            event(w, p, NULL, "Warning", p->reason, p->message);
            p->terminal = true;
            p->done_ms = p->start_ms;
            return;
        }
        snprintf(p->pod_ip, sizeof p->pod_ip, "10.%d.%d.%u", 64 + (p->node->midx / 256) % 64, p->node->midx % 256,
                 (++p->node->pod_seq % 253) + 2);
        for (int i = 0; i < p->ncont; i++)
            set_waiting(p, &p->c[i], p->ninit ? "PodInitializing" : "ContainerCreating", NULL);
    }
    for (int guard = 0; guard < 4 * p->ncont + 4; guard++) {
        bool progressed = false;
        /* init containers: one at a time, each to completion */
        int i = 0;
        for (; i < p->ninit; i++) {
            struct kcont *c = &p->c[i];
            if (c->phase == C_DONE && c->exit_code == 0)
                continue;
            enum cphase before = c->phase;
            step(w, p, c, now);
            progressed = c->phase != before;
            break;
        }
        if (i == p->ninit) {
            if (p->ninit && !p->init_done_ms) {
                p->init_done_ms = pw_clock_real_ms();
                for (int k = p->ninit; k < p->ncont; k++)
                    if (p->c[k].phase == C_NEW)
                        set_waiting(p, &p->c[k], "ContainerCreating", NULL);
            }
            for (int k = p->ninit; k < p->ncont; k++) {
                struct kcont *c = &p->c[k];
                enum cphase before = c->phase;
                step(w, p, c, now);
                progressed = progressed || c->phase != before;
                if (holds_up(c))
                    break;
            }
        }
        if (!progressed)
            break;
    }
    report_started(w, p);
    const char *phase = pod_phase(p);
    if (strcmp(phase, "Running") == 0 && !p->ready_ms)
        p->ready_ms = pw_clock_real_ms();
    if (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0) {
        p->terminal = true;
        p->done_ms = pw_clock_real_ms();
        p->dirty = true;
    }
}

/* A terminal pod's kubelet state shrinks to what its status needs (100,000 pods stay cheap). */
static void release_spec(struct kpod *p)
{
    if (!p->terminal || !p->spec)
        return;
    for (int i = 0; i < p->ncont; i++)
        p->c[i].spec = NULL;
    json_decref(p->spec);
    p->spec = NULL;
}

/* ---------------------------------- pods in, timers ---------------------------------- */

static void init_cont(struct kcont *c, const json_t *spec, bool init)
{
    c->spec = spec;
    c->init = init;
    c->name = pw_xstrdup(
        json_string_value(json_object_get(spec, "name")) ? json_string_value(json_object_get(spec, "name")) : "");
    c->image = pw_xstrdup(
        json_string_value(json_object_get(spec, "image")) ? json_string_value(json_object_get(spec, "image")) : "");
}

static struct kpod *track(struct sim_world *w, const struct sim_change *ch, struct sim_wnode *n, const char *key)
{
    json_t *md = json_object_get(ch->obj, "metadata");
    json_t *spec = json_object_get(ch->obj, "spec");
    struct kpod *p = pw_xcalloc(1, sizeof *p);
    p->key = pw_xstrdup(key);
    p->ns = pw_xstrdup(ch->ns);
    p->name = pw_xstrdup(ch->name);
    p->uid =
        pw_xstrdup(json_string_value(json_object_get(md, "uid")) ? json_string_value(json_object_get(md, "uid")) : "");
    p->node = n;
    p->spec = json_incref(spec);
    const char *rp = json_string_value(json_object_get(spec, "restartPolicy"));
    snprintf(p->restart, sizeof p->restart, "%s", rp ? rp : "Always");
    p->involved = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "kind", "Pod", "apiVersion", "v1", "metadata", "name",
                            p->name, "namespace", p->ns, "uid", p->uid);
    json_t *inits = json_object_get(spec, "initContainers"), *conts = json_object_get(spec, "containers");
    p->ninit = (int)json_array_size(inits);
    p->ncont = p->ninit + (int)json_array_size(conts);
    p->c = pw_xcalloc((size_t)p->ncont + 1, sizeof *p->c);
    for (int i = 0; i < p->ninit; i++)
        init_cont(&p->c[i], json_array_get(inits, (size_t)i), true);
    for (int i = p->ninit; i < p->ncont; i++)
        init_cont(&p->c[i], json_array_get(conts, (size_t)(i - p->ninit)), false);
    p->accept_at = sim_world_now(w) + w->sim->opt.pod_start_ms / 1000.0;
    p->evict_from = NAN;
    sim_map_put(&w->pods, key, p);
    if (!n->ready)
        sim_world_timer(w, sim_world_now(w), SIM_T_EVICT, key); /* no kubelet: the taint manager decides */
    sim_world_timer(w, p->accept_at, SIM_T_POD, key);
    return p;
}

static void untrack(struct sim_world *w, const char *key)
{
    struct kpod *p = sim_map_del(&w->pods, key);
    if (p)
        free_pod(w, p);
}

void sim_kubelet_on_pod(struct sim_world *w, const struct sim_change *ch)
{
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ch->ns, ch->name);
    struct kpod *p = sim_map_get(&w->pods, key);
    json_t *md = json_object_get(ch->obj, "metadata");
    const char *uid = json_string_value(json_object_get(md, "uid"));
    if (ch->type == SIM_DELETED) {
        if (p && uid && strcmp(p->uid, uid) == 0)
            untrack(w, key);
        return;
    }
    if (p && uid && strcmp(p->uid, uid) != 0) {
        untrack(w, key);
        p = NULL;
    }
    if (p) {
        /* a graceful deletion: the kubelet stops the containers and removes the pod (grace period 0) */
        if (json_object_get(md, "deletionTimestamp") && !p->deleting) {
            p->deleting = true;
            json_t *fin = json_object_get(md, "finalizers");
            if (json_array_size(fin) == 0 && p->node->ready)
                sim_store_delete(w->sim->store, "pods", p->ns, p->name, NULL);
            /* on a node whose kubelet is down the pod stays Terminating, as in a real cluster */
        }
        return;
    }
    const char *node = json_string_value(json_object_get(json_object_get(ch->obj, "spec"), "nodeName"));
    const char *phase = json_string_value(json_object_get(json_object_get(ch->obj, "status"), "phase"));
    if (!node || !*node || json_object_get(md, "deletionTimestamp"))
        return;
    if (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
        return;
    struct sim_wnode *n = sim_world_node(w, node);
    if (!n || n->gone)
        return; /* no such node: the pod waits, as it would in a real cluster */
    track(w, ch, n, key);
}

void sim_kubelet_timer(struct sim_world *w, const char *key)
{
    struct kpod *p = sim_map_get(&w->pods, key);
    if (!p)
        return;
    pod_sync(w, p);
    write_status(w, p);
    release_spec(p);
}

struct node_arg {
    struct sim_world *w;
    struct sim_wnode *n;
    char **keys;
    int nkeys, cap;
};

static void collect(void *arg, const char *key, void *val)
{
    struct node_arg *a = arg;
    struct kpod *p = val;
    if (p->node != a->n)
        return;
    if (a->nkeys == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->keys = pw_xrealloc(a->keys, sizeof *a->keys * (size_t)a->cap);
    }
    a->keys[a->nkeys++] = pw_xstrdup(key);
}

void sim_kubelet_node_ready(struct sim_world *w, struct sim_wnode *n, bool ready)
{
    if (!ready)
        return; /* pods simply stop moving: pod_sync does nothing on a node whose kubelet is down */
    struct node_arg a = {.w = w, .n = n};
    sim_map_each(&w->pods, collect, &a);
    double now = sim_world_now(w);
    for (int i = 0; i < a.nkeys; i++) {
        struct kpod *p = sim_map_get(&w->pods, a.keys[i]);
        if (p && p->deleting) {
            /* the kubelet is back: pods deleted meanwhile go now */
            sim_store_delete(w->sim->store, "pods", p->ns, p->name, NULL);
            free(a.keys[i]);
            continue;
        }
        if (p && !p->accepted && p->accept_at < now) {
            p->accept_at = now + w->sim->opt.pod_start_ms / 1000.0;
            sim_world_timer(w, p->accept_at, SIM_T_POD, a.keys[i]);
        }
        sim_world_timer(w, now, SIM_T_POD, a.keys[i]);
        free(a.keys[i]);
    }
    free(a.keys);
}

void sim_kubelet_node_gone(struct sim_world *w, struct sim_wnode *n)
{
    /* the model forgot the node's pulls: free their records first */
    struct kstate *s = kst(w);
    for (struct kpull *k = s->pulls, *next; k; k = next) {
        next = k->next;
        if (k->node != n)
            continue;
        if (k->pod)
            k->pod->c[k->ci].pull = NULL;
        free_pull(w, k);
    }
    struct node_arg a = {.w = w, .n = n};
    sim_map_each(&w->pods, collect, &a);
    double at = sim_world_now(w) + PODGC_DELAY_S;
    for (int i = 0; i < a.nkeys; i++) {
        untrack(w, a.keys[i]);
        sim_world_timer(w, at, SIM_T_PODGC, a.keys[i]);
        free(a.keys[i]);
    }
    free(a.keys);
}

struct bound_filter {
    const char *node;
};

static bool on_node(void *arg, const json_t *obj)
{
    const struct bound_filter *f = arg;
    const char *nn = json_string_value(json_object_get(json_object_get(obj, "spec"), "nodeName"));
    return nn && strcmp(nn, f->node) == 0;
}

void sim_kubelet_node_added(struct sim_world *w, struct sim_wnode *n)
{
    struct bound_filter f = {.node = n->name};
    json_t *items = NULL;
    bool more = false;
    uint64_t rv = 0;
    if (sim_store_list(w->sim->store, "pods", NULL, NULL, 0, on_node, &f, &items, &more, &rv) != 0)
        return;
    size_t i;
    json_t *pod;
    json_array_foreach(items, i, pod)
    {
        json_t *md = json_object_get(pod, "metadata");
        struct sim_change ch = {
            .type = SIM_ADDED,
            .resource = "pods",
            .ns = json_string_value(json_object_get(md, "namespace")),
            .name = json_string_value(json_object_get(md, "name")),
            .obj = pod,
        };
        if (ch.name && ch.ns)
            sim_kubelet_on_pod(w, &ch);
    }
    json_decref(items);
}

/* The pod garbage collector: pods bound to a node that was deleted are removed. */
void sim_kubelet_podgc(struct sim_world *w, const char *key)
{
    const char *slash = strchr(key, '/');
    if (!slash)
        return;
    char ns[256];
    snprintf(ns, sizeof ns, "%.*s", (int)(slash - key), key);
    json_t *pod = NULL;
    if (sim_store_get(w->sim->store, "pods", ns, slash + 1, &pod) != 0)
        return;
    const char *node = json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName"));
    struct sim_wnode *n = node ? sim_world_node(w, node) : NULL;
    if (node && (!n || n->gone))
        sim_store_delete(w->sim->store, "pods", ns, slash + 1, NULL);
    json_decref(pod);
}

static void free_one(void *arg, const char *key, void *val)
{
    (void)key;
    struct sim_world *w = arg;
    struct kpod *p = val;
    for (int i = 0; i < p->ncont; i++)
        p->c[i].pull = NULL; /* freed below with the list */
    free_pod(w, p);
}

void sim_kubelet_fini(struct sim_world *w)
{
    sim_map_each(&w->pods, free_one, w);
    sim_map_fini(&w->pods);
    struct kstate *s = w->kubelet;
    if (s) {
        while (s->pulls)
            free_pull(w, s->pulls);
        free(s);
        w->kubelet = NULL;
    }
}

/* ---------------------------------- the taint manager ---------------------------------- */

/* Seconds the pod may stay given the node's NoExecute taints: 0 (evict now), tolerationSeconds of
 * the tightest toleration, or a negative value (tolerated for ever / no such taint). */
static double evict_delay(const json_t *taints, const json_t *tols)
{
    double delay = -1;
    size_t i;
    json_t *t;
    json_array_foreach(taints, i, t)
    {
        const char *eff = json_string_value(json_object_get(t, "effect"));
        if (!eff || strcmp(eff, "NoExecute") != 0)
            continue;
        if (!sim_sched_tolerates(tols, t))
            return 0;
        /* tolerated: by a toleration with tolerationSeconds? the smallest one that matches */
        double best = -1;
        size_t j;
        json_t *tol;
        json_array_foreach(tols, j, tol)
        {
            json_t *one = json_array();
            json_array_append(one, tol);
            bool m = sim_sched_tolerates(one, t);
            json_decref(one);
            if (!m)
                continue;
            json_t *secs = json_object_get(tol, "tolerationSeconds");
            if (!json_is_integer(secs)) {
                best = -1;
                break;
            }
            double s = json_integer_value(secs) < 0 ? 0 : (double)json_integer_value(secs);
            if (best < 0 || s < best)
                best = s;
        }
        if (best >= 0 && (delay < 0 || best < delay))
            delay = best;
    }
    return delay;
}

void sim_kubelet_evict(struct sim_world *w, const char *key)
{
    struct kpod *p = sim_map_get(&w->pods, key);
    if (!p || p->terminal || p->deleting || !p->spec)
        return;
    json_t *node = NULL;
    if (sim_store_get(w->sim->store, "nodes", "", p->node->name, &node) != 0)
        return;
    double d =
        evict_delay(json_object_get(json_object_get(node, "spec"), "taints"), json_object_get(p->spec, "tolerations"));
    json_decref(node);
    double now = sim_world_now(w);
    if (d < 0) {
        p->evict_from = NAN;
        return;
    }
    if (isnan(p->evict_from))
        p->evict_from = now;
    if (now + 1e-9 < p->evict_from + d) {
        sim_world_timer(w, p->evict_from + d, SIM_T_EVICT, key);
        return;
    }
    /* an admitted pod on a node whose kubelet runs is rejected by admission instead */
    if (!p->accepted && p->node->ready)
        return;
    char *m = pw_xasprintf("Marking for deletion Pod %s/%s", p->ns, p->name);
    sim_world_event(w, p->involved, "Normal", "TaintManagerEviction", m, "taint-eviction-controller", NULL, NULL);
    free(m);
    char ns[256], name[512];
    snprintf(ns, sizeof ns, "%s", p->ns);
    snprintf(name, sizeof name, "%s", p->name);
    sim_api_delete(w->sim, "pods", ns, name, NULL); /* graceful: the kubelet (if it runs) removes it */
}

void sim_kubelet_taints_changed(struct sim_world *w, struct sim_wnode *n)
{
    struct node_arg a = {.w = w, .n = n};
    sim_map_each(&w->pods, collect, &a);
    double now = sim_world_now(w);
    for (int i = 0; i < a.nkeys; i++) {
        sim_world_timer(w, now, SIM_T_EVICT, a.keys[i]);
        free(a.keys[i]);
    }
    free(a.keys);
}

void sim_kubelet_pull_owner(uint64_t cookie, const char **ref, const char **pod)
{
    const struct kpull *k = (const struct kpull *)(uintptr_t)cookie;
    *ref = k->ref;
    *pod = k->pod ? k->pod->key : "";
}
