/* Unit tests for src/predict: decay of the counts, the ranking by expected benefit, the byte budget and
 * the other limits, the policy's "predict" object, pool keys, pod trimming, and the model's round trip
 * through the store (a restart keeps it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "predict/predict.h"
#include "store/store.h"

#define HOUR (3600LL * 1000)
#define T0 (1700000000LL * 1000)
#define GB 1000000000LL

static const char *A = "docker.io/library/a:1", *B = "docker.io/library/b:1", *C = "docker.io/library/c:1";

static pw_predict_model *model(void)
{
    struct pw_predict_model_opts o = {.half_life_ms = HOUR, .bandwidth_mbps = 100};
    return pw_predict_model_new(&o);
}

static void observe1(pw_predict_model *m, const char *pool, const char *img, int64_t t)
{
    pw_predict_model_observe(m, pool, &img, 1, t);
}

/* Image b used by the pool's pods an hour ago counts half as much as image a used now. */
static void test_decay_half_life(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    observe1(m, "p=x", B, T0);
    observe1(m, "p=x", A, T0 + HOUR);
    /* pods: 0.5 + 1 = 1.5; a: 1; b: 0.5 */
    assert_float_equal(pw_predict_model_probability(m, "p=x", A, T0 + HOUR), 1.0 / 1.5, 1e-9);
    assert_float_equal(pw_predict_model_probability(m, "p=x", B, T0 + HOUR), 0.5 / 1.5, 1e-9);
    /* reading later decays both alike: the ratio holds */
    assert_float_equal(pw_predict_model_probability(m, "p=x", A, T0 + 5 * HOUR), 1.0 / 1.5, 1e-9);
    /* an observation that arrives late (older than the last) adds its decayed weight */
    observe1(m, "p=x", C, T0);
    /* pods: 1.5 + 0.5 = 2; c: 0.5 */
    assert_float_equal(pw_predict_model_probability(m, "p=x", C, T0 + HOUR), 0.5 / 2.0, 1e-9);
    assert_float_equal(pw_predict_model_probability(m, "p=x", A, T0 + HOUR), 1.0 / 2.0, 1e-9);
    assert_float_equal(pw_predict_model_probability(m, "nope", A, T0), 0, 0);
    assert_int_equal(pw_predict_model_watermark(m), T0 + HOUR);
    pw_predict_model_free(m);
}

/* One pod using the same image twice counts it once; P never exceeds 1. */
static void test_duplicates_once(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    const char *imgs[] = {A, A, B};
    pw_predict_model_observe(m, "p=x", imgs, 3, T0);
    assert_float_equal(pw_predict_model_probability(m, "p=x", A, T0), 1.0, 1e-9);
    assert_float_equal(pw_predict_model_probability(m, "p=x", B, T0), 1.0, 1e-9);
    pw_predict_model_free(m);
}

static const json_t *ranked(const json_t *r, const char *img)
{
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(r, "images"), i, e) if (strcmp(json_string_value(json_object_get(e, "image")), img) == 0) return e;
    fail_msg("%s not in the ranking", img);
    return NULL;
}

/* Expected benefit = P x size / bandwidth: a rarer large image outranks a common small one. */
static void test_rank_by_benefit(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    for (int i = 0; i < 10; i++)
        observe1(m, "p=x", i < 8 ? A : B, T0); /* a in 8 pods, b in 2 */
    pw_predict_model_set_size(m, A, GB / 10);   /* 0.1 GB: 1 s at 100 MB/s */
    pw_predict_model_set_size(m, B, 20 * GB);   /* 20 GB: 200 s */
    pw_predict_model_set_size(m, B, 5 * GB);    /* a smaller report does not shrink it */
    struct pw_predict_limits lim = {.min_probability = 0.05};
    json_t *r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_non_null(r);
    json_t *imgs = json_object_get(r, "images");
    assert_string_equal(json_string_value(json_object_get(json_array_get(imgs, 0), "image")), B);
    const json_t *b = ranked(r, B), *a = ranked(r, A);
    assert_float_equal(json_real_value(json_object_get(b, "probability")), 0.2, 1e-4);
    assert_float_equal(json_real_value(json_object_get(b, "pullSeconds")), 200, 1e-3);
    assert_float_equal(json_real_value(json_object_get(b, "benefitSeconds")), 40, 1e-3);
    assert_float_equal(json_real_value(json_object_get(a, "benefitSeconds")), 0.8, 1e-3);
    assert_int_equal(json_integer_value(json_object_get(a, "observations")), 8);
    assert_true(json_is_true(json_object_get(a, "sizeKnown")));
    assert_string_equal(json_string_value(json_object_get(r, "labelKey")), "p");
    assert_string_equal(json_string_value(json_object_get(r, "labelValue")), "x");
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 2);
    json_decref(r);
    assert_null(pw_predict_model_rank(m, "p=y", &lim, T0));
    pw_predict_model_free(m);
}

