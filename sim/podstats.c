/* podstats.c: per-pool figures of workload pods and pulls (podstats.h).
 *
 * State: the workload pods seen (creation model time, pool), per pool the counts and start latencies
 * (all nodes, and nodes added after start: model index past --nodes), per (node, image) the bytes that
 * pulls other than workload pods' brought and whether a workload pod then ran that image there, and one
 * record per started workload pod.
 *
 * Thread model: hooks on the world thread with world->lock held; sim_podstats_add takes the lock. */
#include "sim/podstats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "sim/sched.h"
#include "sim/world_int.h"

struct ps_pod {
    double created;
    char *uid, *pool;
};

struct lat {
    double *v;
    size_t n, cap;
};

struct ps_pool {
    char *name;
    int64_t started, nopull, new_started, new_nopull;
    struct lat lat, new_lat;
    uint64_t bytes_wl, bytes_other;
};

struct ps_nodeimg {
    char *pool;
    uint64_t other_bytes;
    bool used;
};

struct ps_state {
    struct sim_map pods;     /* "ns/name" -> ps_pod (workload pods not started yet or running) */
    struct sim_map pools;    /* name -> ps_pool */
    struct sim_map nodeimgs; /* "node\x1fimage" -> ps_nodeimg */
    char *pool_key;          /* the pool label key of the last workload pod seen */
    json_t *records;         /* started workload pods */
};

static struct ps_state *pst(struct sim_world *w)
{
    if (!w->podstats) {
        struct ps_state *s = pw_xcalloc(1, sizeof *s);
        s->pool_key = pw_xstrdup("pool");
        s->records = json_array();
        w->podstats = s;
    }
    return w->podstats;
}

static struct ps_pool *pool_get(struct ps_state *s, const char *name)
{
    struct ps_pool *p = sim_map_get(&s->pools, name);
    if (!p) {
        p = pw_xcalloc(1, sizeof *p);
        p->name = pw_xstrdup(name);
        sim_map_put(&s->pools, name, p);
    }
    return p;
}

static void lat_add(struct lat *l, double v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = pw_xrealloc(l->v, sizeof *l->v * l->cap);
    }
    l->v[l->n++] = v;
}

static void free_pspod(struct ps_pod *p)
{
    free(p->uid);
    free(p->pool);
    free(p);
}

void sim_podstats_on_pod(struct sim_world *w, const struct sim_change *ch)
{
    struct ps_state *s = pst(w);
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ch->ns, ch->name);
    json_t *md = json_object_get(ch->obj, "metadata");
    const char *uid = json_string_value(json_object_get(md, "uid"));
    struct ps_pod *p = sim_map_get(&s->pods, key);
    if (p && (ch->type == SIM_DELETED || !uid || strcmp(p->uid, uid) != 0)) {
        free_pspod(sim_map_del(&s->pods, key));
        p = NULL;
    }
    if (p || ch->type == SIM_DELETED || !uid ||
        !json_object_get(json_object_get(md, "labels"), "sim.prewarm.io/workload"))
        return;
    const char *phase = json_string_value(json_object_get(json_object_get(ch->obj, "status"), "phase"));
    if (ch->type != SIM_ADDED || (phase && strcmp(phase, "Pending") != 0))
        return; /* only pods seen from their creation have a start latency */
    json_t *sel = json_object_get(json_object_get(ch->obj, "spec"), "nodeSelector");
    const char *pool = "";
    if (json_object_size(sel) == 1) {
        const char *k = json_object_iter_key(json_object_iter(sel));
        pool = json_string_value(json_object_get(sel, k)) ? json_string_value(json_object_get(sel, k)) : "";
        free(s->pool_key);
        s->pool_key = pw_xstrdup(k);
    }
    p = pw_xcalloc(1, sizeof *p);
    p->created = sim_world_now(w);
    p->uid = pw_xstrdup(uid);
    p->pool = pw_xstrdup(pool);
    sim_map_put(&s->pods, key, p);
}

/* The pool of a node by the current pool key ("" when unknown). */
static const char *node_pool(struct sim_world *w, struct ps_state *s, const char *node)
{
    const json_t *labels = sim_sched_node_labels(w, node);
    const char *v = json_string_value(json_object_get(labels, s->pool_key));
    return v ? v : "";
}

