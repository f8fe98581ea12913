/* informer.c: list + watch + a local cache, on a thread of its own per informer.
 *
 * The thread lists the collection in pages (limit=page_size, following continue tokens; a page whose
 * token expired restarts the list), swaps the result into the cache and delivers the differences from
 * the previous cache as events (everything is ADDED on the first sync). It then watches from the
 * list's resourceVersion with bookmarks and a randomised server-side timeout: a stream that ends
 * normally is re-opened from the last resourceVersion seen; an ERROR event (410 Expired above all) or
 * an HTTP 410 makes it list again; connection errors and other failures back off (0.5 s doubling to
 * 30 s, with jitter). The stop flag is checked by curl's progress callback (about once a second even on
 * an idle stream) and by every backoff sleep, so pw_k8s_informer_free returns promptly.
 *
 * Thread model: the informer's thread is the only writer of the cache; get/each/size/synced take the
 * cache mutex and may be called from any thread. Callbacks run on the informer's thread with no lock
 * held, one at a time, in event order. Cached objects are shared (reference counted) and must not be
 * modified by anyone. */
#include "k8s/k8s_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "metrics/metrics.h"

enum {
    BACKOFF_MIN_MS = 500,
    BACKOFF_MAX_MS = 30000,
    WATCH_SLACK_S = 30,          /* a watch transfer is cut this long after its timeoutSeconds */
    WATCH_MIN_HEALTHY_MS = 1000, /* a watch that ends sooner with no event counts as a failure */
    WATCH_EVENT_MAX = 16 << 20,
};

struct pw_k8s_informer {
    pw_k8s_client *c; /* borrowed */
    char *path;
    char *label_selector;
    char *field_selector;
    pw_k8s_informer_fn on_event;
    pw_k8s_transform_fn transform;
    void *arg;
    int page_size;
    int watch_timeout_s;

    pthread_t thread;
    atomic_bool stop;

    pthread_mutex_t mu; /* guards cache and synced */
    pthread_cond_t cv;
    json_t *cache; /* key -> object (shared, never modified) */
    bool synced;

    /* the thread's own state */
    char *rv; /* the last resourceVersion seen */
    int64_t backoff_ms;
    uint64_t lists, watches; /* for logs */
    char resource[64];       /* the metrics label (pw_k8s_resource of path) */
    pw_k8s_informer *live_next; /* in live_informers */
};

/* ---- metrics: lists and watch restarts counted as they happen, cache sizes read at scrape from
 * the informers alive (one list of them for the process) ---- */

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static pw_k8s_informer *live_informers;
static pw_metric *m_relists, *m_restarts, *m_objects;

static void informer_collect(void *arg)
{
    (void)arg;
    pw_metric_clear(m_objects);
    pthread_mutex_lock(&live_mu);
    for (pw_k8s_informer *i = live_informers; i; i = i->live_next)
        pw_metric_add(m_objects, (const char *[]){i->resource}, (double)pw_k8s_informer_size(i));
    pthread_mutex_unlock(&live_mu);
}

static void informer_metrics_init(void)
{
    pw_metrics *r = pw_metrics_default();
    m_relists = pw_metrics_counter(r, "prewarm_kube_relists_total",
                                   "Informer lists after the first (a watch expired or failed), by resource.", "resource");
    m_restarts = pw_metrics_counter(r, "prewarm_kube_watch_restarts_total",
                                    "Informer watch streams that ended and were opened again, by resource and why "
                                    "(timeout: the server's timeout, expired: 410 Gone, error).",
                                    "resource,reason");
    m_objects = pw_metrics_gauge(r, "prewarm_kube_informer_objects", "Objects in the informer caches, by resource.",
                                 "resource");
    pw_metrics_add_collector(r, informer_collect, NULL);
}

static void live_add(pw_k8s_informer *inf)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, informer_metrics_init);
    pthread_mutex_lock(&live_mu);
    inf->live_next = live_informers;
    live_informers = inf;
    pthread_mutex_unlock(&live_mu);
}

static void live_remove(pw_k8s_informer *inf)
{
    pthread_mutex_lock(&live_mu);
    for (pw_k8s_informer **pp = &live_informers; *pp; pp = &(*pp)->live_next)
        if (*pp == inf) {
            *pp = inf->live_next;
            break;
        }
    pthread_mutex_unlock(&live_mu);
}

/* What a watch stream came to. */
enum watch_end { W_ENDED, W_RELIST, W_FAILED, W_STOPPED };

