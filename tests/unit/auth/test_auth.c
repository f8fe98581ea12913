/* Unit tests for src/auth's user side: the token file (CSV parsing, a re-read when it changes, a
 * revoked token refused), the authenticators in order (none alone and after others), the static
 * authorizer's matrix, TokenReview and SubjectAccessReview against a fake API server built on pw_http
 * here (the request each sends, allowed and denied answers, the cache and its negative TTL, an
 * unavailable server not cached), the per-user rate limit and the audit log with its rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/audit.h"
#include "auth/auth.h"
#include "auth/userlimit.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "http/http.h"
#include "k8s/k8s.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pw-auth-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char *cmd = pw_xasprintf("rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    return 0;
}

static char *put_file(const char *name, const char *text)
{
    char *p = pw_xasprintf("%s/%s", tmpdir, name);
    char *tmp = pw_xasprintf("%s.tmp", p);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, p), 0); /* a new inode: the change is seen whatever the mtime */
    free(tmp);
    return p;
}

static bool has_group(const struct pw_identity *id, const char *g)
{
    for (size_t i = 0; i < id->n_groups; i++)
        if (strcmp(id->groups[i], g) == 0)
            return true;
    return false;
}

/* ---- the token file ---- */

static void test_tokenfile_parse(void **state)
{
    (void)state;
    const char *text = "# comment\n"
                       "tok-a,alice,uid-a,\"prewarm:viewers, team-x\"\r\n"
                       "\n"
                       "  tok-b , bob , uid-b\n"
                       "tok-c,\"carol \"\"c\"\"\",uid-c,\"\"\n";
    json_t *t = NULL;
    char why[256] = "";
    assert_int_equal(pw_auth_tokenfile_parse(text, strlen(text), &t, why, sizeof why), 0);
    assert_int_equal(json_object_size(t), 3);
    /* keyed by hashes, never by the tokens */
    assert_null(json_object_get(t, "tok-a"));
    const char *k;
    json_t *u;
    bool alice = false, bob = false, carol = false;
    json_object_foreach(t, k, u) {
        assert_int_equal(strlen(k), 64);
        const char *name = json_string_value(json_object_get(u, "username"));
        json_t *g = json_object_get(u, "groups");
        if (strcmp(name, "alice") == 0) {
            alice = true;
            assert_int_equal(json_array_size(g), 2);
            assert_string_equal(json_string_value(json_array_get(g, 0)), "prewarm:viewers");
            assert_string_equal(json_string_value(json_array_get(g, 1)), "team-x");
        } else if (strcmp(name, "bob") == 0) {
            bob = true;
            assert_string_equal(json_string_value(json_object_get(u, "uid")), "uid-b");
            assert_int_equal(json_array_size(g), 0);
        } else if (strcmp(name, "carol \"c\"") == 0) {
            carol = true;
        }
    }
    assert_true(alice && bob && carol);
    json_decref(t);

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"secret-tok,only-user\n", "line 1: fewer than 3 columns"},
        {"ok,u,1\nsecret-tok,\"unterminated,uid\n", "line 2: an unterminated quote"},
        {",user,uid\n", "line 1: an empty token"},
        {"secret-tok,,uid\n", "line 1: an empty user name"},
        {"secret-tok,u,1,\"g\",extra\n", "line 1: an unterminated quote or more than 4 columns"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = NULL;
        assert_int_equal(pw_auth_tokenfile_parse(bad[i].text, strlen(bad[i].text), &t, why, sizeof why), PW_EINVAL);
        assert_null(t);
        assert_non_null(strstr(why, bad[i].why));
        assert_null(strstr(why, "secret-tok")); /* never the token */
    }
}

static pw_auth *auth_new(pw_k8s_client *client, const char *authn, const char *authz, int ttl, int neg)
{
    struct pw_auth_config c = {.client = client,
                               .authn = authn,
                               .authz = authz,
                               .namespace_ = "prewarm",
                               .cache_ttl_s = ttl,
                               .negative_ttl_s = neg};
    pw_auth *a = NULL;
    char why[512] = "";
    int rc = pw_auth_new(&c, &a, why, sizeof why);
    if (rc != 0)
        fail_msg("pw_auth_new(%s): %s", authn, why);
    return a;
}

