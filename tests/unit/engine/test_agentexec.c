/* Unit tests for src/engine/agentexec: the agent protocol's executor side, driven through its
 * public calls with a recording report hook: assignments with deterministic ids, results becoming
 * per-image reports, long polls answered on news, cancellation, deadlines, health and inventory,
 * and refused request bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "engine/agentexec.h"

/* ---- the recording hook and answer ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *reports; /* array of {task, node, verdict, images: [{cls, reason, message, final}], reason} */
static json_t *answers; /* array of the answers, in order */

static void on_report(void *arg, const struct pw_exec_report *r)
{
    (void)arg;
    json_t *imgs = json_array();
    for (size_t i = 0; r->images && i < r->n_images; i++)
        json_array_append_new(imgs, json_pack("{s:i, s:s, s:s, s:b}", "cls", r->images[i].cls, "reason",
                                              r->images[i].reason, "message", r->images[i].message, "final",
                                              r->images[i].final));
    pthread_mutex_lock(&mu);
    json_array_append_new(reports, json_pack("{s:s, s:s, s:i, s:o, s:s, s:b}", "task", r->task_id, "node", r->node,
                                             "verdict", r->verdict, "images", imgs, "reason",
                                             r->reason ? r->reason : "", "cite", r->cite_pending));
    pthread_mutex_unlock(&mu);
}

static void on_answer(void *arg, json_t *resp)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    json_array_append_new(answers, resp);
    pthread_mutex_unlock(&mu);
}

static size_t count(json_t *arr)
{
    pthread_mutex_lock(&mu);
    size_t n = json_array_size(arr);
    pthread_mutex_unlock(&mu);
    return n;
}

/* The last element of arr (a new reference). */
static json_t *last(json_t *arr)
{
    pthread_mutex_lock(&mu);
    json_t *v = json_incref(json_array_get(arr, json_array_size(arr) - 1));
    pthread_mutex_unlock(&mu);
    return v;
}

static bool wait_count(json_t *arr, size_t n, int ms)
{
    for (int t = 0; t < ms; t += 10) {
        if (count(arr) >= n)
            return true;
        usleep(10000);
    }
    return count(arr) >= n;
}

static pw_executor *new_exec(int timeout_s, int poll_ms)
{
    reports = json_array();
    answers = json_array();
    struct pw_agentexec_config cfg = {.settings = {.enabled = true, .agent_timeout_s = timeout_s, .poll_ms = poll_ms},
                                      .hooks = {.report = on_report}};
    pw_executor *x = NULL;
    assert_int_equal(pw_agentexec_new(&cfg, &x), 0);
    assert_int_equal(pw_executor_start(x, NULL, 0), 0);
    return x;
}

static void free_exec(pw_executor *x)
{
    pw_executor_free(x);
    json_decref(reports);
    json_decref(answers);
}

static void dispatch(pw_executor *x, const char *task, const char *node, const char *const *images, size_t n,
                     int timeout_s, int64_t started_ms)
{
    struct pw_exec_work w = {.task_id = task, .node = node, .images = images, .n_images = n,
                             .pull_policy = "IfNotPresent", .retries = 2, .timeout_s = timeout_s,
                             .started_ms = started_ms};
    pw_executor_dispatch(x, &w);
}

/* One sync from node with body (JSON text); asserts it is accepted. */
static void sync_ok(pw_executor *x, const char *node, const char *body)
{
    json_error_t e;
    json_t *b = json_loads(body, 0, &e);
    assert_non_null(b);
    struct pw_field_errors errs;
    assert_int_equal(pw_agentexec_sync(x, node, b, on_answer, NULL, &errs), 0);
    json_decref(b);
}

static const char *const IMGS[] = {"reg:5000/a:1", "reg:5000/b:1"};

