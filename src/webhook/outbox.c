/* outbox.c: the webhook outbox (webhook_int.h): deliveries in key order (an array of pointers,
 * sorted), each one a store record of kind "webhook" written through on every change. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "webhook/webhook_int.h"

#define KIND "webhook"

struct pw_wh_outbox {
    pw_store *store;
    struct pw_wh_delivery **d;
    size_t n, cap;
};

static const char *const state_names[] = {"pending", "delivered", "failed"};

void pw_wh_key(uint64_t event_id, bool task_scope, int index, char *out)
{
    snprintf(out, PW_WH_KEY_MAX, "%020llu.%c%02d", (unsigned long long)event_id, task_scope ? 't' : 's', index);
}

void pw_wh_delivery_free(struct pw_wh_delivery *d)
{
    if (!d)
        return;
    free(d->key);
    free(d->id);
    free(d->task_id);
    free(d->kind);
    free(d->url);
    free(d->secret_ref);
    free(d->body);
    free(d->last_error);
    free(d);
}

json_t *pw_wh_delivery_doc(const struct pw_wh_delivery *d)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:i, s:i}", "id", d->id, "taskId",
                          d->task_id, "event", d->kind, "url", d->url, "scope", d->task_scope ? "task" : "server",
                          "index", d->index, "state", state_names[d->state], "eventTime", (json_int_t)d->event_ms,
                          "nextAttemptAt", (json_int_t)d->next_ms, "lastAttemptAt", (json_int_t)d->last_ms,
                          "doneAt", (json_int_t)d->done_ms, "attempts", d->attempts, "lastStatus", d->last_status);
    if (d->secret_ref)
        json_object_set_new(o, "secretRef", json_string(d->secret_ref));
    if (d->last_error)
        json_object_set_new(o, "lastError", json_string(d->last_error));
    if (d->body && d->state == PW_WH_PENDING)
        json_object_set_new(o, "body", json_string(d->body));
    return o;
}

static char *str_of(const json_t *doc, const char *k)
{
    const char *s = json_string_value(json_object_get(doc, k));
    return s ? pw_xstrdup(s) : NULL;
}

static int64_t int_of(const json_t *doc, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(doc, k));
}

struct pw_wh_delivery *pw_wh_delivery_from_doc(const char *key, const json_t *doc)
{
    const char *state = json_string_value(json_object_get(doc, "state"));
    const char *scope = json_string_value(json_object_get(doc, "scope"));
    int st = -1;
    for (int i = 0; state && i < 3; i++)
        if (strcmp(state, state_names[i]) == 0)
            st = i;
    struct pw_wh_delivery *d = pw_xcalloc(1, sizeof *d);
    d->key = pw_xstrdup(key);
    d->id = str_of(doc, "id");
    d->task_id = str_of(doc, "taskId");
    d->kind = str_of(doc, "event");
    d->url = str_of(doc, "url");
    d->secret_ref = str_of(doc, "secretRef");
    d->body = str_of(doc, "body");
    d->last_error = str_of(doc, "lastError");
    d->task_scope = scope && strcmp(scope, "task") == 0;
    d->index = (int)int_of(doc, "index");
    d->event_ms = int_of(doc, "eventTime");
    d->next_ms = int_of(doc, "nextAttemptAt");
    d->last_ms = int_of(doc, "lastAttemptAt");
    d->done_ms = int_of(doc, "doneAt");
    d->attempts = (int)int_of(doc, "attempts");
    d->last_status = (int)int_of(doc, "lastStatus");
    d->state = (enum pw_wh_state)st;
    if (st < 0 || !d->id || !d->task_id || !d->kind || !d->url || !scope || (st == PW_WH_PENDING && !d->body)) {
        pw_wh_delivery_free(d);
        return NULL;
    }
    return d;
}

pw_wh_outbox *pw_wh_outbox_new(pw_store *store)
{
    pw_wh_outbox *ob = pw_xcalloc(1, sizeof *ob);
    ob->store = store;
    return ob;
}

void pw_wh_outbox_free(pw_wh_outbox *ob)
{
    if (!ob)
        return;
    for (size_t i = 0; i < ob->n; i++)
        pw_wh_delivery_free(ob->d[i]);
    free(ob->d);
    free(ob);
}

/* The index of key, or where it would go (*found says which). */
static size_t find(const pw_wh_outbox *ob, const char *key, bool *found)
{
    size_t lo = 0, hi = ob->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ob->d[mid]->key, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void insert_at(pw_wh_outbox *ob, size_t at, struct pw_wh_delivery *d)
{
    if (ob->n == ob->cap) {
        ob->cap = ob->cap ? ob->cap * 2 : 64;
        ob->d = pw_xrealloc(ob->d, ob->cap * sizeof *ob->d);
    }
    memmove(ob->d + at + 1, ob->d + at, (ob->n - at) * sizeof *ob->d);
    ob->d[at] = d;
    ob->n++;
}

int pw_wh_outbox_load(pw_wh_outbox *ob, size_t *added)
{
    size_t got = 0;
    if (added)
        *added = 0;
    if (!ob->store)
        return 0;
    char *cont = NULL;
    int rc = 0;
    do {
        struct pw_store_rec *items = NULL;
        size_t n = 0;
        char *next = NULL;
        rc = pw_store_rec_list(ob->store, KIND, 500, cont, &items, &n, &next);
        free(cont);
        cont = next;
        if (rc != 0)
            break;
        for (size_t i = 0; i < n; i++) {
            bool found;
            size_t at = find(ob, items[i].key, &found);
            if (found)
                continue;
            struct pw_wh_delivery *d = pw_wh_delivery_from_doc(items[i].key, items[i].doc);
            if (!d) {
                PW_WARN("webhook: outbox record %s is not a delivery; left alone", items[i].key);
                continue;
            }
            insert_at(ob, at, d);
            got++;
        }
        pw_store_recs_free(items, n);
    } while (cont);
    free(cont);
    if (added)
        *added = got;
    return rc;
}

int pw_wh_outbox_put(pw_wh_outbox *ob, const char *key, const json_t *doc, enum pw_store_rec_mode mode)
{
    return ob->store ? pw_store_rec_put(ob->store, KIND, key, doc, mode) : 0;
}

static int write_rec(pw_wh_outbox *ob, const struct pw_wh_delivery *d, enum pw_store_rec_mode mode)
{
    if (!ob->store)
        return 0;
    json_t *doc = pw_wh_delivery_doc(d);
    int rc = pw_wh_outbox_put(ob, d->key, doc, mode);
    json_decref(doc);
    return rc;
}

int pw_wh_outbox_insert(pw_wh_outbox *ob, struct pw_wh_delivery *d)
{
    bool found;
    size_t at = find(ob, d->key, &found);
    if (found)
        return PW_EEXIST;
    insert_at(ob, at, d);
    return 0;
}

int pw_wh_outbox_add(pw_wh_outbox *ob, struct pw_wh_delivery *d)
{
    bool found;
    find(ob, d->key, &found);
    if (found)
        return PW_EEXIST;
    int rc = write_rec(ob, d, PW_STORE_REC_CREATE);
    return rc != 0 ? rc : pw_wh_outbox_insert(ob, d);
}

int pw_wh_outbox_save(pw_wh_outbox *ob, struct pw_wh_delivery *d)
{
    if (d->state != PW_WH_PENDING) { /* the body is not kept once finished, in memory or the store */
        free(d->body);
        d->body = NULL;
    }
    return write_rec(ob, d, PW_STORE_REC_UPSERT);
}

bool pw_wh_outbox_has(pw_wh_outbox *ob, const char *task_id, const char *kind, bool task_scope, int index)
{
    for (size_t i = ob->n; i-- > 0;) {
        const struct pw_wh_delivery *d = ob->d[i];
        if (d->task_scope == task_scope && d->index == index && strcmp(d->task_id, task_id) == 0 &&
            strcmp(d->kind, kind) == 0)
            return true;
    }
    return false;
}

struct pw_wh_delivery *pw_wh_outbox_next(pw_wh_outbox *ob, int64_t now_ms, int64_t *wait_ms)
{
    /* the receivers met so far with a pending delivery: later ones to them wait their turn */
    const char **seen = NULL;
    size_t n_seen = 0;
    int64_t wait = -1;
    struct pw_wh_delivery *pick = NULL;
    for (size_t i = 0; i < ob->n && !pick; i++) {
        struct pw_wh_delivery *d = ob->d[i];
        if (d->state != PW_WH_PENDING)
            continue;
        bool behind = false;
        for (size_t j = 0; j < n_seen && !behind; j++)
            behind = strcmp(seen[j], d->url) == 0;
        if (behind)
            continue;
        seen = pw_xrealloc(seen, (n_seen + 1) * sizeof *seen);
        seen[n_seen++] = d->url;
        if (d->busy)
            continue;
        if (d->next_ms <= now_ms)
            pick = d;
        else if (wait < 0 || d->next_ms - now_ms < wait)
            wait = d->next_ms - now_ms;
    }
    free(seen);
    if (wait_ms)
        *wait_ms = pick ? 0 : wait;
    return pick;
}

size_t pw_wh_outbox_count(pw_wh_outbox *ob)
{
    return ob->n;
}

struct pw_wh_delivery *pw_wh_outbox_at(pw_wh_outbox *ob, size_t i)
{
    return i < ob->n ? ob->d[i] : NULL;
}

size_t pw_wh_outbox_pending(pw_wh_outbox *ob)
{
    size_t n = 0;
    for (size_t i = 0; i < ob->n; i++)
        n += ob->d[i]->state == PW_WH_PENDING;
    return n;
}

void pw_wh_outbox_each(pw_wh_outbox *ob, const char *task_id, void (*fn)(void *arg, const struct pw_wh_delivery *d),
                       void *arg)
{
    for (size_t i = 0; i < ob->n; i++)
        if (strcmp(ob->d[i]->task_id, task_id) == 0)
            fn(arg, ob->d[i]);
}

void pw_wh_outbox_gc(pw_wh_outbox *ob, int64_t before_ms, size_t *removed)
{
    size_t k = 0, gone = 0;
    for (size_t i = 0; i < ob->n; i++) {
        struct pw_wh_delivery *d = ob->d[i];
        if (d->state != PW_WH_PENDING && !d->busy && d->done_ms < before_ms) {
            int rc = ob->store ? pw_store_rec_delete(ob->store, KIND, d->key) : 0;
            if (rc == 0 || rc == PW_ENOTFOUND) {
                pw_wh_delivery_free(d);
                gone++;
                continue;
            }
        }
        ob->d[k++] = d;
    }
    ob->n = k;
    if (removed)
        *removed = gone;
}
