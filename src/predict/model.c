/* model.c: the per-pool model of image use (predict.h): decayed counts of the pods, of the pods using
 * each image, of each image set (the images of one pod together), of the nodes the pods ran on, and
 * image sizes; their JSON form. The ranking and the selection are rank.c's.
 *
 * Decay: every count is kept as (w, t): its value w at time t. A new observation at t' >= t makes it
 * w * 2^(-(t'-t)/h) + 1 at t'; an older one (t' < t) adds 2^(-(t-t')/h). Read at now, a count is
 * w * 2^(-(now-t)/h). P(use) of an image in a pool is its decayed count over the pool's decayed pod
 * count: both decay alike, so P is the decayed fraction of the pool's pods that used the image.
 *
 * Nodes: a node counts once in a pool, when its first pod there is counted (the pool keeps the names
 * it has counted, with their latest pod). The decayed pods over the decayed nodes is the pool's pods
 * per node: the pod arrival rate over the node arrival rate, which in a pool whose nodes come and go is
 * the number of pods a node runs in its life (Little's law), and in a pool whose nodes stay grows with
 * their age (they do run ever more pods). */
#include "predict/predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "predict/model_int.h"

const char *const PW_PREDICT_POOL_KEYS[] = {"karpenter.sh/nodepool",
                                            "cloud.google.com/gke-nodepool",
                                            "eks.amazonaws.com/nodegroup",
                                            "kubernetes.azure.com/agentpool",
                                            "node.kubernetes.io/instance-type",
                                            NULL};

pw_predict_model *pw_predict_model_new(const struct pw_predict_model_opts *opts)
{
    pw_predict_model *m = pw_xcalloc(1, sizeof *m);
    if (opts)
        m->o = *opts;
    if (m->o.half_life_ms <= 0)
        m->o.half_life_ms = PW_PREDICT_DEFAULT_HALF_LIFE_MS;
    if (m->o.bandwidth_mbps <= 0)
        m->o.bandwidth_mbps = PW_PREDICT_DEFAULT_BANDWIDTH_MBPS;
    if (m->o.unknown_size_bytes <= 0)
        m->o.unknown_size_bytes = PW_PREDICT_DEFAULT_UNKNOWN_SIZE;
    m->pool_index = json_object();
    m->sizes = json_object();
    return m;
}

static void table_clear(struct pm_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].key);
    t->n = 0;
    json_object_clear(t->index);
}

static void table_fini(struct pm_table *t)
{
    table_clear(t);
    free(t->e);
    json_decref(t->index);
}

static void pool_free(struct pm_pool *p)
{
    table_fini(&p->imgs);
    table_fini(&p->sets);
    json_decref(p->node_last);
    free(p->id);
    free(p);
}

void pw_predict_model_free(pw_predict_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->npool; i++)
        pool_free(m->pools[i]);
    free(m->pools);
    json_decref(m->pool_index);
    json_decref(m->sizes);
    free(m);
}

/* ---- counts ---- */

static double decay(const pw_predict_model *m, double dt_ms)
{
    return exp2(-dt_ms / (double)m->o.half_life_ms);
}

static void count_add(const pw_predict_model *m, struct pm_count *c, int64_t t)
{
    if (c->n == 0 || t >= c->t) {
        c->w = c->n == 0 ? 1.0 : c->w * decay(m, (double)(t - c->t)) + 1.0;
        c->t = t;
    } else {
        c->w += decay(m, (double)(c->t - t));
    }
    c->n++;
    if (c->n == 1 || t > c->last)
        c->last = t;
}

double pm_count_at(const pw_predict_model *m, const struct pm_count *c, int64_t now)
{
    if (c->n == 0)
        return 0;
    return now >= c->t ? c->w * decay(m, (double)(now - c->t)) : c->w;
}

/* Computed without reading either at now, so a pool idle for many half-lives keeps its figures (no
 * underflow to 0/0). */
double pm_ratio(const pw_predict_model *m, const struct pm_count *num, const struct pm_count *den)
{
    if (num->n == 0 || den->n == 0 || den->w <= 0)
        return 0;
    return num->w / den->w * decay(m, (double)(den->t - num->t));
}

double pm_pods_per_node(const pw_predict_model *m, const struct pm_pool *p)
{
    double k = pm_ratio(m, &p->c, &p->nodes);
    return k > 1 ? k : 1;
}

