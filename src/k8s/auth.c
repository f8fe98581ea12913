/* auth.c: the credentials behind a configuration that change while it is in use.
 *
 * Two sources rotate: a token file (the in-cluster service account token, or a kubeconfig tokenFile),
 * re-read when its mtime changes, checked at most every few seconds; and an exec credential plugin
 * (client.authentication.k8s.io/v1 or v1beta1), run with its args and env plus KUBERNETES_EXEC_INFO,
 * whose ExecCredential (token or client certificate and key, optional expirationTimestamp) is cached
 * until a little before it expires, or until the server answers 401.
 *
 * Thread model: the cache is shared by every thread using the configuration and guarded by one mutex;
 * a plugin runs with the mutex held, so concurrent callers wait for one run instead of starting many. */
#include "k8s/k8s_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/b64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"

extern char **environ;

enum {
    EXEC_STDOUT_MAX = 1 << 20, /* an ExecCredential is small */
    EXEC_STDERR_KEEP = 512,    /* how much of the plugin's stderr goes into an error message */
    EXEC_REFRESH_MS = 10000,   /* refresh this long before expirationTimestamp */
};

void pw_k8s_cred_fini(struct pw_k8s_cred *cr)
{
    free(cr->token);
    free(cr->cert_pem);
    free(cr->key_pem);
    memset(cr, 0, sizeof *cr);
}

/* ---- running the plugin ---- */

