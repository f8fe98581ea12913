/* api_escalate.c: RBAC privilege escalation prevention (api_int.h), as kube-apiserver's
 * registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased storage does it when
 * RBAC authorizes (--enforce-rbac):
 * - a Role or ClusterRole is created or updated only by system:masters, by a requester allowed the
 *   verb "escalate" on roles/clusterroles (in the object's namespace, for its name), or when every
 *   rule it holds is covered by the requester's own rules there (sim_rbac_uncovered); a ClusterRole
 *   with an aggregationRule needs every permission (cluster-admin) without escalate;
 * - a RoleBinding or ClusterRoleBinding only by system:masters, by a requester allowed "bind" on
 *   the referenced role (roles or clusterroles, its name, in the binding's namespace), or when the
 *   referenced role's rules are all covered by the requester's rules in the binding's namespace.
 * A refusal is the real 403: `<plural>.rbac.authorization.k8s.io "name" is forbidden: user "u"
 * (groups=[...]) is attempting to grant RBAC permissions not currently held:` and the rules. */
#include "sim/api_int.h"
#include "sim/rbac.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void forbidden(struct rreq *r, const char *name, const char *why)
{
    char *msg = pw_xasprintf("%s.%s \"%s\" is forbidden: %s", r->rd->plural, SIM_RBAC_GROUP, name, why);
    sim_api_status(r->req, 403, "Forbidden", msg,
                   json_pack("{s:s, s:s, s:s}", "name", name, "group", SIM_RBAC_GROUP, "kind", r->rd->plural));
    free(msg);
}

/* May the requester do verb on resource/name (RBAC group) in ns? */
static bool authorized(struct rreq *r, const char *verb, const char *resource, const char *ns, const char *name)
{
    struct sim_rbac_attrs a = {.verb = verb, .resource_request = true, .ns = ns, .group = SIM_RBAC_GROUP,
                               .version = "v1", .resource = resource, .name = name};
    return sim_rbac_authorize(r->api->sim->store, r->user, &a, NULL);
}

/* ConfirmNoEscalation: true when the requester holds every rule of rules in ns, else replies 403. */
static bool holds_all(struct rreq *r, const char *name, const char *ns, const json_t *rules, const char *fixed_msg)
{
    char *errors = NULL;
    json_t *own = sim_rbac_rules_for(r->api->sim->store, r->user, ns, &errors);
    json_t *missing = sim_rbac_uncovered(own, rules);
    bool ok = json_array_size(missing) == 0;
    if (!ok) {
        char *msg = fixed_msg ? pw_xstrdup(fixed_msg) : sim_rbac_escalation_message(r->user, missing, errors);
        forbidden(r, name, msg);
        free(msg);
    }
    json_decref(missing);
    json_decref(own);
    free(errors);
    return ok;
}

static bool is_rbac(const struct rdef *rd)
{
    return strcmp(rd->group, SIM_RBAC_GROUP) == 0;
}

bool sim_api_rbac_may_write(struct rreq *r, const json_t *obj)
{
    if (!r->api->enforce_rbac || !is_rbac(r->rd) || sim_rbac_is_master(r->user))
        return true;
    const char *name = r->name ? r->name : jstr(json_object_get(obj, "metadata"), "name");
    const char *ns = r->rd->namespaced && r->ns ? r->ns : "";
    bool binding = strstr(r->rd->plural, "bindings") != NULL;
    if (!binding) {
        if (authorized(r, "escalate", r->rd->plural, ns, name))
            return true;
        if (json_is_object(json_object_get(obj, "aggregationRule"))) {
            json_t *all = json_pack("[{s:[s], s:[s], s:[s]}, {s:[s], s:[s]}]", "apiGroups", "*", "resources", "*",
                                    "verbs", "*", "nonResourceURLs", "*", "verbs", "*");
            bool ok = holds_all(r, name, ns, all, "must have cluster-admin privileges to use the aggregationRule");
            json_decref(all);
            return ok;
        }
        const json_t *rules = json_object_get(obj, "rules");
        json_t *none = json_array();
        bool ok = holds_all(r, name, ns, json_is_array(rules) ? rules : none, NULL);
        json_decref(none);
        return ok;
    }
    const json_t *ref = json_object_get(obj, "roleRef");
    bool cluster = strcmp(jstr(ref, "kind"), "ClusterRole") == 0;
    const char *rname = jstr(ref, "name");
    if (authorized(r, "bind", cluster ? "clusterroles" : "roles", ns, rname))
        return true;
    json_t *role = NULL;
    if (sim_store_get(r->api->sim->store, cluster ? SIM_RBAC_CLUSTERROLES : SIM_RBAC_ROLES, cluster ? "" : ns, rname,
                      &role) != 0) {
        char *msg = pw_xasprintf("%s.%s \"%s\" not found", cluster ? "clusterrole" : "role", SIM_RBAC_GROUP, rname);
        sim_api_status(r->req, 404, "NotFound", msg,
                       json_pack("{s:s, s:s, s:s}", "name", rname, "group", SIM_RBAC_GROUP, "kind",
                                 cluster ? "clusterrole" : "role"));
        free(msg);
        return false;
    }
    bool ok = holds_all(r, name, ns, json_object_get(role, "rules"), NULL);
    json_decref(role);
    return ok;
}
