/* api.c: kubesim's Kubernetes API server: start and stop, authentication, the route table, the
 * resource registry (built-in rows from api_rest.c plus rows made from CRDs), discovery documents,
 * Status bodies, and the test-control endpoints /sim/v1/stats, /sim/v1/faults and /sim/v1/tokens. The
 * REST verbs live in api_rest.c, watches in api_watch.c, deletion and garbage collection in api_gc.c,
 * the ServiceAccount token subresource in api_token.c. */
#include "sim/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/file.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"
#include "sim/podstats.h"

/* ---- small helpers ---- */

void sim_api_uid(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)rand();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void sim_api_now_rfc3339(char out[32])
{
    pw_time_rfc3339(time(NULL), out);
}

const char *sim_api_qres(const struct rdef *rd, char *buf, size_t n)
{
    if (*rd->group)
        snprintf(buf, n, "%s.%s", rd->plural, rd->group);
    else
        snprintf(buf, n, "%s", rd->plural);
    return buf;
}

const char *sim_api_gv(const struct rdef *rd, char *buf, size_t n)
{
    if (*rd->group)
        snprintf(buf, n, "%s/%s", rd->group, rd->version);
    else
        snprintf(buf, n, "%s", rd->version);
    return buf;
}

json_t *sim_api_status_obj(int code, const char *reason, const char *message, json_t *details)
{
    json_t *st = json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion", "v1", "metadata",
                           "status", code < 400 ? "Success" : "Failure", "message", message, "reason", reason,
                           "code", code);
    if (details)
        json_object_set_new(st, "details", details);
    return st;
}

void sim_api_status(pw_http_req *req, int code, const char *reason, const char *message, json_t *details)
{
    pw_http_reply_json(req, code, sim_api_status_obj(code, reason, message, details));
}

void sim_api_not_found(pw_http_req *req, const struct rdef *rd, const char *name)
{
    char q[160];
    char *msg = pw_xasprintf("%s \"%s\" not found", sim_api_qres(rd, q, sizeof(q)), name);
    sim_api_status(req, 404, "NotFound", msg, json_pack("{s:s, s:s, s:s}", "name", name, "group", rd->group, "kind", rd->plural));
    free(msg);
}

/* ---- the registry ---- */

static const struct rdef *find_locked(struct sim_api *api, const char *group, const char *version, const char *plural)
{
    for (const struct rdef *rd = sim_api_builtin; rd->plural; rd++)
        if (strcmp(rd->group, group) == 0 && strcmp(rd->version, version) == 0 && strcmp(rd->plural, plural) == 0)
            return rd;
    for (size_t i = 0; i < api->ncrds; i++) {
        const struct rdef *rd = api->crds[i];
        if (!rd->removed && strcmp(rd->group, group) == 0 && strcmp(rd->version, version) == 0 &&
            strcmp(rd->plural, plural) == 0)
            return rd;
    }
    return NULL;
}

const struct rdef *sim_api_find(struct sim_api *api, const char *group, const char *version, const char *plural)
{
    pthread_mutex_lock(&api->mu);
    const struct rdef *rd = find_locked(api, group, version, plural);
    pthread_mutex_unlock(&api->mu);
    return rd;
}

const struct rdef *sim_api_find_key(struct sim_api *api, const char *key)
{
    for (const struct rdef *rd = sim_api_builtin; rd->plural; rd++)
        if (strcmp(rd->store_key, key) == 0)
            return rd;
    const struct rdef *found = NULL;
    pthread_mutex_lock(&api->mu);
    for (size_t i = 0; i < api->ncrds && !found; i++)
        if (!api->crds[i]->removed && strcmp(api->crds[i]->store_key, key) == 0)
            found = api->crds[i];
    pthread_mutex_unlock(&api->mu);
    return found;
}

void sim_api_each(struct sim_api *api, void (*fn)(const struct rdef *rd, void *arg), void *arg)
{
    for (const struct rdef *rd = sim_api_builtin; rd->plural; rd++)
        fn(rd, arg);
    pthread_mutex_lock(&api->mu);
    size_t n = api->ncrds;
    const struct rdef **rows = pw_xmalloc((n + 1) * sizeof(*rows));
    for (size_t i = 0; i < n; i++)
        rows[i] = api->crds[i];
    pthread_mutex_unlock(&api->mu);
    for (size_t i = 0; i < n; i++)
        if (!rows[i]->removed)
            fn(rows[i], arg);
    free(rows);
}

static char *own_str(struct rdef *rd, int slot, const char *s)
{
    rd->owned[slot] = pw_xstrdup(s ? s : "");
    return rd->owned[slot];
}

