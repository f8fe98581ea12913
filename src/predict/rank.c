/* rank.c: a pool's ranking and the selection for one new node (predict.h, pw_predict_model_rank).
 *
 * Per image, from the model: p, the probability that a pod of the pool uses it; k, the pool's pods per
 * node (model.c), a mean: nodes run more pods or fewer; q, the probability that some pod of a new
 * node's life uses it, with pods drawn independently and the node's number of pods K geometric on
 * 1, 2, ... with mean k (the most uncertain distribution of a count >= 1 with that mean):
 * q = 1 - E[(1 - p)^K] = k p / (1 + (k - 1) p). It is p for k = 1 and below 1 - (1 - p)^k otherwise
 * (a node that runs few pods uses few images, and those nodes are where waste happens); the expected
 * benefit q x pull time (what prewarming it saves the node's first
 * pod that needs it) and the expected waste (1 - q) x size (the bytes pulled that no pod of the node
 * then uses). The ranking is by expected benefit.
 *
 * The selection is the cheapest set, in expected waste, that reaches the target hit rate: a pod that
 * lands on the node as soon as it is warm starts without a pull iff every image of its set is in the
 * selection, so the selection's hit rate on a fresh node is the weight of the image sets it covers
 * (later pods also find what earlier ones pulled: the fresh node's figure is the floor). Greedy: each
 * step takes the image set whose missing images add the most covered weight per expected wasted byte
 * (a sure image wastes nothing and comes first), within maxImages and maxBytesPerNode, never an image
 * below minProbability, until the covered weight reaches targetHitRate. The heaviest
 * PW_PREDICT_SELECT_SETS sets are the candidates; the coverage shown counts every set. */
#include "predict/predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "predict/model_int.h"

struct ranked {
    const struct pm_entry *im;
    double pr, node_pr, pull_s, benefit, waste;
    int64_t size;
    bool size_known, selected;
    int order;          /* 1-based selection step, 0 when not selected */
    const char *reason; /* why not (NULL until known) */
};

struct unit {
    size_t *mem; /* indices into the ranked images */
    size_t n;
    double w; /* the weight of the set: the fraction of the pool's pods that used exactly these images */
    bool covered, dead;
};

static int by_benefit(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->benefit != y->benefit)
        return x->benefit < y->benefit ? 1 : -1;
    return strcmp(x->im->key, y->im->key);
}

static int by_weight(const void *a, const void *b)
{
    const struct unit *x = a, *y = b;
    return (x->w < y->w) - (x->w > y->w);
}

static double round_to(double v, double unit)
{
    return round(v / unit) * unit;
}

/* The image sets of p as units over r (ranked, n images; ix: ref -> index). A pool without counted
 * sets (a model from before they were kept) has each image as a set of one. */
