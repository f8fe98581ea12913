/* memory.c: the "memory:" store back end: tasks in an array sorted by id, each with its node results
 * in an array sorted by node name, under one mutex. Nothing survives the process. Documents are deep
 * copies on the way in and on the way out, so no caller ever shares a JSON value with the store. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "store/store.h"

struct mem_task {
    struct pw_store_task t;
    struct pw_store_node *nodes; /* sorted by node_name */
    size_t n_nodes, cap_nodes;
};

struct mem_rec {
    char *kind, *key;
    json_t *doc;
};

struct mem_store {
    struct pw_store base; /* first: the public handle */
    pthread_mutex_t mu;
    struct mem_task *tasks; /* sorted by id ascending */
    size_t n, cap;
    struct mem_rec *recs; /* sorted by (kind, key) ascending */
    size_t n_recs, cap_recs;
};

static struct mem_store *mem_of(pw_store *s)
{
    return (struct mem_store *)s;
}

/* Binary search of the n sorted elements of elem bytes at base: the index of the one cmp (an element,
 * key) says equals key, or with *found false the index where key would go. Serves tasks, node
 * results and records. */
static size_t mem_find(const void *base, size_t n, size_t elem, int (*cmp)(const void *, const void *), const void *key,
                       bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp((const char *)base + mid * elem, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int mem_task_cmp(const void *elem, const void *id)
{
    return strcmp(((const struct mem_task *)elem)->t.id, id);
}

static size_t mem_task_find(const struct mem_store *m, const char *id, bool *found)
{
    return mem_find(m->tasks, m->n, sizeof *m->tasks, mem_task_cmp, id, found);
}

static int mem_node_cmp(const void *elem, const void *name)
{
    return strcmp(((const struct pw_store_node *)elem)->node_name, name);
}

static size_t mem_node_find(const struct mem_task *mt, const char *name, bool *found)
{
    return mem_find(mt->nodes, mt->n_nodes, sizeof *mt->nodes, mem_node_cmp, name, found);
}

static int mem_open(const char *rest, pw_store **out, char **errmsg)
{
    (void)rest;
    (void)errmsg;
    struct mem_store *m = pw_xcalloc(1, sizeof *m);
    m->base.ops = &pw_store_memory_ops;
    pthread_mutex_init(&m->mu, NULL);
    *out = &m->base;
    return 0;
}

static void mem_task_free(struct mem_task *mt)
{
    pw_store_task_fini(&mt->t);
    for (size_t i = 0; i < mt->n_nodes; i++)
        pw_store_node_fini(&mt->nodes[i]);
    free(mt->nodes);
}

static void mem_close(pw_store *s)
{
    struct mem_store *m = mem_of(s);
    for (size_t i = 0; i < m->n; i++)
        mem_task_free(&m->tasks[i]);
    free(m->tasks);
    for (size_t i = 0; i < m->n_recs; i++) {
        free(m->recs[i].kind);
        free(m->recs[i].key);
        json_decref(m->recs[i].doc);
    }
    free(m->recs);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int mem_task_put(pw_store *s, const struct pw_store_task *t)
{
    struct mem_store *m = mem_of(s);
    struct pw_store_task copy;
    pw_store_task_copy(&copy, t);
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t i = mem_task_find(m, t->id, &found);
    if (found) {
        pw_store_task_fini(&m->tasks[i].t);
        m->tasks[i].t = copy;
    } else {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 16;
            m->tasks = pw_xrealloc(m->tasks, m->cap * sizeof *m->tasks);
        }
        memmove(&m->tasks[i + 1], &m->tasks[i], (m->n - i) * sizeof *m->tasks);
        memset(&m->tasks[i], 0, sizeof m->tasks[i]);
        m->tasks[i].t = copy;
        m->n++;
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int mem_task_get(pw_store *s, const char *id, struct pw_store_task *out)
{
    struct mem_store *m = mem_of(s);
    int rc = PW_ENOTFOUND;
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t i = mem_task_find(m, id, &found);
    if (found) {
        pw_store_task_copy(out, &m->tasks[i].t);
        rc = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_task_list(pw_store *s, const char *status, size_t limit, const char *cont,
                         struct pw_store_task **items, size_t *n, char **next)
{
    struct mem_store *m = mem_of(s);
    if (cont && strncmp(cont, "t-", 2) != 0)
        return PW_EINVAL;
    pthread_mutex_lock(&m->mu);
    size_t start = m->n; /* walk down from start-1 */
    if (cont) {
        bool found;
        start = mem_task_find(m, cont, &found); /* ids below cont */
    }
    struct pw_store_task *out = NULL;
    size_t k = 0, cap = 0;
    char *tok = NULL;
    for (size_t i = start; i-- > 0;) {
        const struct pw_store_task *t = &m->tasks[i].t;
        if (status && strcmp(t->status, status) != 0)
            continue;
        if (limit && k == limit) {
            tok = pw_xstrdup(out[k - 1].id);
            break;
        }
        if (k == cap) {
            cap = cap ? cap * 2 : 16;
            out = pw_xrealloc(out, cap * sizeof *out);
        }
        pw_store_task_copy(&out[k++], t);
    }
    pthread_mutex_unlock(&m->mu);
    *items = out;
    *n = k;
    *next = tok;
    return 0;
}

static int mem_task_list_unfinished(pw_store *s, struct pw_store_task **items, size_t *n)
{
    struct mem_store *m = mem_of(s);
    pthread_mutex_lock(&m->mu);
    struct pw_store_task *out = NULL;
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (pw_store_status_final(m->tasks[i].t.status))
            continue;
        out = pw_xrealloc(out, (k + 1) * sizeof *out);
        pw_store_task_copy(&out[k++], &m->tasks[i].t);
    }
    pthread_mutex_unlock(&m->mu);
    *items = out;
    *n = k;
    return 0;
}

static void mem_remove_at(struct mem_store *m, size_t i)
{
    mem_task_free(&m->tasks[i]);
    memmove(&m->tasks[i], &m->tasks[i + 1], (m->n - i - 1) * sizeof *m->tasks);
    m->n--;
}

static int mem_task_delete(pw_store *s, const char *id)
{
    struct mem_store *m = mem_of(s);
    int rc = PW_ENOTFOUND;
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t i = mem_task_find(m, id, &found);
    if (found) {
        mem_remove_at(m, i);
        rc = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_prune(pw_store *s, int64_t before_ms, size_t *removed)
{
    struct mem_store *m = mem_of(s);
    size_t k = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = m->n; i-- > 0;) {
        const struct pw_store_task *t = &m->tasks[i].t;
        if (pw_store_status_final(t->status) && t->finished_ms < before_ms) {
            mem_remove_at(m, i);
            k++;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (removed)
        *removed = k;
    return 0;
}

static int mem_nodes_put(pw_store *s, const struct pw_store_node *nodes, size_t n)
{
    struct mem_store *m = mem_of(s);
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    /* All or nothing: check every task exists first. */
    for (size_t j = 0; j < n && rc == 0; j++) {
        bool found;
        mem_task_find(m, nodes[j].task_id, &found);
        if (!found)
            rc = PW_ENOTFOUND;
    }
    for (size_t j = 0; j < n && rc == 0; j++) {
        bool found;
        struct mem_task *mt = &m->tasks[mem_task_find(m, nodes[j].task_id, &found)];
        size_t i = mem_node_find(mt, nodes[j].node_name, &found);
        if (found) {
            pw_store_node_fini(&mt->nodes[i]);
        } else {
            if (mt->n_nodes == mt->cap_nodes) {
                mt->cap_nodes = mt->cap_nodes ? mt->cap_nodes * 2 : 16;
                mt->nodes = pw_xrealloc(mt->nodes, mt->cap_nodes * sizeof *mt->nodes);
            }
            memmove(&mt->nodes[i + 1], &mt->nodes[i], (mt->n_nodes - i) * sizeof *mt->nodes);
            mt->n_nodes++;
        }
        pw_store_node_copy(&mt->nodes[i], &nodes[j]);
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_nodes_list(pw_store *s, const char *task_id, const char *state, size_t limit,
                          const char *cont, struct pw_store_node **items, size_t *n, char **next)
{
    struct mem_store *m = mem_of(s);
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t ti = mem_task_find(m, task_id, &found);
    if (!found) {
        pthread_mutex_unlock(&m->mu);
        return PW_ENOTFOUND;
    }
    const struct mem_task *mt = &m->tasks[ti];
    size_t start = 0;
    if (cont) {
        start = mem_node_find(mt, cont, &found);
        if (found)
            start++; /* the token is the last name returned */
    }
    struct pw_store_node *out = NULL;
    size_t k = 0, cap = 0;
    char *tok = NULL;
    for (size_t i = start; i < mt->n_nodes; i++) {
        if (state && strcmp(mt->nodes[i].state, state) != 0)
            continue;
        if (limit && k == limit) {
            tok = pw_xstrdup(out[k - 1].node_name);
            break;
        }
        if (k == cap) {
            cap = cap ? cap * 2 : 64;
            out = pw_xrealloc(out, cap * sizeof *out);
        }
        pw_store_node_copy(&out[k++], &mt->nodes[i]);
    }
    pthread_mutex_unlock(&m->mu);
    *items = out;
    *n = k;
    *next = tok;
    return 0;
}

/* ---- records ---- */

/* A record's (kind, key), the key mem_rec_cmp compares with. */
struct mem_rec_id {
    const char *kind, *key;
};

static int mem_rec_cmp(const void *elem, const void *id)
{
    const struct mem_rec *r = elem;
    const struct mem_rec_id *k = id;
    int c = strcmp(r->kind, k->kind);
    return c ? c : strcmp(r->key, k->key);
}

static size_t mem_rec_find(const struct mem_store *m, const char *kind, const char *key, bool *found)
{
    const struct mem_rec_id id = {kind, key};
    return mem_find(m->recs, m->n_recs, sizeof *m->recs, mem_rec_cmp, &id, found);
}

static int mem_rec_put(pw_store *s, const char *kind, const char *key, const json_t *doc,
                       enum pw_store_rec_mode mode)
{
    struct mem_store *m = mem_of(s);
    json_t *copy = json_deep_copy(doc);
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t i = mem_rec_find(m, kind, key, &found);
    int rc = 0;
    if (found && mode == PW_STORE_REC_CREATE) {
        rc = PW_EEXIST;
    } else if (!found && mode == PW_STORE_REC_UPDATE) {
        rc = PW_ENOTFOUND;
    } else if (found) {
        json_decref(m->recs[i].doc);
        m->recs[i].doc = copy;
        copy = NULL;
    } else {
        if (m->n_recs == m->cap_recs) {
            m->cap_recs = m->cap_recs ? 2 * m->cap_recs : 16;
            m->recs = pw_xrealloc(m->recs, m->cap_recs * sizeof *m->recs);
        }
        memmove(&m->recs[i + 1], &m->recs[i], (m->n_recs - i) * sizeof *m->recs);
        m->recs[i] = (struct mem_rec){pw_xstrdup(kind), pw_xstrdup(key), copy};
        m->n_recs++;
        copy = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    json_decref(copy);
    return rc;
}

static int mem_rec_get(pw_store *s, const char *kind, const char *key, json_t **doc)
{
    struct mem_store *m = mem_of(s);
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t i = mem_rec_find(m, kind, key, &found);
    if (found)
        *doc = json_deep_copy(m->recs[i].doc);
    pthread_mutex_unlock(&m->mu);
    return found ? 0 : PW_ENOTFOUND;
}

static int mem_rec_list(pw_store *s, const char *kind, size_t limit, const char *cont,
                        struct pw_store_rec **items, size_t *n, char **next)
{
    struct mem_store *m = mem_of(s);
    char *after = NULL;
    if (cont && pw_store_token_decode(cont, &after) != 0)
        return PW_EINVAL;
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t i = mem_rec_find(m, kind, after ? after : "", &found);
    if (found)
        i++;
    size_t cap = 0, k = 0;
    struct pw_store_rec *out = NULL;
    char *tok = NULL;
    for (; i < m->n_recs && strcmp(m->recs[i].kind, kind) == 0; i++) {
        if (limit && k == limit) {
            tok = pw_store_token_encode(out[k - 1].key);
            break;
        }
        if (k == cap) {
            cap = cap ? 2 * cap : 16;
            out = pw_xrealloc(out, cap * sizeof *out);
        }
        out[k].key = pw_xstrdup(m->recs[i].key);
        out[k].doc = json_deep_copy(m->recs[i].doc);
        k++;
    }
    pthread_mutex_unlock(&m->mu);
    free(after);
    *items = out;
    *n = k;
    *next = tok;
    return 0;
}

static int mem_rec_delete(pw_store *s, const char *kind, const char *key)
{
    struct mem_store *m = mem_of(s);
    pthread_mutex_lock(&m->mu);
    bool found;
    size_t i = mem_rec_find(m, kind, key, &found);
    struct mem_rec gone = {0};
    if (found) {
        gone = m->recs[i];
        memmove(&m->recs[i], &m->recs[i + 1], (m->n_recs - i - 1) * sizeof *m->recs);
        m->n_recs--;
    }
    pthread_mutex_unlock(&m->mu);
    free(gone.kind);
    free(gone.key);
    json_decref(gone.doc);
    return found ? 0 : PW_ENOTFOUND;
}

const struct pw_store_ops pw_store_memory_ops = {
    .scheme = "memory",
    .open = mem_open,
    .close = mem_close,
    .task_put = mem_task_put,
    .task_get = mem_task_get,
    .task_list = mem_task_list,
    .task_list_unfinished = mem_task_list_unfinished,
    .task_delete = mem_task_delete,
    .prune = mem_prune,
    .nodes_put = mem_nodes_put,
    .nodes_list = mem_nodes_list,
    .rec_put = mem_rec_put,
    .rec_get = mem_rec_get,
    .rec_list = mem_rec_list,
    .rec_delete = mem_rec_delete,
};
