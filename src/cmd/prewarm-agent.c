/* prewarm-agent.c: the node agent's main() (docs/agent.md): read the flag table, open the node's
 * container runtime (CRI), start the puller and sync with prewarmd until SIGTERM or SIGINT; pulls in
 * flight are then stopped (the runtime cancels them) and the agent exits 0. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "agent/cri.h"
#include "agent/puller.h"
#include "agent/syncer.h"
#include "base/flags.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/version.h"

#define AGENT_VERSION PW_VERSION

struct options {
    const char *server, *node, *cluster, *runtime_endpoint, *token_file, *server_ca, *log_level, *log_format;
    long max_parallel_pulls;
    long long min_free_bytes;
    double min_free_percent;
    bool help;
};

#define OFF(f) offsetof(struct options, f)
static const struct pw_flag opt_table[] = {
    {"server", "PREWARM_SERVER", PW_FLAG_STR, OFF(server), NULL, "prewarmd's agent URL (https://host:port)"},
    {"node", "NODE_NAME", PW_FLAG_STR, OFF(node), NULL, "this node's name (the DaemonSet sets NODE_NAME)"},
    {"cluster", "PREWARM_CLUSTER", PW_FLAG_STR, OFF(cluster), NULL,
     "the cluster this node is in, as prewarmd names it (--cluster NAME=...; docs/multicluster.md); unset: "
     "prewarmd's first cluster"},
    {"runtime-endpoint", "PREWARM_RUNTIME_ENDPOINT", PW_FLAG_STR, OFF(runtime_endpoint),
     "unix:///run/containerd/containerd.sock", "the CRI socket (CRI-O: unix:///var/run/crio/crio.sock)"},
    {"token-file", "PREWARM_TOKEN_FILE", PW_FLAG_STR, OFF(token_file), "/var/run/secrets/prewarm/token",
     "the projected ServiceAccount token (audience prewarm), re-read before every sync"},
    {"server-ca", "PREWARM_SERVER_CA", PW_FLAG_STR, OFF(server_ca), NULL,
     "PEM file of the CA that signed prewarmd's certificate (else the system's)"},
    {"max-parallel-pulls", "PREWARM_MAX_PARALLEL_PULLS", PW_FLAG_INT, OFF(max_parallel_pulls), "2",
     "pulls at once"},
    {"min-free-bytes", "PREWARM_MIN_FREE_BYTES", PW_FLAG_BYTES, OFF(min_free_bytes), "0",
     "refuse to pull when the image filesystem has less free (e.g. 10Gi)"},
    {"min-free-percent", "PREWARM_MIN_FREE_PERCENT", PW_FLAG_DOUBLE, OFF(min_free_percent), NULL,
     "refuse to pull when the image filesystem has less free, in percent"},
    {"log-level", "PREWARM_LOG_LEVEL", PW_FLAG_STR, OFF(log_level), "info", "debug|info|warn|error"},
    {"log-format", "PREWARM_LOG_FORMAT", PW_FLAG_STR, OFF(log_format), "json", "json|text"},
    {"help", NULL, PW_FLAG_BOOL, OFF(help), "false", "print this help"},
};
#define N_OPTS (sizeof opt_table / sizeof opt_table[0])

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void poke(void *arg)
{
    pw_syncer_poke(arg);
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = pw_flags_parse("prewarm-agent", opt_table, N_OPTS, &o, sizeof o, argc, argv);
    if (rc == 0 && o.help) {
        pw_flags_usage(stdout, "prewarm-agent", opt_table, N_OPTS);
        return 0;
    }
    if (rc != 0)
        return rc;
    enum pw_log_level lvl;
    if (pw_log_parse_level(o.log_level, &lvl) != 0 ||
        (strcmp(o.log_format, "json") != 0 && strcmp(o.log_format, "text") != 0)) {
        fprintf(stderr, "prewarm-agent: bad --log-level or --log-format\n");
        return 2;
    }
    pw_log_set_level(lvl);
    pw_log_set_json(strcmp(o.log_format, "json") == 0);
    pw_log_set_component("prewarm-agent");
    if (!o.server || !*o.server) {
        fprintf(stderr, "prewarm-agent: --server is required (prewarmd's agent URL)\n");
        return 2;
    }
    if (!o.node || !*o.node) {
        fprintf(stderr, "prewarm-agent: --node (or NODE_NAME) is required\n");
        return 2;
    }
    if (o.cluster && *o.cluster && !pw_dns1123_label(o.cluster)) {
        fprintf(stderr, "prewarm-agent: bad --cluster \"%s\": a cluster name (1-63 of a-z, 0-9 and -, "
                        "alphanumeric at both ends)\n", o.cluster);
        return 2;
    }
    if (o.max_parallel_pulls < 1 || o.max_parallel_pulls > 64) {
        fprintf(stderr, "prewarm-agent: --max-parallel-pulls must be 1-64\n");
        return 2;
    }
    if (o.min_free_percent > 100) {
        fprintf(stderr, "prewarm-agent: --min-free-percent must be 0-100\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        PW_ERROR("cannot initialise libcurl");
        return 1;
    }
    pw_cri *cri = NULL;
    if (pw_cri_new(o.runtime_endpoint, &cri) != 0) {
        fprintf(stderr, "prewarm-agent: bad --runtime-endpoint \"%s\" (unix:///path or /path)\n", o.runtime_endpoint);
        return 2;
    }
    struct pw_syncer_config sc = {.server = o.server, .node = o.node, .cluster = o.cluster, .token_file = o.token_file,
                                  .server_ca = o.server_ca, .version = AGENT_VERSION, .cri = cri};
    pw_syncer *syncer = NULL;
    if (pw_syncer_new(&sc, &syncer) != 0) {
        fprintf(stderr, "prewarm-agent: bad --server \"%s\" (http:// or https:// URL)\n", o.server);
        pw_cri_free(cri);
        return 2;
    }
    struct pw_puller_config pc = {.cri = cri, .max_parallel = (int)o.max_parallel_pulls,
                                  .min_free_bytes = o.min_free_bytes, .min_free_percent = o.min_free_percent,
                                  .changed = poke, .arg = syncer};
    pw_puller *puller = NULL;
    if (pw_puller_new(&pc, &puller) != 0) {
        PW_ERROR("cannot start the pull threads");
        pw_syncer_free(syncer);
        pw_cri_free(cri);
        return 1;
    }
    pw_syncer_set_puller(syncer, puller);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    PW_INFO("prewarm-agent %s for node %s of cluster %s: runtime %s, server %s, %ld pulls at once", AGENT_VERSION,
            o.node, o.cluster && *o.cluster ? o.cluster : "(prewarmd's first)", pw_cri_socket(cri), o.server,
            o.max_parallel_pulls);
    pw_syncer_run(syncer, &stop_signal);
    PW_INFO("signal %d: stopping (pulls in flight are cancelled)", (int)stop_signal);
    pw_puller_free(puller);
    pw_syncer_free(syncer);
    pw_cri_free(cri);
    curl_global_cleanup();
    return 0;
}
