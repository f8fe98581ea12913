/* world.c: kubesim's world: the nodes (created in the store, their ground truth, status.images kept
 * current), the one world thread that runs the physical model, the kubelets and the Job controller, and
 * the /sim/v1 routes the world serves (truth, bound, nodes, pulls).
 *
 * Thread model: one world thread. The store's subscriber callback only queues changes (a reference to
 * each object) for it. World state is guarded by world->lock, taken by the thread while it works and by
 * the HTTP handlers; lock order is world->lock, then the store's lock (taken inside store calls), then
 * world->qlock (taken by the subscriber inside writes). Nothing takes world->lock inside the store. */
#include "sim/world_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/labels.h"
#include "base/mem.h"
#include "sim/autoscale.h"
#include "sim/podstats.h"
#include "sim/sched.h"
#include "sim/workload.h"

/* ---------------------------------- the string map ---------------------------------- */

struct sim_map_ent {
    char *key;
    void *val;
    struct sim_map_ent *next;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void *sim_map_get(const struct sim_map *m, const char *key)
{
    if (!m->nb)
        return NULL;
    for (struct sim_map_ent *e = m->b[hash_str(key) % m->nb]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e->val;
    return NULL;
}

static void map_grow(struct sim_map *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    struct sim_map_ent **b = pw_xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < m->nb; i++) {
        struct sim_map_ent *e = m->b[i];
        while (e) {
            struct sim_map_ent *next = e->next;
            size_t h = hash_str(e->key) % nb;
            e->next = b[h];
            b[h] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

void sim_map_put(struct sim_map *m, const char *key, void *val)
{
    if (m->n + 1 > m->nb)
        map_grow(m);
    size_t h = hash_str(key) % m->nb;
    for (struct sim_map_ent *e = m->b[h]; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            e->val = val;
            return;
        }
    struct sim_map_ent *e = pw_xmalloc(sizeof *e);
    e->key = pw_xstrdup(key);
    e->val = val;
    e->next = m->b[h];
    m->b[h] = e;
    m->n++;
}

void *sim_map_del(struct sim_map *m, const char *key)
{
    if (!m->nb)
        return NULL;
    struct sim_map_ent **pp = &m->b[hash_str(key) % m->nb];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) != 0)
            continue;
        struct sim_map_ent *e = *pp;
        void *v = e->val;
        *pp = e->next;
        free(e->key);
        free(e);
        m->n--;
        return v;
    }
    return NULL;
}

void sim_map_each(const struct sim_map *m, void (*fn)(void *arg, const char *key, void *val), void *arg)
{
    for (size_t i = 0; i < m->nb; i++)
        for (struct sim_map_ent *e = m->b[i]; e; e = e->next)
            fn(arg, e->key, e->val);
}

void sim_map_fini(struct sim_map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        struct sim_map_ent *e = m->b[i];
        while (e) {
            struct sim_map_ent *next = e->next;
            free(e->key);
            free(e);
            e = next;
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------- clock, timers, randomness ---------------------------------- */

struct sim_timer {
    double at;
    enum sim_timer_kind kind;
    char *key;
};

double sim_world_now(const struct sim_world *w)
{
    return (double)(pw_clock_mono_ms() - w->start_mono_ms) / 1000.0 * w->scale;
}

void sim_world_catch_up(struct sim_world *w)
{
    sim_model_advance(w->model, sim_world_now(w));
}

void sim_world_kick(struct sim_world *w)
{
    pthread_mutex_lock(&w->qlock);
    w->kicked = true;
    pthread_cond_signal(&w->qcond);
    pthread_mutex_unlock(&w->qlock);
}

static void heap_swap(struct sim_timer *a, struct sim_timer *b)
{
    struct sim_timer t = *a;
    *a = *b;
    *b = t;
}

void sim_world_timer(struct sim_world *w, double at, enum sim_timer_kind kind, const char *key)
{
    if (w->ntimers == w->captimers) {
        w->captimers = w->captimers ? w->captimers * 2 : 256;
        w->timers = pw_xrealloc(w->timers, sizeof *w->timers * w->captimers);
    }
    size_t i = w->ntimers++;
    w->timers[i] = (struct sim_timer){.at = at, .kind = kind, .key = pw_xstrdup(key)};
    while (i > 0 && w->timers[(i - 1) / 2].at > w->timers[i].at) {
        heap_swap(&w->timers[(i - 1) / 2], &w->timers[i]);
        i = (i - 1) / 2;
    }
}

static struct sim_timer heap_pop(struct sim_world *w)
{
    struct sim_timer top = w->timers[0];
    w->timers[0] = w->timers[--w->ntimers];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, s = i;
        if (l < w->ntimers && w->timers[l].at < w->timers[s].at)
            s = l;
        if (r < w->ntimers && w->timers[r].at < w->timers[s].at)
            s = r;
        if (s == i)
            break;
        heap_swap(&w->timers[s], &w->timers[i]);
        i = s;
    }
    return top;
}

/* splitmix64: seeded, repeatable */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t sim_world_rand(struct sim_world *w)
{
    w->rng = mix64(w->rng);
    return w->rng;
}

void sim_world_event(struct sim_world *w, const json_t *involved, const char *type, const char *reason,
                     const char *message, const char *component, const char *host, const char *field_path)
{
    if (w->sim->api)
        sim_api_event(w->sim, involved, type, reason, message, component, host, field_path);
}

/* ---------------------------------- nodes ---------------------------------- */

struct sim_wnode *sim_world_node(struct sim_world *w, const char *name)
{
    return sim_map_get(&w->node_by_name, name);
}

bool sim_world_node_holds(const struct sim_wnode *n, const struct sim_image *img)
{
    for (int i = 0; i < n->nheld; i++)
        if (n->held[i].image == img->index)
            return true;
    return false;
}

void sim_world_node_hold(struct sim_world *w, struct sim_wnode *n, const struct sim_image *img, const char *ref)
{
    struct sim_held *h = NULL;
    for (int i = 0; i < n->nheld && !h; i++)
        if (n->held[i].image == img->index)
            h = &n->held[i];
    if (!h) {
        n->held = pw_xrealloc(n->held, sizeof *n->held * (size_t)(n->nheld + 1));
        h = &n->held[n->nheld++];
        memset(h, 0, sizeof *h);
        h->image = img->index;
    }
    for (int i = 0; i < h->nrefs; i++)
        if (strcmp(h->refs[i], ref) == 0)
            return;
    h->refs = pw_xrealloc(h->refs, sizeof *h->refs * (size_t)(h->nrefs + 1));
    h->refs[h->nrefs++] = pw_xstrdup(ref);
    if (!n->images_dirty) {
        n->images_dirty = true;
        if (w->ndirty == w->capdirty) {
            w->capdirty = w->capdirty ? w->capdirty * 2 : 64;
            w->dirty = pw_xrealloc(w->dirty, sizeof *w->dirty * (size_t)w->capdirty);
        }
        w->dirty[w->ndirty++] = n;
    }
}

struct pool_def {
    const char *pool;
    int percent; /* cumulative */
    const char *amd64_type, *arm64_type;
    int cpu;
    int64_t mem_ki;
    int gpus;
};

/* Node pools, by share of the nodes (cumulative percent). GPU nodes are amd64. */
static const struct pool_def POOLS[] = {
    {"general", 70, "m6i.4xlarge", "m7g.4xlarge", 16, 65842340, 0},
    {"batch", 90, "c6i.8xlarge", "c7g.8xlarge", 32, 65842340, 0},
    {"gpu", 100, "g5.12xlarge", NULL, 48, 196608000, 4},
};
static const char *ZONES[] = {"zone-a", "zone-b", "zone-c"};

static json_t *condition(const char *type, const char *status, const char *reason, const char *msg, const char *now)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", type, "status", status, "lastHeartbeatTime", now,
                     "lastTransitionTime", now, "reason", reason, "message", msg);
}

