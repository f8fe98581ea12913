/* agents.c: kubesim's simulated prewarm-agents (--agents). For every Running pod of the agent
 * DaemonSet (--agents-daemonset, default prewarm-agent) kubesim runs, in process, the real agent code
 * of src/agent (the puller and the syncer: the protocol, retries, inventory, cancellation) over a CRI
 * backed by the world's model instead of a runtime's socket: a pull is a pull of the same model the
 * kubelets pull through (registry egress, node bandwidth, shared layers, parallel pulls per node), an
 * image the node holds is one the model says it holds, and a pulled image shows in the node's
 * status.images as the kubelet would report it. The agent syncs with the prewarmd its pod's
 * PREWARM_SERVER names (as the cluster its PREWARM_CLUSTER names, if set), with a token kubesim
 * issues for the pod's ServiceAccount, bound to the pod
 * (audience prewarm), as the kubelet projects it.
 *
 * Threads: one syncer thread per agent and its pull threads (small stacks: thousands run at once),
 * and a manager thread that starts and stops agents (joining a thread never happens on the world
 * thread). The world thread only queues starts and stops (sim_agents_on_pod) and completes model pulls
 * (sim_agents_on_pull, world lock held). CRI calls take the world lock briefly. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

#include "agent/cri.h"
#include "agent/puller.h"
#include "agent/syncer.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/version.h"
#include "sim/tokens.h"
#include "sim/world_int.h"

#define AGENT_STACK (256u << 10)
#define AGENT_AUDIENCE "prewarm"

struct sagent {
    struct sim_world *w;
    char *key;  /* the pod, "ns/name" */
    char *node; /* its node */
    char *server;
    int max_parallel;
    pw_cri *cri;
    pw_puller *puller;
    pw_syncer *syncer;
    pthread_t thread;
    volatile sig_atomic_t stop;
    bool running;
};

/* A pull in the model that an agent's CRI call waits for (the cookie's low bit tells it apart from
 * the kubelets' pulls). */
struct spull {
    pthread_cond_t cond;
    bool done, ok;
};

enum op { OP_START, OP_STOP };
struct aop {
    enum op op;
    char *key;
    json_t *pod; /* OP_START */
    struct aop *next;
};

struct astate {
    struct sim_map agents; /* pod key -> struct sagent *, manager thread only */
    pthread_mutex_t mu;    /* the queue */
    pthread_cond_t cond;
    struct aop *head, *tail;
    bool stopping;
    pthread_t thread;
    bool running;
    struct sim_map wanted; /* pod key -> (void *)1 while the pod is Running; world thread only */
    uint64_t started, stopped;
};

/* ---- the model-backed CRI (any agent thread; world lock taken here) ---- */

static void status(struct pw_cri_status *st, int grpc, const char *msg)
{
    if (!st)
        return;
    st->grpc = grpc;
    size_t n = strlen(msg);
    if (n >= sizeof st->message)
        n = sizeof st->message - 1; /* truncated, as the CRI client truncates a runtime's message */
    memcpy(st->message, msg, n);
    st->message[n] = 0;
}

static void bad_ref(struct pw_cri_status *st, const char *image)
{
    char m[1024];
    snprintf(m, sizeof m, "failed to parse image reference \"%s\"", image);
    status(st, PW_CRI_GRPC_INVALID_ARGUMENT, m);
}

static int be_version(void *arg, char **name, char **version, struct pw_cri_status *st)
{
    (void)arg;
    (void)st;
    *name = pw_xstrdup("kubesim");
    *version = pw_xstrdup("model");
    return 0;
}

static struct pw_cri_image *image_of(const struct sim_image *img, const char *ref)
{
    struct pw_cri_image *out = pw_xcalloc(1, sizeof *out);
    out->id = pw_xstrdup(img->plats && img->nplats ? img->plats[0].digest : img->digest);
    out->tags = pw_xcalloc((size_t)img->nnames + 2, sizeof *out->tags);
    for (int i = 0; i < img->nnames; i++)
        out->tags[out->n_tags++] = pw_xstrdup(img->names[i]);
    if (ref)
        out->tags[out->n_tags++] = pw_xstrdup(ref);
    out->digests = pw_xcalloc(1, sizeof *out->digests);
    out->digests[0] = pw_xasprintf("%s@%s", img->repo, img->digest);
    out->n_digests = 1;
    out->size = img->plats && img->nplats ? img->plats[0].size : 0;
    return out;
}

