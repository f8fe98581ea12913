/* api_watch.c: watch streams: the initial ADDED events, the store subscription that feeds a stream
 * (filtered by namespace and selectors, with DELETED for objects that leave the selection), the
 * 410 ERROR for a resourceVersion older than the history, BOOKMARK events, timeoutSeconds, and the
 * ticker thread that sends bookmarks and reaps closed, expired or fault-dropped streams.
 *
 * Thread model: store callbacks run under the store lock on whichever thread wrote; they only format
 * and queue (pw_http_stream_write never blocks). Each watcher's mutex orders its writes so bookmarks
 * never interleave with events; lock order is store lock -> watcher mutex. Only the ticker (or stop)
 * unsubscribes and frees a watcher, after it left api->watchers. */
#include "sim/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"

#define TICK_MS 100
#define BOOKMARK_QUIET_MS 1000 /* a bookmark when nothing was written for this long */
#define BOOKMARK_MAX_MS 5000   /* and at least this often */

struct watcher {
    struct sim_api *api;
    pthread_mutex_t mu;
    pw_http_stream *stream;
    const struct rdef *rd;
    char *ns; /* NULL: all namespaces */
    pw_labelsel *ls;
    struct fieldsel *fs;
    bool bookmarks;
    int table; /* 0: objects; else Tables (kubectl get -w) with includeObject 1 None, 2 Metadata, 3 Object */
    int64_t deadline_ms; /* 0: none */
    int64_t started_ms;
    int64_t last_write_ms, last_bookmark_ms;
    uint64_t last_rv;
    bool dead;
    int sub_id;
    struct watcher *next;
};

static const char *const TYPE_NAMES[] = {"ADDED", "MODIFIED", "DELETED"};

static char *event_text(const struct rdef *rd, const char *type, json_t *obj, int table, size_t *len)
{
    json_t *o;
    if (table) {
        json_t *items = json_pack("[O]", obj);
        const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
        o = sim_api_table(rd, items, rv ? rv : "", table - 1, time(NULL));
        json_decref(items);
    } else {
        o = sim_api_with_kind(rd, obj);
    }
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *line = pw_xasprintf("{\"type\":\"%s\",\"object\":%s}\n", type, body ? body : "{}");
    free(body);
    *len = strlen(line);
    return line;
}

/* Writes a line; w->mu held. */
static void w_write(struct watcher *w, const char *text, size_t len)
{
    if (w->dead)
        return;
    if (pw_http_stream_write(w->stream, text, len) != 0)
        w->dead = true;
    w->last_write_ms = pw_clock_mono_ms();
}

static bool w_matches(const struct watcher *w, const json_t *obj)
{
    if (!obj)
        return false;
    return pw_labelsel_matches(w->ls, json_object_get(json_object_get(obj, "metadata"), "labels")) &&
           sim_api_fieldsel_matches(w->fs, obj);
}

static void on_change(void *arg, const struct sim_change *ch)
{
    struct watcher *w = arg;
    pthread_mutex_lock(&w->mu);
    if (ch->rv > w->last_rv)
        w->last_rv = ch->rv;
    if (w->dead || strcmp(ch->resource, w->rd->store_key) != 0 || (w->ns && strcmp(w->ns, ch->ns) != 0)) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    bool now_in = w_matches(w, ch->obj);
    bool was_in = w_matches(w, ch->old);
    int type = -1;
    if (ch->type == SIM_ADDED)
        type = now_in ? SIM_ADDED : -1;
    else if (ch->type == SIM_MODIFIED)
        type = now_in && was_in ? SIM_MODIFIED : now_in ? SIM_ADDED : was_in ? SIM_DELETED : -1;
    else
        type = now_in || was_in ? SIM_DELETED : -1;
    if (type < 0) {
        pthread_mutex_unlock(&w->mu);
        return;
    }
    /* one serialized event shared by the watchers that receive the same change (all callbacks for
     * one change run back to back under the store lock) */
    struct sim_api_evcache *c = &w->api->evcache;
    pthread_mutex_lock(&c->mu);
    if (!c->text || c->rv != ch->rv || c->type != type || c->rd != w->rd || c->table != w->table) {
        free(c->text);
        c->text = event_text(w->rd, TYPE_NAMES[type], ch->obj, w->table, &c->len);
        c->rv = ch->rv;
        c->type = type;
        c->rd = w->rd;
        c->table = w->table;
    }
    w_write(w, c->text, c->len);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&w->mu);
}

