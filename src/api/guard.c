/* guard.c: the API listener's middleware (api.h): one access rule per route, then authentication,
 * the per-user rate limit and authorization before the handler, and the audit line after it. What
 * the middleware learnt (who calls, the task a write touched, why it refused) rides on the request
 * as its data until the request ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "auth/audit.h"
#include "auth/auth.h"
#include "auth/userlimit.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

enum access {
    ACCESS_OPEN,          /* anyone: liveness and readiness */
    ACCESS_METRICS,       /* open with --metrics-anonymous, else authorized as get on the path */
    ACCESS_SELF,          /* the handler authenticates its caller (agents) */
    ACCESS_AUTHENTICATED, /* any authenticated user */
    ACCESS_AUTHORIZED     /* verb on resource */
};

struct rule {
    const char *method, *pattern;
    enum access access;
    const char *verb, *resource;
};

/* Every route of pw_api_routes (and routes added later) needs a row: a route without one is refused. */
static const struct rule rules[] = {
    {"GET", "/healthz", ACCESS_OPEN, NULL, NULL},
    {"GET", "/readyz", ACCESS_OPEN, NULL, NULL},
    {"GET", "/metrics", ACCESS_METRICS, "get", NULL},
    {"GET", "/", ACCESS_OPEN, NULL, NULL},        /* the web page holds no data: its API calls carry the token */
    {"GET", "/web/**", ACCESS_OPEN, NULL, NULL},
    {"GET", "/openapi.json", ACCESS_AUTHENTICATED, NULL, NULL},
    {"GET", "/api/v1/whoami", ACCESS_AUTHENTICATED, NULL, NULL},
    {"GET", "/api/v1/leader", ACCESS_AUTHENTICATED, NULL, NULL},
    {"POST", "/api/v1/tasks", ACCESS_AUTHORIZED, "create", "tasks"},
    {"GET", "/api/v1/tasks", ACCESS_AUTHORIZED, "list", "tasks"},
    {"GET", "/api/v1/tasks/{id}", ACCESS_AUTHORIZED, "get", "tasks"},
    {"DELETE", "/api/v1/tasks/{id}", ACCESS_AUTHORIZED, "delete", "tasks"},
    {"GET", "/api/v1/tasks/{id}/nodes", ACCESS_AUTHORIZED, "get", "tasks"},
    {"GET", "/api/v1/tasks/{id}/events", ACCESS_AUTHORIZED, "get", "tasks"},
    {"GET", "/api/v1/events", ACCESS_AUTHORIZED, "list", "tasks"},
    {"GET", "/api/v1/agents", ACCESS_AUTHORIZED, "list", "agents"},
    {"POST", "/api/v1/policies", ACCESS_AUTHORIZED, "create", "policies"},
    {"GET", "/api/v1/policies", ACCESS_AUTHORIZED, "list", "policies"},
    {"GET", "/api/v1/policies/{id}", ACCESS_AUTHORIZED, "get", "policies"},
    {"PUT", "/api/v1/policies/{id}", ACCESS_AUTHORIZED, "update", "policies"},
    {"DELETE", "/api/v1/policies/{id}", ACCESS_AUTHORIZED, "delete", "policies"},
    {"GET", "/api/v1/predictions", ACCESS_AUTHORIZED, "list", "policies"}, /* what predict policies would pull */
    {"GET", "/api/v1/clusters", ACCESS_AUTHORIZED, "list", "clusters"},
    {"POST", "/agent/v1/sync", ACCESS_SELF, NULL, NULL},
    {"POST", "/agent/v1/clusters/{cluster}/sync", ACCESS_SELF, NULL, NULL},
};
#define N_RULES (sizeof rules / sizeof rules[0])

/* What the middleware knows of one request (the request's data). */
struct call {
    const struct rule *rule;
    struct pw_identity id;
    bool authed;
    char task_id[32];
    char reason[768];
};

static void call_free(void *p)
{
    struct call *c = p;
    if (c->authed)
        pw_identity_fini(&c->id);
    free(c);
}

static const struct rule *rule_of(const struct pw_http_route *route)
{
    for (size_t i = 0; i < N_RULES; i++)
        if (strcmp(rules[i].method, route->method) == 0 && strcmp(rules[i].pattern, route->pattern) == 0)
            return &rules[i];
    return NULL;
}

static void refuse(pw_http_req *req, struct call *c, int code, const char *message)
{
    snprintf(c->reason, sizeof c->reason, "%s", message);
    if (code == PW_EAUTH)
        pw_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"prewarm\"");
    pw_http_reply_json(req, pw_err_http_status(code), pw_api_error(code, message, NULL));
}

#define MAX_PEER_CERTS 8

/* Who calls, as kube-apiserver's authenticators in order: a verified client certificate first, then
 * the bearer token modes. A certificate that does not verify is no verdict yet (a good token still
 * authenticates, as in the API server); when nothing else does, its reason is the 401's. */
