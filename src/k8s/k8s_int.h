/* k8s_int.h: what the files of src/k8s share and nobody else sees: the loaded configuration, the
 * credential cache (tokens that rotate, exec plugins), the token-bucket rate limiter, the watch
 * stream line splitter, and the streaming request the informers use.
 *
 * Thread model: as each section says. */
#ifndef PW_K8S_INT_H
#define PW_K8S_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "base/buf.h"
#include "k8s/k8s.h"

/* ---- credentials ---- */

/* An exec credential plugin as a kubeconfig user describes it (all owned). */
struct pw_k8s_exec {
    char *command;      /* resolved: a relative path with a '/' is taken from the kubeconfig's dir */
    char **args;        /* NULL-terminated */
    char **env;         /* NULL-terminated "NAME=value" */
    char *api_version;  /* client.authentication.k8s.io/v1 or v1beta1 */
    char *install_hint; /* shown when the command cannot be started (may be NULL) */
    bool provide_cluster_info;
    int timeout_ms; /* how long the plugin may run */
};

/* The credential a request uses at one moment: all owned, free with pw_k8s_cred_fini. */
struct pw_k8s_cred {
    char *token;    /* bearer token or NULL */
    char *cert_pem; /* client certificate (PEM) or NULL */
    size_t cert_len;
    char *key_pem;
    size_t key_len;
    uint64_t generation; /* changes whenever the cached credential is replaced */
};
void pw_k8s_cred_fini(struct pw_k8s_cred *cr);

/* Mutable state behind an immutable config: the rotating token file and exec plugin results. Shared by
 * every thread of every client on the config; guarded by mu. */
struct pw_k8s_cred_cache {
    pthread_mutex_t mu;
    /* token file: re-read when its mtime changes, checked at most every check_ms */
    char *file_token;
    struct timespec file_mtime;
    int64_t file_checked_ms; /* monotonic; 0: never read */
    int check_ms;
    /* exec plugin */
    char *exec_token;
    char *exec_cert;
    size_t exec_cert_len;
    char *exec_key;
    size_t exec_key_len;
    int64_t exec_expiry_real_ms; /* 0: no expiry given (valid until a 401) */
    bool exec_valid;
    uint64_t generation;
    uint64_t exec_runs; /* how many times the plugin ran (tests) */
};

struct pw_k8s_config {
    char *source;  /* the file(s) or "in-cluster", for messages */
    char *context; /* the context's name (NULL in-cluster) */
    char *server;  /* "https://host:port" without a trailing '/' */
    char *ns;      /* namespace */
    char *ca_pem;  /* CA bundle (PEM) or NULL: the system's */
    size_t ca_len;
    bool insecure;
    char *tls_server_name;
    char *proxy_url;
    /* user */
    char *token;      /* static bearer token */
    char *token_file; /* bearer token re-read on change */
    char *cert_pem;   /* static client certificate and key */
    size_t cert_len;
    char *key_pem;
    size_t key_len;
    char *username;
    char *password;
    struct pw_k8s_exec *exec;        /* NULL without an exec plugin */
    struct pw_k8s_cred_cache *cache; /* owned; mutable behind the const config */
};

/* The credential to use now (runs the exec plugin or re-reads the token file when needed). Safe from
 * any thread; may block while a plugin runs. On failure a negative PW_E* (PW_EAUTH for a plugin
 * failure) and *errmsg (when not NULL; caller frees) says why; *out is untouched. */
int pw_k8s_cred_get(const pw_k8s_config *cfg, struct pw_k8s_cred *out, char **errmsg);
/* After a 401 with a credential of that generation: forget the cached plugin credential (and re-read
 * the token file) so the next pw_k8s_cred_get fetches a fresh one. True when there was something to
 * refresh (so a retry is worth it). */
bool pw_k8s_cred_invalidate(const pw_k8s_config *cfg, uint64_t generation);
/* How many times the exec plugin ran (tests). */
uint64_t pw_k8s_cred_exec_runs(const pw_k8s_config *cfg);

/* Runs the plugin and parses its ExecCredential (exposed for tests). cluster_info: borrowed or NULL.
 * On success the fields of *out are owned by the caller; expiry_real_ms 0 when none was given. */
