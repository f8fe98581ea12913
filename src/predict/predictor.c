/* predictor.c: the prediction service (predict.h): the pod informer and the nodes (the caller's node
 * cache, or an informer of its own) feeding the model, the
 * tracked pool keys, persistence in the store's records, and the answers to the API and the policy
 * hook.
 *
 * A pod counts once, when it is first seen with both a node and a start time (ADDED with them, or
 * MODIFIED from a state without them). After a restart the informer delivers every pod again as
 * ADDED: those that started at or before the restored model's watermark (the latest start time it
 * had counted) were counted before and are skipped.
 *
 * Thread model: one mutex guards the model and the tracked keys; the informers' callbacks, the saver
 * thread, the API and the policy hook take it for short sections (store writes happen outside it). */
#include "predict/predict.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "k8s/k8s.h"
#include "store/store.h"

#define REC_KIND "predict"
#define REC_POOL_PREFIX "pool:"
#define REC_META "meta"
#define DEFAULT_SAVE_INTERVAL_MS 30000
#define NODE_SYNC_WAIT_MS 15000

struct pw_predict {
    pw_k8s_client *client;
    pw_store *store;
    int64_t save_interval_ms;
    json_t *(*node_get)(void *arg, const char *name); /* NULL: nodes from the own informer below */
    bool (*nodes_synced)(void *arg);
    bool (*may_save)(void *arg);
    void *may_save_arg;
    void *node_arg;

    pthread_mutex_t mu; /* guards m, keys, retry */
    pw_predict_model *m;
    json_t *keys;  /* the tracked label keys (array of strings): the defaults, then the extra ones */
    json_t *retry; /* pool ids whose last save failed */
    int64_t restored_watermark;

    pw_k8s_informer *nodes, *pods;
    pthread_t saver;
    bool saver_started;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stop;
};

/* ---- tracked keys ---- */

static bool key_tracked(const pw_predict *p, const char *key)
{
    size_t i;
    const json_t *k;
    json_array_foreach(p->keys, i, k) if (strcmp(json_string_value(k), key) == 0) return true;
    return false;
}

void pw_predict_track_key(pw_predict *p, const char *key)
{
    pthread_mutex_lock(&p->mu);
    if (!key_tracked(p, key)) {
        json_array_append_new(p->keys, json_string(key));
        PW_INFO("predict: now learning pools by the node label %s", key);
    }
    pthread_mutex_unlock(&p->mu);
}

static void track_list(pw_predict *p, const char *csv)
{
    while (csv && *csv) {
        const char *end = strchr(csv, ',');
        size_t n = end ? (size_t)(end - csv) : strlen(csv);
        if (n) {
            char *k = pw_xstrndup(csv, n);
            pw_predict_track_key(p, k);
            free(k);
        }
        csv = end ? end + 1 : NULL;
    }
}

/* ---- observation ---- */

