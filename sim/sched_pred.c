/* sched_pred.c: the scheduler's pure parts (sched.h): quantities, pod requests and node allocatable,
 * tolerations, node affinity, the filters, the FitError message, and the binding write that the
 * scheduler and the pods/binding subresource share.
 *
 * Thread model: no state; sim_sched_bind writes through the store (any thread). */
#include "sim/sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

/* ---------------------------------- quantities ---------------------------------- */

int sim_quantity_parse(const char *text, bool milli, int64_t *out)
{
    if (!text || !*text)
        return PW_EINVAL;
    const char *p = text;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    long double mant = 0;
    int digits = 0, frac = 0;
    bool dot = false;
    for (; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            mant = mant * 10 + (*p - '0');
            digits++;
            if (dot)
                frac++;
        } else if (*p == '.' && !dot) {
            dot = true;
        } else {
            break;
        }
    }
    if (!digits)
        return PW_EINVAL;
    long double v = mant / powl(10, frac);
    static const struct {
        const char *s;
        long double f;
    } SUF[] = {{"Ki", 1024.0L}, {"Mi", 1048576.0L}, {"Gi", 1073741824.0L}, {"Ti", 1099511627776.0L},
               {"Pi", 1125899906842624.0L}, {"Ei", 1152921504606846976.0L}, {"n", 1e-9L}, {"u", 1e-6L},
               {"m", 1e-3L}, {"k", 1e3L}, {"M", 1e6L}, {"G", 1e9L}, {"T", 1e12L}, {"P", 1e15L}, {"E", 1e18L}};
    if (*p == 'e' || *p == 'E') {
        /* "1e3" (an exponent) but "1E" is exa: an exponent needs digits after it */
        const char *q = p + 1;
        bool eneg = false;
        if (*q == '+' || *q == '-')
            eneg = *q++ == '-';
        if (*q >= '0' && *q <= '9') {
            long e = 0;
            while (*q >= '0' && *q <= '9' && e < 100)
                e = e * 10 + (*q++ - '0');
            if (*q)
                return PW_EINVAL;
            v *= powl(10, eneg ? -e : e);
            p = q;
        }
    }
    if (*p) {
        bool found = false;
        for (size_t i = 0; i < sizeof SUF / sizeof SUF[0] && !found; i++)
            if (strcmp(p, SUF[i].s) == 0) {
                v *= SUF[i].f;
                found = true;
            }
        if (!found)
            return PW_EINVAL;
    }
    if (milli)
        v *= 1000;
    if (v > 9.2e18L)
        return PW_EINVAL;
    long double r = ceill(v - 1e-9L); /* rounded up, as Value()/MilliValue() */
    if (r < 0)
        r = 0;
    *out = neg ? -(int64_t)r : (int64_t)r;
    return 0;
}

static int64_t qty(const json_t *v, bool milli)
{
    int64_t out = 0;
    if (json_is_string(v) && sim_quantity_parse(json_string_value(v), milli, &out) == 0)
        return out;
    if (json_is_number(v))
        return (int64_t)ceil(json_number_value(v) * (milli ? 1000 : 1));
    return 0;
}

static void cont_requests(const json_t *c, struct sim_res *r)
{
    json_t *res = json_object_get(c, "resources");
    json_t *req = json_object_get(res, "requests"), *lim = json_object_get(res, "limits");
    json_t *cpu = json_object_get(req, "cpu"), *mem = json_object_get(req, "memory");
    r->milli_cpu = qty(cpu ? cpu : json_object_get(lim, "cpu"), true);
    r->memory = qty(mem ? mem : json_object_get(lim, "memory"), false);
}

void sim_sched_pod_requests(const json_t *pod_spec, struct sim_res *out)
{
    memset(out, 0, sizeof *out);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(pod_spec, "containers"), i, c)
    {
        struct sim_res r;
        cont_requests(c, &r);
        out->milli_cpu += r.milli_cpu;
        out->memory += r.memory;
    }
    json_array_foreach(json_object_get(pod_spec, "initContainers"), i, c)
    {
        struct sim_res r;
        cont_requests(c, &r);
        if (r.milli_cpu > out->milli_cpu)
            out->milli_cpu = r.milli_cpu;
        if (r.memory > out->memory)
            out->memory = r.memory;
    }
    out->pods = 1;
}

void sim_sched_node_allocatable(const json_t *node, struct sim_res *out)
{
    json_t *a = json_object_get(json_object_get(node, "status"), "allocatable");
    out->milli_cpu = qty(json_object_get(a, "cpu"), true);
    out->memory = qty(json_object_get(a, "memory"), false);
    out->pods = qty(json_object_get(a, "pods"), false);
}

/* ---------------------------------- predicates ---------------------------------- */

