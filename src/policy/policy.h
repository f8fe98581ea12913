/* policy.h: standing policies (issue 14, docs/policies.md): a policy keeps its images on every node
 * its selectors match, continuously. The controller behind this header is fed by the engine's node
 * informer (pw_policy_node_event) and by the engine's observer (pw_policy_observe); every wave it
 * decides is a normal task created through the engine with "policy": NAME on it, so progress,
 * results, events and metrics work as for any task:
 *   - a matching node that appears, or becomes Ready and schedulable, is warmed within seconds
 *     (nodes that join together, within the coalescing window, share one task);
 *   - a node whose labels change into the selectors is warmed; one that leaves them is forgotten;
 *   - every refreshInterval one refresh task pulls the images again with pullPolicy Always over the
 *     matching nodes, rolling at batchSize;
 *   - untaintWhenDone: once a node's wave succeeded, the named NoSchedule taint is removed from it
 *     (a JSON patch of the Node, guarded by its resourceVersion);
 *   - a policy may carry "predict": {...}: its fields belong to the predictor (below), which also
 *     names images per node; they are warmed together with the policy's static images.
 * Specs are records of kind "policy" in the store, the controller's progress (which nodes are warm,
 * the tasks in flight, the last refresh) records of kind "policy-state", both keyed by the name, so
 * a restart keeps both.
 *
 * Thread model: every pw_policy_* call is safe from any thread. The controller runs one thread of
 * its own (pw_policy_start); pw_policy_node_event and pw_policy_observe only append to its queue
 * (one short lock, taken last), so they may be called with any other lock held, as the engine
 * does. Store writes, task creation and Kubernetes calls are made with the controller's lock
 * released. */
#ifndef PW_POLICY_H
#define PW_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/engine.h"
#include "engine/taskspec.h"
#include "k8s/k8s.h"

typedef struct pw_policy pw_policy;
typedef struct pw_store pw_store; /* store/store.h */

/* ---- the predictor hook (prediction from history plugs in here) ----
 * check: validates a policy's "predict" object (borrowed): 0 when it is fine, else non-zero with
 *   *field (e.g. "predict.maxBytesPerNode") and *msg set, both for the caller to free with free().
 *   Called on API threads, possibly several at once.
 * images_for_node: the images to warm on node_name (labels borrowed) for that predict spec: a new
 *   JSON array of image reference strings (may be empty; NULL counts as empty), which the caller
 *   decrefs. Called on the controller's thread, without its lock held; must not block for long.
 * ud: the predictor's own state, passed back to both. */
struct pw_policy_predictor {
    int (*check)(void *ud, const json_t *predict_spec, char **field, char **msg);
    json_t *(*images_for_node)(void *ud, const json_t *predict_spec, const char *node_name, const json_t *node_labels);
    void *ud;
};
/* Sets the predictor (copied; NULL: none). Without one, a policy carrying "predict" is refused with
 * 400 "predict: prediction is not enabled". Call before pw_policy_start (policies reloaded from the
 * store are checked with it) or at any time after; it applies to what comes next. */
void pw_policy_set_predictor(pw_policy *pc, const struct pw_policy_predictor *pred);

/* ---- what the controller acts on ----
 * A seam: NULL in the config means the engine's and the Kubernetes client's (below); the unit tests
 * pass fakes. Every function is called on the controller's thread: submit, task_nodes, task_get and
 * untaint without the controller's lock held, the node cache's three with it held (they must not
 * call the controller). */
struct pw_policy_env {
    /* pw_engine_submit: takes the spec's contents; 0 and *task_out (caller decrefs) */
    int (*submit)(void *arg, struct pw_taskspec *spec, json_t **task_out);
    /* pw_engine_list_nodes of one task, every page: {"items": [node results]}; PW_ENOTFOUND */
    int (*task_nodes)(void *arg, const char *task_id, json_t **out);
    /* pw_engine_get_task */
    int (*task_get)(void *arg, const char *task_id, json_t **out);
    /* the node cache: every node (fn returns non-zero to stop), one node (a new reference or NULL),
     * and whether the cache has synced */
    void (*node_each)(void *arg, int (*fn)(void *fnarg, const json_t *node), void *fnarg);
    json_t *(*node_get)(void *arg, const char *name);
    bool (*nodes_synced)(void *arg);
    /* removes the NoSchedule taint key from node: 0 (also when it had none), else a PW_E* with *why
     * (caller frees) */
    int (*untaint)(void *arg, const char *node, const char *key, char **why);
    void *arg;
};