static json_t *node_conditions(bool ready, const char *now)
{
    json_t *c = json_array();
    json_array_append_new(c, condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                                       "kubelet has sufficient memory available", now));
    json_array_append_new(
        c, condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now));
    json_array_append_new(
        c, condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available", now));
    if (ready)
        json_array_append_new(c, condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now));
    else
        json_array_append_new(c, condition("Ready", "False", "KubeletNotReady",
                                           "container runtime network not ready: NetworkReady=false "
                                           "reason:NetworkPluginNotReady message:Network plugin returns error: "
                                           "cni plugin not initialized",
                                           now));
    return c;
}

static void hexid(struct sim_world *w, char *out, int nhex)
{
    static const char H[] = "0123456789abcdef";
    uint64_t r = 0;
    for (int i = 0; i < nhex; i++) {
        if (i % 16 == 0)
            r = sim_world_rand(w);
        out[i] = H[r & 15];
        r >>= 4;
    }
    out[nhex] = '\0';
}

static json_t *taint(const char *key, const char *effect, const char *now)
{
    json_t *t = json_pack("{s:s, s:s}", "key", key, "effect", effect);
    if (now)
        json_object_set_new(t, "timeAdded", json_string(now));
    return t;
}

/* Builds a new node's object and world entry. opts may carry "labels" (object), "arch", "pool". */
static json_t *make_node(struct sim_world *w, struct sim_wnode *n, int number, const json_t *opts, bool ready)
{
    uint64_t h = mix64(w->sim->opt.seed ^ mix64((uint64_t)number));
    const char *want_pool = json_string_value(json_object_get(opts, "pool"));
    const struct pool_def *pool = &POOLS[0];
    int pr = (int)(h % 100);
    for (size_t i = 0; i < sizeof POOLS / sizeof POOLS[0]; i++) {
        if (want_pool ? strcmp(POOLS[i].pool, want_pool) == 0 : pr < POOLS[i].percent) {
            pool = &POOLS[i];
            break;
        }
    }
    const char *want_arch = json_string_value(json_object_get(opts, "arch"));
    bool arm = want_arch ? strcmp(want_arch, "arm64") == 0
                         : (int)(mix64(h) % 100) < w->sim->opt.arm64_percent && pool->arm64_type;
    snprintf(n->arch, sizeof n->arch, "%s", arm ? "arm64" : "amd64");
    snprintf(n->ip, sizeof n->ip, "10.0.%d.%d", (number / 250) % 256, number % 250 + 1);
    const char *zone = ZONES[(number - 1) % 3];
    const char *itype = arm && pool->arm64_type ? pool->arm64_type : pool->amd64_type;
    char now[PW_RFC3339_LEN];
    pw_time_rfc3339(time(NULL), now);

    json_t *labels = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kubernetes.io/hostname", n->name,
                               "kubernetes.io/os", "linux", "kubernetes.io/arch", n->arch, "beta.kubernetes.io/os",
                               "linux", "beta.kubernetes.io/arch", n->arch, "topology.kubernetes.io/zone", zone,
                               "topology.kubernetes.io/region", "region-1", "node.kubernetes.io/instance-type", itype,
                               "beta.kubernetes.io/instance-type", itype, "pool", pool->pool);
    json_t *extra = json_object_get(opts, "labels");
    if (json_is_object(extra))
        json_object_update(labels, extra);

    char cpu[16], mem[32], amem[32], cpu_alloc[16];
    snprintf(cpu, sizeof cpu, "%d", pool->cpu);
    snprintf(cpu_alloc, sizeof cpu_alloc, "%dm", pool->cpu * 1000 - 90);
    snprintf(mem, sizeof mem, "%" PRId64 "Ki", pool->mem_ki);
    snprintf(amem, sizeof amem, "%" PRId64 "Ki", pool->mem_ki - 1470000);
    json_t *cap = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "cpu", cpu, "memory", mem, "pods", "110",
                            "ephemeral-storage", "209612804Ki", "hugepages-1Gi", "0", "hugepages-2Mi", "0");
    json_t *alloc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "cpu", cpu_alloc, "memory", amem, "pods", "110",
                              "ephemeral-storage", "193178760073", "hugepages-1Gi", "0", "hugepages-2Mi", "0");
    if (pool->gpus) {
        json_object_set_new(cap, "nvidia.com/gpu", json_sprintf("%d", pool->gpus));
        json_object_set_new(alloc, "nvidia.com/gpu", json_sprintf("%d", pool->gpus));
    }
    char mid[33], suuid[37], boot[37], x[33];
    hexid(w, mid, 32);
    hexid(w, x, 32);
    snprintf(suuid, sizeof suuid, "%.8s-%.4s-%.4s-%.4s-%.12s", x, x + 8, x + 12, x + 16, x + 20);
    hexid(w, x, 32);
    snprintf(boot, sizeof boot, "%.8s-%.4s-%.4s-%.4s-%.12s", x, x + 8, x + 12, x + 16, x + 20);
    json_t *info = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "machineID", mid, "systemUUID", suuid, "bootID", boot,
        "kernelVersion", arm ? "6.1.112-124.190.amzn2023.aarch64" : "6.1.112-124.190.amzn2023.x86_64", "osImage",
        "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion", "containerd://1.7.22", "kubeletVersion", "v1.30.5",
        "kubeProxyVersion", "v1.30.5", "operatingSystem", "linux", "architecture", n->arch);
    char cidr[32];
    snprintf(cidr, sizeof cidr, "10.%d.%d.0/24", 64 + (number / 256) % 64, number % 256);
    json_t *spec = json_pack("{s:s, s:[s], s:s}", "podCIDR", cidr, "podCIDRs", cidr, "providerID", "");
    json_object_set_new(spec, "providerID", json_sprintf("kubesim://%s/%s", zone, n->name));
    if (!ready)
        json_object_set_new(spec, "taints",
                            json_pack("[o, o]", taint("node.kubernetes.io/not-ready", "NoSchedule", NULL),
                                      taint("node.kubernetes.io/not-ready", "NoExecute", now)));
    json_t *startup = json_object_get(opts, "taints"); /* a node that registers with taints (autoscale.c) */
    if (json_array_size(startup)) {
        if (!json_object_get(spec, "taints"))
            json_object_set_new(spec, "taints", json_array());
        json_array_extend(json_object_get(spec, "taints"), startup);
    }
    json_t *status = json_pack("{s:o, s:o, s:o, s:[{s:s, s:s}, {s:s, s:s}], s:{s:{s:i}}, s:o, s:[]}", "capacity", cap,
                               "allocatable", alloc, "conditions", node_conditions(ready, now), "addresses", "type",
                               "InternalIP", "address", n->ip, "type", "Hostname", "address", n->name,
                               "daemonEndpoints", "kubeletEndpoint", "Port", 10250, "nodeInfo", info, "images");
    return json_pack("{s:s, s:s, s:{s:s, s:o, s:{s:s, s:s}}, s:o, s:o}", "apiVersion", "v1", "kind", "Node", "metadata",
                     "name", n->name, "labels", labels, "annotations", "node.alpha.kubernetes.io/ttl", "0",
                     "volumes.kubernetes.io/controller-managed-attach-detach", "true", "spec", spec, "status", status);
}

