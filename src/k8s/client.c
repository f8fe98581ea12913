/* client.c: REST calls to the API server over libcurl.
 *
 * One curl easy handle per thread (a pthread key; the handle keeps its connections alive between
 * calls and speaks HTTP/2 when the server offers it), TLS from the configuration (CA, client
 * certificate and key as in-memory PEM blobs, or insecure-skip-tls-verify), the bearer token of the
 * moment (rotating files and exec plugins go through auth.c), a token-bucket rate limiter shared by the
 * threads, and retries with exponential backoff and jitter on 429 (honouring Retry-After), 500, 502,
 * 503, 504 and connection errors. A request that may have reached the server (a send or receive error
 * after connecting) is retried only when the method is idempotent (GET, PUT, DELETE); a POST or PATCH is
 * retried only when it surely was not applied (connection refused, or the server said 429/5xx).
 *
 * Thread model: pw_k8s_request may be called from any thread; the per-thread handle lives until the
 * thread exits or the client is freed. Threads that used the client must not be exiting while
 * pw_k8s_client_free runs. */
#include "k8s/k8s_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/version.h"
#include "metrics/metrics.h"

enum {
    RESP_MAX = 64 << 20,   /* the largest response body we accept (a list page of big objects) */
    ERRBODY_MAX = 1 << 20, /* a watch's non-2xx body */
    BACKOFF_BASE_MS = 200,
    BACKOFF_CAP_MS = 10000,
    RETRY_AFTER_CAP_S = 60,
    CONNECT_TIMEOUT_MS = 10000,
};

/* Counter slots, in the order of struct pw_k8s_counts. */
enum { C_GET, C_LIST, C_WATCH, C_CREATE, C_UPDATE, C_PATCH, C_DEL, C_RETRIES, C_ERRORS, C_N };

struct handle {
    CURL *curl;
    pw_k8s_client *c;
    bool busy; /* a transfer runs on it (a call from inside a watch callback must not reuse it) */
    struct handle *prev, *next;
};