static int be_image_status(void *arg, const char *image, struct pw_cri_image **out, struct pw_cri_status *st)
{
    struct sagent *a = arg;
    struct sim_world *w = a->w;
    char norm[SIM_REF_MAX];
    if (sim_ref_normalize(image, norm, sizeof norm) != 0) {
        bad_ref(st, image);
        return PW_EIO;
    }
    pthread_mutex_lock(&w->lock);
    const struct sim_image *img = sim_catalog_find(w->cat, image);
    struct sim_wnode *n = sim_world_node(w, a->node);
    *out = img && n && sim_world_node_holds(n, img) ? image_of(img, NULL) : NULL;
    pthread_mutex_unlock(&w->lock);
    return 0;
}

/* The registry's answer to anonymous or wrong credentials, as containerd words it. */
static bool auth_ok(const struct sim_image *img, const struct pw_cri_auth *auth)
{
    if (!img->auth_registry)
        return true;
    return auth && auth->username && auth->password && strcmp(auth->username, img->auth_user) == 0 &&
           strcmp(auth->password, img->auth_pass) == 0;
}

static int be_pull(void *arg, const char *image, const struct pw_cri_auth *auth, int timeout_ms, const int *stop,
                   char **image_ref, struct pw_cri_status *st)
{
    struct sagent *a = arg;
    struct sim_world *w = a->w;
    char norm[SIM_REF_MAX];
    if (sim_ref_normalize(image, norm, sizeof norm) != 0) {
        bad_ref(st, image);
        return PW_EIO;
    }
    pthread_mutex_lock(&w->lock);
    const struct sim_image *img = sim_catalog_find(w->cat, image);
    struct sim_wnode *n = sim_world_node(w, a->node);
    if (!n || n->gone) {
        pthread_mutex_unlock(&w->lock);
        status(st, -1, "the node is gone");
        return PW_EUNAVAIL;
    }
    if (!img) {
        pthread_mutex_unlock(&w->lock);
        char m[2048];
        snprintf(m, sizeof m, "failed to pull and unpack image \"%s\": failed to resolve reference \"%s\": %s: not found",
                 norm, norm, norm);
        status(st, 2, m);
        return PW_EIO;
    }
    if (!auth_ok(img, auth)) {
        pthread_mutex_unlock(&w->lock);
        char m[2048], host[256];
        sim_ref_registry(norm, host, sizeof host);
        snprintf(m, sizeof m,
                 "failed to pull and unpack image \"%s\": failed to resolve reference \"%s\": pulling from host %s "
                 "failed with status code [manifests]: 401 Unauthorized",
                 norm, norm, host);
        status(st, 2, m);
        return PW_EIO;
    }
    const struct sim_platform *plat = sim_image_platform(img, n->arch);
    if (!plat) {
        pthread_mutex_unlock(&w->lock);
        char m[2048];
        snprintf(m, sizeof m, "failed to pull and unpack image \"%s\": no match for platform in manifest: not found", norm);
        status(st, 2, m);
        return PW_EIO;
    }
    struct spull sp = {.done = false};
    pthread_cond_init(&sp.cond, NULL);
    sim_world_catch_up(w); /* queued now, not at the world thread's last step (that would be free time) */
    int64_t id = sim_model_pull(w->model, n->midx, plat, true, (uint64_t)(uintptr_t)&sp | 1u);
    sim_world_kick(w); /* the world thread sleeps until its next event: it must look at the model again */
    int64_t deadline = pw_clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 600000);
    int rc = 0;
    while (!sp.done) {
        if (stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
            rc = PW_ECANCELED;
            break;
        }
        if (pw_clock_mono_ms() >= deadline) {
            rc = PW_ETIMEDOUT;
            break;
        }
        struct timespec ts; /* the model's event wakes us; this only bounds how late a stop is seen */
        pw_clock_deadline_ts(500, &ts);
        pthread_cond_timedwait(&sp.cond, &w->lock, &ts);
    }
    if (!sp.done)
        sim_model_cancel(w->model, id); /* no event follows a cancel */
    else if (sp.ok && !n->gone)
        sim_world_node_hold(w, n, img, image); /* the runtime holds it: the kubelet reports it */
    pthread_mutex_unlock(&w->lock);
    pthread_cond_destroy(&sp.cond);
    if (rc == PW_ECANCELED) {
        status(st, -1, "cancelled");
        return rc;
    }
    if (rc == PW_ETIMEDOUT) {
        status(st, PW_CRI_GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
        return rc;
    }
    if (image_ref)
        *image_ref = pw_xstrdup(plat->digest);
    return 0;
}