/* Creates count nodes (store + world + model). Lock held. names (may be NULL) gets their names. */
static int add_nodes(struct sim_world *w, int count, const json_t *opts, int not_ready, json_t *names)
{
    int total = w->next_node_number + count - 1;
    int width = total > 9999 ? (total > 99999 ? 6 : 5) : 4;
    double bw = json_number_value(json_object_get(opts, "bandwidthMBps")) * 1e6;
    for (int i = 0; i < count; i++) {
        int number = w->next_node_number++;
        struct sim_wnode *n = pw_xcalloc(1, sizeof *n);
        n->name = pw_xasprintf("node-%0*d", width, number);
        n->ready = i < count - not_ready;
        json_t *obj = make_node(w, n, number, opts, n->ready);
        int rc = sim_store_create(w->sim->store, "nodes", "", obj, NULL);
        if (rc != 0) {
            PW_WARN("kubesim world: cannot create node %s: %s", n->name, pw_strerror(rc));
            free(n->name);
            free(n);
            return rc;
        }
        n->midx = sim_model_add_node(w->model, bw);
        if (!n->ready)
            sim_model_node_set_paused(w->model, n->midx, true);
        if (w->nnodes == w->capnodes) {
            w->capnodes = w->capnodes ? w->capnodes * 2 : 64;
            w->nodes = pw_xrealloc(w->nodes, sizeof *w->nodes * (size_t)w->capnodes);
        }
        w->nodes[w->nnodes++] = n;
        sim_map_put(&w->node_by_name, n->name, n);
        if (names)
            json_array_append_new(names, json_string(n->name));
        sim_kubelet_node_added(w, n);
    }
    return 0;
}

int sim_world_add_nodes(struct sim_world *w, int count, const json_t *opts, bool ready, json_t *names)
{
    return add_nodes(w, count, opts, ready ? 0 : count, names);
}

/* ---- status.images: names (digest reference, then tags; 5 at most), sizeBytes, largest first, 50 ---- */

struct img_row {
    uint64_t size;
    json_t *entry;
};

static int cmp_row(const void *a, const void *b)
{
    const struct img_row *x = a, *y = b;
    return (x->size < y->size) - (x->size > y->size);
}

static json_t *node_images(struct sim_world *w, const struct sim_wnode *n)
{
    struct img_row *rows = pw_xcalloc((size_t)n->nheld + 1, sizeof *rows);
    int nrows = 0;
    for (int i = 0; i < n->nheld; i++) {
        const struct sim_image *img = &w->cat->images[n->held[i].image];
        const struct sim_platform *p = sim_image_platform(img, n->arch);
        json_t *names = json_array();
        json_array_append_new(names, json_sprintf("%s@%s", img->repo, img->digest));
        for (int r = 0; r < n->held[i].nrefs && json_array_size(names) < 5; r++) {
            char norm[SIM_REF_MAX];
            if (sim_ref_normalize(n->held[i].refs[r], norm, sizeof norm) != 0 || strchr(norm, '@'))
                continue;
            bool dup = false;
            for (size_t k = 0; k < json_array_size(names); k++)
                dup = dup || strcmp(json_string_value(json_array_get(names, k)), norm) == 0;
            if (!dup)
                json_array_append_new(names, json_string(norm));
        }
        rows[nrows].size = p ? p->size : 0;
        rows[nrows].entry = json_pack("{s:o, s:I}", "names", names, "sizeBytes", (json_int_t)rows[nrows].size);
        nrows++;
    }
    qsort(rows, (size_t)nrows, sizeof *rows, cmp_row);
    json_t *arr = json_array();
    for (int i = 0; i < nrows; i++) {
        if (i < 50)
            json_array_append_new(arr, rows[i].entry);
        else
            json_decref(rows[i].entry);
    }
    free(rows);
    return arr;
}