static struct unit *units_of(const pw_predict_model *m, const struct pm_pool *p, const json_t *ix, size_t *nu)
{
    const struct pm_table *t = p->sets.n ? &p->sets : &p->imgs;
    struct unit *u = pw_xcalloc(t->n ? t->n : 1, sizeof *u);
    for (size_t i = 0; i < t->n; i++) {
        u[i].w = pm_ratio(m, &t->e[i].c, &p->c);
        char *refs = pw_xstrdup(t->e[i].key);
        size_t cap = 4;
        u[i].mem = pw_xcalloc(cap, sizeof *u[i].mem);
        for (char *save = NULL, *tok = strtok_r(refs, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            json_t *j = json_object_get(ix, tok);
            if (!j) { /* an image the pool no longer keeps (past its cap): the set cannot be completed */
                u[i].dead = true;
                continue;
            }
            if (u[i].n == cap) {
                cap *= 2;
                u[i].mem = pw_xrealloc(u[i].mem, cap * sizeof *u[i].mem);
            }
            u[i].mem[u[i].n++] = (size_t)json_integer_value(j);
        }
        free(refs);
        u[i].dead = u[i].dead || u[i].n == 0;
    }
    *nu = t->n;
    qsort(u, *nu, sizeof *u, by_weight);
    return u;
}

static bool unit_in(const struct unit *u, const struct ranked *r, const bool *extra)
{
    for (size_t j = 0; j < u->n; j++)
        if (!r[u->mem[j]].selected && !(extra && extra[u->mem[j]]))
            return false;
    return true;
}

struct pick {
    const struct pw_predict_limits *l;
    struct ranked *r;
    size_t nimg;
    struct unit *u;
    size_t nu;
    int64_t used;
    int chosen;
};

/* One greedy step: selects the best candidate's missing images; false when none can be taken. */
static bool pick_one(struct pick *k, bool *extra, int step)
{
    size_t cand = k->nu < PW_PREDICT_SELECT_SETS ? k->nu : PW_PREDICT_SELECT_SETS;
    double best_ratio = -1;
    size_t best = 0;
    for (size_t i = 0; i < cand; i++) {
        struct unit *u = &k->u[i];
        if (u->covered || u->dead)
            continue;
        double cost = 0;
        int64_t bytes = 0;
        int count = 0;
        const char *why = NULL;
        for (size_t j = 0; j < u->n; j++) {
            const struct ranked *im = &k->r[u->mem[j]];
            if (im->selected)
                continue;
            if (im->pr < k->l->min_probability)
                why = "below minProbability";
            cost += im->waste;
            bytes += im->size;
            count++;
        }
        if (!why && k->chosen + count > k->l->max_images)
            why = "maxImages reached";
        if (!why && k->l->max_bytes_per_node > 0 && k->used + bytes > k->l->max_bytes_per_node)
            why = "over maxBytesPerNode";
        if (why) {
            for (size_t j = 0; j < u->n; j++)
                if (!k->r[u->mem[j]].selected && !k->r[u->mem[j]].reason)
                    k->r[u->mem[j]].reason = why;
            if (strcmp(why, "below minProbability") == 0)
                u->dead = true;
            continue;
        }
        for (size_t j = 0; j < u->n; j++)
            extra[u->mem[j]] = true;
        double gain = 0;
        for (size_t v = 0; v < cand; v++)
            if (!k->u[v].covered && !k->u[v].dead && unit_in(&k->u[v], k->r, extra))
                gain += k->u[v].w;
        for (size_t j = 0; j < u->n; j++)
            extra[u->mem[j]] = false;
        double ratio = gain / (cost + 1.0); /* + 1 byte: a sure image's waste is 0 */
        if (ratio > best_ratio) {
            best_ratio = ratio;
            best = i;
        }
    }
    if (best_ratio < 0)
        return false;
    struct unit *u = &k->u[best];
    for (size_t j = 0; j < u->n; j++) {
        struct ranked *im = &k->r[u->mem[j]];
        if (im->selected)
            continue;
        im->selected = true;
        im->order = step;
        im->reason = NULL;
        k->used += im->size;
        k->chosen++;
    }
    for (size_t v = 0; v < k->nu; v++)
        if (!k->u[v].covered && !k->u[v].dead && unit_in(&k->u[v], k->r, NULL))
            k->u[v].covered = true;
    return true;
}

static double covered_weight(const struct unit *u, size_t n)
{
    double c = 0;
    for (size_t i = 0; i < n; i++)
        if (u[i].covered)
            c += u[i].w;
    return c;
}

static json_t *image_json(const struct ranked *r)
{
    json_t *o = json_pack("{s:s, s:f, s:f, s:I, s:b, s:f, s:f, s:I, s:I, s:o, s:b, s:s}", "image", r->im->key,
                          "probability", round_to(r->pr, 1e-4), "nodeProbability", round_to(r->node_pr, 1e-4),
                          "sizeBytes", (json_int_t)r->size, "sizeKnown", r->size_known, "pullSeconds",
                          round_to(r->pull_s, 1e-3), "benefitSeconds", round_to(r->benefit, 1e-3),
                          "expectedWasteBytes", (json_int_t)llround(r->waste), "observations",
                          (json_int_t)r->im->c.n, "lastSeen", pm_time_json(r->im->c.last), "selected",
                          r->selected, "reason", r->selected ? "selected" : r->reason);
    json_object_set_new(o, "order", r->order ? json_integer(r->order) : json_null());
    return o;
}

json_t *pw_predict_model_rank(const pw_predict_model *m, const char *pool, const struct pw_predict_limits *lim,
                              int64_t now_ms)
{
    const struct pm_pool *p = pm_pool_find(m, pool);
    if (!p)
        return NULL;
    struct pw_predict_limits l = lim ? *lim : pw_predict_default_limits();
    if (l.max_images <= 0)
        l.max_images = PW_PREDICT_DEFAULT_MAX_IMAGES;
    double k = pm_pods_per_node(m, p);
    size_t n = p->imgs.n;
    struct ranked *r = pw_xcalloc(n ? n : 1, sizeof *r);
    double bytes_per_s = m->o.bandwidth_mbps * 1e6;
    for (size_t i = 0; i < n; i++) {
        json_t *sz = json_object_get(m->sizes, p->imgs.e[i].key);
        r[i].im = &p->imgs.e[i];
        r[i].size_known = sz != NULL;
        r[i].size = sz ? (int64_t)json_integer_value(sz) : m->o.unknown_size_bytes;
        r[i].pr = pm_ratio(m, &p->imgs.e[i].c, &p->c);
        if (r[i].pr > 1)
            r[i].pr = 1;
        r[i].node_pr = k * r[i].pr / (1 + (k - 1) * r[i].pr);
        r[i].pull_s = (double)r[i].size / bytes_per_s;
        r[i].benefit = r[i].node_pr * r[i].pull_s;
        r[i].waste = (1 - r[i].node_pr) * (double)r[i].size;
    }
    qsort(r, n, sizeof *r, by_benefit);
    json_t *ix = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(ix, r[i].im->key, json_integer((json_int_t)i));
    size_t nu = 0;
    struct unit *u = units_of(m, p, ix, &nu);
    json_decref(ix);

    struct pick pk = {.l = &l, .r = r, .nimg = n, .u = u, .nu = nu};
    bool *extra = pw_xcalloc(n ? n : 1, sizeof *extra);
    for (int step = 1; covered_weight(u, nu) < l.target_hit_rate - 1e-9 && pick_one(&pk, extra, step); step++)
        ;
    free(extra);
    double coverage = covered_weight(u, nu), waste = 0;
    for (size_t i = 0; i < nu; i++)
        free(u[i].mem);
    free(u);

    json_t *images = json_array(), *selected = json_array();
    /* selected: in the order they were taken */
    for (int step = 1; step <= pk.chosen; step++)
        for (size_t i = 0; i < n; i++)
            if (r[i].order == step)
                json_array_append_new(selected, json_string(r[i].im->key));
    for (size_t i = 0; i < n; i++) {
        if (!r[i].selected && !r[i].reason)
            r[i].reason = r[i].pr < l.min_probability ? "below minProbability" : "targetHitRate reached";
        if (r[i].selected)
            waste += r[i].waste;
        json_array_append_new(images, image_json(&r[i]));
    }
    free(r);
    const char *value = pm_pool_value(p->id);
    char *key = pw_xstrndup(p->id, value == p->id ? 0 : (size_t)(value - p->id - 1));
    json_t *out = json_pack(
        "{s:s, s:s, s:s, s:f, s:I, s:o, s:f, s:f, s:I, s:f, s:{s:I, s:f, s:i, s:f}, s:o, s:I, s:f, s:I, s:o}", "pool",
        p->id, "labelKey", key, "labelValue", value, "pods", round_to(pm_count_at(m, &p->c, now_ms), 1e-3),
        "observations", (json_int_t)p->c.n, "lastSeen", pm_time_json(p->c.last), "halfLifeSeconds",
        (double)m->o.half_life_ms / 1000, "bandwidthMBps", m->o.bandwidth_mbps, "nodes", (json_int_t)p->nodes.n,
        "podsPerNode", round_to(k, 1e-2), "limits", "maxBytesPerNode", (json_int_t)l.max_bytes_per_node,
        "minProbability", l.min_probability, "maxImages", l.max_images, "targetHitRate", l.target_hit_rate,
        "selected", selected, "selectedBytes", (json_int_t)pk.used, "predictedHitRate", round_to(coverage, 1e-4),
        "expectedWasteBytes", (json_int_t)llround(waste), "images", images);
    free(key);
    return out;
}
