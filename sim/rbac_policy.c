/* rbac_policy.c: the default ClusterRoles and ClusterRoleBindings a real cluster bootstraps, and the
 * ClusterRole aggregation controller (see rbac_policy.h). */
#include "sim/rbac_policy.h"
#include "sim/rbac.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"

#define AGG_PASSES 16

/* The roles: [name, {labels}, aggregate-to (a label suffix or ""), rules]. Rules as the bootstrap
 * policy writes them (pkg/.../bootstrappolicy/policy.go), restricted to the resources and paths that
 * kubesim serves or that prewarm's users meet. */
static const char ROLES[] =
    "["
    "[\"cluster-admin\", {}, \"\", ["
    "  {\"apiGroups\": [\"*\"], \"resources\": [\"*\"], \"verbs\": [\"*\"]},"
    "  {\"nonResourceURLs\": [\"*\"], \"verbs\": [\"*\"]}]],"
    "[\"system:discovery\", {}, \"\", ["
    "  {\"nonResourceURLs\": [\"/api\", \"/api/*\", \"/apis\", \"/apis/*\", \"/healthz\", \"/livez\", \"/openapi\","
    "   \"/openapi/*\", \"/readyz\", \"/version\", \"/version/\"], \"verbs\": [\"get\"]}]],"
    "[\"system:public-info-viewer\", {}, \"\", ["
    "  {\"nonResourceURLs\": [\"/healthz\", \"/livez\", \"/readyz\", \"/version\", \"/version/\"], \"verbs\": [\"get\"]}]],"
    "[\"system:basic-user\", {}, \"\", ["
    "  {\"apiGroups\": [\"authorization.k8s.io\"], \"resources\": [\"selfsubjectaccessreviews\","
    "   \"selfsubjectrulesreviews\"], \"verbs\": [\"create\"]},"
    "  {\"apiGroups\": [\"authentication.k8s.io\"], \"resources\": [\"selfsubjectreviews\"], \"verbs\": [\"create\"]}]],"
    "[\"admin\", {}, \"admin\", null],"
    "[\"edit\", {\"rbac.authorization.k8s.io/aggregate-to-admin\": \"true\"}, \"edit\", null],"
    "[\"view\", {\"rbac.authorization.k8s.io/aggregate-to-edit\": \"true\"}, \"view\", null],"
    "[\"system:aggregate-to-admin\", {\"rbac.authorization.k8s.io/aggregate-to-admin\": \"true\"}, \"\", ["
    "  {\"apiGroups\": [\"authorization.k8s.io\"], \"resources\": [\"localsubjectaccessreviews\"], \"verbs\": [\"create\"]},"
    "  {\"apiGroups\": [\"rbac.authorization.k8s.io\"], \"resources\": [\"rolebindings\", \"roles\"],"
    "   \"verbs\": [\"create\", \"delete\", \"deletecollection\", \"get\", \"list\", \"patch\", \"update\", \"watch\"]}]],"
    "[\"system:aggregate-to-edit\", {\"rbac.authorization.k8s.io/aggregate-to-edit\": \"true\"}, \"\", ["
    "  {\"apiGroups\": [\"\"], \"resources\": [\"pods\", \"pods/attach\", \"pods/exec\", \"pods/portforward\","
    "   \"pods/proxy\"], \"verbs\": [\"create\", \"delete\", \"deletecollection\", \"patch\", \"update\"]},"
    "  {\"apiGroups\": [\"\"], \"resources\": [\"configmaps\", \"events\", \"persistentvolumeclaims\","
    "   \"replicationcontrollers\", \"replicationcontrollers/scale\", \"secrets\", \"serviceaccounts\", \"services\","
    "   \"services/proxy\"], \"verbs\": [\"create\", \"delete\", \"deletecollection\", \"patch\", \"update\"]},"
    "  {\"apiGroups\": [\"\"], \"resources\": [\"serviceaccounts/token\"], \"verbs\": [\"create\"]},"
    "  {\"apiGroups\": [\"apps\"], \"resources\": [\"daemonsets\", \"deployments\", \"deployments/rollback\","
    "   \"deployments/scale\", \"replicasets\", \"replicasets/scale\", \"statefulsets\", \"statefulsets/scale\"],"
    "   \"verbs\": [\"create\", \"delete\", \"deletecollection\", \"patch\", \"update\"]},"
    "  {\"apiGroups\": [\"batch\"], \"resources\": [\"cronjobs\", \"jobs\"],"
    "   \"verbs\": [\"create\", \"delete\", \"deletecollection\", \"patch\", \"update\"]},"
    "  {\"apiGroups\": [\"coordination.k8s.io\"], \"resources\": [\"leases\"],"
    "   \"verbs\": [\"create\", \"delete\", \"deletecollection\", \"get\", \"list\", \"patch\", \"update\", \"watch\"]}]],"
    "[\"system:aggregate-to-view\", {\"rbac.authorization.k8s.io/aggregate-to-view\": \"true\"}, \"\", ["
    "  {\"apiGroups\": [\"\"], \"resources\": [\"configmaps\", \"endpoints\", \"persistentvolumeclaims\","
    "   \"persistentvolumeclaims/status\", \"pods\", \"replicationcontrollers\", \"replicationcontrollers/scale\","
    "   \"serviceaccounts\", \"services\", \"services/status\"], \"verbs\": [\"get\", \"list\", \"watch\"]},"
    "  {\"apiGroups\": [\"\"], \"resources\": [\"bindings\", \"events\", \"limitranges\", \"namespaces/status\","
    "   \"pods/log\", \"pods/status\", \"replicationcontrollers/status\", \"resourcequotas\", \"resourcequotas/status\"],"
    "   \"verbs\": [\"get\", \"list\", \"watch\"]},"
    "  {\"apiGroups\": [\"\"], \"resources\": [\"namespaces\"], \"verbs\": [\"get\", \"list\", \"watch\"]},"
    "  {\"apiGroups\": [\"apps\"], \"resources\": [\"controllerrevisions\", \"daemonsets\", \"daemonsets/status\","
    "   \"deployments\", \"deployments/scale\", \"deployments/status\", \"replicasets\", \"replicasets/scale\","
    "   \"replicasets/status\", \"statefulsets\", \"statefulsets/scale\", \"statefulsets/status\"],"
    "   \"verbs\": [\"get\", \"list\", \"watch\"]},"
    "  {\"apiGroups\": [\"batch\"], \"resources\": [\"cronjobs\", \"cronjobs/status\", \"jobs\", \"jobs/status\"],"
    "   \"verbs\": [\"get\", \"list\", \"watch\"]}]]"
    "]";

