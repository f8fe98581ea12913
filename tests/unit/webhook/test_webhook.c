/* Unit tests for src/webhook: the signature (against Python's hmac), the retry schedule with its
 * jitter, Retry-After in seconds and as an HTTP-date, status verdicts, private addresses and the URL
 * policy, the outbox (key order, one receiver's deliveries in order, no duplicates, write-through to
 * the store and reading back, clean-up), and the service end to end on an event stream: a task's
 * events become deliveries, a connection to a private address is refused for good, GET task's state;
 * ends after the consumer's mark are caught up from the store's tasks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "events/events.h"
#include "store/store.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

static void test_signature(void **state)
{
    (void)state;
    char sig[PW_WH_SIG_MAX];
    const char *body = "{\"a\":1}";
    pw_wh_sign("topsecret", 9, 1700000000, body, strlen(body), sig);
    /* python3: hmac.new(b"topsecret", b"1700000000." + body, hashlib.sha256).hexdigest() */
    assert_string_equal(sig, "t=1700000000,v1=6a939b0c71853d606167625a15168ee9188c6a511c773ef4f42d307f3849e50f");
    char other[PW_WH_SIG_MAX];
    pw_wh_sign("topsecret", 9, 1700000001, body, strlen(body), other); /* another time: another mac */
    assert_string_not_equal(strchr(sig, ','), strchr(other, ','));
    pw_wh_sign("topsecreT", 9, 1700000000, body, strlen(body), other);
    assert_string_not_equal(sig, other);
}

static void test_backoff(void **state)
{
    (void)state;
    /* rnd 0: half the step; rnd near 1: the whole step */
    assert_int_equal(pw_wh_backoff_ms(1, 1000, 3600000, 0.0), 500);
    assert_int_equal(pw_wh_backoff_ms(2, 1000, 3600000, 0.0), 1000);
    assert_int_equal(pw_wh_backoff_ms(3, 1000, 3600000, 0.0), 2000);
    assert_int_equal(pw_wh_backoff_ms(4, 1000, 3600000, 0.5), 6000);
    assert_true(pw_wh_backoff_ms(4, 1000, 3600000, 0.999999) >= 7999);
    /* capped: attempt 30 waits at most max_ms, at least half of it */
    assert_int_equal(pw_wh_backoff_ms(30, 1000, 3600000, 0.0), 1800000);
    assert_true(pw_wh_backoff_ms(1000, 1000, 3600000, 0.99) <= 3600000);
    /* growing with the attempt for the same draw */
    for (int a = 1; a < 12; a++)
        assert_true(pw_wh_backoff_ms(a + 1, 1000, 3600000, 0.3) >= pw_wh_backoff_ms(a, 1000, 3600000, 0.3));
    /* nonsense draws count as 0 */
    assert_int_equal(pw_wh_backoff_ms(1, 1000, 3600000, 1.5), 500);
    assert_int_equal(pw_wh_backoff_ms(0, 1000, 3600000, 0.0), 500);
}

static void test_retry_after(void **state)
{
    (void)state;
    int64_t now = 1700000000000LL; /* Tue, 14 Nov 2023 22:13:20 GMT */
    assert_int_equal(pw_wh_retry_after_ms("120", now), 120000);
    assert_int_equal(pw_wh_retry_after_ms(" 0", now), 0);
    assert_int_equal(pw_wh_retry_after_ms("Tue, 14 Nov 2023 22:13:50 GMT", now), 30000);
    assert_int_equal(pw_wh_retry_after_ms("Tue, 14 Nov 2023 22:00:00 GMT", now), 0); /* in the past */
    assert_int_equal(pw_wh_retry_after_ms("Tuesday, 14-Nov-23 22:14:20 GMT", now), 60000); /* RFC 850 */
    assert_int_equal(pw_wh_retry_after_ms("soon", now), -1);
    assert_int_equal(pw_wh_retry_after_ms("", now), -1);
    assert_int_equal(pw_wh_retry_after_ms("-5", now), -1);
    assert_int_equal(pw_wh_retry_after_ms("12abc", now), -1);
    assert_int_equal(pw_wh_retry_after_ms(NULL, now), -1);
}

