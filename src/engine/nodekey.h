/* nodekey.h: a node's identity across clusters. Inside the engine (and as the store's node key) a
 * node of cluster C is "C/NAME" (a Node's name never holds '/'); a node of the cluster named
 * "default" is its plain NAME, so the single-cluster setup keeps its keys, results and store rows
 * as they were. Node results show nodeName NAME and, for the other clusters, "cluster": C.
 *
 * Thread model: pure functions. */
#ifndef PW_ENGINE_NODEKEY_H
#define PW_ENGINE_NODEKEY_H

#include <stdbool.h>
#include <stddef.h>

#define PW_CLUSTER_DEFAULT "default"

/* The key of node in cluster (a new string). */
char *pw_nodekey_make(const char *cluster, const char *node);
/* The node's own name within key (borrowed from key). */
const char *pw_nodekey_node(const char *key);
/* Whether key is a node of cluster. */
bool pw_nodekey_in(const char *key, const char *cluster);
/* The cluster of key into buf (cap bytes, truncated): "default" for a plain key. */
void pw_nodekey_cluster(const char *key, char *buf, size_t cap);

#endif
