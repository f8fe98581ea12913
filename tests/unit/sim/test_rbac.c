/* Unit tests for kubesim's authorizer (sim/rbac.c), its default policy and aggregation
 * (sim/rbac_policy.c), the token file reader (sim/tokenfile.c) and the protobuf bodies of the RBAC
 * kinds (sim/rbac_pb.c): rule matching (verbs, groups, resources with subresources and star forms,
 * resourceNames, nonResourceURLs), subjects (User, Group, ServiceAccount with and without a namespace),
 * the walk over ClusterRoleBindings and RoleBindings with the real reasons, the 403 messages, the
 * aggregation of view/edit/admin and of a selector with expressions, the CSV rules and messages, and
 * escalation prevention's rule cover (sim/rbac_cover.c) with ConfirmNoEscalation's message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "sim/rbac.h"
#include "sim/rbac_pb.h"
#include "sim/rbac_policy.h"
#include "sim/store.h"
#include "sim/tokenfile.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("bad JSON in a test: %s: %s", e.text, text);
    return j;
}

static struct sim_rbac_attrs res(const char *verb, const char *ns, const char *group, const char *resource,
                                 const char *sub, const char *name)
{
    struct sim_rbac_attrs a = {.verb = verb, .resource_request = true, .ns = ns, .group = group, .version = "v1",
                               .resource = resource, .subresource = sub, .name = name};
    return a;
}

static struct sim_rbac_attrs path(const char *verb, const char *p)
{
    struct sim_rbac_attrs a = {.verb = verb, .resource_request = false, .path = p};
    return a;
}

static bool allows(const char *rule, struct sim_rbac_attrs a)
{
    json_t *r = J(rule);
    bool ok = sim_rbac_rule_allows(r, &a);
    json_decref(r);
    return ok;
}

static void test_rule_matching(void **state)
{
    (void)state;
    const char *pods = "{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"verbs\":[\"get\",\"list\"]}";
    assert_true(allows(pods, res("get", "a", "", "pods", "", "p")));
    assert_true(allows(pods, res("list", "a", "", "pods", "", "")));
    assert_false(allows(pods, res("delete", "a", "", "pods", "", "p")));
    assert_false(allows(pods, res("get", "a", "apps", "pods", "", "p")));
    assert_false(allows(pods, res("get", "a", "", "pods", "log", "p"))); /* pods does not cover pods/log */
    assert_false(allows(pods, res("get", "", "", "", "", "")));
    const char *log = "{\"apiGroups\":[\"\"],\"resources\":[\"pods/log\"],\"verbs\":[\"get\"]}";
    assert_true(allows(log, res("get", "a", "", "pods", "log", "p")));
    assert_false(allows(log, res("get", "a", "", "pods", "", "p")));
    const char *starsub = "{\"apiGroups\":[\"*\"],\"resources\":[\"*/status\"],\"verbs\":[\"*\"]}";
    assert_true(allows(starsub, res("patch", "a", "batch", "jobs", "status", "j")));
    assert_false(allows(starsub, res("patch", "a", "batch", "jobs", "", "j")));
    assert_false(allows(starsub, res("patch", "a", "batch", "jobs", "scale", "j")));
    const char *all = "{\"apiGroups\":[\"*\"],\"resources\":[\"*\"],\"verbs\":[\"*\"]}";
    assert_true(allows(all, res("impersonate", "", "", "users", "", "x")));
    assert_true(allows(all, res("get", "a", "", "pods", "log", "p")));
    assert_false(allows(all, path("get", "/healthz"))); /* resource rules never allow paths */
    const char *named = "{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"resourceNames\":[\"regcred\"],"
                        "\"verbs\":[\"get\"]}";
    assert_true(allows(named, res("get", "a", "", "secrets", "", "regcred")));
    assert_false(allows(named, res("get", "a", "", "secrets", "", "other")));
    assert_false(allows(named, res("list", "a", "", "secrets", "", ""))); /* a list names nothing */
    const char *tasks = "{\"apiGroups\":[\"prewarm.io\"],\"resources\":[\"tasks\"],\"verbs\":[\"create\"]}";
    assert_true(allows(tasks, res("create", "prewarm", "prewarm.io", "tasks", "", "")));
    assert_false(allows(tasks, res("create", "prewarm", "", "tasks", "", "")));
    const char *urls = "{\"nonResourceURLs\":[\"/healthz\",\"/apis/*\"],\"verbs\":[\"get\"]}";
    assert_true(allows(urls, path("get", "/healthz")));
    assert_false(allows(urls, path("get", "/healthz/ping")));
    assert_true(allows(urls, path("get", "/apis/batch/v1")));
    assert_true(allows(urls, path("get", "/apis/")));
    assert_false(allows(urls, path("get", "/apis")));
    assert_false(allows(urls, path("post", "/healthz")));
    assert_false(allows(urls, res("get", "", "", "healthz", "", "")));
    assert_true(allows("{\"nonResourceURLs\":[\"*\"],\"verbs\":[\"*\"]}", path("delete", "/anything")));
    assert_false(allows("{\"verbs\":[\"get\"]}", res("get", "a", "", "pods", "", "")));
}