/* The bindings: [name, role, [[kind, name], ...]]; every one binds a ClusterRole of the same name. */
static const char BINDINGS[] =
    "["
    "[\"cluster-admin\", [[\"Group\", \"system:masters\"]]],"
    "[\"system:discovery\", [[\"Group\", \"system:authenticated\"]]],"
    "[\"system:public-info-viewer\", [[\"Group\", \"system:authenticated\"], [\"Group\", \"system:unauthenticated\"]]],"
    "[\"system:basic-user\", [[\"Group\", \"system:authenticated\"]]]"
    "]";

static json_t *default_meta(const char *name, const json_t *labels)
{
    json_t *l = json_deep_copy(labels);
    json_object_set_new(l, "kubernetes.io/bootstrapping", json_string("rbac-defaults"));
    return json_pack("{s:s, s:o, s:{s:s}}", "name", name, "labels", l, "annotations",
                     "rbac.authorization.kubernetes.io/autoupdate", "true");
}

static void bootstrap_role(sim_store *st, const json_t *row)
{
    const char *name = json_string_value(json_array_get(row, 0));
    const char *agg = json_string_value(json_array_get(row, 2));
    json_t *role = json_pack("{s:s, s:s, s:o, s:O}", "apiVersion", SIM_RBAC_GROUP "/v1", "kind", "ClusterRole",
                             "metadata", default_meta(name, json_array_get(row, 1)), "rules", json_array_get(row, 3));
    if (agg && *agg) {
        char key[128];
        snprintf(key, sizeof(key), SIM_RBAC_GROUP "/aggregate-to-%s", agg);
        json_object_set_new(role, "aggregationRule",
                            json_pack("{s:[{s:{s:s}}]}", "clusterRoleSelectors", "matchLabels", key, "true"));
    }
    sim_store_create(st, SIM_RBAC_CLUSTERROLES, "", role, NULL); /* PW_EEXIST: kept as it is */
}

