/* outcome.h: a task's progress counts, its final status by successThreshold, and the message that
 * tells an operator what went wrong and what to do about it. Pure functions, tested without a cluster.
 *
 * Thread model: pure; a pw_outcome_reasons is owned by one thread at a time. */
#ifndef PW_ENGINE_OUTCOME_H
#define PW_ENGINE_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

struct pw_outcome_counts {
    size_t total, pending, running, succeeded, failed, skipped, cancelled;
};

/* Failure reasons of a task, counted, each with its first example. */
#define PW_OUTCOME_MAX_REASONS 8
struct pw_outcome_reason {
    char reason[64];
    char hint[32]; /* the hint row to use when not the reason's own ("" : the reason's) */
    size_t count;
    char node[64];
    char image[256];
    char message[1024]; /* a longer message keeps its start and its end (the cause) around " ... " */
};
struct pw_outcome_reasons {
    struct pw_outcome_reason r[PW_OUTCOME_MAX_REASONS];
    size_t n;
    size_t other; /* failures whose reason did not fit */
};

/* Counts one failed node with its reason (and, for the first of a reason, the example). */
void pw_outcome_add_failure(struct pw_outcome_reasons *rs, const char *reason, const char *node,
                            const char *image, const char *message);
/* Like pw_outcome_add_failure, with hint naming the row of the hint table to use instead of the
 * reason's own: the kubelet's reason word stays (e.g. "ErrImagePull") while the classification of
 * its message picks the advice ("ImageNotFound", "ImagePullUnauthorized"). Failures are grouped by
 * (reason, hint). hint NULL or "" is pw_outcome_add_failure. */
void pw_outcome_add_failure_hint(struct pw_outcome_reasons *rs, const char *reason, const char *hint,
                                 const char *node, const char *image, const char *message);

/* finished / total x 100 (100 when total is 0). */
double pw_outcome_percentage(const struct pw_outcome_counts *c);

/* True when every node is finished (no pending, none running). */
bool pw_outcome_done(const struct pw_outcome_counts *c);

/* The final status of a finished, not cancelled task: PW_TASK_SUCCEEDED when total - skipped is 0 or
 * succeeded / (total - skipped) >= threshold, else PW_TASK_FAILED. */
enum pw_task_status pw_outcome_status(const struct pw_outcome_counts *c, double threshold);

/* The task's message once finished (status as pw_outcome_status gives it, or cancelled): what
 * happened, counted, the main failure reasons with an example each and a hint for what to check.
 * namespace_ is where the Jobs and the pull secrets live; rs may be NULL. Caller frees with free(). */
char *pw_outcome_message(const struct pw_outcome_counts *c, enum pw_task_status status, double threshold,
                         const struct pw_outcome_reasons *rs, const char *namespace_);

#endif
