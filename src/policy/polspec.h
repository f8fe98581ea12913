/* polspec.h: a policy's spec (docs/policies.md): the validated create/update request with its
 * defaults, the JSON form the API shows and the store keeps, whether a node matches it, and the
 * task requests of its waves.
 *
 * The task-like fields (images, nodeSelector, labelSelector, mode, batchSize, pullSecrets as the
 * task's imagePullSecrets, timeoutSeconds, retries) are validated by the task spec's own parser
 * (engine/taskspec.h), so a policy accepts exactly what a task would; the policy's own fields are
 * name, refreshInterval, enabled, untaintWhenDone and predict.
 *
 * Thread model: pure functions on the caller's structs. */
#ifndef PW_POLICY_POLSPEC_H
#define PW_POLICY_POLSPEC_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "base/labels.h"
#include "engine/taskspec.h"
#include "policy/policy.h"

#define PW_POLSPEC_MIN_REFRESH_MS 60000LL
#define PW_POLSPEC_DEFAULT_REFRESH "24h"

/* A validated policy. Owns everything in it (release with pw_polspec_fini). */
struct pw_polspec {
    char *name;          /* DNS-1123 label */
    json_t *doc;         /* the spec as the API shows it, defaults filled in */
    char **images;       /* the static images (may be none when predict is given) */
    size_t n_images;
    json_t *node_selector; /* NULL when absent */
    pw_labelsel *selector; /* of labelSelector; NULL when absent */
    int64_t refresh_ms;  /* 0: no periodic refresh */
    bool enabled;
    char *untaint;       /* untaintWhenDone: the NoSchedule taint key; NULL when absent */
    json_t *predict;     /* the predict object; NULL when absent */
};

/* Validates req (borrowed) and fills *out. pred (may be NULL: prediction off) checks "predict".
 * 0, or PW_EINVAL with every failure in *errs and *out untouched. */
int pw_polspec_parse(const json_t *req, const struct pw_policy_predictor *pred, struct pw_polspec *out,
                     struct pw_field_errors *errs);
void pw_polspec_fini(struct pw_polspec *s);

/* Whether node (a trimmed or full Node, borrowed) is selected by s's labels. */
bool pw_polspec_selects(const struct pw_polspec *s, const json_t *node);
/* Whether node may get work now: Ready and not cordoned. */
bool pw_polspec_node_eligible(const json_t *node);

/* Whether a refresh of s is due at now_ms (wall ms) when the last one (or, never refreshed, the
 * policy's creation) was at base_ms: never for refreshInterval 0 or a policy without static images. */
bool pw_polspec_refresh_due(const struct pw_polspec *s, int64_t base_ms, int64_t now_ms);

/* The images of a wave: s's static images, then those of predicted (a JSON array, borrowed, may be
 * NULL) that are valid references and not already in (after normalisation), at most 100: a new
 * array the caller decrefs. *dropped (may be NULL) gets how many predicted entries were left out. */
json_t *pw_polspec_images(const struct pw_polspec *s, const json_t *predicted, size_t *dropped);

/* The task spec of a wave of s: images (a JSON array of strings, borrowed: the static images and
 * the predicted ones, deduplicated after normalisation), on nodes (n names, borrowed) or, for a
 * refresh (refresh true, nodes ignored), on whatever the selectors match, with pullPolicy Always.
 * The spec's policy is s's name. 0 and *out (caller finis), or PW_EINVAL when the task parser
 * refuses it (an image a predictor named that is not a valid reference: *why says which; caller
 * frees). */
int pw_polspec_wave(const struct pw_polspec *s, const json_t *images, char *const *nodes, size_t n, bool refresh,
                    struct pw_taskspec *out, char **why);

#endif
