/* jobctl.c: the simulated Job controller (batch/v1) and the TTL-after-finished controller, run by the
 * world thread. For each Job: pods from the template with the real labels, ownerReferences and
 * "<job>-xxxxx" names, up to min(parallelism, completions - succeeded) at once; every failed pod (or a
 * pod deleted before it ended) adds to status.failed and delays the replacement by 10 s doubling to
 * 6 minutes; the Job fails when failed > backoffLimit or when it runs longer than
 * activeDeadlineSeconds (its active pods deleted), and completes when enough pods succeeded; Events
 * and conditions carry the real reasons and messages; ttlSecondsAfterFinished deletes the finished Job
 * (propagation Foreground) that long after it finished. Every duration is divided by --time-scale.
 *
 * No duplicate pods: the controller runs on one thread and records each pod it creates at once, before
 * the store's ADDED event for it comes back (the "expectations" of the real controller).
 * Thread model: the world thread only, with world->lock held. */
#include "sim/world_int.h"
#include "sim/objutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#define JOB_BACKOFF_FIRST_S 10.0
#define JOB_BACKOFF_MAX_S 360.0

struct jpod {
    char phase[16];
    bool ready;
    bool counted;
    bool deleting;
};

struct kjob {
    char *key, *ns, *name, *uid;
    json_t *obj; /* the latest Job object */
    json_t *involved;
    struct sim_map pods; /* pod name -> struct jpod * */
    int succeeded, failed;
    double last_fail_at;
    double start_model; /* model time of startTime, or NAN */
    double finished_at; /* model time the Job finished, or NAN */
    bool finished, ttl_set, deadline_set;
};

static json_t *jspec(const struct kjob *j)
{
    return json_object_get(j->obj, "spec");
}

static long spec_int(const struct kjob *j, const char *field, long def)
{
    json_t *v = json_object_get(jspec(j), field);
    return json_is_integer(v) ? (long)json_integer_value(v) : def;
}

static void free_jpod(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    free(val);
}

static void free_job(struct kjob *j)
{
    sim_map_each(&j->pods, free_jpod, NULL);
    sim_map_fini(&j->pods);
    json_decref(j->obj);
    json_decref(j->involved);
    free(j->key);
    free(j->ns);
    free(j->name);
    free(j->uid);
    free(j);
}

static void schedule(struct sim_world *w, struct kjob *j, double delay_s)
{
    sim_world_timer(w, sim_world_now(w) + delay_s, SIM_T_JOB, j->key);
}

static double controller_s(const struct sim_world *w)
{
    return w->sim->opt.controller_ms / 1000.0;
}

void sim_jobctl_on_job(struct sim_world *w, const struct sim_change *ch)
{
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ch->ns, ch->name);
    struct kjob *j = sim_map_get(&w->jobs, key);
    const char *uid = json_string_value(json_object_get(json_object_get(ch->obj, "metadata"), "uid"));
    if (!uid)
        return;
    if (j && strcmp(j->uid, uid) != 0) {
        sim_map_del(&w->jobs, key);
        free_job(j);
        j = NULL;
    }
    if (ch->type == SIM_DELETED) {
        if (j) {
            sim_map_del(&w->jobs, key);
            free_job(j);
        }
        return;
    }
    if (!j) {
        j = pw_xcalloc(1, sizeof *j);
        j->key = pw_xstrdup(key);
        j->ns = pw_xstrdup(ch->ns);
        j->name = pw_xstrdup(ch->name);
        j->uid = pw_xstrdup(uid);
        j->start_model = NAN;
        j->finished_at = NAN;
        j->involved = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "kind", "Job", "apiVersion", "batch/v1", "metadata",
                                "name", j->name, "namespace", j->ns, "uid", j->uid);
        json_t *st = json_object_get(ch->obj, "status");
        j->succeeded = (int)json_integer_value(json_object_get(st, "succeeded"));
        j->failed = (int)json_integer_value(json_object_get(st, "failed"));
        const char *start = json_string_value(json_object_get(st, "startTime"));
        time_t t0;
        if (start && pw_time_parse_rfc3339(start, &t0) == 0)
            j->start_model = sim_world_now(w) - ((double)pw_clock_real_ms() / 1000.0 - (double)t0) * w->scale;
        sim_map_put(&w->jobs, key, j);
    }
    json_decref(j->obj);
    j->obj = json_incref(ch->obj);
    j->finished = sim_obj_has_condition(ch->obj, "Complete") || sim_obj_has_condition(ch->obj, "Failed");
    schedule(w, j, controller_s(w));
}