static void test_verdicts(void **state)
{
    (void)state;
    assert_int_equal(pw_wh_verdict_of(200), PW_WH_DELIVERED);
    assert_int_equal(pw_wh_verdict_of(204), PW_WH_DELIVERED);
    assert_int_equal(pw_wh_verdict_of(0), PW_WH_RETRY);
    assert_int_equal(pw_wh_verdict_of(408), PW_WH_RETRY);
    assert_int_equal(pw_wh_verdict_of(429), PW_WH_RETRY);
    assert_int_equal(pw_wh_verdict_of(500), PW_WH_RETRY);
    assert_int_equal(pw_wh_verdict_of(503), PW_WH_RETRY);
    assert_int_equal(pw_wh_verdict_of(301), PW_WH_PERMANENT);
    assert_int_equal(pw_wh_verdict_of(302), PW_WH_PERMANENT);
    assert_int_equal(pw_wh_verdict_of(400), PW_WH_PERMANENT);
    assert_int_equal(pw_wh_verdict_of(404), PW_WH_PERMANENT);
    assert_int_equal(pw_wh_verdict_of(410), PW_WH_PERMANENT);
}

static bool v4(const char *a)
{
    struct sockaddr_in s = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, a, &s.sin_addr), 1);
    return pw_wh_addr_private((struct sockaddr *)&s);
}

static bool v6(const char *a)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, a, &s.sin6_addr), 1);
    return pw_wh_addr_private((struct sockaddr *)&s);
}

static void test_private_addresses(void **state)
{
    (void)state;
    const char *priv4[] = {"127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                           "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1"};
    for (size_t i = 0; i < sizeof priv4 / sizeof priv4[0]; i++)
        assert_true(v4(priv4[i]));
    const char *pub4[] = {"8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "169.255.0.1",
                          "192.169.0.1"};
    for (size_t i = 0; i < sizeof pub4 / sizeof pub4[0]; i++)
        assert_false(v4(pub4[i]));
    const char *priv6[] = {"::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
                           "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"};
    for (size_t i = 0; i < sizeof priv6 / sizeof priv6[0]; i++)
        assert_true(v6(priv6[i]));
    assert_false(v6("2001:4860:4860::8888"));
    assert_false(v6("::ffff:8.8.8.8"));
    assert_true(pw_wh_host_literal_private("[::1]"));
    assert_true(pw_wh_host_literal_private("169.254.169.254"));
    assert_true(pw_wh_host_literal_private("fe80::1%eth0"));
    assert_false(pw_wh_host_literal_private("example.com"));
    assert_false(pw_wh_host_literal_private("93.184.216.34"));
    /* the numeric forms getaddrinfo reads, as the connection will (tests/fuzz/fuzz_webhookurl.c) */
    assert_true(pw_wh_host_literal_private("127.1"));
    assert_true(pw_wh_host_literal_private("2130706433"));
    assert_true(pw_wh_host_literal_private("888")); /* 0.0.3.120 */
    assert_false(pw_wh_host_literal_private("1.2.3"));
}

static void url_ok(const char *url, bool allow)
{
    char *why = NULL;
    int rc = pw_webhook_url_check(url, allow, &why);
    if (rc != 0)
        fail_msg("%s refused: %s", url, why);
    assert_null(why);
}

static void url_bad(const char *url, bool allow, const char *says)
{
    char *why = NULL;
    assert_int_equal(pw_webhook_url_check(url, allow, &why), PW_EINVAL);
    assert_non_null(why);
    if (!strstr(why, says))
        fail_msg("%s: \"%s\" does not say \"%s\"", url, why, says);
    free(why);
}

static void test_url_policy(void **state)
{
    (void)state;
    url_ok("https://hooks.example.com/prewarm", false);
    url_ok("http://93.184.216.34:8080/x?y=1", false);
    url_ok("http://127.0.0.1:9999/hook", true);
    url_ok("http://[::1]:9999/hook", true);
    url_bad("ftp://example.com/x", false, "scheme \"ftp\"");
    url_bad("file:///etc/passwd", true, "scheme \"file\"");
    url_bad("gopher://example.com/", true, "only http and https");
    url_bad("not a url", false, "not a URL");
    url_bad("", false, "required");
    url_bad("http://127.0.0.1/hook", false, "--webhook-allow-private");
    url_bad("http://169.254.169.254/latest/meta-data", false, "link-local");
    url_bad("http://[::1]:80/", false, "refused");
    url_bad("http://localhost:8080/", false, "refused");
    url_bad("http://app.localhost/", false, "refused");
    url_bad("http://10.0.0.5/", false, "private");
    url_bad("http://%31%32%37.1/", false, "private"); /* libcurl leaves the decoded host "127.1" as it is */
    url_bad("http:/%3888", false, "private");
    char *big = malloc(PW_WEBHOOK_URL_MAX + 64);
    strcpy(big, "https://example.com/");
    memset(big + strlen(big), 'a', PW_WEBHOOK_URL_MAX);
    big[PW_WEBHOOK_URL_MAX + 10] = '\0';
    url_bad(big, false, "at most");
    free(big);
}

static struct pw_wh_delivery *mk(uint64_t event, bool task_scope, int index, const char *task, const char *kind,
                                 const char *url, int64_t next_ms)
{
    struct pw_wh_delivery *d = calloc(1, sizeof *d);
    char key[PW_WH_KEY_MAX];
    pw_wh_key(event, task_scope, index, key);
    d->key = strdup(key);
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)event);
    d->id = strdup(id);
    d->task_id = strdup(task);
    d->kind = strdup(kind);
    d->url = strdup(url);
    d->task_scope = task_scope;
    d->index = index;
    d->body = strdup("{\"specversion\":\"1.0\"}");
    d->event_ms = 1000;
    d->next_ms = next_ms;
    d->state = PW_WH_PENDING;
    return d;
}

