/* Unit tests for the engine's task state machine in Job mode, against kubesim's API server in this
 * process (sim_api_start on 127.0.0.1:0, plain HTTP, no world: no kubelet, no Job controller). The
 * test plays the controllers itself: it writes Job and pod status into the simulator's store and
 * watches the engine react through its informers. Covered: a selector the engine does not hold in
 * parsed form fails the task closed (selects nothing, creates no Job); selection by labels; a Job
 * that completes; a pull that fails permanently (InvalidImageName) and one that keeps failing
 * retryably until the Job fails; a node that goes NotReady and recovers (its work goes on), and one
 * deleted while NotReady (its running node fails NodeDeleted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdatomic.h>
#include <unistd.h>

#include "base/err.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "engine/jobspec.h"
#include "k8s/k8s.h"
#include "sim/sim.h"
#include "store/store.h"

struct env {
    struct sim sim;
    pw_http_server *srv;
    char kubeconfig[64];
    pw_k8s_config *kcfg;
    pw_k8s_client *client;
    pw_store *store;
    pw_engine *engine;
};

static struct env E;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static json_t *node_obj(const char *name, const char *zone, bool ready)
{
    return json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{},s:{s:[{s:s,s:s}],s:[]}}", "apiVersion", "v1", "kind", "Node",
                     "metadata", "name", name, "labels", "zone", zone, "spec", "status", "conditions", "type",
                     "Ready", "status", ready ? "True" : "False", "images");
}

static int setup(void **state)
{
    (void)state;
    pw_log_set_level(PW_LOG_ERROR);
    memset(&E, 0, sizeof E);
    E.sim.opt.token = "tok";
    E.sim.opt.threads = 4;
    E.sim.opt.listen = "127.0.0.1:0";
    E.sim.opt.namespaces = "prewarm";
    E.sim.store = sim_store_new(10000);
    static const char *const zones[] = {"a", "a", "b", "b"};
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "node-%d", i + 1);
        assert_int_equal(sim_store_create(E.sim.store, "nodes", "", node_obj(name, zones[i], true), NULL), 0);
    }
    assert_int_equal(sim_api_start(&E.sim, NULL, &E.srv), 0);
    snprintf(E.kubeconfig, sizeof E.kubeconfig, "/tmp/pw-test-engine-%d.yaml", (int)getpid());
    FILE *f = fopen(E.kubeconfig, "w");
    assert_non_null(f);
    fprintf(f,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: "
            "\"http://127.0.0.1:%d\"}\nusers:\n- name: u\n  user: {token: tok}\ncontexts:\n- name: c\n  context: "
            "{cluster: c, user: u}\n",
            pw_http_server_port(E.srv));
    fclose(f);
    char *msg = NULL;
    if (pw_k8s_config_load(E.kubeconfig, NULL, &E.kcfg, &msg) != 0)
        fail_msg("kubeconfig: %s", msg);
    struct pw_k8s_client_opts o = {.qps = 500, .burst = 500};
    assert_int_equal(pw_k8s_client_new(E.kcfg, &o, &E.client), 0);
    assert_int_equal(pw_store_open("memory:", &E.store, NULL), 0);
    struct pw_engine_config cfg = {.client = E.client, .store = E.store, .namespace_ = "prewarm",
                                   .not_ready_grace_ms = 1500};
    assert_int_equal(pw_engine_new(&cfg, &E.engine), 0);
    assert_int_equal(pw_engine_start(E.engine), 0);
    for (int i = 0; i < 200; i++) {
        const char *why;
        if (pw_engine_ready(E.engine, &why))
            return 0;
        sleep_ms(25);
    }
    fail_msg("the node informer did not sync");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pw_engine_free(E.engine);
    pw_store_close(E.store);
    pw_k8s_client_free(E.client);
    pw_k8s_config_free(E.kcfg);
    pw_http_server_free(E.srv);
    sim_api_stop(&E.sim);
    sim_store_free(E.sim.store);
    unlink(E.kubeconfig);
    return 0;
}

static char *submit(const char *body, bool drop_selector)
{
    json_error_t jerr;
    json_t *req = json_loads(body, 0, &jerr);
    assert_non_null(req);
    struct pw_taskspec spec;
    struct pw_field_errors errs;
    assert_int_equal(pw_taskspec_parse(req, &spec, &errs), 0);
    json_decref(req);
    if (drop_selector) {
        /* a spec whose selector text the engine holds but not its parsed form (a caller that built
         * the spec by hand): it must select nothing, not every node */
        pw_labelsel_free(spec.selector);
        spec.selector = NULL;
        free(spec.label_selector);
        spec.label_selector = pw_xstrdup("zone in (a");
    }
    json_t *task = NULL;
    assert_int_equal(pw_engine_submit(E.engine, &spec, &task), 0);
    char *id = pw_xstrdup(json_string_value(json_object_get(task, "id")));
    json_decref(task);
    return id;
}

