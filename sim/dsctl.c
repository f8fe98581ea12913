/* dsctl.c: kubesim's DaemonSet controller, as kube-controller-manager's daemon controller does it
 * for the parts prewarm uses: one pod per eligible node (the node matches the template's nodeSelector
 * and the pod tolerates the node's NoSchedule and NoExecute taints), created with an ownerReference to
 * the DaemonSet (so deleting the DaemonSet deletes its pods through the garbage collector), the daemon
 * pods' default tolerations added, a pod replaced when it goes away while its node stays, and the
 * DaemonSet's status counts kept. kubesim has no scheduler: the controller binds each pod to its node
 * directly (spec.nodeName), as the controller did before scheduling moved to the default scheduler.
 *
 * Thread model: world thread, world lock held. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "sim/sched.h"
#include "sim/world_int.h"

struct kds {
    char *ns, *name, *uid;
    json_t *tmpl;  /* spec.template (owned copy) */
    json_t *pods;     /* node name -> pod name: the daemon pods, as the controller knows them */
    json_t *eligible; /* node name -> true: the nodes that should run one */
    json_t *ready;    /* node name -> true while its daemon pod is Running */
    int64_t status_ms; /* when the status was last written (monotonic) */
    bool status_due;   /* a write is held back: a timer writes it */
};

/* Status writes at most this often per DaemonSet: thousands of pods starting would otherwise write
 * (and keep in the watch history) thousands of DaemonSet versions. */
#define STATUS_EVERY_MS 1000

struct dsstate {
    struct sim_map ds; /* "ns/name" -> struct kds * */
};

static struct dsstate *dst(struct sim_world *w)
{
    if (!w->dsctl)
        w->dsctl = pw_xcalloc(1, sizeof(struct dsstate));
    return w->dsctl;
}

static void kds_free(struct kds *d)
{
    free(d->ns);
    free(d->name);
    free(d->uid);
    json_decref(d->tmpl);
    json_decref(d->pods);
    json_decref(d->eligible);
    json_decref(d->ready);
    free(d);
}

/* ---- eligibility ---- */

/* Whether the daemon pod of d may run on node (a Node object). */
static bool eligible(const struct kds *d, const json_t *node)
{
    const json_t *spec = json_object_get(d->tmpl, "spec");
    const json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(spec, "nodeSelector"), k, v) {
        const json_t *have = json_object_get(labels, k);
        if (!json_is_string(have) || !json_is_string(v) || strcmp(json_string_value(have), json_string_value(v)) != 0)
            return false;
    }
    size_t i;
    const json_t *taint;
    json_array_foreach(json_object_get(json_object_get(node, "spec"), "taints"), i, taint) {
        const char *eff = json_string_value(json_object_get(taint, "effect"));
        if (eff && strcmp(eff, "PreferNoSchedule") == 0)
            continue;
        if (!sim_sched_tolerates(json_object_get(spec, "tolerations"), taint))
            return false;
    }
    return true;
}

/* The daemon controller's tolerations on every daemon pod (pkg/controller/daemon/util). */
static void default_tolerations(json_t *spec)
{
    static const struct {
        const char *key, *effect;
    } T[] = {{"node.kubernetes.io/not-ready", "NoExecute"},        {"node.kubernetes.io/unreachable", "NoExecute"},
             {"node.kubernetes.io/disk-pressure", "NoSchedule"},   {"node.kubernetes.io/memory-pressure", "NoSchedule"},
             {"node.kubernetes.io/pid-pressure", "NoSchedule"},    {"node.kubernetes.io/unschedulable", "NoSchedule"}};
    json_t *tols = json_object_get(spec, "tolerations");
    if (!json_is_array(tols)) {
        tols = json_array();
        json_object_set_new(spec, "tolerations", tols);
    }
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        bool have = false;
        size_t k;
        const json_t *t;
        json_array_foreach(tols, k, t) {
            const char *key = json_string_value(json_object_get(t, "key"));
            have |= key && strcmp(key, T[i].key) == 0;
        }
        if (!have)
            json_array_append_new(tols, json_pack("{s:s, s:s, s:s}", "key", T[i].key, "operator", "Exists", "effect",
                                                  T[i].effect));
    }
}

