/* predict.h: images predicted from history (issue 14, point 2). prewarmd learns which images the
 * workloads use per node pool from the pods that start on that pool's nodes, with exponential decay,
 * and for each node that joins a pool selects the cheapest set of images, in expected waste, that
 * gives its pods the target hit rate, under a per-node byte budget (rank.c says how). A policy with
 * "predict": {...} prewarms that selection on each node that joins its pool (through the policy
 * module's predictor hook).
 *
 * Two layers:
 *  - pw_predict_model: the pure model (observations, decay, sizes, pods per node, image sets, ranking,
 *    its JSON form). Not thread-safe: one caller at a time.
 *  - pw_predict: the service around it: a node informer (labels; status.images sizes), a pod
 *    informer trimmed to node, images and start time, the model behind a mutex, and persistence in
 *    the store's records (kind "predict": one record per pool, key "pool:<labelKey>=<value>", and
 *    "meta"), saved every save interval when changed and on free, restored by pw_predict_start.
 *
 * Pools: a pool is "<labelKey>=<value>" of a node label. Every pod is counted under each of the
 * tracked keys its node carries (the defaults PW_PREDICT_POOL_KEYS, plus the extra keys configured
 * or named by a policy's poolLabel), so a policy may name any tracked key; a node's default pool is
 * the first default key it carries.
 *
 * Per image of a pool: P(use), the decayed fraction of the pool's pods that used it; the pool's pods
 * per node k (decayed pods over decayed nodes, each node counted at its first pod); the node
 * probability q = k P / (1 + (k - 1) P) that some pod of a new node's life uses it (its pods a
 * geometric number with mean k, rank.c); expected benefit
 * q x pull time saved; expected waste (1 - q) x size.
 *
 * Pull time saved: sizeBytes / bandwidth, the size from the largest status.images sizeBytes any node
 * reports for the image (the kubelet's figure for the node's platform), the bandwidth the configured
 * per-node download rate; an image no node reports a size for counts as unknown_size_bytes.
 *
 * Thread model: pw_predict's functions may be called from any thread once it is started (the
 * informers' callbacks run on their threads and take the model's mutex). */
#ifndef PW_PREDICT_H
#define PW_PREDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "k8s/k8s.h"


typedef struct pw_store pw_store;           /* store/store.h */
typedef struct pw_predict_model pw_predict_model;
typedef struct pw_predict pw_predict;

/* The default pool label keys, in order of preference (a NULL-terminated array). */
extern const char *const PW_PREDICT_POOL_KEYS[];

#define PW_PREDICT_DEFAULT_HALF_LIFE_MS (24LL * 3600 * 1000)
#define PW_PREDICT_DEFAULT_BANDWIDTH_MBPS 100.0
#define PW_PREDICT_DEFAULT_UNKNOWN_SIZE (500LL * 1000 * 1000)
#define PW_PREDICT_DEFAULT_MIN_PROBABILITY 0.0
#define PW_PREDICT_DEFAULT_TARGET_HIT_RATE 0.8
#define PW_PREDICT_DEFAULT_MAX_IMAGES 10
#define PW_PREDICT_MAX_IMAGES_PER_POOL 1000 /* the least used go first past this */
#define PW_PREDICT_MAX_SETS_PER_POOL 1000   /* image sets: the least used go first past this */
#define PW_PREDICT_MAX_NODES_PER_POOL 10000 /* node names kept: the longest idle goes first past this */
#define PW_PREDICT_SELECT_SETS 256          /* the heaviest image sets the selection considers */

/* ---- the model ---- */

struct pw_predict_model_opts {
    int64_t half_life_ms;       /* > 0 (0: PW_PREDICT_DEFAULT_HALF_LIFE_MS) */
    double bandwidth_mbps;      /* per-node download, MB/s (<= 0: PW_PREDICT_DEFAULT_BANDWIDTH_MBPS) */
    int64_t unknown_size_bytes; /* the size of an image no node reports (<= 0: PW_PREDICT_DEFAULT_UNKNOWN_SIZE) */
};

/* What a ranking may select for one node. */
struct pw_predict_limits {
    int64_t max_bytes_per_node; /* 0: no budget */
    double min_probability;     /* images whose P(use) is below it are never selected */
    int max_images;             /* at most this many (<= 0: PW_PREDICT_DEFAULT_MAX_IMAGES) */
    double target_hit_rate;     /* 0..1: selection stops once a fresh node's pods would hit this often */
};

