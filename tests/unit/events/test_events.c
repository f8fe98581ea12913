/* Unit tests for src/events: ids, the bounded ring (by count and by bytes), consumers' cursors and
 * filters, resume after an id, cut-off of a consumer left behind, coalescing of task events, the
 * end event, and the timer that publishes held events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "events/events.h"

static json_t *task_doc(const char *id, const char *status, int done)
{
    return json_pack("{s:s, s:s, s:{s:i}}", "id", id, "status", status, "progress", "succeededNodes", done);
}

static void pub_task(pw_events *ev, const char *id, const char *status, int done)
{
    json_t *t = task_doc(id, status, done);
    pw_events_publish_task(ev, t);
    json_decref(t);
}

static void pub_node(pw_events *ev, const char *task, const char *node, const char *state)
{
    json_t *n = json_pack("{s:s, s:s}", "nodeName", node, "state", state);
    pw_events_publish_node(ev, task, n);
    json_decref(n);
}

static pw_events *new_stream(size_t cap, size_t max_bytes, int64_t interval)
{
    struct pw_events_config c = {
        .capacity = cap, .max_bytes = max_bytes, .task_interval_ms = interval, .first_id = 100};
    pw_events *ev = NULL;
    assert_int_equal(pw_events_new(&c, &ev), 0);
    return ev;
}

static size_t read_all(pw_events_sub *s, const pw_event **out, size_t max)
{
    size_t n = 0;
    assert_int_equal(pw_events_sub_read(s, out, max, &n), 0);
    return n;
}

static void release_all(const pw_event **evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pw_event_release(evs[i]);
}

static void test_ids_and_types(void **state)
{
    (void)state;
    pw_events *ev = new_stream(16, 0, -1);
    assert_int_equal(pw_events_last_id(ev), 99);
    bool resumed = true;
    pw_events_sub *s = pw_events_sub_new(ev, NULL, 0, &resumed);
    assert_false(resumed);
    pub_task(ev, "t-1", "running", 0);
    pub_node(ev, "t-1", "node-a", "succeeded");
    pub_task(ev, "t-1", "succeeded", 1);
    const pw_event *got[8];
    size_t n = read_all(s, got, 8);
    assert_int_equal(n, 4); /* task, node, task, end */
    static const enum pw_event_type want[] = {PW_EVENT_TASK, PW_EVENT_NODE, PW_EVENT_TASK, PW_EVENT_END};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pw_event_id(got[i]), 100 + i);
        assert_int_equal(pw_event_type_of(got[i]), want[i]);
        assert_string_equal(pw_event_task(got[i]), "t-1");
    }
    size_t len;
    const char *d = pw_event_data(got[1], &len);
    json_t *node = json_loads(d, 0, NULL);
    assert_non_null(node);
    assert_string_equal(json_string_value(json_object_get(node, "taskId")), "t-1");
    assert_string_equal(json_string_value(json_object_get(node, "nodeName")), "node-a");
    json_decref(node);
    assert_string_equal(pw_event_status(got[1]), "succeeded");
    assert_string_equal(pw_event_data(got[3], NULL), "{\"taskId\":\"t-1\",\"status\":\"succeeded\"}");
    assert_string_equal(pw_event_status(got[3]), "succeeded");
    release_all(got, n);
    assert_int_equal(pw_events_sub_cursor(s), 103);
    assert_int_equal(read_all(s, got, 8), 0);
    pw_events_sub_free(s);
    pw_events_free(ev);
}

static void test_filter_and_batches(void **state)
{
    (void)state;
    pw_events *ev = new_stream(64, 0, -1);
    pw_events_sub *s = pw_events_sub_new(ev, "t-b", 0, NULL);
    for (int i = 0; i < 10; i++)
        pub_node(ev, i % 2 ? "t-a" : "t-b", "n", "failed");
    const pw_event *got[3];
    size_t total = 0, n;
    while ((n = read_all(s, got, 3)) > 0) {
        for (size_t i = 0; i < n; i++)
            assert_string_equal(pw_event_task(got[i]), "t-b");
        total += n;
        release_all(got, n);
    }
    assert_int_equal(total, 5);
    assert_int_equal(pw_events_sub_cursor(s), pw_events_last_id(ev));
    pw_events_sub_free(s);
    pw_events_free(ev);
}

