/* Unit tests for src/k8s pieces without a network: the watch stream line parser (events split across
 * chunks, keep-alive blank lines, an event over the cap, ERROR 410, bad JSON), the token-bucket rate
 * limiter driven by an injected clock, and the verb each request counts as. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "k8s/k8s.h"
#include "k8s/k8s_int.h"

struct seen {
    char types[16][16];
    char names[16][64];
    long codes[16];
    int n;
    int stop_after; /* 0: never */
};

static int record(void *arg, const char *type, json_t *obj)
{
    struct seen *s = arg;
    assert_true(s->n < 16);
    snprintf(s->types[s->n], sizeof s->types[0], "%s", type);
    const char *name = pw_k8s_name(obj);
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name ? name : "");
    s->codes[s->n] = (long)json_integer_value(json_object_get(obj, "code"));
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static const char stream[] =
    "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Node\",\"metadata\":{\"name\":\"n1\",\"resourceVersion\":\"5\"}}}\n"
    "\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Node\",\"metadata\":{\"name\":\"n2\",\"resourceVersion\":\"6\"}}}"
    "\r\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Node\",\"metadata\":{\"resourceVersion\":\"9\"}}}\n"
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"too old resource version: 1 (9)\",\"reason\":\"Expired\",\"code\":410}}\n";

/* The same stream, fed in every chunk size from 1 byte up, gives the same events. */
static void test_parser_chunks(void **state)
{
    (void)state;
    size_t total = strlen(stream);
    for (size_t chunk = 1; chunk <= total; chunk = chunk < 8 ? chunk + 1 : chunk * 2) {
        struct seen s = {0};
        struct pw_k8s_watch_parser p;
        pw_k8s_watch_parser_init(&p, 4096, record, &s);
        for (size_t off = 0; off < total; off += chunk) {
            size_t n = total - off < chunk ? total - off : chunk;
            assert_int_equal(pw_k8s_watch_parser_feed(&p, stream + off, n), 0);
        }
        assert_int_equal(pw_k8s_watch_parser_finish(&p), 0);
        assert_int_equal(s.n, 4);
        assert_int_equal(p.events, 4);
        assert_string_equal(s.types[0], "ADDED");
        assert_string_equal(s.names[0], "n1");
        assert_string_equal(s.types[1], "MODIFIED");
        assert_string_equal(s.names[1], "n2");
        assert_string_equal(s.types[2], "BOOKMARK");
        assert_string_equal(s.types[3], "ERROR");
        assert_int_equal(s.codes[3], 410);
        pw_k8s_watch_parser_fini(&p);
    }
}

