/* events.c: the event stream: a ring of reference-counted events under one lock, the per-task
 * coalescing table (the newest held "task" event of each unfinished task) and the timer thread that
 * publishes held events when their interval ends.
 *
 * The ring holds ids [oldest, next): the event with id i sits in slot i % capacity. Encoding the
 * JSON happens before the lock is taken, so under it a publication only moves pointers. */
#include "events/events.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

const char *const pw_event_type_names[PW_EVENT_TYPE_COUNT] = {"task", "node", "end"};

#define EV_ID_MAX 32
#define EV_STATUS_MAX 16

struct pw_event {
    atomic_int refs;
    uint64_t id;
    enum pw_event_type type;
    char task[EV_ID_MAX];
    char status[EV_STATUS_MAX];
    int64_t time_ms;
    size_t len;
    char data[]; /* len bytes and a NUL */
};

/* An unfinished task's coalescing state. */
struct held_task {
    char id[EV_ID_MAX];
    char status[EV_STATUS_MAX]; /* of the last "task" event published */
    int64_t last_mono;          /* when it was published */
    pw_event *held;             /* a newer one waiting for the interval to end, or NULL */
    int64_t due_mono;
};

struct pw_events {
    pthread_mutex_t mu;
    pthread_cond_t news;  /* a new event: consumers waiting */
    pthread_cond_t timer; /* a new held event: the timer thread */
    pw_event **ring;
    size_t capacity, max_bytes, bytes;
    uint64_t oldest, next;
    int64_t interval_ms;
    struct held_task *tasks;
    size_t n_tasks, cap_tasks;
    size_t consumers;
    uint64_t published[PW_EVENT_TYPE_COUNT], coalesced;
    bool stopping;
    pthread_t thread;
};

struct pw_events_sub {
    pw_events *ev;
    char *task; /* NULL: every task */
    uint64_t cursor;
    bool gone;
};

/* ---- events ---- */

static pw_event *event_new(enum pw_event_type type, const char *task, const char *status, const char *data, size_t len)
{
    pw_event *e = pw_xmalloc(sizeof *e + len + 1);
    atomic_init(&e->refs, 1);
    e->id = 0;
    e->type = type;
    snprintf(e->task, sizeof e->task, "%s", task ? task : "");
    snprintf(e->status, sizeof e->status, "%s", status ? status : "");
    e->time_ms = pw_clock_real_ms();
    e->len = len;
    memcpy(e->data, data, len);
    e->data[len] = '\0';
    return e;
}

void pw_event_release(const pw_event *ce)
{
    pw_event *e = (pw_event *)ce;
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        free(e);
}

uint64_t pw_event_id(const pw_event *e)
{
    return e->id;
}

enum pw_event_type pw_event_type_of(const pw_event *e)
{
    return e->type;
}

const char *pw_event_task(const pw_event *e)
{
    return e->task;
}

const char *pw_event_status(const pw_event *e)
{
    return e->status;
}

const char *pw_event_data(const pw_event *e, size_t *len)
{
    if (len)
        *len = e->len;
    return e->data;
}

int64_t pw_event_time_ms(const pw_event *e)
{
    return e->time_ms;
}

/* ---- the ring (ev->mu held) ---- */

static void ring_drop_oldest(pw_events *ev)
{
    pw_event **slot = &ev->ring[ev->oldest % ev->capacity];
    ev->bytes -= (*slot)->len;
    pw_event_release(*slot);
    *slot = NULL;
    ev->oldest++;
}

/* Numbers e and appends it (the ring takes the caller's reference). */
static void ring_append(pw_events *ev, pw_event *e)
{
    if (ev->next - ev->oldest == ev->capacity)
        ring_drop_oldest(ev);
    e->id = ev->next++;
    e->time_ms = pw_clock_real_ms();
    ev->ring[e->id % ev->capacity] = e;
    ev->bytes += e->len;
    while (ev->bytes > ev->max_bytes && ev->next - ev->oldest > 1)
        ring_drop_oldest(ev);
    ev->published[e->type]++;
    pthread_cond_broadcast(&ev->news);
}

/* ---- coalescing (ev->mu held) ---- */

static struct held_task *held_find(pw_events *ev, const char *id, bool add)
{
    for (size_t i = 0; i < ev->n_tasks; i++)
        if (strcmp(ev->tasks[i].id, id) == 0)
            return &ev->tasks[i];
    if (!add)
        return NULL;
    if (ev->n_tasks == ev->cap_tasks) {
        ev->cap_tasks = ev->cap_tasks ? ev->cap_tasks * 2 : 16;
        ev->tasks = pw_xrealloc(ev->tasks, ev->cap_tasks * sizeof *ev->tasks);
    }
    struct held_task *h = &ev->tasks[ev->n_tasks++];
    memset(h, 0, sizeof *h);
    snprintf(h->id, sizeof h->id, "%s", id);
    return h;
}

