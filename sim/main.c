/* main.c: the kubesim process: parse the flags, make the credentials, start the store, the world and
 * the API server, announce readiness by writing the kubeconfig, wait for SIGTERM/SIGINT, stop.
 *
 * The flags come from one table (flag_table) that also prints --help and feeds docs/kubesim.md.
 * "The kubeconfig file exists" means "kubesim is ready": it is written last, atomically (a temporary
 * file, fsync, rename), so a reader never sees half of it.
 *
 * Thread model: main() runs on the process's first thread. SIGTERM and SIGINT are blocked before any
 * other thread starts (so every thread inherits the mask) and main waits for them with sigwait(). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/b64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"
#include "sim/sim.h"

/* What the command line sets: the simulator's options and main's own. */
struct args {
    struct sim_options opt;
    const char *log_level;
    bool log_text;
    bool help;
};

enum flag_type { FLAG_INT, FLAG_U64, FLAG_SIZE, FLAG_DOUBLE, FLAG_BOOL, FLAG_STR };

/* One flag: its name, where it lands in struct args, its type, its default (as text, parsed like a
 * command-line value; NULL: zero/NULL), the placeholder --help shows for its value ("" for a
 * switch) and one line of help. */
struct flag {
    const char *name;
    size_t offset;
    enum flag_type type;
    const char *def;
    const char *metavar;
    const char *help;
};

#define OPT(field) offsetof(struct args, opt.field)
static const struct flag flag_table[] = {
    {"--nodes", OPT(nodes), FLAG_INT, "3", "N", "nodes to create at start (node-0001, node-0002, ...)"},
    {"--listen", OPT(listen), FLAG_STR, "127.0.0.1:0", "HOST:PORT",
     "the address to serve on; port 0 picks a free port"},
    {"--kubeconfig-out", OPT(kubeconfig_out), FLAG_STR, NULL, "PATH",
     "where to write the kubeconfig (required); it appears, atomically, once kubesim is ready"},
    {"--catalog", OPT(catalog), FLAG_STR, NULL, "FILE", "the image catalogue (JSON) [the built-in catalogue]"},
    {"--seed", OPT(seed), FLAG_U64, "1", "S", "random seed: the same seed replays the same run"},
    {"--insecure-http", OPT(insecure_http), FLAG_BOOL, NULL, "", "serve plain HTTP instead of HTTPS"},
    {"--token", OPT(token), FLAG_STR, NULL, "TOKEN",
     "the bearer token clients must send (letters, digits, -._~+/=) [random, 32 hex digits]"},
    {"--threads", OPT(threads), FLAG_INT, "4", "N", "HTTP worker threads"},
    {"--history", OPT(history), FLAG_SIZE, "100000", "N", "changes kept for watches from an older resourceVersion"},
    {"--registry-bandwidth", OPT(registry_mbps), FLAG_DOUBLE, "1000", "MB/s",
     "registry egress in MB/s, shared fairly by concurrent layer downloads"},
    {"--node-bandwidth", OPT(node_mbps), FLAG_DOUBLE, "200", "MB/s", "per-node download bandwidth in MB/s"},
    {"--max-parallel-pulls", OPT(max_parallel_pulls), FLAG_INT, "1", "N",
     "image pulls at once per node (1: the kubelet's serializeImagePulls)"},
    {"--time-scale", OPT(time_scale), FLAG_DOUBLE, "1", "X", "divides every modelled duration (>1: faster runs)"},
    {"--pod-start-latency", OPT(pod_start_ms), FLAG_INT, "500", "MS",
     "ms from a pod bound to a node until its kubelet marks it ContainerCreating"},
    {"--container-start-latency", OPT(container_start_ms), FLAG_INT, "300", "MS", "ms to start a container"},
    {"--controller-latency", OPT(controller_ms), FLAG_INT, "50", "MS", "ms the Job controller takes to react"},
    {"--arm64-percent", OPT(arm64_percent), FLAG_INT, "20", "P", "share of nodes that are arm64 (the rest amd64)"},
    {"--not-ready", OPT(not_ready_nodes), FLAG_INT, "0", "N", "nodes that start NotReady"},
    {"--agents", OPT(agents), FLAG_BOOL, NULL, "",
     "run a simulated prewarm-agent (the real agent code over the model's runtime) for every Running pod of the agent "
     "DaemonSet"},
    {"--agents-daemonset", OPT(agents_daemonset), FLAG_STR, "prewarm-agent", "NAME", "the agent DaemonSet's name"},
    {"--no-token-node-info", OPT(no_token_node_info), FLAG_BOOL, NULL, "",
     "pod-bound ServiceAccount tokens carry no node claims, as before Kubernetes 1.30"},
    {"--token-auth-file", OPT(token_auth_file), FLAG_STR, NULL, "PATH",
     "static bearer tokens, kube-apiserver's CSV: token,user,uid,\"group1,group2\""},
    {"--client-ca-file", OPT(client_ca_file), FLAG_STR, NULL, "PATH",
     "PEM CAs whose client certificates authenticate too (user: subject CN, groups: O), besides kubesim's own CA"},
    {"--enforce-rbac", OPT(enforce_rbac), FLAG_BOOL, NULL, "",
     "authorize every request by the RBAC objects (403 Forbidden as a real server); the kubeconfig's admin is in "
     "system:masters"},
    {"--namespaces", OPT(namespaces), FLAG_STR, "prewarm", "A,B",
     "comma-separated namespaces created at start, besides default, kube-system, kube-public, kube-node-lease"},
    {"--log-level", offsetof(struct args, log_level), FLAG_STR, "info", "LEVEL", "debug, info, warn, error or off"},
    {"--log-text", offsetof(struct args, log_text), FLAG_BOOL, NULL, "", "plain-text log lines instead of JSON"},
    {"--help", offsetof(struct args, help), FLAG_BOOL, NULL, "", "print this help and exit"},
};
#undef OPT
enum { NFLAGS = sizeof flag_table / sizeof flag_table[0] };

