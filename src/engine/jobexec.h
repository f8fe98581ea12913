/* jobexec.h: Job mode, the executor (executor.h) that makes a node pull through one Kubernetes Job
 * (jobspec.h) per node: it creates and deletes Jobs on its own threads, follows the Jobs and their
 * pods with two informers (this instance's only), reads pod statuses into per-image reports and Job
 * conditions into verdicts, and after a restart adopts the running nodes' Jobs by their
 * deterministic names (or creates them again) and deletes the leftover Jobs nobody will use.
 *
 * Thread model and ownership: those of executor.h. Its own threads: the executor threads (Kubernetes
 * calls) and the informers' threads (reports). */
#ifndef PW_ENGINE_JOBEXEC_H
#define PW_ENGINE_JOBEXEC_H

#include <stdbool.h>

#include "base/version.h"
#include "engine/executor.h"

typedef struct pw_k8s_client pw_k8s_client; /* k8s/k8s.h */

/* Defaults for fields left 0/NULL (prewarmd's flags show the same values). */
#define PW_JOBEXEC_DEFAULT_HELPER_IMAGE PW_IMAGE
#define PW_JOBEXEC_DEFAULT_JOB_TTL_S 3600
#define PW_JOBEXEC_DEFAULT_THREADS 4

/* The Job-only settings. */
struct pw_jobexec_settings {
    const char *helper_image; /* copied */
    int job_ttl_s;            /* ttlSecondsAfterFinished (0: the default) */
    bool keep_failed_jobs;    /* a failed node's Job stays for debugging (its TTL removes it) */
    bool tolerate_noexecute;  /* tolerate every NoExecute taint */
    int threads;              /* executor threads (0: the default) */
};

struct pw_jobexec_config {
    pw_k8s_client *client;  /* borrowed; required */
    const char *namespace_; /* where Jobs go (copied; required) */
    const char *instance;   /* label prewarm.io/instance (copied; required, "default" for none) */
    struct pw_jobexec_settings settings;
    struct pw_exec_hooks hooks;
};

/* Makes the Job executor (no thread until pw_executor_start). PW_EINVAL when a required field is
 * missing. *out: free with pw_executor_free. */
int pw_jobexec_new(const struct pw_jobexec_config *cfg, pw_executor **out);

#endif