void sim_api_crd_changed(struct sim_api *api, const json_t *crd, bool gone)
{
    json_t *spec = json_object_get(crd, "spec");
    json_t *names = json_object_get(spec, "names");
    const char *group = json_string_value(json_object_get(spec, "group"));
    const char *plural = json_string_value(json_object_get(names, "plural"));
    if (!group || !plural)
        return;
    pthread_mutex_lock(&api->mu);
    for (size_t i = 0; i < api->ncrds; i++) {
        struct rdef *rd = api->crds[i];
        if (strcmp(rd->group, group) == 0 && strcmp(rd->plural, plural) == 0)
            rd->removed = true;
    }
    if (!gone) {
        json_t *versions = json_object_get(spec, "versions");
        size_t i;
        json_t *v;
        json_array_foreach(versions, i, v)
        {
            if (json_is_false(json_object_get(v, "served")))
                continue;
            struct rdef *rd = pw_xcalloc(1, sizeof(*rd));
            rd->group = own_str(rd, 0, group);
            rd->version = own_str(rd, 1, json_string_value(json_object_get(v, "name")));
            rd->plural = own_str(rd, 2, plural);
            const char *singular = json_string_value(json_object_get(names, "singular"));
            const char *kind = json_string_value(json_object_get(names, "kind"));
            rd->singular = own_str(rd, 3, singular ? singular : "");
            rd->kind = own_str(rd, 4, kind ? kind : plural);
            char sn[512] = "";
            size_t j;
            json_t *s;
            json_array_foreach(json_object_get(names, "shortNames"), j, s)
            {
                if (*sn)
                    strncat(sn, ",", sizeof(sn) - strlen(sn) - 1);
                strncat(sn, json_string_value(s) ? json_string_value(s) : "", sizeof(sn) - strlen(sn) - 1);
            }
            rd->short_names = own_str(rd, 5, sn);
            char *key = pw_xasprintf("%s.%s", plural, group);
            rd->store_key = own_str(rd, 6, key);
            free(key);
            const char *scope = json_string_value(json_object_get(spec, "scope"));
            rd->namespaced = !scope || strcmp(scope, "Cluster") != 0;
            rd->has_status = json_object_get(json_object_get(v, "subresources"), "status") != NULL;
            rd->verbs = V_ALL;
            rd->custom = true;
            api->crds = pw_xrealloc(api->crds, (api->ncrds + 1) * sizeof(*api->crds));
            api->crds[api->ncrds++] = rd;
        }
    }
    pthread_mutex_unlock(&api->mu);
}

/* ---- stats ---- */

void sim_api_stat(struct sim_api *api, const char *verb, const char *resource, int code)
{
    pthread_mutex_lock(&api->mu);
    struct stat_row *row = NULL;
    for (size_t i = 0; i < api->nstats; i++) {
        struct stat_row *s = &api->stats[i];
        if (s->code == code && strcmp(s->verb, verb) == 0 && strcmp(s->resource, resource) == 0) {
            row = s;
            break;
        }
    }
    if (!row) {
        if (api->nstats == api->capstats) {
            api->capstats = api->capstats ? api->capstats * 2 : 32;
            api->stats = pw_xrealloc(api->stats, api->capstats * sizeof(*api->stats));
        }
        row = &api->stats[api->nstats++];
        memset(row, 0, sizeof(*row));
        snprintf(row->verb, sizeof(row->verb), "%s", verb);
        snprintf(row->resource, sizeof(row->resource), "%s", resource);
        row->code = code;
    }
    row->count++;
    pthread_mutex_unlock(&api->mu);
}

static void h_stats(pw_http_req *req, struct sim_api *api)
{
    json_t *rows = json_array();
    pthread_mutex_lock(&api->mu);
    for (size_t i = 0; i < api->nstats; i++) {
        struct stat_row *s = &api->stats[i];
        json_array_append_new(rows, json_pack("{s:s, s:s, s:i, s:I}", "verb", s->verb, "resource", s->resource,
                                              "code", s->code, "count", (json_int_t)s->count));
    }
    json_t *w = json_pack("{s:I, s:I}", "open", (json_int_t)api->watches_open, "total", (json_int_t)api->watches_total);
    json_t *clients = api->clients ? json_deep_copy(api->clients) : json_object();
    pthread_mutex_unlock(&api->mu);
    json_t *out = json_pack("{s:o, s:o, s:o}", "requests", rows, "watches", w, "clients", clients);
    sim_podstats_add(api->sim, req, out); /* the workload pods' figures, per pool */
    pw_http_reply_json(req, 200, out);
}

/* ---- faults ---- */

