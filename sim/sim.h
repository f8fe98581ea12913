/* sim.h: what kubesim's two halves share: the options, the context, and the seams between the API
 * server (api.c, main.c: serving, REST semantics, discovery, watch, auth, deletion with finalizers and
 * propagation, the ownerReference garbage collector, /sim/v1/stats and /sim/v1/faults) and the world
 * (world.c and friends: nodes, the image catalogue, the registry/bandwidth model, the kubelets, the
 * Job controller with its TTL deletion, /sim/v1/truth, /sim/v1/bound and /sim/v1/nodes).
 *
 * Thread model: the context is created by main() before any thread starts and is read-only after,
 * except through the store and the objects' own locks. */
#ifndef SIM_SIM_H
#define SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http.h"
#include "sim/store.h"

/* Every kubesim flag lands here; main.c parses them from a table (defaults in brackets). */
struct sim_options {
    int nodes;                  /* --nodes N [3] */
    const char *listen;         /* --listen HOST:PORT [127.0.0.1:0] */
    const char *kubeconfig_out; /* --kubeconfig-out PATH (required) */
    const char *catalog;        /* --catalog FILE [the built-in default catalogue] */
    uint64_t seed;              /* --seed S [1] */
    bool insecure_http;         /* --insecure-http */
    const char *token;          /* --token T [random] : the bearer token the kubeconfig carries */
    int threads;                /* --threads N [4] : HTTP pool */
    size_t history;             /* --history N [100000] : changes kept for watches */
    /* the physical model */
    double registry_mbps;       /* --registry-bandwidth MB/s [1000] : registry egress, shared fairly */
    double node_mbps;           /* --node-bandwidth MB/s [200] : per-node download */
    int max_parallel_pulls;     /* --max-parallel-pulls N [1] : 1 = serializeImagePulls */
    double time_scale;          /* --time-scale X [1] : divides every modelled duration (faster runs) */
    int pod_start_ms;           /* --pod-start-latency MS [500] : kubelet sees pod -> ContainerCreating */
    int container_start_ms;     /* --container-start-latency MS [300] */
    int controller_ms;          /* --controller-latency MS [50] : Job controller reaction time */
    int arm64_percent;          /* --arm64-percent P [20] */
    int not_ready_nodes;        /* --not-ready N [0] : nodes that start NotReady */
    const char *namespaces;     /* --namespaces a,b [prewarm] : created at start besides default,
                                   kube-system, kube-public, kube-node-lease */
    bool agents;                /* --agents : run a simulated prewarm-agent for every Running pod of the
                                   agent DaemonSet (real src/agent code over the model's runtime) */
    const char *agents_daemonset; /* --agents-daemonset NAME [prewarm-agent] */
    bool no_token_node_info;    /* --no-token-node-info : pod-bound tokens carry no node claims (the
                                   node-name/node-uid extras), as before Kubernetes 1.30 */
    const char *token_auth_file; /* --token-auth-file PATH : static tokens (kube-apiserver's CSV) */
    const char *client_ca_file;  /* --client-ca-file PATH : more CAs whose client certificates authenticate */
    bool enforce_rbac;          /* --enforce-rbac : requests are authorized by the RBAC objects */
};

/* The per-process context, passed to every handler (as pw_http's ctx) and to the world. */
struct sim {
    struct sim_options opt;
    sim_store *store;
    struct sim_world *world; /* the world's private state (world.c) */
    struct sim_api *api;     /* the API server's private state (api.c) */
    uint64_t start_real_ms;
};

/* ---- the world, implemented in world.c and the files it uses ---- */

/* Loads the catalogue (opt.catalog or the built-in one), creates the initial nodes in the store and
 * starts the controllers' threads. On failure a negative PW_E* and a log line saying why. */
int sim_world_start(struct sim *sim);
/* Stops the controllers' threads and frees the world. */
void sim_world_stop(struct sim *sim);
/* Routes under /sim/v1/ that the world serves (truth, bound, nodes); ends with a NULL pattern. The API
 * server puts them in its table behind authentication. */
extern const struct pw_http_route sim_world_routes[];

/* ---- TLS material, generated at start by tls.c (OpenSSL) ---- */

/* PEM texts, all owned (free with sim_tls_fini). The server certificate is signed by the CA and valid
 * for 127.0.0.1, ::1 and localhost; the client certificate (CN "kubesim-admin", O "system:masters") too. */
struct sim_tls {
    char *ca_cert, *ca_key;
    char *server_cert, *server_key;
    char *client_cert, *client_key;
};
int sim_tls_generate(struct sim_tls *out);
void sim_tls_fini(struct sim_tls *t);

/* ---- the API server, implemented in api.c (and the files it uses) ---- */

/* The API server's ServiceAccount tokens (tokens.h), for the world's simulated agents. */
struct sim_tokens *sim_api_tokens(struct sim *sim);
/* A new v4 UUID into out. */
void sim_api_uid(char out[37]);

/* Builds the API state (sim->api) and starts serving on sim->opt.listen: HTTPS with tls (the token of
 * sim->opt.token or a client certificate signed by tls->ca_cert authenticate), or plain HTTP when tls is
 * NULL (--insecure-http; the token is still required). *out gets the server (its port tells where). */
int sim_api_start(struct sim *sim, const struct sim_tls *tls, pw_http_server **out);
/* Frees the API state; call after pw_http_server_free(). */
void sim_api_stop(struct sim *sim);

/* ---- the API server's services to the world, implemented in api.c ---- */

/* Records a Kubernetes Event (core/v1) about an object, as controllers and kubelets do: involved is the
 * object (borrowed; kind, name, namespace, uid are read from it), type "Normal" or "Warning", reason and
 * message as a real component writes them, component and host its source (host may be NULL),
 * field_path may be NULL (e.g. "spec.containers{c}"). Repeated identical events raise `count`. */
void sim_api_event(struct sim *sim, const json_t *involved, const char *type, const char *reason,
                   const char *message, const char *component, const char *host, const char *field_path);

/* Deletes an object as the API does for a client's DELETE with the given propagation policy
 * ("Background", "Foreground", "Orphan", or NULL for the resource's default): finalizers, foreground
 * deletion and ownerReference handling included. Used by the TTL controller and the garbage collector.
 * PW_ENOTFOUND when absent. */
int sim_api_delete(struct sim *sim, const char *resource, const char *ns, const char *name, const char *policy);

#endif
