/* fleet.h: the clusters prewarmd serves, live (docs/multicluster.md). Each cluster has its own
 * kubeconfig, Kubernetes client (its own rate limiter), a prober thread (GET /version, with a
 * client of its own that does not retry, so the engine learns within seconds when a cluster stops
 * answering) and, once attached, its node cache and executors in the engine. The clusters file is
 * re-read on pw_fleet_request_reload (prewarmd's SIGHUP) and when it changes on disk; a
 * configuration that does not load (bad YAML, an unreadable kubeconfig, an unknown context, a
 * duplicate name) is refused as a whole and the running one stays.
 *
 * Thread model: every call is safe from any thread once pw_fleet_new returned. No lock of the fleet
 * is held across a network call: probers update their cluster's state under its own small lock,
 * and a reload loads everything new before it takes the fleet lock to swap. */
#ifndef PW_CLUSTER_FLEET_H
#define PW_CLUSTER_FLEET_H

#include <stdint.h>

#include <jansson.h>

#include "cluster/clusterconf.h"
#include "engine/engine.h"
#include "k8s/k8s.h"

typedef struct pw_fleet pw_fleet;

struct pw_fleet_opts {
    double qps;             /* a cluster's client rate unless its entry says (0: 50) */
    int burst;              /* (0: 100) */
    const char *file;       /* the clusters file (copied), or NULL */
    int64_t probe_ms;       /* between probes (0: 2000) */
    const char *user_agent; /* the clusters' clients' User-Agent (copied; NULL: the client's default) */
};

/* Loads every cluster of conf (taken: *conf is left empty) plus, with opts->file, the file's; the
 * first is the engine's first cluster. 0, or PW_EINVAL/PW_EIO with *errmsg (caller frees) saying
 * which cluster and why; nothing is left running then. *out: free with pw_fleet_free (after the
 * engine). */
int pw_fleet_new(struct pw_clusterconf *conf, const struct pw_fleet_opts *opts, pw_fleet **out, char **errmsg);
/* pw_fleet_new for prewarmd's flags: the --cluster ones (flags, taken) and opts->file, or, when
 * neither names a cluster, one cluster "default" from kubeconfig and context (either may be NULL:
 * the loading rules of pw_k8s_config_load). */
int pw_fleet_from_flags(struct pw_clusterconf *flags, const char *kubeconfig, const char *context,
                        const struct pw_fleet_opts *opts, pw_fleet **out, char **errmsg);
/* The first cluster: its name, client and configuration (borrowed, valid until pw_fleet_free). */
const char *pw_fleet_first_name(pw_fleet *f);
pw_k8s_client *pw_fleet_first_client(pw_fleet *f);
const pw_k8s_config *pw_fleet_first_config(pw_fleet *f);
/* Hands every cluster to the engine (made with the first cluster's client and name) and starts the
 * probers and the file watcher. 0 or a PW_E*. */
int pw_fleet_attach(pw_fleet *f, pw_engine *e);
/* Re-reads the clusters file now and applies it (clusters added, removed, relabelled). 0, or the
 * error (logged; *errmsg may be NULL) with the old configuration kept. */
int pw_fleet_reload(pw_fleet *f, char **errmsg);
/* Asks the watcher thread to reload (async-signal-safe: a SIGHUP handler may call it). */
void pw_fleet_request_reload(pw_fleet *f);
/* GET /api/v1/clusters: {"items":[{name, labels, reachable, serverVersion, nodes, readyNodes,
 * agents, nodesInFlight, lastError}], "reloadError"?} (caller decrefs). */
json_t *pw_fleet_json(pw_fleet *f);
/* pw_fleet_json as a callback of void * (pw_api_ctx.clusters). */
extern json_t *(*const pw_fleet_json_fn)(void *arg);
/* Stops the probers and the watcher, frees the clients. Call after pw_engine_free. NULL: no-op. */
void pw_fleet_free(pw_fleet *f);

#endif