static void test_tokenfile_auth_and_revoke(void **state)
{
    (void)state;
    char *p = put_file("tokens.csv", "tok-view,vera,u1,prewarm:viewers\ntok-edit,eddie,u2,\"prewarm:editors\"\n");
    char *spec = pw_xasprintf("token-file:%s", p);
    pw_auth *a = auth_new(NULL, spec, NULL, 0, 0);
    assert_string_equal(pw_auth_authorizer(a), "static"); /* the default with a token file */
    assert_false(pw_auth_allows_anonymous(a));
    struct pw_identity id;
    char why[512];
    assert_int_equal(pw_auth_user(a, "Bearer tok-edit", &id, why, sizeof why), 0);
    assert_string_equal(id.user, "eddie");
    assert_string_equal(id.uid, "u2");
    assert_true(has_group(&id, "prewarm:editors"));
    pw_identity_fini(&id);
    assert_int_equal(pw_auth_user(a, "Bearer nope", &id, why, sizeof why), PW_EAUTH);
    assert_int_equal(pw_auth_user(a, NULL, &id, why, sizeof why), PW_EAUTH);
    assert_non_null(strstr(why, "bearer token is required"));
    assert_int_equal(pw_auth_user(a, "Basic dTpw", &id, why, sizeof why), PW_EAUTH);

    /* eddie's line removed: refused once the file is looked at again (at most a second later) */
    free(put_file("tokens.csv", "tok-view,vera,u1,prewarm:viewers\n"));
    int64_t t0 = pw_clock_mono_ms();
    int rc = 0;
    while (rc == 0 && pw_clock_mono_ms() - t0 < 3000) {
        rc = pw_auth_user(a, "Bearer tok-edit", &id, why, sizeof why);
        if (rc == 0)
            pw_identity_fini(&id);
        pw_clock_sleep_ms(50);
    }
    assert_int_equal(rc, PW_EAUTH);
    assert_true(pw_clock_mono_ms() - t0 < 2500);
    /* a broken rewrite keeps the previous tokens */
    free(put_file("tokens.csv", "tok-view,\n"));
    pw_clock_sleep_ms(1100);
    assert_int_equal(pw_auth_user(a, "Bearer tok-view", &id, why, sizeof why), 0);
    pw_identity_fini(&id);
    pw_auth_free(a);

    /* a file that does not load at start is an error naming it */
    free(put_file("bad.csv", "x\n"));
    char *bad = pw_xasprintf("token-file:%s/bad.csv", tmpdir);
    struct pw_auth_config c = {.authn = bad};
    pw_auth *b = NULL;
    assert_int_equal(pw_auth_new(&c, &b, why, sizeof why), PW_EINVAL);
    assert_non_null(strstr(why, "bad.csv: line 1"));
    free(bad);
    free(spec);
    free(p);
}

/* Token-file users get system:authenticated after their own groups, as kube-apiserver's authenticated
 * group adder gives it to every user an authenticator accepts; once, when the file names it already. */
static void test_tokenfile_authenticated_group(void **state)
{
    (void)state;
    char *p = put_file("groups.csv", "tok-edit,eddie,u2,\"prewarm:editors,team-a\"\n"
                                     "tok-none,nora,u3\n"
                                     "tok-has,hal,u4,\"system:authenticated,ops\"\n");
    char *spec = pw_xasprintf("token-file:%s", p);
    pw_auth *a = auth_new(NULL, spec, NULL, 0, 0);
    struct pw_identity id;
    char why[512];
    assert_int_equal(pw_auth_user(a, "Bearer tok-edit", &id, why, sizeof why), 0);
    assert_int_equal(id.n_groups, 3);
    assert_string_equal(id.groups[0], "prewarm:editors");
    assert_string_equal(id.groups[1], "team-a");
    assert_string_equal(id.groups[2], "system:authenticated");
    pw_identity_fini(&id);
    assert_int_equal(pw_auth_user(a, "Bearer tok-none", &id, why, sizeof why), 0);
    assert_int_equal(id.n_groups, 1);
    assert_string_equal(id.groups[0], "system:authenticated");
    pw_identity_fini(&id);
    assert_int_equal(pw_auth_user(a, "Bearer tok-has", &id, why, sizeof why), 0);
    assert_int_equal(id.n_groups, 2);
    assert_string_equal(id.groups[0], "system:authenticated");
    assert_string_equal(id.groups[1], "ops");
    pw_identity_fini(&id);
    /* anonymous users (--auth none) are not authenticated */
    pw_identity_anonymous(&id);
    assert_false(has_group(&id, "system:authenticated"));
    pw_identity_fini(&id);
    pw_auth_free(a);
    free(spec);
    free(p);
}