static void test_subjects(void **state)
{
    (void)state;
    json_t *sa = J("{\"username\":\"system:serviceaccount:prewarm:prewarmd\",\"groups\":[\"system:serviceaccounts\","
                   "\"system:serviceaccounts:prewarm\",\"system:authenticated\"]}");
    json_t *s = J("{\"kind\":\"ServiceAccount\",\"name\":\"prewarmd\",\"namespace\":\"prewarm\"}");
    assert_true(sim_rbac_subject_matches(s, sa, ""));
    json_decref(s);
    s = J("{\"kind\":\"ServiceAccount\",\"name\":\"prewarmd\"}");
    assert_true(sim_rbac_subject_matches(s, sa, "prewarm"));  /* a RoleBinding's namespace */
    assert_false(sim_rbac_subject_matches(s, sa, ""));        /* a ClusterRoleBinding: none */
    assert_false(sim_rbac_subject_matches(s, sa, "prewarm2")); /* another namespace */
    json_decref(s);
    s = J("{\"kind\":\"ServiceAccount\",\"name\":\"prewarm\",\"namespace\":\"prewarm\"}");
    assert_false(sim_rbac_subject_matches(s, sa, "")); /* a prefix of the name is not the name */
    json_decref(s);
    s = J("{\"kind\":\"Group\",\"name\":\"system:serviceaccounts:prewarm\"}");
    assert_true(sim_rbac_subject_matches(s, sa, ""));
    json_decref(s);
    s = J("{\"kind\":\"User\",\"name\":\"system:serviceaccount:prewarm:prewarmd\"}");
    assert_true(sim_rbac_subject_matches(s, sa, ""));
    json_decref(s);
    s = J("{\"kind\":\"User\",\"name\":\"system:serviceaccounts\"}"); /* a group's name as a user */
    assert_false(sim_rbac_subject_matches(s, sa, ""));
    json_decref(s);
    json_decref(sa);
}

static void put(sim_store *st, const char *key, const char *ns, const char *text)
{
    assert_int_equal(sim_store_create(st, key, ns, J(text), NULL), 0);
}

/* A store with: a ClusterRole "nodes" (list nodes) bound cluster-wide to the ServiceAccount
 * prewarm/prewarmd; a Role "jobs" in prewarm bound to it; the ClusterRole "view" bound in ns "team"
 * to User alice; a binding of a missing ClusterRole to Group g. */
