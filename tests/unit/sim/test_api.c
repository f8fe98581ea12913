/* Unit tests for kubesim's API server: the patch formats and field selectors as functions, then the
 * server itself over HTTP (libcurl against sim_api_start on 127.0.0.1:0): auth, discovery, CRUD and
 * its Status bodies, selectors, pagination, watch replay and 410, propagation, finalizers, stats,
 * faults, Tables and CRDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "sim/api_int.h"
#include "sim/sim.h"

/* ---- patches ---- */

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v)
        fail_msg("bad test JSON: %s: %s", text, e.text);
    return v;
}

static void assert_json(const json_t *got, const char *want)
{
    json_t *w = J(want);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s, wanted %s", g, want);
    }
    json_decref(w);
}

static void test_merge_patch(void **state)
{
    (void)state;
    json_t *t = J("{\"a\":1,\"b\":{\"c\":2,\"d\":3},\"l\":[1,2]}");
    json_t *p = J("{\"a\":null,\"b\":{\"c\":5},\"l\":[9],\"n\":\"x\"}");
    json_t *r = sim_api_merge_patch(t, p);
    assert_json(r, "{\"b\":{\"c\":5,\"d\":3},\"l\":[9],\"n\":\"x\"}");
    assert_json(t, "{\"a\":1,\"b\":{\"c\":2,\"d\":3},\"l\":[1,2]}"); /* target untouched */
    json_decref(t), json_decref(p), json_decref(r);
}

static void test_strategic_patch(void **state)
{
    (void)state;
    json_t *t = J("{\"metadata\":{\"finalizers\":[\"a\"],\"labels\":{\"x\":\"1\"}},"
                  "\"spec\":{\"containers\":[{\"name\":\"c1\",\"image\":\"i1\",\"env\":[{\"name\":\"E\",\"value\":\"1\"}]},"
                  "{\"name\":\"c2\",\"image\":\"i2\"}],\"tolerations\":[{\"key\":\"k\"}]},"
                  "\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"},{\"type\":\"X\",\"status\":\"True\"}]}}");
    json_t *p = J("{\"metadata\":{\"finalizers\":[\"b\",\"a\"],\"labels\":{\"x\":null,\"y\":\"2\"}},"
                  "\"spec\":{\"containers\":[{\"name\":\"c1\",\"image\":\"i1b\",\"env\":[{\"name\":\"F\",\"value\":\"2\"}]},"
                  "{\"name\":\"c2\",\"$patch\":\"delete\"},{\"name\":\"c3\",\"image\":\"i3\"}],\"tolerations\":[{\"key\":\"z\"}]},"
                  "\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}");
    json_t *r = sim_api_strategic_patch(t, p);
    assert_json(r, "{\"metadata\":{\"finalizers\":[\"a\",\"b\"],\"labels\":{\"y\":\"2\"}},"
                   "\"spec\":{\"containers\":[{\"name\":\"c1\",\"image\":\"i1b\",\"env\":[{\"name\":\"E\",\"value\":\"1\"},"
                   "{\"name\":\"F\",\"value\":\"2\"}]},{\"name\":\"c3\",\"image\":\"i3\"}],\"tolerations\":[{\"key\":\"z\"}]},"
                   "\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"},{\"type\":\"X\",\"status\":\"True\"}]}}");
    json_decref(p), json_decref(r);
    /* $patch: replace on a map, $deleteFromPrimitiveList, $retainKeys */
    p = J("{\"spec\":{\"$patch\":\"replace\",\"containers\":[]},\"$deleteFromPrimitiveList/finalizers\":[\"a\"],"
          "\"metadata\":{\"$deleteFromPrimitiveList/finalizers\":[\"a\"]}}");
    r = sim_api_strategic_patch(t, p);
    assert_json(json_object_get(r, "spec"), "{\"containers\":[]}");
    assert_null(json_array_get(json_object_get(json_object_get(r, "metadata"), "finalizers"), 0));
    json_decref(p), json_decref(r);
    p = J("{\"status\":{\"$retainKeys\":[\"phase\"],\"phase\":\"Running\"}}");
    r = sim_api_strategic_patch(t, p);
    assert_json(json_object_get(r, "status"), "{\"phase\":\"Running\"}");
    json_decref(p), json_decref(r), json_decref(t);
}

/* RFC 6901 array indexes: digits only, no leading zero, "-" only to append in add. */
static void test_json_patch_indexes(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"op\":\"replace\",\"path\":\"/a/+1\",\"value\":9}",
        "{\"op\":\"replace\",\"path\":\"/a/ 1\",\"value\":9}",
        "{\"op\":\"replace\",\"path\":\"/a/-1\",\"value\":9}",
        "{\"op\":\"replace\",\"path\":\"/a/01\",\"value\":9}",
        "{\"op\":\"replace\",\"path\":\"/a/1x\",\"value\":9}",
        "{\"op\":\"replace\",\"path\":\"/a/\",\"value\":9}",
        "{\"op\":\"replace\",\"path\":\"/a/-\",\"value\":9}",
        "{\"op\":\"add\",\"path\":\"/a/+0\",\"value\":9}",
        "{\"op\":\"add\",\"path\":\"/a/00\",\"value\":9}",
        "{\"op\":\"add\",\"path\":\"/a/99999999999999999999999\",\"value\":9}",
        "{\"op\":\"remove\",\"path\":\"/a/-\"}",
        "{\"op\":\"remove\",\"path\":\"/a/+1\"}",
        "{\"op\":\"test\",\"path\":\"/a/01\",\"value\":2}",
        "{\"op\":\"test\",\"path\":\"/a/-\",\"value\":2}",
        "{\"op\":\"replace\",\"path\":\"/b/+0/c\",\"value\":9}",
        "{\"op\":\"replace\",\"path\":\"/b/00/c\",\"value\":9}",
        "{\"op\":\"copy\",\"from\":\"/a/+1\",\"path\":\"/x\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *doc = J("{\"a\":[1,2,3],\"b\":[{\"c\":1}]}");
        char *ops_text = NULL;
        assert_true(asprintf(&ops_text, "[%s]", bad[i]) > 0);
        json_t *ops = J(ops_text);
        char *err = NULL;
        if (sim_api_json_patch(doc, ops, &err) == 0)
            fail_msg("accepted: %s", bad[i]);
        free(err);
        free(ops_text);
        json_decref(ops);
        json_decref(doc);
    }
    json_t *doc = J("{\"a\":[1,2,3],\"b\":[{\"c\":1}]}");
    json_t *ops = J("[{\"op\":\"replace\",\"path\":\"/a/0\",\"value\":7},{\"op\":\"add\",\"path\":\"/a/-\",\"value\":4},"
                    "{\"op\":\"add\",\"path\":\"/a/10\",\"value\":5},{\"op\":\"remove\",\"path\":\"/a/1\"},"
                    "{\"op\":\"replace\",\"path\":\"/b/0/c\",\"value\":2},{\"op\":\"test\",\"path\":\"/a/3\",\"value\":4}]");
    char *err = NULL;
    /* "/a/10" is past the end (4 items then): rejected; the rest alone applies */
    assert_int_not_equal(sim_api_json_patch(doc, ops, &err), 0);
    free(err);
    json_decref(ops);
    json_decref(doc);
    doc = J("{\"a\":[1,2,3],\"b\":[{\"c\":1}]}");
    ops = J("[{\"op\":\"replace\",\"path\":\"/a/0\",\"value\":7},{\"op\":\"add\",\"path\":\"/a/-\",\"value\":4},"
            "{\"op\":\"add\",\"path\":\"/a/4\",\"value\":5},{\"op\":\"remove\",\"path\":\"/a/1\"},"
            "{\"op\":\"replace\",\"path\":\"/b/0/c\",\"value\":2},{\"op\":\"test\",\"path\":\"/a/3\",\"value\":5}]");
    err = NULL;
    assert_int_equal(sim_api_json_patch(doc, ops, &err), 0);
    assert_json(doc, "{\"a\":[7,3,4,5],\"b\":[{\"c\":2}]}");
    json_decref(ops);
    json_decref(doc);
}

