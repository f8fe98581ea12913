/* nodeselect.h: node selection for a task. Of the node cache's nodes a task takes those its
 * nodeSelector, labelSelector and nodeNames match (ANDed) and, unless the task includes them, only
 * Ready and schedulable ones; per node, an image is skipped when the node already holds it (its
 * status.images or, when an agent executor is given, what the node's agent reports) and the pull
 * policy is IfNotPresent. A node holding every image is skipped at once. Nodes named in nodeNames
 * that do not exist are no error: the task's note says so.
 *
 * Thread model: none of its own; the engine calls it with its lock held (it takes the node cache's
 * lock while it walks the cache, and the agent executor's for its inventory). */
#ifndef PW_ENGINE_NODESELECT_H
#define PW_ENGINE_NODESELECT_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/executor.h"
#include "engine/nodecache.h"
#include "engine/taskrec.h"

/* Selects t's nodes from nodes (borrowed): t->nodes (sorted by name, each marked dirty), t->counts,
 * t->note and t->message; agent (borrowed, may be NULL) adds its inventory to what a node holds. A
 * labelSelector the spec holds only as text fails the task closed (no node selected, status failed,
 * message saying why). */
void pw_nodeselect_task(struct task *t, pw_nodecache *nodes, pw_executor *agent);

/* One cluster to select from (docs/multicluster.md): its name, node cache and agent executor
 * (borrowed; nodes NULL: the cluster cannot be read now, failed says why: it enters t->cl failed,
 * with no node). */
struct pw_nodeselect_src {
    const char *cluster;
    pw_nodecache *nodes;
    pw_executor *agent;
    const char *failed;
};
/* pw_nodeselect_task over several clusters: t->cl gets one entry per src, in order, and each node's
 * key is pw_nodekey_make(cluster, name); nodeNames are plain names, looked up in every cluster. */
void pw_nodeselect_clusters(struct task *t, const struct pw_nodeselect_src *src, size_t n);

/* Readiness over time: the nodes NotReady now and since when (monotonic ms), so that a node NotReady
 * past the grace period fails its running work while one that recovers within it goes on. */
struct pw_notready {
    struct pw_notready_node {
        char *name;
        int64_t since_mono;
    } *v;
    size_t n;
};
/* Records node name's readiness at now: a node that becomes NotReady starts its grace, a Ready (or
 * deleted: ready true) one leaves the set. */
void pw_notready_set(struct pw_notready *nr, const char *name, bool ready, int64_t now);
/* fn(arg, name) for every node whose grace has ended at now (called again each time until it is
 * Ready or deleted); returns the earliest time a grace ends later (0: none). */
int64_t pw_notready_due(struct pw_notready *nr, int64_t now, int64_t grace_ms, void (*fn)(void *arg, const char *name),
                        void *arg);
void pw_notready_fini(struct pw_notready *nr);

#endif
