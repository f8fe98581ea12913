/* The src/k8s client against a running kubesim (tests/integration/k8s_client.sh starts one and sets
 * PW_KUBESIM_KUBECONFIG and PW_KUBESIM_NODES; without them, as a plain unit test, the suite prints one
 * TAP skip line): HTTPS with the CA from the kubeconfig, the token and the client-certificate users, a
 * kubeconfig merged over kubesim's, an exec credential plugin, an informer over every node that syncs
 * and sees label changes, a label-selected informer, and a 410 after /sim/v1/faults {"compact":true}
 * that makes the informer list again and carry on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "k8s/k8s.h"
#include "k8s/k8s_int.h"

static const char *kubeconfig;
static long nodes_want;
static char node1[64], node2[64]; /* the first two node names, from test_token_user */

#define NEED_SIM() assert_non_null(kubeconfig)

static pw_k8s_config *load(const char *path, const char *context)
{
    pw_k8s_config *cfg = NULL;
    char *msg = NULL;
    int rc = pw_k8s_config_load(path, context, &cfg, &msg);
    if (rc)
        fail_msg("kubeconfig %s: %s", path, msg);
    return cfg;
}

static pw_k8s_client *client(const pw_k8s_config *cfg)
{
    pw_k8s_client *c = NULL;
    struct pw_k8s_client_opts o = {.qps = 200, .burst = 200};
    assert_int_equal(pw_k8s_client_new(cfg, &o, &c), 0);
    return c;
}

