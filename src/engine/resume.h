/* resume.h: what a restart needs of the task records. An unfinished task is rebuilt from its store
 * record: its spec, and for a running task its node results (sorted, with their counts and failure
 * hints), its first failures and its selection note; the running nodes then go to their executors'
 * start, which adopts or restarts their work. And the executor's work of a running node (the images
 * not skipped at selection, in task order, and the pull parameters), for dispatch and start alike.
 *
 * Thread model: none of its own. pw_resume_task reads the store (call it without the engine lock);
 * the others read tasks under the engine lock. */
#ifndef PW_ENGINE_RESUME_H
#define PW_ENGINE_RESUME_H

#include <stddef.h>

#include "engine/executor.h"
#include "engine/taskrec.h"
#include "store/store.h"

/* The task of rec (borrowed), reading its node results from store when it was running: a new task
 * (free with pw_taskrec_free), or NULL (logged) when its spec is invalid or its results unreadable. */
struct task *pw_resume_task(pw_store *store, const struct pw_store_task *rec);
/* *w: the executor's work of running node n of t (pointers borrowed from t, and *images_out, which
 * the caller frees). */
void pw_resume_work_of(const struct task *t, const struct tnode *n, struct pw_exec_work *w, const char ***images_out);
/* The works of every running node of tasks[0..n_tasks-1] served by kind (borrowed from the tasks);
 * *n_out of them. Free with pw_resume_works_free. */
struct pw_exec_work *pw_resume_works(struct task *const *tasks, size_t n_tasks, enum exec_kind kind, size_t *n_out);
void pw_resume_works_free(struct pw_exec_work *w, size_t n);

#endif
