/* nodeselect.c: which cached nodes a task takes (nodeSelector, labelSelector, nodeNames, readiness
 * and cordon filters) and which of its images each one already holds (the Node's status.images, or
 * what the node's agent reports), and readiness over time (the NotReady grace). See nodeselect.h. */
#include "engine/nodeselect.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/imageref.h"
#include "engine/nodekey.h"
#include "k8s/k8s.h"


struct select_ctx {
    pw_executor *agent; /* whose inventory counts, or NULL */
    const char *cluster;
    unsigned char cl;   /* its index in t->cl */
    struct task *t;
    struct tnode *nodes;
    size_t n, cap;
};

static bool in_names(const struct pw_taskspec *s, const char *name)
{
    for (size_t i = 0; i < s->n_node_names; i++)
        if (strcmp(s->node_names[i], name) == 0)
            return true;
    return false;
}

static bool selector_matches(const json_t *want, const json_t *labels)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)want, k, v) {
        const json_t *have = json_object_get(labels, k);
        if (!json_is_string(have) || strcmp(json_string_value(have), json_string_value(v)) != 0)
            return false;
    }
    return true;
}

static int select_one(void *arg, const json_t *node)
{
    struct select_ctx *c = arg;
    const struct pw_taskspec *s = &c->t->spec;
    const char *name = pw_k8s_name(node);
    const json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
    if (!name || (s->has_node_names && !in_names(s, name)))
        return 0;
    if (s->node_selector && !selector_matches(s->node_selector, labels))
        return 0;
    if (s->selector && !pw_labelsel_matches(s->selector, labels))
        return 0;
    if (!s->include_not_ready && !pw_nodecache_ready(node))
        return 0;
    if (!s->include_unschedulable && pw_nodecache_cordoned(node))
        return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->nodes = pw_xrealloc(c->nodes, c->cap * sizeof *c->nodes);
    }
    struct tnode *n = &c->nodes[c->n++];
    memset(n, 0, sizeof *n);
    n->name = pw_nodekey_make(c->cluster, name);
    n->cl = c->cl;
    n->imgs = pw_xcalloc(s->n_images, sizeof *n->imgs);
    const json_t *images = json_object_get(json_object_get(node, "status"), "images");
    bool if_not_present = strcmp(s->pull_policy, "IfNotPresent") == 0;
    /* what the node's agent reports it holds counts too (beyond the kubelet's 50-image status) */
    json_t *inv = if_not_present && c->agent ? pw_executor_inventory(c->agent, name) : NULL;
    for (size_t i = 0; i < s->n_images; i++) {
        if (if_not_present &&
            (pw_imageref_present(&s->refs[i], images) || (inv && pw_imageref_present(&s->refs[i], inv)))) {
            n->imgs[i].state = PW_NODE_SKIPPED;
            n->imgs[i].reason = pw_xstrdup("AlreadyPresent");
        } else {
            n->imgs[i].state = PW_NODE_PENDING;
        }
    }
    json_decref(inv);
    return 0;
}

/* Names in nodeNames that no node has are not an error, but the task says so (t->note, shown as its
 * message while it runs and appended to its final message). */
static bool in_any(const struct pw_nodeselect_src *src, size_t n_src, const char *name)
{
    for (size_t k = 0; k < n_src; k++) {
        json_t *node = src[k].nodes ? pw_nodecache_get(src[k].nodes, name) : NULL;
        if (node) {
            json_decref(node);
            return true;
        }
    }
    return false;
}

static void note_unknown_names(const struct pw_nodeselect_src *src, size_t n_src, struct task *t)
{
    if (!t->spec.has_node_names)
        return;
    pw_buf names;
    pw_buf_init(&names, 0);
    size_t missing = 0;
    for (size_t i = 0; i < t->spec.n_node_names; i++) {
        if (in_any(src, n_src, t->spec.node_names[i]))
            continue;
        if (missing < 10)
            pw_buf_printf(&names, "%s%s", missing ? ", " : "", t->spec.node_names[i]);
        missing++;
    }
    if (missing) {
        if (missing > 10)
            pw_buf_printf(&names, " and %zu more", missing - 10);
        char *list = pw_buf_steal(&names);
        free(t->note);
        t->note = pw_xasprintf("%zu of the %zu requested nodeNames do not exist: %s", missing, t->spec.n_node_names,
                               list);
        free(list);
        free(t->message);
        t->message = pw_xstrdup(t->note);
    } else {
        pw_buf_fini(&names);
    }
}

