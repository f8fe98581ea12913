/* Unit tests of the "redis://" store back end beyond the shared contract (test_store_contract.c),
 * against real redis-servers this program starts on free loopback ports: url parsing and its
 * errors, keys only under the prefix and prefixes isolated, the
 * schema version key (set on open, a newer one refused, concurrent first opens agree), Redis killed
 * under the store (calls answer PW_EUNAVAIL, never a half-written task, and recover after a restart
 * with nothing acknowledged lost), kill -9 of Redis keeps every acknowledged write (appendfsync
 * always), a restart under pooled connections costs no failed call, a flushed script cache, many
 * threads at once, and passwords (AUTH, ACL users) that never reach an error message. rediss://
 * (TLS, redis_tls.h) against a redis-server serving TLS with a test PKI made by the openssl command:
 * the outage, restart-under-pool and threads tests again over TLS, and its verification (a wrong CA,
 * a host the certificate does not name, no client certificate, bad files: each refused, saying why).
 * Every test skips, saying so, when redis-server is not installed. */
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
#include "base/log.h"
#include "store/store.h"
#include "unit/store/redis_server.h"

static bool have_redis;
static char tls_dir[64]; /* rtest_make_tls's PKI, made once by main; "" when it could not be made */

struct fixture {
    struct rtest_server srv;
    char url[512];
    pw_store *s;
};

static int fx_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (!have_redis)
        return 0;
    if (rtest_start(&fx->srv) != 0)
        return -1;
    snprintf(fx->url, sizeof fx->url, "redis://127.0.0.1:%d/0", fx->srv.port);
    return 0;
}

/* The fixture's server also serves TLS, and url is its rediss:// one with the client certificate. */
static int fx_setup_tls(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    *state = fx;
    if (!have_redis)
        return 0;
    if (!tls_dir[0])
        return -1;
    fx->srv.tls_dir = tls_dir;
    if (rtest_start(&fx->srv) != 0)
        return -1;
    snprintf(fx->url, sizeof fx->url, "rediss://127.0.0.1:%d/0?ca=%s/ca.crt&cert=%s/client.crt&key=%s/client.key",
             fx->srv.tls_port, tls_dir, tls_dir, tls_dir);
    return 0;
}

static int fx_teardown(void **state)
{
    struct fixture *fx = *state;
    pw_store_close(fx->s);
    rtest_cleanup(&fx->srv);
    free(fx);
    return 0;
}

static struct fixture *fx_get(void **state)
{
    if (!have_redis)
        skip();
    return *state;
}

static pw_store *open_ok(const char *url)
{
    pw_store *s = NULL;
    char *err = NULL;
    int rc = pw_store_open(url, &s, &err);
    if (rc != 0)
        fprintf(stderr, "open %s: %s\n", url, err ? err : "?");
    assert_int_equal(rc, 0);
    free(err);
    return s;
}

/* Opens url expecting failure rc; returns the message (caller frees). */
static char *open_fails(const char *url, int want)
{
    pw_store *s = NULL;
    char *err = NULL;
    assert_int_equal(pw_store_open(url, &s, &err), want);
    assert_null(s);
    assert_non_null(err);
    return err;
}

static void put_task(pw_store *s, const char *id, const char *status)
{
    json_t *doc = json_pack("{s:s,s:s}", "id", id, "status", status);
    struct pw_store_task t = {.id = (char *)id, .status = (char *)status, .created_ms = 1, .doc = doc};
    assert_int_equal(pw_store_task_put(s, &t), 0);
    json_decref(doc);
}

/* A task and a batch of n node results, as the engine writes them. */
static int put_task_and_nodes(pw_store *s, const char *id, int n)
{
    json_t *doc = json_pack("{s:s}", "id", id);
    struct pw_store_task t = {.id = (char *)id, .status = "running", .created_ms = 1, .doc = doc};
    int rc = pw_store_task_put(s, &t);
    json_decref(doc);
    if (rc != 0)
        return rc;
    struct pw_store_node *ns = calloc((size_t)n, sizeof *ns);
    char(*names)[16] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "node-%03d", i);
        ns[i] = (struct pw_store_node){
            .task_id = (char *)id, .node_name = names[i], .state = "succeeded", .doc = json_pack("{s:i}", "i", i)};
    }
    rc = pw_store_nodes_put(s, ns, (size_t)n);
    for (int i = 0; i < n; i++)
        json_decref(ns[i].doc);
    free(ns);
    free(names);
    return rc;
}

