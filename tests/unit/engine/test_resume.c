/* Unit tests for the engine's resume path with a memory store and no cluster: unfinished tasks in
 * the store are reloaded (spec, node results, counts, failures) at start, finished ones are not, and
 * the reloaded tasks behave (cancel marks their unfinished nodes cancelled and keeps the others). "No
 * cluster" is a client of an API server that never answers, with fake executors (nocluster.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "engine/engine.h"
#include "k8s/k8s.h"
#include "nocluster.h"
#include "store/store.h"

static json_t *node_doc(const char *name, const char *state, const char *img_state, const char *reason)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:n,s:[{s:s,s:s,s:s,s:s,s:i,s:f}]}", "nodeName", name, "state", state,
                     "reason", reason, "message", "", "attempts", 1, "startedAt", "2026-11-27T10:00:00Z",
                     "finishedAt", "images", "image", "busybox:1.36", "state", img_state, "reason", reason,
                     "message", "", "attempts", 1, "durationSeconds", 1.5);
}

static void put(pw_store *s, const char *id, const char *status, json_t *extra_nodes[], size_t n)
{
    json_t *doc = json_pack("{s:s,s:s,s:[s],s:i,s:s,s:s,s:n,s:s,s:[]}", "id", id, "status", status, "images",
                            "busybox:1.36", "batchSize", 2, "strategy", "rolling", "createdAt",
                            "2026-11-27T10:00:00Z", "finishedAt", "startedAt", "2026-11-27T10:00:00Z",
                            "failedNodes");
    struct pw_store_task t = {.id = (char *)id, .status = (char *)status, .created_ms = 1, .doc = doc};
    assert_int_equal(pw_store_task_put(s, &t), 0);
    json_decref(doc);
    for (size_t i = 0; i < n; i++) {
        struct pw_store_node r = {.task_id = (char *)id,
                                  .node_name = (char *)json_string_value(json_object_get(extra_nodes[i], "nodeName")),
                                  .state = (char *)json_string_value(json_object_get(extra_nodes[i], "state")),
                                  .doc = extra_nodes[i]};
        assert_int_equal(pw_store_nodes_put(s, &r, 1), 0);
        json_decref(extra_nodes[i]);
    }
}

static json_int_t prog(const json_t *task, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(task, "progress"), k));
}

static void test_resume(void **state)
{
    (void)state;
    pw_log_set_level(PW_LOG_WARN);
    pw_store *s;
    assert_int_equal(pw_store_open("memory:", &s, NULL), 0);
    json_t *nodes[4] = {
        node_doc("node-1", "succeeded", "succeeded", ""),
        node_doc("node-2", "failed", "failed", "ErrImagePull"),
        node_doc("node-3", "running", "running", ""),
        node_doc("node-4", "pending", "pending", ""),
    };
    put(s, "t-000000000001", "running", nodes, 4);
    put(s, "t-000000000002", "pending", NULL, 0);
    put(s, "t-000000000003", "succeeded", NULL, 0);
    pw_engine *e;
    struct pw_nocluster nc;
    assert_int_equal(pw_nocluster_init(&nc), 0);
    struct pw_engine_config cfg = {.store = s};
    pw_nocluster_apply(&nc, &cfg);
    assert_int_equal(pw_engine_new(&cfg, &e), 0);
    assert_int_equal(pw_engine_start(e), 0);

    json_t *task = NULL;
    assert_int_equal(pw_engine_cancel(e, "t-000000000001", &task), 0);
    assert_string_equal(json_string_value(json_object_get(task, "status")), "cancelled");
    assert_int_equal(prog(task, "totalNodes"), 4);
    assert_int_equal(prog(task, "succeededNodes"), 1);
    assert_int_equal(prog(task, "failedNodes"), 1);
    assert_int_equal(prog(task, "cancelledNodes"), 2);
    assert_int_equal(prog(task, "runningNodes"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(task, "message")), "cancelled"));
    json_decref(task);

    json_t *list = NULL;
    assert_int_equal(pw_engine_list_nodes(e, "t-000000000001", "cancelled", 0, NULL, &list), 0);
    json_t *items = json_object_get(list, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(items, 0), "nodeName")), "node-3");
    const json_t *img = json_array_get(json_object_get(json_array_get(items, 0), "images"), 0);
    assert_string_equal(json_string_value(json_object_get(img, "state")), "cancelled");
    json_decref(list);
    assert_int_equal(pw_engine_list_nodes(e, "t-000000000001", "succeeded", 0, NULL, &list), 0);
    assert_int_equal(json_array_size(json_object_get(list, "items")), 1);
    json_decref(list);

    /* the pending task was reloaded too; the finished one is not cancellable */
    assert_int_equal(pw_engine_cancel(e, "t-000000000002", &task), 0);
    assert_int_equal(prog(task, "totalNodes"), 0);
    json_decref(task);
    assert_int_equal(pw_engine_cancel(e, "t-000000000003", NULL), PW_ECONFLICT);
    assert_int_equal(pw_engine_cancel(e, "t-000000000009", NULL), PW_ENOTFOUND);
    /* cancel is idempotent */
    assert_int_equal(pw_engine_cancel(e, "t-000000000001", &task), 0);
    json_decref(task);
    pw_engine_free(e);
    pw_nocluster_fini(&nc);
    pw_store_close(s);
}

