/* Unit tests for src/k8s configuration: kubeconfig merging over several files, contexts, CA from a
 * path and from data, tokens and token files, client certificates, exec credential plugins (a small
 * shell script, cached until it expires), in-cluster service accounts, and the error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "k8s/k8s.h"
#include "k8s/k8s_int.h"

static char tmpdir[256];

static char *tpath(const char *name)
{
    return pw_xasprintf("%s/%s", tmpdir, name);
}

static void write_file(const char *name, const char *text, int mode)
{
    char *p = tpath(name);
    char *dir = pw_xstrdup(p);
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    mkdir(dir, 0755);
    free(dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(p, (mode_t)mode);
    free(p);
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *p = pw_xasprintf("%s/%s", path, e->d_name);
        rm_tree(p);
        free(p);
    }
    closedir(d);
    rmdir(path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pw-k8s-config-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("PW_K8S_SA_DIR");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(tmpdir);
    return 0;
}

/* "-----BEGIN CERTIFICATE-----\nfake\n" in base64 and in clear. */
#define CA_TEXT "-----BEGIN CERTIFICATE-----\nfake-ca\n-----END CERTIFICATE-----\n"
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmZha2UtY2EKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="

static const char *file_a = "apiVersion: v1\n"
                            "kind: Config\n"
                            "current-context: ctx-a\n"
                            "clusters:\n"
                            "- name: c1\n"
                            "  cluster:\n"
                            "    server: https://127.0.0.1:6443/\n"
                            "    certificate-authority-data: " CA_B64 "\n"
                            "contexts:\n"
                            "- name: ctx-a\n"
                            "  context: {cluster: c1, user: u1, namespace: team-a}\n"
                            "users:\n"
                            "- name: u1\n"
                            "  user:\n"
                            "    token: token-from-a\n";

static const char *file_b = "apiVersion: v1\n"
                            "kind: Config\n"
                            "current-context: ctx-b\n"
                            "clusters:\n"
                            "- name: c1\n"
                            "  cluster:\n"
                            "    server: https://10.9.9.9:1\n"
                            "- name: c2\n"
                            "  cluster:\n"
                            "    server: 127.0.0.2:7443\n"
                            "    certificate-authority: certs/ca.pem\n"
                            "    tls-server-name: kubernetes.default\n"
                            "contexts:\n"
                            "- name: ctx-b\n"
                            "  context:\n"
                            "    cluster: c2\n"
                            "    user: u2\n"
                            "- name: ctx-a\n"
                            "  context: {cluster: c2, user: u2}\n"
                            "users:\n"
                            "- name: u1\n"
                            "  user: {token: token-from-b}\n"
                            "- name: u2\n"
                            "  user:\n"
                            "    tokenFile: secret/token\n";

static void test_merge_first_wins(void **state)
{
    (void)state;
    write_file("a/config", file_a, 0644);
    write_file("b/config", file_b, 0644);
    write_file("b/certs/ca.pem", CA_TEXT, 0644);
    write_file("b/secret/token", "  token-from-file\n", 0600);
    char *list = pw_xasprintf("%s/a/config:%s/missing:%s/b/config", tmpdir, tmpdir, tmpdir);
    setenv("KUBECONFIG", list, 1);

    pw_k8s_config *cfg = NULL;
    char *msg = NULL;
    assert_int_equal(pw_k8s_config_load(NULL, NULL, &cfg, &msg), 0);
    /* current-context from the first file; ctx-a, c1 and u1 from the first file too */
    assert_string_equal(pw_k8s_config_server(cfg), "https://127.0.0.1:6443");
    assert_string_equal(pw_k8s_config_namespace(cfg), "team-a");
    assert_int_equal(cfg->ca_len, strlen(CA_TEXT));
    assert_memory_equal(cfg->ca_pem, CA_TEXT, cfg->ca_len);
    struct pw_k8s_cred cr;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "token-from-a");
    assert_null(cr.cert_pem);
    pw_k8s_cred_fini(&cr);
    pw_k8s_config_free(cfg);

    /* an explicit context found only in the second file: its relative paths resolve against b/ */
    assert_int_equal(pw_k8s_config_load(NULL, "ctx-b", &cfg, &msg), 0);
    assert_string_equal(pw_k8s_config_server(cfg), "https://127.0.0.2:7443");
    assert_string_equal(pw_k8s_config_namespace(cfg), "default");
    assert_string_equal(cfg->tls_server_name, "kubernetes.default");
    assert_memory_equal(cfg->ca_pem, CA_TEXT, strlen(CA_TEXT));
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "token-from-file");
    uint64_t gen = cr.generation;
    pw_k8s_cred_fini(&cr);
    /* the token file rotates: re-read once the check interval passed (0 here) and the mtime moved */
    cfg->cache->check_ms = 0;
    write_file("b/secret/token", "rotated-token\n", 0600);
    char *tp = tpath("b/secret/token");
    struct timespec ts[2] = {{.tv_sec = time(NULL) + 5}, {.tv_sec = time(NULL) + 5}};
    utimensat(AT_FDCWD, tp, ts, 0);
    free(tp);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "rotated-token");
    assert_true(cr.generation != gen);
    pw_k8s_cred_fini(&cr);
    pw_k8s_config_free(cfg);
    unsetenv("KUBECONFIG");

    /* the path argument wins over $KUBECONFIG and may be a list itself */
    char *rev = pw_xasprintf("%s/b/config:%s/a/config", tmpdir, tmpdir);
    assert_int_equal(pw_k8s_config_load(rev, NULL, &cfg, &msg), 0);
    assert_string_equal(cfg->context, "ctx-b");
    pw_k8s_config_free(cfg);
    /* ctx-a is defined in both: the first file (b) wins, pointing at c2 */
    assert_int_equal(pw_k8s_config_load(rev, "ctx-a", &cfg, &msg), 0);
    assert_string_equal(pw_k8s_config_server(cfg), "https://127.0.0.2:7443");
    pw_k8s_config_free(cfg);
    free(rev);
    free(list);
}

