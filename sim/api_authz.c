/* api_authz.c: who a request comes from and whether it may be made, as kube-apiserver's filters do it:
 * authentication (the kubeconfig's token or client certificate: kubesim-admin in system:masters; a
 * --token-auth-file token; a ServiceAccount token kubesim issued), impersonation (Impersonate-User,
 * -Group, -Uid: kubectl --as), authorization with --enforce-rbac (the request's attributes as
 * apiserver's RequestInfoFactory derives them, then sim/rbac.c; a denial is the real 403 Status), the
 * review kinds authorization.k8s.io/v1 SubjectAccessReview, SelfSubjectAccessReview,
 * LocalSubjectAccessReview and authentication.k8s.io/v1 SelfSubjectReview, and the validation and
 * defaults of the rbac.authorization.k8s.io/v1 kinds.
 *
 * Thread model: handlers run on the HTTP pool's threads; everything read is the store (its own lock)
 * or read-only after start (the token file, the flags). */
#include "sim/api_int.h"
#include "sim/rbac.h"
#include "sim/rbac_pb.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/mem.h"
#include "base/sv.h"
#include "auth/auth.h"

#define MAX_SEG 12

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static json_t *admin_user(const char *name)
{
    return json_pack("{s:s, s:s, s:[ss]}", "username", name, "uid", name, "groups", SIM_RBAC_MASTERS,
                     "system:authenticated");
}

json_t *sim_api_body_object(const struct rdef *rd, pw_http_req *req, char **err)
{
    size_t len;
    const char *text = pw_http_req_body(req, &len);
    if (sim_rbac_pb_content(pw_http_req_header(req, "Content-Type")) && sim_rbac_pb_known(rd->kind)) {
        char gv[128];
        json_t *doc = sim_rbac_pb_decode(rd->kind, sim_api_gv(rd, gv, sizeof(gv)), text, len);
        if (!doc)
            *err = pw_xasprintf("%s in version \"%s\" cannot be handled as a %s: the protobuf body is not a %s",
                                rd->kind, rd->version, rd->kind, rd->kind);
        return doc;
    }
    json_error_t jerr;
    json_t *obj = json_loadb(text, len, 0, &jerr);
    if (json_is_object(obj))
        return obj;
    json_decref(obj);
    *err = pw_xasprintf("the body of the request could not be decoded as a JSON object: %s", jerr.text);
    return NULL;
}

/* ---- authentication ---- */

static const char *bearer(pw_http_req *req)
{
    const char *h = pw_http_req_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return h;
}

/* kube-apiserver's x509 authenticator: a client certificate that verifies against kubesim's CA or a
 * --client-ca-file CA names the user (subject CN) and groups (O values, then system:authenticated);
 * kubesim's own admin certificate is CN kubesim-admin, O system:masters. NULL: none, or one that does
 * not verify (the handshake asked for it; the verdict is here). */
static json_t *client_cert_user(struct sim_api *api, pw_http_req *req)
{
    (void)api;
    if (pw_http_req_client_cert(req, NULL, 0) != 1)
        return NULL;
    const unsigned char *der[1];
    size_t len[1];
    struct pw_identity id;
    char why[256];
    if (pw_http_req_peer_certs(req, der, len, 1) != 1 || pw_auth_x509_subject(der[0], len[0], &id, why, sizeof why) != 0)
        return NULL;
    json_t *groups = json_array();
    for (size_t i = 0; i < id.n_groups; i++)
        json_array_append_new(groups, json_string(id.groups[i]));
    json_t *u = json_pack("{s:s, s:s, s:o}", "username", id.user, "uid", "", "groups", groups);
    pw_identity_fini(&id);
    return u;
}

