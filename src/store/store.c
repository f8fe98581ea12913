/* store.c: the back-end table behind pw_store_open (the url's scheme picks the row), argument
 * checks, record helpers, and the continue tokens every back end shares. Adding a back end is one
 * row in store_backends. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "metrics/metrics.h"
#include "store/redis.h"
#include "store/sqlite.h"

#include <pthread.h>
#include <time.h>

static const struct pw_store_ops *const store_backends[] = {
    &pw_store_memory_ops,
    &pw_store_sqlite_ops,
    &pw_store_redis_ops,
    &pw_store_rediss_ops,
};

const char *const pw_task_status_names[PW_TASK_STATUS_COUNT + 1] = {
    [PW_TASK_PENDING] = "pending",     [PW_TASK_RUNNING] = "running", [PW_TASK_SUCCEEDED] = "succeeded",
    [PW_TASK_FAILED] = "failed",       [PW_TASK_CANCELLED] = "cancelled", NULL};
const char *const pw_node_state_names[PW_NODE_STATE_COUNT + 1] = {
    [PW_NODE_PENDING] = "pending", [PW_NODE_RUNNING] = "running", [PW_NODE_SUCCEEDED] = "succeeded",
    [PW_NODE_FAILED] = "failed",   [PW_NODE_SKIPPED] = "skipped", [PW_NODE_CANCELLED] = "cancelled", NULL};

static int name_index(const char *const *names, const char *name)
{
    for (int i = 0; name && names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

int pw_task_status_of(const char *name)
{
    return name_index(pw_task_status_names, name);
}

int pw_node_state_of(const char *name)
{
    return name_index(pw_node_state_names, name);
}

bool pw_store_status_final(const char *status)
{
    int s = pw_task_status_of(status);
    return s >= 0 && pw_task_status_is_final((enum pw_task_status)s);
}

/* ---- metrics: every operation's latency and failures (not-found is an answer, not a failure) ---- */

static pw_metric *store_m_duration, *store_m_errors;

static void store_metrics_init(void)
{
    static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
    pw_metrics *r = pw_metrics_default();
    store_m_duration = pw_metrics_histogram(r, "prewarm_store_operation_duration_seconds",
                                            "Store operation latency, by operation.", "op", buckets,
                                            sizeof buckets / sizeof buckets[0]);
    store_m_errors = pw_metrics_counter(r, "prewarm_store_errors_total", "Store operations that failed, by operation.",
                                        "op");
}

static double store_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int store_timed(const char *op, double start, int rc)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, store_metrics_init);
    pw_metric_observe(store_m_duration, (const char *[]){op}, store_now() - start);
    if (rc != 0 && rc != PW_ENOTFOUND)
        pw_metric_add(store_m_errors, (const char *[]){op}, 1);
    return rc;
}

int pw_store_open(const char *url, pw_store **out, char **errmsg)
{
    const char *colon = url ? strchr(url, ':') : NULL;
    if (colon) {
        size_t n = (size_t)(colon - url);
        for (size_t i = 0; i < sizeof store_backends / sizeof store_backends[0]; i++) {
            const struct pw_store_ops *ops = store_backends[i];
            if (strlen(ops->scheme) == n && strncmp(url, ops->scheme, n) == 0)
                return ops->open(colon + 1, out, errmsg);
        }
    }
    if (errmsg) {
        char known[256] = "";
        for (size_t i = 0; i < sizeof store_backends / sizeof store_backends[0]; i++) {
            strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, store_backends[i]->scheme, sizeof known - strlen(known) - 1);
            strncat(known, ":", sizeof known - strlen(known) - 1);
        }
        *errmsg = pw_xasprintf("unknown store url \"%s\" (known: %s)", url ? url : "", known);
    }
    return PW_EINVAL;
}

void pw_store_close(pw_store *s)
{
    if (s)
        s->ops->close(s);
}

static bool task_ok(const struct pw_store_task *t)
{
    return t && t->id && t->status && t->doc;
}

int pw_store_task_put(pw_store *s, const struct pw_store_task *t)
{
    if (!task_ok(t))
        return PW_EINVAL;
    double t0 = store_now();
    return store_timed("task_put", t0, s->ops->task_put(s, t));
}

