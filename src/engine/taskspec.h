/* taskspec.h: the task spec: a validated create request (ARCHITECTURE §3) with every default filled
 * in, its JSON form (what the API shows and the store keeps), and task ids.
 *
 * Thread model: pure functions on the caller's structs, safe from any thread (pw_task_id_new is
 * thread-safe). Ownership: a pw_taskspec owns every string, JSON value and parsed form in it. */
#ifndef PW_ENGINE_TASKSPEC_H
#define PW_ENGINE_TASKSPEC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "base/labels.h"
#include "engine/imageref.h"

/* A validated create request with every default filled in. Owns every string and JSON value
 * (release with pw_taskspec_fini). */
struct pw_taskspec {
    char **images;
    size_t n_images;
    int batch_size;          /* 1-10000, default 10 */
    char *strategy;          /* "rolling" (default) | "batch" */
    json_t *node_selector;   /* object of strings; NULL when absent */
    char *label_selector;    /* NULL when absent */
    char **node_names;       /* NULL when absent (n_node_names 0); present-but-empty selects nothing */
    size_t n_node_names;
    bool has_node_names;
    bool include_not_ready;
    bool include_unschedulable;
    char *pull_policy;       /* "IfNotPresent" (default) | "Always" | "Never" */
    char *mode;              /* how nodes pull: "auto" (default: the node's agent when it has a healthy
                              * one, else a Job) | "job" | "agent" (docs/agent.md) */
    char **pull_secrets;
    size_t n_pull_secrets;
    int timeout_s;           /* 1-86400, default 600 */
    int retries;             /* 0-10, default 3 */
    double success_threshold; /* 0-1, default 0.9 */
    int priority;            /* -1000..1000, default 0 */
    json_t *labels;          /* object of strings; NULL when absent */
    json_t *webhooks;        /* the task's own receivers (webhook.h): an array of {url, events,
                              * secretRef?}, events filled in; NULL when absent */
    char *policy;            /* the policy whose wave this task is (set by the policy controller, never by
                              * the request body; shown and stored as policy); NULL for other tasks */
    char *created_by;        /* the user who created it (set by the API, never by the request body;
                              * shown and stored as createdBy); NULL when unknown */
    /* parsed forms, made once by pw_taskspec_parse (the engine never parses the text again) */
    pw_labelsel *selector;   /* of label_selector; NULL when absent */
    /* which clusters (docs/multicluster.md): names (ANDed with the selector over cluster labels);
     * neither: every configured cluster */
    char **clusters;         /* NULL when absent (n_clusters 0) */
    size_t n_clusters;
    char *cluster_selector;  /* NULL when absent */
    pw_labelsel *cluster_sel; /* of cluster_selector; NULL when absent */
    struct pw_imageref *refs; /* n_images references, in the order of images */
};

/* One validation failure: field ("images[1]") and message ("invalid reference format"). */
struct pw_field_error {
    char field[128];
    char message[384];
};
#define PW_TASKSPEC_MAX_ERRORS 16

struct pw_field_errors {
    struct pw_field_error e[PW_TASKSPEC_MAX_ERRORS];
    size_t n;
};

/* Appends one failure (the first PW_TASKSPEC_MAX_ERRORS are kept), the message formatted. */
void pw_field_errors_add(struct pw_field_errors *errs, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Validates req (a JSON object, borrowed) as a create request (ARCHITECTURE §3: unknown fields,
 * types, ranges, image references, label selectors, label keys and values, DNS-1123 names) and fills
 * *out with defaults. Returns 0, or PW_EINVAL with every failure found in *errs (first ones kept when
 * more than PW_TASKSPEC_MAX_ERRORS) and *out untouched. */
int pw_taskspec_parse(const json_t *req, struct pw_taskspec *out, struct pw_field_errors *errs);
void pw_taskspec_fini(struct pw_taskspec *s);
/* The spec as the API shows it (images, batchSize, strategy, ...): a new object the caller owns.
 * pw_taskspec_parse(pw_taskspec_to_json(s)) gives back s (the store keeps this form). */
json_t *pw_taskspec_to_json(const struct pw_taskspec *s);

/* Like pw_taskspec_parse on the spec fields of task (a task as the API shows it, with id, status,
 * progress, ...: those other fields are ignored). For reloading tasks from the store. */
int pw_taskspec_from_task(const json_t *task, struct pw_taskspec *out, struct pw_field_errors *errs);

/* A new task id "t-" + 12 lowercase base32 characters, increasing with time within this process
 * (48 bits of ms clock then a counter). Writes into out (at least 16 bytes). Thread-safe. */
void pw_task_id_new(char *out);

#endif
