/* Unit tests for kubesim's scheduler predicates (sim/sched.c): quantities, pod requests, tolerations,
 * node selectors and required node affinity, the filters in their order, the FitError message, and
 * the pods/binding write on a store; and the workload generator's Zipf sampling (sim/workload.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "sim/sched.h"
#include "sim/store.h"
#include "sim/workload.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad JSON in test: %s: %s", e.text, text);
    return j;
}

static void test_quantities(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(sim_quantity_parse("500m", true, &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(sim_quantity_parse("2", true, &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(sim_quantity_parse("1.5", true, &v), 0);
    assert_int_equal(v, 1500);
    assert_int_equal(sim_quantity_parse("15910m", true, &v), 0);
    assert_int_equal(v, 15910);
    assert_int_equal(sim_quantity_parse("128Mi", false, &v), 0);
    assert_int_equal(v, 128LL * 1024 * 1024);
    assert_int_equal(sim_quantity_parse("64372340Ki", false, &v), 0);
    assert_int_equal(v, 64372340LL * 1024);
    assert_int_equal(sim_quantity_parse("1G", false, &v), 0);
    assert_int_equal(v, 1000000000LL);
    assert_int_equal(sim_quantity_parse("1e3", false, &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(sim_quantity_parse("110", false, &v), 0);
    assert_int_equal(v, 110);
    assert_int_equal(sim_quantity_parse("100m", false, &v), 0); /* Value() rounds up */
    assert_int_equal(v, 1);
    assert_int_equal(sim_quantity_parse("", false, &v), PW_EINVAL);
    assert_int_equal(sim_quantity_parse("abc", false, &v), PW_EINVAL);
    assert_int_equal(sim_quantity_parse("1Zi", false, &v), PW_EINVAL);
    assert_int_equal(sim_quantity_parse("1.2.3", false, &v), PW_EINVAL);
}

static void test_requests(void **state)
{
    (void)state;
    json_t *spec = J("{\"containers\": [{\"name\": \"a\", \"resources\": {\"requests\": {\"cpu\": \"250m\", \"memory\": "
                     "\"64Mi\"}}}, {\"name\": \"b\", \"resources\": {\"limits\": {\"cpu\": \"1\", \"memory\": \"1Gi\"}}}],"
                     " \"initContainers\": [{\"name\": \"i\", \"resources\": {\"requests\": {\"cpu\": \"2\"}}}]}");
    struct sim_res r;
    sim_sched_pod_requests(spec, &r);
    assert_int_equal(r.milli_cpu, 2000); /* the init container's 2 beats 0.25 + 1 (limits as requests) */
    assert_int_equal(r.memory, 64LL * 1024 * 1024 + 1024LL * 1024 * 1024);
    assert_int_equal(r.pods, 1);
    json_decref(spec);
    spec = J("{\"containers\": [{\"name\": \"a\"}]}");
    sim_sched_pod_requests(spec, &r);
    assert_int_equal(r.milli_cpu, 0);
    assert_int_equal(r.memory, 0);
    json_decref(spec);
}

static void test_tolerations(void **state)
{
    (void)state;
    json_t *t = J("{\"key\": \"gpu\", \"value\": \"true\", \"effect\": \"NoSchedule\"}");
    json_t *none = J("[]");
    json_t *eq = J("[{\"key\": \"gpu\", \"operator\": \"Equal\", \"value\": \"true\"}]");
    json_t *eqdef = J("[{\"key\": \"gpu\", \"value\": \"true\", \"effect\": \"NoSchedule\"}]");
    json_t *wrongval = J("[{\"key\": \"gpu\", \"value\": \"false\"}]");
    json_t *exists = J("[{\"key\": \"gpu\", \"operator\": \"Exists\"}]");
    json_t *all = J("[{\"operator\": \"Exists\"}]");
    json_t *othereff = J("[{\"key\": \"gpu\", \"operator\": \"Exists\", \"effect\": \"NoExecute\"}]");
    assert_false(sim_sched_tolerates(none, t));
    assert_true(sim_sched_tolerates(eq, t));
    assert_true(sim_sched_tolerates(eqdef, t));
    assert_false(sim_sched_tolerates(wrongval, t));
    assert_true(sim_sched_tolerates(exists, t));
    assert_true(sim_sched_tolerates(all, t));
    assert_false(sim_sched_tolerates(othereff, t));
    json_decref(t);
    json_decref(none);
    json_decref(eq);
    json_decref(eqdef);
    json_decref(wrongval);
    json_decref(exists);
    json_decref(all);
    json_decref(othereff);
}

static bool aff(const char *spec, const char *labels)
{
    json_t *s = J(spec), *l = J(labels);
    bool r = sim_sched_affinity_match(s, l, "node-1");
    json_decref(s);
    json_decref(l);
    return r;
}