static int set_images(void *arg, json_t *obj)
{
    json_t *status = json_object_get(obj, "status");
    if (!json_is_object(status)) {
        status = json_object();
        json_object_set_new(obj, "status", status);
    }
    json_object_set(status, "images", arg);
    return 0;
}

/* Writes status.images of nodes whose truth changed, at most once a second per node. */
static void flush_images(struct sim_world *w)
{
    int64_t now = pw_clock_mono_ms();
    for (int i = 0; i < w->ndirty;) {
        struct sim_wnode *n = w->dirty[i];
        if (!n->gone && now - n->images_flushed_ms < 1000) {
            i++;
            continue;
        }
        if (!n->gone) {
            json_t *imgs = node_images(w, n);
            int rc = sim_store_mutate(w->sim->store, "nodes", "", n->name, set_images, imgs, NULL);
            json_decref(imgs);
            if (rc != 0 && rc != PW_ENOTFOUND)
                PW_WARN("kubesim world: status.images of %s: %s", n->name, pw_strerror(rc));
            n->images_flushed_ms = now;
        }
        n->images_dirty = false;
        w->dirty[i] = w->dirty[--w->ndirty];
    }
}

static bool any_dirty(const struct sim_world *w)
{
    return w->ndirty > 0;
}

/* ---------------------------------- node life cycle ---------------------------------- */

struct ready_arg {
    bool ready;
    bool unknown;
};

static bool is_lifecycle_taint(const json_t *t)
{
    const char *k = json_string_value(json_object_get(t, "key"));
    return k && (strcmp(k, "node.kubernetes.io/not-ready") == 0 || strcmp(k, "node.kubernetes.io/unreachable") == 0);
}

/* Ready True, or Unknown as the node lifecycle controller marks a node whose kubelet stopped posting
 * status, with its taints. */
static int set_ready(void *arg, json_t *obj)
{
    const struct ready_arg *a = arg;
    char now[PW_RFC3339_LEN];
    pw_time_rfc3339(time(NULL), now);
    json_t *conds = json_object_get(json_object_get(obj, "status"), "conditions");
    size_t i;
    json_t *c;
    json_array_foreach(conds, i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        if (!type)
            continue;
        const char *status = a->ready ? (strcmp(type, "Ready") == 0 ? "True" : "False") : "Unknown";
        const char *old = json_string_value(json_object_get(c, "status"));
        if (!old || strcmp(old, status) != 0)
            json_object_set_new(c, "lastTransitionTime", json_string(now));
        json_object_set_new(c, "status", json_string(status));
        if (!a->ready) {
            json_object_set_new(c, "reason", json_string("NodeStatusUnknown"));
            json_object_set_new(c, "message", json_string("Kubelet stopped posting node status."));
        } else {
            json_t *fresh = node_conditions(true, now);
            json_t *f;
            size_t j;
            json_array_foreach(fresh, j, f) if (strcmp(json_string_value(json_object_get(f, "type")), type) == 0)
            {
                json_object_set(c, "reason", json_object_get(f, "reason"));
                json_object_set(c, "message", json_object_get(f, "message"));
            }
            json_decref(fresh);
            json_object_set_new(c, "lastHeartbeatTime", json_string(now));
        }
    }
    json_t *spec = json_object_get(obj, "spec");
    json_t *taints = json_object_get(spec, "taints");
    json_t *keep = json_array();
    json_array_foreach(taints, i, c) if (!is_lifecycle_taint(c)) json_array_append(keep, c);
    if (!a->ready) {
        json_array_append_new(keep, taint("node.kubernetes.io/unreachable", "NoSchedule", NULL));
        json_array_append_new(keep, taint("node.kubernetes.io/unreachable", "NoExecute", now));
    }
    if (json_array_size(keep))
        json_object_set_new(spec, "taints", keep);
    else {
        json_decref(keep);
        json_object_del(spec, "taints");
    }
    return 0;
}

struct patch_arg {
    const json_t *body;
};

static int patch_spec(void *arg, json_t *obj)
{
    const struct patch_arg *a = arg;
    json_t *spec = json_object_get(obj, "spec");
    json_t *u = json_object_get(a->body, "unschedulable");
    if (json_is_boolean(u)) {
        if (json_is_true(u))
            json_object_set_new(spec, "unschedulable", json_true());
        else
            json_object_del(spec, "unschedulable");
    }
    json_t *t = json_object_get(a->body, "taints");
    if (json_is_array(t)) {
        json_t *keep = json_array();
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(spec, "taints"), i, c) if (is_lifecycle_taint(c)) json_array_append(keep, c);
        json_array_foreach(t, i, c) json_array_append(keep, c);
        if (json_array_size(keep))
            json_object_set_new(spec, "taints", keep);
        else {
            json_decref(keep);
            json_object_del(spec, "taints");
        }
    }
    return 0;
}

/* The node goes away: its kubelet stops, the object is deleted, the pod GC removes its pods. Lock held. */
static void remove_node(struct sim_world *w, struct sim_wnode *n, bool delete_object)
{
    if (n->gone)
        return;
    n->gone = true;
    n->ready = false;
    sim_model_node_reset(w->model, n->midx);
    sim_model_node_set_paused(w->model, n->midx, true);
    sim_kubelet_node_gone(w, n);
    sim_map_del(&w->node_by_name, n->name);
    if (delete_object)
        sim_store_delete(w->sim->store, "nodes", "", n->name, NULL);
}

/* ---------------------------------- the thread ---------------------------------- */

struct sim_qitem {
    enum sim_event type;
    char *resource;
    json_t *obj, *old;
    struct sim_qitem *next;
};

static bool wanted(const char *resource)
{
    return strcmp(resource, "pods") == 0 || strcmp(resource, "jobs.batch") == 0 || strcmp(resource, "nodes") == 0 ||
           strcmp(resource, "daemonsets.apps") == 0;
}

/* The store's subscriber: runs inside writes, under the store lock; only queues. */
static void on_change(void *arg, const struct sim_change *ch)
{
    struct sim_world *w = arg;
    if (!wanted(ch->resource))
        return;
    struct sim_qitem *q = pw_xcalloc(1, sizeof *q);
    q->type = ch->type;
    q->resource = pw_xstrdup(ch->resource);
    q->obj = json_incref(ch->obj);
    q->old = ch->old ? json_incref(ch->old) : NULL;
    pthread_mutex_lock(&w->qlock);
    if (w->qtail)
        w->qtail->next = q;
    else
        w->qhead = q;
    w->qtail = q;
    pthread_cond_signal(&w->qcond);
    pthread_mutex_unlock(&w->qlock);
}

