/* metrics.c: the registry: families in registration order, each with its children in a small
 * open-addressing table keyed by the joined label values, and the text exposition.
 *
 * The exposition follows the Prometheus text format 0.0.4: one "# HELP" and "# TYPE" per family,
 * label values escaped (backslash, double quote, newline), histograms as cumulative _bucket series
 * with an le label ending at +Inf, then _sum and _count. */
#include "metrics/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"

const double pw_metrics_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t pw_metrics_n_latency_buckets = sizeof pw_metrics_latency_buckets / sizeof pw_metrics_latency_buckets[0];
const double pw_metrics_duration_buckets[] = {0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200};
const size_t pw_metrics_n_duration_buckets = sizeof pw_metrics_duration_buckets / sizeof pw_metrics_duration_buckets[0];

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };
static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct child {
    char *key;     /* the label values joined by '\x1f' (never in a value we keep) */
    char **values; /* n_labels */
    double value;  /* counter, gauge; histogram: sum */
    uint64_t count;
    uint64_t *buckets; /* histogram: n_bounds + 1, not cumulative */
};

struct pw_metric {
    pw_metric *next;
    char *name, *help;
    enum kind kind;
    size_t n_labels;
    char **labels;
    double *bounds;
    size_t n_bounds;
    pthread_mutex_t mu;
    struct child **children; /* in creation order */
    size_t n_children, cap_children;
    size_t *slots; /* open addressing: index + 1 into children, 0 empty; n_slots a power of two */
    size_t n_slots;
};

struct collector {
    void (*fn)(void *arg);
    void *arg;
};

struct pw_metrics {
    pthread_mutex_t mu; /* the family list and the collectors */
    pw_metric *head, *tail;
    struct collector *collectors;
    size_t n_collectors;
    pthread_mutex_t render_mu; /* one render at a time (collectors are not reentrant) */
};

/* ---- the registry ---- */

pw_metrics *pw_metrics_new(void)
{
    pw_metrics *r = pw_xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->render_mu, NULL);
    return r;
}

static void child_free(struct child *c, size_t n_labels)
{
    for (size_t i = 0; i < n_labels; i++)
        free(c->values[i]);
    free(c->values);
    free(c->buckets);
    free(c->key);
    free(c);
}

static void family_clear_locked(pw_metric *m)
{
    for (size_t i = 0; i < m->n_children; i++)
        child_free(m->children[i], m->n_labels);
    m->n_children = 0;
    if (m->slots)
        memset(m->slots, 0, m->n_slots * sizeof *m->slots);
}

static void family_free(pw_metric *m)
{
    family_clear_locked(m);
    free(m->children);
    free(m->slots);
    for (size_t i = 0; i < m->n_labels; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->bounds);
    free(m->name);
    free(m->help);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void pw_metrics_free(pw_metrics *r)
{
    if (!r)
        return;
    while (r->head) {
        pw_metric *m = r->head;
        r->head = m->next;
        family_free(m);
    }
    free(r->collectors);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->render_mu);
    free(r);
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static pw_metrics *default_registry;

static void default_init(void)
{
    default_registry = pw_metrics_new();
}

pw_metrics *pw_metrics_default(void)
{
    pthread_once(&default_once, default_init);
    return default_registry;
}

static bool name_ok(const char *s, bool colon)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  (colon && c == ':');
        if (!ok)
            return false;
    }
    return true;
}

/* Splits "a,b,c" into *out (each name valid, not reserved "le", at most PW_METRICS_MAX_LABELS).
 * Returns the count, or -1. */
static int split_labels(const char *labels, char ***out)
{
    *out = NULL;
    if (!labels || !*labels)
        return 0;
    char **v = pw_xcalloc(PW_METRICS_MAX_LABELS, sizeof *v);
    int n = 0;
    const char *p = labels;
    for (;;) {
        size_t len = strcspn(p, ",");
        char *name = pw_xstrndup(p, len);
        if (n == PW_METRICS_MAX_LABELS || !name_ok(name, false) || strcmp(name, "le") == 0 ||
            strncmp(name, "__", 2) == 0) {
            free(name);
            for (int i = 0; i < n; i++)
                free(v[i]);
            free(v);
            return -1;
        }
        v[n++] = name;
        if (!p[len])
            break;
        p += len + 1;
    }
    *out = v;
    return n;
}

