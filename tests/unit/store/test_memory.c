/* Unit tests for the store interface through its memory back end: open/dispatch, task put/get/
 * replace, newest-first listing with status filter and continue tokens, unfinished tasks, node
 * results in name order with state filter and pagination, delete and prune. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "store/store.h"

static void put_task(pw_store *s, const char *id, const char *status, int64_t finished)
{
    json_t *doc = json_pack("{s:s,s:s}", "id", id, "status", status);
    struct pw_store_task t = {.id = (char *)id, .status = (char *)status, .created_ms = 1,
                              .finished_ms = finished, .doc = doc};
    assert_int_equal(pw_store_task_put(s, &t), 0);
    json_decref(doc);
}

static void test_open(void **state)
{
    (void)state;
    pw_store *s = NULL;
    char *err = NULL;
    assert_int_equal(pw_store_open("nosuch:x", &s, &err), PW_EINVAL);
    assert_non_null(strstr(err, "memory:"));
    free(err);
    assert_int_equal(pw_store_open("memory", &s, NULL), PW_EINVAL);
    assert_int_equal(pw_store_open("memory:", &s, NULL), 0);
    pw_store_close(s);
    pw_store_close(NULL);
}

static void test_tasks(void **state)
{
    (void)state;
    pw_store *s;
    assert_int_equal(pw_store_open("memory:", &s, NULL), 0);
    put_task(s, "t-000000000001", "running", 0);
    put_task(s, "t-000000000003", "succeeded", 100);
    put_task(s, "t-000000000002", "pending", 0);
    put_task(s, "t-000000000001", "failed", 50); /* replace */

    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000000000009", &t), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_get(s, "t-000000000001", &t), 0);
    assert_string_equal(t.status, "failed");
    assert_string_equal(json_string_value(json_object_get(t.doc, "status")), "failed");
    assert_int_equal(t.finished_ms, 50);
    pw_store_task_fini(&t);

    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 3);
    assert_null(next);
    assert_string_equal(items[0].id, "t-000000000003"); /* newest first */
    assert_string_equal(items[2].id, "t-000000000001");
    pw_store_tasks_free(items, n);

    /* pages of 2 */
    assert_int_equal(pw_store_task_list(s, NULL, 2, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_non_null(next);
    assert_string_equal(items[1].id, "t-000000000002");
    pw_store_tasks_free(items, n);
    char *tok = next;
    assert_int_equal(pw_store_task_list(s, NULL, 2, tok, &items, &n, &next), 0);
    free(tok);
    assert_int_equal(n, 1);
    assert_null(next);
    assert_string_equal(items[0].id, "t-000000000001");
    pw_store_tasks_free(items, n);
    /* exactly limit items left: no token */
    assert_int_equal(pw_store_task_list(s, NULL, 3, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 3);
    assert_null(next);
    pw_store_tasks_free(items, n);

    assert_int_equal(pw_store_task_list(s, "pending", 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].id, "t-000000000002");
    pw_store_tasks_free(items, n);
    assert_int_equal(pw_store_task_list(s, NULL, 0, "garbage", &items, &n, &next), PW_EINVAL);

    assert_int_equal(pw_store_task_list_unfinished(s, &items, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].id, "t-000000000002");
    pw_store_tasks_free(items, n);

    size_t removed = 0;
    assert_int_equal(pw_store_prune(s, 60, &removed), 0);
    assert_int_equal(removed, 1); /* t-...1 finished at 50; t-...3 at 100 stays */
    assert_int_equal(pw_store_task_get(s, "t-000000000001", &t), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_delete(s, "t-000000000003"), 0);
    assert_int_equal(pw_store_task_delete(s, "t-000000000003"), PW_ENOTFOUND);
    pw_store_close(s);
}

static void test_nodes(void **state)
{
    (void)state;
    pw_store *s;
    assert_int_equal(pw_store_open("memory:", &s, NULL), 0);
    struct pw_store_node orphan = {.task_id = "t-x", .node_name = "n", .state = "pending", .doc = json_object()};
    assert_int_equal(pw_store_nodes_put(s, &orphan, 1), PW_ENOTFOUND);
    json_decref(orphan.doc);
    put_task(s, "t-000000000001", "running", 0);
    struct pw_store_node ns[5];
    char names[5][16];
    const char *states[5] = {"failed", "succeeded", "failed", "running", "failed"};
    for (int i = 0; i < 5; i++) {
        snprintf(names[i], sizeof names[i], "node-%d", 5 - i); /* out of order on purpose */
        ns[i] = (struct pw_store_node){.task_id = "t-000000000001", .node_name = names[i],
                                       .state = (char *)states[i],
                                       .doc = json_pack("{s:s}", "nodeName", names[i])};
    }
    assert_int_equal(pw_store_nodes_put(s, ns, 5), 0);
    /* replace node-2 (index 3): running -> succeeded */
    ns[3].state = "succeeded";
    assert_int_equal(pw_store_nodes_put(s, &ns[3], 1), 0);
    for (int i = 0; i < 5; i++)
        json_decref(ns[i].doc);

    struct pw_store_node *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_nodes_list(s, "t-000000000001", NULL, 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 5);
    assert_string_equal(items[0].node_name, "node-1");
    assert_string_equal(items[4].node_name, "node-5");
    assert_string_equal(items[1].state, "succeeded");
    pw_store_nodes_free(items, n);

    assert_int_equal(pw_store_nodes_list(s, "t-000000000001", "failed", 2, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].node_name, "node-1");
    assert_string_equal(items[1].node_name, "node-3");
    assert_non_null(next);
    pw_store_nodes_free(items, n);
    char *tok = next;
    assert_int_equal(pw_store_nodes_list(s, "t-000000000001", "failed", 2, tok, &items, &n, &next), 0);
    free(tok);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].node_name, "node-5");
    assert_null(next);
    pw_store_nodes_free(items, n);

    assert_int_equal(pw_store_nodes_list(s, "t-nope", NULL, 0, NULL, &items, &n, &next), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_delete(s, "t-000000000001"), 0);
    assert_int_equal(pw_store_nodes_list(s, "t-000000000001", NULL, 0, NULL, &items, &n, &next), PW_ENOTFOUND);
    pw_store_close(s);
}

static void test_final(void **state)
{
    (void)state;
    assert_true(pw_store_status_final("succeeded"));
    assert_true(pw_store_status_final("failed"));
    assert_true(pw_store_status_final("cancelled"));
    assert_false(pw_store_status_final("running"));
    assert_false(pw_store_status_final("pending"));
    assert_false(pw_store_status_final(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_tasks),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_final),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
