/* resume.c: an unfinished task rebuilt from its store record after a restart, and the executor's
 * work of a running node (for dispatch and for the executors' start). See resume.h. */
#include "engine/resume.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

struct task *pw_resume_task(pw_store *store, const struct pw_store_task *rec)
{
    struct task *t = pw_xcalloc(1, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", rec->id);
    struct pw_field_errors errs;
    if (pw_taskspec_from_task(rec->doc, &t->spec, &errs) != 0) {
        PW_ERROR("task %s cannot be resumed: its stored spec is invalid (%s: %s)", rec->id,
                 errs.n ? errs.e[0].field : "", errs.n ? errs.e[0].message : "");
        free(t);
        return NULL;
    }
    t->created_ms = rec->created_ms;
    t->status = PW_TASK_PENDING;
    t->failed = json_array();
    t->sched.priority = t->spec.priority;
    t->sched.batch_size = (size_t)t->spec.batch_size;
    t->sched.batch_strategy = strcmp(t->spec.strategy, "batch") == 0;
    if (pw_task_status_of(rec->status) == PW_TASK_RUNNING) {
        /* the clusters it spans, in their order, and those that failed as a whole */
        const json_t *cls = json_object_get(json_object_get(rec->doc, "progress"), "clusters");
        for (size_t i = 0; i < json_array_size(cls); i++) {
            const json_t *c = json_array_get(cls, i);
            const char *name = pw_taskrec_str(c, "name");
            if (!name)
                continue;
            size_t k = pw_taskrec_cluster(t, name);
            pw_taskrec_set_str(&t->cl[k].failed, pw_taskrec_str(c, "message"));
        }
        if (pw_taskrec_load_nodes(store, t) != 0) {
            PW_ERROR("task %s cannot be resumed: its node results cannot be read", rec->id);
            pw_taskrec_free(t);
            return NULL;
        }
        t->status = PW_TASK_RUNNING;
        t->started_ms = pw_taskrec_time_ms(json_object_get(rec->doc, "startedAt"));
        t->sched.running = true;
        json_t *failed = json_object_get(rec->doc, "failedNodes");
        if (json_is_array(failed))
            json_array_extend(t->failed, failed);
        /* a running task's message is its selection note (unknown nodeNames), if any */
        const char *note = pw_taskrec_str(rec->doc, "message");
        if (note) {
            t->note = pw_xstrdup(note);
            t->message = pw_xstrdup(note);
        }
        /* the running nodes go to the executor's start, which adopts or restarts their work */
    }
    return t;
}

void pw_resume_work_of(const struct task *t, const struct tnode *n, struct pw_exec_work *w, const char ***images_out)
{
    size_t nj = pw_taskrec_work_count(t, n);
    const char **imgs = pw_xcalloc(nj ? nj : 1, sizeof *imgs);
    for (size_t j = 0; j < nj; j++)
        imgs[j] = t->spec.images[pw_taskrec_work_index(t, n, j)];
    *w = (struct pw_exec_work){
        .task_id = t->id,
        .node = n->name,
        .images = imgs,
        .n_images = nj,
        .pull_policy = t->spec.pull_policy,
        .pull_secrets = (const char *const *)t->spec.pull_secrets,
        .n_pull_secrets = t->spec.n_pull_secrets,
        .retries = t->spec.retries,
        .timeout_s = t->spec.timeout_s,
        .started_ms = n->started_ms,
    };
    *images_out = imgs;
}

struct pw_exec_work *pw_resume_works(struct task *const *tasks, size_t n_tasks, enum exec_kind kind, size_t *n_out)
{
    size_t n = 0;
    for (size_t k = 0; k < n_tasks; k++)
        n += tasks[k]->counts.running;
    struct pw_exec_work *w = pw_xcalloc(n ? n : 1, sizeof *w);
    size_t m = 0;
    for (size_t k = 0; k < n_tasks; k++) {
        const struct task *t = tasks[k];
        for (size_t i = 0; i < t->n_nodes && m < n; i++) {
            if (t->nodes[i].state != PW_NODE_RUNNING || t->nodes[i].exec != kind + 1)
                continue;
            const char **imgs;
            pw_resume_work_of(t, &t->nodes[i], &w[m++], &imgs);
        }
    }
    *n_out = m;
    return w;
}

void pw_resume_works_free(struct pw_exec_work *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((void *)w[i].images);
    free(w);
}

