/* Unit tests for sim/store.c: create/get/update/mutate/delete, resourceVersions, generateName, uid,
 * ordered lists with limit and resume keys, subscribers, history replay, overflow and compaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "sim/store.h"

static json_t *obj(const char *name)
{
    return json_pack("{s:{s:s}, s:{s:i}}", "metadata", "name", name, "spec", "x", 1);
}

static const char *meta_str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), k));
}

static void test_create_get(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    uint64_t rv0 = sim_store_rv(st);
    json_t *out;
    assert_int_equal(sim_store_create(st, "pods", "default", obj("a"), &out), 0);
    assert_string_equal(meta_str(out, "name"), "a");
    assert_string_equal(meta_str(out, "namespace"), "default");
    assert_int_equal(strlen(meta_str(out, "uid")), 36);
    assert_int_equal(meta_str(out, "uid")[14], '4'); /* a v4 UUID */
    assert_non_null(meta_str(out, "creationTimestamp"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "metadata"), "generation")), 1);
    char want[32];
    snprintf(want, sizeof(want), "%llu", (unsigned long long)(rv0 + 1));
    assert_string_equal(meta_str(out, "resourceVersion"), want);
    json_decref(out);
    assert_int_equal(sim_store_create(st, "pods", "default", obj("a"), NULL), PW_EEXIST);
    assert_int_equal(sim_store_create(st, "pods", "other", obj("a"), NULL), 0); /* another namespace */
    assert_int_equal(sim_store_create(st, "pods", "default", json_pack("{s:{}}", "metadata"), NULL), PW_EINVAL);
    assert_int_equal(sim_store_get(st, "pods", "default", "a", &out), 0);
    assert_string_equal(meta_str(out, "name"), "a");
    json_decref(out);
    assert_int_equal(sim_store_get(st, "pods", "default", "zz", &out), PW_ENOTFOUND);
    assert_int_equal(sim_store_get(st, "jobs.batch", "default", "a", &out), PW_ENOTFOUND);
    assert_int_equal(sim_store_count(st, "pods"), 2);
    /* a caller-chosen uid is kept */
    json_t *u = json_pack("{s:{s:s, s:s}}", "metadata", "name", "u", "uid", "11111111-2222-4333-8444-555555555555");
    assert_int_equal(sim_store_create(st, "jobs.batch", "default", u, &out), 0);
    assert_string_equal(meta_str(out, "uid"), "11111111-2222-4333-8444-555555555555");
    json_decref(out);
    sim_store_free(st);
}

static void test_generate_name(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    char prefix[80];
    memset(prefix, 'p', 70);
    prefix[70] = 0;
    json_t *out;
    assert_int_equal(sim_store_create(st, "pods", "ns", json_pack("{s:{s:s}}", "metadata", "generateName", "job-"), &out), 0);
    const char *n = meta_str(out, "name");
    assert_int_equal(strlen(n), 9);
    assert_memory_equal(n, "job-", 4);
    for (int i = 4; i < 9; i++)
        assert_non_null(strchr("bcdfghjklmnpqrstvwxz2456789", n[i]));
    json_decref(out);
    assert_int_equal(sim_store_create(st, "pods", "ns", json_pack("{s:{s:s}}", "metadata", "generateName", prefix), &out), 0);
    assert_int_equal(strlen(meta_str(out, "name")), 63); /* prefix cut to 58 + 5 */
    json_decref(out);
    sim_store_free(st);
}

static void test_update_conflict_generation(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    json_t *out;
    assert_int_equal(sim_store_create(st, "leases.coordination.k8s.io", "ns", obj("l"), &out), 0);
    uint64_t rv = strtoull(meta_str(out, "resourceVersion"), NULL, 10);
    char uid[64];
    snprintf(uid, sizeof(uid), "%s", meta_str(out, "uid"));
    json_decref(out);
    /* same spec: generation stays; the uid cannot be changed */
    json_t *o = json_pack("{s:{s:s, s:s}, s:{s:i}, s:{s:i}}", "metadata", "name", "l", "uid", "bogus", "spec", "x", 1,
                          "status", "y", 2);
    assert_int_equal(sim_store_update(st, "leases.coordination.k8s.io", "ns", "l", o, rv, &out), 0);
    assert_string_equal(meta_str(out, "uid"), uid);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "metadata"), "generation")), 1);
    json_decref(out);
    /* stale rv */
    assert_int_equal(sim_store_update(st, "leases.coordination.k8s.io", "ns", "l", obj("l"), rv, NULL), PW_ECONFLICT);
    /* spec change raises generation; expect_rv 0 is unconditional */
    json_t *o2 = json_pack("{s:{s:s}, s:{s:i}}", "metadata", "name", "l", "spec", "x", 2);
    assert_int_equal(sim_store_update(st, "leases.coordination.k8s.io", "ns", "l", o2, 0, &out), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "metadata"), "generation")), 2);
    json_decref(out);
    assert_int_equal(sim_store_update(st, "leases.coordination.k8s.io", "ns", "none", obj("none"), 0, NULL), PW_ENOTFOUND);
    sim_store_free(st);
}