static void w_bookmark(struct watcher *w, uint64_t rv, bool initial_end)
{
    char gv[256], rvs[32];
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
    json_t *meta = json_pack("{s:s}", "resourceVersion", rvs);
    if (initial_end)
        json_object_set_new(meta, "annotations", json_pack("{s:s}", "k8s.io/initial-events-end", "true"));
    json_t *ev = json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "BOOKMARK", "object", "kind", w->rd->kind,
                           "apiVersion", sim_api_gv(w->rd, gv, sizeof(gv)), "metadata", meta);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    size_t len = strlen(text);
    text = pw_xrealloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = 0;
    w_write(w, text, len + 1);
    free(text);
    w->last_bookmark_ms = pw_clock_mono_ms();
}

/* The initial events of a big list (10,000 nodes: 25 MB) would pass the stream's backlog cap at once:
 * the handler waits for the client to drain below PACE_BYTES (bounded by PACE_MAX_MS in all). w->mu is
 * held, but no subscription exists yet, so no store writer waits on it. */
#define PACE_BYTES (4u << 20)
#define PACE_MAX_MS 120000
static void w_pace(struct watcher *w)
{
    int64_t until = pw_clock_mono_ms() + PACE_MAX_MS;
    while (!w->dead && pw_http_stream_pending(w->stream) > PACE_BYTES) {
        if (pw_http_stream_dead(w->stream) || pw_clock_mono_ms() > until) {
            w->dead = true;
            break;
        }
        pw_clock_sleep_ms(2);
    }
}