static int be_list(void *arg, struct pw_cri_image **out, size_t *n_out, struct pw_cri_status *st)
{
    (void)st;
    struct sagent *a = arg;
    struct sim_world *w = a->w;
    pthread_mutex_lock(&w->lock);
    struct sim_wnode *n = sim_world_node(w, a->node);
    size_t n_held = n ? (size_t)n->nheld : 0;
    struct pw_cri_image *v = pw_xcalloc(n_held ? n_held : 1, sizeof *v);
    for (size_t i = 0; i < n_held; i++) {
        const struct sim_held *h = &n->held[i];
        struct pw_cri_image *one = image_of(&w->cat->images[h->image], NULL);
        for (int r = 0; r < h->nrefs; r++) { /* the spellings pods asked for, as the runtime records them */
            one->tags = pw_xrealloc(one->tags, (one->n_tags + 1) * sizeof *one->tags);
            one->tags[one->n_tags++] = pw_xstrdup(h->refs[r]);
        }
        v[i] = *one;
        free(one);
    }
    pthread_mutex_unlock(&w->lock);
    *out = v;
    *n_out = n_held;
    return 0;
}

static int be_remove(void *arg, const char *image, struct pw_cri_status *st)
{
    (void)arg;
    (void)image;
    (void)st;
    return 0; /* the model keeps what a node pulled */
}

static int be_fs_info(void *arg, struct pw_cri_fs *out, struct pw_cri_status *st)
{
    (void)st;
    struct sagent *a = arg;
    struct sim_world *w = a->w;
    memset(out, 0, sizeof *out);
    snprintf(out->mountpoint, sizeof out->mountpoint, "kubesim:%s:/var/lib/containerd", a->node);
    pthread_mutex_lock(&w->lock);
    struct sim_wnode *n = sim_world_node(w, a->node);
    for (int i = 0; n && i < n->nheld; i++) {
        const struct sim_image *img = &w->cat->images[n->held[i].image];
        out->used_bytes += img->nplats ? img->plats[0].size : 0;
    }
    pthread_mutex_unlock(&w->lock);
    return 0;
}

static const struct pw_cri_backend model_cri = {
    .name = "kubesim model",
    .version = be_version,
    .image_status = be_image_status,
    .pull = be_pull,
    .list = be_list,
    .remove = be_remove,
    .fs_info = be_fs_info,
};

void sim_agents_on_pull(struct sim_world *w, const struct sim_model_evt *e)
{
    (void)w;
    if (e->type != SIM_PULL_DONE)
        return;
    struct spull *sp = (struct spull *)(uintptr_t)(e->cookie & ~(uint64_t)1);
    sp->done = true;
    sp->ok = e->ok;
    pthread_cond_broadcast(&sp->cond); /* its waiter holds the world lock's turn after ours */
}

/* ---- starting and stopping agents (the manager thread) ---- */

static const char *env_of(const json_t *pod, const char *name)
{
    size_t i, k;
    const json_t *c, *e;
    json_array_foreach(json_object_get(json_object_get(pod, "spec"), "containers"), i, c) {
        json_array_foreach(json_object_get(c, "env"), k, e) {
            const char *n = json_string_value(json_object_get(e, "name"));
            if (n && strcmp(n, name) == 0)
                return json_string_value(json_object_get(e, "value"));
        }
    }
    return NULL;
}

static void poke(void *arg)
{
    pw_syncer_poke(arg);
}

static void *agent_main(void *arg)
{
    struct sagent *a = arg;
    pw_syncer_run(a->syncer, &a->stop);
    return NULL;
}

/* A bound token for pod, as the kubelet's projected volume would hold (audience prewarm). */
static int mint_token(struct sim_world *w, const json_t *pod, char out[SIM_TOKEN_SIZE])
{
    const json_t *md = json_object_get(pod, "metadata");
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    const char *pname = json_string_value(json_object_get(md, "name"));
    const char *puid = json_string_value(json_object_get(md, "uid"));
    const char *sa = json_string_value(json_object_get(json_object_get(pod, "spec"), "serviceAccountName"));
    const char *node = json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName"));
    json_t *sao = NULL, *nodeo = NULL;
    if (!ns || !pname || !sa || sim_store_get(w->sim->store, "serviceaccounts", ns, sa, &sao) != 0)
        return PW_ENOTFOUND;
    if (node)
        sim_store_get(w->sim->store, "nodes", "", node, &nodeo);
    static const char *const aud[] = {AGENT_AUDIENCE};
    char jti[37];
    sim_api_uid(jti);
    int64_t now = (int64_t)time(NULL);
    struct sim_token_claims c = {
        .ns = ns,
        .sa = sa,
        .sa_uid = json_string_value(json_object_get(json_object_get(sao, "metadata"), "uid")),
        .audiences = aud,
        .naud = 1,
        .iat = now,
        .exp = now + 86400,
        .jti = jti,
        .bound = SIM_TOKEN_POD,
        .bound_name = pname,
        .bound_uid = puid,
        .node_name = node,
        .node_uid = nodeo ? json_string_value(json_object_get(json_object_get(nodeo, "metadata"), "uid")) : NULL,
    };
    int rc = sim_tokens_issue(sim_api_tokens(w->sim), &c, now, out);
    json_decref(sao);
    json_decref(nodeo);
    return rc;
}

