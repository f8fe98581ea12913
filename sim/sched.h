/* sched.h: kubesim's scheduler (sched.c, its pure parts in sched_pred.c): pods without spec.nodeName (schedulerName default-scheduler)
 * are bound to a node the way kube-scheduler's default profile does it: the filters NodeUnschedulable,
 * TaintToleration, NodeAffinity (nodeSelector + requiredDuringScheduling) and NodeResourcesFit (cpu,
 * memory, pods against status.allocatable), then scoring (least allocated, balanced allocation, image
 * locality, PreferNoSchedule taints, preferred node affinity); the binding as the pods/binding
 * subresource does it (spec.nodeName, PodScheduled True), or PodScheduled False / Unschedulable with
 * the real "0/N nodes are available: ..." message and a FailedScheduling Event, retried with back-off
 * when nodes or pods change.
 *
 * The pure parts (quantities, requests, predicates, the message) are here for the unit tests; the
 * world's hooks at the end. Thread model: the hooks run on the world thread with world->lock held;
 * sim_sched_bind may be called from any thread (it only writes through the store). */
#ifndef SIM_SCHED_H
#define SIM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sim/sim.h"

/* Resources as the scheduler counts them: cpu in millicores, memory in bytes, pods. */
struct sim_res {
    int64_t milli_cpu;
    int64_t memory;
    int64_t pods;
};

/* Parses a Kubernetes quantity ("500m", "1.5", "128Mi", "1G", "1e3"): *out gets its value times 1000
 * when milli (cpu), else its value, rounded up as resource.Quantity's Value/MilliValue do. PW_EINVAL
 * for text that is not a quantity. */
int sim_quantity_parse(const char *text, bool milli, int64_t *out);
/* The pod's effective requests (max of the sum of app containers and each init container; a missing
 * request defaults to the limit, as the API server's defaulting does); pods = 1. */
void sim_sched_pod_requests(const json_t *pod_spec, struct sim_res *out);
/* A node's status.allocatable (cpu, memory, pods; absent: 0). */
void sim_sched_node_allocatable(const json_t *node, struct sim_res *out);

/* True when one of tols tolerates taint (key/operator Equal|Exists/value/effect, as the API's
 * ToleratesTaint). */
bool sim_sched_tolerates(const json_t *tols, const json_t *taint);
/* True when the node's labels satisfy the pod's spec.nodeSelector and
 * affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution (terms ORed; matchExpressions
 * In, NotIn, Exists, DoesNotExist, Gt, Lt ANDed; matchFields metadata.name In/NotIn). node_name for
 * matchFields. */
bool sim_sched_affinity_match(const json_t *pod_spec, const json_t *labels, const char *node_name);

/* A NodeSelectorTerm: every expression and field requirement holds; an empty term matches nothing. */
bool sim_sched_term_matches(const json_t *term, const json_t *labels, const char *node_name);
/* Sets (or replaces) the PodScheduled condition of obj's status (a pod); false when it already was so
 * (status, reason and message); the transition time moves only when the status does. */
bool sim_sched_set_scheduled(json_t *obj, bool ok, const char *reason, const char *msg);

/* Why a node does not fit, one bit each (NodeResourcesFit may set several). */
enum {
    SIM_SF_UNSCHEDULABLE = 1 << 0, /* "node(s) were unschedulable" */
    SIM_SF_TAINT = 1 << 1,         /* "node(s) had untolerated taint {k: v}" */
    SIM_SF_AFFINITY = 1 << 2,      /* "node(s) didn't match Pod's node affinity/selector" */
    SIM_SF_CPU = 1 << 3,           /* "Insufficient cpu" */
    SIM_SF_MEMORY = 1 << 4,        /* "Insufficient memory" */
    SIM_SF_PODS = 1 << 5,          /* "Too many pods" */
};
/* Runs the filters in the default profile's order on one node (the object), stopping at the first
 * that fails: 0 when the pod fits, else the SIM_SF_* bits; for SIM_SF_TAINT the taint as the message
 * shows it ("{key: value}") into taint (taint_size > 0). req: the pod's requests; used: what the node's
 * pods request already. */
int sim_sched_filter(const json_t *pod_spec, const json_t *node, const struct sim_res *req, const struct sim_res *used,
                     char *taint, size_t taint_size);

/* The FitError message builder: add each node's filter result, then take the text. */
struct sim_fit_msg;
struct sim_fit_msg *sim_fit_msg_new(void);
void sim_fit_msg_add(struct sim_fit_msg *m, int bits, const char *taint);
/* "0/N nodes are available: <count reason>, ... (sorted). preemption: 0/N nodes are available: ..."
 * for N nodes (N = 0: "no nodes available to schedule pods"). Caller frees. Frees m. */
char *sim_fit_msg_take(struct sim_fit_msg *m, int nnodes);

/* Binds pod ns/name to node as the pods/binding subresource does: spec.nodeName set, condition
 * PodScheduled True, annotations (may be NULL) copied onto the pod. uid (may be NULL): the pod must have
 * it. Returns 0; PW_ENOTFOUND (no such pod), PW_ECONFLICT (already assigned, or being deleted) with *msg
 * the real message (caller frees; msg may be NULL). The node is not checked, as the real API does not. */
int sim_sched_bind(sim_store *store, const char *ns, const char *name, const char *uid, const char *node,
                   const json_t *annotations, char **msg);

/* ---- the world's hooks (world thread, world->lock held) ---- */
struct sim_world;
struct sim_change;
void sim_sched_on_pod(struct sim_world *w, const struct sim_change *ch);
void sim_sched_on_node(struct sim_world *w, const struct sim_change *ch);
void sim_sched_timer(struct sim_world *w, const char *key);
/* The node's labels (borrowed until the next hook), or NULL when the scheduler does not know it. */
const json_t *sim_sched_node_labels(struct sim_world *w, const char *name);
void sim_sched_fini(struct sim_world *w);

#endif
