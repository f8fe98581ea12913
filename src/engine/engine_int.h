/* engine_int.h: what the engine's files share, private to src/engine: the engine object, its event
 * queue and intents, one cluster (struct ecl), and the functions one file calls in another.
 *
 *   engine.c   the loop, the event queue, the store writes (flush), node outcomes and readiness,
 *              dispatch, scheduling, task ends, and the public API of tasks and the node cache;
 *   cluster.c  the clusters: struct ecl's life (its node cache and executors), reachability and
 *              ClusterUnreachable, node selection per cluster, per-cluster progress, the clusters'
 *              public API (pw_engine_cluster_*, pw_engine_clusters, the agents);
 *   taskread.c the API's reads of tasks and node results (from the store, never e->mu);
 *   lead.c     leadership (cfg.may_lead): take over, step down, pick up tasks and cancels that other
 *              replicas stored, the fencing of Kubernetes writes.
 *
 * Locks, in the order they may be taken (never the other way):
 *   e->wmu (one flush at a time) -> e->tmu (executors ticking; a cluster's removal frees under it)
 *   -> e->mu (task state, the cluster list) -> executor locks (executor.h) and node cache locks
 *   -> e->qmu (the event queue; a leaf: nothing is called while it is held).
 * e->tmu and e->wmu are never held together. No store call and no network call runs under e->mu:
 * flushes snapshot under it and write after releasing it; executors queue their network work. The
 * loop thread is the only one that takes over or steps down, and the only one that ticks executors.
 *
 * Naming: the shared functions are pw_eng_*; everything else stays static in its file. */
#ifndef PW_ENGINE_INT_H
#define PW_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/engine.h"
#include "engine/executor.h"
#include "engine/nodecache.h"
#include "engine/nodeselect.h"
#include "engine/taskrec.h"
#include "k8s/k8s.h"

enum ev_kind { EV_NODE, EV_REPORT, EV_WAKE };

struct event {
    enum ev_kind kind;
    char *key;              /* EV_NODE: the cluster's name; EV_REPORT: the node's key (owned) */
    enum pw_k8s_event type; /* EV_NODE */
    json_t *obj;            /* EV_NODE: the node (owned) */
    struct pw_exec_report *rep; /* EV_REPORT: a copy of the executor's report (pw_noderep_copy) */
    struct event *next;
};

/* What a round decided for an executor, handed over after the round's store writes. */
enum intent_kind { INTENT_DISPATCH, INTENT_CANCEL };

struct intent {
    enum intent_kind kind;
    enum exec_kind exec;
    char task_id[16];
    char *node;
    bool failed; /* INTENT_CANCEL: the node failed */
    struct intent *next;
};

/* One cluster (docs/multicluster.md): its node cache and executors. Added under e->mu; removed by
 * pw_engine_cluster_remove, which frees it only under e->tmu (the loop's executor ticks). */
struct ecl {
    pw_engine *e;
    char *name;
    json_t *labels;
    pw_k8s_client *client;
    int max_in_flight;
    int64_t (*down_since)(void *arg);
    void *down_arg;
    bool lost;           /* its unfinished nodes were failed for this outage (e->mu) */
    bool started;
    bool first;          /* cl[0]: the node hook's and leader election's cluster */
    int holds;           /* API threads using its agent executor and client (pw_engine_agents_hold; e->mu):
                          * a removal waits until none is left */
    pw_nodecache *nodes; /* NULL before start */
    pw_executor *x[N_EXEC];
};

struct pw_engine {
    struct pw_engine_config cfg; /* strings point at the copies below */
    char *namespace_, *instance;
    bool store_failing;       /* the last round's store write failed: intents wait (e->mu) */
    int64_t next_prune_mono;  /* loop thread only */
    atomic_bool leading;      /* took over and has not stepped down (always true without may_lead);
                               * written by the loop thread only */
    int64_t next_pickup_mono; /* loop thread only: the next rescan of the store (may_lead) */
    atomic_bool pickup_now;   /* a local create: rescan at the next round */

    pthread_mutex_t wmu; /* store writes (engine_flush): one at a time; taken before e->mu */
    pthread_mutex_t mu;  /* task state; never held across a store call */
    struct task **tasks; /* unfinished tasks */
    size_t n_tasks;
    uint64_t seq;
    struct pw_notready notready; /* nodes NotReady now, since when */


    pthread_mutex_t qmu; /* the event queue */
    pthread_cond_t qcond;
    struct event *q_head, *q_tail;
    bool stopping;

    struct intent *i_head, *i_tail; /* decided this round, released after the store write (e->mu) */

