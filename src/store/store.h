/* store.h: the one interface through which prewarmd keeps tasks and per-node results, and the table
 * of back ends behind it ("memory:" here; "sqlite:PATH" and "redis://" are rows in store.c).
 *
 * Model. A task is a record with a few indexed columns (id, status, priority, created time, finished
 * time) and a JSON document: the task exactly as the API returns it (spec with defaults, progress,
 * failedNodes, message, timestamps). A node result is a record keyed by (task id, node name) with its
 * state and a JSON document: the node result exactly as GET /api/v1/tasks/{id}/nodes returns it.
 * A back end stores the documents as opaque JSON text plus the indexed columns, so a schema change in
 * the API does not change the store.
 *
 * Durability contract (what a durable back end must give): when pw_store_task_put or
 * pw_store_nodes_put returns 0, what it wrote survives a crash of the process (kill -9). A failed call
 * writes nothing (a batch of node results is one transaction).
 *
 * Pagination: list calls return at most `limit` records and, when more remain, *next gets an opaque
 * continue token (caller frees with free()) to pass back as `cont`; *next is NULL at the end. Tokens
 * are plain text and stay valid across restarts. A malformed token gives PW_EINVAL.
 *
 * Thread model: a pw_store is safe to use from any number of threads at once (a back end serialises
 * internally, e.g. one SQLite connection per thread or a lock). Documents passed in are borrowed and
 * copied (or serialised) before the call returns; documents handed out are new references the caller
 * releases with json_decref. */
#ifndef PW_STORE_H
#define PW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct pw_store pw_store;

/* Task statuses and node states: the one table of their names (the API's words, as stored). Every
 * module that shows, parses or compares them uses these. */
enum pw_task_status { PW_TASK_PENDING, PW_TASK_RUNNING, PW_TASK_SUCCEEDED, PW_TASK_FAILED, PW_TASK_CANCELLED };
#define PW_TASK_STATUS_COUNT 5
enum pw_node_state { PW_NODE_PENDING, PW_NODE_RUNNING, PW_NODE_SUCCEEDED, PW_NODE_FAILED, PW_NODE_SKIPPED,
                     PW_NODE_CANCELLED };
#define PW_NODE_STATE_COUNT 6
/* Names indexed by the enums, each array ending with NULL. */
extern const char *const pw_task_status_names[PW_TASK_STATUS_COUNT + 1];
extern const char *const pw_node_state_names[PW_NODE_STATE_COUNT + 1];
/* The enum value of a name; -1 for NULL or an unknown name. */
int pw_task_status_of(const char *name);
int pw_node_state_of(const char *name);
/* succeeded, failed and cancelled are final. */
static inline bool pw_task_status_is_final(enum pw_task_status s)
{
    return s == PW_TASK_SUCCEEDED || s == PW_TASK_FAILED || s == PW_TASK_CANCELLED;
}
/* The same for a stored status name (false for NULL or an unknown name). */
bool pw_store_status_final(const char *status);

/* One task record. On input every pointer is borrowed; records handed out by list/get own their
 * strings and doc: release them with pw_store_task_fini (or pw_store_tasks_free for arrays). */
struct pw_store_task {
    char *id;            /* "t-..." (time-sortable: a larger id was created later) */
    char *status;        /* one of pw_task_status_names */
    int priority;        /* -1000..1000, for resume ordering */
    int64_t created_ms;  /* wall clock, ms since the epoch */
    int64_t finished_ms; /* 0 while unfinished */
    json_t *doc;         /* the task as the API shows it */
};
void pw_store_task_fini(struct pw_store_task *t);
void pw_store_tasks_free(struct pw_store_task *ts, size_t n);

/* One node result (same ownership rules as pw_store_task). */
struct pw_store_node {
    char *task_id;
    char *node_name;
    char *state; /* one of pw_node_state_names */
    json_t *doc; /* the node result as the API shows it */
};
void pw_store_node_fini(struct pw_store_node *n);
void pw_store_nodes_free(struct pw_store_node *ns, size_t n);

/* Opens the store named by url: "memory:" (nothing survives the process), "sqlite:PATH",
 * "redis://[user:password@]host[:port][/db][?prefix=P]" (redis.h). PW_EINVAL for an unknown scheme
 * or a bad url, with *errmsg (may be NULL; caller frees) saying which schemes exist or what is
 * wrong; PW_EIO or PW_EUNAVAIL when the back end cannot open. *out: free with pw_store_close. */
int pw_store_open(const char *url, pw_store **out, char **errmsg);
/* Flushes and frees; NULL is a no-op. No call may be in flight. */
void pw_store_close(pw_store *s);

/* Creates or replaces the task t->id (all columns and the document). */
int pw_store_task_put(pw_store *s, const struct pw_store_task *t);
/* *out (caller finis) gets the task; PW_ENOTFOUND when there is none. */
int pw_store_task_get(pw_store *s, const char *id, struct pw_store_task *out);
/* Tasks newest first (descending id). status NULL or "" means any. limit 0 means no limit.
 * *items (caller frees with pw_store_tasks_free) and *n get the page, *next the continue token. */
int pw_store_task_list(pw_store *s, const char *status, size_t limit, const char *cont,
                       struct pw_store_task **items, size_t *n, char **next);
