/* sched.c: kubesim's scheduler (interface and semantics in sched.h).
 *
 * State: a cache of the nodes (the latest object, allocatable, what their pods request) and of the
 * pods (requests, where they are counted, and the scheduling queue of the pending ones), kept from the
 * world's change stream like the real scheduler's informers. The queue is worked through on a world
 * timer: pods in arrival order, each tried on every node (or, past 100 nodes, until enough feasible
 * nodes are found, from a rotating start, as percentageOfNodesToScore), the best score bound. A pod that
 * fits nowhere waits for a change that may help (a node added or changed in labels, taints,
 * unschedulable or allocatable; a pod deleted or finished), then for its back-off (1 s doubling to
 * 10 s, model time), and is retried at the latest 5 minutes after its last attempt.
 *
 * Thread model: the world thread, world->lock held; sim_sched_bind from any thread. */
#include "sim/sched.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "sim/world_int.h"

#define BACKOFF_INITIAL_S 1.0  /* podInitialBackoffSeconds */
#define BACKOFF_MAX_S 10.0     /* podMaxBackoffSeconds */
#define UNSCHED_FLUSH_S 300.0  /* podMaxInUnschedulablePodsDuration */
#define MIN_FEASIBLE 100       /* minFeasibleNodesToFind */
#define DEFAULT_MILLI_CPU 100  /* the scoring's non-zero defaults for pods without requests */
#define DEFAULT_MEMORY (200LL * 1024 * 1024)
#define IMG_MIN_BYTES (23LL * 1024 * 1024) /* ImageLocality thresholds */
#define IMG_MAX_BYTES (1000LL * 1024 * 1024)

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

/* A NodeSelectorTerm: every expression and field requirement holds; an empty term matches nothing. */
static bool term_matches(const json_t *term, const json_t *labels, const char *node_name)
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
    json_array_foreach(json_object_get(req, "nodeSelectorTerms"), i, term) if (term_matches(term, labels, node_name))
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

/* Sets (or replaces) the PodScheduled condition of obj's status; false when it was already so. */
static bool set_scheduled_cond(json_t *obj, bool ok, const char *reason, const char *msg)
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
    set_scheduled_cond(obj, true, NULL, NULL);
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

/* ---------------------------------- the scheduler's state ---------------------------------- */

struct snode {
    char *name;
    json_t *obj;
    uint64_t rv;
    struct sim_res alloc, used;
    bool gone;
};

struct spod {
    char *key, *ns, *name, *uid;
    json_t *spec;     /* while pending */
    char *node;       /* where its requests are counted, or NULL */
    struct sim_res req;
    bool pending;     /* waits for a node */
    bool queued;      /* in the queue array (freed from there when dead) */
    bool dead;        /* deleted while queued */
    bool wait_event;  /* unschedulable: waits for a change that may help */
    double due;       /* not tried before (back-off) */
    double last_try;
    int attempts;
    char *last_msg;
};

struct sstate {
    bool synced;
    struct sim_map nodes; /* name -> snode */
    struct snode **nodearr;
    int nnodes, capnodes;
    struct sim_map pods; /* "ns/name" -> spod */
    struct spod **queue;
    int nqueue, capqueue;
    double timer_at; /* the earliest queue timer set (INFINITY: none) */
    size_t next_start;
};

static struct sstate *sst(struct sim_world *w)
{
    if (!w->sched) {
        struct sstate *s = pw_xcalloc(1, sizeof *s);
        s->timer_at = INFINITY;
        w->sched = s;
    }
    return w->sched;
}

static uint64_t obj_rv(const json_t *obj)
{
    const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return rv ? strtoull(rv, NULL, 10) : 0;
}

static void res_add(struct sim_res *a, const struct sim_res *b, int sign)
{
    a->milli_cpu += sign * b->milli_cpu;
    a->memory += sign * b->memory;
    a->pods += sign * b->pods;
}

/* Counts (or uncounts) a pod's requests on its node. */
static void count_on(struct sstate *s, struct spod *p, const char *node)
{
    if (p->node) {
        struct snode *n = sim_map_get(&s->nodes, p->node);
        if (n)
            res_add(&n->used, &p->req, -1);
        free(p->node);
        p->node = NULL;
    }
    if (node) {
        p->node = pw_xstrdup(node);
        struct snode *n = sim_map_get(&s->nodes, node);
        if (n)
            res_add(&n->used, &p->req, 1);
    }
}

