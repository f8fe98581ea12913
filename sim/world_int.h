/* world_int.h: private to kubesim's world (world.c, catalog.c, model.c, kubelet.c, jobctl.c): the
 * image catalogue, the physical model of pulls, and the world's shared state.
 *
 * Thread model: the catalogue is immutable once loaded and may be read from any thread. The model and
 * the world state belong to the world thread; HTTP handlers take world->lock to read or change them. */
#ifndef SIM_WORLD_INT_H
#define SIM_WORLD_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sim/sim.h"

/* ================================ the catalogue (catalog.c) ================================ */

#define SIM_DIGEST_MAX 80 /* "sha256:" + 64 hex + NUL, with room */
#define SIM_REF_MAX 512

struct sim_layer {
    char digest[SIM_DIGEST_MAX];
    uint64_t size;
};

struct sim_platform {
    char os[16];
    char arch[16];
    char digest[SIM_DIGEST_MAX]; /* the platform manifest's digest */
    int *layers;                 /* indexes into the catalogue's layer table, in order */
    int nlayers;
    uint64_t size; /* sum of its layers */
};

struct sim_image {
    int index;          /* position in the catalogue */
    char **names;       /* normalised references with tags ("docker.io/library/nginx:1.27") */
    char **short_names; /* the names as written in the catalogue ("nginx:1.27") */
    int nnames;
    char *repo;                  /* the repository of names[0] ("docker.io/library/nginx") */
    char digest[SIM_DIGEST_MAX]; /* the manifest list (index) digest */
    struct sim_platform *plats;
    int nplats;
    char **exes; /* absolute paths present in the image */
    int nexes;
    char *auth_registry, *auth_user, *auth_pass; /* all NULL when the image is public */
};

typedef struct sim_catalog {
    struct sim_image *images;
    int nimages;
    struct sim_layer *layers; /* every distinct layer, shared by digest */
    int nlayers;
} sim_catalog;

extern const char sim_catalog_default_json[];

/* Parses a catalogue document (format in docs/kubesim.md). On success *out (caller frees with
 * sim_catalog_free) and 0; on failure PW_EINVAL and a reason in err (err_size > 0). */
int sim_catalog_parse(const char *json, sim_catalog **out, char *err, size_t err_size);
/* Loads path, or the built-in catalogue when path is NULL. Same contract as sim_catalog_parse. */
int sim_catalog_load(const char *path, sim_catalog **out, char *err, size_t err_size);
void sim_catalog_free(sim_catalog *cat);

/* Normalises an image reference as containerd does: "nginx:1.27" -> "docker.io/library/nginx:1.27",
 * no tag -> ":latest", "name@sha256:..." keeps the digest (a tag beside a digest is dropped). PW_EINVAL
 * for a reference that is not valid (upper case, bad characters, empty parts); out written on success. */
int sim_ref_normalize(const char *ref, char *out, size_t out_size);
/* The repository part of a normalised reference ("docker.io/library/nginx"), into out. */
void sim_ref_repo(const char *normalized, char *out, size_t out_size);
/* The registry host of a normalised reference ("docker.io"), into out. */
void sim_ref_registry(const char *normalized, char *out, size_t out_size);
/* True when the reference names a tag "latest" or no tag and no digest (default policy Always). */
bool sim_ref_is_latest(const char *ref);

/* The image a reference names (any spelling; by tag, by index digest or by platform digest), or NULL
 * when the reference is invalid or the image does not exist. Borrowed from cat. */
const struct sim_image *sim_catalog_find(const sim_catalog *cat, const char *ref);
/* The image's variant for linux/arch, or NULL (no match for platform). */
const struct sim_platform *sim_image_platform(const struct sim_image *img, const char *arch);
/* True when path is an executable of the image. */
bool sim_image_has_exe(const struct sim_image *img, const char *path);

/* ================================ the model (model.c) ================================ */

typedef struct sim_model sim_model;

struct sim_model_cfg {
    double registry_Bps;        /* registry egress, bytes per model second */
    double node_Bps;            /* default per-node download, bytes per model second */
    int max_parallel;           /* pulls at once per node (1 = serialized) */
    double pull_overhead_s;     /* resolving a reference (manifest round trips) before layers flow */
    int nlayers;                /* the catalogue's layer count */
    const uint64_t *layer_size; /* nlayers sizes (borrowed, must outlive the model) */
};