static int set_label(void *arg, json_t *o)
{
    const char *v = arg;
    json_t *m = json_object_get(o, "metadata");
    const char *cur = json_string_value(json_object_get(json_object_get(m, "labels"), "k"));
    if (cur && strcmp(cur, v) == 0)
        return 1;
    json_object_set_new(m, "labels", json_pack("{s:s}", "k", v));
    return 0;
}

static int refuse(void *arg, json_t *o)
{
    (void)arg, (void)o;
    return PW_EINVAL;
}

static void test_mutate(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    json_t *first, *out;
    assert_int_equal(sim_store_create(st, "nodes", "", obj("n"), &first), 0);
    uint64_t rv = sim_store_rv(st);
    assert_int_equal(sim_store_mutate(st, "nodes", "", "n", set_label, "v", &out), 0);
    assert_int_equal(sim_store_rv(st), rv + 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(out, "metadata"), "labels"), "k")), "v");
    json_decref(out);
    /* no change needed: nothing committed */
    assert_int_equal(sim_store_mutate(st, "nodes", "", "n", set_label, "v", NULL), 0);
    assert_int_equal(sim_store_rv(st), rv + 1);
    assert_int_equal(sim_store_mutate(st, "nodes", "", "n", refuse, NULL, NULL), PW_EINVAL);
    assert_int_equal(sim_store_mutate(st, "nodes", "", "x", set_label, "v", NULL), PW_ENOTFOUND);
    /* the stored objects are immutable: the first reference did not change */
    assert_null(json_object_get(json_object_get(first, "metadata"), "labels"));
    json_decref(first);
    sim_store_free(st);
}

static void test_list_order_limit(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    const char *names[] = {"c", "a", "b", "e", "d"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sim_store_create(st, "pods", "ns2", obj(names[i]), NULL), 0);
        assert_int_equal(sim_store_create(st, "pods", "ns1", obj(names[i]), NULL), 0);
    }
    json_t *items;
    bool more;
    uint64_t rv;
    assert_int_equal(sim_store_list(st, "pods", "ns1", NULL, 0, NULL, NULL, &items, &more, &rv), 0);
    assert_int_equal(json_array_size(items), 5);
    assert_false(more);
    assert_int_equal(rv, sim_store_rv(st));
    for (size_t i = 0; i < 5; i++) {
        char want[2] = {(char)('a' + i), 0};
        assert_string_equal(meta_str(json_array_get(items, i), "name"), want);
    }
    json_decref(items);
    /* all namespaces: ns1 first, then ns2; a page of 3 then the rest after "ns1/c" */
    assert_int_equal(sim_store_list(st, "pods", NULL, NULL, 3, NULL, NULL, &items, &more, &rv), 0);
    assert_int_equal(json_array_size(items), 3);
    assert_true(more);
    json_decref(items);
    assert_int_equal(sim_store_list(st, "pods", NULL, "ns1/c", 0, NULL, NULL, &items, &more, &rv), 0);
    assert_int_equal(json_array_size(items), 7);
    assert_string_equal(meta_str(json_array_get(items, 0), "name"), "d");
    assert_string_equal(meta_str(json_array_get(items, 2), "namespace"), "ns2");
    json_decref(items);
    /* a limit equal to what remains: no "more" */
    assert_int_equal(sim_store_list(st, "pods", "ns2", NULL, 5, NULL, NULL, &items, &more, &rv), 0);
    assert_false(more);
    json_decref(items);
    assert_int_equal(sim_store_list(st, "nothing", NULL, NULL, 0, NULL, NULL, &items, &more, &rv), 0);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    sim_store_free(st);
}

struct rec {
    int n;
    int types[64];
    uint64_t rvs[64];
    bool had_old[64];
};

static void record(void *arg, const struct sim_change *ch)
{
    struct rec *r = arg;
    if (r->n < 64) {
        r->types[r->n] = ch->type;
        r->rvs[r->n] = ch->rv;
        r->had_old[r->n] = ch->old != NULL;
    }
    r->n++;
}

