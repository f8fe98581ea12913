/* Unit tests for the policy controller's decisions (policy/policy.h), driven round by round with
 * pw_policy_tick over a fake env (a node table, a task log, an untaint log) and the memory store:
 * nodes that join together share one wave after the coalescing window, NotReady and cordoned nodes
 * wait, labels moving in and out warm and forget, a failed wave is tried again, the startup taint
 * goes only after the node's wave succeeded, a predictor's images split nodes into tasks by image
 * set, and a new controller on the same store resumes the policies with their progress. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/mem.h"
#include "policy/policy.h"
#include "store/store.h"

struct fake {
    json_t *nodes;   /* name -> trimmed node */
    json_t *tasks;   /* submitted task specs (as JSON), in order */
    json_t *results; /* task id -> {"status", "items": [node results]} */
    json_t *untaints; /* ["node/key"] */
    bool synced;
    atomic_long synced_calls; /* how often the controller asked */
    int seq;
};

static int f_submit(void *arg, struct pw_taskspec *spec, json_t **out)
{
    struct fake *f = arg;
    json_t *t = pw_taskspec_to_json(spec);
    char id[16];
    snprintf(id, sizeof id, "t-%012d", ++f->seq);
    json_object_set_new(t, "id", json_string(id));
    json_object_set_new(t, "policy", json_string(spec->policy));
    json_array_append(f->tasks, t);
    json_object_set_new(f->results, id, json_pack("{s:s, s:[]}", "status", "running", "items"));
    *out = t;
    return 0;
}

static int f_task_nodes(void *arg, const char *id, json_t **out)
{
    struct fake *f = arg;
    json_t *r = json_object_get(f->results, id);
    if (!r)
        return PW_ENOTFOUND;
    *out = json_pack("{s:O}", "items", json_object_get(r, "items"));
    return 0;
}

static int f_task_get(void *arg, const char *id, json_t **out)
{
    struct fake *f = arg;
    json_t *r = json_object_get(f->results, id);
    if (!r)
        return PW_ENOTFOUND;
    *out = json_pack("{s:s, s:O}", "id", id, "status", json_object_get(r, "status"));
    return 0;
}

static void f_node_each(void *arg, int (*fn)(void *, const json_t *), void *fnarg)
{
    struct fake *f = arg;
    const char *k;
    json_t *n;
    json_object_foreach(f->nodes, k, n) if (fn(fnarg, n)) break;
}

static json_t *f_node_get(void *arg, const char *name)
{
    struct fake *f = arg;
    return json_incref(json_object_get(f->nodes, name));
}

static bool f_synced(void *arg)
{
    struct fake *f = arg;
    atomic_fetch_add(&f->synced_calls, 1);
    return f->synced;
}

static int f_untaint(void *arg, const char *node, const char *key, char **why)
{
    (void)why;
    struct fake *f = arg;
    char *s = pw_xasprintf("%s/%s", node, key);
    json_array_append_new(f->untaints, json_string(s));
    free(s);
    return 0;
}

static struct fake *fake_new(void)
{
    struct fake *f = pw_xcalloc(1, sizeof *f);
    f->nodes = json_object();
    f->tasks = json_array();
    f->results = json_object();
    f->untaints = json_array();
    f->synced = true;
    return f;
}

static void fake_free(struct fake *f)
{
    json_decref(f->nodes);
    json_decref(f->tasks);
    json_decref(f->results);
    json_decref(f->untaints);
    free(f);
}

/* A node with pool=pool, Ready or not, cordoned or not. */
static void node_put(pw_policy *pc, struct fake *f, const char *name, const char *pool, bool ready, bool cordoned)
{
    json_t *n = json_pack("{s:{s:s, s:{s:s}}, s:{s:[{s:s, s:s}]}}", "metadata", "name", name, "labels", "pool", pool,
                          "status", "conditions", "type", "Ready", "status", ready ? "True" : "False");
    if (cordoned)
        json_object_set_new(n, "spec", json_pack("{s:b}", "unschedulable", 1));
    json_object_set_new(f->nodes, name, n);
    pw_policy_node_event(pc, PW_K8S_MODIFIED, n, NULL);
}

static void node_del(pw_policy *pc, struct fake *f, const char *name)
{
    json_t *n = json_incref(json_object_get(f->nodes, name));
    json_object_del(f->nodes, name);
    pw_policy_node_event(pc, PW_K8S_DELETED, n, NULL);
    json_decref(n);
}

