/* taskrec.h: the engine's in-memory task records (a task, one record per selected node, one result
 * per image) and their JSON codec in both directions side by side: what the API shows and the
 * store keeps (pw_taskrec_task_json, pw_taskrec_node_json) and reading node results back after a
 * restart (pw_taskrec_load_nodes). Internal to the engine: the structs are shown because the engine
 * core reads and writes their fields under its lock.
 *
 * Thread model: none of its own; the engine calls everything with its lock held. Ownership: a task
 * owns its spec, nodes and every string in them (pw_taskrec_free). */
#ifndef PW_ENGINE_TASKREC_H
#define PW_ENGINE_TASKREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "engine/engine.h"
#include "engine/outcome.h"
#include "engine/sched.h"
#include "engine/taskspec.h"
#include "store/store.h"

#define PW_TASKREC_MAX_FAILED 100 /* a task lists its first failures, at most this many */

/* The executors, by the mode names per-node results show. */
enum exec_kind { EXEC_JOB, EXEC_AGENT, N_EXEC };
extern const char *const pw_taskrec_exec_names[N_EXEC];

/* One image's result on one node. */
struct img_res {
    unsigned char state;     /* enum pw_node_state */
    unsigned char attempts;  /* pull attempts seen */
    bool in_pull_error;      /* the last status seen was ErrImagePull (counts transitions into it) */
    unsigned char cls;       /* enum pw_pull_class: the most specific failure seen (NOTFOUND/AUTH stick) */
    char *reason;            /* owned or NULL */
    char *message;           /* owned or NULL */
    float duration_s;
};

/* One selected node of a task. */
struct tnode {
    char *name;
    enum pw_node_state state;
    char *reason, *message; /* owned or NULL */
    int attempts;
    int64_t started_ms, finished_ms; /* wall clock; 0 unset */
    int64_t started_mono;
    struct img_res *imgs; /* n_images */
    unsigned char exec; /* EXEC_* + 1 of the executor that served it; 0: not dispatched */
    unsigned char cl;   /* index of its cluster in the task's cl[] */
    bool dirty;
};

/* A task's share of one cluster (docs/multicluster.md): its counts, its scheduling state (batchSize
 * applies per cluster), and why the cluster failed as a whole, if it did. */
struct tcluster {
    char *name;
    struct pw_outcome_counts counts;
    struct pw_sched_task sched;
    size_t next_pending; /* nodes of this cluster before this index are no longer pending */
    char *failed;        /* owned or NULL: "ClusterUnreachable: ..." */
};
#define PW_TASKREC_MAX_CLUSTERS 250

/* An unfinished task in memory. */
struct task {
    char id[16];
    struct pw_taskspec spec;
    enum pw_task_status status;
    int64_t created_ms, started_ms, finished_ms;
    bool selected;
    struct tnode *nodes; /* sorted by name */
    size_t n_nodes;
    size_t *dirty_idx; /* indexes of the nodes changed since the last store write */
    size_t n_dirty, cap_dirty;
    size_t next_pending; /* nodes before this index are no longer pending */
    struct pw_outcome_counts counts;
    struct pw_outcome_reasons reasons;
    json_t *failed; /* array of the first PW_TASKREC_MAX_FAILED failures */
    char *message;
    char *note; /* owned or NULL: what selection found worth saying (unknown nodeNames), kept in message */
    struct pw_sched_task sched;
    struct tcluster *cl; /* the clusters the task spans, n_cl of them (set at selection, or resume) */
    size_t n_cl;
    bool dirty;
};

/* The index of cluster name in t->cl, added (zeroed counts, scheduling state from t->sched) when
 * it is not there yet; PW_TASKREC_MAX_CLUSTERS - 1 at most. */
size_t pw_taskrec_cluster(struct task *t, const char *name);

/* *dst = a copy of src, or NULL for NULL or "" (the old value freed). */
void pw_taskrec_set_str(char **dst, const char *src);
/* o[key] = the RFC 3339 time of ms (wall clock), or null for 0. */
void pw_taskrec_time_json(json_t *o, const char *key, int64_t ms);
/* The node record of name (binary search: nodes are sorted by name), or NULL. */
struct tnode *pw_taskrec_node_find(struct task *t, const char *name);
/* qsort comparator of node records by name. */
int pw_taskrec_node_cmp(const void *a, const void *b);
void pw_taskrec_free(struct task *t);
/* The count of t's state s in c. */
size_t *pw_taskrec_count_slot(struct pw_outcome_counts *c, enum pw_node_state s);
/* Notes that node n of t changed and must be written (each store write visits only these). */
void pw_taskrec_mark_dirty(struct task *t, struct tnode *n);
/* Moves node n to state s, keeping the task's counts. */
void pw_taskrec_set_state(struct task *t, struct tnode *n, enum pw_node_state s);
/* The task as the API shows it: a new object. */
json_t *pw_taskrec_task_json(const struct task *t);
/* Node n's result as the API shows it: a new object. */
json_t *pw_taskrec_node_json(const struct task *t, const struct tnode *n);
/* Fills rec (pointers into t and doc, borrowed) for a store write of doc. */
void pw_taskrec_store_record(const struct task *t, struct pw_store_task *rec, json_t *doc);
/* The hint row of outcome.c for a pull failure's class, or NULL. */
const char *pw_taskrec_hint(unsigned char cls);
/* The class of the failure of image (one of t's references, or a joined list, or NULL). */
unsigned char pw_taskrec_failure_class(const struct task *t, const struct tnode *n, const char *image);
/* The executor's work lists the images not skipped at selection, in task order: the task image
 * index of the work's image j, and their number. */
size_t pw_taskrec_work_index(const struct task *t, const struct tnode *n, size_t j);
size_t pw_taskrec_work_count(const struct task *t, const struct tnode *n);
/* ms of an RFC 3339 JSON string, 0 when it is not one. */
int64_t pw_taskrec_time_ms(const json_t *v);
/* o[k] when it is a non-empty string, else NULL (borrowed). */
const char *pw_taskrec_str(const json_t *o, const char *k);
/* Reloads the node results of running task t from store (sorted by name), with the failure hints
 * their stored results give. 0 or the store's PW_E*. */
int pw_taskrec_load_nodes(pw_store *store, struct task *t);

#endif