static json_t *task_get(const char *id)
{
    json_t *t = NULL;
    assert_int_equal(pw_engine_get_task(E.engine, id, &t), 0);
    return t;
}

static const char *status_of(const json_t *t)
{
    return json_string_value(json_object_get(t, "status"));
}

static json_int_t prog(const json_t *t, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(t, "progress"), k));
}

/* Waits (at most ~10 s) for the task to reach status; returns it (caller decrefs). */
static json_t *wait_status(const char *id, const char *status)
{
    for (int i = 0; i < 400; i++) {
        json_t *t = task_get(id);
        if (strcmp(status_of(t), status) == 0)
            return t;
        json_decref(t);
        sleep_ms(25);
    }
    json_t *t = task_get(id);
    fail_msg("task %s is %s, not %s: %s", id, status_of(t), status, json_string_value(json_object_get(t, "message")));
    return NULL;
}

/* Waits for n running nodes of the task (their Jobs were created). */
static void wait_running(const char *id, json_int_t n)
{
    for (int i = 0; i < 400; i++) {
        json_t *t = task_get(id);
        json_int_t r = prog(t, "runningNodes");
        json_decref(t);
        if (r == n)
            return;
        sleep_ms(25);
    }
    fail_msg("task %s never had %lld running nodes", id, (long long)n);
}

static size_t job_count(void)
{
    return sim_store_count(E.sim.store, "jobs.batch");
}

/* Waits until the simulator holds n Jobs. */
static void wait_jobs(size_t n)
{
    for (int i = 0; i < 400 && job_count() != n; i++)
        sleep_ms(25);
    assert_int_equal(job_count(), n);
}

static int set_job_condition(void *arg, json_t *job)
{
    const char *type = arg;
    json_t *st = json_object_get(job, "status");
    if (!st) {
        st = json_object();
        json_object_set_new(job, "status", st);
    }
    json_object_set_new(st, "conditions",
                        json_pack("[{s:s,s:s,s:s,s:s}]", "type", type, "status", "True", "reason",
                                  strcmp(type, "Failed") == 0 ? "BackoffLimitExceeded" : "Completed", "message",
                                  strcmp(type, "Failed") == 0 ? "Job has reached the specified backoff limit" : ""));
    return 0;
}

static void job_finish(const char *task, const char *node, const char *type)
{
    /* a node counts as running once dispatched, a moment before its Job's create reaches the
     * simulator: wait (at most ~10 s) for the Job */
    char *name = pw_jobspec_name(task, node);
    int rc = -1;
    for (int i = 0; i < 400; i++) {
        rc = sim_store_mutate(E.sim.store, "jobs.batch", "prewarm", name, set_job_condition, (void *)type, NULL);
        if (rc == 0)
            break;
        sleep_ms(25);
    }
    free(name);
    assert_int_equal(rc, 0);
}

