/* deliver.c: the webhook service's delivery workers (webhook_int.h): each takes the next due
 * delivery from the outbox, attempts it without the lock (one POST with libcurl, signed with the
 * server's key or the secretRef's Secret, connections to private addresses refused unless allowed),
 * and records what the answer means: delivered, retried later with backoff or after Retry-After, or
 * failed for good; then writes the delivery's state to the store. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "base/b64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/version.h"
#include "k8s/k8s.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

#define SECRET_TTL_MS 30000
#define GC_EVERY_MS 60000

/* ---- secrets ---- */

/* The value of Secret name's data key "secret": 0 and *value and *len (caller frees), or PW_EUNAVAIL and
 * *why (caller frees). Read through a cache of SECRET_TTL_MS. */
static int secret_get(pw_webhook *w, const char *name, char **value, size_t *len, char **why)
{
    int64_t now = pw_clock_mono_ms();
    pthread_mutex_lock(&w->secret_mu);
    for (size_t i = 0; i < w->n_secrets; i++) {
        struct pw_wh_secret *s = &w->secrets[i];
        if (strcmp(s->name, name) != 0 || now - s->read_mono > SECRET_TTL_MS)
            continue;
        int rc = 0;
        if (s->value) {
            *value = pw_xstrndup(s->value, s->len);
            *len = s->len;
        } else {
            *why = pw_xstrdup(s->error);
            rc = PW_EUNAVAIL;
        }
        pthread_mutex_unlock(&w->secret_mu);
        return rc;
    }
    pthread_mutex_unlock(&w->secret_mu);

    char *val = NULL, *err = NULL;
    size_t n = 0;
    if (!w->client) {
        err = pw_xasprintf("secret %s: prewarmd has no Kubernetes client to read it", name);
    } else {
        char *path = pw_xasprintf("/api/v1/namespaces/%s/secrets/%s", w->namespace_, name);
        int status = 0;
        json_t *sec = NULL;
        int rc = pw_k8s_request(w->client, "GET", path, NULL, NULL, &status, &sec);
        free(path);
        const char *b64 = json_string_value(json_object_get(json_object_get(sec, "data"), "secret"));
        void *raw = NULL;
        if (rc != 0)
            err = pw_xasprintf("secret %s/%s: %s", w->namespace_, name, pw_strerror(rc));
        else if (status != 200)
            err = pw_xasprintf("secret %s/%s: %s", w->namespace_, name, status == 404 ? "not found" : "not readable");
        else if (!b64 || pw_b64_decode(b64, strlen(b64), &raw, &n) != 0 || n == 0)
            err = pw_xasprintf("secret %s/%s has no data key \"secret\"", w->namespace_, name);
        else
            val = raw;
        json_decref(sec);
    }
    pthread_mutex_lock(&w->secret_mu);
    struct pw_wh_secret *s = NULL;
    for (size_t i = 0; i < w->n_secrets && !s; i++)
        if (strcmp(w->secrets[i].name, name) == 0)
            s = &w->secrets[i];
    if (!s) {
        w->secrets = pw_xrealloc(w->secrets, (w->n_secrets + 1) * sizeof *w->secrets);
        s = &w->secrets[w->n_secrets++];
        memset(s, 0, sizeof *s);
        s->name = pw_xstrdup(name);
    }
    free(s->value);
    free(s->error);
    s->value = val ? pw_xstrndup(val, n) : NULL;
    s->len = n;
    s->error = err ? pw_xstrdup(err) : NULL;
    s->read_mono = now;
    pthread_mutex_unlock(&w->secret_mu);
    if (!val) {
        *why = err;
        return PW_EUNAVAIL;
    }
    *value = val;
    *len = n;
    return 0;
}

/* ---- one attempt (worker, without the lock) ---- */

struct attempt {
    bool allow_private;
    bool refused;           /* a connection to a private address was refused */
    char refused_addr[64];
    int64_t retry_after_ms; /* -1: none */
    int status;             /* 0: no response */
    char *error;            /* why, when not 2xx */
};

