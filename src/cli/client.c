/* client.c: prewarmctl's HTTP client to prewarmd: one reused curl handle (keep-alive across the polls of
 * a wait), JSON in and out, a cap on every response body, connect and transfer timeouts, and transport
 * errors turned into PW_E* codes with a message a person can act on. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "cli/cli_int.h"

#define RESPONSE_CAP PW_CLI_RESPONSE_CAP /* the largest node list we accept in one page */
#define CONNECT_TIMEOUT_S 5L
#define TRANSFER_TIMEOUT_S 30L

struct pw_cli_client {
    CURL *curl;
    char *base;                       /* owned; without a trailing '/' */
    volatile sig_atomic_t *interrupt; /* borrowed; may be NULL */
    pw_buf resp;
    bool too_large;
    /* a stream in progress (pw_cli_client_stream) */
    pw_cli_stream_fn stream_fn;
    void *stream_arg;
    int stream_state; /* 0: not known yet, 1: an event stream, -1: an ordinary answer */
    bool stream_stopped;
    long connect_timeout_s, transfer_timeout_s;
    char *auth_header; /* "Authorization: Bearer ..." or NULL; owned, wiped when freed */
    char *ca_file;     /* owned or NULL */
    char *ca_pem;      /* owned or NULL: the kubeconfig cluster's CA (used without ca_file) */
    size_t ca_pem_len;
    bool insecure;
    char *cert_pem, *key_pem; /* owned or NULL: the client certificate; the key wiped when freed */
};

pw_cli_client *pw_cli_client_new(const char *base_url)
{
    static bool global_done;
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        global_done = true;
    }
    CURL *curl = curl_easy_init();
    if (!curl)
        return NULL;
    pw_cli_client *c = pw_xcalloc(1, sizeof(*c));
    c->curl = curl;
    c->base = pw_xstrdup(base_url);
    size_t n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    pw_buf_init(&c->resp, RESPONSE_CAP);
    c->connect_timeout_s = CONNECT_TIMEOUT_S;
    c->transfer_timeout_s = TRANSFER_TIMEOUT_S;
    return c;
}

void pw_cli_client_set_timeouts(pw_cli_client *c, long connect_s, long transfer_s)
{
    c->connect_timeout_s = connect_s > 0 ? connect_s : CONNECT_TIMEOUT_S;
    c->transfer_timeout_s = transfer_s > 0 ? transfer_s : TRANSFER_TIMEOUT_S;
}

void pw_cli_client_set_auth(pw_cli_client *c, const char *token, const char *ca_file, bool insecure)
{
    if (c->auth_header) {
        memset(c->auth_header, 0, strlen(c->auth_header));
        free(c->auth_header);
    }
    free(c->ca_file);
    c->auth_header = token && *token ? pw_xasprintf("Authorization: Bearer %s", token) : NULL;
    c->ca_file = ca_file ? pw_xstrdup(ca_file) : NULL;
    c->insecure = insecure;
}

void pw_cli_client_set_ca_pem(pw_cli_client *c, const char *pem, size_t len)
{
    free(c->ca_pem);
    c->ca_pem = NULL;
    c->ca_pem_len = 0;
    if (pem && len) {
        c->ca_pem = pw_xmalloc(len);
        memcpy(c->ca_pem, pem, len);
        c->ca_pem_len = len;
    }
}

void pw_cli_client_set_client_cert(pw_cli_client *c, const char *cert_pem, const char *key_pem)
{
    if (c->key_pem) {
        memset(c->key_pem, 0, strlen(c->key_pem));
        free(c->key_pem);
    }
    free(c->cert_pem);
    bool both = cert_pem && *cert_pem && key_pem && *key_pem;
    c->cert_pem = both ? pw_xstrdup(cert_pem) : NULL;
    c->key_pem = both ? pw_xstrdup(key_pem) : NULL;
}

bool pw_cli_client_in_cluster_service(const pw_cli_client *c)
{
    /* https://NAME.NAMESPACE.svc[.cluster.local][:port][/...] */
    if (strncmp(c->base, "https://", 8) != 0)
        return false;
    const char *host = c->base + 8;
    size_t n = strcspn(host, ":/");
    for (size_t i = 0; i + 4 <= n; i++)
        if (strncmp(host + i, ".svc", 4) == 0 && (i + 4 == n || host[i + 4] == '.'))
            return true;
    return false;
}

void pw_cli_client_free(pw_cli_client *c)
{
    if (!c)
        return;
    pw_cli_client_set_auth(c, NULL, NULL, false);
    pw_cli_client_set_ca_pem(c, NULL, 0);
    pw_cli_client_set_client_cert(c, NULL, NULL);
    curl_easy_cleanup(c->curl);
    pw_buf_fini(&c->resp);
    free(c->base);
    free(c);
}

void pw_cli_client_set_interrupt(pw_cli_client *c, volatile sig_atomic_t *flag)
{
    c->interrupt = flag;
}

