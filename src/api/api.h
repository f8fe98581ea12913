/* api.h: prewarmd's REST API v1 (ARCHITECTURE.md §3) on the HTTP server: the route table, the
 * handlers (parse -> validate -> call the engine -> encode) and the request/response codecs.
 *
 * Thread model: handlers run on the HTTP pool threads and only call thread-safe engine functions. */
#ifndef PW_API_H
#define PW_API_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "engine/engine.h"
#include "http/http.h"

/* The routes (ends with a NULL pattern row); pass an api context as the server's ctx. */
extern const struct pw_http_route pw_api_routes[];

typedef struct pw_auth pw_auth;             /* auth/auth.h */
typedef struct pw_events pw_events;         /* events/events.h */
typedef struct pw_api_sse pw_api_sse;       /* below */
typedef struct pw_audit pw_audit;           /* auth/audit.h */
typedef struct pw_userlimit pw_userlimit;   /* auth/userlimit.h */
typedef struct pw_webhook pw_webhook;       /* webhook/webhook.h */
typedef struct pw_predict pw_predict;       /* predict/predict.h */
typedef struct pw_policy pw_policy;         /* policy/policy.h */
typedef struct pw_ha pw_ha;                 /* ha/ha.h */

/* What the handlers need; borrowed for the server's life. */
struct pw_api_ctx {
    pw_engine *engine;
    /* who calls (users through pw_api_before; agents in agents.c). NULL: /agent/v1/sync answers 404
     * and the middleware lets everyone in (the handlers' unit tests) */
    pw_auth *auth;
    const char *agent_namespace;   /* the agents' ServiceAccount's namespace */
    const char *agent_sa;          /* ... and name: only it may sync */
    bool agents_elsewhere; /* agents sync on a listener of their own: this one answers 404 */
    pw_api_sse *sse;       /* the SSE hub; NULL: the event routes answer 404 */
    pw_audit *audit;          /* writes and denials; NULL: none */
    pw_userlimit *rate_limit; /* requests per user; NULL: none */
    bool metrics_anonymous;   /* routes marked metrics are open */
    long max_tasks_per_user;  /* unfinished tasks one user may have (0: no limit) */
    pw_webhook *webhook;      /* webhook deliveries shown in GET task, its URL policy applied to
                               * created tasks; NULL: none */
    pw_predict *predict;      /* images predicted from history; NULL: /api/v1/predictions answers 404 */
    pw_policy *policies;      /* the policy controller; NULL: /api/v1/policies answers 404 */
    pw_ha *ha;                /* the leader elector (--leader-elect); NULL: one replica, always leading */
    /* GET /api/v1/clusters (docs/multicluster.md): the clusters as a new JSON object; NULL: the
     * engine's own view */
    json_t *(*clusters)(void *arg);
    void *clusters_arg;
};

/* The middleware of the API listener (guard.c; pass as the server's before and after): every route
 * has an access rule (open: /healthz, /readyz; metrics: open with metrics_anonymous, else like the
 * rest; self: the handler authenticates, as /agent/v1/sync does; authenticated; authorized: a verb on
 * a resource). A route without a rule is refused (403). Refusals: 401 + WWW-Authenticate: Bearer, 403
 * with the authorizer's reason, 429 + Retry-After, 503 when the cluster cannot be asked. after writes
 * the audit line of every write and every refusal. */
bool pw_api_before(pw_http_req *req, const struct pw_http_route *route, void *ctx);
void pw_api_after(pw_http_req *req, const struct pw_http_route *route, int status, void *ctx);
/* The user the middleware authenticated for req (borrowed), or NULL (no middleware, open route). */
const char *pw_api_req_user(pw_http_req *req);
/* Notes the task a write touched, for its audit line. */
void pw_api_req_set_task(pw_http_req *req, const char *task_id);
/* GET /api/v1/whoami: the caller's user name, uid and groups as prewarmd sees them. */
void pw_api_h_whoami(pw_http_req *req, void *ctx);

/* /api/v1/policies: POST (create), GET (list), and /api/v1/policies/{id}: GET, PUT (replace the
 * spec), DELETE (policies.c; route handlers). */
void pw_api_h_policy_create(pw_http_req *req, void *ctx);
void pw_api_h_policy_list(pw_http_req *req, void *ctx);
void pw_api_h_policy_get(pw_http_req *req, void *ctx);
void pw_api_h_policy_put(pw_http_req *req, void *ctx);
void pw_api_h_policy_delete(pw_http_req *req, void *ctx);

/* The agent listener's routes (--agent-listen): /agent/v1/sync, /agent/v1/clusters/{cluster}/sync
 * and /healthz. */
extern const struct pw_http_route pw_api_agent_routes[];