static void test_client_cert_and_insecure(void **state)
{
    (void)state;
    write_file("cc/config",
               "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
               "clusters: [{name: c, cluster: {server: 'https://[::1]:6443', insecure-skip-tls-verify: true}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: admin}}]\n"
               "users:\n"
               "- name: admin\n"
               "  user:\n"
               "    client-certificate-data: " CA_B64 "\n"
               "    client-key: key.pem\n",
               0644);
    write_file("cc/key.pem", "KEY-PEM\n", 0600);
    char *p = tpath("cc/config");
    pw_k8s_config *cfg = NULL;
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    assert_true(cfg->insecure);
    assert_string_equal(pw_k8s_config_server(cfg), "https://[::1]:6443");
    struct pw_k8s_cred cr;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_null(cr.token);
    assert_int_equal(cr.cert_len, strlen(CA_TEXT));
    assert_memory_equal(cr.cert_pem, CA_TEXT, cr.cert_len);
    assert_string_equal(cr.key_pem, "KEY-PEM\n");
    pw_k8s_cred_fini(&cr);
    pw_k8s_config_free(cfg);
    free(p);

    /* JSON is YAML too */
    write_file("json/config",
               "{\"apiVersion\":\"v1\",\"kind\":\"Config\",\"current-context\":\"j\","
               "\"clusters\":[{\"name\":\"c\",\"cluster\":{\"server\":\"http://127.0.0.1:8080\"}}],"
               "\"contexts\":[{\"name\":\"j\",\"context\":{\"cluster\":\"c\",\"user\":\"u\",\"namespace\":\"jns\"}}],"
               "\"users\":[{\"name\":\"u\",\"user\":{\"username\":\"admin\",\"password\":\"pw\"}}]}",
               0644);
    p = tpath("json/config");
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    assert_string_equal(pw_k8s_config_server(cfg), "http://127.0.0.1:8080");
    assert_string_equal(pw_k8s_config_namespace(cfg), "jns");
    assert_string_equal(cfg->username, "admin");
    assert_string_equal(cfg->password, "pw");
    pw_k8s_config_free(cfg);
    free(p);
}