/* ---- small helpers ---- */

static void set_rv(pw_k8s_informer *inf, const char *rv)
{
    if (!rv || !*rv)
        return;
    free(inf->rv);
    inf->rv = pw_xstrdup(rv);
}

/* "ns/name" or "name"; caller frees. NULL for an object without a name. */
static char *obj_key(const json_t *obj)
{
    const char *name = pw_k8s_name(obj);
    if (!name)
        return NULL;
    const char *ns = pw_k8s_namespace(obj);
    return ns && *ns ? pw_xasprintf("%s/%s", ns, name) : pw_xstrdup(name);
}

static void pct_append(pw_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '_' || ch == '.' || ch == '~') {
            pw_buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            pw_buf_append(b, e, 3);
        }
    }
}

/* path + "?" or "&" + k=escaped(v). */
static void query_add(pw_buf *b, const char *k, const char *v)
{
    if (!v)
        return;
    pw_buf_printf(b, "%c%s=", strchr(b->p ? b->p : "", '?') ? '&' : '?', k);
    pct_append(b, v);
}

static json_t *apply_transform(pw_k8s_informer *inf, json_t *obj)
{
    if (!inf->transform)
        return json_incref(obj);
    return inf->transform(inf->arg, obj);
}

static void deliver(pw_k8s_informer *inf, enum pw_k8s_event ev, const json_t *obj, const json_t *old)
{
    if (inf->on_event)
        inf->on_event(inf->arg, ev, obj, old);
}

/* Sleeps the current backoff (with jitter) and doubles it. False when stopped. */
static bool backoff(pw_k8s_informer *inf)
{
    if (inf->backoff_ms < BACKOFF_MIN_MS)
        inf->backoff_ms = BACKOFF_MIN_MS;
    int64_t d = inf->backoff_ms / 2 + (int64_t)((double)(inf->backoff_ms / 2) * ((double)random() / RAND_MAX));
    inf->backoff_ms *= 2;
    if (inf->backoff_ms > BACKOFF_MAX_MS)
        inf->backoff_ms = BACKOFF_MAX_MS;
    int64_t end = pw_clock_mono_ms() + d;
    while (!atomic_load(&inf->stop)) {
        int64_t left = end - pw_clock_mono_ms();
        if (left <= 0)
            return true;
        pw_clock_sleep_ms(left > 100 ? 100 : left);
    }
    return false;
}

/* ---- list ---- */

/* Fills kind/apiVersion on list items that lack them (the API omits them inside lists). */
static void fill_type(json_t *item, const char *list_kind, const char *api_version)
{
    if (!json_object_get(item, "kind") && list_kind) {
        size_t n = strlen(list_kind);
        if (n > 4 && strcmp(list_kind + n - 4, "List") == 0)
            json_object_set_new(item, "kind", json_stringn(list_kind, n - 4));
    }
    if (!json_object_get(item, "apiVersion") && api_version)
        json_object_set_new(item, "apiVersion", json_string(api_version));
}

/* Lists every page into a fresh key->object map. 0, PW_EGONE (a continue token expired: list again),
 * PW_ECANCELED, or another error. */
