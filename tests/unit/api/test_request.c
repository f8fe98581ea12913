/* Unit tests for the create request: content type, JSON, every field's type, range and grammar
 * errors naming the field, unknown fields, defaults, and the spec's round trip through JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "store/store.h"
#include "base/err.h"

/* Parses body; returns the error's first detail field ("" when it parsed). */
static int parse(const char *body, struct pw_taskspec *spec, char *field, size_t fsize, char *msg, size_t msize)
{
    json_t *err = NULL;
    int rc = pw_api_parse_create("application/json", body, strlen(body), spec, &err);
    field[0] = msg[0] = '\0';
    if (rc != 0) {
        const json_t *d = json_array_get(json_object_get(err, "details"), 0);
        snprintf(field, fsize, "%s", json_string_value(json_object_get(d, "field")) ? json_string_value(json_object_get(d, "field")) : "");
        snprintf(msg, msize, "%s", json_string_value(json_object_get(err, "message")) ? json_string_value(json_object_get(err, "message")) : "");
        assert_int_equal(json_integer_value(json_object_get(err, "code")), pw_err_http_status(rc));
        assert_non_null(json_string_value(json_object_get(err, "reason")));
        json_decref(err);
    }
    return rc;
}

/* Expects body to fail on field, with want in the message. */
static void bad(const char *body, const char *field, const char *want)
{
    struct pw_taskspec s;
    char f[128], m[512];
    int rc = parse(body, &s, f, sizeof f, m, sizeof m);
    if (rc != PW_EINVAL || strcmp(f, field) != 0 || (want && !strstr(m, want)))
        fail_msg("body %s: rc %d field \"%s\" message \"%s\" (wanted field %s, \"%s\")", body, rc, f, m, field,
                 want ? want : "");
}

static void test_defaults(void **state)
{
    (void)state;
    struct pw_taskspec s;
    char f[128], m[512];
    assert_int_equal(parse("{\"images\":[\"nginx:1.27\"]}", &s, f, sizeof f, m, sizeof m), 0);
    assert_int_equal(s.n_images, 1);
    assert_string_equal(s.images[0], "nginx:1.27");
    assert_int_equal(s.batch_size, 10);
    assert_string_equal(s.strategy, "rolling");
    assert_string_equal(s.pull_policy, "IfNotPresent");
    assert_int_equal(s.timeout_s, 600);
    assert_int_equal(s.retries, 3);
    assert_true(s.success_threshold > 0.899 && s.success_threshold < 0.901);
    assert_int_equal(s.priority, 0);
    assert_false(s.include_not_ready);
    assert_false(s.include_unschedulable);
    assert_false(s.has_node_names);
    assert_null(s.node_selector);
    assert_null(s.label_selector);
    pw_taskspec_fini(&s);
}

static void test_full_roundtrip(void **state)
{
    (void)state;
    const char *body = "{\"images\":[\"nginx:1.27\",\"redis:7\"],\"batchSize\":25,\"strategy\":\"batch\","
                       "\"nodeSelector\":{\"pool\":\"gpu\"},\"labelSelector\":\"zone in (a,b),!spot\","
                       "\"nodeNames\":[\"node-1\"],\"includeNotReady\":true,\"includeUnschedulable\":true,"
                       "\"pullPolicy\":\"Always\",\"imagePullSecrets\":[\"regcred\"],\"timeoutSeconds\":60,"
                       "\"retries\":0,\"successThreshold\":1,\"priority\":-5,\"labels\":{\"team\":\"ml\"}}";
    struct pw_taskspec s;
    char f[128], m[512];
    assert_int_equal(parse(body, &s, f, sizeof f, m, sizeof m), 0);
    assert_int_equal(s.batch_size, 25);
    assert_string_equal(s.strategy, "batch");
    assert_string_equal(json_string_value(json_object_get(s.node_selector, "pool")), "gpu");
    assert_string_equal(s.label_selector, "zone in (a,b),!spot");
    assert_true(s.has_node_names);
    assert_int_equal(s.n_node_names, 1);
    assert_true(s.include_not_ready && s.include_unschedulable);
    assert_string_equal(s.pull_policy, "Always");
    assert_int_equal(s.n_pull_secrets, 1);
    assert_int_equal(s.timeout_s, 60);
    assert_int_equal(s.retries, 0);
    assert_true(s.success_threshold == 1.0);
    assert_int_equal(s.priority, -5);
    assert_string_equal(json_string_value(json_object_get(s.labels, "team")), "ml");
    /* the JSON form parses back to the same spec */
    json_t *j = pw_taskspec_to_json(&s);
    struct pw_taskspec s2;
    struct pw_field_errors errs;
    assert_int_equal(pw_taskspec_parse(j, &s2, &errs), 0);
    json_t *j2 = pw_taskspec_to_json(&s2);
    assert_true(json_equal(j, j2));
    json_decref(j);
    json_decref(j2);
    pw_taskspec_fini(&s2);
    pw_taskspec_fini(&s);
}