static void test_outbox_order(void **state)
{
    (void)state;
    pw_store *st = NULL;
    assert_int_equal(pw_store_open("memory:", &st, NULL), 0);
    pw_wh_outbox *ob = pw_wh_outbox_new(st);
    /* added out of order: key order is event order (9 < 10 < 100 numerically, and in the keys) */
    assert_int_equal(pw_wh_outbox_add(ob, mk(100, false, 0, "t-b", "succeeded", "http://a/", 0)), 0);
    assert_int_equal(pw_wh_outbox_add(ob, mk(9, false, 0, "t-a", "started", "http://a/", 0)), 0);
    assert_int_equal(pw_wh_outbox_add(ob, mk(10, true, 0, "t-a", "succeeded", "http://b/", 0)), 0);
    assert_int_equal(pw_wh_outbox_add(ob, mk(10, false, 0, "t-a", "succeeded", "http://a/", 0)), 0);
    struct pw_wh_delivery *dup = mk(10, false, 0, "t-a", "succeeded", "http://a/", 0);
    assert_int_equal(pw_wh_outbox_add(ob, dup), PW_EEXIST);
    pw_wh_delivery_free(dup);
    assert_int_equal(pw_wh_outbox_count(ob), 4);
    assert_int_equal(pw_wh_outbox_pending(ob), 4);
    assert_true(pw_wh_outbox_has(ob, "t-a", "started", false, 0));
    assert_false(pw_wh_outbox_has(ob, "t-a", "started", true, 0));
    assert_false(pw_wh_outbox_has(ob, "t-b", "started", false, 0));

    /* receiver a: event 9 first; b's own head (10) is free at the same time */
    int64_t wait = 0;
    struct pw_wh_delivery *d = pw_wh_outbox_next(ob, 5000, &wait);
    assert_non_null(d);
    assert_string_equal(d->id, "9");
    d->busy = true;
    struct pw_wh_delivery *e = pw_wh_outbox_next(ob, 5000, &wait);
    assert_non_null(e);
    assert_string_equal(e->url, "http://b/");
    e->busy = true;
    /* a's event 10 waits for 9 (in flight), b has nothing more */
    assert_null(pw_wh_outbox_next(ob, 5000, &wait));
    /* 9 fails and is retried later: 10 still waits behind it; the wait is 9's */
    d->busy = false;
    d->next_ms = 8000;
    assert_null(pw_wh_outbox_next(ob, 5000, &wait));
    assert_int_equal(wait, 3000);
    d = pw_wh_outbox_next(ob, 8000, &wait);
    assert_string_equal(d->id, "9");
    d->state = PW_WH_DONE;
    d->done_ms = 8000;
    assert_int_equal(pw_wh_outbox_save(ob, d), 0);
    assert_null(d->body); /* a finished delivery keeps no body */
    d = pw_wh_outbox_next(ob, 8000, &wait);
    assert_string_equal(d->key, "00000000000000000010.s00");
    d->state = PW_WH_FAILED;
    d->done_ms = 8001;
    assert_int_equal(pw_wh_outbox_save(ob, d), 0);
    d = pw_wh_outbox_next(ob, 8000, &wait);
    assert_string_equal(d->id, "100");
    e->busy = false;
    assert_int_equal(pw_wh_outbox_pending(ob), 2);

    /* a second outbox on the same store reads every delivery with its state */
    pw_wh_outbox *again = pw_wh_outbox_new(st);
    size_t added = 0;
    assert_int_equal(pw_wh_outbox_load(again, &added), 0);
    assert_int_equal(added, 4);
    assert_int_equal(pw_wh_outbox_pending(again), 2);
    struct pw_wh_delivery *first = pw_wh_outbox_at(again, 0);
    assert_string_equal(first->id, "9");
    assert_int_equal(first->state, PW_WH_DONE);
    assert_int_equal(pw_wh_outbox_load(again, &added), 0); /* nothing new */
    assert_int_equal(added, 0);

    /* clean-up of finished ones done before a time, in memory and in the store */
    size_t removed = 0;
    pw_wh_outbox_gc(ob, 8001, &removed);
    assert_int_equal(removed, 1);
    pw_wh_outbox_gc(ob, 9000, &removed);
    assert_int_equal(removed, 1);
    assert_int_equal(pw_wh_outbox_count(ob), 2);
    pw_wh_outbox *third = pw_wh_outbox_new(st);
    assert_int_equal(pw_wh_outbox_load(third, &added), 0);
    assert_int_equal(added, 2);
    pw_wh_outbox_free(third);
    pw_wh_outbox_free(again);
    pw_wh_outbox_free(ob);
    pw_store_close(st);
}

