/* sched.h: the scheduler's decisions as a pure function, so they can be tested without a cluster:
 * which queued tasks start (priority, then FIFO, under the running-task cap) and how many more nodes
 * each running task may dispatch now (its rolling window or its current batch, under the global cap
 * on nodes in flight, served in priority-then-FIFO order).
 *
 * Thread model: pure; the engine calls it under its lock. */
#ifndef PW_ENGINE_SCHED_H
#define PW_ENGINE_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The scheduler's view of one unfinished task. The engine fills the inputs; pw_sched_plan updates
 * the state fields and writes the outputs. */
struct pw_sched_task {
    /* inputs */
    int priority;
    uint64_t seq;        /* submission order (FIFO among equal priorities) */
    size_t pending;      /* nodes not yet dispatched */
    size_t in_flight;    /* nodes dispatched and not finished */
    size_t batch_size;
    bool batch_strategy; /* false: rolling */
    /* state kept between calls (start zeroed) */
    bool running;        /* admitted */
    size_t batch_left;   /* batch strategy: nodes of the current batch not yet dispatched */
    bool batch_started;  /* a batch was opened before (the next one waits for the pause) */
    int64_t pause_until_ms; /* batch strategy: the next batch opens at this time (0: no pause set) */
    /* outputs */
    bool admitted_now;   /* became running in this call */
    size_t grant;        /* nodes to dispatch now */
};

struct pw_sched_limits {
    size_t max_in_flight;     /* global cap on nodes in flight (0: no cap) */
    size_t max_running_tasks; /* (0: no cap) */
    int64_t batch_pause_ms;
};

/* Plans one round over tasks[0..n) at time now_ms. Admits queued tasks by priority then seq while
 * fewer than max_running_tasks run, then grants each running task (in priority-then-seq order) up
 * to its window: rolling -> batch_size - in_flight; batch -> what is left of the open batch, a new
 * batch (min(batch_size, pending)) opening only when the previous one has fully finished and the
 * pause has passed. Grants never exceed pending nor the global room left. Returns the earliest
 * future time a paused batch opens (so the caller can sleep until then), or 0 when none waits. */
int64_t pw_sched_plan(struct pw_sched_task *tasks, size_t n, const struct pw_sched_limits *lim, int64_t now_ms);

#endif