/* The value parsers, one per flag type: text -> *field, PW_EINVAL when it does not parse or is out
 * of range (nothing written then). */
static int parse_int(const char *text, void *field)
{
    long l;
    if (pw_parse_long(text, 0, INT_MAX, &l) != 0)
        return PW_EINVAL;
    *(int *)field = (int)l;
    return 0;
}

static int parse_ull(const char *text, unsigned long long *out)
{
    char *end = NULL;
    if (text[0] < '0' || text[0] > '9')
        return PW_EINVAL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return PW_EINVAL;
    *out = v;
    return 0;
}

static int parse_u64(const char *text, void *field)
{
    unsigned long long v;
    if (parse_ull(text, &v) != 0)
        return PW_EINVAL;
    *(uint64_t *)field = (uint64_t)v;
    return 0;
}

static int parse_size(const char *text, void *field)
{
    unsigned long long v;
    if (parse_ull(text, &v) != 0 || v > SIZE_MAX)
        return PW_EINVAL;
    *(size_t *)field = (size_t)v;
    return 0;
}

/* Doubles are rates and factors: positive and finite. */
static int parse_double(const char *text, void *field)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(d > 0) || d > 1e12)
        return PW_EINVAL;
    *(double *)field = d;
    return 0;
}

static int parse_bool(const char *text, void *field)
{
    return pw_parse_bool(text, (bool *)field);
}

static int parse_str(const char *text, void *field)
{
    *(const char **)field = text;
    return 0;
}

static int (*const parsers[])(const char *text, void *field) = {
    [FLAG_INT] = parse_int,       [FLAG_U64] = parse_u64,   [FLAG_SIZE] = parse_size,
    [FLAG_DOUBLE] = parse_double, [FLAG_BOOL] = parse_bool, [FLAG_STR] = parse_str,
};

/* Sets f's field in a from text (borrowed: strings keep pointing into argv). */
static int set_flag(struct args *a, const struct flag *f, const char *text)
{
    return parsers[f->type](text, (char *)a + f->offset) == 0 ? 0 : PW_EINVAL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kubesim --kubeconfig-out PATH [--nodes N] [--listen HOST:PORT] [flags]\n"
               "A Kubernetes API simulator: nodes, kubelets, a Job controller and a model of image pulls.\n\n");
    for (size_t i = 0; i < NFLAGS; i++) {
        const struct flag *fl = &flag_table[i];
        char left[64];
        snprintf(left, sizeof left, "%s %s", fl->name, fl->metavar);
        fprintf(f, "  %-28s %s", left, fl->help);
        if (fl->def)
            fprintf(f, " [%s]", fl->def);
        fputc('\n', f);
    }
}

static const struct flag *find_flag(const char *name, size_t n)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (strlen(flag_table[i].name) == n && strncmp(flag_table[i].name, name, n) == 0)
            return &flag_table[i];
    return NULL;
}