enum sim_model_evt_type { SIM_PULL_STARTED = 0, SIM_PULL_DONE = 1 };

struct sim_model_evt {
    enum sim_model_evt_type type;
    int64_t pull;    /* the pull's id */
    uint64_t cookie; /* the caller's value given to sim_model_pull */
    int node;
    bool ok;                           /* DONE: false when the pull was submitted to fail */
    double queued_at, started_at, now; /* model seconds */
    uint64_t bytes;                    /* DONE: bytes this pull downloaded */
    const struct sim_platform *plat;   /* what it pulls (NULL for a pull submitted to fail) */
};

typedef void (*sim_model_fn)(void *arg, const struct sim_model_evt *evt);

/* A model at time 0. cb is called from sim_model_advance (and only there) for every pull that starts
 * (its slot on the node is granted) or ends. Never fails. */
sim_model *sim_model_new(const struct sim_model_cfg *cfg, sim_model_fn cb, void *arg);
void sim_model_free(sim_model *m);
/* Adds a node (index returned, from 0 up). bw_Bps <= 0: the default. */
int sim_model_add_node(sim_model *m, double bw_Bps);
void sim_model_node_set_bw(sim_model *m, int node, double bw_Bps);
double sim_model_node_bw(const sim_model *m, int node);
/* A paused node (kubelet down) starts nothing and its downloads stand still. */
void sim_model_node_set_paused(sim_model *m, int node, bool paused);
/* Forgets the node's work: queued pulls are dropped (no events), downloads stop. Its layers stay. */
void sim_model_node_reset(sim_model *m, int node);
/* Queues a pull of plat's layers on node at the model's current time; ok false makes it a pull that
 * fails once resolved (not found, unauthorized, no platform; plat may then be NULL). Returns its id. */
int64_t sim_model_pull(sim_model *m, int node, const struct sim_platform *plat, bool ok, uint64_t cookie);
/* Drops a pull that has not started yet; 0, or PW_ENOTFOUND when it is running or gone. */
int sim_model_cancel(sim_model *m, int64_t pull);
/* Advances the model to `now` (model seconds, never backwards), calling cb for what happens. */
void sim_model_advance(sim_model *m, double now);
/* The model time of the next thing that will happen by itself (INFINITY when idle). */
double sim_model_next(const sim_model *m);
double sim_model_now(const sim_model *m);
/* Layer ground truth. */
bool sim_model_has_layer(const sim_model *m, int node, int layer);
bool sim_model_has_platform(const sim_model *m, int node, const struct sim_platform *plat);
/* Bytes node would still have to download to hold all the platforms (distinct layers, NULL skipped). */
uint64_t sim_model_missing_bytes(const sim_model *m, int node, const struct sim_platform *const *plats, int n);
/* Pulls performed by node that succeeded. */
int sim_model_pulls(const sim_model *m, int node);
/* Pulls running or queued on node. */
int sim_model_busy(const sim_model *m, int node);
/* One pull as sim_model_each_pull shows it. */
struct sim_model_pull_info {
    int64_t id;
    uint64_t cookie;
    int node;
    const char *phase; /* "queued", "resolving", "downloading" */
    double queued_at, started_at;
    uint64_t bytes;      /* bytes this pull fetches (known once downloading) */
    uint64_t bytes_left; /* of the layers it waits for on its node */
};
/* Calls fn for every pull queued or running, node by node in queue order. */
void sim_model_each_pull(const sim_model *m, void (*fn)(void *arg, const struct sim_model_pull_info *pi), void *arg);

/* The least time (model seconds) to put the images on the nodes: bytes[i] the missing bytes of node i,
 * pulls[i] the pulls it needs, bw[i] its bandwidth, fixed_s the fixed latency before a node's first
 * byte and after its last (pod start, controller, container start), overhead_s per pull. Formula in
 * docs/kubesim.md. */
double sim_model_bound(double registry_Bps, int n, const uint64_t *bytes, const int *pulls, const double *bw,
                       double fixed_s, double overhead_s, int max_parallel);

/* ================================ small containers (world.c) ================================ */

