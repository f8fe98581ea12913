/* metrics.h: a small Prometheus metrics registry and its text exposition (format 0.0.4): counters,
 * gauges and histograms, each a family with fixed label names whose children (one per label
 * values) are made on first use, and collectors that refresh values computed at scrape time.
 *
 * Cardinality is bounded by construction: a family holds at most PW_METRICS_MAX_SERIES children;
 * label values beyond that go to one overflow child whose every label is "_other", so a bug that
 * labels by task or node name costs one series, not memory without end. Callers label only by
 * bounded words (verbs, resources, routes, codes, states), never by ids.
 *
 * The process has one default registry (pw_metrics_default) that the modules instrument directly
 * (the k8s client, informers, store, HTTP server, API): metrics are process-wide facts, and passing
 * a registry through every module's configuration would only repeat the same pointer everywhere.
 * Tests make their own registries with pw_metrics_new.
 *
 * Thread model: every function is safe from any thread. An update takes its family's lock for a
 * lookup and an add; rendering runs the collectors (without any family lock) and then reads each
 * family under its lock. Families live as long as their registry; a family pointer may be NULL
 * (registration refused), and every update on NULL is a no-op. */
#ifndef PW_METRICS_H
#define PW_METRICS_H

#include <stddef.h>

typedef struct pw_metrics pw_metrics;
typedef struct pw_metric pw_metric;

#define PW_METRICS_MAX_SERIES 1000
#define PW_METRICS_MAX_LABELS 6

/* Latency buckets in seconds (1 ms to 10 s) and durations (0.5 s to 20 min). */
extern const double pw_metrics_latency_buckets[];
extern const size_t pw_metrics_n_latency_buckets;
extern const double pw_metrics_duration_buckets[];
extern const size_t pw_metrics_n_duration_buckets;

pw_metrics *pw_metrics_new(void);
/* Frees r and its families (no update may be in flight). NULL is a no-op. Never the default one. */
void pw_metrics_free(pw_metrics *r);
/* The process's registry (made on first use, never freed). */
pw_metrics *pw_metrics_default(void);

/* Registers a family, or returns the one registered under name (of the same type and labels) so
 * modules may register where they first need one. name: [a-zA-Z_:][a-zA-Z0-9_:]*; help: one line
 * (copied); labels: comma-separated label names, "" or NULL for none (at most
 * PW_METRICS_MAX_LABELS). Returns NULL (logged) for a bad name or labels, or a clash with an
 * existing family of another type or labels. Borrowed, valid while r lives. */
pw_metric *pw_metrics_counter(pw_metrics *r, const char *name, const char *help, const char *labels);
pw_metric *pw_metrics_gauge(pw_metrics *r, const char *name, const char *help, const char *labels);
/* bounds: n strictly increasing finite upper bounds (copied); "+Inf" is added. */
pw_metric *pw_metrics_histogram(pw_metrics *r, const char *name, const char *help, const char *labels,
                                const double *bounds, size_t n);

/* Updates the child with these label values (values: as many strings as the family has labels,
 * borrowed; NULL for a family without labels). add: counters (v >= 0, else ignored) and gauges.
 * set: gauges, and counters that mirror a total kept elsewhere (process CPU). observe: histograms. */
void pw_metric_add(pw_metric *m, const char *const *values, double v);
void pw_metric_set(pw_metric *m, const char *const *values, double v);
void pw_metric_observe(pw_metric *m, const char *const *values, double v);
/* Drops every child (a collector that rebuilds a gauge family at each scrape). */
void pw_metric_clear(pw_metric *m);
/* The value of one child (a counter's or gauge's value, a histogram's count); 0 when it does not
 * exist. For tests and collectors. */
double pw_metric_value(pw_metric *m, const char *const *values);

/* fn(arg) runs at the start of every pw_metrics_render, to refresh gauges computed on demand.
 * remove drops the first (fn, arg) registered; a collector must be removed before arg goes. */
void pw_metrics_add_collector(pw_metrics *r, void (*fn)(void *arg), void *arg);
void pw_metrics_remove_collector(pw_metrics *r, void (*fn)(void *arg), void *arg);

/* The text exposition of every family (# HELP, # TYPE, samples), NUL-terminated; *len (may be
 * NULL) gets its length. Caller frees with free(). */
char *pw_metrics_render(pw_metrics *r, size_t *len);

/* Registers process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and process_start_time_seconds
 * on the default registry, refreshed from /proc at each render. Idempotent. */
void pw_metrics_process_register(void);

#endif
