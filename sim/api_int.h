/* api_int.h: private seams between the files of kubesim's API server (api.c: serving, routing,
 * discovery, the resource registry, stats and faults; api_rest.c: the REST verbs, validation,
 * defaults, field selectors, tables; api_watch.c: watch streams; api_gc.c: deletion, the garbage
 * collector and events; api_patch.c: merge, strategic-merge and JSON patches; api_token.c: the
 * ServiceAccount token subresource and the answers about the tokens it issued, kept by tokens.c;
 * api_authz.c: authentication, impersonation, RBAC authorization, the review kinds).
 *
 * Thread model: struct sim_api's mutable parts are guarded by its mutexes as noted per field. */
#ifndef SIM_API_INT_H
#define SIM_API_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "http/http.h"
#include "base/labels.h"
#include "sim/sim.h"
#include "sim/rbac_policy.h"
#include "sim/tokenfile.h"
#include "sim/tokens.h"

/* verbs a resource allows (bits) */
enum {
    V_GET = 1 << 0,
    V_LIST = 1 << 1,
    V_WATCH = 1 << 2,
    V_CREATE = 1 << 3,
    V_UPDATE = 1 << 4,
    V_PATCH = 1 << 5,
    V_DELETE = 1 << 6,
    V_DELETECOLLECTION = 1 << 7,
    V_ALL = 0xff,
};

struct sim_api;
struct rdef;

/* Validates a new or updated object (cause list appended to causes: [{reason,message,field}]). */
typedef void (*rdef_validate_fn)(const struct rdef *rd, const json_t *obj, json_t *causes);
/* Sets server defaults on a new object (owned, private). */
typedef void (*rdef_default_fn)(struct sim *sim, const struct rdef *rd, json_t *obj);
/* Table: columns (a JSON array of column definitions) and the cells of one row. */
typedef json_t *(*rdef_columns_fn)(void);
typedef void (*rdef_cells_fn)(const json_t *obj, json_t *cells, int64_t now_s);

/* One served resource: a row of the registry table (built-ins) or made from a CRD. */
struct rdef {
    const char *group;   /* "" for core */
    const char *version; /* "v1" */
    const char *plural;
    const char *singular;
    const char *kind;
    bool namespaced;
    const char *short_names; /* comma-separated, "" for none */
    bool has_status;
    unsigned verbs;
    const char *store_key;            /* "pods", "jobs.batch", "<plural>.<group>" */
    const char *const *fields;        /* extra field-selector fields, NULL-terminated (may be NULL) */
    rdef_validate_fn validate;        /* may be NULL */
    rdef_default_fn defaults;         /* may be NULL */
    rdef_columns_fn columns;          /* may be NULL: NAME AGE */
    rdef_cells_fn cells;
    bool custom;                      /* served for a CRD (strategic merge is refused) */
    bool removed;                     /* its CRD was deleted */
    char *owned[8];                   /* strings owned by a CRD-made row */
};

struct watcher;

struct stat_row {
    char verb[20];
    char resource[96];
    int code;
    long count;
};

struct fault_rule {
    char verb[20];
    char resource[96]; /* "" or "*": any */
    int code;
    double rate;
    char user_agent[128]; /* "": any client; else only requests whose User-Agent contains it */
};

