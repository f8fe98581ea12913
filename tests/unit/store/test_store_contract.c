/* The store contract (store.h) run against every back end: one table of back ends, every test
 * runs once per row. Tasks put/get/replace, documents copied in and out, newest-first listing with a
 * status filter and continue tokens across many pages, unfinished tasks oldest first, node results
 * in name order with a state filter and pagination, an all-or-nothing node batch, delete and prune
 * cascading to node results, records (three write modes, kinds apart, key order and pages, copies in
 * and out, kept across reopen). The redis row runs against a real redis-server this program starts on
 * a free loopback port, the rediss row against the same server's TLS port (a test PKI made with the
 * openssl command) (skipped, saying so, only when redis-server is not installed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "store/store.h"
#include "unit/store/redis_server.h"

enum backend_kind {
    BE_MEMORY, /* "memory:" */
    BE_FILE,   /* "<scheme>:<tmpdir>/store.db" */
    BE_REDIS,  /* "redis://127.0.0.1:<port>/0?prefix=<unique>:" on the redis-server main() started */
    BE_REDISS, /* the same server's TLS port, rediss:// with the test PKI's CA and client certificate */
};

struct backend {
    const char *name;
    enum backend_kind kind;
};

static const struct backend backends[] = {
    {"memory", BE_MEMORY},
    {"sqlite", BE_FILE},
    {"redis", BE_REDIS},
    {"rediss", BE_REDISS},
};

/* The redis-server of this run (pid 0: none on PATH or it did not start; its rows skip). */
static struct rtest_server redis_srv;
static bool redis_absent;
static int redis_prefix_seq;
static char tls_dir[64]; /* the test PKI (rtest_make_tls); "" when none could be made */

struct fixture {
    const struct backend *be;
    char dir[64];
    char url[512];
    pw_store *s;
};

static int fx_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    fx->be = *state;
    *state = fx;
    if (fx->be->kind == BE_FILE) {
        snprintf(fx->dir, sizeof fx->dir, "/tmp/pw-store-contract-XXXXXX");
        if (!mkdtemp(fx->dir))
            return -1;
        snprintf(fx->url, sizeof fx->url, "%s:%s/store.db", fx->be->name, fx->dir);
    } else if (fx->be->kind == BE_REDIS || fx->be->kind == BE_REDISS) {
        if (redis_srv.pid == 0 || (fx->be->kind == BE_REDISS && !tls_dir[0]))
            return redis_absent ? 0 : -1; /* absent: fx_store skips the test; else it failed to start */
        /* a prefix per test: the tests share the server, never a key */
        if (fx->be->kind == BE_REDIS)
            snprintf(fx->url, sizeof fx->url, "redis://127.0.0.1:%d/0?prefix=contract%d:", redis_srv.port,
                     ++redis_prefix_seq);
        else
            snprintf(fx->url, sizeof fx->url,
                     "rediss://127.0.0.1:%d/0?prefix=contract%d:&ca=%s/ca.crt&cert=%s/client.crt&key=%s/client.key",
                     redis_srv.tls_port, ++redis_prefix_seq, tls_dir, tls_dir, tls_dir);
    } else {
        snprintf(fx->url, sizeof fx->url, "%s:", fx->be->name);
    }
    char *err = NULL;
    if (pw_store_open(fx->url, &fx->s, &err) != 0) {
        fprintf(stderr, "open %s: %s\n", fx->url, err ? err : "?");
        free(err);
        return -1;
    }
    return 0;
}

static int fx_teardown(void **state)
{
    struct fixture *fx = *state;
    pw_store_close(fx->s);
    if (fx->be->kind == BE_FILE) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
        if (system(cmd) != 0)
            return -1;
    }
    free(fx);
    return 0;
}

static pw_store *fx_store(void **state)
{
    struct fixture *fx = *state;
    if (!fx->s)
        skip(); /* the redis row without a redis-server */
    return fx->s;
}