static void free_qitem(struct sim_qitem *q)
{
    json_decref(q->obj);
    json_decref(q->old);
    free(q->resource);
    free(q);
}

static void on_model(void *arg, const struct sim_model_evt *e)
{
    sim_podstats_on_pull(arg, e); /* first: the kubelet frees what the cookie points to */
    if (e->cookie & 1)
        sim_agents_on_pull(arg, e); /* an agent's pull (agents.c tags its cookies) */
    else
        sim_kubelet_on_pull(arg, e);
}

static void dispatch(struct sim_world *w, struct sim_qitem *q)
{
    const json_t *md = json_object_get(q->obj, "metadata");
    struct sim_change ch = {
        .type = q->type,
        .resource = q->resource,
        .ns = json_string_value(json_object_get(md, "namespace")),
        .name = json_string_value(json_object_get(md, "name")),
        .obj = q->obj,
        .old = q->old,
    };
    if (!ch.name)
        return;
    if (!ch.ns)
        ch.ns = "";
    if (strcmp(q->resource, "pods") == 0) {
        sim_kubelet_on_pod(w, &ch);
        sim_jobctl_on_pod(w, &ch);
        sim_dsctl_on_pod(w, &ch);
        sim_agents_on_pod(w, &ch);
        sim_sched_on_pod(w, &ch);
        sim_workload_on_pod(w, &ch);
        sim_podstats_on_pod(w, &ch);
        return;
    }
    if (strcmp(q->resource, "nodes") == 0)
        sim_sched_on_node(w, &ch);
    if (strcmp(q->resource, "jobs.batch") == 0) {
        sim_jobctl_on_job(w, &ch);
    } else if (strcmp(q->resource, "daemonsets.apps") == 0) {
        sim_dsctl_on_ds(w, &ch);
    } else if (strcmp(q->resource, "nodes") == 0 && q->type == SIM_DELETED) {
        struct sim_wnode *n = sim_world_node(w, ch.name);
        if (n)
            remove_node(w, n, false); /* deleted through the API: the kubelet stops too */
    } else if (strcmp(q->resource, "nodes") == 0 && q->type == SIM_MODIFIED && q->old) {
        /* taints changed (kubectl taint, /sim/v1/nodes): the taint manager looks again */
        json_t *t1 = json_object_get(json_object_get(q->old, "spec"), "taints");
        json_t *t2 = json_object_get(json_object_get(q->obj, "spec"), "taints");
        struct sim_wnode *n = sim_world_node(w, ch.name);
        if (n && !json_equal(t1 ? t1 : json_null(), t2 ? t2 : json_null()))
            sim_kubelet_taints_changed(w, n);
    }
}

static void fire_timers(struct sim_world *w, double now)
{
    while (w->ntimers && w->timers[0].at <= now) {
        struct sim_timer t = heap_pop(w);
        if (t.kind == SIM_T_POD)
            sim_kubelet_timer(w, t.key);
        else if (t.kind == SIM_T_JOB)
            sim_jobctl_timer(w, t.key);
        else if (t.kind == SIM_T_PODGC)
            sim_kubelet_podgc(w, t.key);
        else if (t.kind == SIM_T_DS)
            sim_dsctl_timer(w, t.key);
        else if (t.kind == SIM_T_EVICT)
            sim_kubelet_evict(w, t.key);
        else if (t.kind == SIM_T_SCHED)
            sim_sched_timer(w, t.key);
        else if (t.kind == SIM_T_SCALE)
            sim_autoscale_timer(w, t.key);
        else if (t.kind == SIM_T_WORKLOAD)
            sim_workload_timer(w, t.key);
        free(t.key);
    }
}

static void *world_main(void *arg)
{
    struct sim_world *w = arg;
    for (;;) {
        /* how long may we sleep: until the next timer, model event or images flush */
        pthread_mutex_lock(&w->lock);
        double now = sim_world_now(w);
        double next = sim_model_next(w->model);
        if (w->ntimers && w->timers[0].at < next)
            next = w->timers[0].at;
        double wait_ms = isinf(next) ? 1000 : (next - now) / w->scale * 1000.0;
        if (any_dirty(w) && wait_ms > 250)
            wait_ms = 250;
        pthread_mutex_unlock(&w->lock);
        if (wait_ms < 1)
            wait_ms = 1;
        if (wait_ms > 1000)
            wait_ms = 1000;

        pthread_mutex_lock(&w->qlock);
        if (!w->qhead && !w->stop && !w->kicked) { /* a kick since wait_ms was computed: look again */
            struct timespec ts;
            pw_clock_deadline_ts((int64_t)ceil(wait_ms), &ts);
            pthread_cond_timedwait(&w->qcond, &w->qlock, &ts);
        }
        w->kicked = false;
        struct sim_qitem *batch = w->qhead;
        w->qhead = w->qtail = NULL;
        bool stop = w->stop;
        pthread_mutex_unlock(&w->qlock);
        if (stop) {
            while (batch) {
                struct sim_qitem *n = batch->next;
                free_qitem(batch);
                batch = n;
            }
            break;
        }

        pthread_mutex_lock(&w->lock);
        now = sim_world_now(w);
        sim_model_advance(w->model, now);
        while (batch) {
            struct sim_qitem *n = batch->next;
            dispatch(w, batch);
            free_qitem(batch);
            batch = n;
        }
        fire_timers(w, now);
        flush_images(w);
        pthread_mutex_unlock(&w->lock);
    }
    return NULL;
}

/* ---------------------------------- start and stop ---------------------------------- */

