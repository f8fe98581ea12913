/* Unit tests for the task spec's validation, one bad request per rule: each must be refused with its
 * field named and a message saying why; a few good edge cases (integral reals, null fields, the
 * parsed forms kept) must pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/taskspec.h"

static const struct {
    const char *body;
    const char *field;
    const char *message; /* a part of the message */
} bad[] = {
    {"[1]", "body", "JSON object"},
    {"{}", "images", "required"},
    {"{\"images\":\"nginx\"}", "images", "array of strings"},
    {"{\"images\":[]}", "images", "between 1 and 100"},
    {"{\"images\":[7]}", "images[0]", "must be a string"},
    {"{\"images\":[\"Nginx\"]}", "images[0]", "invalid reference format"},
    {"{\"images\":[\"nginx\",\"nginx\"]}", "images[1]", "duplicate of images[0]"},
    {"{\"images\":[\"nginx:1\",\"docker.io/library/nginx:1\"]}", "images[1]", "the same image as images[0]"},
    {"{\"images\":[\"a\"],\"batchSize\":\"5\"}", "batchSize", "must be an integer"},
    {"{\"images\":[\"a\"],\"batchSize\":2.5}", "batchSize", "must be an integer"},
    {"{\"images\":[\"a\"],\"batchSize\":1e9}", "batchSize", "between 1 and 10000"},
    {"{\"images\":[\"a\"],\"batchSize\":0}", "batchSize", "between 1 and 10000"},
    {"{\"images\":[\"a\"],\"strategy\":\"fast\"}", "strategy", "one of: rolling, batch"},
    {"{\"images\":[\"a\"],\"strategy\":3}", "strategy", "one of"},
    {"{\"images\":[\"a\"],\"nodeSelector\":[]}", "nodeSelector", "object of strings"},
    {"{\"images\":[\"a\"],\"nodeSelector\":{\"-bad\":\"x\"}}", "nodeSelector.-bad", "invalid label key"},
    {"{\"images\":[\"a\"],\"nodeSelector\":{\"pool\":1}}", "nodeSelector.pool", "must be a string"},
    {"{\"images\":[\"a\"],\"nodeSelector\":{\"pool\":\"a b\"}}", "nodeSelector.pool", "invalid label value"},
    {"{\"images\":[\"a\"],\"labelSelector\":5}", "labelSelector", "must be a string"},
    {"{\"images\":[\"a\"],\"labelSelector\":\"zone in (a\"}", "labelSelector", ""},
    {"{\"images\":[\"a\"],\"nodeNames\":[\"Node_1\"]}", "nodeNames[0]", "DNS-1123"},
    {"{\"images\":[\"a\"],\"includeNotReady\":\"yes\"}", "includeNotReady", "must be a boolean"},
    {"{\"images\":[\"a\"],\"includeUnschedulable\":1}", "includeUnschedulable", "must be a boolean"},
    {"{\"images\":[\"a\"],\"pullPolicy\":\"Sometimes\"}", "pullPolicy", "IfNotPresent, Always, Never"},
    {"{\"images\":[\"a\"],\"imagePullSecrets\":[\"UPPER\"]}", "imagePullSecrets[0]", "DNS-1123"},
    {"{\"images\":[\"a\"],\"timeoutSeconds\":0}", "timeoutSeconds", "between 1 and 86400"},
    {"{\"images\":[\"a\"],\"retries\":11}", "retries", "between 0 and 10"},
    {"{\"images\":[\"a\"],\"successThreshold\":\"high\"}", "successThreshold", "must be a number"},
    {"{\"images\":[\"a\"],\"successThreshold\":1.5}", "successThreshold", "between 0 and 1"},
    {"{\"images\":[\"a\"],\"priority\":-1001}", "priority", "between -1000 and 1000"},
    {"{\"images\":[\"a\"],\"labels\":{\"team\":\"-x\"}}", "labels.team", "invalid label value"},
    {"{\"images\":[\"a\"],\"colour\":\"red\"}", "colour", "unknown field"},
    {"{\"images\":[\"a\"],\"webhooks\":{}}", "webhooks", "array of at most 8"},
    {"{\"images\":[\"a\"],\"webhooks\":[\"http://x/\"]}", "webhooks[0]", "must be an object"},
    {"{\"images\":[\"a\"],\"webhooks\":[{}]}", "webhooks[0].url", "required"},
    {"{\"images\":[\"a\"],\"webhooks\":[{\"url\":5}]}", "webhooks[0].url", "must be a string"},
    {"{\"images\":[\"a\"],\"webhooks\":[{\"url\":\"ftp://h/x\"}]}", "webhooks[0].url", "only http and https"},
    {"{\"images\":[\"a\"],\"webhooks\":[{\"url\":\"https://h/\"},{\"url\":\"https://h/\",\"events\":[\"done\"]}]}",
     "webhooks[1].events[0]", "unknown event \"done\""},
    {"{\"images\":[\"a\"],\"webhooks\":[{\"url\":\"https://h/\",\"events\":[]}]}", "webhooks[0].events", ""},
    {"{\"images\":[\"a\"],\"webhooks\":[{\"url\":\"https://h/\",\"secretRef\":\"Bad_Name\"}]}",
     "webhooks[0].secretRef", "name of a Secret"},
    {"{\"images\":[\"a\"],\"webhooks\":[{\"url\":\"https://h/\",\"secret\":\"s3cr3t\"}]}", "webhooks[0].secret",
     "unknown field"},
};

