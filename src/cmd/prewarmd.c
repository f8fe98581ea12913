/* prewarmd.c: the prewarm service's main(): read the flag table (each flag has an environment twin),
 * open the store, connect to Kubernetes, start the engine and the REST API, serve until SIGTERM or
 * SIGINT, then stop accepting, finish requests in flight and exit 0, leaving Jobs running. */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "base/err.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"
#include "engine/engine.h"
#include "http/http.h"
#include "k8s/k8s.h"
#include "store/store.h"

enum opt_kind { OPT_STR, OPT_INT, OPT_DOUBLE, OPT_BOOL, OPT_DURATION };

struct options {
    const char *listen, *kubeconfig, *context, *namespace_, *store, *helper_image, *log_level,
        *log_format, *instance;
    long max_nodes_in_flight, max_running_tasks, kube_burst;
    double kube_qps;
    long long job_ttl_ms, batch_pause_ms, not_ready_grace_ms, history_ms;
    bool keep_failed_jobs, tolerate_noexecute, help;
};

struct opt_row {
    const char *flag; /* without the leading "--" */
    const char *env;
    enum opt_kind kind;
    size_t off;
    const char *def; /* parsed like a command-line value; NULL: unset */
    const char *help;
};

/* A macro's value as a string literal (the engine's numeric defaults shown as flag defaults). */
#define STR_(x) #x
#define XSTR(x) STR_(x)
#define OFF(f) offsetof(struct options, f)
#define DEFAULT_STORE "sqlite:/var/lib/prewarm/prewarm.db"
static const struct opt_row opt_table[] = {
    {"listen", "PREWARM_LISTEN", OPT_STR, OFF(listen), "127.0.0.1:8080", "address of the REST API"},
    {"kubeconfig", "PREWARM_KUBECONFIG", OPT_STR, OFF(kubeconfig), NULL,
     "kubeconfig file(s) (else $KUBECONFIG, ~/.kube/config, in-cluster)"},
    {"context", "PREWARM_CONTEXT", OPT_STR, OFF(context), NULL, "kubeconfig context (else current)"},
    {"namespace", "PREWARM_NAMESPACE", OPT_STR, OFF(namespace_), PW_ENGINE_DEFAULT_NAMESPACE, "namespace of the Jobs"},
    {"store", "PREWARM_STORE", OPT_STR, OFF(store), DEFAULT_STORE,
     "store url: sqlite:PATH (durable; tasks survive restarts) or memory: (nothing survives)"},
    {"history", "PREWARM_HISTORY", OPT_DURATION, OFF(history_ms), "7d",
     "how long finished tasks are kept before they are pruned (e.g. 7d, 12h; 0: forever)"},
    {"instance", "PREWARM_INSTANCE", OPT_STR, OFF(instance), NULL,
     "this prewarmd's identity, the label prewarm.io/instance on its Jobs (default: \"default\" with "
     "memory: or the default store, else derived from the store path)"},
    {"helper-image", "PREWARM_HELPER_IMAGE", OPT_STR, OFF(helper_image), PW_JOBEXEC_DEFAULT_HELPER_IMAGE,
     "prewarm's own image (holds prewarm-true)"},
    {"max-nodes-in-flight", "PREWARM_MAX_NODES_IN_FLIGHT", OPT_INT, OFF(max_nodes_in_flight), XSTR(PW_ENGINE_DEFAULT_MAX_NODES_IN_FLIGHT),
     "most nodes with a live Job, across all tasks"},
    {"max-running-tasks", "PREWARM_MAX_RUNNING_TASKS", OPT_INT, OFF(max_running_tasks), XSTR(PW_ENGINE_DEFAULT_MAX_RUNNING_TASKS),
     "most tasks running at once (others queue)"},
    {"kube-qps", "PREWARM_KUBE_QPS", OPT_DOUBLE, OFF(kube_qps), "50", "Kubernetes API requests per second"},
    {"kube-burst", "PREWARM_KUBE_BURST", OPT_INT, OFF(kube_burst), "100", "Kubernetes API burst"},
    {"job-ttl", "PREWARM_JOB_TTL", OPT_DURATION, OFF(job_ttl_ms), XSTR(PW_JOBEXEC_DEFAULT_JOB_TTL_S) "s", "ttlSecondsAfterFinished of Jobs"},
    {"keep-failed-jobs", "PREWARM_KEEP_FAILED_JOBS", OPT_BOOL, OFF(keep_failed_jobs), "false",
     "keep the Jobs of failed nodes for debugging"},
    {"batch-pause", "PREWARM_BATCH_PAUSE", OPT_DURATION, OFF(batch_pause_ms), "2s",
     "pause between batches (strategy batch)"},
    {"not-ready-grace", "PREWARM_NOT_READY_GRACE", OPT_DURATION, OFF(not_ready_grace_ms), "60s",
     "a node NotReady this long fails with NodeNotReady"},
    {"tolerate-noexecute", "PREWARM_TOLERATE_NOEXECUTE", OPT_BOOL, OFF(tolerate_noexecute), "true",
     "Jobs tolerate every NoExecute taint"},
    {"log-level", "PREWARM_LOG_LEVEL", OPT_STR, OFF(log_level), "info", "debug|info|warn|error"},
    {"log-format", "PREWARM_LOG_FORMAT", OPT_STR, OFF(log_format), "json", "json|text"},
    {"help", NULL, OPT_BOOL, OFF(help), "false", "print this help"},
};
#define N_OPTS (sizeof opt_table / sizeof opt_table[0])

