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

/* What the handlers need; borrowed for the server's life. */
struct pw_api_ctx {
    pw_engine *engine;
    /* agent mode (docs/agent.md): who may sync for a node. NULL auth: /agent/v1/sync answers 404 */
    pw_auth *auth;
    const char *agent_namespace;   /* the agents' ServiceAccount's namespace */
    const char *agent_sa;          /* ... and name: only it may sync */
    bool agents_elsewhere; /* agents sync on a listener of their own: this one answers 404 */
};

/* The agent listener's routes (--agent-listen): /agent/v1/sync and /healthz. */
extern const struct pw_http_route pw_api_agent_routes[];

/* POST /agent/v1/sync and GET /api/v1/agents (agents.c; route handlers). */
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

/* GET / and GET /web/<file>: the embedded web page (web.c; a route handler; ctx unused). */
void pw_api_h_web(pw_http_req *req, void *ctx);

/* The §3 error body {"code","reason","message","details"?}: a new object. field may be NULL. */
json_t *pw_api_error(int code, const char *message, const char *field);

#endif
