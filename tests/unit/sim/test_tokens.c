/* Unit tests for sim/tokens.c and sim/pb.c: issuing and finding tokens (claims copied, the token's
 * shape), the bound on the memory (dead tokens forgotten first, then the oldest), the age hook, many
 * threads at once; the review against a store as kube-apiserver's ServiceAccount authenticator words it
 * (audiences and Go's %q quoting, expiry with the leeway, the ServiceAccount, a bound Pod, Secret or
 * Node gone, recreated or being deleted, the extras); and the protobuf wire reader with the Kubernetes
 * envelope, malformed input included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "sim/pb.h"
#include "sim/store.h"
#include "sim/tokens.h"

#define NOW 1800000000 /* 2027-01-15 */

static const char *const API_AUDS[] = {SIM_TOKEN_API_AUDIENCE};
static const char *const PREWARM_AUDS[] = {"prewarm", "x\"y"};

static struct sim_token_claims claims(const char *const *auds, size_t naud, int64_t exp)
{
    struct sim_token_claims c = {
        .ns = "prewarm",
        .sa = "robot",
        .sa_uid = "sa-uid-1",
        .audiences = auds,
        .naud = naud,
        .iat = NOW,
        .exp = exp,
        .jti = "0b7e1c0a-54a3-4b8e-9f1d-6f0c7d3c2a11",
    };
    return c;
}

