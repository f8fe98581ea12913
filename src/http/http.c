/* http.c: pw_http on libmicrohttpd.
 *
 * One pw_http_req per request (MHD's con_cls): the body is gathered under a cap, the route table is
 * matched once the request is complete, the handler replies, the response is queued, and the access
 * line is written when MHD reports completion. Streams are chunked responses whose content reader
 * suspends the connection when nothing is queued; a writer resumes it. */
#include "http/http.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "metrics/metrics.h"
#include "http/http_int.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#define HTTP_MAX_PARAMS 8
#define HTTP_STREAM_BACKLOG (16u << 20)
/* TLS 1.2 and 1.3 only (GnuTLS priority string) */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"


struct http_header {
    char *name;
    char *value;
    struct http_header *next;
};

struct pw_http_server {
    struct MHD_Daemon *mhd;
    struct pw_http_config cfg; /* routes/ctx borrowed; TLS strings not kept */
    char *tls_cert, *tls_key, *tls_ca; /* MHD keeps pointers to these: owned, freed last */
    http_tls *tls_files;               /* serving from files (reloaded), or NULL */
    int port;
    char addr[INET6_ADDRSTRLEN + 16]; /* the bound address, host:port */
    pthread_mutex_t lock; /* guards quiesced */
    pw_http_stream *streams;
    bool stopping;
    bool quiesced;
};

struct pw_http_stream {
    pthread_mutex_t lock;
    pw_http_server *srv;
    struct MHD_Connection *conn;
    pw_buf out;
    int refs;       /* the producer's and MHD's */
    bool closed;    /* the producer ended it */
    bool dead;      /* MHD is done with it (client gone or server stopping) */
    bool suspended; /* the connection is suspended waiting for data */
    pw_http_stream *prev, *next; /* in srv->streams, under http_streams_lock */
};

#define HTTP_CONN_MEMORY (4 * (PW_HTTP_MAX_HEADERS + PW_HTTP_MAX_URI))

struct pw_http_req {
    pw_http_server *srv;
    struct MHD_Connection *conn;
    const char *method; /* borrowed from MHD */
    const char *url;
    pw_buf body;
    bool too_large;
    uint64_t seen; /* body bytes received */
    bool replied;
    int status;
    struct MHD_Response *resp;
    struct http_header *headers;
    int nparams;
    char *param_names[HTTP_MAX_PARAMS];
    char *param_values[HTTP_MAX_PARAMS];
    int64_t start_ms;
    int64_t streamed_ms; /* when a stream's response started (0: not a stream) */
    const char *route;   /* the matched route's pattern (borrowed from the table), NULL: none */
    size_t bytes;
    char peer[64];
    void *data; /* the middleware's (pw_http_req_set_data) */
    void (*data_free)(void *);
};

/* ---- errors ---- */

static void http_reply_error(pw_http_req *req, int status, const char *reason, const char *message)
{
    json_t *o = json_pack("{s:i, s:s, s:s}", "code", status, "reason", reason, "message", message);
    pw_http_reply_json(req, status, o);
}

/* ---- the request ---- */

const char *pw_http_req_method(const pw_http_req *req)
{
    return req->method;
}

const char *pw_http_req_path(const pw_http_req *req)
{
    return req->url;
}

const char *pw_http_req_query(const pw_http_req *req, const char *name)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    if (v)
        return v;
    /* A bare "?flag" is present with no value: MHD reports it through the iterator only. */
    return MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), NULL, NULL) ==
                   MHD_YES
               ? ""
               : NULL;
}

const char *pw_http_req_header(const pw_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *pw_http_req_param(const pw_http_req *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    return NULL;
}

const char *pw_http_req_peer(const pw_http_req *req)
{
    return req->peer;
}

void pw_http_req_set_data(pw_http_req *req, void *data, void (*free_fn)(void *))
{
    if (req->data && req->data_free)
        req->data_free(req->data);
    req->data = data;
    req->data_free = free_fn;
}

void *pw_http_req_data(const pw_http_req *req)
{
    return req->data;
}

const char *pw_http_req_body(const pw_http_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.p ? req->body.p : "";
}

int pw_http_req_client_cert(pw_http_req *req, char *cn, size_t cn_size)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return 0;
    gnutls_session_t session = (gnutls_session_t)ci->tls_session;
    unsigned int status = 0;
    if (gnutls_certificate_verify_peers2(session, &status) != GNUTLS_E_SUCCESS || status != 0)
        return 0;
    unsigned int n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    if (!certs || n == 0)
        return 0;
    if (cn && cn_size) {
        gnutls_x509_crt_t crt;
        cn[0] = '\0';
        if (gnutls_x509_crt_init(&crt) == 0) {
            if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
                size_t sz = cn_size;
                if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &sz) != 0)
                    cn[0] = '\0';
            }
            gnutls_x509_crt_deinit(crt);
        }
    }
    return 1;
}

