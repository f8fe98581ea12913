/* taskflush.c: one write of the task records' changes through the store, in steps that keep the
 * store calls outside the engine lock. See taskflush.h. */
#include "engine/taskflush.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

static void snap_take(struct pw_taskflush_snap *sn, struct task *t)
{
    *sn = (struct pw_taskflush_snap){.t = t};
    snprintf(sn->id, sizeof sn->id, "%s", t->id);
    if (t->n_dirty) {
        sn->nodes = pw_xcalloc(t->n_dirty, sizeof *sn->nodes);
        sn->idx = pw_xcalloc(t->n_dirty, sizeof *sn->idx);
        for (size_t d = 0; d < t->n_dirty; d++) {
            struct tnode *n = &t->nodes[t->dirty_idx[d]];
            /* node names live as long as their task, which outlives the flush */
            sn->nodes[d] = (struct pw_store_node){.task_id = sn->id, .node_name = n->name,
                                                  .state = (char *)pw_node_state_names[n->state],
                                                  .doc = pw_taskrec_node_json(t, n)};
            sn->idx[d] = t->dirty_idx[d];
            n->dirty = false;
        }
        sn->n_nodes = t->n_dirty;
        t->n_dirty = 0;
    }
    if (t->dirty) {
        json_t *doc = pw_taskrec_task_json(t);
        pw_taskrec_store_record(t, &sn->rec, doc);
        sn->rec.id = sn->id; /* the copy: rec must not point into t once the lock is released */
        t->dirty = false;
    }
}

void pw_taskflush_take(struct pw_taskflush *f, struct task *const *tasks, size_t n)
{
    *f = (struct pw_taskflush){.v = pw_xcalloc(n ? n : 1, sizeof *f->v)};
    for (size_t i = 0; i < n; i++)
        if (tasks[i]->dirty || tasks[i]->n_dirty)
            snap_take(&f->v[f->n++], tasks[i]);
}

void pw_taskflush_write(struct pw_taskflush *f, pw_store *store)
{
    for (size_t i = 0; i < f->n; i++) {
        struct pw_taskflush_snap *sn = &f->v[i];
        int rc = sn->n_nodes ? pw_store_nodes_put(store, sn->nodes, sn->n_nodes) : 0;
        if (rc == 0 && sn->rec.doc)
            rc = pw_store_task_put(store, &sn->rec);
        sn->rc = rc;
        if (rc != 0)
            PW_ERROR("store write for task %s failed: %s (will retry)", sn->id, pw_strerror(rc));
    }
}

bool pw_taskflush_restore(struct pw_taskflush *f)
{
    bool failing = false;
    for (size_t i = 0; i < f->n; i++) {
        struct pw_taskflush_snap *sn = &f->v[i];
        if (sn->rc == 0)
            continue;
        failing = true;
        /* nodes_put is one transaction: none of its results was written (and the task after it) */
        for (size_t d = 0; d < sn->n_nodes; d++)
            pw_taskrec_mark_dirty(sn->t, &sn->t->nodes[sn->idx[d]]);
        if (sn->rec.doc)
            sn->t->dirty = true;
    }
    return failing;
}

int pw_taskflush_result(const struct pw_taskflush *f, const char *id, json_t **doc)
{
    if (doc)
        *doc = NULL;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i].id, id) == 0) {
            if (doc && f->v[i].rc == 0 && f->v[i].rec.doc)
                *doc = json_incref(f->v[i].rec.doc);
            return f->v[i].rc;
        }
    return 0;
}

void pw_taskflush_fini(struct pw_taskflush *f)
{
    for (size_t i = 0; i < f->n; i++) {
        for (size_t d = 0; d < f->v[i].n_nodes; d++)
            json_decref(f->v[i].nodes[d].doc);
        free(f->v[i].nodes);
        free(f->v[i].idx);
        json_decref(f->v[i].rec.doc);
    }
    free(f->v);
    f->v = NULL;
    f->n = 0;
}