struct sim_api {
    struct sim *sim;
    pthread_mutex_t mu; /* guards crds, stats, faults, watchers list, compact_rv */
    struct rdef **crds;
    size_t ncrds;
    struct stat_row *stats;
    size_t nstats, capstats;
    long watches_open, watches_total;
    struct fault_rule *faults;
    size_t nfaults;
    json_t *clients; /* writes by client: User-Agent -> {"VERB RESOURCE": count}; guarded by mu */
    long latency_ms;
    long drop_watches_s;
    json_t *faults_json; /* the last POSTed document */
    uint64_t compact_rv;  /* continue tokens older than this are expired */
    struct watcher *watchers; /* a list, guarded by mu */
    int init_threads;          /* watches writing a big initial list on a thread of their own; mu */
    pthread_t ticker;
    bool ticker_running; /* sim_api_watch_start started it */
    bool stopping; /* guarded by mu */
    pthread_cond_t cond;
    /* the garbage collector */
    pthread_mutex_t gc_mu;
    pthread_cond_t gc_cond;
    json_t *gc_queue;  /* array of work items, guarded by gc_mu */
    json_t *gc_wait;   /* key -> item: foreground owners waiting for dependents, pods in their grace
                          period; guarded by gc_mu */
    bool gc_stopping;  /* guarded by gc_mu */
    pthread_t gc_thread;
    bool gc_running; /* sim_api_gc_start started it */
    int gc_sub;
    /* owner uid -> {"<store key>\x1f<ns>\x1f<name>": [key, ns, name]}: the dependents of every owner,
       kept by the GC's store subscriber so nothing scans the store; guarded by idx_mu (a leaf lock) */
    pthread_mutex_t idx_mu;
    json_t *owner_index;
    /* events: "uid|reason|type|message|component" -> event name, guarded by ev_mu */
    pthread_mutex_t ev_mu;
    json_t *ev_index;
    json_t *ev_fifo; /* [[ns, name], ...] oldest first from ev_head: the events sim_api_event made */
    size_t ev_head;
    struct pw_http_route *routes; /* owned: our table with the world's rows */
    const char *token;
    sim_tokens *tokens; /* owned: the ServiceAccount tokens issued (tokens.h, its own lock) */
    sim_tokenfile *tokenfile; /* owned: --token-auth-file's tokens, NULL without; read-only */
    sim_rbac_ctl *rbac_ctl;   /* owned: the ClusterRole aggregation controller */
    bool enforce_rbac;        /* --enforce-rbac: requests are authorized (api_authz.c) */
    /* caches of serialized text, per API so two kubesims in one process never share text */
    struct sim_api_objcache *objcache; /* owned (api_cache.c) */
    struct sim_api_evcache {           /* the last watch event line (api_watch.c), guarded by its mu */
        pthread_mutex_t mu;
        uint64_t rv;
        int type;
        int table;
        const struct rdef *rd;
        char *text; /* owned */
        size_t len;
    } evcache;
};

/* ---- api.c ---- */
extern const struct rdef sim_api_builtin[]; /* api_rest.c; ends with a row whose plural is NULL */
/* The registry row for (group, version, plural) or NULL. */
const struct rdef *sim_api_find(struct sim_api *api, const char *group, const char *version, const char *plural);
/* The row whose store key is key, or NULL. */
const struct rdef *sim_api_find_key(struct sim_api *api, const char *key);
/* Calls fn for every row served (built-ins, then live CRDs); under api->mu. */
void sim_api_each(struct sim_api *api, void (*fn)(const struct rdef *rd, void *arg), void *arg);
/* "pods", "jobs.batch": the qualified resource of messages. Writes into buf. */
const char *sim_api_qres(const struct rdef *rd, char *buf, size_t n);
/* "v1", "batch/v1" */
const char *sim_api_gv(const struct rdef *rd, char *buf, size_t n);
/* Replies a Status failure; details (may be NULL) is taken. */
void sim_api_status(pw_http_req *req, int code, const char *reason, const char *message, json_t *details);
json_t *sim_api_status_obj(int code, const char *reason, const char *message, json_t *details);
/* Replies NotFound for rd/name. */
void sim_api_not_found(pw_http_req *req, const struct rdef *rd, const char *name);
void sim_api_stat(struct sim_api *api, const char *verb, const char *resource, int code);
/* Registers the CRD object (a served resource from now on) or marks it removed when gone. */
void sim_api_crd_changed(struct sim_api *api, const json_t *crd, bool gone);
/* A new v4 UUID into out. */
void sim_api_uid(char out[37]);
void sim_api_now_rfc3339(char out[32]);

