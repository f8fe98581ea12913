/* noderep.c: what an executor's report (executor.h) does to a running node's records: per-image
 * statuses become image results (attempts, the most specific failure seen, the executor's own
 * retries), and a verdict or a decisive image result becomes the node's end. See noderep.h. */
#include "engine/noderep.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/mem.h"

/* Applies one image's verdict; returns true when the node must fail now (*fail_img set). */
static bool image_update(const struct task *t, struct img_res *r, const struct pw_image_status *st,
                         int64_t started_mono)
{
    if (r->state != PW_NODE_RUNNING)
        return false;
    bool pull_error = strcmp(st->reason, "ErrImagePull") == 0;
    if (pull_error && !r->in_pull_error && r->attempts < 255)
        r->attempts++;
    r->in_pull_error = pull_error;
    switch (st->cls) {
    case PW_PULL_WAITING:
        return false;
    case PW_PULL_PRESENT:
        /* found at the pull (the selection had not known): done, nothing pulled. Its state stays
         * succeeded so the work's image list (what was not skipped at selection) keeps its order */
        r->state = PW_NODE_SUCCEEDED;
        pw_taskrec_set_str(&r->reason, "AlreadyPresent");
        pw_taskrec_set_str(&r->message, st->message[0] ? st->message : "the node already held the image");
        return false;
    case PW_PULL_DONE:
        r->state = PW_NODE_SUCCEEDED;
        r->attempts++;
        r->duration_s = (float)(pw_clock_mono_ms() - started_mono) / 1000.0f;
        free(r->reason);
        r->reason = NULL;
        return false;
    case PW_PULL_FAILED_RETRYABLE:
        /* keep the most specific cause seen: a later "Back-off pulling image" says no more than an
         * earlier not-found or unauthorized */
        if (r->cls == PW_PULL_FAILED_NOTFOUND || r->cls == PW_PULL_FAILED_AUTH) {
            if (!st->final)
                return false;
        } else {
            r->cls = PW_PULL_FAILED_RETRYABLE;
            pw_taskrec_set_str(&r->reason, st->reason);
            pw_taskrec_set_str(&r->message, st->message);
        }
        if (!st->final)
            return false;
        if (!r->attempts)
            r->attempts = 1;
        r->state = PW_NODE_FAILED; /* the executor spent its own retries */
        return true;
    case PW_PULL_FAILED_NOTFOUND:
    case PW_PULL_FAILED_AUTH: {
        r->cls = (unsigned char)st->cls;
        pw_taskrec_set_str(&r->reason, st->reason);
        pw_taskrec_set_str(&r->message, st->message);
        int limit = t->spec.retries > 0 ? t->spec.retries : 1;
        if (r->attempts >= limit || st->final) {
            r->state = PW_NODE_FAILED;
            return true;
        }
        return false;
    }
    case PW_PULL_FAILED_PERMANENT:
        r->cls = PW_PULL_FAILED_PERMANENT;
        pw_taskrec_set_str(&r->reason, st->reason);
        pw_taskrec_set_str(&r->message, st->message);
        if (!r->attempts)
            r->attempts = 1;
        r->state = PW_NODE_FAILED;
        return true;
    }
    return false;
}

/* Applies a report's per-image statuses (in the work's order) to running node n; *end says when
 * they end the node. */
static void apply_images(struct task *t, struct tnode *n, const struct pw_image_status *st, size_t nj,
                         struct pw_noderep_end *end)
{
    if (nj != pw_taskrec_work_count(t, n))
        return; /* not this node's work (a report from before a change of the task's images) */
    size_t failed_at = t->spec.n_images;
    bool all_done = true;
    for (size_t j = 0; j < nj; j++) {
        size_t i = pw_taskrec_work_index(t, n, j);
        struct img_res *r = &n->imgs[i];
        unsigned char before_state = r->state, before_att = r->attempts;
        if (image_update(t, r, &st[j], n->started_mono) && failed_at == t->spec.n_images)
            failed_at = i;
        if (r->state != before_state || r->attempts != before_att)
            pw_taskrec_mark_dirty(t, n);
        if (r->state != PW_NODE_SUCCEEDED)
            all_done = false;
    }
    if (failed_at < t->spec.n_images) {
        const struct img_res *r = &n->imgs[failed_at];
        /* the other images' pulls end with the node */
        for (size_t i = 0; i < t->spec.n_images; i++)
            if (n->imgs[i].state == PW_NODE_RUNNING) {
                n->imgs[i].state = PW_NODE_CANCELLED;
                pw_taskrec_set_str(&n->imgs[i].message, "not finished: the node failed on another image");
            }
        *end = (struct pw_noderep_end){.state = PW_NODE_FAILED, .reason = r->reason, .message = r->message,
                                       .image = t->spec.images[failed_at]};
    } else if (all_done) {
        end->state = PW_NODE_SUCCEEDED;
    }
}