static void test_transport_errors(void **state)
{
    (void)state;
    struct pw_taskspec s;
    json_t *err = NULL;
    const char *b = "{\"images\":[\"nginx:1.27\"]}";
    assert_int_equal(pw_api_parse_create("text/plain", b, strlen(b), &s, &err), PW_EMEDIATYPE);
    assert_int_equal(json_integer_value(json_object_get(err, "code")), 415);
    assert_string_equal(json_string_value(json_object_get(err, "reason")), "UnsupportedMediaType");
    json_decref(err);
    assert_int_equal(pw_api_parse_create(NULL, b, strlen(b), &s, &err), PW_EMEDIATYPE);
    json_decref(err);
    assert_int_equal(pw_api_parse_create("application/json; charset=utf-8", b, strlen(b), &s, &err), 0);
    pw_taskspec_fini(&s);
    assert_int_equal(pw_api_parse_create("Application/JSON", b, strlen(b), &s, &err), 0);
    pw_taskspec_fini(&s);
    assert_int_equal(pw_api_parse_create("application/jsonx", b, strlen(b), &s, &err), PW_EMEDIATYPE);
    json_decref(err);
    assert_int_equal(pw_api_parse_create("application/json", "{\"images\":", 10, &s, &err), PW_EINVAL);
    assert_int_equal(json_integer_value(json_object_get(err, "code")), 400);
    assert_string_equal(json_string_value(json_object_get(err, "reason")), "Invalid");
    assert_non_null(strstr(json_string_value(json_object_get(err, "message")), "invalid JSON"));
    json_decref(err);
    /* the body cap is the HTTP server's alone (http.h, max_body): tested over HTTP in test_handlers */
}

static void test_field_errors(void **state)
{
    (void)state;
    bad("[]", "body", "JSON object");
    bad("{\"images\":[\"a\"],\"images\":[\"b\"]}", "body", "duplicate");
    bad("{}", "images", "required");
    bad("{\"image\":[\"nginx\"]}", "image", "unknown field");
    bad("{\"images\":[\"nginx\"],\"batchsize\":3}", "batchsize", "unknown field");
    bad("{\"images\":\"nginx\"}", "images", "array");
    bad("{\"images\":[]}", "images", "between 1 and 100");
    bad("{\"images\":[\"nginx\",\"Nginx:1\"]}", "images[1]", NULL);
    bad("{\"images\":[\"nginx\",5]}", "images[1]", "string");
    bad("{\"images\":[\"nginx:1.27\",\"nginx:1.27\"]}", "images[1]", "duplicate");
    bad("{\"images\":[\"nginx:1.27\",\"docker.io/library/nginx:1.27\"]}", "images[1]", "same image");
    bad("{\"images\":[\"nginx:bad tag\"]}", "images[0]", NULL);
    bad("{\"images\":[\"nginx\"],\"batchSize\":0}", "batchSize", "between 1 and 10000");
    bad("{\"images\":[\"nginx\"],\"batchSize\":10001}", "batchSize", "between 1 and 10000");
    bad("{\"images\":[\"nginx\"],\"batchSize\":1.5}", "batchSize", "integer");
    bad("{\"images\":[\"nginx\"],\"batchSize\":\"10\"}", "batchSize", "integer");
    bad("{\"images\":[\"nginx\"],\"strategy\":\"fast\"}", "strategy", "rolling, batch");
    bad("{\"images\":[\"nginx\"],\"nodeSelector\":[]}", "nodeSelector", "object");
    bad("{\"images\":[\"nginx\"],\"nodeSelector\":{\"pool\":5}}", "nodeSelector.pool", "string");
    bad("{\"images\":[\"nginx\"],\"nodeSelector\":{\"-bad\":\"x\"}}", "nodeSelector.-bad", "label key");
    bad("{\"images\":[\"nginx\"],\"nodeSelector\":{\"pool\":\"bad value\"}}", "nodeSelector.pool", "label value");
    bad("{\"images\":[\"nginx\"],\"labelSelector\":\"zone in (a\"}", "labelSelector", NULL);
    bad("{\"images\":[\"nginx\"],\"labelSelector\":7}", "labelSelector", "string");
    bad("{\"images\":[\"nginx\"],\"nodeNames\":[\"Node_1\"]}", "nodeNames[0]", "DNS-1123");
    bad("{\"images\":[\"nginx\"],\"nodeNames\":\"node-1\"}", "nodeNames", "array");
    bad("{\"images\":[\"nginx\"],\"nodeNames\":[\"a\",\"a\"]}", "nodeNames[1]", "duplicate");
    bad("{\"images\":[\"nginx\"],\"includeNotReady\":\"yes\"}", "includeNotReady", "boolean");
    bad("{\"images\":[\"nginx\"],\"includeUnschedulable\":1}", "includeUnschedulable", "boolean");
    bad("{\"images\":[\"nginx\"],\"pullPolicy\":\"always\"}", "pullPolicy", "Always");
    bad("{\"images\":[\"nginx\"],\"imagePullSecrets\":[\"Reg Cred\"]}", "imagePullSecrets[0]", "DNS-1123");
    bad("{\"images\":[\"nginx\"],\"imagePullSecrets\":{}}", "imagePullSecrets", "array");
    bad("{\"images\":[\"nginx\"],\"timeoutSeconds\":0}", "timeoutSeconds", "between 1 and 86400");
    bad("{\"images\":[\"nginx\"],\"timeoutSeconds\":86401}", "timeoutSeconds", "between 1 and 86400");
    bad("{\"images\":[\"nginx\"],\"retries\":-1}", "retries", "between 0 and 10");
    bad("{\"images\":[\"nginx\"],\"retries\":11}", "retries", "between 0 and 10");
    bad("{\"images\":[\"nginx\"],\"successThreshold\":1.5}", "successThreshold", "between 0 and 1");
    bad("{\"images\":[\"nginx\"],\"successThreshold\":-0.1}", "successThreshold", "between 0 and 1");
    bad("{\"images\":[\"nginx\"],\"successThreshold\":\"0.9\"}", "successThreshold", "number");
    bad("{\"images\":[\"nginx\"],\"priority\":1001}", "priority", "between -1000 and 1000");
    bad("{\"images\":[\"nginx\"],\"priority\":-1001}", "priority", "between -1000 and 1000");
    bad("{\"images\":[\"nginx\"],\"labels\":{\"team\":\"-ml\"}}", "labels.team", "label value");
    bad("{\"images\":[\"nginx\"],\"labels\":\"team=ml\"}", "labels", "object");
}

