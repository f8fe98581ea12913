/* Unit tests for kubesim's world without the API server: nodes created at start (names, labels, status,
 * arch mix and not-ready nodes, repeatable with a seed), and the kubelet taking a pod written straight
 * into the store through its pull to Succeeded, with the truth and status.images following. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "sim/sim.h"
#include "sim/world_int.h"

static void opts(struct sim *sim, int nodes, uint64_t seed)
{
    memset(sim, 0, sizeof *sim);
    sim->opt.nodes = nodes;
    sim->opt.seed = seed;
    sim->opt.registry_mbps = 1000;
    sim->opt.node_mbps = 200;
    sim->opt.max_parallel_pulls = 1;
    sim->opt.time_scale = 50;
    sim->opt.pod_start_ms = 500;
    sim->opt.container_start_ms = 300;
    sim->opt.controller_ms = 50;
    sim->opt.arm64_percent = 50;
    sim->store = sim_store_new(10000);
}

static void done(struct sim *sim)
{
    sim_world_stop(sim);
    sim_store_free(sim->store);
}

static const char *label(const json_t *node, const char *k)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(node, "metadata"), "labels"), k));
}

static void test_nodes(void **state)
{
    (void)state;
    struct sim a, b;
    opts(&a, 40, 3);
    a.opt.not_ready_nodes = 2;
    assert_int_equal(sim_world_start(&a), 0);
    assert_int_equal(sim_store_count(a.store, "nodes"), 40);
    json_t *n1 = NULL, *n40 = NULL;
    assert_int_equal(sim_store_get(a.store, "nodes", "", "node-0001", &n1), 0);
    assert_string_equal(label(n1, "kubernetes.io/hostname"), "node-0001");
    assert_string_equal(label(n1, "kubernetes.io/os"), "linux");
    assert_non_null(label(n1, "pool"));
    assert_string_equal(label(n1, "topology.kubernetes.io/zone"), "zone-a");
    json_t *info = json_object_get(json_object_get(n1, "status"), "nodeInfo");
    assert_string_equal(json_string_value(json_object_get(info, "architecture")), label(n1, "kubernetes.io/arch"));
    assert_non_null(strstr(json_string_value(json_object_get(info, "kubeletVersion")), "v1.30"));
    assert_int_equal(sim_store_get(a.store, "nodes", "", "node-0040", &n40), 0);
    json_t *conds = json_object_get(json_object_get(n40, "status"), "conditions");
    assert_string_equal(json_string_value(json_object_get(json_array_get(conds, 3), "status")), "False");
    assert_int_equal(json_array_size(json_object_get(json_object_get(n40, "spec"), "taints")), 2);
    int arm = 0;
    for (int i = 1; i <= 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "node-%04d", i);
        json_t *n = NULL;
        assert_int_equal(sim_store_get(a.store, "nodes", "", name, &n), 0);
        arm += strcmp(label(n, "kubernetes.io/arch"), "arm64") == 0;
        if (strcmp(label(n, "pool"), "gpu") == 0) {
            assert_string_equal(label(n, "kubernetes.io/arch"), "amd64");
            assert_non_null(
                json_object_get(json_object_get(json_object_get(n, "status"), "capacity"), "nvidia.com/gpu"));
        }
        json_decref(n);
    }
    assert_true(arm > 5 && arm < 35);

    /* the same seed: the same cluster */
    opts(&b, 40, 3);
    assert_int_equal(sim_world_start(&b), 0);
    json_t *m1 = NULL;
    assert_int_equal(sim_store_get(b.store, "nodes", "", "node-0001", &m1), 0);
    assert_string_equal(label(m1, "pool"), label(n1, "pool"));
    assert_string_equal(label(m1, "kubernetes.io/arch"), label(n1, "kubernetes.io/arch"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_object_get(m1, "status"), "nodeInfo"), "machineID")),
        json_string_value(json_object_get(info, "machineID")));
    json_decref(m1);
    json_decref(n1);
    json_decref(n40);
    done(&a);
    done(&b);
}

static void test_wide_names(void **state)
{
    (void)state;
    struct sim a;
    opts(&a, 10001, 1);
    assert_int_equal(sim_world_start(&a), 0);
    json_t *n = NULL;
    assert_int_equal(sim_store_get(a.store, "nodes", "", "node-10001", &n), 0);
    json_decref(n);
    assert_int_equal(sim_store_get(a.store, "nodes", "", "node-00001", &n), 0);
    json_decref(n);
    done(&a);
}

static const char *phase_of(sim_store *st, const char *name)
{
    static char buf[32];
    json_t *p = NULL;
    buf[0] = '\0';
    if (sim_store_get(st, "pods", "default", name, &p) == 0) {
        const char *ph = json_string_value(json_object_get(json_object_get(p, "status"), "phase"));
        snprintf(buf, sizeof buf, "%s", ph ? ph : "");
        json_decref(p);
    }
    return buf;
}

static void test_kubelet_pod(void **state)
{
    (void)state;
    struct sim a;
    opts(&a, 2, 1);
    a.opt.arm64_percent = 0;
    assert_int_equal(sim_world_start(&a), 0);
    json_t *pod = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:[{s:s, s:s, s:[s]}]}}", "apiVersion", "v1", "kind",
                            "Pod", "metadata", "name", "p1", "namespace", "default", "spec", "nodeName", "node-0002",
                            "restartPolicy", "Never", "containers", "name", "c", "image", "docker.io/library/redis:7.4",
                            "command", "redis-server");
    assert_int_equal(sim_store_create(a.store, "pods", "default", pod, NULL), 0);
    for (int i = 0; i < 200 && strcmp(phase_of(a.store, "p1"), "Succeeded") != 0; i++)
        pw_clock_sleep_ms(20);
    assert_string_equal(phase_of(a.store, "p1"), "Succeeded");
    struct sim_world *w = a.world;
    pthread_mutex_lock(&w->lock);
    struct sim_wnode *n = sim_world_node(w, "node-0002");
    assert_non_null(n);
    assert_int_equal(n->nheld, 1);
    assert_string_equal(n->held[0].refs[0], "docker.io/library/redis:7.4");
    assert_int_equal(sim_model_pulls(w->model, n->midx), 1);
    pthread_mutex_unlock(&w->lock);
    /* status.images within about a second */
    json_t *node = NULL;
    size_t nimg = 0;
    for (int i = 0; i < 100 && nimg == 0; i++) {
        pw_clock_sleep_ms(20);
        assert_int_equal(sim_store_get(a.store, "nodes", "", "node-0002", &node), 0);
        nimg = json_array_size(json_object_get(json_object_get(node, "status"), "images"));
        if (nimg == 0)
            json_decref(node);
    }
    assert_int_equal(nimg, 1);
    json_t *names =
        json_object_get(json_array_get(json_object_get(json_object_get(node, "status"), "images"), 0), "names");
    assert_string_equal(json_string_value(json_array_get(names, 1)), "docker.io/library/redis:7.4");
    json_decref(node);
    /* a pod on a node that does not exist stays as it is */
    pod = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:[{s:s, s:s}]}}", "apiVersion", "v1", "kind", "Pod", "metadata",
                    "name", "p2", "namespace", "default", "spec", "nodeName", "node-0099", "containers", "name", "c",
                    "image", "busybox:1.36");
    assert_int_equal(sim_store_create(a.store, "pods", "default", pod, NULL), 0);
    pw_clock_sleep_ms(100);
    assert_string_equal(phase_of(a.store, "p2"), "");
    done(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_wide_names),
        cmocka_unit_test(test_kubelet_pod),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
