/* engine.c: the task engine core. One loop thread owns all task state (under e->mu); informer
 * callbacks and the executor's threads only append events to a queue (under e->qmu, a separate lock,
 * so an informer holding its cache lock never waits for the engine). Each loop round: apply queued
 * events (nodes, executor reports), check NotReady grace periods, admit and select nodes for tasks,
 * plan dispatch with pw_sched_plan, finish tasks whose nodes are all done; then, with e->mu released,
 * write every changed task and node result through the store (taskflush.h). What a round decides for
 * the executor (executor.h: start a node, stop one) is handed over only after that round's writes
 * succeeded (while the store fails it waits), so nothing in the cluster runs ahead of what a restart
 * would find; then the executors tick. After a round the loop prunes finished tasks older than the
 * history (retention). Beside it: node selection and readiness (nodeselect.h), what a report does
 * to a node (noderep.h), the rebuild after a restart (resume.h), the records (taskrec.h).
 *
 * Where a change becomes final (the hooks of an event stream go there): node_finish (a node's end:
 * succeeded or failed), task_cancel (a task and its unfinished nodes cancelled), task_end via
 * task_maybe_finish (a task's outcome), schedule() (a task admitted: running); each is durable
 * once the engine_flush after it returns without a failed write.
 *
 * Memory: the node informer keeps trimmed objects only (see its transform); per task the engine
 * keeps one small record per selected node, sorted by name for binary search. Finished tasks live
 * only in the store. */
#include "engine/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/executor.h"
#include "engine/nodecache.h"
#include "engine/nodekey.h"
#include "engine/nodeselect.h"
#include "engine/noderep.h"
#include "engine/outcome.h"
#include "engine/resume.h"
#include "engine/sched.h"
#include "engine/taskflush.h"
#include "engine/taskrec.h"
#include "k8s/k8s.h"
#include "store/store.h"

enum ev_kind { EV_NODE, EV_REPORT, EV_WAKE };

struct event {
    enum ev_kind kind;
    char *key;              /* EV_NODE: the cluster's name; EV_REPORT: the node's key (owned) */
    enum pw_k8s_event type; /* EV_NODE */
    json_t *obj;            /* EV_NODE: the node (owned) */
    struct pw_exec_report *rep; /* EV_REPORT: a copy of the executor's report (pw_noderep_copy) */
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

/* One cluster (docs/multicluster.md): its node cache and executors. Added under e->mu; removed by
 * pw_engine_cluster_remove, which frees it only under e->tmu (the loop's executor ticks). */
struct ecl {
    pw_engine *e;
    char *name;
    json_t *labels;
    pw_k8s_client *client;
    int max_in_flight;
    int64_t (*down_since)(void *arg);
    void *down_arg;
    bool lost;           /* its unfinished nodes were failed for this outage (e->mu) */
    bool started;
    bool first;          /* cl[0]: the node hook's, agent mode's and leader election's cluster */
    pw_nodecache *nodes; /* NULL before start */
    pw_executor *x[N_EXEC];
};

struct pw_engine {
    struct pw_engine_config cfg; /* strings point at the copies below */
    char *namespace_, *instance;
    bool store_failing;       /* the last round's store write failed: intents wait (e->mu) */
    int64_t next_prune_mono;  /* loop thread only */
    atomic_bool leading;      /* took over and has not stepped down (always true without may_lead);
                               * written by the loop thread only */
    int64_t next_pickup_mono; /* loop thread only: the next rescan of the store (may_lead) */
    atomic_bool pickup_now;   /* a local create: rescan at the next round */

    pthread_mutex_t wmu; /* store writes (engine_flush): one at a time; taken before e->mu */
    pthread_mutex_t mu;  /* task state; never held across a store call */
    struct task **tasks; /* unfinished tasks */
    size_t n_tasks;
    uint64_t seq;
    struct pw_notready notready; /* nodes NotReady now, since when */


    pthread_mutex_t qmu; /* the event queue */
    pthread_cond_t qcond;
    struct event *q_head, *q_tail;
    bool stopping;

    struct intent *i_head, *i_tail; /* decided this round, released after the store write (e->mu) */