/* A string-keyed hash map; keys are copied, values borrowed (the owner frees them). */
struct sim_map_ent;
struct sim_map {
    struct sim_map_ent **b;
    size_t nb, n;
};
void *sim_map_get(const struct sim_map *m, const char *key);
void sim_map_put(struct sim_map *m, const char *key, void *val);
void *sim_map_del(struct sim_map *m, const char *key); /* returns the value removed, or NULL */
/* Calls fn for each entry (removing or adding entries from fn is not allowed). */
void sim_map_each(const struct sim_map *m, void (*fn)(void *arg, const char *key, void *val), void *arg);
void sim_map_fini(struct sim_map *m);

/* ================================ the world (world.c) ================================ */

enum sim_timer_kind {
    SIM_T_POD = 0,
    SIM_T_JOB = 1,
    SIM_T_PODGC = 2,
    SIM_T_EVICT = 3,
    SIM_T_DS = 4,
    SIM_T_SCHED = 5,    /* sched.c */
    SIM_T_WORKLOAD = 6, /* workload.c */
    SIM_T_SCALE = 7     /* autoscale.c */
};

/* A simulated node: identity, kubelet state and ground truth. */
struct sim_held {
    int image;   /* catalogue index */
    char **refs; /* references as pods asked for them */
    int nrefs;
};

struct sim_wnode {
    char *name;
    int midx; /* the model's node index */
    char arch[8];
    char ip[16];
    bool gone;  /* deleted */
    bool ready; /* kubelet running */
    bool images_dirty;
    int64_t images_flushed_ms; /* monotonic */
    struct sim_held *held;
    int nheld;
    uint32_t pod_seq;
};

struct kpod;
struct kjob;

struct sim_world {
    struct sim *sim;
    sim_catalog *cat;
    sim_model *model;
    uint64_t *layer_size;
    double scale;
    int64_t start_mono_ms;
    uint64_t rng;

    pthread_mutex_t lock; /* everything below; taken by the thread and by HTTP handlers */
    struct sim_wnode **nodes;
    int nnodes, capnodes;
    struct sim_map node_by_name;
    struct sim_map pods; /* "ns/name" -> struct kpod * (kubelet) */
    struct sim_map jobs; /* "ns/name" -> struct kjob * (job controller) */
    int next_node_number;
    void *kubelet;            /* kubelet.c's private state */
    void *dsctl;              /* dsctl.c's */
    void *agents;             /* agents.c's (NULL without --agents) */
    void *sched;              /* sched.c's */
    void *workload;           /* workload.c's */
    void *autoscale;          /* autoscale.c's */
    void *podstats;           /* podstats.c's */
    struct sim_wnode **dirty; /* nodes whose status.images must be rewritten */
    int ndirty, capdirty;

    struct sim_timer *timers; /* a min-heap on time */
    size_t ntimers, captimers;

    /* changes from the store, queued by the subscriber */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    struct sim_qitem *qhead, *qtail;
    bool kicked; /* the model changed outside the world thread (sim_world_kick) */
    bool stop;
    int sub_id;
    pthread_t thread;
    bool running;
};

/* The model's clock: seconds since the world started, times the time scale. */
double sim_world_now(const struct sim_world *w);
/* Schedules a timer (model seconds) for key ("ns/name"). Duplicates are harmless: handlers are
 * idempotent. Lock held. */
void sim_world_timer(struct sim_world *w, double at, enum sim_timer_kind kind, const char *key);
/* Brings the model to the clock's now: a thread other than the world thread calls it (lock held)
 * before it adds a pull, so the pull is queued now and not at the time of the world thread's last
 * step. Events due until now are delivered, from the calling thread. */
void sim_world_catch_up(struct sim_world *w);
/* The model changed outside the world thread: the world thread looks at it again at once (a wakeup
 * that cannot be lost: it is remembered until the thread next looks). Any thread, any lock. */