static void observe_locked(pw_predict *p, const json_t *trimmed, const json_t *labels)
{
    /* "i" is the images separated by single spaces: split a copy in place */
    char *imgs = pw_xstrdup(json_string_value(json_object_get(trimmed, "i")) ? json_string_value(json_object_get(trimmed, "i")) : "");
    size_t n = 0, cap = 4;
    const char **refs = pw_xcalloc(cap, sizeof *refs);
    for (char *save = NULL, *tok = strtok_r(imgs, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (n == cap) {
            cap *= 2;
            refs = pw_xrealloc(refs, cap * sizeof *refs);
        }
        refs[n++] = tok;
    }
    int64_t t = (int64_t)json_integer_value(json_object_get(trimmed, "t"));
    size_t i;
    const json_t *k;
    json_array_foreach(p->keys, i, k) {
        const char *v = json_string_value(json_object_get(labels, json_string_value(k)));
        if (!v)
            continue;
        char *pool = pw_xasprintf("%s=%s", json_string_value(k), v);
        pw_predict_model_observe(p->m, pool, json_string_value(json_object_get(trimmed, "n")), refs, n, t);
        free(pool);
    }
    free(refs);
    free(imgs);
}

void pw_predict_observe_pod(pw_predict *p, const json_t *trimmed, const json_t *node_labels)
{
    pthread_mutex_lock(&p->mu);
    observe_locked(p, trimmed, node_labels);
    pthread_mutex_unlock(&p->mu);
}

static bool started(const json_t *trimmed)
{
    return trimmed && json_object_get(trimmed, "n") && json_object_get(trimmed, "t");
}

static json_t *pod_transform(void *arg, json_t *obj)
{
    (void)arg;
    return pw_predict_trim_pod(obj);
}

static void on_pod(void *arg, enum pw_k8s_event ev, const json_t *obj, const json_t *old)
{
    pw_predict *p = arg;
    if (ev == PW_K8S_DELETED || !started(obj) || started(old))
        return;
    if (ev == PW_K8S_ADDED && json_integer_value(json_object_get(obj, "t")) <= p->restored_watermark)
        return; /* counted before the restart */
    const char *name = json_string_value(json_object_get(obj, "n"));
    json_t *node = p->node_get ? p->node_get(p->node_arg, name) : pw_k8s_informer_get(p->nodes, name);
    if (node)
        pw_predict_observe_pod(p, obj, json_object_get(json_object_get(node, "metadata"), "labels"));
    json_decref(node);
}

/* A node's status.images sizes go to the model. */
static void learn_sizes(pw_predict *p, const json_t *obj)
{
    size_t i, j;
    const json_t *im, *name;
    pthread_mutex_lock(&p->mu);
    json_array_foreach(json_object_get(json_object_get(obj, "status"), "images"), i, im) {
        json_int_t size = json_integer_value(json_object_get(im, "sizeBytes"));
        json_array_foreach(json_object_get(im, "names"), j, name) {
            const char *ref = json_string_value(name);
            if (ref && !strchr(ref, '@'))
                pw_predict_model_set_size(p->m, ref, (int64_t)size);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void pw_predict_node_seen(void *arg, const json_t *node)
{
    learn_sizes(arg, node);
}

/* Keeps a node's name and labels; its status.images sizes go to the model on the way. */
static json_t *node_transform(void *arg, json_t *obj)
{
    learn_sizes(arg, obj);
    json_t *md = json_object_get(obj, "metadata");
    json_t *labels = json_object_get(md, "labels");
    return json_pack("{s:{s:O?, s:O}}", "metadata", "name", json_object_get(md, "name"), "labels",
                     labels ? labels : json_object());
}

/* ---- persistence ---- */

static int restore(pw_predict *p)
{
    struct pw_store_rec *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = pw_store_rec_list(p->store, REC_KIND, 0, NULL, &recs, &n, &next);
    free(next);
    if (rc != 0)
        return rc;
    size_t pools = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(recs[i].key, REC_POOL_PREFIX, strlen(REC_POOL_PREFIX)) == 0) {
            if (pw_predict_model_load_pool(p->m, recs[i].doc) == 0)
                pools++;
            else
                PW_WARN("predict: stored record %s is not a pool model: ignored", recs[i].key);
        } else if (strcmp(recs[i].key, REC_META) == 0) {
            size_t j;
            const json_t *k;
            json_array_foreach(json_object_get(recs[i].doc, "keys"), j, k) if (json_is_string(k))
                pw_predict_track_key(p, json_string_value(k));
        }
    }
    pw_store_recs_free(recs, n);
    p->restored_watermark = pw_predict_model_watermark(p->m);
    if (pools)
        PW_INFO("predict: restored the model of %zu pools from the store", pools);
    return 0;
}

int pw_predict_save(pw_predict *p)
{
    if (!p->store || (p->may_save && !p->may_save(p->may_save_arg)))
        return 0; /* the dirty pools stay dirty for a later save */
    pthread_mutex_lock(&p->mu);
    json_t *ids = pw_predict_model_take_dirty(p->m);
    size_t i;
    const json_t *id;
    json_array_foreach(p->retry, i, id) json_array_append(ids, (json_t *)id);
    json_array_clear(p->retry);
    json_t *docs = json_array();
    json_array_foreach(ids, i, id) {
        json_t *d = pw_predict_model_pool_doc(p->m, json_string_value(id));
        json_array_append_new(docs, d ? d : json_null());
    }
    json_t *meta = json_pack("{s:i, s:O, s:I}", "version", 1, "keys", p->keys, "watermark",
                             (json_int_t)pw_predict_model_watermark(p->m));
    pthread_mutex_unlock(&p->mu);

    int rc = 0;
    json_array_foreach(ids, i, id) {
        json_t *d = json_array_get(docs, i);
        if (json_is_null(d))
            continue;
        char *key = pw_xasprintf(REC_POOL_PREFIX "%s", json_string_value(id));
        int r = pw_store_rec_put(p->store, REC_KIND, key, d, PW_STORE_REC_UPSERT);
        free(key);
        if (r != 0) {
            rc = r;
            pthread_mutex_lock(&p->mu);
            json_array_append(p->retry, (json_t *)id);
            pthread_mutex_unlock(&p->mu);
        }
    }
    if (json_array_size(ids)) {
        int r = pw_store_rec_put(p->store, REC_KIND, REC_META, meta, PW_STORE_REC_UPSERT);
        if (r != 0)
            rc = r;
    }
    if (rc != 0)
        PW_WARN("predict: saving the model failed (%s); retrying at the next save", pw_strerror(rc));
    json_decref(meta);
    json_decref(docs);
    json_decref(ids);
    return rc;
}

static void *saver_main(void *arg)
{
    pw_predict *p = arg;
    pthread_mutex_lock(&p->stop_mu);
    while (!p->stop) {
        struct timespec ts;
        pw_clock_deadline_ts(p->save_interval_ms, &ts);
        pthread_cond_timedwait(&p->stop_cv, &p->stop_mu, &ts);
        if (p->stop)
            break;
        pthread_mutex_unlock(&p->stop_mu);
        pw_predict_save(p);
        pthread_mutex_lock(&p->stop_mu);
    }
    pthread_mutex_unlock(&p->stop_mu);
    return NULL;
}

/* ---- life cycle ---- */

int pw_predict_new(const struct pw_predict_config *cfg, pw_predict **out)
{
    pw_predict *p = pw_xcalloc(1, sizeof *p);
    p->client = cfg->client;
    p->store = cfg->store;
    p->save_interval_ms = cfg->save_interval_ms > 0 ? cfg->save_interval_ms : DEFAULT_SAVE_INTERVAL_MS;
    p->node_get = cfg->node_get;
    p->nodes_synced = cfg->nodes_synced;
    p->may_save = cfg->may_save;
    p->may_save_arg = cfg->may_save_arg;
    p->node_arg = cfg->node_arg;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->stop_mu, NULL);
    pthread_cond_init(&p->stop_cv, NULL);
    p->m = pw_predict_model_new(&cfg->model);
    p->keys = json_array();
    p->retry = json_array();
    for (size_t i = 0; PW_PREDICT_POOL_KEYS[i]; i++)
        json_array_append_new(p->keys, json_string(PW_PREDICT_POOL_KEYS[i]));
    track_list(p, cfg->extra_pool_keys);
    if (p->store) {
        int rc = restore(p);
        if (rc != 0) {
            PW_ERROR("predict: cannot read the stored model: %s", pw_strerror(rc));
            pw_predict_free(p);
            return rc;
        }
    }
    *out = p;
    return 0;
}

int pw_predict_start(pw_predict *p)
{
    if (!p->client)
        return 0;
    int rc = 0;
    bool synced = true;
    if (p->node_get) { /* the caller's node cache: wait for its list */
        int64_t until = pw_clock_mono_ms() + NODE_SYNC_WAIT_MS;
        while (p->nodes_synced && !p->nodes_synced(p->node_arg) && (synced = pw_clock_mono_ms() < until))
            pw_clock_sleep_ms(50);
    } else {
        struct pw_k8s_informer_opts no = {.path = "/api/v1/nodes", .transform = node_transform, .arg = p};
        rc = pw_k8s_informer_start(p->client, &no, &p->nodes);
        if (rc != 0)
            return rc;
        synced = pw_k8s_informer_wait_synced(p->nodes, NODE_SYNC_WAIT_MS) == 0;
    }
    if (!synced)
        PW_WARN("predict: the node list is not in after %d s; pods on nodes not yet seen are not counted",
                NODE_SYNC_WAIT_MS / 1000);
    struct pw_k8s_informer_opts po = {.path = "/api/v1/pods", .transform = pod_transform, .on_event = on_pod, .arg = p};
    rc = pw_k8s_informer_start(p->client, &po, &p->pods);
    if (rc != 0)
        return rc;
    if (p->store) {
        rc = pthread_create(&p->saver, NULL, saver_main, p);
        if (rc != 0)
            return PW_ENOMEM;
        p->saver_started = true;
    }
    return 0;
}

void pw_predict_stop(pw_predict *p)
{
    if (!p)
        return;
    pw_k8s_informer_free(p->pods);
    pw_k8s_informer_free(p->nodes);
    p->pods = p->nodes = NULL;
    if (p->saver_started) {
        pthread_mutex_lock(&p->stop_mu);
        p->stop = true;
        pthread_cond_signal(&p->stop_cv);
        pthread_mutex_unlock(&p->stop_mu);
        pthread_join(p->saver, NULL);
        p->saver_started = false;
    }
}

void pw_predict_free(pw_predict *p)
{
    if (!p)
        return;
    pw_predict_stop(p);
    pw_predict_save(p);
    pw_predict_model_free(p->m);
    json_decref(p->keys);
    json_decref(p->retry);
    pthread_cond_destroy(&p->stop_cv);
    pthread_mutex_destroy(&p->stop_mu);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---- answers ---- */

int pw_predict_query(pw_predict *p, const char *pool, const struct pw_predict_limits *lim, json_t **out,
                     char **msg)
{
    int64_t now = pw_clock_real_ms();
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (!pool) {
        *out = json_pack("{s:o, s:O}", "pools", pw_predict_model_pools(p->m, now), "poolKeys", p->keys);
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    json_t *named = NULL;
    const char *id = pool;
    if (!strchr(pool, '=')) {
        named = pw_predict_model_pools_named(p->m, pool);
        if (json_array_size(named) > 1) {
            char *list = json_dumps(named, JSON_COMPACT);
            *msg = pw_xasprintf("pool: \"%s\" is the value of several pools %s: name one as KEY=VALUE", pool, list);
            free(list);
            rc = PW_EINVAL;
        }
        id = json_string_value(json_array_get(named, 0));
    }
    json_t *r = rc == 0 && id ? pw_predict_model_rank(p->m, id, lim, now) : NULL;
    pthread_mutex_unlock(&p->mu);
    json_decref(named);
    if (rc != 0)
        return rc;
    if (!r) {
        *msg = pw_xasprintf("pool \"%s\" has no history: no pod has started on its nodes", pool);
        return PW_ENOTFOUND;
    }
    *out = r;
    return 0;
}

int pw_predict_hook_check(void *ud, const json_t *predict_spec, char **field, char **msg)
{
    struct pw_predict_limits lim;
    const char *pool_label;
    int rc = pw_predict_parse_spec(predict_spec, &lim, &pool_label, field, msg);
    if (rc == 0 && pool_label && ud)
        pw_predict_track_key(ud, pool_label);
    return rc;
}

json_t *pw_predict_hook_images_for_node(void *ud, const json_t *predict_spec, const char *node_name,
                                        const json_t *node_labels)
{
    pw_predict *p = ud;
    struct pw_predict_limits lim;
    const char *pool_label;
    char *field = NULL, *msg = NULL;
    if (pw_predict_parse_spec(predict_spec, &lim, &pool_label, &field, &msg) != 0) {
        PW_WARN("predict: node %s: %s", node_name, msg);
        free(field);
        free(msg);
        return json_array();
    }
    char *pool = pw_predict_pool_of(node_labels, pool_label);
    if (!pool)
        return json_array();
    pthread_mutex_lock(&p->mu);
    json_t *r = pw_predict_model_rank(p->m, pool, &lim, pw_clock_real_ms());
    pthread_mutex_unlock(&p->mu);
    json_t *sel = r ? json_incref(json_object_get(r, "selected")) : json_array();
    PW_INFO("predict: node %s of pool %s: %zu predicted images", node_name, pool, json_array_size(sel));
    json_decref(r);
    free(pool);
    return sel;
}
