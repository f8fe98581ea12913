/* api.c: the REST API v1 handlers and their route table. Each handler is parse -> validate -> call
 * the engine -> encode; errors go out in the §3 error shape. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/err.h"
#include "base/mem.h"
#include "base/sv.h"
#include "store/store.h"
#include "webhook/webhook.h"

#define MAX_LIST_LIMIT 10000
/* A list without ?limit= gets one page of this many, with a continue token for the rest, so one
 * request never has to encode every task (tens of thousands after a week) or every node. */
#define DEFAULT_LIST_LIMIT 500


static void reply_error(pw_http_req *req, int code, const char *message, const char *field)
{
    pw_http_reply_json(req, pw_err_http_status(code), pw_api_error(code, message, field));
}

static pw_engine *engine_of(void *ctx)
{
    return ((struct pw_api_ctx *)ctx)->engine;
}

/* Reads ?<key>= (one of choices), ?limit= and ?continue=. 0, or PW_EINVAL (the 400 already sent). */
static int list_params(pw_http_req *req, const char *key, const char *const *choices, const char **filter,
                       size_t *limit, const char **cont)
{
    *filter = pw_http_req_query(req, key);
    if (*filter && !**filter)
        *filter = NULL;
    if (*filter) {
        size_t i = 0;
        while (choices[i] && strcmp(choices[i], *filter) != 0)
            i++;
        if (!choices[i]) {
            char *msg = pw_xasprintf("%s: unknown value \"%s\"", key, *filter);
            reply_error(req, PW_EINVAL, msg, key);
            free(msg);
            return PW_EINVAL;
        }
    }
    const char *l = pw_http_req_query(req, "limit");
    long lv = DEFAULT_LIST_LIMIT;
    if (l && *l && pw_parse_long(l, 1, MAX_LIST_LIMIT, &lv) != 0) {
        reply_error(req, PW_EINVAL, "limit: must be an integer between 1 and 10000", "limit");
        return PW_EINVAL;
    }
    *limit = (size_t)lv;
    *cont = pw_http_req_query(req, "continue");
    return 0;
}

static void h_healthz(pw_http_req *req, void *ctx)
{
    (void)ctx;
    pw_http_reply(req, 200, NULL, "ok", 2);
}

static void h_readyz(pw_http_req *req, void *ctx)
{
    const char *why = NULL;
    if (pw_engine_ready(engine_of(ctx), &why))
        pw_http_reply(req, 200, NULL, "ok", 2);
    else
        reply_error(req, PW_EUNAVAIL, why, NULL);
}

/* Unfinished (pending, running) tasks user created. */
static size_t unfinished_of(pw_engine *e, const char *user)
{
    static const char *const states[] = {"pending", "running"};
    size_t n = 0;
    for (size_t s = 0; s < 2; s++) {
        json_t *out = NULL;
        if (pw_engine_list_tasks(e, states[s], 0, NULL, &out) != 0)
            continue;
        size_t i;
        const json_t *t;
        json_array_foreach(json_object_get(out, "items"), i, t) {
            const char *by = json_string_value(json_object_get(t, "createdBy"));
            n += by && strcmp(by, user) == 0;
        }
        json_decref(out);
    }
    return n;
}

/* --max-tasks-per-user: 0 when user may create one more, else the 429 already sent. h_create holds
 * quota_mu from this count to the end of its submit, so two creates racing cannot both take the last
 * slot (creates are serialised only while a limit is set). */
static pthread_mutex_t quota_mu = PTHREAD_MUTEX_INITIALIZER;

static int check_task_quota(pw_http_req *req, struct pw_api_ctx *c, const char *user)
{
    if (c->max_tasks_per_user <= 0 || !user)
        return 0;
    size_t have = unfinished_of(c->engine, user);
    if (have < (size_t)c->max_tasks_per_user)
        return 0;
    char *msg = pw_xasprintf("user \"%s\" has %zu unfinished tasks, the most allowed (--max-tasks-per-user); "
                             "wait for one to finish or cancel one",
                             user, have);
    pw_http_add_header(req, "Retry-After", "30");
    reply_error(req, PW_ETOOMANY, msg, NULL);
    free(msg);
    return PW_ETOOMANY;
}