struct recount_arg {
    struct snode *n;
};

static void recount_one(void *arg, const char *key, void *val)
{
    (void)key;
    struct recount_arg *a = arg;
    struct spod *p = val;
    if (p->node && strcmp(p->node, a->n->name) == 0)
        res_add(&a->n->used, &p->req, 1);
}

static void kick(struct sim_world *w, struct sstate *s, double at)
{
    if (at < s->timer_at) {
        s->timer_at = at;
        sim_world_timer(w, at, SIM_T_SCHED, "");
    }
}

/* A change that may make unschedulable pods fit: they are tried again after their back-off. */
static void cluster_changed(struct sim_world *w, struct sstate *s)
{
    double next = INFINITY;
    for (int i = 0; i < s->nqueue; i++) {
        struct spod *p = s->queue[i];
        if (p->dead || !p->pending || !p->wait_event)
            continue;
        p->wait_event = false;
        if (p->due < next)
            next = p->due;
    }
    if (next < INFINITY)
        kick(w, s, next < sim_world_now(w) ? sim_world_now(w) : next);
}

static struct snode *node_put(struct sstate *s, const json_t *obj, bool *relevant)
{
    const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    if (!name)
        return NULL;
    struct snode *n = sim_map_get(&s->nodes, name);
    uint64_t rv = obj_rv(obj);
    if (n && rv && rv < n->rv)
        return n; /* an older version than what we hold (the initial list raced with the stream) */
    if (!n) {
        n = pw_xcalloc(1, sizeof *n);
        n->name = pw_xstrdup(name);
        sim_map_put(&s->nodes, name, n);
        if (s->nnodes == s->capnodes) {
            s->capnodes = s->capnodes ? s->capnodes * 2 : 64;
            s->nodearr = pw_xrealloc(s->nodearr, sizeof *s->nodearr * (size_t)s->capnodes);
        }
        s->nodearr[s->nnodes++] = n;
        struct recount_arg a = {n};
        sim_map_each(&s->pods, recount_one, &a);
        *relevant = true;
    } else {
        const json_t *o = n->obj;
        json_t *l1 = json_object_get(json_object_get(o, "metadata"), "labels");
        json_t *l2 = json_object_get(json_object_get(obj, "metadata"), "labels");
        json_t *a1 = json_object_get(json_object_get(o, "status"), "allocatable");
        json_t *a2 = json_object_get(json_object_get(obj, "status"), "allocatable");
        json_t *s1 = json_object_get(o, "spec"), *s2 = json_object_get(obj, "spec");
        if (!json_equal(l1 ? l1 : json_null(), l2 ? l2 : json_null()) ||
            !json_equal(a1 ? a1 : json_null(), a2 ? a2 : json_null()) ||
            !json_equal(s1 ? s1 : json_null(), s2 ? s2 : json_null()))
            *relevant = true;
    }
    json_decref(n->obj);
    n->obj = json_incref((json_t *)obj);
    n->rv = rv;
    n->gone = false;
    sim_sched_node_allocatable(obj, &n->alloc);
    return n;
}

static void node_remove(struct sstate *s, const char *name)
{
    struct snode *n = sim_map_del(&s->nodes, name);
    if (!n)
        return;
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodearr[i] == n) {
            memmove(&s->nodearr[i], &s->nodearr[i + 1], sizeof *s->nodearr * (size_t)(s->nnodes - i - 1));
            s->nnodes--;
            break;
        }
    json_decref(n->obj);
    free(n->name);
    free(n);
}

/* The nodes that existed before the world subscribed to the store (the initial ones). */
static void sync_nodes(struct sim_world *w, struct sstate *s)
{
    if (s->synced)
        return;
    s->synced = true;
    json_t *items = NULL;
    bool more = false;
    uint64_t rv = 0;
    if (sim_store_list(w->sim->store, "nodes", NULL, NULL, 0, NULL, NULL, &items, &more, &rv) != 0)
        return;
    size_t i;
    json_t *n;
    bool relevant = false;
    json_array_foreach(items, i, n) node_put(s, n, &relevant);
    json_decref(items);
}

