/* Unit tests for a policy's spec (policy/polspec.h): one bad request per rule, each refused with its
 * field named (the task-like fields through the task parser, under the policy's names); the
 * defaults; the predictor hook's check; matching, refresh timing, and the images and task spec of a
 * wave. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "policy/polspec.h"

static const struct {
    const char *body;
    const char *field;
    const char *message; /* a part of the message */
} bad[] = {
    {"[1]", "body", "JSON object"},
    {"{\"images\":[\"nginx\"]}", "name", "required"},
    {"{\"name\":\"Web\",\"images\":[\"nginx\"]}", "name", "DNS-1123 label"},
    {"{\"name\":\"web\"}", "images", "required"},
    {"{\"name\":\"web\",\"images\":[]}", "images", "required"},
    {"{\"name\":\"web\",\"images\":[\"Nginx\"]}", "images[0]", "invalid reference format"},
    {"{\"name\":\"web\",\"images\":[\"nginx:1\",\"docker.io/library/nginx:1\"]}", "images[1]", "the same image"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"imagez\":[]}", "imagez", "unknown field"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"pullPolicy\":\"Always\"}", "pullPolicy", "unknown field"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"nodeNames\":[\"a\"]}", "nodeNames", "unknown field"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"refreshInterval\":\"59s\"}", "refreshInterval", "at least 1m"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"refreshInterval\":\"soon\"}", "refreshInterval", "invalid duration"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"refreshInterval\":60}", "refreshInterval", "duration string"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"enabled\":\"yes\"}", "enabled", "true or false"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"untaintWhenDone\":\"a b\"}", "untaintWhenDone", "invalid taint key"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"predict\":{}}", "predict", "prediction is not enabled"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"predict\":[]}", "predict", "must be an object"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"batchSize\":0}", "batchSize", "between 1 and 10000"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"mode\":\"fast\"}", "mode", "one of"},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"pullSecrets\":[\"A B\"]}", "pullSecrets[0]", ""},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"labelSelector\":\"a in (\"}", "labelSelector", ""},
    {"{\"name\":\"web\",\"images\":[\"nginx\"],\"nodeSelector\":{\"pool\":1}}", "nodeSelector.pool", "string"},
};

static bool has_error(const struct pw_field_errors *errs, const char *field, const char *part)
{
    for (size_t i = 0; i < errs->n; i++)
        if (strcmp(errs->e[i].field, field) == 0 && strstr(errs->e[i].message, part))
            return true;
    return false;
}

static void test_bad_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *req = json_loads(bad[i].body, 0, NULL);
        assert_non_null(req);
        struct pw_polspec s;
        struct pw_field_errors errs;
        int rc = pw_polspec_parse(req, NULL, &s, &errs);
        if (rc != PW_EINVAL || !has_error(&errs, bad[i].field, bad[i].message)) {
            fprintf(stderr, "case %zu %s: rc %d, %zu errors, first %s: %s\n", i, bad[i].body, rc, errs.n,
                    errs.n ? errs.e[0].field : "-", errs.n ? errs.e[0].message : "-");
            fail();
        }
        json_decref(req);
    }
}

static void test_defaults(void **state)
{
    (void)state;
    json_t *req = json_loads("{\"name\":\"gpu\",\"images\":[\"nginx:1.27\"],\"nodeSelector\":{\"pool\":\"gpu\"},"
                             "\"labelSelector\":\"zone in (a,b)\",\"pullSecrets\":[\"regcred\"]}",
                             0, NULL);
    struct pw_polspec s;
    struct pw_field_errors errs;
    assert_int_equal(pw_polspec_parse(req, NULL, &s, &errs), 0);
    assert_string_equal(s.name, "gpu");
    assert_int_equal(s.refresh_ms, 24LL * 3600 * 1000);
    assert_true(s.enabled);
    assert_null(s.untaint);
    assert_null(s.predict);
    assert_int_equal(s.n_images, 1);
    assert_string_equal(json_string_value(json_object_get(s.doc, "refreshInterval")), "24h");
    assert_int_equal(json_integer_value(json_object_get(s.doc, "batchSize")), 10);
    assert_string_equal(json_string_value(json_array_get(json_object_get(s.doc, "pullSecrets"), 0)), "regcred");
    assert_null(json_object_get(s.doc, "imagePullSecrets"));
    /* the doc parses back to the same spec (the store keeps it) */
    struct pw_polspec again;
    assert_int_equal(pw_polspec_parse(s.doc, NULL, &again, &errs), 0);
    assert_true(json_equal(again.doc, s.doc));
    pw_polspec_fini(&again);
    /* selection: nodeSelector and labelSelector ANDed */
    json_t *n1 = json_loads("{\"metadata\":{\"name\":\"a\",\"labels\":{\"pool\":\"gpu\",\"zone\":\"a\"}}}", 0, NULL);
    json_t *n2 = json_loads("{\"metadata\":{\"name\":\"b\",\"labels\":{\"pool\":\"gpu\",\"zone\":\"c\"}}}", 0, NULL);
    json_t *n3 = json_loads("{\"metadata\":{\"name\":\"c\",\"labels\":{\"pool\":\"cpu\",\"zone\":\"a\"}}}", 0, NULL);
    assert_true(pw_polspec_selects(&s, n1));
    assert_false(pw_polspec_selects(&s, n2));
    assert_false(pw_polspec_selects(&s, n3));
    json_decref(n1);
    json_decref(n2);
    json_decref(n3);
    /* "0" turns refresh off; 1m is the least */
    assert_true(pw_polspec_refresh_due(&s, 0, 24LL * 3600 * 1000));
    assert_false(pw_polspec_refresh_due(&s, 1000, 24LL * 3600 * 1000));
    pw_polspec_fini(&s);
    json_decref(req);
    req = json_loads("{\"name\":\"x\",\"images\":[\"a\"],\"refreshInterval\":\"0\",\"enabled\":false}", 0, NULL);
    assert_int_equal(pw_polspec_parse(req, NULL, &s, &errs), 0);
    assert_int_equal(s.refresh_ms, 0);
    assert_false(s.enabled);
    assert_false(pw_polspec_refresh_due(&s, 0, INT64_MAX / 2));
    pw_polspec_fini(&s);
    json_decref(req);
    req = json_loads("{\"name\":\"x\",\"images\":[\"a\"],\"refreshInterval\":\"1m\"}", 0, NULL);
    assert_int_equal(pw_polspec_parse(req, NULL, &s, &errs), 0);
    assert_int_equal(s.refresh_ms, 60000);
    pw_polspec_fini(&s);
    json_decref(req);
}