/* The engine reports node of task id in state (and, final, the task's end). */
static void report(pw_policy *pc, struct fake *f, const char *id, const char *node, const char *state, bool final)
{
    json_t *r = json_object_get(f->results, id);
    json_t *nr = json_pack("{s:s, s:s}", "nodeName", node, "state", state);
    json_array_append(json_object_get(r, "items"), nr);
    pw_policy_observe(pc, PW_ENGINE_NODE_DONE, id, nr);
    json_decref(nr);
    if (final) {
        json_object_set_new(r, "status", json_string("succeeded"));
        json_t *t = json_pack("{s:s, s:s, s:s}", "id", id, "status", "succeeded", "policy", "any");
        pw_policy_observe(pc, PW_ENGINE_TASK_CHANGED, id, t);
        json_decref(t);
    }
}

static json_t *status_of(pw_policy *pc, const char *name)
{
    json_t *p = NULL;
    assert_int_equal(pw_policy_get(pc, name, &p), 0);
    json_t *st = json_incref(json_object_get(p, "status"));
    json_decref(p);
    return st;
}

static json_int_t stat_of(pw_policy *pc, const char *name, const char *key)
{
    json_t *st = status_of(pc, name);
    json_int_t v = json_integer_value(json_object_get(st, key));
    json_decref(st);
    return v;
}

static pw_policy *controller(pw_store *store, struct fake *f, struct pw_policy_env *env)
{
    *env = (struct pw_policy_env){f_submit, f_task_nodes, f_task_get, f_node_each, f_node_get, f_synced, f_untaint, f};
    struct pw_policy_config cfg = {.store = store, .env = env, .coalesce_ms = 500, .retry_ms = 1, .rescan_ms = 1000000};
    pw_policy *pc = NULL;
    assert_int_equal(pw_policy_new(&cfg, &pc), 0);
    return pc;
}

static void create(pw_policy *pc, const char *body)
{
    json_t *req = json_loads(body, 0, NULL);
    struct pw_field_errors errs;
    json_t *out = NULL;
    int rc = pw_policy_create(pc, req, &errs, &out);
    if (rc != 0)
        fprintf(stderr, "create: %s: %s\n", errs.e[0].field, errs.e[0].message);
    assert_int_equal(rc, 0);
    json_decref(out);
    json_decref(req);
}

static const char *task_field(struct fake *f, size_t i, const char *key)
{
    return json_string_value(json_object_get(json_array_get(f->tasks, i), key));
}

static size_t task_nodes_n(struct fake *f, size_t i)
{
    return json_array_size(json_object_get(json_array_get(f->tasks, i), "nodeNames"));
}

/* What each test runs on: the memory store, the fake env and a controller over both. */
struct world {
    pw_store *store;
    struct fake *f;
    struct pw_policy_env env;
    pw_policy *pc;
};

static int setup(void **state)
{
    struct world *w = pw_xcalloc(1, sizeof *w);
    assert_int_equal(pw_store_open("memory:", &w->store, NULL), 0);
    w->f = fake_new();
    w->pc = controller(w->store, w->f, &w->env);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    pw_policy_free(w->pc);
    fake_free(w->f);
    pw_store_close(w->store);
    free(w);
    return 0;
}