static void test_delivery_doc(void **state)
{
    (void)state;
    struct pw_wh_delivery *d = mk(42, true, 3, "t-x", "failed", "https://h/", 77);
    d->secret_ref = strdup("hook-key");
    d->attempts = 2;
    d->last_status = 503;
    d->last_error = strdup("HTTP 503");
    json_t *doc = pw_wh_delivery_doc(d);
    struct pw_wh_delivery *back = pw_wh_delivery_from_doc(d->key, doc);
    assert_non_null(back);
    assert_string_equal(back->id, "42");
    assert_string_equal(back->secret_ref, "hook-key");
    assert_true(back->task_scope);
    assert_int_equal(back->index, 3);
    assert_int_equal(back->next_ms, 77);
    assert_int_equal(back->attempts, 2);
    assert_int_equal(back->last_status, 503);
    assert_string_equal(back->body, d->body);
    pw_wh_delivery_free(back);
    json_object_del(doc, "body"); /* a pending delivery without its body is not one */
    assert_null(pw_wh_delivery_from_doc(d->key, doc));
    json_decref(doc);
    pw_wh_delivery_free(d);
}

/* The service on a stream: a running and a succeeded task event with a task webhook to a loopback
 * port; without allow_private the connection is refused, for good, after one attempt. */
static void test_service_refuses_private(void **state)
{
    (void)state;
    pw_events *ev = NULL;
    assert_int_equal(pw_events_new(NULL, &ev), 0);
    pw_store *st = NULL;
    assert_int_equal(pw_store_open("memory:", &st, NULL), 0);
    struct pw_webhook_config cfg = {.events = ev, .store = st, .source = "/test"};
    pw_webhook *w = NULL;
    char *err = NULL;
    assert_int_equal(pw_webhook_new(&cfg, &w, &err), 0);
    assert_false(pw_webhook_allows_private(w));
    json_t *t = json_pack("{s:s, s:s, s:[{s:s, s:[s]}]}", "id", "t-000000000001", "status", "running", "webhooks",
                          "url", "http://127.0.0.1:1/hook", "events", "succeeded");
    pw_events_publish_task(ev, t); /* started: not asked for */
    json_object_set_new(t, "status", json_string("succeeded"));
    pw_events_publish_task(ev, t);
    struct pw_webhook_stats s = {0};
    for (int i = 0; i < 100; i++) {
        pw_webhook_stats(w, &s);
        if (s.failed)
            break;
        pw_clock_sleep_ms(50);
    }
    assert_int_equal(s.failed, 1);
    assert_int_equal(s.attempts, 1);
    assert_int_equal(s.pending, 0);
    pw_webhook_annotate(w, t);
    json_t *hook = json_array_get(json_object_get(t, "webhooks"), 0);
    assert_string_equal(json_string_value(json_object_get(hook, "scope")), "task");
    assert_int_equal(json_integer_value(json_object_get(hook, "failed")), 1);
    assert_int_equal(json_integer_value(json_object_get(hook, "attempts")), 1);
    const char *why = json_string_value(json_object_get(hook, "lastError"));
    assert_non_null(why);
    assert_non_null(strstr(why, "refused: 127.0.0.1"));
    assert_int_equal(json_array_size(json_object_get(hook, "deliveries")), 1);
    json_decref(t);

    /* paused: nothing new is made */
    pw_webhook_set_active(w, false);
    assert_false(pw_webhook_is_active(w));
    t = json_pack("{s:s, s:s, s:[{s:s}]}", "id", "t-000000000002", "status", "succeeded", "webhooks", "url",
                  "http://127.0.0.1:1/hook");
    pw_events_publish_task(ev, t);
    pw_clock_sleep_ms(400);
    pw_webhook_set_active(w, true);
    pw_webhook_stats(w, &s);
    assert_int_equal(s.attempts, 1);
    assert_int_equal(s.pending, 0);
    json_decref(t);
    pw_webhook_free(w);
    pw_store_close(st);
    pw_events_free(ev);
}