/* Creates (or replaces) the pod of (task, node) with one waiting container img-0. */
static void pod_waiting(const char *task, const char *node, const char *reason, const char *message)
{
    char *job = pw_jobspec_name(task, node);
    char *name = pw_xasprintf("%s-pod", job);
    json_t *pod = json_pack(
        "{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s}},s:{s:s},s:{s:s,s:[{s:s,s:{s:{s:s,s:s}}}]}}", "apiVersion", "v1", "kind",
        "Pod", "metadata", "name", name, "namespace", "prewarm", "labels", "prewarm.io/task", task,
        "app.kubernetes.io/managed-by", "prewarm", "spec", "nodeName", node, "status", "phase", "Pending",
        "containerStatuses", "name", "img-0", "state", "waiting", "reason", reason, "message", message);
    json_t *old = NULL;
    if (sim_store_get(E.sim.store, "pods", "prewarm", name, &old) == 0) {
        json_decref(old);
        assert_int_equal(sim_store_update(E.sim.store, "pods", "prewarm", name, pod, 0, NULL), 0);
    } else {
        assert_int_equal(sim_store_create(E.sim.store, "pods", "prewarm", pod, NULL), 0);
    }
    free(name);
    free(job);
}

static json_t *node_result(const char *task, const char *node)
{
    json_t *list = NULL;
    assert_int_equal(pw_engine_list_nodes(E.engine, task, NULL, 0, NULL, &list), 0);
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(list, "items"), i, n) {
        if (strcmp(json_string_value(json_object_get(n, "nodeName")), node) == 0) {
            json_incref(n);
            json_decref(list);
            return n;
        }
    }
    json_decref(list);
    fail_msg("no result for node %s", node);
    return NULL;
}

static void test_selector_fails_closed(void **state)
{
    (void)state;
    size_t jobs_before = job_count();
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"labelSelector\":\"zone=a\"}", true);
    json_t *t = wait_status(id, "failed");
    assert_int_equal(prog(t, "totalNodes"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(t, "message")), "labelSelector"));
    json_decref(t);
    sleep_ms(200);
    assert_int_equal(job_count(), jobs_before);
    free(id);
}

static void test_select_and_complete(void **state)
{
    (void)state;
    size_t jobs_before = job_count();
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"labelSelector\":\"zone=a\"}", false);
    wait_running(id, 2);
    wait_jobs(jobs_before + 2);
    job_finish(id, "node-1", "Complete");
    job_finish(id, "node-2", "Complete");
    json_t *t = wait_status(id, "succeeded");
    assert_int_equal(prog(t, "totalNodes"), 2);
    assert_int_equal(prog(t, "succeededNodes"), 2);
    json_decref(t);
    /* the finished nodes' Jobs are deleted */
    wait_jobs(jobs_before);
    free(id);
}

static void test_pull_failures(void **state)
{
    (void)state;
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-3\",\"node-4\"],\"retries\":2,"
                      "\"successThreshold\":1}",
                      false);
    wait_running(id, 2);
    /* permanent: the node fails at once, with the kubelet's reason and message */
    pod_waiting(id, "node-3", "InvalidImageName", "Failed to apply default image tag");
    /* retryable: the node keeps running through ErrImagePull/ImagePullBackOff */
    pod_waiting(id, "node-4", "ErrImagePull", "rpc error: connection reset by peer");
    for (int i = 0; i < 400; i++) {
        json_t *t = task_get(id);
        json_int_t failed = prog(t, "failedNodes");
        json_decref(t);
        if (failed == 1)
            break;
        sleep_ms(25);
    }
    json_t *n3 = node_result(id, "node-3");
    assert_string_equal(json_string_value(json_object_get(n3, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(n3, "reason")), "InvalidImageName");
    json_decref(n3);
    pod_waiting(id, "node-4", "ImagePullBackOff", "Back-off pulling image \"busybox:1.36\"");
    pod_waiting(id, "node-4", "ErrImagePull", "rpc error: connection reset by peer");
    sleep_ms(300);
    json_t *n4 = node_result(id, "node-4");
    assert_string_equal(json_string_value(json_object_get(n4, "state")), "running");
    const json_t *img = json_array_get(json_object_get(n4, "images"), 0);
    assert_string_equal(json_string_value(json_object_get(img, "reason")), "ErrImagePull");
    assert_true(json_integer_value(json_object_get(img, "attempts")) >= 2);
    json_decref(n4);
    /* the Job gives up: the node fails naming the last pull error */
    job_finish(id, "node-4", "Failed");
    json_t *t = wait_status(id, "failed");
    assert_int_equal(prog(t, "failedNodes"), 2);
    json_decref(t);
    n4 = node_result(id, "node-4");
    assert_string_equal(json_string_value(json_object_get(n4, "reason")), "BackoffLimitExceeded");
    assert_non_null(strstr(json_string_value(json_object_get(n4, "message")), "connection reset"));
    json_decref(n4);
    free(id);
}