/* ---- tables ---- */

const struct pm_entry *pm_table_find(const struct pm_table *t, const char *key)
{
    json_t *ix = t->index ? json_object_get(t->index, key) : NULL;
    return ix ? &t->e[json_integer_value(ix)] : NULL;
}

/* Drops the entry with the least decayed count (the table is at its cap). */
static void table_evict(const pw_predict_model *m, struct pm_table *t, int64_t now)
{
    size_t worst = 0;
    for (size_t i = 1; i < t->n; i++)
        if (pm_count_at(m, &t->e[i].c, now) < pm_count_at(m, &t->e[worst].c, now))
            worst = i;
    json_object_del(t->index, t->e[worst].key);
    free(t->e[worst].key);
    t->n--;
    if (worst != t->n) {
        t->e[worst] = t->e[t->n];
        json_object_set_new(t->index, t->e[worst].key, json_integer((json_int_t)worst));
    }
}

static struct pm_entry *table_get(const pw_predict_model *m, struct pm_table *t, const char *key, size_t max,
                                  int64_t now)
{
    json_t *ix = json_object_get(t->index, key);
    if (ix)
        return &t->e[json_integer_value(ix)];
    if (t->n >= max)
        table_evict(m, t, now);
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->e = pw_xrealloc(t->e, t->cap * sizeof *t->e);
    }
    struct pm_entry *e = &t->e[t->n];
    memset(e, 0, sizeof *e);
    e->key = pw_xstrdup(key);
    json_object_set_new(t->index, key, json_integer((json_int_t)t->n));
    t->n++;
    return e;
}

/* ---- pools ---- */

struct pm_pool *pm_pool_find(const pw_predict_model *m, const char *id)
{
    json_t *ix = json_object_get(m->pool_index, id);
    return ix ? m->pools[json_integer_value(ix)] : NULL;
}

static struct pm_pool *pool_get(pw_predict_model *m, const char *id)
{
    struct pm_pool *p = pm_pool_find(m, id);
    if (p)
        return p;
    if (m->npool == m->cappool) {
        m->cappool = m->cappool ? m->cappool * 2 : 8;
        m->pools = pw_xrealloc(m->pools, m->cappool * sizeof *m->pools);
    }
    p = pw_xcalloc(1, sizeof *p);
    p->id = pw_xstrdup(id);
    p->imgs.index = json_object();
    p->sets.index = json_object();
    p->node_last = json_object();
    json_object_set_new(m->pool_index, id, json_integer((json_int_t)m->npool));
    m->pools[m->npool++] = p;
    return p;
}

/* Forgets the node whose latest pod is the oldest (the pool keeps at most PW_PREDICT_MAX_NODES_PER_POOL). */
static void node_evict(struct pm_pool *p)
{
    const char *name, *oldest = NULL;
    json_t *v;
    json_int_t t_old = 0;
    json_object_foreach(p->node_last, name, v) {
        if (!oldest || json_integer_value(v) < t_old) {
            oldest = name;
            t_old = json_integer_value(v);
        }
    }
    if (oldest)
        json_object_del(p->node_last, oldest);
}

static void node_seen(const pw_predict_model *m, struct pm_pool *p, const char *node, int64_t t)
{
    json_t *last = json_object_get(p->node_last, node);
    if (!last) {
        if (json_object_size(p->node_last) >= PW_PREDICT_MAX_NODES_PER_POOL)
            node_evict(p);
        count_add(m, &p->nodes, t);
        json_object_set_new(p->node_last, node, json_integer((json_int_t)t));
    } else if (json_integer_value(last) < t) {
        json_integer_set(last, (json_int_t)t);
    }
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void pw_predict_model_observe(pw_predict_model *m, const char *pool, const char *node, const char *const *images,
                              size_t n, int64_t t_ms)
{
    struct pm_pool *p = pool_get(m, pool);
    count_add(m, &p->c, t_ms);
    if (node && *node)
        node_seen(m, p, node, t_ms);
    const char **uniq = pw_xcalloc(n ? n : 1, sizeof *uniq);
    size_t nu = 0, len = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < nu && !dup; j++)
            dup = strcmp(images[i], uniq[j]) == 0;
        if (!dup) {
            uniq[nu++] = images[i];
            len += strlen(images[i]) + 1;
            count_add(m, &table_get(m, &p->imgs, images[i], PW_PREDICT_MAX_IMAGES_PER_POOL, t_ms)->c, t_ms);
        }
    }
    if (nu) { /* the set: its references sorted, space-separated (a reference holds no space) */
        qsort(uniq, nu, sizeof *uniq, by_str);
        char *key = pw_xmalloc(len), *w = key;
        for (size_t i = 0; i < nu; i++) {
            size_t l = strlen(uniq[i]);
            memcpy(w, uniq[i], l);
            w += l;
            *w++ = i + 1 < nu ? ' ' : '\0';
        }
        count_add(m, &table_get(m, &p->sets, key, PW_PREDICT_MAX_SETS_PER_POOL, t_ms)->c, t_ms);
        free(key);
    }
    free(uniq);
    p->dirty = true;
    if (t_ms > m->watermark)
        m->watermark = t_ms;
}

