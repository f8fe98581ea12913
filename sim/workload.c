/* workload.c: the workload generator (workload.h).
 *
 * Every workload keeps, per pool, its Zipf table, its own random state (seeded from the workload's
 * seed and the pool's position, so a run replays whatever else the world does), the model time of the
 * next arrival and its counts. Pods are tracked by key from their creation (before their ADDED event
 * comes back) until they are deleted. Timers (kind SIM_T_WORKLOAD): "arr:<workload>:<pool>" for the
 * next arrival, "del:<ns>/<name>" for a pod's end of life. Workloads are kept (stopped) after DELETE
 * until the world stops, so a pod's record never outlives what it points to.
 *
 * Thread model: handlers take world->lock; hooks and timers run on the world thread with it held. */
#include "sim/workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"
#include "sim/ctlbody.h"
#include "sim/sched.h"
#include "sim/world_int.h"

/* ---------------------------------- Zipf ---------------------------------- */

struct sim_zipf {
    int n;
    double *cdf; /* cdf[k] = P(rank <= k) */
};

struct sim_zipf *sim_zipf_new(int n, double s)
{
    if (n < 1 || !(s >= 0) || isinf(s))
        return NULL;
    struct sim_zipf *z = pw_xcalloc(1, sizeof *z);
    z->n = n;
    z->cdf = pw_xcalloc((size_t)n, sizeof *z->cdf);
    double sum = 0;
    for (int k = 0; k < n; k++) {
        sum += pow(k + 1, -s);
        z->cdf[k] = sum;
    }
    for (int k = 0; k < n; k++)
        z->cdf[k] /= sum;
    z->cdf[n - 1] = 1.0;
    return z;
}

void sim_zipf_free(struct sim_zipf *z)
{
    if (!z)
        return;
    free(z->cdf);
    free(z);
}

double sim_zipf_prob(const struct sim_zipf *z, int k)
{
    if (k < 0 || k >= z->n)
        return 0;
    return k == 0 ? z->cdf[0] : z->cdf[k] - z->cdf[k - 1];
}