/* The byte budget skips what does not fit and goes on; minProbability and maxImages cut. */
static void test_budget_and_limits(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    const char *imgs[4] = {A, B, C, "docker.io/library/d:1"};
    for (int i = 0; i < 100; i++) {
        size_t n = i < 50 ? 3 : 1; /* a, b, c in half the pods; a alone in the rest */
        pw_predict_model_observe(m, "p=x", imgs, n, T0);
    }
    observe1(m, "p=x", imgs[3], T0); /* d: 1 pod in 101 */
    pw_predict_model_set_size(m, A, 4 * GB);
    pw_predict_model_set_size(m, B, 8 * GB);
    pw_predict_model_set_size(m, C, 1 * GB);
    pw_predict_model_set_size(m, imgs[3], 1 * GB);
    /* benefits: a 0.99*40, b 0.495*80, c 0.495*10, d ~0.1: ranks a ~ b > c > d */
    struct pw_predict_limits lim = {.max_bytes_per_node = 10 * GB, .min_probability = 0.05, .max_images = 10};
    json_t *r = pw_predict_model_rank(m, "p=x", &lim, T0);
    json_t *sel = json_object_get(r, "selected");
    /* b (8 GB) first or a (4 GB) first: either way the other no longer fits; c (1 GB) fits after */
    assert_int_equal(json_array_size(sel), 2);
    assert_true(json_integer_value(json_object_get(r, "selectedBytes")) <= 10 * GB);
    assert_string_equal(json_string_value(json_object_get(ranked(r, C), "reason")), "selected");
    assert_string_equal(json_string_value(json_object_get(ranked(r, imgs[3]), "reason")), "below minProbability");
    const char *over = json_is_true(json_object_get(ranked(r, A), "selected")) ? B : A;
    assert_string_equal(json_string_value(json_object_get(ranked(r, over), "reason")), "over maxBytesPerNode");
    json_decref(r);

    lim = (struct pw_predict_limits){.min_probability = 0, .max_images = 1};
    r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 1);
    assert_string_equal(json_string_value(json_object_get(ranked(r, C), "reason")), "maxImages reached");
    json_decref(r);

    /* no budget, minProbability 0: everything */
    lim = (struct pw_predict_limits){.max_images = 10};
    r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 4);
    json_decref(r);
    pw_predict_model_free(m);
}

/* An image no node reports a size for counts as the configured unknown size. */
static void test_unknown_size(void **state)
{
    (void)state;
    struct pw_predict_model_opts o = {.half_life_ms = HOUR, .bandwidth_mbps = 50, .unknown_size_bytes = GB};
    pw_predict_model *m = pw_predict_model_new(&o);
    observe1(m, "p=x", A, T0);
    json_t *r = pw_predict_model_rank(m, "p=x", NULL, T0);
    const json_t *a = ranked(r, A);
    assert_true(json_is_false(json_object_get(a, "sizeKnown")));
    assert_int_equal(json_integer_value(json_object_get(a, "sizeBytes")), GB);
    assert_float_equal(json_real_value(json_object_get(a, "pullSeconds")), 20, 1e-3);
    json_decref(r);
    pw_predict_model_free(m);
}

static void expect_spec_error(const char *text, const char *field)
{
    json_t *spec = json_loads(text, 0, NULL);
    struct pw_predict_limits lim;
    const char *pl;
    char *f = NULL, *msg = NULL;
    assert_int_equal(pw_predict_parse_spec(spec, &lim, &pl, &f, &msg), PW_EINVAL);
    assert_string_equal(f, field);
    assert_true(strncmp(msg, "must be", 7) == 0 || strncmp(msg, "unknown field", 13) == 0);
    free(f);
    free(msg);
    json_decref(spec);
}

static void test_spec(void **state)
{
    (void)state;
    json_t *spec = json_loads("{\"poolLabel\":\"team.io/pool\",\"maxBytesPerNode\":30000000000,"
                              "\"minProbability\":0.2,\"maxImages\":3}",
                              0, NULL);
    struct pw_predict_limits lim;
    const char *pl;
    char *f = NULL, *msg = NULL;
    assert_int_equal(pw_predict_parse_spec(spec, &lim, &pl, &f, &msg), 0);
    assert_string_equal(pl, "team.io/pool");
    assert_int_equal(lim.max_bytes_per_node, 30 * GB);
    assert_float_equal(lim.min_probability, 0.2, 1e-12);
    assert_int_equal(lim.max_images, 3);
    json_decref(spec);
    assert_int_equal(pw_predict_parse_spec(NULL, &lim, &pl, &f, &msg), 0);
    assert_null(pl);
    assert_int_equal(lim.max_images, PW_PREDICT_DEFAULT_MAX_IMAGES);
    assert_float_equal(lim.min_probability, PW_PREDICT_DEFAULT_MIN_PROBABILITY, 1e-12);
    expect_spec_error("{\"maxImages\":0}", "predict.maxImages");
    expect_spec_error("{\"maxImages\":\"3\"}", "predict.maxImages");
    expect_spec_error("{\"minProbability\":1.5}", "predict.minProbability");
    expect_spec_error("{\"maxBytesPerNode\":-1}", "predict.maxBytesPerNode");
    expect_spec_error("{\"poolLabel\":\"bad key!\"}", "predict.poolLabel");
    expect_spec_error("{\"halfLife\":\"1h\"}", "predict.halfLife");
}