static void test_json_patch(void **state)
{
    (void)state;
    json_t *doc = J("{\"a\":{\"b\":[1,2]},\"c~d\":1,\"e/f\":2}");
    json_t *ops = J("[{\"op\":\"add\",\"path\":\"/a/b/1\",\"value\":9},{\"op\":\"add\",\"path\":\"/a/b/-\",\"value\":3},"
                    "{\"op\":\"remove\",\"path\":\"/c~0d\"},{\"op\":\"replace\",\"path\":\"/e~1f\",\"value\":5},"
                    "{\"op\":\"copy\",\"from\":\"/a/b\",\"path\":\"/x\"},{\"op\":\"move\",\"from\":\"/e~1f\",\"path\":\"/y\"},"
                    "{\"op\":\"test\",\"path\":\"/y\",\"value\":5}]");
    char *err = NULL;
    assert_int_equal(sim_api_json_patch(doc, ops, &err), 0);
    assert_json(doc, "{\"a\":{\"b\":[1,9,2,3]},\"x\":[1,9,2,3],\"y\":5}");
    json_decref(ops);
    ops = J("[{\"op\":\"test\",\"path\":\"/y\",\"value\":6}]");
    assert_int_not_equal(sim_api_json_patch(doc, ops, &err), 0);
    assert_non_null(strstr(err, "test failed"));
    free(err);
    json_decref(ops);
    ops = J("[{\"op\":\"replace\",\"path\":\"/nope\",\"value\":1}]");
    assert_int_not_equal(sim_api_json_patch(doc, ops, &err), 0);
    free(err);
    json_decref(ops), json_decref(doc);
    /* media types */
    json_t *out = NULL;
    json_t *t = J("{\"a\":1}");
    assert_int_equal(sim_api_patch_apply("application/strategic-merge-patch+json", t, "{}", 2, true, &out, &err), PW_EMEDIATYPE);
    free(err);
    assert_int_equal(sim_api_patch_apply("text/plain", t, "{}", 2, false, &out, &err), PW_EMEDIATYPE);
    free(err);
    assert_int_equal(sim_api_patch_apply("application/merge-patch+json; charset=utf-8", t, "{\"b\":2}", 7, true, &out, &err), 0);
    assert_json(out, "{\"a\":1,\"b\":2}");
    json_decref(out);
    assert_int_equal(sim_api_patch_apply("application/merge-patch+json", t, "{", 1, false, &out, &err), PW_EINVAL);
    free(err);
    json_decref(t);
}

static const struct rdef *rd_of(const char *plural)
{
    for (const struct rdef *rd = sim_api_builtin; rd->plural; rd++)
        if (strcmp(rd->plural, plural) == 0)
            return rd;
    return NULL;
}

static void test_fieldsel(void **state)
{
    (void)state;
    struct fieldsel *fs;
    char *err = NULL;
    json_t *pod = J("{\"metadata\":{\"name\":\"p\",\"namespace\":\"ns\"},\"spec\":{\"nodeName\":\"n1\"},\"status\":{\"phase\":\"Running\"}}");
    assert_int_equal(sim_api_fieldsel_parse(rd_of("pods"), "spec.nodeName=n1,status.phase!=Pending", &fs, &err), 0);
    assert_true(sim_api_fieldsel_matches(fs, pod));
    sim_api_fieldsel_free(fs);
    assert_int_equal(sim_api_fieldsel_parse(rd_of("pods"), "spec.nodeName==n2", &fs, &err), 0);
    assert_false(sim_api_fieldsel_matches(fs, pod));
    sim_api_fieldsel_free(fs);
    assert_int_equal(sim_api_fieldsel_parse(rd_of("pods"), "metadata.namespace=ns,metadata.name=p", &fs, &err), 0);
    assert_true(sim_api_fieldsel_matches(fs, pod));
    sim_api_fieldsel_free(fs);
    assert_int_equal(sim_api_fieldsel_parse(rd_of("pods"), "spec.hostNetwork=false", &fs, &err), 0);
    assert_true(sim_api_fieldsel_matches(fs, pod)); /* absent bool reads as false */
    sim_api_fieldsel_free(fs);
    assert_int_equal(sim_api_fieldsel_parse(rd_of("pods"), "spec.image=x", &fs, &err), PW_EINVAL);
    assert_string_equal(err, "field label not supported: spec.image");
    free(err);
    assert_int_equal(sim_api_fieldsel_parse(rd_of("nodes"), "metadata.namespace=x", &fs, &err), PW_EINVAL);
    free(err);
    assert_int_equal(sim_api_fieldsel_parse(rd_of("nodes"), "spec.unschedulable", &fs, &err), PW_EINVAL);
    free(err);
    json_t *node = J("{\"metadata\":{\"name\":\"n\"},\"spec\":{}}");
    assert_int_equal(sim_api_fieldsel_parse(rd_of("nodes"), "spec.unschedulable=false", &fs, &err), 0);
    assert_true(sim_api_fieldsel_matches(fs, node));
    sim_api_fieldsel_free(fs);
    json_t *job = J("{\"metadata\":{\"name\":\"j\"},\"status\":{\"succeeded\":1}}");
    assert_int_equal(sim_api_fieldsel_parse(rd_of("jobs"), "status.successful=1", &fs, &err), 0);
    assert_true(sim_api_fieldsel_matches(fs, job));
    sim_api_fieldsel_free(fs);
    json_decref(pod), json_decref(node), json_decref(job);
}