static void put_task(pw_store *st, const char *id, const char *status, int64_t finished_ms)
{
    json_t *doc = json_pack("{s:s, s:s, s:[{s:s, s:[s]}]}", "id", id, "status", status, "webhooks", "url",
                            "http://127.0.0.1:1/hook", "events", status);
    struct pw_store_task t = {.id = (char *)id, .status = (char *)status, .created_ms = finished_ms - 5000,
                              .finished_ms = finished_ms, .doc = doc};
    assert_int_equal(pw_store_task_put(st, &t), 0);
    json_decref(doc);
}

static size_t deliveries_of(pw_webhook *w, const char *id)
{
    json_t *t = json_pack("{s:s, s:[{s:s}]}", "id", id, "webhooks", "url", "http://127.0.0.1:1/hook");
    pw_webhook_annotate(w, t);
    size_t n = json_array_size(json_object_get(json_array_get(json_object_get(t, "webhooks"), 0), "deliveries"));
    json_decref(t);
    return n;
}

/* The mark: without one nothing is caught up (and one is written); with one, the tasks that ended
 * after it (an end published just before a crash, never turned into a delivery) get their end
 * delivery, those that ended before it none, and a second start makes no duplicate. */
static void test_catch_up_after_mark(void **state)
{
    (void)state;
    pw_events *ev = NULL;
    assert_int_equal(pw_events_new(NULL, &ev), 0);
    pw_store *st = NULL;
    assert_int_equal(pw_store_open("memory:", &st, NULL), 0);
    int64_t now = pw_clock_real_ms();
    put_task(st, "t-000000000011", "succeeded", now - 60000);
    struct pw_webhook_config cfg = {.events = ev, .store = st};
    pw_webhook *w = NULL;
    char *err = NULL;
    assert_int_equal(pw_webhook_new(&cfg, &w, &err), 0);
    assert_int_equal(deliveries_of(w, "t-000000000011"), 0); /* no mark yet: the first start */
    pw_webhook_free(w);
    json_t *mark = NULL;
    assert_int_equal(pw_store_rec_get(st, "webhook-mark", "consumer", &mark), 0);
    assert_true(json_integer_value(json_object_get(mark, "eventTime")) >= now);
    json_decref(mark);

    mark = json_pack("{s:I}", "eventTime", (json_int_t)(now - 30000));
    assert_int_equal(pw_store_rec_put(st, "webhook-mark", "consumer", mark, PW_STORE_REC_UPSERT), 0);
    json_decref(mark);
    put_task(st, "t-000000000012", "failed", now - 10000); /* ended after the mark */
    assert_int_equal(pw_webhook_new(&cfg, &w, &err), 0);
    assert_int_equal(deliveries_of(w, "t-000000000012"), 1);
    assert_int_equal(deliveries_of(w, "t-000000000011"), 0); /* ended before the mark */
    struct pw_webhook_stats s = {0};
    for (int i = 0; i < 100 && !s.failed; i++) {
        pw_webhook_stats(w, &s);
        pw_clock_sleep_ms(50);
    }
    assert_int_equal(s.failed, 1); /* the loopback receiver is refused: no network needed */
    pw_webhook_free(w);
    mark = json_pack("{s:I}", "eventTime", (json_int_t)(now - 30000));
    assert_int_equal(pw_store_rec_put(st, "webhook-mark", "consumer", mark, PW_STORE_REC_UPSERT), 0);
    json_decref(mark);
    assert_int_equal(pw_webhook_new(&cfg, &w, &err), 0);
    assert_int_equal(deliveries_of(w, "t-000000000012"), 1); /* the same one, read back */
    pw_webhook_free(w);
    pw_store_close(st);
    pw_events_free(ev);
}

