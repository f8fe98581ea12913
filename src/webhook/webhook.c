/* webhook.c: the webhook service (webhook.h): the consumer thread that turns events into deliveries,
 * the workers that attempt them with libcurl, the Secrets of secretRef, the metrics and the state
 * shown in GET task. One lock (w->mu) guards the outbox; attempts run without it. */
#include "webhook/webhook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "base/b64.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/version.h"
#include "events/events.h"
#include "k8s/k8s.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "webhook/webhook_int.h"

const char *const pw_webhook_event_names[] = {"started", "succeeded", "failed", "cancelled", NULL};

#define MAX_WORKERS 16
#define SECRET_TTL_MS 30000
#define GC_EVERY_MS 60000
#define RECENT 1024 /* (task, event) pairs handled lately: repeated "running" events cost no parse */
#define MARK_KIND "webhook-mark"
#define MARK_KEY "consumer"
#define MARK_EVERY_MS 1000   /* the mark is written at most this often */
#define MARK_SLACK_MS 2000   /* tasks ended this long before the mark are looked at again */
#define RECONCILE_MAX 2000   /* finished tasks of each status read when catching up */

struct secret_entry {
    char *name;
    char *value; /* NULL: could not be read (why in error) */
    size_t len;
    char *error;
    int64_t read_mono;
};

struct pw_webhook {
    pw_events_sub *sub; /* the stream cursor, made before the consumer thread starts and then its own */
    pw_events *events;
    pw_store *store;
    pw_k8s_client *client;
    char *namespace_, *source, *secret;
    size_t secret_len;
    char **urls;
    size_t n_urls;
    bool allow_private;
    int64_t timeout_ms, retry_base_ms, retry_max_ms, max_age_ms, keep_ms;

    pthread_mutex_t mu;
    pthread_cond_t work; /* a delivery added or finished, active changed, stopping */
    pw_wh_outbox *outbox;
    bool active, stopping;
    bool consumer_done; /* the consumer thread ended (the marker writes once more, then ends) */
    int64_t handled_ms; /* the time of the last event turned into deliveries (the mark to write) */
    char *recent[RECENT];
    size_t recent_next;
    uint64_t delivered, failed, expired, attempts;

    pthread_mutex_t secret_mu;
    struct secret_entry *secrets;
    size_t n_secrets;

    pthread_t consumer, marker;
    pthread_t workers[MAX_WORKERS];
    int n_workers;

    pw_metric *m_deliveries, *m_attempts, *m_pending, *m_latency;
};

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

/* ---- making deliveries (consumer thread) ---- */

static const char *kind_of(const char *status)
{
    if (strcmp(status, "running") == 0)
        return "started";
    if (pw_store_status_final(status))
        return status;
    return NULL;
}

/* True when (task, kind) was handled lately; else remembers it (w->mu held). */
static bool recent_seen(pw_webhook *w, const char *task, const char *kind)
{
    char *k = pw_xasprintf("%s/%s", task, kind);
    for (size_t i = 0; i < RECENT; i++)
        if (w->recent[i] && strcmp(w->recent[i], k) == 0) {
            free(k);
            return true;
        }
    free(w->recent[w->recent_next]);
    w->recent[w->recent_next] = k;
    w->recent_next = (w->recent_next + 1) % RECENT;
    return false;
}

/* What a delivery is about: an event of the stream, or a task end found in the store after a restart. */
struct occurrence {
    uint64_t id;
    const char *task;
    int64_t time_ms;
    const char *kind;
};

static char *cloudevent(const pw_webhook *w, const struct occurrence *o, json_t *task)
{
    char id[24], type[48], t[PW_RFC3339_LEN];
    snprintf(id, sizeof id, "%llu", (unsigned long long)o->id);
    snprintf(type, sizeof type, "io.prewarm.task.%s", o->kind);
    pw_time_rfc3339_micro(o->time_ms, t);
    json_t *ce = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O}", "specversion", "1.0", "id", id, "source",
                           w->source, "type", type, "subject", o->task, "time", t, "datacontenttype",
                           "application/json", "data", task);
    char *body = json_dumps(ce, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(ce);
    return body;
}