/* Fills a from the defaults and then argv ("--flag value", "--flag=value", bare "--bool").
 * Returns 0, or PW_EINVAL after printing why to stderr. */
static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    for (size_t i = 0; i < NFLAGS; i++)
        if (flag_table[i].def && set_flag(a, &flag_table[i], flag_table[i].def) != 0)
            abort(); /* a bad default in the table: a bug */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct flag *f = find_flag(arg, n);
        if (!f) {
            fprintf(stderr, "kubesim: unknown flag %.*s (see --help)\n", (int)n, arg);
            return PW_EINVAL;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && f->type == FLAG_BOOL)
            value = "true";
        if (!value && i + 1 < argc)
            value = argv[++i];
        if (!value) {
            fprintf(stderr, "kubesim: %s needs a value (see --help)\n", f->name);
            return PW_EINVAL;
        }
        if (set_flag(a, f, value) != 0) {
            fprintf(stderr, "kubesim: bad value for %s: '%s'\n", f->name, value);
            return PW_EINVAL;
        }
    }
    if (a->help)
        return 0;
    if (!a->opt.kubeconfig_out || !a->opt.kubeconfig_out[0]) {
        fprintf(stderr, "kubesim: --kubeconfig-out PATH is required (see --help)\n");
        return PW_EINVAL;
    }
    if (a->opt.arm64_percent > 100 || a->opt.threads < 1 || a->opt.history < 1 ||
        a->opt.not_ready_nodes > a->opt.nodes || a->opt.max_parallel_pulls < 1) {
        fprintf(stderr, "kubesim: out of range: --arm64-percent 0..100, --threads >= 1, --history >= 1, "
                        "--max-parallel-pulls >= 1, --not-ready <= --nodes\n");
        return PW_EINVAL;
    }
    /* RFC 6750's b64token: what an Authorization header and the kubeconfig's quoted YAML can carry */
    const char *tok = a->opt.token;
    if (tok && (!tok[0] ||
                strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") != strlen(tok))) {
        fprintf(stderr, "kubesim: --token: letters, digits and -._~+/= only\n");
        return PW_EINVAL;
    }
    enum pw_log_level lvl;
    if (pw_log_parse_level(a->log_level, &lvl) != 0) {
        fprintf(stderr, "kubesim: bad --log-level '%s'\n", a->log_level);
        return PW_EINVAL;
    }
    pw_log_set_level(lvl);
    pw_log_set_json(!a->log_text);
    return 0;
}