void sim_sched_on_node(struct sim_world *w, const struct sim_change *ch)
{
    struct sstate *s = sst(w);
    sync_nodes(w, s);
    if (ch->type == SIM_DELETED) {
        node_remove(s, ch->name);
        return;
    }
    bool relevant = false;
    node_put(s, ch->obj, &relevant);
    if (relevant)
        cluster_changed(w, s);
}

const json_t *sim_sched_node_labels(struct sim_world *w, const char *name)
{
    struct sstate *s = sst(w);
    sync_nodes(w, s);
    struct snode *n = sim_map_get(&s->nodes, name);
    return n ? json_object_get(json_object_get(n->obj, "metadata"), "labels") : NULL;
}

static void free_spod(struct spod *p)
{
    free(p->key);
    free(p->ns);
    free(p->name);
    free(p->uid);
    free(p->node);
    free(p->last_msg);
    json_decref(p->spec);
    free(p);
}

static void pod_forget(struct sstate *s, struct spod *p)
{
    count_on(s, p, NULL);
    sim_map_del(&s->pods, p->key);
    if (p->queued)
        p->dead = true;
    else
        free_spod(p);
}

static void enqueue(struct sim_world *w, struct sstate *s, struct spod *p)
{
    p->pending = true;
    p->wait_event = false;
    p->due = sim_world_now(w);
    if (!p->queued) {
        if (s->nqueue == s->capqueue) {
            s->capqueue = s->capqueue ? s->capqueue * 2 : 64;
            s->queue = pw_xrealloc(s->queue, sizeof *s->queue * (size_t)s->capqueue);
        }
        s->queue[s->nqueue++] = p;
        p->queued = true;
    }
    kick(w, s, p->due + w->sim->opt.controller_ms / 1000.0);
}

void sim_sched_on_pod(struct sim_world *w, const struct sim_change *ch)
{
    struct sstate *s = sst(w);
    sync_nodes(w, s);
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ch->ns, ch->name);
    struct spod *p = sim_map_get(&s->pods, key);
    json_t *md = json_object_get(ch->obj, "metadata");
    const char *uid = json_string_value(json_object_get(md, "uid"));
    if (p && (ch->type == SIM_DELETED || !uid || strcmp(p->uid, uid) != 0)) {
        bool freed = p->node != NULL;
        pod_forget(s, p);
        p = NULL;
        if (freed)
            cluster_changed(w, s);
    }
    if (ch->type == SIM_DELETED)
        return;
    json_t *spec = json_object_get(ch->obj, "spec");
    const char *node = json_string_value(json_object_get(spec, "nodeName"));
    const char *phase = json_string_value(json_object_get(json_object_get(ch->obj, "status"), "phase"));
    const char *sched = json_string_value(json_object_get(spec, "schedulerName"));
    bool terminal = phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0);
    bool bound = node && *node;
    if (!p) {
        if (terminal)
            return;
        p = pw_xcalloc(1, sizeof *p);
        p->key = pw_xstrdup(key);
        p->ns = pw_xstrdup(ch->ns);
        p->name = pw_xstrdup(ch->name);
        p->uid = pw_xstrdup(uid ? uid : "");
        sim_sched_pod_requests(spec, &p->req);
        sim_map_put(&s->pods, key, p);
    }
    if (terminal) {
        bool freed = p->node != NULL;
        pod_forget(s, p);
        if (freed)
            cluster_changed(w, s);
        return;
    }
    if (bound) {
        if (!p->node || strcmp(p->node, node) != 0)
            count_on(s, p, node);
        p->pending = false;
        json_decref(p->spec);
        p->spec = NULL;
        return;
    }
    bool mine = !sched || !*sched || strcmp(sched, "default-scheduler") == 0;
    if (!mine || json_object_get(md, "deletionTimestamp")) {
        p->pending = false;
        return;
    }
    if (!p->spec)
        p->spec = json_incref(spec);
    if (!p->pending)
        enqueue(w, s, p);
}

/* ---------------------------------- scheduling one pod ---------------------------------- */

/* Normalised image names on the node (status.images[].names). */
static bool node_has_image(const json_t *node, const char *norm)
{
    size_t i, j;
    json_t *img, *nm;
    json_array_foreach(json_object_get(json_object_get(node, "status"), "images"), i, img)
        json_array_foreach(json_object_get(img, "names"), j, nm) if (json_string_value(nm) &&
                                                                     strcmp(json_string_value(nm), norm) == 0) return true;
    return false;
}