struct pw_k8s_client {
    const pw_k8s_config *cfg; /* borrowed */
    int max_retries;
    int timeout_ms;
    size_t max_body; /* response body cap (RESP_MAX; tests lower it) */
    char *user_agent;
    char *base_url; /* server, or with tls-server-name as host (connect_to maps it back) */
    struct curl_slist *connect_to;
    pthread_key_t key;
    pthread_mutex_t mu; /* guards handles */
    struct handle *handles;
    struct pw_k8s_ratelimit rl;
    _Atomic uint64_t counts[C_N];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- verbs ---- */

struct verb_row {
    const char *method;
    const char *verb;
    int slot;
};
static const struct verb_row verb_table[] = {
    {"POST", "create", C_CREATE},
    {"PUT", "update", C_UPDATE},
    {"PATCH", "patch", C_PATCH},
    {"DELETE", "delete", C_DEL},
    {NULL, NULL, 0},
};

/* True when the query string has watch=<true> (or the legacy /watch/ path). */
static bool is_watch(const char *path)
{
    const char *q = strchr(path, '?');
    if (strstr(path, "/watch/") && (!q || strstr(path, "/watch/") < q))
        return true;
    for (const char *p = q; p && *p; p = strchr(p + 1, '&')) {
        const char *k = p + 1;
        if (strncmp(k, "watch=", 6) == 0) {
            const char *v = k + 6;
            return strncmp(v, "1", 1) == 0 || strncasecmp(v, "true", 4) == 0 || strncmp(v, "t", 1) == 0 ||
                   strncmp(v, "T", 1) == 0;
        }
    }
    return false;
}

/* The segments of path before its query (at most max): segs[i] (borrowed, not terminated), lens[i].
 * Returns how many. */
static size_t path_segments(const char *path, const char **segs, size_t *lens, size_t max)
{
    size_t n = 0;
    const char *end = path + strcspn(path, "?");
    for (const char *p = path; p < end && n < max;) {
        while (p < end && *p == '/')
            p++;
        if (p >= end)
            break;
        const char *s = p;
        while (p < end && *p != '/')
            p++;
        segs[n] = s;
        lens[n++] = (size_t)(p - s);
    }
    return n;
}

/* True when path names a collection: /api/v1/<res>, /apis/<g>/<v>/<res>, .../namespaces/<ns>/<res>. */
static bool is_collection(const char *path)
{
    const char *segs[16];
    size_t lens[16];
    size_t n = path_segments(path, segs, lens, 16);
    size_t i;
    if (n >= 1 && lens[0] == 3 && strncmp(segs[0], "api", 3) == 0)
        i = 2;
    else if (n >= 1 && lens[0] == 4 && strncmp(segs[0], "apis", 4) == 0)
        i = 3;
    else
        return false;
    if (n > i + 2 && lens[i] == 10 && strncmp(segs[i], "namespaces", 10) == 0)
        i += 2;
    return n == i + 1;
}

static int verb_slot(const char *method, const char *path)
{
    for (const struct verb_row *r = verb_table; r->method; r++)
        if (strcmp(method, r->method) == 0)
            return r->slot;
    if (is_watch(path))
        return C_WATCH;
    return is_collection(path) ? C_LIST : C_GET;
}

const char *pw_k8s_verb(const char *method, const char *path)
{
    static const char *const names[] = {"get", "list", "watch", "create", "update", "patch", "delete"};
    return names[verb_slot(method, path)];
}

const char *pw_k8s_resource(const char *path, char *buf, size_t n)
{
    const char *segs[8];
    size_t lens[8];
    size_t k = path_segments(path, segs, lens, 8);
    size_t i = k >= 1 && lens[0] == 3 && strncmp(segs[0], "api", 3) == 0    ? 2
               : k >= 1 && lens[0] == 4 && strncmp(segs[0], "apis", 4) == 0 ? 3
                                                                           : k;
    if (i < k && lens[i] == 5 && strncmp(segs[i], "watch", 5) == 0)
        i++; /* the legacy /watch/ form */
    if (i + 2 < k && lens[i] == 10 && strncmp(segs[i], "namespaces", 10) == 0)
        i += 2;
    snprintf(buf, n, "other");
    if (i >= k || lens[i] >= n)
        return buf;
    for (size_t j = 0; j < lens[i]; j++) {
        char ch = segs[i][j];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.'))
            return buf;
    }
    memcpy(buf, segs[i], lens[i]);
    buf[lens[i]] = '\0';
    return buf;
}

static pw_metric *k8s_m_requests, *k8s_m_duration;

static void k8s_metrics_init(void)
{
    pw_metrics *r = pw_metrics_default();
    k8s_m_requests = pw_metrics_counter(r, "prewarm_kube_requests_total",
                                        "Kubernetes API requests (each attempt), by verb, resource and status code "
                                        "(\"error\": no answer).",
                                        "verb,resource,code");
    k8s_m_duration = pw_metrics_histogram(r, "prewarm_kube_request_duration_seconds",
                                          "Kubernetes API request latency (each attempt; watches excluded), by verb "
                                          "and resource.",
                                          "verb,resource", pw_metrics_latency_buckets, pw_metrics_n_latency_buckets);
}

/* One attempt in prewarm_kube_*: code 0 is "error" (no HTTP answer). */
static void k8s_count(const char *method, const char *path, long code, int64_t start_ms)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, k8s_metrics_init);
    const char *verb = pw_k8s_verb(method, path);
    char res[64], cs[24];
    pw_k8s_resource(path, res, sizeof res);
    if (code > 0)
        snprintf(cs, sizeof cs, "%ld", code);
    else
        snprintf(cs, sizeof cs, "error");
    pw_metric_add(k8s_m_requests, (const char *[]){verb, res, cs}, 1);
    if (strcmp(verb, "watch") != 0)
        pw_metric_observe(k8s_m_duration, (const char *[]){verb, res}, (double)(pw_clock_mono_ms() - start_ms) / 1000.0);
}