static int set_ready(void *arg, json_t *node)
{
    json_t *c = json_array_get(json_object_get(json_object_get(node, "status"), "conditions"), 0);
    json_object_set_new(c, "status", json_string(arg));
    return 0;
}

static void test_not_ready_recovers_and_deleted(void **state)
{
    (void)state;
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-1\",\"node-2\"]}", false);
    wait_running(id, 2);
    /* node-1 goes NotReady and comes back within the grace: its work goes on */
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-1", set_ready, "False", NULL), 0);
    sleep_ms(300);
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-1", set_ready, "True", NULL), 0);
    /* node-2 goes NotReady and is deleted: its node fails NodeDeleted */
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-2", set_ready, "False", NULL), 0);
    sleep_ms(300);
    assert_int_equal(sim_store_delete(E.sim.store, "nodes", "", "node-2", NULL), 0);
    sleep_ms(2000); /* past the grace period: node-1 recovered, so it must still be running */
    json_t *n1 = node_result(id, "node-1");
    assert_string_equal(json_string_value(json_object_get(n1, "state")), "running");
    json_decref(n1);
    json_t *n2 = node_result(id, "node-2");
    assert_string_equal(json_string_value(json_object_get(n2, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(n2, "reason")), "NodeDeleted");
    json_decref(n2);
    job_finish(id, "node-1", "Complete");
    json_t *t = wait_status(id, "failed"); /* 1 of 2 is below the 0.9 threshold */
    assert_int_equal(prog(t, "succeededNodes"), 1);
    json_decref(t);
    assert_int_equal(sim_store_create(E.sim.store, "nodes", "", node_obj("node-2", "a", true), NULL), 0);
    free(id);
}

static void test_job_deleted_and_deadline(void **state)
{
    (void)state;
    char *id = submit("{\"images\":[\"busybox:1.36\",\"redis:7\"],\"nodeNames\":[\"node-3\",\"node-4\"]}", false);
    wait_running(id, 2);
    /* someone deletes node-3's Job: the node fails JobDeleted */
    char *name = pw_jobspec_name(id, "node-3");
    for (int i = 0; i < 200 && sim_store_delete(E.sim.store, "jobs.batch", "prewarm", name, NULL) != 0; i++)
        sleep_ms(25);
    free(name);
    /* node-4's Job fails with no pull error seen (a deadline during a slow pull): the message names
     * the images not pulled yet */
    job_finish(id, "node-4", "Failed");
    json_t *t = wait_status(id, "failed");
    json_decref(t);
    json_t *n3 = node_result(id, "node-3");
    assert_string_equal(json_string_value(json_object_get(n3, "reason")), "JobDeleted");
    json_decref(n3);
    json_t *n4 = node_result(id, "node-4");
    assert_non_null(strstr(json_string_value(json_object_get(n4, "message")), "not pulled yet: busybox:1.36, redis:7"));
    json_decref(n4);
    free(id);
}