static void test_parser_last_line_without_newline(void **state)
{
    (void)state;
    struct seen s = {0};
    struct pw_k8s_watch_parser p;
    pw_k8s_watch_parser_init(&p, 4096, record, &s);
    const char *ev = "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"gone\"}}}";
    assert_int_equal(pw_k8s_watch_parser_feed(&p, ev, strlen(ev)), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(pw_k8s_watch_parser_finish(&p), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.types[0], "DELETED");
    assert_string_equal(s.names[0], "gone");
    pw_k8s_watch_parser_fini(&p);
}

static void test_parser_oversize(void **state)
{
    (void)state;
    struct seen s = {0};
    struct pw_k8s_watch_parser p;
    pw_k8s_watch_parser_init(&p, 100, record, &s);
    const char *small = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"ok\"}}}\n";
    assert_int_equal(pw_k8s_watch_parser_feed(&p, small, strlen(small)), 0);
    /* 150 bytes with no newline, in pieces: over the cap while still incomplete */
    char big[151];
    memset(big, 'x', 150);
    big[150] = '\0';
    assert_int_equal(pw_k8s_watch_parser_feed(&p, big, 60), 0);
    assert_int_equal(pw_k8s_watch_parser_feed(&p, big, 60), PW_ETOOLARGE);
    /* once failed, it stays failed */
    assert_int_equal(pw_k8s_watch_parser_feed(&p, small, strlen(small)), PW_ETOOLARGE);
    assert_int_equal(s.n, 1);
    pw_k8s_watch_parser_fini(&p);

    /* a whole oversize line inside one slice is refused too */
    struct seen s2 = {0};
    pw_k8s_watch_parser_init(&p, 100, record, &s2);
    char line[202];
    memset(line, ' ', 200);
    line[200] = '\n';
    line[201] = '\0';
    assert_int_equal(pw_k8s_watch_parser_feed(&p, line, 201), PW_ETOOLARGE);
    assert_int_equal(s2.n, 0);
    pw_k8s_watch_parser_fini(&p);
}

static void test_parser_bad_json_and_stop(void **state)
{
    (void)state;
    struct seen s = {0};
    struct pw_k8s_watch_parser p;
    pw_k8s_watch_parser_init(&p, 4096, record, &s);
    const char *bad = "{\"type\":\"ADDED\",\"object\":{\"metadata\":\n";
    assert_int_equal(pw_k8s_watch_parser_feed(&p, bad, strlen(bad)), PW_EPROTO);
    pw_k8s_watch_parser_fini(&p);
    const char *noobj = "{\"type\":\"ADDED\"}\n";
    pw_k8s_watch_parser_init(&p, 4096, record, &s);
    assert_int_equal(pw_k8s_watch_parser_feed(&p, noobj, strlen(noobj)), PW_EPROTO);
    pw_k8s_watch_parser_fini(&p);

    /* the callback stops the stream after the second event */
    struct seen s2 = {.stop_after = 2};
    pw_k8s_watch_parser_init(&p, 4096, record, &s2);
    assert_int_equal(pw_k8s_watch_parser_feed(&p, stream, strlen(stream)), 1);
    assert_int_equal(s2.n, 2);
    assert_true(p.stopped);
    pw_k8s_watch_parser_fini(&p);
}

static void test_ratelimit(void **state)
{
    (void)state;
    struct pw_k8s_ratelimit rl;
    /* 10 qps, burst 3, at t=1000 */
    pw_k8s_rl_init(&rl, 10, 3, 1000);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 1000), 0);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 1000), 0);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 1000), 0);
    /* the bucket is empty: the 4th waits one token time (100 ms), the 5th two */
    assert_int_equal(pw_k8s_rl_reserve(&rl, 1000), 100);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 1000), 200);
    /* at t=1200 the debt is paid back: the next is again 100 ms away */
    assert_int_equal(pw_k8s_rl_reserve(&rl, 1200), 100);
    /* a long pause refills to the burst, not beyond */
    assert_int_equal(pw_k8s_rl_reserve(&rl, 60000), 0);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 60000), 0);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 60000), 0);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 60000), 100);
    /* half a token after 50 ms: the waiter needs the other 50 */
    assert_int_equal(pw_k8s_rl_reserve(&rl, 60150), 50);
    pw_k8s_rl_fini(&rl);

    /* defaults: 50 qps, burst 100 */
    pw_k8s_rl_init(&rl, 0, 0, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pw_k8s_rl_reserve(&rl, 0), 0);
    assert_int_equal(pw_k8s_rl_reserve(&rl, 0), 20);
    pw_k8s_rl_fini(&rl);
}

static void test_verbs(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *verb;
    } cases[] = {
        {"GET", "/api/v1/nodes", "list"},
        {"GET", "/api/v1/nodes?limit=500", "list"},
        {"GET", "/api/v1/nodes/n1", "get"},
        {"GET", "/api/v1/nodes?watch=1&resourceVersion=5", "watch"},
        {"GET", "/api/v1/nodes?resourceVersion=5&watch=true", "watch"},
        {"GET", "/api/v1/nodes?watch=false", "list"},
        {"GET", "/api/v1/watch/nodes", "watch"},
        {"GET", "/api/v1/namespaces", "list"},
        {"GET", "/api/v1/namespaces/prewarm", "get"},
        {"GET", "/api/v1/namespaces/prewarm/pods", "list"},
        {"GET", "/api/v1/namespaces/prewarm/pods/p1", "get"},
        {"GET", "/api/v1/namespaces/prewarm/pods/p1/log", "get"},
        {"GET", "/apis/batch/v1/jobs", "list"},
        {"GET", "/apis/batch/v1/namespaces/ns/jobs", "list"},
        {"GET", "/apis/batch/v1/namespaces/ns/jobs/j?x=1", "get"},
        {"GET", "/version", "get"},
        {"POST", "/apis/batch/v1/namespaces/ns/jobs", "create"},
        {"PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", "update"},
        {"PATCH", "/api/v1/nodes/n1", "patch"},
        {"DELETE", "/apis/batch/v1/namespaces/ns/jobs/j", "delete"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *v = pw_k8s_verb(cases[i].method, cases[i].path);
        if (strcmp(v, cases[i].verb) != 0)
            fail_msg("%s %s: %s, want %s", cases[i].method, cases[i].path, v, cases[i].verb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_chunks),   cmocka_unit_test(test_parser_last_line_without_newline),
        cmocka_unit_test(test_parser_oversize), cmocka_unit_test(test_parser_bad_json_and_stop),
        cmocka_unit_test(test_ratelimit),       cmocka_unit_test(test_verbs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
