/* model.c: the per-pool model of image use (predict.h): decayed counts of pods and of the pods using
 * each image, image sizes, and the ranking by expected benefit under a node's limits.
 *
 * Decay: every count is kept as (w, t): its value w at time t. A new observation at t' >= t makes it
 * w * 2^(-(t'-t)/h) + 1 at t'; an older one (t' < t) adds 2^(-(t-t')/h). Read at now, a count is
 * w * 2^(-(now-t)/h). P(use) of an image in a pool is its decayed count over the pool's decayed pod
 * count: both decay alike, so P is the decayed fraction of the pool's pods that used the image. */
#include "predict/predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

const char *const PW_PREDICT_POOL_KEYS[] = {"karpenter.sh/nodepool",
                                            "cloud.google.com/gke-nodepool",
                                            "eks.amazonaws.com/nodegroup",
                                            "kubernetes.azure.com/agentpool",
                                            "node.kubernetes.io/instance-type",
                                            NULL};

struct count {
    double w;
    int64_t t;    /* ms: the time w is at */
    int64_t n;    /* raw observations */
    int64_t last; /* ms: the latest observation */
};

struct img {
    char *ref;
    struct count c;
};

struct pool {
    char *id;
    struct count c;
    struct img *imgs;
    size_t nimg, cap;
    json_t *index; /* ref -> integer index into imgs */
    bool dirty;
};

struct pw_predict_model {
    struct pw_predict_model_opts o;
    struct pool **pools;
    size_t npool, cappool;
    json_t *pool_index; /* id -> integer index into pools */
    json_t *sizes;      /* ref -> integer bytes */
    int64_t watermark;
};

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

static void pool_free(struct pool *p)
{
    for (size_t i = 0; i < p->nimg; i++)
        free(p->imgs[i].ref);
    free(p->imgs);
    json_decref(p->index);
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

static void count_add(const pw_predict_model *m, struct count *c, int64_t t)
{
    if (c->n == 0 || t >= c->t) {
        c->w = c->n == 0 ? 1.0 : c->w * decay(m, (double)(t - c->t)) + 1.0;
        c->t = t;
    } else {
        c->w += decay(m, (double)(c->t - t));
    }
    c->n++;
    if (t > c->last)
        c->last = t;
}

static double count_at(const pw_predict_model *m, const struct count *c, int64_t now)
{
    if (c->n == 0)
        return 0;
    return now >= c->t ? c->w * decay(m, (double)(now - c->t)) : c->w;
}

/* ---- pools and images ---- */

static struct pool *pool_find(const pw_predict_model *m, const char *id)
{
    json_t *ix = json_object_get(m->pool_index, id);
    return ix ? m->pools[json_integer_value(ix)] : NULL;
}

static struct pool *pool_get(pw_predict_model *m, const char *id)
{
    struct pool *p = pool_find(m, id);
    if (p)
        return p;
    if (m->npool == m->cappool) {
        m->cappool = m->cappool ? m->cappool * 2 : 8;
        m->pools = pw_xrealloc(m->pools, m->cappool * sizeof *m->pools);
    }
    p = pw_xcalloc(1, sizeof *p);
    p->id = pw_xstrdup(id);
    p->index = json_object();
    json_object_set_new(m->pool_index, id, json_integer((json_int_t)m->npool));
    m->pools[m->npool++] = p;
    return p;
}

static struct img *img_find(const struct pool *p, const char *ref)
{
    json_t *ix = json_object_get(p->index, ref);
    return ix ? &p->imgs[json_integer_value(ix)] : NULL;
}

/* Drops the image with the least decayed count (the pool is at its cap). */
static void img_evict(const pw_predict_model *m, struct pool *p, int64_t now)
{
    size_t worst = 0;
    for (size_t i = 1; i < p->nimg; i++)
        if (count_at(m, &p->imgs[i].c, now) < count_at(m, &p->imgs[worst].c, now))
            worst = i;
    json_object_del(p->index, p->imgs[worst].ref);
    free(p->imgs[worst].ref);
    p->nimg--;
    if (worst != p->nimg) {
        p->imgs[worst] = p->imgs[p->nimg];
        json_object_set_new(p->index, p->imgs[worst].ref, json_integer((json_int_t)worst));
    }
}

static struct img *img_get(const pw_predict_model *m, struct pool *p, const char *ref, int64_t now)
{
    struct img *im = img_find(p, ref);
    if (im)
        return im;
    if (p->nimg >= PW_PREDICT_MAX_IMAGES_PER_POOL)
        img_evict(m, p, now);
    if (p->nimg == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->imgs = pw_xrealloc(p->imgs, p->cap * sizeof *p->imgs);
    }
    im = &p->imgs[p->nimg];
    memset(im, 0, sizeof *im);
    im->ref = pw_xstrdup(ref);
    json_object_set_new(p->index, ref, json_integer((json_int_t)p->nimg));
    p->nimg++;
    return im;
}

void pw_predict_model_observe(pw_predict_model *m, const char *pool, const char *const *images, size_t n,
                              int64_t t_ms)
{
    struct pool *p = pool_get(m, pool);
    count_add(m, &p->c, t_ms);
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(images[i], images[j]) == 0;
        if (!dup)
            count_add(m, &img_get(m, p, images[i], t_ms)->c, t_ms);
    }
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

/* The ratio of the two counts read at the same time, computed without reading either at now: both
 * decay alike, so P does not depend on now, and a pool idle for many half-lives keeps its ranking
 * (no underflow to 0/0). */
static double probability(const pw_predict_model *m, const struct pool *p, const struct img *im, int64_t now)
{
    (void)now;
    if (p->c.n == 0 || im->c.n == 0 || p->c.w <= 0)
        return 0;
    double pr = im->c.w / p->c.w * decay(m, (double)(p->c.t - im->c.t));
    return pr > 1 ? 1 : pr;
}

double pw_predict_model_probability(const pw_predict_model *m, const char *pool, const char *image, int64_t now_ms)
{
    const struct pool *p = pool_find(m, pool);
    const struct img *im = p ? img_find(p, image) : NULL;
    return im ? probability(m, p, im, now_ms) : 0;
}

/* ---- ranking ---- */

struct ranked {
    const struct img *im;
    double pr, pull_s, benefit;
    int64_t size;
    bool size_known;
};

static int by_benefit(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->benefit != y->benefit)
        return x->benefit < y->benefit ? 1 : -1;
    return strcmp(x->im->ref, y->im->ref);
}

