/* nodecache.h: the engine's cache of the cluster's Nodes: one informer (list + watch) over
 * /api/v1/nodes whose transform keeps only what selection reads (name, labels, readiness,
 * cordon, the names of the images held), with the label values and image names that repeat across
 * nodes interned (one shared string each, the table bounded by the live values), so 5,000 nodes of
 * a pool cost one copy of their common values.
 *
 * Thread model: every call is safe from any thread. on_event runs on the informer's thread with no
 * lock of the cache held (it may read the cache). */
#ifndef PW_ENGINE_NODECACHE_H
#define PW_ENGINE_NODECACHE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "k8s/k8s.h"

typedef struct pw_nodecache pw_nodecache;

/* Sees every node as the API server sent it, before it is trimmed (the informer's thread; quick). */
typedef void (*pw_nodecache_raw_fn)(void *arg, const json_t *node);

/* Starts the informer (it syncs in the background); raw (may be NULL) sees each untrimmed node.
 * 0, or the informer's PW_E* (nothing runs). *out: free with pw_nodecache_free. */
int pw_nodecache_start(pw_k8s_client *client, pw_k8s_informer_fn on_event, void *arg, pw_nodecache_raw_fn raw,
                       void *raw_arg, pw_nodecache **out);
/* Stops the informer (no event after it returns) and frees. NULL: no-op. */
void pw_nodecache_free(pw_nodecache *nc);
bool pw_nodecache_synced(pw_nodecache *nc);
/* The trimmed node of name (a new reference), or NULL. */
json_t *pw_nodecache_get(pw_nodecache *nc, const char *name);
/* fn for every cached node (under the cache's lock: fn must not call back into the cache); a
 * non-zero return stops the walk. */
void pw_nodecache_each(pw_nodecache *nc, int (*fn)(void *arg, const json_t *node), void *arg);
/* Entries in the intern table now (tests and benchmarks): about twice the distinct values the
 * cached nodes hold at most, whatever the churn. */
size_t pw_nodecache_intern_size(pw_nodecache *nc);

/* Whether node (a Node, trimmed or not) is Ready / cordoned (spec.unschedulable). */
bool pw_nodecache_ready(const json_t *node);
bool pw_nodecache_cordoned(const json_t *node);

#endif
