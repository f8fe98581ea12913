/* Unit tests for kubesim's physical model: max-min fair sharing of the registry with node caps, layer
 * reuse, serialized pulls, failing pulls, pausing, and the bound, on small cases computed by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "base/err.h"
#include "sim/world_int.h"

static const uint64_t sizes[] = {100, 200, 900, 50, 300};

struct rec {
    int n;
    struct sim_model_evt e[32];
};

static void on_evt(void *arg, const struct sim_model_evt *e)
{
    struct rec *r = arg;
    if (r->n < 32)
        r->e[r->n++] = *e;
}

static sim_model *mk(struct rec *r, double reg, double node, int par, double overhead)
{
    memset(r, 0, sizeof *r);
    struct sim_model_cfg cfg = {.registry_Bps = reg,
                                .node_Bps = node,
                                .max_parallel = par,
                                .pull_overhead_s = overhead,
                                .nlayers = 5,
                                .layer_size = sizes};
    return sim_model_new(&cfg, on_evt, r);
}

static const struct sim_model_evt *find(const struct rec *r, enum sim_model_evt_type t, uint64_t cookie)
{
    for (int i = 0; i < r->n; i++)
        if (r->e[i].type == t && r->e[i].cookie == cookie)
            return &r->e[i];
    return NULL;
}

static void run(sim_model *m, double until)
{
    for (double t = 0.01; t <= until + 1e-9; t += 0.01)
        sim_model_advance(m, t);
}

/* one node, two layers in parallel sharing its 100 B/s: 100 B done at 2 s, the 200 B one at 3 s */
static void test_parallel_layers(void **state)
{
    (void)state;
    struct rec r;
    sim_model *m = mk(&r, 1000, 100, 1, 0);
    int n = sim_model_add_node(m, 0);
    int layers[] = {0, 1};
    struct sim_platform p = {.nlayers = 2, .layers = layers, .size = 300};
    sim_model_pull(m, n, &p, true, 7);
    run(m, 5);
    const struct sim_model_evt *d = find(&r, SIM_PULL_DONE, 7);
    assert_non_null(d);
    assert_true(d->ok);
    assert_true(fabs(d->now - 3.0) < 0.05);
    assert_int_equal(d->bytes, 300);
    assert_int_equal(sim_model_pulls(m, n), 1);
    assert_true(sim_model_has_platform(m, n, &p));
    sim_model_free(m);
}

/* registry 100 B/s, node A capped at 10, node B at 1000: A gets 10, B the other 90 (max-min fair) */
static void test_fair_share_caps(void **state)
{
    (void)state;
    struct rec r;
    sim_model *m = mk(&r, 100, 1000, 1, 0);
    int a = sim_model_add_node(m, 10);
    int b = sim_model_add_node(m, 0);
    int la[] = {0}, lb[] = {2};
    struct sim_platform pa = {.nlayers = 1, .layers = la}, pb = {.nlayers = 1, .layers = lb};
    sim_model_pull(m, a, &pa, true, 1);
    sim_model_pull(m, b, &pb, true, 2);
    run(m, 12);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 1)->now - 10.0) < 0.1);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 2)->now - 10.0) < 0.1);
    sim_model_free(m);

    /* equal nodes, registry the bottleneck: 2 x 100 B at 50 B/s each -> 2 s */
    m = mk(&r, 100, 100, 1, 0);
    a = sim_model_add_node(m, 0);
    b = sim_model_add_node(m, 0);
    sim_model_pull(m, a, &pa, true, 1);
    sim_model_pull(m, b, &pa, true, 2);
    run(m, 3);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 1)->now - 2.0) < 0.05);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 2)->now - 2.0) < 0.05);
    sim_model_free(m);
}

/* layers held are not fetched again, also when another image shares them */
static void test_layer_reuse(void **state)
{
    (void)state;
    struct rec r;
    sim_model *m = mk(&r, 1000, 100, 1, 0);
    int n = sim_model_add_node(m, 0);
    int l1[] = {0, 1}, l2[] = {0, 3};
    struct sim_platform p1 = {.nlayers = 2, .layers = l1}, p2 = {.nlayers = 2, .layers = l2};
    const struct sim_platform *both[] = {&p1, &p2};
    assert_int_equal(sim_model_missing_bytes(m, n, both, 2), 350);
    sim_model_pull(m, n, &p1, true, 1);
    run(m, 4);
    assert_int_equal(sim_model_missing_bytes(m, n, both, 2), 50);
    sim_model_pull(m, n, &p2, true, 2);
    sim_model_pull(m, n, &p1, true, 3); /* pulled again: nothing to fetch */
    run(m, 6);
    assert_int_equal(find(&r, SIM_PULL_DONE, 2)->bytes, 50);
    assert_int_equal(find(&r, SIM_PULL_DONE, 3)->bytes, 0);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 2)->now - find(&r, SIM_PULL_DONE, 2)->started_at - 0.5) < 0.05);
    assert_int_equal(sim_model_pulls(m, n), 3);
    sim_model_free(m);
}

