/* engine.c: the task engine core. One loop thread owns all task state (under e->mu); informer
 * callbacks and the executor's threads only append events to a queue (under e->qmu, a separate lock,
 * so an informer holding its cache lock never waits for the engine). Each loop round: apply queued
 * events (nodes, executor reports), check NotReady grace periods, admit and select nodes for tasks,
 * plan dispatch with pw_sched_plan, finish tasks whose nodes are all done, and write every changed
 * task and node result through the store. What a round decides for the executor (executor.h: start
 * a node, stop one) is handed over only after that round's writes succeeded (while the store fails
 * it waits), so nothing in the cluster runs ahead of what a restart would find; then the executor
 * ticks. After a round the loop prunes finished tasks older than the history (retention).
 *
 * Memory: the node informer keeps trimmed objects only (see its transform); per task the engine
 * keeps one small record per selected node, sorted by name for binary search. Finished tasks live
 * only in the store. */
#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/agentexec.h"
#include "engine/executor.h"
#include "engine/imageref.h"
#include "engine/nodecache.h"
#include "engine/jobexec.h"
#include "engine/jobspec.h"
#include "engine/outcome.h"
#include "engine/sched.h"
#include "engine/taskrec.h"
#include "k8s/k8s.h"
#include "store/store.h"

enum ev_kind { EV_NODE, EV_REPORT, EV_WAKE };

struct event {
    enum ev_kind kind;
    enum pw_k8s_event type; /* EV_NODE */
    json_t *obj;            /* EV_NODE: the node (owned) */
    struct {                /* EV_REPORT: a copy of the executor's report (owned strings) */
        char task_id[16];
        char *node;
        enum pw_exec_verdict verdict;
        struct pw_image_status *images;
        size_t n_images;
        int attempts;
        char *reason, *message;
        bool cite_pending;
    } rep;
    struct event *next;
};

/* What a round decided for an executor, handed over after the round's store writes. */
enum intent_kind { INTENT_DISPATCH, INTENT_CANCEL };

struct intent {
    enum intent_kind kind;
    enum exec_kind exec;
    char task_id[16];
    char *node;
    bool failed; /* INTENT_CANCEL: the node failed */
    struct intent *next;
};

struct notready {
    char *name;
    int64_t since_mono;
};

struct pw_engine {
    struct pw_engine_config cfg; /* strings point at the copies below */
    char *namespace_, *instance;
    bool store_failing;       /* the last round's store write failed: intents wait (e->mu) */
    int64_t next_prune_mono;  /* loop thread only */

    pthread_mutex_t mu; /* task state */
    struct task **tasks; /* unfinished tasks */
    size_t n_tasks;
    uint64_t seq;
    struct notready *notready;
    size_t n_notready;


    pthread_mutex_t qmu; /* the event queue */
    pthread_cond_t qcond;
    struct event *q_head, *q_tail;
    bool stopping;

    struct intent *i_head, *i_tail; /* decided this round, released after the store write (e->mu) */

    pthread_t loop;
    bool started;
    pw_nodecache *nodes; /* NULL without a client, or before start */
    pw_executor *x[N_EXEC]; /* Job mode (NULL without a client), agent mode (NULL unless enabled) */
};

/* ---- the event queue ---- */

static void ev_push(pw_engine *e, struct event *ev)
{
    pthread_mutex_lock(&e->qmu);
    if (e->q_tail)
        e->q_tail->next = ev;
    else
        e->q_head = ev;
    e->q_tail = ev;
    pthread_cond_signal(&e->qcond);
    pthread_mutex_unlock(&e->qmu);
}

static void ev_free(struct event *ev)
{
    json_decref(ev->obj);
    free(ev->rep.node);
    free(ev->rep.images);
    free(ev->rep.reason);
    free(ev->rep.message);
    free(ev);
}

static void wake(pw_engine *e)
{
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = EV_WAKE;
    ev_push(e, ev);
}

static void push_obj(pw_engine *e, enum ev_kind kind, enum pw_k8s_event type, const json_t *obj)
{
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = kind;
    ev->type = type;
    ev->obj = json_deep_copy(obj);
    ev_push(e, ev);
}

static void on_node(void *arg, enum pw_k8s_event type, const json_t *obj, const json_t *old)
{
    pw_engine *e = arg;
    /* Only readiness changes and deletions matter to running work. */
    if (type == PW_K8S_MODIFIED && old && pw_nodecache_ready(obj) == pw_nodecache_ready(old))
        return;
    if (type == PW_K8S_ADDED && pw_nodecache_ready(obj))
        return;
    push_obj(e, EV_NODE, type, obj);
}

/* The executor's report hook (any of its threads): a copy goes into the queue. */
static void on_report(void *arg, const struct pw_exec_report *r)
{
    pw_engine *e = arg;
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = EV_REPORT;
    snprintf(ev->rep.task_id, sizeof ev->rep.task_id, "%s", r->task_id);
    ev->rep.node = pw_xstrdup(r->node);
    ev->rep.verdict = r->verdict;
    if (r->images && r->n_images) {
        ev->rep.images = pw_xcalloc(r->n_images, sizeof *ev->rep.images);
        memcpy(ev->rep.images, r->images, r->n_images * sizeof *ev->rep.images);
        ev->rep.n_images = r->n_images;
    }
    ev->rep.attempts = r->attempts;
    ev->rep.reason = r->reason ? pw_xstrdup(r->reason) : NULL;
    ev->rep.message = r->message ? pw_xstrdup(r->message) : NULL;
    ev->rep.cite_pending = r->cite_pending;
    ev_push(e, ev);
}

/* ---- intents for the executor ---- */

static void intent_add(pw_engine *e, enum intent_kind kind, enum exec_kind exec, const char *task_id,
                       const char *node, bool failed)
{
    if (!e->x[exec])
        return; /* no cluster: nothing to run */
    struct intent *in = pw_xcalloc(1, sizeof *in);
    in->kind = kind;
    in->exec = exec;
    snprintf(in->task_id, sizeof in->task_id, "%s", task_id);
    in->node = pw_xstrdup(node);
    in->failed = failed;
    if (e->i_tail)
        e->i_tail->next = in;
    else
        e->i_head = in;
    e->i_tail = in;
}

static void intents_free(pw_engine *e)
{
    while (e->i_head) {
        struct intent *in = e->i_head;
        e->i_head = in->next;
        free(in->node);
        free(in);
    }
    e->i_tail = NULL;
}

