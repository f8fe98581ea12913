/* consumer.c: the webhook service's consumer thread (webhook_int.h): each task event of the stream
 * that is a start or an end becomes one delivery per receiver that wants it, its body the CloudEvent,
 * written to the store before anyone may attempt it. And the mark: the time of the last event turned
 * into deliveries, kept in the store by a thread of its own, from which the tasks that ended while
 * prewarmd was stopping are caught up (pw_wh_reconcile). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "events/events.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

#define MARK_KIND "webhook-mark"
#define MARK_KEY "consumer"
#define MARK_EVERY_MS 1000 /* the mark is written at most this often */
#define MARK_SLACK_MS 2000 /* tasks ended this long before the mark are looked at again */
#define RECONCILE_MAX 2000 /* finished tasks of each status read when catching up */

/* ---- making deliveries (consumer thread) ---- */

static const char *kind_of(const char *status)
{
    if (strcmp(status, "running") == 0)
        return "started";
    if (pw_store_status_final(status))
        return status;
    return NULL;
}

/* True when (task, kind) was handled lately; else remembers it (w->mu held). */
static bool recent_seen(pw_webhook *w, const char *task, const char *kind)
{
    char *k = pw_xasprintf("%s/%s", task, kind);
    for (size_t i = 0; i < PW_WH_RECENT; i++)
        if (w->recent[i] && strcmp(w->recent[i], k) == 0) {
            free(k);
            return true;
        }
    free(w->recent[w->recent_next]);
    w->recent[w->recent_next] = k;
    w->recent_next = (w->recent_next + 1) % PW_WH_RECENT;
    return false;
}

/* What a delivery is about: an event of the stream, or a task end found in the store after a restart. */
struct occurrence {
    uint64_t id;
    const char *task;
    int64_t time_ms;
    const char *kind;
};

static char *cloudevent(const pw_webhook *w, const struct occurrence *o, json_t *task)
{
    char id[24], type[48], t[PW_RFC3339_LEN];
    snprintf(id, sizeof id, "%llu", (unsigned long long)o->id);
    snprintf(type, sizeof type, "io.prewarm.task.%s", o->kind);
    pw_time_rfc3339_micro(o->time_ms, t);
    json_t *ce = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O}", "specversion", "1.0", "id", id, "source",
                           w->source, "type", type, "subject", o->task, "time", t, "datacontenttype",
                           "application/json", "data", task);
    char *body = json_dumps(ce, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(ce);
    return body;
}

static bool wants(const json_t *hook, const char *kind)
{
    const json_t *evs = json_object_get(hook, "events");
    if (!json_is_array(evs))
        return true;
    size_t i;
    const json_t *v;
    json_array_foreach(evs, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), kind) == 0)
            return true;
    }
    return false;
}

/* The delivery of o to one target, or NULL when it was made already (before a restart: the engine
 * publishes a resumed task again). w->mu held. */
static struct pw_wh_delivery *make_delivery(pw_webhook *w, const struct occurrence *o, bool task_scope, int index,
                                            const char *url, const char *secret_ref, const char *body)
{
    if (pw_wh_outbox_has(w->outbox, o->task, o->kind, task_scope, index))
        return NULL;
    struct pw_wh_delivery *d = pw_xcalloc(1, sizeof *d);
    char key[PW_WH_KEY_MAX];
    pw_wh_key(o->id, task_scope, index, key);
    d->key = pw_xstrdup(key);
    d->id = pw_xasprintf("%llu", (unsigned long long)o->id);
    d->task_id = pw_xstrdup(o->task);
    d->kind = pw_xstrdup(o->kind);
    d->url = pw_xstrdup(url);
    d->task_scope = task_scope;
    d->index = index;
    d->secret_ref = secret_ref ? pw_xstrdup(secret_ref) : NULL;
    d->body = pw_xstrdup(body);
    d->event_ms = o->time_ms;
    d->next_ms = d->event_ms;
    d->state = PW_WH_PENDING;
    return d;
}