void sim_world_kick(struct sim_world *w);
/* A seeded random number. Lock held. */
uint64_t sim_world_rand(struct sim_world *w);
struct sim_wnode *sim_world_node(struct sim_world *w, const char *name);
/* Records that node holds image under ref (truth; status.images refresh). Lock held. */
void sim_world_node_hold(struct sim_world *w, struct sim_wnode *n, const struct sim_image *img, const char *ref);
bool sim_world_node_holds(const struct sim_wnode *n, const struct sim_image *img);
/* Creates count nodes as POST /sim/v1/nodes does (opts: "labels", "arch", "pool", "bandwidthMBps", and
 * "taints" the nodes register with), Ready or NotReady (kubelet not running, the not-ready taints);
 * names (may be NULL) gets their names. Lock held. 0 or the store's error. */
int sim_world_add_nodes(struct sim_world *w, int count, const json_t *opts, bool ready, json_t *names);
/* The node's kubelet starts (Ready: conditions True, lifecycle taints removed) or stops posting status
 * (conditions Unknown, unreachable taints), as PATCH /sim/v1/nodes/{name} {"ready"}. Lock held. */
int sim_world_set_ready(struct sim_world *w, struct sim_wnode *n, bool ready);
/* Events through the API server when it runs (no-op before). */
void sim_world_event(struct sim_world *w, const json_t *involved, const char *type, const char *reason,
                     const char *message, const char *component, const char *host, const char *field_path);

/* ================================ the kubelets (kubelet.c) ================================ */

void sim_kubelet_on_pod(struct sim_world *w, const struct sim_change *ch);
void sim_kubelet_on_pull(struct sim_world *w, const struct sim_model_evt *e);
void sim_kubelet_timer(struct sim_world *w, const char *key);
void sim_kubelet_podgc(struct sim_world *w, const char *key);
/* The taint manager: the node's NoExecute taints changed; pods that do not tolerate them are deleted
 * (after their tolerationSeconds). */
void sim_kubelet_taints_changed(struct sim_world *w, struct sim_wnode *n);
void sim_kubelet_evict(struct sim_world *w, const char *key);
/* The node's kubelet stopped (NotReady) or restarted (Ready): pods pause or resume. */
void sim_kubelet_node_ready(struct sim_world *w, struct sim_wnode *n, bool ready);
/* The node went away: its pods' work stops, the pod GC deletes them after a short delay. */
void sim_kubelet_node_gone(struct sim_world *w, struct sim_wnode *n);
/* Picks up pods already bound to a node that (re)appears. */
void sim_kubelet_node_added(struct sim_world *w, struct sim_wnode *n);
void sim_kubelet_fini(struct sim_world *w);
/* The image reference and pod ("ns/name", or "" once the pod went away) of a pull's cookie. */
void sim_kubelet_pull_owner(uint64_t cookie, const char **ref, const char **pod);

/* ================================ the DaemonSet controller (dsctl.c) ================================ */

void sim_dsctl_on_ds(struct sim_world *w, const struct sim_change *ch);
void sim_dsctl_on_node(struct sim_world *w, const struct sim_change *ch);
void sim_dsctl_on_pod(struct sim_world *w, const struct sim_change *ch);
void sim_dsctl_fini(struct sim_world *w);
/* A DaemonSet's status write that was held back (key "ns/name"). */
void sim_dsctl_timer(struct sim_world *w, const char *key);

/* ================================ simulated agents (agents.c) ================================ */

/* Starts the manager of simulated agents (--agents). 0 or PW_ENOMEM. */
int sim_agents_start(struct sim_world *w);
/* Stops every agent and the manager (before the world thread stops). */
void sim_agents_stop(struct sim_world *w);
/* The world saw a pod change: an agent pod that runs gets an agent, one that stops loses it. */
void sim_agents_on_pod(struct sim_world *w, const struct sim_change *ch);
/* A model pull with an agent's cookie (low bit set) finished. Lock held. */
void sim_agents_on_pull(struct sim_world *w, const struct sim_model_evt *e);
/* Agents running now and started in all. */
void sim_agents_counts(struct sim_world *w, uint64_t *running, uint64_t *started);

/* ================================ the Job controller (jobctl.c) ================================ */

void sim_jobctl_on_job(struct sim_world *w, const struct sim_change *ch);
void sim_jobctl_on_pod(struct sim_world *w, const struct sim_change *ch);
void sim_jobctl_timer(struct sim_world *w, const char *key);
void sim_jobctl_fini(struct sim_world *w);

#endif