static void w_free(struct watcher *w)
{
    pw_labelsel_free(w->ls);
    sim_api_fieldsel_free(w->fs);
    free(w->ns);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static bool initial_filter(void *arg, const json_t *obj)
{
    return w_matches(arg, obj);
}

/* A watch between its stream's start and its subscription. */
struct init_job {
    struct watcher *w;
    json_t *items; /* the initial list, or NULL */
    uint64_t rv;   /* the list's resourceVersion */
    uint64_t from_rv;
    bool initial;
    bool initial_bookmark; /* sendInitialEvents: the BOOKMARK that ends them */
    bool threaded;
};

#define INLINE_ITEMS 2000

/* The rest of a watch after its stream started: the initial events, the subscription, the watcher list.
 * Takes j. */
static void watch_begin(struct init_job *j)
{
    struct watcher *w = j->w;
    struct sim_api *api = w->api;
    uint64_t from_rv = j->from_rv;
    if (j->initial) {
        size_t i;
        json_t *it;
        pthread_mutex_lock(&w->mu);
        pw_buf b;
        pw_buf_init(&b, 0);
        json_array_foreach(j->items, i, it)
        {
            if (w->dead)
                break;
            if (w->table) {
                size_t len;
                char *text = event_text(w->rd, "ADDED", it, w->table, &len);
                pw_buf_append(&b, text, len);
                free(text);
            } else {
                pw_buf_puts(&b, "{\"type\":\"ADDED\",\"object\":");
                sim_api_cache_append(api->objcache, w->rd, it, &b);
                pw_buf_puts(&b, "}\n");
            }
            if (b.len > (1u << 20)) {
                w_write(w, b.p, b.len);
                pw_buf_reset(&b);
                if (j->threaded)
                    w_pace(w);
            }
        }
        if (b.len)
            w_write(w, b.p, b.len);
        pw_buf_fini(&b);
        w->last_rv = j->rv;
        if (j->initial_bookmark)
            w_bookmark(w, j->rv, true);
        pthread_mutex_unlock(&w->mu);
        if (!j->from_rv || j->rv > from_rv)
            from_rv = j->rv;
    }
    json_decref(j->items);
    bool threaded = j->threaded;
    free(j);
    pthread_mutex_lock(&w->mu);
    if (w->last_rv < from_rv)
        w->last_rv = from_rv;
    pthread_mutex_unlock(&w->mu);
    int id = sim_store_subscribe_from(api->sim->store, from_rv, on_change, w);
    if (id < 0) {
        pthread_mutex_lock(&api->mu);
        uint64_t oldest = api->compact_rv;
        api->watches_total++; /* a watch request, answered with its ERROR event */
        pthread_mutex_unlock(&api->mu);
        if (!oldest)
            oldest = sim_store_rv(api->sim->store);
        char *m = pw_xasprintf("too old resource version: %llu (%llu)", (unsigned long long)from_rv,
                               (unsigned long long)oldest);
        json_t *ev = json_pack("{s:s, s:o}", "type", "ERROR", "object", sim_api_status_obj(410, "Expired", m, NULL));
        free(m);
        char *text = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        pw_http_stream_write(w->stream, text, strlen(text));
        pw_http_stream_write(w->stream, "\n", 1);
        free(text);
        pw_http_stream_close(w->stream);
        w_free(w);
    } else {
        w->sub_id = id;
        pthread_mutex_lock(&api->mu);
        w->next = api->watchers;
        api->watchers = w;
        api->watches_open++;
        api->watches_total++;
        if (api->stopping) /* stop already reaped the list: the ticker is gone, so end it here */
            w->dead = true;
        pthread_cond_signal(&api->cond);
        pthread_mutex_unlock(&api->mu);
    }
    if (threaded) {
        pthread_mutex_lock(&api->mu);
        api->init_threads--;
        pthread_cond_broadcast(&api->cond);
        pthread_mutex_unlock(&api->mu);
    }
}

static void *watch_begin_thread(void *arg)
{
    watch_begin(arg);
    return NULL;
}

void sim_api_watch_serve(struct rreq *r, const pw_labelsel *ls, struct fieldsel *fs)
{
    struct sim_api *api = r->api;
    const char *rvq = pw_http_req_query(r->req, "resourceVersion");
    const char *to = pw_http_req_query(r->req, "timeoutSeconds");
    const char *bm = pw_http_req_query(r->req, "allowWatchBookmarks");
    const char *sie = pw_http_req_query(r->req, "sendInitialEvents");
    bool bookmarks = false, send_initial = false;
    if (bm)
        pw_parse_bool(bm, &bookmarks);
    if (sie)
        pw_parse_bool(sie, &send_initial);
    long timeout = 0;
    if (to && *to)
        pw_parse_long(to, 0, 100000000L, &timeout);
    uint64_t from_rv = 0;
    bool from_now = !rvq || !*rvq || strcmp(rvq, "0") == 0;
    if (!from_now) {
        char *end;
        from_rv = strtoull(rvq, &end, 10);
        if (*end) {
            pw_labelsel_free((pw_labelsel *)ls);
            sim_api_fieldsel_free(fs);
            char *m = pw_xasprintf("invalid resource version: \"%s\"", rvq);
            sim_api_status(r->req, 400, "BadRequest", m, NULL);
            free(m);
            return;
        }
    }
    struct watcher *w = pw_xcalloc(1, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    w->api = api;
    w->rd = r->rd;
    w->ns = r->rd->namespaced && r->ns ? pw_xstrdup(r->ns) : NULL;
    w->ls = (pw_labelsel *)ls;
    w->fs = fs;
    w->bookmarks = bookmarks;
    if (sim_api_wants_table(r->req)) {
        w->table = 1 + sim_api_table_include(r->req); /* 1 None, 2 Metadata, 3 Object */
    }
    w->started_ms = pw_clock_mono_ms();
    w->last_bookmark_ms = w->started_ms;
    w->deadline_ms = timeout > 0 ? w->started_ms + timeout * 1000 : 0;
    w->sub_id = -1;
    w->stream = pw_http_reply_stream(r->req, 200, "application/json");
    struct init_job *j = pw_xcalloc(1, sizeof(*j));
    *j = (struct init_job){w, NULL, 0, from_rv, from_now || send_initial, send_initial && bookmarks, false};
    if (j->initial) {
        bool more;
        sim_store_list(api->sim->store, r->rd->store_key, w->ns, NULL, 0, initial_filter, w, &j->items, &more, &j->rv);
    }
    /* The stream's bytes flow only once this handler has returned: a big initial list (more than the
     * stream's backlog cap) is written by a thread of its own that waits for the client to drain it. */
    if (json_array_size(j->items) > INLINE_ITEMS) {
        j->threaded = true;
        pthread_mutex_lock(&api->mu);
        api->init_threads++;
        pthread_mutex_unlock(&api->mu);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, watch_begin_thread, j) != 0) {
            j->threaded = false;
            pthread_mutex_lock(&api->mu);
            api->init_threads--;
            pthread_mutex_unlock(&api->mu);
            watch_begin(j);
        }
        pthread_attr_destroy(&attr);
        return;
    }
    watch_begin(j);
}

