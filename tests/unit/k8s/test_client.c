/* Unit tests for the src/k8s client and informers against a small fake API server built on pw_http in
 * this file: list pages with continue tokens, watch streams driven event by event by the test, a 410
 * forcing a re-list that delivers the differences (DELETED for a vanished object), 429 with
 * Retry-After, 500 retried, POST retried on 503 but never after a timeout, connection refused with
 * backoff (and an informer that gets there once the server appears), a rotated token file and an exec
 * plugin picked up again after a 401, a callback calling the API from inside a watch event, several
 * threads under the rate limiter, and HTTPS with a CA and a client certificate from the kubeconfig. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/b64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "http/http.h"
#include "k8s/k8s.h"
#include "k8s/k8s_int.h"
#include "sim/sim.h"

/* ---- the fake API server ---- */

struct fake {
    pthread_mutex_t mu;
    json_t *nodes;  /* name -> node */
    long rv;        /* the global resourceVersion */
    char token[64]; /* the bearer token accepted ("" = any) */
    int fail_n;     /* the next fail_n requests get fail_status */
    int fail_status;
    int retry_after;  /* -1: no header */
    int requests;     /* all requests */
    int unauthorized; /* 401s given */
    int lists;        /* list pages served */
    int watches;      /* watch requests */
    int posts;
    char last_watch_rv[32];
    char last_watch_bookmarks[16];
    char last_label_selector[64];
    char client_cn[64];
    pw_http_stream *stream; /* the open watch, if any */
    pw_http_server *srv;
};

static void reply_status(pw_http_req *req, int code, const char *reason, const char *msg)
{
    pw_http_reply_json(req, code,
                       json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}", "kind", "Status", "apiVersion", "v1", "metadata",
                                 "status", "Failure", "message", msg, "reason", reason, "code", code));
}

static json_t *make_node(const char *name, long rv, const char *zone)
{
    char rvs[32];
    snprintf(rvs, sizeof rvs, "%ld", rv);
    return json_pack("{s:{s:s,s:s,s:{s:s}}}", "metadata", "name", name, "resourceVersion", rvs, "labels", "zone", zone);
}

/* Checks auth and injected faults; true when the request was answered here. Lock held. */
static bool gate(struct fake *f, pw_http_req *req)
{
    f->requests++;
    char cn[64] = "";
    if (pw_http_req_client_cert(req, cn, sizeof cn))
        snprintf(f->client_cn, sizeof f->client_cn, "%s", cn);
    const char *auth = pw_http_req_header(req, "Authorization");
    if (f->token[0] && !cn[0]) {
        char want[96];
        snprintf(want, sizeof want, "Bearer %s", f->token);
        if (!auth || strcmp(auth, want) != 0) {
            f->unauthorized++;
            reply_status(req, 401, "Unauthorized", "Unauthorized");
            return true;
        }
    }
    if (f->fail_n > 0) {
        f->fail_n--;
        if (f->retry_after >= 0) {
            char ra[16];
            snprintf(ra, sizeof ra, "%d", f->retry_after);
            pw_http_add_header(req, "Retry-After", ra);
        }
        reply_status(req, f->fail_status, f->fail_status == 429 ? "TooManyRequests" : "InternalError", "injected");
        return true;
    }
    return false;
}

static void h_nodes(pw_http_req *req, void *ctx)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    if (gate(f, req)) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    const char *ls = pw_http_req_query(req, "labelSelector");
    snprintf(f->last_label_selector, sizeof f->last_label_selector, "%s", ls ? ls : "");
    const char *w = pw_http_req_query(req, "watch");
    if (w && (strcmp(w, "1") == 0 || strcmp(w, "true") == 0)) {
        f->watches++;
        const char *rv = pw_http_req_query(req, "resourceVersion");
        const char *bm = pw_http_req_query(req, "allowWatchBookmarks");
        snprintf(f->last_watch_rv, sizeof f->last_watch_rv, "%s", rv ? rv : "");
        snprintf(f->last_watch_bookmarks, sizeof f->last_watch_bookmarks, "%s", bm ? bm : "");
        if (f->stream)
            pw_http_stream_close(f->stream);
        f->stream = pw_http_reply_stream(req, 200, "application/json");
        pthread_mutex_unlock(&f->mu);
        return;
    }
    f->lists++;
    /* pages: continue is the index of the next item, in name order */
    const char *lim = pw_http_req_query(req, "limit");
    const char *cont = pw_http_req_query(req, "continue");
    long limit = lim ? atol(lim) : 0, start = cont ? atol(cont) : 0;
    const char **names = pw_xcalloc(json_object_size(f->nodes) + 1, sizeof *names);
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(f->nodes, key, v) names[n++] = key;
    qsort(names, n, sizeof *names, (int (*)(const void *, const void *))strcmp);
    json_t *items = json_array();
    size_t end = limit > 0 && (size_t)(start + limit) < n ? (size_t)(start + limit) : n;
    for (size_t i = (size_t)start; i < end; i++)
        json_array_append(items, json_object_get(f->nodes, names[i]));
    free(names);
    char rvs[32], next[32];
    snprintf(rvs, sizeof rvs, "%ld", f->rv);
    snprintf(next, sizeof next, "%zu", end);
    json_t *meta = json_pack("{s:s}", "resourceVersion", rvs);
    if (end < n)
        json_object_set_new(meta, "continue", json_string(next));
    pthread_mutex_unlock(&f->mu);
    pw_http_reply_json(
        req, 200,
        json_pack("{s:s,s:s,s:o,s:o}", "kind", "NodeList", "apiVersion", "v1", "metadata", meta, "items", items));
}

