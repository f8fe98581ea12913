/* executor.c: the public executor calls, dispatched through each executor's ops. */
#include "engine/executor.h"

#include <stddef.h>

int pw_executor_start(pw_executor *x, const struct pw_exec_work *resume, size_t n)
{
    return x->ops->start(x, resume, n);
}

void pw_executor_dispatch(pw_executor *x, const struct pw_exec_work *w)
{
    x->ops->dispatch(x, w);
}

void pw_executor_cancel(pw_executor *x, const char *task_id, const char *node, bool failed)
{
    x->ops->cancel(x, task_id, node, failed);
}

void pw_executor_tick(pw_executor *x)
{
    x->ops->tick(x);
}

bool pw_executor_healthy(pw_executor *x, const char *node)
{
    return x->ops->healthy(x, node);
}

json_t *pw_executor_inventory(pw_executor *x, const char *node)
{
    return x->ops->inventory ? x->ops->inventory(x, node) : NULL;
}

const char *pw_executor_mode(const pw_executor *x)
{
    return x->ops->mode;
}

void pw_executor_free(pw_executor *x)
{
    if (x)
        x->ops->free(x);
}
