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

#include <curl/curl.h>

#include "api/api.h"
#include "auth/audit.h"
#include "auth/auth.h"
#include "auth/userlimit.h"
#include "base/err.h"
#include "base/flags.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"
#include "cluster/fleet.h"
#include "engine/engine.h"
#include "events/events.h"
#include "http/http.h"
#include "k8s/k8s.h"
#include "store/store.h"

struct options {
    const char *listen, *kubeconfig, *context, *namespace_, *store, *helper_image, *log_level,
        *log_format, *instance, *store_prefix;
    long max_nodes_in_flight, max_running_tasks, kube_burst;
    double kube_qps;
    long long job_ttl_ms, batch_pause_ms, not_ready_grace_ms, history_ms;
    bool keep_failed_jobs, tolerate_noexecute, help, agents;
    const char *agent_sa, *agent_ns, *agent_listen, *tls_cert, *tls_key;
    long long agent_timeout_ms, agent_poll_ms, sse_heartbeat_ms;
    const char *auth, *authz, *audit_log;
    long long auth_ttl_ms, auth_neg_ttl_ms, audit_max_bytes;
    long audit_keep, rate_limit, rate_burst, max_tasks_per_user;
    bool metrics_anonymous;
    const char *clusters_file;          /* docs/multicluster.md */
    long long cluster_unreachable_ms;
};

#define PREWARMD_VERSION "0.1.0" /* prewarm_build_info's version label */

