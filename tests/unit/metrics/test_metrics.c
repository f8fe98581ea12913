/* Unit tests for src/metrics: counters, gauges and histograms with labels, the exact text
 * exposition (HELP/TYPE, escaping, cumulative buckets), registration rules, the series cap,
 * collectors, and the process metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

static char *render(pw_metrics *r)
{
    size_t len = 0;
    char *text = pw_metrics_render(r, &len);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_counter_gauge_text(void **state)
{
    (void)state;
    pw_metrics *r = pw_metrics_new();
    pw_metric *c = pw_metrics_counter(r, "prewarm_things_total", "Things done.", "verb,code");
    pw_metric *g = pw_metrics_gauge(r, "prewarm_level", "A level\nwith \\ a newline.", NULL);
    assert_non_null(c);
    assert_non_null(g);
    pw_metric_add(c, (const char *[]){"get", "200"}, 1);
    pw_metric_add(c, (const char *[]){"get", "200"}, 2);
    pw_metric_add(c, (const char *[]){"list", "500"}, 1);
    pw_metric_add(c, (const char *[]){"list", "500"}, -5); /* a counter never goes down */
    pw_metric_set(g, NULL, 2.5);
    pw_metric_add(g, NULL, -1);
    assert_true(pw_metric_value(c, (const char *[]){"get", "200"}) == 3);
    assert_true(pw_metric_value(c, (const char *[]){"get", "404"}) == 0);
    char *text = render(r);
    assert_string_equal(text, "# HELP prewarm_things_total Things done.\n"
                              "# TYPE prewarm_things_total counter\n"
                              "prewarm_things_total{verb=\"get\",code=\"200\"} 3\n"
                              "prewarm_things_total{verb=\"list\",code=\"500\"} 1\n"
                              "# HELP prewarm_level A level\\nwith \\\\ a newline.\n"
                              "# TYPE prewarm_level gauge\n"
                              "prewarm_level 1.5\n");
    free(text);
    pw_metrics_free(r);
}