static const struct sim_image *image_of(const sim_catalog *cat, const struct sim_platform *plat)
{
    for (int i = 0; plat && i < cat->nimages; i++) {
        const struct sim_image *img = &cat->images[i];
        if (plat >= img->plats && plat < img->plats + img->nplats)
            return img;
    }
    return NULL;
}

static void nodeimg_key(char *out, size_t n, const char *node, int image)
{
    snprintf(out, n, "%s\x1f%d", node, image);
}

void sim_podstats_on_pull(struct sim_world *w, const struct sim_model_evt *e)
{
    if (e->type != SIM_PULL_DONE || !e->ok || e->node < 0 || e->node >= w->nnodes)
        return;
    struct ps_state *s = pst(w);
    const struct sim_wnode *n = w->nodes[e->node]; /* model and world index nodes alike */
    const char *podkey = "";
    if (!(e->cookie & 1)) {
        const char *ref = NULL;
        sim_kubelet_pull_owner(e->cookie, &ref, &podkey);
    }
    struct ps_pod *wp = *podkey ? sim_map_get(&s->pods, podkey) : NULL;
    if (wp) {
        pool_get(s, wp->pool)->bytes_wl += e->bytes;
        return;
    }
    const char *pool = node_pool(w, s, n->name);
    pool_get(s, pool)->bytes_other += e->bytes;
    const struct sim_image *img = image_of(w->cat, e->plat);
    if (!img || !e->bytes)
        return;
    char key[600];
    nodeimg_key(key, sizeof key, n->name, img->index);
    struct ps_nodeimg *ni = sim_map_get(&s->nodeimgs, key);
    if (!ni) {
        ni = pw_xcalloc(1, sizeof *ni);
        ni->pool = pw_xstrdup(pool);
        sim_map_put(&s->nodeimgs, key, ni);
    }
    ni->other_bytes += e->bytes;
}

void sim_podstats_started(struct sim_world *w, const char *key, const struct sim_wnode *n,
                          const struct sim_podstats_cont *c, int nc)
{
    struct ps_state *s = pst(w);
    struct ps_pod *p = sim_map_get(&s->pods, key);
    if (!p)
        return;
    double secs = sim_world_now(w) - p->created;
    bool pulled = false;
    json_t *imgs = json_array();
    for (int i = 0; i < nc; i++) {
        pulled = pulled || c[i].pulled;
        if (!c[i].img)
            continue;
        json_array_append_new(imgs, json_pack("{s:s, s:b}", "image", c[i].img->names[0], "present", !c[i].pulled));
        char nk[600];
        nodeimg_key(nk, sizeof nk, n->name, c[i].img->index);
        struct ps_nodeimg *ni = sim_map_get(&s->nodeimgs, nk);
        if (!ni) { /* remembered so later prewarm pulls of an image in use do not count as waste */
            ni = pw_xcalloc(1, sizeof *ni);
            ni->pool = pw_xstrdup(p->pool);
            sim_map_put(&s->nodeimgs, nk, ni);
        }
        ni->used = true;
    }
    bool new_node = n->midx >= w->sim->opt.nodes;
    struct ps_pool *pl = pool_get(s, p->pool);
    pl->started++;
    pl->nopull += !pulled;
    lat_add(&pl->lat, secs);
    if (new_node) {
        pl->new_started++;
        pl->new_nopull += !pulled;
        lat_add(&pl->new_lat, secs);
    }
    json_array_append_new(s->records, json_pack("{s:s, s:s, s:s, s:b, s:f, s:b, s:o}", "pod", key, "pool", p->pool,
                                                "node", n->name, "newNode", new_node, "startSeconds", secs, "pulled",
                                                pulled, "images", imgs));
    free_pspod(sim_map_del(&s->pods, key));
}

/* ---------------------------------- the answer ---------------------------------- */

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* nearest rank */
static double pct(const double *sorted, size_t n, double p)
{
    size_t k = (size_t)ceil(p * (double)n);
    return sorted[k ? k - 1 : 0];
}

