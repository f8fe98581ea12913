/* taskread.c: the engine's reads for the API (engine.h "Reads"): a task, the list of tasks, a
 * task's node results (all, or one cluster's). They read the store, never the engine's memory, so
 * they never wait for the engine lock; what they show may lag the loop by one round. */
#include <stdlib.h>

#include "base/err.h"
#include "base/mem.h"
#include "engine/engine_int.h"
#include "engine/nodekey.h"
#include "store/store.h"

int pw_engine_get_task(pw_engine *e, const char *id, json_t **out)
{
    struct pw_store_task rec;
    int rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    *out = json_incref(rec.doc);
    pw_store_task_fini(&rec);
    return 0;
}

static json_t *page_json(json_t *items, char *next)
{
    json_t *o = json_object();
    json_object_set_new(o, "items", items);
    if (next)
        json_object_set_new(o, "continue", json_string(next));
    free(next);
    return o;
}

int pw_engine_list_tasks(pw_engine *e, const char *status, size_t limit, const char *cont, json_t **out)
{
    struct pw_store_task *items;
    size_t n;
    char *next;
    int rc = pw_store_task_list(e->cfg.store, status, limit, cont, &items, &n, &next);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(arr, items[i].doc);
    pw_store_tasks_free(items, n);
    *out = page_json(arr, next);
    return 0;
}

int pw_engine_list_nodes(pw_engine *e, const char *id, const char *state, size_t limit, const char *cont,
                         json_t **out)
{
    struct pw_store_task rec;
    int rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    pw_store_task_fini(&rec);
    struct pw_store_node *items = NULL;
    size_t n = 0;
    char *next = NULL;
    rc = pw_store_nodes_list(e->cfg.store, id, state, limit, cont, &items, &n, &next);
    if (rc == PW_ENOTFOUND)
        rc = 0; /* a task with no node results yet (a back end may not know it) lists nothing */
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(arr, items[i].doc);
    pw_store_nodes_free(items, n);
    *out = page_json(arr, next);
    return 0;
}

int pw_engine_list_cluster_nodes(pw_engine *e, const char *id, const char *cluster, const char *state, size_t limit,
                                 const char *cont, json_t **out)
{
    struct pw_store_task rec;
    int rc = pw_store_task_get(e->cfg.store, id, &rec);
    if (rc != 0)
        return rc;
    pw_store_task_fini(&rec);
    /* pages of the store, filtered, until limit items (each page asks for what is missing, so no
     * item read is dropped: the store's token goes on from the last one kept) */
    json_t *arr = json_array();
    char *next = cont ? pw_xstrdup(cont) : NULL;
    bool first = true;
    while (first || next) {
        size_t want = limit ? limit - json_array_size(arr) : 0;
        struct pw_store_node *items = NULL;
        size_t n = 0;
        char *after = NULL;
        rc = pw_store_nodes_list(e->cfg.store, id, state, want, next, &items, &n, &after);
        free(next);
        next = NULL;
        if (rc == PW_ENOTFOUND)
            rc = 0;
        if (rc != 0) {
            json_decref(arr);
            return rc;
        }
        for (size_t i = 0; i < n; i++)
            if (pw_nodekey_in(items[i].node_name, cluster))
                json_array_append(arr, items[i].doc);
        pw_store_nodes_free(items, n);
        next = after;
        first = false;
        if (limit && json_array_size(arr) >= limit)
            break;
    }
    *out = page_json(arr, next);
    return 0;
}