json_t *sim_api_authenticate(struct sim_api *api, pw_http_req *req)
{
    const char *t = bearer(req);
    if (t && *t) {
        if (api->token && *api->token && strcmp(t, api->token) == 0)
            return admin_user("kubesim-admin");
        json_t *u = sim_tokenfile_user(api->tokenfile, t);
        if (!u)
            u = sim_api_token_user(api, t); /* a ServiceAccount token for the API server's audience */
        if (u)
            return u;
    }
    return client_cert_user(api, req);
}

json_t *sim_api_static_token_review(struct sim_api *api, const char *token, const json_t *audiences)
{
    json_t *user = api->token && *api->token && strcmp(token, api->token) == 0 ? admin_user("kubesim-admin")
                                                                                : sim_tokenfile_user(api->tokenfile, token);
    if (!user)
        return NULL;
    /* authenticator.WrapAudienceAgnosticToken: only for the API server's own audience */
    bool ok = json_array_size(audiences) == 0;
    size_t i;
    const json_t *a;
    json_array_foreach(audiences, i, a)
    {
        ok = ok || strcmp(json_string_value(a) ? json_string_value(a) : "", SIM_TOKEN_API_AUDIENCE) == 0;
    }
    if (!ok) {
        json_decref(user);
        return json_pack("{s:b, s:s}", "authenticated", 0, "error", "invalid bearer token");
    }
    return json_pack("{s:b, s:o, s:[s]}", "authenticated", 1, "user", user, "audiences", SIM_TOKEN_API_AUDIENCE);
}

/* ---- request attributes (apiserver's RequestInfoFactory) ---- */

struct attrs {
    struct sim_rbac_attrs a;
    char *path; /* owned: the split copy */
    char verb[24];
};

static bool is_watch(pw_http_req *req)
{
    bool watch = false;
    const char *w = pw_http_req_query(req, "watch");
    if (w && pw_parse_bool(*w ? w : "true", &watch) != 0)
        watch = false;
    return watch;
}

static void resource_verb(struct attrs *x, pw_http_req *req)
{
    const char *m = pw_http_req_method(req);
    bool named = x->a.name && *x->a.name;
    const char *v = "";
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
        v = is_watch(req) ? "watch" : named ? "get" : "list";
    else if (strcmp(m, "POST") == 0)
        v = "create";
    else if (strcmp(m, "PUT") == 0)
        v = "update";
    else if (strcmp(m, "PATCH") == 0)
        v = "patch";
    else if (strcmp(m, "DELETE") == 0)
        v = named ? "delete" : "deletecollection";
    snprintf(x->verb, sizeof(x->verb), "%s", v);
}

/* Fills x from the request's path and method; x->path must be freed by the caller. */
static void attrs_of(pw_http_req *req, struct attrs *x)
{
    memset(x, 0, sizeof(*x));
    const char *raw = pw_http_req_path(req);
    x->path = pw_xstrdup(raw);
    char *seg[MAX_SEG];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(x->path, "/", &save); t && n < MAX_SEG; t = strtok_r(NULL, "/", &save))
        seg[n++] = t;
    bool core = n >= 3 && strcmp(seg[0], "api") == 0;
    bool grouped = n >= 4 && strcmp(seg[0], "apis") == 0;
    if (!core && !grouped) {
        x->a.resource_request = false;
        x->a.path = raw;
        const char *m = pw_http_req_method(req);
        size_t i;
        for (i = 0; m[i] && i + 1 < sizeof(x->verb); i++)
            x->verb[i] = (char)tolower((unsigned char)m[i]);
        x->verb[i] = '\0';
        x->a.verb = x->verb;
        return;
    }
    x->a.resource_request = true;
    x->a.group = core ? "" : seg[1];
    x->a.version = core ? seg[1] : seg[2];
    char **s = seg + (core ? 2 : 3);
    int m = n - (core ? 2 : 3);
    x->a.ns = "";
    if (strcmp(s[0], "namespaces") == 0 && m >= 2) {
        x->a.ns = s[1];
        /* namespaces/NS/status and /finalize stay the namespace's own subresources */
        if (m > 2 && strcmp(s[2], "status") != 0 && strcmp(s[2], "finalize") != 0) {
            s += 2;
            m -= 2;
        }
    }
    x->a.resource = s[0];
    x->a.name = m >= 2 ? s[1] : "";
    x->a.subresource = m >= 3 ? s[2] : "";
    resource_verb(x, req);
    x->a.verb = x->verb;
}