static void test_token_user(void **state)
{
    (void)state;
    NEED_SIM();
    pw_k8s_config *cfg = load(kubeconfig, NULL);
    assert_non_null(strstr(pw_k8s_config_server(cfg), "https://127.0.0.1:"));
    assert_non_null(cfg->ca_pem);
    assert_non_null(cfg->token);
    pw_k8s_client *c = client(cfg);
    int status = 0;
    json_t *resp = NULL;
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes?limit=2", NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(resp, "kind")), "NodeList");
    assert_int_equal(json_array_size(json_object_get(resp, "items")), 2);
    const char *cont = json_string_value(json_object_get(json_object_get(resp, "metadata"), "continue"));
    assert_true(cont && *cont);
    snprintf(node1, sizeof node1, "%s", pw_k8s_name(json_array_get(json_object_get(resp, "items"), 0)));
    snprintf(node2, sizeof node2, "%s", pw_k8s_name(json_array_get(json_object_get(resp, "items"), 1)));
    json_decref(resp);
    char *path1 = pw_xasprintf("/api/v1/nodes/%s", node1);
    assert_int_equal(pw_k8s_request(c, "GET", path1, NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_string_equal(pw_k8s_name(resp), node1);
    json_decref(resp);
    free(path1);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes/no-such-node", NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 404);
    assert_non_null(pw_k8s_status_message(resp));
    json_decref(resp);
    struct pw_k8s_counts n;
    pw_k8s_client_counts(c, &n);
    assert_int_equal(n.list, 1);
    assert_int_equal(n.get, 2);
    assert_int_equal(n.errors, 0);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
}

static void test_cert_user(void **state)
{
    (void)state;
    NEED_SIM();
    pw_k8s_config *cfg = load(kubeconfig, "kubesim-cert");
    assert_null(cfg->token);
    assert_non_null(cfg->cert_pem);
    pw_k8s_client *c = client(cfg);
    int status = 0;
    json_t *resp = NULL;
    assert_true(node2[0]); /* test_token_user ran first */
    char *path2 = pw_xasprintf("/api/v1/nodes/%s", node2);
    assert_int_equal(pw_k8s_request(c, "GET", path2, NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_string_equal(pw_k8s_name(resp), node2);
    json_decref(resp);
    free(path2);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
}

/* A file of our own in front of kubesim's: its user and context win, the cluster comes from kubesim's. */
static void test_merged_bad_token(void **state)
{
    (void)state;
    NEED_SIM();
    char path[] = "/tmp/pw-k8s-probe-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "apiVersion: v1\nkind: Config\ncurrent-context: bad\n"
                       "contexts: [{name: bad, context: {cluster: kubesim, user: bad}}]\n"
                       "users: [{name: bad, user: {token: not-the-token}}]\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char *list = pw_xasprintf("%s:%s", path, kubeconfig);
    pw_k8s_config *cfg = load(list, NULL);
    assert_non_null(cfg->ca_pem);
    pw_k8s_client *c = client(cfg);
    int status = 0;
    json_t *resp = NULL;
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes?limit=1", NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 401);
    json_decref(resp);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    unlink(path);
    free(list);
}

/* An exec credential plugin (a shell script printing kubesim's token) over kubesim's HTTPS. */
static void test_exec_user(void **state)
{
    (void)state;
    NEED_SIM();
    pw_k8s_config *base = load(kubeconfig, NULL);
    char dir[] = "/tmp/pw-k8s-probe-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *plugin = pw_xasprintf("%s/plugin.sh", dir);
    char *cfgpath = pw_xasprintf("%s/config", dir);
    FILE *f = fopen(plugin, "w");
    assert_non_null(f);
    fprintf(f,
            "#!/bin/sh\n"
            "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
            "\"status\":{\"token\":\"%%s\"}}' '%s'\n",
            base->token);
    fclose(f);
    assert_int_equal(chmod(plugin, 0755), 0);
    f = fopen(cfgpath, "w");
    assert_non_null(f);
    fprintf(f, "apiVersion: v1\nkind: Config\ncurrent-context: ex\n"
               "contexts: [{name: ex, context: {cluster: kubesim, user: ex}}]\n"
               "users: [{name: ex, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: ./plugin.sh, "
               "interactiveMode: Never}}}]\n");
    fclose(f);
    char *list = pw_xasprintf("%s:%s", cfgpath, kubeconfig);
    pw_k8s_config *cfg = load(list, NULL);
    assert_null(cfg->token);
    assert_non_null(cfg->exec);
    pw_k8s_client *c = client(cfg);
    int status = 0;
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes?limit=1", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(pw_k8s_cred_exec_runs(cfg), 1);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    pw_k8s_config_free(base);
    unlink(plugin);
    unlink(cfgpath);
    rmdir(dir);
    free(list);
    free(plugin);
    free(cfgpath);
}

struct seen {
    pthread_mutex_t mu;
    int added, modified, deleted;
    char want_label[64];
    char want_value[64];
    bool found;
};

static void on_event(void *arg, enum pw_k8s_event ev, const json_t *obj, const json_t *old)
{
    (void)old;
    struct seen *s = arg;
    pthread_mutex_lock(&s->mu);
    if (ev == PW_K8S_ADDED)
        s->added++;
    else if (ev == PW_K8S_MODIFIED)
        s->modified++;
    else
        s->deleted++;
    const char *v = s->want_label[0] ? pw_k8s_label(obj, s->want_label) : NULL;
    if (ev == PW_K8S_MODIFIED && v && strcmp(v, s->want_value) == 0)
        s->found = true;
    pthread_mutex_unlock(&s->mu);
}

static void patch_label(pw_k8s_client *c, const char *node, const char *key, const char *value)
{
    char *path = pw_xasprintf("/api/v1/nodes/%s", node);
    json_t *body = json_pack("{s:{s:{s:s}}}", "metadata", "labels", key, value);
    int status = 0;
    json_t *resp = NULL;
    assert_int_equal(pw_k8s_request(c, "PATCH", path, body, "application/merge-patch+json", &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_string_equal(pw_k8s_label(resp, key), value);
    json_decref(resp);
    json_decref(body);
    free(path);
}

static void expect_label_event(struct seen *s, pw_k8s_client *c, const char *node, const char *value)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->want_label, sizeof s->want_label, "pw-probe");
    snprintf(s->want_value, sizeof s->want_value, "%s", value);
    s->found = false;
    pthread_mutex_unlock(&s->mu);
    patch_label(c, node, "pw-probe", value);
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&s->mu);
        bool f = s->found;
        pthread_mutex_unlock(&s->mu);
        if (f)
            return;
        pw_clock_sleep_ms(10);
    }
    fail_msg("no MODIFIED event with pw-probe=%s on %s", value, node);
}

static void sim_post(pw_k8s_client *c, const char *path, const char *json)
{
    json_t *body = json_loads(json, 0, NULL);
    int status = 0;
    assert_int_equal(pw_k8s_request(c, "POST", path, body, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    json_decref(body);
}

static void test_informer_nodes(void **state)
{
    (void)state;
    NEED_SIM();
    pw_k8s_config *cfg = load(kubeconfig, NULL);
    pw_k8s_client *c = client(cfg);
    struct seen s = {.added = 0};
    pthread_mutex_init(&s.mu, NULL);
    assert_true(node1[0] && node2[0]); /* test_token_user ran first */
    struct pw_k8s_informer_opts io = {.path = "/api/v1/nodes", .on_event = on_event, .arg = &s, .page_size = 500};
    pw_k8s_informer *inf = NULL;
    int64_t t0 = pw_clock_mono_ms();
    assert_int_equal(pw_k8s_informer_start(c, &io, &inf), 0);
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 60000), 0);
    print_message("# informer synced %zu nodes in %lld ms\n", pw_k8s_informer_size(inf),
                  (long long)(pw_clock_mono_ms() - t0));
    assert_int_equal(pw_k8s_informer_size(inf), (size_t)nodes_want);
    pthread_mutex_lock(&s.mu);
    assert_int_equal(s.added, nodes_want);
    pthread_mutex_unlock(&s.mu);
    struct pw_k8s_counts n;
    pw_k8s_client_counts(c, &n);
    assert_int_equal(n.list, (uint64_t)((nodes_want + 499) / 500));
    json_t *node = pw_k8s_informer_get(inf, node1);
    assert_non_null(node);
    assert_string_equal(json_string_value(json_object_get(node, "kind")), "Node");
    json_decref(node);

    /* label changes reach the cache through the watch */
    expect_label_event(&s, c, node1, "one");
    node = pw_k8s_informer_get(inf, node1);
    assert_string_equal(pw_k8s_label(node, "pw-probe"), "one");
    json_decref(node);

    /* history compacted behind the informer, and its watch dropped: re-watching from its
     * resourceVersion gets 410 Expired, and it lists again */
    pw_k8s_client_counts(c, &n);
    uint64_t lists = n.list;
    /* writes the node informer does not see move the global resourceVersion past its own */
    char *ns = pw_xasprintf("pw-k8s-probe-%d", (int)getpid());
    char *ns_path = pw_xasprintf("/api/v1/namespaces/%s", ns);
    json_t *nsbody = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata", "name", ns);
    int status = 0;
    assert_int_equal(pw_k8s_request(c, "POST", "/api/v1/namespaces", nsbody, NULL, &status, NULL), 0);
    assert_int_equal(status, 201);
    json_decref(nsbody);
    nsbody = json_pack("{s:{s:{s:s}}}", "metadata", "labels", "pw-probe", "touched");
    assert_int_equal(pw_k8s_request(c, "PATCH", ns_path, nsbody, "application/merge-patch+json", &status, NULL), 0);
    assert_int_equal(status, 200);
    json_decref(nsbody);
    sim_post(c, "/sim/v1/faults", "{\"compact\":true,\"dropWatchesEverySeconds\":1}");
    bool relisted = false;
    for (int i = 0; i < 300 && !relisted; i++) {
        pw_clock_sleep_ms(100);
        pw_k8s_client_counts(c, &n);
        relisted = n.list >= lists + (uint64_t)((nodes_want + 499) / 500); /* every page of a new list */
    }
    sim_post(c, "/sim/v1/faults", "{}");
    assert_true(relisted);
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 1000), 0);
    pw_clock_sleep_ms(200); /* the last page's events */
    assert_int_equal(pw_k8s_informer_size(inf), (size_t)nodes_want);
    pthread_mutex_lock(&s.mu);
    assert_int_equal(s.deleted, 0);
    assert_int_equal(s.added, nodes_want); /* a relist of the same nodes adds nothing */
    pthread_mutex_unlock(&s.mu);

    /* and the new watch works */
    expect_label_event(&s, c, node2, "two");
    patch_label(c, node1, "pw-probe", "done");
    patch_label(c, node2, "pw-probe", "done");
    assert_int_equal(pw_k8s_request(c, "DELETE", ns_path, NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    free(ns_path);
    free(ns);

    int64_t t1 = pw_clock_mono_ms();
    pw_k8s_informer_free(inf);
    assert_true(pw_clock_mono_ms() - t1 < 3000);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    pthread_mutex_destroy(&s.mu);
}

static void test_informer_selector(void **state)
{
    (void)state;
    NEED_SIM();
    pw_k8s_config *cfg = load(kubeconfig, "kubesim-cert");
    pw_k8s_client *c = client(cfg);
    int status = 0;
    json_t *resp = NULL;
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes?labelSelector=kubernetes.io%2Farch%3Darm64", NULL, NULL,
                                    &status, &resp),
                     0);
    assert_int_equal(status, 200);
    size_t want = json_array_size(json_object_get(resp, "items"));
    json_decref(resp);
    assert_true(want > 0 && want < (size_t)nodes_want);
    struct pw_k8s_informer_opts io = {
        .path = "/api/v1/nodes", .label_selector = "kubernetes.io/arch=arm64", .page_size = 100};
    pw_k8s_informer *inf = NULL;
    assert_int_equal(pw_k8s_informer_start(c, &io, &inf), 0);
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 60000), 0);
    assert_int_equal(pw_k8s_informer_size(inf), want);
    pw_k8s_informer_free(inf);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
}

int main(void)
{
    kubeconfig = getenv("PW_KUBESIM_KUBECONFIG");
    if (kubeconfig && !*kubeconfig)
        kubeconfig = NULL;
    const char *n = getenv("PW_KUBESIM_NODES");
    nodes_want = n ? atol(n) : 1000;
    if (!kubeconfig) {
        /* cmocka reports skips as "not ok ... # SKIP", which TAP consumers count as failures */
        printf(
            "ok - k8s client against kubesim # SKIP needs PW_KUBESIM_KUBECONFIG (tests/integration/k8s_client.sh)\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_user),       cmocka_unit_test(test_cert_user),
        cmocka_unit_test(test_merged_bad_token), cmocka_unit_test(test_exec_user),
        cmocka_unit_test(test_informer_nodes),   cmocka_unit_test(test_informer_selector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