static void test_config_refused(void **state)
{
    (void)state;
    const char *urls[] = {"http://127.0.0.1:8080/"};
    struct pw_webhook_config cfg = {.urls = urls, .n_urls = 1};
    pw_webhook *w = NULL;
    char *err = NULL;
    assert_int_equal(pw_webhook_new(&cfg, &w, &err), PW_EINVAL);
    assert_non_null(strstr(err, "--webhook http://127.0.0.1:8080/"));
    free(err);
    cfg.allow_private = true;
    cfg.secret_file = "/nonexistent/secret";
    assert_int_equal(pw_webhook_new(&cfg, &w, &err), PW_EINVAL);
    assert_non_null(strstr(err, "--webhook-secret-file"));
    free(err);
    /* the secret file: 4096 bytes and a newline are a secret; more is refused, also when the byte after
     * the first 4096 is white space (it was cut there) */
    char path[] = "/tmp/pw-webhook-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    cfg.secret_file = path;
    pw_events *ev = NULL;
    assert_int_equal(pw_events_new(NULL, &ev), 0);
    pw_store *st = NULL;
    assert_int_equal(pw_store_open("memory:", &st, NULL), 0);
    cfg.events = ev;
    cfg.store = st;
    const struct {
        size_t len;       /* 'a' bytes */
        const char *tail; /* then this */
        bool ok;
    } files[] = {{4096, "\n", true}, {4096, "\nbbbb", false}, {4096, " b", false}, {9000, "", false}, {0, "\n", false}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        for (size_t k = 0; k < files[i].len; k++)
            fputc('a', f);
        fputs(files[i].tail, f);
        fclose(f);
        err = NULL;
        int rc = pw_webhook_new(&cfg, &w, &err);
        bool secret_refused = rc != 0 && err && strstr(err, "--webhook-secret-file");
        if (secret_refused == files[i].ok)
            fail_msg("secret file %zu: %zu bytes + %zu: %s", i, files[i].len, strlen(files[i].tail),
                     err ? err : "accepted");
        if (rc == 0)
            pw_webhook_free(w);
        free(err);
    }
    unlink(path);
    pw_store_close(st);
    pw_events_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_private_addresses),
        cmocka_unit_test(test_url_policy),
        cmocka_unit_test(test_outbox_order),
        cmocka_unit_test(test_delivery_doc),
        cmocka_unit_test(test_service_refuses_private),
        cmocka_unit_test(test_catch_up_after_mark),
        cmocka_unit_test(test_config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