/* Unsubscribes (after which no callback runs for w), ends the stream, frees. */
static void w_reap(struct sim_api *api, struct watcher *w)
{
    sim_store_unsubscribe(api->sim->store, w->sub_id);
    pw_http_stream_close(w->stream);
    w_free(w);
}

static void *ticker(void *arg)
{
    struct sim_api *api = arg;
    pthread_mutex_lock(&api->mu);
    while (!api->stopping) {
        int64_t now = pw_clock_mono_ms();
        long drop_s = api->drop_watches_s;
        struct watcher *done = NULL;
        for (struct watcher **pp = &api->watchers; *pp;) {
            struct watcher *w = *pp;
            pthread_mutex_lock(&w->mu);
            bool close = w->dead || pw_http_stream_dead(w->stream) || (w->deadline_ms && now >= w->deadline_ms) ||
                         (drop_s > 0 && now - w->started_ms >= drop_s * 1000);
            if (!close && w->bookmarks &&
                (now - w->last_write_ms >= BOOKMARK_QUIET_MS || now - w->last_bookmark_ms >= BOOKMARK_MAX_MS) &&
                now - w->last_bookmark_ms >= BOOKMARK_QUIET_MS)
                w_bookmark(w, w->last_rv, false);
            pthread_mutex_unlock(&w->mu);
            if (close) {
                *pp = w->next;
                w->next = done;
                done = w;
                api->watches_open--;
            } else {
                pp = &w->next;
            }
        }
        if (done) {
            pthread_mutex_unlock(&api->mu);
            while (done) {
                struct watcher *n = done->next;
                w_reap(api, done);
                done = n;
            }
            pthread_mutex_lock(&api->mu);
        }
        struct timespec ts;
        pw_clock_deadline_ts(TICK_MS, &ts);
        pthread_cond_timedwait(&api->cond, &api->mu, &ts);
    }
    pthread_mutex_unlock(&api->mu);
    return NULL;
}

int sim_api_watch_start(struct sim_api *api)
{
    pthread_mutex_init(&api->evcache.mu, NULL);
    if (pthread_create(&api->ticker, NULL, ticker, api) != 0) {
        PW_ERROR("kubesim api: cannot start the watch ticker's thread");
        pthread_mutex_destroy(&api->evcache.mu);
        return PW_ENOMEM;
    }
    api->ticker_running = true;
    return 0;
}

void sim_api_watch_stop(struct sim_api *api)
{
    if (!api->ticker_running)
        return;
    api->ticker_running = false;
    pthread_mutex_lock(&api->mu);
    api->stopping = true;
    pthread_cond_broadcast(&api->cond);
    pthread_mutex_unlock(&api->mu);
    pthread_join(api->ticker, NULL);
    /* watches still writing their initial list end soon: their streams are dead once the server is freed */
    pthread_mutex_lock(&api->mu);
    int64_t until = pw_clock_mono_ms() + 10000;
    while (api->init_threads > 0 && pw_clock_mono_ms() < until) {
        pthread_mutex_unlock(&api->mu);
        pw_clock_sleep_ms(5);
        pthread_mutex_lock(&api->mu);
    }
    if (api->init_threads > 0)
        PW_WARN("kubesim api: %d watch threads still running at stop", api->init_threads);
    struct watcher *w = api->watchers;
    api->watchers = NULL;
    pthread_mutex_unlock(&api->mu);
    while (w) {
        struct watcher *n = w->next;
        w_reap(api, w);
        w = n;
    }
    free(api->evcache.text);
    api->evcache.text = NULL;
    pthread_mutex_destroy(&api->evcache.mu);
}