static void test_pool_of(void **state)
{
    (void)state;
    json_t *labels = json_loads("{\"node.kubernetes.io/instance-type\":\"m6i\",\"eks.amazonaws.com/nodegroup\":\"gpu\","
                                "\"pool\":\"general\"}",
                                0, NULL);
    char *p = pw_predict_pool_of(labels, NULL);
    assert_string_equal(p, "eks.amazonaws.com/nodegroup=gpu"); /* before instance-type in the defaults */
    free(p);
    p = pw_predict_pool_of(labels, "pool");
    assert_string_equal(p, "pool=general");
    free(p);
    assert_null(pw_predict_pool_of(labels, "karpenter.sh/nodepool"));
    json_decref(labels);
    json_t *none = json_object();
    assert_null(pw_predict_pool_of(none, NULL));
    json_decref(none);
}

static void test_trim_pod(void **state)
{
    (void)state;
    json_t *pod = json_loads(
        "{\"metadata\":{\"name\":\"w-1\",\"namespace\":\"ns\",\"labels\":{\"app\":\"x\"},\"uid\":\"u\"},"
        "\"spec\":{\"nodeName\":\"node-1\",\"initContainers\":[{\"name\":\"i\",\"image\":\"busybox:1.36\"}],"
        "\"containers\":[{\"name\":\"a\",\"image\":\"nginx:1.27\"},{\"name\":\"b\",\"image\":\"docker.io/library/nginx:1.27\"},"
        "{\"name\":\"c\",\"image\":\"Not A Ref\"}]},"
        "\"status\":{\"phase\":\"Running\",\"startTime\":\"2026-12-07T10:00:00Z\"}}",
        0, NULL);
    json_t *t = pw_predict_trim_pod(pod);
    assert_non_null(t);
    char *s = json_dumps(t, JSON_SORT_KEYS | JSON_COMPACT);
    assert_string_equal(s, "{\"i\":\"docker.io/library/busybox:1.36 docker.io/library/nginx:1.27\","
                           "\"metadata\":{\"name\":\"ns/w-1\"},\"n\":\"node-1\",\"t\":1796637600000}");
    free(s);
    json_decref(t);
    /* prewarm's own Job pods never count */
    json_object_set_new(json_object_get(json_object_get(pod, "metadata"), "labels"), "prewarm.io/task", json_string("t-1"));
    assert_null(pw_predict_trim_pod(pod));
    json_decref(pod);
    /* a pending pod: no node, no start time */
    pod = json_loads("{\"metadata\":{\"name\":\"p\",\"namespace\":\"ns\"},\"spec\":{\"containers\":[{\"image\":\"nginx:1.27\"}]}}",
                     0, NULL);
    t = pw_predict_trim_pod(pod);
    assert_null(json_object_get(t, "n"));
    assert_null(json_object_get(t, "t"));
    json_decref(t);
    json_decref(pod);
}

static json_t *pod_on(const char *name, const char *img, int64_t t)
{
    return json_pack("{s:{s:s}, s:s, s:s, s:I}", "metadata", "name", name, "i", img, "n",
                     "node-1", "t", (json_int_t)t);
}

/* Observed pods count under each tracked key the node has; the model survives a restart through the
 * store (a memory store shared by both lives here; prewarmd_predict.py does it with SQLite). */
