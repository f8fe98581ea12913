/* api_gc.c: deletion as the API server does it (finalizers, propagationPolicy Background / Foreground /
 * Orphan and the per-resource defaults), the ownerReference garbage collector (a store subscriber that
 * queues work and a thread that does it), and core/v1 Events for the world's controllers.
 *
 * Thread model: the store subscriber only queues (under gc_mu); the GC thread and request threads call
 * the store. Foreground owners wait in gc_wait until their dependents are gone. */
#include "sim/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

#define EV_INDEX_MAX 200000
/* Events the controllers record are kept up to this many, oldest dropped first: a real cluster
 * expires them after an hour; a run with 100,000 pods would otherwise hold half a million. */
#define EV_KEEP 50000
/* Events live one hour in a real cluster (the API server's --event-ttl); here that hour is divided by
 * --time-scale like every modelled duration, but never less than EV_TTL_MIN_MS of real time so a test
 * can still read the events of what it just did. */
#define EV_TTL_MS 3600000.0
#define EV_TTL_MIN_MS 60000
#define EV_EXPIRE_BATCH 64
#define EV_SWEEP_MS 1000
#define EV_SWEEP_BATCH 5000

static void ev_expire(struct sim_api *api, size_t max);

static int64_t ev_ttl_ms(const struct sim *sim)
{
    double ts = sim->opt.time_scale > 0 ? sim->opt.time_scale : 1;
    int64_t ttl = (int64_t)(EV_TTL_MS / ts);
    return ttl < EV_TTL_MIN_MS ? EV_TTL_MIN_MS : ttl;
}

/* ---- dependents ---- */

typedef void (*dep_fn)(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name, void *arg);

/* Calls fn (may be NULL: just count) for every object with an ownerReference to uid whose resource is
 * still served, from a snapshot of the index taken under idx_mu (fn runs without it, so it may write
 * the store). Returns how many there were. */
static size_t each_dependent(struct sim_api *api, const char *uid, dep_fn fn, void *arg)
{
    json_t *copy = NULL;
    pthread_mutex_lock(&api->idx_mu);
    json_t *deps = json_object_get(api->owner_index, uid);
    if (deps)
        copy = json_deep_copy(deps);
    pthread_mutex_unlock(&api->idx_mu);
    size_t n = 0;
    const char *k;
    json_t *d;
    json_object_foreach(copy, k, d)
    {
        const struct rdef *rd = sim_api_find_key(api, json_string_value(json_array_get(d, 0)));
        if (!rd)
            continue;
        n++;
        if (fn)
            fn(api, rd, json_string_value(json_array_get(d, 1)), json_string_value(json_array_get(d, 2)), arg);
    }
    json_decref(copy);
    return n;
}

static void index_refs(struct sim_api *api, const json_t *obj, const struct sim_change *ch, bool add)
{
    size_t i;
    json_t *ref;
    char *key = NULL;
    json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i, ref)
    {
        const char *u = json_string_value(json_object_get(ref, "uid"));
        if (!u)
            continue;
        if (!key)
            key = pw_xasprintf("%s\x1f%s\x1f%s", ch->resource, ch->ns, ch->name);
        json_t *deps = json_object_get(api->owner_index, u);
        if (add) {
            if (!deps) {
                deps = json_object();
                json_object_set_new(api->owner_index, u, deps);
            }
            json_object_set_new(deps, key, json_pack("[s, s, s]", ch->resource, ch->ns, ch->name));
        } else if (deps) {
            json_object_del(deps, key);
            if (json_object_size(deps) == 0)
                json_object_del(api->owner_index, u);
        }
    }
    free(key);
}

static int strip_ref(void *arg, json_t *obj)
{
    const char *uid = arg;
    json_t *m = json_object_get(obj, "metadata");
    json_t *refs = json_object_get(m, "ownerReferences");
    bool changed = false;
    for (size_t i = json_array_size(refs); i-- > 0;) {
        const char *u = json_string_value(json_object_get(json_array_get(refs, i), "uid"));
        if (u && strcmp(u, uid) == 0) {
            json_array_remove(refs, i);
            changed = true;
        }
    }
    if (changed && json_array_size(refs) == 0)
        json_object_del(m, "ownerReferences");
    return changed ? 0 : 1;
}

