/* puller.h: prewarm-agent's assignments and the pulls that serve them. prewarmd's answer to each sync
 * is the whole set of assignments the node has (level-triggered): pw_puller_apply brings the table to
 * it (new ids are queued, ids in cancel are stopped, finished ones prewarmd no longer lists are
 * forgotten). Up to max_parallel pulls run at once, each in its own thread, each:
 *   1. ImageStatus: held (policy IfNotPresent or Never) -> skipped, AlreadyPresent; Never and not
 *      held -> failed, ErrImageNeverPull;
 *   2. ImageFsInfo, then statvfs of its mountpoint: free space below min_free_bytes or
 *      min_free_percent -> failed, InsufficientDiskSpace, nothing pulled;
 *   3. PullImage with the assignment's credentials and its deadline; a failure that may pass (the
 *      registry unreachable, 5xx) is tried again, up to the assignment's retries, within the deadline.
 * Reasons: ErrImagePull (the registry said no: the runtime's own message), InsufficientDiskSpace,
 * RuntimeUnavailable (the runtime's socket is down), DeadlineExceeded, InvalidImageName,
 * ErrImageNeverPull.
 *
 * Thread model: every call is safe from any thread; the changed hook is called from pull threads
 * (with no puller lock held) whenever an assignment's state changes, so the syncer reports it. */
#ifndef PW_AGENT_PULLER_H
#define PW_AGENT_PULLER_H

#include <stdint.h>

#include <jansson.h>

#include "agent/cri.h"

typedef struct pw_puller pw_puller;

struct pw_puller_config {
    pw_cri *cri;              /* borrowed; required */
    int max_parallel;         /* pulls at once (0: 2) */
    long long min_free_bytes; /* 0: no floor */
    double min_free_percent;  /* 0: no floor */
    size_t thread_stack;      /* the pull threads' stack size (0: the system's; kubesim runs thousands) */
    void (*changed)(void *arg);
    void *arg;
};

int pw_puller_new(const struct pw_puller_config *cfg, pw_puller **out);
/* Stops the pulls in flight (their connections close, the runtime cancels them), joins, frees. */
void pw_puller_free(pw_puller *p);

/* Brings the table to prewarmd's answer: assignments [{id, task, image, deadlineUnixMs, pullPolicy,
 * retries, auth?}] and cancel [ids] (both borrowed; malformed entries are skipped and logged). */
void pw_puller_apply(pw_puller *p, const json_t *assignments, const json_t *cancel);
/* Every assignment held, for the next sync: [{id, state, reason, message, attempts, durationSeconds}]
 * (state queued, pulling, succeeded, skipped or failed). A new reference. */
json_t *pw_puller_report(pw_puller *p);
/* Pulls started since pw_puller_new (tests and logs). */
uint64_t pw_puller_pulls(pw_puller *p);

#endif
