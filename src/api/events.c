/* events.c: Server-Sent Events over the event stream (events/events.h): GET /api/v1/tasks/{id}/events
 * (one task; the stream ends after its "end" event) and GET /api/v1/events (every task, or ?task=ID,
 * which behaves as the first). docs/observability.md has the wire format.
 *
 * A request is answered on its HTTP pool thread: the consumer is made first (resuming after
 * Last-Event-ID when the ring still holds it), then the current state is read from the store when
 * the consumer did not resume (so nothing between the two is missed: the state read is at least as
 * new as the cursor), the backlog is written, and the stream is handed to the hub. The hub is one
 * thread for every open stream: woken by new events (or each second), it moves each stream's
 * consumer forward and queues the text on the stream (pw_http_stream_write never blocks), writes
 * heartbeat comments, and closes streams whose client left, that fell behind the ring, or whose
 * unsent backlog passed SSE_MAX_PENDING (a client not reading). With libmicrohttpd's epoll thread
 * pool and suspended connections, an idle stream costs no thread, only its connection and a few
 * hundred bytes here. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "events/events.h"
#include "metrics/metrics.h"
#include "store/store.h"

#define SSE_BATCH 64
#define SSE_MAX_PENDING (1u << 20) /* unsent bytes past which a client counts as not reading */
#define SSE_RETRY_MS 3000          /* the reconnect delay suggested to clients */
#define SSE_SNAPSHOT_LIMIT 1000    /* unfinished tasks shown as the current state of /api/v1/events */
#define SSE_GATHER_MS                                                                                                  \
    50 /* after a wake-up, the hub lets more events gather: one pass over                                              \
        * every stream carries them all (at most ~20 passes a second) */

struct sse_stream {
    pw_http_stream *http;
    pw_events_sub *sub;
    bool one_task; /* ends after its task's "end" */
    int64_t last_write_mono;
    struct sse_stream *next;
};

struct pw_api_sse {
    pw_events *ev;
    pw_engine *engine;
    int64_t heartbeat_ms;
    pthread_mutex_t mu; /* streams, n_open, stopping */
    struct sse_stream *streams;
    size_t n_open;
    bool stopping;
    pthread_t thread;
    pw_metric *m_open, *m_cut, *m_total;
    pw_metric *m_published, *m_coalesced, *m_ring_events, *m_ring_bytes;
};

static void reply_error(pw_http_req *req, int code, const char *message, const char *field)
{
    pw_http_reply_json(req, pw_err_http_status(code), pw_api_error(code, message, field));
}

/* ---- the wire format ---- */

static void frame(pw_buf *b, uint64_t id, const char *type, const char *data)
{
    pw_buf_printf(b, "id: %" PRIu64 "\nevent: %s\ndata: %s\n\n", id, type, data);
}

static void frame_json(pw_buf *b, uint64_t id, const char *type, const json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (text)
        frame(b, id, type, text);
    free(text);
}

/* Appends the consumer's new events; *ended when the task's end went out (one-task streams).
 * PW_EGONE when the consumer was cut off. */
static int drain(struct sse_stream *s, pw_buf *b, bool *ended)
{
    const pw_event *evs[SSE_BATCH];
    size_t n;
    do {
        int rc = pw_events_sub_read(s->sub, evs, SSE_BATCH, &n);
        if (rc != 0)
            return rc;
        for (size_t i = 0; i < n; i++) {
            enum pw_event_type t = pw_event_type_of(evs[i]);
            frame(b, pw_event_id(evs[i]), pw_event_type_names[t], pw_event_data(evs[i], NULL));
            if (t == PW_EVENT_END && s->one_task)
                *ended = true;
            pw_event_release(evs[i]);
        }
    } while (n == SSE_BATCH && !*ended);
    return 0;
}

static void stream_end(pw_api_sse *h, struct sse_stream *s, const char *why)
{
    if (why) {
        PW_INFO("sse: stream closed: %s", why);
        pw_metric_add(h->m_cut, (const char *[]){why}, 1);
    }
    pw_http_stream_close(s->http);
    pw_events_sub_free(s->sub);
    free(s);
}

/* ---- the hub ---- */

