/* agents.c: the agent protocol's HTTP side (docs/agent.md). POST /agent/v1/sync: who may speak for
 * a node is decided first, before anything the agent sent is read (pw_auth_agent_node: its token's
 * review, its ServiceAccount, its node); a body that names another node is refused (403) and nothing
 * of it is recorded. The answer is a long poll: a chunked
 * response the agent executor completes when it has news or the wait ends. GET /api/v1/agents lists
 * the agents. */
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

/* Who the caller speaks for: 0 with node set, or the error already sent. */
static int agent_node(struct pw_api_ctx *c, pw_http_req *req, char *node, size_t n)
{
    const char *token = pw_auth_bearer(pw_http_req_header(req, "Authorization"));
    if (!token) {
        reply_error(req, PW_EAUTH, "a bearer token is required (the agent's projected ServiceAccount token)", NULL);
        return PW_EAUTH;
    }
    char why[512];
    int rc = pw_auth_agent_node(c->auth, token, c->agent_namespace, c->agent_sa, node, n, why, sizeof why);
    if (rc != 0)
        reply_error(req, rc, why, NULL);
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

void pw_api_h_agent_sync(pw_http_req *req, void *ctx)
{
    struct pw_api_ctx *c = ctx;
    pw_executor *x = pw_engine_agents(c->engine);
    if (!x || !c->auth) {
        reply_error(req, PW_ENOTFOUND, "agent mode is off in this prewarmd (start it with --agents)", NULL);
        return;
    }
    if (c->agents_elsewhere) {
        reply_error(req, PW_ENOTFOUND, "agents sync on prewarmd's agent listener (--agent-listen), not here", NULL);
        return;
    }
    char node[254];
    if (agent_node(c, req, node, sizeof node) != 0)
        return;
    size_t len;
    const char *text = pw_http_req_body(req, &len);
    json_t *body = NULL, *err = NULL;
    int rc = pw_api_parse_json(pw_http_req_header(req, "Content-Type"), text, len, &body, &err);
    if (rc != 0) {
        pw_http_reply_json(req, pw_err_http_status(rc), err);
        return;
    }
    const char *claimed = json_string_value(json_object_get(body, "node"));
    if (claimed && strcmp(claimed, node) != 0) {
        char *msg = pw_xasprintf("node: this agent's token speaks for node %s, not %s", node, claimed);
        PW_WARN("agent sync refused: %s", msg);
        reply_error(req, PW_EFORBIDDEN, msg, "node");
        free(msg);
        json_decref(body);
        return;
    }
    struct pw_field_errors errs;
    if (pw_agentexec_sync_validate(body, &errs) != 0) {
        pw_http_reply_json(req, 400, pw_api_field_errors(&errs));
        json_decref(body);
        return;
    }
    pw_http_stream *s = pw_http_reply_stream(req, 200, "application/json");
    if (pw_agentexec_sync(x, node, body, answer_stream, s, &errs) != 0)
        pw_http_stream_close(s); /* cannot happen: validated above */
    json_decref(body);
}

static void h_healthz(pw_http_req *req, void *ctx)
{
    (void)ctx;
    pw_http_reply(req, 200, NULL, "ok", 2);
}

const struct pw_http_route pw_api_agent_routes[] = {
    {"GET", "/healthz", h_healthz},
    {"POST", "/agent/v1/sync", pw_api_h_agent_sync},
    {NULL, NULL, NULL},
};

void pw_api_h_agents(pw_http_req *req, void *ctx)
{
    struct pw_api_ctx *c = ctx;
    pw_executor *x = pw_engine_agents(c->engine);
    pw_http_reply_json(req, 200, x ? pw_agentexec_list(x) : json_pack("{s:[]}", "items"));
}