bool sim_sched_tolerates(const json_t *tols, const json_t *taint)
{
    const char *key = json_string_value(json_object_get(taint, "key"));
    const char *val = json_string_value(json_object_get(taint, "value"));
    const char *eff = json_string_value(json_object_get(taint, "effect"));
    size_t i;
    json_t *tol;
    json_array_foreach(tols, i, tol)
    {
        const char *tk = json_string_value(json_object_get(tol, "key"));
        const char *op = json_string_value(json_object_get(tol, "operator"));
        const char *tv = json_string_value(json_object_get(tol, "value"));
        const char *te = json_string_value(json_object_get(tol, "effect"));
        if (te && *te && (!eff || strcmp(te, eff) != 0))
            continue;
        bool exists = op && strcmp(op, "Exists") == 0;
        if (!tk || !*tk) {
            if (exists)
                return true; /* an empty key with Exists tolerates everything */
            continue;
        }
        if (!key || strcmp(tk, key) != 0)
            continue;
        if (exists || strcmp(tv ? tv : "", val ? val : "") == 0)
            return true;
    }
    return false;
}

static bool parse_int64(const char *s, int64_t *out)
{
    if (!s || !*s)
        return false;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return false;
    *out = v;
    return true;
}

/* One node selector requirement against a value (NULL: the label is absent). */
static bool requirement(const json_t *req, const char *value)
{
    const char *op = json_string_value(json_object_get(req, "operator"));
    json_t *vals = json_object_get(req, "values");
    if (!op)
        return false;
    bool in = false;
    size_t i;
    json_t *v;
    json_array_foreach(vals, i, v) if (value && json_string_value(v) && strcmp(json_string_value(v), value) == 0) in =
        true;
    if (strcmp(op, "In") == 0)
        return value && in;
    if (strcmp(op, "NotIn") == 0)
        return !in;
    if (strcmp(op, "Exists") == 0)
        return value != NULL;
    if (strcmp(op, "DoesNotExist") == 0)
        return value == NULL;
    if (strcmp(op, "Gt") == 0 || strcmp(op, "Lt") == 0) {
        int64_t a, b;
        if (!parse_int64(value, &a) || json_array_size(vals) != 1 ||
            !parse_int64(json_string_value(json_array_get(vals, 0)), &b))
            return false;
        return op[0] == 'G' ? a > b : a < b;
    }
    return false;
}

bool sim_sched_term_matches(const json_t *term, const json_t *labels, const char *node_name)
{
    json_t *exprs = json_object_get(term, "matchExpressions"), *fields = json_object_get(term, "matchFields");
    if (json_array_size(exprs) == 0 && json_array_size(fields) == 0)
        return false;
    size_t i;
    json_t *r;
    json_array_foreach(exprs, i, r)
    {
        const char *key = json_string_value(json_object_get(r, "key"));
        if (!key || !requirement(r, json_string_value(json_object_get(labels, key))))
            return false;
    }
    json_array_foreach(fields, i, r)
    {
        const char *key = json_string_value(json_object_get(r, "key"));
        if (!key || strcmp(key, "metadata.name") != 0 || !requirement(r, node_name))
            return false;
    }
    return true;
}

bool sim_sched_affinity_match(const json_t *pod_spec, const json_t *labels, const char *node_name)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(pod_spec, "nodeSelector"), k, v)
    {
        const char *have = json_string_value(json_object_get(labels, k));
        if (!have || !json_string_value(v) || strcmp(have, json_string_value(v)) != 0)
            return false;
    }
    json_t *req = json_object_get(json_object_get(json_object_get(pod_spec, "affinity"), "nodeAffinity"),
                                  "requiredDuringSchedulingIgnoredDuringExecution");
    if (!req)
        return true;
    size_t i;
    json_t *term;
    json_array_foreach(json_object_get(req, "nodeSelectorTerms"), i, term) if (sim_sched_term_matches(term, labels, node_name))
        return true;
    return false;
}