/* A macro's value as a string literal (the engine's numeric defaults shown as flag defaults). */
#define STR_(x) #x
#define XSTR(x) STR_(x)
#define OFF(f) offsetof(struct options, f)
#define DEFAULT_STORE "sqlite:/var/lib/prewarm/prewarm.db"
static const struct pw_flag opt_table[] = {
    {"listen", "PREWARM_LISTEN", PW_FLAG_STR, OFF(listen), "127.0.0.1:8080", "address of the REST API"},
    {"kubeconfig", "PREWARM_KUBECONFIG", PW_FLAG_STR, OFF(kubeconfig), NULL,
     "kubeconfig file(s) (else $KUBECONFIG, ~/.kube/config, in-cluster)"},
    {"context", "PREWARM_CONTEXT", PW_FLAG_STR, OFF(context), NULL, "kubeconfig context (else current)"},
    {"clusters-file", "PREWARM_CLUSTERS_FILE", PW_FLAG_STR, OFF(clusters_file), NULL,
     "YAML list of clusters (docs/multicluster.md; re-read on SIGHUP and when it changes); with "
     "--cluster NAME=KUBECONFIG[#CONTEXT] (repeatable) instead of --kubeconfig/--context"},
    {"cluster-unreachable-timeout", "PREWARM_CLUSTER_UNREACHABLE_TIMEOUT", PW_FLAG_DURATION,
     OFF(cluster_unreachable_ms), "5m", "a cluster unreachable this long fails its unfinished nodes (ClusterUnreachable)"},
    {"namespace", "PREWARM_NAMESPACE", PW_FLAG_STR, OFF(namespace_), PW_ENGINE_DEFAULT_NAMESPACE, "namespace of the Jobs"},
    {"store", "PREWARM_STORE", PW_FLAG_STR, OFF(store), DEFAULT_STORE,
     "store url: sqlite:PATH (durable; tasks survive restarts), redis://[user:password@]host[:port][/db] "
     "(shared by replicas) or memory: (nothing survives)"},
    {"store-prefix", "PREWARM_STORE_PREFIX", PW_FLAG_STR, OFF(store_prefix), NULL,
     "with a redis:// store: the prefix of every key (default \"prewarm:\"), so installations can share a Redis"},
    {"history", "PREWARM_HISTORY", PW_FLAG_DURATION, OFF(history_ms), "7d",
     "how long finished tasks are kept before they are pruned (e.g. 7d, 12h; 0: forever)"},
    {"instance", "PREWARM_INSTANCE", PW_FLAG_STR, OFF(instance), NULL,
     "this prewarmd's identity, the label prewarm.io/instance on its Jobs (default: \"default\" with "
     "memory: or the default store, else derived from the store path)"},
    {"helper-image", "PREWARM_HELPER_IMAGE", PW_FLAG_STR, OFF(helper_image), PW_JOBEXEC_DEFAULT_HELPER_IMAGE,
     "prewarm's own image (holds prewarm-true)"},
    {"max-nodes-in-flight", "PREWARM_MAX_NODES_IN_FLIGHT", PW_FLAG_INT, OFF(max_nodes_in_flight), XSTR(PW_ENGINE_DEFAULT_MAX_NODES_IN_FLIGHT),
     "most nodes with a live Job, across all tasks"},
    {"max-running-tasks", "PREWARM_MAX_RUNNING_TASKS", PW_FLAG_INT, OFF(max_running_tasks), XSTR(PW_ENGINE_DEFAULT_MAX_RUNNING_TASKS),
     "most tasks running at once (others queue)"},
    {"kube-qps", "PREWARM_KUBE_QPS", PW_FLAG_DOUBLE, OFF(kube_qps), "50", "Kubernetes API requests per second"},
    {"kube-burst", "PREWARM_KUBE_BURST", PW_FLAG_INT, OFF(kube_burst), "100", "Kubernetes API burst"},
    {"job-ttl", "PREWARM_JOB_TTL", PW_FLAG_DURATION, OFF(job_ttl_ms), XSTR(PW_JOBEXEC_DEFAULT_JOB_TTL_S) "s", "ttlSecondsAfterFinished of Jobs"},
    {"keep-failed-jobs", "PREWARM_KEEP_FAILED_JOBS", PW_FLAG_BOOL, OFF(keep_failed_jobs), "false",
     "keep the Jobs of failed nodes for debugging"},
    {"batch-pause", "PREWARM_BATCH_PAUSE", PW_FLAG_DURATION, OFF(batch_pause_ms), "2s",
     "pause between batches (strategy batch)"},
    {"not-ready-grace", "PREWARM_NOT_READY_GRACE", PW_FLAG_DURATION, OFF(not_ready_grace_ms), "60s",
     "a node NotReady this long fails with NodeNotReady"},
    {"tolerate-noexecute", "PREWARM_TOLERATE_NOEXECUTE", PW_FLAG_BOOL, OFF(tolerate_noexecute), "true",
     "Jobs tolerate every NoExecute taint"},
    {"agents", "PREWARM_AGENTS", PW_FLAG_BOOL, OFF(agents), "false",
     "agent mode: serve /agent/v1/sync for prewarm-agents (docs/agent.md); tasks with mode auto use them"},
    {"agent-service-account", "PREWARM_AGENT_SERVICE_ACCOUNT", PW_FLAG_STR, OFF(agent_sa), "prewarm-agent",
     "the ServiceAccount whose tokens may sync as agents"},
    {"agent-namespace", "PREWARM_AGENT_NAMESPACE", PW_FLAG_STR, OFF(agent_ns), NULL,
     "the namespace of that ServiceAccount and the agent pods (default: --namespace)"},
    {"agent-listen", "PREWARM_AGENT_LISTEN", PW_FLAG_STR, OFF(agent_listen), NULL,
     "a listener of its own for agents (else they sync on --listen); with --tls-cert/--tls-key it serves "
     "TLS, which registry credentials need"},
    {"tls-cert", "PREWARM_TLS_CERT", PW_FLAG_STR, OFF(tls_cert), NULL,
     "PEM certificate (chain) served on --listen and --agent-listen; re-read when it changes (TLS 1.2+)"},
    {"tls-key", "PREWARM_TLS_KEY", PW_FLAG_STR, OFF(tls_key), NULL, "PEM private key of --tls-cert"},
    {"auth", "PREWARM_AUTH", PW_FLAG_STR, OFF(auth), NULL,
     "who may call the API: kubernetes (TokenReview), token-file:PATH (kube-apiserver's CSV), none "
     "(loopback only), comma-separated in order (default: none on a loopback --listen, else kubernetes)"},
    {"authz", "PREWARM_AUTHZ", PW_FLAG_STR, OFF(authz), NULL,
     "what they may do: kubernetes (SubjectAccessReview on tasks.prewarm.io), static (token-file groups "
     "prewarm:viewers/editors/admins), allow-all (default: allow-all for none, static for a token file, "
     "else kubernetes)"},
    {"auth-cache-ttl", "PREWARM_AUTH_CACHE_TTL", PW_FLAG_DURATION, OFF(auth_ttl_ms), "60s",
     "how long a TokenReview or SubjectAccessReview answer is reused"},
    {"auth-negative-ttl", "PREWARM_AUTH_NEGATIVE_TTL", PW_FLAG_DURATION, OFF(auth_neg_ttl_ms), "10s",
     "how long a rejection is reused (at most --auth-cache-ttl)"},
    {"metrics-anonymous", "PREWARM_METRICS_ANONYMOUS", PW_FLAG_BOOL, OFF(metrics_anonymous), "false",
     "serve /metrics without credentials"},
    {"audit-log", "PREWARM_AUDIT_LOG", PW_FLAG_STR, OFF(audit_log), "-",
     "audit log file: a JSON line per write and per denial (\"-\": stderr)"},
    {"audit-log-max-size", "PREWARM_AUDIT_LOG_MAX_SIZE", PW_FLAG_BYTES, OFF(audit_max_bytes), "100Mi",
     "rotate the audit log past this size"},
    {"audit-log-max-files", "PREWARM_AUDIT_LOG_MAX_FILES", PW_FLAG_INT, OFF(audit_keep), "5",
     "rotated audit logs kept (PATH.1 ... PATH.N)"},
    {"rate-limit", "PREWARM_RATE_LIMIT", PW_FLAG_INT, OFF(rate_limit), "0",
     "API requests a second per user, over it 429 + Retry-After (0: no limit)"},
    {"rate-burst", "PREWARM_RATE_BURST", PW_FLAG_INT, OFF(rate_burst), "0",
     "requests a user may send at once (0: twice --rate-limit)"},
    {"max-tasks-per-user", "PREWARM_MAX_TASKS_PER_USER", PW_FLAG_INT, OFF(max_tasks_per_user), "0",
     "unfinished tasks one user may have; a create over it gets 429 (0: no limit)"},
    {"agent-timeout", "PREWARM_AGENT_TIMEOUT", PW_FLAG_DURATION, OFF(agent_timeout_ms), "60s",
     "an agent silent this long is unhealthy (auto then uses Jobs for its node)"},
    {"agent-poll", "PREWARM_AGENT_POLL", PW_FLAG_DURATION, OFF(agent_poll_ms), "25s",
     "the longest an agent's sync waits for news"},
    {"sse-heartbeat", "PREWARM_SSE_HEARTBEAT", PW_FLAG_DURATION, OFF(sse_heartbeat_ms), "15s",
     "a comment line on an idle event stream (SSE) this often, so proxies keep it open"},
    {"log-level", "PREWARM_LOG_LEVEL", PW_FLAG_STR, OFF(log_level), "info", "debug|info|warn|error"},
    {"log-format", "PREWARM_LOG_FORMAT", PW_FLAG_STR, OFF(log_format), "json", "json|text"},
    {"help", NULL, PW_FLAG_BOOL, OFF(help), "false", "print this help"},
};
#define N_OPTS (sizeof opt_table / sizeof opt_table[0])

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
    /* without the password: rotating it must not change which Jobs are ours */
    char *url = pw_store_url_redacted(o->store);
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)url; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    free(url);
    snprintf(out, n, "s-%016llx", (unsigned long long)h);
    return 0;
}

