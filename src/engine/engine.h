/* engine.h: prewarmd's task engine (the task spec is in taskspec.h): it selects nodes, dispatches
 * each node's pulls under the caps to an executor (executor.h: Job mode, jobexec.h; agent mode,
 * agentexec.h; the task's mode chooses, auto preferring a node's healthy agent), follows the
 * executors' reports and writes every state change through the store.
 *
 * Thread model: every pw_engine_* call is safe from any thread (API handlers call them concurrently).
 * The engine runs one loop thread (all task state changes happen there or in pw_engine_cancel, under
 * the engine lock, fed by an event queue that the node informer and the executors' reports only
 * append to); the executors have their own threads for the network, so the loop never blocks on it.
 *
 * Locks, in the order they may be taken: the store-write lock -> the engine lock -> executor locks
 * (executor.h) -> the event queue's lock. No store call (nor any other network call) runs under the
 * engine lock: a write takes a snapshot of the changed records under it (clearing their dirty marks),
 * writes with it released (holding only the store-write lock, so writes never overlap and land in
 * snapshot order), and under it again marks dirty whatever failed; a change made meanwhile marks its
 * record again, so an older write never passes for a newer change. What the API acknowledged is
 * durable before the answer: pw_engine_submit writes before it queues, pw_engine_cancel answers after
 * its write. Executors hear of a round's decisions only after the round's writes passed.
 *
 * Where state becomes final (one place each, for hooks such as an event stream), all in engine.c: a
 * node's end is pw_eng_node_finish (succeeded, failed; cancelled: pw_eng_task_cancel), a task's end
 * is task_end (called by task_maybe_finish and pw_eng_task_cancel), a task's start is the admission
 * in schedule(), a node's start is dispatch_node; each change is durable once the next pw_eng_flush
 * holding it returns without a failed write. The engine's files and their lock order in detail:
 * engine_int.h. */
#ifndef PW_ENGINE_H
#define PW_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/agentexec.h"
#include "engine/jobexec.h"
#include "engine/taskspec.h"
#include "k8s/k8s.h"
#include "store/store.h" /* PW_NODE_STATE_COUNT */

typedef struct pw_k8s_client pw_k8s_client; /* k8s/k8s.h */

/* ---- the engine ---- */

typedef struct pw_engine pw_engine;

/* Defaults for fields left 0/NULL in pw_engine_config (prewarmd's flags show the same values). */
#define PW_ENGINE_DEFAULT_NAMESPACE "prewarm"
#define PW_ENGINE_DEFAULT_MAX_NODES_IN_FLIGHT 500
#define PW_ENGINE_DEFAULT_MAX_RUNNING_TASKS 10