/* ---- the server over HTTP ---- */

struct env {
    struct sim sim;
    pw_http_server *srv;
    char base[64];
};

static struct env E;

static int setup(void **state)
{
    (void)state;
    memset(&E, 0, sizeof(E));
    E.sim.opt.token = "tok";
    E.sim.opt.threads = 4;
    E.sim.opt.listen = "127.0.0.1:0";
    E.sim.opt.namespaces = "prewarm,team-a";
    E.sim.store = sim_store_new(1000);
    for (int i = 1; i <= 4; i++) {
        char name[32];
        snprintf(name, sizeof(name), "node-%04d", i);
        json_t *n = json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}}, s:{s:b}, s:{s:[{s:s, s:s}], s:{s:s}}}", "apiVersion", "v1",
                              "kind", "Node", "metadata", "name", name, "labels", "pool", i % 2 ? "a" : "b",
                              "kubernetes.io/arch", i == 4 ? "arm64" : "amd64", "spec", "unschedulable", i == 3,
                              "status", "conditions", "type", "Ready", "status", i == 2 ? "False" : "True", "nodeInfo",
                              "kubeletVersion", "v1.31.0");
        assert_int_equal(sim_store_create(E.sim.store, "nodes", "", n, NULL), 0);
    }
    assert_int_equal(sim_api_start(&E.sim, NULL, &E.srv), 0);
    snprintf(E.base, sizeof(E.base), "http://127.0.0.1:%d", pw_http_server_port(E.srv));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pw_http_server_free(E.srv);
    sim_api_stop(&E.sim);
    sim_store_free(E.sim.store);
    return 0;
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    pw_buf_append(arg, p, sz * n);
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    pw_buf_append(arg, p, sz * n);
    return sz * n;
}

struct resp {
    long code;
    char *body;
    char *headers;
    json_t *json;
};

static void resp_free(struct resp *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
}

/* One request; token NULL sends none. */
static struct resp call(const char *method, const char *path, const char *body, const char *ctype, const char *token,
                        const char *accept)
{
    CURL *c = curl_easy_init();
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", E.base, path);
    pw_buf b, h;
    pw_buf_init(&b, 0);
    pw_buf_init(&h, 0);
    struct curl_slist *hdr = NULL;
    char auth[128], ct[128], acc[256];
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        hdr = curl_slist_append(hdr, auth);
    }
    snprintf(ct, sizeof(ct), "Content-Type: %s", ctype ? ctype : "application/json");
    hdr = curl_slist_append(hdr, ct);
    if (accept) {
        snprintf(acc, sizeof(acc), "Accept: %s", accept);
        hdr = curl_slist_append(hdr, acc);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    struct resp r = {0};
    if (curl_easy_perform(c) != CURLE_OK)
        fail_msg("request %s %s failed", method, path);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.code);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    r.body = pw_buf_steal(&b);
    r.headers = pw_buf_steal(&h);
    r.json = json_loads(r.body, JSON_DISABLE_EOF_CHECK, NULL);
    return r;
}

static struct resp api(const char *method, const char *path, const char *body)
{
    return call(method, path, body, NULL, "tok", NULL);
}

static const char *jstr(const json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = j;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && cur; t = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, t);
    return json_string_value(cur);
}

static void expect_status(struct resp *r, long code, const char *reason, const char *message)
{
    if (r->code != code)
        fail_msg("HTTP %ld, wanted %ld: %s", r->code, code, r->body);
    assert_string_equal(jstr(r->json, "kind"), "Status");
    assert_string_equal(jstr(r->json, "reason"), reason);
    assert_int_equal(json_integer_value(json_object_get(r->json, "code")), code);
    if (message && strcmp(jstr(r->json, "message"), message) != 0)
        fail_msg("message '%s', wanted '%s'", jstr(r->json, "message"), message);
}