static curl_socket_t open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct attempt *a = arg;
    (void)purpose;
    if (!a->allow_private && pw_wh_addr_private(&addr->addr)) {
        a->refused = true;
        char host[INET6_ADDRSTRLEN] = "?";
        if (addr->family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&addr->addr)->sin_addr, host, sizeof host);
        else if (addr->family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr->addr)->sin6_addr, host, sizeof host);
        snprintf(a->refused_addr, sizeof a->refused_addr, "%s", host);
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    struct attempt *a = arg;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && strncasecmp(buf, name, sizeof name - 1) == 0) {
        char v[128];
        size_t vl = len - (sizeof name - 1);
        if (vl >= sizeof v)
            vl = sizeof v - 1;
        memcpy(v, buf + sizeof name - 1, vl);
        v[vl] = '\0';
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
            v[--vl] = '\0';
        a->retry_after_ms = pw_wh_retry_after_ms(v, pw_clock_real_ms());
    }
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
    (void)buf;
    (void)arg;
    return size * n; /* the receiver's answer is not read */
}

static void attempt_send(const pw_webhook *w, const char *url, const char *body, const char *secret, size_t secret_len,
                         struct attempt *a)
{
    CURL *c = curl_easy_init();
    if (!c) {
        a->error = pw_xstrdup("cannot make a curl handle");
        return;
    }
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/cloudevents+json; charset=utf-8");
    h = curl_slist_append(h, "User-Agent: prewarmd-webhook/" PW_VERSION);
    h = curl_slist_append(h, "Expect:");
    if (secret) {
        char sig[PW_WH_SIG_MAX], line[PW_WH_SIG_MAX + 32];
        pw_wh_sign(secret, secret_len, pw_clock_real_ms() / 1000, body, strlen(body), sig);
        snprintf(line, sizeof line, "Prewarm-Signature: %s", sig);
        h = curl_slist_append(h, line);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* the address checked is the receiver's, never a proxy's */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (a->refused)
        a->error = pw_xasprintf("refused: %s is a loopback, private or link-local address (prewarmd's "
                                "--webhook-allow-private allows it)",
                                a->refused_addr);
    else if (rc != CURLE_OK)
        a->error = pw_xasprintf("%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else if (code < 200 || code >= 300)
        a->error = code >= 300 && code < 400 ? pw_xasprintf("HTTP %ld: a redirect, not followed", code)
                                             : pw_xasprintf("HTTP %ld", code);
    a->status = rc == CURLE_OK ? (int)code : 0;
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static double rnd01(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (uint32_t)pw_clock_mono_ms() * 2654435761u;
    return (double)r / 4294967296.0;
}

static const char *status_class(int status)
{
    static const char *const names[] = {"error", "1xx", "2xx", "3xx", "4xx", "5xx"};
    return status >= 100 && status < 600 ? names[status / 100] : names[0];
}

/* Records the outcome of an attempt on d in memory (w->mu held; the caller writes it to the store). */
static void apply(pw_webhook *w, struct pw_wh_delivery *d, struct attempt *a)
{
    int64_t now = pw_clock_real_ms();
    d->attempts++;
    d->last_ms = now;
    d->last_status = a->status;
    free(d->last_error);
    d->last_error = a->error;
    a->error = NULL;
    w->attempts++;
    const char *cls = status_class(a->status);
    pw_metric_add(w->m_attempts, &cls, 1);
    enum pw_wh_verdict v = a->refused ? PW_WH_PERMANENT : pw_wh_verdict_of(a->status);
    const char *result = NULL;
    if (v == PW_WH_DELIVERED) {
        d->state = PW_WH_DONE;
        d->done_ms = now;
        w->delivered++;
        result = "delivered";
        pw_metric_observe(w->m_latency, NULL, (double)(now - d->event_ms) / 1000.0);
    } else if (v == PW_WH_PERMANENT) {
        d->state = PW_WH_FAILED;
        d->done_ms = now;
        w->failed++;
        result = "failed";
        PW_WARN("webhook: %s of task %s to %s failed for good: %s", d->kind, d->task_id, d->url,
                d->last_error ? d->last_error : "?");
    } else {
        int64_t delay = a->retry_after_ms >= 0 ? a->retry_after_ms
                                               : pw_wh_backoff_ms(d->attempts, w->retry_base_ms, w->retry_max_ms, rnd01());
        if (now + delay > d->event_ms + w->max_age_ms) {
            d->state = PW_WH_FAILED;
            d->done_ms = now;
            w->expired++;
            result = "expired";
            char *why = pw_xasprintf("given up after %d attempts over %llds; last: %s", d->attempts,
                                     (long long)((now - d->event_ms) / 1000), d->last_error ? d->last_error : "?");
            free(d->last_error);
            d->last_error = why;
            PW_WARN("webhook: %s of task %s to %s: %s", d->kind, d->task_id, d->url, why);
        } else {
            d->next_ms = now + delay;
        }
    }
    if (result)
        pw_metric_add(w->m_deliveries, &result, 1);
    if (d->state != PW_WH_PENDING) { /* a finished delivery keeps no body */
        free(d->body);
        d->body = NULL;
    }
    pw_metric_set(w->m_pending, NULL, (double)pw_wh_outbox_pending(w->outbox));
}

void *pw_wh_worker_main(void *arg)
{
    pw_webhook *w = arg;
    int64_t last_gc = 0;
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        if (!w->active) {
            pthread_cond_wait(&w->work, &w->mu);
            continue;
        }
        int64_t now = pw_clock_real_ms();
        if (now - last_gc > GC_EVERY_MS) {
            last_gc = now;
            pw_wh_outbox_gc(w->outbox, now - w->keep_ms, NULL);
        }
        int64_t wait = -1;
        struct pw_wh_delivery *d = pw_wh_outbox_next(w->outbox, now, &wait);
        if (!d) {
            struct timespec ts;
            pw_clock_deadline_ts(wait < 0 || wait > GC_EVERY_MS ? GC_EVERY_MS : wait, &ts);
            pthread_cond_timedwait(&w->work, &w->mu, &ts);
            continue;
        }
        d->busy = true;
        char *url = pw_xstrdup(d->url), *body = pw_xstrdup(d->body);
        char *ref = d->secret_ref ? pw_xstrdup(d->secret_ref) : NULL;
        bool task_scope = d->task_scope;
        pthread_mutex_unlock(&w->mu);

        struct attempt a = {.allow_private = w->allow_private, .retry_after_ms = -1};
        char *secret = NULL;
        size_t secret_len = 0;
        int src = 0;
        if (task_scope && ref) {
            src = secret_get(w, ref, &secret, &secret_len, &a.error);
        } else if (!task_scope && w->secret) {
            secret = pw_xstrndup(w->secret, w->secret_len);
            secret_len = w->secret_len;
        }
        if (src == 0)
            attempt_send(w, url, body, secret, secret_len, &a);
        free(secret);
        free(url);
        free(body);
        free(ref);

        pthread_mutex_lock(&w->mu);
        apply(w, d, &a);
        free(a.error);
        json_t *doc = pw_wh_delivery_doc(d);
        char *key = pw_xstrdup(d->key);
        pthread_cond_broadcast(&w->work); /* the receiver's next delivery may go now */
        pthread_mutex_unlock(&w->mu);
        int rc = pw_wh_outbox_put(w->outbox, key, doc, PW_STORE_REC_UPSERT); /* d stays busy until written */
        if (rc != 0)
            PW_WARN("webhook: cannot write the state of a delivery to the store: %s", pw_strerror(rc));
        json_decref(doc);
        free(key);
        pthread_mutex_lock(&w->mu);
        d->busy = false;
        pthread_cond_broadcast(&w->work);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}
