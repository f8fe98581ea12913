/* fuzz_simreview.c: kubesim's review and token bodies (sim/api_authz.c, sim/api_token.c,
 * sim/rbac_pb.c): SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview,
 * SelfSubjectRulesReview, SelfSubjectReview, TokenReview, the TokenRequest subresource, and the RBAC
 * kinds' validation (a dry-run create of a Role, RoleBinding, ClusterRole or ClusterRoleBinding), each
 * in JSON and in protobuf. They are handlers of the HTTP server, so the driver runs kubesim's API
 * server in the process (sim_api_start on 127.0.0.1:0, --enforce-rbac, with a Role, a RoleBinding, an
 * aggregated ClusterRole, a ClusterRoleBinding, a ServiceAccount and a Pod made at start) and POSTs
 * each input to it over one kept-alive connection, as the admin (kubesim-admin, system:masters) or as
 * the ServiceAccount (a token issued at start, its requests authorized by RBAC).
 * Input: byte 0 picks the endpoint (% 11), JSON or protobuf (bit 4 of byte 0 / 11) and the caller
 * (bit 5); the rest is the body.
 * Checks: every answer is a Kubernetes object or Status in JSON with a code a client may get for its
 * own mistakes (201, 200, 400, 403, 404, 409, 415, 422): never a 5xx, never a body that is not JSON. */
#include <curl/curl.h>
#include <stdio.h>

#include <jansson.h>

#include "base/buf.h"
#include "fuzz.h"
#include "sim/sim.h"

static struct sim sim;
static pw_http_server *srv;
static CURL *curl;
static char base[64];
static char *sa_token;

static const char *const PATHS[] = {
    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    "/apis/authorization.k8s.io/v1/namespaces/team-a/localsubjectaccessreviews",
    "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    "/apis/authentication.k8s.io/v1/tokenreviews",
    "/api/v1/namespaces/team-a/serviceaccounts/bot/token",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles?dryRun=All",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings?dryRun=All",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles?dryRun=All",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?dryRun=All",
};
#define N_PATHS (sizeof PATHS / sizeof PATHS[0])

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    pw_buf_append(arg, p, sz * n);
    return sz * n;
}

/* POSTs body to path; the status code, the body in *out (caller frees). */
static long post(const char *path, const char *ctype, const void *body, size_t len, const char *token, char **out)
{
    char url[256], auth[256], ct[128];
    snprintf(url, sizeof url, "%s%s", base, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, ct);
    h = curl_slist_append(h, "Accept: application/json");
    h = curl_slist_append(h, "Expect:");
    pw_buf b;
    pw_buf_init(&b, 0);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, len ? body : "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 20L);
    long code = 0;
    if (curl_easy_perform(curl) != CURLE_OK)
        abort(); /* the server hung up or died */
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    *out = pw_buf_steal(&b);
    pw_buf_fini(&b);
    return code;
}

static void make(const char *path, const char *json)
{
    char *out = NULL;
    long code = post(path, "application/json", json, strlen(json), "tok", &out);
    if (code != 201) {
        fprintf(stderr, "fuzz_simreview: setup POST %s: %ld %s\n", path, code, out);
        abort();
    }
    if (strstr(path, "/token")) {
        json_t *tr = json_loads(out, 0, NULL);
        const char *t = json_string_value(json_object_get(json_object_get(tr, "status"), "token"));
        if (!t)
            abort();
        sa_token = strdup(t);
        json_decref(tr);
    }
    free(out);
}