static void test_auth_discovery(void **state)
{
    (void)state;
    struct resp r = call("GET", "/api/v1/nodes", NULL, NULL, NULL, NULL);
    expect_status(&r, 401, "Unauthorized", NULL);
    resp_free(&r);
    r = call("GET", "/api/v1/nodes", NULL, NULL, "wrong", NULL);
    assert_int_equal(r.code, 401);
    resp_free(&r);
    r = api("GET", "/api", NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(jstr(r.json, "kind"), "APIVersions");
    assert_non_null(json_object_get(r.json, "serverAddressByClientCIDRs"));
    resp_free(&r);
    /* aggregated discovery asked: the classic document in plain JSON */
    r = call("GET", "/apis", NULL, NULL, "tok", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json");
    assert_string_equal(jstr(r.json, "kind"), "APIGroupList");
    assert_non_null(strstr(r.headers, "application/json"));
    assert_non_null(strstr(r.body, "\"coordination.k8s.io/v1\""));
    resp_free(&r);
    r = api("GET", "/api/v1", NULL);
    assert_string_equal(jstr(r.json, "groupVersion"), "v1");
    assert_non_null(strstr(r.body, "{\"name\":\"pods/status\""));
    assert_non_null(strstr(r.body, "\"shortNames\":[\"po\"]"));
    assert_non_null(strstr(r.body, "\"singularName\":\"node\""));
    resp_free(&r);
    r = api("GET", "/apis/batch/v1", NULL);
    assert_non_null(strstr(r.body, "\"jobs/status\""));
    resp_free(&r);
    r = api("GET", "/openapi/v2", NULL);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.headers, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"));
    resp_free(&r);
    r = api("GET", "/version", NULL);
    assert_non_null(jstr(r.json, "gitVersion"));
    resp_free(&r);
    r = api("GET", "/api/v1/widgets", NULL);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    /* bootstrap namespaces, with --namespaces */
    r = api("GET", "/api/v1/namespaces/team-a", NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(jstr(r.json, "status.phase"), "Active");
    resp_free(&r);
}

static const char JOB[] = "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"name\":\"%s\"},\"spec\":{\"template\":"
                          "{\"spec\":{\"restartPolicy\":\"%s\",\"containers\":[{\"name\":\"c\",\"image\":\"busybox:1.36\"}]}}}}";

static struct resp make_job(const char *ns, const char *name, const char *policy)
{
    char body[512], path[256];
    snprintf(body, sizeof(body), JOB, name, policy);
    snprintf(path, sizeof(path), "/apis/batch/v1/namespaces/%s/jobs", ns);
    return api("POST", path, body);
}

static void test_create_errors(void **state)
{
    (void)state;
    struct resp r = make_job("default", "j1", "Never");
    assert_int_equal(r.code, 201);
    const char *uid = jstr(r.json, "metadata.uid");
    assert_non_null(uid);
    json_t *spec = json_object_get(r.json, "spec");
    assert_int_equal(json_integer_value(json_object_get(spec, "backoffLimit")), 6);
    assert_int_equal(json_integer_value(json_object_get(spec, "completions")), 1);
    assert_int_equal(json_integer_value(json_object_get(spec, "parallelism")), 1);
    assert_string_equal(jstr(spec, "selector.matchLabels.batch.kubernetes.io/controller-uid") ? "" : "", "");
    json_t *ml = json_object_get(json_object_get(spec, "selector"), "matchLabels");
    assert_string_equal(json_string_value(json_object_get(ml, "batch.kubernetes.io/controller-uid")), uid);
    json_t *tl = json_object_get(json_object_get(json_object_get(spec, "template"), "metadata"), "labels");
    assert_string_equal(json_string_value(json_object_get(tl, "job-name")), "j1");
    assert_string_equal(json_string_value(json_object_get(tl, "controller-uid")), uid);
    assert_string_equal(json_string_value(json_object_get(tl, "batch.kubernetes.io/job-name")), "j1");
    resp_free(&r);
    r = make_job("default", "j1", "Never");
    expect_status(&r, 409, "AlreadyExists", "jobs.batch \"j1\" already exists");
    resp_free(&r);
    r = make_job("nope", "j1", "Never");
    expect_status(&r, 404, "NotFound", "namespaces \"nope\" not found");
    resp_free(&r);
    r = make_job("default", "j2", "Always");
    expect_status(&r, 422, "Invalid",
                  "Job.batch \"j2\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"Always\": "
                  "supported values: \"OnFailure\", \"Never\"");
    assert_string_equal(jstr(r.json, "details.kind"), "Job");
    json_t *c0 = json_array_get(json_object_get(json_object_get(r.json, "details"), "causes"), 0);
    assert_string_equal(jstr(c0, "reason"), "FieldValueNotSupported");
    assert_string_equal(jstr(c0, "field"), "spec.template.spec.restartPolicy");
    resp_free(&r);
    r = make_job("default", "Bad_Name", "Never");
    expect_status(&r, 422, "Invalid", NULL);
    assert_non_null(strstr(jstr(r.json, "message"), "metadata.name: Invalid value: \"Bad_Name\""));
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/pods", "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":[]}}");
    expect_status(&r, 422, "Invalid", "Pod \"p\" is invalid: spec.containers: Required value");
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/pods", "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":[{\"image\":\"x\"},{\"name\":\"c\"}]}}");
    expect_status(&r, 422, "Invalid",
                  "Pod \"p\" is invalid: [spec.containers[0].name: Required value, spec.containers[1].image: Required value]");
    resp_free(&r);
    char big[200];
    snprintf(big, sizeof(big), "{\"metadata\":{\"name\":\"s\",\"labels\":{\"k\":\"%064d\"}}}", 0);
    r = api("POST", "/api/v1/namespaces/default/secrets", big);
    expect_status(&r, 422, "Invalid", NULL);
    assert_non_null(strstr(jstr(r.json, "message"), "must be no more than 63 characters"));
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"name\":\"s\",\"labels\":{\"bad key\":\"v\"}}}");
    expect_status(&r, 422, "Invalid", NULL);
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"generateName\":\"sec-\"}}");
    assert_int_equal(r.code, 201);
    assert_int_equal(strlen(jstr(r.json, "metadata.name")), 9);
    assert_string_equal(jstr(r.json, "type"), "Opaque");
    resp_free(&r);
    r = api("GET", "/apis/batch/v1/namespaces/default/jobs/zz", NULL);
    expect_status(&r, 404, "NotFound", "jobs.batch \"zz\" not found");
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/pods", "{not json");
    expect_status(&r, 400, "BadRequest", NULL);
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/pods",
            "{\"metadata\":{\"name\":\"p1\"},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"nginx\"}]}}");
    assert_int_equal(r.code, 201);
    assert_string_equal(jstr(r.json, "status.phase"), "Pending");
    assert_string_equal(jstr(r.json, "kind"), "Pod");
    resp_free(&r);
    r = api("GET", "/api/v1/namespaces/default/pods/p1/log", NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.body, "");
    resp_free(&r);
    r = api("GET", "/api/v1/namespaces/default/pods/nope/log", NULL);
    expect_status(&r, 404, "NotFound", "pods \"nope\" not found");
    resp_free(&r);
}

