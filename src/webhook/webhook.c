/* webhook.c: the webhook service (webhook.h): its life cycle (the configuration checked and copied,
 * the outbox read from the store, the consumer, marker and worker threads started and stopped),
 * leadership (pause and resume), its metrics and figures, and the url check. The threads' work is in
 * consumer.c (events into deliveries) and deliver.c (attempts); GET task's view in annotate.c. One
 * lock (w->mu) guards the outbox; attempts run without it. */
#include "webhook/webhook.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "events/events.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "webhook/webhook_int.h"

const char *const pw_webhook_event_names[] = {"started", "succeeded", "failed", "cancelled", NULL};

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                         1800, 3600, 21600, 86400};

/* ---- urls ---- */

int pw_webhook_url_check(const char *url, bool allow_private, char **why)
{
    *why = NULL;
    if (!url || !*url) {
        *why = pw_xstrdup("required: an http:// or https:// URL");
        return PW_EINVAL;
    }
    if (strlen(url) > PW_WEBHOOK_URL_MAX) {
        *why = pw_xasprintf("at most %d bytes", PW_WEBHOOK_URL_MAX);
        return PW_EINVAL;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    if (!u) {
        *why = pw_xstrdup("cannot parse it (out of memory)");
        return PW_EINVAL;
    }
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        *why = pw_xstrdup("not a URL: expected http://host[:port]/path or https://...");
        rc = PW_EINVAL;
    } else if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        *why = pw_xasprintf("scheme \"%s\" is not allowed: only http and https", scheme);
        rc = PW_EINVAL;
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        *why = pw_xstrdup("has no host");
        rc = PW_EINVAL;
    } else if (!allow_private) {
        size_t hl = strlen(host);
        bool localhost = strcasecmp(host, "localhost") == 0 ||
                         (hl > 10 && strcasecmp(host + hl - 10, ".localhost") == 0);
        if (localhost || pw_wh_host_literal_private(host)) {
            *why = pw_xasprintf("%s is a loopback, private or link-local address: refused (prewarmd's "
                                "--webhook-allow-private allows such receivers)",
                                host);
            rc = PW_EINVAL;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

bool pw_webhook_allows_private(const pw_webhook *w)
{
    return w->allow_private;
}

/* ---- life cycle ---- */

static void stop_threads(pw_webhook *w, bool consumer)
{
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    if (consumer) {
        pthread_join(w->consumer, NULL);
        pthread_join(w->marker, NULL); /* after the consumer: its last events are in the final mark */
    }
    for (int i = 0; i < w->n_workers; i++)
        pthread_join(w->workers[i], NULL);
}

static void free_fields(pw_webhook *w)
{
    for (size_t i = 0; i < w->n_urls; i++)
        free(w->urls[i]);
    free(w->urls);
    for (size_t i = 0; i < PW_WH_RECENT; i++)
        free(w->recent[i]);
    for (size_t i = 0; i < w->n_secrets; i++) {
        free(w->secrets[i].name);
        free(w->secrets[i].value);
        free(w->secrets[i].error);
    }
    free(w->secrets);
    if (w->secret)
        memset(w->secret, 0, w->secret_len);
    free(w->secret);
    free(w->namespace_);
    free(w->source);
    pw_wh_outbox_free(w->outbox);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->secret_mu);
    pthread_cond_destroy(&w->work);
    free(w);
}

/* Server-wide deliveries read from the store whose receiver is no longer configured (its --webhook
 * was removed) are given up (w->mu held). */
static void drop_unconfigured(pw_webhook *w)
{
    for (size_t i = 0; i < pw_wh_outbox_count(w->outbox); i++) {
        struct pw_wh_delivery *d = pw_wh_outbox_at(w->outbox, i);
        if (d->state != PW_WH_PENDING || d->busy || d->task_scope ||
            ((size_t)d->index < w->n_urls && strcmp(w->urls[d->index], d->url) == 0))
            continue;
        d->state = PW_WH_FAILED;
        d->done_ms = pw_clock_real_ms();
        free(d->last_error);
        d->last_error = pw_xstrdup("the receiver is no longer configured (--webhook)");
        pw_wh_outbox_save(w->outbox, d);
    }
}

static void register_metrics(pw_webhook *w)
{
    pw_metrics *r = pw_metrics_default();
    w->m_deliveries = pw_metrics_counter(r, "prewarm_webhook_deliveries_total",
                                         "Webhook deliveries finished, by result (delivered, failed: a permanent "
                                         "refusal, expired: given up after retrying)",
                                         "result");
    w->m_attempts = pw_metrics_counter(r, "prewarm_webhook_attempts_total",
                                       "Webhook delivery attempts, by the receiver's status class (error: no answer)",
                                       "code");
    w->m_pending = pw_metrics_gauge(r, "prewarm_webhook_outbox_pending", "Webhook deliveries in the outbox not yet "
                                                                         "delivered or given up", "");
    w->m_latency = pw_metrics_histogram(r, "prewarm_webhook_delivery_latency_seconds",
                                        "Time from an event to its delivery's 2xx answer, retries included", "",
                                        latency_buckets, sizeof latency_buckets / sizeof latency_buckets[0]);
    static const char *const results[] = {"delivered", "failed", "expired"};
    for (size_t i = 0; i < 3; i++)
        pw_metric_add(w->m_deliveries, &results[i], 0);
}

/* The signing key in path: 0 and *out, *len (caller frees), or PW_EINVAL and *errmsg. */
static int read_secret_file(const char *path, char **out, size_t *len, char **errmsg)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *errmsg = pw_xasprintf("--webhook-secret-file %s: %s", path, strerror(errno));
        return PW_EINVAL;
    }
    /* the whole file (a secret of up to 4096 bytes and some trailing white space), so a longer one is
     * refused rather than cut where its tail happened to be white space */
    char *buf = pw_xmalloc(8193);
    size_t n = fread(buf, 1, 8193, f);
    fclose(f);
    bool whole = n <= 8192;
    while (whole && n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (!whole || n == 0 || n > 4096) {
        *errmsg = pw_xasprintf("--webhook-secret-file %s: %s", path, n ? "over 4096 bytes" : "empty");
        free(buf);
        return PW_EINVAL;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int pw_webhook_new(const struct pw_webhook_config *cfg, pw_webhook **out, char **errmsg)
{
    *errmsg = NULL;
    char *file_secret = NULL;
    size_t file_secret_len = 0;
    if (cfg->secret_file && read_secret_file(cfg->secret_file, &file_secret, &file_secret_len, errmsg) != 0)
        return PW_EINVAL;
    if (cfg->n_urls > PW_WEBHOOK_MAX_URLS) {
        *errmsg = pw_xasprintf("at most %d --webhook receivers", PW_WEBHOOK_MAX_URLS);
        free(file_secret);
        return PW_EINVAL;
    }
    for (size_t i = 0; i < cfg->n_urls; i++) {
        char *why = NULL;
        if (pw_webhook_url_check(cfg->urls[i], cfg->allow_private, &why) != 0) {
            *errmsg = pw_xasprintf("--webhook %s: %s", cfg->urls[i], why);
            free(why);
            free(file_secret);
            return PW_EINVAL;
        }
    }
    pw_webhook *w = pw_xcalloc(1, sizeof *w);
    w->events = cfg->events;
    w->store = cfg->store;
    w->client = cfg->client;
    w->namespace_ = pw_xstrdup(cfg->namespace_ ? cfg->namespace_ : "default");
    w->source = pw_xstrdup(cfg->source ? cfg->source : "/prewarmd");
    if (file_secret) {
        w->secret = file_secret;
        w->secret_len = file_secret_len;
    } else if (cfg->secret) {
        w->secret = pw_xstrndup(cfg->secret, cfg->secret_len);
        w->secret_len = cfg->secret_len;
    }
    w->urls = pw_xcalloc(cfg->n_urls + 1, sizeof *w->urls);
    for (size_t i = 0; i < cfg->n_urls; i++)
        w->urls[i] = pw_xstrdup(cfg->urls[i]);
    w->n_urls = cfg->n_urls;
    w->allow_private = cfg->allow_private;
    w->active = !cfg->inactive;
    w->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
    w->retry_base_ms = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : 1000;
    w->retry_max_ms = cfg->retry_max_ms > 0 ? cfg->retry_max_ms : 3600000;
    w->max_age_ms = cfg->max_age_ms > 0 ? cfg->max_age_ms : 86400000;
    w->keep_ms = cfg->keep_ms > 0 ? cfg->keep_ms : 7 * 86400000LL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->secret_mu, NULL);
    pthread_cond_init(&w->work, NULL);
    w->outbox = pw_wh_outbox_new(cfg->store);
    size_t loaded = 0;
    int rc = pw_wh_outbox_load(w->outbox, &loaded);
    if (rc != 0) {
        *errmsg = pw_xasprintf("cannot read the webhook outbox from the store: %s", pw_strerror(rc));
        free_fields(w);
        return rc;
    }
    register_metrics(w);
    pw_metric_set(w->m_pending, NULL, (double)pw_wh_outbox_pending(w->outbox));
    drop_unconfigured(w);
    if (w->active)
        pw_wh_reconcile(w);
    size_t pending = pw_wh_outbox_pending(w->outbox);
    int n = cfg->workers > 0 ? cfg->workers : 4;
    if (n > PW_WH_MAX_WORKERS)
        n = PW_WH_MAX_WORKERS;
    if (pthread_create(&w->marker, NULL, pw_wh_marker_main, w) != 0) {
        free_fields(w);
        *errmsg = pw_xstrdup("cannot start the webhook thread");
        return PW_ENOMEM;
    }
    w->sub = pw_events_sub_new(w->events, NULL, 0, NULL);
    if (pthread_create(&w->consumer, NULL, pw_wh_consumer_main, w) != 0) {
        pw_events_sub_free(w->sub);
        w->sub = NULL;
        pthread_mutex_lock(&w->mu);
        w->stopping = w->consumer_done = true;
        pthread_cond_broadcast(&w->work);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->marker, NULL);
        free_fields(w);
        *errmsg = pw_xstrdup("cannot start the webhook thread");
        return PW_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&w->workers[i], NULL, pw_wh_worker_main, w) != 0)
            break;
        w->n_workers++;
    }
    if (w->n_workers == 0) {
        stop_threads(w, true);
        free_fields(w);
        *errmsg = pw_xstrdup("cannot start the webhook workers");
        return PW_ENOMEM;
    }
    PW_INFO("webhook: %zu server-wide receivers, %zu deliveries in the outbox (%zu pending), private addresses %s",
            w->n_urls, loaded, pending, w->allow_private ? "allowed" : "refused");
    *out = w;
    return 0;
}