/* The user side of the API: authenticators, authorizer, audit log, limits. 0, or 1 after logging why. */
static int setup_users(const struct options *o, pw_k8s_client *client, pw_auth **auth, pw_audit **audit,
                       pw_userlimit **limit)
{
    bool loopback = pw_http_listen_is_loopback(o->listen);
    const char *authn = o->auth ? o->auth : loopback ? "none" : "kubernetes";
    long long ttl = o->auth_ttl_ms < 1000 ? 1000 : o->auth_ttl_ms;
    long long neg = o->auth_neg_ttl_ms < 1000 ? 1000 : o->auth_neg_ttl_ms;
    struct pw_auth_config ac = {.client = client,
                                .cache_ttl_s = (int)(ttl / 1000),
                                .negative_ttl_s = (int)(neg / 1000),
                                .authn = authn,
                                .authz = o->authz,
                                .namespace_ = o->namespace_};
    char why[512];
    if (pw_auth_new(&ac, auth, why, sizeof why) != 0) {
        PW_ERROR("cannot set up authentication: %s", why);
        return 1;
    }
    if (pw_auth_allows_anonymous(*auth) && !loopback) {
        PW_ERROR("--auth none lets anyone who reaches %s create tasks that run on every node: it is allowed "
                 "only on a loopback --listen (127.0.0.1, ::1). Use --auth kubernetes or --auth "
                 "token-file:PATH, or listen on loopback (docs/security.md)", o->listen);
        return 1;
    }
    if (pw_auth_allows_anonymous(*auth))
        PW_WARN("authentication is off (--auth %s): whoever reaches %s acts as system:anonymous with "
                "%s rights; turn it on with --auth kubernetes or --auth token-file:PATH (docs/security.md)",
                authn, o->listen, strcmp(pw_auth_authorizer(*auth), "allow-all") == 0 ? "full" : "its authorizer's");
    struct pw_audit_config au = {.path = o->audit_log, .max_bytes = o->audit_max_bytes, .keep = (int)o->audit_keep};
    if (pw_audit_new(&au, audit, why, sizeof why) != 0) {
        PW_ERROR("%s", why);
        return 1;
    }
    if (o->rate_limit > 0)
        *limit = pw_userlimit_new((double)o->rate_limit, (int)o->rate_burst);
    PW_INFO("api: authentication %s, authorization %s, audit log %s, rate limit %ld/s per user, at most %ld "
            "unfinished tasks per user", authn, pw_auth_authorizer(*auth),
            strcmp(o->audit_log, "-") == 0 ? "stderr" : o->audit_log, o->rate_limit, o->max_tasks_per_user);
    return 0;
}