static size_t node_count(pw_store *s, const char *id)
{
    struct pw_store_node *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_nodes_list(s, id, NULL, 0, NULL, &items, &n, &next), 0);
    pw_store_nodes_free(items, n);
    return n;
}

/* A raw hiredis connection to the fixture's server (for inspecting and tampering with keys). */
static redisContext *raw(const struct fixture *fx)
{
    redisContext *c = redisConnect("127.0.0.1", fx->srv.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

static void test_url_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "redis:",                       /* no // */
        "redis://",                     /* no host */
        "redis://h:0",                  /* port range */
        "redis://h:99999",              /* port range */
        "redis://h:12x",                /* port junk */
        "redis://h/abc",                /* db not a number */
        "redis://h/-1",                 /* db range */
        "redis://h?prefx=a",            /* unknown parameter */
        "redis://h?prefix=%zz",         /* bad escape */
        "redis://user@h",               /* credentials without a colon */
        "redis://:@h",                  /* empty password */
        "redis://[::1",                 /* unclosed bracket */
        "redis://:p@ss@h/0",            /* a raw '@' in the password (its rest would be the host) */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *err = open_fails(bad[i], PW_EINVAL);
        assert_non_null(strstr(err, "redis store url"));
        free(err);
    }
    /* TLS parameters belong to rediss://; their files must load; cert and key come together */
    const char *bad_tls[][2] = {
        {"redis://h?ca=/etc/ssl/certs/ca-certificates.crt", "rediss://"},
        {"rediss://h?ca=/nonexistent/ca.crt", "ca=/nonexistent/ca.crt"},
        {"rediss://h?cert=/nonexistent/c.crt", "key="},
        {"rediss://h?key=/nonexistent/c.key", "cert="},
        {"rediss://h?cert=/nonexistent/c.crt&key=/nonexistent/c.key", "cert=/nonexistent/c.crt"},
        {"rediss://h?ca=", "bad ca"},
    };
    for (size_t i = 0; i < sizeof bad_tls / sizeof bad_tls[0]; i++) {
        char *err = open_fails(bad_tls[i][0], PW_EINVAL);
        if (!strstr(err, bad_tls[i][1]))
            fail_msg("%s: \"%s\" does not say %s", bad_tls[i][0], err, bad_tls[i][1]);
        free(err);
    }
    /* rediss:// with nothing listening: PW_EUNAVAIL, a password in it never shows */
    char url[512];
    snprintf(url, sizeof url, "rediss://u:hunter2@127.0.0.1:%d/0", rtest_free_port());
    char *err = open_fails(url, PW_EUNAVAIL);
    assert_non_null(strstr(err, "rediss://127.0.0.1"));
    assert_null(strstr(err, "hunter2"));
    free(err);
    /* nothing listening: PW_EUNAVAIL, and the message names the server, not the password */
    int port = rtest_free_port();
    snprintf(url, sizeof url, "redis://:hunter2@127.0.0.1:%d/3", port);
    err = open_fails(url, PW_EUNAVAIL);
    assert_non_null(strstr(err, "127.0.0.1"));
    assert_null(strstr(err, "hunter2"));
    free(err);
    /* the redacted form for log lines */
    char *red = pw_store_url_redacted("redis://alice:hunter2@h:1/0?prefix=x");
    assert_string_equal(red, "redis://alice:***@h:1/0?prefix=x");
    free(red);
    /* found by tests/fuzz/fuzz_redisurl.c: an '@' in the query is no password; a '#' does not end
     * the authority for the parser, so not for the redaction either */
    red = pw_store_url_redacted("redis://h:1/0?prefix=a:b@c");
    assert_string_equal(red, "redis://h:1/0?prefix=a:b@c");
    free(red);
    red = pw_store_url_redacted("redis://h#:hunter2@x/0");
    assert_null(strstr(red, "hunter2"));
    free(red);
    red = pw_store_url_redacted("sqlite:/var/lib/prewarm/prewarm.db");
    assert_string_equal(red, "sqlite:/var/lib/prewarm/prewarm.db");
    free(red);
}