static void test_modes(void **state)
{
    (void)state;
    char why[512];
    struct pw_identity id;
    /* none alone: everyone, whatever they send */
    pw_auth *a = auth_new(NULL, "none", NULL, 0, 0);
    assert_true(pw_auth_allows_anonymous(a));
    assert_string_equal(pw_auth_authorizer(a), "allow-all");
    assert_int_equal(pw_auth_user(a, "Bearer whatever", &id, why, sizeof why), 0);
    assert_string_equal(id.user, "system:anonymous");
    assert_true(has_group(&id, "system:unauthenticated"));
    struct pw_auth_attrs at = {.verb = "create", .resource = "tasks"};
    assert_int_equal(pw_auth_authorize(a, &id, &at, why, sizeof why), 0);
    pw_identity_fini(&id);
    pw_auth_free(a);

    /* after a token file: anonymous only without a credential */
    char *p = put_file("t.csv", "tok-a,alice,1\n");
    char *spec = pw_xasprintf("token-file:%s,none", p);
    a = auth_new(NULL, spec, "static", 0, 0);
    assert_int_equal(pw_auth_user(a, NULL, &id, why, sizeof why), 0);
    assert_string_equal(id.user, "system:anonymous");
    assert_int_equal(pw_auth_authorize(a, &id, &at, why, sizeof why), PW_EFORBIDDEN);
    pw_identity_fini(&id);
    assert_int_equal(pw_auth_user(a, "Bearer wrong", &id, why, sizeof why), PW_EAUTH);
    assert_int_equal(pw_auth_user(a, "Bearer tok-a", &id, why, sizeof why), 0);
    assert_string_equal(id.user, "alice");
    pw_identity_fini(&id);
    pw_auth_free(a);
    free(spec);
    free(p);

    /* configuration errors */
    static const char *const bad[][2] = {{"ldap", NULL},        {"", NULL},          {"none", "rbac"},
                                         {"kubernetes", NULL}, {"none", "kubernetes"}, {"token-file:", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct pw_auth_config c = {.authn = bad[i][0], .authz = bad[i][1]};
        pw_auth *b = NULL;
        assert_int_equal(pw_auth_new(&c, &b, why, sizeof why), PW_EINVAL);
        assert_null(b);
        assert_true(strlen(why) > 10);
    }
}

static void test_static_matrix(void **state)
{
    (void)state;
    char *p = put_file("m.csv", "t-v,vera,1,prewarm:viewers\nt-e,eddie,2,prewarm:editors\nt-a,ada,3,prewarm:admins\n"
                                "t-n,nobody,4,other\n");
    char *spec = pw_xasprintf("token-file:%s", p);
    pw_auth *a = auth_new(NULL, spec, "static", 0, 0);
    static const struct {
        const char *token, *verb, *resource, *path;
        int want;
    } rows[] = {
        {"t-v", "list", "tasks", NULL, 0},        {"t-v", "get", "tasks", NULL, 0},
        {"t-v", "create", "tasks", NULL, PW_EFORBIDDEN}, {"t-v", "delete", "tasks", NULL, PW_EFORBIDDEN},
        {"t-v", "list", "agents", NULL, 0},       {"t-v", "get", NULL, "/metrics", 0},
        {"t-e", "create", "tasks", NULL, 0},      {"t-e", "delete", "tasks", NULL, 0},
        {"t-e", "create", "policies", NULL, 0},   {"t-e", "delete", "agents", NULL, PW_EFORBIDDEN},
        {"t-a", "delete", "agents", NULL, 0},     {"t-a", "create", "tasks", NULL, 0},
        {"t-n", "get", "tasks", NULL, PW_EFORBIDDEN},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct pw_identity id;
        char why[512] = "", hdr[64];
        snprintf(hdr, sizeof hdr, "Bearer %s", rows[i].token);
        assert_int_equal(pw_auth_user(a, hdr, &id, why, sizeof why), 0);
        struct pw_auth_attrs at = {.verb = rows[i].verb, .resource = rows[i].resource, .path = rows[i].path};
        int rc = pw_auth_authorize(a, &id, &at, why, sizeof why);
        if (rc != rows[i].want)
            fail_msg("row %zu: %s %s %s: %d (%s)", i, rows[i].token, rows[i].verb,
                     rows[i].resource ? rows[i].resource : rows[i].path, rc, why);
        if (rc)
            assert_non_null(strstr(why, id.user));
        pw_identity_fini(&id);
    }
    pw_auth_free(a);
    free(spec);
    free(p);
}

/* ---- TokenReview and SubjectAccessReview against a fake API server ---- */

struct fake {
    pthread_mutex_t mu;
    int reviews, sars;
    int fail_status; /* non-zero: every SAR gets it */
    bool revoked;    /* good-token is refused from now on */
    json_t *last_sar;
    pw_http_server *srv;
};

static void h_tokenreview(pw_http_req *req, void *ctx)
{
    struct fake *f = ctx;
    size_t n;
    const char *body = pw_http_req_body(req, &n);
    json_t *o = json_loadb(body, n, 0, NULL);
    const char *tok = json_string_value(json_object_get(json_object_get(o, "spec"), "token"));
    pthread_mutex_lock(&f->mu);
    f->reviews++;
    bool revoked = f->revoked;
    pthread_mutex_unlock(&f->mu);
    json_t *st = tok && strcmp(tok, "good-token") == 0 && !revoked
                     ? json_pack("{s:b, s:{s:s, s:s, s:[ss]}}", "authenticated", 1, "user", "username",
                                 "system:serviceaccount:team:ci", "uid", "sa-uid", "groups", "system:serviceaccounts",
                                 "system:authenticated")
                     : json_pack("{s:b, s:s}", "authenticated", 0, "error", "invalid bearer token");
    json_object_set_new(o, "status", st);
    pw_http_reply_json(req, 201, o);
}

static void h_sar(pw_http_req *req, void *ctx)
{
    struct fake *f = ctx;
    size_t n;
    const char *body = pw_http_req_body(req, &n);
    json_t *o = json_loadb(body, n, 0, NULL);
    pthread_mutex_lock(&f->mu);
    f->sars++;
    json_decref(f->last_sar);
    f->last_sar = json_incref(o);
    int fail = f->fail_status;
    pthread_mutex_unlock(&f->mu);
    if (fail) {
        json_decref(o);
        pw_http_reply_json(req, fail, json_pack("{s:s, s:s, s:i}", "kind", "Status", "message", "etcd is sad", "code", fail));
        return;
    }
    const json_t *ra = json_object_get(json_object_get(o, "spec"), "resourceAttributes");
    const char *verb = json_string_value(json_object_get(ra, "verb"));
    /* the RBAC of the fake: ci may get and list tasks, nothing else */
    bool ok = verb && (strcmp(verb, "get") == 0 || strcmp(verb, "list") == 0);
    json_object_set_new(o, "status", ok ? json_pack("{s:b, s:s}", "allowed", 1, "reason", "RBAC: allowed by RoleBinding")
                                        : json_pack("{s:b}", "allowed", 0));
    pw_http_reply_json(req, 201, o);
}

static const struct pw_http_route fake_routes[] = {
    {"POST", "/apis/authentication.k8s.io/v1/tokenreviews", h_tokenreview},
    {"POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", h_sar},
    {NULL, NULL, NULL},
};

static void fake_start(struct fake *f, pw_k8s_config **cfg, pw_k8s_client **client)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    struct pw_http_config hc = {.listen = "127.0.0.1:0", .routes = fake_routes, .ctx = f, .threads = 2};
    assert_int_equal(pw_http_server_new(&hc, &f->srv), 0);
    char *text = pw_xasprintf("apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                              "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:%d'}}]\n"
                              "contexts: [{name: t, context: {cluster: c, user: u}}]\n"
                              "users: [{name: u, user: {token: prewarmd-own-token}}]\n",
                              pw_http_server_port(f->srv));
    char *p = put_file("kubeconfig", text);
    char *msg = NULL;
    assert_int_equal(pw_k8s_config_load(p, NULL, cfg, &msg), 0);
    struct pw_k8s_client_opts o = {.max_retries = -1};
    assert_int_equal(pw_k8s_client_new(*cfg, &o, client), 0);
    free(p);
    free(text);
}