static void test_bad_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_error_t jerr;
        json_t *req = json_loads(bad[i].body, JSON_DECODE_ANY, &jerr);
        if (!req)
            fail_msg("test body %zu does not parse", i);
        struct pw_taskspec s;
        struct pw_field_errors errs;
        int rc = pw_taskspec_parse(req, &s, &errs);
        json_decref(req);
        if (rc != PW_EINVAL || errs.n == 0)
            fail_msg("%s: accepted (rc %d)", bad[i].body, rc);
        if (strcmp(errs.e[0].field, bad[i].field) != 0 || !strstr(errs.e[0].message, bad[i].message))
            fail_msg("%s: got %s: %s; want %s: ...%s...", bad[i].body, errs.e[0].field, errs.e[0].message,
                     bad[i].field, bad[i].message);
    }
}

/* webhooks: events filled in, the round trip through the task's JSON form keeps them */
static void test_webhooks(void **state)
{
    (void)state;
    json_t *req = json_loads("{\"images\":[\"a\"],\"webhooks\":[{\"url\":\"https://h/x\"},"
                             "{\"url\":\"http://127.0.0.1:9/y\",\"events\":[\"failed\"],\"secretRef\":\"k\"}]}",
                             0, NULL);
    struct pw_taskspec s;
    struct pw_field_errors errs;
    assert_int_equal(pw_taskspec_parse(req, &s, &errs), 0);
    json_decref(req);
    assert_int_equal(json_array_size(s.webhooks), 2);
    assert_int_equal(json_array_size(json_object_get(json_array_get(s.webhooks, 0), "events")), 4);
    json_t *j = pw_taskspec_to_json(&s);
    struct pw_taskspec back;
    assert_int_equal(pw_taskspec_from_task(j, &back, &errs), 0);
    assert_true(json_equal(back.webhooks, s.webhooks));
    assert_string_equal(json_string_value(json_object_get(json_array_get(back.webhooks, 1), "secretRef")), "k");
    json_decref(j);
    pw_taskspec_fini(&back);
    pw_taskspec_fini(&s);
}

static void test_many_labels(void **state)
{
    (void)state;
    json_t *labels = json_object();
    for (int i = 0; i < 65; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        json_object_set_new(labels, k, json_string("v"));
    }
    json_t *req = json_pack("{s:[s],s:o}", "images", "a", "labels", labels);
    struct pw_taskspec s;
    struct pw_field_errors errs;
    assert_int_equal(pw_taskspec_parse(req, &s, &errs), PW_EINVAL);
    assert_string_equal(errs.e[0].field, "labels");
    assert_non_null(strstr(errs.e[0].message, "at most 64"));
    json_decref(req);
}

static void test_good_edges(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *req = json_loads("{\"images\":[\"nginx:1.27\",\"quay.io/x/y@sha256:"
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"],"
                             "\"batchSize\":5.0,\"labelSelector\":\"zone in (a,b),!spot\",\"strategy\":null,"
                             "\"successThreshold\":1,\"nodeNames\":[],\"labels\":{\"team\":\"ml\"}}",
                             0, &jerr);
    assert_non_null(req);
    struct pw_taskspec s;
    struct pw_field_errors errs;
    assert_int_equal(pw_taskspec_parse(req, &s, &errs), 0);
    json_decref(req);
    assert_int_equal(s.batch_size, 5);
    assert_string_equal(s.strategy, "rolling");
    assert_true(s.has_node_names);
    assert_int_equal(s.n_node_names, 0);
    /* the parsed forms are kept: the engine never parses the text again */
    assert_non_null(s.selector);
    assert_non_null(s.refs);
    assert_string_equal(s.refs[0].path, "library/nginx");
    assert_string_equal(s.refs[1].domain, "quay.io");
    /* the JSON form parses back to the same spec */
    json_t *j = pw_taskspec_to_json(&s);
    struct pw_taskspec s2;
    assert_int_equal(pw_taskspec_parse(j, &s2, &errs), 0);
    json_t *j2 = pw_taskspec_to_json(&s2);
    assert_true(json_equal(j, j2));
    json_decref(j);
    json_decref(j2);
    pw_taskspec_fini(&s2);
    pw_taskspec_fini(&s);
    pw_taskspec_fini(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_webhooks),
        cmocka_unit_test(test_many_labels),
        cmocka_unit_test(test_good_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