static void test_label_escaping(void **state)
{
    (void)state;
    pw_metrics *r = pw_metrics_new();
    pw_metric *c = pw_metrics_counter(r, "x_total", "x", "reason");
    pw_metric_add(c, (const char *[]){"a\"b\\c\nd"}, 1);
    char *text = render(r);
    assert_non_null(strstr(text, "x_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
    free(text);
    pw_metrics_free(r);
}

static void test_histogram(void **state)
{
    (void)state;
    pw_metrics *r = pw_metrics_new();
    static const double b[] = {0.1, 1, 10};
    pw_metric *h = pw_metrics_histogram(r, "req_duration_seconds", "Latency.", "route", b, 3);
    assert_non_null(h);
    pw_metric_observe(h, (const char *[]){"/a"}, 0.05);
    pw_metric_observe(h, (const char *[]){"/a"}, 0.1); /* le is inclusive */
    pw_metric_observe(h, (const char *[]){"/a"}, 5);
    pw_metric_observe(h, (const char *[]){"/a"}, 50);
    assert_true(pw_metric_value(h, (const char *[]){"/a"}) == 4);
    char *text = render(r);
    assert_string_equal(text, "# HELP req_duration_seconds Latency.\n"
                              "# TYPE req_duration_seconds histogram\n"
                              "req_duration_seconds_bucket{route=\"/a\",le=\"0.1\"} 2\n"
                              "req_duration_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"
                              "req_duration_seconds_bucket{route=\"/a\",le=\"10\"} 3\n"
                              "req_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
                              "req_duration_seconds_sum{route=\"/a\"} 55.15\n"
                              "req_duration_seconds_count{route=\"/a\"} 4\n");
    free(text);
    /* a histogram without labels */
    pw_metric *h2 = pw_metrics_histogram(r, "plain_seconds", "p", NULL, b, 1);
    pw_metric_observe(h2, NULL, 3);
    text = render(r);
    assert_non_null(strstr(text, "plain_seconds_bucket{le=\"0.1\"} 0\nplain_seconds_bucket{le=\"+Inf\"} 1\n"
                                 "plain_seconds_sum 3\nplain_seconds_count 1\n"));
    free(text);
    pw_metrics_free(r);
}

static void test_registration_rules(void **state)
{
    (void)state;
    pw_metrics *r = pw_metrics_new();
    pw_metric *a = pw_metrics_counter(r, "dup_total", "d", "x");
    assert_ptr_equal(pw_metrics_counter(r, "dup_total", "d", "x"), a); /* the same family again */
    assert_null(pw_metrics_gauge(r, "dup_total", "d", "x"));           /* another type */
    assert_null(pw_metrics_counter(r, "dup_total", "d", "y"));         /* other labels */
    assert_null(pw_metrics_counter(r, "9bad", "d", NULL));
    assert_null(pw_metrics_counter(r, "bad-name", "d", NULL));
    assert_null(pw_metrics_counter(r, "ok_total", "d", "le"));  /* reserved */
    assert_null(pw_metrics_counter(r, "ok_total", "d", "a:b")); /* no colon in a label name */
    assert_null(pw_metrics_counter(r, "ok_total", "d", "__x")); /* reserved prefix */
    assert_null(pw_metrics_counter(r, "ok_total", "d", "a,b,c,d,e,f,g"));
    static const double down[] = {1, 0.5};
    assert_null(pw_metrics_histogram(r, "h_seconds", "h", NULL, down, 2));
    assert_null(pw_metrics_histogram(r, "h_seconds", "h", NULL, NULL, 0));
    assert_non_null(pw_metrics_counter(r, "ns:ok_total", "d", "a,b"));
    /* updates on a refused family are no-ops */
    pw_metric_add(NULL, NULL, 1);
    pw_metric_observe(NULL, NULL, 1);
    pw_metric_set(NULL, NULL, 1);
    /* the wrong update for the type is ignored */
    pw_metric_observe(a, (const char *[]){"v"}, 1);
    assert_true(pw_metric_value(a, (const char *[]){"v"}) == 0);
    pw_metrics_free(r);
}

static void test_series_cap(void **state)
{
    (void)state;
    pw_metrics *r = pw_metrics_new();
    pw_metric *c = pw_metrics_counter(r, "many_total", "m", "id");
    char id[32];
    for (int i = 0; i < PW_METRICS_MAX_SERIES + 500; i++) {
        snprintf(id, sizeof id, "task-%d", i);
        pw_metric_add(c, (const char *[]){id}, 1);
    }
    assert_true(pw_metric_value(c, (const char *[]){"task-7"}) == 1);
    assert_true(pw_metric_value(c, (const char *[]){"_other"}) == 500);
    char *text = render(r);
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + PW_METRICS_MAX_SERIES + 1);
    free(text);
    pw_metric_clear(c);
    assert_true(pw_metric_value(c, (const char *[]){"task-7"}) == 0);
    pw_metrics_free(r);
}

struct coll {
    pw_metric *g;
    int calls;
};

static void collect(void *arg)
{
    struct coll *c = arg;
    c->calls++;
    pw_metric_clear(c->g);
    pw_metric_set(c->g, (const char *[]){c->calls % 2 ? "odd" : "even"}, c->calls);
}

static void test_collectors(void **state)
{
    (void)state;
    pw_metrics *r = pw_metrics_new();
    struct coll c = {.g = pw_metrics_gauge(r, "calls", "c", "parity")};
    pw_metrics_add_collector(r, collect, &c);
    char *text = render(r);
    assert_non_null(strstr(text, "calls{parity=\"odd\"} 1\n"));
    free(text);
    text = render(r);
    assert_non_null(strstr(text, "calls{parity=\"even\"} 2\n"));
    assert_null(strstr(text, "odd"));
    free(text);
    pw_metrics_remove_collector(r, collect, &c);
    text = render(r);
    assert_int_equal(c.calls, 2);
    free(text);
    pw_metrics_free(r);
}

static void test_process(void **state)
{
    (void)state;
    pw_metrics_process_register();
    pw_metrics_process_register(); /* idempotent */
    char *text = render(pw_metrics_default());
    static const char *const names[] = {"\nprocess_cpu_seconds_total ",
                                        "\nprocess_resident_memory_bytes ",
                                        "\nprocess_virtual_memory_bytes ",
                                        "\nprocess_open_fds ",
                                        "\nprocess_max_fds ",
                                        "\nprocess_start_time_seconds "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *p = strstr(text, names[i]);
        assert_non_null(p);
        double v = strtod(p + strlen(names[i]), NULL);
        if (i != 0)
            assert_true(v > 0);
    }
    const char *rss = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_true(strtod(rss + strlen("\nprocess_resident_memory_bytes "), NULL) > 100000);
    assert_true(strstr(text, "# TYPE process_cpu_seconds_total counter") != NULL);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_text),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_registration_rules),
        cmocka_unit_test(test_series_cap),
        cmocka_unit_test(test_collectors),
        cmocka_unit_test(test_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