static void setup(void)
{
    sim.opt.token = "tok";
    sim.opt.threads = 2;
    sim.opt.listen = "127.0.0.1:0";
    sim.opt.namespaces = "prewarm,team-a";
    sim.opt.enforce_rbac = true;
    sim.store = sim_store_new(1000);
    if (sim_api_start(&sim, NULL, &srv) != 0)
        abort();
    snprintf(base, sizeof base, "http://127.0.0.1:%d", pw_http_server_port(srv));
    curl = curl_easy_init();
    make("/api/v1/namespaces/team-a/serviceaccounts",
         "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\",\"metadata\":{\"name\":\"bot\"}}");
    make("/api/v1/namespaces/team-a/pods",
         "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p1\"},\"spec\":{\"serviceAccountName\":"
         "\"bot\",\"containers\":[{\"name\":\"c\",\"image\":\"nginx\"}]}}");
    make("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles",
         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\",\"metadata\":{\"name\":\"reader\"},"
         "\"rules\":[{\"apiGroups\":[\"\"],\"resources\":[\"pods\",\"pods/log\"],\"verbs\":[\"get\",\"list\"]},"
         "{\"apiGroups\":[\"authorization.k8s.io\"],\"resources\":[\"selfsubjectrulesreviews\","
         "\"localsubjectaccessreviews\"],\"verbs\":[\"create\"]}]}");
    make("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings",
         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"RoleBinding\",\"metadata\":{\"name\":"
         "\"reader\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":"
         "\"reader\"},\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"bot\",\"namespace\":\"team-a\"},"
         "{\"kind\":\"Group\",\"name\":\"devs\",\"apiGroup\":\"rbac.authorization.k8s.io\"}]}");
    make("/apis/rbac.authorization.k8s.io/v1/clusterroles",
         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\",\"metadata\":{\"name\":"
         "\"prewarm-editor\",\"labels\":{\"fuzz/agg\":\"true\"}},\"rules\":[{\"apiGroups\":[\"prewarm.io\"],"
         "\"resources\":[\"tasks\"],\"verbs\":[\"*\"]},{\"nonResourceURLs\":[\"/metrics\"],\"verbs\":[\"get\"]}]}");
    make("/apis/rbac.authorization.k8s.io/v1/clusterroles",
         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRole\",\"metadata\":{\"name\":"
         "\"fuzz-aggregate\"},\"aggregationRule\":{\"clusterRoleSelectors\":[{\"matchLabels\":{\"fuzz/agg\":"
         "\"true\"}}]},\"rules\":[]}");
    make("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
         "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\",\"metadata\":{\"name\":"
         "\"fuzz-aggregate\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\","
         "\"name\":\"fuzz-aggregate\"},\"subjects\":[{\"kind\":\"User\",\"name\":\"eddie\",\"apiGroup\":"
         "\"rbac.authorization.k8s.io\"},{\"kind\":\"ServiceAccount\",\"name\":\"bot\",\"namespace\":\"team-a\"}]}");
    make("/api/v1/namespaces/team-a/serviceaccounts/bot/token",
         "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\",\"spec\":{\"audiences\":[],"
         "\"expirationSeconds\":86400,\"boundObjectRef\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"name\":\"p1\"}}}");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        setup();
    if (size == 0)
        return 0;
    const char *path = PATHS[data[0] % N_PATHS];
    unsigned mode = data[0] / N_PATHS;
    const char *ctype = mode & 1 ? "application/vnd.kubernetes.protobuf" : "application/json";
    const char *token = mode & 2 ? sa_token : "tok";
    char *out = NULL;
    long code = post(path, ctype, data + 1, size - 1, token, &out);
    if (code != 200 && code != 201 && code != 400 && code != 403 && code != 404 && code != 409 && code != 415 &&
        code != 422) {
        fprintf(stderr, "fuzz_simreview: POST %s (%s): %ld %s\n", path, ctype, code, out);
        abort();
    }
    json_error_t e;
    json_t *doc = json_loads(out, JSON_ALLOW_NUL, &e); /* "\u0000" is JSON */
    if (!json_is_object(doc) || !json_is_string(json_object_get(doc, "kind"))) {
        fprintf(stderr, "fuzz_simreview: POST %s (%s): %ld, not a JSON object: %s\n", path, ctype, code, out);
        abort();
    }
    if (code >= 400 && (json_integer_value(json_object_get(doc, "code")) != code ||
                        strcmp(json_string_value(json_object_get(doc, "kind")), "Status") != 0))
        abort(); /* an error is a Status carrying its code */
    json_decref(doc);
    free(out);
    return 0;
}
