/* taskflush.h: one write of the task records' changes through the store, in three steps so that
 * no store call runs under the engine lock: take (under the lock: the documents of each changed
 * task and node result, whose dirty marks it clears), write (the lock released: the store calls),
 * restore (under the lock again: whatever was not written is marked dirty once more). A change made
 * while the write was on its way sets its mark again, so an older write never passes for a newer
 * change: the dirty mark is the record's version, cleared only by the snapshot that holds it. The
 * caller keeps writes from overlapping (the engine's store-write lock), so the store's last write of
 * a record is its newest snapshot, and keeps the snapshot's tasks alive until fini.
 *
 * Thread model: none of its own (see each step for the lock the engine holds). */
#ifndef PW_ENGINE_TASKFLUSH_H
#define PW_ENGINE_TASKFLUSH_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "engine/taskrec.h"
#include "store/store.h"

/* One task's changes. */
struct pw_taskflush_snap {
    struct task *t;              /* borrowed: must outlive the flush */
    struct pw_store_node *nodes; /* the changed node results (docs owned) */
    size_t *idx;                 /* their indexes in t->nodes */
    size_t n_nodes;
    struct pw_store_task rec;    /* rec.doc owned; NULL: the task itself did not change */
    char id[16];
    int rc; /* the write's result */
};

struct pw_taskflush {
    struct pw_taskflush_snap *v;
    size_t n;
};

/* The snapshot of the changes of tasks[0..n-1] (engine lock held). */
void pw_taskflush_take(struct pw_taskflush *f, struct task *const *tasks, size_t n);
/* Writes the snapshot (engine lock not held): node results first, then the task, per task; a
 * failure is logged and kept in that snapshot's rc. */
void pw_taskflush_write(struct pw_taskflush *f, pw_store *store);
/* Marks dirty again what was not written (engine lock held); returns whether a write failed. */
bool pw_taskflush_restore(struct pw_taskflush *f);
/* The write of task id in this flush: its rc (0 also when it had nothing to write) and, when its
 * task record was written, *doc (may be NULL; a new reference) the document written, else NULL. */
int pw_taskflush_result(const struct pw_taskflush *f, const char *id, json_t **doc);
void pw_taskflush_fini(struct pw_taskflush *f);

#endif