static void test_create_refused(void **state)
{
    (void)state;
    /* without its namespace the API server refuses the Job: the node fails JobCreateFailed */
    json_t *ns = NULL;
    assert_int_equal(sim_store_delete(E.sim.store, "namespaces", "", "prewarm", &ns), 0);
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-1\"]}", false);
    json_t *t = wait_status(id, "failed");
    json_decref(t);
    json_t *n1 = node_result(id, "node-1");
    assert_string_equal(json_string_value(json_object_get(n1, "reason")), "JobCreateFailed");
    assert_non_null(strstr(json_string_value(json_object_get(n1, "message")), "HTTP 404"));
    json_decref(n1);
    json_t *md = json_object_get(ns, "metadata");
    json_object_del(md, "resourceVersion");
    json_object_del(md, "uid");
    assert_int_equal(sim_store_create(E.sim.store, "namespaces", "", ns, NULL), 0);
    free(id);
}

static void test_cancel_running(void **state)
{
    (void)state;
    size_t jobs_before = job_count();
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-1\",\"node-3\"]}", false);
    wait_running(id, 2);
    wait_jobs(jobs_before + 2);
    json_t *t = NULL;
    assert_int_equal(pw_engine_cancel(E.engine, id, &t), 0);
    assert_string_equal(status_of(t), "cancelled");
    assert_int_equal(prog(t, "cancelledNodes"), 2);
    json_decref(t);
    /* the running nodes' Jobs are deleted; a second cancel is a no-op; a finished task is 409 */
    wait_jobs(jobs_before);
    assert_int_equal(pw_engine_cancel(E.engine, id, NULL), 0);
    free(id);
}

/* Sets kubesim's fault rules (POST /sim/v1/faults, docs/kubesim.md); "{}" clears them. */
static void sim_faults(const char *body)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/sim/v1/faults", pw_http_server_port(E.srv));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer tok");
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    fclose(devnull);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    assert_int_equal(code, 200);
}

/* A task cancelled while its Job's create is still on the wire: when the create lands, the engine
 * deletes the Job it no longer wants instead of leaving it behind. */
static void test_cancel_during_create(void **state)
{
    (void)state;
    size_t jobs_before = job_count();
    sim_faults("{\"latencyMs\":800}");
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-4\"]}", false);
    wait_running(id, 1);
    assert_int_equal(pw_engine_cancel(E.engine, id, NULL), 0);
    json_t *t = task_get(id);
    assert_string_equal(status_of(t), "cancelled");
    json_decref(t);
    sim_faults("{}");
    /* the create arrives (the Job exists for a moment), then the engine deletes it */
    for (int i = 0; i < 400 && job_count() == jobs_before; i++)
        sleep_ms(10);
    wait_jobs(jobs_before);
    free(id);
}

static int put_job_of(const char *task, const char *node)
{
    char *name = pw_jobspec_name(task, node);
    json_t *job = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s},s:{s:s}},s:{}}", "apiVersion", "batch/v1", "kind", "Job",
                            "metadata", "name", name, "namespace", "prewarm", "labels", "app.kubernetes.io/managed-by",
                            "prewarm", "prewarm.io/task", task, "annotations", "prewarm.io/node", node, "spec");
    int rc = sim_store_create(E.sim.store, "jobs.batch", "prewarm", job, NULL);
    free(name);
    return rc;
}

/* The Job already exists when the engine's create lands (another replica, or a create whose
 * answer was lost): the 409 AlreadyExists is adoption, and that Job's result is the node's. */
static void test_create_conflict_adopts(void **state)
{
    (void)state;
    size_t jobs_before = job_count();
    sim_faults("{\"latencyMs\":800}");
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-4\"]}", false);
    assert_int_equal(put_job_of(id, "node-4"), 0);
    wait_running(id, 1);
    sim_faults("{}");
    sleep_ms(1200); /* the engine's create has been answered 409 by now */
    assert_int_equal(job_count(), jobs_before + 1);
    job_finish(id, "node-4", "Complete");
    json_t *t = wait_status(id, "succeeded");
    assert_int_equal(prog(t, "succeededNodes"), 1);
    json_decref(t);
    free(id);
}