static double round_to(double v, double unit)
{
    return round(v / unit) * unit;
}

static json_t *time_json(int64_t ms)
{
    char t[32];
    pw_time_rfc3339((time_t)(ms / 1000), t);
    return json_string(t);
}

static const char *pool_value(const char *id)
{
    const char *eq = strchr(id, '=');
    return eq ? eq + 1 : id;
}

json_t *pw_predict_model_rank(const pw_predict_model *m, const char *pool, const struct pw_predict_limits *lim,
                              int64_t now_ms)
{
    const struct pool *p = pool_find(m, pool);
    if (!p)
        return NULL;
    struct pw_predict_limits l = lim ? *lim : (struct pw_predict_limits){.min_probability = PW_PREDICT_DEFAULT_MIN_PROBABILITY};
    if (l.max_images <= 0)
        l.max_images = PW_PREDICT_DEFAULT_MAX_IMAGES;
    struct ranked *r = pw_xcalloc(p->nimg ? p->nimg : 1, sizeof *r);
    double bytes_per_s = m->o.bandwidth_mbps * 1e6;
    for (size_t i = 0; i < p->nimg; i++) {
        json_t *sz = json_object_get(m->sizes, p->imgs[i].ref);
        r[i].im = &p->imgs[i];
        r[i].size_known = sz != NULL;
        r[i].size = sz ? (int64_t)json_integer_value(sz) : m->o.unknown_size_bytes;
        r[i].pr = probability(m, p, &p->imgs[i], now_ms);
        r[i].pull_s = (double)r[i].size / bytes_per_s;
        r[i].benefit = r[i].pr * r[i].pull_s;
    }
    qsort(r, p->nimg, sizeof *r, by_benefit);

    json_t *images = json_array(), *selected = json_array();
    int64_t used = 0;
    int chosen = 0;
    for (size_t i = 0; i < p->nimg; i++) {
        const char *reason;
        bool sel = false;
        if (r[i].pr < l.min_probability)
            reason = "below minProbability";
        else if (chosen >= l.max_images)
            reason = "maxImages reached";
        else if (l.max_bytes_per_node > 0 && used + r[i].size > l.max_bytes_per_node)
            reason = "over maxBytesPerNode";
        else {
            reason = "selected";
            sel = true;
            used += r[i].size;
            chosen++;
            json_array_append_new(selected, json_string(r[i].im->ref));
        }
        json_array_append_new(
            images, json_pack("{s:s, s:f, s:I, s:b, s:f, s:f, s:I, s:o, s:b, s:s}", "image", r[i].im->ref,
                              "probability", round_to(r[i].pr, 1e-4), "sizeBytes", (json_int_t)r[i].size,
                              "sizeKnown", r[i].size_known, "pullSeconds", round_to(r[i].pull_s, 1e-3),
                              "benefitSeconds", round_to(r[i].benefit, 1e-3), "observations",
                              (json_int_t)r[i].im->c.n, "lastSeen", time_json(r[i].im->c.last), "selected", sel,
                              "reason", reason));
    }
    free(r);
    char *key = pw_xstrndup(p->id, (size_t)(pool_value(p->id) - p->id - (strchr(p->id, '=') ? 1 : 0)));
    json_t *out = json_pack(
        "{s:s, s:s, s:s, s:f, s:I, s:o, s:f, s:f, s:{s:I, s:f, s:i}, s:o, s:I, s:o}", "pool", p->id, "labelKey", key,
        "labelValue", pool_value(p->id), "pods", round_to(count_at(m, &p->c, now_ms), 1e-3), "observations",
        (json_int_t)p->c.n, "lastSeen", time_json(p->c.last), "halfLifeSeconds", (double)m->o.half_life_ms / 1000,
        "bandwidthMBps", m->o.bandwidth_mbps, "limits", "maxBytesPerNode", (json_int_t)l.max_bytes_per_node,
        "minProbability", l.min_probability, "maxImages", l.max_images, "selected", selected, "selectedBytes",
        (json_int_t)used, "images", images);
    free(key);
    return out;
}