/* Parsers by enum opt_kind: each stores value into field, or returns PW_EINVAL. */
static int set_str(void *field, const char *value)
{
    *(const char **)field = value;
    return 0;
}

static int set_int(void *field, const char *value)
{
    long l;
    if (pw_parse_long(value, 0, 1000000000L, &l) != 0)
        return PW_EINVAL;
    *(long *)field = l;
    return 0;
}

static int set_double(void *field, const char *value)
{
    char *end;
    double d = strtod(value, &end);
    if (!*value || *end || !(d > 0))
        return PW_EINVAL;
    *(double *)field = d;
    return 0;
}

static int set_bool(void *field, const char *value)
{
    return pw_parse_bool(value, (bool *)field);
}

/* A duration as pw_parse_duration_ms reads it, with days too: "7d", "1d12h". */
static int set_duration(void *field, const char *value)
{
    long long ms = 0, days = 0;
    const char *d = strchr(value, 'd');
    if (d) {
        char *end;
        days = strtoll(value, &end, 10);
        if (end != d || end == value || days < 0 || days > 36500)
            return PW_EINVAL;
        value = d + 1;
    }
    if (*value && (pw_parse_duration_ms(value, &ms) != 0 || ms < 0))
        return PW_EINVAL;
    if (!*value && !d)
        return PW_EINVAL;
    *(long long *)field = ms + days * 86400000LL;
    return 0;
}

static int (*const opt_parsers[])(void *field, const char *value) = {
    [OPT_STR] = set_str, [OPT_INT] = set_int, [OPT_DOUBLE] = set_double, [OPT_BOOL] = set_bool,
    [OPT_DURATION] = set_duration,
};

/* Stores value into the field of row; PW_EINVAL when it does not parse. */
static int opt_set(struct options *o, const struct opt_row *r, const char *value)
{
    return opt_parsers[r->kind]((char *)o + r->off, value);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: prewarmd [flags]\n\nFlags (each also read from its environment variable):\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_row *r = &opt_table[i];
        fprintf(f, "  --%-22s %-30s %s%s%s%s\n", r->flag, r->env ? r->env : "", r->help,
                r->def ? " (default " : "", r->def ? r->def : "", r->def ? ")" : "");
    }
}

/* Defaults, then the environment, then the command line. Returns 0, or 2 after printing why. */
static int parse_options(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt_row *r = &opt_table[i];
        if (r->def)
            opt_set(o, r, r->def);
        const char *ev = r->env ? getenv(r->env) : NULL;
        if (ev && opt_set(o, r, ev) != 0) {
            fprintf(stderr, "prewarmd: bad value \"%s\" in %s\n", ev, r->env);
            return 2;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "prewarmd: unexpected argument \"%s\"\n", arg);
            return 2;
        }
        arg += 2;
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct opt_row *r = NULL;
        for (size_t i = 0; i < N_OPTS && !r; i++)
            if (strlen(opt_table[i].flag) == n && strncmp(opt_table[i].flag, arg, n) == 0)
                r = &opt_table[i];
        if (!r) {
            fprintf(stderr, "prewarmd: unknown flag --%.*s (see --help)\n", (int)n, arg);
            return 2;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && r->kind == OPT_BOOL)
            value = "true";
        else if (!value && a + 1 < argc)
            value = argv[++a];
        if (!value || opt_set(o, r, value) != 0) {
            fprintf(stderr, "prewarmd: bad value for --%s\n", r->flag);
            return 2;
        }
    }
    return 0;
}

/* The instance id: the flag's, else "default" for memory: and the default store, else "s-" and
 * 16 hex digits of a hash (FNV-1a) of the store url, stable across restarts on the same store.
 * Writes into out (at least 64 bytes); PW_EINVAL when the flag's value is not a label value. */