static void release_intents(pw_engine *e);

/* ---- task records ---- */

static struct task *task_find(pw_engine *e, const char *id)
{
    for (size_t i = 0; i < e->n_tasks; i++)
        if (strcmp(e->tasks[i]->id, id) == 0)
            return e->tasks[i];
    return NULL;
}

/* Writes the task and its changed nodes through the store. Called with e->mu held. */
static int task_flush(pw_engine *e, struct task *t)
{
    int rc = 0;
    if (t->n_dirty) {
        struct pw_store_node *recs = pw_xcalloc(t->n_dirty, sizeof *recs);
        size_t k = 0;
        for (size_t d = 0; d < t->n_dirty; d++) {
            struct tnode *n = &t->nodes[t->dirty_idx[d]];
            recs[k].task_id = t->id;
            recs[k].node_name = n->name;
            recs[k].state = (char *)pw_node_state_names[n->state];
            recs[k].doc = pw_taskrec_node_json(t, n);
            k++;
        }
        rc = pw_store_nodes_put(e->cfg.store, recs, k);
        for (size_t i = 0; i < k; i++)
            json_decref(recs[i].doc);
        free(recs);
        if (rc == 0) {
            for (size_t d = 0; d < t->n_dirty; d++)
                t->nodes[t->dirty_idx[d]].dirty = false;
            t->n_dirty = 0;
        }
    }
    if (t->dirty) {
        struct pw_store_task rec;
        json_t *doc = pw_taskrec_task_json(t);
        pw_taskrec_store_record(t, &rec, doc);
        int rc2 = pw_store_task_put(e->cfg.store, &rec);
        json_decref(doc);
        if (rc2 == 0)
            t->dirty = false;
        else
            rc = rc2;
    }
    if (rc != 0)
        PW_ERROR("store write for task %s failed: %s (will retry)", t->id, pw_strerror(rc));
    return rc;
}

/* ---- node outcomes ---- */

/* Ends a running node: succeeded, or failed with reason/message (image: the image at fault or
 * NULL). Images not yet decided take the node's outcome. A running node's executor is told to stop
 * (after the round's store write). */
static void node_finish(pw_engine *e, struct task *t, struct tnode *n, enum pw_node_state s, const char *reason,
                        const char *message, const char *image)
{
    if (n->state != PW_NODE_RUNNING && n->state != PW_NODE_PENDING)
        return;
    bool was_running = n->state == PW_NODE_RUNNING;
    int64_t now = pw_clock_mono_ms();
    for (size_t i = 0; i < t->spec.n_images; i++) {
        struct img_res *r = &n->imgs[i];
        if (r->state != PW_NODE_RUNNING && r->state != PW_NODE_PENDING)
            continue;
        if (s == PW_NODE_SUCCEEDED) {
            r->state = PW_NODE_SUCCEEDED;
            r->duration_s = (float)(now - n->started_mono) / 1000.0f;
            if (!r->attempts)
                r->attempts = 1;
        } else if (s == PW_NODE_CANCELLED) {
            r->state = PW_NODE_CANCELLED;
        } else {
            r->state = PW_NODE_FAILED;
            if (!r->reason) {
                pw_taskrec_set_str(&r->reason, reason);
                pw_taskrec_set_str(&r->message, message);
            }
        }
    }
    pw_taskrec_set_str(&n->reason, reason);
    pw_taskrec_set_str(&n->message, message);
    n->finished_ms = pw_clock_real_ms();
    pw_taskrec_set_state(t, n, s);
    if (s == PW_NODE_FAILED) {
        pw_outcome_add_failure_hint(&t->reasons, reason, pw_taskrec_hint(pw_taskrec_failure_class(t, n, image)), n->name, image,
                                    message);
        if (json_array_size(t->failed) < PW_TASKREC_MAX_FAILED) {
            json_t *f = json_object();
            json_object_set_new(f, "nodeName", json_string(n->name));
            json_object_set_new(f, "image", json_string(image ? image : ""));
            json_object_set_new(f, "reason", json_string(reason ? reason : ""));
            json_object_set_new(f, "message", json_string(message ? message : ""));
            pw_taskrec_time_json(f, "time", n->finished_ms);
            json_array_append_new(t->failed, f);
        }
    }
    if (was_running && n->exec)
        intent_add(e, INTENT_CANCEL, n->exec - 1, t->id, n->name, s == PW_NODE_FAILED);
}

/* Applies one image's verdict; returns true when the node must fail now (*fail_img set). */
static bool image_update(const struct task *t, struct img_res *r, const struct pw_image_status *st,
                         int64_t started_mono)
{
    if (r->state != PW_NODE_RUNNING)
        return false;
    bool pull_error = strcmp(st->reason, "ErrImagePull") == 0;
    if (pull_error && !r->in_pull_error && r->attempts < 255)
        r->attempts++;
    r->in_pull_error = pull_error;
    switch (st->cls) {
    case PW_PULL_WAITING:
        return false;
    case PW_PULL_PRESENT:
        /* found at the pull (the selection had not known): done, nothing pulled. Its state stays
         * succeeded so the work's image list (what was not skipped at selection) keeps its order */
        r->state = PW_NODE_SUCCEEDED;
        pw_taskrec_set_str(&r->reason, "AlreadyPresent");
        pw_taskrec_set_str(&r->message, st->message[0] ? st->message : "the node already held the image");
        return false;
    case PW_PULL_DONE:
        r->state = PW_NODE_SUCCEEDED;
        r->attempts++;
        r->duration_s = (float)(pw_clock_mono_ms() - started_mono) / 1000.0f;
        free(r->reason);
        r->reason = NULL;
        return false;
    case PW_PULL_FAILED_RETRYABLE:
        /* keep the most specific cause seen: a later "Back-off pulling image" says no more than an
         * earlier not-found or unauthorized */
        if (r->cls == PW_PULL_FAILED_NOTFOUND || r->cls == PW_PULL_FAILED_AUTH) {
            if (!st->final)
                return false;
        } else {
            r->cls = PW_PULL_FAILED_RETRYABLE;
            pw_taskrec_set_str(&r->reason, st->reason);
            pw_taskrec_set_str(&r->message, st->message);
        }
        if (!st->final)
            return false;
        if (!r->attempts)
            r->attempts = 1;
        r->state = PW_NODE_FAILED; /* the executor spent its own retries */
        return true;
    case PW_PULL_FAILED_NOTFOUND:
    case PW_PULL_FAILED_AUTH: {
        r->cls = (unsigned char)st->cls;
        pw_taskrec_set_str(&r->reason, st->reason);
        pw_taskrec_set_str(&r->message, st->message);
        int limit = t->spec.retries > 0 ? t->spec.retries : 1;
        if (r->attempts >= limit || st->final) {
            r->state = PW_NODE_FAILED;
            return true;
        }
        return false;
    }
    case PW_PULL_FAILED_PERMANENT:
        r->cls = PW_PULL_FAILED_PERMANENT;
        pw_taskrec_set_str(&r->reason, st->reason);
        pw_taskrec_set_str(&r->message, st->message);
        if (!r->attempts)
            r->attempts = 1;
        r->state = PW_NODE_FAILED;
        return true;
    }
    return false;
}

