/* outcome.c: task status by successThreshold and operator-facing messages. The hints for each
 * failure reason are a table so a new reason is one row. */
#include "engine/outcome.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"

static const struct {
    const char *reason;
    const char *hint;
} hints[] = {
    {"ImageNotFound", "check that the image reference exists in its registry (name and tag)"},
    {"ImagePullUnauthorized",
     "check imagePullSecrets: each must name a kubernetes.io/dockerconfigjson Secret in namespace %s "
     "with credentials for the registry"},
    {"ErrImagePull", "check the image reference and the registry's reachability from the nodes"},
    {"ImagePullBackOff", "check the image reference and the registry's reachability from the nodes"},
    {"InvalidImageName", "fix the image reference"},
    {"ErrImageNeverPull", "pullPolicy Never only checks images already on the node; use IfNotPresent"},
    {"DeadlineExceeded", "the pulls took longer than timeoutSeconds: raise it or check registry bandwidth"},
    {"BackoffLimitExceeded", "the pod failed more often than retries allows: see the Job's events"},
    {"NodeDeleted", "the node left the cluster during the task; nothing to fix unless it comes back"},
    {"NodeNotReady", "the node stayed NotReady past the grace period: check the node and its kubelet"},
    {"StartError", "the helper could not start in the image: check the helper image and its architecture"},
    {"JobCreateFailed", "prewarmd could not create the Job: check its RBAC and the namespace %s"},
    {"TaintToleration", "the node has a NoExecute taint the Job does not tolerate"},
};

/* Copies src into dst (size n); when it does not fit, keeps its start and its end around " ... ":
 * the end of a runtime's message usually holds the cause ("401 Unauthorized"). */
static void copy_middle_cut(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);
    if (len < n) {
        memcpy(dst, src, len + 1);
        return;
    }
    static const char gap[] = " ... ";
    size_t keep = n - 1 - (sizeof gap - 1);
    size_t head = keep / 3, tail = keep - head;
    memcpy(dst, src, head);
    memcpy(dst + head, gap, sizeof gap - 1);
    memcpy(dst + head + sizeof gap - 1, src + len - tail, tail);
    dst[n - 1] = '\0';
}

void pw_outcome_add_failure(struct pw_outcome_reasons *rs, const char *reason, const char *node,
                            const char *image, const char *message)
{
    pw_outcome_add_failure_hint(rs, reason, NULL, node, image, message);
}

void pw_outcome_add_failure_hint(struct pw_outcome_reasons *rs, const char *reason, const char *hint,
                                 const char *node, const char *image, const char *message)
{
    if (!reason || !*reason)
        reason = "Failed";
    if (!hint)
        hint = "";
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->r[i].reason, reason) == 0 && strcmp(rs->r[i].hint, hint) == 0) {
            rs->r[i].count++;
            return;
        }
    if (rs->n == PW_OUTCOME_MAX_REASONS) {
        rs->other++;
        return;
    }
    struct pw_outcome_reason *r = &rs->r[rs->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    snprintf(r->hint, sizeof r->hint, "%s", hint);
    r->count = 1;
    snprintf(r->node, sizeof r->node, "%s", node ? node : "");
    snprintf(r->image, sizeof r->image, "%s", image ? image : "");
    copy_middle_cut(r->message, sizeof r->message, message ? message : "");
}

double pw_outcome_percentage(const struct pw_outcome_counts *c)
{
    if (c->total == 0)
        return 100.0;
    size_t fin = c->succeeded + c->failed + c->skipped + c->cancelled;
    return (double)fin * 100.0 / (double)c->total;
}

bool pw_outcome_done(const struct pw_outcome_counts *c)
{
    return c->pending == 0 && c->running == 0;
}

enum pw_task_status pw_outcome_status(const struct pw_outcome_counts *c, double threshold)
{
    size_t considered = c->total - c->skipped;
    if (considered == 0)
        return PW_TASK_SUCCEEDED;
    /* compare in integers where possible: succeeded >= threshold * considered, with a small epsilon
     * so 0.9 * 10 = 9 is met by 9 */
    if ((double)c->succeeded + 1e-9 >= threshold * (double)considered)
        return PW_TASK_SUCCEEDED;
    return PW_TASK_FAILED;
}

static const char *hint_for(const char *reason)
{
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (strcmp(hints[i].reason, reason) == 0)
            return hints[i].hint;
    return NULL;
}

static void add_reasons(pw_buf *b, const struct pw_outcome_reasons *rs, const char *ns)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++) {
        const struct pw_outcome_reason *r = &rs->r[i];
        pw_buf_printf(b, "%s %zu x %s (e.g. node %s", i ? ";" : "", r->count, r->reason, r->node);
        if (r->image[0])
            pw_buf_printf(b, ", image %s", r->image);
        if (r->message[0])
            pw_buf_printf(b, ": %s", r->message);
        pw_buf_puts(b, ")");
        const char *h = r->hint[0] ? hint_for(r->hint) : NULL;
        if (!h)
            h = hint_for(r->reason);
        if (h) {
            pw_buf_puts(b, " - ");
            /* the hints' only conversion is %s for the namespace */
            const char *p = strstr(h, "%s");
            if (p) {
                pw_buf_append(b, h, (size_t)(p - h));
                pw_buf_puts(b, ns ? ns : "");
                pw_buf_puts(b, p + 2);
            } else {
                pw_buf_puts(b, h);
            }
        }
    }
    if (rs->other)
        pw_buf_printf(b, "; %zu more with other reasons", rs->other);
}

char *pw_outcome_message(const struct pw_outcome_counts *c, enum pw_task_status status, double threshold,
                         const struct pw_outcome_reasons *rs, const char *namespace_)
{
    pw_buf b;
    pw_buf_init(&b, 0);
    if (status == PW_TASK_CANCELLED) {
        pw_buf_printf(&b, "cancelled: %zu of %zu nodes finished before the cancel (%zu succeeded, %zu failed, "
                          "%zu skipped), %zu cancelled",
                      c->succeeded + c->failed + c->skipped, c->total, c->succeeded, c->failed, c->skipped,
                      c->cancelled);
    } else if (c->total == 0) {
        pw_buf_puts(&b, "no node matched the task's selectors (nodeSelector, labelSelector, nodeNames, and "
                        "the Ready and cordon filters): nothing to do");
    } else if (c->total == c->skipped) {
        pw_buf_printf(&b, "every selected node (%zu) already holds every image: nothing to pull", c->total);
    } else if (status == PW_TASK_SUCCEEDED) {
        pw_buf_printf(&b, "%zu of %zu nodes hold every image (%zu pulled, %zu already had them)",
                      c->succeeded + c->skipped, c->total, c->succeeded, c->skipped);
        if (c->failed) {
            pw_buf_printf(&b, "; %zu failed, within the success threshold of %g%%:", c->failed, threshold * 100);
            add_reasons(&b, rs, namespace_);
        }
    } else {
        size_t considered = c->total - c->skipped;
        pw_buf_printf(&b, "%zu of %zu nodes failed: %zu of %zu succeeded, below the success threshold of %g%%:",
                      c->failed, c->total, c->succeeded, considered, threshold * 100);
        add_reasons(&b, rs, namespace_);
    }
    return pw_buf_steal(&b);
}
