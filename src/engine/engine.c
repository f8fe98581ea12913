/* engine.c: the task engine core. One loop thread owns all task state (under e->mu); informer
 * callbacks and the executor's threads only append events to a queue (under e->qmu, a separate lock,
 * so an informer holding its cache lock never waits for the engine). Each loop round: apply queued
 * events (nodes, executor reports), check NotReady grace periods, admit and select nodes for tasks,
 * plan dispatch with pw_sched_plan, finish tasks whose nodes are all done; then, with e->mu released,
 * write every changed task and node result through the store (taskflush.h). What a round decides for
 * the executor (executor.h: start a node, stop one) is handed over only after that round's writes
 * succeeded (while the store fails it waits), so nothing in the cluster runs ahead of what a restart
 * would find; then the executors tick. After a round the loop prunes finished tasks older than the
 * history (retention). Beside it: the clusters, their node caches, executors and reachability
 * (cluster.c), leadership (lead.c; their shared state and lock order: engine_int.h), node selection
 * and readiness (nodeselect.h), what a report does to a node (noderep.h), the rebuild after a
 * restart (resume.h), the records (taskrec.h).
 *
 * Where a change becomes final (the hooks of an event stream go there): pw_eng_node_finish (a node's end:
 * succeeded or failed), pw_eng_task_cancel (a task and its unfinished nodes cancelled), task_end via
 * task_maybe_finish (a task's outcome), schedule() (a task admitted: running); each is durable
 * once the pw_eng_flush after it returns without a failed write.
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
#include "engine/engine_int.h"
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

static void release_intents(pw_engine *e);

/* ---- the event queue ---- */

void pw_eng_ev_push(pw_engine *e, struct event *ev)
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

void pw_eng_ev_free(struct event *ev)
{
    free(ev->key);
    json_decref(ev->obj);
    pw_noderep_free(ev->rep);
    free(ev);
}

void pw_eng_wake(pw_engine *e)
{
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = EV_WAKE;
    pw_eng_ev_push(e, ev);
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

void pw_eng_intents_free(pw_engine *e)
{
    while (e->i_head) {
        struct intent *in = e->i_head;
        e->i_head = in->next;
        free(in->node);
        free(in);
    }
    e->i_tail = NULL;
}

/* ---- task records ---- */

struct task *pw_eng_task_find(pw_engine *e, const char *id)
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
bool pw_eng_flush(pw_engine *e, bool reap, const char *id, int *rc, json_t **task_doc)
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
void pw_eng_node_finish(pw_engine *e, struct task *t, struct tnode *n, enum pw_node_state s, const char *reason,
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
    struct task *t = pw_eng_task_find(e, ev->rep->task_id);
    struct tnode *n = t ? pw_taskrec_node_find(t, ev->key) : NULL;
    if (!n)
        return;
    struct pw_noderep_end end;
    pw_noderep_apply(t, n, ev->rep, &end);
    if (end.state != PW_NODE_RUNNING)
        pw_eng_node_finish(e, t, n, end.state, end.reason, end.message, end.image);
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
            pw_eng_node_finish(e, t, n, PW_NODE_FAILED, reason, message, NULL);
    }
}