static int64_t node_image_size(const json_t *node, const char *norm)
{
    size_t i, j;
    json_t *img, *nm;
    json_array_foreach(json_object_get(json_object_get(node, "status"), "images"), i, img)
        json_array_foreach(json_object_get(img, "names"), j, nm) if (json_string_value(nm) &&
                                                                     strcmp(json_string_value(nm), norm) == 0) return (
            int64_t)json_integer_value(json_object_get(img, "sizeBytes"));
    return 0;
}

struct score_ctx {
    char **images; /* the pod's normalised container images */
    int nimages;
    int *spread;   /* nodes holding each image */
    int total_nodes;
};

static double least_allocated(const struct sim_res *alloc, const struct sim_res *used, const struct sim_res *req)
{
    int64_t cpu_req = used->milli_cpu + (req->milli_cpu ? req->milli_cpu : DEFAULT_MILLI_CPU);
    int64_t mem_req = used->memory + (req->memory ? req->memory : DEFAULT_MEMORY);
    double a = alloc->milli_cpu > 0 && cpu_req <= alloc->milli_cpu
                   ? (double)(alloc->milli_cpu - cpu_req) * 100.0 / (double)alloc->milli_cpu
                   : 0;
    double b = alloc->memory > 0 && mem_req <= alloc->memory
                   ? (double)(alloc->memory - mem_req) * 100.0 / (double)alloc->memory
                   : 0;
    return (a + b) / 2;
}

static double balanced(const struct sim_res *alloc, const struct sim_res *used, const struct sim_res *req)
{
    if (alloc->milli_cpu <= 0 || alloc->memory <= 0)
        return 0;
    double fc = (double)(used->milli_cpu + req->milli_cpu) / (double)alloc->milli_cpu;
    double fm = (double)(used->memory + req->memory) / (double)alloc->memory;
    if (fc > 1)
        fc = 1;
    if (fm > 1)
        fm = 1;
    return (1 - fabs(fc - fm) / 2) * 100;
}

static double image_locality(const struct score_ctx *c, const json_t *node)
{
    double sum = 0;
    for (int i = 0; i < c->nimages; i++) {
        int64_t size = node_image_size(node, c->images[i]);
        if (size > 0 && c->total_nodes > 0)
            sum += (double)size * ((double)c->spread[i] / (double)c->total_nodes);
    }
    double maxt = (double)IMG_MAX_BYTES * (c->nimages ? c->nimages : 1);
    if (sum < IMG_MIN_BYTES)
        return 0;
    if (sum > maxt)
        sum = maxt;
    return 100 * (sum - IMG_MIN_BYTES) / (maxt - IMG_MIN_BYTES);
}

static int prefer_no_schedule(const json_t *pod_spec, const json_t *node)
{
    int n = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(json_object_get(node, "spec"), "taints"), i, t)
    {
        const char *eff = json_string_value(json_object_get(t, "effect"));
        if (eff && strcmp(eff, "PreferNoSchedule") == 0 &&
            !sim_sched_tolerates(json_object_get(pod_spec, "tolerations"), t))
            n++;
    }
    return n;
}

static int64_t preferred_affinity(const json_t *pod_spec, const json_t *node)
{
    json_t *pref = json_object_get(json_object_get(json_object_get(pod_spec, "affinity"), "nodeAffinity"),
                                   "preferredDuringSchedulingIgnoredDuringExecution");
    const json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
    const char *name = json_string_value(json_object_get(json_object_get(node, "metadata"), "name"));
    int64_t sum = 0;
    size_t i;
    json_t *p;
    json_array_foreach(pref, i, p) if (term_matches(json_object_get(p, "preference"), labels, name ? name : "")) sum +=
        json_integer_value(json_object_get(p, "weight"));
    return sum;
}

struct cand {
    struct snode *n;
    double base; /* least allocated + balanced + image locality */
    int taints;
    int64_t aff;
};