/* Applies a report's per-image statuses (in the work's order) to running node n. */
static void apply_images(pw_engine *e, struct task *t, struct tnode *n, const struct pw_image_status *st, size_t nj)
{
    if (nj != pw_taskrec_work_count(t, n))
        return; /* not this node's work (a report from before a change of the task's images) */
    size_t failed_at = t->spec.n_images;
    bool all_done = true;
    for (size_t j = 0; j < nj; j++) {
        size_t i = pw_taskrec_work_index(t, n, j);
        struct img_res *r = &n->imgs[i];
        unsigned char before_state = r->state, before_att = r->attempts;
        if (image_update(t, r, &st[j], n->started_mono) && failed_at == t->spec.n_images)
            failed_at = i;
        if (r->state != before_state || r->attempts != before_att)
            pw_taskrec_mark_dirty(t, n);
        if (r->state != PW_NODE_SUCCEEDED)
            all_done = false;
    }
    if (failed_at < t->spec.n_images) {
        const struct img_res *r = &n->imgs[failed_at];
        /* the other images' pulls end with the node */
        for (size_t i = 0; i < t->spec.n_images; i++)
            if (n->imgs[i].state == PW_NODE_RUNNING) {
                n->imgs[i].state = PW_NODE_CANCELLED;
                pw_taskrec_set_str(&n->imgs[i].message, "not finished: the node failed on another image");
            }
        node_finish(e, t, n, PW_NODE_FAILED, r->reason, r->message, t->spec.images[failed_at]);
    } else if (all_done) {
        node_finish(e, t, n, PW_NODE_SUCCEEDED, NULL, NULL, NULL);
    }
}

/* Fails running node n as a whole with the executor's reason and base message, adding (cite) the
 * last pull error of an image still undecided, or else the images not pulled yet. */
static void fail_citing(pw_engine *e, struct task *t, struct tnode *n, const char *reason, const char *base,
                        bool cite)
{
    const char *img = NULL;
    char *full = NULL, *pending = NULL;
    for (size_t i = 0; cite && i < t->spec.n_images && !img; i++)
        if (n->imgs[i].state == PW_NODE_RUNNING && n->imgs[i].reason) {
            img = t->spec.images[i];
            full = pw_xasprintf("%s; last pull error: %s: %s", base, n->imgs[i].reason,
                                n->imgs[i].message ? n->imgs[i].message : "");
        }
    if (cite && !img) {
        /* no pull error seen (e.g. DeadlineExceeded during a slow pull): name the images not done */
        pw_buf b;
        pw_buf_init(&b, 0);
        size_t k = 0;
        for (size_t i = 0; i < t->spec.n_images; i++)
            if (n->imgs[i].state == PW_NODE_RUNNING)
                pw_buf_printf(&b, "%s%s", k++ ? ", " : "", t->spec.images[i]);
        if (k) {
            pending = pw_buf_steal(&b);
            img = pending;
            full = pw_xasprintf("%s; not pulled yet: %s", base, pending);
        } else {
            pw_buf_fini(&b);
        }
    }
    node_finish(e, t, n, PW_NODE_FAILED, reason, full ? full : base, img);
    free(full);
    free(pending);
}

/* One executor report; ignored unless its node is running. */
static void handle_report(pw_engine *e, const struct event *ev)
{
    struct task *t = task_find(e, ev->rep.task_id);
    struct tnode *n = t ? pw_taskrec_node_find(t, ev->rep.node) : NULL;
    if (!n || n->state != PW_NODE_RUNNING)
        return;
    if (ev->rep.images)
        apply_images(e, t, n, ev->rep.images, ev->rep.n_images);
    if (n->state != PW_NODE_RUNNING)
        return;
    if (ev->rep.attempts > n->attempts) {
        n->attempts = ev->rep.attempts;
        pw_taskrec_mark_dirty(t, n);
    }
    if (ev->rep.verdict == PW_EXEC_SUCCEEDED)
        node_finish(e, t, n, PW_NODE_SUCCEEDED, NULL, NULL, NULL);
    else if (ev->rep.verdict == PW_EXEC_FAILED)
        fail_citing(e, t, n, ev->rep.reason ? ev->rep.reason : "Failed",
                    ev->rep.message ? ev->rep.message : "the node failed", ev->rep.cite_pending);
}

/* ---- node readiness, deletion ---- */

static size_t notready_find(pw_engine *e, const char *name)
{
    for (size_t i = 0; i < e->n_notready; i++)
        if (strcmp(e->notready[i].name, name) == 0)
            return i;
    return e->n_notready;
}

static void notready_remove(pw_engine *e, size_t i)
{
    free(e->notready[i].name);
    e->notready[i] = e->notready[--e->n_notready];
}

/* Fails the running (and pending) records of node name in every task. */
static void node_lost(pw_engine *e, const char *name, const char *reason, const char *message, bool pending_too)
{
    for (size_t k = 0; k < e->n_tasks; k++) {
        struct task *t = e->tasks[k];
        if (reason && strcmp(reason, "NodeNotReady") == 0 && t->spec.include_not_ready)
            continue;
        struct tnode *n = pw_taskrec_node_find(t, name);
        if (n && (n->state == PW_NODE_RUNNING || (pending_too && n->state == PW_NODE_PENDING)))
            node_finish(e, t, n, PW_NODE_FAILED, reason, message, NULL);
    }
}