int sim_zipf_sample(const struct sim_zipf *z, double u)
{
    int lo = 0, hi = z->n - 1; /* the first k with cdf[k] > u */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

double sim_unit_rand(uint64_t *state)
{
    uint64_t x = (*state += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------- state ---------------------------------- */

struct wl_image {
    char *ref;
    json_t *requests; /* the resources.requests pods of this image get */
    int64_t created;
};

struct wl_pool {
    char *pool;
    struct wl_image *imgs;
    int nimgs;
    double zipf_s;
    struct sim_zipf *zipf;
    double rate, lifetime, end_at;
    bool exp_lifetime;
    int64_t max_pods;
    uint64_t rng;
    double next_at;
    bool done;
    int64_t created, running, deleted;
};

struct wl {
    int id;
    char *name, *ns, *pool_label;
    uint64_t seed;
    struct wl_pool *pools;
    int npools;
    double started_at;
    bool stopped, removed;
};

struct wpod {
    struct wl *wl;
    int pool, img;
    char *uid;
    double lifetime;
    bool started;
};

struct wstate {
    struct wl **wls;
    int n, cap;
    struct sim_map pods; /* "ns/name" -> wpod */
};

static struct wstate *wst(struct sim_world *w)
{
    if (!w->workload)
        w->workload = pw_xcalloc(1, sizeof(struct wstate));
    return w->workload;
}

static void free_wl(struct wl *wl)
{
    for (int p = 0; p < wl->npools; p++) {
        struct wl_pool *pl = &wl->pools[p];
        for (int i = 0; i < pl->nimgs; i++) {
            free(pl->imgs[i].ref);
            json_decref(pl->imgs[i].requests);
        }
        free(pl->imgs);
        sim_zipf_free(pl->zipf);
        free(pl->pool);
    }
    free(wl->pools);
    free(wl->name);
    free(wl->ns);
    free(wl->pool_label);
    free(wl);
}

/* ---------------------------------- parsing ---------------------------------- */

/* requests {"cpu": q, "memory": q}: validated copy, or NULL after replying 400. */
static json_t *parse_requests(pw_http_req *req, const json_t *v, const char *where)
{
    if (!v)
        return json_object();
    if (!json_is_object(v)) {
        sim_ctl_error(req, 400, "%srequests: must be an object {\"cpu\": ..., \"memory\": ...}", where);
        return NULL;
    }
    const char *k;
    json_t *q;
    json_object_foreach((json_t *)v, k, q)
    {
        int64_t x;
        if ((strcmp(k, "cpu") != 0 && strcmp(k, "memory") != 0) || !json_is_string(q) ||
            sim_quantity_parse(json_string_value(q), false, &x) != 0 || x < 0) {
            sim_ctl_error(req, 400, "%srequests.%s: must be cpu or memory with a quantity such as \"500m\" or \"1Gi\"",
                          where, k);
            return NULL;
        }
    }
    return json_deep_copy(v);
}

static bool parse_pool(pw_http_req *req, struct sim_world *w, const json_t *b, struct wl_pool *pl, const char *where)
{
    static const char *const FIELDS[] = {"pool",     "images",         "zipf",         "ratePerSecond",
                                         "lifetimeSeconds", "lifetimeDistribution", "requests", "durationSeconds",
                                         "maxPods",  NULL};
    if (!sim_ctl_known_fields(req, b, FIELDS, where))
        return false;
    const char *pool = json_string_value(json_object_get(b, "pool"));
    char *why = NULL;
    if (!pool || !*pool || pw_label_value_valid(pool, &why) != 0) {
        sim_ctl_error(req, 400, "%spool: required, a label value%s%s", where, why ? ": " : "", why ? why : "");
        free(why);
        return false;
    }
    pl->pool = pw_xstrdup(pool);
    double maxp, dur;
    if (!sim_ctl_number(req, b, "zipf", 0, 10, 1.0, where, &pl->zipf_s) ||
        !sim_ctl_number(req, b, "ratePerSecond", 1e-6, 1e4, NAN, where, &pl->rate) ||
        !sim_ctl_number(req, b, "lifetimeSeconds", 0, 1e9, NAN, where, &pl->lifetime) ||
        !sim_ctl_number(req, b, "durationSeconds", 0, 1e9, INFINITY, where, &dur) ||
        !sim_ctl_number(req, b, "maxPods", 0, 1e7, 0, where, &maxp))
        return false;
    if (isnan(pl->rate) || isnan(pl->lifetime)) {
        sim_ctl_error(req, 400, "%s%s: required", where, isnan(pl->rate) ? "ratePerSecond" : "lifetimeSeconds");
        return false;
    }
    pl->max_pods = (int64_t)maxp;
    pl->end_at = dur; /* made absolute by the caller */
    const char *dist = json_string_value(json_object_get(b, "lifetimeDistribution"));
    if (json_object_get(b, "lifetimeDistribution") &&
        (!dist || (strcmp(dist, "fixed") != 0 && strcmp(dist, "exponential") != 0))) {
        sim_ctl_error(req, 400, "%slifetimeDistribution: must be fixed or exponential", where);
        return false;
    }
    pl->exp_lifetime = dist && strcmp(dist, "exponential") == 0;
    json_t *dreq = parse_requests(req, json_object_get(b, "requests"), where);
    if (!dreq)
        return false;
    json_t *imgs = json_object_get(b, "images");
    if (!json_is_array(imgs) || json_array_size(imgs) == 0 || json_array_size(imgs) > 10000) {
        json_decref(dreq);
        sim_ctl_error(req, 400, "%simages: required, a non-empty array (most popular first)", where);
        return false;
    }
    pl->imgs = pw_xcalloc(json_array_size(imgs), sizeof *pl->imgs);
    size_t i;
    json_t *im;
    json_array_foreach(imgs, i, im)
    {
        json_t *ref = json_is_object(im) ? json_object_get(im, "image") : im;
        char w2[96];
        snprintf(w2, sizeof w2, "%simages[%zu].", where, i);
        static const char *const IFIELDS[] = {"image", "requests", NULL};
        if (json_is_object(im) && !sim_ctl_known_fields(req, im, IFIELDS, w2)) {
            json_decref(dreq);
            return false;
        }
        if (!json_is_string(ref) || !sim_catalog_find(w->cat, json_string_value(ref))) {
            sim_ctl_error(req, 400, "%simages[%zu]: %s%s%s is not an image of the catalogue", where, i,
                          json_is_string(ref) ? "\"" : "", json_is_string(ref) ? json_string_value(ref) : "(not a string)",
                          json_is_string(ref) ? "\"" : "");
            json_decref(dreq);
            return false;
        }
        json_t *r = json_is_object(im) && json_object_get(im, "requests")
                        ? parse_requests(req, json_object_get(im, "requests"), w2)
                        : json_incref(dreq);
        if (!r) {
            json_decref(dreq);
            return false;
        }
        pl->imgs[pl->nimgs].ref = pw_xstrdup(json_string_value(ref));
        pl->imgs[pl->nimgs].requests = r;
        pl->nimgs++;
    }
    json_decref(dreq);
    pl->zipf = sim_zipf_new(pl->nimgs, pl->zipf_s);
    return true;
}

/* ---------------------------------- pods ---------------------------------- */

/* "general" -> a DNS-1123 fragment for pod names */
static void name_part(const char *s, char *out, size_t n)
{
    size_t j = 0;
    for (; *s && j + 1 < n && j < 20; s++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        out[j++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '-';
    }
    out[j] = '\0';
}

static json_t *make_pod(struct wl *wl, struct wl_pool *pl, int img)
{
    char part[24], gen[80], rank[16];
    name_part(pl->pool, part, sizeof part);
    snprintf(gen, sizeof gen, "%.30s-%s-", wl->name, part);
    snprintf(rank, sizeof rank, "%d", img + 1);
    json_t *labels = json_pack("{s:s, s:s, s:s, s:s}", "app", wl->name, "sim.prewarm.io/workload", wl->name,
                               "sim.prewarm.io/pool", pl->pool, "sim.prewarm.io/image-rank", rank);
    const char *ref = pl->imgs[img].ref;
    json_t *c = json_pack("{s:s, s:s, s:s, s:{s:O}, s:s, s:s}", "name", "app", "image", ref, "imagePullPolicy",
                          sim_ref_is_latest(ref) ? "Always" : "IfNotPresent", "resources", "requests",
                          pl->imgs[img].requests, "terminationMessagePath", "/dev/termination-log",
                          "terminationMessagePolicy", "File");
    json_t *tols = json_pack("[{s:s, s:s, s:s, s:i}, {s:s, s:s, s:s, s:i}]", "key", "node.kubernetes.io/not-ready",
                             "operator", "Exists", "effect", "NoExecute", "tolerationSeconds", 300, "key",
                             "node.kubernetes.io/unreachable", "operator", "Exists", "effect", "NoExecute",
                             "tolerationSeconds", 300);
    json_t *spec = json_pack("{s:{s:s}, s:[o], s:s, s:s, s:s, s:s, s:i, s:o, s:i, s:b}", "nodeSelector",
                             wl->pool_label, pl->pool, "containers", c, "restartPolicy", "Always", "dnsPolicy",
                             "ClusterFirst", "schedulerName", "default-scheduler", "serviceAccountName", "default",
                             "terminationGracePeriodSeconds", 30, "tolerations", tols, "priority", 0,
                             "enableServiceLinks", 1);
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:o}, s:o, s:{s:s, s:s}}", "apiVersion", "v1", "kind", "Pod", "metadata",
                     "generateName", gen, "namespace", wl->ns, "labels", labels, "spec", spec, "status", "phase",
                     "Pending", "qosClass", json_object_size(pl->imgs[img].requests) ? "Burstable" : "BestEffort");
}

static void create_pod(struct sim_world *w, struct wl *wl, int pi)
{
    struct wl_pool *pl = &wl->pools[pi];
    int img = sim_zipf_sample(pl->zipf, sim_unit_rand(&pl->rng));
    double life = pl->exp_lifetime ? -log(1 - sim_unit_rand(&pl->rng)) * pl->lifetime : pl->lifetime;
    json_t *out = NULL;
    int rc = sim_store_create(w->sim->store, "pods", wl->ns, make_pod(wl, pl, img), &out);
    if (rc != 0) {
        PW_WARN("kubesim workload %s: cannot create a pod: %s", wl->name, pw_strerror(rc));
        return;
    }
    json_t *md = json_object_get(out, "metadata");
    char key[600];
    snprintf(key, sizeof key, "%s/%s", wl->ns, json_string_value(json_object_get(md, "name")));
    struct wpod *p = pw_xcalloc(1, sizeof *p);
    p->wl = wl;
    p->pool = pi;
    p->img = img;
    p->uid = pw_xstrdup(json_string_value(json_object_get(md, "uid")));
    p->lifetime = life;
    sim_map_put(&wst(w)->pods, key, p);
    json_decref(out);
    pl->created++;
    pl->imgs[img].created++;
}

static void arrival_key(char *out, size_t n, int wl, int pool)
{
    snprintf(out, n, "arr:%d:%d", wl, pool);
}

/* Creates the pods due by now, then sets the timer of the next arrival. */
static void arrivals(struct sim_world *w, struct wl *wl, int pi)
{
    struct wl_pool *pl = &wl->pools[pi];
    double now = sim_world_now(w);
    while (!wl->stopped && !pl->done && pl->next_at <= now) {
        if (pl->next_at >= pl->end_at || (pl->max_pods && pl->created >= pl->max_pods)) {
            pl->done = true;
            break;
        }
        create_pod(w, wl, pi);
        pl->next_at += -log(1 - sim_unit_rand(&pl->rng)) / pl->rate;
    }
    if (!wl->stopped && !pl->done) {
        char key[48];
        arrival_key(key, sizeof key, wl->id, pi);
        sim_world_timer(w, pl->next_at, SIM_T_WORKLOAD, key);
    }
}

void sim_workload_on_pod(struct sim_world *w, const struct sim_change *ch)
{
    struct wstate *s = wst(w);
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ch->ns, ch->name);
    struct wpod *p = sim_map_get(&s->pods, key);
    if (!p)
        return;
    const char *uid = json_string_value(json_object_get(json_object_get(ch->obj, "metadata"), "uid"));
    if (!uid || strcmp(uid, p->uid) != 0)
        return;
    struct wl_pool *pl = &p->wl->pools[p->pool];
    if (ch->type == SIM_DELETED) {
        sim_map_del(&s->pods, key);
        pl->deleted++;
        if (p->started)
            pl->running--;
        free(p->uid);
        free(p);
        return;
    }
    const char *phase = json_string_value(json_object_get(json_object_get(ch->obj, "status"), "phase"));
    if (!p->started && phase && strcmp(phase, "Running") == 0) {
        p->started = true;
        pl->running++;
        char dk[640];
        snprintf(dk, sizeof dk, "del:%s", key);
        sim_world_timer(w, sim_world_now(w) + p->lifetime, SIM_T_WORKLOAD, dk);
    }
}