static json_t *daemon_pod(const struct kds *d, const char *node)
{
    json_t *tmd = json_object_get(d->tmpl, "metadata");
    json_t *labels =
        json_is_object(json_object_get(tmd, "labels")) ? json_deep_copy(json_object_get(tmd, "labels")) : json_object();
    json_object_set_new(labels, "pod-template-generation", json_string("1"));
    char gen[80];
    snprintf(gen, sizeof gen, "%.57s-", d->name);
    json_t *md = json_pack("{s:s, s:s, s:o, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}", "generateName", gen, "namespace",
                           d->ns, "labels", labels, "ownerReferences", "apiVersion", "apps/v1", "kind", "DaemonSet",
                           "name", d->name, "uid", d->uid, "controller", 1, "blockOwnerDeletion", 1);
    json_t *ann = json_object_get(tmd, "annotations");
    if (json_is_object(ann))
        json_object_set_new(md, "annotations", json_deep_copy(ann));
    json_t *spec = json_is_object(json_object_get(d->tmpl, "spec")) ? json_deep_copy(json_object_get(d->tmpl, "spec"))
                                                                   : json_object();
    json_object_set_new(spec, "nodeName", json_string(node));
    if (!json_object_get(spec, "restartPolicy"))
        json_object_set_new(spec, "restartPolicy", json_string("Always"));
    if (!json_object_get(spec, "serviceAccountName"))
        json_object_set_new(spec, "serviceAccountName", json_string("default"));
    if (!json_object_get(spec, "terminationGracePeriodSeconds"))
        json_object_set_new(spec, "terminationGracePeriodSeconds", json_integer(30));
    default_tolerations(spec);
    return json_pack("{s:s, s:s, s:o, s:o, s:{s:s, s:s}}", "apiVersion", "v1", "kind", "Pod", "metadata", md, "spec",
                     spec, "status", "phase", "Pending", "qosClass", "BestEffort");
}

/* ---- reconciling ---- */

static int set_status(void *arg, json_t *obj)
{
    const struct kds *d = arg;
    int ready = (int)json_object_size(d->ready);
    int cur = (int)json_object_size(d->pods);
    json_t *st = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:I}", "desiredNumberScheduled",
                           (int)json_object_size(d->eligible), "currentNumberScheduled", cur, "numberReady", ready,
                           "numberAvailable", ready, "numberMisscheduled", 0, "updatedNumberScheduled", cur,
                           "observedGeneration",
                           json_integer_value(json_object_get(json_object_get(obj, "metadata"), "generation")));
    if (json_equal(st, json_object_get(obj, "status"))) {
        json_decref(st);
        return 1; /* no change */
    }
    json_object_set_new(obj, "status", st);
    return 0;
}

static void write_status(struct sim_world *w, struct kds *d)
{
    int64_t now = pw_clock_mono_ms();
    if (now - d->status_ms < STATUS_EVERY_MS) {
        if (!d->status_due) {
            char key[600];
            snprintf(key, sizeof key, "%s/%s", d->ns, d->name);
            d->status_due = true;
            sim_world_timer(w, sim_world_now(w) + (double)STATUS_EVERY_MS / 1000.0 * w->scale, SIM_T_DS, key);
        }
        return;
    }
    d->status_ms = now;
    sim_store_mutate(w->sim->store, "daemonsets.apps", d->ns, d->name, set_status, d, NULL);
}

void sim_dsctl_timer(struct sim_world *w, const char *key)
{
    struct kds *d = w->dsctl ? sim_map_get(&((struct dsstate *)w->dsctl)->ds, key) : NULL;
    if (!d || !d->status_due)
        return;
    d->status_due = false;
    d->status_ms = 0;
    write_status(w, d);
}

/* Makes node n's daemon pod of d exist when n is eligible (no status write). */
static void reconcile_node(struct sim_world *w, struct kds *d, struct sim_wnode *n)
{
    json_t *node = NULL;
    if (n->gone || sim_store_get(w->sim->store, "nodes", "", n->name, &node) != 0) {
        json_object_del(d->eligible, n->name);
        return;
    }
    bool want = eligible(d, node);
    json_decref(node);
    if (!want) {
        json_object_del(d->eligible, n->name);
        return;
    }
    json_object_set_new(d->eligible, n->name, json_true());
    if (json_object_get(d->pods, n->name))
        return;
    json_t *out = NULL;
    int rc = sim_store_create(w->sim->store, "pods", d->ns, daemon_pod(d, n->name), &out);
    if (rc == 0)
        json_object_set_new(d->pods, n->name,
                            json_string(json_string_value(json_object_get(json_object_get(out, "metadata"), "name"))));
    else
        PW_WARN("kubesim daemon controller: cannot create the pod of %s/%s on %s: %s", d->ns, d->name, n->name,
                pw_strerror(rc));
    json_decref(out);
}

static void reconcile(struct sim_world *w, struct kds *d)
{
    for (int i = 0; i < w->nnodes; i++)
        reconcile_node(w, d, w->nodes[i]);
    write_status(w, d);
}

struct node_arg {
    struct sim_world *w;
    struct sim_wnode *n;
};

static void reconcile_one(void *arg, const char *key, void *val)
{
    (void)key;
    struct node_arg *a = arg;
    reconcile_node(a->w, val, a->n);
    write_status(a->w, val);
}