static void test_prefix_and_schema(void **state)
{
    struct fixture *fx = fx_get(state);
    char a_url[200], b_url[200];
    snprintf(a_url, sizeof a_url, "redis://127.0.0.1:%d/2?prefix=pa:", fx->srv.port);
    snprintf(b_url, sizeof b_url, "redis://127.0.0.1:%d/2?prefix=pb%%3A", fx->srv.port); /* "pb:" encoded */
    pw_store *a = open_ok(a_url), *b = open_ok(b_url);
    put_task(a, "t-1", "running");
    assert_int_equal(put_task_and_nodes(b, "t-2", 3), 0);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(b, "t-1", &t), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_get(a, "t-2", &t), PW_ENOTFOUND);
    assert_int_equal(pw_store_task_get(a, "t-1", &t), 0);
    pw_store_task_fini(&t);

    /* in db 2, every key is under one of the prefixes; the schema key says 1; db 0 is untouched */
    redisContext *c = raw(fx);
    redisReply *r = redisCommand(c, "SELECT 2");
    freeReplyObject(r);
    r = redisCommand(c, "KEYS *");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 4);
    for (size_t i = 0; i < r->elements; i++)
        assert_true(strncmp(r->element[i]->str, "pa:", 3) == 0 || strncmp(r->element[i]->str, "pb:", 3) == 0);
    freeReplyObject(r);
    r = redisCommand(c, "GET pa:schema");
    assert_string_equal(r->str, "1");
    freeReplyObject(r);
    /* a newer schema is refused; so is a key that holds no version */
    freeReplyObject(redisCommand(c, "SET pc:schema 99"));
    freeReplyObject(redisCommand(c, "SET pd:schema banana"));
    r = redisCommand(c, "SELECT 0");
    freeReplyObject(r);
    r = redisCommand(c, "DBSIZE");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/2?prefix=pc:", fx->srv.port);
    char *err = open_fails(url, PW_EIO);
    assert_non_null(strstr(err, "newer"));
    free(err);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/2?prefix=pd:", fx->srv.port);
    err = open_fails(url, PW_EIO);
    assert_non_null(strstr(err, "no schema version"));
    free(err);
    pw_store_close(a);
    pw_store_close(b);
}

struct opener {
    const char *url;
    int rc;
    pw_store *s;
};

static void *open_thread(void *arg)
{
    struct opener *o = arg;
    o->rc = pw_store_open(o->url, &o->s, NULL);
    return NULL;
}

static void test_concurrent_first_open(void **state)
{
    struct fixture *fx = fx_get(state);
    char url[160];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0?prefix=race:", fx->srv.port);
    struct opener o[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        o[i] = (struct opener){.url = url};
        pthread_create(&th[i], NULL, open_thread, &o[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(o[i].rc, 0);
    }
    put_task(o[0].s, "t-1", "pending");
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(o[5].s, "t-1", &t), 0);
    pw_store_task_fini(&t);
    for (int i = 0; i < 6; i++)
        pw_store_close(o[i].s);
}

/* Retries get until it stops answering PW_EUNAVAIL (the backoff), within ~15 s. */
static int get_eventually(pw_store *s, const char *id, struct pw_store_task *t)
{
    int rc = PW_EUNAVAIL;
    for (int i = 0; i < 300 && rc == PW_EUNAVAIL; i++) {
        rc = pw_store_task_get(s, id, t);
        if (rc == PW_EUNAVAIL) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return rc;
}

static void test_outage_and_recovery(void **state)
{
    struct fixture *fx = fx_get(state);
    fx->s = open_ok(fx->url);
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "t-%02d", i);
        assert_int_equal(put_task_and_nodes(fx->s, id, 5), 0);
    }
    rtest_stop(&fx->srv, SIGKILL);
    /* down: every call answers PW_EUNAVAIL (the API's 503); nothing is written */
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(fx->s, "t-00", &t), PW_EUNAVAIL);
    assert_int_equal(put_task_and_nodes(fx->s, "t-down", 5), PW_EUNAVAIL);
    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(fx->s, NULL, 10, NULL, &items, &n, &next), PW_EUNAVAIL);
    assert_int_equal(pw_store_task_list_unfinished(fx->s, &items, &n), PW_EUNAVAIL);
    struct pw_store_node *nodes;
    assert_int_equal(pw_store_nodes_list(fx->s, "t-00", NULL, 0, NULL, &nodes, &n, &next), PW_EUNAVAIL);
    assert_int_equal(pw_store_task_delete(fx->s, "t-00"), PW_EUNAVAIL);
    assert_int_equal(pw_store_prune(fx->s, 1, NULL), PW_EUNAVAIL);
    for (int i = 0; i < 50; i++) /* many calls while down stay cheap and keep failing cleanly */
        assert_int_equal(pw_store_task_get(fx->s, "t-00", &t), PW_EUNAVAIL);

    /* back (same port and directory: it reloads its AOF): calls recover, nothing acknowledged lost */
    assert_int_equal(rtest_start(&fx->srv), 0);
    assert_int_equal(get_eventually(fx->s, "t-19", &t), 0);
    pw_store_task_fini(&t);
    assert_int_equal(pw_store_task_list(fx->s, NULL, 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 20);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(node_count(fx->s, items[i].id), 5);
    pw_store_tasks_free(items, n);
    assert_int_equal(pw_store_task_get(fx->s, "t-down", &t), PW_ENOTFOUND);
    assert_int_equal(put_task_and_nodes(fx->s, "t-after", 5), 0);
}