/* An error message must exist and contain every one of the words given. */
static void expect_error(const char *path, const char *context, int code, const char *w1, const char *w2)
{
    pw_k8s_config *cfg = NULL;
    char *msg = NULL;
    int rc = pw_k8s_config_load(path, context, &cfg, &msg);
    if (rc != code)
        fail_msg("load %s: rc %d (%s), want %d", path, rc, msg ? msg : "", code);
    assert_null(cfg);
    assert_non_null(msg);
    if (!strstr(msg, w1) || (w2 && !strstr(msg, w2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", msg, w1, w2 ? w2 : "");
    free(msg);
}

static void test_errors(void **state)
{
    (void)state;
    char *missing = tpath("nope/config");
    expect_error(missing, NULL, PW_EIO, missing, "cannot read");
    free(missing);

    write_file("e1/config", "apiVersion: v1\nkind: Config\nclusters: []\n", 0644);
    char *p = tpath("e1/config");
    expect_error(p, NULL, PW_EINVAL, "no current-context", p);
    expect_error(p, "prod", PW_ENOTFOUND, "context \"prod\" not found", p);
    free(p);

    write_file("e2/config",
               "current-context: x\n"
               "clusters: [{name: c, cluster: {certificate-authority: ca.pem}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: u}}, {name: y, context: {cluster: gone}}]\n"
               "users: [{name: u, user: {token: secret-token-value}}]\n",
               0644);
    p = tpath("e2/config");
    expect_error(p, NULL, PW_EINVAL, "cluster \"c\" has no server", p);
    expect_error(p, "y", PW_ENOTFOUND, "cluster \"gone\"", "not defined");
    free(p);

    write_file("e3/config",
               "current-context: x\n"
               "clusters: [{name: c, cluster: {server: 'https://h:1', certificate-authority: ca.pem}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
               "users: [{name: u, user: {token: secret-token-value, client-certificate-data: '" CA_B64 "'}}]\n",
               0644);
    p = tpath("e3/config");
    char *ca = tpath("e3/ca.pem");
    expect_error(p, NULL, PW_EIO, ca, "certificate-authority");
    write_file("e3/ca.pem", CA_TEXT, 0644);
    expect_error(p, NULL, PW_EINVAL, "client certificate but no client key", "user \"u\"");
    free(ca);
    free(p);

    write_file("e4/config",
               "current-context: x\n"
               "clusters: [{name: c, cluster: {server: 'https://h:1', certificate-authority-data: '%%%'}}]\n"
               "contexts: [{name: x, context: {cluster: c}}]\n",
               0644);
    p = tpath("e4/config");
    expect_error(p, NULL, PW_EINVAL, "certificate-authority-data", "base64");
    free(p);

    write_file("e5/config", "current-context: [unclosed\n", 0644);
    p = tpath("e5/config");
    expect_error(p, NULL, PW_EINVAL, "invalid YAML", p);
    free(p);

    write_file("e6/config",
               "current-context: x\n"
               "clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
               "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
               0644);
    p = tpath("e6/config");
    expect_error(p, NULL, PW_EINVAL, "auth-provider \"gcp\"", "exec");
    free(p);

    write_file("e7/config",
               "current-context: x\n"
               "clusters: [{name: c, cluster: {server: 'https://h:1'}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
               "users: [{name: u, user: {exec: {command: login, interactiveMode: Always}}}]\n",
               0644);
    p = tpath("e7/config");
    expect_error(p, NULL, PW_EINVAL, "interactiveMode Always", "user \"u\"");
    free(p);

    /* nothing at all: no KUBECONFIG, no ~/.kube/config, not in a cluster */
    char *home = pw_xstrdup(getenv("HOME") ? getenv("HOME") : "/");
    setenv("HOME", tmpdir, 1);
    expect_error(NULL, NULL, PW_ENOTFOUND, "KUBERNETES_SERVICE_HOST", "kubeconfig");
    setenv("HOME", home, 1);
    free(home);
}

/* The plugin counts its runs in a file, checks that it got its args, env and KUBERNETES_EXEC_INFO, and
 * prints a token that expires after $EXPIRE_IN seconds (read from a file so the test can change it). */
static const char *plugin_sh =
    "#!/bin/sh\n"
    "dir=$(dirname \"$0\")\n"
    "n=$(cat \"$dir/runs\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$dir/runs\"\n"
    "[ \"$1\" = \"--flag\" ] && [ \"$2\" = \"two words\" ] || { echo 'bad args' >&2; exit 3; }\n"
    "[ \"$PLUGIN_ENV\" = \"from-kubeconfig\" ] || { echo 'no env' >&2; exit 4; }\n"
    "case \"$KUBERNETES_EXEC_INFO\" in *'\"kind\":\"ExecCredential\"'*'\"server\":\"https://127.0.0.1:6443\"'*) ;;"
    " *) echo \"bad exec info: $KUBERNETES_EXEC_INFO\" >&2; exit 5;; esac\n"
    "[ -f \"$dir/fail\" ] && { echo 'plugin says no: login required' >&2; exit 1; }\n"
    "[ -f \"$dir/slow\" ] && exec sleep 5\n"
    "[ -f \"$dir/garbled\" ] && { printf '{\"status\":{\"token\":\"secret-tok-123\" oops'; exit 0; }\n"
    "exp=$(date -u -d \"@$(( $(date +%s) + $(cat \"$dir/expire_in\") ))\" +%Y-%m-%dT%H:%M:%SZ)\n"
    "printf '{\"apiVersion\":\"client.authentication.k8s.io/%s\",\"kind\":\"ExecCredential\","
    "\"status\":{\"token\":\"exec-token-%s\",\"expirationTimestamp\":\"%s\"}}' \"$(cat \"$dir/version\")\" \"$n\" "
    "\"$exp\"\n";

static void write_exec_config(const char *api)
{
    char *cfgtext = pw_xasprintf("apiVersion: v1\nkind: Config\ncurrent-context: x\n"
                                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
                                 "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                                 "users:\n"
                                 "- name: u\n"
                                 "  user:\n"
                                 "    exec:\n"
                                 "      apiVersion: client.authentication.k8s.io/%s\n"
                                 "      command: ./plugin.sh\n"
                                 "      args: ['--flag', 'two words']\n"
                                 "      env: [{name: PLUGIN_ENV, value: from-kubeconfig}]\n"
                                 "      provideClusterInfo: true\n"
                                 "      interactiveMode: Never\n",
                                 api);
    write_file("exec/config", cfgtext, 0644);
    free(cfgtext);
    write_file("exec/plugin.sh", plugin_sh, 0755);
}

static void test_exec_plugin(void **state)
{
    (void)state;
    write_exec_config("v1");
    write_file("exec/version", "v1", 0644);
    write_file("exec/expire_in", "3600", 0644);
    char *p = tpath("exec/config");
    pw_k8s_config *cfg = NULL;
    char *msg = NULL;
    int rc = pw_k8s_config_load(p, NULL, &cfg, &msg);
    if (rc)
        fail_msg("%s", msg);
    struct pw_k8s_cred cr;
    rc = pw_k8s_cred_get(cfg, &cr, &msg);
    if (rc)
        fail_msg("%s", msg);
    assert_string_equal(cr.token, "exec-token-1");
    uint64_t gen = cr.generation;
    pw_k8s_cred_fini(&cr);
    /* cached: valid for an hour */
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "exec-token-1");
    pw_k8s_cred_fini(&cr);
    assert_int_equal(pw_k8s_cred_exec_runs(cfg), 1);
    /* a 401 with this credential: the next get runs the plugin again */
    assert_true(pw_k8s_cred_invalidate(cfg, gen));
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "exec-token-2");
    pw_k8s_cred_fini(&cr);
    /* a credential expiring within the refresh margin is fetched again every time */
    write_file("exec/expire_in", "2", 0644);
    assert_true(pw_k8s_cred_invalidate(cfg, cfg->cache->generation));
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "exec-token-3");
    pw_k8s_cred_fini(&cr);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "exec-token-4");
    pw_k8s_cred_fini(&cr);
    /* a failing plugin once the server refused the credential: its stderr reaches the message
     * (test_exec_timeout_keeps_last_good: before that, the unexpired credential is kept) */
    write_file("exec/fail", "", 0644);
    assert_true(pw_k8s_cred_invalidate(cfg, cfg->cache->generation));
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), PW_EAUTH);
    assert_non_null(strstr(msg, "plugin says no: login required"));
    assert_non_null(strstr(msg, "exited with status 1"));
    free(msg);
    /* output that is not JSON: the message gives the position, never the output (it can hold a token) */
    char *f = tpath("exec/fail");
    unlink(f);
    free(f);
    write_file("exec/garbled", "", 0644);
    assert_true(pw_k8s_cred_invalidate(cfg, cfg->cache->generation));
    msg = NULL;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), PW_EAUTH);
    assert_non_null(strstr(msg, "no valid JSON (error at line 1, column"));
    assert_null(strstr(msg, "secret-tok"));
    free(msg);
    f = tpath("exec/garbled");
    unlink(f);
    free(f);
    pw_k8s_config_free(cfg);

    /* v1beta1, and a plugin answering with the wrong apiVersion */
    write_exec_config("v1beta1");
    write_file("exec/version", "v1beta1", 0644);
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_non_null(strstr(cr.token, "exec-token-"));
    pw_k8s_cred_fini(&cr);
    pw_k8s_config_free(cfg);
    write_file("exec/version", "v1", 0644);
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    msg = NULL;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), PW_EAUTH);
    assert_non_null(strstr(msg, "want client.authentication.k8s.io/v1beta1"));
    free(msg);
    pw_k8s_config_free(cfg);
    free(p);
}