static bool wants(const json_t *hook, const char *kind)
{
    const json_t *evs = json_object_get(hook, "events");
    if (!json_is_array(evs))
        return true;
    size_t i;
    const json_t *v;
    json_array_foreach(evs, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), kind) == 0)
            return true;
    }
    return false;
}

/* The delivery of o to one target, or NULL when it was made already (before a restart: the engine
 * publishes a resumed task again). w->mu held. */
static struct pw_wh_delivery *make_delivery(pw_webhook *w, const struct occurrence *o, bool task_scope, int index,
                                            const char *url, const char *secret_ref, const char *body)
{
    if (pw_wh_outbox_has(w->outbox, o->task, o->kind, task_scope, index))
        return NULL;
    struct pw_wh_delivery *d = pw_xcalloc(1, sizeof *d);
    char key[PW_WH_KEY_MAX];
    pw_wh_key(o->id, task_scope, index, key);
    d->key = pw_xstrdup(key);
    d->id = pw_xasprintf("%llu", (unsigned long long)o->id);
    d->task_id = pw_xstrdup(o->task);
    d->kind = pw_xstrdup(o->kind);
    d->url = pw_xstrdup(url);
    d->task_scope = task_scope;
    d->index = index;
    d->secret_ref = secret_ref ? pw_xstrdup(secret_ref) : NULL;
    d->body = pw_xstrdup(body);
    d->event_ms = o->time_ms;
    d->next_ms = d->event_ms;
    d->state = PW_WH_PENDING;
    return d;
}

/* Makes the deliveries of o (task: the task as GET shows it) that do not exist yet, each written to the
 * store before it can be attempted. How many were made. */
static size_t enqueue(pw_webhook *w, const struct occurrence *o, json_t *task)
{
    const json_t *hooks = json_object_get(task, "webhooks");
    if (w->n_urls == 0 && json_array_size(hooks) == 0)
        return 0;
    char *body = cloudevent(w, o, task);
    if (!body)
        return 0;
    struct pw_wh_delivery *made[PW_WEBHOOK_MAX_URLS + PW_WEBHOOK_MAX_PER_TASK];
    size_t n = 0, added = 0;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_urls; i++)
        made[n++] = make_delivery(w, o, false, (int)i, w->urls[i], NULL, body);
    size_t i;
    const json_t *h;
    json_array_foreach(hooks, i, h) {
        const char *url = json_string_value(json_object_get(h, "url"));
        if (url && wants(h, o->kind) && i < PW_WEBHOOK_MAX_PER_TASK)
            made[n++] = make_delivery(w, o, true, (int)i, url, json_string_value(json_object_get(h, "secretRef")), body);
    }
    pthread_mutex_unlock(&w->mu);
    /* durable before anyone may attempt it; written without the lock, so attempts go on meanwhile */
    for (size_t k = 0; k < n; k++) {
        if (!made[k])
            continue;
        json_t *doc = pw_wh_delivery_doc(made[k]);
        int rc = pw_wh_outbox_put(w->outbox, made[k]->key, doc, PW_STORE_REC_CREATE);
        json_decref(doc);
        if (rc != 0) {
            PW_ERROR("webhook: cannot keep the %s delivery of task %s to %s in the store (%s): it is not sent",
                     o->kind, made[k]->task_id, made[k]->url, pw_strerror(rc));
            pw_wh_delivery_free(made[k]);
            made[k] = NULL;
        }
    }
    pthread_mutex_lock(&w->mu);
    for (size_t k = 0; k < n; k++) {
        if (made[k] && pw_wh_outbox_insert(w->outbox, made[k]) != 0) /* read back by set_active meanwhile */
            pw_wh_delivery_free(made[k]);
        else if (made[k])
            added++;
    }
    pw_metric_set(w->m_pending, NULL, (double)pw_wh_outbox_pending(w->outbox));
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    free(body);
    return added;
}

