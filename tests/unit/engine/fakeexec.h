/* fakeexec.h: a fake executor (executor.h) for unit tests: it runs nothing. It records what the
 * engine asks of it (start's resume list, dispatches, cancels), holds the live works, answers
 * healthy() and inventory() as the test set them, and reports only when the test tells it to
 * (pw_fakeexec_report, as an executor thread would) or when a live work's deadline passed (on tick:
 * a FAILED report, DeadlineExceeded, citing what is pending, as agent mode does).
 *
 * It lives with the tests, not in src/engine: the engine does not need it (pw_engine_config's
 * executor_new is the seam), and prewarmd must not carry an executor that pulls nothing. The
 * Makefile links every non-test_*.c file of tests/unit/ into each unit test.
 *
 * Thread model: every call is safe from any thread (one lock inside, never held across the report
 * hook). Ownership: inputs are borrowed and copied. */
#ifndef PW_TESTS_FAKEEXEC_H
#define PW_TESTS_FAKEEXEC_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/executor.h"

/* A new fake for mode ("job", "agent"; static text) with the engine's hooks. Free with
 * pw_executor_free. Every node is healthy until set otherwise. */
pw_executor *pw_fakeexec_new(const char *mode, const struct pw_exec_hooks *hooks);
/* pw_engine_config.executor_new: arg is a pw_executor *[2] that gets the fakes made ("job" in [0],
 * "agent" in [1]; borrowed: the engine frees them). */
int pw_fakeexec_factory(void *arg, const char *mode, const struct pw_exec_hooks *hooks, pw_executor **out);

/* A copy of one live work's parameters. */
struct pw_fakeexec_work {
    size_t n_images;
    char images[8][128]; /* the first 8 */
    int retries, timeout_s;
    long long started_ms;
};

/* Whether (task, node) has a live work (dispatched or resumed, not cancelled); *w (may be NULL)
 * gets its copy. */
bool pw_fakeexec_live(pw_executor *x, const char *task_id, const char *node, struct pw_fakeexec_work *w);
/* How many times (task, node) was dispatched, cancelled (and with failed set), or handed over in
 * start's resume list. */
size_t pw_fakeexec_dispatches(pw_executor *x, const char *task_id, const char *node);
size_t pw_fakeexec_cancels(pw_executor *x, const char *task_id, const char *node, size_t *failed);
size_t pw_fakeexec_resumed(pw_executor *x, const char *task_id, const char *node);
size_t pw_fakeexec_ticks(pw_executor *x);
/* healthy(node) answers this from now on. */
void pw_fakeexec_set_healthy(pw_executor *x, const char *node, bool healthy);
/* inventory(node) answers a copy of images (borrowed; NULL: knows nothing) from now on. */
void pw_fakeexec_set_inventory(pw_executor *x, const char *node, const json_t *images);
/* Sends r through the report hook, as the executor's own thread would (any work, live or not). */
void pw_fakeexec_report(pw_executor *x, const struct pw_exec_report *r);
/* start fails with rc (a PW_E*; 0: starts) from now on. */
void pw_fakeexec_fail_start(pw_executor *x, int rc);

#endif
