/* cluster.c: the clusters of the engine (docs/multicluster.md). One struct ecl per cluster: its
 * node cache (the node informer, whose events go to the engine's queue), its executors (Job mode,
 * agent mode) and their hooks (reports into the queue, the fate of a node found after a restart),
 * its reachability (a cluster unreachable past --cluster-unreachable-timeout fails its unfinished
 * nodes, ClusterUnreachable), and what a task does per cluster: node selection in each cluster it
 * spans and the clusters named in its message when their share failed. The clusters' public API:
 * adding, relabelling and removing clusters, GET /api/v1/clusters and a task's nodes of one cluster.
 * Locks: engine_int.h. */
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
#include "engine/nodekey.h"
#include "engine/noderep.h"
#include "engine/outcome.h"
#include "engine/resume.h"
#include "store/store.h"

/* ---- a cluster's hooks ---- */

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
    pw_eng_ev_push(c->e, ev);
}

/* The executor's report hook (any of its threads): a copy goes into the queue. */
static void on_report(void *arg, const struct pw_exec_report *r)
{
    struct ecl *c = arg;
    struct event *ev = pw_xcalloc(1, sizeof *ev);
    ev->kind = EV_REPORT;
    ev->rep = pw_noderep_copy(r);
    ev->key = pw_nodekey_make(c->name, r->node);
    pw_eng_ev_push(c->e, ev);
}

/* The cluster named name, or of node key key (either may be NULL), or NULL. Under e->mu. */
struct ecl *pw_eng_cluster_find(pw_engine *e, const char *name, const char *key)
{
    for (size_t i = 0; i < e->n_cl; i++)
        if ((name && strcmp(e->cl[i]->name, name) == 0) || (key && pw_nodekey_in(key, e->cl[i]->name)))
            return e->cl[i];
    return NULL;
}

int64_t pw_eng_cluster_down(const struct ecl *c)
{
    return c->down_since ? c->down_since(c->down_arg) : 0;
}

/* ---- reachability ---- */

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
                pw_eng_node_finish(e, t, n, PW_NODE_FAILED, reason, message, NULL);
        }
        PW_WARN("task %s: cluster %s: %s", t->id, cluster, message);
    }
}

/* Clusters unreachable past the timeout fail their unfinished nodes once per outage; returns when
 * the next timeout ends (0: none). Under e->mu. */