/* A plugin that hangs is killed at its timeout. While the credential in hand has not expired (a
 * refresh ahead of expiry), it is kept; once the server refused it (invalidated), the timeout is
 * the error; a plugin that works again gives a new credential. */
static void test_exec_timeout_keeps_last_good(void **state)
{
    (void)state;
    write_exec_config("v1");
    write_file("exec/version", "v1", 0644);
    write_file("exec/expire_in", "8", 0644); /* inside the 10 s refresh margin: every get refreshes */
    char *runs = tpath("exec/runs");
    unlink(runs);
    free(runs);
    char *p = tpath("exec/config");
    pw_k8s_config *cfg = NULL;
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    cfg->exec->timeout_ms = 300;
    struct pw_k8s_cred cr;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "exec-token-1");
    uint64_t gen = cr.generation;
    pw_k8s_cred_fini(&cr);
    write_file("exec/slow", "", 0644);
    char *msg = NULL;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), 0);
    assert_null(msg);
    assert_string_equal(cr.token, "exec-token-1"); /* kept */
    assert_int_equal(cr.generation, gen);
    pw_k8s_cred_fini(&cr);
    assert_int_equal(pw_k8s_cred_exec_runs(cfg), 2);
    assert_true(pw_k8s_cred_invalidate(cfg, gen));
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), PW_EAUTH);
    assert_non_null(strstr(msg, "did not finish within 300 ms"));
    free(msg);
    char *f = tpath("exec/slow");
    unlink(f);
    free(f);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "exec-token-4");
    pw_k8s_cred_fini(&cr);
    pw_k8s_config_free(cfg);
    free(p);
}