/* The Job that controls a pod (its controller ownerReference), or NULL. */
static struct kjob *owner_job(struct sim_world *w, const struct sim_change *ch)
{
    size_t i;
    json_t *ref;
    json_array_foreach(json_object_get(json_object_get(ch->obj, "metadata"), "ownerReferences"), i, ref)
    {
        const char *kind = json_string_value(json_object_get(ref, "kind"));
        const char *name = json_string_value(json_object_get(ref, "name"));
        const char *uid = json_string_value(json_object_get(ref, "uid"));
        if (!kind || strcmp(kind, "Job") != 0 || !name || !uid || !json_is_true(json_object_get(ref, "controller")))
            continue;
        char key[600];
        snprintf(key, sizeof key, "%s/%s", ch->ns, name);
        struct kjob *j = sim_map_get(&w->jobs, key);
        return j && strcmp(j->uid, uid) == 0 ? j : NULL;
    }
    return NULL;
}

static bool pod_ready(const json_t *pod)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(pod, "status"), "conditions"), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        const char *s = json_string_value(json_object_get(c, "status"));
        if (t && s && strcmp(t, "Ready") == 0)
            return strcmp(s, "True") == 0;
    }
    return false;
}

static bool terminal(const char *phase)
{
    return strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0;
}

void sim_jobctl_on_pod(struct sim_world *w, const struct sim_change *ch)
{
    struct kjob *j = owner_job(w, ch);
    if (!j)
        return;
    struct jpod *p = sim_map_get(&j->pods, ch->name);
    if (!p) {
        if (ch->type == SIM_DELETED)
            return;
        p = pw_xcalloc(1, sizeof *p);
        snprintf(p->phase, sizeof p->phase, "Pending");
        sim_map_put(&j->pods, ch->name, p);
    }
    const char *phase = json_string_value(json_object_get(json_object_get(ch->obj, "status"), "phase"));
    if (phase)
        snprintf(p->phase, sizeof p->phase, "%s", phase);
    p->ready = pod_ready(ch->obj);
    p->deleting = json_object_get(json_object_get(ch->obj, "metadata"), "deletionTimestamp") != NULL;
    if (!p->counted && strcmp(p->phase, "Succeeded") == 0) {
        p->counted = true;
        j->succeeded++;
    } else if (!p->counted && (strcmp(p->phase, "Failed") == 0 || ch->type == SIM_DELETED) && !j->finished) {
        /* a pod that failed, or went away before it ended, counts as failed */
        p->counted = true;
        j->failed++;
        j->last_fail_at = sim_world_now(w);
    }
    if (ch->type == SIM_DELETED)
        free(sim_map_del(&j->pods, ch->name));
    schedule(w, j, controller_s(w));
}

/* ---------------------------------- pods from the template ---------------------------------- */

static void default_containers(json_t *arr)
{
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c)
    {
        const char *image = json_string_value(json_object_get(c, "image"));
        if (!json_object_get(c, "imagePullPolicy"))
            json_object_set_new(c, "imagePullPolicy",
                                json_string(image && sim_ref_is_latest(image) ? "Always" : "IfNotPresent"));
        if (!json_object_get(c, "terminationMessagePath"))
            json_object_set_new(c, "terminationMessagePath", json_string("/dev/termination-log"));
        if (!json_object_get(c, "terminationMessagePolicy"))
            json_object_set_new(c, "terminationMessagePolicy", json_string("File"));
        if (!json_object_get(c, "resources"))
            json_object_set_new(c, "resources", json_object());
    }
}

static void default_toleration(json_t *spec, const char *key)
{
    json_t *tols = json_object_get(spec, "tolerations");
    size_t i;
    json_t *t;
    json_array_foreach(tols, i, t)
    {
        const char *k = json_string_value(json_object_get(t, "key"));
        const char *op = json_string_value(json_object_get(t, "operator"));
        if ((k && strcmp(k, key) == 0) || (!k && op && strcmp(op, "Exists") == 0))
            return;
    }
    if (!tols) {
        tols = json_array();
        json_object_set_new(spec, "tolerations", tols);
    }
    json_array_append_new(tols, json_pack("{s:s, s:s, s:s, s:I}", "key", key, "operator", "Exists", "effect",
                                          "NoExecute", "tolerationSeconds", (json_int_t)300));
}