/* One stream's turn; false when it is over (the caller ends it; *why: a cut-off's reason or NULL). */
static bool stream_turn(pw_api_sse *h, struct sse_stream *s, int64_t now, const char **why)
{
    *why = NULL;
    if (pw_http_stream_dead(s->http))
        return false;
    if (pw_http_stream_pending(s->http) > SSE_MAX_PENDING) {
        *why = "slow_client";
        return false;
    }
    pw_buf b;
    pw_buf_init(&b, 0);
    bool ended = false;
    if (drain(s, &b, &ended) != 0) {
        /* the events after its cursor are gone: the client reconnects and gets the current state */
        pw_buf_puts(&b, ": too far behind the event stream; reconnect to resume\n\n");
        *why = "behind";
    }
    if (!b.len && now - s->last_write_mono >= h->heartbeat_ms)
        pw_buf_puts(&b, ": keep-alive\n\n");
    bool alive = true;
    if (b.len) {
        alive = pw_http_stream_write(s->http, b.p, b.len) == 0;
        s->last_write_mono = now;
    }
    pw_buf_fini(&b);
    return alive && !ended && !*why;
}

static void *hub_main(void *arg)
{
    pw_api_sse *h = arg;
    uint64_t seen = pw_events_last_id(h->ev);
    for (;;) {
        if (pw_events_wait(h->ev, seen, 1000))
            pw_clock_sleep_ms(SSE_GATHER_MS);
        seen = pw_events_last_id(h->ev);
        int64_t now = pw_clock_mono_ms();
        pthread_mutex_lock(&h->mu);
        if (h->stopping) {
            pthread_mutex_unlock(&h->mu);
            return NULL;
        }
        for (struct sse_stream **pp = &h->streams; *pp;) {
            struct sse_stream *s = *pp;
            const char *why;
            if (stream_turn(h, s, now, &why)) {
                pp = &s->next;
                continue;
            }
            *pp = s->next;
            h->n_open--;
            stream_end(h, s, why);
        }
        pw_metric_set(h->m_open, NULL, (double)h->n_open);
        pthread_mutex_unlock(&h->mu);
    }
}

/* The event stream's own figures, read at each scrape. */
static void sse_collect(void *arg)
{
    pw_api_sse *h = arg;
    struct pw_events_stats st;
    pw_events_stats(h->ev, &st);
    for (size_t t = 0; t < PW_EVENT_TYPE_COUNT; t++)
        pw_metric_set(h->m_published, (const char *[]){pw_event_type_names[t]}, (double)st.published[t]);
    pw_metric_set(h->m_coalesced, NULL, (double)st.coalesced);
    pw_metric_set(h->m_ring_events, NULL, (double)st.ring_events);
    pw_metric_set(h->m_ring_bytes, NULL, (double)st.ring_bytes);
}

int pw_api_sse_new(pw_events *ev, pw_engine *engine, int64_t heartbeat_ms, pw_api_sse **out)
{
    pw_api_sse *h = pw_xcalloc(1, sizeof *h);
    h->ev = ev;
    h->engine = engine;
    h->heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : PW_API_SSE_HEARTBEAT_MS;
    pw_metrics *r = pw_metrics_default();
    h->m_open = pw_metrics_gauge(r, "prewarm_sse_streams", "Server-Sent Events streams open.", NULL);
    h->m_total =
        pw_metrics_counter(r, "prewarm_sse_streams_started_total", "Server-Sent Events streams started.", NULL);
    h->m_cut = pw_metrics_counter(r, "prewarm_sse_streams_cut_off_total",
                                  "Server-Sent Events streams closed by the server: behind (the ring no longer "
                                  "held their next event) or slow_client (over 1 MiB unsent).",
                                  "reason");
    h->m_published = pw_metrics_counter(r, "prewarm_events_published_total",
                                        "Events published on the in-process event stream, by type.", "type");
    h->m_coalesced = pw_metrics_counter(r, "prewarm_events_coalesced_total",
                                        "Task events replaced by a newer one within the coalescing interval.", NULL);
    h->m_ring_events = pw_metrics_gauge(r, "prewarm_events_ring_events", "Events the ring holds for resuming.", NULL);
    h->m_ring_bytes = pw_metrics_gauge(r, "prewarm_events_ring_bytes", "Bytes of event data the ring holds.", NULL);
    pw_metric_set(h->m_open, NULL, 0);
    pw_metric_add(h->m_cut, (const char *[]){"behind"}, 0);
    pw_metric_add(h->m_cut, (const char *[]){"slow_client"}, 0);
    pthread_mutex_init(&h->mu, NULL);
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        free(h);
        return PW_ENOMEM;
    }
    pw_metrics_add_collector(r, sse_collect, h);
    *out = h;
    return 0;
}

void pw_api_sse_free(pw_api_sse *h)
{
    if (!h)
        return;
    pw_metrics_remove_collector(pw_metrics_default(), sse_collect, h);
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL); /* it sees stopping within a second */
    while (h->streams) {
        struct sse_stream *s = h->streams;
        h->streams = s->next;
        stream_end(h, s, NULL);
    }
    pw_metric_set(h->m_open, NULL, 0);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