/* ---- replying ---- */

void pw_http_add_header(pw_http_req *req, const char *name, const char *value)
{
    struct http_header *h = pw_xmalloc(sizeof *h);
    h->name = pw_xstrdup(name);
    h->value = pw_xstrdup(value);
    h->next = req->headers;
    req->headers = h;
}

static void http_set_response(pw_http_req *req, int status, struct MHD_Response *resp, const char *content_type)
{
    if (req->replied) {
        PW_ERROR("http: second reply to %s %s ignored", req->method, req->url);
        MHD_destroy_response(resp);
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            content_type ? content_type : "text/plain; charset=utf-8");
    for (struct http_header *h = req->headers; h; h = h->next)
        MHD_add_response_header(resp, h->name, h->value);
    req->replied = true;
    req->status = status;
    req->resp = resp;
}

void pw_http_reply(pw_http_req *req, int status, const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    req->bytes = len;
    http_set_response(req, status, resp, content_type);
}

void pw_http_reply_json(pw_http_req *req, int status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(obj);
    if (!text) {
        static const char fallback[] = "{\"code\":500,\"reason\":\"Internal\",\"message\":\"encoding failed\"}";
        pw_http_reply(req, 500, "application/json", fallback, sizeof fallback - 1);
        return;
    }
    size_t len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    req->bytes = len;
    http_set_response(req, status, resp, "application/json");
}

/* ---- streams ---- */

/* Guards every server's stream list, the streams' srv pointers and srv->stopping. One lock for all
 * servers, so a stream that outlives its server (a producer closing it late) never touches a freed
 * server: pw_http_server_free detaches the survivors under it. Taken only on stream start and end. */
static pthread_mutex_t http_streams_lock = PTHREAD_MUTEX_INITIALIZER;

static void stream_unref_locked(pw_http_stream *s, bool *free_it)
{
    *free_it = --s->refs == 0;
}