static json_t *pod_from_template(const struct kjob *j)
{
    json_t *tmpl = json_object_get(jspec(j), "template");
    json_t *tmd = json_object_get(tmpl, "metadata");
    json_t *labels =
        json_is_object(json_object_get(tmd, "labels")) ? json_deep_copy(json_object_get(tmd, "labels")) : json_object();
    json_object_set_new(labels, "controller-uid", json_string(j->uid));
    json_object_set_new(labels, "job-name", json_string(j->name));
    json_object_set_new(labels, "batch.kubernetes.io/controller-uid", json_string(j->uid));
    json_object_set_new(labels, "batch.kubernetes.io/job-name", json_string(j->name));
    char gen[80];
    snprintf(gen, sizeof gen, "%.57s-", j->name);
    json_t *md = json_pack("{s:s, s:s, s:o, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}", "generateName", gen, "namespace",
                           j->ns, "labels", labels, "ownerReferences", "apiVersion", "batch/v1", "kind", "Job", "name",
                           j->name, "uid", j->uid, "controller", 1, "blockOwnerDeletion", 1);
    json_t *ann = json_object_get(tmd, "annotations");
    if (json_is_object(ann))
        json_object_set_new(md, "annotations", json_deep_copy(ann));
    json_t *spec =
        json_is_object(json_object_get(tmpl, "spec")) ? json_deep_copy(json_object_get(tmpl, "spec")) : json_object();
    static const struct {
        const char *k, *v;
    } SDEF[] = {{"restartPolicy", "Never"},
                {"dnsPolicy", "ClusterFirst"},
                {"schedulerName", "default-scheduler"},
                {"serviceAccountName", "default"},
                {"serviceAccount", "default"}};
    for (size_t i = 0; i < sizeof SDEF / sizeof SDEF[0]; i++)
        if (!json_object_get(spec, SDEF[i].k))
            json_object_set_new(spec, SDEF[i].k, json_string(SDEF[i].v));
    if (!json_object_get(spec, "terminationGracePeriodSeconds"))
        json_object_set_new(spec, "terminationGracePeriodSeconds", json_integer(30));
    if (!json_object_get(spec, "securityContext"))
        json_object_set_new(spec, "securityContext", json_object());
    if (!json_object_get(spec, "enableServiceLinks"))
        json_object_set_new(spec, "enableServiceLinks", json_true());
    if (!json_object_get(spec, "priority"))
        json_object_set_new(spec, "priority", json_integer(0));
    default_containers(json_object_get(spec, "initContainers"));
    default_containers(json_object_get(spec, "containers"));
    default_toleration(spec, "node.kubernetes.io/not-ready");
    default_toleration(spec, "node.kubernetes.io/unreachable");
    return json_pack("{s:s, s:s, s:o, s:o, s:{s:s, s:s}}", "apiVersion", "v1", "kind", "Pod", "metadata", md, "spec",
                     spec, "status", "phase", "Pending", "qosClass", "BestEffort");
}

static void create_pods(struct sim_world *w, struct kjob *j, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *out = NULL;
        int rc = sim_store_create(w->sim->store, "pods", j->ns, pod_from_template(j), &out);
        if (rc != 0) {
            char *m = pw_xasprintf("Error creating: %s", pw_strerror(rc));
            sim_world_event(w, j->involved, "Warning", "FailedCreate", m, "job-controller", NULL, NULL);
            free(m);
            schedule(w, j, 1.0);
            return;
        }
        const char *name = json_string_value(json_object_get(json_object_get(out, "metadata"), "name"));
        struct jpod *p = pw_xcalloc(1, sizeof *p);
        snprintf(p->phase, sizeof p->phase, "Pending");
        sim_map_put(&j->pods, name, p);
        char *m = pw_xasprintf("Created pod: %s", name);
        sim_world_event(w, j->involved, "Normal", "SuccessfulCreate", m, "job-controller", NULL, NULL);
        free(m);
        json_decref(out);
    }
}

/* ---------------------------------- status ---------------------------------- */

struct jstatus {
    const char *uid;
    int active, ready, succeeded, failed;
    const char *start;       /* set startTime when absent */
    const char *finish_type; /* "Complete" or "Failed" */
    const char *reason, *message;
    const char *now;
};

static json_t *jcond(const char *type, const char *reason, const char *msg, const char *now)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", type, "status", "True", "reason", reason, "message", msg,
                     "lastProbeTime", now, "lastTransitionTime", now);
}