/* The pod's images, normalised, and how many nodes hold each. */
static void score_ctx_init(struct score_ctx *c, struct sstate *s, const json_t *spec)
{
    memset(c, 0, sizeof *c);
    json_t *conts = json_object_get(spec, "containers");
    c->images = pw_xcalloc(json_array_size(conts) + 1, sizeof *c->images);
    c->spread = pw_xcalloc(json_array_size(conts) + 1, sizeof *c->spread);
    size_t i;
    json_t *ct;
    json_array_foreach(conts, i, ct)
    {
        char norm[SIM_REF_MAX];
        const char *img = json_string_value(json_object_get(ct, "image"));
        if (img && sim_ref_normalize(img, norm, sizeof norm) == 0)
            c->images[c->nimages++] = pw_xstrdup(norm);
    }
    c->total_nodes = s->nnodes;
    for (int k = 0; k < s->nnodes; k++)
        for (int j = 0; j < c->nimages; j++)
            if (node_has_image(s->nodearr[k]->obj, c->images[j]))
                c->spread[j]++;
}

static void score_ctx_fini(struct score_ctx *c)
{
    for (int i = 0; i < c->nimages; i++)
        free(c->images[i]);
    free(c->images);
    free(c->spread);
}

/* Filters and scores; the chosen node, or NULL with *msg the FitError message (caller frees). */
static struct snode *pick(struct sim_world *w, struct sstate *s, struct spod *p, char **msg)
{
    int n = s->nnodes;
    if (n == 0) {
        *msg = sim_fit_msg_take(sim_fit_msg_new(), 0);
        return NULL;
    }
    /* numFeasibleNodesToFind: all up to 100 nodes, else an adaptive share (at least 100) */
    int want = n;
    if (n > MIN_FEASIBLE) {
        int pct = 50 - n / 125;
        if (pct < 5)
            pct = 5;
        want = n * pct / 100;
        if (want < MIN_FEASIBLE)
            want = MIN_FEASIBLE;
    }
    struct cand *cands = pw_xcalloc((size_t)want + 1, sizeof *cands);
    int nc = 0, visited = 0;
    struct sim_fit_msg *fm = sim_fit_msg_new();
    size_t start = s->next_start % (size_t)n;
    for (int k = 0; k < n && nc < want; k++) {
        struct snode *nd = s->nodearr[(start + (size_t)k) % (size_t)n];
        visited++;
        char taint[600] = "";
        int bits = sim_sched_filter(p->spec, nd->obj, &p->req, &nd->used, taint, sizeof taint);
        if (bits) {
            sim_fit_msg_add(fm, bits, taint);
            continue;
        }
        cands[nc++].n = nd;
    }
    s->next_start = (start + (size_t)visited) % (size_t)n;
    if (!nc) {
        *msg = sim_fit_msg_take(fm, n);
        free(cands);
        return NULL;
    }
    free(sim_fit_msg_take(fm, n)); /* the pod fits: no message */
    struct score_ctx sc;
    score_ctx_init(&sc, s, p->spec);
    int max_taints = 0;
    int64_t max_aff = 0;
    for (int i = 0; i < nc; i++) {
        struct snode *nd = cands[i].n;
        cands[i].base = least_allocated(&nd->alloc, &nd->used, &p->req) + balanced(&nd->alloc, &nd->used, &p->req) +
                        image_locality(&sc, nd->obj);
        cands[i].taints = prefer_no_schedule(p->spec, nd->obj);
        cands[i].aff = preferred_affinity(p->spec, nd->obj);
        if (cands[i].taints > max_taints)
            max_taints = cands[i].taints;
        if (cands[i].aff > max_aff)
            max_aff = cands[i].aff;
    }
    struct snode *best = NULL;
    double best_score = -1;
    int ties = 0;
    for (int i = 0; i < nc; i++) {
        /* TaintToleration (weight 3) and NodeAffinity (weight 2) are normalised to 0..100 */
        double tt = max_taints ? 100.0 * (1.0 - (double)cands[i].taints / max_taints) : 100.0;
        double na = max_aff ? 100.0 * (double)cands[i].aff / (double)max_aff : 0;
        double score = floor(cands[i].base) + 3 * tt + 2 * na;
        if (score > best_score + 1e-9) {
            best = cands[i].n;
            best_score = score;
            ties = 1;
        } else if (fabs(score - best_score) <= 1e-9 && sim_world_rand(w) % (uint64_t)(++ties) == 0) {
            best = cands[i].n; /* ties broken uniformly, as selectHost's reservoir sampling */
        }
    }
    score_ctx_fini(&sc);
    free(cands);
    return best;
}

