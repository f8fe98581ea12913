/* polenv.c: what the policy controller acts on in prewarmd (policy.h's pw_policy_env): the engine
 * (tasks, the node cache) and, for untaintWhenDone, the Node through the Kubernetes API. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "policy/polint.h"

static int e_submit(void *arg, struct pw_taskspec *spec, json_t **task_out)
{
    return pw_engine_submit(((pw_policy *)arg)->cfg.engine, spec, task_out);
}

static int e_task_nodes(void *arg, const char *task_id, json_t **out)
{
    return pw_engine_list_nodes(((pw_policy *)arg)->cfg.engine, task_id, NULL, 0, NULL, out);
}

static int e_task_get(void *arg, const char *task_id, json_t **out)
{
    return pw_engine_get_task(((pw_policy *)arg)->cfg.engine, task_id, out);
}

static void e_node_each(void *arg, int (*fn)(void *fnarg, const json_t *node), void *fnarg)
{
    pw_engine_each_node(((pw_policy *)arg)->cfg.engine, fn, fnarg);
}

static json_t *e_node_get(void *arg, const char *name)
{
    return pw_engine_node_get(((pw_policy *)arg)->cfg.engine, name);
}

/* Not synced while this replica does not lead (--leader-elect): only the leader's controller acts,
 * so three replicas make one wave, not three. */
static bool e_nodes_synced(void *arg)
{
    const char *why = NULL;
    pw_engine *e = ((pw_policy *)arg)->cfg.engine;
    return pw_engine_leading(e) && pw_engine_ready(e, &why);
}

/* node's taints without the NoSchedule ones of key: a new array, or NULL when there is none. */
static json_t *taints_without(const json_t *node, const char *key)
{
    const json_t *taints = json_object_get(json_object_get(node, "spec"), "taints");
    json_t *rest = json_array();
    bool found = false;
    size_t i;
    json_t *t;
    json_array_foreach(taints, i, t) {
        const char *k = json_string_value(json_object_get(t, "key"));
        const char *eff = json_string_value(json_object_get(t, "effect"));
        if (k && eff && strcmp(k, key) == 0 && strcmp(eff, "NoSchedule") == 0)
            found = true;
        else
            json_array_append(rest, t);
    }
    if (!found) {
        json_decref(rest);
        return NULL;
    }
    return rest;
}

/* A JSON patch guarded by the Node's resourceVersion (a "test" op), so a taint another controller
 * added meanwhile is never overwritten: on a conflict the Node is read again (3 tries). */
static int e_untaint(void *arg, const char *node, const char *key, char **why)
{
    pw_policy *pc = arg;
    if (!pc->cfg.client) {
        *why = pw_xstrdup("prewarmd has no Kubernetes client");
        return PW_EINVAL;
    }
    char *path = pw_xasprintf("/api/v1/nodes/%s", node);
    int rc = PW_ECONFLICT;
    for (int attempt = 0; attempt < 3 && rc == PW_ECONFLICT; attempt++) {
        int status = 0;
        json_t *obj = NULL;
        rc = pw_k8s_request(pc->cfg.client, "GET", path, NULL, NULL, &status, &obj);
        if (rc == 0 && status == 404) {
            json_decref(obj);
            break; /* gone: nothing to untaint */
        }
        if (rc != 0 || status != 200) {
            *why = pw_xasprintf("GET %s: %s", path, rc ? pw_strerror(rc) : "unexpected status");
            json_decref(obj);
            rc = rc ? rc : PW_EIO;
            break;
        }
        json_t *rest = taints_without(obj, key);
        const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
        json_t *patch = rest ? json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:o}]", "op", "test", "path",
                                         "/metadata/resourceVersion", "value", rv ? rv : "", "op", "replace", "path",
                                         "/spec/taints", "value", rest)
                             : NULL;
        json_decref(obj);
        if (!patch)
            break; /* no such taint (any more) */
        rc = pw_k8s_request(pc->cfg.client, "PATCH", path, patch, "application/json-patch+json", &status, NULL);
        json_decref(patch);
        if (rc == 0 && (status == 409 || status == 422))
            rc = PW_ECONFLICT;
        else if (rc == 0 && status != 200) {
            *why = pw_xasprintf("PATCH %s: HTTP %d", path, status);
            rc = status == 403 ? PW_EFORBIDDEN : PW_EIO;
        }
    }
    if (rc == PW_ECONFLICT)
        *why = pw_xasprintf("PATCH %s: the node kept changing", path);
    free(path);
    return rc;
}

void pw_policy_env_engine(pw_policy *pc, struct pw_policy_env *env)
{
    *env = (struct pw_policy_env){.submit = e_submit,
                                  .task_nodes = e_task_nodes,
                                  .task_get = e_task_get,
                                  .node_each = e_node_each,
                                  .node_get = e_node_get,
                                  .nodes_synced = e_nodes_synced,
                                  .untaint = e_untaint,
                                  .arg = pc};
}