#define PW_POLICY_DEFAULT_COALESCE_MS 500
#define PW_POLICY_DEFAULT_RETRY_MS 60000
#define PW_POLICY_DEFAULT_RESCAN_MS 30000

struct pw_policy_config {
    pw_store *store;           /* borrowed; required */
    pw_engine *engine;         /* borrowed; required unless env is given */
    pw_k8s_client *client;     /* borrowed; for untaintWhenDone (NULL: untaint fails and says so) */
    const struct pw_policy_env *env; /* NULL: the engine's (copied) */
    int64_t coalesce_ms;       /* a joining node waits this long for others to share its task (0: default) */
    int64_t retry_ms;          /* a node whose wave failed is tried again after this (0: default) */
    int64_t rescan_ms;         /* a full pass over the node cache this often, besides the events (0: default) */
};

/* Creates the controller (no thread yet). PW_EINVAL without a store, or without engine and env.
 * *out: free with pw_policy_free. */
int pw_policy_new(const struct pw_policy_config *cfg, pw_policy **out);
/* Loads the policies and their progress from the store (a record that no longer validates is logged
 * and left alone), settles the tasks that ended while prewarmd was down, and starts the thread.
 * PW_E* of the store or of the thread; then nothing runs. */
int pw_policy_start(pw_policy *pc);
/* Stops the thread (no engine call after it returns; the feeds below may still be called). Call
 * before the engine is freed. Idempotent; NULL: no-op. */
void pw_policy_stop(pw_policy *pc);
/* Stops the thread and frees; tasks already created go on in the engine. Call after the engine is
 * freed (its hooks feed the controller until then). NULL: no-op. */
void pw_policy_free(pw_policy *pc);

/* ---- the API (src/api/policies.c) ----
 * Requests are JSON objects (borrowed). Policies are shown as their spec with defaults plus
 * "status" (coverage: matchingNodes, warmNodes (nodes holding every image by the policy's last
 * wave), pendingNodes, inflightNodes, failedNodes, lastRefresh, nextRefresh, currentTask) and
 * createdAt/updatedAt. */
/* Creates: 0 and *out (caller decrefs); PW_EINVAL with errs filled (unknown fields, bad values,
 * a name that exists: field "name"); a store failure's PW_E* (nothing was created). */
int pw_policy_create(pw_policy *pc, const json_t *req, struct pw_field_errors *errs, json_t **out);
/* Replaces the spec of name (the request's name, when given, must be the same): the progress is
 * kept, except that nodes warmed for other images or outside the new selectors are not warm any
 * more. PW_ENOTFOUND, PW_EINVAL (errs), or the store's PW_E*. */
int pw_policy_update(pw_policy *pc, const char *name, const json_t *req, struct pw_field_errors *errs, json_t **out);
/* One policy (caller decrefs); PW_ENOTFOUND. */
int pw_policy_get(pw_policy *pc, const char *name, json_t **out);
/* {"items": [policies by name]} (caller decrefs). */
int pw_policy_list(pw_policy *pc, json_t **out);
/* Deletes the policy and its progress; its tasks in flight go on. PW_ENOTFOUND, or the store's PW_E*. */
int pw_policy_delete(pw_policy *pc, const char *name);

/* ---- feeds ----
 * The node informer's events (a pw_k8s_informer_fn; arg is the pw_policy). Quick, never blocks. */
void pw_policy_node_event(void *arg, enum pw_k8s_event type, const json_t *obj, const json_t *old);
/* The engine's observer's arguments (pw_engine_observer): which tasks and nodes finished. Quick. */
void pw_policy_observe(pw_policy *pc, enum pw_engine_change what, const char *task_id, const json_t *doc);

/* One round of the controller at now (monotonic ms) on the calling thread: what the thread does
 * each time it wakes. For unit tests, which drive a controller that was never started. */
void pw_policy_tick(pw_policy *pc, int64_t now_mono);

#endif