static void held_remove(pw_events *ev, struct held_task *h)
{
    pw_event_release(h->held);
    *h = ev->tasks[--ev->n_tasks];
}

/* Publishes h's held event now. */
static void held_flush(pw_events *ev, struct held_task *h, int64_t now)
{
    pw_event *e = h->held;
    h->held = NULL;
    h->last_mono = now;
    snprintf(h->status, sizeof h->status, "%s", e->status);
    ring_append(ev, e);
}

static void *timer_main(void *arg)
{
    pw_events *ev = arg;
    pthread_mutex_lock(&ev->mu);
    while (!ev->stopping) {
        int64_t now = pw_clock_mono_ms(), next_due = 0;
        for (size_t i = 0; i < ev->n_tasks; i++) {
            struct held_task *h = &ev->tasks[i];
            if (!h->held)
                continue;
            if (h->due_mono <= now)
                held_flush(ev, h, now);
            else if (!next_due || h->due_mono < next_due)
                next_due = h->due_mono;
        }
        if (!next_due) {
            pthread_cond_wait(&ev->timer, &ev->mu);
        } else {
            struct timespec ts;
            pw_clock_deadline_ts(next_due - now, &ts);
            pthread_cond_timedwait(&ev->timer, &ev->mu, &ts);
        }
    }
    pthread_mutex_unlock(&ev->mu);
    return NULL;
}

/* ---- the producer ---- */

static bool status_final(const char *s)
{
    return strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
}

static pw_event *event_from_json(enum pw_event_type type, const char *task, const char *status, const json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (!text)
        return NULL;
    pw_event *e = event_new(type, task, status, text, strlen(text));
    free(text);
    return e;
}

void pw_events_publish_task(pw_events *ev, const json_t *task)
{
    const char *id = json_string_value(json_object_get(task, "id"));
    const char *status = json_string_value(json_object_get(task, "status"));
    if (!id || !*id || strlen(id) >= EV_ID_MAX)
        return;
    if (!status)
        status = "";
    pw_event *e = event_from_json(PW_EVENT_TASK, id, status, task);
    if (!e)
        return;
    bool final = status_final(status);
    pw_event *end = NULL;
    if (final) {
        json_t *o = json_pack("{s:s, s:s}", "taskId", id, "status", status);
        end = event_from_json(PW_EVENT_END, id, status, o);
        json_decref(o);
    }
    pthread_mutex_lock(&ev->mu);
    struct held_task *h = held_find(ev, id, true);
    int64_t now = pw_clock_mono_ms();
    if (h->held) { /* superseded */
        pw_event_release(h->held);
        h->held = NULL;
        ev->coalesced++;
    }
    bool first = h->last_mono == 0 && h->status[0] == '\0';
    if (first || final || ev->interval_ms < 0 || strcmp(h->status, status) != 0 ||
        now - h->last_mono >= ev->interval_ms) {
        h->held = e;
        held_flush(ev, h, now);
    } else {
        h->held = e;
        h->due_mono = h->last_mono + ev->interval_ms;
        pthread_cond_signal(&ev->timer);
    }
    if (end) {
        ring_append(ev, end);
        held_remove(ev, h);
    }
    pthread_mutex_unlock(&ev->mu);
}