/* Drops the ownerReference to the uid arg from one dependent. */
static void strip_dep(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name, void *uid)
{
    sim_store_mutate(api->sim->store, rd->store_key, ns, name, strip_ref, uid, NULL);
}

static void orphan_dependents(struct sim_api *api, const char *uid)
{
    each_dependent(api, uid, strip_dep, (void *)uid);
}

/* ---- deletion ---- */

static bool has_finalizers(const json_t *obj)
{
    return json_array_size(json_object_get(json_object_get(obj, "metadata"), "finalizers")) > 0;
}

static bool has_finalizer(const json_t *obj, const char *f)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "finalizers"), i, v)
    {
        if (json_string_value(v) && strcmp(json_string_value(v), f) == 0)
            return true;
    }
    return false;
}

struct mark {
    bool foreground;
    long grace; /* seconds until the deletion is due (pods on a node); 0 otherwise */
};

static int mark_deleting(void *arg, json_t *obj)
{
    struct mark *mk = arg;
    json_t *m = json_object_get(obj, "metadata");
    bool changed = false;
    if (!json_object_get(m, "deletionTimestamp")) {
        char when[32];
        pw_time_rfc3339(time(NULL) + mk->grace, when);
        json_object_set_new(m, "deletionTimestamp", json_string(when));
        json_object_set_new(m, "deletionGracePeriodSeconds", json_integer(mk->grace));
        changed = true;
    }
    if (mk->foreground && !has_finalizer(obj, "foregroundDeletion")) {
        json_t *f = json_object_get(m, "finalizers");
        if (!json_is_array(f)) {
            f = json_array();
            json_object_set_new(m, "finalizers", f);
        }
        json_array_append_new(f, json_string("foregroundDeletion"));
        changed = true;
    }
    return changed ? 0 : 1;
}

static void gc_push(struct sim_api *api, json_t *item)
{
    pthread_mutex_lock(&api->gc_mu);
    json_array_append_new(api->gc_queue, item);
    pthread_cond_signal(&api->gc_cond);
    pthread_mutex_unlock(&api->gc_mu);
}

struct ns_purge {
    struct sim_api *api;
    const char *ns;
};

static void purge_rd(const struct rdef *rd, void *arg)
{
    struct ns_purge *p = arg;
    if (!rd->namespaced || !(rd->verbs & V_DELETE))
        return;
    json_t *items;
    bool more;
    uint64_t rv;
    sim_store_list(p->api->sim->store, rd->store_key, p->ns, NULL, 0, NULL, NULL, &items, &more, &rv);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        const char *name = json_string_value(json_object_get(json_object_get(it, "metadata"), "name"));
        if (name)
            sim_api_delete_rd(p->api, rd, p->ns, name, "Background", NULL);
    }
    json_decref(items);
}

static void crd_purge(struct sim_api *api, const json_t *crd)
{
    json_t *spec = json_object_get(crd, "spec");
    const char *group = json_string_value(json_object_get(spec, "group"));
    const char *plural = json_string_value(json_object_get(json_object_get(spec, "names"), "plural"));
    if (!group || !plural)
        return;
    char *key = pw_xasprintf("%s.%s", plural, group);
    json_t *items;
    bool more;
    uint64_t rv;
    sim_store_list(api->sim->store, key, NULL, NULL, 0, NULL, NULL, &items, &more, &rv);
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        json_t *m = json_object_get(it, "metadata");
        const char *ns = json_string_value(json_object_get(m, "namespace"));
        sim_store_delete(api->sim->store, key, ns ? ns : "", json_string_value(json_object_get(m, "name")), NULL);
    }
    json_decref(items);
    free(key);
}

/* The grace period of a pod's deletion: 0 (remove now) unless it runs on a node, where the kubelet
 * stops it first: then the asked period, or spec.terminationGracePeriodSeconds (30 by default). */
static long pod_grace(const json_t *pod, long asked)
{
    json_t *spec = json_object_get(pod, "spec");
    const char *node = json_string_value(json_object_get(spec, "nodeName"));
    const char *phase = json_string_value(json_object_get(json_object_get(pod, "status"), "phase"));
    if (!node || !*node || (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)))
        return 0;
    if (asked >= 0)
        return asked;
    json_t *t = json_object_get(spec, "terminationGracePeriodSeconds");
    return json_is_integer(t) ? (long)json_integer_value(t) : 30;
}