/* Replies the real server's 403 for a. */
static void forbid(pw_http_req *req, const json_t *user, const struct sim_rbac_attrs *a, const char *reason)
{
    char *msg = sim_rbac_forbidden_message(user, a, reason);
    json_t *details = json_object();
    if (a->resource_request) {
        if (a->name && *a->name)
            json_object_set_new(details, "name", json_string(a->name));
        if (a->group && *a->group)
            json_object_set_new(details, "group", json_string(a->group));
        json_object_set_new(details, "kind", json_string(a->resource ? a->resource : ""));
    }
    sim_api_status(req, 403, "Forbidden", msg, details);
    free(msg);
}

bool sim_api_authorize_request(struct sim_api *api, pw_http_req *req, const json_t *user)
{
    if (!api->enforce_rbac)
        return true;
    struct attrs x;
    attrs_of(req, &x);
    char *reason = NULL;
    bool ok = sim_rbac_authorize(api->sim->store, user, &x.a, &reason);
    if (!ok) {
        char res[200];
        snprintf(res, sizeof(res), "%s%s%s", x.a.resource_request ? x.a.resource : "nonresource",
                 x.a.subresource && *x.a.subresource ? "/" : "", x.a.subresource ? x.a.subresource : "");
        sim_api_stat(api, x.verb, res, 403);
        forbid(req, user, &x.a, reason);
    }
    free(reason);
    free(x.path);
    return ok;
}

/* ---- impersonation (apiserver's WithImpersonation) ---- */

static bool may_impersonate(struct sim_api *api, pw_http_req *req, const json_t *user, const char *resource,
                            const char *ns, const char *name)
{
    if (!api->enforce_rbac)
        return true;
    struct sim_rbac_attrs a = {.verb = "impersonate", .resource_request = true, .ns = ns, .group = "",
                               .version = "v1", .resource = resource, .name = name};
    if (strcmp(resource, "uids") == 0)
        a.group = "authentication.k8s.io";
    if (sim_rbac_authorize(api->sim->store, user, &a, NULL))
        return true;
    forbid(req, user, &a, NULL);
    return false;
}

bool sim_api_impersonate(struct sim_api *api, pw_http_req *req, json_t **user)
{
    const char *as = pw_http_req_header(req, "Impersonate-User");
    const char *group = pw_http_req_header(req, "Impersonate-Group");
    const char *uid = pw_http_req_header(req, "Impersonate-Uid");
    if (!as || !*as) {
        if ((group && *group) || (uid && *uid)) {
            sim_api_status(req, 500, "InternalError",
                           "Internal error occurred: requested impersonation without impersonating a user", NULL);
            return false;
        }
        return true;
    }
    static const char SA[] = "system:serviceaccount:";
    json_t *groups = json_array();
    bool ok;
    if (strncmp(as, SA, sizeof(SA) - 1) == 0 && strchr(as + sizeof(SA) - 1, ':')) {
        const char *rest = as + sizeof(SA) - 1;
        const char *colon = strchr(rest, ':');
        char *ns = pw_xstrndup(rest, (size_t)(colon - rest));
        ok = may_impersonate(api, req, *user, "serviceaccounts", ns, colon + 1);
        if (!group || !*group) { /* a ServiceAccount's groups are known */
            json_array_append_new(groups, json_string("system:serviceaccounts"));
            char *g = pw_xasprintf("system:serviceaccounts:%s", ns);
            json_array_append_new(groups, json_string(g));
            free(g);
        }
        free(ns);
    } else {
        ok = may_impersonate(api, req, *user, "users", "", as);
    }
    if (ok && group && *group) {
        ok = may_impersonate(api, req, *user, "groups", "", group);
        json_array_append_new(groups, json_string(group));
    }
    if (ok && uid && *uid)
        ok = may_impersonate(api, req, *user, "uids", "", uid);
    if (!ok) {
        json_decref(groups);
        return false;
    }
    bool has_auth = false;
    size_t i;
    const json_t *g;
    json_array_foreach(groups, i, g)
    {
        has_auth = has_auth || strcmp(json_string_value(g), "system:authenticated") == 0 ||
                   strcmp(json_string_value(g), "system:unauthenticated") == 0;
    }
    if (!has_auth && strcmp(as, "system:anonymous") != 0)
        json_array_append_new(groups, json_string("system:authenticated"));
    json_t *next = json_pack("{s:s, s:o}", "username", as, "groups", groups);
    if (uid && *uid)
        json_object_set_new(next, "uid", json_string(uid));
    json_decref(*user);
    *user = next;
    return true;
}