int sim_sched_filter(const json_t *pod_spec, const json_t *node, const struct sim_res *req, const struct sim_res *used,
                     char *taint, size_t taint_size)
{
    json_t *spec = json_object_get(node, "spec");
    json_t *tols = json_object_get(pod_spec, "tolerations");
    /* NodeUnschedulable */
    if (json_is_true(json_object_get(spec, "unschedulable"))) {
        json_t *t = json_pack("{s:s, s:s}", "key", "node.kubernetes.io/unschedulable", "effect", "NoSchedule");
        bool ok = sim_sched_tolerates(tols, t);
        json_decref(t);
        if (!ok)
            return SIM_SF_UNSCHEDULABLE;
    }
    /* TaintToleration: the first NoSchedule/NoExecute taint not tolerated */
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(spec, "taints"), i, t)
    {
        const char *eff = json_string_value(json_object_get(t, "effect"));
        if (!eff || (strcmp(eff, "NoSchedule") != 0 && strcmp(eff, "NoExecute") != 0) || sim_sched_tolerates(tols, t))
            continue;
        const char *k = json_string_value(json_object_get(t, "key"));
        const char *v = json_string_value(json_object_get(t, "value"));
        if (taint_size)
            snprintf(taint, taint_size, "{%s: %s}", k ? k : "", v ? v : "");
        return SIM_SF_TAINT;
    }
    /* NodeAffinity */
    const char *name = json_string_value(json_object_get(json_object_get(node, "metadata"), "name"));
    if (!sim_sched_affinity_match(pod_spec, json_object_get(json_object_get(node, "metadata"), "labels"),
                                  name ? name : ""))
        return SIM_SF_AFFINITY;
    /* NodeResourcesFit */
    struct sim_res alloc;
    sim_sched_node_allocatable(node, &alloc);
    int bits = 0;
    if (used->pods + 1 > alloc.pods)
        bits |= SIM_SF_PODS;
    if (req->milli_cpu > 0 && req->milli_cpu > alloc.milli_cpu - used->milli_cpu)
        bits |= SIM_SF_CPU;
    if (req->memory > 0 && req->memory > alloc.memory - used->memory)
        bits |= SIM_SF_MEMORY;
    return bits;
}

/* ---------------------------------- the message ---------------------------------- */

struct fit_reason {
    char *text;
    int count;
    bool resolvable; /* preemption could help (resources); else UnschedulableAndUnresolvable */
};

struct sim_fit_msg {
    struct fit_reason *r;
    int n, cap;
    int resolvable_nodes, unresolvable_nodes;
};

struct sim_fit_msg *sim_fit_msg_new(void)
{
    return pw_xcalloc(1, sizeof(struct sim_fit_msg));
}

static void reason_add(struct sim_fit_msg *m, const char *text, bool resolvable)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->r[i].text, text) == 0) {
            m->r[i].count++;
            return;
        }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->r = pw_xrealloc(m->r, sizeof *m->r * (size_t)m->cap);
    }
    m->r[m->n++] = (struct fit_reason){.text = pw_xstrdup(text), .count = 1, .resolvable = resolvable};
}

void sim_fit_msg_add(struct sim_fit_msg *m, int bits, const char *taint)
{
    if (bits & SIM_SF_UNSCHEDULABLE)
        reason_add(m, "node(s) were unschedulable", false);
    if (bits & SIM_SF_TAINT) {
        char *s = pw_xasprintf("node(s) had untolerated taint %s", taint ? taint : "{}");
        reason_add(m, s, false);
        free(s);
    }
    if (bits & SIM_SF_AFFINITY)
        reason_add(m, "node(s) didn't match Pod's node affinity/selector", false);
    if (bits & SIM_SF_CPU)
        reason_add(m, "Insufficient cpu", true);
    if (bits & SIM_SF_MEMORY)
        reason_add(m, "Insufficient memory", true);
    if (bits & SIM_SF_PODS)
        reason_add(m, "Too many pods", true);
    if (bits & (SIM_SF_UNSCHEDULABLE | SIM_SF_TAINT | SIM_SF_AFFINITY))
        m->unresolvable_nodes++;
    else if (bits)
        m->resolvable_nodes++;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "a, b, c" of the sorted strings; frees them. */
static char *join_sorted(char **s, int n)
{
    qsort(s, (size_t)n, sizeof *s, cmp_str);
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(s[i]) + 2;
    char *out = pw_xmalloc(len);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(out, ", ");
        strcat(out, s[i]);
        free(s[i]);
    }
    return out;
}

char *sim_fit_msg_take(struct sim_fit_msg *m, int nnodes)
{
    char *out;
    if (nnodes == 0) {
        out = pw_xstrdup("no nodes available to schedule pods");
    } else {
        char **s = pw_xcalloc((size_t)m->n + 1, sizeof *s);
        for (int i = 0; i < m->n; i++)
            s[i] = pw_xasprintf("%d %s", m->r[i].count, m->r[i].text);
        char *filters = join_sorted(s, m->n);
        free(s);
        /* DefaultPreemption: every pod has priority 0 here, so no node has victims of lower priority */
        char *p[2];
        int np = 0;
        if (m->unresolvable_nodes)
            p[np++] = pw_xasprintf("%d Preemption is not helpful for scheduling", m->unresolvable_nodes);
        if (m->resolvable_nodes)
            p[np++] = pw_xasprintf("%d No preemption victims found for incoming pod", m->resolvable_nodes);
        char *pre = join_sorted(p, np);
        out = pw_xasprintf("0/%d nodes are available: %s. preemption: 0/%d nodes are available: %s.", nnodes, filters,
                           nnodes, pre);
        free(filters);
        free(pre);
    }
    for (int i = 0; i < m->n; i++)
        free(m->r[i].text);
    free(m->r);
    free(m);
    return out;
}

