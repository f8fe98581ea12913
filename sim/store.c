/* store.c: kubesim's object store (see store.h): per-resource sorted arrays of immutable shared JSON
 * objects, one global resourceVersion counter, a bounded ring of changes for watches, and
 * synchronous subscribers.
 *
 * Why sorted arrays: lists must come out in (namespace, name) order and resume after a key (continue
 * tokens); a binary search finds a key in O(log n), and an insert or delete moves at most n pointers
 * (100,000 pods: under a megabyte of memmove), which is far cheaper than the JSON work around it. */
#include "sim/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

struct entry {
    char *ns;   /* owned; "" for cluster-scoped */
    char *name; /* owned */
    json_t *obj; /* one reference */
};

struct rtable {
    char *resource; /* owned; the history points at it, so tables are never freed before the store */
    struct entry **v; /* sorted by (ns, name) */
    size_t n, cap;
};

struct hist {
    enum sim_event type;
    const char *resource; /* borrowed from its rtable */
    char *ns, *name;      /* owned */
    uint64_t rv;
    json_t *obj, *old;    /* references */
    size_t bytes;         /* estimated memory of obj (old is counted by the entry that holds it as obj) */
};

struct sub {
    int id;
    sim_store_fn fn;
    void *arg;
};

struct sim_store {
    pthread_mutex_t mu;
    uint64_t rv;
    struct rtable **tables;
    size_t ntables, captables;
    struct hist *ring;
    size_t ring_cap, ring_head, ring_len; /* head: index of the oldest change */
    uint64_t floor_rv; /* every change with rv > floor_rv is in the ring */
    size_t ring_bytes, max_bytes; /* estimated memory of the ring's objects, and its bound */
    struct sub *subs;
    size_t nsubs, capsubs;
    int next_sub_id;
};

static const char NAME_CHARS[] = "bcdfghjklmnpqrstvwxz2456789";

sim_store *sim_store_new(size_t history)
{
    sim_store *st = pw_xcalloc(1, sizeof(*st));
    pthread_mutex_init(&st->mu, NULL);
    st->ring_cap = history ? history : 1;
    st->ring = pw_xcalloc(st->ring_cap, sizeof(*st->ring));
    st->max_bytes = SIM_STORE_HISTORY_BYTES;
    st->rv = 1; /* a fresh cluster already has some history; lists report at least 1 */
    st->floor_rv = 1;
    return st;
}

void sim_store_set_history_bytes(sim_store *st, size_t max_bytes)
{
    pthread_mutex_lock(&st->mu);
    st->max_bytes = max_bytes;
    pthread_mutex_unlock(&st->mu);
}

/* An estimate of the heap a jansson value takes (struct, hashtable slots, key and string bytes, malloc
 * overhead); cheap enough to run once per write, accurate to a small factor. */
static size_t json_bytes(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = 96 + 16 * json_object_size(v); /* struct + bucket array */
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c)
            n += 64 + strlen(k) + json_bytes(c); /* pair with its key, list links, hash */
        return n;
    }
    case JSON_ARRAY: {
        size_t n = 64 + 8 * json_array_size(v);
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
            n += json_bytes(c);
        return n;
    }
    case JSON_STRING:
        return 48 + json_string_length(v);
    default:
        return 32;
    }
}

static void hist_clear(struct hist *h)
{
    free(h->ns);
    free(h->name);
    json_decref(h->obj);
    json_decref(h->old);
    memset(h, 0, sizeof(*h));
}

void sim_store_free(sim_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->ring_len; i++)
        hist_clear(&st->ring[(st->ring_head + i) % st->ring_cap]);
    free(st->ring);
    for (size_t t = 0; t < st->ntables; t++) {
        struct rtable *rt = st->tables[t];
        for (size_t i = 0; i < rt->n; i++) {
            free(rt->v[i]->ns);
            free(rt->v[i]->name);
            json_decref(rt->v[i]->obj);
            free(rt->v[i]);
        }
        free(rt->v);
        free(rt->resource);
        free(rt);
    }
    free(st->tables);
    free(st->subs);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