/* A predictor whose check refuses predict.topK above 10. */
static int check(void *ud, const json_t *predict, char **field, char **msg)
{
    (*(int *)ud)++;
    json_t *k = json_object_get(predict, "topK");
    if (k && json_integer_value(k) > 10) {
        *field = strdup("predict.topK");
        *msg = strdup("at most 10");
        return -1;
    }
    return 0;
}

static void test_predictor_check(void **state)
{
    (void)state;
    int calls = 0;
    struct pw_policy_predictor pred = {.check = check, .ud = &calls};
    struct pw_polspec s;
    struct pw_field_errors errs;
    json_t *req = json_loads("{\"name\":\"p\",\"predict\":{\"topK\":11}}", 0, NULL);
    assert_int_equal(pw_polspec_parse(req, &pred, &s, &errs), PW_EINVAL);
    assert_true(has_error(&errs, "predict.topK", "at most 10"));
    json_decref(req);
    /* a predict-only policy needs no static images */
    req = json_loads("{\"name\":\"p\",\"predict\":{\"topK\":5}}", 0, NULL);
    assert_int_equal(pw_polspec_parse(req, &pred, &s, &errs), 0);
    assert_int_equal(s.n_images, 0);
    assert_int_equal(json_array_size(json_object_get(s.doc, "images")), 0);
    assert_int_equal(json_integer_value(json_object_get(s.predict, "topK")), 5);
    assert_false(pw_polspec_refresh_due(&s, 0, INT64_MAX / 2)); /* nothing static to refresh */
    pw_polspec_fini(&s);
    json_decref(req);
    assert_int_equal(calls, 2);
    /* without a predictor the same policy is refused */
    req = json_loads("{\"name\":\"p\",\"predict\":{\"topK\":5}}", 0, NULL);
    assert_int_equal(pw_polspec_parse(req, NULL, &s, &errs), PW_EINVAL);
    assert_true(has_error(&errs, "predict", "prediction is not enabled"));
    json_decref(req);
}

static void test_wave(void **state)
{
    (void)state;
    json_t *req = json_loads("{\"name\":\"web\",\"images\":[\"nginx:1.27\",\"redis:7\"],\"batchSize\":3,"
                             "\"nodeSelector\":{\"pool\":\"web\"},\"pullSecrets\":[\"regcred\"]}",
                             0, NULL);
    struct pw_polspec s;
    struct pw_field_errors errs;
    assert_int_equal(pw_polspec_parse(req, NULL, &s, &errs), 0);
    /* predicted images: duplicates (after normalisation) and invalid ones left out */
    json_t *pred = json_loads("[\"docker.io/library/nginx:1.27\",\"Bad\",\"python:3.12\",\"python:3.12\"]", 0, NULL);
    size_t dropped = 99;
    json_t *imgs = pw_polspec_images(&s, pred, &dropped);
    assert_int_equal(json_array_size(imgs), 3);
    assert_string_equal(json_string_value(json_array_get(imgs, 2)), "python:3.12");
    assert_int_equal(dropped, 1);
    char *nodes[] = {"n1", "n2"};
    struct pw_taskspec ts;
    char *why = NULL;
    assert_int_equal(pw_polspec_wave(&s, imgs, nodes, 2, false, &ts, &why), 0);
    assert_string_equal(ts.policy, "web");
    assert_int_equal(ts.n_node_names, 2);
    assert_string_equal(ts.pull_policy, "IfNotPresent");
    assert_int_equal(ts.batch_size, 3);
    assert_int_equal(ts.n_pull_secrets, 1);
    assert_non_null(ts.node_selector); /* a node that left meanwhile is not warmed */
    pw_taskspec_fini(&ts);
    assert_int_equal(pw_polspec_wave(&s, imgs, NULL, 0, true, &ts, &why), 0);
    assert_string_equal(ts.pull_policy, "Always");
    assert_false(ts.has_node_names);
    pw_taskspec_fini(&ts);
    json_decref(imgs);
    json_decref(pred);
    pw_polspec_fini(&s);
    json_decref(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_predictor_check),
        cmocka_unit_test(test_wave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