int sim_world_start(struct sim *sim)
{
    char err[512] = "";
    sim_catalog *cat = NULL;
    int rc = sim_catalog_load(sim->opt.catalog, &cat, err, sizeof err);
    if (rc != 0) {
        PW_ERROR("kubesim world: %s", err);
        return rc;
    }
    struct sim_world *w = pw_xcalloc(1, sizeof *w);
    w->sim = sim;
    w->cat = cat;
    w->scale = sim->opt.time_scale > 0 ? sim->opt.time_scale : 1;
    w->rng = mix64(sim->opt.seed + 0x5157ULL);
    w->start_mono_ms = pw_clock_mono_ms();
    w->next_node_number = 1;
    w->layer_size = pw_xcalloc((size_t)cat->nlayers + 1, sizeof *w->layer_size);
    for (int i = 0; i < cat->nlayers; i++)
        w->layer_size[i] = cat->layers[i].size;
    struct sim_model_cfg mc = {
        .registry_Bps = (sim->opt.registry_mbps > 0 ? sim->opt.registry_mbps : 1000) * 1e6,
        .node_Bps = (sim->opt.node_mbps > 0 ? sim->opt.node_mbps : 200) * 1e6,
        .max_parallel = sim->opt.max_parallel_pulls > 0 ? sim->opt.max_parallel_pulls : 1,
        .pull_overhead_s = 0.2,
        .nlayers = cat->nlayers,
        .layer_size = w->layer_size,
    };
    w->model = sim_model_new(&mc, on_model, w);
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->qlock, NULL);
    pthread_cond_init(&w->qcond, NULL);
    sim->world = w;

    int nodes = sim->opt.nodes >= 0 ? sim->opt.nodes : 3;
    int not_ready = sim->opt.not_ready_nodes < 0 ? 0 : sim->opt.not_ready_nodes;
    if (not_ready > nodes)
        not_ready = nodes;
    pthread_mutex_lock(&w->lock);
    rc = add_nodes(w, nodes, NULL, not_ready, NULL);
    pthread_mutex_unlock(&w->lock);
    if (rc != 0) {
        sim_world_stop(sim);
        return rc;
    }
    w->sub_id = sim_store_subscribe(sim->store, on_change, w);
    if (pthread_create(&w->thread, NULL, world_main, w) != 0) {
        sim_store_unsubscribe(sim->store, w->sub_id);
        w->sub_id = -1;
        sim_world_stop(sim);
        return PW_EINTERNAL;
    }
    w->running = true;
    if (sim->opt.agents && sim_agents_start(w) != 0) {
        sim_world_stop(sim);
        return PW_ENOMEM;
    }
    PW_INFO("kubesim world: %d nodes (%d not ready), %d images, %d layers, time scale %g", nodes, not_ready,
            cat->nimages, cat->nlayers, w->scale);
    return 0;
}

void sim_world_stop(struct sim *sim)
{
    struct sim_world *w = sim->world;
    if (!w)
        return;
    sim_agents_stop(w); /* first: their pulls need the world thread */
    if (w->running) {
        sim_store_unsubscribe(sim->store, w->sub_id);
        pthread_mutex_lock(&w->qlock);
        w->stop = true;
        pthread_cond_signal(&w->qcond);
        pthread_mutex_unlock(&w->qlock);
        pthread_join(w->thread, NULL);
    }
    while (w->qhead) {
        struct sim_qitem *n = w->qhead->next;
        free_qitem(w->qhead);
        w->qhead = n;
    }
    sim_kubelet_fini(w);
    sim_jobctl_fini(w);
    sim_dsctl_fini(w);
    sim_sched_fini(w);
    sim_autoscale_fini(w);
    sim_workload_fini(w);
    sim_podstats_fini(w);
    for (size_t i = 0; i < w->ntimers; i++)
        free(w->timers[i].key);
    free(w->timers);
    for (int i = 0; i < w->nnodes; i++) {
        struct sim_wnode *n = w->nodes[i];
        for (int h = 0; h < n->nheld; h++) {
            for (int r = 0; r < n->held[h].nrefs; r++)
                free(n->held[h].refs[r]);
            free(n->held[h].refs);
        }
        free(n->held);
        free(n->name);
        free(n);
    }
    free(w->nodes);
    free(w->dirty);
    sim_map_fini(&w->node_by_name);
    sim_model_free(w->model);
    sim_catalog_free(w->cat);
    free(w->layer_size);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->qlock);
    pthread_cond_destroy(&w->qcond);
    free(w);
    sim->world = NULL;
}

/* ---------------------------------- /sim/v1 ---------------------------------- */

static void reply_error(pw_http_req *req, int status, const char *msg)
{
    pw_http_reply_json(req, status, json_pack("{s:s}", "error", msg));
}