static int authenticate(pw_http_req *req, struct pw_api_ctx *x, struct pw_identity *id, char *why, size_t why_n)
{
    const unsigned char *der[MAX_PEER_CERTS];
    size_t len[MAX_PEER_CERTS];
    size_t n = pw_http_req_peer_certs(req, der, len, MAX_PEER_CERTS);
    char cert_why[512] = "";
    int rc = pw_auth_user_x509(x->auth, der, len, n, id, cert_why, sizeof cert_why);
    if (rc == 0)
        return 0;
    rc = pw_auth_user(x->auth, pw_http_req_header(req, "Authorization"), id, why, why_n);
    if (rc == PW_EAUTH && cert_why[0]) {
        char *both = pw_http_req_header(req, "Authorization") ? pw_xasprintf("%s; %s", cert_why, why)
                                                               : pw_xstrdup(cert_why);
        snprintf(why, why_n, "%s", both);
        free(both);
    }
    return rc;
}

/* Authenticates, limits and authorizes; true when the handler may run (else the refusal is sent). */
static bool check(pw_http_req *req, struct pw_api_ctx *x, struct call *c)
{
    const struct rule *r = c->rule;
    char why[768];
    int rc = authenticate(req, x, &c->id, why, sizeof why);
    if (rc != 0) {
        refuse(req, c, rc == PW_EAUTH ? PW_EAUTH : PW_EUNAVAIL, why);
        return false;
    }
    c->authed = true;
    if (x->rate_limit) {
        int wait = pw_userlimit_take(x->rate_limit, c->id.user, pw_clock_mono_ms());
        if (wait > 0) {
            char ra[16];
            snprintf(ra, sizeof ra, "%d", wait);
            pw_http_add_header(req, "Retry-After", ra);
            snprintf(why, sizeof why, "user \"%s\" is over the request rate limit; retry in %d s", c->id.user, wait);
            refuse(req, c, PW_ETOOMANY, why);
            return false;
        }
    }
    if (r->access == ACCESS_AUTHENTICATED)
        return true;
    struct pw_auth_attrs at = {.verb = r->verb,
                               .resource = r->resource,
                               .name = r->resource ? pw_http_req_param(req, "id") : NULL,
                               .path = r->resource ? NULL : r->pattern};
    rc = pw_auth_authorize(x->auth, &c->id, &at, why, sizeof why);
    if (rc != 0) {
        refuse(req, c, rc == PW_EFORBIDDEN ? PW_EFORBIDDEN : PW_EUNAVAIL, why);
        return false;
    }
    return true;
}

bool pw_api_before(pw_http_req *req, const struct pw_http_route *route, void *ctx)
{
    struct pw_api_ctx *x = ctx;
    struct call *c = pw_xcalloc(1, sizeof *c);
    c->rule = rule_of(route);
    pw_http_req_set_data(req, c, call_free);
    if (!c->rule) {
        PW_ERROR("api: route %s %s has no access rule: refused", route->method, route->pattern);
        refuse(req, c, PW_EFORBIDDEN, "this route has no access rule");
        return false;
    }
    enum access a = c->rule->access;
    if (!x->auth || a == ACCESS_OPEN || a == ACCESS_SELF || (a == ACCESS_METRICS && x->metrics_anonymous))
        return true;
    return check(req, x, c);
}

static bool is_write(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

void pw_api_after(pw_http_req *req, const struct pw_http_route *route, int status, void *ctx)
{
    struct pw_api_ctx *x = ctx;
    struct call *c = pw_http_req_data(req);
    if (!x->audit || !c)
        return;
    bool denial = status == 401 || status == 403 || status == 429;
    bool write = is_write(pw_http_req_method(req)) && (!c->rule || c->rule->access != ACCESS_SELF);
    if (!denial && !write)
        return;
    const char *task = c->task_id[0] ? c->task_id : pw_http_req_param(req, "id");
    struct pw_audit_event ev = {
        .user = c->authed ? c->id.user : NULL,
        .groups = c->authed ? c->id.groups : NULL,
        .n_groups = c->authed ? c->id.n_groups : 0,
        .verb = c->rule && c->rule->verb ? c->rule->verb : NULL,
        .method = pw_http_req_method(req),
        .path = pw_http_req_path(req),
        .task_id = task,
        .code = status,
        .source = pw_http_req_peer(req),
        .reason = c->reason[0] ? c->reason : NULL,
    };
    (void)route;
    pw_audit_write(x->audit, &ev);
}

const char *pw_api_req_user(pw_http_req *req)
{
    struct call *c = pw_http_req_data(req);
    return c && c->authed ? c->id.user : NULL;
}

void pw_api_req_set_task(pw_http_req *req, const char *task_id)
{
    struct call *c = pw_http_req_data(req);
    if (c)
        snprintf(c->task_id, sizeof c->task_id, "%s", task_id);
}

void pw_api_h_whoami(pw_http_req *req, void *ctx)
{
    (void)ctx;
    struct call *c = pw_http_req_data(req);
    struct pw_identity anon;
    const struct pw_identity *id = c && c->authed ? &c->id : NULL;
    if (!id) {
        pw_identity_anonymous(&anon); /* no middleware: everyone is anonymous */
        id = &anon;
    }
    json_t *groups = json_array();
    for (size_t i = 0; i < id->n_groups; i++)
        json_array_append_new(groups, json_string(id->groups[i]));
    json_t *o = json_pack("{s:s, s:s, s:o}", "username", id->user, "uid", id->uid ? id->uid : "", "groups", groups);
    if (id == &anon)
        pw_identity_fini(&anon);
    pw_http_reply_json(req, 200, o);
}