static const char *jstr(const json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* ---- the memory ---- */

static void test_issue_find(void **state)
{
    (void)state;
    sim_tokens *t = sim_tokens_new(0);
    assert_int_equal(sim_tokens_max(t), SIM_TOKENS_MAX);
    char auds0[] = "prewarm";
    const char *auds[] = {auds0};
    char name[] = "robot";
    struct sim_token_claims c = claims(auds, 1, NOW + 600);
    c.sa = name;
    c.bound = SIM_TOKEN_POD;
    c.bound_name = "p1";
    c.bound_uid = "pod-uid";
    c.node_name = "node-0001";
    c.node_uid = "";
    char tok[SIM_TOKEN_SIZE], tok2[SIM_TOKEN_SIZE];
    assert_int_equal(sim_tokens_issue(t, &c, NOW, tok), 0);
    assert_int_equal(sim_tokens_issue(t, &c, NOW, tok2), 0);
    assert_int_equal(strlen(tok), SIM_TOKEN_SIZE - 1);
    assert_memory_equal(tok, "kubesim-sa-", 11);
    assert_int_equal(strspn(tok + 11, "0123456789abcdef"), 48);
    assert_string_not_equal(tok, tok2);
    /* the claims were copied: changing the caller's strings changes nothing */
    auds0[0] = 'X';
    name[0] = 'X';
    struct sim_token_claims *got = NULL;
    assert_int_equal(sim_tokens_find(t, tok, &got), 0);
    assert_string_equal(got->sa, "robot");
    assert_string_equal(got->ns, "prewarm");
    assert_int_equal(got->naud, 1);
    assert_string_equal(got->audiences[0], "prewarm");
    assert_int_equal(got->bound, SIM_TOKEN_POD);
    assert_string_equal(got->bound_name, "p1");
    assert_string_equal(got->node_name, "node-0001");
    assert_string_equal(got->node_uid, "");
    assert_int_equal(got->exp, NOW + 600);
    sim_token_claims_free(got);
    got = NULL;
    assert_int_equal(sim_tokens_find(t, "kubesim-sa-nope", &got), PW_ENOTFOUND);
    assert_null(got);
    assert_int_equal(sim_tokens_find(t, "", &got), PW_ENOTFOUND);
    assert_int_equal(sim_tokens_count(t), 2);
    sim_tokens_free(t);
    sim_tokens_free(NULL);
    sim_token_claims_free(NULL);
}

static bool known(sim_tokens *t, const char *tok)
{
    struct sim_token_claims *c;
    if (sim_tokens_find(t, tok, &c) != 0)
        return false;
    sim_token_claims_free(c);
    return true;
}

static void test_bound(void **state)
{
    (void)state;
    sim_tokens *t = sim_tokens_new(3);
    char a[SIM_TOKEN_SIZE], b[SIM_TOKEN_SIZE], c[SIM_TOKEN_SIZE], d[SIM_TOKEN_SIZE], e[SIM_TOKEN_SIZE];
    struct sim_token_claims live = claims(API_AUDS, 1, NOW + 3600);
    struct sim_token_claims dead = claims(API_AUDS, 1, NOW - SIM_TOKEN_LEEWAY_S - 1);
    struct sim_token_claims leeway = claims(API_AUDS, 1, NOW - SIM_TOKEN_LEEWAY_S); /* still authenticates */
    assert_int_equal(sim_tokens_issue(t, &live, NOW, a), 0);
    assert_int_equal(sim_tokens_issue(t, &dead, NOW, b), 0);
    assert_int_equal(sim_tokens_issue(t, &leeway, NOW, c), 0);
    /* full: the dead token goes, not the oldest */
    assert_int_equal(sim_tokens_issue(t, &live, NOW, d), 0);
    assert_int_equal(sim_tokens_count(t), 3);
    assert_true(known(t, a));
    assert_false(known(t, b));
    assert_true(known(t, c) && known(t, d));
    /* full, none dead: the oldest goes */
    assert_int_equal(sim_tokens_issue(t, &live, NOW, e), 0);
    assert_false(known(t, a));
    assert_true(known(t, c) && known(t, d) && known(t, e));
    /* a minute later c is dead too, and goes before the older-issued d */
    char f[SIM_TOKEN_SIZE];
    assert_int_equal(sim_tokens_issue(t, &live, NOW + 1, f), 0);
    assert_false(known(t, c));
    assert_true(known(t, d) && known(t, e) && known(t, f));
    sim_tokens_free(t);
}

static void test_age(void **state)
{
    (void)state;
    sim_tokens *t = sim_tokens_new(2);
    sim_store *st = sim_store_new(10);
    assert_int_equal(sim_store_create(st, "serviceaccounts", "prewarm",
                                      json_pack("{s:{s:s, s:s}}", "metadata", "name", "robot", "uid", "sa-uid-1"),
                                      NULL),
                     0);
    int64_t now = (int64_t)time(NULL);
    struct sim_token_claims c = claims(API_AUDS, 1, now + 600);
    c.iat = now;
    char tok[SIM_TOKEN_SIZE], tok2[SIM_TOKEN_SIZE];
    assert_int_equal(sim_tokens_issue(t, &c, now, tok), 0);
    sim_tokens_age(t, 600 + SIM_TOKEN_LEEWAY_S + 5);
    struct sim_token_claims *got;
    assert_int_equal(sim_tokens_find(t, tok, &got), 0);
    assert_int_equal(got->iat, now - 665);
    assert_int_equal(got->exp, now - 65);
    json_t *r = sim_tokens_review(st, got, NULL, now);
    assert_false(json_is_true(json_object_get(r, "authenticated")));
    assert_string_equal(jstr(r, "error"), "service account token has expired");
    json_decref(r);
    sim_token_claims_free(got);
    /* the aged token is dead: a full memory forgets it first */
    assert_int_equal(sim_tokens_issue(t, &c, now, tok2), 0);
    assert_int_equal(sim_tokens_issue(t, &c, now, tok2), 0);
    assert_false(known(t, tok));
    sim_store_free(st);
    sim_tokens_free(t);
}

struct worker {
    sim_tokens *t;
    int found;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct sim_token_claims c = claims(PREWARM_AUDS, 2, NOW + 3600);
    for (int i = 0; i < 2000; i++) {
        char tok[SIM_TOKEN_SIZE];
        if (sim_tokens_issue(w->t, &c, NOW, tok) == 0 && known(w->t, tok))
            w->found++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    sim_tokens *t = sim_tokens_new(500);
    struct worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){t, 0};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(sim_tokens_count(t), 500);
    for (int i = 0; i < 4; i++)
        assert_true(w[i].found > 1000); /* a token just issued is found unless 500 came between */
    sim_tokens_free(t);
}

/* ---- the review ---- */

static void put(sim_store *st, const char *resource, const char *ns, const char *name, const char *uid,
                const char *deleted)
{
    json_t *o = json_pack("{s:{s:s, s:s}}", "metadata", "name", name, "uid", uid);
    if (deleted)
        json_object_set_new(json_object_get(o, "metadata"), "deletionTimestamp", json_string(deleted));
    assert_int_equal(sim_store_create(st, resource, ns, o, NULL), 0);
}

static sim_store *world(void)
{
    sim_store *st = sim_store_new(100);
    put(st, "serviceaccounts", "prewarm", "robot", "sa-uid-1", NULL);
    put(st, "pods", "prewarm", "p1", "pod-uid-1", NULL);
    put(st, "secrets", "prewarm", "s1", "secret-uid-1", NULL);
    put(st, "nodes", "", "node-0001", "node-uid-1", NULL);
    return st;
}

static json_t *extra_of(const json_t *r)
{
    return json_object_get(json_object_get(r, "user"), "extra");
}

static void expect_denied(json_t *r, const char *error)
{
    assert_false(json_is_true(json_object_get(r, "authenticated")));
    assert_null(json_object_get(r, "user"));
    assert_string_equal(jstr(r, "error"), error);
    json_decref(r);
}

/* sim_tokens_review borrows the audiences: a helper that frees them after */
static json_t *review(sim_store *st, const struct sim_token_claims *c, json_t *auds, int64_t now)
{
    json_t *r = sim_tokens_review(st, c, auds, now);
    json_decref(auds);
    return r;
}

static void test_review_user(void **state)
{
    (void)state;
    sim_store *st = world();
    struct sim_token_claims c = claims(PREWARM_AUDS, 2, NOW + 600);
    c.bound = SIM_TOKEN_POD;
    c.bound_name = "p1";
    c.bound_uid = "pod-uid-1";
    c.node_name = "node-0001";
    c.node_uid = "node-uid-1";
    json_t *r = review(st, &c, json_pack("[s]", "prewarm"), NOW);
    assert_true(json_is_true(json_object_get(r, "authenticated")));
    json_t *expect = json_pack(
        "{s:b, s:[s], s:{s:s, s:s, s:[sss], s:{s:[s], s:[s], s:[s], s:[s], s:[s]}}}", "authenticated", 1, "audiences",
        "prewarm", "user", "username", "system:serviceaccount:prewarm:robot", "uid", "sa-uid-1", "groups",
        "system:serviceaccounts", "system:serviceaccounts:prewarm", "system:authenticated", "extra",
        "authentication.kubernetes.io/credential-id", "JTI=0b7e1c0a-54a3-4b8e-9f1d-6f0c7d3c2a11",
        "authentication.kubernetes.io/pod-name", "p1", "authentication.kubernetes.io/pod-uid", "pod-uid-1",
        "authentication.kubernetes.io/node-name", "node-0001", "authentication.kubernetes.io/node-uid", "node-uid-1");
    if (!json_equal(r, expect)) {
        char *g = json_dumps(r, JSON_SORT_KEYS);
        fail_msg("review %s", g);
    }
    json_decref(expect);
    json_decref(r);
    /* the pod's node did not exist at issue time: its name only */
    c.node_uid = "";
    r = review(st, &c, json_pack("[s]", "prewarm"), NOW);
    assert_non_null(json_object_get(extra_of(r), "authentication.kubernetes.io/node-name"));
    assert_null(json_object_get(extra_of(r), "authentication.kubernetes.io/node-uid"));
    json_decref(r);
    /* no node: no node extras */
    c.node_name = c.node_uid = NULL;
    r = review(st, &c, json_pack("[s]", "prewarm"), NOW);
    assert_int_equal(json_object_size(extra_of(r)), 3);
    json_decref(r);
    /* bound to a Node: its name and uid; to a Secret or nothing: the credential id alone */
    c.bound = SIM_TOKEN_NODE;
    c.bound_name = "node-0001";
    c.bound_uid = "node-uid-1";
    r = review(st, &c, json_pack("[s]", "prewarm"), NOW);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(extra_of(r), "authentication.kubernetes.io/node-uid"), 0)),
        "node-uid-1");
    assert_null(json_object_get(extra_of(r), "authentication.kubernetes.io/pod-name"));
    json_decref(r);
    c.bound = SIM_TOKEN_SECRET;
    c.bound_name = "s1";
    c.bound_uid = "secret-uid-1";
    r = review(st, &c, json_pack("[s]", "prewarm"), NOW);
    assert_true(json_is_true(json_object_get(r, "authenticated")));
    assert_int_equal(json_object_size(extra_of(r)), 1);
    json_decref(r);
    sim_store_free(st);
}