static int set_jstatus(void *arg, json_t *obj)
{
    const struct jstatus *a = arg;
    const char *uid = json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
    if (!uid || strcmp(uid, a->uid) != 0)
        return PW_ENOTFOUND;
    json_t *st = json_object_get(obj, "status");
    if (!json_is_object(st)) {
        st = json_object();
        json_object_set_new(obj, "status", st);
    }
    json_t *before = json_deep_copy(st);
    if (!json_object_get(st, "startTime") && a->start)
        json_object_set_new(st, "startTime", json_string(a->start));
    json_object_set_new(st, "active", json_integer(a->active));
    json_object_set_new(st, "ready", json_integer(a->ready));
    json_object_set_new(st, "terminating", json_integer(0));
    json_object_set_new(st, "uncountedTerminatedPods", json_object());
    if (a->succeeded)
        json_object_set_new(st, "succeeded", json_integer(a->succeeded));
    else
        json_object_del(st, "succeeded");
    if (a->failed)
        json_object_set_new(st, "failed", json_integer(a->failed));
    else
        json_object_del(st, "failed");
    if (a->finish_type && !sim_obj_has_condition(obj, a->finish_type)) {
        json_t *conds = json_object_get(st, "conditions");
        if (!json_is_array(conds)) {
            conds = json_array();
            json_object_set_new(st, "conditions", conds);
        }
        if (strcmp(a->finish_type, "Complete") == 0) {
            json_array_append_new(conds, jcond("SuccessCriteriaMet", a->reason, a->message, a->now));
            json_array_append_new(conds, jcond("Complete", a->reason, a->message, a->now));
            json_object_set_new(st, "completionTime", json_string(a->now));
        } else {
            json_array_append_new(conds, jcond("FailureTarget", a->reason, a->message, a->now));
            json_array_append_new(conds, jcond("Failed", a->reason, a->message, a->now));
        }
    }
    bool same = json_equal(before, st);
    json_decref(before);
    return same ? 1 : 0;
}

struct count {
    int active, ready;
    char **active_names;
    int nactive;
};

static void count_pod(void *arg, const char *key, void *val)
{
    struct count *c = arg;
    struct jpod *p = val;
    if (terminal(p->phase) || p->deleting)
        return;
    c->active++;
    c->ready += p->ready;
    c->active_names = pw_xrealloc(c->active_names, sizeof *c->active_names * (size_t)(c->nactive + 1));
    c->active_names[c->nactive++] = pw_xstrdup(key);
}

static void finish(struct sim_world *w, struct kjob *j, struct count *c, const char *type, const char *reason,
                   const char *message)
{
    if (strcmp(type, "Failed") == 0) {
        /* active pods are deleted; they do not add to failed once the Job has finished */
        j->finished = true;
        for (int i = 0; i < c->nactive; i++)
            sim_api_delete(w->sim, "pods", j->ns, c->active_names[i], "Background");
    }
    j->finished = true;
    j->finished_at = sim_world_now(w);
    char now[PW_RFC3339_LEN];
    pw_time_rfc3339(time(NULL), now);
    struct jstatus a = {.uid = j->uid,
                        .active = 0,
                        .ready = 0,
                        .succeeded = j->succeeded,
                        .failed = j->failed,
                        .finish_type = type,
                        .reason = reason,
                        .message = message,
                        .now = now};
    sim_store_mutate(w->sim->store, "jobs.batch", j->ns, j->name, set_jstatus, &a, NULL);
    if (strcmp(type, "Complete") == 0)
        sim_world_event(w, j->involved, "Normal", "Completed", "Job completed", "job-controller", NULL, NULL);
    else
        sim_world_event(w, j->involved, "Warning", reason, message, "job-controller", NULL, NULL);
}

/* When the Job finished (model seconds): known when this controller finished it, else from the
 * status' completionTime or Failed condition (RFC 3339 seconds). */
static double finished_at(struct sim_world *w, struct kjob *j)
{
    if (!isnan(j->finished_at))
        return j->finished_at;
    json_t *st = json_object_get(j->obj, "status");
    const char *at = json_string_value(json_object_get(st, "completionTime"));
    size_t i;
    json_t *cnd;
    json_array_foreach(json_object_get(st, "conditions"), i, cnd)
    {
        const char *t = json_string_value(json_object_get(cnd, "type"));
        if (!at && t && (strcmp(t, "Failed") == 0 || strcmp(t, "Complete") == 0))
            at = json_string_value(json_object_get(cnd, "lastTransitionTime"));
    }
    time_t t0;
    double since = 0;
    if (at && pw_time_parse_rfc3339(at, &t0) == 0)
        since = ((double)pw_clock_real_ms() / 1000.0 - (double)t0) * w->scale;
    j->finished_at = sim_world_now(w) - (since > 0 ? since : 0);
    return j->finished_at;
}

