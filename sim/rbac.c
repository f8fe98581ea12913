/* rbac.c: kubesim's authorizer: system:masters, then RBAC over the store's Roles, ClusterRoles,
 * RoleBindings and ClusterRoleBindings, as kube-apiserver's union of the privileged-group authorizer
 * and the RBAC authorizer decides (see rbac.h). */
#include "sim/rbac.h"
#include "sim/objutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"

#define MSG_MAX (64u << 10)

static const char *s_or(const char *s)
{
    return s ? s : "";
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* True when list (a JSON array of strings) holds want or, when star, "*". */
static bool list_has(const json_t *list, const char *want, bool star)
{
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *s = json_string_value(v);
        if (s && ((star && strcmp(s, "*") == 0) || strcmp(s, want) == 0))
            return true;
    }
    return false;
}

/* rbac.ResourceMatches: a star, the combined "resource/subresource", or star-slash-subresource. */
static bool resource_matches(const json_t *rule, const char *resource, const char *sub)
{
    char combined[512];
    snprintf(combined, sizeof(combined), "%s%s%s", resource, *sub ? "/" : "", sub);
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(rule, "resources"), i, v)
    {
        const char *r = json_string_value(v);
        if (!r)
            continue;
        if (strcmp(r, "*") == 0 || strcmp(r, combined) == 0)
            return true;
        if (*sub && strncmp(r, "*/", 2) == 0 && strcmp(r + 2, sub) == 0)
            return true;
    }
    return false;
}

/* rbac.ResourceNameMatches: no names means every name. */
static bool name_matches(const json_t *rule, const char *name)
{
    const json_t *names = json_object_get(rule, "resourceNames");
    return json_array_size(names) == 0 || list_has(names, name, false);
}

/* rbac.NonResourceURLMatches: "*", the exact path, or a prefix ending in "*". */
static bool url_matches(const json_t *rule, const char *path)
{
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(rule, "nonResourceURLs"), i, v)
    {
        const char *u = json_string_value(v);
        if (!u)
            continue;
        size_t n = strlen(u);
        if (strcmp(u, "*") == 0 || strcmp(u, path) == 0 || (n > 0 && u[n - 1] == '*' && strncmp(u, path, n - 1) == 0))
            return true;
    }
    return false;
}

bool sim_rbac_rule_allows(const json_t *rule, const struct sim_rbac_attrs *a)
{
    if (!list_has(json_object_get(rule, "verbs"), s_or(a->verb), true))
        return false;
    if (!a->resource_request)
        return url_matches(rule, s_or(a->path));
    return list_has(json_object_get(rule, "apiGroups"), s_or(a->group), true) &&
           resource_matches(rule, s_or(a->resource), s_or(a->subresource)) && name_matches(rule, s_or(a->name));
}

/* serviceaccount.MakeUsername */
static bool sa_user_is(const char *user, const char *ns, const char *name)
{
    static const char PREFIX[] = "system:serviceaccount:";
    size_t p = sizeof(PREFIX) - 1, n = strlen(ns);
    return strncmp(user, PREFIX, p) == 0 && strncmp(user + p, ns, n) == 0 && user[p + n] == ':' &&
           strcmp(user + p + n + 1, name) == 0;
}

bool sim_rbac_subject_matches(const json_t *subject, const json_t *user, const char *ns)
{
    const char *kind = jstr(subject, "kind"), *name = jstr(subject, "name");
    const char *username = jstr(user, "username");
    if (strcmp(kind, "User") == 0)
        return strcmp(username, name) == 0;
    if (strcmp(kind, "Group") == 0)
        return list_has(json_object_get(user, "groups"), name, false);
    if (strcmp(kind, "ServiceAccount") == 0) {
        const char *sans = *jstr(subject, "namespace") ? jstr(subject, "namespace") : s_or(ns);
        return *sans && sa_user_is(username, sans, name);
    }
    return false;
}