static void test_update_patch(void **state)
{
    (void)state;
    struct resp r = api("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases",
                        "{\"metadata\":{\"name\":\"l\"},\"spec\":{\"holderIdentity\":\"a\"}}");
    assert_int_equal(r.code, 201);
    char rv[32];
    snprintf(rv, sizeof(rv), "%s", jstr(r.json, "metadata.resourceVersion"));
    resp_free(&r);
    char body[256];
    snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"l\",\"resourceVersion\":\"%s\"},\"spec\":{\"holderIdentity\":\"b\"}}", rv);
    r = api("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l", body);
    assert_int_equal(r.code, 200);
    assert_string_equal(jstr(r.json, "spec.holderIdentity"), "b");
    resp_free(&r);
    r = api("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/l", body); /* stale now */
    expect_status(&r, 409, "Conflict",
                  "Operation cannot be fulfilled on leases.coordination.k8s.io \"l\": the object has been modified; "
                  "please apply your changes to the latest version and try again");
    resp_free(&r);
    /* status subresource rules on a node */
    r = call("PATCH", "/api/v1/nodes/node-0001/status", "{\"status\":{\"phase\":\"X\"},\"metadata\":{\"labels\":{\"q\":\"1\"}}}",
             "application/merge-patch+json", "tok", NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(jstr(r.json, "status.phase"), "X");
    assert_null(jstr(r.json, "metadata.labels.q"));
    resp_free(&r);
    r = call("PATCH", "/api/v1/nodes/node-0001", "{\"status\":{\"phase\":\"Y\"},\"metadata\":{\"labels\":{\"q\":\"1\"}}}",
             "application/merge-patch+json", "tok", NULL);
    assert_string_equal(jstr(r.json, "status.phase"), "X");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(r.json, "metadata"), "labels"), "q")), "1");
    resp_free(&r);
    r = call("PATCH", "/api/v1/nodes/node-0001", "{\"spec\":{\"taints\":[{\"key\":\"k\",\"effect\":\"NoSchedule\"}]}}",
             "application/strategic-merge-patch+json", "tok", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = call("PATCH", "/api/v1/nodes/node-0001", "[{\"op\":\"replace\",\"path\":\"/spec/taints/0/effect\",\"value\":\"NoExecute\"}]",
             "application/json-patch+json", "tok", NULL);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "NoExecute"));
    resp_free(&r);
    /* dryRun=All: validated and answered, never stored */
    char djob[512];
    snprintf(djob, sizeof(djob), JOB, "dry", "Never");
    r = api("POST", "/apis/batch/v1/namespaces/default/jobs?dryRun=All", djob);
    assert_int_equal(r.code, 201);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "spec"), "backoffLimit")), 6);
    resp_free(&r);
    r = api("GET", "/apis/batch/v1/namespaces/default/jobs/dry", NULL);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    r = call("PATCH", "/api/v1/nodes/node-0002?dryRun=All", "{\"metadata\":{\"labels\":{\"dry\":\"1\"}}}",
             "application/merge-patch+json", "tok", NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(r.json, "metadata"), "labels"), "dry")), "1");
    resp_free(&r);
    r = api("DELETE", "/api/v1/nodes/node-0002?dryRun=All", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = api("GET", "/api/v1/nodes/node-0002", NULL);
    assert_int_equal(r.code, 200);
    assert_null(json_object_get(json_object_get(json_object_get(r.json, "metadata"), "labels"), "dry"));
    resp_free(&r);
    /* a Job's template is immutable; its labels are not */
    r = make_job("default", "imm", "Never");
    assert_int_equal(r.code, 201);
    resp_free(&r);
    r = call("PATCH", "/apis/batch/v1/namespaces/default/jobs/imm", "{\"metadata\":{\"labels\":{\"x\":\"y\"}}}",
             "application/merge-patch+json", "tok", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = call("PATCH", "/apis/batch/v1/namespaces/default/jobs/imm",
             "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"busybox:1.37\"}]}}}}",
             "application/strategic-merge-patch+json", "tok", NULL);
    expect_status(&r, 422, "Invalid", NULL);
    assert_non_null(strstr(jstr(r.json, "message"), "spec.template: Invalid value: "));
    assert_non_null(strstr(jstr(r.json, "message"), "field is immutable"));
    resp_free(&r);
    char jb[512];
    snprintf(jb, sizeof(jb), JOB, "imm", "Never"); /* PUT without the server's defaults: same template */
    r = api("PUT", "/apis/batch/v1/namespaces/default/jobs/imm", jb);
    assert_int_equal(r.code, 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "spec"), "backoffLimit")), 6);
    resp_free(&r);
    r = call("PATCH", "/api/v1/nodes/node-0001", "x", "text/plain", "tok", NULL);
    expect_status(&r, 415, "UnsupportedMediaType", NULL);
    resp_free(&r);
    r = call("PATCH", "/api/v1/nodes/none", "{}", "application/merge-patch+json", "tok", NULL);
    expect_status(&r, 404, "NotFound", "nodes \"none\" not found");
    resp_free(&r);
}

static void test_list_selectors_pages(void **state)
{
    (void)state;
    struct resp r = api("GET", "/api/v1/nodes?labelSelector=pool%3Da", NULL);
    assert_string_equal(jstr(r.json, "kind"), "NodeList");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    resp_free(&r);
    r = api("GET", "/api/v1/nodes?labelSelector=pool+in+(a,b),kubernetes.io/arch!=arm64", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 3);
    resp_free(&r);
    r = api("GET", "/api/v1/nodes?labelSelector=pool+in+a", NULL);
    expect_status(&r, 400, "BadRequest", NULL);
    resp_free(&r);
    r = api("GET", "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dtrue", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    resp_free(&r);
    r = api("GET", "/api/v1/nodes?fieldSelector=status.phase%3DX", NULL);
    expect_status(&r, 400, "BadRequest", "field label not supported: status.phase");
    resp_free(&r);
    /* pages */
    r = api("GET", "/api/v1/nodes?limit=3", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 3);
    const char *cont = jstr(r.json, "metadata.continue");
    assert_non_null(cont);
    char path[512], rv[32];
    snprintf(path, sizeof(path), "/api/v1/nodes?limit=3&continue=%s", cont);
    snprintf(rv, sizeof(rv), "%s", jstr(r.json, "metadata.resourceVersion"));
    resp_free(&r);
    struct resp w = api("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"name\":\"bump\"}}");
    resp_free(&w);
    r = api("GET", path, NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "items"), 0), "metadata.name"), "node-0004");
    assert_string_equal(jstr(r.json, "metadata.resourceVersion"), rv); /* the same list rv */
    assert_null(jstr(r.json, "metadata.continue"));
    resp_free(&r);
    r = api("GET", "/api/v1/nodes?limit=3&continue=garbage!", NULL);
    assert_int_equal(r.code, 400);
    resp_free(&r);
    /* Table */
    r = call("GET", "/api/v1/nodes", NULL, NULL, "tok", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
    assert_string_equal(jstr(r.json, "kind"), "Table");
    json_t *rows = json_object_get(r.json, "rows");
    assert_int_equal(json_array_size(rows), 4);
    json_t *cells1 = json_object_get(json_array_get(rows, 1), "cells");
    assert_string_equal(json_string_value(json_array_get(cells1, 0)), "node-0002");
    assert_string_equal(json_string_value(json_array_get(cells1, 1)), "NotReady");
    json_t *cells2 = json_object_get(json_array_get(rows, 2), "cells");
    assert_string_equal(json_string_value(json_array_get(cells2, 1)), "Ready,SchedulingDisabled");
    assert_string_equal(json_string_value(json_array_get(cells2, 4)), "v1.31.0");
    assert_string_equal(jstr(json_array_get(rows, 0), "object.kind"), "PartialObjectMetadata");
    resp_free(&r);
    r = call("GET", "/api/v1/nodes?includeObject=Object&limit=1", NULL, NULL, "tok", "application/json;as=Table;v=v1;g=meta.k8s.io");
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "rows"), 0), "object.kind"), "Node");
    assert_non_null(strstr(r.body, "\"continue\""));
    resp_free(&r);
    r = call("GET", "/api/v1/nodes?includeObject=None", NULL, NULL, "tok", "application/json;as=Table;v=v1;g=meta.k8s.io");
    assert_null(json_object_get(json_array_get(json_object_get(r.json, "rows"), 0), "object"));
    resp_free(&r);
    /* expired continue token after a compaction */
    r = api("POST", "/sim/v1/faults", "{\"compact\":true}");
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = api("GET", path, NULL);
    expect_status(&r, 410, "Expired", NULL);
    resp_free(&r);
    r = api("POST", "/sim/v1/faults", "{}");
    resp_free(&r);
}

