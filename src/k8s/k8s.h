/* k8s.h: prewarm's Kubernetes client: configuration (kubeconfig, in-cluster), REST calls with a
 * client-side rate limiter and retries, and informers (list + watch + local cache + callbacks).
 * Objects are jansson values; no libcurl type appears here.
 *
 * Thread model: a pw_k8s_config is immutable after load and may be shared. A pw_k8s_client is safe to
 * use from any number of threads (one curl handle per thread inside; the rate limiter is shared). Each
 * informer runs its own thread; its callbacks run on that thread, one at a time, in event order. */
#ifndef PW_K8S_H
#define PW_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct pw_k8s_config pw_k8s_config;
typedef struct pw_k8s_client pw_k8s_client;
typedef struct pw_k8s_informer pw_k8s_informer;

/* ---- configuration ---- */

/* Loads the configuration the way kubectl does: path (may be NULL) is a kubeconfig file or a
 * colon-separated list; NULL means $KUBECONFIG, then ~/.kube/config, then the in-cluster service
 * account (KUBERNETES_SERVICE_HOST/PORT, /var/run/secrets/kubernetes.io/serviceaccount). context NULL
 * means current-context. On failure a negative PW_E* code, and *errmsg (when errmsg is not NULL) gets
 * a sentence for the operator that the caller frees with free(). *out: free with pw_k8s_config_free. */
int pw_k8s_config_load(const char *path, const char *context, pw_k8s_config **out, char **errmsg);
void pw_k8s_config_free(pw_k8s_config *cfg);
/* "https://host:port" (borrowed). */
const char *pw_k8s_config_server(const pw_k8s_config *cfg);
/* The context's namespace, or the service account's, or "default" (borrowed). */
const char *pw_k8s_config_namespace(const pw_k8s_config *cfg);

/* The bearer token the configuration's user presents now (static, token file, exec plugin), for a
 * client of another service that accepts the cluster's credentials (prewarmctl to prewarmd). May run
 * the exec plugin (blocks). 0 with *token (caller frees; NULL when the user has no token), or a
 * negative PW_E* with *errmsg (caller frees) saying why. */
int pw_k8s_config_token(const pw_k8s_config *cfg, char **token, char **errmsg);
/* The same with the user's client certificate and key (PEM: the kubeconfig's client-certificate and
 * client-key or their -data forms, or the exec plugin's): *cert_pem and *key_pem (caller frees; both
 * NULL when the user has none). One plugin run at most. */
int pw_k8s_config_credential(const pw_k8s_config *cfg, char **token, char **cert_pem, char **key_pem,
                             char **errmsg);
/* The cluster's CA certificates (PEM, borrowed; *len its size), or NULL when the configuration names
 * none (the system's CAs verify the server). */
const char *pw_k8s_config_ca_pem(const pw_k8s_config *cfg, size_t *len);

/* Parses YAML text (one document, a mapping) into JSON the way kubeconfig files are read (scalars
 * as strings, null/~ as null, aliases bounded); an empty document gives an empty object. 0, or
 * PW_EINVAL with *errmsg (caller frees) starting with what ("clusters file PATH"). */
int pw_k8s_yaml_to_json(const char *text, size_t len, const char *what, json_t **out, char **errmsg);

/* ---- the client ---- */

struct pw_k8s_client_opts {
    double qps;          /* sustained requests per second (0: 50) */
    int burst;           /* bucket size (0: 100) */
    int max_retries;     /* on 429, 5xx and connection errors (0: 5; -1: none) */
    int timeout_ms;      /* per request, not for watches (0: 30000) */
    const char *user_agent; /* (NULL: "prewarm/<version>") */
};

/* *out: free with pw_k8s_client_free (after every informer using it). cfg is borrowed and must
 * outlive the client. 0, PW_EINVAL (no server in cfg) or PW_ENOMEM. */
int pw_k8s_client_new(const pw_k8s_config *cfg, const struct pw_k8s_client_opts *opts, pw_k8s_client **out);
void pw_k8s_client_free(pw_k8s_client *c);

/* One API call. method "GET", "POST", "PUT", "PATCH", "DELETE"; path like
 * "/apis/batch/v1/namespaces/prewarm/jobs" with an optional "?query"; body may be NULL (borrowed);
 * content_type NULL means application/json (PATCH callers pass application/merge-patch+json etc.).
 * Retries with backoff on 429 (honouring Retry-After), 5xx and connection errors, and waits for the
 * rate limiter: blocks the calling thread. Returns 0 when a response arrived, whatever its status:
 * *status gets the HTTP status and *resp (may be NULL to ignore) the parsed body (a new reference or
 * NULL when the body was not JSON). A negative PW_E* when no response could be had (connection
 * refused after the retries, timeout, a body over the cap, an auth plugin failure, PW_ENOMEM when curl
 * cannot make a handle or header list). */