/* ---- the review kinds ---- */

enum review { R_NONE, R_SAR, R_SSAR, R_LSAR, R_SSR, R_SSRR };

static enum review review_of(const struct rdef *rd)
{
    if (strcmp(rd->group, "authorization.k8s.io") == 0) {
        if (strcmp(rd->plural, "subjectaccessreviews") == 0)
            return R_SAR;
        if (strcmp(rd->plural, "selfsubjectaccessreviews") == 0)
            return R_SSAR;
        if (strcmp(rd->plural, "localsubjectaccessreviews") == 0)
            return R_LSAR;
        if (strcmp(rd->plural, "selfsubjectrulesreviews") == 0)
            return R_SSRR;
    }
    if (strcmp(rd->group, "authentication.k8s.io") == 0 && strcmp(rd->plural, "selfsubjectreviews") == 0)
        return R_SSR;
    return R_NONE;
}

bool sim_api_is_review(const struct rdef *rd)
{
    return review_of(rd) != R_NONE;
}

static void review_reply(struct rreq *r, int code, json_t *obj)
{
    sim_api_stat(r->api, "create", r->rd->plural, code);
    pw_http_reply_json(r->req, code, obj);
}

static void review_fail(struct rreq *r, int code, const char *reason, const char *msg, json_t *details)
{
    review_reply(r, code, sim_api_status_obj(code, reason, msg, details));
}

static void add_cause(json_t *causes, const char *field, const char *value_json, const char *detail)
{
    char *m = pw_xasprintf("Invalid value: %s: %s", value_json, detail);
    json_array_append_new(causes, json_pack("{s:s, s:s, s:s}", "reason", "FieldValueInvalid", "message", m, "field", field));
    free(m);
}

/* 422 Invalid for the causes (taken), as errors.NewInvalid words it. */
static void review_invalid(struct rreq *r, json_t *causes)
{
    pw_buf b;
    pw_buf_init(&b, 1u << 20);
    pw_buf_printf(&b, "%s.%s \"\" is invalid: ", r->rd->kind, r->rd->group);
    size_t n = json_array_size(causes), i;
    const json_t *c;
    if (n > 1)
        pw_buf_puts(&b, "[");
    json_array_foreach(causes, i, c)
    {
        pw_buf_printf(&b, "%s%s: %s", i ? ", " : "", jstr(c, "field"), jstr(c, "message"));
    }
    if (n > 1)
        pw_buf_puts(&b, "]");
    char *msg = pw_buf_steal(&b);
    review_fail(r, 422, "Invalid", msg,
                json_pack("{s:s, s:s, s:o}", "group", r->rd->group, "kind", r->rd->kind, "causes", causes));
    free(msg);
    pw_buf_fini(&b);
}