uint64_t sim_store_rv(sim_store *st)
{
    pthread_mutex_lock(&st->mu);
    uint64_t rv = st->rv;
    pthread_mutex_unlock(&st->mu);
    return rv;
}

/* ---- tables (lock held) ---- */

static struct rtable *table_find(sim_store *st, const char *resource, bool create)
{
    for (size_t i = 0; i < st->ntables; i++)
        if (strcmp(st->tables[i]->resource, resource) == 0)
            return st->tables[i];
    if (!create)
        return NULL;
    if (st->ntables == st->captables) {
        st->captables = st->captables ? st->captables * 2 : 16;
        st->tables = pw_xrealloc(st->tables, st->captables * sizeof(*st->tables));
    }
    struct rtable *rt = pw_xcalloc(1, sizeof(*rt));
    rt->resource = pw_xstrdup(resource);
    st->tables[st->ntables++] = rt;
    return rt;
}

static int key_cmp(const char *ns1, const char *n1, const char *ns2, const char *n2)
{
    int c = strcmp(ns1, ns2);
    return c ? c : strcmp(n1, n2);
}

/* Index of the first entry >= (ns, name); *found when equal. */
static size_t table_lower(const struct rtable *rt, const char *ns, const char *name, bool *found)
{
    size_t lo = 0, hi = rt->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(rt->v[mid]->ns, rt->v[mid]->name, ns, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (found)
        *found = lo < rt->n && key_cmp(rt->v[lo]->ns, rt->v[lo]->name, ns, name) == 0;
    return lo;
}

static struct entry *table_get(sim_store *st, const char *resource, const char *ns, const char *name)
{
    struct rtable *rt = table_find(st, resource, false);
    if (!rt)
        return NULL;
    bool found;
    size_t i = table_lower(rt, ns, name, &found);
    return found ? rt->v[i] : NULL;
}

/* ---- history and subscribers (lock held) ---- */

/* Forgets the oldest change: watches from before it get PW_EGONE from now on. */
static void hist_drop_oldest(sim_store *st)
{
    struct hist *h = &st->ring[st->ring_head];
    st->floor_rv = h->rv;
    st->ring_bytes -= h->bytes;
    hist_clear(h);
    st->ring_head = (st->ring_head + 1) % st->ring_cap;
    st->ring_len--;
}

static void commit(sim_store *st, const struct rtable *rt, enum sim_event type, const char *ns, const char *name,
                   json_t *obj, json_t *old)
{
    size_t bytes = json_bytes(obj) + 2 * 64 + strlen(ns) + strlen(name);
    if (st->ring_len == st->ring_cap)
        hist_drop_oldest(st);
    /* the byte bound: the newest change is always kept, whatever its size */
    while (st->ring_len > 0 && st->max_bytes && st->ring_bytes + bytes > st->max_bytes)
        hist_drop_oldest(st);
    struct hist *h = &st->ring[(st->ring_head + st->ring_len) % st->ring_cap];
    h->type = type;
    h->resource = rt->resource;
    h->ns = pw_xstrdup(ns);
    h->name = pw_xstrdup(name);
    h->rv = st->rv;
    h->obj = json_incref(obj);
    h->old = old ? json_incref(old) : NULL;
    h->bytes = bytes;
    st->ring_bytes += bytes;
    st->ring_len++;
    struct sim_change ch = {type, rt->resource, ns, name, st->rv, obj, old};
    for (size_t i = 0; i < st->nsubs; i++)
        st->subs[i].fn(st->subs[i].arg, &ch);
}

/* ---- object helpers ---- */

/* obj is ours; when someone else still holds it, work on a private copy so no shared object changes. */
static json_t *own(json_t *obj)
{
    if (obj->refcount > 1) {
        json_t *c = json_deep_copy(obj);
        json_decref(obj);
        return c;
    }
    return obj;
}

static json_t *meta_of(json_t *obj)
{
    json_t *m = json_object_get(obj, "metadata");
    if (!json_is_object(m)) {
        m = json_object();
        json_object_set_new(obj, "metadata", m);
    }
    return m;
}

static void set_rv(json_t *obj, uint64_t rv)
{
    char b[32];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)rv);
    json_object_set_new(meta_of(obj), "resourceVersion", json_string(b));
}