static void test_review_audiences(void **state)
{
    (void)state;
    sim_store *st = world();
    struct sim_token_claims c = claims(PREWARM_AUDS, 2, NOW + 600);
    /* the asked audiences the token is for, in the order asked */
    json_t *r = review(st, &c, json_pack("[sss]", "y", "x\"y", "prewarm"), NOW);
    assert_true(json_is_true(json_object_get(r, "authenticated")));
    assert_int_equal(json_array_size(json_object_get(r, "audiences")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "audiences"), 0)), "x\"y");
    json_decref(r);
    /* none in common: Go's %q of both lists */
    expect_denied(review(st, &c, json_pack("[s]", "other"), NOW),
                  "token audiences [\"prewarm\" \"x\\\"y\"] is invalid for the target audiences [\"other\"]");
    /* none asked: the API server's, which this token is not for */
    expect_denied(review(st, &c, NULL, NOW),
                  "token audiences [\"prewarm\" \"x\\\"y\"] is invalid for the target audiences "
                  "[\"" SIM_TOKEN_API_AUDIENCE "\"]");
    expect_denied(review(st, &c, json_array(), NOW), "token audiences [\"prewarm\" \"x\\\"y\"] is invalid for the "
                                                     "target audiences [\"" SIM_TOKEN_API_AUDIENCE "\"]");
    struct sim_token_claims api = claims(API_AUDS, 1, NOW + 600);
    r = review(st, &api, NULL, NOW);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r, "audiences"), 0)), SIM_TOKEN_API_AUDIENCE);
    json_decref(r);
    /* the audience check comes before the expiry check, as in jwt.go */
    struct sim_token_claims old = claims(PREWARM_AUDS, 2, NOW - 3600);
    expect_denied(review(st, &old, json_pack("[s]", "z"), NOW),
                  "token audiences [\"prewarm\" \"x\\\"y\"] is invalid for the target audiences [\"z\"]");
    sim_store_free(st);
}