static void h_things(pw_http_req *req, void *ctx)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    if (gate(f, req)) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    if (strcmp(pw_http_req_method(req), "POST") == 0)
        f->posts++;
    pthread_mutex_unlock(&f->mu);
    size_t len;
    const char *body = pw_http_req_body(req, &len);
    json_t *in = json_loadb(body, len, 0, NULL);
    if (!in) {
        reply_status(req, 400, "BadRequest", "no JSON body");
        return;
    }
    json_object_set_new(in, "seen", json_string(pw_http_req_header(req, "Content-Type")));
    pw_http_reply_json(req, 201, in);
}

static void h_missing(pw_http_req *req, void *ctx)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    bool done = gate(f, req);
    pthread_mutex_unlock(&f->mu);
    if (!done)
        reply_status(req, 404, "NotFound", "things \"x\" not found");
}

/* Answers after 1.5 s: longer than the client's timeout in test_timeouts. */
static void h_slow(pw_http_req *req, void *ctx)
{
    struct fake *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->requests++;
    pthread_mutex_unlock(&f->mu);
    pw_clock_sleep_ms(1500);
    pw_http_reply_json(req, 200, json_object());
}

static const struct pw_http_route fake_routes[] = {
    {"*", "/api/v1/namespaces/ns/things/slow", h_slow},
    {"GET", "/api/v1/nodes", h_nodes},
    {"*", "/api/v1/namespaces/ns/things", h_things},
    {"*", "/api/v1/namespaces/ns/things/x", h_missing},
    {NULL, NULL, NULL},
};

static struct fake *fake_start_at(const struct sim_tls *tls, const char *listen)
{
    struct fake *f = pw_xcalloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->nodes = json_object();
    f->retry_after = -1;
    f->rv = 10;
    struct pw_http_config hc = {.listen = listen, .routes = fake_routes, .ctx = f, .threads = 4};
    if (tls) {
        hc.tls_cert_pem = tls->server_cert;
        hc.tls_key_pem = tls->server_key;
        hc.tls_client_ca_pem = tls->ca_cert;
    }
    assert_int_equal(pw_http_server_new(&hc, &f->srv), 0);
    return f;
}

static struct fake *fake_start(const struct sim_tls *tls)
{
    return fake_start_at(tls, "127.0.0.1:0");
}

static void fake_stop(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    pw_http_stream *s = f->stream;
    f->stream = NULL;
    pthread_mutex_unlock(&f->mu);
    if (s)
        pw_http_stream_close(s);
    pw_http_server_free(f->srv);
    json_decref(f->nodes);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* Changes a node in the store (a new rv) and returns the event to emit (caller frees). */
static char *fake_put(struct fake *f, const char *type, const char *name, const char *zone)
{
    pthread_mutex_lock(&f->mu);
    f->rv++;
    json_t *n = make_node(name, f->rv, zone);
    if (strcmp(type, "DELETED") == 0)
        json_object_del(f->nodes, name);
    else
        json_object_set(f->nodes, name, n);
    pthread_mutex_unlock(&f->mu);
    json_t *ev = json_pack("{s:s,s:o}", "type", type, "object", n);
    char *s = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return s;
}

static void fake_emit(struct fake *f, const char *line)
{
    pthread_mutex_lock(&f->mu);
    assert_non_null(f->stream);
    assert_int_equal(pw_http_stream_write(f->stream, line, strlen(line)), 0);
    assert_int_equal(pw_http_stream_write(f->stream, "\n", 1), 0);
    pthread_mutex_unlock(&f->mu);
}

static void fake_end_watch(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    pw_http_stream *s = f->stream;
    f->stream = NULL;
    pthread_mutex_unlock(&f->mu);
    if (s)
        pw_http_stream_close(s);
}

static int fake_get(struct fake *f, const int *field)
{
    pthread_mutex_lock(&f->mu);
    int v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

/* Waits (bounded) until the fake has served at least n watch requests. */
static void wait_watches(struct fake *f, int n)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&f->mu);
        bool ok = f->watches >= n && f->stream;
        pthread_mutex_unlock(&f->mu);
        if (ok)
            return;
        pw_clock_sleep_ms(10);
    }
    fail_msg("watch %d never arrived", n);
}