static void test_join_coalesce_and_wait(void **state)
{
    struct world *w = *state;
    struct fake *f = w->f;
    pw_policy *pc = w->pc;
    create(pc, "{\"name\":\"web\",\"images\":[\"nginx:1.27\"],\"nodeSelector\":{\"pool\":\"web\"},"
               "\"untaintWhenDone\":\"prewarm.io/warming\"}");
    node_put(pc, f, "a", "web", true, false);
    node_put(pc, f, "b", "web", true, false);
    node_put(pc, f, "c", "db", true, false);        /* not selected */
    node_put(pc, f, "d", "web", false, false);      /* not Ready yet */
    node_put(pc, f, "e", "web", true, true);        /* cordoned */
    pw_policy_tick(pc, 1000);
    assert_int_equal(json_array_size(f->tasks), 0); /* within the coalescing window */
    assert_int_equal(stat_of(pc, "web", "matchingNodes"), 4);
    assert_int_equal(stat_of(pc, "web", "pendingNodes"), 4);
    pw_policy_tick(pc, 1400);
    assert_int_equal(json_array_size(f->tasks), 0);
    pw_policy_tick(pc, 1500);
    assert_int_equal(json_array_size(f->tasks), 1); /* a and b together, once */
    assert_int_equal(task_nodes_n(f, 0), 2);
    assert_string_equal(task_field(f, 0, "policy"), "web");
    assert_string_equal(task_field(f, 0, "pullPolicy"), "IfNotPresent");
    assert_int_equal(stat_of(pc, "web", "inflightNodes"), 2);
    pw_policy_tick(pc, 3000);
    assert_int_equal(json_array_size(f->tasks), 1); /* nothing twice */
    /* no taint removed before the images are in */
    assert_int_equal(json_array_size(f->untaints), 0);
    const char *id = task_field(f, 0, "id");
    report(pc, f, id, "a", "succeeded", false);
    pw_policy_tick(pc, 3100);
    assert_int_equal(stat_of(pc, "web", "warmNodes"), 1);
    assert_int_equal(json_array_size(f->untaints), 1);
    assert_string_equal(json_string_value(json_array_get(f->untaints, 0)), "a/prewarm.io/warming");
    /* b fails: tried again (retry 1 ms), alone */
    report(pc, f, id, "b", "failed", true);
    pw_policy_tick(pc, 3200);
    assert_int_equal(json_array_size(f->untaints), 1); /* no untaint for a failed node */
    assert_int_equal(stat_of(pc, "web", "failedNodes"), 1);
    /* d becomes Ready: joins b's retry after the window */
    node_put(pc, f, "d", "web", true, false);
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pw_policy_tick(pc, 3300);
    pw_policy_tick(pc, 3900);
    assert_int_equal(json_array_size(f->tasks), 2);
    assert_int_equal(task_nodes_n(f, 1), 2);
    /* the cordoned node waits */
    json_t *st = status_of(pc, "web");
    assert_int_equal(json_integer_value(json_object_get(st, "pendingNodes")), 1);
    assert_string_equal(json_string_value(json_object_get(st, "currentTask")), task_field(f, 1, "id"));
    json_decref(st);
    w->pc = pc;
}

static void test_labels_in_and_out(void **state)
{
    struct world *w = *state;
    struct fake *f = w->f;
    pw_policy *pc = w->pc;
    node_put(pc, f, "a", "web", true, false);
    node_put(pc, f, "b", "db", true, false);
    create(pc, "{\"name\":\"web\",\"images\":[\"nginx:1.27\"],\"nodeSelector\":{\"pool\":\"web\"}}");
    pw_policy_tick(pc, 0);
    pw_policy_tick(pc, 600);
    assert_int_equal(json_array_size(f->tasks), 1);
    report(pc, f, task_field(f, 0, "id"), "a", "skipped", true); /* it had the image: warm too */
    pw_policy_tick(pc, 700);
    assert_int_equal(stat_of(pc, "web", "warmNodes"), 1);
    /* b's labels change into the selector: warmed; a's out of it: forgotten */
    node_put(pc, f, "b", "web", true, false);
    node_put(pc, f, "a", "db", true, false);
    pw_policy_tick(pc, 800);
    assert_int_equal(stat_of(pc, "web", "matchingNodes"), 1);
    assert_int_equal(stat_of(pc, "web", "warmNodes"), 0);
    pw_policy_tick(pc, 1400);
    assert_int_equal(json_array_size(f->tasks), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(json_array_get(f->tasks, 1), "nodeNames"), 0)),
                        "b");
    node_del(pc, f, "b");
    pw_policy_tick(pc, 1500);
    assert_int_equal(stat_of(pc, "web", "matchingNodes"), 0);
    /* a disabled policy decides nothing */
    json_t *req = json_loads("{\"images\":[\"nginx:1.27\"],\"nodeSelector\":{\"pool\":\"db\"},\"enabled\":false}", 0, NULL);
    struct pw_field_errors errs;
    json_t *out = NULL;
    assert_int_equal(pw_policy_update(pc, "web", req, &errs, &out), 0);
    json_decref(out);
    json_decref(req);
    pw_policy_tick(pc, 2000);
    pw_policy_tick(pc, 3000);
    assert_int_equal(stat_of(pc, "web", "matchingNodes"), 1);
    assert_int_equal(json_array_size(f->tasks), 2);
    w->pc = pc;
}

/* A predictor: gpu nodes get pytorch, the others nothing. */
static json_t *images_for(void *ud, const json_t *predict, const char *node, const json_t *labels)
{
    (void)predict;
    (void)node;
    (*(int *)ud)++;
    const char *pool = json_string_value(json_object_get(labels, "pool"));
    return pool && strcmp(pool, "gpu") == 0 ? json_pack("[s]", "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime")
                                            : json_array();
}

static int check_ok(void *ud, const json_t *predict, char **field, char **msg)
{
    (void)ud;
    (void)predict;
    (void)field;
    (void)msg;
    return 0;
}