static void delete_pod(struct sim_world *w, const char *key)
{
    const char *slash = strchr(key, '/');
    if (!slash)
        return;
    char ns[256], name[512];
    snprintf(ns, sizeof ns, "%.*s", (int)(slash - key), key);
    snprintf(name, sizeof name, "%s", slash + 1);
    sim_api_delete(w->sim, "pods", ns, name, NULL); /* graceful: the kubelet removes it */
}

void sim_workload_timer(struct sim_world *w, const char *key)
{
    struct wstate *s = wst(w);
    if (strncmp(key, "del:", 4) == 0) {
        if (sim_map_get(&s->pods, key + 4))
            delete_pod(w, key + 4);
        return;
    }
    int id = -1, pi = -1;
    if (sscanf(key, "arr:%d:%d", &id, &pi) != 2 || id < 0 || id >= s->n || pi < 0 || pi >= s->wls[id]->npools)
        return;
    arrivals(w, s->wls[id], pi);
}

/* ---------------------------------- the endpoint ---------------------------------- */

static json_t *wl_json(const struct wl *wl)
{
    json_t *pools = json_array();
    for (int p = 0; p < wl->npools; p++) {
        const struct wl_pool *pl = &wl->pools[p];
        json_t *imgs = json_array();
        for (int i = 0; i < pl->nimgs; i++)
            json_array_append_new(imgs, json_pack("{s:s, s:i, s:f, s:I, s:O}", "image", pl->imgs[i].ref, "rank", i + 1,
                                                  "probability", sim_zipf_prob(pl->zipf, i), "created",
                                                  (json_int_t)pl->imgs[i].created, "requests", pl->imgs[i].requests));
        json_t *o = json_pack("{s:s, s:f, s:f, s:s, s:f, s:o, s:I, s:I, s:I, s:b}", "pool", pl->pool, "ratePerSecond",
                              pl->rate, "lifetimeSeconds", pl->lifetime, "lifetimeDistribution",
                              pl->exp_lifetime ? "exponential" : "fixed", "zipf", pl->zipf_s, "images", imgs,
                              "created", (json_int_t)pl->created, "running", (json_int_t)pl->running, "deleted",
                              (json_int_t)pl->deleted, "done", pl->done || wl->stopped);
        json_object_set_new(o, "endsAt", isinf(pl->end_at) ? json_null() : json_real(pl->end_at));
        json_object_set_new(o, "maxPods", pl->max_pods ? json_integer(pl->max_pods) : json_null());
        json_array_append_new(pools, o);
    }
    return json_pack("{s:s, s:s, s:s, s:I, s:f, s:s, s:o}", "name", wl->name, "namespace", wl->ns, "poolLabel",
                     wl->pool_label, "seed", (json_int_t)wl->seed, "startedAt", wl->started_at, "state",
                     wl->stopped ? "stopped" : "running", "pools", pools);
}