int pw_store_task_get(pw_store *s, const char *id, struct pw_store_task *out)
{
    if (!id || !out)
        return PW_EINVAL;
    double t0 = store_now();
    return store_timed("task_get", t0, s->ops->task_get(s, id, out));
}

int pw_store_task_list(pw_store *s, const char *status, size_t limit, const char *cont,
                       struct pw_store_task **items, size_t *n, char **next)
{
    if (!items || !n || !next)
        return PW_EINVAL;
    if (status && !*status)
        status = NULL;
    if (cont && !*cont)
        cont = NULL;
    double t0 = store_now();
    return store_timed("task_list", t0, s->ops->task_list(s, status, limit, cont, items, n, next));
}

int pw_store_task_list_unfinished(pw_store *s, struct pw_store_task **items, size_t *n)
{
    if (!items || !n)
        return PW_EINVAL;
    double t0 = store_now();
    return store_timed("task_list_unfinished", t0, s->ops->task_list_unfinished(s, items, n));
}

int pw_store_task_delete(pw_store *s, const char *id)
{
    if (!id)
        return PW_EINVAL;
    double t0 = store_now();
    return store_timed("task_delete", t0, s->ops->task_delete(s, id));
}

int pw_store_prune(pw_store *s, int64_t before_ms, size_t *removed)
{
    double t0 = store_now();
    return store_timed("prune", t0, s->ops->prune(s, before_ms, removed));
}

int pw_store_nodes_put(pw_store *s, const struct pw_store_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!nodes[i].task_id || !nodes[i].node_name || !nodes[i].state || !nodes[i].doc)
            return PW_EINVAL;
    if (n == 0)
        return 0;
    double t0 = store_now();
    return store_timed("nodes_put", t0, s->ops->nodes_put(s, nodes, n));
}

int pw_store_nodes_list(pw_store *s, const char *task_id, const char *state, size_t limit,
                        const char *cont, struct pw_store_node **items, size_t *n, char **next)
{
    if (!task_id || !items || !n || !next)
        return PW_EINVAL;
    if (state && !*state)
        state = NULL;
    if (cont && !*cont)
        cont = NULL;
    double t0 = store_now();
    return store_timed("nodes_list", t0, s->ops->nodes_list(s, task_id, state, limit, cont, items, n, next));
}

static bool rec_kind_ok(const char *kind)
{
    size_t n = kind ? strlen(kind) : 0;
    if (n < 1 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((kind[i] >= 'a' && kind[i] <= 'z') || (kind[i] >= '0' && kind[i] <= '9') || kind[i] == '-'))
            return false;
    return true;
}

static bool rec_key_ok(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    return n >= 1 && n <= 512;
}

int pw_store_rec_put(pw_store *s, const char *kind, const char *key, const json_t *doc,
                     enum pw_store_rec_mode mode)
{
    if (!rec_kind_ok(kind) || !rec_key_ok(key) || !doc || (!json_is_object(doc) && !json_is_array(doc)) ||
        (mode != PW_STORE_REC_UPSERT && mode != PW_STORE_REC_CREATE && mode != PW_STORE_REC_UPDATE))
        return PW_EINVAL;
    double t0 = store_now();
    return store_timed("rec_put", t0, s->ops->rec_put(s, kind, key, doc, mode));
}

int pw_store_rec_get(pw_store *s, const char *kind, const char *key, json_t **doc)
{
    if (!rec_kind_ok(kind) || !rec_key_ok(key) || !doc)
        return PW_EINVAL;
    *doc = NULL;
    double t0 = store_now();
    return store_timed("rec_get", t0, s->ops->rec_get(s, kind, key, doc));
}

int pw_store_rec_list(pw_store *s, const char *kind, size_t limit, const char *cont,
                      struct pw_store_rec **items, size_t *n, char **next)
{
    if (!rec_kind_ok(kind) || !items || !n || !next)
        return PW_EINVAL;
    if (cont && !*cont)
        cont = NULL;
    *items = NULL;
    *n = 0;
    *next = NULL;
    double t0 = store_now();
    return store_timed("rec_list", t0, s->ops->rec_list(s, kind, limit, cont, items, n, next));
}