void sim_dsctl_on_ds(struct sim_world *w, const struct sim_change *ch)
{
    struct dsstate *s = dst(w);
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ch->ns, ch->name);
    struct kds *d = sim_map_get(&s->ds, key);
    if (ch->type == SIM_DELETED) {
        if (d) {
            sim_map_del(&s->ds, key);
            kds_free(d); /* its pods: the garbage collector follows their ownerReferences */
        }
        return;
    }
    const json_t *md = json_object_get(ch->obj, "metadata");
    if (json_object_get(md, "deletionTimestamp"))
        return;
    if (d && ch->old && json_equal(json_object_get(ch->obj, "spec"), json_object_get(ch->old, "spec")))
        return; /* a status write (ours): nothing to reconcile */
    if (!d) {
        d = pw_xcalloc(1, sizeof *d);
        d->ns = pw_xstrdup(ch->ns);
        d->name = pw_xstrdup(ch->name);
        d->pods = json_object();
        d->eligible = json_object();
        d->ready = json_object();
        sim_map_put(&s->ds, key, d);
    }
    free(d->uid);
    d->uid = pw_xstrdup(json_string_value(json_object_get(md, "uid")) ? json_string_value(json_object_get(md, "uid"))
                                                                      : "");
    json_decref(d->tmpl);
    d->tmpl = json_deep_copy(json_object_get(json_object_get(ch->obj, "spec"), "template"));
    if (!d->tmpl)
        d->tmpl = json_object();
    reconcile(w, d);
}

void sim_dsctl_on_node(struct sim_world *w, const struct sim_change *ch)
{
    if (ch->type == SIM_MODIFIED && ch->old) {
        /* only what eligibility reads: labels and taints (status updates are most of the changes) */
        const json_t *l1 = json_object_get(json_object_get(ch->old, "metadata"), "labels");
        const json_t *l2 = json_object_get(json_object_get(ch->obj, "metadata"), "labels");
        const json_t *t1 = json_object_get(json_object_get(ch->old, "spec"), "taints");
        const json_t *t2 = json_object_get(json_object_get(ch->obj, "spec"), "taints");
        if (json_equal(l1 ? l1 : json_null(), l2 ? l2 : json_null()) &&
            json_equal(t1 ? t1 : json_null(), t2 ? t2 : json_null()))
            return;
    }
    struct sim_wnode *n = sim_world_node(w, ch->name);
    if (!n || ch->type == SIM_DELETED)
        return; /* the node's pods go with the kubelet's pod GC */
    struct node_arg a = {w, n};
    sim_map_each(&dst(w)->ds, reconcile_one, &a);
}

/* The DaemonSet that controls pod (its ownerReference), or NULL. */
static struct kds *owner_of(struct sim_world *w, const char *ns, const json_t *pod)
{
    size_t i;
    const json_t *ref;
    json_array_foreach(json_object_get(json_object_get(pod, "metadata"), "ownerReferences"), i, ref) {
        const char *kind = json_string_value(json_object_get(ref, "kind"));
        const char *name = json_string_value(json_object_get(ref, "name"));
        if (kind && name && strcmp(kind, "DaemonSet") == 0 && json_is_true(json_object_get(ref, "controller"))) {
            char key[600];
            snprintf(key, sizeof key, "%s/%s", ns, name);
            return sim_map_get(&dst(w)->ds, key);
        }
    }
    return NULL;
}

void sim_dsctl_on_pod(struct sim_world *w, const struct sim_change *ch)
{
    struct kds *d = owner_of(w, ch->ns, ch->obj);
    const char *node = json_string_value(json_object_get(json_object_get(ch->obj, "spec"), "nodeName"));
    if (!d || !node)
        return;
    const char *have = json_string_value(json_object_get(d->pods, node));
    if (!have || strcmp(have, ch->name) != 0)
        return;
    if (ch->type == SIM_DELETED) {
        json_object_del(d->pods, node);
        json_object_del(d->ready, node);
        struct sim_wnode *n = sim_world_node(w, node);
        if (n)
            reconcile_node(w, d, n); /* its replacement, while the node stays */
    } else {
        const char *phase = json_string_value(json_object_get(json_object_get(ch->obj, "status"), "phase"));
        bool ready = phase && strcmp(phase, "Running") == 0;
        if ((json_object_get(d->ready, node) != NULL) == ready)
            return; /* nothing the status shows */
        if (ready)
            json_object_set_new(d->ready, node, json_true());
        else
            json_object_del(d->ready, node);
    }
    write_status(w, d);
}

static void free_one(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    kds_free(val);
}

void sim_dsctl_fini(struct sim_world *w)
{
    struct dsstate *s = w->dsctl;
    if (!s)
        return;
    sim_map_each(&s->ds, free_one, NULL);
    sim_map_fini(&s->ds);
    free(s);
    w->dsctl = NULL;
}
