/* agents.c: the agent protocol's HTTP side (docs/agent.md). POST /agent/v1/clusters/{cluster}/sync
 * (and /agent/v1/sync, the first cluster's): who may speak for a node is decided first, before
 * anything the agent sent is read: the cluster named in the path is held (so it cannot be removed
 * under the sync) and reviews the agent's token with its own client (pw_auth_agent_node_in: that
 * cluster's TokenReview, its ServiceAccount, its node), so an agent of one cluster can never speak
 * for a node of another. A body that names another node or another cluster is refused (403) and
 * nothing of it is recorded. The answer is a long poll: a chunked response the cluster's agent
 * executor completes when it has news or the wait ends. GET /api/v1/agents lists every cluster's
 * agents. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "auth/auth.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/agentexec.h"

static void reply_error(pw_http_req *req, int code, const char *message, const char *field)
{
    if (code == PW_EAUTH)
        pw_http_add_header(req, "WWW-Authenticate", "Bearer");
    pw_http_reply_json(req, pw_err_http_status(code), pw_api_error(code, message, field));
}

/* Who the caller speaks for in the held cluster: 0 with node set, or the error already sent. */
static int agent_node(struct pw_api_ctx *c, pw_http_req *req, const struct pw_engine_agents_ref *ref, char *node,
                      size_t n)
{
    const char *token = pw_auth_bearer(pw_http_req_header(req, "Authorization"));
    if (!token) {
        reply_error(req, PW_EAUTH, "a bearer token is required (the agent's projected ServiceAccount token)", NULL);
        return PW_EAUTH;
    }
    char why[512];
    int rc = ref->first ? pw_auth_agent_node(c->auth, token, c->agent_namespace, c->agent_sa, node, n, why, sizeof why)
                        : pw_auth_agent_node_in(c->auth, ref->client, ref->cluster, token, c->agent_namespace,
                                                c->agent_sa, node, n, why, sizeof why);
    if (rc != 0) {
        char *msg = pw_xasprintf("cluster %s: %s", ref->cluster, why);
        reply_error(req, rc, msg, NULL);
        free(msg);
    }
    return rc;
}

static void answer_stream(void *arg, json_t *resp)
{
    pw_http_stream *s = arg;
    char *text = json_dumps(resp, JSON_COMPACT);
    json_decref(resp);
    pw_http_stream_write(s, text, strlen(text)); /* a client gone is fine: it syncs again */
    free(text);
    pw_http_stream_close(s);
}

/* The body's claim of field (node, cluster) against what the token and path say: true when it
 * names nothing or the same; else the 403 is sent. */
static bool claim_ok(pw_http_req *req, const json_t *body, const char *field, const char *is, const char *what)
{
    const char *claimed = json_string_value(json_object_get(body, field));
    if (!claimed || strcmp(claimed, is) == 0)
        return true;
    char *msg = pw_xasprintf("%s: this agent's token speaks for %s %s, not %s", field, what, is, claimed);
    PW_WARN("agent sync refused: %s", msg);
    reply_error(req, PW_EFORBIDDEN, msg, field);
    free(msg);
    return false;
}

/* One sync in the held cluster. */
static void sync_in(struct pw_api_ctx *c, pw_http_req *req, const struct pw_engine_agents_ref *ref)
{
    char node[254];
    if (agent_node(c, req, ref, node, sizeof node) != 0)
        return;
    size_t len;
    const char *text = pw_http_req_body(req, &len);
    json_t *body = NULL, *err = NULL;
    int rc = pw_api_parse_json(pw_http_req_header(req, "Content-Type"), text, len, &body, &err);
    if (rc != 0) {
        pw_http_reply_json(req, pw_err_http_status(rc), err);
        return;
    }
    struct pw_field_errors errs;
    if (!claim_ok(req, body, "node", node, "node") || !claim_ok(req, body, "cluster", ref->cluster, "the nodes of cluster")) {
        json_decref(body);
        return;
    }
    if (pw_agentexec_sync_validate(body, &errs) != 0) {
        pw_http_reply_json(req, 400, pw_api_field_errors(&errs));
        json_decref(body);
        return;
    }
    pw_http_stream *s = pw_http_reply_stream(req, 200, "application/json");
    if (pw_agentexec_sync(ref->x, node, body, answer_stream, s, &errs) != 0)
        pw_http_stream_close(s); /* cannot happen: validated above */
    json_decref(body);
}

void pw_api_h_agent_sync(pw_http_req *req, void *ctx)
{
    struct pw_api_ctx *c = ctx;
    if (!pw_engine_agents(c->engine) || !c->auth) {
        reply_error(req, PW_ENOTFOUND, "agent mode is off in this prewarmd (start it with --agents)", NULL);
        return;
    }
    if (c->agents_elsewhere) {
        reply_error(req, PW_ENOTFOUND, "agents sync on prewarmd's agent listener (--agent-listen), not here", NULL);
        return;
    }
    const char *cluster = pw_http_req_param(req, "cluster"); /* NULL: /agent/v1/sync, the first cluster */
    struct pw_engine_agents_ref ref;
    int rc = pw_engine_agents_hold(c->engine, cluster, &ref);
    if (rc != 0) {
        char *msg = rc == PW_ENOTFOUND ? pw_xasprintf("cluster: prewarmd serves no cluster named %s", cluster)
                                       : pw_xasprintf("cluster %s has not started yet: its agents cannot sync",
                                                      cluster ? cluster : "(the first)");
        reply_error(req, rc, msg, "cluster");
        free(msg);
        return;
    }
    sync_in(c, req, &ref);
    pw_engine_agents_release(c->engine, &ref);
}

static void h_healthz(pw_http_req *req, void *ctx)
{
    (void)ctx;
    pw_http_reply(req, 200, NULL, "ok", 2);
}

const struct pw_http_route pw_api_agent_routes[] = {
    {"GET", "/healthz", h_healthz},
    {"POST", "/agent/v1/sync", pw_api_h_agent_sync},
    {"POST", "/agent/v1/clusters/{cluster}/sync", pw_api_h_agent_sync},
    {NULL, NULL, NULL},
};

void pw_api_h_agents(pw_http_req *req, void *ctx)
{
    struct pw_api_ctx *c = ctx;
    pw_http_reply_json(req, 200, pw_engine_agents_list(c->engine)); /* {"items": []} when agent mode is off */
}