int pw_store_rec_delete(pw_store *s, const char *kind, const char *key)
{
    if (!rec_kind_ok(kind) || !rec_key_ok(key))
        return PW_EINVAL;
    double t0 = store_now();
    return store_timed("rec_delete", t0, s->ops->rec_delete(s, kind, key));
}

void pw_store_recs_free(struct pw_store_rec *items, size_t n)
{
    for (size_t i = 0; items && i < n; i++) {
        free(items[i].key);
        json_decref(items[i].doc);
    }
    free(items);
}

void pw_store_task_fini(struct pw_store_task *t)
{
    if (!t)
        return;
    free(t->id);
    free(t->status);
    json_decref(t->doc);
    memset(t, 0, sizeof *t);
}

void pw_store_tasks_free(struct pw_store_task *ts, size_t n)
{
    for (size_t i = 0; ts && i < n; i++)
        pw_store_task_fini(&ts[i]);
    free(ts);
}

void pw_store_node_fini(struct pw_store_node *n)
{
    if (!n)
        return;
    free(n->task_id);
    free(n->node_name);
    free(n->state);
    json_decref(n->doc);
    memset(n, 0, sizeof *n);
}

void pw_store_nodes_free(struct pw_store_node *ns, size_t n)
{
    for (size_t i = 0; ns && i < n; i++)
        pw_store_node_fini(&ns[i]);
    free(ns);
}

void pw_store_task_copy(struct pw_store_task *dst, const struct pw_store_task *src)
{
    dst->id = pw_xstrdup(src->id);
    dst->status = pw_xstrdup(src->status);
    dst->priority = src->priority;
    dst->created_ms = src->created_ms;
    dst->finished_ms = src->finished_ms;
    dst->doc = json_deep_copy(src->doc);
}

void pw_store_node_copy(struct pw_store_node *dst, const struct pw_store_node *src)
{
    dst->task_id = pw_xstrdup(src->task_id);
    dst->node_name = pw_xstrdup(src->node_name);
    dst->state = pw_xstrdup(src->state);
    dst->doc = json_deep_copy(src->doc);
}

/* ---- continue tokens: "k" + the hex of the last key returned ---- */

char *pw_store_token_encode(const char *key)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(key);
    char *t = pw_xmalloc(2 * n + 2);
    t[0] = 'k';
    for (size_t i = 0; i < n; i++) {
        t[1 + 2 * i] = hex[(unsigned char)key[i] >> 4];
        t[2 + 2 * i] = hex[(unsigned char)key[i] & 15];
    }
    t[2 * n + 1] = '\0';
    return t;
}

static int hex_val(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

int pw_store_token_decode(const char *tok, char **key)
{
    size_t n = strlen(tok);
    if (n < 3 || tok[0] != 'k' || (n - 1) % 2 != 0)
        return PW_EINVAL;
    char *k = pw_xmalloc((n - 1) / 2 + 1);
    for (size_t i = 0; i < (n - 1) / 2; i++) {
        int hi = hex_val(tok[1 + 2 * i]), lo = hex_val(tok[2 + 2 * i]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(k);
            return PW_EINVAL;
        }
        k[i] = (char)(hi << 4 | lo);
    }
    k[(n - 1) / 2] = '\0';
    *key = k;
    return 0;
}

char *pw_store_url_redacted(const char *url)
{
    /* scheme://user:password@host... -> scheme://user:***@host...; anything else unchanged */
    const char *auth = url ? strstr(url, "://") : NULL;
    if (!auth)
        return pw_xstrdup(url ? url : "");
    auth += 3;
    /* the credentials end at the first '@' before the path or the query, as redis_url.c reads them:
     * an '@' in the query (?prefix=a:b@c) is no password (tests/fuzz/fuzz_redisurl.c) */
    const char *at = memchr(auth, '@', strcspn(auth, "/?"));
    if (!at)
        return pw_xstrdup(url);
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon)
        return pw_xstrdup(url);
    return pw_xasprintf("%.*s:***%s", (int)(colon - url), url, at);
}
