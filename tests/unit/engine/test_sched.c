/* Unit tests for the scheduler (sched.h) and the outcome logic (outcome.h), with no cluster:
 * rolling windows, batch after batch with a pause, the global cap, priority then FIFO, the running-task
 * cap; thresholds, counts, percentages and operator messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/outcome.h"
#include "engine/sched.h"

static struct pw_sched_task mk(int prio, uint64_t seq, size_t pending, size_t batch, bool batch_strategy)
{
    struct pw_sched_task t = {0};
    t.priority = prio;
    t.seq = seq;
    t.pending = pending;
    t.batch_size = batch;
    t.batch_strategy = batch_strategy;
    return t;
}

/* Simulates dispatching the grants: pending -> in flight. */
static void apply(struct pw_sched_task *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        t[i].pending -= t[i].grant;
        t[i].in_flight += t[i].grant;
    }
}

static void test_rolling_window(void **state)
{
    (void)state;
    struct pw_sched_limits lim = {.max_in_flight = 0, .max_running_tasks = 0};
    struct pw_sched_task t = mk(0, 1, 25, 10, false);
    pw_sched_plan(&t, 1, &lim, 0);
    assert_true(t.admitted_now);
    assert_int_equal(t.grant, 10);
    apply(&t, 1);
    pw_sched_plan(&t, 1, &lim, 0);
    assert_false(t.admitted_now);
    assert_int_equal(t.grant, 0); /* window full */
    t.in_flight -= 3;             /* three finish: three more start at once */
    pw_sched_plan(&t, 1, &lim, 0);
    assert_int_equal(t.grant, 3);
    apply(&t, 1);
    t.in_flight = 0; /* all finish: 12 pending, window 10 */
    pw_sched_plan(&t, 1, &lim, 0);
    assert_int_equal(t.grant, 10);
    apply(&t, 1);
    t.in_flight = 0;
    pw_sched_plan(&t, 1, &lim, 0);
    assert_int_equal(t.grant, 2); /* never more than pending */
}

static void test_batch_with_pause(void **state)
{
    (void)state;
    struct pw_sched_limits lim = {.batch_pause_ms = 2000};
    struct pw_sched_task t = mk(0, 1, 25, 10, true);
    assert_int_equal(pw_sched_plan(&t, 1, &lim, 1000), 0);
    assert_int_equal(t.grant, 10); /* first batch at once */
    apply(&t, 1);
    t.in_flight = 4; /* 6 finished: batch does not refill */
    pw_sched_plan(&t, 1, &lim, 1100);
    assert_int_equal(t.grant, 0);
    t.in_flight = 0; /* batch done at 1200: the pause starts */
    int64_t wake = pw_sched_plan(&t, 1, &lim, 1200);
    assert_int_equal(t.grant, 0);
    assert_int_equal(wake, 3200);
    assert_int_equal(pw_sched_plan(&t, 1, &lim, 3199), 3200);
    assert_int_equal(t.grant, 0);
    pw_sched_plan(&t, 1, &lim, 3200);
    assert_int_equal(t.grant, 10);
    apply(&t, 1);
    t.in_flight = 0;
    pw_sched_plan(&t, 1, &lim, 4000);
    assert_int_equal(t.grant, 0);
    pw_sched_plan(&t, 1, &lim, 6000);
    assert_int_equal(t.grant, 5); /* the last, short batch */
}

static void test_batch_under_global_cap(void **state)
{
    (void)state;
    struct pw_sched_limits lim = {.max_in_flight = 4, .batch_pause_ms = 0};
    struct pw_sched_task t = mk(0, 1, 10, 6, true);
    pw_sched_plan(&t, 1, &lim, 0);
    assert_int_equal(t.grant, 4);
    apply(&t, 1);
    t.in_flight = 2; /* room for 2: the batch's last 2 */
    pw_sched_plan(&t, 1, &lim, 0);
    assert_int_equal(t.grant, 2);
    apply(&t, 1);
    t.in_flight = 1; /* batch not finished: nothing new */
    pw_sched_plan(&t, 1, &lim, 0);
    assert_int_equal(t.grant, 0);
    t.in_flight = 0;
    pw_sched_plan(&t, 1, &lim, 0);
    assert_int_equal(t.grant, 4); /* next batch: min(6, pending 4) */
}