static void handle_node(pw_engine *e, const char *cluster, enum pw_k8s_event type, const json_t *node)
{
    if (!pw_k8s_name(node) || !pw_eng_cluster_find(e, cluster, NULL))
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
    struct ecl *c = pw_eng_cluster_find(e, NULL, n->name);
    if (!c || pw_eng_cluster_down(c)) {
        char *msg = pw_xasprintf(c ? "cluster %s was unreachable at the node's turn" : "cluster %s was removed",
                                 n->cl < t->n_cl ? t->cl[n->cl].name : "?");
        pw_eng_node_finish(e, t, n, PW_NODE_FAILED, c ? "ClusterUnreachable" : "ClusterRemoved", msg, NULL);
        free(msg);
        return;
    }
    const char *plain = pw_nodekey_node(n->name);
    json_t *cached = pw_nodecache_get(c->nodes, plain);
    if (!cached) {
        pw_eng_node_finish(e, t, n, PW_NODE_FAILED, "NodeDeleted", "the node left the cluster before its turn", NULL);
        return;
    }
    json_decref(cached);
    /* the executor: the task's mode, and for auto the node's agent when it is healthy */
    bool agent_ok = c->x[EXEC_AGENT] && pw_executor_healthy(c->x[EXEC_AGENT], plain);
    const char *mode = t->spec.mode ? t->spec.mode : "auto";
    enum exec_kind k = strcmp(mode, "agent") == 0 || (strcmp(mode, "auto") == 0 && agent_ok) ? EXEC_AGENT : EXEC_JOB;
    if (k == EXEC_AGENT && !agent_ok) {
        pw_eng_node_finish(e, t, n, PW_NODE_FAILED, "AgentUnavailable",
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
        struct ecl *c = pw_eng_cluster_find(e, NULL, in->node); /* NULL: removed; no executor: removed or after a step-down (may_lead) */
        if (!c || !c->x[in->exec]) {
        } else if (in->kind == INTENT_CANCEL) {
            pw_executor_cancel(c->x[in->exec], in->task_id, pw_nodekey_node(in->node), in->failed);
        } else {
            struct task *t = pw_eng_task_find(e, in->task_id);
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
    char *fc = s == PW_TASK_CANCELLED ? NULL : pw_eng_failed_clusters(t);
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
    if (!pw_eng_clusters_ready(e))
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
            pw_eng_task_select(e, t);
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
 * after it (pw_eng_flush). */
static int64_t loop_round(pw_engine *e, struct event *evs, bool dispatch)
{
    while (evs) {
        struct event *next = evs->next;
        event_handlers[evs->kind](e, evs);
        pw_eng_ev_free(evs);
        evs = next;
    }
    int64_t now = pw_clock_mono_ms();
    int64_t wake_at = pw_notready_due(&e->notready, now, e->cfg.not_ready_grace_ms, grace_over, e);
    int64_t down = pw_eng_clusters_check(e, now);
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
            pw_eng_lead_round(e); /* may_lead: take over, step down or rescan the store */
        pthread_mutex_lock(&e->qmu);
        struct event *evs = e->q_head;
        e->q_head = e->q_tail = NULL;
        pthread_mutex_unlock(&e->qmu);
        pthread_mutex_lock(&e->mu);
        wake_at = loop_round(e, evs, !stopping && atomic_load(&e->leading));
        pthread_mutex_unlock(&e->mu);
        /* fencing: a replica whose Lease lapsed during the round writes nothing (steps down next) */
        bool failing = pw_eng_may_write_now(e) ? pw_eng_flush(e, true, NULL, NULL, NULL) : true;
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
int pw_eng_resume(pw_engine *e)
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

/* ---- public ---- */

int pw_engine_new(const struct pw_engine_config *cfg, pw_engine **out)
{
    if (!cfg || !cfg->store || !cfg->client || (cfg->may_lead && cfg->agent.enabled))
        return PW_EINVAL;
    const char *cname = cfg->cluster && *cfg->cluster ? cfg->cluster : PW_CLUSTER_DEFAULT;
    if (!pw_eng_cluster_name_ok(cname))
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
    int rc = pw_eng_ecl_new(e, &first, &c);
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
    pthread_cond_init(&e->hold_cv, NULL);
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
        pw_eng_ev_free(ev);
    }
    e->q_tail = NULL;
    pw_eng_intents_free(e);
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
        (void)pw_eng_resume(e); /* else at each takeover; what it could not read waits for a restart */
    int rc = 0;
    for (size_t i = 0; i < e->n_cl && rc == 0; i++) {
        rc = pw_eng_ecl_start(e, e->cl[i]);
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
        pw_eng_ecl_free(e->cl[i]);
    free(e->cl);
    pw_eng_intents_free(e);
    while (e->q_head) {
        struct event *ev = e->q_head;
        e->q_head = ev->next;
        pw_eng_ev_free(ev);
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
    pthread_cond_destroy(&e->hold_cv);
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
    if (atomic_load(&e->leading) && !pw_eng_task_find(e, t->id)) { /* a follower's tasks wait in the store */
        t->sched.seq = ++e->seq;
        e->tasks = pw_xrealloc(e->tasks, (e->n_tasks + 1) * sizeof *e->tasks);
        e->tasks[e->n_tasks++] = t;
        t = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    pw_taskrec_free(t);
    pw_eng_wake(e);
    *task_out = doc;
    return 0;
}

/* Cancels t (under e->mu): pending nodes and running ones become cancelled, running Jobs deleted. */
void pw_eng_task_cancel(pw_engine *e, struct task *t)
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
    struct task *t = pw_eng_task_find(e, id);
    bool fresh = t && !pw_task_status_is_final(t->status);
    /* a task cancelled before whose write failed and has not been retried yet: a repeated cancel
     * writes it */
    bool ours = fresh || (t && t->status == PW_TASK_CANCELLED);
    size_t running = fresh ? t->counts.running : 0, pending = fresh ? t->counts.pending : 0;
    if (fresh)
        pw_eng_task_cancel(e, t);
    pthread_mutex_unlock(&e->mu);
    int rc = 0;
    if (ours) {
        json_t *doc = NULL;
        pw_eng_flush(e, false, id, &rc, &doc); /* durable before the answer */
        if (fresh) {
            PW_INFO("task %s cancelled: %zu running nodes stopped (their Jobs deleted), %zu pending nodes dropped%s",
                    id, running, pending, rc == 0 ? "" : " (the store write failed; it is retried)");
            pw_eng_wake(e);
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
        rc = pw_eng_cancel_by_request(e, id);
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