static void test_review_expiry_objects(void **state)
{
    (void)state;
    sim_store *st = world();
    struct sim_token_claims c = claims(API_AUDS, 1, NOW);
    /* a minute of leeway past exp */
    json_t *r = review(st, &c, NULL, NOW + SIM_TOKEN_LEEWAY_S);
    assert_true(json_is_true(json_object_get(r, "authenticated")));
    json_decref(r);
    expect_denied(review(st, &c, NULL, NOW + SIM_TOKEN_LEEWAY_S + 1), "service account token has expired");
    c.exp = NOW + 600;
    /* the ServiceAccount: gone, or another with the same name */
    c.sa = "ghost";
    expect_denied(review(st, &c, NULL, NOW), "serviceaccounts \"ghost\" not found");
    c.sa = "robot";
    c.sa_uid = "sa-uid-0";
    expect_denied(review(st, &c, NULL, NOW), "service account UID (sa-uid-1) does not match claim (sa-uid-0)");
    c.sa_uid = "sa-uid-1";
    /* a bound pod gone, recreated, being deleted (invalid a minute after its deletionTimestamp) */
    c.bound = SIM_TOKEN_POD;
    c.bound_name = "p9";
    c.bound_uid = "pod-uid-9";
    expect_denied(review(st, &c, NULL, NOW), "service account token has been invalidated");
    c.bound_name = "p1";
    expect_denied(review(st, &c, NULL, NOW),
                  "pod UID (pod-uid-1) does not match service account pod ref claim (pod-uid-9)");
    char ts[PW_RFC3339_LEN];
    pw_time_rfc3339((time_t)NOW - 30, ts);
    put(st, "pods", "prewarm", "p2", "pod-uid-2", ts);
    c.bound_name = "p2";
    c.bound_uid = "pod-uid-2";
    r = review(st, &c, NULL, NOW);
    assert_true(json_is_true(json_object_get(r, "authenticated")));
    json_decref(r);
    expect_denied(review(st, &c, NULL, NOW + 31), "service account token has been invalidated");
    /* a bound secret, a bound node */
    c.bound = SIM_TOKEN_SECRET;
    c.bound_name = "s1";
    c.bound_uid = "secret-uid-0";
    expect_denied(review(st, &c, NULL, NOW),
                  "secret UID (secret-uid-1) does not match service account secret ref claim (secret-uid-0)");
    c.bound_name = "s2";
    expect_denied(review(st, &c, NULL, NOW), "service account token has been invalidated");
    c.bound = SIM_TOKEN_NODE;
    c.bound_name = "node-0001";
    c.bound_uid = "node-uid-0";
    expect_denied(review(st, &c, NULL, NOW),
                  "node UID (node-uid-1) does not match service account node ref claim (node-uid-0)");
    c.bound_name = "node-0009";
    expect_denied(review(st, &c, NULL, NOW), "service account token has been invalidated");
    /* a ServiceAccount being deleted for more than the leeway */
    pw_time_rfc3339((time_t)NOW - 61, ts);
    put(st, "serviceaccounts", "prewarm", "going", "sa-uid-g", ts);
    c.sa = "going";
    c.sa_uid = "sa-uid-g";
    c.bound = SIM_TOKEN_UNBOUND;
    expect_denied(review(st, &c, NULL, NOW), "service account prewarm/going has been deleted");
    sim_store_free(st);
}

