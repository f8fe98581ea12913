/* prewarmd.c: the prewarm service's main(): read the flag table (each flag has an environment twin),
 * open the store, connect to Kubernetes, start the engine and the REST API, serve until SIGTERM or
 * SIGINT, then stop accepting, finish requests in flight and exit 0, leaving Jobs running. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
#include "base/version.h"
#include "cluster/fleet.h"
#include "engine/engine.h"
#include "events/events.h"
#include "ha/ha.h"
#include "http/http.h"
#include "k8s/k8s.h"
#include "predict/predict.h"
#include "policy/policy.h"
#include "store/store.h"
#include "webhook/webhook.h"

struct options {
    const char *listen, *kubeconfig, *context, *namespace_, *store, *helper_image, *log_level,
        *log_format, *instance, *store_prefix;
    long max_nodes_in_flight, max_running_tasks, kube_burst;
    double kube_qps;
    long long job_ttl_ms, batch_pause_ms, not_ready_grace_ms, history_ms;
    bool keep_failed_jobs, tolerate_noexecute, help, agents;
    const char *agent_sa, *agent_ns, *agent_listen, *tls_cert, *tls_key, *client_ca_file;
    long long agent_timeout_ms, agent_poll_ms, sse_heartbeat_ms;
    const char *auth, *authz, *audit_log;
    long long auth_ttl_ms, auth_neg_ttl_ms, audit_max_bytes;
    long audit_keep, rate_limit, rate_burst, max_tasks_per_user;
    bool metrics_anonymous;
    struct pw_flag_list webhooks; /* webhook flags (webhook.h) */
    const char *webhook_secret_file;
    bool webhook_allow_private;
    long long webhook_timeout_ms, webhook_retry_base_ms;
    bool predict;
    const char *predict_pool_labels;
    long long predict_half_life_ms, predict_save_ms;
    double predict_mbps;
    bool leader_elect;
    const char *le_name, *le_namespace, *le_identity;
    long long le_lease_ms, le_renew_ms, le_retry_ms;
    const char *clusters_file;          /* docs/multicluster.md */
    long long cluster_unreachable_ms;
};

