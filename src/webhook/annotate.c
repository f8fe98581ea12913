/* annotate.c: the webhook delivery state shown in GET task (pw_webhook_annotate, webhook.h): per
 * receiver of the task (its own webhooks, then the server-wide ones) the counts, the last attempt and
 * one entry per delivery, read from the outbox under w->mu. */
#include <pthread.h>
#include <stddef.h>

#include <jansson.h>

#include "base/clock.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

static void time_json(json_t *o, const char *k, int64_t ms)
{
    if (ms <= 0) {
        json_object_set_new(o, k, json_null());
        return;
    }
    char t[PW_RFC3339_LEN];
    pw_time_rfc3339_micro(ms, t);
    json_object_set_new(o, k, json_string(t));
}

struct annotate {
    json_t *targets[PW_WEBHOOK_MAX_PER_TASK + PW_WEBHOOK_MAX_URLS];
    size_t n_task;
    int64_t last_ms[PW_WEBHOOK_MAX_PER_TASK + PW_WEBHOOK_MAX_URLS];
};

static void target_init(json_t *o)
{
    json_object_set_new(o, "delivered", json_integer(0));
    json_object_set_new(o, "pending", json_integer(0));
    json_object_set_new(o, "failed", json_integer(0));
    json_object_set_new(o, "attempts", json_integer(0));
    json_object_set_new(o, "lastStatus", json_null());
    json_object_set_new(o, "lastError", json_null());
    json_object_set_new(o, "lastAttemptAt", json_null());
    json_object_set_new(o, "nextAttemptAt", json_null());
    json_object_set_new(o, "deliveries", json_array());
}

static void bump(json_t *o, const char *k, json_int_t by)
{
    json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + by));
}

static void annotate_one(void *arg, const struct pw_wh_delivery *d)
{
    struct annotate *an = arg;
    size_t slot = d->task_scope ? (size_t)d->index : an->n_task + (size_t)d->index;
    if ((d->task_scope && (size_t)d->index >= an->n_task) || slot >= sizeof an->targets / sizeof an->targets[0] ||
        !an->targets[slot])
        return;
    json_t *o = an->targets[slot];
    static const char *const state_names[] = {"pending", "delivered", "failed"};
    bump(o, state_names[d->state], 1);
    bump(o, "attempts", d->attempts);
    if (d->last_ms > an->last_ms[slot]) {
        an->last_ms[slot] = d->last_ms;
        json_object_set_new(o, "lastStatus", d->last_status ? json_integer(d->last_status) : json_null());
        json_object_set_new(o, "lastError", d->last_error ? json_string(d->last_error) : json_null());
        time_json(o, "lastAttemptAt", d->last_ms);
    }
    if (d->state == PW_WH_PENDING && json_is_null(json_object_get(o, "nextAttemptAt")))
        time_json(o, "nextAttemptAt", d->next_ms);
    json_t *one = json_pack("{s:s, s:s, s:s, s:i}", "event", d->kind, "id", d->id, "state", state_names[d->state],
                            "attempts", d->attempts);
    json_object_set_new(one, "lastStatus", d->last_status ? json_integer(d->last_status) : json_null());
    json_object_set_new(one, "lastError", d->last_error ? json_string(d->last_error) : json_null());
    time_json(one, "nextAttemptAt", d->state == PW_WH_PENDING ? d->next_ms : 0);
    json_array_append_new(json_object_get(o, "deliveries"), one);
}

void pw_webhook_annotate(pw_webhook *w, json_t *task)
{
    const char *id = json_string_value(json_object_get(task, "id"));
    if (!w || !id)
        return;
    const json_t *spec = json_object_get(task, "webhooks");
    struct annotate an = {0};
    json_t *out = json_array();
    size_t i;
    const json_t *h;
    json_array_foreach(spec, i, h) {
        if (i >= PW_WEBHOOK_MAX_PER_TASK)
            break;
        json_t *o = json_deep_copy(h);
        json_object_set_new(o, "scope", json_string("task"));
        target_init(o);
        an.targets[an.n_task++] = o;
    }
    for (size_t k = 0; k < w->n_urls; k++) {
        json_t *o = json_pack("{s:s, s:s}", "url", w->urls[k], "scope", "server");
        target_init(o);
        an.targets[an.n_task + k] = o;
    }
    pthread_mutex_lock(&w->mu);
    pw_wh_outbox_each(w->outbox, id, annotate_one, &an);
    pthread_mutex_unlock(&w->mu);
    for (size_t k = 0; k < an.n_task + w->n_urls; k++)
        json_array_append_new(out, an.targets[k]);
    if (json_array_size(out))
        json_object_set_new(task, "webhooks", out);
    else
        json_decref(out);
}