static struct wl *find_live(struct wstate *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!s->wls[i]->removed && strcmp(s->wls[i]->name, name) == 0)
            return s->wls[i];
    return NULL;
}

static void h_post(pw_http_req *req, void *arg)
{
    struct sim_world *w = arg;
    json_t *b = sim_ctl_body(req);
    if (!b)
        return;
    static const char *const FIELDS[] = {"name", "namespace", "seed", "poolLabel", "pools", NULL};
    if (!sim_ctl_known_fields(req, b, FIELDS, "")) {
        json_decref(b);
        return;
    }
    const char *name = json_object_get(b, "name") ? json_string_value(json_object_get(b, "name")) : "workload";
    const char *ns = json_object_get(b, "namespace") ? json_string_value(json_object_get(b, "namespace")) : "default";
    const char *plabel = json_object_get(b, "poolLabel") ? json_string_value(json_object_get(b, "poolLabel")) : "pool";
    json_t *seed = json_object_get(b, "seed");
    json_t *pools = json_object_get(b, "pools");
    char *why = NULL;
    const char *bad = NULL;
    if (!name || strlen(name) > 40 || !pw_dns1123_label(name))
        bad = "name: must be a DNS-1123 label of at most 40 characters";
    else if (!ns || !pw_dns1123_label(ns))
        bad = "namespace: must be a DNS-1123 label";
    else if (!plabel || pw_label_key_valid(plabel, &why) != 0)
        bad = "poolLabel: must be a label key";
    else if (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0))
        bad = "seed: must be a non-negative integer";
    else if (!json_is_array(pools) || json_array_size(pools) == 0 || json_array_size(pools) > 100)
        bad = "pools: required, an array of 1 to 100 pools";
    free(why);
    if (bad) {
        sim_ctl_error(req, 400, "%s", bad);
        json_decref(b);
        return;
    }
    json_t *nsobj = NULL;
    if (sim_store_get(w->sim->store, "namespaces", "", ns, &nsobj) != 0) {
        sim_ctl_error(req, 400, "namespace: %s does not exist", ns);
        json_decref(b);
        return;
    }
    json_decref(nsobj);
    struct wl *wl = pw_xcalloc(1, sizeof *wl);
    wl->name = pw_xstrdup(name);
    wl->ns = pw_xstrdup(ns);
    wl->pool_label = pw_xstrdup(plabel);
    wl->seed = seed ? (uint64_t)json_integer_value(seed) : w->sim->opt.seed;
    wl->npools = (int)json_array_size(pools);
    wl->pools = pw_xcalloc((size_t)wl->npools, sizeof *wl->pools);
    pthread_mutex_lock(&w->lock);
    bool ok = true;
    for (int p = 0; p < wl->npools && ok; p++) {
        char where[32];
        snprintf(where, sizeof where, "pools[%d].", p);
        json_t *one = json_array_get(pools, (size_t)p);
        if (!json_is_object(one)) {
            sim_ctl_error(req, 400, "pools[%d]: must be an object", p);
            ok = false;
        } else {
            ok = parse_pool(req, w, one, &wl->pools[p], where);
        }
        for (int q = 0; ok && q < p; q++)
            if (strcmp(wl->pools[q].pool, wl->pools[p].pool) == 0) {
                sim_ctl_error(req, 400, "pools[%d].pool: %s is given twice", p, wl->pools[p].pool);
                ok = false;
            }
    }
    struct wstate *s = wst(w);
    if (ok && find_live(s, name)) {
        sim_ctl_error(req, 409, "name: a workload %s exists (DELETE /sim/v1/workload?name=%s first)", name, name);
        ok = false;
    }
    if (!ok) {
        pthread_mutex_unlock(&w->lock);
        free_wl(wl);
        json_decref(b);
        return;
    }
    double now = sim_world_now(w);
    wl->started_at = now;
    wl->id = s->n;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->wls = pw_xrealloc(s->wls, sizeof *s->wls * (size_t)s->cap);
    }
    s->wls[s->n++] = wl;
    for (int p = 0; p < wl->npools; p++) {
        struct wl_pool *pl = &wl->pools[p];
        pl->rng = wl->seed * 0x100000001b3ULL + (uint64_t)p * 0x9e3779b97f4a7c15ULL + 1;
        pl->end_at = now + pl->end_at;
        pl->next_at = now - log(1 - sim_unit_rand(&pl->rng)) / pl->rate;
        char key[48];
        arrival_key(key, sizeof key, wl->id, p);
        sim_world_timer(w, pl->next_at, SIM_T_WORKLOAD, key);
    }
    json_t *out = wl_json(wl);
    sim_world_kick(w);
    pthread_mutex_unlock(&w->lock);
    json_decref(b);
    pw_http_reply_json(req, 201, out);
}