static void agent_stop(struct sagent *a)
{
    if (a->running) {
        a->stop = 1;
        pw_syncer_wake(a->syncer);
        pthread_join(a->thread, NULL);
    }
    pw_puller_free(a->puller);
    pw_syncer_free(a->syncer);
    pw_cri_free(a->cri);
    free(a->key);
    free(a->node);
    free(a->server);
    free(a);
}

static struct sagent *agent_start(struct sim_world *w, const char *key, const json_t *pod)
{
    const char *node = json_string_value(json_object_get(json_object_get(pod, "spec"), "nodeName"));
    const char *server = env_of(pod, "PREWARM_SERVER");
    if (!node || !server) {
        PW_WARN("kubesim agents: pod %s has no node or no PREWARM_SERVER: no agent", key);
        return NULL;
    }
    char token[SIM_TOKEN_SIZE];
    if (mint_token(w, pod, token) != 0) {
        PW_WARN("kubesim agents: no token for pod %s (its ServiceAccount is missing)", key);
        return NULL;
    }
    struct sagent *a = pw_xcalloc(1, sizeof *a);
    a->w = w;
    a->key = pw_xstrdup(key);
    a->node = pw_xstrdup(node);
    a->server = pw_xstrdup(server);
    const char *par = env_of(pod, "PREWARM_MAX_PARALLEL_PULLS");
    a->max_parallel = par && atoi(par) > 0 ? atoi(par) : 2;
    pw_cri_new_backend(&model_cri, a, &a->cri);
    /* PREWARM_SERVER_CA as prewarm-agent reads it: the CA file of an https:// PREWARM_SERVER */
    struct pw_syncer_config sc = {.server = server, .node = node, .cluster = env_of(pod, "PREWARM_CLUSTER"),
                                  .token = token, .version = PW_VERSION "-kubesim",
                                  .server_ca = env_of(pod, "PREWARM_SERVER_CA"), .cri = a->cri};
    if (pw_syncer_new(&sc, &a->syncer) != 0) {
        PW_WARN("kubesim agents: pod %s: bad PREWARM_SERVER %s", key, server);
        agent_stop(a);
        return NULL;
    }
    struct pw_puller_config pc = {.cri = a->cri, .max_parallel = a->max_parallel, .changed = poke, .arg = a->syncer,
                                  .thread_stack = AGENT_STACK};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, AGENT_STACK);
    if (pw_puller_new(&pc, &a->puller) != 0 || pthread_create(&a->thread, &attr, agent_main, a) != 0) {
        pthread_attr_destroy(&attr);
        PW_WARN("kubesim agents: cannot start the agent of pod %s (threads)", key);
        agent_stop(a);
        return NULL;
    }
    pthread_attr_destroy(&attr);
    pw_syncer_set_puller(a->syncer, a->puller);
    a->running = true;
    return a;
}