static void test_assignments_and_results(void **state)
{
    (void)state;
    pw_executor *x = new_exec(60, 5000);
    assert_false(pw_executor_healthy(x, "n1"));
    dispatch(x, "t-1", "n1", IMGS, 2, 600, 0);
    sync_ok(x, "n1", "{\"inventory\":{\"full\":true,\"images\":[\"reg:5000/old:1\"]},\"wait\":true}");
    assert_true(wait_count(answers, 1, 1000)); /* news: answered at once although it may wait */
    json_t *a = last(answers);
    json_t *asg = json_object_get(a, "assignments");
    assert_int_equal(json_array_size(asg), 2);
    char id0[33], id1[33];
    pw_agentexec_assignment_id("t-1", "n1", IMGS[0], id0);
    pw_agentexec_assignment_id("t-1", "n1", IMGS[1], id1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(asg, 0), "id")), id0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(asg, 1), "image")), IMGS[1]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(asg, 0), "task")), "t-1");
    assert_true(json_integer_value(json_object_get(json_array_get(asg, 0), "deadlineUnixMs")) > pw_clock_real_ms());
    assert_false(json_is_true(json_object_get(a, "needFullInventory")));
    json_decref(a);
    assert_true(pw_executor_healthy(x, "n1"));
    /* ids are deterministic and distinct per (task, node, image) */
    char other[33];
    pw_agentexec_assignment_id("t-1", "n2", IMGS[0], other);
    assert_string_not_equal(other, id0);
    /* the inventory serves the selection */
    json_t *inv = pw_executor_inventory(x, "n1");
    assert_int_equal(json_array_size(inv), 1);
    assert_string_equal(json_string_value(json_array_get(inv, 0)), "reg:5000/old:1");
    json_decref(inv);
    assert_null(pw_executor_inventory(x, "n9"));

    /* a succeeded, b pulling: one progress report with both statuses, in the work's order */
    char body[512];
    snprintf(body, sizeof body,
             "{\"assignments\":[{\"id\":\"%s\",\"state\":\"succeeded\",\"attempts\":1},"
             "{\"id\":\"%s\",\"state\":\"pulling\",\"attempts\":1}],\"wait\":false,"
             "\"inventory\":{\"full\":false,\"added\":[\"reg:5000/a:1\"]}}",
             id0, id1);
    sync_ok(x, "n1", body);
    assert_int_equal(count(reports), 1);
    json_t *r = last(reports);
    assert_int_equal(json_integer_value(json_object_get(r, "verdict")), PW_EXEC_PROGRESS);
    json_t *st = json_object_get(r, "images");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(st, 0), "cls")), PW_PULL_DONE);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(st, 1), "cls")), PW_PULL_WAITING);
    json_decref(r);
    /* the same report again changes nothing: no new report */
    sync_ok(x, "n1", body);
    assert_int_equal(count(reports), 1);
    inv = pw_executor_inventory(x, "n1");
    assert_int_equal(json_array_size(inv), 2);
    json_decref(inv);

    /* b fails: a final failure classified from the runtime's message; the work is done */
    snprintf(body, sizeof body,
             "{\"assignments\":[{\"id\":\"%s\",\"state\":\"failed\",\"reason\":\"ErrImagePull\","
             "\"message\":\"failed to resolve reference: not found\",\"attempts\":1}],\"wait\":false}",
             id1);
    sync_ok(x, "n1", body);
    assert_int_equal(count(reports), 2);
    r = last(reports);
    st = json_object_get(r, "images");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(st, 1), "cls")), PW_PULL_FAILED_NOTFOUND);
    assert_true(json_is_true(json_object_get(json_array_get(st, 1), "final")));
    json_decref(r);
    a = last(answers);
    assert_int_equal(json_array_size(json_object_get(a, "assignments")), 0);
    assert_int_equal(json_array_size(json_object_get(a, "cancel")), 0);
    json_decref(a);
    /* a late repeat of a finished work's result is ignored */
    sync_ok(x, "n1", body);
    assert_int_equal(count(reports), 2);
    /* the listing */
    json_t *l = pw_agentexec_list(x);
    json_t *item = json_array_get(json_object_get(l, "items"), 0);
    assert_string_equal(json_string_value(json_object_get(item, "node")), "n1");
    assert_true(json_is_true(json_object_get(item, "healthy")));
    assert_int_equal(json_integer_value(json_object_get(item, "images")), 2);
    json_decref(l);
    free_exec(x);
}

