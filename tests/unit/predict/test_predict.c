/* Unit tests for src/predict: decay of the counts, pods per node and the node probability, the ranking
 * by expected benefit, the selection (cheapest in expected waste to the target hit rate, image sets
 * together), the byte budget and the other limits, the policy's "predict" object, pool keys, pod
 * trimming, and the model's round trip through the store (a restart keeps it; an older document loads). */
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
    pw_predict_model_observe(m, pool, NULL, &img, 1, t);
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
    pw_predict_model_observe(m, "p=x", NULL, imgs, 3, T0);
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
    struct pw_predict_limits lim = {.min_probability = 0.05, .target_hit_rate = 1};
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

static const char *reason(const json_t *r, const char *img)
{
    return json_string_value(json_object_get(ranked(r, img), "reason"));
}

/* The byte budget skips a set that does not fit and goes on; minProbability, maxImages and the target
 * hit rate cut. */
static void test_budget_and_limits(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    const char *imgs[4] = {A, B, C, "docker.io/library/d:1"};
    for (int i = 0; i < 100; i++) {
        size_t n = i < 50 ? 3 : 1; /* the set {a, b, c} in half the pods; {a} in the rest */
        pw_predict_model_observe(m, "p=x", NULL, imgs, n, T0);
    }
    observe1(m, "p=x", imgs[3], T0); /* {d}: 1 pod in 101 */
    pw_predict_model_set_size(m, A, 4 * GB);
    pw_predict_model_set_size(m, B, 8 * GB);
    pw_predict_model_set_size(m, C, 1 * GB);
    pw_predict_model_set_size(m, imgs[3], 1 * GB);
    /* {a} first (a is almost sure: no waste); {a, b, c} then needs 9 GB more: over 10 GB */
    struct pw_predict_limits lim = {.max_bytes_per_node = 10 * GB, .min_probability = 0.05, .max_images = 10,
                                    .target_hit_rate = 1};
    json_t *r = pw_predict_model_rank(m, "p=x", &lim, T0);
    json_t *sel = json_object_get(r, "selected");
    assert_int_equal(json_array_size(sel), 1);
    assert_string_equal(json_string_value(json_array_get(sel, 0)), A);
    assert_int_equal(json_integer_value(json_object_get(r, "selectedBytes")), 4 * GB);
    assert_string_equal(reason(r, B), "over maxBytesPerNode");
    assert_string_equal(reason(r, C), "over maxBytesPerNode");
    assert_string_equal(reason(r, imgs[3]), "below minProbability");
    assert_float_equal(json_real_value(json_object_get(r, "predictedHitRate")), 50.0 / 101, 1e-4);
    json_decref(r);

    /* 20 GB: b and c come in together, as the set their pods use */
    lim.max_bytes_per_node = 20 * GB;
    r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 3);
    assert_int_equal(json_integer_value(json_object_get(ranked(r, B), "order")), 2);
    assert_int_equal(json_integer_value(json_object_get(ranked(r, C), "order")), 2);
    assert_float_equal(json_real_value(json_object_get(r, "predictedHitRate")), 100.0 / 101, 1e-4);
    json_decref(r);

    lim = (struct pw_predict_limits){.min_probability = 0, .max_images = 1, .target_hit_rate = 1};
    r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 1);
    assert_string_equal(reason(r, C), "maxImages reached");
    assert_string_equal(reason(r, imgs[3]), "maxImages reached");
    json_decref(r);

    /* no budget, minProbability 0, target 1: everything */
    lim = (struct pw_predict_limits){.max_images = 10, .target_hit_rate = 1};
    r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 4);
    json_decref(r);

    /* target 0.4: {a} covers half the pods: the selection stops there */
    lim.target_hit_rate = 0.4;
    r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 1);
    assert_string_equal(reason(r, B), "targetHitRate reached");
    assert_string_equal(reason(r, imgs[3]), "targetHitRate reached");
    json_decref(r);
    pw_predict_model_free(m);
}

/* Pods per node: the decayed pods over the decayed nodes (a node counts once); the node probability
 * k p / (1 + (k - 1) p) (a geometric number of pods with mean k), the expected waste (1 - q) x size, the benefit q x pull time. */