static bool same_labels(const pw_metric *m, char **labels, int n)
{
    if ((size_t)n != m->n_labels)
        return false;
    for (int i = 0; i < n; i++)
        if (strcmp(m->labels[i], labels[i]) != 0)
            return false;
    return true;
}

static pw_metric *family_add(pw_metrics *r, enum kind kind, const char *name, const char *help, const char *labels,
                             const double *bounds, size_t n_bounds)
{
    if (!r || !name_ok(name, true)) {
        PW_ERROR("metrics: bad metric name \"%s\"", name ? name : "");
        return NULL;
    }
    char **lv;
    int nl = split_labels(labels, &lv);
    if (nl < 0) {
        PW_ERROR("metrics: %s: bad label names \"%s\"", name, labels);
        return NULL;
    }
    for (size_t i = 0; i < n_bounds; i++)
        if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1]))) {
            PW_ERROR("metrics: %s: bucket bounds must be finite and increase", name);
            for (int k = 0; k < nl; k++)
                free(lv[k]);
            free(lv);
            return NULL;
        }
    pthread_mutex_lock(&r->mu);
    for (pw_metric *m = r->head; m; m = m->next) {
        if (strcmp(m->name, name) != 0)
            continue;
        bool same = m->kind == kind && same_labels(m, lv, nl);
        pthread_mutex_unlock(&r->mu);
        for (int i = 0; i < nl; i++)
            free(lv[i]);
        free(lv);
        if (!same)
            PW_ERROR("metrics: %s registered twice with another type or labels", name);
        return same ? m : NULL;
    }
    pw_metric *m = pw_xcalloc(1, sizeof *m);
    m->name = pw_xstrdup(name);
    m->help = pw_xstrdup(help ? help : "");
    m->kind = kind;
    m->n_labels = (size_t)nl;
    m->labels = lv;
    if (n_bounds) {
        m->bounds = pw_xmalloc(n_bounds * sizeof *m->bounds);
        memcpy(m->bounds, bounds, n_bounds * sizeof *m->bounds);
        m->n_bounds = n_bounds;
    }
    pthread_mutex_init(&m->mu, NULL);
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    pthread_mutex_unlock(&r->mu);
    return m;
}

pw_metric *pw_metrics_counter(pw_metrics *r, const char *name, const char *help, const char *labels)
{
    return family_add(r, K_COUNTER, name, help, labels, NULL, 0);
}

pw_metric *pw_metrics_gauge(pw_metrics *r, const char *name, const char *help, const char *labels)
{
    return family_add(r, K_GAUGE, name, help, labels, NULL, 0);
}

pw_metric *pw_metrics_histogram(pw_metrics *r, const char *name, const char *help, const char *labels,
                                const double *bounds, size_t n)
{
    if (!bounds || n == 0)
        return NULL;
    return family_add(r, K_HISTOGRAM, name, help, labels, bounds, n);
}

void pw_metrics_add_collector(pw_metrics *r, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&r->mu);
    r->collectors = pw_xrealloc(r->collectors, (r->n_collectors + 1) * sizeof *r->collectors);
    r->collectors[r->n_collectors++] = (struct collector){fn, arg};
    pthread_mutex_unlock(&r->mu);
}

void pw_metrics_remove_collector(pw_metrics *r, void (*fn)(void *arg), void *arg)
{
    /* taken after render_mu, so a render in progress finishes before arg may go */
    pthread_mutex_lock(&r->render_mu);
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_collectors; i++) {
        if (r->collectors[i].fn == fn && r->collectors[i].arg == arg) {
            memmove(&r->collectors[i], &r->collectors[i + 1], (r->n_collectors - i - 1) * sizeof *r->collectors);
            r->n_collectors--;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&r->render_mu);
}