static json_t *json_text_of(const json_t *v)
{
    char *t = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_t *s = json_string(t ? t : "null");
    free(t);
    return s;
}

/* ValidateSubjectAccessReviewSpec and friends: the causes (a new array, maybe empty). */
static json_t *validate_spec(enum review kind, const json_t *spec, const char *url_ns)
{
    json_t *causes = json_array();
    const json_t *ra = json_object_get(spec, "resourceAttributes");
    const json_t *na = json_object_get(spec, "nonResourceAttributes");
    if (json_is_null(ra))
        ra = NULL;
    if (json_is_null(na))
        na = NULL;
    if (ra && na) {
        json_t *t = json_text_of(na);
        add_cause(causes, "spec.nonResourceAttributes", json_string_value(t),
                  "cannot be specified in combination with resourceAttributes");
        json_decref(t);
    }
    if (!ra && !na)
        add_cause(causes, "spec.resourceAttributes", "\"null\"",
                  "exactly one of nonResourceAttributes or resourceAttributes must be specified");
    if ((kind == R_SAR || kind == R_LSAR) && !*jstr(spec, "user") && json_array_size(json_object_get(spec, "groups")) == 0)
        add_cause(causes, "spec.user", "\"\"", "at least one of user or group must be specified");
    if (kind == R_LSAR && na)
        add_cause(causes, "spec.nonResourceAttributes", "\"{}\"", "disallowed on this kind of request");
    if (kind == R_LSAR && ra && strcmp(jstr(ra, "namespace"), url_ns ? url_ns : "") != 0) {
        char *v = pw_xasprintf("\"%s\"", jstr(ra, "namespace"));
        add_cause(causes, "spec.resourceAttributes.namespace", v, "must match metadata.namespace");
        free(v);
    }
    return causes;
}

/* The attributes a review asks about (strings borrowed from spec). */
static void spec_attrs(const json_t *spec, struct sim_rbac_attrs *a)
{
    const json_t *ra = json_object_get(spec, "resourceAttributes");
    memset(a, 0, sizeof(*a));
    if (json_is_object(ra)) {
        a->resource_request = true;
        a->ns = jstr(ra, "namespace");
        a->verb = jstr(ra, "verb");
        a->group = jstr(ra, "group");
        a->version = jstr(ra, "version");
        a->resource = jstr(ra, "resource");
        a->subresource = jstr(ra, "subresource");
        a->name = jstr(ra, "name");
    } else {
        const json_t *na = json_object_get(spec, "nonResourceAttributes");
        a->path = jstr(na, "path");
        a->verb = jstr(na, "verb");
    }
}

/* The UserInfo a SubjectAccessReview names: spec.user, groups, uid, extra. */
static json_t *spec_user(const json_t *spec)
{
    json_t *groups = json_array();
    size_t i;
    const json_t *g;
    json_array_foreach(json_object_get(spec, "groups"), i, g)
    {
        if (json_is_string(g))
            json_array_append(groups, (json_t *)g);
    }
    json_t *u = json_pack("{s:s, s:s, s:o}", "username", jstr(spec, "user"), "uid", jstr(spec, "uid"), "groups", groups);
    const json_t *extra = json_object_get(spec, "extra");
    if (json_is_object(extra))
        json_object_set(u, "extra", (json_t *)extra);
    return u;
}

static void self_subject_review(struct rreq *r, json_t *body)
{
    json_t *info = json_deep_copy(r->user);
    if (!*jstr(info, "uid"))
        json_object_del(info, "uid");
    json_t *out = json_pack("{s:s, s:s, s:{s:n}, s:{s:o}}", "kind", "SelfSubjectReview", "apiVersion",
                            "authentication.k8s.io/v1", "metadata", "creationTimestamp", "status", "userInfo", info);
    json_decref(body);
    review_reply(r, 201, out);
}