static void h_faults(pw_http_req *req, struct sim_api *api)
{
    const char *method = pw_http_req_method(req);
    if (strcmp(method, "GET") == 0) {
        pthread_mutex_lock(&api->mu);
        json_t *doc = api->faults_json ? json_deep_copy(api->faults_json) : json_object();
        pthread_mutex_unlock(&api->mu);
        pw_http_reply_json(req, 200, doc);
        return;
    }
    if (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0) {
        sim_api_status(req, 405, "MethodNotAllowed", "use GET or POST", NULL);
        return;
    }
    size_t len;
    const char *body = pw_http_req_body(req, &len);
    json_error_t jerr;
    json_t *doc = len ? json_loadb(body, len, 0, &jerr) : json_object();
    if (!json_is_object(doc)) {
        json_decref(doc);
        sim_api_status(req, 400, "BadRequest", "the body must be a JSON object", NULL);
        return;
    }
    json_t *errors = json_object_get(doc, "errors");
    size_t n = json_array_size(errors);
    struct fault_rule *rules = pw_xcalloc(n ? n : 1, sizeof(*rules));
    size_t i;
    json_t *e;
    json_array_foreach(errors, i, e)
    {
        const char *verb = json_string_value(json_object_get(e, "verb"));
        const char *res = json_string_value(json_object_get(e, "resource"));
        snprintf(rules[i].verb, sizeof(rules[i].verb), "%s", verb ? verb : "");
        snprintf(rules[i].resource, sizeof(rules[i].resource), "%s", res ? res : "");
        rules[i].code = (int)json_integer_value(json_object_get(e, "code"));
        const char *ua = json_string_value(json_object_get(e, "userAgent"));
        snprintf(rules[i].user_agent, sizeof(rules[i].user_agent), "%s", ua ? ua : "");
        rules[i].rate = json_number_value(json_object_get(e, "rate"));
        if ((rules[i].code != 500 && rules[i].code != 429) || rules[i].rate < 0 || rules[i].rate > 1) {
            free(rules);
            json_decref(doc);
            sim_api_status(req, 400, "BadRequest", "errors[]: code must be 500 or 429 and rate in [0,1]", NULL);
            return;
        }
    }
    pthread_mutex_lock(&api->mu);
    free(api->faults);
    api->faults = rules;
    api->nfaults = n;
    api->latency_ms = (long)json_integer_value(json_object_get(doc, "latencyMs"));
    api->drop_watches_s = (long)json_integer_value(json_object_get(doc, "dropWatchesEverySeconds"));
    json_decref(api->faults_json);
    api->faults_json = json_incref(doc);
    if (json_is_true(json_object_get(doc, "compact")))
        api->compact_rv = sim_store_rv(api->sim->store);
    pthread_mutex_unlock(&api->mu);
    if (json_is_true(json_object_get(doc, "compact")))
        sim_store_compact(api->sim->store);
    pw_http_reply_json(req, 200, doc);
}

static double rand01(void)
{
    unsigned int r;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (unsigned int)rand();
    return (double)r / 4294967296.0;
}

/* Applies an injected fault: true when it replied. */
static bool fault_apply(struct sim_api *api, pw_http_req *req, const char *verb, const char *resource)
{
    int code = 0;
    long latency;
    const char *ua = pw_http_req_header(req, "User-Agent");
    if (!ua)
        ua = "";
    pthread_mutex_lock(&api->mu);
    latency = api->latency_ms;
    if (strcmp(verb, "get") != 0 && strcmp(verb, "list") != 0 && strcmp(verb, "watch") != 0) {
        /* every write attempt by client (a test tells replicas apart by their User-Agent) */
        if (!api->clients)
            api->clients = json_object();
        json_t *c = json_object_get(api->clients, ua);
        if (!c)
            json_object_set_new(api->clients, ua, c = json_object());
        char key[140];
        snprintf(key, sizeof(key), "%s %s", verb, resource);
        json_object_set_new(c, key, json_integer(json_integer_value(json_object_get(c, key)) + 1));
    }
    for (size_t i = 0; i < api->nfaults && !code; i++) {
        struct fault_rule *f = &api->faults[i];
        if (*f->user_agent && !strstr(ua, f->user_agent))
            continue;
        if (*f->verb && strcmp(f->verb, "*") != 0 && strcmp(f->verb, verb) != 0)
            continue;
        if (*f->resource && strcmp(f->resource, "*") != 0 && strcmp(f->resource, resource) != 0)
            continue;
        if (rand01() < f->rate)
            code = f->code;
    }
    pthread_mutex_unlock(&api->mu);
    if (latency > 0 && latency < 60000)
        pw_clock_sleep_ms(latency);
    if (!code)
        return false;
    sim_api_stat(api, verb, resource, code);
    if (code == 429) {
        pw_http_add_header(req, "Retry-After", "1");
        sim_api_status(req, 429, "TooManyRequests",
                   "the server has received too many requests and has asked us to try again later",
                   json_pack("{s:[{s:s, s:s}], s:i}", "causes", "reason", "ServerTimeout", "message",
                             "the server has received too many requests and has asked us to try again later",
                             "retryAfterSeconds", 1));
    } else {
        pw_http_add_header(req, "Retry-After", "1");
        sim_api_status(req, 500, "InternalError", "Internal error occurred: injected fault (kubesim /sim/v1/faults)",
                   json_pack("{s:[{s:s}], s:i}", "causes", "message", "injected fault", "retryAfterSeconds", 1));
    }
    return true;
}