#define TERMS(x) "{\"affinity\": {\"nodeAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": " \
                 "{\"nodeSelectorTerms\": " x "}}}}"

static void test_affinity(void **state)
{
    (void)state;
    assert_true(aff("{}", "{}"));
    assert_true(aff("{\"nodeSelector\": {\"pool\": \"gpu\"}}", "{\"pool\": \"gpu\", \"x\": \"y\"}"));
    assert_false(aff("{\"nodeSelector\": {\"pool\": \"gpu\"}}", "{\"pool\": \"general\"}"));
    assert_false(aff("{\"nodeSelector\": {\"pool\": \"gpu\"}}", "{}"));
    /* In / NotIn / Exists / DoesNotExist / Gt / Lt */
    const char *in = TERMS("[{\"matchExpressions\": [{\"key\": \"zone\", \"operator\": \"In\", \"values\": [\"a\", \"b\"]}]}]");
    assert_true(aff(in, "{\"zone\": \"b\"}"));
    assert_false(aff(in, "{\"zone\": \"c\"}"));
    assert_false(aff(in, "{}"));
    const char *notin = TERMS("[{\"matchExpressions\": [{\"key\": \"zone\", \"operator\": \"NotIn\", \"values\": [\"a\"]}]}]");
    assert_true(aff(notin, "{\"zone\": \"b\"}"));
    assert_true(aff(notin, "{}")); /* NotIn matches nodes without the label */
    assert_false(aff(notin, "{\"zone\": \"a\"}"));
    const char *ex = TERMS("[{\"matchExpressions\": [{\"key\": \"gpu\", \"operator\": \"Exists\"}]}]");
    assert_true(aff(ex, "{\"gpu\": \"\"}"));
    assert_false(aff(ex, "{}"));
    const char *dne = TERMS("[{\"matchExpressions\": [{\"key\": \"gpu\", \"operator\": \"DoesNotExist\"}]}]");
    assert_true(aff(dne, "{}"));
    assert_false(aff(dne, "{\"gpu\": \"1\"}"));
    const char *gt = TERMS("[{\"matchExpressions\": [{\"key\": \"cores\", \"operator\": \"Gt\", \"values\": [\"8\"]}]}]");
    assert_true(aff(gt, "{\"cores\": \"16\"}"));
    assert_false(aff(gt, "{\"cores\": \"8\"}"));
    assert_false(aff(gt, "{\"cores\": \"many\"}"));
    /* terms are ORed, expressions ANDed; an empty term matches nothing */
    const char *or = TERMS("[{\"matchExpressions\": [{\"key\": \"a\", \"operator\": \"Exists\"}, {\"key\": \"b\", "
                           "\"operator\": \"Exists\"}]}, {\"matchExpressions\": [{\"key\": \"c\", \"operator\": \"Exists\"}]}]");
    assert_true(aff(or, "{\"a\": \"1\", \"b\": \"1\"}"));
    assert_false(aff(or, "{\"a\": \"1\"}"));
    assert_true(aff(or, "{\"c\": \"1\"}"));
    assert_false(aff(TERMS("[{}]"), "{\"a\": \"1\"}"));
    assert_false(aff(TERMS("[]"), "{\"a\": \"1\"}"));
    /* matchFields on metadata.name */
    assert_true(aff(TERMS("[{\"matchFields\": [{\"key\": \"metadata.name\", \"operator\": \"In\", \"values\": [\"node-1\"]}]}]"), "{}"));
    assert_false(aff(TERMS("[{\"matchFields\": [{\"key\": \"metadata.name\", \"operator\": \"In\", \"values\": [\"node-2\"]}]}]"), "{}"));
    /* nodeSelector and affinity must both hold */
    assert_false(aff("{\"nodeSelector\": {\"pool\": \"gpu\"}, \"affinity\": {\"nodeAffinity\": {"
                     "\"requiredDuringSchedulingIgnoredDuringExecution\": {\"nodeSelectorTerms\": [{\"matchExpressions\": "
                     "[{\"key\": \"zone\", \"operator\": \"In\", \"values\": [\"a\"]}]}]}}}}",
                     "{\"pool\": \"gpu\", \"zone\": \"b\"}"));
}

static json_t *node(const char *spec_extra, const char *labels)
{
    char *text = NULL;
    if (asprintf(&text,
                 "{\"metadata\": {\"name\": \"n1\", \"labels\": %s}, \"spec\": {%s}, \"status\": {\"allocatable\": "
                 "{\"cpu\": \"4\", \"memory\": \"8Gi\", \"pods\": \"3\"}}}",
                 labels, spec_extra) < 0)
        fail();
    json_t *j = J(text);
    free(text);
    return j;
}