static int instance_id(const struct options *o, char *out, size_t n)
{
    if (o->instance) {
        char *why = NULL;
        if (!*o->instance || pw_label_value_valid(o->instance, &why) != 0) {
            free(why);
            return PW_EINVAL;
        }
        snprintf(out, n, "%s", o->instance);
        return 0;
    }
    if (strncmp(o->store, "memory:", 7) == 0 || strcmp(o->store, DEFAULT_STORE) == 0) {
        snprintf(out, n, "default");
        return 0;
    }
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)o->store; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    snprintf(out, n, "s-%016llx", (unsigned long long)h);
    return 0;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static int setup_logging(const struct options *o)
{
    enum pw_log_level lvl;
    if (pw_log_parse_level(o->log_level, &lvl) != 0) {
        fprintf(stderr, "prewarmd: bad --log-level \"%s\"\n", o->log_level);
        return 2;
    }
    if (strcmp(o->log_format, "json") != 0 && strcmp(o->log_format, "text") != 0) {
        fprintf(stderr, "prewarmd: bad --log-format \"%s\" (json|text)\n", o->log_format);
        return 2;
    }
    pw_log_set_level(lvl);
    pw_log_set_json(strcmp(o->log_format, "json") == 0);
    pw_log_set_component("prewarmd");
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc == 0 && o.help) {
        usage(stdout);
        return 0;
    }
    if (rc == 0)
        rc = setup_logging(&o);
    if (rc != 0)
        return rc;

    char instance[64];
    if (instance_id(&o, instance, sizeof instance) != 0) {
        fprintf(stderr, "prewarmd: bad --instance \"%s\": a label value (1-63 of [A-Za-z0-9-_.], "
                        "starting and ending alphanumeric)\n", o.instance);
        return 2;
    }
    char *err = NULL;
    pw_store *store = NULL;
    if (pw_store_open(o.store, &store, &err) != 0) {
        PW_ERROR("cannot open the store: %s", err ? err : "unknown error");
        free(err);
        return 1;
    }
    pw_k8s_config *kcfg = NULL;
    if (pw_k8s_config_load(o.kubeconfig, o.context, &kcfg, &err) != 0) {
        PW_ERROR("cannot load the Kubernetes configuration: %s", err ? err : "unknown error");
        free(err);
        pw_store_close(store);
        return 1;
    }
    struct pw_k8s_client_opts kopts = {.qps = o.kube_qps, .burst = (int)o.kube_burst};
    pw_k8s_client *client = NULL;
    if (pw_k8s_client_new(kcfg, &kopts, &client) != 0) {
        PW_ERROR("cannot create the Kubernetes client");
        pw_k8s_config_free(kcfg);
        pw_store_close(store);
        return 1;
    }
    struct pw_engine_config ecfg = {
        .client = client,
        .store = store,
        .namespace_ = o.namespace_,
        .max_nodes_in_flight = (int)o.max_nodes_in_flight,
        .max_running_tasks = (int)o.max_running_tasks,
        .batch_pause_ms = o.batch_pause_ms,
        .not_ready_grace_ms = o.not_ready_grace_ms,
        .job = {.helper_image = o.helper_image,
                .job_ttl_s = (int)(o.job_ttl_ms / 1000),
                .keep_failed_jobs = o.keep_failed_jobs,
                .tolerate_noexecute = o.tolerate_noexecute},
        .instance = instance,
        .history_ms = o.history_ms,
    };
    pw_engine *engine = NULL;
    rc = pw_engine_new(&ecfg, &engine);
    if (rc == 0)
        rc = pw_engine_start(engine);
    struct pw_api_ctx actx = {.engine = engine};
    struct pw_http_config hcfg = {
        .listen = o.listen, .routes = pw_api_routes, .ctx = &actx, .access_log = true, .log_name = "api"};
    pw_http_server *srv = NULL;
    if (rc == 0)
        rc = pw_http_server_new(&hcfg, &srv);
    if (rc != 0) {
        PW_ERROR("cannot start: %s", pw_strerror(rc));
        pw_engine_free(engine);
        pw_k8s_client_free(client);
        pw_k8s_config_free(kcfg);
        pw_store_close(store);
        return 1;
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    PW_INFO("serving on port %d (kubernetes %s, namespace %s, store %s, instance %s, history %llds)",
            pw_http_server_port(srv), pw_k8s_config_server(kcfg), o.namespace_, o.store, instance,
            (long long)(o.history_ms / 1000));
    /* The address line on stdout lets scripts that pass port 0 find the port. */
    printf("listening on %s\n", pw_http_server_addr(srv));
    fflush(stdout);
    while (!stop_signal) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    PW_INFO("signal %d: stopping (Jobs in the cluster are left running)", (int)stop_signal);
    pw_http_server_quiesce(srv);
    pw_http_server_free(srv);
    pw_engine_free(engine);
    pw_k8s_client_free(client);
    pw_k8s_config_free(kcfg);
    pw_store_close(store);
    return 0;
}
