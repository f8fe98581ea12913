/* model.c: the physical model of image pulls: a registry whose egress bandwidth is shared max-min
 * fairly among every concurrent layer download, a download cap per node, layers a node already holds
 * (or is already fetching for another pull) not fetched again, and a bounded number of pulls at a time
 * per node (1 = the kubelet's serializeImagePulls). A pull first waits for a slot on its node, then
 * spends a fixed resolve time (manifest round trips), then downloads its missing layers in parallel.
 *
 * Time is the model's own (seconds, a double) and only moves in sim_model_advance(), which is
 * event-driven: it jumps from one completion to the next, recomputing the fair shares whenever the set
 * of downloads changes. Completions closer together than 2% of the step are handled as one batch, so a
 * step costs O(busy nodes) a few times whatever the number of layers in flight. Single-threaded: the
 * world thread owns the model. */
#include "sim/world_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"

enum { PH_QUEUED = 0, PH_RESOLVING = 1, PH_DOWNLOADING = 2 };
enum { L_ABSENT = 0, L_FETCHING = 1, L_HELD = 2 };

struct pull {
    int64_t id;
    int node;
    const struct sim_platform *plat;
    bool ok;
    uint64_t cookie;
    int phase;
    double queued_at, started_at, resolve_end;
    uint64_t bytes;
    struct pull *next;
};

struct flow {
    int layer;
    double rem; /* bytes left */
};

struct mnode {
    double bw;
    bool paused;
    bool busy_listed;
    uint8_t *lstate;
    struct pull *qhead, *qtail; /* waiting for a slot */
    struct pull **active;       /* max_parallel slots */
    int nactive;
    struct flow *flows;
    int nflows, capflows;
    int pulls;
    double rate; /* bytes per second for each of its flows */
};

struct sim_model {
    struct sim_model_cfg cfg;
    sim_model_fn cb;
    void *arg;
    double now;
    struct mnode *nodes;
    int nnodes, capnodes;
    int *busy; /* nodes with pulls queued or active */
    int nbusy, capbusy;
    int64_t next_id;
    bool dirty;
};

sim_model *sim_model_new(const struct sim_model_cfg *cfg, sim_model_fn cb, void *arg)
{
    sim_model *m = pw_xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    if (m->cfg.max_parallel < 1)
        m->cfg.max_parallel = 1;
    m->cb = cb;
    m->arg = arg;
    m->next_id = 1;
    return m;
}

static void free_queue(struct pull *p)
{
    while (p) {
        struct pull *n = p->next;
        free(p);
        p = n;
    }
}

void sim_model_free(sim_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nnodes; i++) {
        struct mnode *n = &m->nodes[i];
        free(n->lstate);
        free_queue(n->qhead);
        for (int a = 0; a < n->nactive; a++)
            free(n->active[a]);
        free(n->active);
        free(n->flows);
    }
    free(m->nodes);
    free(m->busy);
    free(m);
}

int sim_model_add_node(sim_model *m, double bw_Bps)
{
    if (m->nnodes == m->capnodes) {
        m->capnodes = m->capnodes ? m->capnodes * 2 : 64;
        m->nodes = pw_xrealloc(m->nodes, sizeof *m->nodes * (size_t)m->capnodes);
    }
    struct mnode *n = &m->nodes[m->nnodes];
    memset(n, 0, sizeof *n);
    n->bw = bw_Bps > 0 ? bw_Bps : m->cfg.node_Bps;
    n->lstate = pw_xcalloc((size_t)m->cfg.nlayers + 1, 1);
    n->active = pw_xcalloc((size_t)m->cfg.max_parallel, sizeof *n->active);
    return m->nnodes++;
}

void sim_model_node_set_bw(sim_model *m, int node, double bw_Bps)
{
    if (node < 0 || node >= m->nnodes)
        return;
    m->nodes[node].bw = bw_Bps > 0 ? bw_Bps : m->cfg.node_Bps;
    m->dirty = true;
}

double sim_model_node_bw(const sim_model *m, int node)
{
    return node >= 0 && node < m->nnodes ? m->nodes[node].bw : 0;
}

static void mark_busy(sim_model *m, int node)
{
    struct mnode *n = &m->nodes[node];
    if (n->busy_listed)
        return;
    if (m->nbusy == m->capbusy) {
        m->capbusy = m->capbusy ? m->capbusy * 2 : 64;
        m->busy = pw_xrealloc(m->busy, sizeof *m->busy * (size_t)m->capbusy);
    }
    m->busy[m->nbusy++] = node;
    n->busy_listed = true;
}

void sim_model_node_set_paused(sim_model *m, int node, bool paused)
{
    if (node < 0 || node >= m->nnodes)
        return;
    m->nodes[node].paused = paused;
    m->dirty = true;
}