void pw_k8s_client_counts(pw_k8s_client *c, struct pw_k8s_counts *out)
{
    out->get = c->counts[C_GET];
    out->list = c->counts[C_LIST];
    out->watch = c->counts[C_WATCH];
    out->create = c->counts[C_CREATE];
    out->update = c->counts[C_UPDATE];
    out->patch = c->counts[C_PATCH];
    out->del = c->counts[C_DEL];
    out->retries = c->counts[C_RETRIES];
    out->errors = c->counts[C_ERRORS];
}

/* ---- handles ---- */

static void handle_destroy(void *p)
{
    struct handle *h = p;
    pw_k8s_client *c = h->c;
    pthread_mutex_lock(&c->mu);
    if (h->prev)
        h->prev->next = h->next;
    else
        c->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&c->mu);
    curl_easy_cleanup(h->curl);
    free(h);
}

/* The calling thread's new handle, registered with c; NULL when curl cannot make one (out of memory). */
static struct handle *thread_handle_new(pw_k8s_client *c)
{
    CURL *curl = curl_easy_init();
    if (!curl)
        return NULL;
    struct handle *h = pw_xcalloc(1, sizeof *h);
    h->curl = curl;
    h->c = c;
    pthread_mutex_lock(&c->mu);
    h->next = c->handles;
    if (c->handles)
        c->handles->prev = h;
    c->handles = h;
    pthread_mutex_unlock(&c->mu);
    pthread_setspecific(c->key, h);
    return h;
}

/* The calling thread's handle, marked busy; give it back with handle_release. A call made while the
 * thread's handle is busy (an informer callback running inside a watch transfer calls the API) gets a
 * handle of its own for that call. NULL when curl cannot make a handle (out of memory). */
static struct handle *handle_acquire(pw_k8s_client *c)
{
    struct handle *h = pthread_getspecific(c->key);
    if (h && h->busy) {
        CURL *curl = curl_easy_init();
        if (!curl)
            return NULL;
        struct handle *tmp = pw_xcalloc(1, sizeof *tmp);
        tmp->curl = curl;
        tmp->busy = true;
        return tmp; /* c == NULL marks it temporary */
    }
    if (!h)
        h = thread_handle_new(c);
    if (!h)
        return NULL;
    h->busy = true;
    return h;
}

static void handle_release(struct handle *h)
{
    if (!h->c) {
        curl_easy_cleanup(h->curl);
        free(h);
        return;
    }
    h->busy = false;
}

/* ---- life cycle ---- */

/* Splits "https://host:port/prefix" into its parts; host keeps IPv6 brackets. */
static void split_url(const char *url, char **scheme, char **host, char **port, char **rest)
{
    const char *p = strstr(url, "://");
    const char *h = p ? p + 3 : url;
    *scheme = p ? pw_xstrndup(url, (size_t)(p - url)) : pw_xstrdup("https");
    const char *slash = strchr(h, '/');
    const char *hend = slash ? slash : h + strlen(h);
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(hend - h));
        colon = rb && rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(hend - h));
    }
    *host = pw_xstrndup(h, (size_t)((colon ? colon : hend) - h));
    *port = colon ? pw_xstrndup(colon + 1, (size_t)(hend - colon - 1))
                  : pw_xstrdup(strcmp(*scheme, "http") == 0 ? "80" : "443");
    *rest = pw_xstrdup(slash ? slash : "");
}