/* The subject of binding that names the user, or NULL. */
static const json_t *subject_for(const json_t *binding, const json_t *user, const char *ns)
{
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(binding, "subjects"), i, s)
    {
        if (sim_rbac_subject_matches(s, user, ns))
            return s;
    }
    return NULL;
}

/* The walk's state: the first allowing binding ends it. */
struct visit {
    sim_store *st;
    const json_t *user;
    const struct sim_rbac_attrs *a;
    bool allowed;
    pw_buf reason; /* "RBAC: allowed by ..." once allowed */
    pw_buf errors; /* the missing roles, "a, b" */
    int nerrors;
    json_t *rules; /* rule collection (sim_rbac_rules_for): every rule of every binding; NULL: authorize */
};

/* rbac's describeSubject: a ServiceAccount as "name/namespace". */
static void describe_subject(pw_buf *b, const json_t *s, const char *binding_ns)
{
    const char *kind = jstr(s, "kind");
    pw_buf_printf(b, "%s ", kind);
    if (strcmp(kind, "ServiceAccount") == 0) {
        char *nn = pw_xasprintf("%s/%s", jstr(s, "name"), *jstr(s, "namespace") ? jstr(s, "namespace") : binding_ns);
        sim_go_quote(b, nn);
        free(nn);
    } else {
        sim_go_quote(b, jstr(s, "name"));
    }
}

static void note_missing(struct visit *v, const char *kind, const char *name)
{
    if (v->nerrors++)
        pw_buf_puts(&v->errors, ", ");
    pw_buf_printf(&v->errors, "%s.%s ", strcmp(kind, "Role") == 0 ? "role" : "clusterrole", SIM_RBAC_GROUP);
    sim_go_quote(&v->errors, name);
    pw_buf_puts(&v->errors, " not found");
}

/* Checks one binding (ns "" for a ClusterRoleBinding); true when the walk may stop. */
static bool visit_binding(struct visit *v, const json_t *binding, const char *ns)
{
    const json_t *subject = subject_for(binding, v->user, ns);
    if (!subject)
        return false;
    const json_t *ref = json_object_get(binding, "roleRef");
    const char *kind = jstr(ref, "kind"), *rname = jstr(ref, "name");
    bool cluster = strcmp(kind, "ClusterRole") == 0;
    if (!cluster && (strcmp(kind, "Role") != 0 || !*ns))
        return false;
    json_t *role;
    if (sim_store_get(v->st, cluster ? SIM_RBAC_CLUSTERROLES : SIM_RBAC_ROLES, cluster ? "" : ns, rname, &role) != 0) {
        note_missing(v, kind, rname);
        return false;
    }
    size_t i;
    const json_t *rule;
    if (v->rules) {
        json_array_extend(v->rules, json_object_get(role, "rules"));
        json_decref(role);
        return false;
    }
    json_array_foreach(json_object_get(role, "rules"), i, rule)
    {
        if (!sim_rbac_rule_allows(rule, v->a))
            continue;
        const json_t *m = json_object_get(binding, "metadata");
        char *bname = *ns ? pw_xasprintf("%s/%s", jstr(m, "name"), ns) : pw_xstrdup(jstr(m, "name"));
        pw_buf_printf(&v->reason, "RBAC: allowed by %s ", *ns ? "RoleBinding" : "ClusterRoleBinding");
        sim_go_quote(&v->reason, bname);
        pw_buf_printf(&v->reason, " of %s ", kind);
        sim_go_quote(&v->reason, rname);
        pw_buf_puts(&v->reason, " to ");
        describe_subject(&v->reason, subject, ns);
        free(bname);
        v->allowed = true;
        break;
    }
    json_decref(role);
    return v->allowed;
}

/* Visits every binding of one kind (ns NULL: the ClusterRoleBindings). */
static void visit_all(struct visit *v, const char *key, const char *ns)
{
    json_t *items;
    bool more;
    uint64_t rv;
    if (sim_store_list(v->st, key, ns, NULL, 0, NULL, NULL, &items, &more, &rv) != 0)
        return;
    size_t i;
    const json_t *b;
    json_array_foreach(items, i, b)
    {
        if (visit_binding(v, b, ns ? ns : ""))
            break;
    }
    json_decref(items);
}