static void random_bytes(void *p, size_t n)
{
    if (getrandom(p, n, 0) != (ssize_t)n) {
        unsigned char *c = p;
        for (size_t i = 0; i < n; i++)
            c[i] = (unsigned char)rand();
    }
}

static void make_uid(char out[37])
{
    unsigned char b[16];
    random_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static char *generate_name(const char *prefix)
{
    size_t n = strlen(prefix);
    if (n > 58)
        n = 58;
    char *s = pw_xmalloc(n + 6);
    memcpy(s, prefix, n);
    unsigned char r[5];
    random_bytes(r, sizeof(r));
    for (int i = 0; i < 5; i++)
        s[n + (size_t)i] = NAME_CHARS[r[i] % (sizeof(NAME_CHARS) - 1)];
    s[n + 5] = 0;
    return s;
}

static uint64_t obj_rv(const json_t *obj)
{
    const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return s ? strtoull(s, NULL, 10) : 0;
}

/* ---- create ---- */

int sim_store_create(sim_store *st, const char *resource, const char *ns, json_t *obj, json_t **out)
{
    if (!json_is_object(obj)) {
        json_decref(obj);
        return PW_EINVAL;
    }
    obj = own(obj);
    json_t *m = meta_of(obj);
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *gen = json_string_value(json_object_get(m, "generateName"));
    if ((!name || !*name) && (!gen || !*gen)) {
        json_decref(obj);
        return PW_EINVAL;
    }
    char uid[37], ts[PW_RFC3339_LEN];
    make_uid(uid);
    pw_time_rfc3339(time(NULL), ts);
    pthread_mutex_lock(&st->mu);
    struct rtable *rt = table_find(st, resource, true);
    char *nm = NULL;
    size_t pos;
    bool found;
    if (name && *name) {
        nm = pw_xstrdup(name);
        pos = table_lower(rt, ns, nm, &found);
        if (found) {
            pthread_mutex_unlock(&st->mu);
            free(nm);
            json_decref(obj);
            return PW_EEXIST;
        }
    } else {
        for (int tries = 0;; tries++) {
            nm = generate_name(gen);
            pos = table_lower(rt, ns, nm, &found);
            if (!found)
                break;
            free(nm);
            if (tries > 100) {
                pthread_mutex_unlock(&st->mu);
                json_decref(obj);
                return PW_EEXIST;
            }
        }
        json_object_set_new(m, "name", json_string(nm));
    }
    if (*ns)
        json_object_set_new(m, "namespace", json_string(ns));
    if (!json_string_value(json_object_get(m, "uid"))) /* the API layer may choose it (a Job's selector uses it) */
        json_object_set_new(m, "uid", json_string(uid));
    json_object_set_new(m, "creationTimestamp", json_string(ts));
    json_object_set_new(m, "generation", json_integer(1));
    st->rv++;
    set_rv(obj, st->rv);
    if (rt->n == rt->cap) {
        rt->cap = rt->cap ? rt->cap * 2 : 64;
        rt->v = pw_xrealloc(rt->v, rt->cap * sizeof(*rt->v));
    }
    memmove(&rt->v[pos + 1], &rt->v[pos], (rt->n - pos) * sizeof(*rt->v));
    struct entry *e = pw_xmalloc(sizeof(*e));
    e->ns = pw_xstrdup(ns);
    e->name = nm;
    e->obj = obj;
    rt->v[pos] = e;
    rt->n++;
    commit(st, rt, SIM_ADDED, e->ns, e->name, obj, NULL);
    if (out)
        *out = json_incref(obj);
    pthread_mutex_unlock(&st->mu);
    return 0;
}

int sim_store_get(sim_store *st, const char *resource, const char *ns, const char *name, json_t **out)
{
    pthread_mutex_lock(&st->mu);
    struct entry *e = table_get(st, resource, ns, name);
    if (e)
        *out = json_incref(e->obj);
    pthread_mutex_unlock(&st->mu);
    return e ? 0 : PW_ENOTFOUND;
}

/* ---- update ---- */

/* Replaces e's object with obj (ours, private); lock held. */
static void replace_locked(sim_store *st, const char *resource, struct entry *e, json_t *obj, json_t **out)
{
    json_t *old = e->obj;
    json_t *m = meta_of(obj);
    json_t *om = json_object_get(old, "metadata");
    static const char *const KEEP[] = {"uid", "creationTimestamp", "name", "namespace"};
    for (size_t i = 0; i < sizeof(KEEP) / sizeof(KEEP[0]); i++) {
        json_t *v = json_object_get(om, KEEP[i]);
        if (v)
            json_object_set(m, KEEP[i], v);
        else
            json_object_del(m, KEEP[i]);
    }
    json_int_t gen = json_integer_value(json_object_get(om, "generation"));
    if (gen < 1)
        gen = 1;
    if (!json_equal(json_object_get(old, "spec"), json_object_get(obj, "spec")))
        gen++;
    json_object_set_new(m, "generation", json_integer(gen));
    st->rv++;
    set_rv(obj, st->rv);
    e->obj = obj;
    commit(st, table_find(st, resource, false), SIM_MODIFIED, e->ns, e->name, obj, old);
    json_decref(old);
    if (out)
        *out = json_incref(obj);
}

int sim_store_update(sim_store *st, const char *resource, const char *ns, const char *name, json_t *obj,
                     uint64_t expect_rv, json_t **out)
{
    if (!json_is_object(obj)) {
        json_decref(obj);
        return PW_EINVAL;
    }
    obj = own(obj);
    pthread_mutex_lock(&st->mu);
    struct entry *e = table_get(st, resource, ns, name);
    int rc = 0;
    if (!e)
        rc = PW_ENOTFOUND;
    else if (expect_rv && obj_rv(e->obj) != expect_rv)
        rc = PW_ECONFLICT;
    if (rc) {
        pthread_mutex_unlock(&st->mu);
        json_decref(obj);
        return rc;
    }
    replace_locked(st, resource, e, obj, out);
    pthread_mutex_unlock(&st->mu);
    return 0;
}

int sim_store_mutate(sim_store *st, const char *resource, const char *ns, const char *name, sim_mutate_fn fn,
                     void *arg, json_t **out)
{
    pthread_mutex_lock(&st->mu);
    struct entry *e = table_get(st, resource, ns, name);
    if (!e) {
        pthread_mutex_unlock(&st->mu);
        return PW_ENOTFOUND;
    }
    json_t *copy = json_deep_copy(e->obj);
    int rc = fn(arg, copy);
    if (rc == 1) {
        json_decref(copy);
        if (out)
            *out = json_incref(e->obj);
        pthread_mutex_unlock(&st->mu);
        return 0;
    }
    if (rc < 0) {
        json_decref(copy);
        pthread_mutex_unlock(&st->mu);
        return rc;
    }
    replace_locked(st, resource, e, copy, out);
    pthread_mutex_unlock(&st->mu);
    return 0;
}

int sim_store_delete(sim_store *st, const char *resource, const char *ns, const char *name, json_t **out)
{
    pthread_mutex_lock(&st->mu);
    struct rtable *rt = table_find(st, resource, false);
    bool found = false;
    size_t pos = rt ? table_lower(rt, ns, name, &found) : 0;
    if (!found) {
        pthread_mutex_unlock(&st->mu);
        return PW_ENOTFOUND;
    }
    struct entry *e = rt->v[pos];
    memmove(&rt->v[pos], &rt->v[pos + 1], (rt->n - pos - 1) * sizeof(*rt->v));
    rt->n--;
    st->rv++;
    /* the DELETED event carries the last state with the deletion's resourceVersion */
    json_t *last = json_deep_copy(e->obj);
    set_rv(last, st->rv);
    commit(st, rt, SIM_DELETED, e->ns, e->name, last, e->obj);
    if (out)
        *out = json_incref(last);
    json_decref(last);
    json_decref(e->obj);
    free(e->ns);
    free(e->name);
    free(e);
    pthread_mutex_unlock(&st->mu);
    return 0;
}

/* ---- list ---- */

int sim_store_list(sim_store *st, const char *resource, const char *ns, const char *after, size_t limit,
                   sim_filter_fn filter, void *arg, json_t **items, bool *more, uint64_t *rv)
{
    json_t *arr = json_array();
    bool has_more = false;
    char *ans = NULL;
    const char *aname = NULL;
    if (after) {
        const char *slash = strchr(after, '/');
        if (slash) {
            ans = pw_xstrndup(after, (size_t)(slash - after));
            aname = slash + 1;
        } else {
            ans = pw_xstrdup("");
            aname = after;
        }
    }
    pthread_mutex_lock(&st->mu);
    struct rtable *rt = table_find(st, resource, false);
    if (rt) {
        size_t i = 0;
        if (ans) {
            bool found;
            i = table_lower(rt, ans, aname, &found);
            if (found)
                i++;
        } else if (ns) {
            i = table_lower(rt, ns, "", NULL);
        }
        for (; i < rt->n; i++) {
            struct entry *e = rt->v[i];
            if (ns && strcmp(e->ns, ns) != 0) {
                if (strcmp(e->ns, ns) > 0)
                    break;
                continue;
            }
            if (filter && !filter(arg, e->obj))
                continue;
            if (limit && json_array_size(arr) == limit) {
                has_more = true;
                break;
            }
            json_array_append(arr, e->obj);
        }
    }
    if (rv)
        *rv = st->rv;
    pthread_mutex_unlock(&st->mu);
    free(ans);
    *items = arr;
    if (more)
        *more = has_more;
    return 0;
}

size_t sim_store_count(sim_store *st, const char *resource)
{
    pthread_mutex_lock(&st->mu);
    struct rtable *rt = table_find(st, resource, false);
    size_t n = rt ? rt->n : 0;
    pthread_mutex_unlock(&st->mu);
    return n;
}

/* ---- subscribers ---- */

static int subscribe_locked(sim_store *st, sim_store_fn fn, void *arg)
{
    if (st->nsubs == st->capsubs) {
        st->capsubs = st->capsubs ? st->capsubs * 2 : 16;
        st->subs = pw_xrealloc(st->subs, st->capsubs * sizeof(*st->subs));
    }
    int id = st->next_sub_id++;
    st->subs[st->nsubs++] = (struct sub){id, fn, arg};
    return id;
}

int sim_store_subscribe(sim_store *st, sim_store_fn fn, void *arg)
{
    pthread_mutex_lock(&st->mu);
    int id = subscribe_locked(st, fn, arg);
    pthread_mutex_unlock(&st->mu);
    return id;
}

void sim_store_unsubscribe(sim_store *st, int id)
{
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->nsubs; i++) {
        if (st->subs[i].id == id) {
            memmove(&st->subs[i], &st->subs[i + 1], (st->nsubs - i - 1) * sizeof(*st->subs));
            st->nsubs--;
            break;
        }
    }
    pthread_mutex_unlock(&st->mu);
}