static void test_bad_spec_left_alone(void **state)
{
    (void)state;
    pw_store *s;
    assert_int_equal(pw_store_open("memory:", &s, NULL), 0);
    json_t *doc = json_pack("{s:s,s:s,s:[]}", "id", "t-000000000001", "status", "pending", "images");
    struct pw_store_task t = {.id = "t-000000000001", .status = "pending", .doc = doc};
    assert_int_equal(pw_store_task_put(s, &t), 0);
    json_decref(doc);
    pw_engine *e;
    struct pw_nocluster nc;
    assert_int_equal(pw_nocluster_init(&nc), 0);
    struct pw_engine_config cfg = {.store = s};
    pw_nocluster_apply(&nc, &cfg);
    assert_int_equal(pw_engine_new(&cfg, &e), 0);
    assert_int_equal(pw_engine_start(e), 0);
    /* logged and left in the store as it was */
    json_t *task = NULL;
    assert_int_equal(pw_engine_get_task(e, "t-000000000001", &task), 0);
    assert_string_equal(json_string_value(json_object_get(task, "status")), "pending");
    json_decref(task);
    pw_engine_free(e);
    pw_nocluster_fini(&nc);
    pw_store_close(s);
}

/* A start that fails part-way (the Job informer's path is invalid, after the node informer started)
 * leaves nothing behind: the resumed task is not held in memory (a cancel finds only the store's
 * pending record and writes nothing), no informer runs, and the engine frees cleanly. */
static void test_failed_start_has_no_side_effects(void **state)
{
    (void)state;
    pw_store *s;
    assert_int_equal(pw_store_open("memory:", &s, NULL), 0);
    put(s, "t-000000000002", "pending", NULL, 0);
    /* nothing listens on port 9 of loopback: the node informer keeps retrying, never syncs */
    struct pw_nocluster nc;
    assert_int_equal(pw_nocluster_init(&nc), 0);
    pw_k8s_client *c = nc.client;
    pw_engine *e;
    struct pw_engine_config cfg = {.store = s, .client = c, .namespace_ = "bad?namespace"};
    assert_int_equal(pw_engine_new(&cfg, &e), 0);
    assert_int_equal(pw_engine_start(e), PW_EINVAL);
    assert_int_equal(pw_engine_cancel(e, "t-000000000002", NULL), PW_ECONFLICT);
    struct pw_store_task rec;
    assert_int_equal(pw_store_task_get(s, "t-000000000002", &rec), 0);
    assert_string_equal(rec.status, "pending");
    pw_store_task_fini(&rec);
    const char *why = NULL;
    assert_false(pw_engine_ready(e, &why));
    pw_engine_free(e);
    pw_nocluster_fini(&nc);
    pw_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_bad_spec_left_alone),
        cmocka_unit_test(test_failed_start_has_no_side_effects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