static int list_all(pw_k8s_informer *inf, json_t **out, char **list_rv)
{
    json_t *fresh = json_object();
    char *cont = NULL;
    char *rv = NULL;
    int rc = 0;
    do {
        pw_buf url;
        pw_buf_init(&url, 0);
        pw_buf_puts(&url, inf->path);
        char lim[32];
        snprintf(lim, sizeof lim, "%d", inf->page_size);
        query_add(&url, "limit", lim);
        query_add(&url, "labelSelector", inf->label_selector);
        query_add(&url, "fieldSelector", inf->field_selector);
        query_add(&url, "continue", cont);
        int status = 0;
        json_t *resp = NULL;
        rc = pw_k8s_request_ex(inf->c, "GET", url.p, NULL, NULL, &status, &resp, &inf->stop);
        pw_buf_fini(&url);
        free(cont);
        cont = NULL;
        if (rc == 0 && status == 410) {
            PW_INFO("k8s informer %s: list continue token expired; listing again", inf->path);
            rc = PW_EGONE;
        } else if (rc == 0 && status != 200) {
            const char *m = pw_k8s_status_message(resp);
            PW_WARN("k8s informer %s: list failed: HTTP %d%s%s", inf->path, status, m ? ": " : "", m ? m : "");
            rc = status == 401 ? PW_EAUTH : status == 403 ? PW_EFORBIDDEN : PW_EUNAVAIL;
        } else if (rc == 0 && !json_is_array(json_object_get(resp, "items"))) {
            PW_WARN("k8s informer %s: list answer has no items", inf->path);
            rc = PW_EPROTO;
        }
        if (rc != 0) {
            json_decref(resp);
            break;
        }
        const json_t *meta = json_object_get(resp, "metadata");
        const char *prv = json_string_value(json_object_get(meta, "resourceVersion"));
        if (prv && !rv)
            rv = pw_xstrdup(prv);
        const char *c = json_string_value(json_object_get(meta, "continue"));
        cont = c && *c ? pw_xstrdup(c) : NULL;
        const char *kind = json_string_value(json_object_get(resp, "kind"));
        const char *apiv = json_string_value(json_object_get(resp, "apiVersion"));
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(resp, "items"), i, item)
        {
            fill_type(item, kind, apiv);
            char *key = obj_key(item);
            json_t *t = key ? apply_transform(inf, item) : NULL;
            if (t)
                json_object_set_new(fresh, key, t);
            free(key);
        }
        json_decref(resp);
    } while (cont && !atomic_load(&inf->stop));
    free(cont);
    if (rc == 0 && atomic_load(&inf->stop))
        rc = PW_ECANCELED;
    if (rc != 0) {
        json_decref(fresh);
        free(rv);
        return rc;
    }
    *out = fresh;
    *list_rv = rv;
    return 0;
}

/* Delivers obj, now cached where prev (NULL: nothing) was: ADDED when new, MODIFIED when its
 * resourceVersion changed (or either has none), nothing when it is the same version. Used by both
 * relist and watch so they agree on what counts as a change. */
static void deliver_upsert(pw_k8s_informer *inf, const json_t *obj, const json_t *prev)
{
    if (!prev) {
        deliver(inf, PW_K8S_ADDED, obj, NULL);
        return;
    }
    const char *a = pw_k8s_resource_version(obj), *b = pw_k8s_resource_version(prev);
    if (!a || !b || strcmp(a, b) != 0)
        deliver(inf, PW_K8S_MODIFIED, obj, prev);
}

/* Lists, swaps the cache, and delivers the differences. */
static int relist(pw_k8s_informer *inf)
{
    json_t *fresh = NULL;
    char *rv = NULL;
    int rc = list_all(inf, &fresh, &rv);
    if (rc != 0)
        return rc;
    inf->lists++;
    pthread_mutex_lock(&inf->mu);
    json_t *old = inf->cache;
    inf->cache = fresh;
    pthread_mutex_unlock(&inf->mu);
    /* the differences, with the lock released: callbacks may read the informer */
    const char *key;
    json_t *obj;
    json_object_foreach(fresh, key, obj)
    {
        deliver_upsert(inf, obj, json_object_get(old, key));
    }
    json_object_foreach(old, key, obj)
    {
        if (!json_object_get(fresh, key))
            deliver(inf, PW_K8S_DELETED, obj, obj);
    }
    json_decref(old);
    free(inf->rv);
    inf->rv = rv;
    PW_DEBUG("k8s informer %s: listed %zu objects at resourceVersion %s", inf->path, json_object_size(fresh),
             rv ? rv : "(none)");
    pthread_mutex_lock(&inf->mu);
    if (!inf->synced) {
        inf->synced = true;
        pthread_cond_broadcast(&inf->cv);
    }
    pthread_mutex_unlock(&inf->mu);
    return 0;
}

/* ---- watch ---- */

struct watch_state {
    pw_k8s_informer *inf;
    bool relist; /* an ERROR event asked for a new list */
};

/* Stores obj (already transformed, a reference we own) under key and delivers the event. */
static void cache_put(pw_k8s_informer *inf, const char *key, json_t *obj)
{
    pthread_mutex_lock(&inf->mu);
    json_t *prev = json_incref(json_object_get(inf->cache, key));
    json_object_set(inf->cache, key, obj);
    pthread_mutex_unlock(&inf->mu);
    deliver_upsert(inf, obj, prev);
    json_decref(prev);
    json_decref(obj);
}

static void cache_del(pw_k8s_informer *inf, const char *key, json_t *obj)
{
    pthread_mutex_lock(&inf->mu);
    json_t *prev = json_incref(json_object_get(inf->cache, key));
    json_object_del(inf->cache, key);
    pthread_mutex_unlock(&inf->mu);
    if (prev)
        deliver(inf, PW_K8S_DELETED, obj ? obj : prev, prev);
    json_decref(prev);
    json_decref(obj);
}