static void handle_event(pw_webhook *w, const pw_event *e)
{
    if (pw_event_type_of(e) != PW_EVENT_TASK)
        return;
    const char *kind = kind_of(pw_event_status(e));
    if (!kind)
        return;
    pthread_mutex_lock(&w->mu);
    bool skip = !w->active || recent_seen(w, pw_event_task(e), kind);
    pthread_mutex_unlock(&w->mu);
    if (skip)
        return;
    json_t *task = json_loads(pw_event_data(e, NULL), 0, NULL);
    if (!task)
        return;
    struct occurrence o = {pw_event_id(e), pw_event_task(e), pw_event_time_ms(e), kind};
    enqueue(w, &o, task);
    json_decref(task);
}

/* ---- the mark: every event published before it was turned into deliveries ---- */

static void mark_write(pw_webhook *w, int64_t event_ms)
{
    if (!w->store)
        return;
    json_t *doc = json_pack("{s:I}", "eventTime", (json_int_t)event_ms);
    int rc = pw_store_rec_put(w->store, MARK_KIND, MARK_KEY, doc, PW_STORE_REC_UPSERT);
    json_decref(doc);
    if (rc != 0)
        PW_WARN("webhook: cannot write the consumer's mark to the store: %s", pw_strerror(rc));
}

/* After a restart (or on becoming leader): the tasks that ended after the mark (the last event known
 * turned into deliveries, less MARK_SLACK_MS) get the end deliveries they miss: an event published
 * just before a crash, not yet in the outbox, is not lost. Without a mark (the first start) there is
 * nothing to catch up. Reads at most RECONCILE_MAX tasks of each final status, newest first. */
static void reconcile(pw_webhook *w)
{
    if (!w->store)
        return;
    json_t *mark = NULL;
    int rc = pw_store_rec_get(w->store, MARK_KIND, MARK_KEY, &mark);
    if (rc == PW_ENOTFOUND) {
        mark_write(w, pw_clock_real_ms());
        return;
    }
    if (rc != 0) {
        PW_WARN("webhook: cannot read the consumer's mark: %s; no catching up", pw_strerror(rc));
        return;
    }
    int64_t since = (int64_t)json_integer_value(json_object_get(mark, "eventTime")) - MARK_SLACK_MS;
    json_decref(mark);
    size_t made = 0;
    for (int s = PW_TASK_SUCCEEDED; s <= PW_TASK_CANCELLED; s++) {
        char *cont = NULL;
        size_t seen = 0;
        do {
            struct pw_store_task *items = NULL;
            size_t n = 0;
            char *next = NULL;
            rc = pw_store_task_list(w->store, pw_task_status_names[s], 200, cont, &items, &n, &next);
            free(cont);
            cont = next;
            for (size_t i = 0; rc == 0 && i < n; i++) {
                if (items[i].finished_ms <= since)
                    continue;
                /* an id of its own, in the same microsecond scale as the stream's */
                struct occurrence o = {(uint64_t)items[i].finished_ms * 1000u + (uint64_t)s, items[i].id,
                                       items[i].finished_ms, pw_task_status_names[s]};
                made += enqueue(w, &o, items[i].doc);
            }
            pw_store_tasks_free(items, n);
            seen += n;
        } while (rc == 0 && cont && seen < RECONCILE_MAX);
        free(cont);
    }
    if (made)
        PW_INFO("webhook: %zu deliveries made for tasks that ended while prewarmd was stopping", made);
}

/* Writes the mark when it advanced, at most every MARK_EVERY_MS, on a thread of its own: a store
 * write waiting behind the engine's would otherwise hold up the making of deliveries. */