static void put_task(pw_store *s, const char *id, const char *status, int64_t created, int64_t finished)
{
    json_t *doc = json_pack("{s:s,s:s,s:I}", "id", id, "status", status, "created", (json_int_t)created);
    struct pw_store_task t = {.id = (char *)id,
                              .status = (char *)status,
                              .priority = 7,
                              .created_ms = created,
                              .finished_ms = finished,
                              .doc = doc};
    assert_int_equal(pw_store_task_put(s, &t), 0);
    json_decref(doc);
}

static void task_id(char *buf, size_t n, int i)
{
    snprintf(buf, n, "t-%012d", i);
}

static void test_task_put_get_replace(void **state)
{
    pw_store *s = fx_store(state);
    put_task(s, "t-000000000001", "running", 1000, 0);
    put_task(s, "t-000000000001", "failed", 1000, 50); /* replace */

    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000000000009", &t), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_get(s, "t-000000000001", &t), 0);
    assert_string_equal(t.id, "t-000000000001");
    assert_string_equal(t.status, "failed");
    assert_int_equal(t.priority, 7);
    assert_int_equal(t.created_ms, 1000);
    assert_int_equal(t.finished_ms, 50);
    assert_string_equal(json_string_value(json_object_get(t.doc, "status")), "failed");
    assert_int_equal(json_integer_value(json_object_get(t.doc, "created")), 1000);
    pw_store_task_fini(&t);

    /* The store copies documents: changing ours after the put changes nothing stored. */
    json_t *doc = json_pack("{s:s,s:[i,i]}", "id", "t-000000000002", "list", 1, 2);
    struct pw_store_task in = {.id = "t-000000000002", .status = "pending", .created_ms = 2, .doc = doc};
    assert_int_equal(pw_store_task_put(s, &in), 0);
    json_object_set_new(doc, "mutated", json_true());
    json_decref(doc);
    assert_int_equal(pw_store_task_get(s, "t-000000000002", &t), 0);
    assert_null(json_object_get(t.doc, "mutated"));
    assert_int_equal(json_array_size(json_object_get(t.doc, "list")), 2);
    json_object_set_new(t.doc, "mine", json_true()); /* handed-out documents are the caller's */
    pw_store_task_fini(&t);
    assert_int_equal(pw_store_task_get(s, "t-000000000002", &t), 0);
    assert_null(json_object_get(t.doc, "mine"));
    pw_store_task_fini(&t);

    /* Large and unicode documents round-trip. */
    char *big = malloc(200001);
    memset(big, 'x', 200000);
    big[200000] = '\0';
    doc = json_pack("{s:s,s:s}", "big", big, "u",
                    "n\xc3\xb6"
                    "de \xe2\x9c\x93");
    in = (struct pw_store_task){.id = "t-000000000003", .status = "pending", .doc = doc};
    assert_int_equal(pw_store_task_put(s, &in), 0);
    json_decref(doc);
    assert_int_equal(pw_store_task_get(s, "t-000000000003", &t), 0);
    assert_string_equal(json_string_value(json_object_get(t.doc, "big")), big);
    assert_string_equal(json_string_value(json_object_get(t.doc, "u")), "n\xc3\xb6"
                                                                        "de \xe2\x9c\x93");
    pw_store_task_fini(&t);
    free(big);
}

/* Walks every page of a listing and checks it against the expected ids (newest first). */
static void walk_pages(pw_store *s, const char *status, size_t limit, const int *want, size_t n_want)
{
    char *cont = NULL;
    size_t seen = 0, pages = 0;
    char id[32];
    for (;;) {
        struct pw_store_task *items;
        size_t n;
        char *next;
        assert_int_equal(pw_store_task_list(s, status, limit, cont, &items, &n, &next), 0);
        free(cont);
        pages++;
        assert_true(n <= limit);
        for (size_t i = 0; i < n; i++) {
            assert_true(seen < n_want);
            task_id(id, sizeof id, want[seen++]);
            assert_string_equal(items[i].id, id);
            if (status)
                assert_string_equal(items[i].status, status);
        }
        pw_store_tasks_free(items, n);
        if (!next)
            break;
        assert_int_equal(n, limit); /* a token only after a full page */
        assert_true(pages < 100);
        cont = next;
    }
    assert_int_equal(seen, n_want);
    assert_int_equal(pages, n_want == 0 ? 1 : (n_want + limit - 1) / limit);
}