static void bootstrap_binding(sim_store *st, const json_t *row)
{
    const char *name = json_string_value(json_array_get(row, 0));
    json_t *subjects = json_array();
    size_t i;
    const json_t *s;
    json_array_foreach(json_array_get(row, 1), i, s)
    {
        json_array_append_new(subjects, json_pack("{s:s, s:s, s:s}", "apiGroup", SIM_RBAC_GROUP, "kind",
                                                  json_string_value(json_array_get(s, 0)), "name",
                                                  json_string_value(json_array_get(s, 1))));
    }
    json_t *empty = json_object();
    json_t *b = json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:s}, s:o}", "apiVersion", SIM_RBAC_GROUP "/v1", "kind",
                          "ClusterRoleBinding", "metadata", default_meta(name, empty), "roleRef", "apiGroup",
                          SIM_RBAC_GROUP, "kind", "ClusterRole", "name", name, "subjects", subjects);
    json_decref(empty);
    sim_store_create(st, SIM_RBAC_CLUSTERROLEBINDINGS, "", b, NULL);
}

void sim_rbac_bootstrap(sim_store *st)
{
    json_t *roles = json_loads(ROLES, 0, NULL), *bindings = json_loads(BINDINGS, 0, NULL);
    if (!roles || !bindings)
        abort(); /* the tables above are not JSON: a bug */
    size_t i;
    const json_t *row;
    json_array_foreach(roles, i, row)
    {
        bootstrap_role(st, row);
    }
    json_array_foreach(bindings, i, row)
    {
        bootstrap_binding(st, row);
    }
    json_decref(roles);
    json_decref(bindings);
}

/* ---- aggregation ---- */

/* A metav1.LabelSelector as the string grammar of labels.h (matchLabels, then matchExpressions with
 * In, NotIn, Exists, DoesNotExist). NULL for an operator it does not know (matches nothing then, as
 * LabelSelectorAsSelector fails). Caller frees. */
static char *selector_text(const json_t *sel)
{
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_buf_puts(&b, "");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(sel, "matchLabels"), k, v)
    {
        pw_buf_printf(&b, "%s%s=%s", b.len ? "," : "", k, json_string_value(v) ? json_string_value(v) : "");
    }
    size_t i, j;
    const json_t *e, *val;
    json_array_foreach(json_object_get(sel, "matchExpressions"), i, e)
    {
        const char *key = json_string_value(json_object_get(e, "key"));
        const char *op = json_string_value(json_object_get(e, "operator"));
        if (!key || !op) {
            pw_buf_fini(&b);
            return NULL;
        }
        bool in = strcmp(op, "In") == 0, notin = strcmp(op, "NotIn") == 0;
        if (b.len)
            pw_buf_puts(&b, ",");
        if (in || notin) {
            pw_buf_printf(&b, "%s %s (", key, in ? "in" : "notin");
            json_array_foreach(json_object_get(e, "values"), j, val)
            {
                pw_buf_printf(&b, "%s%s", j ? "," : "", json_string_value(val) ? json_string_value(val) : "");
            }
            pw_buf_puts(&b, ")");
        } else if (strcmp(op, "Exists") == 0) {
            pw_buf_puts(&b, key);
        } else if (strcmp(op, "DoesNotExist") == 0) {
            pw_buf_printf(&b, "!%s", key);
        } else {
            pw_buf_fini(&b);
            return NULL;
        }
    }
    return pw_buf_steal(&b);
}

static bool rule_in(const json_t *rules, const json_t *rule)
{
    size_t i;
    const json_t *r;
    json_array_foreach(rules, i, r)
    {
        if (json_equal(r, rule))
            return true;
    }
    return false;
}