/* ---- configuration for the tests ---- */

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pw-k8s-client-XXXXXX");
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

static void put_file(const char *name, const char *text)
{
    char *p = pw_xasprintf("%s/%s", tmpdir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    free(p);
}

static char *b64(const char *s)
{
    return pw_b64_encode(s, strlen(s), false);
}

/* A kubeconfig for server with the given cluster extras and user body (YAML flow mappings). */
static pw_k8s_config *load_cfg(const char *server, const char *cluster_extra, const char *user)
{
    char *text = pw_xasprintf("apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                              "clusters: [{name: c, cluster: {server: '%s'%s}}]\n"
                              "contexts: [{name: t, context: {cluster: c, user: u, namespace: ns}}]\n"
                              "users: [{name: u, user: %s}]\n",
                              server, cluster_extra, user);
    put_file("config", text);
    free(text);
    char *p = pw_xasprintf("%s/config", tmpdir);
    pw_k8s_config *cfg = NULL;
    char *msg = NULL;
    int rc = pw_k8s_config_load(p, NULL, &cfg, &msg);
    if (rc)
        fail_msg("config: %s", msg);
    free(p);
    return cfg;
}

static char *http_url(struct fake *f)
{
    return pw_xasprintf("http://127.0.0.1:%d", pw_http_server_port(f->srv));
}

/* ---- requests ---- */

static void test_request_retries(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    snprintf(f->token, sizeof f->token, "tok-1");
    char *url = http_url(f);
    pw_k8s_config *cfg = load_cfg(url, "", "{token: tok-1}");
    pw_k8s_client *c = NULL;
    struct pw_k8s_client_opts o = {.qps = 1000, .burst = 1000, .max_retries = 3};
    assert_int_equal(pw_k8s_client_new(cfg, &o, &c), 0);
    int status = 0;
    json_t *resp = NULL;

    /* a plain POST: body and content type arrive, the reply is parsed */
    json_t *body = json_pack("{s:s}", "name", "a");
    assert_int_equal(pw_k8s_request(c, "POST", "/api/v1/namespaces/ns/things", body, NULL, &status, &resp), 0);
    assert_int_equal(status, 201);
    assert_string_equal(json_string_value(json_object_get(resp, "name")), "a");
    assert_string_equal(json_string_value(json_object_get(resp, "seen")), "application/json");
    json_decref(resp);
    assert_int_equal(pw_k8s_request(c, "PATCH", "/api/v1/namespaces/ns/things", body, "application/merge-patch+json",
                                    &status, &resp),
                     0);
    assert_string_equal(json_string_value(json_object_get(resp, "seen")), "application/merge-patch+json");
    json_decref(resp);

    /* 429 with Retry-After: 1, then success: the wait is honoured */
    pthread_mutex_lock(&f->mu);
    f->fail_n = 1, f->fail_status = 429, f->retry_after = 1;
    pthread_mutex_unlock(&f->mu);
    int64_t t0 = pw_clock_mono_ms();
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, &resp), 0);
    int64_t took = pw_clock_mono_ms() - t0;
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(resp, "kind")), "NodeList");
    json_decref(resp);
    assert_true(took >= 950);

    /* two 500s, then success */
    pthread_mutex_lock(&f->mu);
    f->fail_n = 2, f->fail_status = 500, f->retry_after = -1;
    int before = f->requests;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(fake_get(f, &f->requests) - before, 3);

    /* a POST on 503 is retried too (the server said it did nothing) */
    pthread_mutex_lock(&f->mu);
    f->fail_n = 1, f->fail_status = 503;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(pw_k8s_request(c, "POST", "/api/v1/namespaces/ns/things", body, NULL, &status, &resp), 0);
    assert_int_equal(status, 201);
    json_decref(resp);

    /* more 500s than retries: the last answer is returned, not an error */
    pthread_mutex_lock(&f->mu);
    f->fail_n = 10, f->fail_status = 500;
    before = f->requests;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 500);
    assert_string_equal(pw_k8s_status_message(resp), "injected");
    json_decref(resp);
    assert_int_equal(fake_get(f, &f->requests) - before, 4);
    pthread_mutex_lock(&f->mu);
    f->fail_n = 0;
    pthread_mutex_unlock(&f->mu);

    /* 404 is an answer, never retried */
    before = fake_get(f, &f->requests);
    assert_int_equal(pw_k8s_request(c, "DELETE", "/api/v1/namespaces/ns/things/x", NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 404);
    assert_string_equal(pw_k8s_status_message(resp), "things \"x\" not found");
    json_decref(resp);
    assert_int_equal(fake_get(f, &f->requests) - before, 1);

    /* a body over the cap is an error, not retried */
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof name, "big-%02d", i);
        json_object_set_new(f->nodes, name, make_node(name, 3, "a"));
    }
    pw_k8s_client_set_max_body(c, 1000);
    before = fake_get(f, &f->requests);
    resp = NULL;
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, &resp), PW_ETOOLARGE);
    assert_null(resp);
    assert_int_equal(fake_get(f, &f->requests) - before, 1);
    pw_k8s_client_set_max_body(c, 64 << 20);

    struct pw_k8s_counts n;
    pw_k8s_client_counts(c, &n);
    assert_int_equal(n.create, 2);
    assert_int_equal(n.patch, 1);
    assert_int_equal(n.list, 4);
    assert_int_equal(n.del, 1);
    assert_int_equal(n.retries, 1 + 2 + 1 + 3);
    assert_int_equal(n.errors, 1);
    assert_int_equal(fake_get(f, &f->posts), 2);

    json_decref(body);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    free(url);
    fake_stop(f);
}

