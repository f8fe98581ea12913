/* Unit tests for the cluster configuration (src/cluster/clusterconf.h): the --cluster flag, the
 * clusters file's YAML (every field, each kind of bad entry refused with the entry and field named),
 * duplicates across flags and file, and taking --cluster out of argv. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "cluster/clusterconf.h"

static void test_flag(void **state)
{
    (void)state;
    struct pw_clusterdef d;
    char *err = NULL;
    assert_int_equal(pw_clusterconf_parse_flag("eu-1=/etc/kc.yaml#admin@eu", &d, &err), 0);
    assert_string_equal(d.name, "eu-1");
    assert_string_equal(d.kubeconfig, "/etc/kc.yaml");
    assert_string_equal(d.context, "admin@eu");
    assert_int_equal(json_object_size(d.labels), 0);
    pw_clusterdef_fini(&d);
    assert_int_equal(pw_clusterconf_parse_flag("us=/k", &d, &err), 0);
    assert_null(d.context);
    pw_clusterdef_fini(&d);
    const char *bad[][2] = {{"nokubeconfig", "NAME=KUBECONFIG"}, {"=/k", "NAME=KUBECONFIG"},
                            {"Upper=/k", "DNS-1123 label"},   {"a_b=/k", "DNS-1123 label"},
                            {"x=#ctx", "kubeconfig path is empty"}, {"x=", "NAME=KUBECONFIG"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        assert_int_equal(pw_clusterconf_parse_flag(bad[i][0], &d, &err), PW_EINVAL);
        assert_non_null(err);
        if (!strstr(err, bad[i][1]))
            fail_msg("%s: \"%s\" lacks \"%s\"", bad[i][0], err, bad[i][1]);
        free(err);
    }
}

static const char GOOD[] = "clusters:\n"
                           "  - name: eu-1\n"
                           "    kubeconfig: /etc/prewarm/eu-1.yaml\n"
                           "    context: eu-admin\n"
                           "    labels: {region: eu-west, tier: gpu}\n"
                           "    qps: 12.5\n"
                           "    burst: 30\n"
                           "    maxNodesInFlight: 200\n"
                           "  - name: us-2\n"
                           "    kubeconfigData: |\n"
                           "      apiVersion: v1\n"
                           "      kind: Config\n";

static void test_yaml_good(void **state)
{
    (void)state;
    struct pw_clusterconf c = {0};
    char *err = NULL;
    assert_int_equal(pw_clusterconf_parse_yaml(GOOD, strlen(GOOD), "clusters file t", &c, &err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.v[0].name, "eu-1");
    assert_string_equal(c.v[0].kubeconfig, "/etc/prewarm/eu-1.yaml");
    assert_string_equal(c.v[0].context, "eu-admin");
    assert_string_equal(json_string_value(json_object_get(c.v[0].labels, "region")), "eu-west");
    assert_string_equal(json_string_value(json_object_get(c.v[0].labels, "tier")), "gpu");
    assert_true(c.v[0].qps == 12.5);
    assert_int_equal(c.v[0].burst, 30);
    assert_int_equal(c.v[0].max_in_flight, 200);
    assert_null(c.v[1].kubeconfig);
    assert_non_null(strstr(c.v[1].kubeconfig_data, "kind: Config"));
    assert_false(pw_clusterdef_same_connection(&c.v[0], &c.v[1]));
    assert_true(pw_clusterdef_same_connection(&c.v[0], &c.v[0]));
    pw_clusterconf_fini(&c);
}

static const struct {
    const char *yaml;
    const char *want; /* a part of the error */
} bad_yaml[] = {
    {"clusters: [\n", "invalid YAML"},
    {"- a\n", "not a mapping"},
    {"clusters: 3\n", "clusters: required, a list"},
    {"other: 1\nclusters: []\n", "other: unknown field"},
    {"clusters:\n  - kubeconfig: /k\n", "clusters[0]: name is required"},
    {"clusters:\n  - name: Bad_Name\n    kubeconfig: /k\n", "clusters[0].name \"Bad_Name\""},
    {"clusters:\n  - name: a\n", "cluster a: kubeconfig (a path) or kubeconfigData is required"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n    kubeconfigData: x\n", "exclude each other"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n    colour: red\n", "clusters[0].colour: unknown field"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n    qps: fast\n", "clusters[0].qps: must be a positive number"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n    burst: 2.5\n", "clusters[0].burst: must be a positive number (an integer)"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n    maxNodesInFlight: -1\n", "maxNodesInFlight"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n    labels: [x]\n", "clusters[0].labels: must be a mapping"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n    labels: {region: \"a b\"}\n", "labels.region: not a valid label"},
    {"clusters:\n  - name: a\n    kubeconfig: \"\"\n", "clusters[0].kubeconfig: must be a non-empty string"},
    {"clusters:\n  - name: a\n    kubeconfig: /k\n  - name: a\n    kubeconfig: /j\n", "\"a\" is configured twice"},
    {"clusters:\n  - 7\n", "clusters[0]: must be a mapping"},
};

static void test_yaml_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_yaml / sizeof bad_yaml[0]; i++) {
        struct pw_clusterconf c = {0};
        char *err = NULL;
        int rc = pw_clusterconf_parse_yaml(bad_yaml[i].yaml, strlen(bad_yaml[i].yaml), "clusters file t", &c, &err);
        if (rc != PW_EINVAL || !err || !strstr(err, bad_yaml[i].want) || strncmp(err, "clusters file t", 15) != 0)
            fail_msg("case %zu: rc %d, error \"%s\", want \"%s\"", i, rc, err ? err : "(none)", bad_yaml[i].want);
        assert_int_equal(c.n, 0); /* nothing kept from a refused file */
        free(err);
    }
}