/* ---- children ---- */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static char *join_values(const pw_metric *m, const char *const *values)
{
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_buf_puts(&b, "");
    for (size_t i = 0; i < m->n_labels; i++) {
        if (i)
            pw_buf_append(&b, "\x1f", 1);
        pw_buf_puts(&b, values && values[i] ? values[i] : "");
    }
    return pw_buf_steal(&b);
}

static void slots_insert(pw_metric *m, size_t idx)
{
    size_t mask = m->n_slots - 1;
    size_t s = (size_t)hash_key(m->children[idx]->key) & mask;
    while (m->slots[s])
        s = (s + 1) & mask;
    m->slots[s] = idx + 1;
}

static void slots_grow(pw_metric *m)
{
    free(m->slots);
    m->n_slots = m->n_slots ? m->n_slots * 2 : 16;
    m->slots = pw_xcalloc(m->n_slots, sizeof *m->slots);
    for (size_t i = 0; i < m->n_children; i++)
        slots_insert(m, i);
}

static struct child *child_lookup(pw_metric *m, const char *key)
{
    if (!m->n_slots)
        return NULL;
    size_t mask = m->n_slots - 1;
    for (size_t s = (size_t)hash_key(key) & mask; m->slots[s]; s = (s + 1) & mask) {
        struct child *c = m->children[m->slots[s] - 1];
        if (strcmp(c->key, key) == 0)
            return c;
    }
    return NULL;
}

/* The child for values, made when missing (the overflow child past the cap). m->mu held. */
static struct child *child_get(pw_metric *m, const char *const *values)
{
    char *key = join_values(m, values);
    struct child *c = child_lookup(m, key);
    if (c) {
        free(key);
        return c;
    }
    static const char *const other[PW_METRICS_MAX_LABELS] = {"_other", "_other", "_other",
                                                             "_other", "_other", "_other"};
    if (m->n_children >= PW_METRICS_MAX_SERIES) {
        free(key);
        key = join_values(m, other);
        c = child_lookup(m, key);
        if (c) {
            free(key);
            return c;
        }
        values = other;
        PW_WARN("metrics: %s has %d series: further label values count as \"_other\"", m->name, PW_METRICS_MAX_SERIES);
    }
    c = pw_xcalloc(1, sizeof *c);
    c->key = key;
    c->values = pw_xcalloc(m->n_labels ? m->n_labels : 1, sizeof *c->values);
    for (size_t i = 0; i < m->n_labels; i++)
        c->values[i] = pw_xstrdup(values && values[i] ? values[i] : "");
    if (m->kind == K_HISTOGRAM)
        c->buckets = pw_xcalloc(m->n_bounds + 1, sizeof *c->buckets);
    if (m->n_children == m->cap_children) {
        m->cap_children = m->cap_children ? m->cap_children * 2 : 8;
        m->children = pw_xrealloc(m->children, m->cap_children * sizeof *m->children);
    }
    m->children[m->n_children++] = c;
    if ((m->n_children + 1) * 2 > m->n_slots)
        slots_grow(m);
    else
        slots_insert(m, m->n_children - 1);
    return c;
}

void pw_metric_add(pw_metric *m, const char *const *values, double v)
{
    if (!m || m->kind == K_HISTOGRAM || (m->kind == K_COUNTER && !(v >= 0)))
        return;
    pthread_mutex_lock(&m->mu);
    child_get(m, values)->value += v;
    pthread_mutex_unlock(&m->mu);
}

void pw_metric_set(pw_metric *m, const char *const *values, double v)
{
    if (!m || m->kind == K_HISTOGRAM)
        return;
    pthread_mutex_lock(&m->mu);
    child_get(m, values)->value = v;
    pthread_mutex_unlock(&m->mu);
}

void pw_metric_observe(pw_metric *m, const char *const *values, double v)
{
    if (!m || m->kind != K_HISTOGRAM || isnan(v))
        return;
    pthread_mutex_lock(&m->mu);
    struct child *c = child_get(m, values);
    size_t i = 0;
    while (i < m->n_bounds && v > m->bounds[i])
        i++;
    c->buckets[i]++;
    c->count++;
    c->value += v;
    pthread_mutex_unlock(&m->mu);
}