static void stream_free(pw_http_stream *s)
{
    pthread_mutex_lock(&http_streams_lock);
    if (s->srv) { /* NULL once its server is gone */
        if (s->prev)
            s->prev->next = s->next;
        else
            s->srv->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
    }
    pthread_mutex_unlock(&http_streams_lock);
    pw_buf_fini(&s->out);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    pw_http_stream *s = cls;
    (void)pos;
    pthread_mutex_lock(&s->lock);
    if (s->out.len) {
        size_t n = s->out.len < max ? s->out.len : max;
        memcpy(buf, s->out.p, n);
        pw_buf_consume(&s->out, n);
        pthread_mutex_unlock(&s->lock);
        return (ssize_t)n;
    }
    if (s->closed || s->dead) {
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    s->suspended = true;
    MHD_suspend_connection(s->conn);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void stream_mhd_done(void *cls)
{
    pw_http_stream *s = cls;
    bool free_it;
    pthread_mutex_lock(&s->lock);
    s->dead = true;
    stream_unref_locked(s, &free_it);
    pthread_mutex_unlock(&s->lock);
    if (free_it)
        stream_free(s);
}

pw_http_stream *pw_http_reply_stream(pw_http_req *req, int status, const char *content_type)
{
    pw_http_stream *s = pw_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->srv = req->srv;
    s->conn = req->conn;
    pw_buf_init(&s->out, HTTP_STREAM_BACKLOG);
    s->refs = 2;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_mhd_done);
    pw_http_server *srv = req->srv;
    pthread_mutex_lock(&http_streams_lock);
    s->next = srv->streams;
    if (srv->streams)
        srv->streams->prev = s;
    srv->streams = s;
    if (srv->stopping)
        s->dead = true;
    pthread_mutex_unlock(&http_streams_lock);
    http_set_response(req, status, resp, content_type);
    req->streamed_ms = pw_clock_mono_ms();
    return s;
}

static void stream_wake_locked(pw_http_stream *s)
{
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
}

int pw_http_stream_write(pw_http_stream *s, const void *data, size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->dead || s->closed) {
        rc = PW_ECANCELED;
    } else if (pw_buf_append(&s->out, data, n) != 0) {
        s->closed = true; /* a client this far behind is cut off rather than buffered without end */
        rc = PW_ETOOLARGE;
    }
    if (!s->dead)
        stream_wake_locked(s);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

size_t pw_http_stream_pending(pw_http_stream *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->out.len;
    pthread_mutex_unlock(&s->lock);
    return n;
}

bool pw_http_stream_dead(pw_http_stream *s)
{
    pthread_mutex_lock(&s->lock);
    bool dead = s->dead || s->closed;
    pthread_mutex_unlock(&s->lock);
    return dead;
}

void pw_http_stream_close(pw_http_stream *s)
{
    if (!s)
        return;
    bool free_it;
    pthread_mutex_lock(&s->lock);
    s->closed = true;
    if (!s->dead)
        stream_wake_locked(s);
    stream_unref_locked(s, &free_it);
    pthread_mutex_unlock(&s->lock);
    if (free_it)
        stream_free(s);
}

/* ---- routing ---- */

/* Matches path against pattern, filling req's params. Returns 1 on a match. */
static int route_match(pw_http_req *req, const char *pattern, const char *path)
{
    req->nparams = 0;
    const char *p = pattern, *u = path;
    while (*p) {
        if (p[0] == '*' && p[1] == '*')
            return 1;
        if (*p == '{') {
            const char *end = strchr(p, '}');
            if (!end || req->nparams >= HTTP_MAX_PARAMS)
                return 0;
            size_t seg = strcspn(u, "/");
            if (seg == 0)
                return 0;
            req->param_names[req->nparams] = pw_xstrndup(p + 1, (size_t)(end - p - 1));
            req->param_values[req->nparams] = pw_xstrndup(u, seg);
            req->nparams++;
            p = end + 1;
            u += seg;
            continue;
        }
        if (*p != *u)
            return 0;
        p++;
        u++;
    }
    return *u == '\0';
}

static void route_clear(pw_http_req *req)
{
    for (int i = 0; i < req->nparams; i++) {
        free(req->param_names[i]);
        free(req->param_values[i]);
    }
    req->nparams = 0;
}

static void route_dispatch(pw_http_req *req)
{
    const struct pw_http_route *routes = req->srv->cfg.routes;
    pw_buf allow; /* the methods of routes whose path matched, for a 405's Allow header */
    pw_buf_init(&allow, 256);
    for (const struct pw_http_route *r = routes; r && r->pattern; r++) {
        int m = route_match(req, r->pattern, req->url);
        if (!m) {
            route_clear(req);
            continue;
        }
        bool method_ok = strcmp(r->method, "*") == 0 || strcmp(r->method, req->method) == 0 ||
                         (strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0);
        if (!method_ok) {
            if (!allow.p || !strstr(allow.p, r->method))
                pw_buf_printf(&allow, "%s%s", allow.len ? ", " : "", r->method);
            route_clear(req);
            continue;
        }
        pw_buf_fini(&allow);
        req->route = r->pattern;
        const struct pw_http_config *cfg = &req->srv->cfg;
        if (!cfg->before || cfg->before(req, r, cfg->ctx))
            r->fn(req, cfg->ctx);
        if (!req->replied)
            http_reply_error(req, 500, "Internal", "the handler did not reply");
        if (cfg->after)
            cfg->after(req, r, req->status, cfg->ctx);
        return;
    }
    if (allow.len) {
        pw_http_add_header(req, "Allow", allow.p);
        http_reply_error(req, 405, "MethodNotAllowed", "method not allowed on this path");
    } else {
        http_reply_error(req, 404, "NotFound", "no such path");
    }
    pw_buf_fini(&allow);
}

/* ---- MHD callbacks ---- */

static void req_fill_peer(pw_http_req *req)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    req->peer[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ci->client_addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ci->client_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(req->peer, sizeof req->peer, "%s:%d", host, port);
}

static enum MHD_Result http_queue(pw_http_req *req)
{
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status, req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return r;
}

/* Bytes of names and values of one kind of connection value (query arguments, headers). */
struct head_size {
    size_t query, headers;
};

static enum MHD_Result http_count_pair(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    size_t *n = cls;
    (void)kind;
    *n += (key ? strlen(key) : 0) + (value ? strlen(value) : 0) + 4; /* "k: v\r\n" or "&k=v" */
    return MHD_YES;
}

/* How much of a too-large body is read and discarded so its client can read the 413. */
static uint64_t http_discard_cap(const pw_http_server *srv)
{
    uint64_t cap = (uint64_t)srv->cfg.max_body * 8;
    return cap < (64u << 20) ? cap : (64u << 20);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
    pw_http_server *srv = cls;
    (void)version;
    pw_http_req *req = *con_cls;
    if (!req) {
        req = pw_xcalloc(1, sizeof *req);
        req->srv = srv;
        req->conn = conn;
        req->method = method;
        req->url = url;
        req->start_ms = pw_clock_mono_ms();
        pw_buf_init(&req->body, srv->cfg.max_body);
        req_fill_peer(req);
        *con_cls = req;
        /* the request head against our limits (JSON errors; MHD's own HTML ones only past its
         * connection memory, far beyond these) */
        struct head_size hs = {0, 0};
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, http_count_pair, &hs.query);
        MHD_get_connection_values(conn, MHD_HEADER_KIND, http_count_pair, &hs.headers);
        if (strlen(url) + hs.query > PW_HTTP_MAX_URI) {
            http_reply_error(req, 414, "TooLarge", "request URI over " PW_HTTP_MAX_URI_TEXT);
            return http_queue(req);
        }
        if (hs.headers > PW_HTTP_MAX_HEADERS) {
            http_reply_error(req, 431, "TooLarge", "request header fields over " PW_HTTP_MAX_HEADERS_TEXT);
            return http_queue(req);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->cfg.max_body) {
            const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            /* a client waiting for 100-continue has sent nothing: answer now. Otherwise read and
             * discard the body (up to a bound) so the client, still sending, can read the 413 */
            if ((expect && strcasecmp(expect, "100-continue") == 0) ||
                strtoull(cl, NULL, 10) > http_discard_cap(srv)) {
                http_reply_error(req, 413, "TooLarge", "request body too large");
                return http_queue(req);
            }
            req->too_large = true;
        }
        return MHD_YES;
    }
    if (req->replied)
        return MHD_YES; /* a stream resumed, or an early 413 draining the body */
    if (*upload_size) {
        if (!req->too_large && pw_buf_append(&req->body, upload_data, *upload_size) != 0)
            req->too_large = true;
        req->seen += *upload_size;
        *upload_size = 0;
        if (req->too_large && req->seen > http_discard_cap(srv)) {
            /* a chunked body that goes on and on: stop reading (the connection closes after this) */
            http_reply_error(req, 413, "TooLarge", "request body too large");
            return http_queue(req);
        }
        return MHD_YES;
    }
    if (req->too_large)
        http_reply_error(req, 413, "TooLarge", "request body too large");
    else
        route_dispatch(req);
    return http_queue(req);
}