int sim_api_delete_rd(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name, const char *policy,
               json_t **out)
{
    return sim_api_delete_grace(api, rd, ns, name, policy, -1, out);
}

int sim_api_delete_grace(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name,
                     const char *policy, long grace, json_t **out)
{
    sim_store *st = api->sim->store;
    json_t *obj;
    int rc = sim_store_get(st, rd->store_key, ns, name, &obj);
    if (rc)
        return rc;
    if (!policy)
        policy = strcmp(rd->store_key, "jobs.batch") == 0 ? "Orphan" : "Background";
    bool foreground = strcmp(policy, "Foreground") == 0;
    char uid[64];
    snprintf(uid, sizeof(uid), "%s", json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid")) ?
             json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid")) : "");
    if (strcmp(policy, "Orphan") == 0 && *uid)
        orphan_dependents(api, uid);
    long pgrace = strcmp(rd->store_key, "pods") == 0 ? pod_grace(obj, grace) : 0;
    bool pending = json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp") != NULL;
    if (pending && pgrace == 0 && grace == 0 && !has_finalizers(obj) && !foreground) {
        /* a forced deletion (grace 0) of a pod already terminating: remove it now */
    } else if (foreground || has_finalizers(obj) || pgrace > 0) {
        json_decref(obj);
        struct mark mk = {foreground, pgrace};
        json_t *marked = NULL;
        rc = sim_store_mutate(st, rd->store_key, ns, name, mark_deleting, &mk, &marked);
        if (rc)
            return rc;
        if (foreground)
            gc_push(api, json_pack("{s:s, s:I, s:s, s:s, s:s}", "op", "foreground", "rd", (json_int_t)(intptr_t)rd,
                                   "ns", ns, "name", name, "uid", uid));
        if (out)
            *out = marked;
        else
            json_decref(marked);
        return 0;
    }
    json_decref(obj);
    if (strcmp(rd->plural, "namespaces") == 0) {
        struct ns_purge p = {api, name};
        sim_api_each(api, purge_rd, &p);
    }
    json_t *last = NULL;
    rc = sim_store_delete(st, rd->store_key, ns, name, &last);
    if (rc)
        return rc;
    if (strcmp(rd->plural, "customresourcedefinitions") == 0) {
        sim_api_crd_changed(api, last, true);
        crd_purge(api, last);
    }
    if (out) {
        if (strcmp(rd->plural, "pods") == 0) {
            *out = last;
            last = NULL;
        } else {
            *out = json_pack("{s:s, s:s, s:{}, s:s, s:{s:s, s:s, s:s, s:s}}", "kind", "Status", "apiVersion", "v1",
                             "metadata", "status", "Success", "details", "name", name, "group", rd->group, "kind",
                             rd->plural, "uid", uid);
        }
    }
    json_decref(last);
    return 0;
}

void sim_api_finalize_check(struct sim_api *api, const struct rdef *rd, const json_t *obj)
{
    json_t *m = json_object_get(obj, "metadata");
    const char *ts = json_string_value(json_object_get(m, "deletionTimestamp"));
    if (!ts || has_finalizers(obj))
        return;
    time_t due;
    if (json_integer_value(json_object_get(m, "deletionGracePeriodSeconds")) > 0 && pw_time_parse_rfc3339(ts, &due) == 0 &&
        time(NULL) < due)
        return; /* a pod in its grace period: the kubelet (or the GC when it is over) removes it */
    const char *ns = json_string_value(json_object_get(m, "namespace"));
    const char *name = json_string_value(json_object_get(m, "name"));
    if (name)
        sim_store_delete(api->sim->store, rd->store_key, rd->namespaced && ns ? ns : "", name, NULL);
}

/* ---- the garbage collector ---- */

static void gc_on_change(void *arg, const struct sim_change *ch)
{
    struct sim_api *api = arg;
    json_t *m = json_object_get(ch->obj, "metadata");
    json_t *item = NULL;
    bool has_deps = false;
    pthread_mutex_lock(&api->idx_mu);
    if (ch->old)
        index_refs(api, ch->old, ch, false);
    if (ch->type != SIM_DELETED)
        index_refs(api, ch->obj, ch, true);
    const char *uid = json_string_value(json_object_get(m, "uid"));
    if (uid && ch->type == SIM_DELETED)
        has_deps = json_object_get(api->owner_index, uid) != NULL;
    pthread_mutex_unlock(&api->idx_mu);
    if (ch->type == SIM_DELETED) {
        if (has_deps)
            item = json_pack("{s:s, s:s}", "op", "orphaned", "uid", uid);
    } else if (ch->type == SIM_MODIFIED && json_object_get(m, "deletionTimestamp") && !has_finalizers(ch->obj)) {
        item = json_pack("{s:s, s:s, s:s, s:s}", "op", "finalize", "key", ch->resource, "ns", ch->ns, "name", ch->name);
    }
    if (item)
        gc_push(api, item);
}

/* A dependent of the deleted owner uid (arg): deleted when that was its only owner, else the
 * reference is dropped. */
static void orphan_dep(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name, void *uid)
{
    json_t *obj;
    if (sim_store_get(api->sim->store, rd->store_key, ns, name, &obj) != 0)
        return;
    size_t nrefs = json_array_size(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"));
    json_decref(obj);
    if (nrefs <= 1)
        sim_api_delete_rd(api, rd, ns, name, "Background", NULL);
    else
        sim_store_mutate(api->sim->store, rd->store_key, ns, name, strip_ref, uid, NULL);
}

static void gc_orphaned(struct sim_api *api, const char *uid)
{
    each_dependent(api, uid, orphan_dep, (void *)uid);
}

static int drop_foreground(void *arg, json_t *obj)
{
    (void)arg;
    json_t *f = json_object_get(json_object_get(obj, "metadata"), "finalizers");
    bool changed = false;
    for (size_t i = json_array_size(f); i-- > 0;) {
        const char *s = json_string_value(json_array_get(f, i));
        if (s && strcmp(s, "foregroundDeletion") == 0) {
            json_array_remove(f, i);
            changed = true;
        }
    }
    if (changed && json_array_size(f) == 0)
        json_object_del(json_object_get(obj, "metadata"), "finalizers");
    return changed ? 0 : 1;
}

/* Deletes one dependent of a foreground owner (in the background, as the real GC does). */
static void delete_dep(struct sim_api *api, const struct rdef *rd, const char *ns, const char *name, void *unused)
{
    (void)unused;
    sim_api_delete_rd(api, rd, ns, name, "Background", NULL);
}

/* A foreground owner: true when it is finished (dependents gone and the finalizer dropped). */
static bool gc_foreground(struct sim_api *api, const json_t *item, bool first)
{
    const struct rdef *rd = (const struct rdef *)(intptr_t)json_integer_value(json_object_get(item, "rd"));
    const char *ns = json_string_value(json_object_get(item, "ns"));
    const char *name = json_string_value(json_object_get(item, "name"));
    const char *uid = json_string_value(json_object_get(item, "uid"));
    if (first)
        each_dependent(api, uid, delete_dep, NULL);
    if (each_dependent(api, uid, NULL, NULL) > 0)
        return false;
    json_t *out = NULL;
    if (sim_store_mutate(api->sim->store, rd->store_key, ns, name, drop_foreground, NULL, &out) == 0) {
        const char *ouid = json_string_value(json_object_get(json_object_get(out, "metadata"), "uid"));
        if (ouid && strcmp(ouid, uid) == 0)
            sim_api_finalize_check(api, rd, out);
        json_decref(out);
    }
    return true;
}

/* An object whose deletion is pending with no finalizers left: removed now, or once its grace period
 * is over (a pod the kubelet did not remove in time). True when nothing is left to wait for. */
static bool finalize(struct sim_api *api, const char *key, const char *ns, const char *name, void *unused)
{
    (void)unused;
    json_t *obj;
    if (sim_store_get(api->sim->store, key, ns, name, &obj) != 0)
        return true;
    json_t *m = json_object_get(obj, "metadata");
    const char *ts = json_string_value(json_object_get(m, "deletionTimestamp"));
    bool done = true;
    if (ts && !has_finalizers(obj)) {
        time_t due = 0;
        if (json_integer_value(json_object_get(m, "deletionGracePeriodSeconds")) > 0 &&
            pw_time_parse_rfc3339(ts, &due) == 0 && time(NULL) < due)
            done = false; /* the kubelet's turn; retried by the GC loop */
        else
            sim_store_delete(api->sim->store, key, ns, name, NULL);
    }
    json_decref(obj);
    return done;
}

/* The key of a waiting item in gc_wait (an object, so an item waits once however often it comes). */
static char *wait_key(const json_t *it)
{
    const char *op = json_string_value(json_object_get(it, "op"));
    if (strcmp(op, "foreground") == 0)
        return pw_xasprintf("fg|%s", json_string_value(json_object_get(it, "uid")));
    return pw_xasprintf("fin|%s|%s|%s", json_string_value(json_object_get(it, "key")),
                        json_string_value(json_object_get(it, "ns")), json_string_value(json_object_get(it, "name")));
}

static bool wait_item(struct sim_api *api, const json_t *it)
{
    const char *op = json_string_value(json_object_get(it, "op"));
    if (strcmp(op, "foreground") == 0)
        return gc_foreground(api, it, false);
    return finalize(api, json_string_value(json_object_get(it, "key")), json_string_value(json_object_get(it, "ns")),
                    json_string_value(json_object_get(it, "name")), NULL);
}

#define GC_RECHECK_MS 200

static void *gc_main(void *arg)
{
    struct sim_api *api = arg;
    int64_t last_recheck = 0, last_sweep = pw_clock_mono_ms();
    pthread_mutex_lock(&api->gc_mu);
    for (;;) {
        if (pw_clock_mono_ms() - last_sweep >= EV_SWEEP_MS) {
            pthread_mutex_unlock(&api->gc_mu);
            ev_expire(api, EV_SWEEP_BATCH);
            last_sweep = pw_clock_mono_ms();
            pthread_mutex_lock(&api->gc_mu);
        }
        if (json_array_size(api->gc_queue) == 0 && !api->gc_stopping) {
            /* a timed wait either way: waiting items are rechecked, and the event sweep runs about
             * once a second */
            struct timespec ts;
            pw_clock_deadline_ts(json_object_size(api->gc_wait) ? GC_RECHECK_MS : EV_SWEEP_MS, &ts);
            pthread_cond_timedwait(&api->gc_cond, &api->gc_mu, &ts);
        }
        if (api->gc_stopping)
            break;
        json_t *work = api->gc_queue;
        api->gc_queue = json_array();
        json_t *wait = api->gc_wait; /* only this thread touches it between the swaps */
        api->gc_wait = json_object();
        pthread_mutex_unlock(&api->gc_mu);
        size_t i;
        json_t *it;
        json_array_foreach(work, i, it)
        {
            const char *op = json_string_value(json_object_get(it, "op"));
            if (strcmp(op, "orphaned") == 0) {
                gc_orphaned(api, json_string_value(json_object_get(it, "uid")));
                continue;
            }
            char *k = wait_key(it);
            bool waiting = json_object_get(wait, k) != NULL;
            bool done = strcmp(op, "foreground") == 0 ? gc_foreground(api, it, true) : waiting || wait_item(api, it);
            if (!done && !waiting)
                json_object_set(wait, k, it);
            free(k);
        }
        json_decref(work);
        /* waiting items are looked at again at most every GC_RECHECK_MS, however busy the queue */
        int64_t now = pw_clock_mono_ms();
        if (now - last_recheck >= GC_RECHECK_MS) {
            last_recheck = now;
            const char *k;
            void *tmp;
            json_object_foreach_safe(wait, tmp, k, it)
            {
                if (wait_item(api, it))
                    json_object_del(wait, k);
            }
        }
        pthread_mutex_lock(&api->gc_mu);
        json_object_update(wait, api->gc_wait); /* nothing is added meanwhile; kept for safety */
        json_decref(api->gc_wait);
        api->gc_wait = wait;
    }
    pthread_mutex_unlock(&api->gc_mu);
    return NULL;
}

int sim_api_gc_start(struct sim_api *api)
{
    pthread_mutex_init(&api->gc_mu, NULL);
    pthread_cond_init(&api->gc_cond, NULL);
    api->gc_queue = json_array();
    api->gc_wait = json_object();
    pthread_mutex_init(&api->idx_mu, NULL);
    api->owner_index = json_object();
    api->gc_sub = sim_store_subscribe(api->sim->store, gc_on_change, api);
    if (pthread_create(&api->gc_thread, NULL, gc_main, api) != 0) {
        PW_ERROR("kubesim api: cannot start the garbage collector's thread");
        sim_store_unsubscribe(api->sim->store, api->gc_sub);
        json_decref(api->gc_queue);
        json_decref(api->gc_wait);
        json_decref(api->owner_index);
        pthread_mutex_destroy(&api->idx_mu);
        pthread_cond_destroy(&api->gc_cond);
        pthread_mutex_destroy(&api->gc_mu);
        return PW_ENOMEM;
    }
    api->gc_running = true;
    return 0;
}

void sim_api_gc_stop(struct sim_api *api)
{
    if (!api->gc_running)
        return;
    api->gc_running = false;
    sim_store_unsubscribe(api->sim->store, api->gc_sub);
    pthread_mutex_lock(&api->gc_mu);
    api->gc_stopping = true;
    pthread_cond_broadcast(&api->gc_cond);
    pthread_mutex_unlock(&api->gc_mu);
    pthread_join(api->gc_thread, NULL);
    json_decref(api->gc_queue);
    json_decref(api->gc_wait);
    json_decref(api->owner_index);
    pthread_mutex_destroy(&api->idx_mu);
    pthread_cond_destroy(&api->gc_cond);
    pthread_mutex_destroy(&api->gc_mu);
}

/* ---- the world's services ---- */

int sim_api_delete(struct sim *sim, const char *resource, const char *ns, const char *name, const char *policy)
{
    if (!sim->api)
        return sim_store_delete(sim->store, resource, ns ? ns : "", name, NULL);
    const struct rdef *rd = sim_api_find_key(sim->api, resource);
    if (!rd)
        return sim_store_delete(sim->store, resource, ns ? ns : "", name, NULL);
    return sim_api_delete_rd(sim->api, rd, rd->namespaced && ns ? ns : "", name, policy, NULL);
}

struct ev_bump {
    const char *now;
};

static int ev_bump(void *arg, json_t *obj)
{
    struct ev_bump *b = arg;
    json_int_t count = json_integer_value(json_object_get(obj, "count"));
    json_object_set_new(obj, "count", json_integer(count > 0 ? count + 1 : 2));
    json_object_set_new(obj, "lastTimestamp", json_string(b->now));
    return 0;
}

static const char *infer_kind(const json_t *obj)
{
    const char *k = json_string_value(json_object_get(obj, "kind"));
    if (k)
        return k;
    json_t *spec = json_object_get(obj, "spec");
    if (json_object_get(spec, "containers"))
        return "Pod";
    if (json_object_get(spec, "template"))
        return "Job";
    if (!json_object_get(json_object_get(obj, "metadata"), "namespace"))
        return "Node";
    return "";
}

void sim_api_event(struct sim *sim, const json_t *involved, const char *type, const char *reason,
                   const char *message, const char *component, const char *host, const char *field_path)
{
    json_t *im = json_object_get(involved, "metadata");
    const char *iname = json_string_value(json_object_get(im, "name"));
    const char *ins = json_string_value(json_object_get(im, "namespace"));
    const char *iuid = json_string_value(json_object_get(im, "uid"));
    const char *kind = infer_kind(involved);
    const char *api_version = json_string_value(json_object_get(involved, "apiVersion"));
    if (!api_version)
        api_version = strcmp(kind, "Job") == 0 ? "batch/v1" : "v1";
    const char *ns = ins && *ins ? ins : "default";
    if (!iname)
        return;
    char now[32];
    pw_time_rfc3339(time(NULL), now);
    char *key = pw_xasprintf("%s|%s|%s|%s|%s|%s|%s|%s", iuid ? iuid : iname, kind, type ? type : "", reason ? reason : "",
                             message ? message : "", component ? component : "", host ? host : "",
                             field_path ? field_path : "");
    struct sim_api *api = sim->api;
    if (api) {
        pthread_mutex_lock(&api->ev_mu);
        const char *existing = json_string_value(json_object_get(api->ev_index, key));
        char *ename = existing ? pw_xstrdup(existing) : NULL;
        pthread_mutex_unlock(&api->ev_mu);
        if (ename) {
            struct ev_bump b = {now};
            int rc = sim_store_mutate(sim->store, "events", ns, ename, ev_bump, &b, NULL);
            free(ename);
            if (rc == 0) {
                free(key);
                return;
            }
        }
    }
    char ename[400];
    /* a sequence number keeps names unique when several events of one object come in the same ms */
    static unsigned long long ev_seq;
    unsigned long long seq = __atomic_fetch_add(&ev_seq, 1, __ATOMIC_RELAXED);
    snprintf(ename, sizeof(ename), "%.230s.%llx", iname,
             (unsigned long long)pw_clock_real_ms() * 1000000ULL + (seq % 1000000ULL));
    json_t *io = json_pack("{s:s, s:s, s:s}", "kind", kind, "name", iname, "apiVersion", api_version);
    if (ins && *ins)
        json_object_set_new(io, "namespace", json_string(ins));
    if (iuid)
        json_object_set_new(io, "uid", json_string(iuid));
    json_t *irv = json_object_get(im, "resourceVersion");
    if (irv)
        json_object_set(io, "resourceVersion", irv);
    if (field_path)
        json_object_set_new(io, "fieldPath", json_string(field_path));
    json_t *src = json_pack("{s:s}", "component", component ? component : "");
    if (host)
        json_object_set_new(src, "host", json_string(host));
    json_t *ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:s, s:s, s:o, s:s, s:s, s:i, s:s, s:n, s:s, s:s}",
                           "apiVersion", "v1", "kind", "Event", "metadata", "name", ename, "namespace", ns,
                           "involvedObject", io, "reason", reason ? reason : "", "message", message ? message : "",
                           "source", src, "firstTimestamp", now, "lastTimestamp", now, "count", 1, "type",
                           type ? type : "Normal", "eventTime", "reportingComponent", component ? component : "",
                           "reportingInstance", host ? host : "");
    json_t *out = NULL;
    if (sim_store_create(sim->store, "events", ns, ev, &out) == 0 && api) {
        int64_t now_ms = pw_clock_mono_ms();
        pthread_mutex_lock(&api->ev_mu);
        if (json_object_size(api->ev_index) >= EV_INDEX_MAX)
            json_object_clear(api->ev_index);
        json_object_set_new(api->ev_index, key, json_string(ename));
        json_array_append_new(api->ev_fifo, json_pack("[s, s, I, s]", ns, ename, (json_int_t)now_ms, key));
        pthread_mutex_unlock(&api->ev_mu);
    }
    json_decref(out);
    free(key);
    if (api)
        ev_expire(api, EV_EXPIRE_BATCH);
}

