/* sched.c: the pure scheduling function of sched.h. Tasks are visited in priority-then-FIFO order
 * through a sorted index so the caller's array order does not matter. */
#include "engine/sched.h"

#include <stdlib.h>

#include "base/mem.h"


/* The order index, by insertion sort (n is small: the unfinished tasks). */
static void order_tasks(const struct pw_sched_task *tasks, size_t n, size_t *idx)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        idx[i] = i;
        while (j > 0) {
            const struct pw_sched_task *x = &tasks[idx[j - 1]], *y = &tasks[idx[j]];
            bool later = x->priority < y->priority || (x->priority == y->priority && x->seq > y->seq);
            if (!later)
                break;
            size_t t = idx[j - 1];
            idx[j - 1] = idx[j];
            idx[j] = t;
            j--;
        }
    }
}

/* How many nodes task t may add now, before the global cap; updates its batch state. */
static size_t window(struct pw_sched_task *t, const struct pw_sched_limits *lim, int64_t now_ms, int64_t *wake)
{
    if (!t->batch_strategy)
        return t->batch_size > t->in_flight ? t->batch_size - t->in_flight : 0;
    if (t->batch_left == 0 && t->in_flight == 0 && t->pending > 0) {
        if (t->batch_started && t->pause_until_ms == 0)
            t->pause_until_ms = now_ms + lim->batch_pause_ms;
        if (!t->batch_started || now_ms >= t->pause_until_ms) {
            t->batch_left = t->batch_size < t->pending ? t->batch_size : t->pending;
            t->batch_started = true;
            t->pause_until_ms = 0;
        } else if (*wake == 0 || t->pause_until_ms < *wake) {
            *wake = t->pause_until_ms;
        }
    }
    return t->batch_left;
}

int64_t pw_sched_plan(struct pw_sched_task *tasks, size_t n, const struct pw_sched_limits *lim, int64_t now_ms)
{
    size_t *idx = pw_xmalloc((n ? n : 1) * sizeof *idx);
    order_tasks(tasks, n, idx);
    size_t running = 0, in_flight = 0;
    for (size_t i = 0; i < n; i++) {
        tasks[i].admitted_now = false;
        tasks[i].grant = 0;
        running += tasks[i].running;
        in_flight += tasks[i].in_flight;
    }
    for (size_t k = 0; k < n; k++) {
        struct pw_sched_task *t = &tasks[idx[k]];
        if (t->running || (lim->max_running_tasks && running >= lim->max_running_tasks))
            continue;
        t->running = true;
        t->admitted_now = true;
        running++;
    }
    int64_t wake = 0;
    for (size_t k = 0; k < n; k++) {
        struct pw_sched_task *t = &tasks[idx[k]];
        if (!t->running || t->pending == 0)
            continue;
        size_t g = window(t, lim, now_ms, &wake);
        if (g > t->pending)
            g = t->pending;
        if (lim->max_in_flight) {
            size_t room = lim->max_in_flight > in_flight ? lim->max_in_flight - in_flight : 0;
            if (g > room)
                g = room;
        }
        t->grant = g;
        in_flight += g;
        if (t->batch_strategy)
            t->batch_left -= g;
    }
    free(idx);
    return wake;
}
