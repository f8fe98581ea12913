/* nodecache.c: the node informer, its transform and the intern table (nodecache.h). */
#include "engine/nodecache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

struct pw_nodecache {
    pw_k8s_informer *inf;
    pthread_mutex_t intern_mu; /* the transform's table of label values and image names */
    json_t *intern;            /* text -> the one json string every cached node shares */
    size_t intern_sweep_at;    /* table size that triggers the next sweep of unused entries */
    pw_k8s_informer_fn hook;   /* the owner's event hook and its argument */
    void *hook_arg;
    pw_nodecache_raw_fn raw;   /* NULL: none */
    void *raw_arg;
};

static void relay(void *arg, enum pw_k8s_event type, const json_t *obj, const json_t *old)
{
    pw_nodecache *nc = arg;
    nc->hook(nc->hook_arg, type, obj, old);
}

bool pw_nodecache_ready(const json_t *node)
{
    const json_t *conds = json_object_get(json_object_get(node, "status"), "conditions");
    size_t i;
    const json_t *c;
    json_array_foreach(conds, i, c) {
        if (json_is_string(json_object_get(c, "type")) &&
            strcmp(json_string_value(json_object_get(c, "type")), "Ready") == 0)
            return json_is_string(json_object_get(c, "status")) &&
                   strcmp(json_string_value(json_object_get(c, "status")), "True") == 0;
    }
    return false;
}

bool pw_nodecache_cordoned(const json_t *node)
{
    return json_is_true(json_object_get(json_object_get(node, "spec"), "unschedulable"));
}

/* Bounds the intern table (under nc->intern_mu): entries only the table still references (refcount
 * 1: no cached node holds them any more, e.g. label values that changed) are dropped once the table
 * has doubled since the last sweep, so its size follows the live values, not every value ever seen.
 * Amortised O(1) per insert. Reading refcount is safe: under intern_mu nobody else can reach an
 * entry the table alone holds, and a concurrent release by an informer only lowers it. */
#define INTERN_SWEEP_MIN 4096
static void intern_sweep(pw_nodecache *nc)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(nc->intern, tmp, k, v) {
        if (v->refcount == 1)
            json_object_del(nc->intern, k);
    }
    size_t live = json_object_size(nc->intern);
    nc->intern_sweep_at = live * 2 > INTERN_SWEEP_MIN ? live * 2 : INTERN_SWEEP_MIN;
}

/* The one shared json string for text (under nc->intern_mu): the values that repeat across nodes
 * (label values, image names) are kept once, whatever the number of nodes. Borrowed; NULL on a
 * string that is not UTF-8. */
static json_t *intern(pw_nodecache *nc, const char *text)
{
    json_t *shared = json_object_get(nc->intern, text);
    if (!shared) {
        if (json_object_size(nc->intern) >= nc->intern_sweep_at)
            intern_sweep(nc);
        shared = json_string(text);
        if (shared)
            json_object_set_new(nc->intern, text, shared);
    }
    return shared;
}

size_t pw_nodecache_intern_size(pw_nodecache *nc)
{
    pthread_mutex_lock(&nc->intern_mu);
    size_t n = json_object_size(nc->intern);
    pthread_mutex_unlock(&nc->intern_mu);
    return n;
}