/* one pull at a time: the second starts when the first ends; resolve overhead 1 s each */
static void test_serialized(void **state)
{
    (void)state;
    struct rec r;
    sim_model *m = mk(&r, 1000, 100, 1, 1.0);
    int n = sim_model_add_node(m, 0);
    int l1[] = {0}, l2[] = {3};
    struct sim_platform p1 = {.nlayers = 1, .layers = l1}, p2 = {.nlayers = 1, .layers = l2};
    sim_model_pull(m, n, &p1, true, 1);
    sim_model_pull(m, n, &p2, true, 2);
    int64_t gone = sim_model_pull(m, n, &p2, true, 3);
    assert_int_equal(sim_model_cancel(m, gone), 0);
    assert_int_equal(sim_model_busy(m, n), 2);
    run(m, 5);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 1)->now - 2.0) < 0.05);
    assert_true(fabs(find(&r, SIM_PULL_STARTED, 2)->now - 2.0) < 0.05);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 2)->now - 3.5) < 0.05);
    assert_null(find(&r, SIM_PULL_STARTED, 3));
    sim_model_free(m);

    /* two at a time: both start at 0, share the node: 100 and 50 bytes at 50 B/s */
    m = mk(&r, 1000, 100, 2, 1.0);
    n = sim_model_add_node(m, 0);
    sim_model_pull(m, n, &p1, true, 1);
    sim_model_pull(m, n, &p2, true, 2);
    run(m, 5);
    assert_true(fabs(find(&r, SIM_PULL_STARTED, 2)->now) < 0.05);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 2)->now - 2.0) < 0.05);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 1)->now - 2.5) < 0.05);
    sim_model_free(m);
}

/* a failing pull ends after the resolve time; a paused node starts nothing */
static void test_fail_and_pause(void **state)
{
    (void)state;
    struct rec r;
    sim_model *m = mk(&r, 1000, 100, 1, 0.5);
    int n = sim_model_add_node(m, 0);
    int n2 = sim_model_add_node(m, 0);
    sim_model_pull(m, n, NULL, false, 1);
    int l1[] = {0};
    struct sim_platform p1 = {.nlayers = 1, .layers = l1};
    sim_model_node_set_paused(m, n2, true);
    sim_model_pull(m, n2, &p1, true, 2);
    run(m, 2);
    const struct sim_model_evt *d = find(&r, SIM_PULL_DONE, 1);
    assert_non_null(d);
    assert_false(d->ok);
    assert_true(fabs(d->now - 0.5) < 0.05);
    assert_int_equal(sim_model_pulls(m, n), 0);
    assert_null(find(&r, SIM_PULL_STARTED, 2));
    sim_model_node_set_paused(m, n2, false);
    for (double t = 2.01; t <= 4; t += 0.01)
        sim_model_advance(m, t);
    assert_true(fabs(find(&r, SIM_PULL_DONE, 2)->now - 3.5) < 0.05);
    sim_model_free(m);
}

/* the bound, by hand: bytes 100 and 300, nodes at 100 B/s, fixed 1 s, 0.5 s per pull */
static void test_bound(void **state)
{
    (void)state;
    uint64_t bytes[] = {100, 300, 0};
    int pulls[] = {1, 1, 0};
    double bw[] = {100, 100, 100};
    /* registry 200: max(1 + 0.5 + 400/200 = 3.5, 1 + 0.5 + 3 = 4.5) */
    assert_true(fabs(sim_model_bound(200, 3, bytes, pulls, bw, 1, 0.5, 1) - 4.5) < 1e-9);
    /* registry 100: 1 + 0.5 + 4 = 5.5 */
    assert_true(fabs(sim_model_bound(100, 3, bytes, pulls, bw, 1, 0.5, 1) - 5.5) < 1e-9);
    /* three pulls on the second node, serialized: 1 + 1.5 + 3 = 5.5; two at a time: 1 + 1 + 3 */
    int pulls3[] = {1, 3, 0};
    assert_true(fabs(sim_model_bound(1e9, 3, bytes, pulls3, bw, 1, 0.5, 1) - 5.5) < 1e-9);
    assert_true(fabs(sim_model_bound(1e9, 3, bytes, pulls3, bw, 1, 0.5, 2) - 5.0) < 1e-9);
    /* nothing to do */
    uint64_t none[] = {0};
    int zero[] = {0};
    assert_true(sim_model_bound(100, 1, none, zero, bw, 1, 0.5, 1) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_layers), cmocka_unit_test(test_fair_share_caps),
        cmocka_unit_test(test_layer_reuse),     cmocka_unit_test(test_serialized),
        cmocka_unit_test(test_fail_and_pause),  cmocka_unit_test(test_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