/* The defaults of a policy's "predict" object (pw_predict_parse_spec of {}). */
struct pw_predict_limits pw_predict_default_limits(void);

/* Free with pw_predict_model_free (NULL is a no-op). opts may be NULL (all defaults). */
pw_predict_model *pw_predict_model_new(const struct pw_predict_model_opts *opts);
void pw_predict_model_free(pw_predict_model *m);

/* Counts one pod that started at t_ms (wall clock) on node (NULL or "": not counted as a node) of pool
 * ("key=value"), using images[0..n-1] (normalised references; duplicates are counted once; together
 * they are one image set). Observations may arrive out of order. */
void pw_predict_model_observe(pw_predict_model *m, const char *pool, const char *node, const char *const *images,
                              size_t n, int64_t t_ms);
/* Records an image's size (the largest seen wins). */
void pw_predict_model_set_size(pw_predict_model *m, const char *image, int64_t bytes);
/* The probability that a pod of pool started at now_ms uses image (0 for an unknown pool or image). */
double pw_predict_model_probability(const pw_predict_model *m, const char *pool, const char *image, int64_t now_ms);
/* The pool's pods per node (>= 1; 1 while no node was counted; 0 for an unknown pool). */
double pw_predict_model_pods_per_node(const pw_predict_model *m, const char *pool);

/* The ranking of pool at now_ms, best expected benefit first, and which images lim selects for a new
 * node (rank.c: the cheapest in expected waste that reaches lim's target hit rate; a set over the
 * remaining budget is skipped, not the end). A new object (caller decrefs):
 * {"pool", "labelKey", "labelValue", "pods" (decayed pod count), "observations", "lastSeen",
 *  "halfLifeSeconds", "bandwidthMBps", "nodes", "podsPerNode", "limits": {...}, "selected": [refs in
 *  the order taken], "selectedBytes", "predictedHitRate" (of a fresh node's pods with the selection),
 *  "expectedWasteBytes", "images": [{"image", "probability", "nodeProbability", "sizeBytes", "sizeKnown",
 *  "pullSeconds", "benefitSeconds", "expectedWasteBytes", "observations", "lastSeen", "selected", "order"
 *  (1-based step, or null), "reason"}]}, or NULL when the model has no such pool. */
json_t *pw_predict_model_rank(const pw_predict_model *m, const char *pool, const struct pw_predict_limits *lim,
                              int64_t now_ms);
/* Every pool: a new array of {"pool", "pods", "observations", "images", "nodes", "podsPerNode", "lastSeen"}
 * by pool name. */
json_t *pw_predict_model_pools(const pw_predict_model *m, int64_t now_ms);
/* Pool ids whose value (after "=") is value: a new array of strings (for ?pool=VALUE). */
json_t *pw_predict_model_pools_named(const pw_predict_model *m, const char *value);

/* Persistence: the pool as a record document (a new object; NULL for an unknown pool), and the
 * reverse (replaces the pool named in doc; PW_EINVAL for a document that is not one). */
json_t *pw_predict_model_pool_doc(const pw_predict_model *m, const char *pool);
int pw_predict_model_load_pool(pw_predict_model *m, const json_t *doc);
/* Pools changed since the last call: a new array of pool ids, and the flags are cleared. */
json_t *pw_predict_model_take_dirty(pw_predict_model *m);
/* The latest pod start time observed in any pool (0 when none). */
int64_t pw_predict_model_watermark(const pw_predict_model *m);

/* ---- the policy's "predict" object ----
 * {"poolLabel": KEY (default: the node's first default key), "maxBytesPerNode": N (default: no budget),
 *  "minProbability": 0..1 (default 0), "maxImages": 1..100 (default 10), "targetHitRate": 0..1
 *  (default 0.8)}.
 * Parses spec (borrowed; NULL or {} gives the defaults). 0 and *lim / *pool_label (borrowed from
 * spec; NULL when absent) filled; PW_EINVAL with *field ("predict.maxImages", caller frees) and
 * *msg (caller frees) saying what is wrong with it ("must be an integer from 1 to 100"). */
int pw_predict_parse_spec(const json_t *spec, struct pw_predict_limits *lim, const char **pool_label, char **field,
                          char **msg);

/* The pool of a node with labels (borrowed): "key=value" for pool_label, or for the first default key
 * present when pool_label is NULL; NULL when the node has none (caller frees). */
char *pw_predict_pool_of(const json_t *labels, const char *pool_label);