static void fake_stop(struct fake *f, pw_k8s_config *cfg, pw_k8s_client *client)
{
    pw_k8s_client_free(client);
    pw_k8s_config_free(cfg);
    pw_http_server_free(f->srv);
    json_decref(f->last_sar);
    pthread_mutex_destroy(&f->mu);
}

static int counts(struct fake *f, int *sars)
{
    pthread_mutex_lock(&f->mu);
    int r = f->reviews;
    *sars = f->sars;
    pthread_mutex_unlock(&f->mu);
    return r;
}

static void test_kubernetes(void **state)
{
    (void)state;
    struct fake f;
    pw_k8s_config *cfg;
    pw_k8s_client *client;
    fake_start(&f, &cfg, &client);
    pw_auth *a = auth_new(client, "kubernetes", NULL, 2, 1);
    assert_string_equal(pw_auth_authorizer(a), "kubernetes");
    struct pw_identity id;
    char why[512];
    int sars;
    /* TokenReview: the user, then from the cache */
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);
    assert_string_equal(id.user, "system:serviceaccount:team:ci");
    pw_identity_fini(&id);
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);
    pw_identity_fini(&id);
    assert_int_equal(counts(&f, &sars), 1);
    assert_int_equal(pw_auth_user(a, "Bearer bad-token", &id, why, sizeof why), PW_EAUTH);
    assert_string_equal(why, "invalid bearer token");
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);

    /* SubjectAccessReview: what is asked, the answer, the cache */
    struct pw_auth_attrs get = {.verb = "get", .resource = "tasks", .name = "t-1"};
    assert_int_equal(pw_auth_authorize(a, &id, &get, why, sizeof why), 0);
    pthread_mutex_lock(&f.mu);
    json_t *spec = json_object_get(f.last_sar, "spec");
    json_t *ra = json_object_get(spec, "resourceAttributes");
    assert_string_equal(json_string_value(json_object_get(f.last_sar, "kind")), "SubjectAccessReview");
    assert_string_equal(json_string_value(json_object_get(f.last_sar, "apiVersion")), "authorization.k8s.io/v1");
    assert_string_equal(json_string_value(json_object_get(spec, "user")), "system:serviceaccount:team:ci");
    assert_string_equal(json_string_value(json_object_get(spec, "uid")), "sa-uid");
    assert_int_equal(json_array_size(json_object_get(spec, "groups")), 2);
    assert_string_equal(json_string_value(json_object_get(ra, "group")), "prewarm.io");
    assert_string_equal(json_string_value(json_object_get(ra, "resource")), "tasks");
    assert_string_equal(json_string_value(json_object_get(ra, "namespace")), "prewarm");
    assert_string_equal(json_string_value(json_object_get(ra, "verb")), "get");
    assert_string_equal(json_string_value(json_object_get(ra, "name")), "t-1");
    pthread_mutex_unlock(&f.mu);
    assert_int_equal(pw_auth_authorize(a, &id, &get, why, sizeof why), 0);
    counts(&f, &sars);
    assert_int_equal(sars, 1);
    struct pw_auth_attrs create = {.verb = "create", .resource = "tasks"};
    assert_int_equal(pw_auth_authorize(a, &id, &create, why, sizeof why), PW_EFORBIDDEN);
    assert_non_null(strstr(why, "may not create tasks.prewarm.io in namespace prewarm"));
    assert_int_equal(pw_auth_authorize(a, &id, &create, why, sizeof why), PW_EFORBIDDEN);
    counts(&f, &sars);
    assert_int_equal(sars, 2);
    /* the rejection is asked again after the negative TTL (1 s), the allowance after the TTL (2 s) */
    pw_clock_sleep_ms(1100);
    assert_int_equal(pw_auth_authorize(a, &id, &create, why, sizeof why), PW_EFORBIDDEN);
    assert_int_equal(pw_auth_authorize(a, &id, &get, why, sizeof why), 0);
    counts(&f, &sars);
    assert_int_equal(sars, 3);
    /* non-resource requests */
    struct pw_auth_attrs metrics = {.verb = "get", .path = "/metrics"};
    pw_auth_authorize(a, &id, &metrics, why, sizeof why);
    pthread_mutex_lock(&f.mu);
    json_t *nra = json_object_get(json_object_get(f.last_sar, "spec"), "nonResourceAttributes");
    assert_string_equal(json_string_value(json_object_get(nra, "path")), "/metrics");
    pthread_mutex_unlock(&f.mu);
    /* an API server that cannot answer: 503 upstream, nothing cached */
    pthread_mutex_lock(&f.mu);
    f.fail_status = 500;
    pthread_mutex_unlock(&f.mu);
    struct pw_auth_attrs del = {.verb = "delete", .resource = "tasks", .name = "t-2"};
    assert_int_equal(pw_auth_authorize(a, &id, &del, why, sizeof why), PW_EUNAVAIL);
    assert_int_equal(pw_auth_authorize(a, &id, &del, why, sizeof why), PW_EUNAVAIL);
    int before;
    counts(&f, &before);
    pthread_mutex_lock(&f.mu);
    f.fail_status = 0;
    pthread_mutex_unlock(&f.mu);
    assert_int_equal(pw_auth_authorize(a, &id, &del, why, sizeof why), PW_EFORBIDDEN);
    counts(&f, &sars);
    assert_int_equal(sars, before + 1);
    pw_identity_fini(&id);
    size_t reviews, hits;
    pw_auth_counts(a, &reviews, &hits);
    assert_true(hits >= 4);
    pw_auth_free(a);
    fake_stop(&f, cfg, client);
}