static void test_service_persists(void **state)
{
    (void)state;
    pw_store *st = NULL;
    assert_int_equal(pw_store_open("memory:", &st, NULL), 0);
    struct pw_predict_config cfg = {.store = st, .model = {.half_life_ms = HOUR}, .extra_pool_keys = "team.io/pool"};
    pw_predict *p = NULL;
    assert_int_equal(pw_predict_new(&cfg, &p), 0);
    json_t *labels = json_pack("{s:s, s:s, s:s}", "node.kubernetes.io/instance-type", "g5", "team.io/pool", "ml",
                               "other", "x");
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "w-%d", i);
        json_t *pod = pod_on(name, i < 3 ? A : B, T0 + i * 1000);
        pw_predict_observe_pod(p, pod, labels);
        json_decref(pod);
    }
    json_t *out = NULL;
    char *msg = NULL;
    assert_int_equal(pw_predict_query(p, "ml", NULL, &out, &msg), 0);
    assert_string_equal(json_string_value(json_object_get(out, "pool")), "team.io/pool=ml");
    assert_int_equal(json_integer_value(json_object_get(out, "observations")), 4);
    json_decref(out);
    assert_int_equal(pw_predict_query(p, "x", NULL, &out, &msg), PW_ENOTFOUND); /* "other" is not tracked */
    free(msg);
    msg = NULL;
    /* the hook: a node of the pool gets its images, one of no pool none */
    json_t *spec = json_pack("{s:s, s:f}", "poolLabel", "team.io/pool", "minProbability", 0.3);
    json_t *imgs = pw_predict_hook_images_for_node(p, spec, "node-9", labels);
    assert_int_equal(json_array_size(imgs), 1); /* b is 1 in 4 pods < 0.3 */
    assert_string_equal(json_string_value(json_array_get(imgs, 0)), A);
    json_decref(imgs);
    json_t *bare = json_object();
    imgs = pw_predict_hook_images_for_node(p, spec, "node-10", bare);
    assert_int_equal(json_array_size(imgs), 0);
    json_decref(imgs);
    json_decref(bare);
    pw_predict_free(p); /* saves */

    p = NULL;
    assert_int_equal(pw_predict_new(&cfg, &p), 0);
    assert_int_equal(pw_predict_query(p, "team.io/pool=ml", NULL, &out, &msg), 0);
    assert_int_equal(json_integer_value(json_object_get(out, "observations")), 4);
    assert_float_equal(json_real_value(json_object_get(ranked(out, A), "probability")), 0.75, 1e-3);
    json_decref(out);
    assert_int_equal(pw_predict_query(p, "node.kubernetes.io/instance-type=g5", NULL, &out, &msg), 0);
    assert_int_equal(json_integer_value(json_object_get(ranked(out, B), "observations")), 1);
    json_decref(out);
    assert_int_equal(pw_predict_query(p, NULL, NULL, &out, &msg), 0);
    assert_int_equal(json_array_size(json_object_get(out, "pools")), 2);
    json_decref(out);
    json_decref(imgs = pw_predict_hook_images_for_node(p, spec, "node-9", labels));
    json_decref(spec);
    json_decref(labels);
    pw_predict_free(p);
    pw_store_close(st);
}

/* A pool document round-trips; a malformed one is refused and changes nothing. */
static void test_doc_roundtrip(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    observe1(m, "p=x", A, T0);
    observe1(m, "p=x", B, T0 + HOUR);
    pw_predict_model_set_size(m, A, 3 * GB);
    json_t *dirty = pw_predict_model_take_dirty(m);
    assert_int_equal(json_array_size(dirty), 1);
    json_decref(dirty);
    dirty = pw_predict_model_take_dirty(m);
    assert_int_equal(json_array_size(dirty), 0);
    json_decref(dirty);
    json_t *doc = pw_predict_model_pool_doc(m, "p=x");
    pw_predict_model *m2 = model();
    assert_int_equal(pw_predict_model_load_pool(m2, doc), 0);
    for (int64_t t = T0 + HOUR; t < T0 + 10 * HOUR; t += HOUR) {
        assert_float_equal(pw_predict_model_probability(m2, "p=x", A, t), pw_predict_model_probability(m, "p=x", A, t), 1e-12);
        assert_float_equal(pw_predict_model_probability(m2, "p=x", B, t), pw_predict_model_probability(m, "p=x", B, t), 1e-12);
    }
    json_t *r = pw_predict_model_rank(m2, "p=x", NULL, T0 + HOUR);
    assert_int_equal(json_integer_value(json_object_get(ranked(r, A), "sizeBytes")), 3 * GB);
    json_decref(r);
    json_object_del(json_object_get(json_object_get(doc, "images"), A), "w");
    assert_int_equal(pw_predict_model_load_pool(m2, doc), PW_EINVAL);
    assert_float_equal(pw_predict_model_probability(m2, "p=x", A, T0 + HOUR), pw_predict_model_probability(m, "p=x", A, T0 + HOUR), 1e-12);
    json_decref(doc);
    pw_predict_model_free(m2);
    pw_predict_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decay_half_life), cmocka_unit_test(test_duplicates_once),
        cmocka_unit_test(test_rank_by_benefit), cmocka_unit_test(test_budget_and_limits),
        cmocka_unit_test(test_unknown_size),    cmocka_unit_test(test_spec),
        cmocka_unit_test(test_pool_of),         cmocka_unit_test(test_trim_pod),
        cmocka_unit_test(test_service_persists), cmocka_unit_test(test_doc_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