static void h_get(pw_http_req *req, void *arg)
{
    struct sim_world *w = arg;
    const char *name = pw_http_req_query(req, "name");
    json_t *arr = json_array();
    pthread_mutex_lock(&w->lock);
    struct wstate *s = wst(w);
    for (int i = 0; i < s->n; i++)
        if (!s->wls[i]->removed && (!name || strcmp(name, s->wls[i]->name) == 0))
            json_array_append_new(arr, wl_json(s->wls[i]));
    double now = sim_world_now(w);
    pthread_mutex_unlock(&w->lock);
    if (name && json_array_size(arr) == 0) {
        json_decref(arr);
        sim_ctl_error(req, 404, "name: no workload %s", name);
        return;
    }
    pw_http_reply_json(req, 200, json_pack("{s:f, s:o}", "now", now, "workloads", arr));
}

struct collect_arg {
    const struct wl *wl;
    char **keys;
    int n, cap;
};

static void collect(void *arg, const char *key, void *val)
{
    struct collect_arg *a = arg;
    const struct wpod *p = val;
    if (p->wl != a->wl)
        return;
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->keys = pw_xrealloc(a->keys, sizeof *a->keys * (size_t)a->cap);
    }
    a->keys[a->n++] = pw_xstrdup(key);
}

static void h_delete(pw_http_req *req, void *arg)
{
    struct sim_world *w = arg;
    const char *name = pw_http_req_query(req, "name");
    json_t *names = json_array();
    int pods = 0;
    pthread_mutex_lock(&w->lock);
    struct wstate *s = wst(w);
    for (int i = 0; i < s->n; i++) {
        struct wl *wl = s->wls[i];
        if (wl->removed || (name && strcmp(name, wl->name) != 0))
            continue;
        wl->stopped = wl->removed = true;
        json_array_append_new(names, json_string(wl->name));
        struct collect_arg a = {.wl = wl};
        sim_map_each(&s->pods, collect, &a);
        for (int k = 0; k < a.n; k++) {
            delete_pod(w, a.keys[k]);
            free(a.keys[k]);
        }
        pods += a.n;
        free(a.keys);
    }
    pthread_mutex_unlock(&w->lock);
    if (name && json_array_size(names) == 0) {
        json_decref(names);
        sim_ctl_error(req, 404, "name: no workload %s", name);
        return;
    }
    pw_http_reply_json(req, 200, json_pack("{s:o, s:i}", "deleted", names, "podsDeleted", pods));
}

void sim_workload_route(pw_http_req *req, void *ctx)
{
    struct sim_world *w = ((struct sim *)ctx)->world;
    sim_ctl_methods(req, w, h_post, h_get, h_delete, "/sim/v1/workload");
}

static void free_wpod(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    struct wpod *p = val;
    free(p->uid);
    free(p);
}

void sim_workload_fini(struct sim_world *w)
{
    struct wstate *s = w->workload;
    if (!s)
        return;
    sim_map_each(&s->pods, free_wpod, NULL);
    sim_map_fini(&s->pods);
    for (int i = 0; i < s->n; i++)
        free_wl(s->wls[i]);
    free(s->wls);
    free(s);
    w->workload = NULL;
}