/* Makes the deliveries of o (task: the task as GET shows it) that do not exist yet, each written to the
 * store before it can be attempted. How many were made. */
static size_t enqueue(pw_webhook *w, const struct occurrence *o, json_t *task)
{
    const json_t *hooks = json_object_get(task, "webhooks");
    if (w->n_urls == 0 && json_array_size(hooks) == 0)
        return 0;
    char *body = cloudevent(w, o, task);
    if (!body)
        return 0;
    struct pw_wh_delivery *made[PW_WEBHOOK_MAX_URLS + PW_WEBHOOK_MAX_PER_TASK];
    size_t n = 0, added = 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_urls; i++)
        made[n++] = make_delivery(w, o, false, (int)i, w->urls[i], NULL, body);
    size_t i;
    const json_t *h;
    json_array_foreach(hooks, i, h) {
        const char *url = json_string_value(json_object_get(h, "url"));
        if (url && wants(h, o->kind) && i < PW_WEBHOOK_MAX_PER_TASK)
            made[n++] = make_delivery(w, o, true, (int)i, url, json_string_value(json_object_get(h, "secretRef")), body);
    }
    pthread_mutex_unlock(&w->mu);
    /* durable before anyone may attempt it; written without the lock, so attempts go on meanwhile */
    for (size_t k = 0; k < n; k++) {
        if (!made[k])
            continue;
        json_t *doc = pw_wh_delivery_doc(made[k]);
        int rc = pw_wh_outbox_put(w->outbox, made[k]->key, doc, PW_STORE_REC_CREATE);
        json_decref(doc);
        if (rc != 0) {
            PW_ERROR("webhook: cannot keep the %s delivery of task %s to %s in the store (%s): it is not sent",
                     o->kind, made[k]->task_id, made[k]->url, pw_strerror(rc));
            pw_wh_delivery_free(made[k]);
            made[k] = NULL;
        }
    }
    pthread_mutex_lock(&w->mu);
    for (size_t k = 0; k < n; k++) {
        if (made[k] && pw_wh_outbox_insert(w->outbox, made[k]) != 0) /* read back by set_active meanwhile */
            pw_wh_delivery_free(made[k]);
        else if (made[k])
            added++;
    }
    pw_metric_set(w->m_pending, NULL, (double)pw_wh_outbox_pending(w->outbox));
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    free(body);
    return added;
}

static void handle_event(pw_webhook *w, const pw_event *e)
{
    if (pw_event_type_of(e) != PW_EVENT_TASK)
        return;
    const char *kind = kind_of(pw_event_status(e));
    if (!kind)
        return;
    pthread_mutex_lock(&w->mu);
    bool skip = !w->active || recent_seen(w, pw_event_task(e), kind);
    pthread_mutex_unlock(&w->mu);
    if (skip)
        return;
    json_t *task = json_loads(pw_event_data(e, NULL), 0, NULL);
    if (!task)
        return;
    struct occurrence o = {pw_event_id(e), pw_event_task(e), pw_event_time_ms(e), kind};
    enqueue(w, &o, task);
    json_decref(task);
}

/* ---- the mark: every event published before it was turned into deliveries ---- */

static void mark_write(pw_webhook *w, int64_t event_ms)
{
    if (!w->store)
        return;
    json_t *doc = json_pack("{s:I}", "eventTime", (json_int_t)event_ms);
    int rc = pw_store_rec_put(w->store, MARK_KIND, MARK_KEY, doc, PW_STORE_REC_UPSERT);
    json_decref(doc);
    if (rc != 0)
        PW_WARN("webhook: cannot write the consumer's mark to the store: %s", pw_strerror(rc));
}

/* After a restart (or on becoming leader): the tasks that ended after the mark (the last event known
 * turned into deliveries, less MARK_SLACK_MS) get the end deliveries they miss: an event published
 * just before a crash, not yet in the outbox, is not lost. Without a mark (the first start) there is
 * nothing to catch up. Reads at most RECONCILE_MAX tasks of each final status, newest first. */
