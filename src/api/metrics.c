/* metrics.c: GET /metrics (Prometheus text format 0.0.4) and the task metrics behind it. Two
 * sources: the engine's changes as its observer reports them (pw_api_metrics_observe: tasks created
 * and finished, image pulls, node pull durations, all counted once the store holds them), and the
 * engine's own state read at each scrape (tasks and nodes by state, nodes in flight, the queue).
 * The other modules (k8s client and informers, store, HTTP server, SSE hub) put their own series in
 * the same default registry. docs/observability.md has the table of every metric.
 *
 * Labels are bounded words only: a reason that is not a short CamelCase word counts as "Other". The
 * node and pull families carry the node's cluster (docs/multicluster.md): cluster names come from
 * prewarmd's configuration, so their number is bounded by it; a single-cluster prewarmd's is
 * "default" unless --cluster named it. Task families have no cluster: a task spans clusters. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/clock.h"
#include "base/mem.h"
#include "engine/nodekey.h"
#include "metrics/metrics.h"
#include "store/store.h"

#define REASON_MAX 48

struct pw_api_metrics {
    pw_engine *engine;
    pw_metric *created, *finished, *pulls, *node_duration;
    pw_metric *tasks, *nodes, *in_flight, *in_flight_max, *queue, *build;
    pw_metric *cl_nodes, *cl_ready, *cl_in_flight, *cl_reachable; /* by cluster (docs/multicluster.md) */
};

static double doc_time_s(const json_t *o, const char *key)
{
    time_t t;
    const char *s = json_string_value(json_object_get(o, key));
    return s && pw_time_parse_rfc3339(s, &t) == 0 ? (double)t : -1;
}

/* reason as a label value: itself when a short word of letters and digits, "none" when empty,
 * else "Other" (a message in the reason field must not make a series per message). */
static const char *reason_label(const char *reason, char *buf, size_t n)
{
    if (!reason || !*reason)
        return "none";
    size_t len = strlen(reason);
    if (len >= n || len > REASON_MAX)
        return "Other";
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)reason[i]))
            return "Other";
    memcpy(buf, reason, len + 1);
    return buf;
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : dflt;
}

static void observe_node(pw_api_metrics *m, const json_t *node)
{
    const char *cluster = str_or(node, "cluster", PW_CLUSTER_DEFAULT); /* the default cluster's have none */
    const char *mode = str_or(node, "mode", "none"); /* none: decided at selection, never dispatched */
    const char *state = str_or(node, "state", "unknown");
    double longest = -1;
    size_t i;
    json_t *img;
    json_array_foreach(json_object_get(node, "images"), i, img)
    {
        char rb[REASON_MAX + 1];
        const char *result = str_or(img, "state", "unknown");
        const char *reason = reason_label(json_string_value(json_object_get(img, "reason")), rb, sizeof rb);
        pw_metric_add(m->pulls, (const char *[]){cluster, mode, result, reason}, 1);
        double d = json_number_value(json_object_get(img, "durationSeconds"));
        if (strcmp(result, "succeeded") == 0 && d > longest)
            longest = d;
    }
    if (strcmp(mode, "none") == 0)
        return;
    if (strcmp(state, "succeeded") != 0 || longest < 0) {
        double s = doc_time_s(node, "startedAt"), f = doc_time_s(node, "finishedAt");
        longest = s >= 0 && f >= s ? f - s : -1;
    }
    if (longest >= 0)
        pw_metric_observe(m->node_duration, (const char *[]){cluster, mode, state}, longest);
}

void pw_api_metrics_observe(pw_api_metrics *m, enum pw_engine_change what, const json_t *doc)
{
    if (!m)
        return;
    if (what == PW_ENGINE_NODE_DONE) {
        observe_node(m, doc);
        return;
    }
    const char *status = json_string_value(json_object_get(doc, "status"));
    if (status && strcmp(status, "pending") == 0)
        pw_metric_add(m->created, NULL, 1); /* a task is published pending only at its creation */
    else if (pw_store_status_final(status))
        pw_metric_add(m->finished, (const char *[]){status}, 1);
}

