/* api_cache.c: the serialized text of stored objects, cached by resourceVersion, so a list of 10,000
 * nodes or the initial events of a watch copy bytes instead of encoding JSON again. A stored object
 * never changes and every write gets a new resourceVersion, so (rv, resource row) names one text for
 * good; the cache is direct-mapped (a colliding entry is simply replaced) and bounded by its slots.
 *
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

static struct slot slots[CACHE_SLOTS];
static pthread_mutex_t stripes[CACHE_STRIPES];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_stripes(void)
{
    for (unsigned i = 0; i < CACHE_STRIPES; i++)
        pthread_mutex_init(&stripes[i], NULL);
}

static uint64_t rv_of(const json_t *obj)
{
    const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return s ? strtoull(s, NULL, 10) : 0;
}

static char *dump(const struct rdef *rd, json_t *obj, size_t *len)
{
    json_t *o = api_with_kind(rd, obj);
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!t)
        t = pw_xstrdup("{}");
    *len = strlen(t);
    return t;
}

void api_cache_append(const struct rdef *rd, json_t *obj, pw_buf *b)
{
    pthread_once(&once, init_stripes);
    uint64_t rv = rv_of(obj);
    size_t len;
    if (!rv) {
        char *t = dump(rd, obj, &len);
        pw_buf_append(b, t, len);
        free(t);
        return;
    }
    unsigned idx = (unsigned)(rv & (CACHE_SLOTS - 1));
    pthread_mutex_t *mu = &stripes[idx % CACHE_STRIPES];
    pthread_mutex_lock(mu);
    struct slot *s = &slots[idx];
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

void api_cache_clear(void)
{
    pthread_once(&once, init_stripes);
    for (unsigned i = 0; i < CACHE_SLOTS; i++) {
        pthread_mutex_t *mu = &stripes[i % CACHE_STRIPES];
        pthread_mutex_lock(mu);
        free(slots[i].text);
        memset(&slots[i], 0, sizeof(slots[i]));
        pthread_mutex_unlock(mu);
    }
}
