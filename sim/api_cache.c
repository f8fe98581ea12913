/* api_cache.c: the serialized text of stored objects, cached by resourceVersion, so a list of 10,000
 * nodes or the initial events of a watch copy bytes instead of encoding JSON again. A stored object
 * never changes and every write gets a new resourceVersion, so (rv, resource row) names one text for
 * good; the cache is direct-mapped (a colliding entry is simply replaced) and bounded by its slots.
 *
 * One cache per API (struct sim_api), so two kubesims in one process never serve each other's text.
 * Thread model: striped mutexes; safe from any thread. */
#include "sim/api_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

#define CACHE_SLOTS 32768u /* a power of two */
#define CACHE_STRIPES 64u

struct slot {
    uint64_t rv;
    const struct rdef *rd;
    char *text; /* owned */
    size_t len;
};

struct sim_api_objcache {
    struct slot slots[CACHE_SLOTS];
    pthread_mutex_t stripes[CACHE_STRIPES];
};

struct sim_api_objcache *sim_api_cache_new(void)
{
    struct sim_api_objcache *c = pw_xcalloc(1, sizeof *c);
    for (unsigned i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_init(&c->stripes[i], NULL);
    return c;
}

void sim_api_cache_free(struct sim_api_objcache *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        free(c->slots[i].text);
    for (unsigned i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_destroy(&c->stripes[i]);
    free(c);
}

static uint64_t rv_of(const json_t *obj)
{
    const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return s ? strtoull(s, NULL, 10) : 0;
}

static char *dump(const struct rdef *rd, json_t *obj, size_t *len)
{
    json_t *o = sim_api_with_kind(rd, obj);
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!t)
        t = pw_xstrdup("{}");
    *len = strlen(t);
    return t;
}

void sim_api_cache_append(struct sim_api_objcache *c, const struct rdef *rd, json_t *obj, pw_buf *b)
{
    uint64_t rv = rv_of(obj);
    size_t len;
    if (!rv) {
        char *t = dump(rd, obj, &len);
        pw_buf_append(b, t, len);
        free(t);
        return;
    }
    unsigned idx = (unsigned)(rv & (CACHE_SLOTS - 1));
    pthread_mutex_t *mu = &c->stripes[idx % CACHE_STRIPES];
    pthread_mutex_lock(mu);
    struct slot *s = &c->slots[idx];
    if (s->text && s->rv == rv && s->rd == rd) {
        pw_buf_append(b, s->text, s->len);
        pthread_mutex_unlock(mu);
        return;
    }
    pthread_mutex_unlock(mu);
    char *t = dump(rd, obj, &len); /* encode outside the lock */
    pw_buf_append(b, t, len);
    pthread_mutex_lock(mu);
    free(s->text);
    s->text = t;
    s->len = len;
    s->rv = rv;
    s->rd = rd;
    pthread_mutex_unlock(mu);
}