/* Appends to rules the rules of the roles (all ClusterRoles, in name order) that sel selects, but self. */
static void gather(const json_t *roles, const json_t *sel, const char *self, json_t *rules)
{
    char *text = selector_text(sel);
    pw_labelsel *ls = NULL;
    if (!text || pw_labelsel_parse(text, &ls, NULL) != 0 || pw_labelsel_empty(ls)) {
        /* a bad selector selects nothing; so does an empty one here: the real controller lists with
           it (everything), but an empty selector in an aggregationRule is refused by validation */
        free(text);
        pw_labelsel_free(ls);
        return;
    }
    free(text);
    size_t i, j;
    const json_t *role, *rule;
    json_array_foreach(roles, i, role)
    {
        const json_t *m = json_object_get(role, "metadata");
        const char *name = json_string_value(json_object_get(m, "name"));
        if (!name || strcmp(name, self) == 0 || !pw_labelsel_matches(ls, json_object_get(m, "labels")))
            continue;
        json_array_foreach(json_object_get(role, "rules"), j, rule)
        {
            if (!rule_in(rules, rule))
                json_array_append(rules, (json_t *)rule);
        }
    }
    pw_labelsel_free(ls);
}

struct agg_write {
    json_t *rules;
};

static int set_rules(void *arg, json_t *obj)
{
    struct agg_write *w = arg;
    if (!json_object_get(obj, "aggregationRule"))
        return 1; /* no longer aggregated */
    if (json_equal(json_object_get(obj, "rules"), w->rules))
        return 1;
    json_object_set(obj, "rules", w->rules);
    return 0;
}

/* One pass over every aggregated role; returns how many it wrote. */
static int aggregate_pass(sim_store *st)
{
    json_t *roles;
    bool more;
    uint64_t rv;
    if (sim_store_list(st, SIM_RBAC_CLUSTERROLES, "", NULL, 0, NULL, NULL, &roles, &more, &rv) != 0)
        return 0;
    int written = 0;
    size_t i, j;
    const json_t *role, *sel;
    json_array_foreach(roles, i, role)
    {
        const json_t *agg = json_object_get(role, "aggregationRule");
        if (!json_is_object(agg))
            continue;
        const char *name = json_string_value(json_object_get(json_object_get(role, "metadata"), "name"));
        json_t *rules = json_array();
        json_array_foreach(json_object_get(agg, "clusterRoleSelectors"), j, sel)
        {
            gather(roles, sel, name ? name : "", rules);
        }
        struct agg_write w = {json_array_size(rules) ? rules : json_null()};
        if (!json_equal(json_object_get(role, "rules"), w.rules) &&
            sim_store_mutate(st, SIM_RBAC_CLUSTERROLES, "", name, set_rules, &w, NULL) == 0)
            written++;
        if (w.rules != rules)
            json_decref(w.rules);
        json_decref(rules);
    }
    json_decref(roles);
    return written;
}

int sim_rbac_aggregate(sim_store *st)
{
    int total = 0;
    for (int pass = 0; pass < AGG_PASSES; pass++) {
        int n = aggregate_pass(st);
        total += n;
        if (n == 0)
            break;
    }
    return total;
}

/* ---- the controller ---- */

struct sim_rbac_ctl {
    sim_store *st;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool dirty, stopping; /* guarded by mu */
    int sub;
    pthread_t thread;
};

/* A store subscriber (under the store lock): only notes that a ClusterRole changed. */
static void on_change(void *arg, const struct sim_change *ch)
{
    struct sim_rbac_ctl *c = arg;
    if (strcmp(ch->resource, SIM_RBAC_CLUSTERROLES) != 0)
        return;
    pthread_mutex_lock(&c->mu);
    c->dirty = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void *ctl_main(void *arg)
{
    struct sim_rbac_ctl *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->dirty && !c->stopping)
            pthread_cond_wait(&c->cond, &c->mu);
        if (c->stopping)
            break;
        c->dirty = false;
        pthread_mutex_unlock(&c->mu);
        int n = sim_rbac_aggregate(c->st);
        if (n)
            PW_DEBUG("kubesim rbac: aggregated %d cluster roles", n);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int sim_rbac_ctl_start(sim_store *st, sim_rbac_ctl **out)
{
    struct sim_rbac_ctl *c = pw_xcalloc(1, sizeof(*c));
    c->st = st;
    c->dirty = true; /* aggregate what bootstrap made */
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->sub = sim_store_subscribe(st, on_change, c);
    if (pthread_create(&c->thread, NULL, ctl_main, c) != 0) {
        sim_store_unsubscribe(st, c->sub);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return PW_ENOMEM;
    }
    *out = c;
    return 0;
}

void sim_rbac_ctl_stop(sim_rbac_ctl *c)
{
    if (!c)
        return;
    sim_store_unsubscribe(c->st, c->sub);
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
