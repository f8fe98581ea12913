/* policies.c: /api/v1/policies (docs/policies.md): create, list, get, replace (PUT) and delete
 * standing policies through the policy controller (policy/policy.h). Each handler is parse ->
 * validate -> call the controller -> encode; bad specs get 400 naming the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/err.h"
#include "base/mem.h"
#include "ha/ha.h"
#include "policy/policy.h"

/* The controller, or NULL after a 404 was sent (prewarmd without policies: the handlers' tests). */
static pw_policy *policies_of(pw_http_req *req, void *ctx)
{
    pw_policy *pc = ((struct pw_api_ctx *)ctx)->policies;
    if (!pc)
        pw_http_reply_json(req, 404, pw_api_error(PW_ENOTFOUND, "policies are not enabled in this prewarmd", NULL));
    return pc;
}

/* policies_of for a write: with --leader-elect only the leader's controller acts and holds the
 * policies, so a follower answers 503 naming the leader (the client retries there or later). */
static pw_policy *writable_policies_of(pw_http_req *req, void *ctx)
{
    pw_policy *pc = policies_of(req, ctx);
    pw_ha *ha = ((struct pw_api_ctx *)ctx)->ha;
    if (!pc || !ha || pw_ha_is_leader(ha))
        return pc;
    struct pw_ha_status st;
    pw_ha_status(ha, &st);
    char *msg = pw_xasprintf("this replica (%s) follows: policies are changed through the leader (%s)", st.identity,
                             st.holder[0] ? st.holder : "none elected yet");
    pw_http_add_header(req, "Retry-After", "2");
    pw_http_reply_json(req, 503, pw_api_error(PW_EUNAVAIL, msg, NULL));
    free(msg);
    return NULL;
}

/* A failure other than a bad spec: 404 for PW_ENOTFOUND, else the store failed (503; a retry may pass). */
static void reply_rc(pw_http_req *req, int rc, const char *name)
{
    if (rc == PW_ENOTFOUND) {
        char *msg = pw_xasprintf("policy %s not found", name);
        pw_http_reply_json(req, 404, pw_api_error(rc, msg, NULL));
        free(msg);
        return;
    }
    pw_http_reply_json(req, 503, pw_api_error(PW_EUNAVAIL, "the policy could not be stored; retry later", NULL));
}

/* The request body as a JSON object: 0, or the error already sent. */
static int body_of(pw_http_req *req, json_t **out)
{
    size_t len;
    const char *body = pw_http_req_body(req, &len);
    json_t *err = NULL;
    int rc = pw_api_parse_json(pw_http_req_header(req, "Content-Type"), body, len, out, &err);
    if (rc != 0)
        pw_http_reply_json(req, pw_err_http_status(rc), err);
    return rc;
}

void pw_api_h_policy_create(pw_http_req *req, void *ctx)
{
    pw_policy *pc = writable_policies_of(req, ctx);
    json_t *in = NULL;
    if (!pc || body_of(req, &in) != 0)
        return;
    struct pw_field_errors errs;
    json_t *out = NULL;
    int rc = pw_policy_create(pc, in, &errs, &out);
    json_decref(in);
    if (rc == PW_EINVAL) {
        pw_http_reply_json(req, 400, pw_api_field_errors(&errs));
        return;
    }
    if (rc != 0) {
        reply_rc(req, rc, NULL);
        return;
    }
    char *loc = pw_xasprintf("/api/v1/policies/%s", json_string_value(json_object_get(out, "name")));
    pw_http_add_header(req, "Location", loc);
    free(loc);
    pw_http_reply_json(req, 201, out);
}

void pw_api_h_policy_list(pw_http_req *req, void *ctx)
{
    pw_policy *pc = policies_of(req, ctx);
    json_t *out = NULL;
    if (pc && pw_policy_list(pc, &out) == 0)
        pw_http_reply_json(req, 200, out);
}

void pw_api_h_policy_get(pw_http_req *req, void *ctx)
{
    pw_policy *pc = policies_of(req, ctx);
    if (!pc)
        return;
    const char *name = pw_http_req_param(req, "id");
    json_t *out = NULL;
    int rc = pw_policy_get(pc, name, &out);
    if (rc == 0)
        pw_http_reply_json(req, 200, out);
    else
        reply_rc(req, rc, name);
}

void pw_api_h_policy_put(pw_http_req *req, void *ctx)
{
    pw_policy *pc = writable_policies_of(req, ctx);
    json_t *in = NULL;
    if (!pc || body_of(req, &in) != 0)
        return;
    const char *name = pw_http_req_param(req, "id");
    struct pw_field_errors errs;
    json_t *out = NULL;
    int rc = pw_policy_update(pc, name, in, &errs, &out);
    json_decref(in);
    if (rc == PW_EINVAL)
        pw_http_reply_json(req, 400, pw_api_field_errors(&errs));
    else if (rc != 0)
        reply_rc(req, rc, name);
    else
        pw_http_reply_json(req, 200, out);
}

void pw_api_h_policy_delete(pw_http_req *req, void *ctx)
{
    pw_policy *pc = writable_policies_of(req, ctx);
    if (!pc)
        return;
    const char *name = pw_http_req_param(req, "id");
    int rc = pw_policy_delete(pc, name);
    if (rc == 0)
        pw_http_reply_json(req, 200, json_pack("{s:s, s:s}", "name", name, "status", "deleted"));
    else
        reply_rc(req, rc, name);
}