/* The engine's observer: each change goes to the event stream (SSE, later webhooks) and the task
 * metrics. */
struct observers {
    pw_events *events;
    pw_api_metrics *metrics;
};

static void on_change(void *arg, enum pw_engine_change what, const char *task_id, const json_t *doc)
{
    struct observers *o = arg;
    if (what == PW_ENGINE_TASK_CHANGED)
        pw_events_publish_task(o->events, doc);
    else
        pw_events_publish_node(o->events, task_id, doc);
    pw_api_metrics_observe(o->metrics, what, doc);
}

/* The store url with --store-prefix added (as redis://'s ?prefix=, percent-encoded); caller frees.
 * NULL when the flag is given with a store that has no key prefix. */
static char *store_url(const struct options *o)
{
    if (!o->store_prefix)
        return pw_xstrdup(o->store);
    if (strncmp(o->store, "redis://", 8) != 0 && strncmp(o->store, "rediss://", 9) != 0)
        return NULL;
    char *esc = curl_easy_escape(NULL, o->store_prefix, 0);
    if (!esc)
        return NULL;
    char *url = pw_xasprintf("%s%cprefix=%s", o->store, strchr(o->store, '?') ? '&' : '?', esc);
    curl_free(esc);
    return url;
}

static volatile sig_atomic_t stop_signal;
static pw_fleet *the_fleet; /* SIGHUP reloads its clusters file */