int pw_k8s_client_new(const pw_k8s_config *cfg, const struct pw_k8s_client_opts *opts, pw_k8s_client **out)
{
    if (!cfg || !cfg->server)
        return PW_EINVAL;
    pthread_once(&curl_once, curl_init_once);
    pw_k8s_client *c = pw_xcalloc(1, sizeof *c);
    if (pthread_key_create(&c->key, handle_destroy) != 0) {
        free(c);
        return PW_ENOMEM;
    }
    c->cfg = cfg;
    struct pw_k8s_client_opts o = {0};
    if (opts)
        o = *opts;
    c->max_retries = o.max_retries == 0 ? 5 : o.max_retries < 0 ? 0 : o.max_retries;
    c->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : 30000;
    c->max_body = RESP_MAX;
    c->user_agent = o.user_agent ? pw_xstrdup(o.user_agent) : pw_xstrdup("prewarm/" PW_VERSION);
    pthread_mutex_init(&c->mu, NULL);
    pw_k8s_rl_init(&c->rl, o.qps, o.burst, pw_clock_mono_ms());
    if (cfg->tls_server_name) {
        /* curl sends SNI and checks the certificate against the URL's host, so the URL carries the
         * TLS server name and CONNECT_TO sends the connection to the real address. */
        char *scheme, *host, *port, *rest;
        split_url(cfg->server, &scheme, &host, &port, &rest);
        c->base_url = pw_xasprintf("%s://%s:%s%s", scheme, cfg->tls_server_name, port, rest);
        char *ct = pw_xasprintf("%s:%s:%s:%s", cfg->tls_server_name, port, host, port);
        c->connect_to = curl_slist_append(NULL, ct);
        free(ct);
        free(scheme);
        free(host);
        free(port);
        free(rest);
        if (!c->connect_to) {
            pw_k8s_client_free(c);
            return PW_ENOMEM;
        }
    } else {
        c->base_url = pw_xstrdup(cfg->server);
    }
    *out = c;
    return 0;
}

void pw_k8s_client_set_max_body(pw_k8s_client *c, size_t max)
{
    c->max_body = max;
}

void pw_k8s_client_free(pw_k8s_client *c)
{
    if (!c)
        return;
    /* this thread's handle is in the list like the others; deleting the key first means no thread
     * exit runs handle_destroy for this client any more */
    pthread_key_delete(c->key);
    pthread_mutex_lock(&c->mu);
    struct handle *h = c->handles;
    c->handles = NULL;
    pthread_mutex_unlock(&c->mu);
    while (h) {
        struct handle *next = h->next;
        curl_easy_cleanup(h->curl);
        free(h);
        h = next;
    }
    curl_slist_free_all(c->connect_to);
    pw_k8s_rl_fini(&c->rl);
    pthread_mutex_destroy(&c->mu);
    free(c->user_agent);
    free(c->base_url);
    free(c);
}

/* ---- one transfer ---- */

struct xfer {
    CURL *curl;
    pw_buf body;                        /* whole responses, and a watch's error body */
    struct pw_k8s_watch_parser *parser; /* a watch: 2xx bodies stream here */
    const atomic_bool *stop;
    long retry_after_s; /* -1: none */
    bool too_large;
    bool parse_failed;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    if (x->parser) {
        long code = 0;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200 && code < 300) {
            int rc = pw_k8s_watch_parser_feed(x->parser, data, n);
            if (rc < 0)
                x->parse_failed = true;
            return rc == 0 ? n : 0;
        }
    }
    if (pw_buf_append(&x->body, data, n) != 0) {
        x->too_large = true;
        return 0;
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char tmp[32];
        size_t vl = n - (sizeof name - 1);
        if (vl >= sizeof tmp)
            vl = sizeof tmp - 1;
        memcpy(tmp, data + sizeof name - 1, vl);
        tmp[vl] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        if (end != tmp && v >= 0)
            x->retry_after_s = v > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : v;
    }
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    struct xfer *x = arg;
    return x->stop && atomic_load(x->stop) ? 1 : 0;
}

/* Appends line to *l; false (and *l freed and NULL) when curl is out of memory, since a NULL from
 * curl_slist_append would otherwise silently drop every header before it, Authorization included. */
static bool hdr_add(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);
    if (!n) {
        curl_slist_free_all(*l);
        *l = NULL;
        return false;
    }
    *l = n;
    return true;
}

/* Sets every option of one request on the thread's handle. On success returns 0 and *hdr_out is the
 * header list for the caller to free after the transfer; PW_ENOMEM when the list cannot be built. */