static void test_pods_per_node(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    for (int i = 0; i < 20; i++) {
        const char *img = i % 10 == 0 ? B : A; /* b in 1 pod in 10 */
        pw_predict_model_observe(m, "p=x", i % 2 ? "node-1" : "node-2", &img, 1, T0);
    }
    assert_float_equal(pw_predict_model_pods_per_node(m, "p=x"), 10, 1e-9);
    assert_float_equal(pw_predict_model_pods_per_node(m, "p=y"), 0, 0);
    pw_predict_model_set_size(m, B, 2 * GB);
    json_t *r = pw_predict_model_rank(m, "p=x", NULL, T0);
    assert_int_equal(json_integer_value(json_object_get(r, "nodes")), 2);
    assert_float_equal(json_real_value(json_object_get(r, "podsPerNode")), 10, 1e-9);
    const json_t *b = ranked(r, B);
    double q = 10 * 0.1 / (1 + 9 * 0.1); /* 0.526: below 1 - 0.9^10 = 0.651, the figure for exactly 10 pods */
    assert_float_equal(json_real_value(json_object_get(b, "probability")), 0.1, 1e-4);
    assert_float_equal(json_real_value(json_object_get(b, "nodeProbability")), q, 1e-4);
    assert_float_equal(json_real_value(json_object_get(b, "benefitSeconds")), q * 20, 1e-3);
    assert_true(llabs(json_integer_value(json_object_get(b, "expectedWasteBytes")) - llround((1 - q) * 2 * GB)) <= 1);
    json_decref(r);
    /* a pod of no known node, then a third node with two pods: 23 pods over 3 nodes */
    observe1(m, "p=x", A, T0);
    pw_predict_model_observe(m, "p=x", "node-3", &A, 1, T0);
    pw_predict_model_observe(m, "p=x", "node-3", &A, 1, T0);
    assert_float_equal(pw_predict_model_pods_per_node(m, "p=x"), 23.0 / 3, 1e-9);
    /* with decay: nodes seen an hour ago count half, as their pods do */
    pw_predict_model *d = model();
    for (int i = 0; i < 4; i++)
        pw_predict_model_observe(d, "p=x", "old", &A, 1, T0);
    for (int i = 0; i < 2; i++)
        pw_predict_model_observe(d, "p=x", "new", &A, 1, T0 + HOUR);
    assert_float_equal(pw_predict_model_pods_per_node(d, "p=x"), (2 + 4 * 0.5) / (1 + 0.5), 1e-9);
    pw_predict_model_free(d);
    pw_predict_model_free(m);
}

/* The selection takes the cheapest images in expected waste to the target: a big image that ranks
 * first by benefit but is often unused on a node loses to small ones that cover as many pods. */
static void test_select_cheapest(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    const char *big = "docker.io/library/big:1", *s1 = "docker.io/library/s1:1", *s2 = "docker.io/library/s2:1";
    for (int i = 0; i < 100; i++) { /* a 40 %, big 20 %, s1 20 %, s2 20 %; 2 pods per node */
        const char *img = i < 40 ? A : i < 60 ? big : i < 80 ? s1 : s2;
        char node[16];
        snprintf(node, sizeof node, "n-%d", i / 2);
        pw_predict_model_observe(m, "p=x", node, &img, 1, T0);
    }
    pw_predict_model_set_size(m, A, GB / 10);
    pw_predict_model_set_size(m, big, 10 * GB);
    pw_predict_model_set_size(m, s1, GB / 5);
    pw_predict_model_set_size(m, s2, GB / 4);
    struct pw_predict_limits lim = {.max_images = 10, .target_hit_rate = 0.75};
    json_t *r = pw_predict_model_rank(m, "p=x", &lim, T0);
    json_t *imgs = json_object_get(r, "images");
    assert_string_equal(json_string_value(json_object_get(json_array_get(imgs, 0), "image")), big);
    json_t *sel = json_object_get(r, "selected");
    assert_int_equal(json_array_size(sel), 3);
    assert_string_equal(json_string_value(json_array_get(sel, 0)), A);  /* the likeliest, small */
    assert_string_equal(json_string_value(json_array_get(sel, 1)), s1); /* then the cheaper of s1, s2 */
    assert_string_equal(json_string_value(json_array_get(sel, 2)), s2);
    assert_string_equal(reason(r, big), "targetHitRate reached");
    assert_float_equal(json_real_value(json_object_get(r, "predictedHitRate")), 0.8, 1e-4);
    assert_int_equal(json_integer_value(json_object_get(r, "selectedBytes")), GB / 10 + GB / 5 + GB / 4);
    json_decref(r);
    /* the default limits: target 0.8, no probability floor */
    r = pw_predict_model_rank(m, "p=x", NULL, T0);
    assert_float_equal(json_real_value(json_object_get(json_object_get(r, "limits"), "targetHitRate")),
                       PW_PREDICT_DEFAULT_TARGET_HIT_RATE, 1e-12);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 3);
    json_decref(r);
    pw_predict_model_free(m);
}