int64_t pw_eng_clusters_check(pw_engine *e, int64_t now)
{
    int64_t next = 0, limit = e->cfg.cluster_unreachable_timeout_ms;
    for (size_t i = 0; i < e->n_cl; i++) {
        struct ecl *c = e->cl[i];
        int64_t since = pw_eng_cluster_down(c);
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

/* ---- a task, per cluster ---- */

/* ", clusters failed: a (why), b" for the task's message: the shares that failed as a whole or
 * missed the threshold; NULL when none did or the task spans the default cluster only. */
char *pw_eng_failed_clusters(const struct task *t)
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

/* Whether every cluster's node cache is complete (or the cluster is down: it fails at selection). */
bool pw_eng_clusters_ready(pw_engine *e)
{
    for (size_t i = 0; i < e->n_cl; i++)
        if (!(e->cl[i]->nodes && pw_nodecache_synced(e->cl[i]->nodes)) && !pw_eng_cluster_down(e->cl[i]))
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
void pw_eng_task_select(pw_engine *e, struct task *t)
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

/* ---- a cluster's life ---- */

/* The executor's fate hook (from its tick, on the loop thread, e->mu not held): what the core knows
 * of the node of task_id the executor found work of. Takes e->mu for the tasks in memory, then
 * reads the store without it. */
static enum pw_exec_fate exec_fate(void *arg, const char *task_id, const char *node)
{
    struct ecl *c = arg;
    pw_engine *e = c->e;
    pthread_mutex_lock(&e->mu);
    struct task *t = pw_eng_task_find(e, task_id);
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

bool pw_eng_cluster_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    bool ok = n >= 1 && n <= 63 && s[0] != '-' && s[n - 1] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
    return ok;
}

void pw_eng_ecl_free(struct ecl *c)
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

/* Makes c's executors (not started): Job mode, and agent mode when it is on (every cluster has its
 * own agents, docs/multicluster.md). With may_lead again at each takeover. 0, or the executor's PW_E*
 * with none left. */
int pw_eng_ecl_executors_new(pw_engine *e, struct ecl *c)
{
    const struct pw_engine_config *cfg = &e->cfg;
    struct pw_exec_hooks hooks = {.arg = c, .report = on_report, .fate = exec_fate,
                                  .may_write = cfg->may_lead ? pw_eng_may_write : NULL};
    int rc = 0;
    for (int k = 0; k < N_EXEC && rc == 0; k++) {
        if (k == EXEC_AGENT && !cfg->agent.enabled)
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

/* A cluster with its executors made (not started). 0 or the executor's PW_E*. */
int pw_eng_ecl_new(pw_engine *e, const struct pw_engine_cluster *cc, struct ecl **out)
{
    struct ecl *c = pw_xcalloc(1, sizeof *c);
    c->e = e;
    c->name = pw_xstrdup(cc->name);
    c->labels = cc->labels ? json_deep_copy(cc->labels) : json_object();
    c->client = cc->client;
    c->max_in_flight = cc->max_nodes_in_flight;
    c->down_since = cc->down_since;
    c->down_arg = cc->arg;
    int rc = pw_eng_ecl_executors_new(e, c);
    if (rc != 0) {
        pw_eng_ecl_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Starts c's executors with its running nodes to adopt (under e->mu). On failure the executors are
 * freed (a started one cannot start again). */
int pw_eng_ecl_executors_start(pw_engine *e, struct ecl *c)
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
int pw_eng_ecl_start(pw_engine *e, struct ecl *c)
{
    int rc = pw_nodecache_start(c->client, on_node, c, c->first ? e->node_raw : NULL, e->node_raw_arg, &c->nodes);
    if (rc != 0)
        return rc;
    /* the running nodes are the executor's before its informers start, so their first events find them */
    pthread_mutex_lock(&e->mu);
    if (!e->cfg.may_lead)
        rc = pw_eng_ecl_executors_start(e, c);
    if (rc == 0)
        c->started = true;
    pthread_mutex_unlock(&e->mu);
    if (rc != 0) {
        pw_nodecache_free(c->nodes);
        c->nodes = NULL;
    }
    return rc;
}

/* ---- clusters ---- */

int pw_engine_cluster_set(pw_engine *e, const struct pw_engine_cluster *cc)
{
    if (!cc || !pw_eng_cluster_name_ok(cc->name) || !cc->client)
        return PW_EINVAL;
    pthread_mutex_lock(&e->mu);
    struct ecl *old = pw_eng_cluster_find(e, cc->name, NULL);
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
    int rc = pw_eng_ecl_new(e, cc, &c);
    if (rc == 0 && started)
        rc = pw_eng_ecl_start(e, c);
    if (rc != 0) {
        pw_eng_ecl_free(c);
        return rc;
    }
    pthread_mutex_lock(&e->mu);
    e->cl = pw_xrealloc(e->cl, (e->n_cl + 1) * sizeof *e->cl);
    e->cl[e->n_cl++] = c;
    pthread_mutex_unlock(&e->mu);
    PW_INFO("cluster %s added", cc->name);
    pw_eng_wake(e);
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
    while (c->holds > 0) /* an agent's sync in its executor, or its token's review with its client */
        pthread_cond_wait(&e->hold_cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_lock(&e->tmu); /* not while the loop ticks its executors */
    pw_eng_ecl_free(c);
    pthread_mutex_unlock(&e->tmu);
    PW_INFO("cluster %s removed", name);
    pw_eng_wake(e);
    return 0;
}

bool pw_engine_cluster_known(pw_engine *e, const char *name)
{
    pthread_mutex_lock(&e->mu);
    bool known = pw_eng_cluster_find(e, name, NULL) != NULL;
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
        json_object_set_new(o, "reachable", json_boolean(pw_eng_cluster_down(c) == 0));
        json_object_set_new(o, "nodes", json_integer((json_int_t)cc.nodes));
        json_object_set_new(o, "readyNodes", json_integer((json_int_t)cc.ready));
        json_object_set_new(o, "agents", agents_count(c->x[EXEC_AGENT]));
        json_object_set_new(o, "nodesInFlight", json_integer((json_int_t)in_flight));
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&e->mu);
    return arr;
}

/* ---- agents: every cluster's (docs/agent.md, docs/multicluster.md) ---- */

/* Holds c (under e->mu): a removal waits for the release. */
static void hold(struct ecl *c, struct pw_engine_agents_ref *out)
{
    c->holds++;
    *out = (struct pw_engine_agents_ref){.x = c->x[EXEC_AGENT], .client = c->client, .cluster = c->name,
                                         .first = c->first, .hold = c};
}

int pw_engine_agents_hold(pw_engine *e, const char *cluster, struct pw_engine_agents_ref *out)
{
    pthread_mutex_lock(&e->mu);
    struct ecl *c = cluster ? pw_eng_cluster_find(e, cluster, NULL) : e->cl[0];
    int rc = !c ? PW_ENOTFOUND : !c->x[EXEC_AGENT] || !c->started ? PW_EUNAVAIL : 0;
    if (rc == 0)
        hold(c, out);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void pw_engine_agents_release(pw_engine *e, struct pw_engine_agents_ref *ref)
{
    struct ecl *c = ref->hold;
    if (!c)
        return;
    pthread_mutex_lock(&e->mu);
    if (--c->holds == 0)
        pthread_cond_broadcast(&e->hold_cv);
    pthread_mutex_unlock(&e->mu);
    memset(ref, 0, sizeof *ref);
}

json_t *pw_engine_agents_list(pw_engine *e)
{
    /* the clusters held, then listed without e->mu (a list of thousands of agents never delays the loop) */
    pthread_mutex_lock(&e->mu);
    size_t n = 0;
    struct pw_engine_agents_ref *refs = pw_xcalloc(e->n_cl ? e->n_cl : 1, sizeof *refs);
    for (size_t i = 0; i < e->n_cl; i++)
        if (e->cl[i]->x[EXEC_AGENT] && e->cl[i]->started)
            hold(e->cl[i], &refs[n++]);
    pthread_mutex_unlock(&e->mu);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *list = pw_agentexec_list(refs[i].x);
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(list, "items"), k, a)
        {
            json_object_set_new(a, "cluster", json_string(refs[i].cluster));
            json_array_append(items, a);
        }
        json_decref(list);
        pw_engine_agents_release(e, &refs[i]);
    }
    free(refs);
    return json_pack("{s:o}", "items", items);
}

size_t pw_engine_cluster_stats(pw_engine *e, struct pw_engine_cluster_stats **out)
{
    pthread_mutex_lock(&e->mu);
    size_t n = e->n_cl;
    struct pw_engine_cluster_stats *v = pw_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const struct ecl *c = e->cl[i];
        snprintf(v[i].name, sizeof v[i].name, "%s", c->name);
        size_t cap = (size_t)e->cfg.max_nodes_in_flight;
        v[i].max_nodes_in_flight = c->max_in_flight > 0 && (size_t)c->max_in_flight < cap ? (size_t)c->max_in_flight : cap;
        for (size_t k = 0; k < e->n_tasks; k++) {
            const struct task *t = e->tasks[k];
            if (t->status != PW_TASK_PENDING && t->status != PW_TASK_RUNNING)
                continue; /* as pw_engine_stats: finished this round, leaving at its end */
            for (size_t j = 0; j < t->n_cl; j++) {
                if (strcmp(t->cl[j].name, c->name) != 0)
                    continue;
                const struct pw_outcome_counts *ct = &t->cl[j].counts;
                v[i].nodes[PW_NODE_PENDING] += ct->pending;
                v[i].nodes[PW_NODE_RUNNING] += ct->running;
                v[i].nodes[PW_NODE_SUCCEEDED] += ct->succeeded;
                v[i].nodes[PW_NODE_FAILED] += ct->failed;
                v[i].nodes[PW_NODE_SKIPPED] += ct->skipped;
                v[i].nodes[PW_NODE_CANCELLED] += ct->cancelled;
            }
        }
    }
    pthread_mutex_unlock(&e->mu);
    *out = v;
    return n;
}