static void handle_node(pw_engine *e, enum pw_k8s_event type, const json_t *node)
{
    const char *name = pw_k8s_name(node);
    if (!name)
        return;
    size_t i = notready_find(e, name);
    if (type == PW_K8S_DELETED) {
        if (i < e->n_notready)
            notready_remove(e, i);
        node_lost(e, name, "NodeDeleted", "the node was deleted from the cluster during the task", true);
        return;
    }
    bool ready = pw_nodecache_ready(node);
    if (ready && i < e->n_notready) {
        notready_remove(e, i);
    } else if (!ready && i == e->n_notready) {
        e->notready = pw_xrealloc(e->notready, (e->n_notready + 1) * sizeof *e->notready);
        e->notready[e->n_notready].name = pw_xstrdup(name);
        e->notready[e->n_notready].since_mono = pw_clock_mono_ms();
        e->n_notready++;
    }
}

/* Returns the earliest time a NotReady node's grace ends (0: none). */
static int64_t check_notready(pw_engine *e, int64_t now)
{
    int64_t next = 0;
    for (size_t i = 0; i < e->n_notready; i++) {
        int64_t due = e->notready[i].since_mono + e->cfg.not_ready_grace_ms;
        if (now >= due) {
            char *msg = pw_xasprintf("the node was NotReady for longer than the grace period (%llds)",
                                     (long long)(e->cfg.not_ready_grace_ms / 1000));
            node_lost(e, e->notready[i].name, "NodeNotReady", msg, false);
            free(msg);
        } else if (!next || due < next) {
            next = due;
        }
    }
    return next;
}

/* ---- node selection ---- */

