/* executor.h: the seam between the engine core (tasks, queue, scheduling, outcome, store) and the
 * ways a node is made to pull images. Job mode (jobexec.h: one Kubernetes Job per node) is one
 * executor; agent mode (prewarm-agent over the node's CRI, docs/agent.md) is the second.
 *
 * Model: the core hands an executor one node's work (dispatch), later tells it the core is done
 * with that node (cancel: finished, failed or cancelled; the executor may keep what a failure left
 * for debugging, e.g. Job mode's --keep-failed-jobs). The executor reports back through one path, the report hook: per-image statuses
 * as they change and, once, a verdict. Reports for nodes the core no longer runs are ignored by the
 * core, so an executor may report late or twice. After a restart the core gives the executor the
 * nodes that were running (start's resume list): the executor adopts what it finds of them or
 * starts them again, and clears what nobody will use (asking the fate hook).
 *
 * Thread model: dispatch, cancel, healthy and inventory are called with the engine lock held
 * (inventory also within the node informer's cache lock, during selection), so they never block on
 * the network (they queue work for the executor's own threads) and an executor never calls into the
 * engine or an informer while holding its own lock. tick is called from the engine's loop thread
 * only, without the engine lock (it may block briefly). The report hook may be called from any of
 * the executor's threads; it only queues (it never takes the engine lock). The fate hook is called
 * only from within tick, with no executor lock held: it takes the engine lock itself and may read
 * the store. Lock order: engine store-write lock -> engine lock -> executor locks -> the engine's
 * event queue lock (engine.h).
 *
 * Ownership: every pointer passed in is borrowed for the duration of the call (the executor copies
 * what it keeps); a report's pointers are valid only during the hook.
 *
 * Failure: dispatch and cancel cannot fail; what goes wrong later is a report (a verdict with a
 * reason). start fails with a PW_E* code and leaves nothing running. */
#ifndef PW_ENGINE_EXECUTOR_H
#define PW_ENGINE_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* What one image's pull has come to, as an executor reads it. */
enum pw_pull_class {
    PW_PULL_WAITING,          /* not decided yet (creating, initializing, no status) */
    PW_PULL_DONE,             /* pulled */
    PW_PULL_FAILED_RETRYABLE, /* a pull error that may pass (network, registry 5xx, back-off) */
    PW_PULL_FAILED_NOTFOUND,  /* the registry says the image or tag does not exist */
    PW_PULL_FAILED_AUTH,      /* 401/403: missing or wrong credentials */
    PW_PULL_FAILED_PERMANENT, /* retrying cannot help: invalid name, never-pull, start error, rejected */
    PW_PULL_PRESENT           /* the node already held it: nothing was pulled */
};

/* The verdict for one image, with the runtime's reason and message (truncated to fit, "" if none). */
struct pw_image_status {
    enum pw_pull_class cls;
    char reason[64];
    char message[512];
    bool final; /* a failure the executor will not retry (its own retries are spent) */
};

/* One node's work: the images still to pull (the task's images minus those already present, in
 * task order) and the task's pull parameters. */
struct pw_exec_work {
    const char *task_id, *node;
    const char *const *images;
    size_t n_images;
    const char *pull_policy;         /* "IfNotPresent", "Always", "Never" */
    const char *const *pull_secrets; /* secret names in prewarm's namespace */
    size_t n_pull_secrets;
    int retries;        /* pull attempts after the first */
    int timeout_s;      /* the node's time limit, counted from started_ms */
    int64_t started_ms; /* wall clock when the node started (0: now) */
};

enum pw_exec_verdict {
    PW_EXEC_PROGRESS,  /* per-image statuses only; the node goes on */
    PW_EXEC_SUCCEEDED, /* the node is done: every image pulled */
    PW_EXEC_FAILED     /* the node failed as a whole: reason, message */
};