/* ---- authentication ---- */

static bool check_auth(struct sim_api *api, pw_http_req *req)
{
    json_t *user = sim_api_authenticate(api, req);
    if (user) {
        json_decref(user);
        return true;
    }
    sim_api_status(req, 401, "Unauthorized", "Unauthorized", NULL);
    return false;
}

/* Authentication, impersonation and (with --enforce-rbac) authorization of a Kubernetes path: the
 * caller's identity (caller decrefs), or NULL when it replied 401/403. */
static json_t *check_access(struct sim_api *api, pw_http_req *req)
{
    json_t *user = sim_api_authenticate(api, req);
    if (!user) {
        sim_api_status(req, 401, "Unauthorized", "Unauthorized", NULL);
        return NULL;
    }
    if (!sim_api_impersonate(api, req, &user) || !sim_api_authorize_request(api, req, user)) {
        json_decref(user);
        return NULL;
    }
    return user;
}

/* ---- discovery ---- */

static const char *const VERB_NAMES[] = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"};

struct gv_collect {
    const char *group, *version;
    bool any_group; /* collecting groups for /apis */
    json_t *out;
};

static void add_resource_rows(const struct rdef *rd, void *arg)
{
    struct gv_collect *c = arg;
    if (strcmp(rd->group, c->group) != 0 || strcmp(rd->version, c->version) != 0)
        return;
    json_t *verbs = json_array();
    for (int i = 0; i < 8; i++)
        if (rd->verbs & (1u << i))
            json_array_append_new(verbs, json_string(VERB_NAMES[i]));
    json_t *row = json_pack("{s:s, s:s, s:b, s:s, s:o}", "name", rd->plural, "singularName", rd->singular, "namespaced",
                            rd->namespaced, "kind", rd->kind, "verbs", verbs);
    if (*rd->short_names) {
        json_t *sn = json_array();
        char *copy = pw_xstrdup(rd->short_names), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(sn, json_string(t));
        free(copy);
        json_object_set_new(row, "shortNames", sn);
    }
    if (strcmp(rd->plural, "pods") == 0 || strcmp(rd->plural, "jobs") == 0 || strcmp(rd->plural, "daemonsets") == 0)
        json_object_set_new(row, "categories", json_pack("[s]", "all"));
    json_array_append_new(c->out, row);
    if (strcmp(rd->store_key, "pods") == 0)
        json_array_append_new(c->out, json_pack("{s:s, s:s, s:b, s:s, s:[s]}", "name", "pods/log", "singularName", "",
                                                "namespaced", true, "kind", "Pod", "verbs", "get"));
    if (strcmp(rd->store_key, "serviceaccounts") == 0)
        json_array_append_new(c->out, json_pack("{s:s, s:s, s:b, s:s, s:s, s:s, s:[s]}", "name",
                                                "serviceaccounts/token", "singularName", "", "namespaced", true,
                                                "group", "authentication.k8s.io", "version", "v1", "kind",
                                                "TokenRequest", "verbs", "create"));
    if (rd->has_status)
        json_array_append_new(c->out, json_pack("{s:s+, s:s, s:b, s:s, s:[sss]}", "name", rd->plural, "/status",
                                                "singularName", "", "namespaced", rd->namespaced, "kind", rd->kind,
                                                "verbs", "get", "patch", "update"));
}

