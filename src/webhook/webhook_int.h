/* webhook_int.h: the webhook module's inner parts, shared by its files and its unit tests (not part
 * of the module's interface: other modules use webhook.h only).
 *
 * policy.c: pure functions: the signature, the retry schedule, Retry-After, what an HTTP status
 * means, and which addresses are private.
 * outbox.c: the outbox, the deliveries in key order, kept in memory and written through to the
 * store (records of kind "webhook"); it does no locking (its callers hold w->mu around every call).
 * The service, struct pw_webhook, is spread over four files by concept:
 * webhook.c: its life cycle (configuration, threads, leadership, figures) and the url check;
 * consumer.c: the consumer thread, turning events into deliveries (the CloudEvent body), and the
 * mark in the store with the catching up after a restart;
 * deliver.c: the delivery workers: one attempt with libcurl, the Secrets of secretRef, and what the
 * answer does to the delivery;
 * annotate.c: the delivery state shown in GET task. */
#ifndef PW_WEBHOOK_INT_H
#define PW_WEBHOOK_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>

#include "events/events.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "webhook/webhook.h"

/* ---- policy.c ---- */

/* The Prewarm-Signature header value "t=<unix>,v1=<64 hex>" of body: HMAC-SHA256 with secret over
 * "<unix>.<body>". Writes into out (at least PW_WH_SIG_MAX bytes). */
#define PW_WH_SIG_MAX 96
void pw_wh_sign(const char *secret, size_t secret_len, int64_t unix_s, const char *body, size_t body_len, char *out);

/* The delay before attempt number attempt+1 after attempt failed (attempt >= 1): base_ms * 2^(attempt-1),
 * capped at max_ms, then "equal jitter": half of it fixed and half uniform from rnd (0 <= rnd < 1). */
int64_t pw_wh_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double rnd);

/* A Retry-After value (RFC 9110: delay-seconds or an HTTP-date) as a delay in ms from now_real_ms
 * (a date in the past is 0). -1 when it is neither, or a date more than 100 years ahead. */
int64_t pw_wh_retry_after_ms(const char *value, int64_t now_real_ms);

/* What the outcome of one attempt means: status is the HTTP status, 0 when no response came. */
enum pw_wh_verdict { PW_WH_DELIVERED, PW_WH_RETRY, PW_WH_PERMANENT };
enum pw_wh_verdict pw_wh_verdict_of(int status);

/* True for an address a webhook may not reach without --webhook-allow-private: unspecified,
 * loopback, private (RFC 1918, unique local fc00::/7), shared (100.64/10), link-local (169.254/16
 * with the cloud metadata address, fe80::/10), multicast, reserved, and the IPv4-mapped forms. */
bool pw_wh_addr_private(const struct sockaddr *sa);
/* The same for a literal address in text (IPv4 in every form getaddrinfo reads as a number: "127.1",
 * "2130706433"; IPv6, brackets and a zone allowed); false when the text is not an address (a host name). */
bool pw_wh_host_literal_private(const char *host);

/* ---- outbox.c ---- */

enum pw_wh_state { PW_WH_PENDING, PW_WH_DONE, PW_WH_FAILED };

/* One delivery: an event for one receiver. Every string is owned. */
struct pw_wh_delivery {
    char *key;        /* "<event id, 20 digits>.<s|t><target index, 2 digits>": key order is event order */
    char *id;         /* the CloudEvents id (the event stream's id) */
    char *task_id;
    char *kind;       /* started, succeeded, failed, cancelled */
    char *url;
    bool task_scope;  /* a task's own webhook (else a server-wide --webhook) */
    int index;        /* in the task's webhooks or in the --webhook list */
    char *secret_ref; /* the task webhook's Secret name, or NULL */
    char *body;       /* the CloudEvent (NULL once finished: it is not kept) */
    int64_t event_ms, next_ms, last_ms, done_ms; /* wall clock; 0: never */
    int attempts;
    int last_status;  /* the HTTP status of the last attempt, 0: none (or no response) */
    char *last_error; /* or NULL */
    enum pw_wh_state state;
    bool busy;        /* an attempt is in flight */
};

typedef struct pw_wh_outbox pw_wh_outbox;

/* A new outbox writing to store (borrowed; NULL: in memory only). */
pw_wh_outbox *pw_wh_outbox_new(pw_store *store);
void pw_wh_outbox_free(pw_wh_outbox *ob);
/* Reads every "webhook" record of the store that is not held yet (deliveries added before a restart,
 * or by another replica). *added (may be NULL) gets how many. */
int pw_wh_outbox_load(pw_wh_outbox *ob, size_t *added);
/* Adds d (taken on success: the outbox owns it) and writes it to the store (create only), so it
 * survives a crash once this returned 0. PW_EEXIST when its key is held (d is left to the caller);
 * a store error is returned with d not added. */