/* Rebuilds "?k=v&k2" for the access log from the decoded arguments (MHD keeps no raw query text);
 * an over-long query is cut at the buffer's cap. */
static enum MHD_Result http_query_text(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    pw_buf *b = cls;
    (void)kind;
    int rc = pw_buf_printf(b, "%c%s%s%s", b->len ? '&' : '?', key, value ? "=" : "", value ? value : "");
    return rc == 0 ? MHD_YES : MHD_NO;
}

static pw_metric *http_m_requests, *http_m_duration;

static void http_metrics_init(void)
{
    pw_metrics *r = pw_metrics_default();
    http_m_requests = pw_metrics_counter(r, "prewarm_http_requests_total",
                                         "REST requests, by route, method and status code.", "route,method,code");
    http_m_duration = pw_metrics_histogram(r, "prewarm_http_request_duration_seconds",
                                           "REST request latency (for an event stream: until it started), by route "
                                           "and method.",
                                           "route,method", pw_metrics_latency_buckets, pw_metrics_n_latency_buckets);
}

/* One request in prewarm_http_*: the route pattern (bounded by the table), a known method or
 * "other", the status. */
static void http_count(const pw_http_req *req)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, http_metrics_init);
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    const char *method = "other";
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (req->method && strcmp(req->method, methods[i]) == 0)
            method = methods[i];
    char code[16];
    snprintf(code, sizeof code, "%d", req->status);
    const char *route = req->route ? req->route : "unmatched";
    pw_metric_add(http_m_requests, (const char *[]){route, method, code}, 1);
    int64_t end = req->streamed_ms ? req->streamed_ms : pw_clock_mono_ms();
    pw_metric_observe(http_m_duration, (const char *[]){route, method}, (double)(end - req->start_ms) / 1000.0);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    pw_http_server *srv = cls;
    pw_http_req *req = *con_cls;
    if (!req)
        return;
    if (srv->cfg.access_log) {
        pw_buf query;
        pw_buf_init(&query, 1024);
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, http_query_text, &query);
        PW_INFO("%s: %s %s%s %d %zu bytes %lld ms peer=%s%s", srv->cfg.log_name ? srv->cfg.log_name : "http",
                req->method, req->url, query.p ? query.p : "", req->status, req->bytes,
                (long long)(pw_clock_mono_ms() - req->start_ms), req->peer,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
        pw_buf_fini(&query);
    }
    if (srv->cfg.metrics && req->replied)
        http_count(req);
    if (req->resp)
        MHD_destroy_response(req->resp);
    route_clear(req);
    pw_http_req_set_data(req, NULL, NULL);
    pw_buf_fini(&req->body);
    while (req->headers) {
        struct http_header *h = req->headers;
        req->headers = h->next;
        free(h->name);
        free(h->value);
        free(h);
    }
    free(req);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    PW_DEBUG("http: libmicrohttpd: %s", msg);
}