int pw_k8s_request(pw_k8s_client *c, const char *method, const char *path, const json_t *body,
                   const char *content_type, int *status, json_t **resp);

/* Calls made so far, by verb, for tests and metrics (get, list, watch, create, update, patch, delete). */
struct pw_k8s_counts {
    uint64_t get, list, watch, create, update, patch, del, retries, errors;
};
/* Fills *out with c's totals since pw_k8s_client_new: one count per call by verb (not per retry),
 * retries made, and calls that ended in a negative PW_E* (a cancelled watch excepted). Each field is read atomically; the set is
 * not one snapshot. Any thread. */
void pw_k8s_client_counts(pw_k8s_client *c, struct pw_k8s_counts *out);

/* ---- informers ---- */

enum pw_k8s_event { PW_K8S_ADDED = 0, PW_K8S_MODIFIED = 1, PW_K8S_DELETED = 2 };

/* obj: the object as cached (after transform), borrowed for the call; old: the previous cached state
 * (MODIFIED, DELETED) or NULL. Runs on the informer's thread. */
typedef void (*pw_k8s_informer_fn)(void *arg, enum pw_k8s_event ev, const json_t *obj, const json_t *old);
/* Trims an object before it is cached (to save memory): returns a new reference (may be obj itself
 * with json_incref) or NULL to drop the object entirely. */
typedef json_t *(*pw_k8s_transform_fn)(void *arg, json_t *obj);

struct pw_k8s_informer_opts {
    const char *path;           /* collection path: "/api/v1/nodes", "/apis/batch/v1/namespaces/ns/jobs" */
    const char *label_selector; /* may be NULL */
    const char *field_selector; /* may be NULL */
    pw_k8s_informer_fn on_event; /* may be NULL */
    pw_k8s_transform_fn transform; /* may be NULL */
    void *arg;
    int page_size;              /* list page size (0: 500) */
    int watch_timeout_s;        /* server-side timeoutSeconds of each watch (0: 300, randomised +-10%) */
};

/* Starts the informer's thread: list (paged), then watch from the list's resourceVersion with
 * bookmarks; on 410 Expired it lists again and delivers the differences as events; on a dropped
 * connection it re-watches with backoff. Strings in opts are copied. */
int pw_k8s_informer_start(pw_k8s_client *c, const struct pw_k8s_informer_opts *opts, pw_k8s_informer **out);
/* True once the first list has been delivered. */
bool pw_k8s_informer_synced(pw_k8s_informer *inf);
/* Blocks until synced or timeout_ms passes; 0 or PW_ETIMEDOUT. */
int pw_k8s_informer_wait_synced(pw_k8s_informer *inf, int timeout_ms);
/* The cached object "ns/name" (or "name" for cluster-scoped), a new reference, or NULL. */
json_t *pw_k8s_informer_get(pw_k8s_informer *inf, const char *key);
/* Calls fn for every cached object under the cache lock (fn must not call the informer); stops early
 * when fn returns non-zero. */
void pw_k8s_informer_each(pw_k8s_informer *inf, int (*fn)(void *arg, const json_t *obj), void *arg);
/* The number of objects in the cache now (0 before the first list). Any thread. */
size_t pw_k8s_informer_size(pw_k8s_informer *inf);
/* Stops the thread (waits for it) and frees. NULL is a no-op. */
void pw_k8s_informer_free(pw_k8s_informer *inf);

/* ---- helpers on objects ---- */

/* Each is a pure function over a borrowed obj (NULL or a non-object gives NULL); the returned string
 * is borrowed from obj and lives as long as obj's reference. */
/* metadata.name, or NULL. */
const char *pw_k8s_name(const json_t *obj);
/* metadata.namespace, or NULL (cluster-scoped objects have none). */
const char *pw_k8s_namespace(const json_t *obj);
/* metadata.resourceVersion, or NULL. */
const char *pw_k8s_resource_version(const json_t *obj);
/* metadata.labels[key], or NULL when the label is absent, not a string, or key is NULL. */
const char *pw_k8s_label(const json_t *obj, const char *key);
/* A Status body's message (borrowed) or NULL. */
const char *pw_k8s_status_message(const json_t *status_body);

#endif