void pw_nodeselect_task(struct task *t, pw_nodecache *nodes, pw_executor *agent)
{
    struct pw_nodeselect_src src = {.cluster = PW_CLUSTER_DEFAULT, .nodes = nodes, .agent = agent};
    pw_nodeselect_clusters(t, &src, 1);
}

void pw_nodeselect_clusters(struct task *t, const struct pw_nodeselect_src *src, size_t n_src)
{
    struct select_ctx c = {.t = t};
    t->selected = true;
    t->dirty = true;
    memset(&t->counts, 0, sizeof t->counts);
    if (t->spec.label_selector && !t->spec.selector) {
        /* fail closed: a selector the engine does not hold in parsed form selects nothing (never
         * every node) */
        t->status = PW_TASK_FAILED;
        t->finished_ms = pw_clock_real_ms();
        free(t->message);
        t->message = pw_xasprintf("labelSelector %s: not parsed; no node was selected", t->spec.label_selector);
        PW_ERROR("task %s failed: %s", t->id, t->message);
        return;
    }
    for (size_t k = 0; k < n_src; k++) {
        size_t idx = pw_taskrec_cluster(t, src[k].cluster);
        if (!src[k].nodes) {
            pw_taskrec_set_str(&t->cl[idx].failed, src[k].failed ? src[k].failed : "the cluster cannot be read");
            continue;
        }
        c.agent = src[k].agent;
        c.cluster = src[k].cluster;
        c.cl = (unsigned char)idx;
        pw_nodecache_each(src[k].nodes, select_one, &c);
    }
    if (c.n)
        qsort(c.nodes, c.n, sizeof *c.nodes, pw_taskrec_node_cmp);
    t->nodes = c.nodes;
    t->n_nodes = c.n;
    memset(&t->counts, 0, sizeof t->counts);
    t->counts.total = c.n;
    t->counts.pending = c.n;
    for (size_t i = 0; i < t->n_cl; i++)
        memset(&t->cl[i].counts, 0, sizeof t->cl[i].counts);
    for (size_t i = 0; i < c.n; i++) {
        struct tnode *n = &t->nodes[i];
        t->cl[n->cl].counts.total++;
        t->cl[n->cl].counts.pending++;
        pw_taskrec_mark_dirty(t, n);
        if (pw_taskrec_work_count(t, n) == 0) {
            pw_taskrec_set_str(&n->reason, "AlreadyPresent");
            pw_taskrec_set_str(&n->message, "the node already holds every image");
            pw_taskrec_set_state(t, n, PW_NODE_SKIPPED);
        }
    }
    note_unknown_names(src, n_src, t);
    PW_INFO("task %s: %zu nodes selected, %zu already hold every image%s%s", t->id, c.n, t->counts.skipped,
            t->note ? "; " : "", t->note ? t->note : "");
}


/* ---- readiness over time ---- */

void pw_notready_set(struct pw_notready *nr, const char *name, bool ready, int64_t now)
{
    size_t i = 0;
    while (i < nr->n && strcmp(nr->v[i].name, name) != 0)
        i++;
    if (ready && i < nr->n) {
        free(nr->v[i].name);
        nr->v[i] = nr->v[--nr->n];
    } else if (!ready && i == nr->n) {
        nr->v = pw_xrealloc(nr->v, (nr->n + 1) * sizeof *nr->v);
        nr->v[nr->n++] = (struct pw_notready_node){pw_xstrdup(name), now};
    }
}

int64_t pw_notready_due(struct pw_notready *nr, int64_t now, int64_t grace_ms, void (*fn)(void *arg, const char *name),
                        void *arg)
{
    int64_t next = 0;
    for (size_t i = 0; i < nr->n; i++) {
        int64_t due = nr->v[i].since_mono + grace_ms;
        if (now >= due)
            fn(arg, nr->v[i].name);
        else if (!next || due < next)
            next = due;
    }
    return next;
}

void pw_notready_fini(struct pw_notready *nr)
{
    for (size_t i = 0; i < nr->n; i++)
        free(nr->v[i].name);
    free(nr->v);
    nr->v = NULL;
    nr->n = 0;
}