static void test_watch(void **state)
{
    (void)state;
    struct resp r = api("GET", "/api/v1/namespaces/default/pods", NULL);
    char rv[32];
    snprintf(rv, sizeof(rv), "%s", jstr(r.json, "metadata.resourceVersion"));
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/pods",
            "{\"metadata\":{\"name\":\"w1\",\"labels\":{\"app\":\"w\"}},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"nginx\"}]}}");
    resp_free(&r);
    r = call("PATCH", "/api/v1/namespaces/default/pods/w1", "{\"metadata\":{\"labels\":{\"app\":\"other\"}}}",
             "application/merge-patch+json", "tok", NULL);
    resp_free(&r);
    r = api("DELETE", "/api/v1/namespaces/default/pods/w1", NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(jstr(r.json, "kind"), "Pod"); /* pods answer with the object */
    resp_free(&r);
    char path[256];
    /* replay from rv with a selector: ADDED, then DELETED when the label left the selector */
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/pods?watch=True&resourceVersion=%s&timeoutSeconds=1&labelSelector=app%%3Dw", rv);
    int64_t t0 = pw_clock_mono_ms();
    r = api("GET", path, NULL);
    int64_t took = pw_clock_mono_ms() - t0;
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.headers, "application/json"));
    char *l1 = r.body, *l2 = strchr(l1, '\n');
    assert_non_null(l2);
    assert_memory_equal(l1, "{\"type\":\"ADDED\"", 15);
    assert_memory_equal(l2 + 1, "{\"type\":\"DELETED\"", 17);
    assert_null(strchr(strchr(l2 + 1, '\n') + 1, '\n')); /* exactly two lines */
    assert_true(took >= 900); /* timeoutSeconds ended it, not before */
    resp_free(&r);
    /* without a selector: ADDED MODIFIED DELETED; each event carries kind */
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/pods?watch=1&resourceVersion=%s&timeoutSeconds=1", rv);
    r = api("GET", path, NULL);
    assert_non_null(strstr(r.body, "\"type\":\"MODIFIED\""));
    assert_non_null(strstr(r.body, "\"kind\":\"Pod\""));
    resp_free(&r);
    /* a big initial list goes out from a thread of its own, all of it */
    for (int i = 0; i < 2500; i++) {
        char name[32];
        snprintf(name, sizeof(name), "bulk-%04d", i);
        assert_int_equal(sim_store_create(E.sim.store, "secrets", "team-a",
                                          json_pack("{s:{s:s, s:s}}", "metadata", "name", name, "namespace", "team-a"), NULL),
                         0);
    }
    r = api("GET", "/api/v1/namespaces/team-a/secrets?watch=1&timeoutSeconds=2", NULL);
    int bulk = 0;
    for (char *p = r.body; (p = strstr(p, "{\"type\":\"ADDED\"")); p++)
        bulk++;
    assert_int_equal(bulk, 2500);
    resp_free(&r);
    /* kubectl get -w: Tables in the events */
    r = call("GET", "/api/v1/nodes?watch=true&timeoutSeconds=1&labelSelector=pool%3Da", NULL, NULL, "tok",
             "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
    assert_non_null(strstr(r.body, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Table\""));
    assert_non_null(strstr(r.body, "\"cells\":[\"node-0001\",\"Ready\""));
    resp_free(&r);
    /* initial events, then the end-of-initial-events bookmark */
    r = api("GET", "/api/v1/nodes?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1&labelSelector=pool%3Db", NULL);
    int added = 0;
    for (char *p = r.body; (p = strstr(p, "\"type\":\"ADDED\"")); p++)
        added++;
    assert_int_equal(added, 2);
    assert_non_null(strstr(r.body, "\"k8s.io/initial-events-end\":\"true\""));
    resp_free(&r);
    /* bookmarks on a quiet stream */
    r = api("GET", "/api/v1/nodes?watch=true&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=2&labelSelector=none", NULL);
    assert_non_null(strstr(r.body, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Node\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\""));
    resp_free(&r);
    /* too old after a compaction: one ERROR event 410 */
    r = api("POST", "/sim/v1/faults", "{\"compact\":true}");
    resp_free(&r);
    r = api("GET", path, NULL);
    assert_int_equal(r.code, 200);
    assert_non_null(strstr(r.body, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\""));
    assert_non_null(strstr(r.body, "\"reason\":\"Expired\""));
    assert_non_null(strstr(r.body, "\"code\":410"));
    assert_non_null(strstr(r.body, "too old resource version: "));
    resp_free(&r);
    r = api("POST", "/sim/v1/faults", "{}");
    resp_free(&r);
    r = api("GET", "/sim/v1/stats", NULL);
    json_t *w = json_object_get(r.json, "watches");
    assert_true(json_integer_value(json_object_get(w, "total")) >= 4);
    resp_free(&r);
}

static bool pod_exists(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/pods/%s", name);
    struct resp r = api("GET", path, NULL);
    bool ok = r.code == 200;
    resp_free(&r);
    return ok;
}

static void owned_pod(const char *name, const char *uid)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"metadata\":{\"name\":\"%s\",\"ownerReferences\":[{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"name\":\"o\","
             "\"uid\":\"%s\",\"controller\":true,\"blockOwnerDeletion\":true}]},\"spec\":{\"restartPolicy\":\"Never\","
             "\"containers\":[{\"name\":\"c\",\"image\":\"busybox\"}]}}",
             name, uid);
    struct resp r = api("POST", "/api/v1/namespaces/default/pods", body);
    assert_int_equal(r.code, 201);
    resp_free(&r);
}

static bool wait_gone(const char *name)
{
    for (int i = 0; i < 100; i++) {
        if (!pod_exists(name))
            return true;
        pw_clock_sleep_ms(20);
    }
    return false;
}