static const char *const statuses[] = {"pending", "running", "succeeded", "failed", "cancelled"};

static void test_task_list_pages(void **state)
{
    pw_store *s = fx_store(state);
    char id[32];
    /* 23 tasks put in a scrambled order; task i has status statuses[i % 5]. */
    for (int k = 0; k < 23; k++) {
        int i = 1 + (k * 7) % 23;
        task_id(id, sizeof id, i);
        put_task(s, id, statuses[i % 5], 1000 + i, pw_store_status_final(statuses[i % 5]) ? 5000 + i : 0);
    }
    int all[23], runs[23];
    size_t n_runs = 0;
    for (int k = 0; k < 23; k++) {
        all[k] = 23 - k;
        if ((23 - k) % 5 == 1)
            runs[n_runs++] = 23 - k;
    }
    walk_pages(s, NULL, 23, all, 23);
    walk_pages(s, NULL, 5, all, 23);
    walk_pages(s, NULL, 1, all, 23);
    walk_pages(s, "running", 2, runs, n_runs);
    walk_pages(s, "running", 100, runs, n_runs);
    walk_pages(s, "nosuchstatus", 3, NULL, 0);

    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, &n, &next), 0); /* no limit */
    assert_int_equal(n, 23);
    assert_null(next);
    pw_store_tasks_free(items, n);
    assert_int_equal(pw_store_task_list(s, "", 0, "", &items, &n, &next), 0); /* "" means none */
    assert_int_equal(n, 23);
    pw_store_tasks_free(items, n);
    assert_int_equal(pw_store_task_list(s, NULL, 0, "garbage", &items, &n, &next), PW_EINVAL);

    /* A token stays valid when the task it names is deleted meanwhile. */
    assert_int_equal(pw_store_task_list(s, NULL, 4, NULL, &items, &n, &next), 0);
    assert_string_equal(items[3].id, "t-000000000020");
    pw_store_tasks_free(items, n);
    assert_int_equal(pw_store_task_delete(s, "t-000000000020"), 0);
    char *tok = next;
    assert_int_equal(pw_store_task_list(s, NULL, 2, tok, &items, &n, &next), 0);
    free(tok);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].id, "t-000000000019");
    pw_store_tasks_free(items, n);
    free(next);

    /* Unfinished: pending and running, oldest first. */
    assert_int_equal(pw_store_task_list_unfinished(s, &items, &n), 0);
    size_t want = 0;
    for (int i = 1; i <= 23; i++)
        if ((i % 5 == 0 || i % 5 == 1) && i != 20) /* t-...20 was deleted above */
            want++;
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++) {
        assert_false(pw_store_status_final(items[i].status));
        if (i > 0)
            assert_true(strcmp(items[i - 1].id, items[i].id) < 0);
    }
    pw_store_tasks_free(items, n);
}

static void test_prune_delete(void **state)
{
    pw_store *s = fx_store(state);
    put_task(s, "t-000000000001", "succeeded", 1, 100);
    put_task(s, "t-000000000002", "failed", 2, 200);
    put_task(s, "t-000000000003", "cancelled", 3, 300);
    put_task(s, "t-000000000004", "running", 4, 0);
    put_task(s, "t-000000000005", "pending", 5, 0);
    size_t removed = 99;
    assert_int_equal(pw_store_prune(s, 100, &removed), 0); /* strictly older */
    assert_int_equal(removed, 0);
    assert_int_equal(pw_store_prune(s, 250, &removed), 0);
    assert_int_equal(removed, 2);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000000000001", &t), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_get(s, "t-000000000002", &t), PW_ENOTFOUND);
    assert_int_equal(pw_store_prune(s, 1000000, NULL), 0); /* unfinished are never pruned */
    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].id, "t-000000000005");
    assert_string_equal(items[1].id, "t-000000000004");
    pw_store_tasks_free(items, n);
    assert_int_equal(pw_store_task_delete(s, "t-000000000004"), 0);
    assert_int_equal(pw_store_task_delete(s, "t-000000000004"), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_get(s, "t-000000000004", &t), PW_ENOTFOUND);
}