/* Copies the non-empty string lists keys of rule into a new object. */
static json_t *rule_part(const json_t *rule, const char *const *keys, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(rule, keys[i]);
        if (json_array_size(v))
            json_object_set(o, keys[i], (json_t *)v);
    }
    return o;
}

/* SelfSubjectRulesReview: the rules the caller holds in spec.namespace, as RBAC's rule resolver
 * (RulesFor) lists them: every rule of the ClusterRoleBindings and of that namespace's RoleBindings
 * naming the caller (evaluated like SelfSubjectAccessReview, with or without --enforce-rbac); a
 * binding whose role is missing makes it incomplete, with the error. */
static void self_subject_rules_review(struct rreq *r, json_t *body)
{
    const char *ns = jstr(json_object_get(body, "spec"), "namespace");
    if (!*ns) {
        json_decref(body);
        review_fail(r, 400, "BadRequest", "no namespace on request", NULL);
        return;
    }
    json_t *res = json_array(), *nonres = json_array();
    char *errors = NULL;
    static const char *const RES[] = {"verbs", "apiGroups", "resources", "resourceNames"};
    static const char *const NONRES[] = {"verbs", "nonResourceURLs"};
    json_t *rules = sim_rbac_rules_for(r->api->sim->store, r->user, ns, &errors);
    size_t i;
    const json_t *rule;
    json_array_foreach(rules, i, rule)
    {
        if (json_array_size(json_object_get(rule, "resources")))
            json_array_append_new(res, rule_part(rule, RES, 4));
        if (json_array_size(json_object_get(rule, "nonResourceURLs")))
            json_array_append_new(nonres, rule_part(rule, NONRES, 2));
    }
    json_decref(rules);
    json_t *status = json_pack("{s:o, s:o, s:b}", "resourceRules", res, "nonResourceRules", nonres, "incomplete",
                               errors != NULL);
    if (errors)
        json_object_set_new(status, "evaluationError", json_string(errors));
    free(errors);
    json_t *meta = json_object_get(body, "metadata");
    json_t *meta_out = json_is_object(meta) ? json_deep_copy(meta) : json_object();
    json_object_set_new(meta_out, "creationTimestamp", json_null());
    json_object_set_new(body, "metadata", meta_out);
    json_object_set_new(body, "kind", json_string("SelfSubjectRulesReview"));
    json_object_set_new(body, "apiVersion", json_string("authorization.k8s.io/v1"));
    json_object_set_new(body, "status", status);
    review_reply(r, 201, body);
}

void sim_api_review(struct rreq *r)
{
    enum review kind = review_of(r->rd);
    char *m = NULL;
    json_t *body = sim_api_body_object(r->rd, r->req, &m);
    if (body && json_object_get(body, "spec") && !json_is_object(json_object_get(body, "spec"))) {
        json_decref(body);
        body = NULL;
        m = pw_xasprintf("%s in version \"v1\" cannot be handled as a %s: json: cannot unmarshal into Go struct "
                         "field %s.spec",
                         r->rd->kind, r->rd->kind, r->rd->kind);
    }
    if (!body) {
        review_fail(r, 400, "BadRequest", m, NULL);
        free(m);
        return;
    }
    if (kind == R_SSR) {
        self_subject_review(r, body);
        return;
    }
    if (kind == R_SSRR) {
        self_subject_rules_review(r, body);
        return;
    }
    const json_t *spec = json_object_get(body, "spec");
    json_t *causes = validate_spec(kind, spec, r->ns);
    if (json_array_size(causes)) {
        json_decref(body);
        review_invalid(r, causes);
        return;
    }
    json_decref(causes);
    struct sim_rbac_attrs a;
    spec_attrs(spec, &a);
    json_t *user = kind == R_SSAR ? json_incref((json_t *)r->user) : spec_user(spec);
    char *reason = NULL;
    bool allowed = sim_rbac_authorize(r->api->sim->store, user, &a, &reason);
    json_decref(user);
    json_t *status = json_pack("{s:b}", "allowed", allowed);
    if (reason && *reason)
        json_object_set_new(status, "reason", json_string(reason));
    free(reason);
    char gv[128];
    json_t *meta = json_object_get(body, "metadata");
    json_t *meta_out = json_is_object(meta) ? json_deep_copy(meta) : json_object();
    json_object_set_new(meta_out, "creationTimestamp", json_null());
    json_object_set_new(body, "metadata", meta_out);
    json_object_set_new(body, "kind", json_string(r->rd->kind));
    json_object_set_new(body, "apiVersion", json_string(sim_api_gv(r->rd, gv, sizeof(gv))));
    json_object_set_new(body, "status", status);
    review_reply(r, 201, body);
}