/* ---- api_rest.c ---- */
struct rreq {
    struct sim_api *api;
    pw_http_req *req;
    const struct rdef *rd;
    const char *ns;   /* NULL: all namespaces (lists) */
    const char *name; /* NULL for collections */
    const char *sub;  /* "status", "token" (serviceaccounts) or NULL */
    const char *verb; /* for stats */
    const json_t *user; /* the caller's UserInfo (api_authz.c), borrowed for the request */
};
void sim_api_rest_dispatch(struct rreq *r);
/* Field selectors: parse text for rd; 0 or PW_EINVAL with *err (caller frees). */
struct fieldsel;
int sim_api_fieldsel_parse(const struct rdef *rd, const char *text, struct fieldsel **out, char **err);
bool sim_api_fieldsel_matches(const struct fieldsel *fs, const json_t *obj);
void sim_api_fieldsel_free(struct fieldsel *fs);
/* Ensures kind and apiVersion on an object for output: a new reference (maybe obj itself). */
json_t *sim_api_with_kind(const struct rdef *rd, json_t *obj);
/* Table output */
bool sim_api_wants_table(pw_http_req *req);
/* includeObject: 0 None, 1 Metadata (PartialObjectMetadata, the default), 2 Object. */
int sim_api_table_include(pw_http_req *req);
json_t *sim_api_table(const struct rdef *rd, json_t *items, const char *rv, int include_object, int64_t now_s);

/* ---- api_cache.c ---- */
#include "base/buf.h"
/* A new, empty cache of object texts; free with sim_api_cache_free. */
struct sim_api_objcache *sim_api_cache_new(void);
/* Frees every cached text and the cache (at stop; rows from CRDs die with the API state). NULL: no-op. */
void sim_api_cache_free(struct sim_api_objcache *c);
/* Appends obj's JSON text (with kind and apiVersion) to b, from c when it holds obj's resourceVersion
 * for rd. obj is borrowed. Any thread. */
void sim_api_cache_append(struct sim_api_objcache *c, const struct rdef *rd, json_t *obj, pw_buf *b);

/* ---- api_watch.c ---- */
void sim_api_watch_serve(struct rreq *r, const pw_labelsel *ls, struct fieldsel *fs);
/* 0, or PW_ENOMEM when its thread cannot start (nothing left running). */
int sim_api_watch_start(struct sim_api *api);
void sim_api_watch_stop(struct sim_api *api);

/* ---- api_gc.c ---- */
/* Deletes as DELETE does; *out (may be NULL) gets the response object (the object or a Status).
 * PW_ENOTFOUND when absent. */
int sim_api_delete_rd(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name,
                      const char *policy, json_t **out);
/* After a write that may have emptied the finalizers of an object being deleted: removes it. */
/* The same with a grace period in seconds for pods (-1: the pod's own, as when none is given). */
int sim_api_delete_grace(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name,
                         const char *policy, long grace, json_t **out);
void sim_api_finalize_check(struct sim_api *api, const struct rdef *rd, const json_t *obj);
/* 0, or PW_ENOMEM when its thread cannot start (nothing left running or subscribed). */
int sim_api_gc_start(struct sim_api *api);
void sim_api_gc_stop(struct sim_api *api);

/* ---- api_patch.c ---- */
/* Applies patch to a copy of target; *out gets the result (caller decrefs). ctype selects the format.
 * PW_EMEDIATYPE for an unknown one, PW_EINVAL for a bad patch (with *err, caller frees). */
int sim_api_patch_apply(const char *ctype, const json_t *target, const char *patch, size_t len, bool custom,
                        json_t **out, char **err);
json_t *sim_api_merge_patch(const json_t *target, const json_t *patch);
json_t *sim_api_strategic_patch(const json_t *target, const json_t *patch);
int sim_api_json_patch(json_t *doc, const json_t *ops, char **err);