static void put_nodes(pw_store *s, const char *task, int n, const char *(*state_of)(int))
{
    struct pw_store_node *ns = calloc((size_t)n, sizeof *ns);
    char(*names)[32] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        int k = (i * 13) % n; /* out of order on purpose */
        snprintf(names[i], sizeof names[i], "node-%04d", k);
        ns[i] = (struct pw_store_node){.task_id = (char *)task,
                                       .node_name = names[i],
                                       .state = (char *)state_of(k),
                                       .doc = json_pack("{s:s,s:s}", "nodeName", names[i], "state", state_of(k))};
    }
    assert_int_equal(pw_store_nodes_put(s, ns, (size_t)n), 0);
    for (int i = 0; i < n; i++)
        json_decref(ns[i].doc);
    free(ns);
    free(names);
}

static const char *state_mod3(int k)
{
    static const char *const st[] = {"succeeded", "failed", "running"};
    return st[k % 3];
}

static size_t count_nodes(pw_store *s, const char *task, const char *state)
{
    struct pw_store_node *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_nodes_list(s, task, state, 0, NULL, &items, &n, &next), 0);
    assert_null(next);
    pw_store_nodes_free(items, n);
    return n;
}

static void test_nodes(void **state)
{
    pw_store *s = fx_store(state);
    struct pw_store_node orphan = {.task_id = "t-x", .node_name = "n", .state = "pending", .doc = json_object()};
    assert_int_equal(pw_store_nodes_put(s, &orphan, 1), PW_ENOTFOUND);
    put_task(s, "t-000000000001", "running", 1, 0);
    put_task(s, "t-000000000002", "running", 2, 0);
    put_nodes(s, "t-000000000001", 60, state_mod3); /* 60 nodes, 1 (coprime 13) batch */
    put_nodes(s, "t-000000000002", 5, state_mod3);

    /* A batch with one orphan writes nothing. */
    struct pw_store_node mixed[2] = {
        {.task_id = "t-000000000001", .node_name = "node-new", .state = "pending", .doc = orphan.doc},
        orphan,
    };
    assert_int_equal(pw_store_nodes_put(s, mixed, 2), PW_ENOTFOUND);
    json_decref(orphan.doc);
    assert_int_equal(count_nodes(s, "t-000000000001", NULL), 60);
    assert_int_equal(count_nodes(s, "t-000000000001", "running"), 20);
    assert_int_equal(count_nodes(s, "t-000000000002", NULL), 5);

    /* Replace one node: running -> succeeded. */
    json_t *doc = json_pack("{s:s,s:s}", "nodeName", "node-0002", "state", "succeeded");
    struct pw_store_node one = {
        .task_id = "t-000000000001", .node_name = "node-0002", .state = "succeeded", .doc = doc};
    assert_int_equal(pw_store_nodes_put(s, &one, 1), 0);
    json_decref(doc);
    assert_int_equal(count_nodes(s, "t-000000000001", "running"), 19);
    assert_int_equal(count_nodes(s, "t-000000000001", "succeeded"), 21);

    /* All in name order, in pages of 7. */
    char *cont = NULL;
    int seen = 0;
    for (int pages = 0; pages < 20; pages++) {
        struct pw_store_node *items;
        size_t n;
        char *next;
        assert_int_equal(pw_store_nodes_list(s, "t-000000000001", NULL, 7, cont, &items, &n, &next), 0);
        free(cont);
        for (size_t i = 0; i < n; i++) {
            char want[32];
            snprintf(want, sizeof want, "node-%04d", seen++);
            assert_string_equal(items[i].node_name, want);
            assert_string_equal(items[i].task_id, "t-000000000001");
            assert_string_equal(json_string_value(json_object_get(items[i].doc, "nodeName")), want);
            assert_string_equal(json_string_value(json_object_get(items[i].doc, "state")), items[i].state);
        }
        pw_store_nodes_free(items, n);
        cont = next;
        if (!cont)
            break;
    }
    assert_null(cont);
    assert_int_equal(seen, 60);

    /* State filter across pages: failed are 1, 4, 7, ..., 58. */
    cont = NULL;
    seen = 0;
    for (int pages = 0; pages < 20; pages++) {
        struct pw_store_node *items;
        size_t n;
        char *next;
        assert_int_equal(pw_store_nodes_list(s, "t-000000000001", "failed", 3, cont, &items, &n, &next), 0);
        free(cont);
        for (size_t i = 0; i < n; i++) {
            char want[32];
            snprintf(want, sizeof want, "node-%04d", 1 + 3 * seen++);
            assert_string_equal(items[i].node_name, want);
            assert_string_equal(items[i].state, "failed");
        }
        pw_store_nodes_free(items, n);
        cont = next;
        if (!cont)
            break;
    }
    assert_int_equal(seen, 20);

    struct pw_store_node *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_nodes_list(s, "t-nope", NULL, 0, NULL, &items, &n, &next), PW_ENOTFOUND);
    assert_int_equal(pw_store_nodes_list(s, "t-000000000002", "pending", 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 0);
    assert_null(next);
    pw_store_nodes_free(items, n);

    /* Delete cascades: a task put again under the same id has no node results. */
    assert_int_equal(pw_store_task_delete(s, "t-000000000001"), 0);
    assert_int_equal(pw_store_nodes_list(s, "t-000000000001", NULL, 0, NULL, &items, &n, &next), PW_ENOTFOUND);
    put_task(s, "t-000000000001", "running", 1, 0);
    assert_int_equal(count_nodes(s, "t-000000000001", NULL), 0);
    assert_int_equal(count_nodes(s, "t-000000000002", NULL), 5);

    /* Prune cascades too. */
    put_task(s, "t-000000000002", "succeeded", 2, 10);
    assert_int_equal(count_nodes(s, "t-000000000002", NULL), 5); /* replace keeps node results */
    size_t removed;
    assert_int_equal(pw_store_prune(s, 11, &removed), 0);
    assert_int_equal(removed, 1);
    put_task(s, "t-000000000002", "running", 2, 0);
    assert_int_equal(count_nodes(s, "t-000000000002", NULL), 0);
}