/* ---- protobuf ---- */

static void test_pb(void **state)
{
    (void)state;
    /* field 1 varint 300, field 2 bytes "hi", field 3 fixed64, field 4 fixed32, field 5 bytes "" */
    static const unsigned char M[] = {0x08, 0xac, 0x02, 0x12, 0x02, 'h', 'i', 0x19, 1, 2,    3,   4,
                                      5,    6,    7,    8,    0x25, 1,   2,   3,    4, 0x2a, 0x00};
    struct sim_pb r = sim_pb_view(M, sizeof(M));
    struct sim_pb_field f;
    assert_int_equal(sim_pb_next(&r, &f), 1);
    assert_int_equal(f.num, 1);
    assert_int_equal(f.wire, 0);
    assert_int_equal(f.varint, 300);
    assert_int_equal(sim_pb_next(&r, &f), 1);
    assert_int_equal(f.num, 2);
    assert_int_equal(f.bytes.end - f.bytes.p, 2);
    assert_memory_equal(f.bytes.p, "hi", 2);
    assert_int_equal(sim_pb_next(&r, &f), 1);
    assert_int_equal(f.wire, 1);
    assert_int_equal(sim_pb_next(&r, &f), 1);
    assert_int_equal(f.wire, 5);
    assert_int_equal(sim_pb_next(&r, &f), 1);
    assert_int_equal(f.num, 5);
    assert_int_equal(f.bytes.end - f.bytes.p, 0);
    assert_int_equal(sim_pb_next(&r, &f), 0);
    /* malformed: a truncated varint, a length past the end, a group, field number 0, a short fixed64 */
    static const unsigned char BAD[][3] = {
        {0x08, 0x80, 0x80}, {0x12, 0x05, 'x'}, {0x0b, 0, 0}, {0x00, 0, 0}, {0x09, 1, 2}};
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        r = sim_pb_view(BAD[i], 3);
        int rc = sim_pb_next(&r, &f);
        if (rc == 1) /* {0x08, 0x80, 0x80}: the varint runs off the end */
            rc = sim_pb_next(&r, &f);
        assert_int_equal(rc, PW_EINVAL);
    }
    static const unsigned char ELEVEN[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    r = sim_pb_view(ELEVEN, sizeof(ELEVEN));
    assert_int_equal(sim_pb_next(&r, &f), PW_EINVAL);
    r = sim_pb_view(NULL, 0);
    assert_int_equal(sim_pb_next(&r, &f), 0);
}