/* ---- api_token.c ---- */
/* POST serviceaccounts/{name}/token (r->ns and r->name set): a TokenRequest; replies and counts the
 * request as ("create", "serviceaccounts/token"). */
void sim_api_token_request(struct rreq *r);
/* The TokenReview status for token, asked for audiences (a JSON array or NULL: the API server's): a new
 * object (caller decrefs); {authenticated: false, error: "invalid bearer token"} when kubesim never
 * issued the token (or forgot it). token is not the admin token (the caller answers that one). */
json_t *sim_api_token_review(struct sim_api *api, const char *token, const json_t *audiences);
/* The UserInfo of token when it is one kubesim issued that authenticates to the API server now (its
 * audience, not expired, its ServiceAccount and bound object still there): a new reference; else NULL. */
json_t *sim_api_token_user(struct sim_api *api, const char *token);
/* /sim/v1/tokens: GET {count, max}; POST {"ageSeconds": N} makes every token N seconds older. */
void sim_api_token_hook(pw_http_req *req, struct sim_api *api);

/* ---- api_binding.c ---- */
/* POST pods/{name}/binding (r->ns and r->name set): binds the pod as the real subresource does. */
void sim_api_pod_binding(struct rreq *r);

/* ---- api_authz.c ---- */
/* A request body as a JSON object: JSON, or protobuf for the kinds rbac_pb.h knows. NULL when it is
 * neither, with *err (caller frees) the real server's 400 message. */
json_t *sim_api_body_object(const struct rdef *rd, pw_http_req *req, char **err);
/* Who made the request: a new UserInfo {username, uid, groups[, extra]} (caller decrefs) for the
 * kubeconfig's token or client certificate (kubesim-admin in system:masters), a --token-auth-file
 * token, or a ServiceAccount token kubesim issued; NULL when none authenticates. */
json_t *sim_api_authenticate(struct sim_api *api, pw_http_req *req);
/* Impersonation headers (Impersonate-User, -Group, -Uid): *user (owned) is replaced by the
 * impersonated identity when the caller may impersonate it (always without --enforce-rbac). false
 * when it replied an error (403, or 500 for a group without a user). */
bool sim_api_impersonate(struct sim_api *api, pw_http_req *req, json_t **user);
/* With --enforce-rbac: true when user may make this request (the path's verb, resource or
 * non-resource path), else it replied 403 Forbidden as the real server does. Without: true. */
bool sim_api_authorize_request(struct sim_api *api, pw_http_req *req, const json_t *user);
/* The TokenReview status for the admin token or a --token-auth-file token (audience agnostic), NULL
 * for another token. A new object. */
json_t *sim_api_static_token_review(struct sim_api *api, const char *token, const json_t *audiences);
/* True when rd is one of the review kinds answered by sim_api_review (SubjectAccessReview,
 * SelfSubjectAccessReview, LocalSubjectAccessReview, SelfSubjectReview). */
bool sim_api_is_review(const struct rdef *rd);
/* POST of a review kind: evaluates and replies 201 (or 400/422). */
void sim_api_review(struct rreq *r);
/* The RBAC kinds' validation (an rdef validate fn) and defaults (an rdef default fn). */
void sim_api_rbac_validate(const struct rdef *rd, const json_t *obj, json_t *causes);
void sim_api_rbac_defaults(struct sim *sim, const struct rdef *rd, json_t *obj);
/* On update of a binding: next gets the defaults, and a changed roleRef is refused (a cause). */
void sim_api_rbac_update(const struct rdef *rd, const json_t *cur, json_t *next, json_t *causes);

/* ---- api_escalate.c ---- */
/* RBAC escalation prevention for a create or update of an RBAC kind to obj (the object as it would be
 * stored): true when it may go on; false after replying the 403 (or 404 for a binding's missing
 * role). Always true without --enforce-rbac, for other kinds and for system:masters. */
bool sim_api_rbac_may_write(struct rreq *r, const json_t *obj);

#endif