static json_t *parse_body(pw_http_req *req)
{
    size_t len = 0;
    const char *body = pw_http_req_body(req, &len);
    json_t *j = len ? json_loadb(body, len, 0, NULL) : json_object();
    if (!json_is_object(j)) {
        json_decref(j);
        reply_error(req, 400, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* Calls fn for every node not removed, in creation order, under w->lock (fn must not take it). */
static void each_live_node(struct sim_world *w, void (*fn)(struct sim_world *w, const struct sim_wnode *n, void *arg),
                           void *arg)
{
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->nnodes; i++)
        if (!w->nodes[i]->gone)
            fn(w, w->nodes[i], arg);
    pthread_mutex_unlock(&w->lock);
}

/* Adds n's truth (held images, pulls, arch, ready) to the object arg under n's name. */
static void truth_of(struct sim_world *w, const struct sim_wnode *n, void *arg)
{
    json_t *imgs = json_array();
    for (int h = 0; h < n->nheld; h++)
        for (int r = 0; r < n->held[h].nrefs; r++)
            json_array_append_new(imgs, json_string(n->held[h].refs[r]));
    json_object_set_new(arg, n->name,
                        json_pack("{s:o, s:i, s:s, s:b}", "images", imgs, "pulls", sim_model_pulls(w->model, n->midx),
                                  "arch", n->arch, "ready", n->ready));
}

static void h_truth(pw_http_req *req, void *ctx)
{
    struct sim_world *w = ((struct sim *)ctx)->world;
    json_t *nodes = json_object();
    each_live_node(w, truth_of, nodes);
    pw_http_reply_json(req, 200, json_pack("{s:o}", "nodes", nodes));
}

static void h_bound(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    struct sim_world *w = sim->world;
    json_t *body = parse_body(req);
    if (!body)
        return;
    json_t *jn = json_object_get(body, "nodes"), *ji = json_object_get(body, "images");
    if (!json_is_array(jn) || !json_is_array(ji)) {
        json_decref(body);
        reply_error(req, 400, "nodes and images must be arrays");
        return;
    }
    size_t nn = json_array_size(jn), ni = json_array_size(ji);
    const struct sim_image **imgs = pw_xcalloc(ni + 1, sizeof *imgs);
    for (size_t i = 0; i < ni; i++) {
        const char *ref = json_string_value(json_array_get(ji, i));
        imgs[i] = ref ? sim_catalog_find(w->cat, ref) : NULL;
        if (!imgs[i]) {
            char *msg = pw_xasprintf("image %s is not in the catalogue", ref ? ref : "(not a string)");
            reply_error(req, 400, msg);
            free(msg);
            free(imgs);
            json_decref(body);
            return;
        }
    }
    uint64_t *bytes = pw_xcalloc(nn + 1, sizeof *bytes);
    int *pulls = pw_xcalloc(nn + 1, sizeof *pulls);
    double *bw = pw_xcalloc(nn + 1, sizeof *bw);
    const struct sim_platform **plats = pw_xcalloc(ni + 1, sizeof *plats);
    json_t *skipped = json_array();
    char *bad = NULL;
    pthread_mutex_lock(&w->lock);
    for (size_t k = 0; k < nn && !bad; k++) {
        const char *name = json_string_value(json_array_get(jn, k));
        struct sim_wnode *n = name ? sim_world_node(w, name) : NULL;
        if (!n) {
            bad = pw_xasprintf("node %s does not exist", name ? name : "(not a string)");
            break;
        }
        for (size_t i = 0; i < ni; i++) {
            plats[i] = sim_image_platform(imgs[i], n->arch);
            if (!plats[i]) {
                json_array_append_new(skipped, json_pack("{s:s, s:s, s:s}", "node", n->name, "image",
                                                         json_string_value(json_array_get(ji, i)), "reason",
                                                         "no match for platform in manifest"));
                continue;
            }
            if (!sim_world_node_holds(n, imgs[i]))
                pulls[k]++;
        }
        bytes[k] = sim_model_missing_bytes(w->model, n->midx, plats, (int)ni);
        bw[k] = sim_model_node_bw(w->model, n->midx);
    }
    pthread_mutex_unlock(&w->lock);
    if (bad) {
        reply_error(req, 400, bad);
        free(bad);
    } else {
        const struct sim_options *o = &sim->opt;
        double fixed = (o->controller_ms + o->pod_start_ms + o->container_start_ms) / 1000.0;
        double model_s = sim_model_bound((o->registry_mbps > 0 ? o->registry_mbps : 1000) * 1e6, (int)nn, bytes, pulls,
                                         bw, fixed, 0.2, o->max_parallel_pulls);
        uint64_t total = 0;
        for (size_t k = 0; k < nn; k++)
            total += bytes[k];
        pw_http_reply_json(req, 200,
                           json_pack("{s:f, s:f, s:I, s:O}", "seconds", model_s / w->scale, "modelSeconds", model_s,
                                     "bytes", (json_int_t)total, "skipped", skipped));
    }
    json_decref(skipped);
    free(plats);
    free(bytes);
    free(pulls);
    free(bw);
    free(imgs);
    json_decref(body);
}

static void h_nodes_post(pw_http_req *req, void *ctx)
{
    struct sim_world *w = ((struct sim *)ctx)->world;
    json_t *body = parse_body(req);
    if (!body)
        return;
    json_t *jc = json_object_get(body, "count");
    int count = jc ? (int)json_integer_value(jc) : 1;
    const char *arch = json_string_value(json_object_get(body, "arch"));
    json_t *labels = json_object_get(body, "labels");
    if (count < 1 || count > 100000 || (arch && strcmp(arch, "amd64") != 0 && strcmp(arch, "arm64") != 0) ||
        (labels && !json_is_object(labels))) {
        json_decref(body);
        reply_error(req, 400, "count must be 1..100000, arch amd64 or arm64, labels an object");
        return;
    }
    json_t *names = json_array();
    pthread_mutex_lock(&w->lock);
    int rc = add_nodes(w, count, body, json_is_false(json_object_get(body, "ready")) ? count : 0, names);
    pthread_mutex_unlock(&w->lock);
    json_decref(body);
    if (rc != 0) {
        json_decref(names);
        reply_error(req, pw_err_http_status(rc), pw_strerror(rc));
        return;
    }
    pw_http_reply_json(req, 201, json_pack("{s:o}", "nodes", names));
}

struct relabel_arg {
    const char *key;
    char *value;
};

static int set_label(void *arg, json_t *obj)
{
    const struct relabel_arg *a = arg;
    json_t *md = json_object_get(obj, "metadata");
    json_t *labels = json_object_get(md, "labels");
    if (!json_is_object(labels)) {
        labels = json_object();
        json_object_set_new(md, "labels", labels);
    }
    json_object_set_new(labels, a->key, json_string(a->value));
    return 0;
}

/* POST /sim/v1/nodes/relabel {"key": K, "value": V, "perNode": true}: sets label K on every node to
 * V-<node name> (perNode, the default: a value no other node shares) or to V. For churn benchmarks:
 * one request relabels the whole cluster, each node a MODIFIED watch event. */
static void h_nodes_relabel(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    struct sim_world *w = sim->world;
    json_t *body = parse_body(req);
    if (!body)
        return;
    const char *key = json_string_value(json_object_get(body, "key"));
    const char *value = json_string_value(json_object_get(body, "value"));
    json_t *per = json_object_get(body, "perNode");
    char *why = NULL;
    if (!key || !value || (per && !json_is_boolean(per)) || pw_label_key_valid(key, &why) != 0) {
        free(why);
        json_decref(body);
        reply_error(req, 400, "key must be a label key, value a string, perNode a boolean");
        return;
    }
    bool per_node = !per || json_is_true(per);
    size_t changed = 0;
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->nnodes && rc == 0; i++) {
        struct relabel_arg a = {.key = key};
        a.value = per_node ? pw_xasprintf("%s-%s", value, w->nodes[i]->name) : pw_xstrdup(value);
        rc = sim_store_mutate(sim->store, "nodes", "", w->nodes[i]->name, set_label, &a, NULL);
        free(a.value);
        if (rc == PW_ENOTFOUND)
            rc = 0; /* deleted through the API meanwhile */
        else if (rc == 0)
            changed++;
    }
    pthread_mutex_unlock(&w->lock);
    json_decref(body);
    if (rc != 0) {
        reply_error(req, pw_err_http_status(rc), pw_strerror(rc));
        return;
    }
    pw_http_reply_json(req, 200, json_pack("{s:I}", "changed", (json_int_t)changed));
}

int sim_world_set_ready(struct sim_world *w, struct sim_wnode *n, bool ready)
{
    struct ready_arg a = {.ready = ready};
    int rc = sim_store_mutate(w->sim->store, "nodes", "", n->name, set_ready, &a, NULL);
    if (rc == 0 && n->ready != a.ready) {
        n->ready = a.ready;
        sim_model_node_set_paused(w->model, n->midx, !a.ready);
        sim_kubelet_node_ready(w, n, a.ready);
    }
    return rc;
}

static void h_node_patch(pw_http_req *req, void *ctx)
{
    struct sim *sim = ctx;
    struct sim_world *w = sim->world;
    const char *name = pw_http_req_param(req, "name");
    json_t *body = parse_body(req);
    if (!body)
        return;
    json_t *ready = json_object_get(body, "ready"), *bw = json_object_get(body, "bandwidthMBps");
    if ((ready && !json_is_boolean(ready)) || (bw && !json_is_number(bw)) ||
        (json_object_get(body, "taints") && !json_is_array(json_object_get(body, "taints")))) {
        json_decref(body);
        reply_error(req, 400, "ready must be a boolean, bandwidthMBps a number, taints an array");
        return;
    }
    pthread_mutex_lock(&w->lock);
    struct sim_wnode *n = sim_world_node(w, name);
    if (!n) {
        pthread_mutex_unlock(&w->lock);
        json_decref(body);
        reply_error(req, 404, "no such node");
        return;
    }
    int rc = 0;
    if (ready)
        rc = sim_world_set_ready(w, n, json_is_true(ready));
    if (rc == 0 && (json_object_get(body, "unschedulable") || json_object_get(body, "taints"))) {
        struct patch_arg a = {.body = body};
        rc = sim_store_mutate(sim->store, "nodes", "", n->name, patch_spec, &a, NULL);
    }
    if (rc == 0 && bw)
        sim_model_node_set_bw(w->model, n->midx, json_number_value(bw) * 1e6);
    json_t *out = NULL;
    if (rc == 0)
        rc = sim_store_get(sim->store, "nodes", "", n->name, &out);
    pthread_mutex_unlock(&w->lock);
    json_decref(body);
    if (rc != 0) {
        reply_error(req, pw_err_http_status(rc), pw_strerror(rc));
        return;
    }
    pw_http_reply_json(req, 200, out);
}

static void h_node_delete(pw_http_req *req, void *ctx)
{
    struct sim_world *w = ((struct sim *)ctx)->world;
    const char *name = pw_http_req_param(req, "name");
    pthread_mutex_lock(&w->lock);
    struct sim_wnode *n = sim_world_node(w, name);
    if (n)
        remove_node(w, n, true);
    pthread_mutex_unlock(&w->lock);
    if (!n) {
        reply_error(req, 404, "no such node");
        return;
    }
    pw_http_reply_json(req, 200, json_pack("{s:s}", "deleted", name));
}

/* Appends n's summary (name, arch, ready, bandwidth, busy) to the array arg. */
static void summary_of(struct sim_world *w, const struct sim_wnode *n, void *arg)
{
    json_array_append_new(arg, json_pack("{s:s, s:s, s:b, s:f, s:i}", "name", n->name, "arch", n->arch, "ready",
                                         n->ready, "bandwidthMBps", sim_model_node_bw(w->model, n->midx) / 1e6, "busy",
                                         sim_model_busy(w->model, n->midx)));
}

static void h_nodes_get(pw_http_req *req, void *ctx)
{
    struct sim_world *w = ((struct sim *)ctx)->world;
    json_t *arr = json_array();
    each_live_node(w, summary_of, arr);
    pw_http_reply_json(req, 200, json_pack("{s:o}", "nodes", arr));
}

struct pulls_arg {
    struct sim_world *w;
    json_t *arr;
};

static void one_pull(void *arg, const struct sim_model_pull_info *pi)
{
    struct pulls_arg *a = arg;
    const char *ref = "", *pod = "";
    if (!(pi->cookie & 1))
        sim_kubelet_pull_owner(pi->cookie, &ref, &pod);
    else
        ref = "(agent)";
    /* nodes enter the model and w->nodes in the same order and never leave either */
    const char *node = pi->node >= 0 && pi->node < a->w->nnodes ? a->w->nodes[pi->node]->name : "";
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:I}", "node", node, "image", ref, "pod", pod, "phase",
                          pi->phase, "waitedSeconds", (sim_model_now(a->w->model) - pi->queued_at) / a->w->scale,
                          "bytes", (json_int_t)pi->bytes, "bytesLeft", (json_int_t)pi->bytes_left);
    json_array_append_new(a->arr, o);
}