static void on_hup(int sig)
{
    (void)sig;
    pw_fleet_request_reload(the_fleet);
}

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
    struct pw_clusterconf cluster_flags = {0};
    char *cerr = NULL;
    if (pw_clusterconf_take_flags(&argc, argv, &cluster_flags, &cerr) != 0) {
        fprintf(stderr, "prewarmd: %s\n", cerr ? cerr : "bad --cluster");
        free(cerr);
        pw_clusterconf_fini(&cluster_flags);
        return 2;
    }
    int rc = pw_flags_parse("prewarmd", opt_table, N_OPTS, &o, sizeof o, argc, argv);
    if (rc == 0 && o.help) {
        pw_flags_usage(stdout, "prewarmd", opt_table, N_OPTS);
        return 0;
    }
    if (rc == 0)
        rc = setup_logging(&o);
    if (rc != 0) {
        pw_clusterconf_fini(&cluster_flags);
        return rc;
    }

    char *full_store = store_url(&o);
    if (!full_store) {
        fprintf(stderr, "prewarmd: --store-prefix needs a redis:// store\n");
        return 2;
    }
    o.store = full_store;
    char *store_shown = pw_store_url_redacted(o.store); /* for log lines: no password */
    char instance[64];
    if (instance_id(&o, instance, sizeof instance) != 0) {
        fprintf(stderr, "prewarmd: bad --instance \"%s\": a label value (1-63 of [A-Za-z0-9-_.], "
                        "starting and ending alphanumeric)\n", o.instance);
        free(full_store);
        free(store_shown);
        return 2;
    }
    char *err = NULL;
    pw_store *store = NULL;
    if (pw_store_open(o.store, &store, &err) != 0) {
        PW_ERROR("cannot open the store: %s", err ? err : "unknown error");
        free(err);
        free(full_store);
        free(store_shown);
        return 1;
    }
    /* the clusters (docs/multicluster.md): --cluster, --clusters-file, or --kubeconfig/--context */
    struct pw_fleet_opts fopts = {.qps = o.kube_qps, .burst = (int)o.kube_burst, .file = o.clusters_file};
    pw_fleet *fleet = NULL;
    if (pw_fleet_from_flags(&cluster_flags, o.kubeconfig, o.context, &fopts, &fleet, &err) != 0) {
        PW_ERROR("cannot load the Kubernetes configuration: %s", err ? err : "unknown error");
        free(err);
        pw_store_close(store);
        free(full_store);
        free(store_shown);
        return 1;
    }
    const pw_k8s_config *kcfg = pw_fleet_first_config(fleet);
    pw_k8s_client *client = pw_fleet_first_client(fleet);
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
        .agent = {.enabled = o.agents,
                  .tls = o.tls_cert && o.tls_key,
                  .agent_timeout_s = (int)(o.agent_timeout_ms / 1000),
                  .poll_ms = (int)o.agent_poll_ms},
        .instance = instance,
        .history_ms = o.history_ms,
        .cluster = pw_fleet_first_name(fleet),
        .cluster_unreachable_timeout_ms = o.cluster_unreachable_ms,
    };
    pw_engine *engine = NULL;
    struct observers obs = {0};
    pw_api_sse *sse = NULL;
    rc = pw_events_new(NULL, &obs.events);
    if (rc == 0)
        rc = pw_engine_new(&ecfg, &engine);
    if (rc == 0) {
        obs.metrics = pw_api_metrics_new(engine, PREWARMD_VERSION);
        pw_engine_set_observer(engine, on_change, &obs);
        rc = pw_api_sse_new(obs.events, engine, o.sse_heartbeat_ms, &sse);
    }
    if (rc == 0)
        rc = pw_fleet_attach(fleet, engine);
    if (rc == 0)
        rc = pw_engine_start(engine);
    pw_auth *auth = NULL;
    pw_audit *audit = NULL;
    pw_userlimit *limit = NULL;
    if (rc == 0 && (o.tls_cert != NULL) != (o.tls_key != NULL)) {
        PW_ERROR("--tls-cert and --tls-key go together");
        rc = PW_EINVAL;
    }
    if (rc == 0 && setup_users(&o, client, &auth, &audit, &limit) != 0)
        rc = PW_EINVAL;
    struct pw_api_ctx actx = {.engine = engine,
                              .auth = auth,
                              .agent_namespace = o.agent_ns ? o.agent_ns : o.namespace_,
                              .agent_sa = o.agent_sa,
                              .agents_elsewhere = o.agents && o.agent_listen,
                              .sse = sse,
                              .audit = audit,
                              .rate_limit = limit,
                              .metrics_anonymous = o.metrics_anonymous,
                              .max_tasks_per_user = o.max_tasks_per_user,
                              .clusters = pw_fleet_json_fn,
                              .clusters_arg = fleet};
    struct pw_api_ctx agent_ctx = actx;
    agent_ctx.agents_elsewhere = false;
    pw_http_server *agent_srv = NULL;
    if (rc == 0 && o.agents && o.agent_listen) {
        struct pw_http_config agcfg = {.listen = o.agent_listen, .routes = pw_api_agent_routes, .ctx = &agent_ctx,
                                       .tls_cert_file = o.tls_cert, .tls_key_file = o.tls_key, .access_log = true,
                                       .log_name = "agents", .max_connections = 20000,
                                       .threads = 16 /* a sync may wait on a TokenReview: more threads than the API */};
        rc = pw_http_server_new(&agcfg, &agent_srv);
    } else if (rc == 0 && o.agent_listen) {
        PW_ERROR("--agent-listen needs --agents");
        rc = PW_EINVAL;
    }
    struct pw_http_config hcfg = {.listen = o.listen,
                                  .routes = pw_api_routes,
                                  .ctx = &actx,
                                  .access_log = true,
                                  .log_name = "api",
                                  .metrics = true,
                                  .tls_cert_file = o.tls_cert,
                                  .tls_key_file = o.tls_key,
                                  .before = pw_api_before,
                                  .after = pw_api_after};
    pw_http_server *srv = NULL;
    if (rc == 0)
        rc = pw_http_server_new(&hcfg, &srv);
    if (rc != 0) {
        PW_ERROR("cannot start: %s", pw_strerror(rc));
        pw_http_server_free(agent_srv);
        pw_api_sse_free(sse);
        pw_engine_free(engine);
        pw_api_metrics_free(obs.metrics);
        pw_events_free(obs.events);
        pw_auth_free(auth);
        pw_audit_free(audit);
        pw_userlimit_free(limit);
        pw_fleet_free(fleet);
        pw_store_close(store);
        free(full_store);
        free(store_shown);
        return 1;
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    the_fleet = fleet;
    struct sigaction hup = {.sa_handler = on_hup};
    sigemptyset(&hup.sa_mask);
    sigaction(SIGHUP, &hup, NULL);
    signal(SIGPIPE, SIG_IGN);
    PW_INFO("serving %s on port %d (kubernetes %s, namespace %s, store %s, instance %s, history %llds)",
            o.tls_cert ? "HTTPS" : "HTTP", pw_http_server_port(srv), pw_k8s_config_server(kcfg), o.namespace_, store_shown, instance,
            (long long)(o.history_ms / 1000));
    /* The address line on stdout lets scripts that pass port 0 find the port. */
    printf("listening on %s\n", pw_http_server_addr(srv));
    if (agent_srv) {
        PW_INFO("agents sync on %s (%s)", pw_http_server_addr(agent_srv), o.tls_cert ? "TLS" : "plain HTTP");
        printf("agents on %s\n", pw_http_server_addr(agent_srv));
    }
    fflush(stdout);
    while (!stop_signal) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    PW_INFO("signal %d: stopping (Jobs in the cluster are left running)", (int)stop_signal);
    pw_http_server_quiesce(srv);
    if (agent_srv)
        pw_http_server_quiesce(agent_srv);
    pw_http_server_free(srv);
    pw_http_server_free(agent_srv);
    pw_api_sse_free(sse);
    pw_engine_free(engine); /* its observer goes on until here */
    pw_api_metrics_free(obs.metrics);
    pw_events_free(obs.events);
    pw_auth_free(auth);
    pw_audit_free(audit);
    pw_userlimit_free(limit);
    the_fleet = NULL;
    pw_fleet_free(fleet);
    pw_store_close(store);
    free(full_store);
    free(store_shown);
    return 0;
}