/* A token file that is missing or empty at the start is an error that names it; once a token was
 * read, a file removed or emptied (the middle of an atomic swap) keeps the last good token, and a
 * new token is picked up. */
static void test_token_file_errors(void **state)
{
    (void)state;
    write_file("tf/config",
               "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
               "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
               "users: [{name: u, user: {tokenFile: token}}]\n",
               0644);
    char *tok = tpath("tf/token");
    unlink(tok);
    char *p = tpath("tf/config");
    pw_k8s_config *cfg = NULL;
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    cfg->cache->check_ms = 0; /* look at the file on every get */
    struct pw_k8s_cred cr;
    char *msg = NULL;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), PW_EAUTH);
    assert_non_null(strstr(msg, "cannot read the token file"));
    assert_non_null(strstr(msg, "tf/token"));
    free(msg);
    write_file("tf/token", " \n", 0600);
    msg = NULL;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), PW_EAUTH);
    assert_non_null(strstr(msg, "is empty"));
    free(msg);
    write_file("tf/token", "good-1\n", 0600);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "good-1");
    pw_k8s_cred_fini(&cr);
    unlink(tok);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "good-1");
    pw_k8s_cred_fini(&cr);
    write_file("tf/token", "", 0600);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "good-1");
    pw_k8s_cred_fini(&cr);
    write_file("tf/token", "good-2", 0600);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "good-2");
    pw_k8s_cred_fini(&cr);
    pw_k8s_config_free(cfg);
    free(p);
    free(tok);
}

static void test_exec_client_cert(void **state)
{
    (void)state;
    write_file("exec2/plugin.sh",
               "#!/bin/sh\n"
               "cat <<'EOF'\n"
               "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\n"
               "\"status\":{\"clientCertificateData\":\"CERT\\n\",\"clientKeyData\":\"KEY\\n\"}}\n"
               "EOF\n",
               0755);
    char *plugin = tpath("exec2/plugin.sh");
    char *text = pw_xasprintf("current-context: x\n"
                              "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
                              "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                              "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, "
                              "command: %s, interactiveMode: Never}}}]\n",
                              plugin);
    write_file("exec2/config", text, 0644);
    free(text);
    char *p = tpath("exec2/config");
    pw_k8s_config *cfg = NULL;
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    struct pw_k8s_cred cr;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_null(cr.token);
    assert_string_equal(cr.cert_pem, "CERT\n");
    assert_string_equal(cr.key_pem, "KEY\n");
    pw_k8s_cred_fini(&cr);
    /* no expiry: cached until a 401 */
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    pw_k8s_cred_fini(&cr);
    assert_int_equal(pw_k8s_cred_exec_runs(cfg), 1);
    pw_k8s_config_free(cfg);
    free(p);
    free(plugin);
}