static void test_pb_unwrap(void **state)
{
    (void)state;
    /* "k8s\0" + Unknown{typeMeta{apiVersion "authentication.k8s.io/v1", kind "TokenRequest"}, raw {0x12 0x00}} */
    unsigned char b[128];
    size_t n = 0;
    memcpy(b, "k8s\0", 4);
    n = 4;
    const char *av = "authentication.k8s.io/v1", *kind = "TokenRequest";
    size_t tm = 2 + strlen(av) + 2 + strlen(kind);
    b[n++] = 0x0a;
    b[n++] = (unsigned char)tm;
    b[n++] = 0x0a;
    b[n++] = (unsigned char)strlen(av);
    memcpy(b + n, av, strlen(av));
    n += strlen(av);
    b[n++] = 0x12;
    b[n++] = (unsigned char)strlen(kind);
    memcpy(b + n, kind, strlen(kind));
    n += strlen(kind);
    b[n++] = 0x12; /* raw */
    b[n++] = 2;
    b[n++] = 0x12;
    b[n++] = 0x00;
    b[n++] = 0x22; /* contentEncoding "" */
    b[n++] = 0x00;
    struct sim_pb raw;
    char k[64];
    assert_int_equal(sim_pb_unwrap(b, n, &raw, k, sizeof(k)), 0);
    assert_string_equal(k, "TokenRequest");
    assert_int_equal(raw.end - raw.p, 2);
    assert_int_equal(raw.p[0], 0x12);
    /* a short kind buffer cuts; no magic, a truncated envelope: PW_EINVAL, outputs untouched */
    char small[5];
    assert_int_equal(sim_pb_unwrap(b, n, &raw, small, sizeof(small)), 0);
    assert_string_equal(small, "Toke");
    strcpy(k, "keep");
    assert_int_equal(sim_pb_unwrap("{\"a\":1}", 7, &raw, k, sizeof(k)), PW_EINVAL);
    assert_int_equal(sim_pb_unwrap(b, n - 3, &raw, k, sizeof(k)), PW_EINVAL);
    assert_int_equal(sim_pb_unwrap(b, 3, &raw, k, sizeof(k)), PW_EINVAL);
    assert_string_equal(k, "keep");
    /* the magic alone: an empty object */
    assert_int_equal(sim_pb_unwrap(b, 4, &raw, k, sizeof(k)), 0);
    assert_int_equal(raw.end - raw.p, 0);
    assert_string_equal(k, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_find),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_review_user),
        cmocka_unit_test(test_review_audiences),
        cmocka_unit_test(test_review_expiry_objects),
        cmocka_unit_test(test_pb),
        cmocka_unit_test(test_pb_unwrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