static void test_filter(void **state)
{
    (void)state;
    json_t *pod = J("{\"nodeSelector\": {\"pool\": \"a\"}}");
    struct sim_res req = {.milli_cpu = 1000, .memory = 1LL << 30, .pods = 1}, used = {0};
    char taint[128] = "";
    json_t *n = node("", "{\"pool\": \"a\"}");
    assert_int_equal(sim_sched_filter(pod, n, &req, &used, taint, sizeof taint), 0);
    json_decref(n);
    /* wrong pool */
    n = node("", "{\"pool\": \"b\"}");
    assert_int_equal(sim_sched_filter(pod, n, &req, &used, taint, sizeof taint), SIM_SF_AFFINITY);
    json_decref(n);
    /* cordoned: NodeUnschedulable comes first, even with the wrong pool */
    n = node("\"unschedulable\": true", "{\"pool\": \"b\"}");
    assert_int_equal(sim_sched_filter(pod, n, &req, &used, taint, sizeof taint), SIM_SF_UNSCHEDULABLE);
    json_decref(n);
    /* a NoSchedule taint: before affinity; its text for the message */
    n = node("\"taints\": [{\"key\": \"prewarm.io/warming\", \"effect\": \"NoSchedule\"}]", "{\"pool\": \"b\"}");
    assert_int_equal(sim_sched_filter(pod, n, &req, &used, taint, sizeof taint), SIM_SF_TAINT);
    assert_string_equal(taint, "{prewarm.io/warming: }");
    json_decref(n);
    /* PreferNoSchedule does not filter; a tolerated NoExecute does not either */
    n = node("\"taints\": [{\"key\": \"soft\", \"effect\": \"PreferNoSchedule\"}, {\"key\": \"gpu\", \"value\": \"x\", "
             "\"effect\": \"NoExecute\"}]",
             "{\"pool\": \"a\"}");
    json_t *tol = J("{\"nodeSelector\": {\"pool\": \"a\"}, \"tolerations\": [{\"key\": \"gpu\", \"operator\": "
                    "\"Exists\"}]}");
    assert_int_equal(sim_sched_filter(tol, n, &req, &used, taint, sizeof taint), 0);
    assert_int_equal(sim_sched_filter(pod, n, &req, &used, taint, sizeof taint), SIM_SF_TAINT);
    assert_string_equal(taint, "{gpu: x}");
    json_decref(n);
    json_decref(tol);
    /* cordon tolerated by the unschedulable toleration */
    n = node("\"unschedulable\": true", "{\"pool\": \"a\"}");
    tol = J("{\"nodeSelector\": {\"pool\": \"a\"}, \"tolerations\": [{\"key\": \"node.kubernetes.io/unschedulable\", "
            "\"operator\": \"Exists\", \"effect\": \"NoSchedule\"}]}");
    assert_int_equal(sim_sched_filter(tol, n, &req, &used, taint, sizeof taint), 0);
    json_decref(tol);
    json_decref(n);
    /* resources: several reasons at once */
    n = node("", "{\"pool\": \"a\"}");
    struct sim_res full = {.milli_cpu = 3500, .memory = 15LL << 29, .pods = 3};
    assert_int_equal(sim_sched_filter(pod, n, &req, &full, taint, sizeof taint), SIM_SF_CPU | SIM_SF_MEMORY | SIM_SF_PODS);
    struct sim_res fits = {.milli_cpu = 3000, .memory = 7LL << 30, .pods = 2};
    assert_int_equal(sim_sched_filter(pod, n, &req, &fits, taint, sizeof taint), 0); /* exactly full */
    struct sim_res none = {.pods = 1};
    assert_int_equal(sim_sched_filter(pod, n, &none, &full, taint, sizeof taint), SIM_SF_PODS); /* no requests */
    json_decref(n);
    json_decref(pod);
}

static void test_message(void **state)
{
    (void)state;
    struct sim_fit_msg *m = sim_fit_msg_new();
    sim_fit_msg_add(m, SIM_SF_AFFINITY, NULL);
    sim_fit_msg_add(m, SIM_SF_AFFINITY, NULL);
    sim_fit_msg_add(m, SIM_SF_CPU | SIM_SF_MEMORY, NULL);
    sim_fit_msg_add(m, SIM_SF_TAINT, "{prewarm.io/warming: }");
    char *s = sim_fit_msg_take(m, 4);
    assert_string_equal(s, "0/4 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 node(s) had "
                           "untolerated taint {prewarm.io/warming: }, 2 node(s) didn't match Pod's node "
                           "affinity/selector. preemption: 0/4 nodes are available: 1 No preemption victims found for "
                           "incoming pod, 3 Preemption is not helpful for scheduling.");
    free(s);
    s = sim_fit_msg_take(sim_fit_msg_new(), 0);
    assert_string_equal(s, "no nodes available to schedule pods");
    free(s);
    m = sim_fit_msg_new();
    sim_fit_msg_add(m, SIM_SF_UNSCHEDULABLE, NULL);
    s = sim_fit_msg_take(m, 1);
    assert_string_equal(s, "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are "
                           "available: 1 Preemption is not helpful for scheduling.");
    free(s);
}