static void test_exec_missing_command(void **state)
{
    (void)state;
    write_file("exec3/config",
               "current-context: x\n"
               "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
               "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, "
               "command: pw-no-such-plugin-xyz, installHint: 'install it with: apt-get install xyz'}}}]\n",
               0644);
    char *p = tpath("exec3/config");
    pw_k8s_config *cfg = NULL;
    assert_int_equal(pw_k8s_config_load(p, NULL, &cfg, NULL), 0);
    struct pw_k8s_cred cr;
    char *msg = NULL;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, &msg), PW_EAUTH);
    assert_non_null(strstr(msg, "pw-no-such-plugin-xyz"));
    assert_non_null(strstr(msg, "install it with: apt-get install xyz"));
    free(msg);
    pw_k8s_config_free(cfg);
    free(p);
}

static void test_in_cluster(void **state)
{
    (void)state;
    write_file("sa/token", "sa-token-1\n", 0600);
    write_file("sa/ca.crt", CA_TEXT, 0644);
    write_file("sa/namespace", "prewarm\n", 0644);
    char *sa = tpath("sa");
    char *home = pw_xstrdup(getenv("HOME") ? getenv("HOME") : "/");
    setenv("HOME", tmpdir, 1); /* no ~/.kube/config there */
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    setenv("PW_K8S_SA_DIR", sa, 1);
    pw_k8s_config *cfg = NULL;
    char *msg = NULL;
    int rc = pw_k8s_config_load(NULL, NULL, &cfg, &msg);
    if (rc)
        fail_msg("%s", msg);
    assert_string_equal(pw_k8s_config_server(cfg), "https://10.96.0.1:443");
    assert_string_equal(pw_k8s_config_namespace(cfg), "prewarm");
    assert_memory_equal(cfg->ca_pem, CA_TEXT, strlen(CA_TEXT));
    struct pw_k8s_cred cr;
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "sa-token-1");
    uint64_t gen = cr.generation;
    pw_k8s_cred_fini(&cr);
    /* the kubelet rotates the token: within the check interval the old one is still used ... */
    write_file("sa/token", "sa-token-2\n", 0600);
    char *tp = tpath("sa/token");
    struct timespec ts[2] = {{.tv_sec = time(NULL) + 10}, {.tv_sec = time(NULL) + 10}};
    utimensat(AT_FDCWD, tp, ts, 0);
    free(tp);
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "sa-token-1");
    pw_k8s_cred_fini(&cr);
    /* ... and a 401 re-reads it at once */
    assert_true(pw_k8s_cred_invalidate(cfg, gen));
    assert_int_equal(pw_k8s_cred_get(cfg, &cr, NULL), 0);
    assert_string_equal(cr.token, "sa-token-2");
    pw_k8s_cred_fini(&cr);
    pw_k8s_config_free(cfg);

    /* an IPv6 service host, and a missing token named in the error */
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    assert_int_equal(pw_k8s_config_load(NULL, NULL, &cfg, NULL), 0);
    assert_string_equal(pw_k8s_config_server(cfg), "https://[fd00::1]:443");
    pw_k8s_config_free(cfg);
    tp = tpath("sa/token");
    unlink(tp);
    expect_error(NULL, NULL, PW_EIO, tp, "service account token");
    free(tp);

    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("PW_K8S_SA_DIR");
    setenv("HOME", home, 1);
    free(home);
    free(sa);
}

static void test_base64_and_objects(void **state)
{
    (void)state;
    /* base64 itself is tested in tests/unit/base/test_b64.c. */
    json_t *o = json_pack("{s:{s:s,s:s,s:s,s:{s:s}}}", "metadata", "name", "n1", "namespace", "ns", "resourceVersion",
                          "42", "labels", "app", "web");
    assert_string_equal(pw_k8s_name(o), "n1");
    assert_string_equal(pw_k8s_namespace(o), "ns");
    assert_string_equal(pw_k8s_resource_version(o), "42");
    assert_string_equal(pw_k8s_label(o, "app"), "web");
    assert_null(pw_k8s_label(o, "tier"));
    assert_null(pw_k8s_name(NULL));
    json_decref(o);
    json_t *st = json_pack("{s:s,s:s,s:i}", "kind", "Status", "message", "not found", "code", 404);
    assert_string_equal(pw_k8s_status_message(st), "not found");
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_merge_first_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_and_insecure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_timeout_keeps_last_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_client_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_missing_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
        cmocka_unit_test(test_base64_and_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