static void collect(void *arg)
{
    pw_api_metrics *m = arg;
    struct pw_engine_stats st;
    pw_engine_stats(m->engine, &st);
    pw_metric_set(m->tasks, (const char *[]){"pending"}, (double)st.tasks_pending);
    pw_metric_set(m->tasks, (const char *[]){"running"}, (double)st.tasks_running);
    pw_metric_set(m->queue, NULL, (double)st.tasks_pending);
    /* per cluster, rebuilt at each scrape so a removed cluster leaves */
    struct pw_engine_cluster_stats *cs = NULL;
    size_t n_cs = pw_engine_cluster_stats(m->engine, &cs);
    pw_metric *fams[] = {m->nodes,   m->in_flight, m->in_flight_max, m->cl_nodes,
                         m->cl_ready, m->cl_in_flight, m->cl_reachable};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++)
        pw_metric_clear(fams[i]);
    for (size_t k = 0; k < n_cs; k++) {
        const char *name = cs[k].name;
        for (size_t i = 0; i < PW_NODE_STATE_COUNT; i++)
            pw_metric_set(m->nodes, (const char *[]){name, pw_node_state_names[i]}, (double)cs[k].nodes[i]);
        pw_metric_set(m->in_flight, (const char *[]){name}, (double)cs[k].nodes[PW_NODE_RUNNING]);
        pw_metric_set(m->in_flight_max, (const char *[]){name}, (double)cs[k].max_nodes_in_flight);
    }
    free(cs);
    json_t *cls = pw_engine_clusters(m->engine);
    size_t i;
    const json_t *c;
    json_array_foreach(cls, i, c)
    {
        const char *name[] = {json_string_value(json_object_get(c, "name"))};
        pw_metric_set(m->cl_nodes, name, (double)json_integer_value(json_object_get(c, "nodes")));
        pw_metric_set(m->cl_ready, name, (double)json_integer_value(json_object_get(c, "readyNodes")));
        pw_metric_set(m->cl_in_flight, name, (double)json_integer_value(json_object_get(c, "nodesInFlight")));
        pw_metric_set(m->cl_reachable, name, json_is_true(json_object_get(c, "reachable")) ? 1 : 0);
    }
    json_decref(cls);
}

pw_api_metrics *pw_api_metrics_new(pw_engine *engine, const char *version)
{
    pw_api_metrics *m = pw_xcalloc(1, sizeof *m);
    m->engine = engine;
    pw_metrics *r = pw_metrics_default();
    m->build = pw_metrics_gauge(r, "prewarm_build_info", "Always 1: the version of this prewarmd.", "version");
    pw_metric_set(m->build, (const char *[]){version}, 1);
    m->created = pw_metrics_counter(r, "prewarm_tasks_created_total", "Tasks created.", NULL);
    m->finished = pw_metrics_counter(r, "prewarm_tasks_finished_total", "Tasks finished, by outcome.", "outcome");
    m->tasks = pw_metrics_gauge(r, "prewarm_tasks", "Unfinished tasks, by status.", "status");
    m->nodes = pw_metrics_gauge(r, "prewarm_nodes", "Nodes of the unfinished tasks, by cluster and state.", "cluster,state");
    m->in_flight = pw_metrics_gauge(r, "prewarm_nodes_in_flight", "Nodes with a pull under way, across tasks, by cluster.",
                                    "cluster");
    m->in_flight_max = pw_metrics_gauge(r, "prewarm_nodes_in_flight_max",
                                        "The cap on nodes in flight in the cluster (--max-nodes-in-flight, or the "
                                        "cluster's own when lower).",
                                        "cluster");
    m->queue = pw_metrics_gauge(r, "prewarm_task_queue_length", "Tasks queued, waiting to be admitted.", NULL);
    m->cl_nodes = pw_metrics_gauge(r, "prewarm_cluster_nodes", "Nodes in the cluster's node cache.", "cluster");
    m->cl_ready = pw_metrics_gauge(r, "prewarm_cluster_ready_nodes", "Ready nodes in the cluster's node cache.", "cluster");
    m->cl_in_flight = pw_metrics_gauge(r, "prewarm_cluster_nodes_in_flight", "Nodes with a pull under way in the cluster.",
                                       "cluster");
    m->cl_reachable = pw_metrics_gauge(r, "prewarm_cluster_reachable",
                                       "1 while the cluster answers its probe (GET /version), else 0.", "cluster");
    m->pulls = pw_metrics_counter(r, "prewarm_image_pulls_total",
                                  "Image results of finished nodes, by cluster, mode (job, agent; none: decided "
                                  "at selection), result (the image's state) and reason.",
                                  "cluster,mode,result,reason");
    m->node_duration = pw_metrics_histogram(r, "prewarm_node_pull_duration_seconds",
                                            "Time from a node's dispatch to its final result, by cluster, mode and "
                                            "state.",
                                            "cluster,mode,state", pw_metrics_duration_buckets,
                                            pw_metrics_n_duration_buckets);
    pw_metric_add(m->created, NULL, 0);
    for (size_t i = PW_TASK_SUCCEEDED; i <= PW_TASK_CANCELLED; i++)
        pw_metric_add(m->finished, (const char *[]){pw_task_status_names[i]}, 0);
    pw_metrics_process_register();
    pw_metrics_add_collector(r, collect, m);
    return m;
}

void pw_api_metrics_free(pw_api_metrics *m)
{
    if (!m)
        return;
    pw_metrics_remove_collector(pw_metrics_default(), collect, m);
    free(m);
}

void pw_api_h_metrics(pw_http_req *req, void *ctx)
{
    (void)ctx;
    size_t len;
    char *text = pw_metrics_render(pw_metrics_default(), &len);
    pw_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}