static void test_long_poll_and_cancel(void **state)
{
    (void)state;
    pw_executor *x = new_exec(60, 400);
    sync_ok(x, "n1", "{\"inventory\":{\"full\":true,\"images\":[]}}"); /* nothing to say: held */
    usleep(50000);
    assert_int_equal(count(answers), 0);
    dispatch(x, "t-2", "n1", IMGS, 1, 600, 0); /* news: the held sync hears at once */
    assert_true(wait_count(answers, 1, 1000));
    json_t *a = last(answers);
    assert_int_equal(json_array_size(json_object_get(a, "assignments")), 1);
    char id[33];
    snprintf(id, sizeof id, "%s",
             json_string_value(json_object_get(json_array_get(json_object_get(a, "assignments"), 0), "id")));
    json_decref(a);
    /* the agent holds it (queued): nothing new, so this sync waits, and ends when the wait does */
    char body[256];
    snprintf(body, sizeof body, "{\"assignments\":[{\"id\":\"%s\",\"state\":\"queued\"}]}", id);
    int64_t t0 = pw_clock_mono_ms();
    sync_ok(x, "n1", body);
    assert_true(wait_count(answers, 2, 3000));
    assert_true(pw_clock_mono_ms() - t0 >= 300);
    /* held again; the core cancels the node: the held sync hears the id to stop */
    sync_ok(x, "n1", body);
    usleep(50000);
    assert_int_equal(count(answers), 2);
    pw_executor_cancel(x, "t-2", "n1", false);
    assert_true(wait_count(answers, 3, 1000));
    a = last(answers);
    assert_int_equal(json_array_size(json_object_get(a, "assignments")), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a, "cancel"), 0)), id);
    json_decref(a);
    /* a newer sync replaces a held one: the older one is answered first */
    sync_ok(x, "n1", "{}");
    sync_ok(x, "n1", "{}");
    assert_true(wait_count(answers, 4, 1000));
    free_exec(x); /* answers the one still held */
    (void)0;
}

static void test_deadline_and_health(void **state)
{
    (void)state;
    pw_executor *x = new_exec(1, 5000);
    /* started 10 s ago with a 1 s limit: the timer fails it, citing what is pending */
    dispatch(x, "t-3", "n2", IMGS, 2, 1, pw_clock_real_ms() - 10000);
    assert_true(wait_count(reports, 1, 2000));
    json_t *r = last(reports);
    assert_int_equal(json_integer_value(json_object_get(r, "verdict")), PW_EXEC_FAILED);
    assert_string_equal(json_string_value(json_object_get(r, "reason")), "DeadlineExceeded");
    assert_true(json_is_true(json_object_get(r, "cite")));
    json_decref(r);
    /* health follows the last sync and the agent timeout */
    sync_ok(x, "n2", "{\"wait\":false}");
    assert_true(pw_executor_healthy(x, "n2"));
    usleep(1200000);
    assert_false(pw_executor_healthy(x, "n2"));
    /* an agent that has not sent a full inventory is asked for one */
    json_t *a = last(answers);
    assert_true(json_is_true(json_object_get(a, "needFullInventory")));
    json_decref(a);
    free_exec(x);
}

static void test_refused_bodies(void **state)
{
    (void)state;
    pw_executor *x = new_exec(60, 5000);
    static const struct {
        const char *body, *field;
    } BAD[] = {
        {"[]", "body"},
        {"{\"assignments\":[{\"id\":\"xyz\",\"state\":\"succeeded\"}]}", "assignments[0].id"},
        {"{\"assignments\":[{\"id\":\"0123456789abcdef0123456789abcdef\",\"state\":\"done\"}]}",
         "assignments[0].state"},
        {"{\"assignments\":{}}", "assignments"},
        {"{\"imageFs\":{\"usedBytes\":-1}}", "imageFs.usedBytes"},
        {"{\"inventory\":{\"images\":[1]}}", "inventory.images[0]"},
        {"{\"inventory\":{\"full\":\"yes\"}}", "inventory.full"},
        {"{\"wait\":1}", "wait"},
        {"{\"runtime\":\"containerd\"}", "runtime"},
        {"{\"agentVersion\":7}", "agentVersion"},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        json_t *b = json_loads(BAD[i].body, JSON_DECODE_ANY, NULL);
        struct pw_field_errors errs;
        assert_int_equal(pw_agentexec_sync_validate(b, &errs), PW_EINVAL);
        assert_int_equal(pw_agentexec_sync(x, "n1", b, on_answer, NULL, &errs), PW_EINVAL);
        assert_true(errs.n >= 1);
        assert_string_equal(errs.e[0].field, BAD[i].field);
        json_decref(b);
    }
    /* nothing was recorded: no agent listed, no answer */
    json_t *l = pw_agentexec_list(x);
    assert_int_equal(json_array_size(json_object_get(l, "items")), 0);
    json_decref(l);
    assert_int_equal(count(answers), 0);
    free_exec(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assignments_and_results),
        cmocka_unit_test(test_long_poll_and_cancel),
        cmocka_unit_test(test_deadline_and_health),
        cmocka_unit_test(test_refused_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