/* A report on one node (all pointers valid during the hook only). */
struct pw_exec_report {
    const char *task_id, *node;
    enum pw_exec_verdict verdict;
    const struct pw_image_status *images; /* n_images statuses in the order of the work's images, or NULL */
    size_t n_images;
    int attempts;         /* attempts the executor counted so far; 0: no news */
    const char *reason;   /* PW_EXEC_FAILED */
    const char *message;  /* PW_EXEC_FAILED */
    bool cite_pending;    /* PW_EXEC_FAILED: the core appends the last pull error of an image still
                           * undecided, or else the names of the images not pulled yet, to message */
};

/* What the core knows of a node the executor found work of (for the clean-up after a restart). */
enum pw_exec_fate {
    PW_EXEC_FATE_ACTIVE,   /* the node is pending or running: keep */
    PW_EXEC_FATE_UNSURE,   /* the store cannot say now: keep, decide another time */
    PW_EXEC_FATE_DONE,     /* the node finished (not a failure): clear */
    PW_EXEC_FATE_FAILED,   /* the node failed, or its task finished: clear unless failures are kept */
    PW_EXEC_FATE_UNKNOWN   /* no such task or node: clear */
};

struct pw_exec_hooks {
    void *arg;
    void (*report)(void *arg, const struct pw_exec_report *r);
    enum pw_exec_fate (*fate)(void *arg, const char *task_id, const char *node);
    /* NULL, or asked right before each Kubernetes write (a Job create or delete): false drops the
     * write (this replica no longer leads, engine.h may_lead). Any executor thread; quick. */
    bool (*may_write)(void *arg);
};

typedef struct pw_executor pw_executor;

/* Starts the executor's threads (and informers), first taking resume[0..n-1], the nodes that were
 * running before a restart, to adopt or start again. 0 or a PW_E* code (nothing left running). */
int pw_executor_start(pw_executor *x, const struct pw_exec_work *resume, size_t n);
/* Starts one node's work (the node is running in the core). */
void pw_executor_dispatch(pw_executor *x, const struct pw_exec_work *w);
/* The core is done with the node (finished, failed, or cancelled): stop its work and clear what it
 * left (failed: the node failed, which an executor may keep for debugging). A node the executor does
 * not run is a no-op. */
void pw_executor_cancel(pw_executor *x, const char *task_id, const char *node, bool failed);
/* Called once per engine round, after the round's store writes succeeded, on the loop thread without
 * the engine lock: the executor's periodic duties (adoption and clean-up once its caches are
 * complete). */
void pw_executor_tick(pw_executor *x);
/* Whether the executor can serve node now (mode auto). */
bool pw_executor_healthy(pw_executor *x, const char *node);
/* The image names node is known to hold beyond its Node object's status.images (an agent's
 * inventory): a new reference to an array of strings, or NULL when the executor knows nothing. */
json_t *pw_executor_inventory(pw_executor *x, const char *node);
/* The mode's name, as per-node results show it ("job", "agent"). Static text. */
const char *pw_executor_mode(const pw_executor *x);
/* Stops the executor's threads, leaving its work in the cluster as it is, and frees. NULL no-op. */
void pw_executor_free(pw_executor *x);

/* ---- for executors ----
 * An executor allocates a struct whose first member is `struct pw_executor` with ops set. Each op
 * has the contract of the public function of the same name. */
struct pw_executor_ops {
    const char *mode;
    int (*start)(pw_executor *x, const struct pw_exec_work *resume, size_t n);
    void (*dispatch)(pw_executor *x, const struct pw_exec_work *w);
    void (*cancel)(pw_executor *x, const char *task_id, const char *node, bool failed);
    void (*tick)(pw_executor *x);
    bool (*healthy)(pw_executor *x, const char *node);
    json_t *(*inventory)(pw_executor *x, const char *node); /* may be NULL: knows nothing */
    void (*free)(pw_executor *x);
};
struct pw_executor {
    const struct pw_executor_ops *ops;
};

#endif