/* 16 random bytes from /dev/urandom as 32 hex digits. Caller frees. NULL when it cannot be read. */
static char *random_token(void)
{
    unsigned char raw[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t got = read(fd, raw, sizeof raw);
    close(fd);
    if (got != (ssize_t)sizeof raw)
        return NULL;
    char *hex = pw_xmalloc(2 * sizeof raw + 1);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    return hex;
}

/* Raises the soft limit on open files to the hard one: watchers and clients each hold a socket. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            PW_WARN("could not raise the open-file limit: %s", strerror(errno));
    }
}

/* The URL clients use: the listen host (127.0.0.1 when it is empty or a wildcard) and the bound port.
 * Caller frees. */
static char *server_url(const char *listen, int port, bool tls)
{
    const char *colon = strrchr(listen, ':');
    size_t hn = colon ? (size_t)(colon - listen) : 0;
    char *host = pw_xstrndup(listen, hn);
    if (hn == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0) {
        free(host);
        host = pw_xstrdup("127.0.0.1");
    }
    char *url = pw_xasprintf("%s://%s:%d", tls ? "https" : "http", host, port);
    free(host);
    return url;
}

/* The kubeconfig text: one cluster, two users (token and client certificate), two contexts, the
 * token's current. tls NULL: plain HTTP and no certificates. Caller frees. */
static char *kubeconfig_text(const char *url, const char *token, const struct sim_tls *tls)
{
    char *ca = tls ? pw_b64_encode(tls->ca_cert, strlen(tls->ca_cert), false) : NULL;
    char *cc = tls ? pw_b64_encode(tls->client_cert, strlen(tls->client_cert), false) : NULL;
    char *ck = tls ? pw_b64_encode(tls->client_key, strlen(tls->client_key), false) : NULL;
    char *ca_line = ca ? pw_xasprintf("    certificate-authority-data: %s\n", ca) : pw_xstrdup("");
    char *cert_user = tls ? pw_xasprintf("    client-certificate-data: %s\n    client-key-data: %s\n", cc, ck)
                          : pw_xasprintf("    token: \"%s\"\n", token);
    char *text = pw_xasprintf("apiVersion: v1\n"
                              "kind: Config\n"
                              "preferences: {}\n"
                              "clusters:\n"
                              "- name: kubesim\n"
                              "  cluster:\n"
                              "    server: %s\n"
                              "%s"
                              "users:\n"
                              "- name: kubesim-token\n"
                              "  user:\n"
                              "    token: \"%s\"\n"
                              "- name: kubesim-cert\n"
                              "  user:\n"
                              "%s"
                              "contexts:\n"
                              "- name: kubesim\n"
                              "  context:\n"
                              "    cluster: kubesim\n"
                              "    user: kubesim-token\n"
                              "    namespace: default\n"
                              "- name: kubesim-cert\n"
                              "  context:\n"
                              "    cluster: kubesim\n"
                              "    user: kubesim-cert\n"
                              "    namespace: default\n"
                              "current-context: kubesim\n",
                              url, ca_line, token, cert_user);
    free(ca);
    free(cc);
    free(ck);
    free(ca_line);
    free(cert_user);
    return text;
}

/* Writes text to path atomically: path.tmp (mode 0600: it holds credentials), fsync, rename.
 * Returns 0 or PW_EIO (logged). */
static int write_atomic(const char *path, const char *text)
{
    char *tmp = pw_xasprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? PW_EIO : 0;
    size_t len = strlen(text), done = 0;
    while (rc == 0 && done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = PW_EIO;
        else
            done += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = PW_EIO;
    if (fd >= 0 && close(fd) != 0)
        rc = PW_EIO;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = PW_EIO;
    if (rc != 0) {
        PW_ERROR("cannot write the kubeconfig %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* Blocks SIGTERM and SIGINT in this thread and every thread started after; ignores SIGPIPE (a client
 * that goes away must not kill the server). */
static void block_signals(sigset_t *set)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

int main(int argc, char **argv)
{
    pw_log_set_component("kubesim");
    struct args a;
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    if (a.help) {
        usage(stdout);
        return 0;
    }
    sigset_t stop_signals;
    block_signals(&stop_signals);
    raise_nofile();

    char *token = NULL;
    if (!a.opt.token) {
        token = random_token();
        if (!token) {
            PW_ERROR("cannot read /dev/urandom for the token");
            return 1;
        }
        a.opt.token = token;
    }

    struct sim_tls tls = {0};
    if (!a.opt.insecure_http && sim_tls_generate(&tls) != 0)
        return 1;

    struct sim sim = {.opt = a.opt, .start_real_ms = (uint64_t)pw_clock_real_ms()};
    sim.store = sim_store_new(a.opt.history);

    int rc = sim_world_start(&sim);
    if (rc != 0) {
        PW_ERROR("the world did not start: %s", pw_strerror(rc));
        sim_store_free(sim.store);
        sim_tls_fini(&tls);
        free(token);
        return 1;
    }

    pw_http_server *srv = NULL;
    rc = sim_api_start(&sim, a.opt.insecure_http ? NULL : &tls, &srv);
    if (rc != 0) {
        PW_ERROR("the API server did not start on %s: %s", a.opt.listen, pw_strerror(rc));
        sim_world_stop(&sim);
        sim_store_free(sim.store);
        sim_tls_fini(&tls);
        free(token);
        return 1;
    }

    char *url = server_url(a.opt.listen, pw_http_server_port(srv), !a.opt.insecure_http);
    char *kc = kubeconfig_text(url, a.opt.token, a.opt.insecure_http ? NULL : &tls);
    rc = write_atomic(a.opt.kubeconfig_out, kc);
    free(kc);
    if (rc == 0) {
        PW_INFO("ready url=%s kubeconfig=%s nodes=%d tls=%s", url, a.opt.kubeconfig_out, a.opt.nodes,
                a.opt.insecure_http ? "off" : "on");
        int sig = 0;
        while (sigwait(&stop_signals, &sig) != 0)
            ;
        PW_INFO("signal %d: stopping", sig);
    }

    /* The world's controllers call the API's services (events, deletions), so they stop before the
     * API state goes; the server goes first so no handler runs during either. */
    pw_http_server_quiesce(srv);
    pw_http_server_free(srv);
    sim_world_stop(&sim);
    sim_api_stop(&sim);
    sim_store_free(sim.store);
    sim_tls_fini(&tls);
    free(url);
    free(token);
    PW_INFO("stopped");
    return rc == 0 ? 0 : 1;
}