/* Refresh ahead: an acceptance used in the last quarter of its TTL is reviewed again in the
 * background, so the caller after the old expiry is answered from the cache; a token revoked in the
 * meantime is refused once the refresh saw it. */
static void test_refresh_ahead(void **state)
{
    (void)state;
    struct fake f;
    pw_k8s_config *cfg;
    pw_k8s_client *client;
    fake_start(&f, &cfg, &client);
    pw_auth *a = auth_new(client, "kubernetes", NULL, 4, 1);
    struct pw_identity id;
    char why[512];
    int sars;
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);
    pw_identity_fini(&id);
    assert_int_equal(counts(&f, &sars), 1);
    /* half-way: a hit, no refresh yet */
    pw_clock_sleep_ms(1000);
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);
    pw_identity_fini(&id);
    pw_clock_sleep_ms(200);
    assert_int_equal(pw_auth_refreshes(a), 0);
    assert_int_equal(counts(&f, &sars), 1);
    /* the last quarter (3..4 s): answered from the cache at once, one refresh behind it (not one per
     * call) */
    pw_clock_sleep_ms(2000);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);
        pw_identity_fini(&id);
    }
    for (int i = 0; i < 100 && pw_auth_refreshes(a) == 0; i++)
        pw_clock_sleep_ms(20);
    assert_int_equal(pw_auth_refreshes(a), 1);
    assert_int_equal(counts(&f, &sars), 2);
    size_t reviews0, hits0, reviews1, hits1;
    pw_auth_counts(a, &reviews0, &hits0);
    /* past the first entry's expiry (4 s): still a hit, no review in the caller's path */
    pw_clock_sleep_ms(1100);
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);
    pw_identity_fini(&id);
    pw_auth_counts(a, &reviews1, &hits1);
    assert_int_equal(reviews1, reviews0);
    assert_int_equal(hits1, hits0 + 1);
    /* revoked: the next refresh caches the rejection and callers are refused from then on */
    pthread_mutex_lock(&f.mu);
    f.revoked = true;
    pthread_mutex_unlock(&f.mu);
    pw_clock_sleep_ms(2000); /* into the refreshed entry's last quarter (about 6.2..7.2 s) */
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), 0);
    pw_identity_fini(&id);
    for (int i = 0; i < 100 && pw_auth_refreshes(a) == 1; i++)
        pw_clock_sleep_ms(20);
    assert_int_equal(pw_auth_refreshes(a), 2);
    assert_int_equal(pw_auth_user(a, "Bearer good-token", &id, why, sizeof why), PW_EAUTH);
    pw_auth_free(a);
    fake_stop(&f, cfg, client);
}

