/* Unit tests for the REST API and the engine on the "sqlite:" store (a file in a temporary
 * directory) with faults injected through the back end's seam (store/sqlite_fault.h): a create whose
 * store write fails (disk full, a busy database) answers 503 Unavailable and leaves no task behind,
 * neither in the store nor in the engine's memory (which would write it again once the store
 * recovers); the API keeps serving reads; a cancel whose write fails is 503 and a repeat after the
 * store recovers cancels; a bad continue token on a task's nodes is 400 with the
 * field named; retention (history) prunes finished tasks so GET is 404. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "unit/api/apiserver.h"
#include "base/log.h"
#include "store/sqlite_fault.h"

struct fixture {
    char dir[64];
    char url[128];
    struct pw_apiserver api; /* on the sqlite store at url, no cluster: tasks stay pending */
};

/* Every request sends Content-Type application/json. */
static struct pw_apiserver_resp call(struct fixture *f, const char *method, const char *path, const char *body)
{
    return pw_apiserver_call(&f->api, method, path, "application/json", body);
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void start(struct fixture *f, int64_t history_ms)
{
    assert_int_equal(pw_apiserver_start(&f->api, f->url, history_ms), 0);
}

static void stop(struct fixture *f)
{
    pw_apiserver_stop(&f->api);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    pw_log_set_level(PW_LOG_ERROR);
    snprintf(f->dir, sizeof f->dir, "/tmp/pw-faults-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof f->url, "sqlite:%s/prewarm.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pw_store_sqlite_fault_clear();
    stop(f);
    static const char *const files[] = {"prewarm.db", "prewarm.db-wal", "prewarm.db-shm", "prewarm.db-journal"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", f->dir, files[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static size_t n_tasks(struct fixture *f)
{
    struct pw_apiserver_resp r = call(f, "GET", "/api/v1/tasks", NULL);
    assert_int_equal(r.status, 200);
    size_t n = json_array_size(json_object_get(r.body, "items"));
    json_decref(r.body);
    return n;
}

/* One failing create under the fault (point, code): 503 Unavailable, nothing stored, nothing kept. */
static void create_fails(struct fixture *f, enum pw_store_sqlite_fault_point point, int code)
{
    size_t before = n_tasks(f);
    pw_store_sqlite_fault_set(point, 0, -1, code);
    struct pw_apiserver_resp r = call(f, "POST", "/api/v1/tasks", "{\"images\":[\"nginx:1.27\"]}");
    unsigned hits = pw_store_sqlite_fault_hits();
    pw_store_sqlite_fault_clear();
    assert_true(hits > 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(str(r.body, "reason"), "Unavailable");
    assert_int_equal(json_integer_value(json_object_get(r.body, "code")), 503);
    json_decref(r.body);
    /* the engine loop wakes at least every second and writes every task it holds: give it two */
    sleep_ms(2200);
    assert_int_equal(n_tasks(f), before);
}

static void test_create_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    start(f, 0);
    struct pw_apiserver_resp r = call(f, "POST", "/api/v1/tasks", "{\"images\":[\"redis:7\"]}");
    assert_int_equal(r.status, 201);
    char id[32];
    snprintf(id, sizeof id, "%s", str(r.body, "id"));
    json_decref(r.body);
    create_fails(f, PW_STORE_SQLITE_FAULT_WRITE, SQLITE_FULL);      /* disk full */
    create_fails(f, PW_STORE_SQLITE_FAULT_STEP, SQLITE_BUSY);       /* locked by someone else */
    create_fails(f, PW_STORE_SQLITE_FAULT_SYNC, SQLITE_IOERR_FSYNC); /* fsync fails */
    /* whatever the store's error (a document too large, corruption found late), the API says 503:
     * engine error codes are not HTTP statuses */
    create_fails(f, PW_STORE_SQLITE_FAULT_STEP, SQLITE_TOOBIG);
    create_fails(f, PW_STORE_SQLITE_FAULT_STEP, SQLITE_CORRUPT);
    assert_int_equal(n_tasks(f), 1);
    /* after the faults, creates work again and the first task is intact */
    r = call(f, "POST", "/api/v1/tasks", "{\"images\":[\"nginx:1.27\"]}");
    assert_int_equal(r.status, 201);
    json_decref(r.body);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/tasks/%s", id);
    r = call(f, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.body, "images"), 0)), "redis:7");
    json_decref(r.body);
    /* and after a restart on the same file, exactly the two acknowledged tasks exist */
    stop(f);
    start(f, 0);
    assert_int_equal(n_tasks(f), 2);
}

/* A cancel whose write fails is 503; repeated once the store is back it answers cancelled, and
 * the cancel is what a restart finds. */
static void test_cancel_under_fault(void **state)
{
    struct fixture *f = *state;
    start(f, 0);
    struct pw_apiserver_resp r = call(f, "POST", "/api/v1/tasks", "{\"images\":[\"nginx:1.27\"]}");
    assert_int_equal(r.status, 201);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/tasks/%s", str(r.body, "id"));
    json_decref(r.body);
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_WRITE, 0, -1, SQLITE_IOERR_WRITE);
    r = call(f, "DELETE", path, NULL);
    pw_store_sqlite_fault_clear();
    assert_int_equal(r.status, 503);
    assert_string_equal(str(r.body, "reason"), "Unavailable");
    json_decref(r.body);
    r = call(f, "DELETE", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.body, "status"), "cancelled");
    json_decref(r.body);
    stop(f);
    start(f, 0);
    r = call(f, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.body, "status"), "cancelled");
    json_decref(r.body);
}