#define PREWARMD_VERSION PW_VERSION /* prewarm_build_info's version label */

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
    {"client-ca-file", "PREWARM_CLIENT_CA_FILE", PW_FLAG_STR, OFF(client_ca_file), NULL,
     "PEM CAs whose client certificates authenticate on --listen (user: subject CN, groups: O), before "
     "--auth's modes; re-read when it changes; needs --tls-cert"},
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
    {"webhook", "PREWARM_WEBHOOK", PW_FLAG_LIST, OFF(webhooks), NULL,
     "a receiver of every task's started/succeeded/failed/cancelled CloudEvent (repeat for more; docs/observability.md)"},
    {"webhook-secret-file", "PREWARM_WEBHOOK_SECRET_FILE", PW_FLAG_STR, OFF(webhook_secret_file), NULL,
     "the key that signs --webhook deliveries (Prewarm-Signature); without it they go unsigned"},
    {"webhook-allow-private", "PREWARM_WEBHOOK_ALLOW_PRIVATE", PW_FLAG_BOOL, OFF(webhook_allow_private), "false",
     "let webhooks reach loopback, private and link-local addresses (the cloud metadata service among them)"},
    {"webhook-timeout", "PREWARM_WEBHOOK_TIMEOUT", PW_FLAG_DURATION, OFF(webhook_timeout_ms), "10s",
     "the longest one webhook attempt may take"},
    {"webhook-retry-base", "PREWARM_WEBHOOK_RETRY_BASE", PW_FLAG_DURATION, OFF(webhook_retry_base_ms), "1s",
     "the first webhook retry's delay, doubling (with jitter) up to 1h, for 24h"},
    {"predict", "PREWARM_PREDICT", PW_FLAG_BOOL, OFF(predict), "true",
     "learn which images pods use per node pool (a pod informer) for policies with \"predict\" and "
     "GET /api/v1/predictions (docs/policies.md)"},
    {"predict-half-life", "PREWARM_PREDICT_HALF_LIFE", PW_FLAG_DURATION, OFF(predict_half_life_ms), "24h",
     "how fast an image's use is forgotten: a pod start counts half as much this long after"},
    {"predict-bandwidth", "PREWARM_PREDICT_BANDWIDTH", PW_FLAG_DOUBLE, OFF(predict_mbps), "100",
     "a node's image download rate in MB/s, for the pull time a prewarmed image saves (size / rate)"},
    {"predict-pool-labels", "PREWARM_PREDICT_POOL_LABELS", PW_FLAG_STR, OFF(predict_pool_labels), NULL,
     "node label keys that name pools besides the built-in ones (comma-separated)"},
    {"predict-save-interval", "PREWARM_PREDICT_SAVE_INTERVAL", PW_FLAG_DURATION, OFF(predict_save_ms), "30s",
     "how often the learnt model is written to the store"},
    {"leader-elect", "PREWARM_LEADER_ELECT", PW_FLAG_BOOL, OFF(leader_elect), "false",
     "run as one of several replicas on a shared redis:// store: only the holder of a coordination.k8s.io "
     "Lease dispatches work, every replica serves the API (docs/ha.md)"},
    {"leader-elect-lease-name", "PREWARM_LEADER_ELECT_LEASE_NAME", PW_FLAG_STR, OFF(le_name), "prewarmd",
     "the Lease's name"},
    {"leader-elect-namespace", "PREWARM_LEADER_ELECT_NAMESPACE", PW_FLAG_STR, OFF(le_namespace), NULL,
     "the Lease's namespace (default: --namespace)"},
    {"leader-elect-identity", "PREWARM_LEADER_ELECT_IDENTITY", PW_FLAG_STR, OFF(le_identity), NULL,
     "this replica's holderIdentity (default: hostname_pid; the pod name in deploy/ha)"},
    {"leader-elect-lease-duration", "PREWARM_LEADER_ELECT_LEASE_DURATION", PW_FLAG_DURATION, OFF(le_lease_ms), "15s",
     "a Lease not renewed this long may be taken by another replica"},
    {"leader-elect-renew-deadline", "PREWARM_LEADER_ELECT_RENEW_DEADLINE", PW_FLAG_DURATION, OFF(le_renew_ms), "10s",
     "the leader stops dispatching when no renewal succeeded this long (< lease duration)"},
    {"leader-elect-retry-period", "PREWARM_LEADER_ELECT_RETRY_PERIOD", PW_FLAG_DURATION, OFF(le_retry_ms), "2s",
     "how often replicas try to take or renew the Lease (< renew deadline)"},
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
                                .namespace_ = o->namespace_,
                                .client_ca_file = o->client_ca_file};
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
    pw_policy *policies; /* the policy controller hears which of its waves' tasks and nodes finished */
};