static void test_bind(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    assert_int_equal(sim_store_create(st, "pods", "default",
                                      J("{\"metadata\": {\"name\": \"p\", \"namespace\": \"default\"}, \"spec\": "
                                        "{\"containers\": [{\"name\": \"c\", \"image\": \"busybox\"}]}, \"status\": "
                                        "{\"phase\": \"Pending\", \"conditions\": [{\"type\": \"PodScheduled\", "
                                        "\"status\": \"False\", \"reason\": \"Unschedulable\"}]}}"),
                                      NULL),
                     0);
    char *msg = NULL;
    assert_int_equal(sim_sched_bind(st, "default", "p", "not-the-uid", "node-1", NULL, &msg), PW_ECONFLICT);
    assert_non_null(strstr(msg, "does not match the UID"));
    free(msg);
    json_t *ann = J("{\"why\": \"test\"}");
    assert_int_equal(sim_sched_bind(st, "default", "p", NULL, "node-1", ann, &msg), 0);
    assert_null(msg);
    json_decref(ann);
    json_t *pod = NULL;
    assert_int_equal(sim_store_get(st, "pods", "default", "p", &pod), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName")), "node-1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(pod, "metadata"),
                                                                          "annotations"),
                                                          "why")),
                        "test");
    json_t *conds = json_object_get(json_object_get(pod, "status"), "conditions");
    assert_int_equal(json_array_size(conds), 1); /* replaced, not added */
    assert_string_equal(json_string_value(json_object_get(json_array_get(conds, 0), "status")), "True");
    assert_null(json_object_get(json_array_get(conds, 0), "reason"));
    json_decref(pod);
    assert_int_equal(sim_sched_bind(st, "default", "p", NULL, "node-2", NULL, &msg), PW_ECONFLICT);
    assert_string_equal(msg, "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node "
                             "\"node-1\"");
    free(msg);
    assert_int_equal(sim_sched_bind(st, "default", "nope", NULL, "node-1", NULL, NULL), PW_ENOTFOUND);
    sim_store_free(st);
}

/* Zipf: the table is the normalised k^-s, sampling inverts it, and a seeded sample of 100,000 draws
 * passes a chi-square test at the 0.1% level (10 ranks: 9 degrees of freedom, critical value 27.88). */
static void test_zipf(void **state)
{
    (void)state;
    assert_null(sim_zipf_new(0, 1));
    assert_null(sim_zipf_new(3, -1));
    struct sim_zipf *u = sim_zipf_new(4, 0);
    for (int k = 0; k < 4; k++)
        assert_true(fabs(sim_zipf_prob(u, k) - 0.25) < 1e-12);
    assert_int_equal(sim_zipf_sample(u, 0.0), 0);
    assert_int_equal(sim_zipf_sample(u, 0.2499), 0);
    assert_int_equal(sim_zipf_sample(u, 0.25), 1);
    assert_int_equal(sim_zipf_sample(u, 0.9999999), 3);
    sim_zipf_free(u);
    struct sim_zipf *z = sim_zipf_new(10, 1.1);
    double h = 0;
    for (int k = 1; k <= 10; k++)
        h += pow(k, -1.1);
    double total = 0;
    for (int k = 0; k < 10; k++) {
        assert_true(fabs(sim_zipf_prob(z, k) - pow(k + 1, -1.1) / h) < 1e-12);
        total += sim_zipf_prob(z, k);
    }
    assert_true(fabs(total - 1) < 1e-12);
    assert_true(sim_zipf_prob(z, 0) > sim_zipf_prob(z, 1));
    uint64_t rng = 42;
    long counts[10] = {0};
    const int N = 100000;
    for (int i = 0; i < N; i++) {
        double x = sim_unit_rand(&rng);
        assert_true(x >= 0 && x < 1);
        counts[sim_zipf_sample(z, x)]++;
    }
    double chi2 = 0;
    for (int k = 0; k < 10; k++) {
        double e = N * sim_zipf_prob(z, k);
        chi2 += (counts[k] - e) * (counts[k] - e) / e;
    }
    assert_true(chi2 < 27.88);
    /* and the same seed gives the same draws */
    uint64_t a = 7, b = 7;
    for (int i = 0; i < 100; i++)
        assert_true(sim_unit_rand(&a) == sim_unit_rand(&b));
    sim_zipf_free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantities), cmocka_unit_test(test_requests), cmocka_unit_test(test_tolerations),
        cmocka_unit_test(test_affinity),   cmocka_unit_test(test_filter),   cmocka_unit_test(test_message),
        cmocka_unit_test(test_bind),       cmocka_unit_test(test_zipf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