struct pw_k8s_exec_result {
    char *token;
    char *cert_pem;
    char *key_pem;
    int64_t expiry_real_ms;
};
int pw_k8s_exec_run(const struct pw_k8s_exec *ex, const pw_k8s_config *cfg, struct pw_k8s_exec_result *out,
                    char **errmsg);

/* ---- the token-bucket rate limiter ---- */

/* Reservation-style like golang.org/x/time/rate: a caller takes a token at once, letting the bucket go
 * negative, and sleeps until its token would have been there. Thread model: guarded by mu. */
struct pw_k8s_ratelimit {
    pthread_mutex_t mu;
    double qps;
    double burst;
    double tokens;
    int64_t last_ms;
};
void pw_k8s_rl_init(struct pw_k8s_ratelimit *rl, double qps, int burst, int64_t now_ms);
void pw_k8s_rl_fini(struct pw_k8s_ratelimit *rl);
/* Takes one token at now_ms; returns how many ms the caller must wait before using it (0: at once). */
int64_t pw_k8s_rl_reserve(struct pw_k8s_ratelimit *rl, int64_t now_ms);

/* ---- the watch stream ---- */

/* One event of a watch stream: type "ADDED", "MODIFIED", "DELETED", "BOOKMARK" or "ERROR"; obj is
 * borrowed for the call. Return non-zero to stop the stream. */
typedef int (*pw_k8s_watch_fn)(void *arg, const char *type, json_t *obj);

/* Splits a byte stream into lines and parses each as a watch event. Thread model: one owner. */
struct pw_k8s_watch_parser {
    pw_buf line; /* the incomplete line so far, capped at max_event */
    size_t max_event;
    pw_k8s_watch_fn fn;
    void *arg;
    uint64_t events; /* events delivered */
    int error;       /* first error: PW_ETOOLARGE (an event over the cap) or PW_EPROTO (bad JSON) */
    bool stopped;    /* fn asked to stop */
};
void pw_k8s_watch_parser_init(struct pw_k8s_watch_parser *p, size_t max_event, pw_k8s_watch_fn fn, void *arg);
void pw_k8s_watch_parser_fini(struct pw_k8s_watch_parser *p);
/* Feeds bytes; returns 0, or the error that ended parsing (then the stream should be dropped), or 1
 * when fn asked to stop. */
int pw_k8s_watch_parser_feed(struct pw_k8s_watch_parser *p, const char *data, size_t n);
/* At end of stream: a last line without '\n' is parsed too. Same returns as feed. */
int pw_k8s_watch_parser_finish(struct pw_k8s_watch_parser *p);

/* ---- requests inside the module ---- */

/* As pw_k8s_request, with a stop flag (may be NULL) that ends waits and transfers early with
 * PW_ECANCELED. */
int pw_k8s_request_ex(pw_k8s_client *c, const char *method, const char *path, const json_t *body,
                      const char *content_type, int *status, json_t **resp, const atomic_bool *stop);

/* A GET whose body streams into p (a watch). One attempt, no retries (the informer decides). Waits for
 * the rate limiter. timeout_ms bounds the whole transfer (0: none). *status always gets the HTTP status
 * (0 when none arrived). Returns 0 when the stream ended normally or the parser's callback stopped it (a
 * non-2xx body is then parsed into *errbody when errbody is not NULL; caller decrefs), PW_ECANCELED
 * when stop was raised, the parser's error (PW_ETOOLARGE, PW_EPROTO), or another negative PW_E* on
 * transport errors. A 401 invalidates the cached credential so the next call fetches a fresh one. */
int pw_k8s_stream_get(pw_k8s_client *c, const char *path, struct pw_k8s_watch_parser *p, int timeout_ms,
                      const atomic_bool *stop, int *status, json_t **errbody);

/* Lowers the response body cap (64 MiB) for tests; call before any request. */
void pw_k8s_client_set_max_body(pw_k8s_client *c, size_t max);

/* The verb a request counts as ("get", "list", "watch", "create", "update", "patch", "delete"). */
const char *pw_k8s_verb(const char *method, const char *path);
/* The resource a request path is about ("nodes", "jobs", "pods" for .../pods/x/log, "tokenreviews"),
 * written into buf (n bytes); "other" for a path that names none. For metrics labels: only
 * lowercase letters, digits and dots are kept. Returns buf. */
const char *pw_k8s_resource(const char *path, char *buf, size_t n);

#endif