static void test_global_cap_priority_fifo(void **state)
{
    (void)state;
    struct pw_sched_limits lim = {.max_in_flight = 15};
    struct pw_sched_task t[3] = {
        mk(0, 1, 100, 10, false),  /* old, low priority */
        mk(5, 3, 100, 10, false),  /* high priority, newer */
        mk(5, 2, 100, 10, false),  /* high priority, older */
    };
    pw_sched_plan(t, 3, &lim, 0);
    assert_int_equal(t[2].grant, 10); /* priority 5, first in */
    assert_int_equal(t[1].grant, 5);  /* priority 5, next: the rest of the cap */
    assert_int_equal(t[0].grant, 0);
    apply(t, 3);
    t[2].in_flight -= 4; /* 4 slots free: the higher priority task gets them, not the old one */
    pw_sched_plan(t, 3, &lim, 0);
    assert_int_equal(t[2].grant, 4);
    assert_int_equal(t[1].grant, 0);
    assert_int_equal(t[0].grant, 0);
    apply(t, 3);
    /* high-priority tasks finish: the low one gets the whole cap up to its window */
    t[1].pending = t[2].pending = 0;
    t[1].in_flight = t[2].in_flight = 0;
    pw_sched_plan(t, 3, &lim, 0);
    assert_int_equal(t[0].grant, 10);
}

static void test_running_cap(void **state)
{
    (void)state;
    struct pw_sched_limits lim = {.max_running_tasks = 2};
    struct pw_sched_task t[4] = {
        mk(0, 1, 5, 10, false),
        mk(0, 2, 5, 10, false),
        mk(1, 3, 5, 10, false),
        mk(0, 4, 5, 10, false),
    };
    pw_sched_plan(t, 4, &lim, 0);
    assert_true(t[2].running); /* priority first */
    assert_true(t[0].running); /* then FIFO */
    assert_false(t[1].running);
    assert_false(t[3].running);
    assert_int_equal(t[1].grant, 0);
    assert_int_equal(t[0].grant, 5);
    /* no re-admission while both run */
    pw_sched_plan(t, 4, &lim, 0);
    assert_false(t[0].admitted_now);
    assert_false(t[1].running);
    /* t[0] finishes: the caller removes it; next in FIFO is admitted */
    struct pw_sched_task rest[3] = {t[1], t[2], t[3]};
    pw_sched_plan(rest, 3, &lim, 0);
    assert_true(rest[0].admitted_now);
    assert_false(rest[2].running);
}

static void test_outcome_threshold(void **state)
{
    (void)state;
    struct pw_outcome_counts c = {.total = 10, .succeeded = 9, .failed = 1};
    assert_int_equal(pw_outcome_status(&c, 0.9), PW_TASK_SUCCEEDED);
    c.succeeded = 8;
    c.failed = 2;
    assert_int_equal(pw_outcome_status(&c, 0.9), PW_TASK_FAILED);
    c.skipped = 1; /* 8 / (10 - 1) = 0.889 */
    c.failed = 1;
    assert_int_equal(pw_outcome_status(&c, 0.9), PW_TASK_FAILED);
    c.succeeded = 9;
    c.total = 11; /* 9 / 10 */
    assert_int_equal(pw_outcome_status(&c, 0.9), PW_TASK_SUCCEEDED);
    struct pw_outcome_counts zero = {0};
    assert_int_equal(pw_outcome_status(&zero, 1.0), PW_TASK_SUCCEEDED);
    struct pw_outcome_counts all_skipped = {.total = 4, .skipped = 4};
    assert_int_equal(pw_outcome_status(&all_skipped, 1.0), PW_TASK_SUCCEEDED);
    struct pw_outcome_counts none = {.total = 3, .failed = 3};
    assert_int_equal(pw_outcome_status(&none, 0.0), PW_TASK_SUCCEEDED);
    assert_int_equal(pw_outcome_status(&none, 0.01), PW_TASK_FAILED);
    struct pw_outcome_counts one = {.total = 3, .succeeded = 3};
    assert_int_equal(pw_outcome_status(&one, 1.0), PW_TASK_SUCCEEDED);
}

/* The hint follows the classification while the kubelet's reason word stays; a long message keeps
 * its end (the cause). */
static void test_outcome_hint_and_long_message(void **state)
{
    (void)state;
    struct pw_outcome_reasons rs = {0};
    char msg[2000];
    memset(msg, 'x', sizeof msg);
    memcpy(msg, "rpc error: ", 11);
    snprintf(msg + sizeof msg - 40, 40, "%s", ": 401 Unauthorized");
    pw_outcome_add_failure_hint(&rs, "ErrImagePull", "ImagePullUnauthorized", "node-1", "reg.example/app:1", msg);
    pw_outcome_add_failure_hint(&rs, "ErrImagePull", "ImagePullUnauthorized", "node-2", "reg.example/app:1", msg);
    pw_outcome_add_failure_hint(&rs, "ErrImagePull", "ImageNotFound", "node-3", "nginx:nope", "not found");
    assert_int_equal(rs.n, 2);
    assert_int_equal(rs.r[0].count, 2);
    assert_non_null(strstr(rs.r[0].message, "rpc error: "));
    assert_non_null(strstr(rs.r[0].message, " ... "));
    assert_non_null(strstr(rs.r[0].message, "401 Unauthorized"));
    struct pw_outcome_counts c = {.total = 3, .failed = 3};
    char *m = pw_outcome_message(&c, PW_TASK_FAILED, 0.9, &rs, "prewarm");
    assert_non_null(strstr(m, "2 x ErrImagePull"));
    assert_non_null(strstr(m, "401 Unauthorized) - check imagePullSecrets"));
    assert_non_null(strstr(m, "namespace prewarm"));
    assert_non_null(strstr(m, "not found) - check that the image reference exists"));
    assert_null(strstr(m, "reachability"));
    free(m);
}