struct pw_engine_config {
    pw_k8s_client *client;    /* borrowed; required (the node informer; Job mode; agents' pull secrets) */
    pw_store *store;          /* borrowed; required */
    const char *namespace_;   /* where Jobs go (copied) */
    int max_nodes_in_flight;  /* global cap across tasks (0: the default above) */
    int max_running_tasks;    /* (0: the default) */
    int64_t batch_pause_ms;   /* strategy batch: pause between batches */
    int64_t not_ready_grace_ms;
    struct pw_jobexec_settings job; /* Job mode's settings (jobexec.h; copied) */
    struct pw_agentexec_settings agent; /* agent mode (agentexec.h): off unless agent.enabled */
    const char *instance;     /* this prewarmd's identity (copied; NULL or "": "default"): Jobs carry the
                               * label prewarm.io/instance=<it>, and the informers, adoption and the
                               * start-up sweep see only Jobs with it, so two prewarmds with their own
                               * stores can share a namespace */
    int64_t history_ms;       /* finished tasks older than this are pruned from the store (at start and
                               * every min(60 s, history/2)); 0: never */
    /* Makes the executor of mode ("job", and "agent" when agent.enabled), in that order, with the
     * engine's hooks: 0 and *out (the engine frees it), or a PW_E* that fails pw_engine_new. NULL:
     * Job mode (jobexec.h) and agent mode (agentexec.h). For tests (tests/unit/engine/fakeexec.h). */
    int (*executor_new)(void *arg, const char *mode, const struct pw_exec_hooks *hooks, pw_executor **out);
    void *executor_arg;
    /* Leader election (ha.h; docs/ha.md). NULL: this engine always leads (one replica). Else it starts
     * as a follower and leads only while may_lead(arg) says true, asked before every round, before
     * every store write of a round and before every Kubernetes write of its executors (so a replica
     * whose Lease lapsed acts no more). A follower keeps no task in memory and runs no executor:
     * creates only go to the store, cancels become a request in the store. Gaining leadership is a
     * restart resume (every unfinished task reloaded, running nodes' Jobs adopted); losing it drops
     * the tasks from memory and stops the executors, leaving Jobs as they are. While leading, the
     * store is rescanned every PW_ENGINE_PICKUP_MS (and at once after a local create) for tasks and
     * cancels other replicas stored. Agent mode (agent.enabled) is refused with it (PW_EINVAL). The
     * hook is called from the loop thread and the executors' threads: quick, never blocking. With it
     * the executors are made anew at each takeover, so job's strings are borrowed for the engine's
     * life instead of copied. */
    bool (*may_lead)(void *arg);
    void *may_lead_arg;
    const char *cluster;      /* the name of client's cluster (copied; NULL: "default", whose nodes keep
                               * their plain names: docs/multicluster.md) */
    int64_t cluster_unreachable_timeout_ms; /* a cluster down this long fails its unfinished nodes
                                             * (ClusterUnreachable); 0: 5 minutes */
};
#define PW_ENGINE_PICKUP_MS 1000
#define PW_ENGINE_HANDOFF_MS 10000

/* Creates the engine and its executors (no thread yet). PW_EINVAL without a store or a client.
 * *out: free with pw_engine_free. */
int pw_engine_new(const struct pw_engine_config *cfg, pw_engine **out);
/* Reloads the store's unfinished tasks (pending ones queue again; running ones keep their node
 * results, their running nodes' Jobs are adopted: the create is repeated, 409 AlreadyExists adopts
 * the Job, which the informers then track), then starts the informers (when there is a client), the
 * loop and the executors. Returns at once; the node informer syncs in the background (see
 * pw_engine_ready). A task that cannot be reloaded is logged and left in the store as it is.
 * On failure (an informer or a thread that cannot start) nothing is left behind: no resumed task in
 * memory, no informer or thread running; the engine can only be freed. */
int pw_engine_start(pw_engine *e);
/* Stops the threads and informers, leaving Jobs in the cluster as they are, and frees. NULL no-op. */
void pw_engine_free(pw_engine *e);
/* With may_lead: look at leadership now rather than at the next round (call it from the elector's
 * change hook). Any thread. */
void pw_engine_wake(pw_engine *e);
/* With may_lead: whether the engine acts as the leader now (it took over and has not stepped down).
 * Without: always true. */
bool pw_engine_leading(pw_engine *e);
/* Diagnostics (tests, benchmarks): entries in the node cache's intern table of label values and image
 * names. Bounded by about twice the distinct values the cached nodes hold now, whatever the churn. */
size_t pw_engine_intern_size(pw_engine *e);
/* The first cluster's agent executor (borrowed), or NULL when agent mode is off. Every cluster has
 * its own agent executor: the API reaches them with pw_engine_agents_hold. */
pw_executor *pw_engine_agents(pw_engine *e);
/* One cluster's agent side, held for one agent's sync (docs/multicluster.md): its agent executor
 * and its Kubernetes client, to review the agent's token with that cluster's TokenReview. */
struct pw_engine_agents_ref {
    pw_executor *x;        /* the cluster's agent executor (borrowed until the release) */
    pw_k8s_client *client; /* the cluster's client (borrowed until the release) */
    const char *cluster;   /* its name (borrowed until the release) */
    bool first;            /* the first cluster (cfg.client's) */
    void *hold;            /* private */
};
/* Holds the agent side of cluster (NULL: the first cluster) until pw_engine_agents_release; a
 * removal of the cluster waits for every release, so hold only for the length of a request. 0;
 * PW_ENOTFOUND for a cluster the engine does not serve; PW_EUNAVAIL when agent mode is off or the
 * cluster has not started. Any thread; never blocks. */