static void test_token_file_rotation(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    snprintf(f->token, sizeof f->token, "old-token");
    put_file("token", "old-token\n");
    char *url = http_url(f);
    pw_k8s_config *cfg = load_cfg(url, "", "{tokenFile: token}");
    pw_k8s_client *c = NULL;
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    int status = 0;
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    /* the token rotates on the server and in the file: one 401, then the re-read token works */
    pthread_mutex_lock(&f->mu);
    snprintf(f->token, sizeof f->token, "new-token");
    pthread_mutex_unlock(&f->mu);
    put_file("token", "new-token\n");
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(fake_get(f, &f->unauthorized), 1);
    /* a token nobody accepts: the 401 comes back after one refresh attempt */
    pthread_mutex_lock(&f->mu);
    snprintf(f->token, sizeof f->token, "other");
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 401);
    assert_int_equal(fake_get(f, &f->unauthorized), 2);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    free(url);
    fake_stop(f);
}

/* An exec plugin whose token the server stops accepting: one 401, the plugin runs again, success. */
static void test_exec_401_rerun(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    snprintf(f->token, sizeof f->token, "exec-1");
    put_file("plugin.sh",
             "#!/bin/sh\n"
             "d=$(dirname \"$0\"); n=$(cat \"$d/n\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$d/n\"\n"
             "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",'\n"
             "echo \"\\\"status\\\":{\\\"token\\\":\\\"exec-$n\\\"}}\"\n");
    char *plugin = pw_xasprintf("%s/plugin.sh", tmpdir);
    assert_int_equal(chmod(plugin, 0755), 0);
    char *url = http_url(f);
    char *user = pw_xasprintf("{exec: {apiVersion: client.authentication.k8s.io/v1, command: '%s', "
                              "interactiveMode: Never}}",
                              plugin);
    pw_k8s_config *cfg = load_cfg(url, "", user);
    pw_k8s_client *c = NULL;
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    int status = 0;
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(pw_k8s_cred_exec_runs(cfg), 1); /* cached */
    pthread_mutex_lock(&f->mu);
    snprintf(f->token, sizeof f->token, "exec-2");
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(pw_k8s_cred_exec_runs(cfg), 2);
    assert_int_equal(fake_get(f, &f->unauthorized), 1);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    free(user);
    free(url);
    free(plugin);
    fake_stop(f);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_connection_refused(void **state)
{
    (void)state;
    char *url = pw_xasprintf("http://127.0.0.1:%d", closed_port());
    pw_k8s_config *cfg = load_cfg(url, "", "{token: t}");
    pw_k8s_client *c = NULL;
    struct pw_k8s_client_opts o = {.max_retries = 2};
    assert_int_equal(pw_k8s_client_new(cfg, &o, &c), 0);
    int status = -1;
    json_t *resp = NULL;
    /* POSTs may be retried on a refused connection: nothing reached the server */
    assert_int_equal(pw_k8s_request(c, "POST", "/api/v1/namespaces/ns/things", NULL, NULL, &status, &resp),
                     PW_EUNAVAIL);
    assert_int_equal(status, -1);
    struct pw_k8s_counts n;
    pw_k8s_client_counts(c, &n);
    assert_int_equal(n.retries, 2);
    assert_int_equal(n.errors, 1);
    assert_int_equal(n.create, 1);

    /* an informer against nothing: never synced, and it stops promptly */
    pw_k8s_informer *inf = NULL;
    struct pw_k8s_informer_opts io = {.path = "/api/v1/nodes"};
    assert_int_equal(pw_k8s_informer_start(c, &io, &inf), 0);
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 300), PW_ETIMEDOUT);
    assert_false(pw_k8s_informer_synced(inf));
    int64_t t0 = pw_clock_mono_ms();
    pw_k8s_informer_free(inf);
    assert_true(pw_clock_mono_ms() - t0 < 3000);

    /* the server comes up later on that port: the informer, backing off meanwhile, gets there */
    assert_int_equal(pw_k8s_informer_start(c, &io, &inf), 0);
    pw_clock_sleep_ms(700);
    assert_false(pw_k8s_informer_synced(inf));
    char *listen = pw_xasprintf("127.0.0.1:%s", strrchr(url, ':') + 1);
    struct fake *f = fake_start_at(NULL, listen);
    json_object_set_new(f->nodes, "n0", make_node("n0", 3, "a"));
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 20000), 0);
    assert_int_equal(pw_k8s_informer_size(inf), 1);
    pw_k8s_informer_free(inf);
    fake_stop(f);
    free(listen);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    free(url);
}