/* A pod hits only when all its images are in: images that come together are selected together, and an
 * image every pod uses alongside another covers nothing alone. */
static void test_sets_together(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    const char *side = "docker.io/library/sidecar:1";
    for (int i = 0; i < 10; i++) {
        const char *pod[2] = {i < 6 ? A : B, side}; /* {a, sidecar} 60 %, {b, sidecar} 40 % */
        pw_predict_model_observe(m, "p=x", NULL, pod, 2, T0);
    }
    pw_predict_model_set_size(m, A, GB / 10);
    pw_predict_model_set_size(m, B, GB);
    pw_predict_model_set_size(m, side, GB / 10);
    struct pw_predict_limits lim = {.max_images = 10, .target_hit_rate = 0.5};
    json_t *r = pw_predict_model_rank(m, "p=x", &lim, T0);
    json_t *sel = json_object_get(r, "selected");
    assert_int_equal(json_array_size(sel), 2);
    assert_true(json_is_true(json_object_get(ranked(r, side), "selected")));
    assert_int_equal(json_integer_value(json_object_get(ranked(r, side), "order")), 1);
    /* {a, sidecar}: 60 % of the pods for a's expected waste (the sidecar is in every pod: none) */
    assert_float_equal(json_real_value(json_object_get(r, "predictedHitRate")), 0.6, 1e-4);
    assert_int_equal(json_integer_value(json_object_get(ranked(r, A), "order")), 1);
    assert_string_equal(reason(r, B), "targetHitRate reached");
    json_decref(r);
    /* at most 1 image: no set fits, nothing is selected (the sidecar alone would start no pod) */
    lim.max_images = 1;
    r = pw_predict_model_rank(m, "p=x", &lim, T0);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 0);
    assert_float_equal(json_real_value(json_object_get(r, "predictedHitRate")), 0, 1e-9);
    assert_string_equal(reason(r, side), "maxImages reached");
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
                              "\"minProbability\":0.2,\"maxImages\":3,\"targetHitRate\":0.9}",
                              0, NULL);
    struct pw_predict_limits lim;
    const char *pl;
    char *f = NULL, *msg = NULL;
    assert_int_equal(pw_predict_parse_spec(spec, &lim, &pl, &f, &msg), 0);
    assert_string_equal(pl, "team.io/pool");
    assert_int_equal(lim.max_bytes_per_node, 30 * GB);
    assert_float_equal(lim.min_probability, 0.2, 1e-12);
    assert_int_equal(lim.max_images, 3);
    assert_float_equal(lim.target_hit_rate, 0.9, 1e-12);
    json_decref(spec);
    assert_int_equal(pw_predict_parse_spec(NULL, &lim, &pl, &f, &msg), 0);
    assert_null(pl);
    assert_int_equal(lim.max_images, PW_PREDICT_DEFAULT_MAX_IMAGES);
    assert_float_equal(lim.min_probability, PW_PREDICT_DEFAULT_MIN_PROBABILITY, 1e-12);
    assert_float_equal(lim.target_hit_rate, PW_PREDICT_DEFAULT_TARGET_HIT_RATE, 1e-12);
    expect_spec_error("{\"targetHitRate\":1.2}", "predict.targetHitRate");
    expect_spec_error("{\"targetHitRate\":\"high\"}", "predict.targetHitRate");
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

static bool may_save_flag(void *arg)
{
    return *(bool *)arg;
}

/* may_save (a follower under --leader-elect) holds the saves back, the model learning on; once it says
 * yes, what changed meanwhile is saved. */