void pw_wh_reconcile(pw_webhook *w)
{
    if (!w->store)
        return;
    json_t *mark = NULL;
    int rc = pw_store_rec_get(w->store, MARK_KIND, MARK_KEY, &mark);
    if (rc == PW_ENOTFOUND) {
        mark_write(w, pw_clock_real_ms());
        return;
    }
    if (rc != 0) {
        PW_WARN("webhook: cannot read the consumer's mark: %s; no catching up", pw_strerror(rc));
        return;
    }
    int64_t since = (int64_t)json_integer_value(json_object_get(mark, "eventTime")) - MARK_SLACK_MS;
    json_decref(mark);
    size_t made = 0;
    for (int s = PW_TASK_SUCCEEDED; s <= PW_TASK_CANCELLED; s++) {
        char *cont = NULL;
        size_t seen = 0;
        do {
            struct pw_store_task *items = NULL;
            size_t n = 0;
            char *next = NULL;
            rc = pw_store_task_list(w->store, pw_task_status_names[s], 200, cont, &items, &n, &next);
            free(cont);
            cont = next;
            for (size_t i = 0; rc == 0 && i < n; i++) {
                if (items[i].finished_ms <= since)
                    continue;
                /* an id of its own, in the same microsecond scale as the stream's */
                struct occurrence o = {(uint64_t)items[i].finished_ms * 1000u + (uint64_t)s, items[i].id,
                                       items[i].finished_ms, pw_task_status_names[s]};
                made += enqueue(w, &o, items[i].doc);
            }
            pw_store_tasks_free(items, n);
            seen += n;
        } while (rc == 0 && cont && seen < RECONCILE_MAX);
        free(cont);
    }
    if (made)
        PW_INFO("webhook: %zu deliveries made for tasks that ended while prewarmd was stopping", made);
}

/* Writes the mark when it advanced, at most every MARK_EVERY_MS, on a thread of its own: a store
 * write waiting behind the engine's would otherwise hold up the making of deliveries. */
void *pw_wh_marker_main(void *arg)
{
    pw_webhook *w = arg;
    int64_t written = 0, written_mono = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        /* woken by every broadcast on w->work: written at most every MARK_EVERY_MS, and at the end */
        bool stop = w->stopping && w->consumer_done;
        int64_t handled = w->active ? w->handled_ms : 0;
        if (handled > written && (stop || pw_clock_mono_ms() - written_mono >= MARK_EVERY_MS)) {
            pthread_mutex_unlock(&w->mu);
            mark_write(w, handled);
            written = handled;
            written_mono = pw_clock_mono_ms();
            pthread_mutex_lock(&w->mu);
        }
        if (stop)
            break;
        struct timespec ts;
        pw_clock_deadline_ts(MARK_EVERY_MS, &ts);
        pthread_cond_timedwait(&w->work, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void *pw_wh_consumer_main(void *arg)
{
    pw_webhook *w = arg;
    pw_events_sub *sub = w->sub; /* made by pw_webhook_new: no event published after it returns is missed */
    w->sub = NULL;
    const pw_event *batch[64];
    for (;;) {
        pthread_mutex_lock(&w->mu);
        bool stop = w->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;
        pw_events_wait(w->events, pw_events_sub_cursor(sub), 200);
        size_t n = 0;
        if (pw_events_sub_read(sub, batch, 64, &n) == PW_EGONE) {
            PW_WARN("webhook: fell behind the event stream; catching up from the store's tasks");
            pw_events_sub_free(sub);
            sub = pw_events_sub_new(w->events, NULL, 0, NULL);
            pw_wh_reconcile(w);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            handle_event(w, batch[i]);
        if (n) {
            pthread_mutex_lock(&w->mu);
            if (w->active) /* every event up to the batch's last was turned into deliveries */
                w->handled_ms = pw_event_time_ms(batch[n - 1]);
            pthread_mutex_unlock(&w->mu);
        }
        for (size_t i = 0; i < n; i++)
            pw_event_release(batch[i]);
    }
    pw_events_sub_free(sub);
    pthread_mutex_lock(&w->mu);
    w->consumer_done = true;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}