static json_t *figures(int64_t started, int64_t nopull, const struct lat *l)
{
    json_t *o = json_pack("{s:I, s:I}", "podsStarted", (json_int_t)started, "podsWithoutPull", (json_int_t)nopull);
    json_object_set_new(o, "imageHitRate", started ? json_real((double)nopull / (double)started) : json_null());
    if (!l->n) {
        json_object_set_new(o, "startSeconds", json_null());
        return o;
    }
    double *v = pw_xmalloc(sizeof *v * l->n);
    memcpy(v, l->v, sizeof *v * l->n);
    qsort(v, l->n, sizeof *v, cmp_dbl);
    double sum = 0;
    for (size_t i = 0; i < l->n; i++)
        sum += v[i];
    json_object_set_new(o, "startSeconds",
                        json_pack("{s:f, s:f, s:f, s:f, s:f}", "p50", pct(v, l->n, 0.5), "p95", pct(v, l->n, 0.95),
                                  "mean", sum / (double)l->n, "min", v[0], "max", v[l->n - 1]));
    free(v);
    return o;
}

struct waste_arg {
    json_t *pools; /* name -> object under construction */
};

static json_t *pool_obj(json_t *pools, const char *name)
{
    json_t *o = json_object_get(pools, name);
    if (!o) {
        o = json_pack("{s:I, s:I}", "prewarmBytesUsed", (json_int_t)0, "wasteBytes", (json_int_t)0);
        json_object_set_new(pools, name, o);
    }
    return o;
}

static void add_int(json_t *o, const char *k, uint64_t v)
{
    json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + (json_int_t)v));
}

static void waste_one(void *arg, const char *key, void *val)
{
    (void)key;
    struct waste_arg *a = arg;
    const struct ps_nodeimg *ni = val;
    if (!ni->other_bytes)
        return;
    add_int(pool_obj(a->pools, ni->pool), ni->used ? "prewarmBytesUsed" : "wasteBytes", ni->other_bytes);
}

static void pool_one(void *arg, const char *key, void *val)
{
    json_t *pools = arg;
    const struct ps_pool *p = val;
    json_t *o = pool_obj(pools, key);
    json_t *f = figures(p->started, p->nopull, &p->lat);
    json_object_update(o, f);
    json_decref(f);
    json_object_set_new(o, "newNodes", figures(p->new_started, p->new_nopull, &p->new_lat));
    json_object_set_new(o, "bytesPulled", json_integer((json_int_t)(p->bytes_wl + p->bytes_other)));
    json_object_set_new(o, "workloadBytesPulled", json_integer((json_int_t)p->bytes_wl));
    json_object_set_new(o, "prewarmBytesPulled", json_integer((json_int_t)p->bytes_other));
}

static void free_pool(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    struct ps_pool *p = val;
    free(p->lat.v);
    free(p->new_lat.v);
    free(p->name);
    free(p);
}

static void free_nodeimg(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    struct ps_nodeimg *ni = val;
    free(ni->pool);
    free(ni);
}

static void free_pod_cb(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    free_pspod(val);
}

/* Forgets the figures (pods not started yet keep their creation time). */
static void reset(struct ps_state *s)
{
    sim_map_each(&s->pools, free_pool, NULL);
    sim_map_fini(&s->pools);
    sim_map_each(&s->nodeimgs, free_nodeimg, NULL);
    sim_map_fini(&s->nodeimgs);
    json_array_clear(s->records);
}

void sim_podstats_add(struct sim *sim, pw_http_req *req, json_t *out)
{
    struct sim_world *w = sim->world;
    if (!w)
        return;
    const char *q = pw_http_req_query(req, "pods");
    bool with_pods = q && (strcmp(q, "true") == 0 || strcmp(q, "1") == 0 || strcmp(q, "True") == 0);
    json_t *pools = json_object();
    pthread_mutex_lock(&w->lock);
    struct ps_state *s = pst(w);
    struct waste_arg a = {pools};
    sim_map_each(&s->nodeimgs, waste_one, &a);
    sim_map_each(&s->pools, pool_one, pools);
    json_object_set_new(out, "modelSeconds", json_real(sim_world_now(w)));
    json_object_set_new(out, "poolLabel", json_string(s->pool_key));
    if (with_pods)
        json_object_set_new(out, "pods", json_deep_copy(s->records));
    if (strcmp(pw_http_req_method(req), "DELETE") == 0)
        reset(s);
    pthread_mutex_unlock(&w->lock);
    json_object_set_new(out, "pools", pools);
}

void sim_podstats_fini(struct sim_world *w)
{
    struct ps_state *s = w->podstats;
    if (!s)
        return;
    reset(s);
    sim_map_each(&s->pods, free_pod_cb, NULL);
    sim_map_fini(&s->pods);
    json_decref(s->records);
    free(s->pool_key);
    free(s);
    w->podstats = NULL;
}