size_t pw_api_sse_open(pw_api_sse *h)
{
    pthread_mutex_lock(&h->mu);
    size_t n = h->n_open;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* ---- the handlers ---- */

/* Last-Event-ID as a number; 0 when absent or not one of ours. */
static uint64_t last_event_id(pw_http_req *req)
{
    const char *v = pw_http_req_header(req, "Last-Event-ID");
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long long id = strtoull(v, &end, 10);
    return *end || v[0] == '-' ? 0 : (uint64_t)id;
}

/* The current state of every unfinished task (one "task" event each, all numbered at the cursor). */
static void snapshot_all(pw_engine *e, pw_buf *b, uint64_t id)
{
    static const char *const live[] = {"running", "pending"};
    for (size_t k = 0; k < 2; k++) {
        json_t *page = NULL;
        if (pw_engine_list_tasks(e, live[k], SSE_SNAPSHOT_LIMIT, NULL, &page) != 0)
            continue;
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(page, "items"), i, t) frame_json(b, id, "task", t);
        json_decref(page);
    }
}

/* The task's current state, and its end when it is final (*ended). */
static void snapshot_task(pw_buf *b, uint64_t id, const json_t *task, bool *ended)
{
    frame_json(b, id, "task", task);
    const char *status = json_string_value(json_object_get(task, "status"));
    if (pw_store_status_final(status)) {
        json_t *end = json_pack("{s:O, s:s}", "taskId", json_object_get(task, "id"), "status", status);
        frame_json(b, id, "end", end);
        json_decref(end);
        *ended = true;
    }
}

static void serve(pw_http_req *req, struct pw_api_ctx *c, const char *task_id)
{
    pw_api_sse *h = c->sse;
    if (!h) {
        reply_error(req, PW_ENOTFOUND, "the event stream is off in this prewarmd", NULL);
        return;
    }
    bool resumed = false;
    pw_events_sub *sub = pw_events_sub_new(h->ev, task_id, last_event_id(req), &resumed);
    json_t *task = NULL;
    if (task_id) {
        int rc = pw_engine_get_task(c->engine, task_id, &task);
        if (rc != 0) {
            pw_events_sub_free(sub);
            char *msg = rc == PW_ENOTFOUND ? pw_xasprintf("task %s not found", task_id) : NULL;
            reply_error(req, rc, msg, NULL);
            free(msg);
            return;
        }
    }
    pw_http_add_header(req, "Cache-Control", "no-cache");
    pw_http_add_header(req, "X-Accel-Buffering", "no");
    pw_http_stream *hs = pw_http_reply_stream(req, 200, "text/event-stream; charset=utf-8");
    struct sse_stream *s = pw_xcalloc(1, sizeof *s);
    s->http = hs;
    s->sub = sub;
    s->one_task = task_id != NULL;
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_buf_printf(&b, "retry: %d\n\n", SSE_RETRY_MS);
    bool ended = false;
    uint64_t at = pw_events_sub_cursor(sub);
    if (!resumed && task)
        snapshot_task(&b, at, task, &ended);
    else if (!resumed)
        snapshot_all(c->engine, &b, at);
    int rc = ended ? 0 : drain(s, &b, &ended);
    if (resumed && task && !ended && rc == 0 &&
        pw_store_status_final(json_string_value(json_object_get(task, "status"))))
        snapshot_task(&b, pw_events_sub_cursor(sub), task, &ended); /* its end was before the id given */
    json_decref(task);
    bool ok = pw_http_stream_write(hs, b.p, b.len) == 0 && rc == 0 && !ended;
    pw_buf_fini(&b);
    pw_metric_add(h->m_total, NULL, 1);
    if (!ok) {
        stream_end(h, s, NULL);
        return;
    }
    s->last_write_mono = pw_clock_mono_ms();
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        stream_end(h, s, NULL);
        return;
    }
    s->next = h->streams;
    h->streams = s;
    h->n_open++;
    pw_metric_set(h->m_open, NULL, (double)h->n_open);
    pthread_mutex_unlock(&h->mu);
}

void pw_api_h_task_events(pw_http_req *req, void *ctx)
{
    serve(req, ctx, pw_http_req_param(req, "id"));
}

void pw_api_h_events(pw_http_req *req, void *ctx)
{
    const char *task = pw_http_req_query(req, "task");
    if (task && !*task) {
        reply_error(req, PW_EINVAL, "task: must name a task id", "task");
        return;
    }
    serve(req, ctx, task);
}