static void test_timeouts(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    char *url = http_url(f);
    pw_k8s_config *cfg = load_cfg(url, "", "{token: t}");
    pw_k8s_client *c = NULL;
    struct pw_k8s_client_opts o = {.timeout_ms = 300, .max_retries = 1};
    assert_int_equal(pw_k8s_client_new(cfg, &o, &c), 0);
    int status = 0;
    /* a GET that times out is retried (it cannot have changed anything), then reported */
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/namespaces/ns/things/slow", NULL, NULL, &status, NULL),
                     PW_ETIMEDOUT);
    assert_int_equal(fake_get(f, &f->requests), 2);
    /* a POST that timed out may have been applied: never retried */
    json_t *body = json_object();
    assert_int_equal(pw_k8s_request(c, "POST", "/api/v1/namespaces/ns/things/slow", body, NULL, &status, NULL),
                     PW_ETIMEDOUT);
    json_decref(body);
    assert_int_equal(fake_get(f, &f->requests), 3);
    struct pw_k8s_counts n;
    pw_k8s_client_counts(c, &n);
    assert_int_equal(n.retries, 1);
    assert_int_equal(n.errors, 2);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    free(url);
    pw_clock_sleep_ms(1600); /* let the slow handlers finish before the server goes */
    fake_stop(f);
}

/* ---- informers ---- */

struct events {
    pthread_mutex_t mu;
    char log[64][48]; /* "ADDED n1 zone" */
    int n;
};

static void on_event(void *arg, enum pw_k8s_event ev, const json_t *obj, const json_t *old)
{
    static const char *const names[] = {"ADDED", "MODIFIED", "DELETED"};
    struct events *e = arg;
    if (ev != PW_K8S_ADDED)
        assert_non_null(old);
    else
        assert_null(old);
    pthread_mutex_lock(&e->mu);
    if (e->n < 64) {
        snprintf(e->log[e->n], sizeof e->log[0], "%s %s %s", names[ev], pw_k8s_name(obj),
                 pw_k8s_label(obj, "zone") ? pw_k8s_label(obj, "zone") : "-");
        e->n++;
    }
    pthread_mutex_unlock(&e->mu);
}

/* Keeps only metadata (what prewarmd's transforms do to save memory). */
static json_t *keep_metadata(void *arg, json_t *obj)
{
    struct events *e = arg;
    (void)e;
    return json_pack("{s:O}", "metadata", json_object_get(obj, "metadata"));
}

static bool has_event(struct events *e, const char *what)
{
    pthread_mutex_lock(&e->mu);
    bool found = false;
    for (int i = 0; i < e->n && !found; i++)
        found = strcmp(e->log[i], what) == 0;
    pthread_mutex_unlock(&e->mu);
    return found;
}

static void wait_event(struct events *e, const char *what)
{
    for (int i = 0; i < 500; i++) {
        if (has_event(e, what))
            return;
        pw_clock_sleep_ms(10);
    }
    fail_msg("event \"%s\" never came", what);
}

static int event_count(struct events *e)
{
    pthread_mutex_lock(&e->mu);
    int n = e->n;
    pthread_mutex_unlock(&e->mu);
    return n;
}

static int count_each(void *arg, const json_t *obj)
{
    (void)obj;
    (*(int *)arg)++;
    return 0;
}