void sim_model_node_reset(sim_model *m, int node)
{
    if (node < 0 || node >= m->nnodes)
        return;
    struct mnode *n = &m->nodes[node];
    free_queue(n->qhead);
    n->qhead = n->qtail = NULL;
    for (int a = 0; a < n->nactive; a++)
        free(n->active[a]);
    n->nactive = 0;
    for (int f = 0; f < n->nflows; f++)
        if (n->lstate[n->flows[f].layer] == L_FETCHING)
            n->lstate[n->flows[f].layer] = L_ABSENT;
    n->nflows = 0;
    m->dirty = true;
}

int64_t sim_model_pull(sim_model *m, int node, const struct sim_platform *plat, bool ok, uint64_t cookie)
{
    if (node < 0 || node >= m->nnodes)
        return PW_EINVAL;
    struct pull *p = pw_xcalloc(1, sizeof *p);
    p->id = m->next_id++;
    p->node = node;
    p->plat = ok ? plat : NULL;
    p->ok = ok && plat;
    p->cookie = cookie;
    p->queued_at = m->now;
    struct mnode *n = &m->nodes[node];
    if (n->qtail)
        n->qtail->next = p;
    else
        n->qhead = p;
    n->qtail = p;
    mark_busy(m, node);
    m->dirty = true;
    return p->id;
}

int sim_model_cancel(sim_model *m, int64_t id)
{
    for (int b = 0; b < m->nbusy; b++) {
        struct mnode *n = &m->nodes[m->busy[b]];
        struct pull *prev = NULL;
        for (struct pull *p = n->qhead; p; prev = p, p = p->next) {
            if (p->id != id)
                continue;
            if (prev)
                prev->next = p->next;
            else
                n->qhead = p->next;
            if (n->qtail == p)
                n->qtail = prev;
            free(p);
            return 0;
        }
    }
    return PW_ENOTFOUND;
}

double sim_model_now(const sim_model *m)
{
    return m->now;
}

bool sim_model_has_layer(const sim_model *m, int node, int layer)
{
    return node >= 0 && node < m->nnodes && layer >= 0 && layer < m->cfg.nlayers &&
           m->nodes[node].lstate[layer] == L_HELD;
}

bool sim_model_has_platform(const sim_model *m, int node, const struct sim_platform *plat)
{
    for (int i = 0; i < plat->nlayers; i++)
        if (!sim_model_has_layer(m, node, plat->layers[i]))
            return false;
    return true;
}

uint64_t sim_model_missing_bytes(const sim_model *m, int node, const struct sim_platform *const *plats, int n)
{
    if (node < 0 || node >= m->nnodes)
        return 0;
    uint8_t *seen = pw_xcalloc((size_t)m->cfg.nlayers + 1, 1);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        if (!plats[i])
            continue;
        for (int l = 0; l < plats[i]->nlayers; l++) {
            int li = plats[i]->layers[l];
            if (seen[li] || m->nodes[node].lstate[li] == L_HELD)
                continue;
            seen[li] = 1;
            sum += m->cfg.layer_size[li];
        }
    }
    free(seen);
    return sum;
}

int sim_model_pulls(const sim_model *m, int node)
{
    return node >= 0 && node < m->nnodes ? m->nodes[node].pulls : 0;
}

int sim_model_busy(const sim_model *m, int node)
{
    if (node < 0 || node >= m->nnodes)
        return 0;
    int k = m->nodes[node].nactive;
    for (struct pull *p = m->nodes[node].qhead; p; p = p->next)
        k++;
    return k;
}

/* ---------------------------------- the dynamics ---------------------------------- */

static void emit(sim_model *m, enum sim_model_evt_type type, const struct pull *p, bool ok)
{
    struct sim_model_evt e = {
        .type = type,
        .pull = p->id,
        .cookie = p->cookie,
        .node = p->node,
        .ok = ok,
        .queued_at = p->queued_at,
        .started_at = p->started_at,
        .now = m->now,
        .bytes = p->bytes,
        .plat = p->plat,
    };
    if (m->cb)
        m->cb(m->arg, &e);
}

static void add_flow(struct mnode *n, int layer, uint64_t size)
{
    if (n->nflows == n->capflows) {
        n->capflows = n->capflows ? n->capflows * 2 : 8;
        n->flows = pw_xrealloc(n->flows, sizeof *n->flows * (size_t)n->capflows);
    }
    n->flows[n->nflows].layer = layer;
    n->flows[n->nflows].rem = (double)size;
    n->nflows++;
}

static bool pull_complete(const struct mnode *n, const struct pull *p)
{
    for (int i = 0; i < p->plat->nlayers; i++)
        if (n->lstate[p->plat->layers[i]] != L_HELD)
            return false;
    return true;
}