static void test_flags_then_file(void **state)
{
    (void)state;
    char a0[] = "prewarmd", a1[] = "--cluster", a2[] = "eu-1=/k1", a3[] = "--listen", a4[] = ":0",
         a5[] = "--cluster=us-2=/k2#ctx";
    char *argv[] = {a0, a1, a2, a3, a4, a5, NULL};
    int argc = 6;
    struct pw_clusterconf c = {0};
    char *err = NULL;
    assert_int_equal(pw_clusterconf_take_flags(&argc, argv, &c, &err), 0);
    assert_int_equal(argc, 3);
    assert_string_equal(argv[1], "--listen");
    assert_string_equal(argv[2], ":0");
    assert_null(argv[3]);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.v[1].context, "ctx");
    /* a file naming a cluster the flags named already is refused as a whole */
    const char *dup = "clusters:\n  - name: zz\n    kubeconfig: /z\n  - name: eu-1\n    kubeconfig: /k\n";
    assert_int_equal(pw_clusterconf_parse_yaml(dup, strlen(dup), "f", &c, &err), PW_EINVAL);
    assert_non_null(strstr(err, "\"eu-1\" is configured twice"));
    free(err);
    assert_int_equal(c.n, 2);
    pw_clusterconf_fini(&c);

    char b0[] = "prewarmd", b1[] = "--cluster";
    char *argv2[] = {b0, b1, NULL};
    argc = 2;
    err = NULL;
    assert_int_equal(pw_clusterconf_take_flags(&argc, argv2, &c, &err), PW_EINVAL);
    assert_non_null(strstr(err, "--cluster needs a value"));
    free(err);
    char c0[] = "prewarmd", c1[] = "--cluster=a=/x", c2[] = "--cluster=a=/y";
    char *argv3[] = {c0, c1, c2, NULL};
    argc = 3;
    assert_int_equal(pw_clusterconf_take_flags(&argc, argv3, &c, &err), PW_EINVAL);
    assert_non_null(strstr(err, "configured twice"));
    free(err);
    pw_clusterconf_fini(&c);
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/pw-clusters-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, GOOD, strlen(GOOD)), (ssize_t)strlen(GOOD));
    close(fd);
    struct pw_clusterconf c = {0};
    char *err = NULL;
    assert_int_equal(pw_clusterconf_load_file(path, &c, &err), 0);
    assert_int_equal(c.n, 2);
    pw_clusterconf_fini(&c);
    unlink(path);
    assert_int_equal(pw_clusterconf_load_file(path, &c, &err), PW_EIO);
    assert_non_null(strstr(err, path));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag),
        cmocka_unit_test(test_yaml_good),
        cmocka_unit_test(test_yaml_bad),
        cmocka_unit_test(test_flags_then_file),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