static int on_watch_event(void *arg, const char *type, json_t *obj)
{
    struct watch_state *ws = arg;
    pw_k8s_informer *inf = ws->inf;
    if (strcmp(type, "ERROR") == 0) {
        long code = (long)json_integer_value(json_object_get(obj, "code"));
        const char *m = pw_k8s_status_message(obj);
        if (code == 410)
            PW_INFO("k8s informer %s: watch expired (%s); listing again", inf->path, m ? m : "410");
        else
            PW_WARN("k8s informer %s: watch error %ld: %s; listing again", inf->path, code, m ? m : "");
        ws->relist = true;
        return 1;
    }
    set_rv(inf, pw_k8s_resource_version(obj));
    if (strcmp(type, "BOOKMARK") == 0)
        return 0;
    char *key = obj_key(obj);
    if (!key)
        return 0;
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
        json_t *t = apply_transform(inf, obj);
        if (t)
            cache_put(inf, key, t);
        else
            cache_del(inf, key, NULL); /* the transform now drops it */
    } else if (strcmp(type, "DELETED") == 0) {
        cache_del(inf, key, apply_transform(inf, obj));
    }
    free(key);
    return atomic_load(&inf->stop) ? 1 : 0;
}

static enum watch_end watch_once(pw_k8s_informer *inf)
{
    int t = inf->watch_timeout_s;
    int jitter = t / 10;
    if (jitter > 0)
        t += (int)(random() % (2 * jitter + 1)) - jitter;
    if (t < 1)
        t = 1;
    pw_buf url;
    pw_buf_init(&url, 0);
    pw_buf_puts(&url, inf->path);
    query_add(&url, "watch", "1");
    query_add(&url, "allowWatchBookmarks", "true");
    query_add(&url, "resourceVersion", inf->rv);
    char ts[32];
    snprintf(ts, sizeof ts, "%d", t);
    query_add(&url, "timeoutSeconds", ts);
    query_add(&url, "labelSelector", inf->label_selector);
    query_add(&url, "fieldSelector", inf->field_selector);
    struct watch_state ws = {.inf = inf};
    struct pw_k8s_watch_parser p;
    pw_k8s_watch_parser_init(&p, WATCH_EVENT_MAX, on_watch_event, &ws);
    int status = 0;
    json_t *errbody = NULL;
    int64_t start = pw_clock_mono_ms();
    int rc = pw_k8s_stream_get(inf->c, url.p, &p, (t + WATCH_SLACK_S) * 1000, &inf->stop, &status, &errbody);
    pw_buf_fini(&url);
    uint64_t events = p.events;
    pw_k8s_watch_parser_fini(&p);
    inf->watches++;
    enum watch_end end;
    if (atomic_load(&inf->stop) || rc == PW_ECANCELED) {
        end = W_STOPPED;
    } else if (ws.relist || (rc == 0 && status == 410)) {
        end = W_RELIST;
    } else if (rc != 0) {
        PW_WARN("k8s informer %s: watch failed: %s", inf->path, pw_strerror(rc));
        end = rc == PW_EPROTO || rc == PW_ETOOLARGE ? W_RELIST : W_FAILED;
    } else if (status != 200) {
        const char *m = pw_k8s_status_message(errbody);
        PW_WARN("k8s informer %s: watch answered HTTP %d%s%s", inf->path, status, m ? ": " : "", m ? m : "");
        end = W_FAILED;
    } else if (events == 0 && pw_clock_mono_ms() - start < WATCH_MIN_HEALTHY_MS) {
        PW_DEBUG("k8s informer %s: watch closed at once with no event", inf->path);
        end = W_FAILED;
    } else {
        end = W_ENDED;
    }
    json_decref(errbody);
    return end;
}

/* ---- the thread ---- */

static void *informer_main(void *arg)
{
    pw_k8s_informer *inf = arg;
    bool need_list = true;
    while (!atomic_load(&inf->stop)) {
        if (need_list) {
            int rc = relist(inf);
            if (rc == PW_ECANCELED)
                break;
            if (rc != 0) { /* PW_EGONE (an expired continue token) too: list again after a pause */
                if (!backoff(inf))
                    break;
                continue;
            }
            need_list = false;
            inf->backoff_ms = 0;
            if (inf->lists > 1)
                pw_metric_add(m_relists, (const char *[]){inf->resource}, 1);
        }
        switch (watch_once(inf)) {
        case W_STOPPED:
            break;
        case W_RELIST:
            need_list = true;
            pw_metric_add(m_restarts, (const char *[]){inf->resource, "expired"}, 1);
            break;
        case W_FAILED:
            pw_metric_add(m_restarts, (const char *[]){inf->resource, "error"}, 1);
            backoff(inf);
            break;
        case W_ENDED:
            pw_metric_add(m_restarts, (const char *[]){inf->resource, "timeout"}, 1);
            inf->backoff_ms = 0;
            break;
        }
    }
    return NULL;
}