static void test_predictor_groups(void **state)
{
    struct world *w = *state;
    struct fake *f = w->f;
    pw_policy *pc = w->pc;
    int calls = 0;
    struct pw_policy_predictor pred = {check_ok, images_for, &calls};
    pw_policy_set_predictor(pc, &pred);
    create(pc, "{\"name\":\"all\",\"images\":[\"busybox:1.36\"],\"predict\":{\"minProbability\":0.1}}");
    create(pc, "{\"name\":\"only\",\"predict\":{},\"labelSelector\":\"pool=cpu\"}");
    node_put(pc, f, "g1", "gpu", true, false);
    node_put(pc, f, "g2", "gpu", true, false);
    node_put(pc, f, "c1", "cpu", true, false);
    pw_policy_tick(pc, 0);
    pw_policy_tick(pc, 600);
    /* "all": one task for the gpu nodes (busybox + pytorch), one for c1 (busybox); "only": none */
    assert_int_equal(json_array_size(f->tasks), 2);
    assert_int_equal(calls, 4);
    size_t gpu = task_nodes_n(f, 0) == 2 ? 0 : 1;
    assert_int_equal(json_array_size(json_object_get(json_array_get(f->tasks, gpu), "images")), 2);
    assert_int_equal(json_array_size(json_object_get(json_array_get(f->tasks, 1 - gpu), "images")), 1);
    assert_int_equal(stat_of(pc, "only", "warmNodes"), 1); /* nothing predicted: nothing to pull */
    w->pc = pc;
}

static void test_restart_keeps_progress(void **state)
{
    struct world *w = *state;
    struct fake *f = w->f;
    pw_policy *pc = w->pc;
    create(pc, "{\"name\":\"web\",\"images\":[\"nginx:1.27\"],\"nodeSelector\":{\"pool\":\"web\"}}");
    node_put(pc, f, "a", "web", true, false);
    node_put(pc, f, "b", "web", true, false);
    pw_policy_tick(pc, 0);
    pw_policy_tick(pc, 600);
    const char *id = task_field(f, 0, "id");
    report(pc, f, id, "a", "succeeded", false);
    pw_policy_tick(pc, 1700); /* a round writes the progress (at most once a second) */
    pw_policy_free(pc);
    w->pc = NULL;
    /* b finished while the controller was down */
    json_array_append_new(json_object_get(json_object_get(f->results, id), "items"),
                          json_pack("{s:s, s:s}", "nodeName", "b", "state", "succeeded"));
    json_object_set_new(json_object_get(f->results, id), "status", json_string("succeeded"));
    f->synced = false; /* the thread's rounds wait while the test looks */
    pc = controller(w->store, f, &w->env);
    assert_int_equal(pw_policy_start(pc), 0);
    pw_policy_stop(pc);
    assert_int_equal(stat_of(pc, "web", "warmNodes"), 1);
    f->synced = true;
    pw_policy_tick(pc, 100000);
    assert_int_equal(stat_of(pc, "web", "warmNodes"), 2);
    assert_int_equal(json_array_size(f->tasks), 1); /* nothing warmed twice */
    json_t *st = status_of(pc, "web");
    assert_int_equal(json_array_size(json_object_get(st, "activeTasks")), 0);
    json_decref(st);
    assert_int_equal(pw_policy_delete(pc, "web"), 0);
    assert_int_equal(pw_policy_delete(pc, "web"), PW_ENOTFOUND);
    json_t *doc = NULL;
    assert_int_equal(pw_store_rec_get(w->store, "policy-state", "web", &doc), PW_ENOTFOUND);
    w->pc = pc;
}

/* While the nodes are not synced (a follower), queued node events wait for a round: the thread sleeps
 * between rounds instead of going again at once because the queue is not empty. */
static void test_unsynced_rounds_wait(void **state)
{
    struct world *w = *state;
    struct fake *f = w->f;
    pw_policy *pc = w->pc;
    create(pc, "{\"name\":\"web\",\"images\":[\"nginx:1.27\"],\"nodeSelector\":{\"pool\":\"web\"}}");
    f->synced = false;
    node_put(pc, f, "a", "web", true, false);
    atomic_store(&f->synced_calls, 0);
    assert_int_equal(pw_policy_start(pc), 0);
    struct timespec ts = {0, 500 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pw_policy_stop(pc);
    long calls = atomic_load(&f->synced_calls);
    /* one round per 200 ms tick is 3 or 4 in half a second; a spinning thread makes millions */
    if (calls > 50)
        fail_msg("%ld rounds in 0.5 s while unsynced: the thread does not wait", calls);
    assert_int_equal(json_array_size(f->tasks), 0); /* and it decided nothing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_coalesce_and_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_in_and_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_predictor_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_rounds_wait, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