static void add_group(const struct rdef *rd, void *arg)
{
    struct gv_collect *c = arg;
    if (!*rd->group)
        return;
    if (c->group && strcmp(c->group, rd->group) != 0)
        return;
    char gv[256];
    sim_api_gv(rd, gv, sizeof(gv));
    size_t i;
    json_t *g;
    json_array_foreach(c->out, i, g)
    {
        if (strcmp(json_string_value(json_object_get(g, "name")), rd->group) == 0) {
            json_t *vs = json_object_get(g, "versions");
            size_t j;
            json_t *v;
            json_array_foreach(vs, j, v) if (strcmp(json_string_value(json_object_get(v, "version")), rd->version) == 0) return;
            json_array_append_new(vs, json_pack("{s:s, s:s}", "groupVersion", gv, "version", rd->version));
            return;
        }
    }
    json_t *ver = json_pack("{s:s, s:s}", "groupVersion", gv, "version", rd->version);
    json_array_append_new(c->out, json_pack("{s:s, s:s, s:s, s:[O], s:O}", "kind", "APIGroup", "apiVersion", "v1",
                                            "name", rd->group, "versions", ver, "preferredVersion", ver));
    json_decref(ver);
}

static json_t *server_addresses(pw_http_req *req)
{
    const char *host = pw_http_req_header(req, "Host");
    return json_pack("[{s:s, s:s}]", "clientCIDR", "0.0.0.0/0", "serverAddress", host ? host : "127.0.0.1");
}

/* Serves a discovery path (segments after /api or /apis); false when it is not one. */
static bool discovery(struct sim_api *api, pw_http_req *req, bool core, char **seg, int n)
{
    if (strcmp(pw_http_req_method(req), "GET") != 0)
        return false;
    if (core && n == 0) {
        pw_http_reply_json(req, 200, json_pack("{s:s, s:[s], s:o}", "kind", "APIVersions", "versions", "v1",
                                               "serverAddressByClientCIDRs", server_addresses(req)));
        return true;
    }
    if (!core && n <= 1) {
        struct gv_collect c = {n == 1 ? seg[0] : NULL, NULL, true, json_array()};
        sim_api_each(api, add_group, &c);
        if (n == 0) {
            pw_http_reply_json(req, 200, json_pack("{s:s, s:s, s:o}", "kind", "APIGroupList", "apiVersion", "v1",
                                                   "groups", c.out));
        } else if (json_array_size(c.out) == 1) {
            json_t *g = json_incref(json_array_get(c.out, 0));
            json_decref(c.out);
            pw_http_reply_json(req, 200, g);
        } else {
            json_decref(c.out);
            sim_api_status(req, 404, "NotFound", "the server could not find the requested resource", NULL);
        }
        return true;
    }
    if ((core && n == 1) || (!core && n == 2)) {
        struct gv_collect c = {core ? "" : seg[0], core ? seg[0] : seg[1], false, json_array()};
        sim_api_each(api, add_resource_rows, &c);
        if (json_array_size(c.out) == 0) {
            json_decref(c.out);
            sim_api_status(req, 404, "NotFound", "the server could not find the requested resource", NULL);
            return true;
        }
        char gv[256];
        snprintf(gv, sizeof(gv), "%s%s%s", core ? "" : seg[0], core ? "" : "/", core ? seg[0] : seg[1]);
        pw_http_reply_json(req, 200, json_pack("{s:s, s:s, s:s, s:o}", "kind", "APIResourceList", "apiVersion", "v1",
                                               "groupVersion", gv, "resources", c.out));
        return true;
    }
    return false;
}

/* ---- the Kubernetes paths ---- */

#define MAX_SEG 10

static int split_path(char *path, char **seg)
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(path, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == MAX_SEG)
            return -1;
        seg[n++] = t;
    }
    return n;
}

static const char *verb_of(const char *method, bool named, bool watch)
{
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return named ? "get" : watch ? "watch" : "list";
    if (strcmp(method, "POST") == 0)
        return named ? NULL : "create";
    if (strcmp(method, "PUT") == 0)
        return named ? "update" : NULL;
    if (strcmp(method, "PATCH") == 0)
        return named ? "patch" : NULL;
    if (strcmp(method, "DELETE") == 0)
        return named ? "delete" : "deletecollection";
    return NULL;
}

/* GET pods/{name}/log: the model runs no real processes, so a pod's log is empty (but the pod must
 * exist, as for a real server). */
static void pod_log(struct sim_api *api, pw_http_req *req, const char *ns, const char *name)
{
    json_t *pod;
    if (sim_store_get(api->sim->store, "pods", ns, name, &pod) != 0) {
        sim_api_stat(api, "get", "pods/log", 404);
        char *msg = pw_xasprintf("pods \"%s\" not found", name);
        sim_api_status(req, 404, "NotFound", msg, json_pack("{s:s, s:s, s:s}", "name", name, "group", "", "kind", "pods"));
        free(msg);
        return;
    }
    json_decref(pod);
    sim_api_stat(api, "get", "pods/log", 200);
    pw_http_reply(req, 200, "text/plain", "", 0);
}