static void test_kill9_keeps_acknowledged(void **state)
{
    struct fixture *fx = fx_get(state);
    fx->s = open_ok(fx->url);
    int acked = 0;
    for (int i = 0; i < 300; i++) {
        char id[16];
        snprintf(id, sizeof id, "t-%03d", i);
        if (put_task_and_nodes(fx->s, id, 10) != 0)
            break;
        acked = i + 1;
    }
    assert_int_equal(acked, 300);
    rtest_stop(&fx->srv, SIGKILL); /* no shutdown, no final fsync: only what appendfsync always wrote */
    assert_int_equal(rtest_start(&fx->srv), 0);
    struct pw_store_task t;
    assert_int_equal(get_eventually(fx->s, "t-000", &t), 0);
    pw_store_task_fini(&t);
    for (int i = 0; i < acked; i++) {
        char id[16];
        snprintf(id, sizeof id, "t-%03d", i);
        assert_int_equal(pw_store_task_get(fx->s, id, &t), 0);
        pw_store_task_fini(&t);
        assert_int_equal(node_count(fx->s, id), 10);
    }
}

static void test_restart_under_pool_and_script_flush(void **state)
{
    struct fixture *fx = fx_get(state);
    fx->s = open_ok(fx->url);
    put_task(fx->s, "t-1", "running");
    /* the server forgets its scripts: the next write sends the script text */
    redisContext *c = raw(fx);
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    put_task(fx->s, "t-2", "running");
    /* a clean restart between two calls: the pooled connection is dead, the call still succeeds */
    rtest_stop(&fx->srv, SIGTERM);
    assert_int_equal(rtest_start(&fx->srv), 0);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(fx->s, "t-2", &t), 0);
    pw_store_task_fini(&t);
    put_task(fx->s, "t-3", "running"); /* and the cold script cache after the restart */
}

struct writer {
    pw_store *s;
    int k, done;
};

static void *write_thread(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < 40; i++) {
        char id[32];
        snprintf(id, sizeof id, "t-%d-%02d", w->k, i);
        if (put_task_and_nodes(w->s, id, 4) != 0)
            return NULL;
        struct pw_store_task *items;
        size_t n;
        char *next;
        if (pw_store_task_list(w->s, NULL, 5, NULL, &items, &n, &next) != 0)
            return NULL;
        pw_store_tasks_free(items, n);
        free(next);
        w->done++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fixture *fx = fx_get(state);
    fx->s = open_ok(fx->url);
    struct writer w[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct writer){.s = fx->s, .k = i};
        pthread_create(&th[i], NULL, write_thread, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].done, 40);
    }
    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(fx->s, "running", 0, NULL, &items, &n, &next), 0);
    assert_int_equal(n, 8 * 40);
    pw_store_tasks_free(items, n);
}