static void *marker_main(void *arg)
{
    pw_webhook *w = arg;
    int64_t written = 0, written_mono = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        /* woken by every broadcast on w->work: written at most every MARK_EVERY_MS, and at the end */
        bool stop = w->stopping && w->consumer_done;
        int64_t handled = w->active ? w->handled_ms : 0;
        if (handled > written && (stop || pw_clock_mono_ms() - written_mono >= MARK_EVERY_MS)) {
            pthread_mutex_unlock(&w->mu);
            mark_write(w, handled);
            written = handled;
            written_mono = pw_clock_mono_ms();
            pthread_mutex_lock(&w->mu);
        }
        if (stop)
            break;
        struct timespec ts;
        pw_clock_deadline_ts(MARK_EVERY_MS, &ts);
        pthread_cond_timedwait(&w->work, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void *consumer_main(void *arg)
{
    pw_webhook *w = arg;
    pw_events_sub *sub = w->sub; /* made by pw_webhook_new: no event published after it returns is missed */
    w->sub = NULL;
    const pw_event *batch[64];
    for (;;) {
        pthread_mutex_lock(&w->mu);
        bool stop = w->stopping;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;
        pw_events_wait(w->events, pw_events_sub_cursor(sub), 200);
        size_t n = 0;
        if (pw_events_sub_read(sub, batch, 64, &n) == PW_EGONE) {
            PW_WARN("webhook: fell behind the event stream; catching up from the store's tasks");
            pw_events_sub_free(sub);
            sub = pw_events_sub_new(w->events, NULL, 0, NULL);
            reconcile(w);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            handle_event(w, batch[i]);
        if (n) {
            pthread_mutex_lock(&w->mu);
            if (w->active) /* every event up to the batch's last was turned into deliveries */
                w->handled_ms = pw_event_time_ms(batch[n - 1]);
            pthread_mutex_unlock(&w->mu);
        }
        for (size_t i = 0; i < n; i++)
            pw_event_release(batch[i]);
    }
    pw_events_sub_free(sub);
    pthread_mutex_lock(&w->mu);
    w->consumer_done = true;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- secrets ---- */

/* The value of Secret name's data key "secret": 0 and *value and *len (caller frees), or PW_EUNAVAIL and
 * *why (caller frees). Read through a cache of SECRET_TTL_MS. */
static int secret_get(pw_webhook *w, const char *name, char **value, size_t *len, char **why)
{
    int64_t now = pw_clock_mono_ms();
    pthread_mutex_lock(&w->secret_mu);
    for (size_t i = 0; i < w->n_secrets; i++) {
        struct secret_entry *s = &w->secrets[i];
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
    struct secret_entry *s = NULL;
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

static void *worker_main(void *arg)
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
    for (size_t i = 0; i < RECENT; i++)
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
    char *buf = pw_xmalloc(4097);
    size_t n = fread(buf, 1, 4097, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 4096) {
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
        reconcile(w);
    size_t pending = pw_wh_outbox_pending(w->outbox);
    int n = cfg->workers > 0 ? cfg->workers : 4;
    if (n > MAX_WORKERS)
        n = MAX_WORKERS;
    if (pthread_create(&w->marker, NULL, marker_main, w) != 0) {
        free_fields(w);
        *errmsg = pw_xstrdup("cannot start the webhook thread");
        return PW_ENOMEM;
    }
    w->sub = pw_events_sub_new(w->events, NULL, 0, NULL);
    if (pthread_create(&w->consumer, NULL, consumer_main, w) != 0) {
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
        if (pthread_create(&w->workers[i], NULL, worker_main, w) != 0)
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
        reconcile(w);
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

/* ---- GET task ---- */

static void time_json(json_t *o, const char *k, int64_t ms)
{
    if (ms <= 0) {
        json_object_set_new(o, k, json_null());
        return;
    }
    char t[PW_RFC3339_LEN];
    pw_time_rfc3339_micro(ms, t);
    json_object_set_new(o, k, json_string(t));
}

struct annotate {
    json_t *targets[PW_WEBHOOK_MAX_PER_TASK + PW_WEBHOOK_MAX_URLS];
    size_t n_task;
    int64_t last_ms[PW_WEBHOOK_MAX_PER_TASK + PW_WEBHOOK_MAX_URLS];
};

static void target_init(json_t *o)
{
    json_object_set_new(o, "delivered", json_integer(0));
    json_object_set_new(o, "pending", json_integer(0));
    json_object_set_new(o, "failed", json_integer(0));
    json_object_set_new(o, "attempts", json_integer(0));
    json_object_set_new(o, "lastStatus", json_null());
    json_object_set_new(o, "lastError", json_null());
    json_object_set_new(o, "lastAttemptAt", json_null());
    json_object_set_new(o, "nextAttemptAt", json_null());
    json_object_set_new(o, "deliveries", json_array());
}

static void bump(json_t *o, const char *k, json_int_t by)
{
    json_object_set_new(o, k, json_integer(json_integer_value(json_object_get(o, k)) + by));
}

static void annotate_one(void *arg, const struct pw_wh_delivery *d)
{
    struct annotate *an = arg;
    size_t slot = d->task_scope ? (size_t)d->index : an->n_task + (size_t)d->index;
    if ((d->task_scope && (size_t)d->index >= an->n_task) || slot >= sizeof an->targets / sizeof an->targets[0] ||
        !an->targets[slot])
        return;
    json_t *o = an->targets[slot];
    static const char *const state_names[] = {"pending", "delivered", "failed"};
    bump(o, state_names[d->state], 1);
    bump(o, "attempts", d->attempts);
    if (d->last_ms > an->last_ms[slot]) {
        an->last_ms[slot] = d->last_ms;
        json_object_set_new(o, "lastStatus", d->last_status ? json_integer(d->last_status) : json_null());
        json_object_set_new(o, "lastError", d->last_error ? json_string(d->last_error) : json_null());
        time_json(o, "lastAttemptAt", d->last_ms);
    }
    if (d->state == PW_WH_PENDING && json_is_null(json_object_get(o, "nextAttemptAt")))
        time_json(o, "nextAttemptAt", d->next_ms);
    json_t *one = json_pack("{s:s, s:s, s:s, s:i}", "event", d->kind, "id", d->id, "state", state_names[d->state],
                            "attempts", d->attempts);
    json_object_set_new(one, "lastStatus", d->last_status ? json_integer(d->last_status) : json_null());
    json_object_set_new(one, "lastError", d->last_error ? json_string(d->last_error) : json_null());
    time_json(one, "nextAttemptAt", d->state == PW_WH_PENDING ? d->next_ms : 0);
    json_array_append_new(json_object_get(o, "deliveries"), one);
}

void pw_webhook_annotate(pw_webhook *w, json_t *task)
{
    const char *id = json_string_value(json_object_get(task, "id"));
    if (!w || !id)
        return;
    const json_t *spec = json_object_get(task, "webhooks");
    struct annotate an = {0};
    json_t *out = json_array();
    size_t i;
    const json_t *h;
    json_array_foreach(spec, i, h) {
        if (i >= PW_WEBHOOK_MAX_PER_TASK)
            break;
        json_t *o = json_deep_copy(h);
        json_object_set_new(o, "scope", json_string("task"));
        target_init(o);
        an.targets[an.n_task++] = o;
    }
    for (size_t k = 0; k < w->n_urls; k++) {
        json_t *o = json_pack("{s:s, s:s}", "url", w->urls[k], "scope", "server");
        target_init(o);
        an.targets[an.n_task + k] = o;
    }
    pthread_mutex_lock(&w->mu);
    pw_wh_outbox_each(w->outbox, id, annotate_one, &an);
    pthread_mutex_unlock(&w->mu);
    for (size_t k = 0; k < an.n_task + w->n_urls; k++)
        json_array_append_new(out, an.targets[k]);
    if (json_array_size(out))
        json_object_set_new(task, "webhooks", out);
    else
        json_decref(out);
}