/* ---- pods ---- */

/* A pod trimmed to what prediction needs, the form the pod informer caches: a new object
 * {"metadata": {"name": "ns/name"}, "n": nodeName, "i": "img1 img2" (the normalised images of the
 * init and app containers, once each, space-separated), "t": startTime in ms} ("n", "t" absent until
 * set), or NULL for a pod that never counts (prewarm's own Job pods, prewarm.io/task label). The
 * namespace rides in the name (the informer's cache key "ns/name" stays the same) and the images in
 * one string: two JSON containers fewer per pod (bench/predict_mem measures it). pod is borrowed. */
json_t *pw_predict_trim_pod(const json_t *pod);

/* ---- the service ---- */

struct pw_predict_config {
    pw_k8s_client *client;     /* borrowed; NULL: no informers (tests feed the model directly) */
    pw_store *store;           /* borrowed; NULL: nothing persisted */
    struct pw_predict_model_opts model;
    const char *extra_pool_keys; /* comma-separated label keys tracked besides the defaults (may be NULL) */
    int64_t save_interval_ms;  /* <= 0: 30 s */
    /* The nodes, from a node cache the caller already keeps (prewarmd: the engine's; pw_predict_node_event
     * is then fed the untrimmed nodes of the same informer): node_get gives one node (a new reference or NULL), synced
     * says whether the cache has listed. NULL node_get: the predictor watches nodes itself. */
    json_t *(*node_get)(void *arg, const char *name);
    bool (*nodes_synced)(void *arg);
    void *node_arg;
    /* Whether this replica may write the model to the store now (prewarmd --leader-elect: while it
     * leads, so replicas sharing a store do not overwrite each other's saves); it learns either way,
     * and what changed meanwhile is saved once it may. NULL: always. */
    bool (*may_save)(void *arg);
    void *may_save_arg;
};

/* Builds the service (copies cfg's strings) and restores the model from the store. 0 and *out
 * (free with pw_predict_free), or PW_EIO/PW_EUNAVAIL when the store cannot be read. */
int pw_predict_new(const struct pw_predict_config *cfg, pw_predict **out);
/* Starts the informers and the saver thread (nothing to start without a client). 0 or a PW_E* code. */
int pw_predict_start(pw_predict *p);
/* A node as the API server sent it, from the caller's node cache (cfg.node_get's informer; arg the
 * pw_predict): learns image sizes from status.images. Quick; any thread. */
void pw_predict_node_seen(void *arg, const json_t *node);
/* Stops the informers and the saver: no node_get call after it returns (pw_predict_node_event may
 * still be called). Idempotent; NULL is a no-op. */
void pw_predict_stop(pw_predict *p);
/* Stops (pw_predict_stop), saves what changed, frees. NULL is a no-op. */
void pw_predict_free(pw_predict *p);

/* Adds a label key to the tracked keys (a policy's poolLabel); pods seen from now on count under it.
 * Idempotent. */
void pw_predict_track_key(pw_predict *p, const char *key);
/* Counts a trimmed pod (pw_predict_trim_pod's form) on a node with labels (borrowed). The pod
 * informer's path, public for tests and the bench. */
void pw_predict_observe_pod(pw_predict *p, const json_t *trimmed, const json_t *node_labels);
/* Saves the changed pools now (the saver's work; nothing while cfg.may_save says no). 0 or the store's code. */
int pw_predict_save(pw_predict *p);

/* GET /api/v1/predictions: pool NULL -> {"pools": [...]}; pool "key=value" or a bare value -> the
 * ranking (pw_predict_model_rank) with lim (NULL: defaults). *out (caller decrefs) on 0; PW_ENOTFOUND
 * (no such pool) or PW_EINVAL (a bare value several pools carry) with *msg (caller frees). */
int pw_predict_query(pw_predict *p, const char *pool, const struct pw_predict_limits *lim, json_t **out,
                     char **msg);

/* The policy hook (policy.h's pw_policy_predictor; ud is the pw_predict):
 * check: pw_predict_parse_spec, and tracks the spec's poolLabel;
 * images_for_node: the selected images of the node's pool, a new array of strings (empty when the
 * node has no pool or the pool no history). */
int pw_predict_hook_check(void *ud, const json_t *predict_spec, char **field, char **msg);
json_t *pw_predict_hook_images_for_node(void *ud, const json_t *predict_spec, const char *node_name,
                                        const json_t *node_labels);

#endif