static void test_subscribe_history(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(4);
    struct rec live = {0};
    int id = sim_store_subscribe(st, record, &live);
    uint64_t rv0 = sim_store_rv(st);
    assert_int_equal(sim_store_create(st, "pods", "ns", obj("a"), NULL), 0);
    assert_int_equal(sim_store_update(st, "pods", "ns", "a", obj("a"), 0, NULL), 0);
    json_t *last;
    assert_int_equal(sim_store_delete(st, "pods", "ns", "a", &last), 0);
    assert_int_equal(sim_store_delete(st, "pods", "ns", "a", NULL), PW_ENOTFOUND);
    assert_int_equal(live.n, 3);
    assert_int_equal(live.types[0], SIM_ADDED);
    assert_false(live.had_old[0]);
    assert_int_equal(live.types[1], SIM_MODIFIED);
    assert_true(live.had_old[1]);
    assert_int_equal(live.types[2], SIM_DELETED);
    /* DELETED carries the deletion's resourceVersion */
    assert_int_equal(strtoull(meta_str(last, "resourceVersion"), NULL, 10), live.rvs[2]);
    assert_int_equal(live.rvs[2], rv0 + 3);
    json_decref(last);
    sim_store_unsubscribe(st, id);
    assert_int_equal(sim_store_create(st, "pods", "ns", obj("b"), NULL), 0);
    assert_int_equal(live.n, 3);
    /* replay from rv0+1: the 3 later changes (update, delete, create b) then live ones */
    struct rec r = {0};
    id = sim_store_subscribe_from(st, rv0 + 1, record, &r);
    assert_true(id >= 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.rvs[0], rv0 + 2);
    assert_int_equal(sim_store_create(st, "pods", "ns", obj("c"), NULL), 0);
    assert_int_equal(r.n, 4);
    sim_store_unsubscribe(st, id);
    /* history holds 4: rv0+1 fell out, so starting from rv0 is too old now */
    struct rec r2 = {0};
    assert_int_equal(sim_store_subscribe_from(st, rv0, record, &r2), PW_EGONE);
    assert_int_equal(r2.n, 0);
    id = sim_store_subscribe_from(st, rv0 + 1, record, &r2);
    assert_true(id >= 0);
    assert_int_equal(r2.n, 4);
    sim_store_unsubscribe(st, id);
    /* compaction: only the current rv is a valid start */
    uint64_t now = sim_store_rv(st);
    sim_store_compact(st);
    assert_int_equal(sim_store_subscribe_from(st, now - 1, record, &r2), PW_EGONE);
    struct rec r3 = {0};
    id = sim_store_subscribe_from(st, now, record, &r3);
    assert_true(id >= 0);
    assert_int_equal(r3.n, 0);
    sim_store_unsubscribe(st, id);
    sim_store_free(st);
}

/* The history's byte bound: big objects push old changes out long before the count bound. */
static void test_history_bytes(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(1000);
    sim_store_set_history_bytes(st, 64 * 1024);
    uint64_t rv0 = sim_store_rv(st);
    char *big = pw_xmalloc(20000);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        json_t *o = obj(name);
        json_object_set_new(o, "data", json_string(big));
        assert_int_equal(sim_store_create(st, "pods", "ns", o, NULL), 0);
    }
    /* ~20 KB each under a 64 KB bound: at most 3 kept, and the newest always */
    struct rec r = {0};
    assert_int_equal(sim_store_subscribe_from(st, rv0, record, &r), PW_EGONE);
    int id = sim_store_subscribe_from(st, rv0 + 7, record, &r);
    assert_true(id >= 0);
    assert_int_equal(r.n, 3);
    sim_store_unsubscribe(st, id);
    assert_int_equal(sim_store_subscribe_from(st, rv0 + 6, record, &r), PW_EGONE);
    /* one object over the whole bound is still kept (alone) */
    big = pw_xrealloc(big, 100000);
    memset(big, 'y', 99999);
    big[99999] = '\0';
    json_t *o = obj("huge");
    json_object_set_new(o, "data", json_string(big));
    assert_int_equal(sim_store_create(st, "pods", "ns", o, NULL), 0);
    struct rec r2 = {0};
    id = sim_store_subscribe_from(st, sim_store_rv(st) - 1, record, &r2);
    assert_true(id >= 0);
    assert_int_equal(r2.n, 1);
    sim_store_unsubscribe(st, id);
    /* 0: the count alone */
    sim_store_set_history_bytes(st, 0);
    uint64_t rv1 = sim_store_rv(st);
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "q%d", i);
        json_t *q = obj(name);
        json_object_set_new(q, "data", json_string(big));
        assert_int_equal(sim_store_create(st, "pods", "ns", q, NULL), 0);
    }
    struct rec r3 = {0};
    id = sim_store_subscribe_from(st, rv1, record, &r3);
    assert_true(id >= 0);
    assert_int_equal(r3.n, 10);
    sim_store_unsubscribe(st, id);
    free(big);
    sim_store_free(st);
}

