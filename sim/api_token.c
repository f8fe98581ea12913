/* api_token.c: the ServiceAccount token subresource of kubesim's API server, as kube-apiserver's
 * TokenREST (pkg/registry/core/serviceaccount/storage/token.go) serves it: POST
 * /api/v1/namespaces/{ns}/serviceaccounts/{name}/token with a TokenRequest issues a token (tokens.h)
 * for the API server's audience or the ones asked, bound to a Pod, Secret or Node when asked; the
 * answers about those tokens for TokenReview and for requests bearing one; and the test hook
 * /sim/v1/tokens (GET: how many are remembered; POST {"ageSeconds": N}: every token N seconds older, to
 * test expiry without waiting ten minutes). The body is JSON, or protobuf as kubectl 1.33's typed client
 * sends it (the answer is JSON, which that client also accepts).
 *
 * The real server's defaults: audiences the API server's, expirationSeconds 3600, no maximum (the
 * --service-account-max-token-expiration flag is unset), and --service-account-extend-token-expiration:
 * a pod-bound token of 3607 s for the API server (what kubelets ask for) really lasts a year.
 *
 * Thread model: handlers run on the HTTP pool's threads; the token memory and the store lock
 * themselves. */
#include "sim/api_int.h"
#include "sim/pb.h"
#include "sim/rbac_pb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

#define STAT_RESOURCE "serviceaccounts/token"
#define MIN_EXPIRATION_S 600                /* authentication/validation.MinTokenAgeSec */
#define MAX_EXPIRATION_S (INT64_C(1) << 32) /* ValidateTokenRequest's upper bound */
#define DEFAULT_EXPIRATION_S 3600
#define KUBELET_EXPIRATION_S (60 * 60 + 7)         /* serviceaccount.WarnOnlyBoundTokenExpirationSeconds */
#define EXTENDED_EXPIRATION_S (24 * 365 * 60 * 60) /* serviceaccount.ExpirationExtensionSeconds */
#define MAX_AUDIENCES 64                           /* a cap on what one request may ask for */

static void tfail(struct rreq *r, int code, const char *reason, const char *msg, json_t *details)
{
    sim_api_stat(r->api, "create", STAT_RESOURCE, code);
    sim_api_status(r->req, code, reason, msg, details);
}

static void tfail_not_found(struct rreq *r, const char *resource, const char *name)
{
    char *msg = pw_xasprintf("%s \"%s\" not found", resource, name);
    tfail(r, 404, "NotFound", msg, json_pack("{s:s, s:s, s:s}", "name", name, "group", "", "kind", resource));
    free(msg);
}

/* 422 as errors.NewInvalid(TokenRequest.authentication.k8s.io, name, [one field error]). */
static void tfail_invalid(struct rreq *r, const char *name, const char *field, const char *detail)
{
    char *msg = pw_xasprintf("TokenRequest.authentication.k8s.io \"%s\" is invalid: %s: %s", name, field, detail);
    tfail(r, 422, "Invalid", msg,
          json_pack("{s:s, s:s, s:s, s:[{s:s, s:s, s:s}]}", "name", name, "group", "authentication.k8s.io", "kind",
                    "TokenRequest", "causes", "reason", "FieldValueInvalid", "message", detail, "field", field));
    free(msg);
}

/* ---- decoding: the body's fields must have their Go types (null is a zero value) ---- */

static const char *json_word(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    case JSON_NULL:
        break;
    }
    return "null";
}

/* True when v is absent, null or of type want; else replies 400 as the real decoder does. */
static bool typed(struct rreq *r, const json_t *v, json_type want, const char *go_field, const char *go_type)
{
    if (!v || json_is_null(v) || json_typeof(v) == want)
        return true;
    char *msg = pw_xasprintf("TokenRequest in version \"v1\" cannot be handled as a TokenRequest: json: cannot "
                             "unmarshal %s into Go struct field %s of type %s",
                             json_word(v), go_field, go_type);
    tfail(r, 400, "BadRequest", msg, NULL);
    free(msg);
    return false;
}

