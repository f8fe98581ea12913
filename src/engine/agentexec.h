/* agentexec.h: agent mode, the executor (executor.h) that makes a node pull through the prewarm-agent
 * running on it (docs/agent.md): no Kubernetes object per node at all. The agents connect to
 * prewarmd and sync (POST /agent/v1/sync, a long poll): each sync carries the agent's state (its
 * runtime, image-fs usage, inventory, and the results and in-flight states of its assignments) and
 * is answered with every assignment the node has now (one per image: id, task, image, deadline,
 * policy) and the ids to cancel. Assignment ids are deterministic in (task, node, image), so a
 * repeated assignment is a no-op for the agent and a restarted agent's results still match.
 *
 * The executor keeps, per node, the agent last heard from (healthy while its last sync is younger
 * than the agent timeout) and the works dispatched to it. A work ends when every image has a final
 * result (the core then finishes the node) or when its deadline passes with results missing (a
 * FAILED report, DeadlineExceeded), which is how a silent agent's work ends.
 *
 * Credentials: a work whose task names imagePullSecrets waits until a thread of the executor has
 * read them (Secrets of type kubernetes.io/dockerconfigjson in prewarmd's namespace, matched per
 * image as the kubelet does, dockercfg.h); an image then carries its registry's credentials in its
 * one assignment, only when agents sync over TLS; over plain HTTP it fails, CredentialsRequireTLS.
 * Credentials are never logged, stored, or shown by the API.
 *
 * Thread model: that of executor.h; pw_agentexec_sync and pw_agentexec_list are called from API
 * threads. One timer thread answers long polls when their wait ends and fails works past their
 * deadline. An answer callback is called with the executor's lock held: it must only queue (write
 * to an HTTP stream), never call back into the executor. */
#ifndef PW_ENGINE_AGENTEXEC_H
#define PW_ENGINE_AGENTEXEC_H

#include <stdbool.h>

#include <jansson.h>

#include "engine/executor.h"

typedef struct pw_k8s_client pw_k8s_client; /* k8s/k8s.h */
#include "engine/taskspec.h" /* struct pw_field_errors */

#define PW_AGENTEXEC_DEFAULT_TIMEOUT_S 60 /* --agent-timeout */
#define PW_AGENTEXEC_DEFAULT_POLL_MS 25000 /* how long a sync waits for news */

struct pw_agentexec_settings {
    bool enabled;        /* run the agent executor (prewarmd serves /agent/v1/sync) */
    int agent_timeout_s; /* an agent silent this long is unhealthy (0: the default) */
    int poll_ms;         /* the longest a sync is held (0: the default) */
    bool tls;            /* agents sync over TLS: registry credentials may be sent to them */
};

struct pw_agentexec_config {
    struct pw_agentexec_settings settings;
    struct pw_exec_hooks hooks; /* fate is not used */
    pw_k8s_client *client;      /* reads the tasks' imagePullSecrets (borrowed; NULL: no credentials) */
    const char *namespace_;     /* ... in this namespace (copied) */
};

/* Makes the agent executor (its timer thread starts with pw_executor_start). PW_EINVAL without a
 * report hook. *out: free with pw_executor_free. */
int pw_agentexec_new(const struct pw_agentexec_config *cfg, pw_executor **out);

/* The answer to one sync: status 200 with resp (the callee takes ownership), exactly once. */
typedef void (*pw_agentexec_answer_fn)(void *arg, json_t *resp);

/* One sync from the agent of node (the caller has checked that the agent may speak for node).
 * body: the request (borrowed). On 0 the executor has recorded it and will call answer exactly once:
 * before returning when there is news (or the agent asked not to wait), else when news comes, the
 * wait ends, a newer sync of the node replaces this one, or the executor stops. On PW_EINVAL *errs
 * names the bad fields and nothing was recorded (answer is never called). */
int pw_agentexec_sync(pw_executor *x, const char *node, const json_t *body, pw_agentexec_answer_fn answer,
                      void *arg, struct pw_field_errors *errs);

/* Checks a sync request body as pw_agentexec_sync will (so a caller can refuse it before it starts
 * its answer): 0, or PW_EINVAL with *errs naming the bad fields. */
int pw_agentexec_sync_validate(const json_t *body, struct pw_field_errors *errs);

/* {"items": [one object per agent: node, agentVersion, runtime, lastSeen, healthy, images,
 * imageFs, assignments]} sorted by node; a new reference. */
json_t *pw_agentexec_list(pw_executor *x);

/* The deterministic assignment id of (task, node, image): 32 lowercase hex characters written to
 * out (at least 33 bytes). */
void pw_agentexec_assignment_id(const char *task_id, const char *node, const char *image, char *out);

#endif