    pthread_t loop;
    bool started;
    pw_engine_observer observer; /* set before start; NULL: none */
    void *observer_arg;
    pw_k8s_informer_fn node_hook; /* set before start; NULL: none (fed by the first cluster's nodes) */
    void *node_hook_arg;
    pw_nodecache_raw_fn node_raw; /* set before start; NULL: none (the first cluster's untrimmed nodes) */
    void *node_raw_arg;
    struct ecl **cl;     /* the clusters (e->mu); cl[0] is cfg.client's and is never removed */
    size_t n_cl;
    pthread_mutex_t tmu; /* held by the loop while executors tick, and by a removal while it frees */
    pthread_cond_t hold_cv; /* a cluster's last hold was released (with e->mu) */
    pw_nodecache *nodes; /* cl[0]'s */
    pw_executor **x;     /* cl[0]'s: Job mode, agent mode (NULL unless enabled; every cluster has its own) */
    struct pw_jobexec_settings job; /* cfg.job (the executors of each cluster copy it) */
    char *helper_image;
};

/* ---- engine.c ---- */

/* The event queue (under e->qmu): push takes ownership of ev; free frees one event; wake queues an
 * EV_WAKE so the loop runs a round now. Any thread. */
void pw_eng_ev_push(pw_engine *e, struct event *ev);
void pw_eng_ev_free(struct event *ev);
void pw_eng_wake(pw_engine *e);
/* Drops every intent not handed over yet (under e->mu). */
void pw_eng_intents_free(pw_engine *e);
/* The unfinished (or not yet reaped) task of id in memory, or NULL. Under e->mu. */
struct task *pw_eng_task_find(pw_engine *e, const char *id);
/* Writes every change (e->mu not held; takes e->wmu, then e->mu). id (may be NULL): *rc gets the
 * result of that task's write (0 also when it had nothing to write) and *task_doc (may be NULL) the
 * document written, or NULL when its record did not need a write. Returns whether a write failed. */
bool pw_eng_flush(pw_engine *e, bool reap, const char *id, int *rc, json_t **task_doc);
/* Ends a running or pending node: succeeded, failed (reason, message, image at fault or NULL) or
 * cancelled; a running node's executor is told to stop after the round's store write. Under e->mu. */
void pw_eng_node_finish(pw_engine *e, struct task *t, struct tnode *n, enum pw_node_state s, const char *reason,
                        const char *message, const char *image);
/* Cancels t: its unfinished nodes cancelled, running ones' executors told to stop. Under e->mu. */
void pw_eng_task_cancel(pw_engine *e, struct task *t);
/* Loads the store's unfinished tasks into memory (the store read without e->mu). 0, or the store's
 * error when they could not all be read. */
int pw_eng_resume(pw_engine *e);

/* ---- cluster.c ---- */

/* The cluster named name, or of node key key (either may be NULL), or NULL. Under e->mu. */
struct ecl *pw_eng_cluster_find(pw_engine *e, const char *name, const char *key);
/* Since when c is unreachable (monotonic ms), 0 while reachable. Under e->mu. */
int64_t pw_eng_cluster_down(const struct ecl *c);
/* Clusters unreachable past the timeout fail their unfinished nodes once per outage; returns when
 * the next timeout ends (0: none). Under e->mu. */
int64_t pw_eng_clusters_check(pw_engine *e, int64_t now);
/* ", clusters failed: ..." for t's message (caller frees), or NULL. */
char *pw_eng_failed_clusters(const struct task *t);
/* Whether every cluster's node cache is complete (or the cluster is down). Under e->mu. */
bool pw_eng_clusters_ready(pw_engine *e);
/* Selects an admitted task's nodes in each cluster it spans. Under e->mu. */
void pw_eng_task_select(pw_engine *e, struct task *t);
/* Whether s is a cluster name (a DNS-1123 label). */
bool pw_eng_cluster_name_ok(const char *s);
/* A cluster's life: new makes it with its executors (not started; agent mode when cfg.agent.enabled);
 * executors_new makes them again (may_lead's takeover), executors_start starts them with the
 * running nodes in memory to adopt (under e->mu; on failure they are freed); start starts its node
 * informer and, unless may_lead, its executors; free frees it (NULL: no-op). 0 or a PW_E*. */
int pw_eng_ecl_new(pw_engine *e, const struct pw_engine_cluster *cc, struct ecl **out);
int pw_eng_ecl_executors_new(pw_engine *e, struct ecl *c);
int pw_eng_ecl_executors_start(pw_engine *e, struct ecl *c);
int pw_eng_ecl_start(pw_engine *e, struct ecl *c);
void pw_eng_ecl_free(struct ecl *c);

/* ---- lead.c ---- */

/* Whether this replica may write now (the store, Kubernetes): always without may_lead, else while
 * it leads and its Lease holds. Any thread. */
bool pw_eng_may_write_now(pw_engine *e);
/* pw_eng_may_write_now as the executors' Kubernetes-write gate (arg: the executor's struct ecl). */
bool pw_eng_may_write(void *arg);
/* Loop thread, before a round: follows leadership changes (take over, step down), rescans the store
 * while leading. No lock held. */
void pw_eng_lead_round(pw_engine *e);
/* A follower's cancel: a request in the store for the leader, then wait for the task to show it.
 * No lock held. 0, or the store's PW_E*, or PW_EUNAVAIL when no leader applied it in time. */
int pw_eng_cancel_by_request(pw_engine *e, const char *id);

#endif