static void test_auth(void **state)
{
    (void)fx_get(state);
    static const char *const extra[] = {"--requirepass", "s3cret", "--user", "alice", "on", ">alicepw", "~*", "&*", "+@all", NULL};
    struct fixture *fx = *state;
    rtest_cleanup(&fx->srv); /* this test's server has a password: it replaces the fixture's */
    fx->srv = (struct rtest_server){.extra = extra};
    assert_int_equal(rtest_start(&fx->srv), 0);
    char url[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", fx->srv.port);
    char *err = open_fails(url, PW_EIO); /* no password: NOAUTH on the first command */
    free(err);
    snprintf(url, sizeof url, "redis://:wrongpw@127.0.0.1:%d/0", fx->srv.port);
    err = open_fails(url, PW_EIO);
    assert_non_null(strstr(err, "authentication failed"));
    assert_null(strstr(err, "wrongpw"));
    free(err);
    snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/0", fx->srv.port);
    pw_store *s = open_ok(url);
    put_task(s, "t-1", "pending");
    pw_store_close(s);
    snprintf(url, sizeof url, "redis://alice:alicepw@127.0.0.1:%d/0", fx->srv.port); /* an ACL user */
    s = open_ok(url);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-1", &t), 0);
    pw_store_task_fini(&t);
    pw_store_close(s);
}

/* rediss:// verifies the server and presents the client certificate; what it stores is what a plain
 * client of the same server sees. */
static void test_tls_verification(void **state)
{
    struct fixture *fx = fx_get(state);
    fx->s = open_ok(fx->url);
    put_task(fx->s, "t-tls", "pending");
    redisContext *c = raw(fx); /* the same server's plain port */
    redisReply *r = redisCommand(c, "HGET prewarm:t:t-tls status");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "pending");
    freeReplyObject(r);
    redisFree(c);

    char url[512];
    int tp = fx->srv.tls_port;
    const char *d = tls_dir;
    /* a CA that did not sign the server's certificate */
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/0?ca=%s/other-ca.crt&cert=%s/client.crt&key=%s/client.key", tp, d,
             d, d);
    char *err = open_fails(url, PW_EUNAVAIL);
    if (!strstr(err, "certificate"))
        fail_msg("wrong CA: %s", err);
    free(err);
    /* a host the certificate does not name (it names IP 127.0.0.1 only) */
    snprintf(url, sizeof url, "rediss://localhost:%d/0?ca=%s/ca.crt&cert=%s/client.crt&key=%s/client.key", tp, d, d, d);
    err = open_fails(url, PW_EUNAVAIL);
    if (!strstr(err, "certificate"))
        fail_msg("wrong host: %s", err);
    free(err);
    /* no client certificate: redis-server (tls-auth-clients yes) refuses the connection */
    pw_store *s = NULL;
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/0?ca=%s/ca.crt", tp, d);
    int rc = pw_store_open(url, &s, &err);
    assert_true(rc == PW_EUNAVAIL || rc == PW_EIO);
    assert_null(s);
    free(err);
    /* plain redis:// to the TLS port is no Redis conversation either */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", tp);
    rc = pw_store_open(url, &s, &err);
    assert_true(rc != 0);
    free(err);
    /* and the store it opened first still works */
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(fx->s, "t-tls", &t), 0);
    pw_store_task_fini(&t);
}

int main(void)
{
    pw_log_set_level(PW_LOG_ERROR); /* the outage tests log on purpose */
    char bin[256];
    have_redis = rtest_find(bin, sizeof bin);
    if (!have_redis)
        printf("# SKIP: redis-server is not on PATH (scripts/install-deps installs it)\n");
    snprintf(tls_dir, sizeof tls_dir, "/tmp/pw-redis-tls-XXXXXX");
    if (!have_redis || !mkdtemp(tls_dir) || rtest_make_tls(tls_dir) != 0) {
        if (have_redis)
            printf("# the test PKI could not be made (openssl): the TLS tests fail\n");
        tls_dir[0] = '\0';
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test_setup_teardown(test_prefix_and_schema, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_first_open, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_outage_and_recovery, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_keeps_acknowledged, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_under_pool_and_script_flush, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_threads, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_verification, fx_setup_tls, fx_teardown),
        {"tls: outage_and_recovery", test_outage_and_recovery, fx_setup_tls, fx_teardown, NULL},
        {"tls: restart_under_pool_and_script_flush", test_restart_under_pool_and_script_flush, fx_setup_tls,
         fx_teardown, NULL},
        {"tls: threads", test_threads, fx_setup_tls, fx_teardown, NULL},
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (tls_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", tls_dir);
    }
    return failed;
}