int sim_store_subscribe_from(sim_store *st, uint64_t from_rv, sim_store_fn fn, void *arg)
{
    pthread_mutex_lock(&st->mu);
    if (from_rv < st->floor_rv) {
        pthread_mutex_unlock(&st->mu);
        return PW_EGONE;
    }
    /* the ring is in rv order: find the first change after from_rv by binary search */
    size_t lo = 0, hi = st->ring_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->ring[(st->ring_head + mid) % st->ring_cap].rv <= from_rv)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < st->ring_len; i++) {
        struct hist *h = &st->ring[(st->ring_head + i) % st->ring_cap];
        struct sim_change ch = {h->type, h->resource, h->ns, h->name, h->rv, h->obj, h->old};
        fn(arg, &ch);
    }
    int id = subscribe_locked(st, fn, arg);
    pthread_mutex_unlock(&st->mu);
    return id;
}

void sim_store_compact(sim_store *st)
{
    pthread_mutex_lock(&st->mu);
    for (size_t i = 0; i < st->ring_len; i++)
        hist_clear(&st->ring[(st->ring_head + i) % st->ring_cap]);
    st->ring_head = 0;
    st->ring_len = 0;
    st->ring_bytes = 0;
    st->floor_rv = st->rv;
    pthread_mutex_unlock(&st->mu);
}