static sim_store *fixture(void)
{
    sim_store *st = sim_store_new(100);
    put(st, SIM_RBAC_CLUSTERROLES, "",
        "{\"metadata\":{\"name\":\"nodes\"},\"rules\":[{\"apiGroups\":[\"\"],\"resources\":[\"nodes\"],"
        "\"verbs\":[\"list\",\"watch\"]}]}");
    put(st, SIM_RBAC_CLUSTERROLEBINDINGS, "",
        "{\"metadata\":{\"name\":\"nodes-b\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":"
        "\"ClusterRole\",\"name\":\"nodes\"},\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"prewarmd\","
        "\"namespace\":\"prewarm\"}]}");
    put(st, SIM_RBAC_ROLES, "prewarm",
        "{\"metadata\":{\"name\":\"jobs\",\"namespace\":\"prewarm\"},\"rules\":[{\"apiGroups\":[\"batch\"],"
        "\"resources\":[\"jobs\"],\"verbs\":[\"create\",\"delete\"]}]}");
    put(st, SIM_RBAC_ROLEBINDINGS, "prewarm",
        "{\"metadata\":{\"name\":\"jobs-b\",\"namespace\":\"prewarm\"},\"roleRef\":{\"kind\":\"Role\",\"name\":"
        "\"jobs\"},\"subjects\":[{\"kind\":\"ServiceAccount\",\"name\":\"prewarmd\"}]}");
    put(st, SIM_RBAC_CLUSTERROLES, "",
        "{\"metadata\":{\"name\":\"view\"},\"rules\":[{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],"
        "\"verbs\":[\"get\",\"list\"]}]}");
    put(st, SIM_RBAC_ROLEBINDINGS, "team",
        "{\"metadata\":{\"name\":\"alice-view\",\"namespace\":\"team\"},\"roleRef\":{\"kind\":\"ClusterRole\","
        "\"name\":\"view\"},\"subjects\":[{\"kind\":\"User\",\"name\":\"alice\"}]}");
    put(st, SIM_RBAC_CLUSTERROLEBINDINGS, "",
        "{\"metadata\":{\"name\":\"ghost-b\"},\"roleRef\":{\"kind\":\"ClusterRole\",\"name\":\"ghost\"},"
        "\"subjects\":[{\"kind\":\"Group\",\"name\":\"g\"}]}");
    return st;
}

static char *authz(sim_store *st, const char *user, struct sim_rbac_attrs a, bool *ok)
{
    json_t *u = J(user);
    char *reason = NULL;
    *ok = sim_rbac_authorize(st, u, &a, &reason);
    json_decref(u);
    assert_non_null(reason);
    return reason;
}

static const char SA_USER[] = "{\"username\":\"system:serviceaccount:prewarm:prewarmd\",\"groups\":["
                              "\"system:serviceaccounts\",\"system:serviceaccounts:prewarm\",\"system:authenticated\"]}";

static void test_authorize_walk(void **state)
{
    (void)state;
    sim_store *st = fixture();
    bool ok;
    char *why = authz(st, SA_USER, res("watch", "", "", "nodes", "", ""), &ok);
    assert_true(ok);
    assert_string_equal(why, "RBAC: allowed by ClusterRoleBinding \"nodes-b\" of ClusterRole \"nodes\" to "
                             "ServiceAccount \"prewarmd/prewarm\"");
    free(why);
    why = authz(st, SA_USER, res("create", "prewarm", "batch", "jobs", "", ""), &ok);
    assert_true(ok);
    assert_string_equal(why, "RBAC: allowed by RoleBinding \"jobs-b/prewarm\" of Role \"jobs\" to ServiceAccount "
                             "\"prewarmd/prewarm\"");
    free(why);
    why = authz(st, SA_USER, res("create", "other", "batch", "jobs", "", ""), &ok); /* a Role is per namespace */
    assert_false(ok);
    assert_string_equal(why, "");
    free(why);
    why = authz(st, SA_USER, res("list", "prewarm", "batch", "jobs", "", ""), &ok);
    assert_false(ok);
    free(why);
    /* a RoleBinding to a ClusterRole grants in its namespace only */
    why = authz(st, "{\"username\":\"alice\",\"groups\":[\"system:authenticated\"]}",
                res("list", "team", "", "pods", "", ""), &ok);
    assert_true(ok);
    assert_string_equal(why, "RBAC: allowed by RoleBinding \"alice-view/team\" of ClusterRole \"view\" to User \"alice\"");
    free(why);
    why = authz(st, "{\"username\":\"alice\"}", res("list", "", "", "pods", "", ""), &ok);
    assert_false(ok);
    free(why);
    why = authz(st, "{\"username\":\"alice\"}", res("list", "prewarm", "", "pods", "", ""), &ok);
    assert_false(ok);
    free(why);
    /* a missing role is named; two missing ones as a list */
    why = authz(st, "{\"username\":\"bob\",\"groups\":[\"g\"]}", res("get", "", "", "nodes", "", "n"), &ok);
    assert_false(ok);
    assert_string_equal(why, "RBAC: clusterrole.rbac.authorization.k8s.io \"ghost\" not found");
    free(why);
    put(st, SIM_RBAC_ROLEBINDINGS, "team",
        "{\"metadata\":{\"name\":\"ghost2\",\"namespace\":\"team\"},\"roleRef\":{\"kind\":\"Role\",\"name\":"
        "\"nope\"},\"subjects\":[{\"kind\":\"Group\",\"name\":\"g\"}]}");
    why = authz(st, "{\"username\":\"bob\",\"groups\":[\"g\"]}", res("get", "team", "", "pods", "", "p"), &ok);
    assert_false(ok);
    assert_string_equal(why, "RBAC: [clusterrole.rbac.authorization.k8s.io \"ghost\" not found, "
                             "role.rbac.authorization.k8s.io \"nope\" not found]");
    free(why);
    /* system:masters: everything, no reason */
    why = authz(st, "{\"username\":\"x\",\"groups\":[\"system:masters\"]}", path("delete", "/whatever"), &ok);
    assert_true(ok);
    assert_string_equal(why, "");
    free(why);
    /* no reason asked */
    json_t *u = J(SA_USER);
    struct sim_rbac_attrs a = res("list", "", "", "nodes", "", "");
    assert_true(sim_rbac_authorize(st, u, &a, NULL));
    json_decref(u);
    sim_store_free(st);
}