/* Parses "host:port", "[v6]:port" or ":port" into a socket address. */
static int http_parse_listen(const char *listen, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return PW_EINVAL;
    size_t hl = (size_t)(colon - listen);
    if (hl >= sizeof host)
        return PW_EINVAL;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || colon[1] == '\0')
        return PW_EINVAL;
    memset(ss, 0, sizeof *ss);
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        in->sin_port = htons((uint16_t)port);
        return 0;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        return 0;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return 0;
    }
    if (strcmp(host, "localhost") == 0) {
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons((uint16_t)port);
        return 0;
    }
    return PW_EINVAL;
}

bool pw_http_listen_is_loopback(const char *listen)
{
    struct sockaddr_storage ss;
    if (!listen || http_parse_listen(listen, &ss) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    return ss.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&ss)->sin6_addr);
}

/* A server meant for max_connections clients needs that many descriptors: raise the soft limit
 * towards the hard one when it is lower (Debian's default soft limit is 1024). */
static void http_raise_nofile(unsigned max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)max_connections + 256;
    if (rl.rlim_cur >= want || rl.rlim_cur == RLIM_INFINITY)
        return;
    rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want) ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        PW_WARN("http: cannot raise the open-file limit to %llu", (unsigned long long)rl.rlim_cur);
}

/* srv->addr: the listening socket's own address ("127.0.0.2:8080", "[::1]:43117", "0.0.0.0:8080"). */
static void http_bound_addr(pw_http_server *srv)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    if (di && getsockname(di->listen_fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
            snprintf(srv->addr, sizeof srv->addr, "[%s]:%d", host, srv->port);
            return;
        }
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
            snprintf(srv->addr, sizeof srv->addr, "%s:%d", host, srv->port);
            return;
        }
    }
    snprintf(srv->addr, sizeof srv->addr, "%s", srv->cfg.listen); /* cannot happen: a bound socket */
}

