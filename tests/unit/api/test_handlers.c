/* Unit tests for the REST handlers through a real HTTP server on 127.0.0.1:0, with the engine on a
 * memory store and no cluster (tasks stay pending): status codes, the error shape, Location, list
 * order and pagination, filters, cancel (idempotent; the 409 on a finished task is checked over HTTP
 * in tests/integration/prewarmd_basic.py, where tasks can finish), 404/405/413/415, health and
 * readiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "unit/api/apiserver.h"
#include "base/log.h"

struct fixture {
    struct pw_apiserver api; /* on a memory store, no cluster: tasks stay pending */
};

static struct pw_apiserver_resp call(struct fixture *f, const char *method, const char *path, const char *ctype,
                                     const char *body)
{
    return pw_apiserver_call(&f->api, method, path, ctype, body);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    pw_log_set_level(PW_LOG_WARN);
    assert_int_equal(pw_apiserver_start(&f->api, "memory:", 0), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pw_apiserver_stop(&f->api);
    free(f);
    return 0;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void test_health(void **state)
{
    struct fixture *f = *state;
    struct pw_apiserver_resp r = call(f, "GET", "/healthz", NULL, NULL);
    assert_int_equal(r.status, 200);
    json_decref(r.body);
    r = call(f, "GET", "/readyz", NULL, NULL);
    assert_int_equal(r.status, 503); /* no cluster: not ready */
    assert_string_equal(str(r.body, "reason"), "Unavailable");
    json_decref(r.body);
}

static void test_create_get_list_cancel(void **state)
{
    struct fixture *f = *state;
    char ids[3][32];
    for (int i = 0; i < 3; i++) {
        struct pw_apiserver_resp r = call(f, "POST", "/api/v1/tasks", "application/json",
                                          "{\"images\":[\"nginx:1.27\"],\"priority\":3,\"labels\":{\"team\":\"ml\"}}");
        assert_int_equal(r.status, 201);
        snprintf(ids[i], sizeof ids[i], "%s", str(r.body, "id"));
        assert_string_equal(str(r.body, "status"), "pending");
        assert_int_equal(json_integer_value(json_object_get(r.body, "batchSize")), 10);
        assert_int_equal(json_integer_value(json_object_get(r.body, "priority")), 3);
        assert_non_null(json_object_get(r.body, "progress"));
        assert_true(json_is_null(json_object_get(r.body, "finishedAt")));
        char want[160];
        snprintf(want, sizeof want, "/api/v1/tasks/%s", ids[i]);
        assert_string_equal(r.location, want);
        json_decref(r.body);
    }
    char path[128];
    snprintf(path, sizeof path, "/api/v1/tasks/%s", ids[1]);
    struct pw_apiserver_resp r = call(f, "GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.body, "id"), ids[1]);
    json_decref(r.body);

    /* newest first, pages of 2 */
    r = call(f, "GET", "/api/v1/tasks?limit=2", NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.body, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(str(json_array_get(items, 0), "id"), ids[2]);
    assert_string_equal(str(json_array_get(items, 1), "id"), ids[1]);
    char next[128];
    snprintf(path, sizeof path, "/api/v1/tasks?limit=2&continue=%s", str(r.body, "continue"));
    json_decref(r.body);
    r = call(f, "GET", path, NULL, NULL);
    items = json_object_get(r.body, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(str(json_array_get(items, 0), "id"), ids[0]);
    assert_string_equal(str(r.body, "continue"), "");
    json_decref(r.body);
    (void)next;

    /* cancel: 200, again 200 (idempotent), status filter sees it */
    snprintf(path, sizeof path, "/api/v1/tasks/%s", ids[0]);
    r = call(f, "DELETE", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.body, "status"), "cancelled");
    assert_false(json_is_null(json_object_get(r.body, "finishedAt")));
    json_decref(r.body);
    r = call(f, "DELETE", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.body, "status"), "cancelled");
    json_decref(r.body);
    r = call(f, "GET", "/api/v1/tasks?status=cancelled", NULL, NULL);
    items = json_object_get(r.body, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(str(json_array_get(items, 0), "id"), ids[0]);
    json_decref(r.body);
    r = call(f, "GET", "/api/v1/tasks?status=pending", NULL, NULL);
    assert_int_equal(json_array_size(json_object_get(r.body, "items")), 2);
    json_decref(r.body);

    /* nodes of a task with none selected yet: empty list */
    snprintf(path, sizeof path, "/api/v1/tasks/%s/nodes?state=failed", ids[1]);
    r = call(f, "GET", path, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.body, "items")), 0);
    json_decref(r.body);
}

/* A list without ?limit= is one bounded page (500) with a continue token, never every task. */
static void test_default_page(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 505; i++) {
        struct pw_apiserver_resp r =
            call(f, "POST", "/api/v1/tasks", "application/json", "{\"images\":[\"busybox:1.36\"]}");
        assert_int_equal(r.status, 201);
        json_decref(r.body);
    }
    struct pw_apiserver_resp r = call(f, "GET", "/api/v1/tasks", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.body, "items")), 500);
    assert_true(strlen(str(r.body, "continue")) > 0);
    json_decref(r.body);
}

static void test_errors(void **state)
{
    struct fixture *f = *state;
    struct pw_apiserver_resp r =
        call(f, "POST", "/api/v1/tasks", "application/json", "{\"images\":[\"nginx\"],\"retries\":11}");
    assert_int_equal(r.status, 400);
    assert_string_equal(str(r.body, "reason"), "Invalid");
    assert_string_equal(str(json_array_get(json_object_get(r.body, "details"), 0), "field"), "retries");
    json_decref(r.body);
    r = call(f, "POST", "/api/v1/tasks", "text/plain", "{\"images\":[\"nginx\"]}");
    assert_int_equal(r.status, 415);
    assert_string_equal(str(r.body, "reason"), "UnsupportedMediaType");
    json_decref(r.body);
    char *big = malloc((2u << 20) + 1);
    memset(big, 'x', 2u << 20);
    big[2u << 20] = 0;
    r = call(f, "POST", "/api/v1/tasks", "application/json", big);
    free(big);
    assert_int_equal(r.status, 413);
    json_decref(r.body);
    r = call(f, "GET", "/api/v1/tasks/t-nosuchtask00", NULL, NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(str(r.body, "reason"), "NotFound");
    json_decref(r.body);
    r = call(f, "DELETE", "/api/v1/tasks/t-nosuchtask00", NULL, NULL);
    assert_int_equal(r.status, 404);
    json_decref(r.body);
    r = call(f, "GET", "/api/v1/tasks/t-nosuchtask00/nodes", NULL, NULL);
    assert_int_equal(r.status, 404);
    json_decref(r.body);
    r = call(f, "GET", "/api/v1/tasks?status=bogus", NULL, NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(str(json_array_get(json_object_get(r.body, "details"), 0), "field"), "status");
    json_decref(r.body);
    r = call(f, "GET", "/api/v1/tasks?limit=0", NULL, NULL);
    assert_int_equal(r.status, 400);
    json_decref(r.body);
    r = call(f, "GET", "/api/v1/tasks?continue=zzz", NULL, NULL);
    assert_int_equal(r.status, 400);
    json_decref(r.body);
    r = call(f, "PUT", "/api/v1/tasks", "application/json", "{}");
    assert_int_equal(r.status, 405);
    json_decref(r.body);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_get_list_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