static void test_forbidden_messages(void **state)
{
    (void)state;
    json_t *u = J(SA_USER);
    struct sim_rbac_attrs a = res("list", "ns", "", "pods", "", "");
    char *m = sim_rbac_forbidden_message(u, &a, NULL);
    assert_string_equal(m, "pods is forbidden: User \"system:serviceaccount:prewarm:prewarmd\" cannot list resource "
                           "\"pods\" in API group \"\" in the namespace \"ns\"");
    free(m);
    a = res("get", "ns", "", "pods", "log", "p1");
    m = sim_rbac_forbidden_message(u, &a, "");
    assert_string_equal(m, "pods \"p1\" is forbidden: User \"system:serviceaccount:prewarm:prewarmd\" cannot get "
                           "resource \"pods/log\" in API group \"\" in the namespace \"ns\"");
    free(m);
    a = res("watch", "", "", "nodes", "", "");
    m = sim_rbac_forbidden_message(u, &a, "RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found");
    assert_string_equal(m, "nodes is forbidden: User \"system:serviceaccount:prewarm:prewarmd\" cannot watch resource "
                           "\"nodes\" in API group \"\" at the cluster scope: RBAC: "
                           "clusterrole.rbac.authorization.k8s.io \"x\" not found");
    free(m);
    a = res("create", "prewarm", "batch", "jobs", "", "");
    m = sim_rbac_forbidden_message(u, &a, NULL);
    assert_string_equal(m, "jobs.batch is forbidden: User \"system:serviceaccount:prewarm:prewarmd\" cannot create "
                           "resource \"jobs\" in API group \"batch\" in the namespace \"prewarm\"");
    free(m);
    a = path("get", "/metrics");
    m = sim_rbac_forbidden_message(u, &a, NULL);
    assert_string_equal(m, "forbidden: User \"system:serviceaccount:prewarm:prewarmd\" cannot get path \"/metrics\"");
    free(m);
    json_decref(u);
    u = J("{\"username\":\"a\\\"b\"}"); /* Go's %q escapes the quote */
    a = path("get", "/x");
    m = sim_rbac_forbidden_message(u, &a, NULL);
    assert_string_equal(m, "forbidden: User \"a\\\"b\" cannot get path \"/x\"");
    free(m);
    json_decref(u);
}

static json_t *rules_of(sim_store *st, const char *name)
{
    json_t *role;
    assert_int_equal(sim_store_get(st, SIM_RBAC_CLUSTERROLES, "", name, &role), 0);
    json_t *r = json_incref(json_object_get(role, "rules"));
    json_decref(role);
    return r;
}

static bool holds_all(const json_t *big, const json_t *small)
{
    size_t i, j;
    const json_t *a, *b;
    json_array_foreach(small, i, a)
    {
        bool found = false;
        json_array_foreach(big, j, b) found = found || json_equal(a, b);
        if (!found)
            return false;
    }
    return true;
}

