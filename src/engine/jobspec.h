/* jobspec.h: the per-node prewarm Job of ARCHITECTURE.md §4 (name, manifest) and the reading of
 * its pod's container statuses into per-image pull results.
 *
 * The Job holds one container per image ("img-<i>") that runs /prewarm/true, a copy of prewarm-true
 * that an init container ("install", from prewarm's own image) puts into an emptyDir; so an image
 * without a shell still "runs" once pulled. The pod passes the `restricted` Pod Security Standard.
 *
 * Thread model: pure functions; safe from any thread. */
#ifndef PW_ENGINE_JOBSPEC_H
#define PW_ENGINE_JOBSPEC_H

#include <jansson.h>
#include <stddef.h>

#include "engine/executor.h" /* enum pw_pull_class, struct pw_image_status */

/* The names a prewarm Job carries, written here and read by the engine's informers, adoption and
 * sweep (one source for both sides). */
#define PW_JOB_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define PW_JOB_MANAGED_BY "prewarm"
#define PW_JOB_LABEL_TASK "prewarm.io/task"
#define PW_JOB_LABEL_INSTANCE "prewarm.io/instance"
#define PW_JOB_ANNOTATION_NODE "prewarm.io/node"

/* Everything the manifest depends on. All pointers are borrowed for the duration of the call. */
struct pw_jobspec_params {
    const char *task_id, *node_name, *namespace_;
    const char *const *images; /* n_images references, used as given */
    size_t n_images;
    const char *pull_policy;         /* "IfNotPresent", "Always", "Never"; NULL -> IfNotPresent */
    const char *const *pull_secrets; /* secret names, referenced by name only */
    size_t n_pull_secrets;
    int backoff_limit;         /* spec.backoffLimit (from the task's retries) */
    int active_deadline_s;     /* spec.activeDeadlineSeconds (from timeoutSeconds); <= 0 omits it */
    int ttl_s;                 /* spec.ttlSecondsAfterFinished; < 0 omits it */
    const char *helper_image;  /* prewarm's own image, holding /prewarm-true */
    const json_t *tolerations; /* NULL: tolerate every NoExecute taint */
    const char *instance;      /* label prewarm.io/instance on the Job and its pod; NULL or "": none */
};

/* Returns the Job name "pw-<task id lowercased>-<first 10 hex of SHA-256(node_name)>": deterministic,
 * a DNS-1123 label of at most 63 characters (characters of the task id outside [a-z0-9-] become '-',
 * and a long task id is cut). Caller frees with free(). */
char *pw_jobspec_name(const char *task_id, const char *node_name);

/* Returns the Job (batch/v1) for p as a new JSON object (caller releases with json_decref), or NULL
 * when p lacks task_id, node_name, namespace_, helper_image or images, or a string in p is NULL or
 * not UTF-8 (never a Job with a container missing). */
json_t *pw_jobspec_build(const struct pw_jobspec_params *p);

/* Reads pod (borrowed) and fills out[0..n_images-1] from the statuses of containers "img-<i>":
 * running or exit 0 -> DONE; ContainerCreating/PodInitializing -> WAITING; ErrImagePull and
 * ImagePullBackOff classified by the runtime's message (NOTFOUND, AUTH, else RETRYABLE);
 * InvalidImageName, ErrImageNeverPull, a non-zero exit (lastState preferred) -> PERMANENT; a failed
 * install init container (helper image) or a pod rejected as a whole (phase Failed, e.g.
 * TaintToleration) marks every undecided image with that reason and message.
 * The function is stateless: an older kubelet's ImagePullBackOff message ("Back-off pulling image
 * \"x\"") has no cause and reads as RETRYABLE, so callers keep the most specific failure seen for
 * an image rather than downgrade an earlier NOTFOUND/AUTH.
 * Returns 0, or PW_EINVAL when pod is not a JSON object (out untouched). */
int pw_jobspec_pod_status(const json_t *pod, size_t n_images, struct pw_image_status *out);

/* How pw_jobspec_pod_status classifies an ErrImagePull/ImagePullBackOff message (msg NULL or ""
 * -> RETRYABLE): NOTFOUND, AUTH or RETRYABLE. For results read back from the store. */
enum pw_pull_class pw_jobspec_classify_message(const char *msg);

#endif