/* Every task whose status is pending or running, oldest first (for resume after a restart). */
int pw_store_task_list_unfinished(pw_store *s, struct pw_store_task **items, size_t *n);
/* Deletes the task and its node results; PW_ENOTFOUND when there is none. */
int pw_store_task_delete(pw_store *s, const char *id);
/* Deletes every finished task (and its node results) with finished_ms < before_ms; *removed (may be
 * NULL) gets how many. */
int pw_store_prune(pw_store *s, int64_t before_ms, size_t *removed);

/* Creates or replaces n node results (any tasks) in one transaction. */
int pw_store_nodes_put(pw_store *s, const struct pw_store_node *nodes, size_t n);
/* Node results of one task in ascending node-name order; state NULL or "" means any; limit 0 means
 * no limit. PW_ENOTFOUND when the task does not exist. */
int pw_store_nodes_list(pw_store *s, const char *task_id, const char *state, size_t limit,
                        const char *cont, struct pw_store_node **items, size_t *n, char **next);

/* ---- records: the other kinds of document prewarmd keeps ----
 * A record is a JSON document keyed by (kind, key): policies ("policy"), webhook deliveries waiting
 * to be sent ("webhook"), the prediction model ("predict"), and whatever comes next, without a new
 * table or a new op per kind. kind: 1..32 of [a-z0-9-]; key: 1..512 bytes, no NUL. Records follow
 * the same durability contract as tasks (a put that returned 0 survives kill -9) and the same
 * ownership rules (documents passed in are borrowed, documents handed out are the caller's).
 * Records are never pruned by pw_store_prune: their owner deletes them. */
enum pw_store_rec_mode {
    PW_STORE_REC_UPSERT = 0, /* create or replace */
    PW_STORE_REC_CREATE = 1, /* create only: PW_EEXIST when (kind, key) exists, nothing written */
    PW_STORE_REC_UPDATE = 2  /* replace only: PW_ENOTFOUND when (kind, key) does not exist */
};
struct pw_store_rec {
    char *key;
    json_t *doc;
};
/* Writes doc (an object or array) as record (kind, key); PW_EINVAL for a bad kind or key. */
int pw_store_rec_put(pw_store *s, const char *kind, const char *key, const json_t *doc,
                     enum pw_store_rec_mode mode);
/* *doc (caller decrefs) gets the record; PW_ENOTFOUND when there is none. */
int pw_store_rec_get(pw_store *s, const char *kind, const char *key, json_t **doc);
/* Records of one kind in ascending key order (bytewise), paged like the other lists (limit 0: all).
 * *items (caller frees with pw_store_recs_free) and *n get the page, *next the continue token. */
int pw_store_rec_list(pw_store *s, const char *kind, size_t limit, const char *cont,
                      struct pw_store_rec **items, size_t *n, char **next);
/* PW_ENOTFOUND when there is none. */
int pw_store_rec_delete(pw_store *s, const char *kind, const char *key);
void pw_store_recs_free(struct pw_store_rec *items, size_t n);

/* ---- for back ends ----
 * A back end allocates a struct whose first member is `struct pw_store` with ops set, and adds one
 * row to the table in store.c. Each op has the contract of the public function of the same name;
 * the public functions check arguments before they call it. */
struct pw_store_ops {
    const char *scheme; /* "memory", "sqlite" (the url is "<scheme>:<rest>") */
    int (*open)(const char *rest, pw_store **out, char **errmsg);
    void (*close)(pw_store *s);
    int (*task_put)(pw_store *s, const struct pw_store_task *t);
    int (*task_get)(pw_store *s, const char *id, struct pw_store_task *out);
    int (*task_list)(pw_store *s, const char *status, size_t limit, const char *cont,
                     struct pw_store_task **items, size_t *n, char **next);
    int (*task_list_unfinished)(pw_store *s, struct pw_store_task **items, size_t *n);
    int (*task_delete)(pw_store *s, const char *id);
    int (*prune)(pw_store *s, int64_t before_ms, size_t *removed);
    int (*nodes_put)(pw_store *s, const struct pw_store_node *nodes, size_t n);
    int (*nodes_list)(pw_store *s, const char *task_id, const char *state, size_t limit,
                      const char *cont, struct pw_store_node **items, size_t *n, char **next);
    int (*rec_put)(pw_store *s, const char *kind, const char *key, const json_t *doc,
                   enum pw_store_rec_mode mode);
    int (*rec_get)(pw_store *s, const char *kind, const char *key, json_t **doc);
    int (*rec_list)(pw_store *s, const char *kind, size_t limit, const char *cont,
                    struct pw_store_rec **items, size_t *n, char **next);
    int (*rec_delete)(pw_store *s, const char *kind, const char *key);
};
struct pw_store {
    const struct pw_store_ops *ops;
};

/* The memory back end's ops (memory.c). */
extern const struct pw_store_ops pw_store_memory_ops;

/* Continue tokens shared by the back ends: "k" + the hex of the last key a page returned, so a
 * token is plain text, valid across restarts and back ends. encode: caller frees. decode: *key
 * (caller frees) gets the key; PW_EINVAL when tok is not such a token. */
char *pw_store_token_encode(const char *key);
int pw_store_token_decode(const char *tok, char **key);

/* The url with any password replaced by "***" (for log lines); caller frees. */
char *pw_store_url_redacted(const char *url);

/* Helpers for back ends: deep copies into records the caller finis. */
void pw_store_task_copy(struct pw_store_task *dst, const struct pw_store_task *src);
void pw_store_node_copy(struct pw_store_node *dst, const struct pw_store_node *src);

#endif
