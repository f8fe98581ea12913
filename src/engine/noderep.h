/* noderep.h: what one executor report (executor.h) does to a running node's records. Per-image
 * statuses (in the work's order) update the image results: attempts counted on each move into
 * ErrImagePull, the most specific failure kept (not-found and unauthorized outlive a later
 * back-off), a failure final once the executor spent its retries or the task's retries are used
 * up, a permanent one at once; the first failed image fails the node and ends the other images'
 * pulls. A verdict ends the node as a whole (a failure citing the last pull error of an image still
 * undecided, or the images not pulled yet, when the executor asks). The node's end itself is the
 * engine's (pw_eng_node_finish in engine.c): this only says what it is.
 *
 * Thread model: none of its own; the engine calls it with its lock held. */
#ifndef PW_ENGINE_NODEREP_H
#define PW_ENGINE_NODEREP_H

#include "engine/executor.h"
#include "engine/taskrec.h"

/* The end a report calls for. state PW_NODE_RUNNING: none, the node goes on; else PW_NODE_SUCCEEDED
 * or PW_NODE_FAILED with reason, message and image (the image at fault or a list, may be NULL),
 * borrowed from the node's records or owned by the end (pw_noderep_end_fini). */
struct pw_noderep_end {
    enum pw_node_state state;
    const char *reason, *message, *image;
    char *owned_message, *owned_image; /* what message and image point at when the end made them */
};

/* Applies report r (borrowed) to node n of t, changing only the image results and attempts (marked
 * dirty); *end (always written; fini it) says whether the node ends. A node not running: no end. */
void pw_noderep_apply(struct task *t, struct tnode *n, const struct pw_exec_report *r, struct pw_noderep_end *end);
void pw_noderep_end_fini(struct pw_noderep_end *end);

/* A deep copy of r (an executor's report lives only during its hook; the engine queues the copy).
 * Free with pw_noderep_free (NULL: no-op). */
struct pw_exec_report *pw_noderep_copy(const struct pw_exec_report *r);
void pw_noderep_free(struct pw_exec_report *r);

#endif