/* ttlSecondsAfterFinished: delete the Job (Foreground) once its time has come, else wait for it. */
static void ttl_check(struct sim_world *w, struct kjob *j)
{
    json_t *ttl = json_object_get(jspec(j), "ttlSecondsAfterFinished");
    if (!json_is_integer(ttl))
        return;
    double due = finished_at(w, j) + (double)json_integer_value(ttl);
    if (sim_world_now(w) + 1e-9 >= due) {
        sim_api_delete(w->sim, "jobs.batch", j->ns, j->name, "Foreground");
        return;
    }
    if (!j->ttl_set) {
        j->ttl_set = true;
        sim_world_timer(w, due, SIM_T_JOB, j->key);
    }
}

static void sync_job(struct sim_world *w, struct kjob *j)
{
    json_t *md = json_object_get(j->obj, "metadata");
    if (json_object_get(md, "deletionTimestamp"))
        return;
    double now = sim_world_now(w);
    if (j->finished) {
        ttl_check(w, j);
        return;
    }
    struct count c = {0};
    sim_map_each(&j->pods, count_pod, &c);
    char start[PW_RFC3339_LEN];
    pw_time_rfc3339(time(NULL), start);
    if (isnan(j->start_model) && !json_is_true(json_object_get(jspec(j), "suspend")))
        j->start_model = now;
    long backoff_limit = spec_int(j, "backoffLimit", 6);
    long parallelism = spec_int(j, "parallelism", 1);
    json_t *jc = json_object_get(jspec(j), "completions");
    long completions = json_is_integer(jc) ? (long)json_integer_value(jc) : -1;
    json_t *ads = json_object_get(jspec(j), "activeDeadlineSeconds");

    if (j->failed > backoff_limit) {
        finish(w, j, &c, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit");
    } else if (json_is_integer(ads) && !isnan(j->start_model) &&
               now >= j->start_model + (double)json_integer_value(ads)) {
        finish(w, j, &c, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline");
    } else if ((completions >= 0 && j->succeeded >= completions) ||
               (completions < 0 && j->succeeded > 0 && c.active == 0)) {
        finish(w, j, &c, "Complete", "CompletionsReached", "Reached expected number of succeeded pods");
    } else {
        if (json_is_integer(ads) && !isnan(j->start_model) && !j->deadline_set) {
            j->deadline_set = true;
            sim_world_timer(w, j->start_model + (double)json_integer_value(ads), SIM_T_JOB, j->key);
        }
        long want = completions >= 0 ? completions - j->succeeded : (j->succeeded ? 0 : parallelism);
        if (want > parallelism)
            want = parallelism;
        long missing = want - c.active;
        if (json_is_true(json_object_get(jspec(j), "suspend")))
            missing = 0;
        if (missing > 0) {
            double delay = 0;
            if (j->failed > 0) {
                delay = JOB_BACKOFF_FIRST_S * pow(2, j->failed - 1);
                if (delay > JOB_BACKOFF_MAX_S)
                    delay = JOB_BACKOFF_MAX_S;
            }
            if (now >= j->last_fail_at + delay) {
                create_pods(w, j, (int)missing);
                c.active += (int)missing;
            } else {
                sim_world_timer(w, j->last_fail_at + delay, SIM_T_JOB, j->key);
            }
        }
        struct jstatus a = {.uid = j->uid,
                            .active = c.active,
                            .ready = c.ready,
                            .succeeded = j->succeeded,
                            .failed = j->failed,
                            .start = isnan(j->start_model) ? NULL : start};
        sim_store_mutate(w->sim->store, "jobs.batch", j->ns, j->name, set_jstatus, &a, NULL);
    }
    for (int i = 0; i < c.nactive; i++)
        free(c.active_names[i]);
    free(c.active_names);
}

void sim_jobctl_timer(struct sim_world *w, const char *key)
{
    struct kjob *j = sim_map_get(&w->jobs, key);
    if (j)
        sync_job(w, j);
}

static void free_one(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    free_job(val);
}

void sim_jobctl_fini(struct sim_world *w)
{
    sim_map_each(&w->jobs, free_one, NULL);
    sim_map_fini(&w->jobs);
}