int pw_wh_outbox_add(pw_wh_outbox *ob, struct pw_wh_delivery *d);
/* Writes d's state after an attempt (a finished delivery without its body). */
int pw_wh_outbox_save(pw_wh_outbox *ob, struct pw_wh_delivery *d);
/* The two halves of add, for callers that keep store writes out of their lock: put writes a
 * delivery's document (pw_wh_delivery_doc) to the store only, touching nothing in memory (safe
 * without the caller's lock); insert adds d (taken on success) in memory only, PW_EEXIST when its
 * key is held. */
int pw_wh_outbox_put(pw_wh_outbox *ob, const char *key, const json_t *doc, enum pw_store_rec_mode mode);
int pw_wh_outbox_insert(pw_wh_outbox *ob, struct pw_wh_delivery *d);
/* True when a delivery of this (task, kind, target) is held, whatever its state. */
bool pw_wh_outbox_has(pw_wh_outbox *ob, const char *task_id, const char *kind, bool task_scope, int index);
/* The delivery to attempt next: the first pending one in key order whose receiver (url) has no
 * earlier pending one (each receiver gets its events in order) and no attempt in flight, and whose
 * next_ms <= now_ms. NULL when none is due; *wait_ms then gets the time until the first one is
 * (-1: nothing pending). */
struct pw_wh_delivery *pw_wh_outbox_next(pw_wh_outbox *ob, int64_t now_ms, int64_t *wait_ms);
/* Deliveries held, and the i-th in key order (borrowed). */
size_t pw_wh_outbox_count(pw_wh_outbox *ob);
struct pw_wh_delivery *pw_wh_outbox_at(pw_wh_outbox *ob, size_t i);
/* Deliveries pending. */
size_t pw_wh_outbox_pending(pw_wh_outbox *ob);
/* Calls fn for each delivery of task_id, in key order. */
void pw_wh_outbox_each(pw_wh_outbox *ob, const char *task_id, void (*fn)(void *arg, const struct pw_wh_delivery *d),
                       void *arg);
/* Forgets (memory and store) finished deliveries done before before_ms. *removed may be NULL. */
void pw_wh_outbox_gc(pw_wh_outbox *ob, int64_t before_ms, size_t *removed);

/* A delivery's record document and back (the store's form). from_doc: NULL when doc is not one. */
json_t *pw_wh_delivery_doc(const struct pw_wh_delivery *d);
struct pw_wh_delivery *pw_wh_delivery_from_doc(const char *key, const json_t *doc);
void pw_wh_delivery_free(struct pw_wh_delivery *d);
/* The key of an event's delivery to one target (into out, at least PW_WH_KEY_MAX bytes). */
#define PW_WH_KEY_MAX 32
void pw_wh_key(uint64_t event_id, bool task_scope, int index, char *out);

/* ---- the service (webhook.c, consumer.c, deliver.c, annotate.c) ---- */

#define PW_WH_MAX_WORKERS 16
#define PW_WH_RECENT 1024 /* (task, event) pairs handled lately: repeated "running" events cost no parse */

/* A Secret of secretRef as last read (deliver.c's cache). */
struct pw_wh_secret {
    char *name;
    char *value; /* NULL: could not be read (why in error) */
    size_t len;
    char *error;
    int64_t read_mono;
};

/* The service. The fields before mu are set by pw_webhook_new and only read after it (sub is handed
 * to the consumer thread); mu guards the outbox and the state after it; secret_mu the Secrets' cache.
 * Attempts and store writes run without mu. */
struct pw_webhook {
    pw_events_sub *sub; /* the stream cursor, made before the consumer thread starts and then its own */
    pw_events *events;
    pw_store *store;
    pw_k8s_client *client;
    char *namespace_, *source, *secret;
    size_t secret_len;
    char **urls;
    size_t n_urls;
    bool allow_private;
    int64_t timeout_ms, retry_base_ms, retry_max_ms, max_age_ms, keep_ms;

    pthread_mutex_t mu;
    pthread_cond_t work; /* a delivery added or finished, active changed, stopping */
    pw_wh_outbox *outbox;
    bool active, stopping;
    bool consumer_done; /* the consumer thread ended (the marker writes once more, then ends) */
    int64_t handled_ms; /* the time of the last event turned into deliveries (the mark to write) */
    char *recent[PW_WH_RECENT];
    size_t recent_next;
    uint64_t delivered, failed, expired, attempts;

    pthread_mutex_t secret_mu;
    struct pw_wh_secret *secrets;
    size_t n_secrets;

    pthread_t consumer, marker;
    pthread_t workers[PW_WH_MAX_WORKERS];
    int n_workers;

    pw_metric *m_deliveries, *m_attempts, *m_pending, *m_latency;
};

/* consumer.c. After a restart (or on becoming leader): the tasks that ended after the mark get the end
 * deliveries they miss. Called without w->mu. */
void pw_wh_reconcile(pw_webhook *w);
/* The consumer thread (arg: w): reads w->sub (taken from w) until w->stopping, then sets
 * w->consumer_done. */
void *pw_wh_consumer_main(void *arg);
/* The marker thread (arg: w): writes the mark as it advances; ends after the consumer did. */
void *pw_wh_marker_main(void *arg);

/* deliver.c. A delivery worker (arg: w): attempts due deliveries until w->stopping. */
void *pw_wh_worker_main(void *arg);

#endif