void pw_metric_clear(pw_metric *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    family_clear_locked(m);
    pthread_mutex_unlock(&m->mu);
}

double pw_metric_value(pw_metric *m, const char *const *values)
{
    if (!m)
        return 0;
    char *key = join_values(m, values);
    pthread_mutex_lock(&m->mu);
    struct child *c = child_lookup(m, key);
    double v = c ? (m->kind == K_HISTOGRAM ? (double)c->count : c->value) : 0;
    pthread_mutex_unlock(&m->mu);
    free(key);
    return v;
}

/* ---- exposition ---- */

static void put_escaped(pw_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            pw_buf_puts(b, "\\\\");
        else if (*s == '\n')
            pw_buf_puts(b, "\\n");
        else if (quote && *s == '"')
            pw_buf_puts(b, "\\\"");
        else
            pw_buf_append(b, s, 1);
    }
}

static void put_number(pw_buf *b, double v)
{
    if (isnan(v))
        pw_buf_puts(b, "NaN");
    else if (isinf(v))
        pw_buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        pw_buf_printf(b, "%.0f", v);
    else
        pw_buf_printf(b, "%.15g", v); /* 15 digits survive a round trip through text */
}

/* name{labels[,le="bound"]} value\n */
static void put_sample(pw_buf *b, const pw_metric *m, const struct child *c, const char *suffix, const char *le,
                       double v)
{
    pw_buf_puts(b, m->name);
    pw_buf_puts(b, suffix);
    if (m->n_labels || le) {
        pw_buf_puts(b, "{");
        for (size_t i = 0; i < m->n_labels; i++) {
            pw_buf_printf(b, "%s%s=\"", i ? "," : "", m->labels[i]);
            put_escaped(b, c->values[i], true);
            pw_buf_puts(b, "\"");
        }
        if (le)
            pw_buf_printf(b, "%sle=\"%s\"", m->n_labels ? "," : "", le);
        pw_buf_puts(b, "}");
    }
    pw_buf_puts(b, " ");
    put_number(b, v);
    pw_buf_puts(b, "\n");
}

static void render_family(pw_buf *b, pw_metric *m)
{
    pthread_mutex_lock(&m->mu);
    pw_buf_printf(b, "# HELP %s ", m->name);
    put_escaped(b, m->help, false);
    pw_buf_printf(b, "\n# TYPE %s %s\n", m->name, kind_names[m->kind]);
    for (size_t k = 0; k < m->n_children; k++) {
        const struct child *c = m->children[k];
        if (m->kind != K_HISTOGRAM) {
            put_sample(b, m, c, "", NULL, c->value);
            continue;
        }
        uint64_t cum = 0;
        for (size_t i = 0; i < m->n_bounds; i++) {
            char le[32];
            snprintf(le, sizeof le, "%g", m->bounds[i]);
            cum += c->buckets[i];
            put_sample(b, m, c, "_bucket", le, (double)cum);
        }
        put_sample(b, m, c, "_bucket", "+Inf", (double)c->count);
        put_sample(b, m, c, "_sum", NULL, c->value);
        put_sample(b, m, c, "_count", NULL, (double)c->count);
    }
    pthread_mutex_unlock(&m->mu);
}

char *pw_metrics_render(pw_metrics *r, size_t *len)
{
    pthread_mutex_lock(&r->render_mu);
    pthread_mutex_lock(&r->mu);
    size_t nc = r->n_collectors;
    struct collector *cs = pw_xcalloc(nc ? nc : 1, sizeof *cs);
    if (nc)
        memcpy(cs, r->collectors, nc * sizeof *cs);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < nc; i++)
        cs[i].fn(cs[i].arg);
    free(cs);
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_buf_puts(&b, "");
    pthread_mutex_lock(&r->mu); /* lock order: r->mu, then a family's */
    for (pw_metric *m = r->head; m; m = m->next)
        render_family(&b, m);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&r->render_mu);
    if (len)
        *len = b.len;
    return pw_buf_steal(&b);
}