static bool only_b(void *arg, const json_t *o)
{
    (void)arg;
    return strcmp(meta_str(o, "name"), "b") == 0;
}

static void test_filter_and_scale(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(1000);
    char name[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof(name), "node-%05d", (i * 7919) % 20000);
        assert_int_equal(sim_store_create(st, "nodes", "", obj(name), NULL), 0);
    }
    assert_int_equal(sim_store_create(st, "nodes", "", obj("b"), NULL), 0);
    json_t *items;
    bool more;
    uint64_t rv;
    assert_int_equal(sim_store_list(st, "nodes", NULL, NULL, 0, only_b, NULL, &items, &more, &rv), 0);
    assert_int_equal(json_array_size(items), 1);
    json_decref(items);
    assert_int_equal(sim_store_list(st, "nodes", "", "node-09999", 2, NULL, NULL, &items, &more, &rv), 0);
    assert_string_equal(meta_str(json_array_get(items, 0), "name"), "node-10000");
    assert_string_equal(meta_str(json_array_get(items, 1), "name"), "node-10001");
    assert_true(more);
    json_decref(items);
    for (int i = 0; i < 20000; i += 2) {
        snprintf(name, sizeof(name), "node-%05d", i);
        assert_int_equal(sim_store_delete(st, "nodes", "", name, NULL), 0);
    }
    assert_int_equal(sim_store_count(st, "nodes"), 10001);
    sim_store_free(st);
}

/* ---- concurrency: writers on several threads, a watcher that re-subscribes from the last rv it saw
 * and must see every change exactly once, in order ---- */

struct seq {
    pthread_mutex_t mu;
    uint64_t last;
    long seen, gaps;
};

static void seq_fn(void *arg, const struct sim_change *ch)
{
    struct seq *q = arg;
    pthread_mutex_lock(&q->mu);
    if (q->last && ch->rv != q->last + 1)
        q->gaps++;
    q->last = ch->rv;
    q->seen++;
    pthread_mutex_unlock(&q->mu);
}

struct wargs {
    sim_store *st;
    int id;
};

static void *writer(void *arg)
{
    struct wargs *a = arg;
    char name[32];
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof(name), "w%d-%d", a->id, i);
        sim_store_create(a->st, "pods", "ns", obj(name), NULL);
        sim_store_update(a->st, "pods", "ns", name, obj(name), 0, NULL);
        if (i % 3 == 0)
            sim_store_delete(a->st, "pods", "ns", name, NULL);
    }
    return NULL;
}

static void test_concurrent_replay(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100000);
    struct seq q = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
    uint64_t start = sim_store_rv(st);
    q.last = start;
    int id = sim_store_subscribe_from(st, start, seq_fn, &q);
    pthread_t t[4];
    struct wargs a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct wargs){st, i};
        pthread_create(&t[i], NULL, writer, &a[i]);
    }
    /* hop: unsubscribe and re-subscribe from the last rv seen, many times, while writers run */
    for (int hop = 0; hop < 200; hop++) {
        sim_store_unsubscribe(st, id);
        pthread_mutex_lock(&q.mu);
        uint64_t from = q.last;
        pthread_mutex_unlock(&q.mu);
        id = sim_store_subscribe_from(st, from, seq_fn, &q);
        assert_true(id >= 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    sim_store_unsubscribe(st, id);
    long changes = 4 * (500 * 2 + 167);
    assert_int_equal(q.gaps, 0);
    assert_int_equal(q.seen, changes);
    assert_int_equal(q.last, start + (uint64_t)changes);
    assert_int_equal(sim_store_count(st, "pods"), 4 * (500 - 167));
    sim_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_get),     cmocka_unit_test(test_generate_name),
        cmocka_unit_test(test_update_conflict_generation), cmocka_unit_test(test_mutate),
        cmocka_unit_test(test_list_order_limit), cmocka_unit_test(test_subscribe_history),
        cmocka_unit_test(test_history_bytes),
        cmocka_unit_test(test_filter_and_scale), cmocka_unit_test(test_concurrent_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