static void test_bootstrap_aggregation(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    sim_rbac_bootstrap(st);
    sim_rbac_bootstrap(st); /* idempotent */
    assert_true(sim_rbac_aggregate(st) >= 3);
    assert_int_equal(sim_rbac_aggregate(st), 0); /* settled */
    json_t *base = rules_of(st, "system:aggregate-to-view"), *view = rules_of(st, "view");
    json_t *edit = rules_of(st, "edit"), *admin = rules_of(st, "admin");
    assert_true(json_array_size(base) > 0);
    assert_true(json_equal(base, view)); /* the only role labelled aggregate-to-view */
    assert_true(holds_all(edit, view));
    assert_true(holds_all(admin, edit));
    assert_true(json_array_size(admin) > json_array_size(edit));
    json_decref(base);
    json_decref(view);
    json_decref(edit);
    json_decref(admin);
    /* cluster-admin for system:masters through its binding too */
    json_t *u = J("{\"username\":\"a\",\"groups\":[\"system:masters\"]}");
    struct sim_rbac_attrs a = res("create", "", "", "nodes", "", "");
    assert_true(sim_rbac_authorize(st, u, &a, NULL));
    json_decref(u);
    /* discovery for everyone authenticated, self reviews too, nothing else */
    u = J("{\"username\":\"b\",\"groups\":[\"system:authenticated\"]}");
    a = path("get", "/apis/batch/v1");
    char *why = NULL;
    assert_true(sim_rbac_authorize(st, u, &a, &why));
    assert_string_equal(why, "RBAC: allowed by ClusterRoleBinding \"system:discovery\" of ClusterRole "
                             "\"system:discovery\" to Group \"system:authenticated\"");
    free(why);
    a = res("create", "", "authorization.k8s.io", "selfsubjectaccessreviews", "", "");
    assert_true(sim_rbac_authorize(st, u, &a, NULL));
    a = res("create", "", "authorization.k8s.io", "subjectaccessreviews", "", "");
    assert_false(sim_rbac_authorize(st, u, &a, NULL));
    json_decref(u);
    /* a new role labelled aggregate-to-view by an expression selector of a role of our own */
    put(st, SIM_RBAC_CLUSTERROLES, "",
        "{\"metadata\":{\"name\":\"pw-viewer\",\"labels\":{\"rbac.authorization.k8s.io/aggregate-to-view\":\"true\","
        "\"team\":\"ml\"}},\"rules\":[{\"apiGroups\":[\"prewarm.io\"],\"resources\":[\"tasks\"],\"verbs\":[\"get\"]}]}");
    put(st, SIM_RBAC_CLUSTERROLES, "",
        "{\"metadata\":{\"name\":\"ml\"},\"aggregationRule\":{\"clusterRoleSelectors\":[{\"matchExpressions\":"
        "[{\"key\":\"team\",\"operator\":\"In\",\"values\":[\"ml\",\"ai\"]}]}]}}");
    assert_true(sim_rbac_aggregate(st) >= 4); /* view, edit, admin, ml */
    json_t *want = J("[{\"apiGroups\":[\"prewarm.io\"],\"resources\":[\"tasks\"],\"verbs\":[\"get\"]}]");
    json_t *ml = rules_of(st, "ml");
    assert_true(json_equal(ml, want));
    json_decref(ml);
    admin = rules_of(st, "admin");
    assert_true(holds_all(admin, want));
    json_decref(admin);
    json_decref(want);
    assert_int_equal(sim_store_delete(st, SIM_RBAC_CLUSTERROLES, "", "pw-viewer", NULL), 0);
    sim_rbac_aggregate(st);
    ml = rules_of(st, "ml");
    assert_true(json_is_null(ml)); /* nothing selected: no rules */
    json_decref(ml);
    sim_store_free(st);
}