/* serviceaccounts/{name}/token: POST only (a TokenRequest, api_token.c). */
static void sa_token(struct sim_api *api, struct rreq *r)
{
    const char *method = pw_http_req_method(r->req);
    if (strcmp(method, "POST") != 0) {
        const char *verb = verb_of(method, true, false);
        sim_api_stat(api, verb ? verb : "unknown", "serviceaccounts/token", 405);
        sim_api_status(r->req, 405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource", NULL);
        return;
    }
    r->verb = "create";
    if (!fault_apply(api, r->req, "create", "serviceaccounts/token"))
        sim_api_token_request(r);
}

static void h_k8s_user(struct sim_api *api, pw_http_req *req, const json_t *user);

static void h_k8s(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    struct sim_api *api = sim->api;
    json_t *user = check_access(api, req);
    if (!user)
        return;
    h_k8s_user(api, req, user);
    json_decref(user);
}

static void h_k8s_user(struct sim_api *api, pw_http_req *req, const json_t *user)
{
    char *path = pw_xstrdup(pw_http_req_path(req));
    char *seg[MAX_SEG];
    int n = split_path(path, seg);
    if (n < 1) {
        free(path);
        sim_api_status(req, 404, "NotFound", "the server could not find the requested resource", NULL);
        return;
    }
    bool core = strcmp(seg[0], "api") == 0;
    if (discovery(api, req, core, seg + 1, n - 1)) {
        free(path);
        return;
    }
    /* /api/v1/... or /apis/g/v/... */
    int base = core ? 2 : 3;
    const char *group = core ? "" : (n > 1 ? seg[1] : "");
    const char *version = core ? (n > 1 ? seg[1] : "") : (n > 2 ? seg[2] : "");
    char **s = seg + base;
    int m = n - base;
    struct rreq r = {api, req, NULL, NULL, NULL, NULL, NULL, user};
    const char *plural = NULL;
    if (m >= 1 && m <= 5) {
        if (m >= 3 && strcmp(s[0], "namespaces") == 0 && (m >= 4 || sim_api_find(api, group, version, s[2]))) {
            r.ns = s[1];
            plural = s[2];
            r.name = m >= 4 ? s[3] : NULL;
            r.sub = m == 5 ? s[4] : NULL;
        } else if (m <= 3) {
            plural = s[0];
            r.name = m >= 2 ? s[1] : NULL;
            r.sub = m == 3 ? s[2] : NULL;
        }
    }
    if (plural)
        r.rd = sim_api_find(api, group, version, plural);
    if (r.rd && r.sub && strcmp(r.sub, "log") == 0 && strcmp(r.rd->store_key, "pods") == 0 && r.ns && r.name &&
        strcmp(pw_http_req_method(req), "GET") == 0) {
        pod_log(api, req, r.ns, r.name);
        free(path);
        return;
    }
    if (r.rd && r.sub && strcmp(r.sub, "token") == 0 && strcmp(r.rd->store_key, "serviceaccounts") == 0 && r.ns &&
        r.name) {
        sa_token(api, &r);
        free(path);
        return;
    }
    if (r.rd && r.sub && strcmp(r.sub, "binding") == 0 && strcmp(r.rd->store_key, "pods") == 0 && r.ns && r.name) {
        if (strcmp(pw_http_req_method(req), "POST") != 0 || !fault_apply(api, req, "create", "pods/binding"))
            sim_api_pod_binding(&r);
        free(path);
        return;
    }
    if (!r.rd || (r.sub && (strcmp(r.sub, "status") != 0 || !r.rd->has_status)) || (!r.rd->namespaced && r.ns)) {
        free(path);
        sim_api_status(req, 404, "NotFound", "the server could not find the requested resource", NULL);
        return;
    }
    bool watch = false;
    const char *w = pw_http_req_query(req, "watch");
    if (w && pw_parse_bool(*w ? w : "true", &watch) != 0)
        watch = false;
    r.verb = verb_of(pw_http_req_method(req), r.name != NULL, watch);
    if (!r.verb) {
        free(path);
        sim_api_status(req, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                   NULL);
        return;
    }
    char res[200];
    snprintf(res, sizeof(res), "%s%s%s", r.rd->plural, r.sub ? "/" : "", r.sub ? r.sub : "");
    if (!fault_apply(api, req, r.verb, res))
        sim_api_rest_dispatch(&r);
    free(path);
}

static void h_version(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    json_t *user = check_access(sim->api, req);
    if (!user)
        return;
    json_decref(user);
    pw_http_reply_json(req, 200,
                       json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "major", "1", "minor", "31",
                                 "gitVersion", "v1.31.0-kubesim", "gitCommit", "0000000000000000000000000000000000000000",
                                 "gitTreeState", "clean", "buildDate", "2026-01-01T00:00:00Z", "goVersion", "go1.22.5",
                                 "compiler", "gc", "platform", "linux/amd64"));
}