struct select_ctx {
    pw_engine *e;
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
    n->name = pw_xstrdup(name);
    n->imgs = pw_xcalloc(s->n_images, sizeof *n->imgs);
    const json_t *images = json_object_get(json_object_get(node, "status"), "images");
    bool if_not_present = strcmp(s->pull_policy, "IfNotPresent") == 0;
    /* what the node's agent reports it holds counts too (beyond the kubelet's 50-image status) */
    json_t *inv = if_not_present && c->e->x[EXEC_AGENT] ? pw_executor_inventory(c->e->x[EXEC_AGENT], name) : NULL;
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
static void note_unknown_names(pw_engine *e, struct task *t)
{
    if (!t->spec.has_node_names || !e->nodes)
        return;
    pw_buf names;
    pw_buf_init(&names, 0);
    size_t missing = 0;
    for (size_t i = 0; i < t->spec.n_node_names; i++) {
        json_t *node = pw_nodecache_get(e->nodes, t->spec.node_names[i]);
        if (node) {
            json_decref(node);
            continue;
        }
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

/* Picks the task's nodes from the node cache. Nodes with every image present are skipped at once. */
static void task_select(pw_engine *e, struct task *t)
{
    struct select_ctx c = {.e = e, .t = t};
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
    if (e->nodes)
        pw_nodecache_each(e->nodes, select_one, &c);
    if (c.n)
        qsort(c.nodes, c.n, sizeof *c.nodes, pw_taskrec_node_cmp);
    t->nodes = c.nodes;
    t->n_nodes = c.n;
    memset(&t->counts, 0, sizeof t->counts);
    t->counts.total = c.n;
    t->counts.pending = c.n;
    for (size_t i = 0; i < c.n; i++) {
        struct tnode *n = &t->nodes[i];
        pw_taskrec_mark_dirty(t, n);
        if (pw_taskrec_work_count(t, n) == 0) {
            pw_taskrec_set_str(&n->reason, "AlreadyPresent");
            pw_taskrec_set_str(&n->message, "the node already holds every image");
            pw_taskrec_set_state(t, n, PW_NODE_SKIPPED);
        }
    }
    note_unknown_names(e, t);
    PW_INFO("task %s: %zu nodes selected, %zu already hold every image%s%s", t->id, c.n, t->counts.skipped,
            t->note ? "; " : "", t->note ? t->note : "");
}

/* ---- dispatch ---- */

static void dispatch_node(pw_engine *e, struct task *t, struct tnode *n)
{
    n->started_ms = pw_clock_real_ms();
    n->started_mono = pw_clock_mono_ms();
    n->attempts = 1;
    json_t *cached = e->nodes ? pw_nodecache_get(e->nodes, n->name) : NULL;
    if (!cached) {
        node_finish(e, t, n, PW_NODE_FAILED, "NodeDeleted", "the node left the cluster before its turn", NULL);
        return;
    }
    json_decref(cached);
    /* the executor: the task's mode, and for auto the node's agent when it is healthy */
    bool agent_ok = e->x[EXEC_AGENT] && pw_executor_healthy(e->x[EXEC_AGENT], n->name);
    const char *mode = t->spec.mode ? t->spec.mode : "auto";
    enum exec_kind k = strcmp(mode, "agent") == 0 || (strcmp(mode, "auto") == 0 && agent_ok) ? EXEC_AGENT : EXEC_JOB;
    if (k == EXEC_AGENT && !agent_ok) {
        node_finish(e, t, n, PW_NODE_FAILED, "AgentUnavailable",
                    e->x[EXEC_AGENT] ? "the node has no connected, healthy prewarm-agent (mode agent)"
                                     : "agent mode is off in prewarmd (--agents): mode agent cannot run",
                    NULL);
        return;
    }
    n->exec = (unsigned char)(k + 1);
    for (size_t i = 0; i < t->spec.n_images; i++)
        if (n->imgs[i].state == PW_NODE_PENDING)
            n->imgs[i].state = PW_NODE_RUNNING;
    pw_taskrec_set_state(t, n, PW_NODE_RUNNING);
    intent_add(e, INTENT_DISPATCH, k, t->id, n->name, false);
}

/* The executor's work for running node n of t (pointers borrowed from t; free *images_out). */
static void work_of(const struct task *t, const struct tnode *n, struct pw_exec_work *w, const char ***images_out)
{
    size_t nj = pw_taskrec_work_count(t, n);
    const char **imgs = pw_xcalloc(nj ? nj : 1, sizeof *imgs);
    for (size_t j = 0; j < nj; j++)
        imgs[j] = t->spec.images[pw_taskrec_work_index(t, n, j)];
    *w = (struct pw_exec_work){
        .task_id = t->id,
        .node = n->name,
        .images = imgs,
        .n_images = nj,
        .pull_policy = t->spec.pull_policy,
        .pull_secrets = (const char *const *)t->spec.pull_secrets,
        .n_pull_secrets = t->spec.n_pull_secrets,
        .retries = t->spec.retries,
        .timeout_s = t->spec.timeout_s,
        .started_ms = n->started_ms,
    };
    *images_out = imgs;
}

/* Hands the round's intents to the executor: held while the store fails, since what they do must
 * not run ahead of what is durable (a Job is never deleted before the store says its node
 * finished, so a crash in between cannot make a resumed task create a second one). A dispatch
 * whose node no longer runs is dropped. Under e->mu. */
static void release_intents(pw_engine *e)
{
    if (e->store_failing)
        return;
    while (e->i_head) {
        struct intent *in = e->i_head;
        e->i_head = in->next;
        if (in->kind == INTENT_CANCEL) {
            pw_executor_cancel(e->x[in->exec], in->task_id, in->node, in->failed);
        } else {
            struct task *t = task_find(e, in->task_id);
            struct tnode *n = t ? pw_taskrec_node_find(t, in->node) : NULL;
            if (n && n->state == PW_NODE_RUNNING) {
                struct pw_exec_work w;
                const char **imgs;
                work_of(t, n, &w, &imgs);
                pw_executor_dispatch(e->x[in->exec], &w);
                free(imgs);
            }
        }
        free(in->node);
        free(in);
    }
    e->i_tail = NULL;
}

static void task_dispatch(pw_engine *e, struct task *t, size_t grant)
{
    while (grant > 0 && t->next_pending < t->n_nodes) {
        struct tnode *n = &t->nodes[t->next_pending++];
        if (n->state != PW_NODE_PENDING)
            continue;
        dispatch_node(e, t, n);
        grant--;
    }
}

/* Sets the task's final status and message when all its nodes are done. */
static bool task_maybe_finish(pw_engine *e, struct task *t)
{
    if (!t->selected || !pw_outcome_done(&t->counts) || pw_task_status_is_final(t->status))
        return pw_task_status_is_final(t->status);
    t->status = pw_outcome_status(&t->counts, t->spec.success_threshold);
    free(t->message);
    t->message = pw_outcome_message(&t->counts, t->status, t->spec.success_threshold, &t->reasons, e->namespace_);
    if (t->note) {
        char *m = pw_xasprintf("%s; %s", t->message, t->note);
        free(t->message);
        t->message = m;
    }
    t->finished_ms = pw_clock_real_ms();
    t->dirty = true;
    PW_INFO("task %s %s: %s", t->id, pw_task_status_names[t->status], t->message);
    return true;
}

static void schedule(pw_engine *e, int64_t *wake_at)
{
    if (!e->nodes || !pw_nodecache_synced(e->nodes))
        return; /* nothing starts before the node cache is complete */
    struct pw_sched_task *st = pw_xcalloc(e->n_tasks ? e->n_tasks : 1, sizeof *st);
    for (size_t i = 0; i < e->n_tasks; i++)
        st[i] = e->tasks[i]->sched;
    struct pw_sched_limits lim = {
        .max_in_flight = (size_t)e->cfg.max_nodes_in_flight,
        .max_running_tasks = (size_t)e->cfg.max_running_tasks,
        .batch_pause_ms = e->cfg.batch_pause_ms,
    };
    /* Round 0 may admit tasks, whose nodes are selected only then; round 1 gives them their grants. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < e->n_tasks; i++) {
            const struct task *t = e->tasks[i];
            st[i].pending = pw_task_status_is_final(t->status) ? 0 : t->counts.pending;
            st[i].in_flight = t->counts.running;
        }
        int64_t w = pw_sched_plan(st, e->n_tasks, &lim, pw_clock_mono_ms());
        if (w && (!*wake_at || w < *wake_at))
            *wake_at = w;
        bool admitted = false;
        for (size_t i = 0; i < e->n_tasks; i++) {
            struct task *t = e->tasks[i];
            if (pw_task_status_is_final(t->status))
                continue;
            if (st[i].admitted_now) {
                t->status = PW_TASK_RUNNING;
                t->started_ms = pw_clock_real_ms();
                task_select(e, t);
                admitted = true;
            } else {
                task_dispatch(e, t, st[i].grant);
            }
        }
        if (!admitted)
            break;
    }
    for (size_t i = 0; i < e->n_tasks; i++)
        e->tasks[i]->sched = st[i];
    free(st);
}

/* ---- the loop ---- */

static void ev_node(pw_engine *e, const struct event *ev)
{
    handle_node(e, ev->type, ev->obj);
}

static void ev_wake(pw_engine *e, const struct event *ev)
{
    (void)e;
    (void)ev;
}

/* What each event kind does, indexed by enum ev_kind. */
static void (*const event_handlers[])(pw_engine *e, const struct event *ev) = {
    [EV_NODE] = ev_node, [EV_REPORT] = handle_report, [EV_WAKE] = ev_wake,
};

/* One round under e->mu; returns when the loop should wake next (mono ms, 0: on events only).
 * dispatch false (stopping): apply events and write them, start nothing new. */
static int64_t loop_round(pw_engine *e, struct event *evs, bool dispatch)
{
    while (evs) {
        struct event *next = evs->next;
        event_handlers[evs->kind](e, evs);
        ev_free(evs);
        evs = next;
    }
    int64_t now = pw_clock_mono_ms();
    int64_t wake_at = check_notready(e, now);
    if (dispatch)
        schedule(e, &wake_at);
    size_t kept = 0;
    bool failing = false;
    for (size_t i = 0; i < e->n_tasks; i++) {
        struct task *t = e->tasks[i];
        bool done = task_maybe_finish(e, t);
        int rc = task_flush(e, t);
        failing |= rc != 0;
        if (done && rc == 0) {
            pw_taskrec_free(t);
            continue;
        }
        e->tasks[kept++] = t;
    }
    e->n_tasks = kept;
    if (failing != e->store_failing) {
        if (failing)
            PW_ERROR("the store is failing: Job creates and deletes wait until task state is written");
        else
            PW_INFO("the store writes again: releasing the waiting Job creates and deletes");
    }
    e->store_failing = failing;
    release_intents(e);
    for (int k = 0; k < N_EXEC && dispatch && !failing; k++)
        if (e->x[k])
            pw_executor_tick(e->x[k]); /* adoption and clean-up, once what they read is durable */
    return wake_at;
}

/* Retention: deletes finished tasks older than the history from the store, at most every
 * min(60 s, history/2). Loop thread, outside e->mu (finished tasks are no longer in memory). */
static void maybe_prune(pw_engine *e)
{
    int64_t now = pw_clock_mono_ms();
    if (e->cfg.history_ms <= 0 || now < e->next_prune_mono)
        return;
    int64_t every = e->cfg.history_ms / 2;
    every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
    e->next_prune_mono = now + every;
    size_t removed = 0;
    int rc = pw_store_prune(e->cfg.store, pw_clock_real_ms() - e->cfg.history_ms, &removed);
    if (rc != 0)
        PW_ERROR("pruning finished tasks older than %llds from the store failed: %s (will retry)",
                 (long long)(e->cfg.history_ms / 1000), pw_strerror(rc));
    else if (removed)
        PW_INFO("pruned %zu finished tasks older than %llds (--history)", removed,
                (long long)(e->cfg.history_ms / 1000));
}

static void *loop_main(void *arg)
{
    pw_engine *e = arg;
    int64_t wake_at = 0;
    maybe_prune(e); /* retention runs at start, then every min(60 s, history/2) */
    for (;;) {
        pthread_mutex_lock(&e->qmu);
        while (!e->q_head && !e->stopping) {
            int64_t now = pw_clock_mono_ms();
            /* wake at least every second: informer sync, store retries */
            int64_t until = wake_at && wake_at - now < 1000 ? wake_at : now + 1000;
            if (until <= now)
                break;
            struct timespec ts;
            pw_clock_deadline_ts(until - now, &ts);
            if (pthread_cond_timedwait(&e->qcond, &e->qmu, &ts) != 0)
                break;
        }
        bool stopping = e->stopping;
        struct event *evs = e->q_head;
        e->q_head = e->q_tail = NULL;
        pthread_mutex_unlock(&e->qmu);
        pthread_mutex_lock(&e->mu);
        wake_at = loop_round(e, evs, !stopping);
        pthread_mutex_unlock(&e->mu);
        if (stopping)
            return NULL;
        maybe_prune(e);
    }
}

/* Rebuilds one unfinished task from its record; NULL (logged) when it cannot. */
static struct task *task_reload(pw_engine *e, const struct pw_store_task *rec)
{
    struct task *t = pw_xcalloc(1, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", rec->id);
    struct pw_field_errors errs;
    if (pw_taskspec_from_task(rec->doc, &t->spec, &errs) != 0) {
        PW_ERROR("task %s cannot be resumed: its stored spec is invalid (%s: %s)", rec->id,
                 errs.n ? errs.e[0].field : "", errs.n ? errs.e[0].message : "");
        free(t);
        return NULL;
    }
    t->created_ms = rec->created_ms;
    t->status = PW_TASK_PENDING;
    t->failed = json_array();
    t->sched.priority = t->spec.priority;
    t->sched.batch_size = (size_t)t->spec.batch_size;
    t->sched.batch_strategy = strcmp(t->spec.strategy, "batch") == 0;
    if (pw_task_status_of(rec->status) == PW_TASK_RUNNING) {
        if (pw_taskrec_load_nodes(e->cfg.store, t) != 0) {
            PW_ERROR("task %s cannot be resumed: its node results cannot be read", rec->id);
            pw_taskrec_free(t);
            return NULL;
        }
        t->status = PW_TASK_RUNNING;
        t->started_ms = pw_taskrec_time_ms(json_object_get(rec->doc, "startedAt"));
        t->sched.running = true;
        json_t *failed = json_object_get(rec->doc, "failedNodes");
        if (json_is_array(failed))
            json_array_extend(t->failed, failed);
        /* a running task's message is its selection note (unknown nodeNames), if any */
        const char *note = pw_taskrec_str(rec->doc, "message");
        if (note) {
            t->note = pw_xstrdup(note);
            t->message = pw_xstrdup(note);
        }
        /* the running nodes go to the executor's start, which adopts or restarts their work */
    }
    return t;
}

/* Loads the store's unfinished tasks into memory (before the informers start, so their first
 * events find the resumed nodes). */
static void engine_resume(pw_engine *e)
{
    struct pw_store_task *items = NULL;
    size_t n = 0;
    int rc = pw_store_task_list_unfinished(e->cfg.store, &items, &n);
    if (rc != 0) {
        PW_ERROR("cannot list unfinished tasks to resume: %s", pw_strerror(rc));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct task *t = task_reload(e, &items[i]);
        if (!t)
            continue;
        t->sched.seq = ++e->seq;
        e->tasks = pw_xrealloc(e->tasks, (e->n_tasks + 1) * sizeof *e->tasks);
        e->tasks[e->n_tasks++] = t;
        PW_INFO("task %s resumed (%s, %zu nodes, %zu running)", t->id, pw_task_status_names[t->status], t->n_nodes, t->counts.running);
    }
    pw_store_tasks_free(items, n);
}

/* The executor's fate hook (from its tick, e->mu held by the loop): what the core knows of the
 * node of task_id the executor found work of. */
static enum pw_exec_fate exec_fate(void *arg, const char *task_id, const char *node)
{
    pw_engine *e = arg;
    struct task *t = task_find(e, task_id);
    if (t) {
        struct tnode *n = pw_taskrec_node_find(t, node);
        if (!n)
            return PW_EXEC_FATE_UNKNOWN;
        if (n->state == PW_NODE_RUNNING || n->state == PW_NODE_PENDING)
            return PW_EXEC_FATE_ACTIVE;
        return n->state == PW_NODE_FAILED ? PW_EXEC_FATE_FAILED : PW_EXEC_FATE_DONE;
    }
    struct pw_store_task rec;
    int rc = pw_store_task_get(e->cfg.store, task_id, &rec);
    if (rc == PW_ENOTFOUND)
        return PW_EXEC_FATE_UNKNOWN;
    if (rc != 0)
        return PW_EXEC_FATE_UNSURE; /* the store is down */
    bool final = pw_store_status_final(rec.status);
    pw_store_task_fini(&rec);
    return final ? PW_EXEC_FATE_FAILED : PW_EXEC_FATE_ACTIVE;
}

/* The works of the resumed tasks' running nodes (pointers borrowed from e's tasks; under e->mu).
 * Free with resume_works_free. */
static struct pw_exec_work *resume_works(pw_engine *e, enum exec_kind kind, size_t *n_out)
{
    size_t n = 0;
    for (size_t k = 0; k < e->n_tasks; k++)
        n += e->tasks[k]->counts.running;
    struct pw_exec_work *w = pw_xcalloc(n ? n : 1, sizeof *w);
    size_t m = 0;
    for (size_t k = 0; k < e->n_tasks; k++) {
        const struct task *t = e->tasks[k];
        for (size_t i = 0; i < t->n_nodes && m < n; i++) {
            if (t->nodes[i].state != PW_NODE_RUNNING || t->nodes[i].exec != kind + 1)
                continue;
            const char **imgs;
            work_of(t, &t->nodes[i], &w[m++], &imgs);
        }
    }
    *n_out = m;
    return w;
}

static void resume_works_free(struct pw_exec_work *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((void *)w[i].images);
    free(w);
}

/* ---- public ---- */

int pw_engine_new(const struct pw_engine_config *cfg, pw_engine **out)
{
    if (!cfg || !cfg->store)
        return PW_EINVAL;
    pw_engine *e = pw_xcalloc(1, sizeof *e);
    e->cfg = *cfg;
    e->namespace_ = pw_xstrdup(cfg->namespace_ ? cfg->namespace_ : PW_ENGINE_DEFAULT_NAMESPACE);
    e->instance = pw_xstrdup(cfg->instance && *cfg->instance ? cfg->instance : "default");
    e->cfg.namespace_ = e->namespace_;
    e->cfg.instance = e->instance;
    if (e->cfg.max_nodes_in_flight <= 0)
        e->cfg.max_nodes_in_flight = PW_ENGINE_DEFAULT_MAX_NODES_IN_FLIGHT;
    if (e->cfg.max_running_tasks <= 0)
        e->cfg.max_running_tasks = PW_ENGINE_DEFAULT_MAX_RUNNING_TASKS;
    if (cfg->client) {
        struct pw_jobexec_config jc = {
            .client = cfg->client,
            .namespace_ = e->namespace_,
            .instance = e->instance,
            .settings = cfg->job,
            .hooks = {.arg = e, .report = on_report, .fate = exec_fate},
        };
        int rc = pw_jobexec_new(&jc, &e->x[EXEC_JOB]);
        if (rc == 0 && cfg->agent.enabled) {
            struct pw_agentexec_config ac = {.settings = cfg->agent,
                                             .hooks = {.arg = e, .report = on_report},
                                             .client = cfg->client,
                                             .namespace_ = e->namespace_};
            rc = pw_agentexec_new(&ac, &e->x[EXEC_AGENT]);
        }
        if (rc != 0) {
            pw_executor_free(e->x[EXEC_JOB]);
            free(e->namespace_);
            free(e->instance);
            free(e);
            return rc;
        }
    }
    e->cfg.job = (struct pw_jobexec_settings){0}; /* the executors hold their own copies */
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->qmu, NULL);
    pthread_cond_init(&e->qcond, NULL);
    *out = e;
    return 0;
}

/* Drops what a failed start left in memory: resumed tasks, queued events and intents, and the
 * node cache, so the engine is as pw_engine_new made it (save an executor that cannot start
 * again, which is freed). */
static void start_undo(pw_engine *e)
{
    pw_nodecache_free(e->nodes);
    e->nodes = NULL;
    while (e->q_head) {
        struct event *ev = e->q_head;
        e->q_head = ev->next;
        ev_free(ev);
    }
    e->q_tail = NULL;
    intents_free(e);
    for (size_t i = 0; i < e->n_tasks; i++)
        pw_taskrec_free(e->tasks[i]);
    free(e->tasks);
    e->tasks = NULL;
    e->n_tasks = 0;
    e->seq = 0;
}

int pw_engine_start(pw_engine *e)
{
    if (e->started)
        return 0;
    pthread_mutex_lock(&e->mu);
    engine_resume(e);
    pthread_mutex_unlock(&e->mu);
    if (e->x[EXEC_JOB]) {
        int rc = pw_nodecache_start(e->cfg.client, on_node, e, &e->nodes);
        if (rc == 0) {
            /* the running nodes are the executor's before its informers start, so their first
             * events find them */
            pthread_mutex_lock(&e->mu);
            for (int k = 0; k < N_EXEC && rc == 0; k++) {
                if (!e->x[k])
                    continue;
                size_t n = 0;
                struct pw_exec_work *w = resume_works(e, (enum exec_kind)k, &n);
                rc = pw_executor_start(e->x[k], w, n);
                resume_works_free(w, n);
                if (rc != 0)
                    for (int j = 0; j < k; j++) { /* the started ones cannot start again: gone */
                        pw_executor_free(e->x[j]);
                        e->x[j] = NULL;
                    }
            }
            pthread_mutex_unlock(&e->mu);
        }
        if (rc != 0) {
            start_undo(e);
            return rc;
        }
    }
    if (pthread_create(&e->loop, NULL, loop_main, e) != 0) {
        PW_ERROR("cannot start the engine's loop thread");
        for (int k = 0; k < N_EXEC; k++) {
            pw_executor_free(e->x[k]);
            e->x[k] = NULL;
        }
        start_undo(e);
        return PW_ENOMEM;
    }
    e->started = true;
    return 0;
}

void pw_engine_free(pw_engine *e)
{
    if (!e)
        return;
    /* the loop first: it reads the node cache (schedule, dispatch), so the cache is freed only after
     * the join; the informer's callbacks may still push into the queue meanwhile, drained below */
    if (e->started) {
        pthread_mutex_lock(&e->qmu);
        e->stopping = true;
        pthread_cond_signal(&e->qcond);
        pthread_mutex_unlock(&e->qmu);
        pthread_join(e->loop, NULL);
    }
    pw_nodecache_free(e->nodes);
    for (int k = 0; k < N_EXEC; k++)
        pw_executor_free(e->x[k]); /* after the loop, their caller; their reports still find the queue */
    intents_free(e);
    while (e->q_head) {
        struct event *ev = e->q_head;
        e->q_head = ev->next;
        ev_free(ev);
    }
    for (size_t i = 0; i < e->n_tasks; i++)
        pw_taskrec_free(e->tasks[i]);
    free(e->tasks);
    for (size_t i = 0; i < e->n_notready; i++)
        free(e->notready[i].name);
    free(e->notready);
    free(e->namespace_);
    free(e->instance);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->qmu);
    pthread_cond_destroy(&e->qcond);
    free(e);
}

pw_executor *pw_engine_agents(pw_engine *e)
{
    return e->x[EXEC_AGENT];
}

size_t pw_engine_intern_size(pw_engine *e)
{
    return e->nodes ? pw_nodecache_intern_size(e->nodes) : 0;
}

bool pw_engine_ready(pw_engine *e, const char **why)
{
    if (!e->cfg.client) {
        *why = "no Kubernetes client";
        return false;
    }
    if (!e->nodes || !pw_nodecache_synced(e->nodes)) {
        *why = "the node informer has not synced yet";
        return false;
    }
    return true;
}

int pw_engine_submit(pw_engine *e, struct pw_taskspec *spec, json_t **task_out)
{
    struct task *t = pw_xcalloc(1, sizeof *t);
    pw_task_id_new(t->id);
    t->spec = *spec;
    memset(spec, 0, sizeof *spec);
    t->status = PW_TASK_PENDING;
    t->created_ms = pw_clock_real_ms();
    t->failed = json_array();
    t->sched.priority = t->spec.priority;
    t->sched.batch_size = (size_t)t->spec.batch_size;
    t->sched.batch_strategy = strcmp(t->spec.strategy, "batch") == 0;
    json_t *doc = pw_taskrec_task_json(t);
    struct pw_store_task rec;
    pw_taskrec_store_record(t, &rec, doc);
    int rc = pw_store_task_put(e->cfg.store, &rec); /* committed before the 201 */
    if (rc != 0) {
        PW_ERROR("task %s not created: the store write failed: %s", t->id, pw_strerror(rc));
        json_decref(doc);
        pw_taskrec_free(t);
        return rc;
    }
    pthread_mutex_lock(&e->mu);
    t->sched.seq = ++e->seq;
    e->tasks = pw_xrealloc(e->tasks, (e->n_tasks + 1) * sizeof *e->tasks);
    e->tasks[e->n_tasks++] = t;
    pthread_mutex_unlock(&e->mu);
    PW_INFO("task %s created: %zu images, priority %d", t->id, t->spec.n_images, t->spec.priority);
    wake(e);
    *task_out = doc;
    return 0;
}

/* Cancels t (under e->mu): pending nodes and running ones become cancelled, running Jobs deleted. */
static void task_cancel(pw_engine *e, struct task *t)
{
    for (size_t i = 0; i < t->n_nodes; i++) {
        struct tnode *n = &t->nodes[i];
        if (n->state == PW_NODE_PENDING || n->state == PW_NODE_RUNNING) {
            bool running = n->state == PW_NODE_RUNNING;
            pw_taskrec_set_str(&n->reason, "Cancelled");
            pw_taskrec_set_str(&n->message, "the task was cancelled");
            for (size_t k = 0; k < t->spec.n_images; k++)
                if (n->imgs[k].state == PW_NODE_PENDING || n->imgs[k].state == PW_NODE_RUNNING)
                    n->imgs[k].state = PW_NODE_CANCELLED;
            n->finished_ms = pw_clock_real_ms();
            pw_taskrec_set_state(t, n, PW_NODE_CANCELLED);
            if (running && n->exec)
                intent_add(e, INTENT_CANCEL, n->exec - 1, t->id, n->name, false);
        }
    }
    t->status = PW_TASK_CANCELLED;
    t->finished_ms = pw_clock_real_ms();
    free(t->message);
    t->message = pw_outcome_message(&t->counts, PW_TASK_CANCELLED, t->spec.success_threshold, &t->reasons, e->namespace_);
    if (t->note) {
        char *m = pw_xasprintf("%s; %s", t->message, t->note);
        free(t->message);
        t->message = m;
    }
    t->dirty = true;
}

int pw_engine_cancel(pw_engine *e, const char *id, json_t **task_out)
{
    pthread_mutex_lock(&e->mu);
    struct task *t = task_find(e, id);
    int rc = 0;
    if (t && !pw_task_status_is_final(t->status)) {
        size_t running = t->counts.running, pending = t->counts.pending;
        task_cancel(e, t);
        rc = task_flush(e, t);
        if (rc == 0)
            release_intents(e);
        PW_INFO("task %s cancelled: %zu running nodes stopped (their Jobs deleted), %zu pending nodes dropped%s",
                t->id, running, pending, rc == 0 ? "" : " (the store write failed; it is retried)");
        if (rc == 0 && task_out)
            *task_out = pw_taskrec_task_json(t);
        pthread_mutex_unlock(&e->mu);
        wake(e);
        return rc;
    }
    if (t && t->status == PW_TASK_CANCELLED) {
        /* cancelled, but its write failed and has not been retried yet: a repeated cancel writes it */
        rc = task_flush(e, t);
        if (rc == 0)
            release_intents(e);
        if (rc == 0 && task_out)
            *task_out = pw_taskrec_task_json(t);
        pthread_mutex_unlock(&e->mu);
        return rc;
    }
    pthread_mutex_unlock(&e->mu);
    struct pw_store_task rec;
    rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    if (pw_task_status_of(rec.status) != PW_TASK_CANCELLED)
        rc = PW_ECONFLICT;
    else if (task_out)
        *task_out = json_incref(rec.doc);
    pw_store_task_fini(&rec);
    return rc;
}

int pw_engine_get_task(pw_engine *e, const char *id, json_t **out)
{
    struct pw_store_task rec;
    int rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    *out = json_incref(rec.doc);
    pw_store_task_fini(&rec);
    return 0;
}

static json_t *page_json(json_t *items, char *next)
{
    json_t *o = json_object();
    json_object_set_new(o, "items", items);
    if (next)
        json_object_set_new(o, "continue", json_string(next));
    free(next);
    return o;
}

int pw_engine_list_tasks(pw_engine *e, const char *status, size_t limit, const char *cont, json_t **out)
{
    struct pw_store_task *items;
    size_t n;
    char *next;
    int rc = pw_store_task_list(e->cfg.store, status, limit, cont, &items, &n, &next);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(arr, items[i].doc);
    pw_store_tasks_free(items, n);
    *out = page_json(arr, next);
    return 0;
}

int pw_engine_list_nodes(pw_engine *e, const char *id, const char *state, size_t limit, const char *cont,
                         json_t **out)
{
    struct pw_store_task rec;
    int rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    pw_store_task_fini(&rec);
    struct pw_store_node *items = NULL;
    size_t n = 0;
    char *next = NULL;
    rc = pw_store_nodes_list(e->cfg.store, id, state, limit, cont, &items, &n, &next);
    if (rc == PW_ENOTFOUND)
        rc = 0; /* a task with no node results yet (a back end may not know it) lists nothing */
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(arr, items[i].doc);
    pw_store_nodes_free(items, n);
    *out = page_json(arr, next);
    return 0;
}