static const char b64e[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const char *in, size_t n)
{
    char *out = pw_xmalloc((n + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = b64e[(v >> 18) & 63];
        out[o++] = b64e[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64e[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64e[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* The KUBERNETES_EXEC_INFO value; caller frees. */
static char *exec_info(const struct pw_k8s_exec *ex, const pw_k8s_config *cfg)
{
    json_t *spec = json_pack("{s:b}", "interactive", 0);
    if (ex->provide_cluster_info && cfg) {
        json_t *cl = json_pack("{s:s}", "server", cfg->server);
        if (cfg->tls_server_name)
            json_object_set_new(cl, "tls-server-name", json_string(cfg->tls_server_name));
        if (cfg->insecure)
            json_object_set_new(cl, "insecure-skip-tls-verify", json_true());
        if (cfg->ca_pem) {
            char *b = base64_encode(cfg->ca_pem, cfg->ca_len);
            json_object_set_new(cl, "certificate-authority-data", json_string(b));
            free(b);
        }
        json_object_set_new(spec, "cluster", cl);
    }
    json_t *info = json_pack("{s:s,s:s,s:o}", "apiVersion", ex->api_version, "kind", "ExecCredential", "spec", spec);
    char *s = json_dumps(info, JSON_COMPACT);
    json_decref(info);
    return s;
}

/* environ, with the plugin's env (overriding same names) and KUBERNETES_EXEC_INFO; caller frees the
 * array and the strings it allocated (those after index *inherited). */
static char **exec_env(const struct pw_k8s_exec *ex, const char *info, size_t *inherited)
{
    size_t n = 0, extra = 0;
    while (environ[n])
        n++;
    while (ex->env && ex->env[extra])
        extra++;
    char **envp = pw_xcalloc(n + extra + 2, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = nl == strlen("KUBERNETES_EXEC_INFO") && strncmp(environ[i], "KUBERNETES_EXEC_INFO", nl) == 0;
        for (size_t j = 0; j < extra && !overridden; j++)
            overridden = strncmp(ex->env[j], environ[i], nl) == 0 && ex->env[j][nl] == '=';
        if (!overridden)
            envp[k++] = environ[i];
    }
    *inherited = k;
    for (size_t j = 0; j < extra; j++)
        envp[k++] = pw_xstrdup(ex->env[j]);
    envp[k++] = pw_xasprintf("KUBERNETES_EXEC_INFO=%s", info);
    envp[k] = NULL;
    return envp;
}

/* Spawns the plugin and collects stdout (capped) and the start of stderr within timeout_ms. On success
 * *exit_status is the wait status. */
static int exec_spawn(const struct pw_k8s_exec *ex, char **envp, pw_buf *out, pw_buf *err, int *exit_status,
                      char **errmsg)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0)
        return PW_EIO;
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        return PW_EIO;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    size_t na = 0;
    while (ex->args && ex->args[na])
        na++;
    char **argv = pw_xcalloc(na + 2, sizeof *argv);
    argv[0] = ex->command;
    for (size_t i = 0; i < na; i++)
        argv[i + 1] = ex->args[i];
    pid_t pid;
    int src = posix_spawnp(&pid, ex->command, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(argv);
    close(po[1]);
    close(pe[1]);
    if (src != 0) {
        close(po[0]);
        close(pe[0]);
        if (errmsg)
            *errmsg = pw_xasprintf("exec credential plugin %s cannot be started: %s%s%s", ex->command, strerror(src),
                                   ex->install_hint ? ". " : "", ex->install_hint ? ex->install_hint : "");
        return PW_EAUTH;
    }
    int64_t deadline = pw_clock_mono_ms() + (ex->timeout_ms > 0 ? ex->timeout_ms : 60000);
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2, rc = 0;
    while (open_fds > 0) {
        int64_t left = deadline - pw_clock_mono_ms();
        if (left <= 0) {
            rc = PW_ETIMEDOUT;
            break;
        }
        int pr = poll(fds, 2, (int)(left > 1000 ? 1000 : left));
        if (pr < 0 && errno != EINTR) {
            rc = PW_EIO;
            break;
        }
        for (int i = 0; i < 2 && pr > 0; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char tmp[4096];
            ssize_t r = read(fds[i].fd, tmp, sizeof tmp);
            if (r > 0) {
                if (i == 0 && pw_buf_append(out, tmp, (size_t)r) != 0) {
                    rc = PW_ETOOLARGE;
                    open_fds = 0;
                    break;
                }
                if (i == 1 && err->len < EXEC_STDERR_KEEP)
                    pw_buf_append(err, tmp,
                                  (size_t)r > EXEC_STDERR_KEEP - err->len ? EXEC_STDERR_KEEP - err->len : (size_t)r);
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    if (rc != 0)
        kill(pid, SIGKILL); /* the child we started, by its pid */
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (rc == PW_ETIMEDOUT && errmsg)
        *errmsg = pw_xasprintf("exec credential plugin %s did not finish within %d ms", ex->command, ex->timeout_ms);
    else if (rc != 0 && errmsg)
        *errmsg =
            pw_xasprintf("exec credential plugin %s: reading its output failed: %s", ex->command, pw_strerror(rc));
    if (rc != 0)
        return PW_EAUTH;
    *exit_status = st;
    return 0;
}

/* The first line of the plugin's stderr, for messages; points into err. */
static const char *first_line(pw_buf *err)
{
    if (!err->p)
        return "";
    char *nl = strchr(err->p, '\n');
    if (nl)
        *nl = '\0';
    return err->p;
}

static int exec_parse(const struct pw_k8s_exec *ex, const char *text, size_t len, struct pw_k8s_exec_result *out,
                      char **errmsg)
{
    json_error_t jerr;
    json_t *cred = json_loadb(text, len, 0, &jerr);
    int rc = 0;
    const char *api = json_string_value(json_object_get(cred, "apiVersion"));
    const char *kind = json_string_value(json_object_get(cred, "kind"));
    json_t *status = json_object_get(cred, "status");
    const char *token = json_string_value(json_object_get(status, "token"));
    const char *cert = json_string_value(json_object_get(status, "clientCertificateData"));
    const char *key = json_string_value(json_object_get(status, "clientKeyData"));
    const char *exp = json_string_value(json_object_get(status, "expirationTimestamp"));
    time_t t = 0;
    char *why = NULL;
    /* jerr.text is not used: it quotes the plugin's output ("near '...'"), which can hold a token. */
    if (!cred)
        why = pw_xasprintf("printed no valid JSON (error at line %d, column %d)", jerr.line, jerr.column);
    else if (!kind || strcmp(kind, "ExecCredential") != 0)
        why = pw_xasprintf("printed kind %s, want ExecCredential", kind ? kind : "(none)");
    else if (!api || strcmp(api, ex->api_version) != 0)
        why = pw_xasprintf("printed apiVersion %s, want %s", api ? api : "(none)", ex->api_version);
    else if (!json_is_object(status))
        why = pw_xstrdup("printed an ExecCredential without status");
    else if (!(token && *token) && !(cert && *cert && key && *key))
        why = pw_xstrdup("gave neither status.token nor status.clientCertificateData and clientKeyData");
    else if ((cert && *cert) != (key && *key))
        why = pw_xstrdup("gave only one of clientCertificateData and clientKeyData");
    else if (exp && *exp && pw_time_parse_rfc3339(exp, &t) != 0)
        why = pw_xasprintf("gave an expirationTimestamp that is not RFC 3339: %s", exp);
    if (why) {
        rc = PW_EINVAL;
        *errmsg = pw_xasprintf("exec credential plugin %s %s", ex->command, why);
        free(why);
    }
    if (rc == 0) {
        memset(out, 0, sizeof *out);
        out->token = token && *token ? pw_xstrdup(token) : NULL;
        out->cert_pem = cert && *cert ? pw_xstrdup(cert) : NULL;
        out->key_pem = key && *key ? pw_xstrdup(key) : NULL;
        out->expiry_real_ms = exp && *exp ? (int64_t)t * 1000 : 0;
    }
    json_decref(cred);
    return rc == 0 ? 0 : PW_EAUTH;
}

int pw_k8s_exec_run(const struct pw_k8s_exec *ex, const pw_k8s_config *cfg, struct pw_k8s_exec_result *out,
                    char **errmsg)
{
    char *tmpmsg = NULL;
    char **em = errmsg ? errmsg : &tmpmsg;
    char *info = exec_info(ex, cfg);
    size_t inherited = 0;
    char **envp = exec_env(ex, info, &inherited);
    free(info);
    pw_buf so, se;
    pw_buf_init(&so, EXEC_STDOUT_MAX);
    pw_buf_init(&se, EXEC_STDERR_KEEP + 1);
    int st = 0;
    int rc = exec_spawn(ex, envp, &so, &se, &st, em);
    for (size_t i = inherited; envp[i]; i++)
        free(envp[i]);
    free(envp);
    if (rc == 0 && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
        *em = pw_xasprintf("exec credential plugin %s %s %d: %s", ex->command,
                           WIFEXITED(st) ? "exited with status" : "was killed by signal",
                           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), first_line(&se));
        rc = PW_EAUTH;
    }
    if (rc == 0)
        rc = exec_parse(ex, so.p ? so.p : "", so.len, out, em);
    pw_buf_fini(&so);
    pw_buf_fini(&se);
    if (rc != 0)
        PW_WARN("k8s: %s", *em);
    free(tmpmsg);
    return rc;
}

/* ---- the cache ---- */

/* Re-reads the token file when due (or when force). Lock held. */
static int token_file_refresh(const pw_k8s_config *cfg, bool force, char **errmsg)
{
    struct pw_k8s_cred_cache *cc = cfg->cache;
    int64_t now = pw_clock_mono_ms();
    if (!force && cc->file_token && now - cc->file_checked_ms < cc->check_ms)
        return 0;
    cc->file_checked_ms = now;
    struct stat st;
    if (stat(cfg->token_file, &st) != 0) {
        if (cc->file_token)
            return 0; /* keep the last good token; the file may be in the middle of an atomic swap */
        if (errmsg)
            *errmsg =
                pw_xasprintf("%s: cannot read the token file %s: %s", cfg->source, cfg->token_file, strerror(errno));
        return PW_EAUTH;
    }
    if (!force && cc->file_token && st.st_mtim.tv_sec == cc->file_mtime.tv_sec &&
        st.st_mtim.tv_nsec == cc->file_mtime.tv_nsec)
        return 0;
    FILE *f = fopen(cfg->token_file, "rb");
    char buf[16384];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    pw_sv t = pw_sv_trim((pw_sv){buf, n});
    if (!f || t.n == 0) {
        if (cc->file_token)
            return 0;
        if (errmsg)
            *errmsg =
                pw_xasprintf("%s: the token file %s is %s", cfg->source, cfg->token_file, f ? "empty" : "unreadable");
        return PW_EAUTH;
    }
    char *tok = pw_sv_dup(t);
    if (!cc->file_token || strcmp(tok, cc->file_token) != 0) {
        free(cc->file_token);
        cc->file_token = tok;
        cc->generation++;
        PW_DEBUG("k8s: read the token file %s", cfg->token_file);
    } else {
        free(tok);
    }
    cc->file_mtime = st.st_mtim;
    return 0;
}

/* Runs the plugin when there is no valid credential or it is about to expire. Lock held. */
static int exec_refresh(const pw_k8s_config *cfg, char **errmsg)
{
    struct pw_k8s_cred_cache *cc = cfg->cache;
    if (cc->exec_valid &&
        (cc->exec_expiry_real_ms == 0 || pw_clock_real_ms() < cc->exec_expiry_real_ms - EXEC_REFRESH_MS))
        return 0;
    struct pw_k8s_exec_result r;
    cc->exec_runs++;
    char *msg = NULL;
    int rc = pw_k8s_exec_run(cfg->exec, cfg, &r, &msg);
    if (rc != 0 && cc->exec_valid && pw_clock_real_ms() < cc->exec_expiry_real_ms) {
        /* a refresh ahead of expiry that failed: the credential in hand works until it expires */
        PW_WARN("k8s: %s; the current credential is kept until it expires", msg ? msg : "the exec plugin failed");
        free(msg);
        return 0;
    }
    if (rc != 0) {
        if (errmsg)
            *errmsg = msg;
        else
            free(msg);
        return rc;
    }
    free(cc->exec_token);
    free(cc->exec_cert);
    free(cc->exec_key);
    cc->exec_token = r.token;
    cc->exec_cert = r.cert_pem;
    cc->exec_cert_len = r.cert_pem ? strlen(r.cert_pem) : 0;
    cc->exec_key = r.key_pem;
    cc->exec_key_len = r.key_pem ? strlen(r.key_pem) : 0;
    cc->exec_expiry_real_ms = r.expiry_real_ms;
    cc->exec_valid = true;
    cc->generation++;
    return 0;
}

static char *dupn(const char *p, size_t n)
{
    return p ? pw_xstrndup(p, n) : NULL;
}

int pw_k8s_cred_get(const pw_k8s_config *cfg, struct pw_k8s_cred *out, char **errmsg)
{
    struct pw_k8s_cred_cache *cc = cfg->cache;
    pthread_mutex_lock(&cc->mu);
    int rc = 0;
    if (cfg->exec)
        rc = exec_refresh(cfg, errmsg);
    if (rc == 0 && cfg->token_file && !cfg->token)
        rc = token_file_refresh(cfg, false, errmsg);
    if (rc == 0) {
        memset(out, 0, sizeof *out);
        const char *tok = cc->exec_token ? cc->exec_token : cfg->token ? cfg->token : cc->file_token;
        out->token = tok ? pw_xstrdup(tok) : NULL;
        if (cc->exec_cert && cc->exec_key) {
            out->cert_pem = dupn(cc->exec_cert, cc->exec_cert_len);
            out->cert_len = cc->exec_cert_len;
            out->key_pem = dupn(cc->exec_key, cc->exec_key_len);
            out->key_len = cc->exec_key_len;
        } else if (cfg->cert_pem) {
            out->cert_pem = dupn(cfg->cert_pem, cfg->cert_len);
            out->cert_len = cfg->cert_len;
            out->key_pem = dupn(cfg->key_pem, cfg->key_len);
            out->key_len = cfg->key_len;
        }
        out->generation = cc->generation;
    }
    pthread_mutex_unlock(&cc->mu);
    return rc;
}

bool pw_k8s_cred_invalidate(const pw_k8s_config *cfg, uint64_t generation)
{
    struct pw_k8s_cred_cache *cc = cfg->cache;
    bool again = false;
    pthread_mutex_lock(&cc->mu);
    if (cc->generation != generation) {
        again = true; /* another thread already refreshed it */
    } else if (cfg->exec) {
        cc->exec_valid = false;
        again = true;
    } else if (cfg->token_file && !cfg->token) {
        token_file_refresh(cfg, true, NULL);
        again = cc->generation != generation;
    }
    pthread_mutex_unlock(&cc->mu);
    return again;
}

uint64_t pw_k8s_cred_exec_runs(const pw_k8s_config *cfg)
{
    pthread_mutex_lock(&cfg->cache->mu);
    uint64_t n = cfg->cache->exec_runs;
    pthread_mutex_unlock(&cfg->cache->mu);
    return n;
}