static void test_args(void **state)
{
    pw_store *s = fx_store(state);
    struct pw_store_task t = {.id = "t-1", .status = "pending", .doc = NULL};
    assert_int_equal(pw_store_task_put(s, &t), PW_EINVAL);
    struct pw_store_node node = {.task_id = "t-1", .node_name = NULL, .state = "x", .doc = NULL};
    assert_int_equal(pw_store_nodes_put(s, &node, 1), PW_EINVAL);
    assert_int_equal(pw_store_nodes_put(s, NULL, 0), 0);
    assert_int_equal(pw_store_task_delete(s, "t-none"), PW_ENOTFOUND);
    size_t removed = 5;
    assert_int_equal(pw_store_prune(s, INT64_MAX, &removed), 0);
    assert_int_equal(removed, 0);
    /* every call refuses missing arguments before the back end sees them */
    json_t *doc = json_object();
    struct pw_store_task no_id = {.status = "pending", .doc = doc}, no_status = {.id = "t-1", .doc = doc};
    assert_int_equal(pw_store_task_put(s, &no_id), PW_EINVAL);
    assert_int_equal(pw_store_task_put(s, &no_status), PW_EINVAL);
    assert_int_equal(pw_store_task_put(s, NULL), PW_EINVAL);
    struct pw_store_task out;
    assert_int_equal(pw_store_task_get(s, NULL, &out), PW_EINVAL);
    assert_int_equal(pw_store_task_get(s, "t-1", NULL), PW_EINVAL);
    assert_int_equal(pw_store_task_get(s, "t-none", &out), PW_ENOTFOUND);
    struct pw_store_task *items = NULL;
    size_t n = 0;
    char *next = NULL;
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, NULL, &n, &next), PW_EINVAL);
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, NULL, &next), PW_EINVAL);
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, &n, NULL), PW_EINVAL);
    /* "" means no filter and no token */
    assert_int_equal(pw_store_task_list(s, "", 0, "", &items, &n, &next), 0);
    pw_store_tasks_free(items, n);
    free(next);
    assert_int_equal(pw_store_task_list_unfinished(s, NULL, &n), PW_EINVAL);
    assert_int_equal(pw_store_task_list_unfinished(s, &items, NULL), PW_EINVAL);
    assert_int_equal(pw_store_task_delete(s, NULL), PW_EINVAL);
    struct pw_store_node bad[3] = {
        {.task_id = NULL, .node_name = "n", .state = "pending", .doc = doc},
        {.task_id = "t-1", .node_name = "n", .state = NULL, .doc = doc},
        {.task_id = "t-1", .node_name = "n", .state = "pending", .doc = NULL},
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(pw_store_nodes_put(s, &bad[i], 1), PW_EINVAL);
    struct pw_store_node *nodes = NULL;
    next = NULL;
    assert_int_equal(pw_store_nodes_list(s, NULL, NULL, 0, NULL, &nodes, &n, &next), PW_EINVAL);
    assert_int_equal(pw_store_nodes_list(s, "t-1", NULL, 0, NULL, NULL, &n, &next), PW_EINVAL);
    assert_int_equal(pw_store_nodes_list(s, "t-1", NULL, 0, NULL, &nodes, NULL, &next), PW_EINVAL);
    assert_int_equal(pw_store_nodes_list(s, "t-1", NULL, 0, NULL, &nodes, &n, NULL), PW_EINVAL);
    put_task(s, "t-args", "running", 1, 0);
    int rc = pw_store_nodes_list(s, "t-args", "", 0, "", &nodes, &n, &next);
    assert_int_equal(rc, 0);
    assert_int_equal(n, 0);
    pw_store_nodes_free(nodes, n);
    free(next);
    json_decref(doc);
    /* the finalizers take NULL */
    pw_store_task_fini(NULL);
    pw_store_node_fini(NULL);
    pw_store_tasks_free(NULL, 0);
    pw_store_nodes_free(NULL, 0);
    /* the name tables */
    assert_int_equal(pw_task_status_of("cancelled"), PW_TASK_CANCELLED);
    assert_int_equal(pw_task_status_of("nope"), -1);
    assert_int_equal(pw_task_status_of(NULL), -1);
    assert_int_equal(pw_node_state_of("skipped"), PW_NODE_SKIPPED);
    assert_false(pw_store_status_final("nope"));
}