int pw_engine_agents_hold(pw_engine *e, const char *cluster, struct pw_engine_agents_ref *out);
/* Ends a hold (*ref is cleared). A cleared ref is a no-op. */
void pw_engine_agents_release(pw_engine *e, struct pw_engine_agents_ref *ref);
/* Every cluster's agents (GET /api/v1/agents): {"items": [pw_agentexec_list's items, each with
 * "cluster"]}, by cluster in configuration order, then by node (caller decrefs). */
json_t *pw_engine_agents_list(pw_engine *e);
/* True when the node informer has synced; else false and *why (static text) says what is missing. */
bool pw_engine_ready(pw_engine *e, const char **why);

/* Creates a task from spec (takes ownership of its contents, *spec is left empty): commits it to the
 * store and queues it. On success *task_out (caller decrefs) is the task as the API shows it.
 * Fails only when the store write fails (PW_EIO, PW_EUNAVAIL, ...: nothing was queued, a retry may
 * pass); a spec that pw_taskspec_parse made is never refused. */
int pw_engine_submit(pw_engine *e, struct pw_taskspec *spec, json_t **task_out);
/* Cancels: stops dispatch, deletes in-flight Jobs, marks the task and its unfinished nodes cancelled.
 * On a follower (may_lead) the cancel is stored as a request the leader applies; the call waits up to
 * PW_ENGINE_HANDOFF_MS for the task to show cancelled in the store, else PW_EUNAVAIL (the request
 * stays and is applied once a leader picks it up).
 * Idempotent on a cancelled task (0). PW_ENOTFOUND; PW_ECONFLICT when it already finished otherwise.
 * Returns after the cancelled task is written; when that write fails, the store's PW_E* (the task
 * stays cancelled in memory, and the loop or a repeated cancel writes it). *task_out (may be NULL)
 * gets the task as written. Blocks on the store (never holding the engine lock meanwhile). */
int pw_engine_cancel(pw_engine *e, const char *id, json_t **task_out);
/* Reads: get and the lists read the store, not the loop's memory, so they never wait for the engine
 * lock; what they show may lag the loop by one round (a change is visible once that round wrote it). */
/* The task as the API shows it (caller decrefs); PW_ENOTFOUND. */
int pw_engine_get_task(pw_engine *e, const char *id, json_t **out);
/* {"items":[...], "continue":"TOKEN"?}; PW_EINVAL for a bad token. status NULL: any. limit 0: all. */
int pw_engine_list_tasks(pw_engine *e, const char *status, size_t limit, const char *cont, json_t **out);
/* {"items":[node results], "continue"?}; PW_ENOTFOUND when the task does not exist. */
int pw_engine_list_nodes(pw_engine *e, const char *id, const char *state, size_t limit, const char *cont,
                         json_t **out);

/* ---- clusters (docs/multicluster.md) ----
 * The engine starts with one cluster, cfg.client's (named cfg.cluster). More can be added and removed
 * at any time; each has its own node cache, executors (Job mode; agent mode with its own agents,
 * whose tokens that cluster reviews) and in-flight cap, and the engine never holds its lock across a call to any of them. A task
 * spans the clusters its spec picks (clusters, clusterSelector over the clusters' labels; default:
 * all), selects nodes within each and is scheduled per cluster (batchSize and the caps apply per
 * cluster). */
struct pw_engine_cluster {
    const char *name;         /* a DNS-1123 label (copied) */
    const json_t *labels;     /* object of strings, or NULL (copied) */
    pw_k8s_client *client;    /* borrowed: must outlive the cluster's removal (or the engine) */
    int max_nodes_in_flight;  /* this cluster's cap (0: the engine's; never above it) */
    /* when the cluster became unreachable (monotonic ms), 0 while it is reachable; NULL: always
     * reachable. Called with the engine lock held: must not block. */
    int64_t (*down_since)(void *arg);
    void *arg;
};
/* Adds a cluster (its informer and executors start now if the engine runs), or, for a name already
 * there with the same client, updates its labels, cap and reachability hook. PW_EEXIST for a name
 * already there with another client, PW_EINVAL for a bad name, or the informer's PW_E*. */