bool sim_rbac_authorize(sim_store *st, const json_t *user, const struct sim_rbac_attrs *a, char **reason)
{
    if (sim_rbac_is_master(user)) {
        if (reason)
            *reason = pw_xstrdup("");
        return true;
    }
    struct visit v = {.st = st, .user = user, .a = a};
    pw_buf_init(&v.reason, MSG_MAX);
    pw_buf_init(&v.errors, MSG_MAX);
    visit_all(&v, SIM_RBAC_CLUSTERROLEBINDINGS, NULL);
    if (!v.allowed && a->ns && *a->ns)
        visit_all(&v, SIM_RBAC_ROLEBINDINGS, a->ns);
    if (reason) {
        /* utilerrors.NewAggregate: one error alone, several as [a, b] */
        if (v.allowed)
            *reason = pw_buf_steal(&v.reason);
        else if (v.nerrors == 1)
            *reason = pw_xasprintf("RBAC: %s", v.errors.p);
        else if (v.nerrors > 1)
            *reason = pw_xasprintf("RBAC: [%s]", v.errors.p);
        else
            *reason = pw_xstrdup("");
    }
    pw_buf_fini(&v.reason);
    pw_buf_fini(&v.errors);
    return v.allowed;
}

json_t *sim_rbac_rules_for(sim_store *st, const json_t *user, const char *ns, char **errors)
{
    struct visit v = {.st = st, .user = user, .rules = json_array()};
    pw_buf_init(&v.reason, MSG_MAX);
    pw_buf_init(&v.errors, MSG_MAX);
    visit_all(&v, SIM_RBAC_CLUSTERROLEBINDINGS, NULL);
    if (ns && *ns)
        visit_all(&v, SIM_RBAC_ROLEBINDINGS, ns);
    if (errors)
        *errors = v.nerrors == 0 ? NULL : v.nerrors == 1 ? pw_xstrdup(v.errors.p) : pw_xasprintf("[%s]", v.errors.p);
    pw_buf_fini(&v.reason);
    pw_buf_fini(&v.errors);
    return v.rules;
}

bool sim_rbac_is_master(const json_t *user)
{
    return list_has(json_object_get(user, "groups"), SIM_RBAC_MASTERS, false);
}

char *sim_rbac_forbidden_message(const json_t *user, const struct sim_rbac_attrs *a, const char *reason)
{
    pw_buf b;
    pw_buf_init(&b, MSG_MAX);
    if (!a->resource_request) {
        pw_buf_puts(&b, "forbidden: User ");
        sim_go_quote(&b, jstr(user, "username"));
        pw_buf_printf(&b, " cannot %s path ", s_or(a->verb));
        sim_go_quote(&b, s_or(a->path));
    } else {
        /* apierrors.NewForbidden(group resource, name, ...) then forbiddenMessage */
        pw_buf_puts(&b, s_or(a->resource));
        if (a->group && *a->group)
            pw_buf_printf(&b, ".%s", a->group);
        if (a->name && *a->name) {
            pw_buf_puts(&b, " ");
            sim_go_quote(&b, a->name);
        }
        pw_buf_puts(&b, " is forbidden: User ");
        sim_go_quote(&b, jstr(user, "username"));
        pw_buf_printf(&b, " cannot %s resource ", s_or(a->verb));
        char *res = pw_xasprintf("%s%s%s", s_or(a->resource), a->subresource && *a->subresource ? "/" : "",
                                 s_or(a->subresource));
        sim_go_quote(&b, res);
        free(res);
        pw_buf_puts(&b, " in API group ");
        sim_go_quote(&b, s_or(a->group));
        if (a->ns && *a->ns) {
            pw_buf_puts(&b, " in the namespace ");
            sim_go_quote(&b, a->ns);
        } else {
            pw_buf_puts(&b, " at the cluster scope");
        }
    }
    if (reason && *reason)
        pw_buf_printf(&b, ": %s", reason);
    return pw_buf_steal(&b);
}