static int by_pool_id(const void *a, const void *b)
{
    return strcmp((*(struct pool *const *)a)->id, (*(struct pool *const *)b)->id);
}

json_t *pw_predict_model_pools(const pw_predict_model *m, int64_t now_ms)
{
    struct pool **sorted = pw_xcalloc(m->npool ? m->npool : 1, sizeof *sorted);
    memcpy(sorted, m->pools, m->npool * sizeof *sorted);
    qsort(sorted, m->npool, sizeof *sorted, by_pool_id);
    json_t *out = json_array();
    for (size_t i = 0; i < m->npool; i++)
        json_array_append_new(out, json_pack("{s:s, s:f, s:I, s:I, s:o}", "pool", sorted[i]->id, "pods",
                                             round_to(count_at(m, &sorted[i]->c, now_ms), 1e-3), "observations",
                                             (json_int_t)sorted[i]->c.n, "images", (json_int_t)sorted[i]->nimg,
                                             "lastSeen", time_json(sorted[i]->c.last)));
    free(sorted);
    return out;
}

json_t *pw_predict_model_pools_named(const pw_predict_model *m, const char *value)
{
    json_t *out = json_array();
    for (size_t i = 0; i < m->npool; i++)
        if (strcmp(pool_value(m->pools[i]->id), value) == 0)
            json_array_append_new(out, json_string(m->pools[i]->id));
    return out;
}

/* ---- persistence ---- */

static json_t *count_doc(const struct count *c)
{
    return json_pack("{s:f, s:I, s:I, s:I}", "w", c->w, "t", (json_int_t)c->t, "n", (json_int_t)c->n, "last",
                     (json_int_t)c->last);
}

static int count_load(const json_t *doc, struct count *c)
{
    json_t *w = json_object_get(doc, "w"), *t = json_object_get(doc, "t"), *n = json_object_get(doc, "n"),
           *last = json_object_get(doc, "last");
    if (!json_is_number(w) || !json_is_integer(t) || !json_is_integer(n) || !json_is_integer(last) ||
        json_number_value(w) < 0 || json_integer_value(n) < 0)
        return PW_EINVAL;
    *c = (struct count){json_number_value(w), (int64_t)json_integer_value(t), (int64_t)json_integer_value(n),
                        (int64_t)json_integer_value(last)};
    return 0;
}

json_t *pw_predict_model_pool_doc(const pw_predict_model *m, const char *pool)
{
    const struct pool *p = pool_find(m, pool);
    if (!p)
        return NULL;
    json_t *images = json_object();
    for (size_t i = 0; i < p->nimg; i++) {
        json_t *d = count_doc(&p->imgs[i].c);
        json_t *sz = json_object_get(m->sizes, p->imgs[i].ref);
        if (sz)
            json_object_set(d, "size", sz);
        json_object_set_new(images, p->imgs[i].ref, d);
    }
    return json_pack("{s:i, s:s, s:o, s:o}", "version", 1, "pool", p->id, "pods", count_doc(&p->c), "images", images);
}

int pw_predict_model_load_pool(pw_predict_model *m, const json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "pool"));
    json_t *images = json_object_get(doc, "images");
    struct count pc;
    if (!id || !*id || !json_is_object(images) || count_load(json_object_get(doc, "pods"), &pc) != 0)
        return PW_EINVAL;
    const char *ref;
    json_t *d;
    json_object_foreach(images, ref, d) {
        struct count c;
        if (count_load(d, &c) != 0)
            return PW_EINVAL;
    }
    struct pool *p = pool_get(m, id);
    for (size_t i = 0; i < p->nimg; i++)
        free(p->imgs[i].ref);
    p->nimg = 0;
    json_object_clear(p->index);
    p->c = pc;
    json_object_foreach(images, ref, d) {
        struct img *im = img_get(m, p, ref, pc.t);
        count_load(d, &im->c);
        json_t *sz = json_object_get(d, "size");
        if (json_is_integer(sz))
            pw_predict_model_set_size(m, ref, (int64_t)json_integer_value(sz));
    }
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