/* ---- the RBAC kinds ---- */

static void cause3(json_t *causes, const char *reason, const char *field, const char *message)
{
    json_array_append_new(causes, json_pack("{s:s, s:s, s:s}", "reason", reason, "message", message, "field", field));
}

static bool is_binding(const struct rdef *rd)
{
    return strcmp(rd->plural, "rolebindings") == 0 || strcmp(rd->plural, "clusterrolebindings") == 0;
}

/* ValidatePolicyRule for rules[i]. */
static void validate_rule(const json_t *rule, size_t i, bool namespaced, json_t *causes)
{
    char f[96];
    if (json_array_size(json_object_get(rule, "verbs")) == 0) {
        snprintf(f, sizeof(f), "rules[%zu].verbs", i);
        cause3(causes, "FieldValueRequired", f, "Required value: verbs must contain at least one value");
    }
    if (json_array_size(json_object_get(rule, "nonResourceURLs")) > 0) {
        snprintf(f, sizeof(f), "rules[%zu].nonResourceURLs", i);
        if (namespaced)
            cause3(causes, "FieldValueInvalid", f, "Invalid value: namespaced rules cannot apply to non-resource URLs");
        if (json_array_size(json_object_get(rule, "apiGroups")) || json_array_size(json_object_get(rule, "resources")) ||
            json_array_size(json_object_get(rule, "resourceNames")))
            cause3(causes, "FieldValueInvalid", f,
                   "Invalid value: rules cannot apply to both regular resources and non-resource URLs");
        return;
    }
    if (json_array_size(json_object_get(rule, "apiGroups")) == 0) {
        snprintf(f, sizeof(f), "rules[%zu].apiGroups", i);
        cause3(causes, "FieldValueRequired", f, "Required value: resource rules must supply at least one api group");
    }
    if (json_array_size(json_object_get(rule, "resources")) == 0) {
        snprintf(f, sizeof(f), "rules[%zu].resources", i);
        cause3(causes, "FieldValueRequired", f, "Required value: resource rules must supply at least one resource");
    }
}