static void test_controller(void **state)
{
    (void)state;
    sim_store *st = sim_store_new(100);
    sim_rbac_bootstrap(st);
    sim_rbac_ctl *c = NULL;
    assert_int_equal(sim_rbac_ctl_start(st, &c), 0);
    put(st, SIM_RBAC_CLUSTERROLES, "",
        "{\"metadata\":{\"name\":\"x\",\"labels\":{\"rbac.authorization.k8s.io/aggregate-to-admin\":\"true\"}},"
        "\"rules\":[{\"apiGroups\":[\"x.io\"],\"resources\":[\"things\"],\"verbs\":[\"get\"]}]}");
    json_t *want = J("[{\"apiGroups\":[\"x.io\"],\"resources\":[\"things\"],\"verbs\":[\"get\"]}]");
    bool got = false;
    for (int i = 0; i < 500 && !got; i++) {
        json_t *admin = rules_of(st, "admin");
        got = holds_all(admin, want);
        json_decref(admin);
        if (!got) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(got);
    json_decref(want);
    sim_rbac_ctl_stop(c);
    sim_rbac_ctl_stop(NULL);
    sim_store_free(st);
}

/* ---- the token file ---- */

static sim_tokenfile *tf(const char *text, int want_rc, const char *want_err)
{
    sim_tokenfile *t = NULL;
    char *err = NULL;
    int rc = sim_tokenfile_parse("f.csv", text, strlen(text), &t, &err);
    assert_int_equal(rc, want_rc);
    if (want_err) {
        assert_non_null(err);
        assert_string_equal(err, want_err);
    }
    free(err);
    return t;
}

static void test_tokenfile(void **state)
{
    (void)state;
    sim_tokenfile *t = tf("t1,alice,u1,\"g1,g2\"\r\n\n\"t,2\",bob,u2\n,nobody,u3\nt1,alice2,u4,\"a \"\"q\"\"\",x\n", 0, NULL);
    assert_int_equal(sim_tokenfile_count(t), 2);
    json_t *u = sim_tokenfile_user(t, "t1"); /* the later record wins */
    assert_non_null(u);
    json_t *want = J("{\"username\":\"alice2\",\"uid\":\"u4\",\"groups\":[\"a \\\"q\\\"\",\"system:authenticated\"]}");
    assert_true(json_equal(u, want));
    json_decref(want);
    json_decref(u);
    u = sim_tokenfile_user(t, "t,2");
    want = J("{\"username\":\"bob\",\"uid\":\"u2\",\"groups\":[\"system:authenticated\"]}");
    assert_true(json_equal(u, want));
    json_decref(want);
    json_decref(u);
    assert_null(sim_tokenfile_user(t, ""));
    assert_null(sim_tokenfile_user(t, "t2"));
    assert_null(sim_tokenfile_user(NULL, "t1"));
    sim_tokenfile_free(t);
    t = tf("t,u,i,\"system:authenticated,x\"", 0, NULL);
    u = sim_tokenfile_user(t, "t");
    want = J("{\"username\":\"u\",\"uid\":\"i\",\"groups\":[\"system:authenticated\",\"x\"]}");
    assert_true(json_equal(u, want));
    json_decref(want);
    json_decref(u);
    sim_tokenfile_free(t);
    assert_null(tf("t1,alice\n", PW_EINVAL,
                   "token file 'f.csv' must have at least 3 columns (token, user name, user uid), found 2"));
    assert_null(tf("t1,al\"ice,u\n", PW_EINVAL, "f.csv: parse error on line 1, column 6: bare \" in non-quoted-field"));
    assert_null(tf("ok,a,b\n\"t1,alice,u\n", PW_EINVAL, NULL));
    assert_null(tf("\"t1\"x,alice,u\n", PW_EINVAL, NULL));
    t = tf("", 0, NULL);
    assert_int_equal(sim_tokenfile_count(t), 0);
    sim_tokenfile_free(t);
    sim_tokenfile_free(NULL);
    char *err = NULL;
    assert_int_equal(sim_tokenfile_load("/nonexistent/tokens.csv", &t, &err), PW_EIO);
    free(err);
}

/* ---- protobuf bodies ---- */

static size_t pb_len(unsigned char *out, unsigned num, const void *data, size_t n)
{
    size_t k = 0;
    out[k++] = (unsigned char)(num << 3 | 2);
    out[k++] = (unsigned char)n; /* n < 128 in these tests */
    memcpy(out + k, data, n);
    return k + n;
}

static void test_protobuf(void **state)
{
    (void)state;
    unsigned char meta[64], subj[64], ref[96], msg[256], env[400], unk[300], tm[80];
    size_t nm = pb_len(meta, 1, "rb", 2);
    size_t ns = pb_len(subj, 1, "User", 4);
    ns += pb_len(subj + ns, 2, "rbac.authorization.k8s.io", 25);
    ns += pb_len(subj + ns, 3, "alice", 5);
    ns += pb_len(subj + ns, 4, "", 0);
    size_t nr = pb_len(ref, 1, "rbac.authorization.k8s.io", 25);
    nr += pb_len(ref + nr, 2, "ClusterRole", 11);
    nr += pb_len(ref + nr, 3, "view", 4);
    size_t n = pb_len(msg, 1, meta, nm);
    n += pb_len(msg + n, 2, subj, ns);
    n += pb_len(msg + n, 3, ref, nr);
    /* runtime.Unknown {typeMeta {apiVersion, kind}, raw} */
    size_t nt = pb_len(tm, 1, "rbac.authorization.k8s.io/v1", 28);
    nt += pb_len(tm + nt, 2, "RoleBinding", 11);
    size_t nu = pb_len(unk, 1, tm, nt);
    unk[nu++] = 2 << 3 | 2; /* raw: longer than 127 bytes needs a two-byte varint */
    unk[nu++] = (unsigned char)(n | 0x80);
    unk[nu++] = (unsigned char)(n >> 7);
    memcpy(unk + nu, msg, n);
    nu += n;
    memcpy(env, "k8s\0", 4);
    memcpy(env + 4, unk, nu);
    json_t *doc = sim_rbac_pb_decode("RoleBinding", "rbac.authorization.k8s.io/v1", env, 4 + nu);
    assert_non_null(doc);
    json_t *want = J("{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"RoleBinding\",\"metadata\":{\"name\":"
                     "\"rb\"},\"subjects\":[{\"kind\":\"User\",\"apiGroup\":\"rbac.authorization.k8s.io\",\"name\":"
                     "\"alice\"}],\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\","
                     "\"name\":\"view\"}}");
    assert_true(json_equal(doc, want));
    json_decref(want);
    json_decref(doc);
    assert_null(sim_rbac_pb_decode("Role", "rbac.authorization.k8s.io/v1", env, 4 + nu)); /* another kind */
    assert_null(sim_rbac_pb_decode("RoleBinding", "rbac.authorization.k8s.io/v1", env, 4 + nu - 3)); /* cut */
    assert_null(sim_rbac_pb_decode("Pod", "v1", env, 4 + nu));
    assert_true(sim_rbac_pb_content("application/vnd.kubernetes.protobuf"));
    assert_true(sim_rbac_pb_content("application/vnd.kubernetes.protobuf; charset=x"));
    assert_false(sim_rbac_pb_content("application/vnd.kubernetes.protobufx"));
    assert_false(sim_rbac_pb_content(NULL));
    assert_true(sim_rbac_pb_known("ClusterRole") && sim_rbac_pb_known("SelfSubjectAccessReview"));
}

/* The uncovered rules of servant against owner, as compact JSON text (caller frees). */
static char *uncovered(const char *owner, const char *servant)
{
    json_t *o = J(owner), *sv = J(servant);
    json_t *u = sim_rbac_uncovered(o, sv);
    char *text = json_dumps(u, JSON_COMPACT);
    json_decref(o);
    json_decref(sv);
    json_decref(u);
    return text;
}

#define ASSERT_UNCOVERED(owner, servant, want)                                                                 \
    do {                                                                                                       \
        char *got_ = uncovered(owner, servant);                                                                \
        assert_string_equal(got_, want);                                                                       \
        free(got_);                                                                                            \
    } while (0)

static void test_escalation_cover(void **state)
{
    (void)state;
    const char *pods = "[{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"verbs\":[\"get\",\"list\"]}]";
    ASSERT_UNCOVERED(pods, "[{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"verbs\":[\"get\"]}]", "[]");
    /* verbs of one resource merge back; a covered resource of the same rule drops out */
    ASSERT_UNCOVERED(pods, "[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\",\"pods\"],\"verbs\":[\"get\",\"list\"]}]",
                     "[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"verbs\":[\"get\",\"list\"]}]");
    /* a subresource is not covered by its resource, but by star-slash-subresource and by a star */
    ASSERT_UNCOVERED(pods, "[{\"apiGroups\":[\"\"],\"resources\":[\"pods/log\"],\"verbs\":[\"get\"]}]",
                     "[{\"apiGroups\":[\"\"],\"resources\":[\"pods/log\"],\"verbs\":[\"get\"]}]");
    ASSERT_UNCOVERED("[{\"apiGroups\":[\"\"],\"resources\":[\"*/log\"],\"verbs\":[\"get\"]}]",
                     "[{\"apiGroups\":[\"\"],\"resources\":[\"pods/log\"],\"verbs\":[\"get\"]}]", "[]");
    ASSERT_UNCOVERED("[{\"apiGroups\":[\"*\"],\"resources\":[\"*\"],\"verbs\":[\"*\"]}]",
                     "[{\"apiGroups\":[\"apps\"],\"resources\":[\"deployments/scale\"],\"verbs\":[\"patch\"]}]", "[]");
    /* resourceNames: none in the owner covers any name; named owners cover only those names */
    ASSERT_UNCOVERED(pods, "[{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"resourceNames\":[\"a\"],\"verbs\":[\"get\"]}]",
                     "[]");
    const char *named = "[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"resourceNames\":[\"a\"],\"verbs\":[\"get\"]}]";
    ASSERT_UNCOVERED(named, "[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"verbs\":[\"get\"]}]",
                     "[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"verbs\":[\"get\"]}]");
    ASSERT_UNCOVERED(named,
                     "[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"resourceNames\":[\"a\",\"b\"],"
                     "\"verbs\":[\"get\"]}]",
                     "[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"resourceNames\":[\"b\"],\"verbs\":[\"get\"]}]");
    /* another group is another permission */
    ASSERT_UNCOVERED(pods, "[{\"apiGroups\":[\"apps\"],\"resources\":[\"pods\"],\"verbs\":[\"get\"]}]",
                     "[{\"apiGroups\":[\"apps\"],\"resources\":[\"pods\"],\"verbs\":[\"get\"]}]");
    /* non-resource URLs: exact, a prefix with a star; resource rules never cover them */
    const char *urls = "[{\"nonResourceURLs\":[\"/healthz\",\"/api/*\"],\"verbs\":[\"get\"]}]";
    ASSERT_UNCOVERED(urls, "[{\"nonResourceURLs\":[\"/healthz\",\"/api/v1\"],\"verbs\":[\"get\"]}]", "[]");
    ASSERT_UNCOVERED(urls, "[{\"nonResourceURLs\":[\"/metrics\"],\"verbs\":[\"get\",\"post\"]}]",
                     "[{\"nonResourceURLs\":[\"/metrics\"],\"verbs\":[\"get\",\"post\"]}]");
    ASSERT_UNCOVERED("[{\"apiGroups\":[\"*\"],\"resources\":[\"*\"],\"verbs\":[\"*\"]}]",
                     "[{\"nonResourceURLs\":[\"/healthz\"],\"verbs\":[\"get\"]}]",
                     "[{\"nonResourceURLs\":[\"/healthz\"],\"verbs\":[\"get\"]}]");
    /* nothing held covers nothing; nothing asked is always covered */
    ASSERT_UNCOVERED("[]", "[]", "[]");

    /* ConfirmNoEscalation's words */
    json_t *user = J("{\"username\":\"bob\",\"groups\":[\"devs\",\"system:authenticated\"]}");
    json_t *miss = J("[{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"verbs\":[\"get\",\"list\"]},"
                     "{\"nonResourceURLs\":[\"/metrics\"],\"verbs\":[\"get\"]},"
                     "{\"apiGroups\":[\"\"],\"resources\":[\"secrets\"],\"resourceNames\":[\"b\"],\"verbs\":[\"get\"]}]");
    char *msg = sim_rbac_escalation_message(user, miss, "role.rbac.authorization.k8s.io \"x\" not found");
    assert_string_equal(msg, "user \"bob\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC "
                             "permissions not currently held:\n"
                             "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}\n"
                             "{NonResourceURLs:[\"/metrics\"], Verbs:[\"get\"]}\n"
                             "{APIGroups:[\"\"], Resources:[\"secrets\"], ResourceNames:[\"b\"], Verbs:[\"get\"]}; "
                             "resolution errors: role.rbac.authorization.k8s.io \"x\" not found");
    free(msg);
    json_decref(user);
    json_decref(miss);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_matching),       cmocka_unit_test(test_subjects),
        cmocka_unit_test(test_authorize_walk),      cmocka_unit_test(test_forbidden_messages),
        cmocka_unit_test(test_bootstrap_aggregation), cmocka_unit_test(test_controller),
        cmocka_unit_test(test_tokenfile),           cmocka_unit_test(test_protobuf),
        cmocka_unit_test(test_escalation_cover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