static int set_images(void *arg, json_t *node)
{
    json_object_set_new(json_object_get(node, "status"), "images",
                        json_pack("[{s:[s,s],s:i}]", "names", "docker.io/library/busybox:1.36", arg, "sizeBytes", 1));
    return 0;
}

static int set_unschedulable(void *arg, json_t *node)
{
    json_object_set_new(node, "spec", json_pack("{s:b}", "unschedulable", arg != NULL));
    return 0;
}

static void test_skip_and_filters(void **state)
{
    (void)state;
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-1", set_images, "busybox:1.36", NULL), 0);
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-2", set_unschedulable, "yes", NULL), 0);
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-3", set_ready, "False", NULL), 0);
    sleep_ms(300);
    /* node-1 holds the image: skipped without a Job; node-2 cordoned and node-3 NotReady are left out;
     * nodeNames that do not exist are named in the message */
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-1\",\"node-2\",\"node-3\","
                      "\"node-99\"]}",
                      false);
    json_t *t = wait_status(id, "succeeded");
    assert_int_equal(prog(t, "totalNodes"), 1);
    assert_int_equal(prog(t, "skippedNodes"), 1);
    assert_non_null(strstr(json_string_value(json_object_get(t, "message")), "node-99"));
    json_decref(t);
    free(id);
    /* with includeUnschedulable and includeNotReady they are selected */
    id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-2\",\"node-3\"],"
                "\"includeUnschedulable\":true,\"includeNotReady\":true}",
                false);
    wait_running(id, 2);
    job_finish(id, "node-2", "Complete");
    job_finish(id, "node-3", "Complete");
    t = wait_status(id, "succeeded");
    assert_int_equal(prog(t, "succeededNodes"), 2);
    json_decref(t);
    free(id);
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-2", set_unschedulable, NULL, NULL), 0);
    assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", "node-3", set_ready, "True", NULL), 0);
}

/* Nodes in odd shapes (a label or image name that is not a string, a condition without a type or
 * status, images without a name list) are read safely: a Ready condition without a status is not
 * Ready, other fields are skipped. And a cancel whose Job delete the API server keeps refusing still
 * cancels the task (the Job is left to finish and its TTL). */
static void test_odd_nodes_and_refused_delete(void **state)
{
    (void)state;
    json_t *odd = json_pack(
        "{s:s,s:s,s:{s:s,s:{s:s,s:i}},s:{},s:{s:[{s:i},{s:s,s:b},{s:s}],s:[{s:[i,s]},{s:s},{}]}}", "apiVersion", "v1",
        "kind", "Node", "metadata", "name", "odd-1", "labels", "zone", "a", "gpu", 4, "spec", "status", "conditions",
        "type", 7, "type", "Ready", "status", 1, "type", "Ready", "images", "names", 5, "redis:7", "names",
        "not-a-list");
    assert_int_equal(sim_store_create(E.sim.store, "nodes", "", odd, NULL), 0);
    sleep_ms(300);
    /* not Ready: left out, so the task has nothing to do */
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"odd-1\"]}", false);
    json_t *t = NULL;
    for (int i = 0; i < 400; i++) {
        t = task_get(id);
        if (pw_task_status_is_final(pw_task_status_of(status_of(t))))
            break;
        json_decref(t);
        t = NULL;
        sleep_ms(25);
    }
    assert_non_null(t);
    assert_int_equal(prog(t, "totalNodes"), 0);
    json_decref(t);
    free(id);
    /* with includeNotReady it is selected (and it holds another image only) */
    size_t jobs_before = job_count();
    id = submit("{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"odd-1\"],\"includeNotReady\":true}", false);
    wait_running(id, 1);
    wait_jobs(jobs_before + 1);
    sim_faults("{\"errors\":[{\"verb\":\"delete\",\"resource\":\"jobs\",\"code\":500,\"rate\":1}]}");
    assert_int_equal(pw_engine_cancel(E.engine, id, &t), 0);
    assert_string_equal(status_of(t), "cancelled");
    json_decref(t);
    sleep_ms(1500); /* the delete's retries run out */
    sim_faults("{}");
    assert_int_equal(job_count(), jobs_before + 1);
    t = task_get(id);
    assert_string_equal(status_of(t), "cancelled");
    json_decref(t);
    /* the Job left behind goes, so the next test's sweep counts only its own */
    char *job = pw_jobspec_name(id, "odd-1");
    json_t *gone = NULL;
    assert_int_equal(sim_store_delete(E.sim.store, "jobs.batch", "prewarm", job, &gone), 0);
    json_decref(gone);
    free(job);
    free(id);
    gone = NULL;
    assert_int_equal(sim_store_delete(E.sim.store, "nodes", "", "odd-1", &gone), 0);
    json_decref(gone);
}