void pw_predict_model_set_size(pw_predict_model *m, const char *image, int64_t bytes)
{
    json_t *have = json_object_get(m->sizes, image);
    if (bytes > 0 && (!have || json_integer_value(have) < bytes))
        json_object_set_new(m->sizes, image, json_integer(bytes));
}

double pw_predict_model_probability(const pw_predict_model *m, const char *pool, const char *image, int64_t now_ms)
{
    (void)now_ms;
    const struct pm_pool *p = pm_pool_find(m, pool);
    const struct pm_entry *im = p ? pm_table_find(&p->imgs, image) : NULL;
    if (!im)
        return 0;
    double pr = pm_ratio(m, &im->c, &p->c);
    return pr > 1 ? 1 : pr;
}

double pw_predict_model_pods_per_node(const pw_predict_model *m, const char *pool)
{
    const struct pm_pool *p = pm_pool_find(m, pool);
    return p ? pm_pods_per_node(m, p) : 0;
}

json_t *pm_time_json(int64_t ms)
{
    char t[32];
    pw_time_rfc3339((time_t)(ms / 1000), t);
    return json_string(t);
}

static int by_pool_id(const void *a, const void *b)
{
    return strcmp((*(struct pm_pool *const *)a)->id, (*(struct pm_pool *const *)b)->id);
}

json_t *pw_predict_model_pools(const pw_predict_model *m, int64_t now_ms)
{
    struct pm_pool **sorted = pw_xcalloc(m->npool ? m->npool : 1, sizeof *sorted);
    if (m->npool) { /* m->pools is NULL before the first pool */
        memcpy(sorted, m->pools, m->npool * sizeof *sorted);
        qsort(sorted, m->npool, sizeof *sorted, by_pool_id);
    }
    json_t *out = json_array();
    for (size_t i = 0; i < m->npool; i++) {
        const struct pm_pool *p = sorted[i];
        json_array_append_new(
            out, json_pack("{s:s, s:f, s:I, s:I, s:I, s:f, s:o}", "pool", p->id, "pods",
                           round(pm_count_at(m, &p->c, now_ms) * 1000) / 1000, "observations", (json_int_t)p->c.n,
                           "images", (json_int_t)p->imgs.n, "nodes", (json_int_t)p->nodes.n, "podsPerNode",
                           round(pm_pods_per_node(m, p) * 100) / 100, "lastSeen", pm_time_json(p->c.last)));
    }
    free(sorted);
    return out;
}

const char *pm_pool_value(const char *id)
{
    const char *eq = strchr(id, '=');
    return eq ? eq + 1 : id;
}

json_t *pw_predict_model_pools_named(const pw_predict_model *m, const char *value)
{
    json_t *out = json_array();
    for (size_t i = 0; i < m->npool; i++)
        if (strcmp(pm_pool_value(m->pools[i]->id), value) == 0)
            json_array_append_new(out, json_string(m->pools[i]->id));
    return out;
}

/* ---- persistence ----
 * A pool's document: {"version": 2, "pool", "pods": COUNT, "nodes": COUNT, "nodeLast": {name: ms},
 * "images": {ref: COUNT + "size"}, "sets": {key: COUNT}} with COUNT {"w", "t", "n", "last"}. A version 1
 * document (no nodes, no sets) loads too: its pods per node is then 1 until nodes are counted, and its
 * images count as sets of one until sets are. */

