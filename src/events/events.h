/* events.h: the in-process event stream (ARCHITECTURE.md §2): one producer, the engine (through its
 * observer hook, engine.h), and many consumers: the SSE streams of the API, and later the webhooks and
 * the web page. It is the one place that turns task and node changes into numbered events.
 *
 * The model. An event is a task changing (type "task": the task as the API shows it, with progress),
 * a node reaching its final result ("node": the node result with "taskId" added), or a task ending
 * ("end": {"taskId","status"}, always after that task's last "task" event). Every event gets an id
 * from one counter that only grows, also across restarts (the first id is the wall clock in
 * microseconds at pw_events_new), so a consumer's "the last id I saw" stays meaningful.
 *
 * Coalescing. A task's "task" events are published at most once per task_interval_ms (default
 * 250 ms: about 4 a second): a change within the interval is held and replaced by later ones, and
 * the newest is published when the interval ends (by the stream's own timer thread). A change of the
 * task's status is never held, so every status a task passes through is seen; "node" and "end"
 * events are never held.
 *
 * The ring. The newest events are kept in a bounded ring (capacity events and max_bytes of JSON,
 * whichever is reached first; the oldest go). A consumer is a cursor into it (pw_events_sub): it
 * reads at its own pace and never slows the producer. A consumer that falls so far behind that the
 * events after its cursor are gone is cut off: its next read says PW_EGONE and it must start again
 * from the current state (the SSE streams close, and the client's reconnect with Last-Event-ID gets
 * the current state). Resuming: a new consumer may start after a given id; when the ring still holds
 * every event after it, nothing is lost.
 *
 * Events are shared, read-only and reference counted: a consumer holds the ones it read until it
 * releases them (pw_event_release), even after the ring dropped them.
 *
 * Thread model: every function is safe from any thread. Publishing takes the stream's lock for a
 * few pointer moves (the JSON is encoded before, outside it); it never blocks on a consumer and
 * never calls one. A pw_events_sub belongs to one consumer thread at a time. */
#ifndef PW_EVENTS_H
#define PW_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct pw_events pw_events;
typedef struct pw_events_sub pw_events_sub;
typedef struct pw_event pw_event;

enum pw_event_type { PW_EVENT_TASK, PW_EVENT_NODE, PW_EVENT_END };
#define PW_EVENT_TYPE_COUNT 3
/* "task", "node", "end", indexed by enum pw_event_type (the SSE event names). */
extern const char *const pw_event_type_names[PW_EVENT_TYPE_COUNT];

#define PW_EVENTS_DEFAULT_CAPACITY 8192
#define PW_EVENTS_DEFAULT_MAX_BYTES (32u << 20)
#define PW_EVENTS_DEFAULT_TASK_INTERVAL_MS 250

struct pw_events_config {
    size_t capacity;          /* events kept (0: PW_EVENTS_DEFAULT_CAPACITY) */
    size_t max_bytes;         /* bytes of event data kept (0: PW_EVENTS_DEFAULT_MAX_BYTES) */
    int64_t task_interval_ms; /* the least time between two "task" events of one task (0: the
                               * default; negative: no coalescing) */
    uint64_t first_id;        /* the first event's id (0: the wall clock in microseconds) */
};

/* Creates the stream and starts its timer thread. cfg may be NULL (all defaults). On success 0 and
 * *out (free with pw_events_free); PW_ENOMEM when the thread cannot start (nothing is left). */
int pw_events_new(const struct pw_events_config *cfg, pw_events **out);
/* Stops the timer (held events are dropped) and frees the stream. Every consumer must have been
 * freed first; events consumers still hold stay valid until released. NULL is a no-op. */
void pw_events_free(pw_events *ev);

/* ---- the producer ---- */

/* Publishes a task change. task: the task as the API shows it (borrowed; its "id" and "status" are
 * read). Coalesced as the header says; a final status (succeeded, failed, cancelled) also
 * publishes the task's "end" event. A task without an id is ignored. */
void pw_events_publish_task(pw_events *ev, const json_t *task);
/* Publishes node's final result for task_id (node borrowed; "taskId" is added to the event data). */
void pw_events_publish_node(pw_events *ev, const char *task_id, const json_t *node);

/* ---- consumers ---- */

/* The id of the newest event published (the first id minus one when there is none). */
uint64_t pw_events_last_id(pw_events *ev);
/* Blocks until an event newer than after exists or timeout_ms passes (<= 0: does not block), or the
 * stream is being freed. True when there is one. */
bool pw_events_wait(pw_events *ev, uint64_t after, int timeout_ms);

/* A new consumer. task_id: only that task's events (copied; NULL: every task). after: resume after
 * this event id: when the ring holds every event after it (or after is the newest id), the cursor
 * starts there and *resumed is true; otherwise (after 0, or an id too old or unknown) it starts
 * at the newest event and *resumed is false: the caller then shows the current state first.
 * Always succeeds; free with pw_events_sub_free. */
pw_events_sub *pw_events_sub_new(pw_events *ev, const char *task_id, uint64_t after, bool *resumed);
void pw_events_sub_free(pw_events_sub *sub);
/* Reads up to max events after the cursor (those of other tasks skipped when filtered) into out and
 * moves the cursor past them; *n gets how many (0: none yet). Each event in out is the caller's
 * to release. PW_EGONE when events after the cursor were dropped before this consumer read them (it
 * is cut off: *n is 0 and every later read says the same); 0 otherwise. Never blocks. */
int pw_events_sub_read(pw_events_sub *sub, const pw_event **out, size_t max, size_t *n);
/* The id the cursor stands at: events up to it were read (or skipped). */
uint64_t pw_events_sub_cursor(const pw_events_sub *sub);

/* ---- one event (read-only) ---- */

uint64_t pw_event_id(const pw_event *e);
enum pw_event_type pw_event_type_of(const pw_event *e);
/* The task the event is about (borrowed, valid while e is held). */
const char *pw_event_task(const pw_event *e);
/* For "task" and "end": the task's status; for "node": the node's state. */
const char *pw_event_status(const pw_event *e);
/* The event's data: compact JSON on one line, NUL-terminated; *len (may be NULL) gets its length. */
const char *pw_event_data(const pw_event *e, size_t *len);
/* Wall clock (ms since the epoch) of the publication. */
int64_t pw_event_time_ms(const pw_event *e);
/* Drops the caller's reference. NULL is a no-op. */
void pw_event_release(const pw_event *e);

/* ---- figures ---- */

struct pw_events_stats {
    uint64_t published[PW_EVENT_TYPE_COUNT]; /* since start, by type */
    uint64_t coalesced;                      /* "task" events replaced by a newer one while held */
    size_t ring_events, ring_bytes;          /* what the ring holds now */
    size_t consumers;                        /* consumers alive */
};
void pw_events_stats(pw_events *ev, struct pw_events_stats *out);

#endif