static void test_delete_propagation(void **state)
{
    (void)state;
    char uid[64];
    /* no policy: a Job orphans its pods */
    struct resp r = make_job("default", "orph", "Never");
    snprintf(uid, sizeof(uid), "%s", jstr(r.json, "metadata.uid"));
    resp_free(&r);
    owned_pod("orph-p", uid);
    r = api("DELETE", "/apis/batch/v1/namespaces/default/jobs/orph", NULL);
    assert_int_equal(r.code, 200);
    assert_string_equal(jstr(r.json, "status"), "Success");
    assert_string_equal(jstr(r.json, "details.name"), "orph");
    resp_free(&r);
    pw_clock_sleep_ms(200);
    r = api("GET", "/api/v1/namespaces/default/pods/orph-p", NULL);
    assert_int_equal(r.code, 200);
    assert_null(json_object_get(json_object_get(r.json, "metadata"), "ownerReferences"));
    resp_free(&r);
    /* Background: the garbage collector deletes the pod */
    r = make_job("default", "bg", "Never");
    snprintf(uid, sizeof(uid), "%s", jstr(r.json, "metadata.uid"));
    resp_free(&r);
    owned_pod("bg-p", uid);
    r = api("DELETE", "/apis/batch/v1/namespaces/default/jobs/bg", "{\"propagationPolicy\":\"Background\"}");
    assert_int_equal(r.code, 200);
    resp_free(&r);
    assert_true(wait_gone("bg-p"));
    /* Foreground: the Job stays with deletionTimestamp until the pod is gone */
    r = make_job("default", "fg", "Never");
    snprintf(uid, sizeof(uid), "%s", jstr(r.json, "metadata.uid"));
    resp_free(&r);
    owned_pod("fg-p", uid);
    r = api("DELETE", "/apis/batch/v1/namespaces/default/jobs/fg?propagationPolicy=Foreground", NULL);
    assert_int_equal(r.code, 200);
    assert_non_null(jstr(r.json, "metadata.deletionTimestamp"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(json_object_get(r.json, "metadata"), "finalizers"), 0)),
                        "foregroundDeletion");
    resp_free(&r);
    assert_true(wait_gone("fg-p"));
    bool job_gone = false;
    for (int i = 0; i < 100 && !job_gone; i++) {
        r = api("GET", "/apis/batch/v1/namespaces/default/jobs/fg", NULL);
        job_gone = r.code == 404;
        resp_free(&r);
        if (!job_gone)
            pw_clock_sleep_ms(20);
    }
    assert_true(job_gone);
    /* finalizers keep an object until a later update empties them */
    r = api("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"name\":\"fin\",\"finalizers\":[\"example.com/x\"]}}");
    resp_free(&r);
    r = api("DELETE", "/api/v1/namespaces/default/secrets/fin", NULL);
    assert_int_equal(r.code, 200);
    assert_non_null(jstr(r.json, "metadata.deletionTimestamp"));
    resp_free(&r);
    r = api("GET", "/api/v1/namespaces/default/secrets/fin", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = call("PATCH", "/api/v1/namespaces/default/secrets/fin", "{\"metadata\":{\"finalizers\":null}}",
             "application/merge-patch+json", "tok", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = api("GET", "/api/v1/namespaces/default/secrets/fin", NULL);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    r = api("DELETE", "/api/v1/namespaces/default/secrets/fin", NULL);
    expect_status(&r, 404, "NotFound", "secrets \"fin\" not found");
    resp_free(&r);
    /* DELETE on a collection with a selector */
    for (int i = 0; i < 3; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"dc%d\",\"labels\":{\"grp\":\"%s\"}}}", i, i < 2 ? "x" : "y");
        r = api("POST", "/api/v1/namespaces/default/secrets", body);
        assert_int_equal(r.code, 201);
        resp_free(&r);
    }
    r = api("DELETE", "/api/v1/namespaces/default/secrets?labelSelector=grp%3Dx", NULL);
    assert_int_equal(r.code, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    resp_free(&r);
    r = api("GET", "/api/v1/namespaces/default/secrets?labelSelector=grp", NULL);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    resp_free(&r);
    /* deleting a namespace deletes what it holds */
    r = api("POST", "/api/v1/namespaces", "{\"metadata\":{\"name\":\"tmp-ns\"}}");
    assert_int_equal(r.code, 201);
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/tmp-ns/secrets", "{\"metadata\":{\"name\":\"in-ns\"}}");
    assert_int_equal(r.code, 201);
    resp_free(&r);
    r = api("DELETE", "/api/v1/namespaces/tmp-ns", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = api("GET", "/api/v1/namespaces/tmp-ns/secrets/in-ns", NULL);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    /* a pod on a node is deleted gracefully: deletionTimestamp first, removal when the grace is over */
    r = api("POST", "/api/v1/namespaces/default/pods",
            "{\"metadata\":{\"name\":\"gp\"},\"spec\":{\"nodeName\":\"node-0001\",\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}");
    assert_int_equal(r.code, 201);
    resp_free(&r);
    r = api("DELETE", "/api/v1/namespaces/default/pods/gp", "{\"gracePeriodSeconds\":1}");
    assert_int_equal(r.code, 200);
    assert_non_null(jstr(r.json, "metadata.deletionTimestamp"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "metadata"), "deletionGracePeriodSeconds")), 1);
    resp_free(&r);
    assert_true(pod_exists("gp"));
    for (int i = 0; i < 150 && pod_exists("gp"); i++)
        pw_clock_sleep_ms(20);
    assert_false(pod_exists("gp"));
    r = api("POST", "/api/v1/namespaces/default/pods",
            "{\"metadata\":{\"name\":\"gp2\"},\"spec\":{\"nodeName\":\"node-0001\",\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}");
    resp_free(&r);
    r = api("DELETE", "/api/v1/namespaces/default/pods/gp2?gracePeriodSeconds=0", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    assert_false(pod_exists("gp2"));
    /* sim_api_delete takes the same path */
    r = make_job("default", "tl", "Never");
    snprintf(uid, sizeof(uid), "%s", jstr(r.json, "metadata.uid"));
    resp_free(&r);
    owned_pod("tl-p", uid);
    assert_int_equal(sim_api_delete(&E.sim, "jobs.batch", "default", "tl", "Background"), 0);
    assert_true(wait_gone("tl-p"));
    assert_int_equal(sim_api_delete(&E.sim, "jobs.batch", "default", "tl", NULL), PW_ENOTFOUND);
}

static void test_events_stats_faults(void **state)
{
    (void)state;
    json_t *pod = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "kind", "Pod", "apiVersion", "v1", "metadata", "name", "evp",
                            "namespace", "default", "uid", "u-1");
    sim_api_event(&E.sim, pod, "Normal", "Pulling", "Pulling image \"x\"", "kubelet", "node-0001", "spec.containers{c}");
    sim_api_event(&E.sim, pod, "Normal", "Pulling", "Pulling image \"x\"", "kubelet", "node-0001", "spec.containers{c}");
    sim_api_event(&E.sim, pod, "Normal", "Pulled", "done", "kubelet", "node-0001", NULL);
    json_decref(pod);
    struct resp r = api("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Devp,reason%3DPulling", NULL);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    json_t *ev = json_array_get(items, 0);
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), 2);
    assert_string_equal(jstr(ev, "involvedObject.fieldPath"), "spec.containers{c}");
    assert_string_equal(jstr(ev, "source.host"), "node-0001");
    resp_free(&r);
    /* faults: 429 with Retry-After, then cleared */
    r = api("POST", "/sim/v1/faults", "{\"errors\":[{\"verb\":\"create\",\"resource\":\"secrets\",\"code\":429,\"rate\":1}]}");
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"name\":\"f1\"}}");
    expect_status(&r, 429, "TooManyRequests", NULL);
    assert_non_null(strcasestr(r.headers, "Retry-After: 1"));
    resp_free(&r);
    r = api("GET", "/sim/v1/faults", NULL);
    assert_non_null(strstr(r.body, "\"code\":429"));
    resp_free(&r);
    r = api("POST", "/sim/v1/faults", "{\"errors\":[{\"verb\":\"get\",\"resource\":\"secrets\",\"code\":500,\"rate\":1}]}");
    resp_free(&r);
    r = api("GET", "/api/v1/namespaces/default/secrets/x", NULL);
    expect_status(&r, 500, "InternalError", NULL);
    resp_free(&r);
    r = api("POST", "/sim/v1/faults", "{}");
    resp_free(&r);
    r = api("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"name\":\"f1\"}}");
    assert_int_equal(r.code, 201);
    resp_free(&r);
    /* dropped watch streams and added latency */
    r = api("POST", "/sim/v1/faults", "{\"dropWatchesEverySeconds\":1,\"latencyMs\":150}");
    assert_int_equal(r.code, 200);
    resp_free(&r);
    int64_t t0 = pw_clock_mono_ms();
    r = api("GET", "/api/v1/nodes", NULL);
    assert_true(pw_clock_mono_ms() - t0 >= 150);
    resp_free(&r);
    t0 = pw_clock_mono_ms();
    r = api("GET", "/api/v1/nodes?watch=true&timeoutSeconds=30", NULL); /* curl gives up after 10 s */
    assert_int_equal(r.code, 200);
    assert_true(pw_clock_mono_ms() - t0 < 9000);
    assert_non_null(strstr(r.body, "\"type\":\"ADDED\""));
    resp_free(&r);
    r = api("POST", "/sim/v1/faults", "{}");
    resp_free(&r);
    r = api("POST", "/sim/v1/faults", "{\"errors\":[{\"verb\":\"get\",\"code\":503,\"rate\":1}]}");
    assert_int_equal(r.code, 400);
    resp_free(&r);
    r = api("GET", "/sim/v1/stats", NULL);
    json_t *rows = json_object_get(r.json, "requests");
    bool saw429 = false, saw201 = false;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        if (strcmp(jstr(row, "verb"), "create") == 0 && strcmp(jstr(row, "resource"), "secrets") == 0) {
            if (json_integer_value(json_object_get(row, "code")) == 429)
                saw429 = json_integer_value(json_object_get(row, "count")) == 1;
            if (json_integer_value(json_object_get(row, "code")) == 201)
                saw201 = true;
        }
    }
    assert_true(saw429);
    assert_true(saw201);
    assert_non_null(strstr(r.body, "{\"verb\":\"list\",\"resource\":\"events\",\"code\":200,\"count\":1}"));
    resp_free(&r);
}