/* The server's webhook URL policy (--webhook-allow-private) on a task's webhooks: 0, or the 400
 * naming the field already sent. */
static int check_webhook_policy(pw_http_req *req, struct pw_api_ctx *c, const struct pw_taskspec *spec)
{
    if (!c->webhook || pw_webhook_allows_private(c->webhook))
        return 0;
    struct pw_field_errors errs = {.n = 0};
    size_t i;
    const json_t *h;
    json_array_foreach(spec->webhooks, i, h) {
        char *why = NULL;
        if (pw_webhook_url_check(json_string_value(json_object_get(h, "url")), false, &why) != 0) {
            char f[48];
            snprintf(f, sizeof f, "webhooks[%zu].url", i);
            pw_field_errors_add(&errs, f, "%s", why);
        }
        free(why);
    }
    if (errs.n == 0)
        return 0;
    pw_http_reply_json(req, 400, pw_api_field_errors(&errs));
    return PW_EINVAL;
}

static void h_create(pw_http_req *req, void *ctx)
{
    struct pw_api_ctx *c = ctx;
    const char *user = pw_api_req_user(req);
    size_t len;
    const char *body = pw_http_req_body(req, &len);
    struct pw_taskspec spec;
    json_t *err = NULL;
    int rc = pw_api_parse_create(pw_http_req_header(req, "Content-Type"), body, len, &spec, &err);
    if (rc != 0) {
        pw_http_reply_json(req, pw_err_http_status(rc), err);
        return;
    }
    if (check_webhook_policy(req, c, &spec) != 0) {
        pw_taskspec_fini(&spec);
        return;
    }
    for (size_t i = 0; i < spec.n_clusters; i++) {
        if (pw_engine_cluster_known(engine_of(ctx), spec.clusters[i]))
            continue;
        char field[64], *msg = pw_xasprintf("no cluster named \"%s\" is configured (GET /api/v1/clusters)",
                                            spec.clusters[i]);
        snprintf(field, sizeof field, "clusters[%zu]", i);
        reply_error(req, PW_EINVAL, msg, field);
        free(msg);
        pw_taskspec_fini(&spec);
        return;
    }
    if (user)
        spec.created_by = pw_xstrdup(user);
    bool quota = c->max_tasks_per_user > 0 && user;
    if (quota)
        pthread_mutex_lock(&quota_mu);
    json_t *task = NULL;
    bool refused = check_task_quota(req, c, user) != 0; /* the 429 is sent */
    if (!refused)
        rc = pw_engine_submit(engine_of(ctx), &spec, &task);
    if (quota)
        pthread_mutex_unlock(&quota_mu);
    pw_taskspec_fini(&spec);
    if (refused)
        return;
    if (rc != 0) {
        /* the store failed (disk full, I/O error, busy): nothing was created, retrying may pass */
        reply_error(req, PW_EUNAVAIL, "the task could not be stored; retry later", NULL);
        return;
    }
    pw_api_req_set_task(req, json_string_value(json_object_get(task, "id")));
    char *loc = pw_xasprintf("/api/v1/tasks/%s", json_string_value(json_object_get(task, "id")));
    pw_http_add_header(req, "Location", loc);
    free(loc);
    pw_http_reply_json(req, 201, task);
}

static void h_list(pw_http_req *req, void *ctx)
{
    const char *status, *cont;
    size_t limit;
    if (list_params(req, "status", pw_task_status_names, &status, &limit, &cont) != 0)
        return;
    json_t *out = NULL;
    int rc = pw_engine_list_tasks(engine_of(ctx), status, limit, cont, &out);
    if (rc == PW_EINVAL)
        reply_error(req, rc, "continue: invalid token", "continue");
    else if (rc != 0)
        reply_error(req, rc, NULL, NULL);
    else
        pw_http_reply_json(req, 200, out);
}