static void validate_subject(const json_t *s, size_t i, bool namespaced, json_t *causes)
{
    char f[96];
    const char *kind = jstr(s, "kind"), *name = jstr(s, "name"), *group = jstr(s, "apiGroup");
    if (!*name) {
        snprintf(f, sizeof(f), "subjects[%zu].name", i);
        cause3(causes, "FieldValueRequired", f, "Required value");
    }
    snprintf(f, sizeof(f), "subjects[%zu].apiGroup", i);
    if (strcmp(kind, "ServiceAccount") == 0) {
        if (*group) {
            char *m = pw_xasprintf("Unsupported value: \"%s\": supported values: \"\"", group);
            cause3(causes, "FieldValueNotSupported", f, m);
            free(m);
        }
        if (!namespaced && !*jstr(s, "namespace")) {
            snprintf(f, sizeof(f), "subjects[%zu].namespace", i);
            cause3(causes, "FieldValueRequired", f, "Required value");
        }
    } else if (strcmp(kind, "User") == 0 || strcmp(kind, "Group") == 0) {
        if (json_object_get(s, "apiGroup") && strcmp(group, SIM_RBAC_GROUP) != 0) { /* absent: defaulted */
            char *m = pw_xasprintf("Unsupported value: \"%s\": supported values: \"" SIM_RBAC_GROUP "\"", group);
            cause3(causes, "FieldValueNotSupported", f, m);
            free(m);
        }
    } else {
        snprintf(f, sizeof(f), "subjects[%zu].kind", i);
        char *m = pw_xasprintf("Unsupported value: \"%s\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                               kind);
        cause3(causes, "FieldValueNotSupported", f, m);
        free(m);
    }
}

static void validate_binding(const struct rdef *rd, const json_t *obj, json_t *causes)
{
    const json_t *ref = json_object_get(obj, "roleRef");
    const char *kind = jstr(ref, "kind");
    if (*jstr(ref, "apiGroup") && strcmp(jstr(ref, "apiGroup"), SIM_RBAC_GROUP) != 0) { /* "": defaulted */
        char *m = pw_xasprintf("Unsupported value: \"%s\": supported values: \"" SIM_RBAC_GROUP "\"",
                               jstr(ref, "apiGroup"));
        cause3(causes, "FieldValueNotSupported", "roleRef.apiGroup", m);
        free(m);
    }
    bool ok_kind = strcmp(kind, "ClusterRole") == 0 || (rd->namespaced && strcmp(kind, "Role") == 0);
    if (!ok_kind) {
        char *m = pw_xasprintf(rd->namespaced ? "Unsupported value: \"%s\": supported values: \"Role\", \"ClusterRole\""
                                              : "Unsupported value: \"%s\": supported values: \"ClusterRole\"",
                               kind);
        cause3(causes, "FieldValueNotSupported", "roleRef.kind", m);
        free(m);
    }
    if (!*jstr(ref, "name"))
        cause3(causes, "FieldValueRequired", "roleRef.name", "Required value");
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(obj, "subjects"), i, s)
    {
        validate_subject(s, i, rd->namespaced, causes);
    }
}

void sim_api_rbac_validate(const struct rdef *rd, const json_t *obj, json_t *causes)
{
    if (is_binding(rd)) {
        validate_binding(rd, obj, causes);
        return;
    }
    size_t i;
    const json_t *rule;
    json_array_foreach(json_object_get(obj, "rules"), i, rule)
    {
        validate_rule(rule, i, rd->namespaced, causes);
    }
}

void sim_api_rbac_defaults(struct sim *sim, const struct rdef *rd, json_t *obj)
{
    (void)sim;
    if (!is_binding(rd))
        return;
    /* SetDefaults_RoleBinding / _Subject: the RBAC group for roleRef, User and Group subjects */
    json_t *ref = json_object_get(obj, "roleRef");
    if (json_is_object(ref) && !*jstr(ref, "apiGroup"))
        json_object_set_new(ref, "apiGroup", json_string(SIM_RBAC_GROUP));
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(obj, "subjects"), i, s)
    {
        const char *kind = jstr(s, "kind");
        if (!json_object_get(s, "apiGroup") && (strcmp(kind, "User") == 0 || strcmp(kind, "Group") == 0))
            json_object_set_new(s, "apiGroup", json_string(SIM_RBAC_GROUP));
    }
}

void sim_api_rbac_update(const struct rdef *rd, const json_t *cur, json_t *next, json_t *causes)
{
    if (!is_binding(rd))
        return;
    sim_api_rbac_defaults(NULL, rd, next);
    const json_t *was = json_object_get(cur, "roleRef");
    const json_t *now = json_object_get(next, "roleRef");
    if (!json_equal(was, now)) {
        json_t *t = json_text_of(now);
        char *m = pw_xasprintf("Invalid value: %s: cannot change roleRef", json_string_value(t));
        cause3(causes, "FieldValueInvalid", "roleRef", m);
        free(m);
        json_decref(t);
    }
}