static void h_openapi(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    json_t *user = check_access(sim->api, req);
    if (!user)
        return;
    json_decref(user);
    pw_http_reply(req, 200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", "", 0);
}

static void h_health(pw_http_req *req, void *ctx)
{
    (void)ctx;
    pw_http_reply(req, 200, "text/plain; charset=utf-8", "ok", 2);
}

static void h_sim_stats(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    if (check_auth(sim->api, req))
        h_stats(req, sim->api);
}

static void h_sim_faults(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    if (check_auth(sim->api, req))
        h_faults(req, sim->api);
}

/* The world's routes, each behind authentication: one wrapper per row index (up to 16 rows). */
#define WORLD_WRAP(i)                                                                                              \
    static void world_wrap_##i(pw_http_req *req, void *ctx)                                                        \
    {                                                                                                              \
        struct sim *sim = ctx;                                                                                     \
        if (check_auth(sim->api, req))                                                                             \
            sim_world_routes[i].fn(req, ctx);                                                                      \
    }
WORLD_WRAP(0)
WORLD_WRAP(1)
WORLD_WRAP(2)
WORLD_WRAP(3)
WORLD_WRAP(4)
WORLD_WRAP(5)
WORLD_WRAP(6)
WORLD_WRAP(7)
WORLD_WRAP(8)
WORLD_WRAP(9)
WORLD_WRAP(10)
WORLD_WRAP(11)
WORLD_WRAP(12)
WORLD_WRAP(13)
WORLD_WRAP(14)
WORLD_WRAP(15)
static const pw_http_handler WORLD_WRAPPERS[16] = {
    world_wrap_0,  world_wrap_1,  world_wrap_2,  world_wrap_3,  world_wrap_4,  world_wrap_5,
    world_wrap_6,  world_wrap_7,  world_wrap_8,  world_wrap_9,  world_wrap_10, world_wrap_11,
    world_wrap_12, world_wrap_13, world_wrap_14, world_wrap_15,
};

struct sim_tokens *sim_api_tokens(struct sim *sim)
{
    return sim->api->tokens;
}

static void h_sim_tokens(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    if (check_auth(sim->api, req))
        sim_api_token_hook(req, sim->api);
}

static const struct pw_http_route API_ROUTES[] = {
    {"GET", "/version", h_version},
    {"GET", "/version/", h_version},
    {"GET", "/openapi/v2", h_openapi},
    {"GET", "/healthz", h_health},
    {"GET", "/livez", h_health},
    {"GET", "/readyz", h_health},
    {"*", "/api", h_k8s},
    {"*", "/api/**", h_k8s},
    {"*", "/apis", h_k8s},
    {"*", "/apis/**", h_k8s},
    {"*", "/sim/v1/stats", h_sim_stats},
    {"*", "/sim/v1/faults", h_sim_faults},
    {"*", "/sim/v1/tokens", h_sim_tokens},
};

static struct pw_http_route *build_routes(void)
{
    size_t nown = sizeof(API_ROUTES) / sizeof(API_ROUTES[0]);
    size_t nworld = 0;
    while (sim_world_routes[nworld].pattern)
        nworld++;
    if (nworld > 16) {
        PW_WARN("kubesim api: only the first 16 world routes are served");
        nworld = 16;
    }
    struct pw_http_route *routes = pw_xcalloc(nown + nworld + 1, sizeof(*routes));
    memcpy(routes, API_ROUTES, sizeof(API_ROUTES));
    for (size_t i = 0; i < nworld; i++) {
        routes[nown + i] = sim_world_routes[i];
        routes[nown + i].fn = WORLD_WRAPPERS[i];
    }
    return routes;
}

/* ---- life cycle ---- */

static void ensure_namespace(struct sim *sim, const char *name, size_t n)
{
    char *nm = pw_xstrndup(name, n);
    json_t *ns = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{s:[s]}, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                           "metadata", "name", nm, "labels", "kubernetes.io/metadata.name", nm, "spec", "finalizers",
                           "kubernetes", "status", "phase", "Active");
    if (*nm && pw_dns1123_label(nm))
        sim_store_create(sim->store, "namespaces", "", ns, NULL); /* PW_EEXIST when main or the world made it */
    else
        json_decref(ns);
    free(nm);
}