/* ---- records ---- */

static json_t *rec_get(pw_store *s, const char *kind, const char *key)
{
    json_t *doc = NULL;
    int rc = pw_store_rec_get(s, kind, key, &doc);
    if (rc == PW_ENOTFOUND)
        return NULL;
    assert_int_equal(rc, 0);
    assert_non_null(doc);
    return doc;
}

static void test_records(void **state)
{
    pw_store *s = fx_store(state);
    struct fixture *fx = *state;
    /* the three modes */
    json_t *a = json_pack("{s:s,s:i}", "name", "gpu", "v", 1);
    assert_int_equal(pw_store_rec_put(s, "policy", "gpu", a, PW_STORE_REC_UPDATE), PW_ENOTFOUND);
    assert_null(rec_get(s, "policy", "gpu"));
    assert_int_equal(pw_store_rec_put(s, "policy", "gpu", a, PW_STORE_REC_CREATE), 0);
    json_object_set_new(a, "v", json_integer(2)); /* the store kept a copy, not the caller's value */
    json_t *got = rec_get(s, "policy", "gpu");
    assert_int_equal(json_integer_value(json_object_get(got, "v")), 1);
    json_object_set_new(got, "v", json_integer(99)); /* and hands out copies */
    json_decref(got);
    got = rec_get(s, "policy", "gpu");
    assert_int_equal(json_integer_value(json_object_get(got, "v")), 1);
    json_decref(got);
    assert_int_equal(pw_store_rec_put(s, "policy", "gpu", a, PW_STORE_REC_CREATE), PW_EEXIST);
    got = rec_get(s, "policy", "gpu"); /* a refused create wrote nothing */
    assert_int_equal(json_integer_value(json_object_get(got, "v")), 1);
    json_decref(got);
    assert_int_equal(pw_store_rec_put(s, "policy", "gpu", a, PW_STORE_REC_UPDATE), 0);
    got = rec_get(s, "policy", "gpu");
    assert_int_equal(json_integer_value(json_object_get(got, "v")), 2);
    json_decref(got);
    json_t *arr = json_pack("[i,i]", 1, 2); /* arrays are documents too */
    assert_int_equal(pw_store_rec_put(s, "predict", "model", arr, PW_STORE_REC_UPSERT), 0);
    json_decref(arr);
    got = rec_get(s, "predict", "model");
    assert_true(json_is_array(got) && json_array_size(got) == 2);
    json_decref(got);
    /* kinds are separate namespaces: the same key in another kind is another record */
    assert_null(rec_get(s, "webhook", "gpu"));

    /* listing: bytewise key order, pages with continue tokens, only the kind asked for */
    char key[64];
    const int total = 45;
    for (int i = total - 1; i >= 0; i--) {
        snprintf(key, sizeof key, "d-%04d/%s", i, i % 2 ? "odd" : "even");
        json_t *d = json_pack("{s:i}", "i", i);
        assert_int_equal(pw_store_rec_put(s, "webhook", key, d, PW_STORE_REC_UPSERT), 0);
        json_decref(d);
    }
    char *cont = NULL;
    int seen = 0, pages = 0;
    do {
        struct pw_store_rec *items = NULL;
        size_t n = 0;
        char *next = NULL;
        assert_int_equal(pw_store_rec_list(s, "webhook", 10, cont, &items, &n, &next), 0);
        free(cont);
        cont = next;
        pages++;
        assert_true(n <= 10);
        for (size_t i = 0; i < n; i++, seen++) {
            snprintf(key, sizeof key, "d-%04d/%s", seen, seen % 2 ? "odd" : "even");
            assert_string_equal(items[i].key, key);
            assert_int_equal(json_integer_value(json_object_get(items[i].doc, "i")), seen);
        }
        pw_store_recs_free(items, n);
    } while (cont);
    assert_int_equal(seen, total);
    assert_int_equal(pages, 5);
    struct pw_store_rec *items = NULL;
    size_t n = 0;
    char *next = NULL;
    assert_int_equal(pw_store_rec_list(s, "policy", 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].key, "gpu");
    assert_null(next);
    pw_store_recs_free(items, n);
    assert_int_equal(pw_store_rec_list(s, "nothing-here", 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 0);
    pw_store_recs_free(items, n);
    assert_int_equal(pw_store_rec_list(s, "policy", 0, "bogus", &items, &n, &next), PW_EINVAL);

    /* delete; records are not tasks: prune leaves them alone */
    assert_int_equal(pw_store_rec_delete(s, "webhook", "d-0000/even"), 0);
    assert_int_equal(pw_store_rec_delete(s, "webhook", "d-0000/even"), PW_ENOTFOUND);
    assert_null(rec_get(s, "webhook", "d-0000/even"));
    assert_int_equal(pw_store_prune(s, INT64_MAX, NULL), 0);
    got = rec_get(s, "webhook", "d-0001/odd");
    assert_non_null(got);
    json_decref(got);

    /* bad arguments never reach the back end */
    assert_int_equal(pw_store_rec_put(s, "Policy", "k", a, PW_STORE_REC_UPSERT), PW_EINVAL);
    assert_int_equal(pw_store_rec_put(s, "", "k", a, PW_STORE_REC_UPSERT), PW_EINVAL);
    assert_int_equal(pw_store_rec_put(s, "policy", "", a, PW_STORE_REC_UPSERT), PW_EINVAL);
    assert_int_equal(pw_store_rec_put(s, "policy", "k", NULL, PW_STORE_REC_UPSERT), PW_EINVAL);
    json_t *str = json_string("scalar");
    assert_int_equal(pw_store_rec_put(s, "policy", "k", str, PW_STORE_REC_UPSERT), PW_EINVAL);
    json_decref(str);
    assert_int_equal(pw_store_rec_put(s, "policy", "k", a, (enum pw_store_rec_mode)7), PW_EINVAL);
    char longkey[600];
    memset(longkey, 'x', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(pw_store_rec_put(s, "policy", longkey, a, PW_STORE_REC_UPSERT), PW_EINVAL);
    assert_int_equal(pw_store_rec_get(s, "policy", "gpu", NULL), PW_EINVAL);
    assert_int_equal(pw_store_rec_delete(s, "bad kind", "gpu"), PW_EINVAL);
    json_decref(a);
    pw_store_recs_free(NULL, 0);

    /* durable back ends keep records across close and reopen */
    if (fx->be->kind != BE_MEMORY) {
        pw_store_close(fx->s);
        fx->s = NULL;
        char *err = NULL;
        assert_int_equal(pw_store_open(fx->url, &fx->s, &err), 0);
        got = rec_get(fx->s, "policy", "gpu");
        assert_non_null(got);
        assert_int_equal(json_integer_value(json_object_get(got, "v")), 2);
        json_decref(got);
        assert_int_equal(pw_store_rec_list(fx->s, "webhook", 0, NULL, &items, &n, &next), 0);
        assert_int_equal(n, (size_t)total - 1);
        pw_store_recs_free(items, n);
    }
}

static const struct {
    const char *name;
    CMUnitTestFunction fn;
} contract_tests[] = {
    {"records", test_records},
    {"task_put_get_replace", test_task_put_get_replace},
    {"task_list_pages", test_task_list_pages},
    {"prune_delete", test_prune_delete},
    {"nodes", test_nodes},
    {"args", test_args},
};

#define N_BACKENDS (sizeof backends / sizeof backends[0])
#define N_CONTRACT (sizeof contract_tests / sizeof contract_tests[0])

int main(void)
{
    redis_absent = !rtest_find(redis_srv.bin, sizeof redis_srv.bin);
    snprintf(tls_dir, sizeof tls_dir, "/tmp/pw-contract-tls-XXXXXX");
    if (!redis_absent && mkdtemp(tls_dir) && rtest_make_tls(tls_dir) == 0)
        redis_srv.tls_dir = tls_dir;
    else if (!redis_absent)
        printf("# the test PKI could not be made (openssl): the rediss rows fail\n");
    if (!redis_srv.tls_dir)
        tls_dir[0] = '\0';
    if (redis_absent)
        printf("# SKIP: redis-server is not on PATH (scripts/install-deps installs it): the redis rows skip\n");
    else if (rtest_start(&redis_srv) != 0)
        printf("# redis-server %s did not start: the redis rows fail\n", redis_srv.bin);
    /* Every contract test once per back end, named "<backend>: <test>". */
    static struct CMUnitTest tests[N_BACKENDS * N_CONTRACT];
    static char names[N_BACKENDS * N_CONTRACT][64];
    size_t k = 0;
    for (size_t b = 0; b < N_BACKENDS; b++) {
        for (size_t i = 0; i < N_CONTRACT; i++, k++) {
            snprintf(names[k], sizeof names[k], "%s: %s", backends[b].name, contract_tests[i].name);
            tests[k] = (struct CMUnitTest){.name = names[k],
                                           .test_func = contract_tests[i].fn,
                                           .setup_func = fx_setup,
                                           .teardown_func = fx_teardown,
                                           .initial_state = (void *)&backends[b]};
        }
    }
    int failed = _cmocka_run_group_tests("store_contract", tests, k, NULL, NULL);
    rtest_cleanup(&redis_srv);
    if (tls_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", tls_dir);
    }
    return failed;
}