/* Fails running node n as a whole with the executor's reason and base message, adding (cite) the
 * last pull error of an image still undecided, or else the images not pulled yet. */
static void fail_citing(const struct task *t, const struct tnode *n, const char *reason, const char *base,
                        bool cite, struct pw_noderep_end *end)
{
    const char *img = NULL;
    char *full = NULL, *pending = NULL;
    for (size_t i = 0; cite && i < t->spec.n_images && !img; i++)
        if (n->imgs[i].state == PW_NODE_RUNNING && n->imgs[i].reason) {
            img = t->spec.images[i];
            full = pw_xasprintf("%s; last pull error: %s: %s", base, n->imgs[i].reason,
                                n->imgs[i].message ? n->imgs[i].message : "");
        }
    if (cite && !img) {
        /* no pull error seen (e.g. DeadlineExceeded during a slow pull): name the images not done */
        pw_buf b;
        pw_buf_init(&b, 0);
        size_t k = 0;
        for (size_t i = 0; i < t->spec.n_images; i++)
            if (n->imgs[i].state == PW_NODE_RUNNING)
                pw_buf_printf(&b, "%s%s", k++ ? ", " : "", t->spec.images[i]);
        if (k) {
            pending = pw_buf_steal(&b);
            img = pending;
            full = pw_xasprintf("%s; not pulled yet: %s", base, pending);
        } else {
            pw_buf_fini(&b);
        }
    }
    *end = (struct pw_noderep_end){.state = PW_NODE_FAILED, .reason = reason, .message = full ? full : base,
                                   .image = img, .owned_message = full, .owned_image = pending};
}

void pw_noderep_apply(struct task *t, struct tnode *n, const struct pw_exec_report *r, struct pw_noderep_end *end)
{
    *end = (struct pw_noderep_end){.state = PW_NODE_RUNNING};
    if (n->state != PW_NODE_RUNNING)
        return;
    if (r->images)
        apply_images(t, n, r->images, r->n_images, end);
    if (end->state != PW_NODE_RUNNING)
        return;
    if (r->attempts > n->attempts) {
        n->attempts = r->attempts;
        pw_taskrec_mark_dirty(t, n);
    }
    if (r->verdict == PW_EXEC_SUCCEEDED)
        end->state = PW_NODE_SUCCEEDED;
    else if (r->verdict == PW_EXEC_FAILED)
        fail_citing(t, n, r->reason ? r->reason : "Failed", r->message ? r->message : "the node failed",
                    r->cite_pending, end);
}

void pw_noderep_end_fini(struct pw_noderep_end *end)
{
    free(end->owned_message);
    free(end->owned_image);
    end->owned_message = end->owned_image = NULL;
}

struct pw_exec_report *pw_noderep_copy(const struct pw_exec_report *r)
{
    struct pw_exec_report *c = pw_xmalloc(sizeof *c);
    *c = *r;
    c->task_id = pw_xstrdup(r->task_id);
    c->node = pw_xstrdup(r->node);
    c->reason = r->reason ? pw_xstrdup(r->reason) : NULL;
    c->message = r->message ? pw_xstrdup(r->message) : NULL;
    c->images = NULL;
    c->n_images = 0;
    if (r->images && r->n_images) {
        struct pw_image_status *st = pw_xcalloc(r->n_images, sizeof *st);
        memcpy(st, r->images, r->n_images * sizeof *st);
        c->images = st;
        c->n_images = r->n_images;
    }
    return c;
}

void pw_noderep_free(struct pw_exec_report *r)
{
    if (!r)
        return;
    free((char *)r->task_id);
    free((char *)r->node);
    free((char *)r->reason);
    free((char *)r->message);
    free((struct pw_image_status *)r->images);
    free(r);
}