char *pw_cli_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = pw_xmalloc(n * 3 + 1);
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    pw_cli_client *c = arg;
    size_t n = size * nmemb;
    if (c->stream_fn && c->stream_state == 0) {
        long code = 0;
        char *ct = NULL;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &ct);
        c->stream_state = code == 200 && ct && strncmp(ct, "text/event-stream", 17) == 0 ? 1 : -1;
    }
    if (c->stream_fn && c->stream_state == 1) {
        if (c->stream_fn(c->stream_arg, data, n) != 0) {
            c->stream_stopped = true;
            return 0; /* ends the transfer */
        }
        return n;
    }
    if (pw_buf_append(&c->resp, data, n) != 0) {
        c->too_large = true;
        return 0; /* aborts the transfer */
    }
    return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    pw_cli_client *c = arg;
    return c->interrupt && *c->interrupt ? 1 : 0;
}

/* A transport failure as a PW_E* code and a message; the OS error ("Connection refused") when there is
 * one, since curl's own wording ("Couldn't connect to server") hides the cause. */
static int transport_error(pw_cli_client *c, CURLcode cc, const char *curl_msg, char *err, size_t errlen)
{
    long os_errno = 0;
    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
    const char *why = curl_msg[0] ? curl_msg : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        if (os_errno)
            why = strerror((int)os_errno);
        snprintf(err, errlen, "cannot reach prewarmd at %s: %s (is it running? set --server or PREWARM_SERVER)",
                 c->base, why);
        return PW_EUNAVAIL;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(err, errlen,
                 "cannot verify prewarmd's TLS certificate at %s: %s (pass --certificate-authority FILE with the "
                 "CA that signed it, or --insecure-skip-tls-verify)",
                 c->base, why);
        return PW_EAUTH;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(err, errlen, "prewarmd at %s did not answer in time: %s", c->base, why);
        return PW_ETIMEDOUT;
    case CURLE_ABORTED_BY_CALLBACK:
        snprintf(err, errlen, "interrupted");
        return PW_ECANCELED;
    case CURLE_WRITE_ERROR:
        if (c->too_large) {
            snprintf(err, errlen, "the response from prewarmd at %s is over %u MiB", c->base, RESPONSE_CAP >> 20);
            return PW_ETOOLARGE;
        }
        break;
    default:
        break;
    }
    snprintf(err, errlen, "request to prewarmd at %s failed: %s", c->base, why);
    return PW_EIO;
}

/* The TLS settings of every request (--certificate-authority, the kubeconfig's CA, --insecure-...). */
static void set_tls(pw_cli_client *c, CURL *h)
{
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->ca_file) {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    } else if (c->ca_pem) {
        struct curl_blob blob = {.data = c->ca_pem, .len = c->ca_pem_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (c->cert_pem) {
        struct curl_blob cert = {.data = c->cert_pem, .len = strlen(c->cert_pem), .flags = CURL_BLOB_COPY};
        struct curl_blob key = {.data = c->key_pem, .len = strlen(c->key_pem), .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (c->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

int pw_cli_client_stream(pw_cli_client *c, const char *path, const char *last_id, long idle_s, pw_cli_stream_fn fn,
                         void *arg, bool *streamed, long *status, json_t **out, char *err, size_t errlen)
{
    char *url = pw_xasprintf("%s%s", c->base, path);
    char curl_msg[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: text/event-stream");
    char *lei = last_id ? pw_xasprintf("Last-Event-ID: %s", last_id) : NULL;
    if (lei)
        headers = curl_slist_append(headers, lei);
    if (c->auth_header)
        headers = curl_slist_append(headers, c->auth_header);
    pw_buf_reset(&c->resp);
    c->too_large = false;
    c->stream_fn = fn;
    c->stream_arg = arg;
    c->stream_state = 0;
    c->stream_stopped = false;
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "prewarmctl/" PW_CLI_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
    /* no overall timeout: a stream lasts as long as its task; a silent one (no heartbeat) is dead */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, idle_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_msg);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    set_tls(c, h);
    CURLcode cc = curl_easy_perform(h);
    int rc = 0;
    *streamed = c->stream_state == 1;
    if (cc == CURLE_WRITE_ERROR && c->stream_stopped) {
        rc = 0;
    } else if (cc != CURLE_OK) {
        rc = transport_error(c, cc, curl_msg, err, errlen);
    } else if (!*streamed) {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        *status = code;
        *out = c->resp.len > 0 ? json_loadb(c->resp.p, c->resp.len, JSON_DECODE_ANY, NULL) : NULL;
    }
    c->stream_fn = NULL;
    c->stream_state = 0;
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    free(lei);
    free(url);
    return rc;
}

int pw_cli_client_call(pw_cli_client *c, const char *method, const char *path, const json_t *body, long *status,
                       json_t **out, char *err, size_t errlen)
{
    char *url = pw_xasprintf("%s%s", c->base, path);
    char *payload = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    char curl_msg[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: application/json");
    if (payload)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    if (c->auth_header)
        headers = curl_slist_append(headers, c->auth_header);

    pw_buf_reset(&c->resp);
    c->too_large = false;
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    if (payload) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "prewarmctl/" PW_CLI_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->transfer_timeout_s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_msg);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    set_tls(c, h);

    CURLcode cc = curl_easy_perform(h);
    int rc = 0;
    if (cc != CURLE_OK) {
        rc = transport_error(c, cc, curl_msg, err, errlen);
    } else {
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        json_t *doc = NULL;
        if (c->resp.len > 0)
            doc = json_loadb(c->resp.p, c->resp.len, JSON_DECODE_ANY, NULL);
        *status = code;
        *out = doc;
    }
    /* The error buffer lives on this stack frame: detach it before returning. */
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    free(payload);
    free(url);
    return rc;
}