/* The namespaces a real API server bootstraps, plus --namespaces. */
static void bootstrap_namespaces(struct sim *sim)
{
    static const char *const BUILTIN[] = {"default", "kube-system", "kube-public", "kube-node-lease"};
    for (size_t i = 0; i < sizeof(BUILTIN) / sizeof(BUILTIN[0]); i++)
        ensure_namespace(sim, BUILTIN[i], strlen(BUILTIN[i]));
    const char *list = sim->opt.namespaces ? sim->opt.namespaces : "prewarm";
    while (*list) {
        size_t n = strcspn(list, ",");
        ensure_namespace(sim, list, n);
        list += n;
        if (*list == ',')
            list++;
    }
}

int sim_api_start(struct sim *sim, const struct sim_tls *tls, pw_http_server **out)
{
    struct sim_api *api = pw_xcalloc(1, sizeof(*api));
    api->sim = sim;
    api->token = sim->opt.token;
    api->objcache = sim_api_cache_new();
    api->tokens = sim_tokens_new(SIM_TOKENS_MAX);
    api->enforce_rbac = sim->opt.enforce_rbac;
    pthread_mutex_init(&api->mu, NULL);
    pthread_cond_init(&api->cond, NULL);
    pthread_mutex_init(&api->ev_mu, NULL);
    api->ev_index = json_object();
    api->ev_fifo = json_array();
    api->routes = build_routes();
    sim->api = api;
    int rc = 0;
    if (sim->opt.token_auth_file) {
        char *err = NULL;
        rc = sim_tokenfile_load(sim->opt.token_auth_file, &api->tokenfile, &err);
        if (rc) {
            PW_ERROR("kubesim api: --token-auth-file: %s", err ? err : pw_strerror(rc));
            free(err);
            sim_api_stop(sim);
            return rc;
        }
    }
    bootstrap_namespaces(sim);
    sim_rbac_bootstrap(sim->store);
    rc = sim_rbac_ctl_start(sim->store, &api->rbac_ctl);
    if (rc == 0)
        rc = sim_api_gc_start(api);
    if (rc == 0)
        rc = sim_api_watch_start(api);
    if (rc != 0) {
        sim_api_stop(sim);
        return rc;
    }
    /* kube-apiserver's --client-ca-file: the handshake trusts kubesim's CA and the file's */
    char *client_cas = NULL;
    if (tls && sim->opt.client_ca_file) {
        char *extra = NULL;
        if (pw_file_read(sim->opt.client_ca_file, 4u << 20, &extra, NULL) != 0 || !strstr(extra, "-----BEGIN ")) {
            PW_ERROR("kubesim api: --client-ca-file %s: cannot read a PEM file", sim->opt.client_ca_file);
            free(extra);
            sim_api_stop(sim);
            return PW_EINVAL;
        }
        client_cas = pw_xasprintf("%s\n%s", tls->ca_cert, extra);
        free(extra);
    } else if (tls) {
        client_cas = pw_xstrdup(tls->ca_cert);
    }
    struct pw_http_config cfg = {
        .listen = sim->opt.listen ? sim->opt.listen : "127.0.0.1:0",
        .routes = api->routes,
        .ctx = sim,
        .max_body = 3u << 20,
        .threads = sim->opt.threads > 0 ? (unsigned)sim->opt.threads : 4,
        .idle_timeout_s = 120,
        .tls_cert_pem = tls ? tls->server_cert : NULL,
        .tls_key_pem = tls ? tls->server_key : NULL,
        .tls_client_ca_pem = client_cas,
        .access_log = false,
        .log_name = "kube",
    };
    rc = pw_http_server_new(&cfg, out);
    free(client_cas);
    if (rc) {
        PW_ERROR("kubesim api: cannot serve on %s: %s", cfg.listen, pw_strerror(rc));
        sim_api_stop(sim);
        return rc;
    }
    return 0;
}

void sim_api_stop(struct sim *sim)
{
    struct sim_api *api = sim->api;
    if (!api)
        return;
    sim_api_watch_stop(api);
    sim_api_gc_stop(api);
    sim_rbac_ctl_stop(api->rbac_ctl);
    sim_tokenfile_free(api->tokenfile);
    for (size_t i = 0; i < api->ncrds; i++) {
        for (int j = 0; j < 8; j++)
            free(api->crds[i]->owned[j]);
        free(api->crds[i]);
    }
    free(api->crds);
    sim_api_cache_free(api->objcache);
    sim_tokens_free(api->tokens);
    free(api->stats);
    json_decref(api->clients);
    free(api->faults);
    json_decref(api->faults_json);
    json_decref(api->ev_index);
    json_decref(api->ev_fifo);
    free(api->routes);
    pthread_mutex_destroy(&api->ev_mu);
    pthread_cond_destroy(&api->cond);
    pthread_mutex_destroy(&api->mu);
    free(api);
    sim->api = NULL;
}