static void test_ring_bounded_and_cut_off(void **state)
{
    (void)state;
    pw_events *ev = new_stream(8, 0, -1);
    pw_events_sub *slow = pw_events_sub_new(ev, NULL, 0, NULL);
    for (int i = 0; i < 20; i++)
        pub_node(ev, "t-1", "n", "succeeded");
    struct pw_events_stats st;
    pw_events_stats(ev, &st);
    assert_int_equal(st.ring_events, 8);
    assert_int_equal(st.published[PW_EVENT_NODE], 20);
    assert_int_equal(st.consumers, 1);
    const pw_event *got[4];
    size_t n = 7;
    assert_int_equal(pw_events_sub_read(slow, got, 4, &n), PW_EGONE);
    assert_int_equal(n, 0);
    assert_int_equal(pw_events_sub_read(slow, got, 4, &n), PW_EGONE); /* stays cut off */
    pw_events_sub_free(slow);

    /* resume: an id the ring still holds loses nothing; an older one starts at the newest */
    uint64_t last = pw_events_last_id(ev);
    bool resumed = false;
    pw_events_sub *r = pw_events_sub_new(ev, NULL, last - 5, &resumed);
    assert_true(resumed);
    const pw_event *all[16];
    n = read_all(r, all, 16);
    assert_int_equal(n, 5);
    assert_int_equal(pw_event_id(all[0]), last - 4);
    release_all(all, n);
    pw_events_sub_free(r);
    r = pw_events_sub_new(ev, NULL, last - 8, &resumed); /* its next event (last - 7) is held */
    assert_true(resumed);
    pw_events_sub_free(r);
    r = pw_events_sub_new(ev, NULL, last - 9, &resumed); /* last - 8 was dropped */
    assert_false(resumed);
    assert_int_equal(pw_events_sub_cursor(r), last);
    pw_events_sub_free(r);
    r = pw_events_sub_new(ev, NULL, last + 50, &resumed); /* from the future (another server) */
    assert_false(resumed);
    pw_events_sub_free(r);
    r = pw_events_sub_new(ev, NULL, last, &resumed); /* up to date */
    assert_true(resumed);
    pw_events_sub_free(r);
    pw_events_free(ev);
}

static void test_ring_bounded_by_bytes(void **state)
{
    (void)state;
    pw_events *ev = new_stream(1000, 400, -1);
    char big[150];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    pw_events_sub *s = pw_events_sub_new(ev, NULL, 0, NULL);
    const pw_event *first[1];
    for (int i = 0; i < 10; i++) {
        json_t *n = json_pack("{s:s, s:s}", "state", "failed", "message", big);
        pw_events_publish_node(ev, "t-1", n);
        json_decref(n);
        if (i == 0)
            assert_int_equal(read_all(s, first, 1), 1); /* held by the consumer past its drop */
    }
    struct pw_events_stats st;
    pw_events_stats(ev, &st);
    assert_true(st.ring_bytes <= 400);
    assert_int_equal(st.ring_events, 2);
    assert_non_null(strstr(pw_event_data(first[0], NULL), "xxxx"));
    pw_event_release(first[0]);
    pw_events_sub_free(s);
    pw_events_free(ev);
}

static void test_coalescing(void **state)
{
    (void)state;
    pw_events *ev = new_stream(256, 0, 200);
    pw_events_sub *s = pw_events_sub_new(ev, NULL, 0, NULL);
    pub_task(ev, "t-1", "pending", 0);
    pub_task(ev, "t-1", "running", 0); /* a status change: never held */
    for (int i = 1; i <= 50; i++)
        pub_task(ev, "t-1", "running", i); /* within the interval: held, the newest kept */
    const pw_event *got[64];
    size_t n = read_all(s, got, 64);
    assert_int_equal(n, 2);
    assert_string_equal(pw_event_status(got[0]), "pending");
    assert_string_equal(pw_event_status(got[1]), "running");
    release_all(got, n);
    /* the timer publishes the held one when the interval ends */
    assert_true(pw_events_wait(ev, pw_events_sub_cursor(s), 2000));
    n = read_all(s, got, 64);
    assert_int_equal(n, 1);
    json_t *t = json_loads(pw_event_data(got[0], NULL), 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "progress"), "succeededNodes")), 50);
    json_decref(t);
    release_all(got, n);
    /* a final status is published at once, with its end event, and drops what was held */
    pub_task(ev, "t-1", "running", 51);
    pub_task(ev, "t-1", "succeeded", 52);
    n = read_all(s, got, 64);
    assert_int_equal(n, 2);
    assert_int_equal(pw_event_type_of(got[0]), PW_EVENT_TASK);
    assert_string_equal(pw_event_status(got[0]), "succeeded");
    assert_int_equal(pw_event_type_of(got[1]), PW_EVENT_END);
    release_all(got, n);
    struct pw_events_stats st;
    pw_events_stats(ev, &st);
    assert_int_equal(st.coalesced, 50);
    /* nothing more comes (the held one was dropped with the end) */
    assert_false(pw_events_wait(ev, pw_events_sub_cursor(s), 400));
    pw_events_sub_free(s);
    pw_events_free(ev);
}

