/* rbac.h: kubesim's authorizer, the chain kube-apiserver runs with --authorization-mode=RBAC: first
 * the privileged group (system:masters may do everything, with no reason given), then the RBAC
 * authorizer (plugin/pkg/auth/authorizer/rbac) over the rbac.authorization.k8s.io/v1 objects in the
 * store. RBAC only ever allows: what no rule allows gets "no opinion", which the API server turns into
 * 403 and a SubjectAccessReview into {allowed: false} (denied stays false).
 *
 * The walk is the real one: every ClusterRoleBinding whose subjects name the user, then (for a request
 * in a namespace) every RoleBinding of that namespace, each binding's role read by its roleRef (a
 * RoleBinding may refer to a ClusterRole: its rules then apply in the binding's namespace only). A
 * rule allows a resource request when its verbs, apiGroups, resources ("pods", "pods/log", a lone
 * star, or star-slash-subresource) and resourceNames (none: any) match; a non-resource request when
 * its verbs and nonResourceURLs (an exact path, a prefix ending in a star, or a lone star) match. A subject matches as User (the name),
 * Group (one of the groups) or ServiceAccount (user "system:serviceaccount:NS:NAME", NS defaulting to
 * the RoleBinding's namespace). A binding whose role is missing is skipped and named in the reason
 * ("RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found").
 *
 * The user is a UserInfo JSON object as TokenReview answers it: {username, uid, groups: [...],
 * extra: {...}}; attributes are authorizer.Attributes.
 *
 * Thread model: every function is safe from any thread; sim_rbac_authorize reads the store (its own
 * lock) and keeps no state. */
#ifndef SIM_RBAC_H
#define SIM_RBAC_H

#include <stdbool.h>

#include <jansson.h>

#include "sim/store.h"

#define SIM_RBAC_GROUP "rbac.authorization.k8s.io"
/* the store keys of the four kinds */
#define SIM_RBAC_ROLES "roles.rbac.authorization.k8s.io"
#define SIM_RBAC_CLUSTERROLES "clusterroles.rbac.authorization.k8s.io"
#define SIM_RBAC_ROLEBINDINGS "rolebindings.rbac.authorization.k8s.io"
#define SIM_RBAC_CLUSTERROLEBINDINGS "clusterrolebindings.rbac.authorization.k8s.io"
/* user.SystemPrivilegedGroup */
#define SIM_RBAC_MASTERS "system:masters"

/* What a request asks (authorizer.Attributes). Strings are borrowed; NULL reads as "". */
struct sim_rbac_attrs {
    const char *verb;      /* get, list, watch, create, update, patch, delete, deletecollection, ... */
    bool resource_request; /* false: a non-resource path (path below) */
    const char *ns;        /* "" for cluster scope */
    const char *group;     /* API group, "" for core */
    const char *version;   /* API version (only for the 403's details) */
    const char *resource;  /* plural */
    const char *subresource;
    const char *name;
    const char *path;      /* non-resource requests: the URL path */
};

/* True when the user (borrowed UserInfo object) may do a. *reason (may be NULL) gets the authorizer's
 * reason, caller frees: "" for system:masters and for no opinion without errors, "RBAC: allowed by
 * ClusterRoleBinding \"b\" of ClusterRole \"r\" to User \"u\"" when a rule allowed it, "RBAC: ..."
 * naming missing roles otherwise. Never fails. */
bool sim_rbac_authorize(sim_store *st, const json_t *user, const struct sim_rbac_attrs *a, char **reason);

/* True when one PolicyRule (borrowed JSON) allows a (rbac.RuleAllows). */
bool sim_rbac_rule_allows(const json_t *rule, const struct sim_rbac_attrs *a);

/* True when subject (a Subject object) names the user; ns is the RoleBinding's namespace ("" for a
 * ClusterRoleBinding) that a ServiceAccount subject without a namespace defaults to. */
bool sim_rbac_subject_matches(const json_t *subject, const json_t *user, const char *ns);

/* Every PolicyRule the user holds in namespace ns ("": cluster-wide only) through the bindings the
 * authorizer walks (the RBAC rule resolver's RulesFor; system:masters is not special here): a new
 * array of rule copies, in walk order. *errors (may be NULL) gets the resolution errors, caller
 * frees ("clusterrole.rbac.authorization.k8s.io \"x\" not found", several as [a, b]), NULL when
 * none. */
json_t *sim_rbac_rules_for(sim_store *st, const json_t *user, const char *ns, char **errors);

/* True when the user is in system:masters (the privileged group). */
bool sim_rbac_is_master(const json_t *user);

/* rbac validation.Covers: the rules of servant (a JSON array of PolicyRules) that owner (another)
 * does not cover, each broken down to one verb of one group and resource (and name) or of one
 * non-resource URL, then compacted back (rules differing only in verbs merged): a new array, empty
 * when owner covers everything. Pure (sim/rbac_cover.c). */
json_t *sim_rbac_uncovered(const json_t *owner, const json_t *servant);

/* ConfirmNoEscalation's message for the uncovered rules: `user "u" (groups=["g" "h"]) is attempting
 * to grant RBAC permissions not currently held:` then one compact rule a line
 * (`{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`), and `; resolution errors: E` when
 * errors is set. Caller frees. */
char *sim_rbac_escalation_message(const json_t *user, const json_t *uncovered, const char *errors);

/* The 403 Status message of a denied request, as the API server's responsewriters.Forbidden words it:
 * `pods is forbidden: User "u" cannot list resource "pods" in API group "" in the namespace "ns"`
 * (`... at the cluster scope`; `forbidden: User "u" cannot get path "/x"`); reason (may be NULL or "")
 * is appended after ": ". Caller frees. */
char *sim_rbac_forbidden_message(const json_t *user, const struct sim_rbac_attrs *a, const char *reason);

#endif