/* Ends active pull a of node (events, slot freed). */
static void finish_pull(sim_model *m, int node, int a, bool ok)
{
    struct mnode *n = &m->nodes[node];
    struct pull *p = n->active[a];
    n->active[a] = n->active[--n->nactive];
    if (ok)
        n->pulls++;
    m->dirty = true;
    emit(m, SIM_PULL_DONE, p, ok);
    free(p);
}

/* Resolved: a failing pull ends, a good one starts fetching its missing layers. */
static void begin_download(sim_model *m, int node, struct pull *p)
{
    struct mnode *n = &m->nodes[node];
    p->phase = PH_DOWNLOADING;
    if (!p->ok)
        return;
    for (int i = 0; i < p->plat->nlayers; i++) {
        int li = p->plat->layers[i];
        if (n->lstate[li] != L_ABSENT)
            continue;
        n->lstate[li] = L_FETCHING;
        add_flow(n, li, m->cfg.layer_size[li]);
        p->bytes += m->cfg.layer_size[li];
    }
    m->dirty = true;
}

/* Grants free slots to queued pulls, settles resolved and completed pulls; repeats until stable. */
static void settle_node(sim_model *m, int node, double tol)
{
    struct mnode *n = &m->nodes[node];
    if (n->paused)
        return;
    bool changed = true;
    while (changed) {
        changed = false;
        while (n->nactive < m->cfg.max_parallel && n->qhead) {
            struct pull *p = n->qhead;
            n->qhead = p->next;
            if (!n->qhead)
                n->qtail = NULL;
            p->next = NULL;
            p->phase = PH_RESOLVING;
            p->started_at = m->now;
            p->resolve_end = m->now + m->cfg.pull_overhead_s;
            n->active[n->nactive++] = p;
            emit(m, SIM_PULL_STARTED, p, true);
            changed = true;
        }
        for (int a = 0; a < n->nactive; a++) {
            struct pull *p = n->active[a];
            if (p->phase == PH_RESOLVING && p->resolve_end <= m->now + tol) {
                begin_download(m, node, p);
                changed = true;
            }
            if (p->phase == PH_DOWNLOADING && (!p->ok || pull_complete(n, p))) {
                finish_pull(m, node, a, p->ok);
                changed = true;
                break;
            }
        }
    }
}