static void test_informer(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    for (int i = 0; i < 5; i++) {
        char name[8];
        snprintf(name, sizeof name, "n%d", i);
        json_object_set_new(f->nodes, name, make_node(name, 5 + i, "a"));
    }
    char *url = http_url(f);
    pw_k8s_config *cfg = load_cfg(url, "", "{token: t}");
    pw_k8s_client *c = NULL;
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    struct events ev = {.n = 0};
    pthread_mutex_init(&ev.mu, NULL);
    struct pw_k8s_informer_opts io = {.path = "/api/v1/nodes",
                                      .label_selector = "zone in (a,b)",
                                      .on_event = on_event,
                                      .transform = keep_metadata,
                                      .arg = &ev,
                                      .page_size = 2};
    pw_k8s_informer *inf = NULL;
    assert_int_equal(pw_k8s_informer_start(c, &io, &inf), 0);
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 5000), 0);
    assert_true(pw_k8s_informer_synced(inf));
    assert_int_equal(pw_k8s_informer_size(inf), 5);
    assert_int_equal(event_count(&ev), 5);
    assert_true(has_event(&ev, "ADDED n0 a") && has_event(&ev, "ADDED n4 a"));
    assert_int_equal(fake_get(f, &f->lists), 3); /* pages of 2, 2, 1 */
    assert_string_equal(f->last_label_selector, "zone in (a,b)");
    json_t *n3 = pw_k8s_informer_get(inf, "n3");
    assert_non_null(n3);
    assert_null(json_object_get(n3, "kind")); /* the transform kept metadata only */
    json_decref(n3);
    int k = 0;
    pw_k8s_informer_each(inf, count_each, &k);
    assert_int_equal(k, 5);

    /* the watch starts from the list's resourceVersion, with bookmarks */
    wait_watches(f, 1);
    pthread_mutex_lock(&f->mu);
    assert_string_equal(f->last_watch_rv, "10");
    assert_string_equal(f->last_watch_bookmarks, "true");
    pthread_mutex_unlock(&f->mu);

    char *e1 = fake_put(f, "MODIFIED", "n1", "b");
    fake_emit(f, e1);
    wait_event(&ev, "MODIFIED n1 b");
    json_t *n1 = pw_k8s_informer_get(inf, "n1");
    assert_string_equal(pw_k8s_label(n1, "zone"), "b");
    json_decref(n1);
    char *e2 = fake_put(f, "ADDED", "n5", "a");
    char *e3 = fake_put(f, "DELETED", "n0", "a");
    /* two events in one write */
    char *both = pw_xasprintf("%s\n%s", e2, e3);
    fake_emit(f, both);
    wait_event(&ev, "DELETED n0 a");
    assert_true(has_event(&ev, "ADDED n5 a"));
    assert_int_equal(pw_k8s_informer_size(inf), 5);
    assert_null(pw_k8s_informer_get(inf, "n0"));
    free(e1);
    free(e2);
    free(e3);
    free(both);

    /* a bookmark moves the resourceVersion; the stream ends; the re-watch starts from the bookmark */
    fake_emit(f, "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Node\",\"metadata\":{\"resourceVersion\":\"100\"}}}");
    pw_clock_sleep_ms(100);
    int evs = event_count(&ev);
    fake_end_watch(f);
    wait_watches(f, 2);
    pthread_mutex_lock(&f->mu);
    assert_string_equal(f->last_watch_rv, "100");
    int lists_before = f->lists;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(event_count(&ev), evs); /* a bookmark is no event */

    /* behind the watch's back: n2 vanishes, n3 changes, n6 appears; then 410 Expired forces a re-list
     * that delivers exactly those differences */
    char *x;
    x = fake_put(f, "DELETED", "n2", "a"), free(x);
    x = fake_put(f, "MODIFIED", "n3", "c"), free(x);
    x = fake_put(f, "ADDED", "n6", "c"), free(x);
    fake_emit(f, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                 "\"status\":\"Failure\",\"message\":\"too old resource version: 100 (120)\",\"reason\":\"Expired\","
                 "\"code\":410}}");
    wait_event(&ev, "DELETED n2 a");
    wait_event(&ev, "MODIFIED n3 c");
    wait_event(&ev, "ADDED n6 c");
    assert_int_equal(event_count(&ev), evs + 3);
    assert_int_equal(pw_k8s_informer_size(inf), 5);
    assert_true(fake_get(f, &f->lists) >= lists_before + 3);
    wait_watches(f, 3);

    /* a server error on the watch request: backoff, then a new watch */
    pthread_mutex_lock(&f->mu);
    f->fail_n = 1, f->fail_status = 500;
    pthread_mutex_unlock(&f->mu);
    fake_end_watch(f);
    wait_watches(f, 4);

    struct pw_k8s_counts n;
    pw_k8s_client_counts(c, &n);
    assert_true(n.list >= 6);
    assert_true(n.watch >= 4);

    /* free() returns promptly although the watch is open and idle */
    int64_t t0 = pw_clock_mono_ms();
    pw_k8s_informer_free(inf);
    assert_true(pw_clock_mono_ms() - t0 < 2500);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    pthread_mutex_destroy(&ev.mu);
    free(url);
    fake_stop(f);
}

/* ---- watch-stream failures ---- */

static int count_watch_event(void *arg, const char *type, json_t *obj)
{
    (void)type, (void)obj;
    (*(int *)arg)++;
    return 0;
}

struct stream_call {
    pw_k8s_client *c;
    int timeout_ms;
    int rc, status, events;
};

static void *stream_thread(void *arg)
{
    struct stream_call *sc = arg;
    struct pw_k8s_watch_parser p;
    pw_k8s_watch_parser_init(&p, 1 << 16, count_watch_event, &sc->events);
    sc->rc = pw_k8s_stream_get(sc->c, "/api/v1/nodes?watch=1", &p, sc->timeout_ms, NULL, &sc->status, NULL);
    pw_k8s_watch_parser_fini(&p);
    return NULL;
}