static void on_change(void *arg, enum pw_engine_change what, const char *task_id, const json_t *doc)
{
    struct observers *o = arg;
    if (what == PW_ENGINE_TASK_CHANGED)
        pw_events_publish_task(o->events, doc);
    else
        pw_events_publish_node(o->events, task_id, doc);
    pw_api_metrics_observe(o->metrics, what, doc);
    pw_policy_observe(o->policies, what, task_id, doc);
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

/* ---- leader election (--leader-elect; docs/ha.md) ---- */

struct leadership {
    pw_ha *ha;             /* NULL without --leader-elect */
    pw_k8s_client *client; /* the elector's own: no retries, a timeout below the renew deadline */
    pthread_mutex_t mu; /* guards engine: the elector thread's changes vs the engine's end */
    pw_engine *engine;  /* NULL once it is freed */
    pw_webhook *webhook; /* delivers only while leading (pw_webhook_set_active); NULL: none */
    char identity[256];
};

/* The engine's gate (engine.h may_lead). */
static bool may_lead(void *arg)
{
    return pw_ha_is_leader(((struct leadership *)arg)->ha);
}

/* The predictor's save gate (predict.h may_save): while leading; no more once the elector is gone
 * (the last save is made before it goes, below). */
static bool may_save_model(void *arg)
{
    struct leadership *l = arg;
    return l->ha && pw_ha_is_leader(l->ha);
}

/* THE place where a change of leadership reaches the components that act on the cluster or the
 * outside world (elector thread; quick, never blocking): the engine (takes over or steps down at
 * its next round, woken now), and whatever must run on the leader only. Webhook delivery: add
 * pw_webhook_set_active(webhooks, leading) here. */
static void leadership_changed(void *arg, bool leading)
{
    struct leadership *l = arg;
    PW_INFO("leadership: %s %s: telling the engine", l->identity,
            leading ? "leads" : "follows (dispatch stops)");
    pthread_mutex_lock(&l->mu);
    if (l->engine)
        pw_engine_wake(l->engine);
    if (l->webhook)
        pw_webhook_set_active(l->webhook, leading); /* one replica delivers: the leader */
    pthread_mutex_unlock(&l->mu);
}

/* The engine stops before the elector (no write after the Lease is released), told apart first. */
static void stop_engine_then_elector(struct leadership *l, pw_engine *engine)
{
    pthread_mutex_lock(&l->mu);
    l->engine = NULL;
    l->webhook = NULL; /* freed after this */
    pthread_mutex_unlock(&l->mu);
    pw_engine_free(engine);
    pw_ha_free(l->ha); /* releases the Lease if held: a successor takes over at its next retry */
    l->ha = NULL;
}

/* With --leader-elect: the identity, the elector's client and the elector (not started). 0, or 1
 * after logging why. */
/* This replica's holderIdentity: --leader-elect-identity, else hostname_pid. */
static void leader_identity(const struct options *o, struct leadership *l)
{
    if (o->le_identity && *o->le_identity) {
        snprintf(l->identity, sizeof l->identity, "%s", o->le_identity);
    } else {
        char host[200] = "";
        if (gethostname(host, sizeof host - 1) != 0 || !*host)
            snprintf(host, sizeof host, "prewarmd");
        snprintf(l->identity, sizeof l->identity, "%s_%ld", host, (long)getpid());
    }
}

/* With --leader-elect (after leader_identity): the elector and its own client. 0, or 1 (logged). */
static int setup_leadership(const struct options *o, const pw_k8s_config *kcfg, struct leadership *l)
{
    if (!o->leader_elect)
        return 0;
    if (o->agents) {
        PW_ERROR("--agents cannot be combined with --leader-elect yet: agents' assignments live in one "
                 "replica's memory (docs/ha.md)");
        return 1;
    }
    if (strncmp(o->store, "memory:", 7) == 0 || strncmp(o->store, "sqlite:", 7) == 0)
        PW_WARN("--leader-elect with a %.6s store: replicas share nothing unless the store is shared; use "
                "redis:// (docs/ha.md)", o->store);
    struct pw_k8s_client_opts kopts = {.qps = 10, .burst = 10, .max_retries = -1,
                                       .timeout_ms = (int)(o->le_renew_ms / 2 > 0 ? o->le_renew_ms / 2 : 1000)};
    char ua[300];
    snprintf(ua, sizeof ua, "prewarmd/" PREWARMD_VERSION " (%s) leader-election", l->identity);
    kopts.user_agent = ua;
    if (pw_k8s_client_new(kcfg, &kopts, &l->client) != 0) {
        PW_ERROR("cannot create the leader election's Kubernetes client");
        return 1;
    }
    struct pw_ha_config hc = {.client = l->client,
                              .namespace_ = o->le_namespace ? o->le_namespace : o->namespace_,
                              .name = o->le_name,
                              .identity = l->identity,
                              .lease_ms = (int)o->le_lease_ms,
                              .renew_deadline_ms = (int)o->le_renew_ms,
                              .retry_ms = (int)o->le_retry_ms,
                              .on_change = leadership_changed,
                              .arg = l};
    if (pw_ha_new(&hc, &l->ha) != 0) {
        PW_ERROR("bad leader election settings: need a Lease name and retry period < renew deadline < lease "
                 "duration (>= 1s), got %lldms < %lldms < %lldms", o->le_retry_ms, o->le_renew_ms, o->le_lease_ms);
        return 1;
    }
    PW_INFO("leader election: identity %s, Lease %s/%s, lease %llds, renew deadline %llds, retry %llds",
            l->identity, hc.namespace_, hc.name, o->le_lease_ms / 1000, o->le_renew_ms / 1000, o->le_retry_ms / 1000);
    return 0;
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

/* The predictor's view of the engine's node cache (predict.h node_get, nodes_synced). */
static json_t *engine_node_get(void *arg, const char *name)
{
    return pw_engine_node_get(arg, name);
}

static bool engine_nodes_synced(void *arg)
{
    const char *why = NULL;
    return pw_engine_ready(arg, &why);
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
    struct leadership lead = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char user_agent[300] = "";
    if (o.leader_elect) { /* each replica apart in the API server's audit (and kubesim's per-client stats) */
        leader_identity(&o, &lead);
        snprintf(user_agent, sizeof user_agent, "prewarmd/" PREWARMD_VERSION " (%s)", lead.identity);
    }
    struct pw_fleet_opts fopts = {.qps = o.kube_qps, .burst = (int)o.kube_burst, .file = o.clusters_file,
                                  .user_agent = user_agent[0] ? user_agent : NULL};
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
    if (setup_leadership(&o, kcfg, &lead) != 0) {
        pw_k8s_client_free(lead.client);
        pw_fleet_free(fleet);
        pw_store_close(store);
        free(full_store);
        free(store_shown);
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
        .agent = {.enabled = o.agents,
                  .tls = o.tls_cert && o.tls_key,
                  .agent_timeout_s = (int)(o.agent_timeout_ms / 1000),
                  .poll_ms = (int)o.agent_poll_ms},
        .instance = instance,
        .history_ms = o.history_ms,
        .may_lead = lead.ha ? may_lead : NULL,
        .may_lead_arg = &lead,
        .cluster = pw_fleet_first_name(fleet),
        .cluster_unreachable_timeout_ms = o.cluster_unreachable_ms,
    };
    pw_engine *engine = NULL;
    struct observers obs = {0};
    pw_api_sse *sse = NULL;
    rc = pw_events_new(NULL, &obs.events);
    /* webhooks: a consumer of the event stream with its outbox in the store (webhook.h); made before
     * the engine starts so that resumed tasks' events reach it. The HA work pauses it on followers
     * with pw_webhook_set_active(webhook, false). */
    pw_webhook *webhook = NULL;
    if (rc == 0) {
        char *source = pw_xasprintf("/prewarmd/%s", instance);
        struct pw_webhook_config wcfg = {.events = obs.events, .store = store, .client = client,
                                         .namespace_ = o.namespace_, .urls = o.webhooks.v, .n_urls = o.webhooks.n,
                                         .secret_file = o.webhook_secret_file, .source = source,
                                         .allow_private = o.webhook_allow_private,
                                         .timeout_ms = o.webhook_timeout_ms, .retry_base_ms = o.webhook_retry_base_ms,
                                         .keep_ms = o.history_ms,
                                         .inactive = lead.ha != NULL /* until this replica leads */};
        char *why = NULL;
        rc = pw_webhook_new(&wcfg, &webhook, &why);
        if (rc != 0)
            PW_ERROR("webhooks: %s", why ? why : pw_strerror(rc));
        free(why);
        free(source);
    }
    if (rc == 0)
        rc = pw_engine_new(&ecfg, &engine);
    if (rc == 0) {
        obs.metrics = pw_api_metrics_new(engine, PREWARMD_VERSION);
        pw_engine_set_observer(engine, on_change, &obs);
        rc = pw_api_sse_new(obs.events, engine, o.sse_heartbeat_ms, &sse);
    }
    /* standing policies (docs/policies.md) and images predicted from history (issue 14): both fed by
     * the engine's node informer (one watch of the nodes), the policies also by its observer */
    if (rc == 0) {
        struct pw_policy_config pcfg = {.store = store, .engine = engine, .client = client};
        rc = pw_policy_new(&pcfg, &obs.policies);
        if (rc == 0)
            pw_engine_set_node_hook(engine, pw_policy_node_event, obs.policies);
    }
    pw_predict *predict = NULL;
    if (rc == 0 && o.predict) {
        struct pw_predict_config pc = {.client = client, .store = store, .extra_pool_keys = o.predict_pool_labels,
                                       .save_interval_ms = o.predict_save_ms,
                                       .model = {.half_life_ms = o.predict_half_life_ms, .bandwidth_mbps = o.predict_mbps},
                                       .node_get = engine_node_get, .nodes_synced = engine_nodes_synced,
                                       .node_arg = engine, .may_save = lead.ha ? may_save_model : NULL,
                                       .may_save_arg = &lead};
        rc = pw_predict_new(&pc, &predict);
        if (rc == 0)
            pw_engine_set_node_raw_hook(engine, pw_predict_node_seen, predict); /* image sizes */
    }
    if (rc == 0)
        rc = pw_fleet_attach(fleet, engine);
    pw_api_leader_metrics *lead_metrics = NULL;
    if (rc == 0) {
        lead.engine = engine; /* before the elector starts: no lock needed yet */
        lead.webhook = webhook;
        lead_metrics = pw_api_leader_metrics_new(lead.ha);
        rc = pw_engine_start(engine);
    }
    if (rc == 0 && lead.ha)
        rc = pw_ha_start(lead.ha); /* after the engine: its first change wakes a started engine */
    if (rc == 0 && predict)
        rc = pw_predict_start(predict); /* its pod informer, once the engine's nodes are listed */
    if (rc == 0 && predict) {
        struct pw_policy_predictor hook = {.check = pw_predict_hook_check,
                                           .images_for_node = pw_predict_hook_images_for_node,
                                           .ud = predict};
        pw_policy_set_predictor(obs.policies, &hook);
    }
    if (rc == 0)
        rc = pw_policy_start(obs.policies);
    pw_auth *auth = NULL;
    pw_audit *audit = NULL;
    pw_userlimit *limit = NULL;
    if (rc == 0 && ((o.tls_cert != NULL) != (o.tls_key != NULL) || (o.client_ca_file && !o.tls_cert))) {
        PW_ERROR(o.client_ca_file && !o.tls_cert ? "--client-ca-file needs TLS (--tls-cert, --tls-key)"
                                                 : "--tls-cert and --tls-key go together");
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
                              .webhook = webhook,
                              .predict = predict,
                              .policies = obs.policies,
                              .ha = lead.ha,
                              .clusters = pw_fleet_json_fn,
                              .clusters_arg = fleet};
    struct pw_api_ctx agent_ctx = actx;
    agent_ctx.agents_elsewhere = false;
    pw_http_server *agent_srv = NULL;
    if (rc == 0 && o.agents && o.agent_listen) {
        struct pw_http_config agcfg = {.listen = o.agent_listen, .routes = pw_api_agent_routes, .ctx = &agent_ctx,
                                       .tls_cert_file = o.tls_cert, .tls_key_file = o.tls_key, .access_log = true,
                                       .log_name = "agents", .max_connections = 20000,
                                       .conn_memory = PW_HTTP_SMALL_CONN_MEMORY /* one long poll per node */,
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
                                  .tls_client_ca_file = o.client_ca_file,
                                  .before = pw_api_before,
                                  .after = pw_api_after};
    pw_http_server *srv = NULL;
    if (rc == 0)
        rc = pw_http_server_new(&hcfg, &srv);
    if (rc != 0) {
        PW_ERROR("cannot start: %s", pw_strerror(rc));
        pw_http_server_free(agent_srv);
        pw_api_sse_free(sse);
        pw_policy_stop(obs.policies);
        pw_predict_stop(predict); /* its pod informer asks the engine for nodes */
        stop_engine_then_elector(&lead, engine);
        pw_api_leader_metrics_free(lead_metrics);
        pw_k8s_client_free(lead.client);
        pw_webhook_free(webhook);
        pw_predict_free(predict);
        pw_policy_free(obs.policies);
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
    pw_policy_stop(obs.policies); /* no engine call after this */
    pw_predict_stop(predict); /* its pod informer asks the engine for nodes */
    if (predict)
        (void)pw_predict_save(predict); /* the last save, while this replica may still lead */
    stop_engine_then_elector(&lead, engine); /* the engine's observer and node hooks go on until here */
    pw_api_leader_metrics_free(lead_metrics);
    pw_k8s_client_free(lead.client);
    pw_webhook_free(webhook);
    pw_predict_free(predict);
    pw_policy_free(obs.policies);
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