static void reply_task_result(pw_http_req *req, int rc, json_t *task, const char *id)
{
    if (rc == 0) {
        pw_http_reply_json(req, 200, task);
        return;
    }
    char *msg = rc == PW_ENOTFOUND   ? pw_xasprintf("task %s not found", id)
                : rc == PW_ECONFLICT ? pw_xasprintf("task %s already finished; only pending or running tasks "
                                                    "can be cancelled",
                                                    id)
                                     : NULL;
    reply_error(req, rc, msg, NULL);
    free(msg);
}

static void h_get(pw_http_req *req, void *ctx)
{
    const char *id = pw_http_req_param(req, "id");
    json_t *task = NULL;
    int rc = pw_engine_get_task(engine_of(ctx), id, &task);
    if (rc == 0)
        pw_webhook_annotate(((struct pw_api_ctx *)ctx)->webhook, task);
    reply_task_result(req, rc, task, id);
}

static void h_cancel(pw_http_req *req, void *ctx)
{
    const char *id = pw_http_req_param(req, "id");
    json_t *task = NULL;
    int rc = pw_engine_cancel(engine_of(ctx), id, &task);
    reply_task_result(req, rc, task, id);
}

static void h_nodes(pw_http_req *req, void *ctx)
{
    const char *id = pw_http_req_param(req, "id");
    const char *state, *cont;
    size_t limit;
    if (list_params(req, "state", pw_node_state_names, &state, &limit, &cont) != 0)
        return;
    const char *cluster = pw_http_req_query(req, "cluster");
    json_t *out = NULL;
    int rc = cluster && *cluster ? pw_engine_list_cluster_nodes(engine_of(ctx), id, cluster, state, limit, cont, &out)
                                 : pw_engine_list_nodes(engine_of(ctx), id, state, limit, cont, &out);
    if (rc == 0) {
        pw_http_reply_json(req, 200, out);
        return;
    }
    if (rc == PW_EINVAL) {
        reply_error(req, rc, "continue: invalid token", "continue");
        return;
    }
    char *msg = rc == PW_ENOTFOUND ? pw_xasprintf("task %s not found", id) : NULL;
    reply_error(req, rc, msg, NULL);
    free(msg);
}

static void h_clusters(pw_http_req *req, void *ctx)
{
    struct pw_api_ctx *c = ctx;
    json_t *out;
    if (c->clusters) {
        out = c->clusters(c->clusters_arg);
    } else {
        out = json_object();
        json_object_set_new(out, "items", pw_engine_clusters(c->engine));
    }
    pw_http_reply_json(req, 200, out);
}

const struct pw_http_route pw_api_routes[] = {
    {"GET", "/healthz", h_healthz},
    {"GET", "/readyz", h_readyz},
    {"GET", "/openapi.json", pw_api_h_openapi},
    {"GET", "/api/v1/whoami", pw_api_h_whoami},
    {"GET", "/api/v1/leader", pw_api_h_leader},
    {"POST", "/api/v1/tasks", h_create},
    {"GET", "/api/v1/tasks", h_list},
    {"GET", "/api/v1/tasks/{id}", h_get},
    {"DELETE", "/api/v1/tasks/{id}", h_cancel},
    {"GET", "/api/v1/tasks/{id}/nodes", h_nodes},
    {"GET", "/api/v1/tasks/{id}/events", pw_api_h_task_events},
    {"GET", "/api/v1/events", pw_api_h_events},
    {"GET", "/metrics", pw_api_h_metrics},
    {"GET", "/api/v1/agents", pw_api_h_agents},
    {"POST", "/api/v1/policies", pw_api_h_policy_create},
    {"GET", "/api/v1/policies", pw_api_h_policy_list},
    {"GET", "/api/v1/policies/{id}", pw_api_h_policy_get},
    {"PUT", "/api/v1/policies/{id}", pw_api_h_policy_put},
    {"DELETE", "/api/v1/policies/{id}", pw_api_h_policy_delete},
    {"GET", "/api/v1/predictions", pw_api_h_predictions},
    {"GET", "/api/v1/clusters", h_clusters},
    {"POST", "/agent/v1/sync", pw_api_h_agent_sync},
    {"POST", "/agent/v1/clusters/{cluster}/sync", pw_api_h_agent_sync},
    {"GET", "/", pw_api_h_web},
    {"GET", "/web/**", pw_api_h_web},
    {NULL, NULL, NULL},
};