    pthread_t loop;
    bool started;
    pw_engine_observer observer; /* set before start; NULL: none */
    void *observer_arg;
    pw_k8s_informer_fn node_hook; /* set before start; NULL: none (fed by the first cluster's nodes) */
    void *node_hook_arg;
    pw_nodecache_raw_fn node_raw; /* set before start; NULL: none (the first cluster's untrimmed nodes) */
    void *node_raw_arg;
    struct ecl **cl;     /* the clusters (e->mu); cl[0] is cfg.client's and is never removed */
    size_t n_cl;
    pthread_mutex_t tmu; /* held by the loop while executors tick, and by a removal while it frees */
    pw_nodecache *nodes; /* cl[0]'s */
    pw_executor **x;     /* cl[0]'s: Job mode, agent mode (NULL unless enabled) */
    struct pw_jobexec_settings job; /* cfg.job (the executors of each cluster copy it) */
    char *helper_image;
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
    free(ev->key);
    json_decref(ev->obj);
    pw_noderep_free(ev->rep);
    free(ev);
}

static void wake(pw_engine *e)
{
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = EV_WAKE;
    ev_push(e, ev);
}

static void on_node(void *arg, enum pw_k8s_event type, const json_t *obj, const json_t *old)
{
    struct ecl *c = arg;
    pw_engine *e = c->e;
    if (c->first && e->node_hook)
        e->node_hook(e->node_hook_arg, type, obj, old);
    /* Only readiness changes and deletions matter to running work. */
    if (type == PW_K8S_MODIFIED && old && pw_nodecache_ready(obj) == pw_nodecache_ready(old))
        return;
    if (type == PW_K8S_ADDED && pw_nodecache_ready(obj))
        return;
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = EV_NODE;
    ev->type = type;
    ev->obj = json_deep_copy(obj);
    ev->key = pw_xstrdup(c->name);
    ev_push(c->e, ev);
}

/* The executor's report hook (any of its threads): a copy goes into the queue. */
static void on_report(void *arg, const struct pw_exec_report *r)
{
    struct ecl *c = arg;
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = EV_REPORT;
    ev->rep = pw_noderep_copy(r);
    ev->key = pw_nodekey_make(c->name, r->node);
    ev_push(c->e, ev);
}

/* The cluster named name, or of node key key (either may be NULL), or NULL. Under e->mu. */
static struct ecl *cluster_find(pw_engine *e, const char *name, const char *key)
{
    for (size_t i = 0; i < e->n_cl; i++)
        if ((name && strcmp(e->cl[i]->name, name) == 0) || (key && pw_nodekey_in(key, e->cl[i]->name)))
            return e->cl[i];
    return NULL;
}

static int64_t cluster_down(const struct ecl *c)
{
    return c->down_since ? c->down_since(c->down_arg) : 0;
}

/* ---- intents for the executor ---- */

static void intent_add(pw_engine *e, enum intent_kind kind, enum exec_kind exec, const char *task_id,
                       const char *node, bool failed)
{
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
static void task_cancel(pw_engine *e, struct task *t);
static int cancel_by_request(pw_engine *e, const char *id);
static void lead_round(pw_engine *e);
static bool engine_may_act(pw_engine *e);

/* ---- task records ---- */

static struct task *task_find(pw_engine *e, const char *id)
{
    for (size_t i = 0; i < e->n_tasks; i++)
        if (strcmp(e->tasks[i]->id, id) == 0)
            return e->tasks[i];
    return NULL;
}

/* ---- store writes ----
 * A flush (taskflush.h) writes every change without holding e->mu: the snapshot and the intents
 * decided so far are taken under e->mu, written with it released, and under e->mu again what failed
 * is marked dirty once more; the intents go to the executors only when every write passed (else they
 * wait for the next flush). Flushes hold e->wmu from snapshot to finish, so they never overlap, and
 * tasks are freed only by a flush (reap), so a snapshot's task pointers stay valid while it writes. */

/* Under e->wmu and e->mu, after the write: the intents go to the executors when everything was
 * written (else back to the head of the queue, in order); reap: the finished tasks now fully
 * written leave memory. */
static void flush_finish(pw_engine *e, struct intent *intents, bool failing, bool reap)
{
    if (failing != e->store_failing) {
        if (failing)
            PW_ERROR("the store is failing: Job creates and deletes wait until task state is written");
        else
            PW_INFO("the store writes again: releasing the waiting Job creates and deletes");
    }
    e->store_failing = failing;
    if (intents) {
        struct intent *last = intents;
        while (last->next)
            last = last->next;
        last->next = e->i_head;
        e->i_head = intents;
        if (!e->i_tail)
            e->i_tail = last;
    }
    release_intents(e);
    if (!reap)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < e->n_tasks; i++) {
        struct task *t = e->tasks[i];
        if (pw_task_status_is_final(t->status) && !t->dirty && !t->n_dirty) {
            pw_taskrec_free(t);
            continue;
        }
        e->tasks[kept++] = t;
    }
    e->n_tasks = kept;
}

static void observe(pw_engine *e, enum pw_engine_change what, const char *task_id, const json_t *doc)
{
    if (e->observer)
        e->observer(e->observer_arg, what, task_id, doc);
}

/* Tells the observer what a flush wrote (under e->wmu, so in the order of the writes): per task, its
 * nodes that reached a final state, then the task, so an event never runs ahead of what GET shows. */
static void flush_observe(pw_engine *e, const struct pw_taskflush *f)
{
    if (!e->observer)
        return;
    for (size_t i = 0; i < f->n; i++) {
        const struct pw_taskflush_snap *sn = &f->v[i];
        if (sn->rc != 0)
            continue;
        for (size_t d = 0; d < sn->n_nodes; d++) {
            int st = pw_node_state_of(sn->nodes[d].state);
            if (st != PW_NODE_PENDING && st != PW_NODE_RUNNING)
                observe(e, PW_ENGINE_NODE_DONE, sn->id, sn->nodes[d].doc);
        }
        if (sn->rec.doc)
            observe(e, PW_ENGINE_TASK_CHANGED, sn->id, sn->rec.doc);
    }
}

/* Writes every change (e->mu not held; takes e->wmu, then e->mu). id (may be NULL): *rc gets the
 * result of that task's write (0 also when it had nothing to write) and *task_doc (may be NULL) the
 * document written, or NULL when its record did not need a write. Returns whether a write failed. */
static bool engine_flush(pw_engine *e, bool reap, const char *id, int *rc, json_t **task_doc)
{
    struct pw_taskflush f;
    pthread_mutex_lock(&e->wmu);
    pthread_mutex_lock(&e->mu);
    pw_taskflush_take(&f, e->tasks, e->n_tasks);
    struct intent *intents = e->i_head;
    e->i_head = e->i_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    pw_taskflush_write(&f, e->cfg.store);
    flush_observe(e, &f);
    pthread_mutex_lock(&e->mu);
    bool failing = pw_taskflush_restore(&f);
    flush_finish(e, intents, failing, reap);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&e->wmu);
    if (id) {
        int r = pw_taskflush_result(&f, id, task_doc);
        if (rc)
            *rc = r;
    }
    pw_taskflush_fini(&f);
    return failing;
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

/* One executor report; ignored unless its node is running. */
static void handle_report(pw_engine *e, const struct event *ev)
{
    struct task *t = task_find(e, ev->rep->task_id);
    struct tnode *n = t ? pw_taskrec_node_find(t, ev->key) : NULL;
    if (!n)
        return;
    struct pw_noderep_end end;
    pw_noderep_apply(t, n, ev->rep, &end);
    if (end.state != PW_NODE_RUNNING)
        node_finish(e, t, n, end.state, end.reason, end.message, end.image);
    pw_noderep_end_fini(&end);
}

/* ---- node readiness, deletion ---- */

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

static void handle_node(pw_engine *e, const char *cluster, enum pw_k8s_event type, const json_t *node)
{
    if (!pw_k8s_name(node) || !cluster_find(e, cluster, NULL))
        return;
    char *name = pw_nodekey_make(cluster, pw_k8s_name(node));
    if (type == PW_K8S_DELETED) {
        pw_notready_set(&e->notready, name, true, 0);
        node_lost(e, name, "NodeDeleted", "the node was deleted from the cluster during the task", true);
    } else {
        pw_notready_set(&e->notready, name, pw_nodecache_ready(node), pw_clock_mono_ms());
    }
    free(name);
}

/* Fails the unfinished nodes of cluster c in every task (reason, message), marking its share of
 * each task failed with message. Under e->mu. */
static void cluster_lost(pw_engine *e, const char *cluster, const char *reason, const char *message)
{
    for (size_t k = 0; k < e->n_tasks; k++) {
        struct task *t = e->tasks[k];
        size_t idx = 0;
        while (idx < t->n_cl && strcmp(t->cl[idx].name, cluster) != 0)
            idx++;
        if (idx == t->n_cl || pw_task_status_is_final(t->status))
            continue;
        if (!t->cl[idx].failed && t->cl[idx].counts.pending + t->cl[idx].counts.running == 0)
            continue; /* its share is done: nothing to fail */
        char *m = pw_xasprintf("%s: %s", reason, message);
        pw_taskrec_set_str(&t->cl[idx].failed, m);
        free(m);
        t->dirty = true;
        for (size_t i = 0; i < t->n_nodes; i++) {
            struct tnode *n = &t->nodes[i];
            if (n->cl == idx && (n->state == PW_NODE_PENDING || n->state == PW_NODE_RUNNING))
                node_finish(e, t, n, PW_NODE_FAILED, reason, message, NULL);
        }
        PW_WARN("task %s: cluster %s: %s", t->id, cluster, message);
    }
}

/* Clusters unreachable past the timeout fail their unfinished nodes once per outage; returns when
 * the next timeout ends (0: none). Under e->mu. */
static int64_t clusters_check(pw_engine *e, int64_t now)
{
    int64_t next = 0, limit = e->cfg.cluster_unreachable_timeout_ms;
    for (size_t i = 0; i < e->n_cl; i++) {
        struct ecl *c = e->cl[i];
        int64_t since = cluster_down(c);
        if (!since) {
            c->lost = false;
            continue;
        }
        if (c->lost)
            continue;
        if (now - since < limit) {
            if (!next || since + limit < next)
                next = since + limit;
            continue;
        }
        char *msg = pw_xasprintf("cluster %s was unreachable for longer than %llds (--cluster-unreachable-timeout)",
                                 c->name, (long long)(limit / 1000));
        cluster_lost(e, c->name, "ClusterUnreachable", msg);
        free(msg);
        c->lost = true;
    }
    return next;
}

static void grace_over(void *arg, const char *name)
{
    pw_engine *e = arg;
    char *msg = pw_xasprintf("the node was NotReady for longer than the grace period (%llds)",
                             (long long)(e->cfg.not_ready_grace_ms / 1000));
    node_lost(e, name, "NodeNotReady", msg, false);
    free(msg);
}

/* ---- dispatch ---- */

static void dispatch_node(pw_engine *e, struct task *t, struct tnode *n)
{
    n->started_ms = pw_clock_real_ms();
    n->started_mono = pw_clock_mono_ms();
    n->attempts = 1;
    struct ecl *c = cluster_find(e, NULL, n->name);
    if (!c || cluster_down(c)) {
        char *msg = pw_xasprintf(c ? "cluster %s was unreachable at the node's turn" : "cluster %s was removed",
                                 n->cl < t->n_cl ? t->cl[n->cl].name : "?");
        node_finish(e, t, n, PW_NODE_FAILED, c ? "ClusterUnreachable" : "ClusterRemoved", msg, NULL);
        free(msg);
        return;
    }
    const char *plain = pw_nodekey_node(n->name);
    json_t *cached = pw_nodecache_get(c->nodes, plain);
    if (!cached) {
        node_finish(e, t, n, PW_NODE_FAILED, "NodeDeleted", "the node left the cluster before its turn", NULL);
        return;
    }
    json_decref(cached);
    /* the executor: the task's mode, and for auto the node's agent when it is healthy */
    bool agent_ok = c->x[EXEC_AGENT] && pw_executor_healthy(c->x[EXEC_AGENT], plain);
    const char *mode = t->spec.mode ? t->spec.mode : "auto";
    enum exec_kind k = strcmp(mode, "agent") == 0 || (strcmp(mode, "auto") == 0 && agent_ok) ? EXEC_AGENT : EXEC_JOB;
    if (k == EXEC_AGENT && !agent_ok) {
        node_finish(e, t, n, PW_NODE_FAILED, "AgentUnavailable",
                    c->x[EXEC_AGENT] ? "the node has no connected, healthy prewarm-agent (mode agent)"
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
        struct ecl *c = cluster_find(e, NULL, in->node); /* NULL: removed; no executor: removed or after a step-down (may_lead) */
        if (!c || !c->x[in->exec]) {
        } else if (in->kind == INTENT_CANCEL) {
            pw_executor_cancel(c->x[in->exec], in->task_id, pw_nodekey_node(in->node), in->failed);
        } else {
            struct task *t = task_find(e, in->task_id);
            struct tnode *n = t ? pw_taskrec_node_find(t, in->node) : NULL;
            if (n && n->state == PW_NODE_RUNNING) {
                struct pw_exec_work w;
                const char **imgs;
                pw_resume_work_of(t, n, &w, &imgs);
                w.node = pw_nodekey_node(w.node);
                pw_executor_dispatch(c->x[in->exec], &w);
                free(imgs);
            }
        }
        free(in->node);
        free(in);
    }
    e->i_tail = NULL;
}

/* Dispatches up to grant pending nodes of t's cluster share cl. */
static void task_dispatch(pw_engine *e, struct task *t, size_t cl, size_t grant)
{
    size_t *next = &t->cl[cl].next_pending;
    while (grant > 0 && *next < t->n_nodes) {
        struct tnode *n = &t->nodes[(*next)++];
        if (n->state != PW_NODE_PENDING || n->cl != cl)
            continue;
        dispatch_node(e, t, n);
        grant--;
    }
}

/* ", clusters failed: a (why), b" for the task's message: the shares that failed as a whole or
 * missed the threshold; NULL when none did or the task spans the default cluster only. */
static char *failed_clusters(const struct task *t)
{
    if (t->n_cl == 0 || (t->n_cl == 1 && strcmp(t->cl[0].name, PW_CLUSTER_DEFAULT) == 0))
        return NULL;
    char *out = NULL;
    for (size_t i = 0; i < t->n_cl; i++) {
        const struct tcluster *c = &t->cl[i];
        bool bad = c->failed || (pw_outcome_done(&c->counts) &&
                                 pw_outcome_status(&c->counts, t->spec.success_threshold) == PW_TASK_FAILED);
        if (!bad)
            continue;
        char *m = pw_xasprintf("%s%s%s%s%s%s", out ? out : "", out ? ", " : "", c->name, c->failed ? " (" : "",
                               c->failed ? c->failed : "", c->failed ? ")" : "");
        free(out);
        out = m;
    }
    return out;
}

/* Sets the task's final status and message when all its nodes are done. */
/* The task's end: final status s, its message (with the selection note), the time. */
static void task_end(pw_engine *e, struct task *t, enum pw_task_status s)
{
    t->status = s;
    free(t->message);
    t->message = pw_outcome_message(&t->counts, s, t->spec.success_threshold, &t->reasons, e->namespace_);
    if (t->note) {
        char *m = pw_xasprintf("%s; %s", t->message, t->note);
        free(t->message);
        t->message = m;
    }
    char *fc = s == PW_TASK_CANCELLED ? NULL : failed_clusters(t);
    if (fc) {
        char *m = pw_xasprintf("%s; clusters failed: %s", t->message, fc);
        free(t->message);
        t->message = m;
        free(fc);
    }
    t->finished_ms = pw_clock_real_ms();
    t->dirty = true;
}

static bool task_maybe_finish(pw_engine *e, struct task *t)
{
    if (!t->selected || !pw_outcome_done(&t->counts) || pw_task_status_is_final(t->status))
        return pw_task_status_is_final(t->status);
    task_end(e, t, pw_outcome_status(&t->counts, t->spec.success_threshold));
    PW_INFO("task %s %s: %s", t->id, pw_task_status_names[t->status], t->message);
    return true;
}

/* Whether every cluster's node cache is complete (or the cluster is down: it fails at selection). */
static bool clusters_ready(pw_engine *e)
{
    for (size_t i = 0; i < e->n_cl; i++)
        if (!(e->cl[i]->nodes && pw_nodecache_synced(e->cl[i]->nodes)) && !cluster_down(e->cl[i]))
            return false;
    return true;
}

static bool task_wants(const struct task *t, const struct ecl *c)
{
    if (t->spec.clusters) {
        bool named = false;
        for (size_t i = 0; i < t->spec.n_clusters && !named; i++)
            named = strcmp(t->spec.clusters[i], c->name) == 0;
        if (!named)
            return false;
    }
    return !t->spec.cluster_sel || pw_labelsel_matches(t->spec.cluster_sel, c->labels);
}

/* Selects an admitted task's nodes in each cluster it spans. */
static void task_select(pw_engine *e, struct task *t)
{
    struct pw_nodeselect_src *src = pw_xcalloc(e->n_cl, sizeof *src);
    size_t n = 0;
    char **why = pw_xcalloc(e->n_cl, sizeof *why);
    for (size_t i = 0; i < e->n_cl; i++) {
        struct ecl *c = e->cl[i];
        if (!task_wants(t, c))
            continue;
        bool readable = c->nodes && pw_nodecache_synced(c->nodes);
        if (!readable)
            why[n] = pw_xasprintf("ClusterUnreachable: cluster %s was unreachable when the task started", c->name);
        src[n] = (struct pw_nodeselect_src){.cluster = c->name, .nodes = readable ? c->nodes : NULL,
                                            .agent = c->x[EXEC_AGENT], .failed = why[n]};
        n++;
    }
    pw_nodeselect_clusters(t, src, n);
    for (size_t i = 0; i < n; i++)
        free(why[i]);
    free(why);
    free(src);
}

/* Grants and dispatches per cluster: each cluster's running tasks (but those admitted in this
 * round) under its cap, each with its own batch window. */
static void schedule_clusters(pw_engine *e, const struct pw_sched_task *st, int64_t *wake_at)
{
    struct pw_sched_task *sc = pw_xcalloc(e->n_tasks ? e->n_tasks : 1, sizeof *sc);
    size_t *at = pw_xcalloc(e->n_tasks ? e->n_tasks : 1, sizeof *at);
    for (size_t k = 0; k < e->n_cl; k++) {
        const struct ecl *c = e->cl[k];
        size_t m = 0;
        for (size_t i = 0; i < e->n_tasks; i++) {
            struct task *t = e->tasks[i];
            if (pw_task_status_is_final(t->status) || !st[i].running || st[i].admitted_now || !t->selected)
                continue;
            size_t j = 0;
            while (j < t->n_cl && strcmp(t->cl[j].name, c->name) != 0)
                j++;
            if (j == t->n_cl)
                continue;
            sc[m] = t->cl[j].sched;
            sc[m].priority = st[i].priority;
            sc[m].seq = st[i].seq;
            sc[m].running = true;
            sc[m].pending = t->cl[j].counts.pending;
            sc[m].in_flight = t->cl[j].counts.running;
            at[m++] = i << 8 | j;
        }
        size_t cap = (size_t)e->cfg.max_nodes_in_flight;
        if (c->max_in_flight > 0 && (size_t)c->max_in_flight < cap)
            cap = (size_t)c->max_in_flight;
        struct pw_sched_limits lim = {.max_in_flight = cap, .batch_pause_ms = e->cfg.batch_pause_ms};
        int64_t w = pw_sched_plan(sc, m, &lim, pw_clock_mono_ms());
        if (w && (!*wake_at || w < *wake_at))
            *wake_at = w;
        for (size_t q = 0; q < m; q++) {
            struct task *t = e->tasks[at[q] >> 8];
            size_t j = at[q] & 0xff;
            t->cl[j].sched = sc[q];
            task_dispatch(e, t, j, sc[q].grant);
        }
    }
    free(at);
    free(sc);
}

static void schedule(pw_engine *e, int64_t *wake_at)
{
    if (!clusters_ready(e))
        return; /* nothing starts before the node caches are complete */
    struct pw_sched_task *st = pw_xcalloc(e->n_tasks ? e->n_tasks : 1, sizeof *st);
    for (size_t i = 0; i < e->n_tasks; i++) {
        st[i] = e->tasks[i]->sched;
        st[i].batch_size = 0; /* admission only here: the grants are per cluster */
        st[i].batch_strategy = false;
    }
    struct pw_sched_limits lim = {
        .max_running_tasks = (size_t)e->cfg.max_running_tasks,
    };
    /* Round 0 may admit tasks, whose nodes are selected only then; round 1 gives them their grants. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < e->n_tasks; i++) {
            const struct task *t = e->tasks[i];
            st[i].pending = pw_task_status_is_final(t->status) ? 0 : t->counts.pending;
            st[i].in_flight = t->counts.running;
        }
        pw_sched_plan(st, e->n_tasks, &lim, pw_clock_mono_ms());
        bool admitted = false;
        for (size_t i = 0; i < e->n_tasks; i++) {
            struct task *t = e->tasks[i];
            if (pw_task_status_is_final(t->status) || !st[i].admitted_now)
                continue;
            t->status = PW_TASK_RUNNING;
            t->started_ms = pw_clock_real_ms();
            task_select(e, t);
            admitted = true;
        }
        schedule_clusters(e, st, wake_at);
        if (!admitted)
            break;
        for (size_t i = 0; i < e->n_tasks; i++)
            st[i].admitted_now = false;
    }
    for (size_t i = 0; i < e->n_tasks; i++)
        e->tasks[i]->sched.running = st[i].running;
    free(st);
}

/* ---- the loop ---- */

static void ev_node(pw_engine *e, const struct event *ev)
{
    handle_node(e, ev->key, ev->type, ev->obj);
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
 * dispatch false (stopping): apply events, start nothing new. The loop writes the round's changes
 * after it (engine_flush). */
static int64_t loop_round(pw_engine *e, struct event *evs, bool dispatch)
{
    while (evs) {
        struct event *next = evs->next;
        event_handlers[evs->kind](e, evs);
        ev_free(evs);
        evs = next;
    }
    int64_t now = pw_clock_mono_ms();
    int64_t wake_at = pw_notready_due(&e->notready, now, e->cfg.not_ready_grace_ms, grace_over, e);
    int64_t down = clusters_check(e, now);
    if (down && (!wake_at || down < wake_at))
        wake_at = down;
    if (dispatch)
        schedule(e, &wake_at);
    for (size_t i = 0; i < e->n_tasks; i++)
        task_maybe_finish(e, e->tasks[i]);
    return wake_at;
}

/* Retention: deletes finished tasks older than the history from the store, at most every
 * min(60 s, history/2). Loop thread, outside e->mu (finished tasks are no longer in memory). */
static void maybe_prune(pw_engine *e)
{
    int64_t now = pw_clock_mono_ms();
    if (e->cfg.history_ms <= 0 || now < e->next_prune_mono || !atomic_load(&e->leading))
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
        pthread_mutex_unlock(&e->qmu);
        if (!stopping)
            lead_round(e); /* may_lead: take over, step down or rescan the store */
        pthread_mutex_lock(&e->qmu);
        struct event *evs = e->q_head;
        e->q_head = e->q_tail = NULL;
        pthread_mutex_unlock(&e->qmu);
        pthread_mutex_lock(&e->mu);
        wake_at = loop_round(e, evs, !stopping && atomic_load(&e->leading));
        pthread_mutex_unlock(&e->mu);
        /* fencing: a replica whose Lease lapsed during the round writes nothing (steps down next) */
        bool failing = engine_may_act(e) ? engine_flush(e, true, NULL, NULL, NULL) : true;
        if (stopping)
            return NULL;
        /* adoption and clean-up, once what they read is durable (outside e->mu: the fate hook
         * takes it, and may read the store); a removal waits for e->tmu before it frees a cluster */
        pthread_mutex_lock(&e->tmu);
        pthread_mutex_lock(&e->mu);
        size_t n_cl = e->n_cl;
        struct ecl **cl = pw_xmalloc(n_cl * sizeof *cl);
        memcpy(cl, e->cl, n_cl * sizeof *cl);
        pthread_mutex_unlock(&e->mu);
        for (size_t i = 0; i < n_cl && !failing; i++)
            for (int k = 0; k < N_EXEC; k++)
                if (cl[i]->started && cl[i]->x[k])
                    pw_executor_tick(cl[i]->x[k]);
        free(cl);
        pthread_mutex_unlock(&e->tmu);
        maybe_prune(e);
    }
}

/* Loads the store's unfinished tasks into memory (before the informers start, so their first
 * events find the resumed nodes). The store is read without e->mu. 0, or the store's error when the
 * list or a task's node results could not be read (some tasks may be in memory then); a task whose
 * stored spec is invalid is left out either way. */
static int engine_resume(pw_engine *e)
{
    struct pw_store_task *items = NULL;
    size_t n = 0;
    int rc = pw_store_task_list_unfinished(e->cfg.store, &items, &n);
    if (rc != 0) {
        PW_ERROR("cannot list unfinished tasks to resume: %s", pw_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct task *t = pw_resume_task(e->cfg.store, &items[i]);
        if (!t) { /* an invalid spec (left out), or the store failing now (reported) */
            struct pw_store_task probe;
            rc = pw_store_task_get(e->cfg.store, items[i].id, &probe);
            if (rc == 0)
                pw_store_task_fini(&probe);
            rc = rc == PW_ENOTFOUND ? 0 : rc;
            continue;
        }
        pthread_mutex_lock(&e->mu);
        t->sched.seq = ++e->seq;
        e->tasks = pw_xrealloc(e->tasks, (e->n_tasks + 1) * sizeof *e->tasks);
        e->tasks[e->n_tasks++] = t;
        pthread_mutex_unlock(&e->mu);
        PW_INFO("task %s resumed (%s, %zu nodes, %zu running)", t->id, pw_task_status_names[t->status], t->n_nodes, t->counts.running);
    }
    pw_store_tasks_free(items, n);
    return rc;
}

/* The executor's fate hook (from its tick, on the loop thread, e->mu not held): what the core knows
 * of the node of task_id the executor found work of. Takes e->mu for the tasks in memory, then
 * reads the store without it. */
static enum pw_exec_fate exec_fate(void *arg, const char *task_id, const char *node)
{
    struct ecl *c = arg;
    pw_engine *e = c->e;
    pthread_mutex_lock(&e->mu);
    struct task *t = task_find(e, task_id);
    enum pw_exec_fate fate = PW_EXEC_FATE_UNKNOWN;
    if (t) {
        char *key = pw_nodekey_make(c->name, node);
        struct tnode *n = pw_taskrec_node_find(t, key);
        free(key);
        if (n && (n->state == PW_NODE_RUNNING || n->state == PW_NODE_PENDING))
            fate = PW_EXEC_FATE_ACTIVE;
        else if (n)
            fate = n->state == PW_NODE_FAILED ? PW_EXEC_FATE_FAILED : PW_EXEC_FATE_DONE;
    }
    pthread_mutex_unlock(&e->mu);
    if (t)
        return fate;
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

/* ---- leadership (may_lead) ---- */

/* Whether this replica may write (store and Kubernetes) now: always without may_lead, else while it
 * leads and its Lease holds. */
static bool engine_may_act(pw_engine *e)
{
    return !e->cfg.may_lead || (atomic_load(&e->leading) && e->cfg.may_lead(e->cfg.may_lead_arg));
}

/* The executors' Kubernetes-write gate (arg: the executor's cluster). */
static bool engine_may_write(void *arg)
{
    return engine_may_act(((struct ecl *)arg)->e);
}

static bool cluster_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    bool ok = n >= 1 && n <= 63 && s[0] != '-' && s[n - 1] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
    return ok;
}

static void ecl_free(struct ecl *c)
{
    if (!c)
        return;
    pw_nodecache_free(c->nodes);
    for (int k = 0; k < N_EXEC; k++)
        pw_executor_free(c->x[k]);
    json_decref(c->labels);
    free(c->name);
    free(c);
}

/* Makes c's executors (not started): Job mode, agent mode only when agents (the first cluster). With
 * may_lead again at each takeover. 0, or the executor's PW_E* with none left. */
static int ecl_executors_new(pw_engine *e, struct ecl *c, bool agents)
{
    const struct pw_engine_config *cfg = &e->cfg;
    struct pw_exec_hooks hooks = {.arg = c, .report = on_report, .fate = exec_fate,
                                  .may_write = cfg->may_lead ? engine_may_write : NULL};
    int rc = 0;
    for (int k = 0; k < N_EXEC && rc == 0; k++) {
        if (k == EXEC_AGENT && !(agents && cfg->agent.enabled))
            continue;
        if (cfg->executor_new) {
            rc = cfg->executor_new(cfg->executor_arg, pw_taskrec_exec_names[k], &hooks, &c->x[k]);
        } else if (k == EXEC_JOB) {
            struct pw_jobexec_config jc = {.client = c->client, .namespace_ = e->namespace_,
                                           .instance = e->instance, .settings = e->job, .hooks = hooks};
            rc = pw_jobexec_new(&jc, &c->x[k]);
        } else {
            struct pw_agentexec_config ac = {.settings = cfg->agent, .hooks = {.arg = c, .report = on_report},
                                             .client = c->client, .namespace_ = e->namespace_};
            rc = pw_agentexec_new(&ac, &c->x[k]);
        }
    }
    if (rc != 0)
        for (int k = 0; k < N_EXEC; k++) {
            pw_executor_free(c->x[k]);
            c->x[k] = NULL;
        }
    return rc;
}

/* A cluster with its executors made (not started); agent mode only when agents (the first
 * cluster). 0 or the executor's PW_E*. */
static int ecl_new(pw_engine *e, const struct pw_engine_cluster *cc, bool agents, struct ecl **out)
{
    struct ecl *c = pw_xcalloc(1, sizeof *c);
    c->e = e;
    c->name = pw_xstrdup(cc->name);
    c->labels = cc->labels ? json_deep_copy(cc->labels) : json_object();
    c->client = cc->client;
    c->max_in_flight = cc->max_nodes_in_flight;
    c->down_since = cc->down_since;
    c->down_arg = cc->arg;
    int rc = ecl_executors_new(e, c, agents);
    if (rc != 0) {
        ecl_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Starts c's executors with its running nodes to adopt (under e->mu). On failure the executors are
 * freed (a started one cannot start again). */
static int ecl_executors_start(pw_engine *e, struct ecl *c)
{
    int rc = 0;
    for (int k = 0; k < N_EXEC && rc == 0; k++) {
        if (!c->x[k])
            continue;
        size_t n = 0, m = 0;
        struct pw_exec_work *w = pw_resume_works(e->tasks, e->n_tasks, (enum exec_kind)k, &n);
        for (size_t i = 0; i < n; i++) /* this cluster's, by their own names */
            if (pw_nodekey_in(w[i].node, c->name)) {
                struct pw_exec_work tmp = w[i];
                w[i] = w[m];
                w[m] = tmp;
                w[m++].node = pw_nodekey_node(tmp.node);
            }
        rc = pw_executor_start(c->x[k], w, m);
        pw_resume_works_free(w, n);
    }
    if (rc != 0)
        for (int k = 0; k < N_EXEC; k++) {
            pw_executor_free(c->x[k]);
            c->x[k] = NULL;
        }
    return rc;
}

/* Starts c's node informer, then (under e->mu, unless this replica follows: may_lead, the executors
 * start at the takeover) its executors with its running nodes to adopt. On failure c is as before
 * (no informer; an executor that cannot start again is freed). */
static int ecl_start(pw_engine *e, struct ecl *c)
{
    int rc = pw_nodecache_start(c->client, on_node, c, c->first ? e->node_raw : NULL, e->node_raw_arg, &c->nodes);
    if (rc != 0)
        return rc;
    /* the running nodes are the executor's before its informers start, so their first events find them */
    pthread_mutex_lock(&e->mu);
    if (!e->cfg.may_lead)
        rc = ecl_executors_start(e, c);
    if (rc == 0)
        c->started = true;
    pthread_mutex_unlock(&e->mu);
    if (rc != 0) {
        pw_nodecache_free(c->nodes);
        c->nodes = NULL;
    }
    return rc;
}

/* Makes the first cluster's executors again at a takeover (may_lead: one cluster only). On failure
 * none is left. */
static int executors_new(pw_engine *e)
{
    return ecl_executors_new(e, e->cl[0], true);
}

/* Starts the first cluster's executors with the running nodes of the tasks in memory to adopt
 * (under e->mu). On failure the executors are freed (a started one cannot start again). */
static int executors_start(pw_engine *e)
{
    return ecl_executors_start(e, e->cl[0]);
}

/* Drops every task, intent and queued report from memory (under e->wmu and e->mu: a flush's
 * snapshot never outlives them). */
static void drop_tasks(pw_engine *e)
{
    intents_free(e);
    for (size_t i = 0; i < e->n_tasks; i++)
        pw_taskrec_free(e->tasks[i]);
    free(e->tasks);
    e->tasks = NULL;
    e->n_tasks = 0;
    e->store_failing = false;
}

/* Loop thread: this replica no longer leads. Nothing more is dispatched or written; the Jobs stay for
 * the next leader to adopt. */
static void step_down(pw_engine *e, const char *why)
{
    atomic_store(&e->leading, false);
    pw_executor *x[N_EXEC];
    pthread_mutex_lock(&e->wmu);
    pthread_mutex_lock(&e->mu);
    size_t n = e->n_tasks;
    drop_tasks(e);
    for (int k = 0; k < N_EXEC; k++) {
        x[k] = e->x[k];
        e->x[k] = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&e->wmu);
    for (int k = 0; k < N_EXEC; k++)
        pw_executor_free(x[k]); /* its threads stop; queued creates and deletes are dropped */
    pthread_mutex_lock(&e->qmu);
    struct event **pp = &e->q_head; /* the old executors' reports: the next leader reads the Jobs anew */
    e->q_tail = NULL;
    while (*pp) {
        if ((*pp)->kind == EV_REPORT) {
            struct event *ev = *pp;
            *pp = ev->next;
            ev_free(ev);
        } else {
            e->q_tail = *pp;
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&e->qmu);
    PW_WARN("engine: following (%s): dispatch stopped, %zu unfinished tasks left in the store for the leader",
            why, n);
}

/* Loop thread: this replica leads now: a restart resume (every unfinished task from the store,
 * running nodes' Jobs adopted by new executors). On failure it stays a follower (tried next round). */
static void take_over(pw_engine *e)
{
    int rc = e->x[EXEC_JOB] ? 0 : executors_new(e);
    if (rc == 0) {
        int rrc = engine_resume(e); /* a task missed here would stay running, unowned, until the next takeover */
        pthread_mutex_lock(&e->wmu);
        pthread_mutex_lock(&e->mu);
        rc = rrc != 0 ? rrc : executors_start(e); /* not started: kept for the next try */
        if (rc != 0)
            drop_tasks(e);
        pthread_mutex_unlock(&e->mu);
        pthread_mutex_unlock(&e->wmu);
    }
    if (rc != 0) {
        PW_ERROR("engine: cannot take over as leader: %s (retrying)", pw_strerror(rc));
        return;
    }
    pthread_mutex_lock(&e->mu);
    size_t n = e->n_tasks, running = 0;
    for (size_t i = 0; i < n; i++)
        running += e->tasks[i]->counts.running;
    pthread_mutex_unlock(&e->mu);
    e->next_pickup_mono = pw_clock_mono_ms() + PW_ENGINE_PICKUP_MS;
    atomic_store(&e->leading, true);
    PW_INFO("engine: leading: %zu unfinished tasks resumed from the store, %zu running nodes' Jobs to adopt", n, running);
}

#define CANCEL_KIND "cancel-request" /* store records: a follower's cancel, keyed by task id */

/* Loop thread, leading: the tasks and cancels other replicas stored since the last scan. */
static void pickup(pw_engine *e)
{
    e->next_pickup_mono = pw_clock_mono_ms() + PW_ENGINE_PICKUP_MS;
    atomic_store(&e->pickup_now, false);
    struct pw_store_task *items = NULL;
    size_t n = 0;
    if (pw_store_task_list_unfinished(e->cfg.store, &items, &n) != 0)
        return; /* the store is down: the flush says so; the next scan retries */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&e->mu);
        bool known = task_find(e, items[i].id) != NULL;
        pthread_mutex_unlock(&e->mu);
        if (known)
            continue;
        if (pw_task_status_of(items[i].status) != PW_TASK_PENDING) {
            /* running but not in memory: only a leader writing after our takeover read the store (the
             * fencing above prevents it) could do that; the next takeover resumes it */
            PW_DEBUG("task %s is %s in the store but not in this leader's memory: left alone", items[i].id,
                     items[i].status);
            continue;
        }
        struct task *t = pw_resume_task(e->cfg.store, &items[i]);
        if (!t)
            continue;
        pthread_mutex_lock(&e->mu);
        if (!task_find(e, t->id)) {
            t->sched.seq = ++e->seq;
            e->tasks = pw_xrealloc(e->tasks, (e->n_tasks + 1) * sizeof *e->tasks);
            e->tasks[e->n_tasks++] = t;
            t = NULL;
        }
        pthread_mutex_unlock(&e->mu);
        if (t)
            pw_taskrec_free(t);
        else
            PW_INFO("task %s picked up from the store (created on another replica)", items[i].id);
    }
    pw_store_tasks_free(items, n);
    struct pw_store_rec *recs = NULL;
    char *next = NULL;
    int lrc = pw_store_rec_list(e->cfg.store, CANCEL_KIND, 0, NULL, &recs, &n, &next);
    free(next);
    if (lrc != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&e->mu);
        struct task *t = task_find(e, recs[i].key);
        bool fresh = t && !pw_task_status_is_final(t->status);
        if (fresh)
            task_cancel(e, t);
        pthread_mutex_unlock(&e->mu);
        if (fresh) {
            int rc = 0;
            engine_flush(e, false, recs[i].key, &rc, NULL);
            if (rc != 0)
                continue; /* kept: the next scan applies it again */
            PW_INFO("task %s cancelled (asked on another replica)", recs[i].key);
        } else if (!t) {
            struct pw_store_task rec; /* not in memory: done with the request once the task is over or gone */
            int grc = pw_store_task_get(e->cfg.store, recs[i].key, &rec);
            bool over = grc == PW_ENOTFOUND || (grc == 0 && pw_store_status_final(rec.status));
            if (grc == 0)
                pw_store_task_fini(&rec);
            if (!over)
                continue;
        }
        pw_store_rec_delete(e->cfg.store, CANCEL_KIND, recs[i].key);
    }
    pw_store_recs_free(recs, n);
}

/* Loop thread, before a round: follows leadership changes, rescans the store while leading. */
static void lead_round(pw_engine *e)
{
    if (!e->cfg.may_lead)
        return;
    bool may = e->cfg.may_lead(e->cfg.may_lead_arg);
    bool leading = atomic_load(&e->leading);
    if (leading && !may)
        step_down(e, "the Lease is not held");
    else if (!leading && may)
        take_over(e);
    else if (leading && (atomic_load(&e->pickup_now) || pw_clock_mono_ms() >= e->next_pickup_mono))
        pickup(e);
}

/* A follower's cancel: a request in the store for the leader, then wait for the task to show it. */
static int cancel_by_request(pw_engine *e, const char *id)
{
    json_t *doc = json_pack("{s:s,s:I}", "id", id, "requestedAt", (json_int_t)pw_clock_real_ms());
    int rc = pw_store_rec_put(e->cfg.store, CANCEL_KIND, id, doc, PW_STORE_REC_UPSERT);
    json_decref(doc);
    if (rc != 0)
        return rc;
    PW_INFO("task %s: cancel stored for the leader to apply", id);
    atomic_store(&e->pickup_now, true);
    wake(e);
    for (int64_t until = pw_clock_mono_ms() + PW_ENGINE_HANDOFF_MS; pw_clock_mono_ms() < until;) {
        struct pw_store_task rec;
        if (pw_store_task_get(e->cfg.store, id, &rec) == 0) {
            bool final = pw_store_status_final(rec.status);
            pw_store_task_fini(&rec);
            if (final)
                return 0;
        }
        pw_clock_sleep_ms(100);
    }
    return PW_EUNAVAIL;
}

void pw_engine_wake(pw_engine *e)
{
    wake(e);
}

bool pw_engine_leading(pw_engine *e)
{
    return atomic_load(&e->leading);
}

/* ---- public ---- */

int pw_engine_new(const struct pw_engine_config *cfg, pw_engine **out)
{
    if (!cfg || !cfg->store || !cfg->client || (cfg->may_lead && cfg->agent.enabled))
        return PW_EINVAL;
    const char *cname = cfg->cluster && *cfg->cluster ? cfg->cluster : PW_CLUSTER_DEFAULT;
    if (!cluster_name_ok(cname))
        return PW_EINVAL;
    pw_engine *e = pw_xcalloc(1, sizeof *e);
    e->cfg = *cfg;
    e->namespace_ = pw_xstrdup(cfg->namespace_ ? cfg->namespace_ : PW_ENGINE_DEFAULT_NAMESPACE);
    e->instance = pw_xstrdup(cfg->instance && *cfg->instance ? cfg->instance : "default");
    e->cfg.namespace_ = e->namespace_;
    e->cfg.instance = e->instance;
    e->cfg.cluster = NULL;
    if (e->cfg.max_nodes_in_flight <= 0)
        e->cfg.max_nodes_in_flight = PW_ENGINE_DEFAULT_MAX_NODES_IN_FLIGHT;
    if (e->cfg.max_running_tasks <= 0)
        e->cfg.max_running_tasks = PW_ENGINE_DEFAULT_MAX_RUNNING_TASKS;
    atomic_init(&e->leading, !cfg->may_lead);
    atomic_init(&e->pickup_now, false);
    if (e->cfg.cluster_unreachable_timeout_ms <= 0)
        e->cfg.cluster_unreachable_timeout_ms = 5 * 60 * 1000;
    e->job = cfg->job; /* for every cluster's Job executor (the helper image copied here) */
    e->helper_image = cfg->job.helper_image ? pw_xstrdup(cfg->job.helper_image) : NULL;
    e->job.helper_image = e->helper_image;
    e->cfg.job = (struct pw_jobexec_settings){0};
    struct pw_engine_cluster first = {.name = cname, .client = cfg->client};
    struct ecl *c = NULL;
    int rc = ecl_new(e, &first, true, &c);
    if (rc != 0) {
        free(e->namespace_);
        free(e->instance);
        free(e->helper_image);
        free(e);
        return rc;
    }
    e->cl = pw_xmalloc(sizeof *e->cl);
    e->cl[0] = c;
    e->n_cl = 1;
    c->first = true;
    e->x = c->x;
    pthread_mutex_init(&e->wmu, NULL);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->tmu, NULL);
    pthread_mutex_init(&e->qmu, NULL);
    pthread_cond_init(&e->qcond, NULL);
    *out = e;
    return 0;
}

/* Drops what a failed start left in memory: resumed tasks, queued events and intents, and the
 * node caches, so the engine is as pw_engine_new made it (save an executor that cannot start
 * again, which is freed). */
static void start_undo(pw_engine *e)
{
    for (size_t i = 0; i < e->n_cl; i++) {
        pw_nodecache_free(e->cl[i]->nodes);
        e->cl[i]->nodes = NULL;
        e->cl[i]->started = false;
    }
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
    if (!e->x[EXEC_JOB])
        return PW_EINVAL; /* a failed start freed its executors: the engine can only be freed */
    if (!e->cfg.may_lead)
        (void)engine_resume(e); /* else at each takeover; what it could not read waits for a restart */
    int rc = 0;
    for (size_t i = 0; i < e->n_cl && rc == 0; i++) {
        rc = ecl_start(e, e->cl[i]);
        if (rc != 0 && i > 0) {
            PW_ERROR("cluster %s cannot start: %s", e->cl[i]->name, pw_strerror(rc));
            rc = 0; /* only the first cluster is required */
        }
    }
    e->nodes = e->cl[0]->nodes;
    if (rc != 0) {
        start_undo(e);
        return rc;
    }
    if (pthread_create(&e->loop, NULL, loop_main, e) != 0) {
        PW_ERROR("cannot start the engine's loop thread");
        for (size_t i = 0; i < e->n_cl; i++)
            for (int k = 0; k < N_EXEC; k++) {
                pw_executor_free(e->cl[i]->x[k]);
                e->cl[i]->x[k] = NULL;
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
    /* the loop first: it reads the node caches (schedule, dispatch), so they are freed only after
     * the join; the informers' callbacks may still push into the queue meanwhile, drained below */
    if (e->started) {
        pthread_mutex_lock(&e->qmu);
        e->stopping = true;
        pthread_cond_signal(&e->qcond);
        pthread_mutex_unlock(&e->qmu);
        pthread_join(e->loop, NULL);
    }
    for (size_t i = 0; i < e->n_cl; i++) /* after the loop, their caller; their reports still find the queue */
        ecl_free(e->cl[i]);
    free(e->cl);
    intents_free(e);
    while (e->q_head) {
        struct event *ev = e->q_head;
        e->q_head = ev->next;
        ev_free(ev);
    }
    for (size_t i = 0; i < e->n_tasks; i++)
        pw_taskrec_free(e->tasks[i]);
    free(e->tasks);
    pw_notready_fini(&e->notready);
    free(e->namespace_);
    free(e->instance);
    free(e->helper_image);
    pthread_mutex_destroy(&e->wmu);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->tmu);
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
    if (!e->nodes || !pw_nodecache_synced(e->nodes)) {
        *why = "the node informer has not synced yet";
        return false;
    }
    return true;
}

/* ---- clusters ---- */

int pw_engine_cluster_set(pw_engine *e, const struct pw_engine_cluster *cc)
{
    if (!cc || !cluster_name_ok(cc->name) || !cc->client)
        return PW_EINVAL;
    pthread_mutex_lock(&e->mu);
    struct ecl *old = cluster_find(e, cc->name, NULL);
    if (e->cfg.may_lead && !old) {
        pthread_mutex_unlock(&e->mu);
        PW_ERROR("cluster %s: leader election (--leader-elect) serves one cluster only for now (docs/ha.md)",
                 cc->name);
        return PW_EINVAL;
    }
    if (old) {
        int rc = PW_EEXIST;
        if (old->client == cc->client) {
            json_decref(old->labels);
            old->labels = cc->labels ? json_deep_copy(cc->labels) : json_object();
            old->max_in_flight = cc->max_nodes_in_flight;
            old->down_since = cc->down_since;
            old->down_arg = cc->arg;
            rc = 0;
        }
        pthread_mutex_unlock(&e->mu);
        return rc;
    }
    bool started = e->started;
    pthread_mutex_unlock(&e->mu);
    struct ecl *c = NULL;
    int rc = ecl_new(e, cc, false, &c);
    if (rc == 0 && started)
        rc = ecl_start(e, c);
    if (rc != 0) {
        ecl_free(c);
        return rc;
    }
    pthread_mutex_lock(&e->mu);
    e->cl = pw_xrealloc(e->cl, (e->n_cl + 1) * sizeof *e->cl);
    e->cl[e->n_cl++] = c;
    pthread_mutex_unlock(&e->mu);
    PW_INFO("cluster %s added", cc->name);
    wake(e);
    return 0;
}

int pw_engine_cluster_remove(pw_engine *e, const char *name)
{
    pthread_mutex_lock(&e->mu);
    size_t i = 0;
    while (i < e->n_cl && strcmp(e->cl[i]->name, name) != 0)
        i++;
    if (i == e->n_cl || i == 0) {
        pthread_mutex_unlock(&e->mu);
        return i == 0 ? PW_EINVAL : PW_ENOTFOUND;
    }
    struct ecl *c = e->cl[i];
    memmove(&e->cl[i], &e->cl[i + 1], (e->n_cl - i - 1) * sizeof *e->cl);
    e->n_cl--;
    char *msg = pw_xasprintf("cluster %s was removed from the configuration", name);
    cluster_lost(e, name, "ClusterRemoved", msg);
    free(msg);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_lock(&e->tmu); /* not while the loop ticks its executors */
    ecl_free(c);
    pthread_mutex_unlock(&e->tmu);
    PW_INFO("cluster %s removed", name);
    wake(e);
    return 0;
}

bool pw_engine_cluster_known(pw_engine *e, const char *name)
{
    pthread_mutex_lock(&e->mu);
    bool known = cluster_find(e, name, NULL) != NULL;
    pthread_mutex_unlock(&e->mu);
    return known;
}

static json_t *agents_count(pw_executor *agents)
{
    if (!agents)
        return json_integer(0);
    json_t *list = pw_agentexec_list(agents);
    json_t *items = json_is_array(list) ? list : json_object_get(list, "items");
    json_t *n = json_integer((json_int_t)json_array_size(items));
    json_decref(list);
    return n;
}

struct count_ctx {
    size_t nodes, ready;
};

static int count_node(void *arg, const json_t *node)
{
    struct count_ctx *cc = arg;
    cc->nodes++;
    cc->ready += pw_nodecache_ready(node);
    return 0;
}

json_t *pw_engine_clusters(pw_engine *e)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n_cl; i++) {
        const struct ecl *c = e->cl[i];
        struct count_ctx cc = {0};
        if (c->nodes)
            pw_nodecache_each(c->nodes, count_node, &cc);
        size_t in_flight = 0;
        for (size_t k = 0; k < e->n_tasks; k++) {
            const struct task *t = e->tasks[k];
            for (size_t j = 0; j < t->n_cl; j++)
                if (strcmp(t->cl[j].name, c->name) == 0)
                    in_flight += t->cl[j].counts.running;
        }
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(c->name));
        json_object_set_new(o, "labels", json_deep_copy(c->labels));
        json_object_set_new(o, "synced", json_boolean(c->nodes && pw_nodecache_synced(c->nodes)));
        json_object_set_new(o, "reachable", json_boolean(cluster_down(c) == 0));
        json_object_set_new(o, "nodes", json_integer((json_int_t)cc.nodes));
        json_object_set_new(o, "readyNodes", json_integer((json_int_t)cc.ready));
        json_object_set_new(o, "agents", agents_count(c->x[EXEC_AGENT]));
        json_object_set_new(o, "nodesInFlight", json_integer((json_int_t)in_flight));
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&e->mu);
    return arr;
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
    observe(e, PW_ENGINE_TASK_CHANGED, t->id, doc); /* under the lock: before the loop's first change */
    PW_INFO("task %s created: %zu images, priority %d%s", t->id, t->spec.n_images, t->spec.priority,
            atomic_load(&e->leading) ? "" : " (stored for the leader)");
    if (atomic_load(&e->leading) && !task_find(e, t->id)) { /* a follower's tasks wait in the store */
        t->sched.seq = ++e->seq;
        e->tasks = pw_xrealloc(e->tasks, (e->n_tasks + 1) * sizeof *e->tasks);
        e->tasks[e->n_tasks++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    pw_taskrec_free(t);
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
    task_end(e, t, PW_TASK_CANCELLED);
}

int pw_engine_cancel(pw_engine *e, const char *id, json_t **task_out)
{
    pthread_mutex_lock(&e->mu);
    struct task *t = task_find(e, id);
    bool fresh = t && !pw_task_status_is_final(t->status);
    /* a task cancelled before whose write failed and has not been retried yet: a repeated cancel
     * writes it */
    bool ours = fresh || (t && t->status == PW_TASK_CANCELLED);
    size_t running = fresh ? t->counts.running : 0, pending = fresh ? t->counts.pending : 0;
    if (fresh)
        task_cancel(e, t);
    pthread_mutex_unlock(&e->mu);
    int rc = 0;
    if (ours) {
        json_t *doc = NULL;
        engine_flush(e, false, id, &rc, &doc); /* durable before the answer */
        if (fresh) {
            PW_INFO("task %s cancelled: %zu running nodes stopped (their Jobs deleted), %zu pending nodes dropped%s",
                    id, running, pending, rc == 0 ? "" : " (the store write failed; it is retried)");
            wake(e);
        }
        if (rc != 0)
            return rc;
        if (doc) {
            if (task_out)
                *task_out = doc;
            else
                json_decref(doc);
            return 0;
        }
        /* nothing left to write: an earlier flush wrote it, so the store has the cancelled task */
    }
    struct pw_store_task rec;
    rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    if (!ours && e->cfg.may_lead && !pw_store_status_final(rec.status)) {
        pw_store_task_fini(&rec); /* not in this replica's memory: the leader's, or not picked up yet */
        rc = cancel_by_request(e, id);
        if (rc == 0)
            rc = pw_store_task_get(e->cfg.store, id, &rec);
        if (rc != 0)
            return rc;
    }
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

int pw_engine_list_cluster_nodes(pw_engine *e, const char *id, const char *cluster, const char *state, size_t limit,
                                 const char *cont, json_t **out)
{
    struct pw_store_task rec;
    int rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    pw_store_task_fini(&rec);
    /* pages of the store, filtered, until limit items (each page asks for what is missing, so no
     * item read is dropped: the store's token goes on from the last one kept) */
    json_t *arr = json_array();
    char *next = cont ? pw_xstrdup(cont) : NULL;
    bool first = true;
    while (first || next) {
        size_t want = limit ? limit - json_array_size(arr) : 0;
        struct pw_store_node *items = NULL;
        size_t n = 0;
        char *after = NULL;
        rc = pw_store_nodes_list(e->cfg.store, id, state, want, next, &items, &n, &after);
        free(next);
        next = NULL;
        if (rc == PW_ENOTFOUND)
            rc = 0;
        if (rc != 0) {
            json_decref(arr);
            return rc;
        }
        for (size_t i = 0; i < n; i++)
            if (pw_nodekey_in(items[i].node_name, cluster))
                json_array_append(arr, items[i].doc);
        pw_store_nodes_free(items, n);
        next = after;
        first = false;
        if (limit && json_array_size(arr) >= limit)
            break;
    }
    *out = page_json(arr, next);
    return 0;
}

void pw_engine_set_observer(pw_engine *e, pw_engine_observer fn, void *arg)
{
    e->observer = fn;
    e->observer_arg = arg;
}

void pw_engine_stats(pw_engine *e, struct pw_engine_stats *out)
{
    memset(out, 0, sizeof *out);
    out->max_nodes_in_flight = (size_t)e->cfg.max_nodes_in_flight;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n_tasks; i++) {
        const struct task *t = e->tasks[i];
        if (t->status == PW_TASK_PENDING)
            out->tasks_pending++;
        else if (t->status == PW_TASK_RUNNING)
            out->tasks_running++;
        else
            continue; /* finished this round, leaving at its end */
        out->nodes_pending += t->counts.pending;
        out->nodes_running += t->counts.running;
        out->nodes_succeeded += t->counts.succeeded;
        out->nodes_failed += t->counts.failed;
        out->nodes_skipped += t->counts.skipped;
        out->nodes_cancelled += t->counts.cancelled;
    }
    pthread_mutex_unlock(&e->mu);
}

void pw_engine_set_node_hook(pw_engine *e, pw_k8s_informer_fn fn, void *arg)
{
    e->node_hook = fn;
    e->node_hook_arg = arg;
}

void pw_engine_set_node_raw_hook(pw_engine *e, void (*fn)(void *arg, const json_t *node), void *arg)
{
    e->node_raw = fn;
    e->node_raw_arg = arg;
}

void pw_engine_each_node(pw_engine *e, int (*fn)(void *arg, const json_t *node), void *arg)
{
    if (e->nodes)
        pw_nodecache_each(e->nodes, fn, arg);
}

json_t *pw_engine_node_get(pw_engine *e, const char *name)
{
    return e->nodes ? pw_nodecache_get(e->nodes, name) : NULL;
}