/* One watch transfer's failures as pw_k8s_stream_get reports them: a stream that says nothing until
 * its timeout (PW_ETIMEDOUT), a line that is not JSON after a good event (PW_EPROTO), no credential
 * to send (PW_EAUTH, no request made); and the informer going on past a bad line (it lists again
 * and keeps watching). */
static void test_watch_failures(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    json_object_set_new(f->nodes, "n0", make_node("n0", 5, "a"));
    char *url = http_url(f);
    pw_k8s_config *cfg = load_cfg(url, "", "{token: t}");
    pw_k8s_client *c = NULL;
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);

    struct stream_call sc = {.c = c, .timeout_ms = 400};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stream_thread, &sc), 0);
    wait_watches(f, 1);
    pthread_join(th, NULL);
    assert_int_equal(sc.rc, PW_ETIMEDOUT);
    fake_end_watch(f);

    sc = (struct stream_call){.c = c, .timeout_ms = 5000};
    assert_int_equal(pthread_create(&th, NULL, stream_thread, &sc), 0);
    wait_watches(f, 2);
    char *e1 = fake_put(f, "MODIFIED", "n0", "b");
    fake_emit(f, e1);
    free(e1);
    fake_emit(f, "{\"type\":\"MODIFIED\",\"object\":{oops");
    pthread_join(th, NULL);
    assert_int_equal(sc.rc, PW_EPROTO);
    assert_int_equal(sc.status, 200);
    assert_int_equal(sc.events, 1);
    fake_end_watch(f);

    /* the informer: a bad line ends that watch; it lists again and watches on */
    struct events ev = {.n = 0};
    pthread_mutex_init(&ev.mu, NULL);
    struct pw_k8s_informer_opts io = {.path = "/api/v1/nodes", .on_event = on_event, .arg = &ev};
    pw_k8s_informer *inf = NULL;
    assert_int_equal(pw_k8s_informer_start(c, &io, &inf), 0);
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 5000), 0);
    wait_watches(f, 3); /* its first watch is open */
    int watches = fake_get(f, &f->watches);
    int lists = fake_get(f, &f->lists);
    fake_emit(f, "not json at all");
    wait_watches(f, watches + 1);
    assert_true(fake_get(f, &f->lists) > lists);
    char *e2 = fake_put(f, "MODIFIED", "n0", "c");
    fake_emit(f, e2);
    free(e2);
    wait_event(&ev, "MODIFIED n0 c");
    pw_k8s_informer_free(inf);
    pthread_mutex_destroy(&ev.mu);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);

    /* no credential: the token file is missing, nothing is sent */
    cfg = load_cfg(url, "", "{tokenFile: no-such-token}");
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    int requests = fake_get(f, &f->requests);
    sc = (struct stream_call){.c = c, .timeout_ms = 1000};
    stream_thread(&sc);
    assert_int_equal(sc.rc, PW_EAUTH);
    assert_int_equal(sc.status, 0);
    assert_int_equal(fake_get(f, &f->requests), requests);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    free(url);
    fake_stop(f);
}

/* A callback that calls the API from inside a watch event (the informer thread's handle is busy). */
struct nested {
    pw_k8s_client *c;
    pthread_mutex_t mu;
    int statuses[8];
    int n;
};

static void on_event_nested(void *arg, enum pw_k8s_event ev, const json_t *obj, const json_t *old)
{
    (void)obj, (void)old;
    struct nested *nc = arg;
    if (ev != PW_K8S_MODIFIED)
        return;
    int status = 0;
    json_t *resp = NULL;
    int rc = pw_k8s_request(nc->c, "GET", "/api/v1/nodes", NULL, NULL, &status, &resp);
    pthread_mutex_lock(&nc->mu);
    if (nc->n < 8)
        nc->statuses[nc->n++] = rc == 0 ? (int)json_array_size(json_object_get(resp, "items")) * 1000 + status : rc;
    pthread_mutex_unlock(&nc->mu);
    json_decref(resp);
}