static void test_crd(void **state)
{
    (void)state;
    struct resp r = api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                        "{\"metadata\":{\"name\":\"widgets.example.com\"},\"spec\":{\"group\":\"example.com\",\"scope\":\"Namespaced\","
                        "\"names\":{\"plural\":\"widgets\",\"singular\":\"widget\",\"kind\":\"Widget\",\"shortNames\":[\"wd\"]},"
                        "\"versions\":[{\"name\":\"v1\",\"served\":true,\"storage\":true,\"subresources\":{\"status\":{}}}]}}");
    assert_int_equal(r.code, 201);
    assert_non_null(strstr(r.body, "\"Established\""));
    assert_non_null(strstr(r.body, "\"acceptedNames\""));
    resp_free(&r);
    r = api("GET", "/apis", NULL);
    assert_non_null(strstr(r.body, "\"example.com/v1\""));
    resp_free(&r);
    r = api("GET", "/apis/example.com/v1", NULL);
    assert_non_null(strstr(r.body, "\"widgets/status\""));
    assert_non_null(strstr(r.body, "\"wd\""));
    resp_free(&r);
    r = api("POST", "/apis/example.com/v1/namespaces/default/widgets",
            "{\"apiVersion\":\"example.com/v1\",\"kind\":\"Widget\",\"metadata\":{\"name\":\"w\"},\"spec\":{\"a\":1},\"status\":{\"s\":1}}");
    assert_int_equal(r.code, 201);
    assert_null(json_object_get(r.json, "status")); /* status is the subresource's */
    resp_free(&r);
    r = call("PATCH", "/apis/example.com/v1/namespaces/default/widgets/w", "{\"spec\":{\"a\":2}}",
             "application/strategic-merge-patch+json", "tok", NULL);
    expect_status(&r, 415, "UnsupportedMediaType", NULL);
    resp_free(&r);
    r = call("PATCH", "/apis/example.com/v1/namespaces/default/widgets/w/status", "{\"status\":{\"s\":2},\"spec\":{\"a\":9}}",
             "application/merge-patch+json", "tok", NULL);
    assert_int_equal(r.code, 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "status"), "s")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "spec"), "a")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r.json, "metadata"), "generation")), 1);
    resp_free(&r);
    r = api("GET", "/apis/example.com/v1/widgets", NULL);
    assert_string_equal(jstr(r.json, "kind"), "WidgetList");
    assert_string_equal(jstr(json_array_get(json_object_get(r.json, "items"), 0), "kind"), "Widget");
    resp_free(&r);
    r = api("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com", NULL);
    assert_int_equal(r.code, 200);
    resp_free(&r);
    r = api("GET", "/apis/example.com/v1/widgets", NULL);
    assert_int_equal(r.code, 404);
    resp_free(&r);
    r = api("POST", "/apis/authentication.k8s.io/v1/tokenreviews", "{\"spec\":{\"token\":\"tok\"}}");
    assert_int_equal(r.code, 201);
    assert_true(json_is_true(json_object_get(json_object_get(r.json, "status"), "authenticated")));
    resp_free(&r);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_patch),
        cmocka_unit_test(test_strategic_patch),
        cmocka_unit_test(test_json_patch),
        cmocka_unit_test(test_json_patch_indexes),
        cmocka_unit_test(test_fieldsel),
        cmocka_unit_test_setup_teardown(test_auth_discovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_patch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_selectors_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_propagation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_stats_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crd, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