int pw_http_server_new(const struct pw_http_config *cfg, pw_http_server **out)
{
    struct sockaddr_storage ss;
    if (!cfg->listen || http_parse_listen(cfg->listen, &ss) != 0) {
        PW_ERROR("http: bad listen address \"%s\" (want host:port)", cfg->listen ? cfg->listen : "");
        return PW_EINVAL;
    }
    pw_http_server *srv = pw_xcalloc(1, sizeof *srv);
    srv->cfg = *cfg;
    if (!srv->cfg.max_body)
        srv->cfg.max_body = PW_HTTP_DEFAULT_MAX_BODY;
    if (!srv->cfg.threads)
        srv->cfg.threads = 4;
    if (!srv->cfg.max_connections)
        srv->cfg.max_connections = 10000;
    if (!srv->cfg.idle_timeout_s)
        srv->cfg.idle_timeout_s = 60;
    pthread_mutex_init(&srv->lock, NULL);
    http_raise_nofile(srv->cfg.max_connections);

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[20];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, srv->cfg.threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, srv->cfg.max_connections, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, srv->cfg.idle_timeout_s, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)http_mhd_log, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
    /* by default room for a request head well past our own limits, so those answer with JSON */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                        (intptr_t)(cfg->conn_memory ? cfg->conn_memory : HTTP_CONN_MEMORY), NULL};
    if (cfg->tls_cert_file && cfg->tls_key_file) {
        int trc = http_tls_new(cfg->tls_cert_file, cfg->tls_key_file, &srv->tls_files);
        if (trc != 0) {
            pthread_mutex_destroy(&srv->lock);
            free(srv);
            return trc;
        }
        flags |= MHD_USE_TLS;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0,
                                            (void *)http_tls_callback(srv->tls_files)};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)HTTP_TLS_PRIORITIES};
    } else if (cfg->tls_cert_pem && cfg->tls_key_pem) {
        flags |= MHD_USE_TLS;
        srv->tls_cert = pw_xstrdup(cfg->tls_cert_pem);
        srv->tls_key = pw_xstrdup(cfg->tls_key_pem);
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
    }
    if ((flags & MHD_USE_TLS) && cfg->tls_client_ca_pem) {
        srv->tls_ca = pw_xstrdup(cfg->tls_client_ca_pem);
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, srv->tls_ca};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!srv->mhd) {
        PW_ERROR("http: cannot listen on %s (address in use, or a bad TLS certificate)", cfg->listen);
        free(srv->tls_cert);
        free(srv->tls_key);
        free(srv->tls_ca);
        http_tls_free(srv->tls_files);
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        return PW_EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : 0;
    http_bound_addr(srv);
    *out = srv;
    return 0;
}

int pw_http_server_port(const pw_http_server *srv)
{
    return srv->port;
}

const char *pw_http_server_addr(const pw_http_server *srv)
{
    return srv->addr;
}

void pw_http_server_quiesce(pw_http_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    bool already = srv->quiesced;
    srv->quiesced = true;
    pthread_mutex_unlock(&srv->lock);
    if (!already) {
        MHD_socket fd = MHD_quiesce_daemon(srv->mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
}

void pw_http_server_free(pw_http_server *srv)
{
    if (!srv)
        return;
    pthread_mutex_lock(&http_streams_lock);
    srv->stopping = true;
    for (pw_http_stream *s = srv->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->closed = true;
        if (!s->dead)
            stream_wake_locked(s);
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&http_streams_lock);
    /* Give resumed streams a moment to send their last bytes before the daemon closes them. */
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&http_streams_lock);
        bool any = srv->streams != NULL;
        pthread_mutex_unlock(&http_streams_lock);
        if (!any)
            break;
        pw_clock_sleep_ms(10);
    }
    MHD_stop_daemon(srv->mhd);
    /* Streams whose producers have not closed them yet outlive the server: detach them. */
    pthread_mutex_lock(&http_streams_lock);
    for (pw_http_stream *s = srv->streams; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        s->srv = NULL;
        s->dead = true;
        pthread_mutex_unlock(&s->lock);
    }
    srv->streams = NULL;
    pthread_mutex_unlock(&http_streams_lock);
    pthread_mutex_destroy(&srv->lock);
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv->tls_ca);
    http_tls_free(srv->tls_files);
    free(srv);
}

unsigned pw_http_server_tls_reloads(pw_http_server *srv)
{
    return http_tls_reloads(srv->tls_files);
}