static bool decode_ok(struct rreq *r, const json_t *body)
{
    const json_t *m = json_object_get(body, "metadata");
    const json_t *spec = json_object_get(body, "spec");
    if (!typed(r, m, JSON_OBJECT, "TokenRequest.metadata", "v1.ObjectMeta") ||
        !typed(r, json_object_get(m, "name"), JSON_STRING, "ObjectMeta.metadata.name", "string") ||
        !typed(r, json_object_get(m, "namespace"), JSON_STRING, "ObjectMeta.metadata.namespace", "string") ||
        !typed(r, json_object_get(m, "uid"), JSON_STRING, "ObjectMeta.metadata.uid", "types.UID") ||
        !typed(r, spec, JSON_OBJECT, "TokenRequest.spec", "v1.TokenRequestSpec"))
        return false;
    const json_t *auds = json_object_get(spec, "audiences");
    if (!typed(r, auds, JSON_ARRAY, "TokenRequestSpec.spec.audiences", "[]string"))
        return false;
    size_t i;
    const json_t *a;
    json_array_foreach(auds, i, a)
    {
        if (!json_is_string(a) && !typed(r, a, JSON_STRING, "TokenRequestSpec.spec.audiences", "string"))
            return false;
    }
    if (json_array_size(auds) > MAX_AUDIENCES) {
        tfail(r, 400, "BadRequest", "spec.audiences: too many audiences for kubesim (at most 64)", NULL);
        return false;
    }
    const json_t *ref = json_object_get(spec, "boundObjectRef");
    if (!typed(r, json_object_get(spec, "expirationSeconds"), JSON_INTEGER, "TokenRequestSpec.spec.expirationSeconds",
               "int64") ||
        !typed(r, ref, JSON_OBJECT, "TokenRequestSpec.spec.boundObjectRef", "v1.BoundObjectReference"))
        return false;
    static const char *const REF_FIELDS[] = {"kind", "apiVersion", "name", "uid"};
    for (i = 0; i < sizeof(REF_FIELDS) / sizeof(REF_FIELDS[0]); i++) {
        char field[96];
        snprintf(field, sizeof(field), "BoundObjectReference.spec.boundObjectRef.%s", REF_FIELDS[i]);
        if (!typed(r, json_object_get(ref, REF_FIELDS[i]), JSON_STRING, field, i == 3 ? "types.UID" : "string"))
            return false;
    }
    return true;
}