static void *manager_main(void *arg)
{
    struct sim_world *w = arg;
    struct astate *s = w->agents;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cond, &s->mu);
        if (!s->head && s->stopping)
            break;
        struct aop *ops = s->head; /* every op queued: the stops signalled together, then joined */
        s->head = s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        for (struct aop *op = ops; op; op = op->next) {
            struct sagent *a = sim_map_get(&s->agents, op->key);
            if (op->op == OP_STOP && a) { /* all stopped first: joining one by one would add their ends up */
                a->stop = 1;
                pw_syncer_wake(a->syncer);
            }
        }
        while (ops) {
            struct aop *op = ops;
            ops = op->next;
            struct sagent *a = sim_map_get(&s->agents, op->key);
            if (op->op == OP_START && !a) {
                a = agent_start(w, op->key, op->pod);
                if (a) {
                    sim_map_put(&s->agents, op->key, a);
                    __atomic_add_fetch(&s->started, 1, __ATOMIC_RELAXED);
                }
            } else if (op->op == OP_STOP && a) {
                sim_map_del(&s->agents, op->key);
                agent_stop(a);
                __atomic_add_fetch(&s->stopped, 1, __ATOMIC_RELAXED);
            }
            free(op->key);
            json_decref(op->pod);
            free(op);
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void queue(struct astate *s, enum op kind, const char *key, const json_t *pod)
{
    struct aop *op = pw_xcalloc(1, sizeof *op);
    op->op = kind;
    op->key = pw_xstrdup(key);
    op->pod = pod ? json_incref((json_t *)pod) : NULL;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* Whether pod belongs to the agent DaemonSet. */
static bool is_agent_pod(const struct sim_world *w, const json_t *pod)
{
    const char *ds = w->sim->opt.agents_daemonset ? w->sim->opt.agents_daemonset : "prewarm-agent";
    size_t i;
    const json_t *ref;
    json_array_foreach(json_object_get(json_object_get(pod, "metadata"), "ownerReferences"), i, ref) {
        const char *kind = json_string_value(json_object_get(ref, "kind"));
        const char *name = json_string_value(json_object_get(ref, "name"));
        if (kind && name && strcmp(kind, "DaemonSet") == 0 && strcmp(name, ds) == 0)
            return true;
    }
    return false;
}

void sim_agents_on_pod(struct sim_world *w, const struct sim_change *ch)
{
    struct astate *s = w->agents;
    if (!s || !is_agent_pod(w, ch->obj))
        return;
    char key[600];
    snprintf(key, sizeof key, "%s/%s", ch->ns, ch->name);
    const char *phase = json_string_value(json_object_get(json_object_get(ch->obj, "status"), "phase"));
    bool running = ch->type != SIM_DELETED && phase && strcmp(phase, "Running") == 0 &&
                   !json_object_get(json_object_get(ch->obj, "metadata"), "deletionTimestamp");
    bool had = sim_map_get(&s->wanted, key) != NULL;
    if (running && !had) {
        sim_map_put(&s->wanted, key, (void *)1);
        queue(s, OP_START, key, ch->obj);
    } else if (!running && had) {
        sim_map_del(&s->wanted, key);
        queue(s, OP_STOP, key, NULL);
    }
}

/* Linux (6.16 on) gives a process its own futex hash, sized by min(threads, online CPUs): 16 buckets on
 * our 2 cores, whatever the thread count. With thousands of agent threads parked in futex waits every
 * bucket holds hundreds of them, and each wake (a mutex unlock with waiters, a condition broadcast)
 * walks its bucket under a spin lock: perf showed futex_wake at 30% of kubesim's CPU with 5,000
 * agents. Ask for a hash sized for the threads instead. Older kernels have one global hash and no
 * such prctl (EINVAL): nothing to do there. */
#ifndef PR_FUTEX_HASH
#define PR_FUTEX_HASH 78
#define PR_FUTEX_HASH_SET_SLOTS 1
#endif
#define AGENT_FUTEX_SLOTS 65536u /* a power of two; 64 bytes a slot */

static void size_futex_hash(void)
{
    if (prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, AGENT_FUTEX_SLOTS, 0, 0) != 0 && errno != EINVAL)
        PW_WARN("kubesim agents: cannot size the futex hash (%s): wakes get slower with thousands of agents",
                strerror(errno));
}

int sim_agents_start(struct sim_world *w)
{
    size_futex_hash();
    /* one connection to prewarmd per agent: thousands of sockets */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct astate *s = pw_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    w->agents = s;
    if (pthread_create(&s->thread, NULL, manager_main, w) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        free(s);
        w->agents = NULL;
        return PW_ENOMEM;
    }
    s->running = true;
    return 0;
}

static void stop_one(void *arg, const char *key, void *val)
{
    (void)arg;
    (void)key;
    agent_stop(val);
}

void sim_agents_stop(struct sim_world *w)
{
    struct astate *s = w->agents;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    if (s->running)
        pthread_join(s->thread, NULL);
    while (s->head) { /* what the manager did not get to */
        struct aop *op = s->head;
        s->head = op->next;
        free(op->key);
        json_decref(op->pod);
        free(op);
    }
    sim_map_each(&s->agents, stop_one, NULL);
    sim_map_fini(&s->agents);
    sim_map_fini(&s->wanted);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s);
    w->agents = NULL;
}

void sim_agents_counts(struct sim_world *w, uint64_t *running, uint64_t *started)
{
    struct astate *s = w->agents;
    uint64_t st = s ? __atomic_load_n(&s->started, __ATOMIC_RELAXED) : 0;
    uint64_t sp = s ? __atomic_load_n(&s->stopped, __ATOMIC_RELAXED) : 0;
    *running = st - sp;
    *started = st;
}