static void test_callback_calls_api(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    json_object_set_new(f->nodes, "n0", make_node("n0", 3, "a"));
    char *url = http_url(f);
    pw_k8s_config *cfg = load_cfg(url, "", "{token: t}");
    pw_k8s_client *c = NULL;
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    struct nested nc = {.c = c};
    pthread_mutex_init(&nc.mu, NULL);
    struct pw_k8s_informer_opts io = {.path = "/api/v1/nodes", .on_event = on_event_nested, .arg = &nc};
    pw_k8s_informer *inf = NULL;
    assert_int_equal(pw_k8s_informer_start(c, &io, &inf), 0);
    assert_int_equal(pw_k8s_informer_wait_synced(inf, 5000), 0);
    wait_watches(f, 1);
    char *e1 = fake_put(f, "MODIFIED", "n0", "b");
    fake_emit(f, e1);
    free(e1);
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&nc.mu);
        int n = nc.n;
        pthread_mutex_unlock(&nc.mu);
        if (n)
            break;
        pw_clock_sleep_ms(10);
    }
    pthread_mutex_lock(&nc.mu);
    assert_int_equal(nc.n, 1);
    assert_int_equal(nc.statuses[0], 1200); /* one item, HTTP 200 */
    pthread_mutex_unlock(&nc.mu);
    /* the watch goes on after the nested call */
    e1 = fake_put(f, "MODIFIED", "n0", "c");
    fake_emit(f, e1);
    free(e1);
    for (int i = 0; i < 500 && nc.n < 2; i++)
        pw_clock_sleep_ms(10);
    pthread_mutex_lock(&nc.mu);
    assert_int_equal(nc.n, 2);
    pthread_mutex_unlock(&nc.mu);
    pw_k8s_informer_free(inf);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    pthread_mutex_destroy(&nc.mu);
    free(url);
    fake_stop(f);
}

/* ---- HTTPS ---- */

static void test_https(void **state)
{
    (void)state;
    struct sim_tls tls;
    assert_int_equal(sim_tls_generate(&tls), 0);
    struct fake *f = fake_start(&tls);
    snprintf(f->token, sizeof f->token, "tls-token");
    json_object_set_new(f->nodes, "n0", make_node("n0", 3, "a"));
    char *url = pw_xasprintf("https://127.0.0.1:%d", pw_http_server_port(f->srv));
    char *ca = b64(tls.ca_cert);
    char *extra = pw_xasprintf(", certificate-authority-data: '%s'", ca);
    int status = 0;
    json_t *resp = NULL;

    /* CA from the kubeconfig, a bearer token */
    pw_k8s_config *cfg = load_cfg(url, extra, "{token: tls-token}");
    pw_k8s_client *c = NULL;
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(resp, "items")), 1);
    json_decref(resp);
    assert_string_equal(f->client_cn, "");
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);

    /* a client certificate and key from data */
    char *cert = b64(tls.client_cert), *key = b64(tls.client_key);
    char *user = pw_xasprintf("{client-certificate-data: '%s', client-key-data: '%s'}", cert, key);
    cfg = load_cfg(url, extra, user);
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_string_equal(f->client_cn, "kubesim-admin");
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);

    /* no CA: the server's certificate is refused, and that is not retried */
    cfg = load_cfg(url, "", "{token: tls-token}");
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    int before = fake_get(f, &f->requests);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), PW_EUNAVAIL);
    assert_int_equal(fake_get(f, &f->requests), before);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);

    /* insecure-skip-tls-verify accepts it */
    cfg = load_cfg(url, ", insecure-skip-tls-verify: true", "{token: tls-token}");
    assert_int_equal(pw_k8s_client_new(cfg, NULL, &c), 0);
    assert_int_equal(pw_k8s_request(c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL), 0);
    assert_int_equal(status, 200);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);

    free(user);
    free(cert);
    free(key);
    free(extra);
    free(ca);
    free(url);
    fake_stop(f);
    sim_tls_fini(&tls);
}

/* Several threads share one client (one handle each) and the rate limiter. */
struct par {
    pw_k8s_client *c;
    int ok;
};

static void *par_main(void *arg)
{
    struct par *p = arg;
    for (int i = 0; i < 10; i++) {
        int status = 0;
        if (pw_k8s_request(p->c, "GET", "/api/v1/nodes", NULL, NULL, &status, NULL) == 0 && status == 200)
            p->ok++;
    }
    return NULL;
}

static void test_threads_and_rate_limit(void **state)
{
    (void)state;
    struct fake *f = fake_start(NULL);
    char *url = http_url(f);
    pw_k8s_config *cfg = load_cfg(url, "", "{token: t}");
    pw_k8s_client *c = NULL;
    /* 40 requests, burst 10 at 60 qps: the last 30 need at least 0.5 s */
    struct pw_k8s_client_opts o = {.qps = 60, .burst = 10};
    assert_int_equal(pw_k8s_client_new(cfg, &o, &c), 0);
    pthread_t th[4];
    struct par ps[4];
    int64_t t0 = pw_clock_mono_ms();
    for (int i = 0; i < 4; i++) {
        ps[i] = (struct par){.c = c};
        pthread_create(&th[i], NULL, par_main, &ps[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ps[i].ok, 10);
    }
    assert_true(pw_clock_mono_ms() - t0 >= 450);
    assert_int_equal(fake_get(f, &f->lists), 40);
    pw_k8s_client_free(c);
    pw_k8s_config_free(cfg);
    free(url);
    fake_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_request_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_file_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_401_rerun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_informer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_calls_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_and_rate_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