static int cmp_cap(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Max-min fair rates: each flow of node i gets min(bw_i / k_i, L) where the level L fills the
 * registry's bandwidth (or every node gets its own cap when the registry is not the bottleneck). */
static void compute_rates(sim_model *m)
{
    double demand = 0;
    int k = 0;
    for (int b = 0; b < m->nbusy; b++) {
        struct mnode *n = &m->nodes[m->busy[b]];
        n->rate = 0;
        if (n->nflows > 0 && !n->paused) {
            demand += n->bw;
            k++;
        }
    }
    m->dirty = false;
    if (k == 0)
        return;
    double reg = m->cfg.registry_Bps;
    if (reg <= 0 || demand <= reg) {
        for (int b = 0; b < m->nbusy; b++) {
            struct mnode *n = &m->nodes[m->busy[b]];
            if (n->nflows > 0 && !n->paused)
                n->rate = n->bw / n->nflows;
        }
        return;
    }
    double *caps = pw_xmalloc(sizeof *caps * 2 * (size_t)k);
    int j = 0;
    long flows = 0;
    for (int b = 0; b < m->nbusy; b++) {
        struct mnode *n = &m->nodes[m->busy[b]];
        if (n->nflows > 0 && !n->paused) {
            caps[2 * j] = n->bw / n->nflows;
            caps[2 * j + 1] = m->busy[b];
            j++;
            flows += n->nflows;
        }
    }
    qsort(caps, (size_t)k, sizeof *caps * 2, cmp_cap);
    double left = reg;
    for (int i = 0; i < k; i++) {
        struct mnode *n = &m->nodes[(int)caps[2 * i + 1]];
        double level = left / (double)flows;
        double r = caps[2 * i] <= level ? caps[2 * i] : level;
        n->rate = r;
        left -= r * n->nflows;
        flows -= n->nflows;
        if (left < 0)
            left = 0;
    }
    free(caps);
}

static double node_next(const sim_model *m, const struct mnode *n)
{
    double t = INFINITY;
    if (n->paused)
        return t;
    for (int a = 0; a < n->nactive; a++)
        if (n->active[a]->phase == PH_RESOLVING && n->active[a]->resolve_end < t)
            t = n->active[a]->resolve_end;
    if (n->rate > 0)
        for (int f = 0; f < n->nflows; f++) {
            double e = m->now + n->flows[f].rem / n->rate;
            if (e < t)
                t = e;
        }
    return t;
}

double sim_model_next(const sim_model *m)
{
    double t = INFINITY;
    for (int b = 0; b < m->nbusy; b++) {
        const struct mnode *n = &m->nodes[m->busy[b]];
        if (!n->paused && n->qhead && n->nactive < m->cfg.max_parallel)
            return m->now;
        double e = node_next(m, n);
        if (e < t)
            t = e;
    }
    return t;
}

/* Moves every flow forward by dt seconds at its rate; finishes flows within tol seconds of the end. */
static void progress(sim_model *m, double dt, double tol)
{
    for (int b = 0; b < m->nbusy; b++) {
        struct mnode *n = &m->nodes[m->busy[b]];
        if (n->paused || n->rate <= 0)
            continue;
        for (int f = 0; f < n->nflows;) {
            n->flows[f].rem -= n->rate * dt;
            if (n->flows[f].rem <= n->rate * tol + 1e-6) {
                n->lstate[n->flows[f].layer] = L_HELD;
                n->flows[f] = n->flows[--n->nflows];
                m->dirty = true;
                continue;
            }
            f++;
        }
    }
}

static void drop_idle(sim_model *m)
{
    for (int b = 0; b < m->nbusy;) {
        struct mnode *n = &m->nodes[m->busy[b]];
        if (!n->qhead && n->nactive == 0 && n->nflows == 0) {
            n->busy_listed = false;
            m->busy[b] = m->busy[--m->nbusy];
            continue;
        }
        b++;
    }
}

void sim_model_advance(sim_model *m, double target)
{
    if (target < m->now)
        target = m->now;
    double tol = (target - m->now) * 0.02;
    for (int guard = 0; guard < 100000; guard++) {
        for (int b = 0; b < m->nbusy; b++)
            settle_node(m, m->busy[b], 0);
        if (m->dirty)
            compute_rates(m);
        double t = sim_model_next(m);
        if (t > target) {
            progress(m, target - m->now, 0);
            m->now = target;
            if (m->dirty) {
                for (int b = 0; b < m->nbusy; b++)
                    settle_node(m, m->busy[b], 0);
            }
            break;
        }
        if (t < m->now)
            t = m->now;
        progress(m, t - m->now, tol);
        m->now = t;
        for (int b = 0; b < m->nbusy; b++)
            settle_node(m, m->busy[b], tol);
    }
    drop_idle(m);
    if (m->dirty)
        compute_rates(m);
}

double sim_model_bound(double registry_Bps, int n, const uint64_t *bytes, const int *pulls, const double *bw,
                       double fixed_s, double overhead_s, int max_parallel)
{
    if (max_parallel < 1)
        max_parallel = 1;
    double total = 0, worst = 0;
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (pulls[i] <= 0 && bytes[i] == 0)
            continue;
        any = true;
        total += (double)bytes[i];
        int rounds = (pulls[i] + max_parallel - 1) / max_parallel;
        double t = fixed_s + rounds * overhead_s + (bw[i] > 0 ? (double)bytes[i] / bw[i] : 0);
        if (t > worst)
            worst = t;
    }
    if (!any)
        return 0;
    double reg = registry_Bps > 0 ? fixed_s + overhead_s + total / registry_Bps : 0;
    return reg > worst ? reg : worst;
}

void sim_model_each_pull(const sim_model *m, void (*fn)(void *arg, const struct sim_model_pull_info *pi), void *arg)
{
    static const char *PHASES[] = {"queued", "resolving", "downloading"};
    for (int b = 0; b < m->nbusy; b++) {
        const struct mnode *n = &m->nodes[m->busy[b]];
        for (int pass = 0; pass < 2; pass++) {
            const struct pull *p = pass == 0 ? NULL : n->qhead;
            int a = 0;
            for (;;) {
                if (pass == 0) {
                    if (a >= n->nactive)
                        break;
                    p = n->active[a++];
                } else if (!p) {
                    break;
                }
                struct sim_model_pull_info pi = {.id = p->id,
                                                 .cookie = p->cookie,
                                                 .node = p->node,
                                                 .phase = PHASES[p->phase],
                                                 .queued_at = p->queued_at,
                                                 .started_at = p->started_at,
                                                 .bytes = p->bytes};
                if (p->phase == PH_DOWNLOADING && p->plat)
                    for (int l = 0; l < p->plat->nlayers; l++)
                        for (int f = 0; f < n->nflows; f++)
                            if (n->flows[f].layer == p->plat->layers[l])
                                pi.bytes_left += (uint64_t)n->flows[f].rem;
                fn(arg, &pi);
                if (pass == 1)
                    p = p->next;
            }
        }
    }
}