static void test_nodes_bad_token(void **state)
{
    struct fixture *f = *state;
    start(f, 0);
    struct pw_apiserver_resp r = call(f, "POST", "/api/v1/tasks", "{\"images\":[\"nginx:1.27\"]}");
    assert_int_equal(r.status, 201);
    char path[256];
    snprintf(path, sizeof path, "/api/v1/tasks/%s/nodes?continue=garbage", str(r.body, "id"));
    json_decref(r.body);
    r = call(f, "GET", path, NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(str(r.body, "reason"), "Invalid");
    assert_string_equal(str(r.body, "message"), "continue: invalid token");
    assert_string_equal(str(json_array_get(json_object_get(r.body, "details"), 0), "field"), "continue");
    json_decref(r.body);
}

/* Retention: a cancelled (finished) task is pruned once older than the history; GET is then 404. */
static void test_history_prunes(void **state)
{
    struct fixture *f = *state;
    start(f, 1000);
    struct pw_apiserver_resp r = call(f, "POST", "/api/v1/tasks", "{\"images\":[\"nginx:1.27\"]}");
    assert_int_equal(r.status, 201);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/tasks/%s", str(r.body, "id"));
    json_decref(r.body);
    r = call(f, "POST", "/api/v1/tasks", "{\"images\":[\"redis:7\"]}");
    assert_int_equal(r.status, 201);
    char pending[128];
    snprintf(pending, sizeof pending, "/api/v1/tasks/%s", str(r.body, "id"));
    json_decref(r.body);
    r = call(f, "DELETE", path, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.body, "status"), "cancelled");
    json_decref(r.body);
    r = call(f, "GET", path, NULL);
    assert_int_equal(r.status, 200);
    json_decref(r.body);
    long gone = 0;
    for (int i = 0; i < 60 && gone != 404; i++) {
        sleep_ms(100);
        r = call(f, "GET", path, NULL);
        gone = r.status;
        json_decref(r.body);
    }
    assert_int_equal(gone, 404);
    /* an unfinished task is never pruned */
    r = call(f, "GET", pending, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(str(r.body, "status"), "pending");
    json_decref(r.body);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_under_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nodes_bad_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_prunes, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