/* ---- limits and the audit log ---- */

static void test_userlimit(void **state)
{
    (void)state;
    pw_userlimit *l = pw_userlimit_new(2, 3);
    int64_t t = 1000;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pw_userlimit_take(l, "alice", t), 0);
    int wait = pw_userlimit_take(l, "alice", t);
    assert_int_equal(wait, 1);
    assert_int_equal(pw_userlimit_take(l, "bob", t), 0); /* buckets are per user */
    assert_int_equal(pw_userlimit_take(l, "alice", t + 499), 1);
    assert_int_equal(pw_userlimit_take(l, "alice", t + 500), 0); /* 2/s: one token per 500 ms */
    assert_int_equal(pw_userlimit_take(l, "alice", t + 500), 1);
    /* a flood of names does not grow without bound */
    char name[32];
    for (int i = 0; i < PW_USERLIMIT_MAX_USERS + 10; i++) {
        snprintf(name, sizeof name, "u%d", i);
        pw_userlimit_take(l, name, t);
    }
    pw_userlimit_free(l);
}

static size_t count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void test_audit(void **state)
{
    (void)state;
    char *path = pw_xasprintf("%s/audit.log", tmpdir);
    struct pw_audit_config c = {.path = path, .max_bytes = 600, .keep = 2};
    pw_audit *a = NULL;
    char why[256];
    assert_int_equal(pw_audit_new(&c, &a, why, sizeof why), 0);
    char *groups[] = {"prewarm:editors", "system:authenticated"};
    struct pw_audit_event ev = {.user = "eddie", .groups = groups, .n_groups = 2, .verb = "create",
                                .method = "POST", .path = "/api/v1/tasks", .task_id = "t-0123", .code = 201,
                                .source = "127.0.0.1:5555"};
    pw_audit_write(a, &ev);
    FILE *f = fopen(path, "r");
    char line[1024];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    json_t *o = json_loads(line, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "user")), "eddie");
    assert_string_equal(json_string_value(json_object_get(o, "taskId")), "t-0123");
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 201);
    assert_string_equal(json_string_value(json_object_get(o, "source")), "127.0.0.1:5555");
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "groups"), 1)), "system:authenticated");
    assert_non_null(json_object_get(o, "time"));
    json_decref(o);
    for (int i = 0; i < 20; i++)
        pw_audit_write(a, &ev);
    size_t lines, rotations;
    pw_audit_counts(a, &lines, &rotations);
    assert_int_equal(lines, 21);
    assert_true(rotations >= 2);
    char *r1 = pw_xasprintf("%s.1", path), *r2 = pw_xasprintf("%s.2", path), *r3 = pw_xasprintf("%s.3", path);
    struct stat st;
    assert_int_equal(stat(r1, &st), 0);
    assert_true(st.st_size <= 600);
    assert_int_equal(stat(r2, &st), 0);
    assert_int_not_equal(stat(r3, &st), 0); /* keep = 2 */
    assert_true(count_lines(path) + count_lines(r1) + count_lines(r2) <= 21);
    assert_true(count_lines(path) >= 1);
    pw_audit_free(a);
    /* a directory that does not exist */
    struct pw_audit_config bad = {.path = "/nonexistent-dir/x/audit.log"};
    assert_int_equal(pw_audit_new(&bad, &a, why, sizeof why), PW_EIO);
    assert_non_null(strstr(why, "/nonexistent-dir/x/audit.log"));
    free(r1);
    free(r2);
    free(r3);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tokenfile_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokenfile_auth_and_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokenfile_authenticated_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_matrix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kubernetes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_userlimit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