int pw_k8s_informer_start(pw_k8s_client *c, const struct pw_k8s_informer_opts *opts, pw_k8s_informer **out)
{
    if (!c || !opts || !opts->path || opts->path[0] != '/' || strchr(opts->path, '?'))
        return PW_EINVAL;
    pw_k8s_informer *inf = pw_xcalloc(1, sizeof *inf);
    inf->c = c;
    inf->path = pw_xstrdup(opts->path);
    inf->label_selector = opts->label_selector && *opts->label_selector ? pw_xstrdup(opts->label_selector) : NULL;
    inf->field_selector = opts->field_selector && *opts->field_selector ? pw_xstrdup(opts->field_selector) : NULL;
    inf->on_event = opts->on_event;
    inf->transform = opts->transform;
    inf->arg = opts->arg;
    inf->page_size = opts->page_size > 0 ? opts->page_size : 500;
    inf->watch_timeout_s = opts->watch_timeout_s > 0 ? opts->watch_timeout_s : 300;
    inf->cache = json_object();
    atomic_init(&inf->stop, false);
    pthread_mutex_init(&inf->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_synced must not care about wall-clock jumps */
    pthread_cond_init(&inf->cv, &ca);
    pthread_condattr_destroy(&ca);
    pw_k8s_resource(inf->path, inf->resource, sizeof inf->resource);
    live_add(inf);
    if (pthread_create(&inf->thread, NULL, informer_main, inf) != 0) {
        live_remove(inf);
        pthread_cond_destroy(&inf->cv);
        pthread_mutex_destroy(&inf->mu);
        json_decref(inf->cache);
        free(inf->path);
        free(inf->label_selector);
        free(inf->field_selector);
        free(inf);
        return PW_ENOMEM;
    }
    *out = inf;
    return 0;
}

bool pw_k8s_informer_synced(pw_k8s_informer *inf)
{
    pthread_mutex_lock(&inf->mu);
    bool s = inf->synced;
    pthread_mutex_unlock(&inf->mu);
    return s;
}

int pw_k8s_informer_wait_synced(pw_k8s_informer *inf, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (int64_t)(timeout_ms % 1000) * 1000000;
    ts.tv_sec += timeout_ms / 1000 + (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&inf->mu);
    int rc = 0;
    while (!inf->synced && rc == 0)
        rc = pthread_cond_timedwait(&inf->cv, &inf->mu, &ts);
    bool s = inf->synced;
    pthread_mutex_unlock(&inf->mu);
    return s ? 0 : PW_ETIMEDOUT;
}

json_t *pw_k8s_informer_get(pw_k8s_informer *inf, const char *key)
{
    pthread_mutex_lock(&inf->mu);
    json_t *o = json_incref(json_object_get(inf->cache, key));
    pthread_mutex_unlock(&inf->mu);
    return o;
}

void pw_k8s_informer_each(pw_k8s_informer *inf, int (*fn)(void *arg, const json_t *obj), void *arg)
{
    pthread_mutex_lock(&inf->mu);
    const char *key;
    json_t *obj;
    json_object_foreach(inf->cache, key, obj)
    {
        if (fn(arg, obj) != 0)
            break;
    }
    pthread_mutex_unlock(&inf->mu);
}

size_t pw_k8s_informer_size(pw_k8s_informer *inf)
{
    pthread_mutex_lock(&inf->mu);
    size_t n = json_object_size(inf->cache);
    pthread_mutex_unlock(&inf->mu);
    return n;
}

void pw_k8s_informer_free(pw_k8s_informer *inf)
{
    if (!inf)
        return;
    atomic_store(&inf->stop, true);
    pthread_join(inf->thread, NULL);
    live_remove(inf);
    pthread_cond_destroy(&inf->cv);
    pthread_mutex_destroy(&inf->mu);
    json_decref(inf->cache);
    free(inf->rv);
    free(inf->path);
    free(inf->label_selector);
    free(inf->field_selector);
    free(inf);
}