static void test_outcome_counts_messages(void **state)
{
    (void)state;
    struct pw_outcome_counts c = {.total = 8, .pending = 2, .running = 2, .succeeded = 2, .failed = 1, .skipped = 1};
    assert_true(pw_outcome_percentage(&c) > 49.9 && pw_outcome_percentage(&c) < 50.1);
    assert_false(pw_outcome_done(&c));
    struct pw_outcome_counts z = {0};
    assert_true(pw_outcome_percentage(&z) > 99.9);
    assert_true(pw_outcome_done(&z));

    char *m = pw_outcome_message(&z, PW_TASK_SUCCEEDED, 0.9, NULL, "prewarm");
    assert_non_null(strstr(m, "no node matched"));
    free(m);
    struct pw_outcome_counts sk = {.total = 5, .skipped = 5};
    m = pw_outcome_message(&sk, PW_TASK_SUCCEEDED, 0.9, NULL, "prewarm");
    assert_non_null(strstr(m, "already holds every image"));
    free(m);

    struct pw_outcome_reasons rs = {0};
    pw_outcome_add_failure(&rs, "ErrImagePull", "node-0007", "nginx:does-not-exist",
                           "rpc error: manifest unknown: not found");
    pw_outcome_add_failure(&rs, "ErrImagePull", "node-0009", "nginx:does-not-exist", "x");
    pw_outcome_add_failure(&rs, "NodeDeleted", "node-0003", NULL, "gone");
    pw_outcome_add_failure(&rs, NULL, "node-0004", NULL, NULL);
    assert_int_equal(rs.n, 3);
    assert_int_equal(rs.r[0].count, 2);
    assert_string_equal(rs.r[0].node, "node-0007"); /* the first example is kept */
    assert_string_equal(rs.r[2].reason, "Failed");
    struct pw_outcome_counts f = {.total = 10, .succeeded = 6, .failed = 4};
    m = pw_outcome_message(&f, PW_TASK_FAILED, 0.9, &rs, "prewarm");
    assert_non_null(strstr(m, "4 of 10 nodes failed"));
    assert_non_null(strstr(m, "2 x ErrImagePull"));
    assert_non_null(strstr(m, "node-0007"));
    assert_non_null(strstr(m, "manifest unknown"));
    assert_non_null(strstr(m, "1 x NodeDeleted"));
    assert_non_null(strstr(m, "90%"));
    free(m);
    struct pw_outcome_counts s = {.total = 10, .succeeded = 9, .failed = 1};
    struct pw_outcome_reasons auth = {0};
    pw_outcome_add_failure(&auth, "ImagePullUnauthorized", "node-1", "registry.example.com/team/private-app:1.0",
                           "401");
    m = pw_outcome_message(&s, PW_TASK_SUCCEEDED, 0.9, &auth, "prewarm");
    assert_non_null(strstr(m, "9 of 10 nodes hold every image"));
    assert_non_null(strstr(m, "namespace prewarm")); /* the hint names where the secret must be */
    free(m);
    struct pw_outcome_counts cc = {.total = 10, .succeeded = 3, .cancelled = 7};
    m = pw_outcome_message(&cc, PW_TASK_CANCELLED, 0.9, &rs, "prewarm");
    assert_non_null(strstr(m, "7 cancelled"));
    free(m);
    /* more distinct reasons than fit are counted as "more" */
    struct pw_outcome_reasons many = {0};
    char r[16];
    for (int i = 0; i < PW_OUTCOME_MAX_REASONS + 3; i++) {
        snprintf(r, sizeof r, "R%d", i);
        pw_outcome_add_failure(&many, r, "n", NULL, NULL);
    }
    assert_int_equal(many.n, PW_OUTCOME_MAX_REASONS);
    assert_int_equal(many.other, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rolling_window),
        cmocka_unit_test(test_batch_with_pause),
        cmocka_unit_test(test_batch_under_global_cap),
        cmocka_unit_test(test_global_cap_priority_fifo),
        cmocka_unit_test(test_running_cap),
        cmocka_unit_test(test_outcome_threshold),
        cmocka_unit_test(test_outcome_hint_and_long_message),
        cmocka_unit_test(test_outcome_counts_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