/* A second engine on the same cluster with its own store sweeps, at start, the prewarm Jobs nobody
 * will delete: one of a task it does not know, one of a task its store says finished; the Job of a
 * task still running in its store is adopted instead. */
static void test_startup_sweep(void **state)
{
    (void)state;
    pw_store *st2;
    assert_int_equal(pw_store_open("memory:", &st2, NULL), 0);
    json_t *doc = json_pack("{s:s,s:s,s:[s]}", "id", "t-0000000000s1", "status", "succeeded", "images", "a");
    struct pw_store_task rec = {.id = "t-0000000000s1", .status = "succeeded", .created_ms = 1, .finished_ms = 2,
                                .doc = doc};
    assert_int_equal(pw_store_task_put(st2, &rec), 0);
    json_decref(doc);
    static const char *const tasks[] = {"t-0000000000u1", "t-0000000000s1"};
    size_t before = job_count();
    for (int i = 0; i < 2; i++) {
        char *name = pw_jobspec_name(tasks[i], "node-1");
        json_t *job = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s},s:{s:s}},s:{}}", "apiVersion", "batch/v1", "kind", "Job",
                                "metadata", "name", name, "namespace", "prewarm", "labels",
                                "app.kubernetes.io/managed-by", "prewarm", "prewarm.io/task", tasks[i], "annotations",
                                "prewarm.io/node", "node-1", "spec");
        assert_int_equal(sim_store_create(E.sim.store, "jobs.batch", "prewarm", job, NULL), 0);
        free(name);
    }
    assert_int_equal(job_count(), before + 2);
    pw_engine *e2;
    struct pw_engine_config cfg = {.client = E.client, .store = st2, .namespace_ = "prewarm"};
    assert_int_equal(pw_engine_new(&cfg, &e2), 0);
    assert_int_equal(pw_engine_start(e2), 0);
    wait_jobs(before);
    pw_engine_free(e2);
    pw_store_close(st2);
}

static int set_churn(void *arg, json_t *node)
{
    json_object_set_new(json_object_get(json_object_get(node, "metadata"), "labels"), "churn", json_string(arg));
    return 0;
}

/* Labels whose values change all the time do not grow the node cache's intern table without bound:
 * 6,000 distinct values go through it, it keeps about what the 4 nodes hold now. */
static void test_label_churn_bounded(void **state)
{
    (void)state;
    static const char *const names[] = {"node-1", "node-2", "node-3", "node-4"};
    for (int round = 0; round < 1500; round++)
        for (int i = 0; i < 4; i++) {
            char v[32];
            snprintf(v, sizeof v, "r%d-%d", round, i);
            assert_int_equal(sim_store_mutate(E.sim.store, "nodes", "", names[i], set_churn, v, NULL), 0);
        }
    /* wait for the informer to see the last round (the table holds its values) */
    size_t last = 0;
    for (int i = 0; i < 100; i++) {
        sleep_ms(50);
        size_t n = pw_engine_intern_size(E.engine);
        if (n == last && i > 4)
            break;
        last = n;
    }
    size_t n = pw_engine_intern_size(E.engine);
    assert_true(n > 0);
    assert_true(n <= 4096 + 64);
}