void pw_webhook_free(pw_webhook *w)
{
    if (!w)
        return;
    stop_threads(w, true);
    free_fields(w);
}

void pw_webhook_set_active(pw_webhook *w, bool active)
{
    pthread_mutex_lock(&w->mu);
    bool resuming = active && !w->active;
    if (resuming) {
        size_t added = 0;
        int rc = pw_wh_outbox_load(w->outbox, &added);
        if (rc != 0)
            PW_WARN("webhook: cannot read the outbox from the store on resuming: %s", pw_strerror(rc));
        else if (added)
            PW_INFO("webhook: resuming with %zu deliveries more from the store", added);
        drop_unconfigured(w);
        pw_metric_set(w->m_pending, NULL, (double)pw_wh_outbox_pending(w->outbox));
    }
    w->active = active;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    if (resuming)
        pw_wh_reconcile(w);
}

bool pw_webhook_is_active(pw_webhook *w)
{
    pthread_mutex_lock(&w->mu);
    bool a = w->active;
    pthread_mutex_unlock(&w->mu);
    return a;
}

void pw_webhook_stats(pw_webhook *w, struct pw_webhook_stats *out)
{
    pthread_mutex_lock(&w->mu);
    out->delivered = w->delivered;
    out->failed = w->failed;
    out->expired = w->expired;
    out->attempts = w->attempts;
    out->pending = pw_wh_outbox_pending(w->outbox);
    pthread_mutex_unlock(&w->mu);
}