static int setup(pw_k8s_client *c, struct xfer *x, const char *method, const char *path, const char *body,
                 size_t body_len, const char *content_type, const struct pw_k8s_cred *cr, int timeout_ms,
                 struct curl_slist **hdr_out)
{
    const pw_k8s_config *cfg = c->cfg;
    CURL *h = x->curl;
    curl_easy_reset(h);
    char *url = pw_xasprintf("%s%s", c->base_url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    if (timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->connect_to)
        curl_easy_setopt(h, CURLOPT_CONNECT_TO, c->connect_to);
    if (cfg->proxy_url)
        curl_easy_setopt(h, CURLOPT_PROXY, cfg->proxy_url);
    if (cfg->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (cfg->ca_pem) {
        struct curl_blob ca = {.data = cfg->ca_pem, .len = cfg->ca_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (cr->cert_pem && cr->key_pem) {
        struct curl_blob cert = {.data = cr->cert_pem, .len = cr->cert_len, .flags = CURL_BLOB_COPY};
        struct curl_blob key = {.data = cr->key_pem, .len = cr->key_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (cfg->username && !cr->token) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, cfg->username);
        curl_easy_setopt(h, CURLOPT_PASSWORD, cfg->password);
    }
    struct curl_slist *hdr = NULL;
    bool ok = hdr_add(&hdr, "Accept: application/json") && hdr_add(&hdr, "Expect:");
    if (ok && cr->token) {
        char *a = pw_xasprintf("Authorization: Bearer %s", cr->token);
        ok = hdr_add(&hdr, a);
        memset(a, 0, strlen(a));
        free(a);
    }
    if (ok && body) {
        char *ct = pw_xasprintf("Content-Type: %s", content_type ? content_type : "application/json");
        ok = hdr_add(&hdr, ct);
        free(ct);
    }
    if (!ok)
        return PW_ENOMEM;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    if (strcmp(method, "GET") != 0) {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "POST") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
        }
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    *hdr_out = hdr;
    return 0;
}

/* Sleeps ms, waking early when stop is raised; PW_ECANCELED then. */
static int nap(int64_t ms, const atomic_bool *stop)
{
    int64_t end = pw_clock_mono_ms() + ms;
    for (;;) {
        if (stop && atomic_load(stop))
            return PW_ECANCELED;
        int64_t left = end - pw_clock_mono_ms();
        if (left <= 0)
            return 0;
        pw_clock_sleep_ms(left > 100 ? 100 : left);
    }
}

static int rate_wait(pw_k8s_client *c, const atomic_bool *stop)
{
    int64_t wait = pw_k8s_rl_reserve(&c->rl, pw_clock_mono_ms());
    return wait > 0 ? nap(wait, stop) : 0;
}

/* Exponential backoff with jitter: attempt 0 -> 100..200 ms, doubling to the cap. */
static int64_t backoff_ms(int attempt)
{
    int64_t base = BACKOFF_BASE_MS;
    for (int i = 0; i < attempt && base < BACKOFF_CAP_MS; i++)
        base *= 2;
    if (base > BACKOFF_CAP_MS)
        base = BACKOFF_CAP_MS;
    return base / 2 + (int64_t)((double)(base / 2) * ((double)random() / (double)RAND_MAX));
}

struct curl_class {
    CURLcode code;
    bool before_send; /* the request surely did not reach the server */
    bool retry;       /* worth retrying at all */
};
static const struct curl_class curl_classes[] = {
    {CURLE_COULDNT_CONNECT, true, true},
    {CURLE_COULDNT_RESOLVE_HOST, true, true},
    {CURLE_COULDNT_RESOLVE_PROXY, true, true},
    {CURLE_SEND_ERROR, false, true},
    {CURLE_RECV_ERROR, false, true},
    {CURLE_GOT_NOTHING, false, true},
    {CURLE_PARTIAL_FILE, false, true},
    {CURLE_OPERATION_TIMEDOUT, false, true},
    {CURLE_HTTP2, false, true},
    {CURLE_HTTP2_STREAM, false, true},
    {CURLE_SSL_CONNECT_ERROR, true, true},
    {CURLE_OK, false, false},
};

static const struct curl_class *classify(CURLcode code)
{
    for (const struct curl_class *k = curl_classes; k->code != CURLE_OK; k++)
        if (k->code == code)
            return k;
    return &curl_classes[sizeof curl_classes / sizeof curl_classes[0] - 1];
}

static bool idempotent(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "DELETE") == 0 ||
           strcmp(method, "HEAD") == 0;
}

static bool retry_status(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

int pw_k8s_request_ex(pw_k8s_client *c, const char *method, const char *path, const json_t *body,
                      const char *content_type, int *status, json_t **resp, const atomic_bool *stop)
{
    atomic_fetch_add(&c->counts[verb_slot(method, path)], 1);
    char *body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    size_t body_len = body_text ? strlen(body_text) : 0;
    struct handle *hd = handle_acquire(c);
    if (!hd) {
        PW_ERROR("k8s %s %s: cannot make a curl handle: %s", method, path, pw_strerror(PW_ENOMEM));
        free(body_text);
        atomic_fetch_add(&c->counts[C_ERRORS], 1);
        return PW_ENOMEM;
    }
    struct xfer x = {.curl = hd->curl, .stop = stop};
    pw_buf_init(&x.body, c->max_body);
    int attempt = 0, rc = 0;
    bool auth_retried = false;
    long code = 0;
    for (;;) {
        rc = rate_wait(c, stop);
        if (rc != 0)
            break;
        struct pw_k8s_cred cr;
        char *msg = NULL;
        rc = pw_k8s_cred_get(c->cfg, &cr, &msg);
        if (rc != 0) {
            PW_ERROR("k8s %s %s: %s", method, path, msg ? msg : "no credential");
            free(msg);
            break;
        }
        pw_buf_reset(&x.body);
        x.retry_after_s = -1;
        x.too_large = false;
        struct curl_slist *hdr = NULL;
        rc = setup(c, &x, method, path, body_text, body_len, content_type, &cr, c->timeout_ms, &hdr);
        if (rc != 0) {
            PW_ERROR("k8s %s %s: cannot build the request headers: %s", method, path, pw_strerror(rc));
            pw_k8s_cred_fini(&cr);
            break;
        }
        int64_t t0 = pw_clock_mono_ms();
        CURLcode cc = curl_easy_perform(x.curl);
        long answered = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(x.curl, CURLINFO_RESPONSE_CODE, &answered);
        k8s_count(method, path, answered, t0);
        curl_slist_free_all(hdr);
        uint64_t gen = cr.generation;
        pw_k8s_cred_fini(&cr);
        if (cc != CURLE_OK) {
            if (cc == CURLE_ABORTED_BY_CALLBACK) {
                rc = PW_ECANCELED;
                break;
            }
            if (x.too_large) {
                PW_WARN("k8s %s %s: response over the %zu byte cap", method, path, c->max_body);
                rc = PW_ETOOLARGE;
                break;
            }
            const struct curl_class *k = classify(cc);
            bool may_retry = k->retry && (k->before_send || idempotent(method));
            if (may_retry && attempt < c->max_retries) {
                int64_t d = backoff_ms(attempt);
                PW_DEBUG("k8s %s %s: %s; retry %d in %lld ms", method, path, curl_easy_strerror(cc), attempt + 1,
                         (long long)d);
                attempt++;
                atomic_fetch_add(&c->counts[C_RETRIES], 1);
                rc = nap(d, stop);
                if (rc != 0)
                    break;
                continue;
            }
            PW_WARN("k8s %s %s: %s", method, path, curl_easy_strerror(cc));
            rc = cc == CURLE_OPERATION_TIMEDOUT ? PW_ETIMEDOUT : PW_EUNAVAIL;
            break;
        }
        curl_easy_getinfo(x.curl, CURLINFO_RESPONSE_CODE, &code);
        if (code == 401 && !auth_retried && pw_k8s_cred_invalidate(c->cfg, gen)) {
            auth_retried = true;
            PW_INFO("k8s %s %s: 401, refreshing the credential", method, path);
            continue;
        }
        if (retry_status(code) && attempt < c->max_retries) {
            int64_t d = x.retry_after_s >= 0 ? x.retry_after_s * 1000 : backoff_ms(attempt);
            PW_DEBUG("k8s %s %s: HTTP %ld; retry %d in %lld ms", method, path, code, attempt + 1, (long long)d);
            attempt++;
            atomic_fetch_add(&c->counts[C_RETRIES], 1);
            rc = nap(d, stop);
            if (rc != 0)
                break;
            continue;
        }
        rc = 0;
        break;
    }
    free(body_text);
    handle_release(hd);
    if (rc == 0) {
        *status = (int)code;
        if (resp)
            *resp = x.body.len ? json_loadb(x.body.p, x.body.len, 0, NULL) : NULL;
    } else {
        atomic_fetch_add(&c->counts[C_ERRORS], 1);
    }
    pw_buf_fini(&x.body);
    return rc;
}

int pw_k8s_request(pw_k8s_client *c, const char *method, const char *path, const json_t *body, const char *content_type,
                   int *status, json_t **resp)
{
    return pw_k8s_request_ex(c, method, path, body, content_type, status, resp, NULL);
}

int pw_k8s_stream_get(pw_k8s_client *c, const char *path, struct pw_k8s_watch_parser *p, int timeout_ms,
                      const atomic_bool *stop, int *status, json_t **errbody)
{
    atomic_fetch_add(&c->counts[verb_slot("GET", path)], 1);
    int rc = rate_wait(c, stop);
    if (rc != 0)
        return rc;
    struct pw_k8s_cred cr;
    char *msg = NULL;
    rc = pw_k8s_cred_get(c->cfg, &cr, &msg);
    if (rc != 0) {
        PW_ERROR("k8s GET %s: %s", path, msg ? msg : "no credential");
        free(msg);
        atomic_fetch_add(&c->counts[C_ERRORS], 1);
        return rc;
    }
    struct handle *hd = handle_acquire(c);
    struct xfer x = {.curl = hd ? hd->curl : NULL, .stop = stop, .parser = p, .retry_after_s = -1};
    struct curl_slist *hdr = NULL;
    rc = hd ? setup(c, &x, "GET", path, NULL, 0, NULL, &cr, timeout_ms, &hdr) : PW_ENOMEM;
    if (rc != 0) {
        PW_ERROR("k8s GET %s: cannot make the request: %s", path, pw_strerror(rc));
        if (hd)
            handle_release(hd);
        pw_k8s_cred_fini(&cr);
        atomic_fetch_add(&c->counts[C_ERRORS], 1);
        return rc;
    }
    pw_buf_init(&x.body, ERRBODY_MAX);
    int64_t t0 = pw_clock_mono_ms();
    CURLcode cc = curl_easy_perform(x.curl);
    curl_slist_free_all(hdr);
    long code = 0;
    curl_easy_getinfo(x.curl, CURLINFO_RESPONSE_CODE, &code);
    k8s_count("GET", path, code, t0);
    handle_release(hd);
    if (code == 401)
        pw_k8s_cred_invalidate(c->cfg, cr.generation);
    pw_k8s_cred_fini(&cr);
    if (cc == CURLE_OK && p && code >= 200 && code < 300)
        rc = pw_k8s_watch_parser_finish(p);
    else if (cc == CURLE_OK)
        rc = 0;
    else if (cc == CURLE_ABORTED_BY_CALLBACK)
        rc = PW_ECANCELED;
    else if (cc == CURLE_WRITE_ERROR && p && p->stopped)
        rc = 0; /* the callback asked to end the stream */
    else if (cc == CURLE_WRITE_ERROR && p && p->error)
        rc = p->error;
    else if (cc == CURLE_OPERATION_TIMEDOUT)
        rc = PW_ETIMEDOUT;
    else
        rc = PW_EUNAVAIL;
    if (rc == 1)
        rc = 0;
    if (rc < 0 && rc != PW_ECANCELED)
        atomic_fetch_add(&c->counts[C_ERRORS], 1);
    *status = (int)code;
    if (rc == 0 && errbody)
        *errbody = (code < 200 || code >= 300) && x.body.len ? json_loadb(x.body.p, x.body.len, 0, NULL) : NULL;
    pw_buf_fini(&x.body);
    return rc;
}