static void pod_event(struct sim_world *w, struct spod *p, const char *type, const char *reason, const char *msg)
{
    json_t *inv = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "kind", "Pod", "apiVersion", "v1", "metadata", "name",
                            p->name, "namespace", p->ns, "uid", p->uid);
    sim_world_event(w, inv, type, reason, msg, "default-scheduler", NULL, NULL);
    json_decref(inv);
}

struct unsched_arg {
    const char *uid, *msg;
};

static int unsched_fn(void *arg, json_t *obj)
{
    const struct unsched_arg *a = arg;
    const char *uid = json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
    const char *node = json_string_value(json_object_get(json_object_get(obj, "spec"), "nodeName"));
    if (!uid || strcmp(uid, a->uid) != 0 || (node && *node))
        return 1;
    return set_scheduled_cond(obj, false, "Unschedulable", a->msg) ? 0 : 1;
}

/* One attempt; true when the pod left the queue (bound, or gone). */
static bool attempt(struct sim_world *w, struct sstate *s, struct spod *p, double now)
{
    p->attempts++;
    p->last_try = now;
    char *msg = NULL;
    struct snode *n = pick(w, s, p, &msg);
    if (n) {
        char *err = NULL;
        int rc = sim_sched_bind(w->sim->store, p->ns, p->name, p->uid, n->name, NULL, &err);
        free(err);
        if (rc == 0) {
            count_on(s, p, n->name); /* assumed at once; the MODIFIED event confirms it */
            p->pending = false;
            char *m = pw_xasprintf("Successfully assigned %s/%s to %s", p->ns, p->name, n->name);
            pod_event(w, p, "Normal", "Scheduled", m);
            free(m);
        } else {
            p->pending = false; /* bound by someone else or gone: its change event tells us */
        }
        return true;
    }
    struct unsched_arg a = {.uid = p->uid, .msg = msg};
    sim_store_mutate(w->sim->store, "pods", p->ns, p->name, unsched_fn, &a, NULL);
    pod_event(w, p, "Warning", "FailedScheduling", msg);
    free(p->last_msg);
    p->last_msg = msg;
    double backoff = BACKOFF_INITIAL_S;
    for (int i = 1; i < p->attempts && backoff < BACKOFF_MAX_S; i++)
        backoff *= 2;
    if (backoff > BACKOFF_MAX_S)
        backoff = BACKOFF_MAX_S;
    p->due = now + backoff;
    p->wait_event = true;
    return false;
}

void sim_sched_timer(struct sim_world *w, const char *key)
{
    (void)key;
    struct sstate *s = sst(w);
    sync_nodes(w, s);
    double now = sim_world_now(w);
    s->timer_at = INFINITY;
    int j = 0;
    double next = INFINITY;
    for (int i = 0; i < s->nqueue; i++) {
        struct spod *p = s->queue[i];
        if (p->dead) {
            free_spod(p);
            continue;
        }
        if (!p->pending) {
            p->queued = false;
            continue;
        }
        if (p->wait_event && now >= p->last_try + UNSCHED_FLUSH_S)
            p->wait_event = false;
        if (!p->wait_event && p->due <= now + 1e-9 && attempt(w, s, p, now)) {
            p->queued = false;
            continue;
        }
        double at = p->wait_event ? p->last_try + UNSCHED_FLUSH_S : p->due;
        if (at < next)
            next = at;
        s->queue[j++] = p;
    }
    s->nqueue = j;
    if (next < INFINITY)
        kick(w, s, next);
}

static void free_node_cb(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    struct snode *n = val;
    json_decref(n->obj);
    free(n->name);
    free(n);
}

static void free_pod_cb(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    struct spod *p = val;
    if (!p->queued)
        free_spod(p);
    else
        p->dead = true;
}

void sim_sched_fini(struct sim_world *w)
{
    struct sstate *s = w->sched;
    if (!s)
        return;
    sim_map_each(&s->nodes, free_node_cb, NULL);
    sim_map_fini(&s->nodes);
    sim_map_each(&s->pods, free_pod_cb, NULL);
    sim_map_fini(&s->pods);
    for (int i = 0; i < s->nqueue; i++)
        free_spod(s->queue[i]);
    free(s->queue);
    free(s->nodearr);
    free(s);
    w->sched = NULL;
}
