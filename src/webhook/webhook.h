/* webhook.h: webhooks: prewarmd tells HTTP receivers when a task starts and ends (docs/observability.md).
 *
 * The model. A consumer of the event stream (events.h) turns each task reaching "running"
 * (event "started") or a final status ("succeeded", "failed", "cancelled") into one delivery per
 * receiver that wants it: every server-wide receiver (--webhook, all four events) and each of the
 * task's own "webhooks" entries whose "events" name it. A delivery is a CloudEvents 1.0 event in
 * structured mode (Content-Type application/cloudevents+json; type io.prewarm.task.<event>, id the
 * event stream's id, source, subject the task id, time, data the task as GET shows it), POSTed to the
 * receiver, signed when a secret is known: header Prewarm-Signature: t=<unix seconds>,v1=<hex of
 * HMAC-SHA256(secret, "<t>.<body>")>. Server receivers use --webhook-secret-file; a task's receiver
 * names a Kubernetes Secret in prewarmd's namespace (secretRef, its data key "secret"). Secrets are
 * never shown: a task shows the Secret's name only.
 *
 * At-least-once, in order. A delivery is written to the store (records of kind "webhook") before it is
 * attempted, so one accepted survives kill -9 with a durable store; receivers de-duplicate on the
 * CloudEvents id. The consumer also keeps a mark in the store (kind "webhook-mark"): the time of the
 * last event it turned into deliveries, written at most once a second. On start (and on becoming
 * active, and after falling behind the stream) the tasks that ended after the mark get the end
 * deliveries they miss, with an id of their own: an end published just before a crash is not lost. Each receiver (url) gets its deliveries in event order: a later one waits until
 * the earlier one is delivered or given up. 2xx is delivered; 408, 429, 5xx and no answer are
 * retried with exponential backoff and jitter (or after the Retry-After the receiver asked for,
 * seconds or an HTTP-date) until max_age (24 h) after the event; any other status (3xx: redirects are
 * never followed, 4xx) fails it for good. Receivers at private, loopback, link-local (the cloud
 * metadata service) or other non-public addresses are refused unless allow_private, checked at
 * every connection (a host name resolving there is refused too).
 *
 * Leadership. pw_webhook_set_active(w, false) pauses delivery (an attempt in flight finishes) and the
 * making of new deliveries: a replica that is not the leader calls it, so one replica delivers. On
 * set_active(w, true) the outbox is read again from the store (a shared store: what the old leader
 * left pending is delivered by the new one) and ends after the mark are caught up.
 *
 * Thread model: every function is safe from any thread. pw_webhook_new starts a consumer thread and
 * the delivery workers. */
#ifndef PW_WEBHOOK_H
#define PW_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct pw_webhook pw_webhook;
typedef struct pw_events pw_events;         /* events/events.h */
typedef struct pw_store pw_store;           /* store/store.h */
typedef struct pw_k8s_client pw_k8s_client; /* k8s/k8s.h */

/* The events a webhook may ask for, in the order they happen; ends with NULL. */
extern const char *const pw_webhook_event_names[];
#define PW_WEBHOOK_MAX_URLS 16 /* server-wide receivers */
#define PW_WEBHOOK_MAX_PER_TASK 8
#define PW_WEBHOOK_URL_MAX 2048

struct pw_webhook_config {
    pw_events *events;            /* the stream read (borrowed, outlives w) */
    pw_store *store;              /* the outbox's store (borrowed, outlives w) */
    pw_k8s_client *client;        /* reads the Secrets of secretRef (borrowed; NULL: such deliveries fail) */
    const char *namespace_;       /* ... in this namespace */
    const char *const *urls;      /* server-wide receivers (copied), n_urls at most PW_WEBHOOK_MAX_URLS */
    size_t n_urls;
    const char *secret;           /* their signing key (copied; NULL: unsigned) */
    size_t secret_len;
    const char *secret_file;      /* or a file holding it (read at start; trailing newlines dropped) */
    const char *source;           /* the CloudEvents source (copied; NULL: "/prewarmd") */
    bool allow_private;           /* receivers at non-public addresses allowed */
    bool inactive;                /* start paused (pw_webhook_set_active) */
    int64_t timeout_ms;           /* one attempt (0: 10 s) */
    int64_t retry_base_ms;        /* the first retry's delay (0: 1 s), doubling ... */
    int64_t retry_max_ms;         /* ... up to this (0: 1 h) */
    int64_t max_age_ms;           /* a delivery is given up this long after its event (0: 24 h) */
    int64_t keep_ms;              /* finished deliveries are shown (GET task) this long (0: 7 d) */
    int workers;                  /* attempts at once, each to another receiver (0: 4) */
};

/* Checks the urls (pw_webhook_url_check), reads the secret file and the outbox from the store and
 * starts the threads. 0 and *out (free with pw_webhook_free); PW_EINVAL with *errmsg (caller frees)
 * for a bad url or a secret file that cannot be read or is empty;
 * the store's error when the outbox cannot be read. */
int pw_webhook_new(const struct pw_webhook_config *cfg, pw_webhook **out, char **errmsg);
/* Stops the threads (an attempt in flight is waited for, at most the timeout) and frees w; pending
 * deliveries stay in the store for the next start. Free before the events stream and the store.
 * NULL is a no-op. */
void pw_webhook_free(pw_webhook *w);

/* The HA hook: pause (false) or resume (true) delivery, as the header says. Idempotent. */
void pw_webhook_set_active(pw_webhook *w, bool active);
bool pw_webhook_is_active(pw_webhook *w);

/* 0 when url may be a webhook: http or https, a host, at most PW_WEBHOOK_URL_MAX bytes, and (without
 * allow_private) not a literal private address nor localhost. Else PW_EINVAL and *why (caller frees). */
int pw_webhook_url_check(const char *url, bool allow_private, char **why);
/* w's allow_private. */
bool pw_webhook_allows_private(const pw_webhook *w);

/* Adds the delivery state to task (a task as GET shows it; changed in place): each entry of its
 * "webhooks" gets scope "task" and its state, and each server-wide receiver is appended with scope
 * "server": delivered, pending and failed (counts), attempts, lastStatus, lastError, lastAttemptAt,
 * nextAttemptAt, and deliveries (one per event: event, id, state, attempts, lastStatus, lastError,
 * nextAttemptAt). */
void pw_webhook_annotate(pw_webhook *w, json_t *task);

/* Figures since start. */
struct pw_webhook_stats {
    uint64_t delivered, failed, expired, attempts;
    size_t pending;
};
void pw_webhook_stats(pw_webhook *w, struct pw_webhook_stats *out);

#endif