/* POST /agent/v1/sync (the first cluster's agents), POST /agent/v1/clusters/{cluster}/sync and GET
 * /api/v1/agents (agents.c; route handlers). */
void pw_api_h_agent_sync(pw_http_req *req, void *ctx);
void pw_api_h_agents(pw_http_req *req, void *ctx);

/* A JSON request body: content_type must be JSON (PW_EMEDIATYPE), body a JSON object (PW_EINVAL).
 * On success 0 and *out (caller decrefs); on failure *err is the error body. */
int pw_api_parse_json(const char *content_type, const char *body, size_t len, json_t **out, json_t **err);
/* The §3 error body of field errors (first one in message, all in details): a new object. */
json_t *pw_api_field_errors(const struct pw_field_errors *errs);

/* Parses a create request: content_type must be JSON (else PW_EMEDIATYPE), body a JSON object that
 * pw_taskspec_parse accepts. On success 0 and *out filled (caller finis). On failure the negative code
 * and *err (caller decrefs) is the error body of §3 with the field named. */
int pw_api_parse_create(const char *content_type, const char *body, size_t len, struct pw_taskspec *out,
                        json_t **err);

/* The OpenAPI 3.1 document (src/api/openapi.json) as a NUL-terminated string, static. */
extern const char pw_api_openapi_json[];

/* GET /openapi.json: the document above (a route handler; ctx unused). */
void pw_api_h_openapi(pw_http_req *req, void *ctx);

/* ---- Server-Sent Events (events.c; docs/observability.md) ---- */

#define PW_API_SSE_HEARTBEAT_MS 15000
/* The hub that feeds every SSE stream from ev: one thread, started here. engine is read for the
 * current state of a stream that does not resume. heartbeat_ms: a comment line on a stream idle
 * this long (<= 0: PW_API_SSE_HEARTBEAT_MS). 0 and *out (free with pw_api_sse_free, after the HTTP
 * servers stopped taking requests, before ev goes), or PW_ENOMEM. */
int pw_api_sse_new(pw_events *ev, pw_engine *engine, int64_t heartbeat_ms, pw_api_sse **out);
/* Ends every stream (their clients see the response end) and stops the hub. NULL is a no-op. */
void pw_api_sse_free(pw_api_sse *h);
/* Streams open now. */
size_t pw_api_sse_open(pw_api_sse *h);
/* GET /api/v1/tasks/{id}/events and GET /api/v1/events[?task=ID] (route handlers). */
void pw_api_h_task_events(pw_http_req *req, void *ctx);
void pw_api_h_events(pw_http_req *req, void *ctx);

/* ---- Prometheus metrics (metrics.c; docs/observability.md) ---- */

typedef struct pw_api_metrics pw_api_metrics;
/* Registers the task metrics on the default registry (and the process metrics), with a collector
 * reading engine's state at each scrape. version: the build_info label. Free with
 * pw_api_metrics_free (after the HTTP servers stopped, before the engine goes). */
pw_api_metrics *pw_api_metrics_new(pw_engine *engine, const char *version);
void pw_api_metrics_free(pw_api_metrics *m);
/* Counts one engine change (the engine observer's arguments; m NULL: no-op). Thread-safe, quick. */
void pw_api_metrics_observe(pw_api_metrics *m, enum pw_engine_change what, const json_t *doc);
/* GET /metrics: the default registry in the text exposition format 0.0.4 (a route handler). */
void pw_api_h_metrics(pw_http_req *req, void *ctx);

/* GET /api/v1/predictions[?pool=KEY=VALUE|VALUE][&maxBytesPerNode=&minProbability=&maxImages=]
 * (predictions.c; a route handler): the pools learnt, or one pool's ranking and why. */
void pw_api_h_predictions(pw_http_req *req, void *ctx);
/* ---- leadership (leader.c; docs/ha.md) ---- */

/* GET /api/v1/leader: this replica's identity and role, the Lease's holder and transitions. */
void pw_api_h_leader(pw_http_req *req, void *ctx);
typedef struct pw_api_leader_metrics pw_api_leader_metrics;
/* prewarm_leader (1/0) and prewarm_leader_changes_total from ha (NULL: always 1, 0) at each scrape.
 * Free with pw_api_leader_metrics_free (after the HTTP servers stopped, before ha goes). */
pw_api_leader_metrics *pw_api_leader_metrics_new(pw_ha *ha);
void pw_api_leader_metrics_free(pw_api_leader_metrics *m);

/* GET / and GET /web/<file>: the embedded web page (web.c; a route handler; ctx unused). */
void pw_api_h_web(pw_http_req *req, void *ctx);

/* The §3 error body {"code","reason","message","details"?}: a new object. field may be NULL. */
json_t *pw_api_error(int code, const char *message, const char *field);

#endif