/* ---------------------------------- binding ---------------------------------- */

static void now_rfc(char out[PW_RFC3339_LEN])
{
    pw_time_rfc3339(time(NULL), out);
}

bool sim_sched_set_scheduled(json_t *obj, bool ok, const char *reason, const char *msg)
{
    json_t *st = json_object_get(obj, "status");
    if (!json_is_object(st)) {
        st = json_object();
        json_object_set_new(obj, "status", st);
    }
    json_t *conds = json_object_get(st, "conditions");
    if (!json_is_array(conds)) {
        conds = json_array();
        json_object_set_new(st, "conditions", conds);
    }
    char now[PW_RFC3339_LEN];
    now_rfc(now);
    json_t *c = json_pack("{s:s, s:s, s:n, s:s}", "type", "PodScheduled", "status", ok ? "True" : "False",
                          "lastProbeTime", "lastTransitionTime", now);
    if (reason)
        json_object_set_new(c, "reason", json_string(reason));
    if (msg)
        json_object_set_new(c, "message", json_string(msg));
    size_t i;
    json_t *old;
    json_array_foreach(conds, i, old)
    {
        const char *type = json_string_value(json_object_get(old, "type"));
        if (!type || strcmp(type, "PodScheduled") != 0)
            continue;
        const char *os = json_string_value(json_object_get(old, "status"));
        const char *orsn = json_string_value(json_object_get(old, "reason"));
        const char *om = json_string_value(json_object_get(old, "message"));
        bool same_status = os && strcmp(os, ok ? "True" : "False") == 0;
        if (same_status && strcmp(orsn ? orsn : "", reason ? reason : "") == 0 &&
            strcmp(om ? om : "", msg ? msg : "") == 0) {
            json_decref(c);
            return false;
        }
        if (same_status) /* the transition time moves only when the status does */
            json_object_set(c, "lastTransitionTime", json_object_get(old, "lastTransitionTime"));
        json_array_set_new(conds, i, c);
        return true;
    }
    json_array_append_new(conds, c);
    return true;
}

struct bind_arg {
    const char *uid, *node;
    const json_t *annotations;
    char *msg;
};

static int bind_fn(void *arg, json_t *obj)
{
    struct bind_arg *a = arg;
    json_t *md = json_object_get(obj, "metadata");
    const char *name = json_string_value(json_object_get(md, "name"));
    const char *uid = json_string_value(json_object_get(md, "uid"));
    if (a->uid && (!uid || strcmp(uid, a->uid) != 0)) {
        a->msg = pw_xasprintf("Operation cannot be fulfilled on pods/binding \"%s\": the UID in the precondition (%s) "
                              "does not match the UID in record (%s). The object might have been deleted and then "
                              "recreated",
                              name ? name : "", a->uid, uid ? uid : "");
        return PW_ECONFLICT;
    }
    json_t *spec = json_object_get(obj, "spec");
    const char *cur = json_string_value(json_object_get(spec, "nodeName"));
    if (json_object_get(md, "deletionTimestamp")) {
        a->msg = pw_xasprintf("Operation cannot be fulfilled on pods/binding \"%s\": pod %s is being deleted, cannot "
                              "be assigned to a host",
                              name ? name : "", name ? name : "");
        return PW_ECONFLICT;
    }
    if (cur && *cur) {
        a->msg = pw_xasprintf("Operation cannot be fulfilled on pods/binding \"%s\": pod %s is already assigned to "
                              "node \"%s\"",
                              name ? name : "", name ? name : "", cur);
        return PW_ECONFLICT;
    }
    json_object_set_new(spec, "nodeName", json_string(a->node));
    if (json_object_size(a->annotations)) {
        json_t *ann = json_object_get(md, "annotations");
        if (!json_is_object(ann)) {
            ann = json_object();
            json_object_set_new(md, "annotations", ann);
        }
        json_object_update(ann, (json_t *)a->annotations);
    }
    sim_sched_set_scheduled(obj, true, NULL, NULL);
    return 0;
}

int sim_sched_bind(sim_store *store, const char *ns, const char *name, const char *uid, const char *node,
                   const json_t *annotations, char **msg)
{
    struct bind_arg a = {.uid = uid, .node = node, .annotations = annotations};
    int rc = sim_store_mutate(store, "pods", ns, name, bind_fn, &a, NULL);
    if (msg)
        *msg = a.msg;
    else
        free(a.msg);
    return rc;
}
