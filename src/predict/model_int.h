/* model_int.h: the model's insides, shared by model.c (counts, pools, persistence) and rank.c (the
 * ranking and the selection). Not a public interface: nothing outside src/predict includes it. */
#ifndef PW_PREDICT_MODEL_INT_H
#define PW_PREDICT_MODEL_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "predict/predict.h"

/* A decayed count: its value w at time t (ms), the raw observations n and the latest one. */
struct pm_count {
    double w;
    int64_t t;
    int64_t n;
    int64_t last;
};

/* One counted thing of a pool: an image (key: its reference) or an image set (key: the references of
 * one pod, sorted, space-separated). */
struct pm_entry {
    char *key;
    struct pm_count c;
};

/* Entries by key, at most a cap of them (the least counted goes first past it). */
struct pm_table {
    struct pm_entry *e;
    size_t n, cap;
    json_t *index; /* key -> integer index into e */
};

struct pm_pool {
    char *id;
    struct pm_count c;     /* the pods */
    struct pm_count nodes; /* the nodes, each counted once, when its first pod in the pool is */
    json_t *node_last;     /* node name -> integer ms of its latest pod (at most PW_PREDICT_MAX_NODES_PER_POOL) */
    struct pm_table imgs, sets;
    bool dirty;
};

struct pw_predict_model {
    struct pw_predict_model_opts o;
    struct pm_pool **pools;
    size_t npool, cappool;
    json_t *pool_index; /* id -> integer index into pools */
    json_t *sizes;      /* ref -> integer bytes */
    int64_t watermark;
};

struct pm_pool *pm_pool_find(const pw_predict_model *m, const char *id);
const struct pm_entry *pm_table_find(const struct pm_table *t, const char *key);
/* count's value at now */
double pm_count_at(const pw_predict_model *m, const struct pm_count *c, int64_t now);
/* The ratio of two counts read at the same time (independent of when: both decay alike); 0 when
 * either is empty. */
double pm_ratio(const pw_predict_model *m, const struct pm_count *num, const struct pm_count *den);
/* The pool's pods per node (pm_ratio of pods to nodes, at least 1; 1 when no node was counted). */
double pm_pods_per_node(const pw_predict_model *m, const struct pm_pool *p);

/* ms as an RFC 3339 string (a new reference) */
json_t *pm_time_json(int64_t ms);
/* "key=value" -> "value" (id itself without "=") */
const char *pm_pool_value(const char *id);

#endif