static void test_save_gate(void **state)
{
    (void)state;
    pw_store *st = NULL;
    assert_int_equal(pw_store_open("memory:", &st, NULL), 0);
    bool may = false;
    struct pw_predict_config cfg = {.store = st, .model = {.half_life_ms = HOUR}, .may_save = may_save_flag,
                                    .may_save_arg = &may};
    pw_predict *p = NULL;
    assert_int_equal(pw_predict_new(&cfg, &p), 0);
    json_t *labels = json_pack("{s:s}", "node.kubernetes.io/instance-type", "g5");
    json_t *pod = pod_on("w-0", A, T0);
    pw_predict_observe_pod(p, pod, labels);
    json_decref(pod);
    assert_int_equal(pw_predict_save(p), 0);
    struct pw_store_rec *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    assert_int_equal(pw_store_rec_list(st, "predict", 0, NULL, &recs, &n, &next), 0);
    assert_int_equal(n, 0); /* nothing written while it may not */
    pw_store_recs_free(recs, n);
    free(next);
    may = true;
    assert_int_equal(pw_predict_save(p), 0);
    assert_int_equal(pw_store_rec_list(st, "predict", 0, NULL, &recs, &n, &next), 0);
    assert_int_equal(n, 2); /* the pool learnt while held back, and the meta record */
    pw_store_recs_free(recs, n);
    free(next);
    json_decref(labels);
    pw_predict_free(p);
    pw_store_close(st);
}

/* A pool document round-trips; a malformed one is refused and changes nothing. */
static void test_doc_roundtrip(void **state)
{
    (void)state;
    pw_predict_model *m = model();
    const char *ab[2] = {A, B};
    pw_predict_model_observe(m, "p=x", "n-1", &A, 1, T0);
    pw_predict_model_observe(m, "p=x", "n-2", ab, 2, T0 + HOUR);
    pw_predict_model_observe(m, "p=x", "n-2", &B, 1, T0 + HOUR);
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
    assert_float_equal(pw_predict_model_pods_per_node(m2, "p=x"), pw_predict_model_pods_per_node(m, "p=x"), 1e-12);
    struct pw_predict_limits all = {.max_images = 10, .target_hit_rate = 1};
    json_t *r = pw_predict_model_rank(m2, "p=x", &all, T0 + HOUR), *r1 = pw_predict_model_rank(m, "p=x", &all, T0 + HOUR);
    assert_int_equal(json_integer_value(json_object_get(ranked(r, A), "sizeBytes")), 3 * GB);
    assert_true(json_equal(r, r1)); /* the same sets, nodes and sizes: the same answer */
    json_decref(r);
    json_decref(r1);
    /* the restored model knows its nodes: n-2 again is not a new node */
    pw_predict_model_observe(m2, "p=x", "n-2", &A, 1, T0 + HOUR);
    pw_predict_model_observe(m, "p=x", "n-2", &A, 1, T0 + HOUR);
    assert_float_equal(pw_predict_model_pods_per_node(m2, "p=x"), pw_predict_model_pods_per_node(m, "p=x"), 1e-12);
    /* a version 1 document (no nodes, no sets) loads: 1 pod per node, each image a set of its own */
    json_t *v1 = json_deep_copy(doc);
    json_object_del(v1, "nodes");
    json_object_del(v1, "nodeLast");
    json_object_del(v1, "sets");
    json_object_set_new(v1, "version", json_integer(1));
    pw_predict_model *m3 = model();
    assert_int_equal(pw_predict_model_load_pool(m3, v1), 0);
    assert_float_equal(pw_predict_model_pods_per_node(m3, "p=x"), 1, 0);
    r = pw_predict_model_rank(m3, "p=x", &all, T0 + HOUR);
    assert_int_equal(json_array_size(json_object_get(r, "selected")), 2);
    json_decref(r);
    pw_predict_model_free(m3);
    json_object_set_new(v1, "sets", json_pack("{s:{s:s}}", A, "w", "x"));
    assert_int_equal(pw_predict_model_load_pool(m2, v1), PW_EINVAL);
    json_decref(v1);
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
        cmocka_unit_test(test_pods_per_node),   cmocka_unit_test(test_select_cheapest),
        cmocka_unit_test(test_sets_together),
        cmocka_unit_test(test_unknown_size),    cmocka_unit_test(test_spec),
        cmocka_unit_test(test_pool_of),         cmocka_unit_test(test_trim_pod),
        cmocka_unit_test(test_service_persists),
        cmocka_unit_test(test_save_gate), cmocka_unit_test(test_doc_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