/* GET /sim/v1/pulls: every pull queued or running (debugging). */
static void h_pulls(pw_http_req *req, void *ctx)
{
    struct sim_world *w = ((struct sim *)ctx)->world;
    struct pulls_arg a = {.w = w, .arr = json_array()};
    pthread_mutex_lock(&w->lock);
    sim_model_each_pull(w->model, one_pull, &a);
    pthread_mutex_unlock(&w->lock);
    pw_http_reply_json(req, 200, json_pack("{s:o}", "pulls", a.arr));
}

const struct pw_http_route sim_world_routes[] = {
    {"GET", "/sim/v1/pulls", h_pulls},
    {"GET", "/sim/v1/truth", h_truth},
    {"*", "/sim/v1/workload", sim_workload_route},
    {"POST", "/sim/v1/bound", h_bound},
    {"GET", "/sim/v1/nodes", h_nodes_get},
    {"POST", "/sim/v1/nodes", h_nodes_post},
    {"POST", "/sim/v1/nodes/relabel", h_nodes_relabel},
    {"*", "/sim/v1/nodes/schedule", sim_autoscale_route}, /* before /sim/v1/nodes/{name} */
    {"PATCH", "/sim/v1/nodes/{name}", h_node_patch},
    {"DELETE", "/sim/v1/nodes/{name}", h_node_delete},
    {NULL, NULL, NULL},
};