static json_t *transform_node(void *arg, json_t *obj)
{
    pw_nodecache *nc = arg;
    if (nc->raw)
        nc->raw(nc->raw_arg, obj);
    json_t *o = json_object();
    /* metadata: the name, the resourceVersion (the informer compares it) and the labels, whose
     * values are interned */
    const json_t *md = json_object_get(obj, "metadata");
    json_t *m = json_object();
    static const char *const keep[] = {"name", "resourceVersion"};
    for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
        json_t *v = json_object_get(md, keep[k]);
        if (v)
            json_object_set(m, keep[k], v);
    }
    pthread_mutex_lock(&nc->intern_mu);
    const char *lk;
    json_t *lv;
    json_t *labels = json_object();
    json_object_foreach(json_object_get(md, "labels"), lk, lv) {
        json_t *shared = json_is_string(lv) ? intern(nc, json_string_value(lv)) : NULL;
        if (shared)
            json_object_set(labels, lk, shared);
    }
    pthread_mutex_unlock(&nc->intern_mu);
    json_object_set_new(m, "labels", labels);
    json_object_set_new(o, "metadata", m);
    const json_t *spec = json_object_get(obj, "spec");
    if (json_is_true(json_object_get(spec, "unschedulable"))) /* no spec at all otherwise */
        json_object_set_new(o, "spec", json_pack("{s:b}", "unschedulable", 1));
    const json_t *st = json_object_get(obj, "status");
    json_t *ns = json_object();
    json_t *conds = json_array();
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(st, "conditions"), i, c) {
        const char *type = json_string_value(json_object_get(c, "type"));
        if (type && strcmp(type, "Ready") == 0) {
            json_t *r = json_object();
            const char *status = json_string_value(json_object_get(c, "status"));
            pthread_mutex_lock(&nc->intern_mu);
            json_object_set(r, "type", intern(nc, "Ready"));
            if (status && intern(nc, status))
                json_object_set(r, "status", intern(nc, status));
            pthread_mutex_unlock(&nc->intern_mu);
            json_array_append_new(conds, r);
        }
    }
    json_object_set_new(ns, "conditions", conds);
    /* the compact form pw_imageref_present reads: a flat array of names, each an interned string
     * shared by every node that holds the image (nodes of a pool hold the same images) */
    json_t *imgs = json_array();
    pthread_mutex_lock(&nc->intern_mu);
    json_array_foreach(json_object_get(st, "images"), i, c) {
        size_t j;
        const json_t *name;
        json_array_foreach(json_object_get(c, "names"), j, name) {
            json_t *shared = json_is_string(name) ? intern(nc, json_string_value(name)) : NULL;
            if (shared)
                json_array_append(imgs, shared);
        }
    }
    pthread_mutex_unlock(&nc->intern_mu);
    json_object_set_new(ns, "images", imgs);
    json_object_set_new(o, "status", ns);
    return o;
}

int pw_nodecache_start(pw_k8s_client *client, pw_k8s_informer_fn on_event, void *arg, pw_nodecache_raw_fn raw,
                       void *raw_arg, pw_nodecache **out)
{
    pw_nodecache *nc = pw_xcalloc(1, sizeof *nc);
    pthread_mutex_init(&nc->intern_mu, NULL);
    nc->intern = json_object();
    nc->intern_sweep_at = INTERN_SWEEP_MIN;
    /* the informer passes one arg to the transform and the hook alike: relay hands the owner its own */
    nc->hook = on_event;
    nc->hook_arg = arg;
    nc->raw = raw;
    nc->raw_arg = raw_arg;
    struct pw_k8s_informer_opts o = {.path = "/api/v1/nodes", .on_event = relay, .transform = transform_node, .arg = nc};
    int rc = pw_k8s_informer_start(client, &o, &nc->inf);
    if (rc != 0) {
        PW_ERROR("cannot start the informer of %s: %s", o.path, pw_strerror(rc));
        json_decref(nc->intern);
        pthread_mutex_destroy(&nc->intern_mu);
        free(nc);
        return rc;
    }
    *out = nc;
    return 0;
}

void pw_nodecache_free(pw_nodecache *nc)
{
    if (!nc)
        return;
    pw_k8s_informer_free(nc->inf);
    json_decref(nc->intern);
    pthread_mutex_destroy(&nc->intern_mu);
    free(nc);
}

bool pw_nodecache_synced(pw_nodecache *nc)
{
    return pw_k8s_informer_synced(nc->inf);
}

json_t *pw_nodecache_get(pw_nodecache *nc, const char *name)
{
    return pw_k8s_informer_get(nc->inf, name);
}

void pw_nodecache_each(pw_nodecache *nc, int (*fn)(void *arg, const json_t *node), void *arg)
{
    pw_k8s_informer_each(nc->inf, fn, arg);
}