static void test_rate_over_time(void **state)
{
    (void)state;
    /* 1.2 s of a change every 5 ms: about 4-6 task events, not 240 */
    pw_events *ev = new_stream(1024, 0, 250);
    pw_events_sub *s = pw_events_sub_new(ev, NULL, 0, NULL);
    int64_t end = pw_clock_mono_ms() + 1200;
    int i = 0;
    while (pw_clock_mono_ms() < end) {
        pub_task(ev, "t-9", "running", i++);
        pw_clock_sleep_ms(5);
    }
    pw_clock_sleep_ms(400);
    const pw_event *got[1024];
    size_t n = read_all(s, got, 1024);
    assert_true(n >= 2 && n <= 7); /* at most one per 250 ms, plus the first */
    json_t *t = json_loads(pw_event_data(got[n - 1], NULL), 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "progress"), "succeededNodes")), i - 1);
    json_decref(t);
    release_all(got, n);
    pw_events_sub_free(s);
    pw_events_free(ev);
}

struct waiter {
    pw_events *ev;
    uint64_t after;
    bool got;
};

static void *wait_main(void *arg)
{
    struct waiter *w = arg;
    w->got = pw_events_wait(w->ev, w->after, 5000);
    return NULL;
}

static void test_wait_wakes(void **state)
{
    (void)state;
    pw_events *ev = new_stream(16, 0, -1);
    assert_false(pw_events_wait(ev, pw_events_last_id(ev), 0));
    struct waiter w = {.ev = ev, .after = pw_events_last_id(ev)};
    pthread_t th;
    pthread_create(&th, NULL, wait_main, &w);
    pw_clock_sleep_ms(50);
    int64_t t0 = pw_clock_mono_ms();
    pub_node(ev, "t-1", "n", "failed");
    pthread_join(th, NULL);
    assert_true(w.got);
    assert_true(pw_clock_mono_ms() - t0 < 2000);
    pw_events_free(ev);
}

static void test_rejects(void **state)
{
    (void)state;
    pw_events *ev = new_stream(16, 0, -1);
    json_t *no_id = json_pack("{s:s}", "status", "running");
    pw_events_publish_task(ev, no_id);
    json_decref(no_id);
    json_t *n = json_pack("{s:s}", "state", "failed");
    pw_events_publish_node(ev, NULL, n);
    pw_events_publish_node(ev, "", n);
    json_decref(n);
    json_t *arr = json_array();
    pw_events_publish_node(ev, "t-1", arr); /* not an object */
    json_decref(arr);
    assert_int_equal(pw_events_last_id(ev), 99);
    json_t *empty = json_object();
    pw_events_publish_node(ev, "t-1", empty);
    json_decref(empty);
    pw_events_sub *s = pw_events_sub_new(ev, NULL, 99, NULL);
    const pw_event *got[2];
    assert_int_equal(read_all(s, got, 2), 1);
    assert_string_equal(pw_event_data(got[0], NULL), "{\"taskId\":\"t-1\"}");
    release_all(got, 1);
    pw_events_sub_free(s);
    pw_events_free(ev);
    pw_events_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_and_types),
        cmocka_unit_test(test_filter_and_batches),
        cmocka_unit_test(test_ring_bounded_and_cut_off),
        cmocka_unit_test(test_ring_bounded_by_bytes),
        cmocka_unit_test(test_coalescing),
        cmocka_unit_test(test_rate_over_time),
        cmocka_unit_test(test_wait_wakes),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