/* Deletes up to max of the oldest events that are over the count cap or past the TTL. Called after
 * each new event (so the backlog cannot grow) and about once a second by the GC thread (so events
 * expire in a quiet cluster too). Takes ev_mu; any thread but the store's callbacks. */
static void ev_expire(struct sim_api *api, size_t max)
{
    json_t *drop = json_array();
    int64_t now_ms = pw_clock_mono_ms();
    int64_t ttl = ev_ttl_ms(api->sim);
    pthread_mutex_lock(&api->ev_mu);
    {
        while (json_array_size(api->ev_fifo) - api->ev_head > 0 && json_array_size(drop) < max) {
            json_t *front = json_array_get(api->ev_fifo, api->ev_head);
            bool over = json_array_size(api->ev_fifo) - api->ev_head > EV_KEEP;
            if (!over && now_ms - json_integer_value(json_array_get(front, 2)) < ttl)
                break;
            json_array_append(drop, front);
            api->ev_head++;
            /* its index entry goes with it, unless a newer event took the key */
            const char *fkey = json_string_value(json_array_get(front, 3));
            const char *iname2 = json_string_value(json_object_get(api->ev_index, fkey));
            if (iname2 && strcmp(iname2, json_string_value(json_array_get(front, 1))) == 0)
                json_object_del(api->ev_index, fkey);
        }
        if (api->ev_head >= EV_KEEP / 2 || (api->ev_head > 0 && api->ev_head == json_array_size(api->ev_fifo))) {
            /* drop the consumed front: amortized O(1) */
            json_t *rest = json_array();
            for (size_t i = api->ev_head; i < json_array_size(api->ev_fifo); i++)
                json_array_append(rest, json_array_get(api->ev_fifo, i));
            json_decref(api->ev_fifo);
            api->ev_fifo = rest;
            api->ev_head = 0;
        }
    }
    pthread_mutex_unlock(&api->ev_mu);
    size_t i;
    json_t *d;
    json_array_foreach(drop, i, d)
        sim_store_delete(api->sim->store, "events", json_string_value(json_array_get(d, 0)),
                         json_string_value(json_array_get(d, 1)), NULL);
    json_decref(drop);
}