static const char *str_or(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

/* ---- the steps of a TokenRequest ---- */

/* metadata.name and metadata.namespace, when given, must be the URL's. */
static bool meta_matches(struct rreq *r, const json_t *body)
{
    const json_t *m = json_object_get(body, "metadata");
    const char *name = str_or(m, "name", ""), *ns = str_or(m, "namespace", "");
    char *detail = NULL;
    const char *field = NULL;
    if (*name && strcmp(name, r->name) != 0) {
        field = "metadata.name";
        detail = pw_xasprintf("Invalid value: \"%s\": must match the service account name if specified", name);
    } else if (*ns && strcmp(ns, r->ns) != 0) {
        field = "metadata.namespace";
        detail = pw_xasprintf("Invalid value: \"%s\": must match the service account namespace if specified", ns);
    }
    if (!field)
        return true;
    tfail_invalid(r, r->name, field, detail);
    free(detail);
    return false;
}

/* spec.expirationSeconds, defaulted (absent or null: an hour). */
static int64_t expiration_of(const json_t *spec)
{
    const json_t *e = json_object_get(spec, "expirationSeconds");
    return json_is_integer(e) ? (int64_t)json_integer_value(e) : DEFAULT_EXPIRATION_S;
}

/* expirationSeconds within [10 minutes, 2^32 s]; the real server checks after the lookup. */
static bool expiration_valid(struct rreq *r, int64_t exp_s)
{
    const char *why = exp_s < MIN_EXPIRATION_S   ? "may not specify a duration less than 10 minutes"
                      : exp_s > MAX_EXPIRATION_S ? "may not specify a duration larger than 2^32 seconds"
                                                 : NULL;
    if (!why)
        return true;
    char *detail = pw_xasprintf("Invalid value: %lld: %s", (long long)exp_s, why);
    tfail_invalid(r, "", "spec.expirationSeconds", detail);
    free(detail);
    return false;
}

/* What a token is bound to: the objects are references held until the reply. */
struct binding {
    enum sim_token_bound kind;
    json_t *obj;           /* the bound object, NULL when unbound */
    json_t *node;          /* a bound pod's node, NULL when it has none or it does not exist */
    const char *node_name; /* the pod's spec.nodeName, NULL when none */
};

static const struct {
    const char *kind;
    enum sim_token_bound bound;
    const char *resource;
    bool namespaced;
} BINDABLE[] = {
    {"Pod", SIM_TOKEN_POD, "pods", true},
    {"Secret", SIM_TOKEN_SECRET, "secrets", true},
    {"Node", SIM_TOKEN_NODE, "nodes", false},
};

/* A bound pod's node, as at issue time: the node may be missing (then only its name is claimed). */
static void bind_pod_node(struct sim_api *api, struct binding *b)
{
    const char *node = json_string_value(json_object_get(json_object_get(b->obj, "spec"), "nodeName"));
    if (!node || !*node)
        return;
    b->node_name = node;
    if (sim_store_get(api->sim->store, "nodes", "", node, &b->node) != 0)
        b->node = NULL;
}

/* Resolves spec.boundObjectRef (may be NULL) into b; false when it replied an error. */
static bool bind(struct rreq *r, const json_t *ref, struct binding *b)
{
    if (!json_is_object(ref))
        return true;
    const char *kind = str_or(ref, "kind", ""), *apiv = str_or(ref, "apiVersion", "");
    const char *name = str_or(ref, "name", ""), *uid = str_or(ref, "uid", "");
    /* schema.FromAPIVersionAndKind: "group/version" or a core "version" */
    const char *slash = strchr(apiv, '/');
    size_t row = sizeof(BINDABLE) / sizeof(BINDABLE[0]);
    for (size_t i = 0; i < sizeof(BINDABLE) / sizeof(BINDABLE[0]) && !slash; i++)
        if (strcmp(BINDABLE[i].kind, kind) == 0)
            row = i;
    if (row == sizeof(BINDABLE) / sizeof(BINDABLE[0])) {
        char *msg = slash ? pw_xasprintf("cannot bind token to object of type %.*s/%s, Kind=%s", (int)(slash - apiv),
                                         apiv, slash + 1, kind)
                          : pw_xasprintf("cannot bind token to object of type /%s, Kind=%s", apiv, kind);
        tfail(r, 400, "BadRequest", msg, NULL);
        free(msg);
        return false;
    }
    if (!*name) {
        tfail(r, 400, "BadRequest", "Name parameter required.", NULL);
        return false;
    }
    if (sim_store_get(r->api->sim->store, BINDABLE[row].resource, BINDABLE[row].namespaced ? r->ns : "", name,
                      &b->obj) != 0) {
        b->obj = NULL;
        tfail_not_found(r, BINDABLE[row].resource, name);
        return false;
    }
    b->kind = BINDABLE[row].bound;
    if (b->kind == SIM_TOKEN_POD) {
        const char *sa = json_string_value(json_object_get(json_object_get(b->obj, "spec"), "serviceAccountName"));
        if (!sa || strcmp(sa, r->name) != 0) {
            char *msg = pw_xasprintf(
                "cannot bind token for serviceaccount \"%s\" to pod running with different serviceaccount name.",
                r->name);
            tfail(r, 400, "BadRequest", msg, NULL);
            free(msg);
            return false;
        }
        bind_pod_node(r->api, b);
    }
    const char *have = str_or(json_object_get(b->obj, "metadata"), "uid", "");
    if (*uid && strcmp(uid, have) != 0) {
        char *msg = pw_xasprintf("Operation cannot be fulfilled on %s \"%s\": the UID in the bound object reference "
                                 "(%s) does not match the UID in record. The object might have been deleted and "
                                 "then recreated",
                                 kind, name, uid);
        tfail(r, 409, "Conflict", msg, json_pack("{s:s, s:s, s:s}", "name", name, "group", "", "kind", kind));
        free(msg);
        return false;
    }
    return true;
}

static void binding_fini(struct binding *b)
{
    json_decref(b->obj);
    json_decref(b->node);
}

/* The audiences asked, or the API server's. n gets their count; the strings are borrowed from spec. */
static const char **audiences_of(const json_t *spec, size_t *n)
{
    const json_t *auds = json_object_get(spec, "audiences");
    const char **v = pw_xcalloc(json_array_size(auds) + 1, sizeof(*v));
    size_t k = 0, i;
    const json_t *a;
    json_array_foreach(auds, i, a)
    {
        v[k++] = json_is_string(a) ? json_string_value(a) : ""; /* null: Go's zero value */
    }
    if (k == 0)
        v[k++] = SIM_TOKEN_API_AUDIENCE;
    *n = k;
    return v;
}

/* The echo of spec.boundObjectRef: its non-empty fields, or null. */
static json_t *ref_echo(const json_t *ref)
{
    if (!json_is_object(ref))
        return json_null();
    json_t *out = json_object();
    static const char *const F[] = {"kind", "apiVersion", "name", "uid"};
    for (size_t i = 0; i < sizeof(F) / sizeof(F[0]); i++) {
        const char *s = str_or(ref, F[i], "");
        if (*s)
            json_object_set_new(out, F[i], json_string(s));
    }
    return out;
}

/* The TokenRequest answered: the request with metadata and spec filled in, and the status. */
static json_t *answer(struct rreq *r, const json_t *body, const json_t *sa, const char *const *auds, size_t naud,
                      int64_t exp_s, int64_t now, const char *token)
{
    const json_t *m = json_object_get(body, "metadata");
    json_t *meta = json_is_object(m) ? json_deep_copy(m) : json_object();
    json_object_set_new(meta, "name", json_string(r->name));
    json_object_set_new(meta, "namespace", json_string(r->ns));
    if (!*str_or(meta, "uid", ""))
        json_object_set_new(meta, "uid", json_string(str_or(json_object_get(sa, "metadata"), "uid", "")));
    char created[PW_RFC3339_LEN], expires[PW_RFC3339_LEN];
    pw_time_rfc3339((time_t)now, created);
    pw_time_rfc3339((time_t)(now + exp_s), expires);
    json_object_set_new(meta, "creationTimestamp", json_string(created));
    json_t *audv = json_array();
    for (size_t i = 0; i < naud; i++)
        json_array_append_new(audv, json_string(auds[i]));
    const json_t *spec = json_object_get(body, "spec");
    return json_pack("{s:s, s:s, s:o, s:{s:o, s:I, s:o}, s:{s:s, s:s}}", "kind", "TokenRequest", "apiVersion",
                     "authentication.k8s.io/v1", "metadata", meta, "spec", "audiences", audv, "expirationSeconds",
                     (json_int_t)exp_s, "boundObjectRef", ref_echo(json_object_get(spec, "boundObjectRef")), "status",
                     "token", token, "expirationTimestamp", expires);
}

/* Issues the token for a validated request and replies 201. */
static void issue(struct rreq *r, const json_t *body, const json_t *sa, const struct binding *b)
{
    const json_t *spec = json_object_get(body, "spec");
    int64_t exp_s = expiration_of(spec);
    size_t naud;
    const char **auds = audiences_of(spec, &naud);
    int64_t now = (int64_t)time(NULL);
    /* --service-account-extend-token-expiration: a kubelet's token for the API server lasts a year
       (the answer still says 3607 s, and a kubelet refreshes it by then) */
    int64_t lasts = exp_s;
    bool api_only = true;
    for (size_t i = 0; i < naud; i++)
        api_only = api_only && strcmp(auds[i], SIM_TOKEN_API_AUDIENCE) == 0;
    if (b->kind == SIM_TOKEN_POD && exp_s == KUBELET_EXPIRATION_S && api_only)
        lasts = EXTENDED_EXPIRATION_S;
    char jti[37];
    sim_api_uid(jti);
    const json_t *sm = json_object_get(sa, "metadata");
    const json_t *bm = json_object_get(b->obj, "metadata");
    struct sim_token_claims c = {
        .ns = r->ns,
        .sa = r->name,
        .sa_uid = str_or(sm, "uid", ""),
        .audiences = auds,
        .naud = naud,
        .iat = now,
        .exp = now + lasts,
        .jti = jti,
        .bound = b->kind,
        .bound_name = b->obj ? str_or(bm, "name", "") : NULL,
        .bound_uid = b->obj ? str_or(bm, "uid", "") : NULL,
        /* --no-token-node-info: tokens as before Kubernetes 1.30 (ServiceAccountTokenPodNodeInfo) */
        .node_name = r->api->sim->opt.no_token_node_info ? NULL : b->node_name,
        .node_uid = b->node_name && !r->api->sim->opt.no_token_node_info
                        ? str_or(json_object_get(b->node, "metadata"), "uid", "")
                        : NULL,
    };
    char token[SIM_TOKEN_SIZE];
    if (sim_tokens_issue(r->api->tokens, &c, now, token) != 0) {
        free(auds);
        tfail(r, 500, "InternalError", "Internal error occurred: failed to generate token: no random bytes", NULL);
        return;
    }
    json_t *out = answer(r, body, sa, auds, naud, exp_s, now, token);
    free(auds);
    sim_api_stat(r->api, "create", STAT_RESOURCE, 201);
    pw_http_reply_json(r->req, 201, out);
}

/* The steps after the body parsed: *sa and b get what must be released (NULL / empty when not). */
static void token_request(struct rreq *r, const json_t *body, json_t **sa, struct binding *b)
{
    if (!decode_ok(r, body) || !meta_matches(r, body))
        return;
    if (sim_store_get(r->api->sim->store, "serviceaccounts", r->ns, r->name, sa) != 0) {
        *sa = NULL;
        tfail_not_found(r, "serviceaccounts", r->name);
        return;
    }
    const json_t *spec = json_object_get(body, "spec");
    if (!expiration_valid(r, expiration_of(spec)))
        return;
    if (bind(r, json_object_get(spec, "boundObjectRef"), b))
        issue(r, body, *sa, b);
}

/* ---- protobuf bodies ---- */

/* Sets obj[key] to the string in v; false when it is not UTF-8. */
static bool pb_str(json_t *obj, const char *key, const struct sim_pb *v)
{
    json_t *s = json_stringn((const char *)v->p, (size_t)(v->end - v->p));
    return s && json_object_set_new(obj, key, s) == 0;
}

/* Reads the string fields of message m named by names[field number - 1] (NULL: skipped) into obj. */
static bool pb_strings(struct sim_pb m, const char *const *names, size_t n, json_t *obj)
{
    struct sim_pb_field f;
    int rc = sim_pb_next(&m, &f);
    while (rc == 1) {
        if (f.wire == 2 && f.num >= 1 && f.num <= n && names[f.num - 1] && !pb_str(obj, names[f.num - 1], &f.bytes))
            return false;
        rc = sim_pb_next(&m, &f);
    }
    return rc == 0;
}

/* TokenRequestSpec {audiences = 1, boundObjectRef = 3, expirationSeconds = 4} into spec. */
static bool pb_spec(struct sim_pb m, json_t *spec)
{
    static const char *const REF[] = {"kind", "apiVersion", "name", "uid"};
    json_t *auds = json_array();
    json_object_set_new(spec, "audiences", auds);
    struct sim_pb_field f;
    int rc = sim_pb_next(&m, &f);
    while (rc == 1) {
        if (f.num == 1 && f.wire == 2) {
            json_t *a = json_stringn((const char *)f.bytes.p, (size_t)(f.bytes.end - f.bytes.p));
            if (!a)
                return false;                           /* not UTF-8 */
            if (json_array_size(auds) <= MAX_AUDIENCES) /* one more than allowed makes decode_ok refuse */
                json_array_append_new(auds, a);
            else
                json_decref(a);
        } else if (f.num == 3 && f.wire == 2) {
            json_t *ref = json_object();
            json_object_set_new(spec, "boundObjectRef", ref);
            if (!pb_strings(f.bytes, REF, 4, ref))
                return false;
        } else if (f.num == 4 && f.wire == 0) {
            json_object_set_new(spec, "expirationSeconds", json_integer((json_int_t)(int64_t)f.varint));
        }
        rc = sim_pb_next(&m, &f);
    }
    return rc == 0;
}

/* A protobuf TokenRequest {metadata = 1, spec = 2} as the JSON document the rest reads; NULL when it is
 * not one. Only what a TokenRequest uses is read (metadata name, namespace, uid; the spec). */
static json_t *pb_token_request(const char *text, size_t len)
{
    static const char *const META[] = {"name", NULL, "namespace", NULL, "uid"};
    struct sim_pb raw;
    char kind[64];
    if (sim_pb_unwrap(text, len, &raw, kind, sizeof(kind)) != 0 || (*kind && strcmp(kind, "TokenRequest") != 0))
        return NULL;
    json_t *doc = json_pack("{s:{}, s:{}}", "metadata", "spec");
    struct sim_pb_field f;
    bool ok = true;
    int rc = sim_pb_next(&raw, &f);
    while (rc == 1 && ok) {
        if (f.num == 1 && f.wire == 2)
            ok = pb_strings(f.bytes, META, 5, json_object_get(doc, "metadata"));
        else if (f.num == 2 && f.wire == 2)
            ok = pb_spec(f.bytes, json_object_get(doc, "spec"));
        rc = sim_pb_next(&raw, &f);
    }
    if (!ok || rc != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static bool is_protobuf(pw_http_req *req)
{
    return sim_rbac_pb_content(pw_http_req_header(req, "Content-Type"));
}

/* The request's body as a JSON object (JSON or protobuf); NULL when it replied 400. */
static json_t *request_body(struct rreq *r)
{
    size_t len;
    const char *text = pw_http_req_body(r->req, &len);
    if (is_protobuf(r->req)) {
        json_t *doc = pb_token_request(text, len);
        if (!doc)
            tfail(r, 400, "BadRequest",
                  "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: the protobuf body is not a "
                  "TokenRequest",
                  NULL);
        return doc;
    }
    json_error_t jerr;
    json_t *body = json_loadb(text, len, 0, &jerr);
    if (json_is_object(body))
        return body;
    json_decref(body);
    char *m = pw_xasprintf("the body of the request could not be decoded as a JSON object: %s", jerr.text);
    tfail(r, 400, "BadRequest", m, NULL);
    free(m);
    return NULL;
}

void sim_api_token_request(struct rreq *r)
{
    json_t *body = request_body(r);
    if (!body)
        return;
    json_t *sa = NULL;
    struct binding b = {0};
    token_request(r, body, &sa, &b);
    binding_fini(&b);
    json_decref(sa);
    json_decref(body);
}

/* ---- reviews ---- */

json_t *sim_api_token_review(struct sim_api *api, const char *token, const json_t *audiences)
{
    struct sim_token_claims *c;
    if (sim_tokens_find(api->tokens, token, &c) != 0)
        return json_pack("{s:b, s:s}", "authenticated", 0, "error", "invalid bearer token");
    json_t *st = sim_tokens_review(api->sim->store, c, audiences, (int64_t)time(NULL));
    sim_token_claims_free(c);
    return st;
}

json_t *sim_api_token_user(struct sim_api *api, const char *token)
{
    struct sim_token_claims *c;
    if (sim_tokens_find(api->tokens, token, &c) != 0)
        return NULL;
    json_t *st = sim_tokens_review(api->sim->store, c, NULL, (int64_t)time(NULL));
    sim_token_claims_free(c);
    json_t *user = json_is_true(json_object_get(st, "authenticated")) ? json_incref(json_object_get(st, "user")) : NULL;
    json_decref(st);
    return user;
}

/* ---- the test hook ---- */

static json_t *hook_doc(struct sim_api *api)
{
    return json_pack("{s:I, s:I}", "count", (json_int_t)sim_tokens_count(api->tokens), "max",
                     (json_int_t)sim_tokens_max(api->tokens));
}

void sim_api_token_hook(pw_http_req *req, struct sim_api *api)
{
    const char *method = pw_http_req_method(req);
    if (strcmp(method, "GET") == 0) {
        pw_http_reply_json(req, 200, hook_doc(api));
        return;
    }
    if (strcmp(method, "POST") != 0) {
        sim_api_status(req, 405, "MethodNotAllowed", "use GET or POST", NULL);
        return;
    }
    size_t len;
    const char *text = pw_http_req_body(req, &len);
    json_t *doc = len ? json_loadb(text, len, 0, NULL) : json_object();
    const json_t *age = json_object_get(doc, "ageSeconds");
    json_int_t s = json_integer_value(age);
    if (!json_is_object(doc) || (age && !json_is_integer(age)) || s < 0 ||
        s > (json_int_t)EXTENDED_EXPIRATION_S * 100) {
        json_decref(doc);
        sim_api_status(req, 400, "BadRequest", "the body must be {\"ageSeconds\": N} with 0 <= N <= 100 years", NULL);
        return;
    }
    json_decref(doc);
    sim_tokens_age(api->tokens, (int64_t)s);
    json_t *out = hook_doc(api);
    json_object_set_new(out, "agedSeconds", json_integer(s));
    pw_http_reply_json(req, 200, out);
}
