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
 * The pure parts (predicates, the message, the binding write) are in sched_pred.c.
 *
 * Thread model: the world thread, world->lock held. */
#include "sim/sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    json_array_foreach(pref, i, p) if (sim_sched_term_matches(json_object_get(p, "preference"), labels, name ? name : "")) sum +=
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
    return sim_sched_set_scheduled(obj, false, "Unschedulable", a->msg) ? 0 : 1;
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