void pw_events_publish_node(pw_events *ev, const char *task_id, const json_t *node)
{
    if (!task_id || !*task_id || strlen(task_id) >= EV_ID_MAX || !json_is_object(node))
        return;
    json_t *tid = json_string(task_id);
    char *id_text = json_dumps(tid, JSON_ENCODE_ANY);
    json_decref(tid);
    char *body = json_dumps(node, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (!id_text || !body) {
        free(id_text);
        free(body);
        return;
    }
    /* {"taskId":"t-...", + the node's members (body without its opening brace) */
    bool empty = strcmp(body, "{}") == 0;
    char *text = pw_xasprintf("{\"taskId\":%s%s%s", id_text, empty ? "}" : ",", empty ? "" : body + 1);
    free(id_text);
    free(body);
    const char *state = json_string_value(json_object_get(node, "state"));
    pw_event *e = event_new(PW_EVENT_NODE, task_id, state, text, strlen(text));
    free(text);
    pthread_mutex_lock(&ev->mu);
    ring_append(ev, e);
    pthread_mutex_unlock(&ev->mu);
}

/* ---- life cycle ---- */

int pw_events_new(const struct pw_events_config *cfg, pw_events **out)
{
    struct pw_events_config c = cfg ? *cfg : (struct pw_events_config){0};
    pw_events *ev = pw_xcalloc(1, sizeof *ev);
    ev->capacity = c.capacity ? c.capacity : PW_EVENTS_DEFAULT_CAPACITY;
    ev->max_bytes = c.max_bytes ? c.max_bytes : PW_EVENTS_DEFAULT_MAX_BYTES;
    ev->interval_ms = c.task_interval_ms ? c.task_interval_ms : PW_EVENTS_DEFAULT_TASK_INTERVAL_MS;
    ev->oldest = ev->next = c.first_id ? c.first_id : (uint64_t)pw_clock_real_ms() * 1000u;
    ev->ring = pw_xcalloc(ev->capacity, sizeof *ev->ring);
    pthread_mutex_init(&ev->mu, NULL);
    pthread_cond_init(&ev->news, NULL);
    pthread_cond_init(&ev->timer, NULL);
    if (pthread_create(&ev->thread, NULL, timer_main, ev) != 0) {
        pthread_mutex_destroy(&ev->mu);
        pthread_cond_destroy(&ev->news);
        pthread_cond_destroy(&ev->timer);
        free(ev->ring);
        free(ev);
        return PW_ENOMEM;
    }
    *out = ev;
    return 0;
}

void pw_events_free(pw_events *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->mu);
    ev->stopping = true;
    pthread_cond_broadcast(&ev->timer);
    pthread_cond_broadcast(&ev->news);
    pthread_mutex_unlock(&ev->mu);
    pthread_join(ev->thread, NULL);
    while (ev->n_tasks)
        held_remove(ev, &ev->tasks[0]);
    free(ev->tasks);
    while (ev->oldest < ev->next)
        ring_drop_oldest(ev);
    free(ev->ring);
    pthread_mutex_destroy(&ev->mu);
    pthread_cond_destroy(&ev->news);
    pthread_cond_destroy(&ev->timer);
    free(ev);
}

/* ---- consumers ---- */

uint64_t pw_events_last_id(pw_events *ev)
{
    pthread_mutex_lock(&ev->mu);
    uint64_t id = ev->next - 1;
    pthread_mutex_unlock(&ev->mu);
    return id;
}

bool pw_events_wait(pw_events *ev, uint64_t after, int timeout_ms)
{
    pthread_mutex_lock(&ev->mu);
    if (ev->next - 1 <= after && timeout_ms > 0 && !ev->stopping) {
        struct timespec ts;
        pw_clock_deadline_ts(timeout_ms, &ts);
        while (ev->next - 1 <= after && !ev->stopping)
            if (pthread_cond_timedwait(&ev->news, &ev->mu, &ts) != 0)
                break;
    }
    bool any = ev->next - 1 > after;
    pthread_mutex_unlock(&ev->mu);
    return any;
}

pw_events_sub *pw_events_sub_new(pw_events *ev, const char *task_id, uint64_t after, bool *resumed)
{
    pw_events_sub *s = pw_xcalloc(1, sizeof *s);
    s->ev = ev;
    s->task = task_id ? pw_xstrdup(task_id) : NULL;
    pthread_mutex_lock(&ev->mu);
    uint64_t newest = ev->next - 1;
    bool held = after != 0 && after + 1 >= ev->oldest && after <= newest;
    s->cursor = held ? after : newest;
    ev->consumers++;
    pthread_mutex_unlock(&ev->mu);
    if (resumed)
        *resumed = held;
    return s;
}

void pw_events_sub_free(pw_events_sub *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->ev->mu);
    s->ev->consumers--;
    pthread_mutex_unlock(&s->ev->mu);
    free(s->task);
    free(s);
}

int pw_events_sub_read(pw_events_sub *s, const pw_event **out, size_t max, size_t *n)
{
    *n = 0;
    if (s->gone)
        return PW_EGONE;
    pw_events *ev = s->ev;
    pthread_mutex_lock(&ev->mu);
    if (s->cursor + 1 < ev->oldest) {
        pthread_mutex_unlock(&ev->mu);
        s->gone = true;
        return PW_EGONE;
    }
    size_t k = 0;
    uint64_t id = s->cursor + 1;
    for (; id < ev->next && k < max; id++) {
        pw_event *e = ev->ring[id % ev->capacity];
        if (s->task && strcmp(e->task, s->task) != 0)
            continue;
        atomic_fetch_add(&e->refs, 1);
        out[k++] = e;
    }
    s->cursor = id - 1;
    pthread_mutex_unlock(&ev->mu);
    *n = k;
    return 0;
}

uint64_t pw_events_sub_cursor(const pw_events_sub *s)
{
    return s->cursor;
}

void pw_events_stats(pw_events *ev, struct pw_events_stats *out)
{
    pthread_mutex_lock(&ev->mu);
    memcpy(out->published, ev->published, sizeof out->published);
    out->coalesced = ev->coalesced;
    out->ring_events = (size_t)(ev->next - ev->oldest);
    out->ring_bytes = ev->bytes;
    out->consumers = ev->consumers;
    pthread_mutex_unlock(&ev->mu);
}