static json_t *count_doc(const struct pm_count *c)
{
    return json_pack("{s:f, s:I, s:I, s:I}", "w", c->w, "t", (json_int_t)c->t, "n", (json_int_t)c->n, "last",
                     (json_int_t)c->last);
}

static int count_load(const json_t *doc, struct pm_count *c)
{
    json_t *w = json_object_get(doc, "w"), *t = json_object_get(doc, "t"), *n = json_object_get(doc, "n"),
           *last = json_object_get(doc, "last");
    if (!json_is_number(w) || !json_is_integer(t) || !json_is_integer(n) || !json_is_integer(last) ||
        json_number_value(w) < 0 || json_integer_value(n) < 0)
        return PW_EINVAL;
    *c = (struct pm_count){json_number_value(w), (int64_t)json_integer_value(t), (int64_t)json_integer_value(n),
                           (int64_t)json_integer_value(last)};
    return 0;
}

static json_t *table_doc(const pw_predict_model *m, const struct pm_table *t, bool sizes)
{
    json_t *out = json_object();
    for (size_t i = 0; i < t->n; i++) {
        json_t *d = count_doc(&t->e[i].c);
        json_t *sz = sizes ? json_object_get(m->sizes, t->e[i].key) : NULL;
        if (sz)
            json_object_set(d, "size", sz);
        json_object_set_new(out, t->e[i].key, d);
    }
    return out;
}

json_t *pw_predict_model_pool_doc(const pw_predict_model *m, const char *pool)
{
    const struct pm_pool *p = pm_pool_find(m, pool);
    if (!p)
        return NULL;
    return json_pack("{s:i, s:s, s:o, s:o, s:O, s:o, s:o}", "version", 2, "pool", p->id, "pods", count_doc(&p->c),
                     "nodes", count_doc(&p->nodes), "nodeLast", p->node_last, "images", table_doc(m, &p->imgs, true),
                     "sets", table_doc(m, &p->sets, false));
}

/* Whether every member of obj (NULL: none) is a valid count. */
static bool counts_valid(const json_t *obj)
{
    const char *k;
    json_t *d;
    struct pm_count c;
    if (obj && !json_is_object(obj))
        return false;
    json_object_foreach((json_t *)obj, k, d) if (count_load(d, &c) != 0) return false;
    return true;
}

int pw_predict_model_load_pool(pw_predict_model *m, const json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "pool"));
    json_t *images = json_object_get(doc, "images"), *sets = json_object_get(doc, "sets"),
           *nodes = json_object_get(doc, "nodes"), *node_last = json_object_get(doc, "nodeLast");
    struct pm_count pc, nc = {0};
    if (!id || !*id || !json_is_object(images) || count_load(json_object_get(doc, "pods"), &pc) != 0 ||
        !counts_valid(images) || !counts_valid(sets) || (nodes && count_load(nodes, &nc) != 0) ||
        (node_last && !json_is_object(node_last)))
        return PW_EINVAL;
    const char *key;
    json_t *d;
    json_object_foreach(node_last, key, d) if (!json_is_integer(d)) return PW_EINVAL;
    struct pm_pool *p = pool_get(m, id);
    table_clear(&p->imgs);
    table_clear(&p->sets);
    json_object_clear(p->node_last);
    p->c = pc;
    p->nodes = nc;
    if (node_last)
        json_object_update(p->node_last, node_last);
    json_object_foreach(images, key, d) {
        count_load(d, &table_get(m, &p->imgs, key, PW_PREDICT_MAX_IMAGES_PER_POOL, pc.t)->c);
        json_t *sz = json_object_get(d, "size");
        if (json_is_integer(sz))
            pw_predict_model_set_size(m, key, (int64_t)json_integer_value(sz));
    }
    json_object_foreach(sets, key, d) count_load(d, &table_get(m, &p->sets, key, PW_PREDICT_MAX_SETS_PER_POOL, pc.t)->c);
    if (pc.last > m->watermark)
        m->watermark = pc.last;
    p->dirty = false;
    return 0;
}

json_t *pw_predict_model_take_dirty(pw_predict_model *m)
{
    json_t *out = json_array();
    for (size_t i = 0; i < m->npool; i++)
        if (m->pools[i]->dirty) {
            json_array_append_new(out, json_string(m->pools[i]->id));
            m->pools[i]->dirty = false;
        }
    return out;
}

int64_t pw_predict_model_watermark(const pw_predict_model *m)
{
    return m->watermark;
}