int pw_engine_cluster_set(pw_engine *e, const struct pw_engine_cluster *c);
/* Removes a cluster: its tasks' unfinished nodes there fail (ClusterRemoved), its informer and
 * executors stop (its Jobs stay in the cluster). PW_ENOTFOUND; PW_EINVAL for the first cluster.
 * Returns once nothing of the engine uses its client any more. */
int pw_engine_cluster_remove(pw_engine *e, const char *name);
bool pw_engine_cluster_known(pw_engine *e, const char *name);
/* The clusters as the engine sees them: [{"name","labels","synced","nodes","readyNodes","agents",
 * "nodesInFlight","reachable"}] (caller decrefs). */
json_t *pw_engine_clusters(pw_engine *e);

/* pw_engine_list_nodes of cluster's nodes only (the default cluster's: those without a "cluster"
 * field). */
int pw_engine_list_cluster_nodes(pw_engine *e, const char *id, const char *cluster, const char *state, size_t limit,
                                 const char *cont, json_t **out);

/* ---- observing (the event stream, metrics: cmd/prewarmd.c wires them) ---- */

enum pw_engine_change {
    PW_ENGINE_TASK_CHANGED, /* doc: the task as the API shows it (created, progress, status) */
    PW_ENGINE_NODE_DONE,    /* doc: a node result that reached its final state */
};
typedef void (*pw_engine_observer)(void *arg, enum pw_engine_change what, const char *task_id, const json_t *doc);
/* Sets the one observer (call before pw_engine_start; fn NULL: none). It is told of each change
 * once the store holds it (so what it is told never runs ahead of what GET shows), on the loop
 * thread or an API thread (submit, cancel), possibly with the engine lock held: it must be quick,
 * must not block and must not call the engine. task_id and doc are borrowed for the call. */
void pw_engine_set_observer(pw_engine *e, pw_engine_observer fn, void *arg);

/* ---- the node cache, for the policy controller (src/policy) ----
 * Sets the one node hook (call before pw_engine_start; fn NULL: none): told of every event of the
 * node informer (the trimmed node, and the old one on MODIFIED), on the informer's thread; it must be
 * quick and must not call the engine. */
void pw_engine_set_node_hook(pw_engine *e, pw_k8s_informer_fn fn, void *arg);
/* Sets the one raw node hook (before pw_engine_start; fn NULL: none): sees each node of the first
 * cluster as the API server sent it, before the cache trims it (status.images with sizes: the
 * predictor's), on the informer's thread; quick, must not call the engine. */
void pw_engine_set_node_raw_hook(pw_engine *e, void (*fn)(void *arg, const json_t *node), void *arg);
/* fn for every cached node (under the cache's lock: fn must not call the engine); nothing before
 * pw_engine_start. */
void pw_engine_each_node(pw_engine *e, int (*fn)(void *arg, const json_t *node), void *arg);
/* The trimmed node of name (a new reference), or NULL. */
json_t *pw_engine_node_get(pw_engine *e, const char *name);

/* What the engine holds now (for /metrics): its unfinished tasks by status, their nodes by state,
 * the nodes in flight and their cap. Takes the engine lock briefly. */
struct pw_engine_stats {
    size_t tasks_pending, tasks_running; /* pending: queued, waiting for admission */
    size_t nodes_pending, nodes_running, nodes_succeeded, nodes_failed, nodes_skipped, nodes_cancelled;
    size_t max_nodes_in_flight; /* the cap (running nodes are the ones in flight) */
};
void pw_engine_stats(pw_engine *e, struct pw_engine_stats *out);
/* The same per cluster (the metrics' cluster label): the nodes of the unfinished tasks in the
 * cluster by state (indexed by enum pw_node_state), and the cluster's cap on nodes in flight (its
 * own, never above the engine's). */
struct pw_engine_cluster_stats {
    char name[64];
    size_t nodes[PW_NODE_STATE_COUNT];
    size_t max_nodes_in_flight;
};
/* One entry per cluster in configuration order: the count, and *out (caller frees with free()).
 * Takes the engine lock briefly. */
size_t pw_engine_cluster_stats(pw_engine *e, struct pw_engine_cluster_stats **out);

#endif