static void test_many_errors_listed(void **state)
{
    (void)state;
    json_t *err = NULL;
    struct pw_taskspec s;
    const char *b = "{\"images\":[\"nginx\"],\"batchSize\":0,\"retries\":99,\"bogus\":1}";
    assert_int_equal(pw_api_parse_create("application/json", b, strlen(b), &s, &err), PW_EINVAL);
    assert_int_equal(json_array_size(json_object_get(err, "details")), 3);
    json_decref(err);
    /* 101 images */
    json_t *req = json_object();
    json_t *imgs = json_array();
    for (int i = 0; i < 101; i++) {
        char r[32];
        snprintf(r, sizeof r, "img%d:1", i);
        json_array_append_new(imgs, json_string(r));
    }
    json_object_set_new(req, "images", imgs);
    struct pw_field_errors errs;
    assert_int_equal(pw_taskspec_parse(req, &s, &errs), PW_EINVAL);
    assert_string_equal(errs.e[0].field, "images");
    json_array_remove(imgs, 0);
    assert_int_equal(pw_taskspec_parse(req, &s, &errs), 0); /* exactly 100 */
    pw_taskspec_fini(&s);
    json_decref(req);
    /* null means absent */
    b = "{\"images\":[\"nginx\"],\"batchSize\":null}";
    assert_int_equal(pw_api_parse_create("application/json", b, strlen(b), &s, &err), 0);
    assert_int_equal(s.batch_size, 10);
    pw_taskspec_fini(&s);
}

static void test_task_ids(void **state)
{
    (void)state;
    char a[16], b[16];
    pw_task_id_new(a);
    for (int i = 0; i < 1000; i++) {
        pw_task_id_new(b);
        assert_int_equal(strlen(b), 14);
        assert_true(strncmp(b, "t-", 2) == 0);
        assert_true(strcmp(a, b) < 0); /* strictly increasing */
        for (int k = 2; k < 14; k++)
            assert_non_null(strchr("0123456789abcdefghjkmnpqrstvwxyz", b[k]));
        memcpy(a, b, sizeof a);
    }
}

static void test_error_shape(void **state)
{
    (void)state;
    json_t *e = pw_api_error(PW_ENOTFOUND, "task t-1 not found", NULL);
    assert_int_equal(json_integer_value(json_object_get(e, "code")), 404);
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "NotFound");
    assert_null(json_object_get(e, "details"));
    json_decref(e);
    e = pw_api_error(PW_EINVAL, "limit: must be an integer", "limit");
    const json_t *d = json_array_get(json_object_get(e, "details"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "field")), "limit");
    assert_string_equal(json_string_value(json_object_get(d, "message")), "must be an integer");
    json_decref(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_roundtrip),
        cmocka_unit_test(test_transport_errors),
        cmocka_unit_test(test_field_errors),
        cmocka_unit_test(test_many_errors_listed),
        cmocka_unit_test(test_task_ids),
        cmocka_unit_test(test_error_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