/* Leader election's gate (engine.h may_lead), the last test: it replaces the fixture's engine with one
 * that leads only while `leads` says so. A follower stores creates and dispatches nothing; taking
 * over picks the stored task up and dispatches it; stepping down stops the engine writing (a Job
 * that finishes meanwhile is not recorded); taking over again adopts the running Jobs (no second
 * create) and the task ends succeeded. */
static atomic_bool leads;

static bool test_may_lead(void *arg)
{
    (void)arg;
    return atomic_load(&leads);
}

static void wait_leading(bool want)
{
    for (int i = 0; i < 400 && pw_engine_leading(E.engine) != want; i++)
        sleep_ms(25);
    assert_true(pw_engine_leading(E.engine) == want);
}

static void test_leadership_gate(void **state)
{
    (void)state;
    pw_engine_free(E.engine);
    atomic_store(&leads, false);
    struct pw_engine_config cfg = {.client = E.client, .store = E.store, .namespace_ = "prewarm",
                                   .not_ready_grace_ms = 1500, .may_lead = test_may_lead};
    struct pw_engine_config bad = cfg;
    bad.agent.enabled = true;
    pw_engine *none = NULL;
    assert_int_equal(pw_engine_new(&bad, &none), PW_EINVAL); /* agent mode is refused with it */
    assert_int_equal(pw_engine_new(&cfg, &E.engine), 0);
    assert_int_equal(pw_engine_start(E.engine), 0);
    const char *why;
    for (int i = 0; i < 200 && !pw_engine_ready(E.engine, &why); i++)
        sleep_ms(25);
    assert_true(pw_engine_ready(E.engine, &why)); /* a follower is ready too */
    assert_false(pw_engine_leading(E.engine));
    size_t jobs_before = job_count();
    char *id = submit("{\"images\":[\"busybox:1.36\"],\"labelSelector\":\"zone=b\"}", false);
    sleep_ms(1500);
    json_t *t = task_get(id);
    assert_string_equal(status_of(t), "pending"); /* stored, not run */
    json_decref(t);
    assert_int_equal(job_count(), jobs_before);

    atomic_store(&leads, true);
    pw_engine_wake(E.engine);
    wait_leading(true);
    wait_running(id, 2);
    wait_jobs(jobs_before + 2);

    atomic_store(&leads, false);
    pw_engine_wake(E.engine);
    wait_leading(false);
    job_finish(id, "node-3", "Complete");
    sleep_ms(1000);
    t = task_get(id);
    assert_int_equal(prog(t, "succeededNodes"), 0); /* a follower writes nothing */
    json_decref(t);
    assert_int_equal(job_count(), jobs_before + 2); /* nor deletes the finished node's Job */

    atomic_store(&leads, true);
    pw_engine_wake(E.engine);
    wait_leading(true);
    job_finish(id, "node-4", "Complete");
    t = wait_status(id, "succeeded");
    assert_int_equal(prog(t, "succeededNodes"), 2);
    json_decref(t);
    wait_jobs(jobs_before);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selector_fails_closed),
        cmocka_unit_test(test_select_and_complete),
        cmocka_unit_test(test_pull_failures),
        cmocka_unit_test(test_not_ready_recovers_and_deleted),
        cmocka_unit_test(test_job_deleted_and_deadline),
        cmocka_unit_test(test_create_refused),
        cmocka_unit_test(test_cancel_running),
        cmocka_unit_test(test_cancel_during_create),
        cmocka_unit_test(test_create_conflict_adopts),
        cmocka_unit_test(test_skip_and_filters),
        cmocka_unit_test(test_odd_nodes_and_refused_delete),
        cmocka_unit_test(test_startup_sweep),
        cmocka_unit_test(test_label_churn_bounded),
        cmocka_unit_test(test_leadership_gate), /* last: it replaces the fixture's engine */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
