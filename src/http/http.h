/* http.h: the HTTP server both prewarmd and kubesim serve through: a route table, request accessors,
 * whole and streamed (chunked) responses, body caps, optional TLS with client certificates, and one
 * access-log line per request. Built on libmicrohttpd (epoll, a thread pool, suspend/resume for
 * streams); no libmicrohttpd type appears here.
 *
 * Thread model: handlers run on the server's pool threads, several at once; a handler must reply
 * exactly once (pw_http_reply*, or pw_http_reply_stream) before it returns, and must not keep req.
 * A stream is the one object that outlives its handler: any thread may write to it or close it. */
#ifndef PW_HTTP_H
#define PW_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct pw_http_server pw_http_server;
typedef struct pw_http_req pw_http_req;
typedef struct pw_http_stream pw_http_stream;

typedef void (*pw_http_handler)(pw_http_req *req, void *ctx);

struct pw_http_route;
/* Middleware (authentication, authorization, limits, audit): before runs on the matched route ahead
 * of its handler; returning false means it replied itself and the handler is skipped. after runs
 * once the handler (or before) replied, with the status sent. Both on the pool thread, with the
 * server's ctx. */
typedef bool (*pw_http_before_fn)(pw_http_req *req, const struct pw_http_route *route, void *ctx);
typedef void (*pw_http_after_fn)(pw_http_req *req, const struct pw_http_route *route, int status, void *ctx);

/* One row of a route table. method: "GET", "POST", ... or "*" for any. pattern: a path where a
 * segment "{name}" matches one non-empty segment (read with pw_http_req_param) and a final "**"
 * matches any rest, including nothing. The first matching row wins; no match -> 404 (or 405 when the
 * path matched with another method). */
struct pw_http_route {
    const char *method;
    const char *pattern;
    pw_http_handler fn;
};

/* Request limits. Every refusal is the JSON error body {"code","reason","message"}: 413 TooLarge for
 * a body over max_body (a client that sent Expect: 100-continue gets it before sending; otherwise up
 * to 8 x max_body (at most 64 MiB) is read and discarded so the client can read the answer), 414
 * TooLarge for a request URI (path and query) over PW_HTTP_MAX_URI, 431 TooLarge for header fields
 * over PW_HTTP_MAX_HEADERS in all. (A request head beyond 4 x their sum exceeds libmicrohttpd's
 * connection memory and gets its own plain answer.) */
#define PW_HTTP_DEFAULT_MAX_BODY (1u << 20)
#define PW_HTTP_MAX_URI 8192
#define PW_HTTP_MAX_URI_TEXT "8 KiB"
#define PW_HTTP_MAX_HEADERS 32768
#define PW_HTTP_MAX_HEADERS_TEXT "32 KiB"
/* Connection memory for a server whose clients are small and many (prewarm-agents: a head of a few
 * KiB, a bearer token included; bodies stream through it in pieces): 32 KiB, against 160 KiB. */
#define PW_HTTP_SMALL_CONN_MEMORY (32u << 10)

struct pw_http_config {
    const char *listen;                 /* "127.0.0.1:8080", "[::1]:0", ":8080"; port 0 picks one */
    const struct pw_http_route *routes; /* borrowed; ends with a row whose pattern is NULL */
    void *ctx;                          /* passed to every handler; borrowed */
    size_t max_body;                    /* request bodies over this get 413 (0: PW_HTTP_DEFAULT_MAX_BODY) */
    unsigned threads;                   /* pool size (0: 4) */
    unsigned max_connections;           /* 0: 10000 */
    unsigned idle_timeout_s;            /* idle keep-alive connections close after this (0: 60) */
    size_t conn_memory;                 /* libmicrohttpd's memory per connection, bytes (0: 4 x
                                         * (PW_HTTP_MAX_HEADERS + PW_HTTP_MAX_URI) = 160 KiB, room for
                                         * every head our JSON 414/431 refusals answer). A server
                                         * holding thousands of long-lived connections sets less (the
                                         * agent listener: PW_HTTP_SMALL_CONN_MEMORY); a request head
                                         * that does not fit then gets libmicrohttpd's own plain 431. */
    const char *tls_cert_pem;           /* serve HTTPS when set: PEM text, borrowed during new() */
    const char *tls_key_pem;
    const char *tls_client_ca_pem;      /* when set, ask clients for a certificate signed by it */
    /* serve HTTPS from PEM files instead (when set, the _pem fields are ignored): read at start and
     * again, for new handshakes, whenever either file changes (checked at most once a second), so a
     * rotated certificate is served without restarting or dropping connections; a pair that does
     * not load is logged and the previous one kept. TLS 1.2 and 1.3 only. */
    const char *tls_cert_file;
    const char *tls_key_file;
    pw_http_before_fn before;           /* may be NULL */
    pw_http_after_fn after;             /* may be NULL */
    bool access_log;                    /* one PW_INFO line per request */
    const char *log_name;               /* prefix of access-log lines ("api", "kube") */
    bool metrics;                       /* count requests in the default metrics registry:
                                         * prewarm_http_requests_total{route,method,code} and
                                         * prewarm_http_request_duration_seconds{route,method}
                                         * (route: the matched pattern; a stream's duration ends
                                         * when its response starts) */
};

/* Starts serving (and raises the process's soft open-file limit towards the hard one when it is
 * below max_connections). On success *out is the server (free with pw_http_server_free) and 0 is returned;
 * on failure (bad address, port in use, bad certificate) a negative PW_E* code and nothing runs. */
int pw_http_server_new(const struct pw_http_config *cfg, pw_http_server **out);
/* True when listen ("host:port", "[v6]:port", "localhost:port") is a loopback address (127.0.0.0/8,
 * ::1); false for ":port", 0.0.0.0, any other address and a listen string that does not parse. */
bool pw_http_listen_is_loopback(const char *listen);
/* The port actually bound (useful after port 0). */
int pw_http_server_port(const pw_http_server *srv);
/* The address actually bound, as host:port ("127.0.0.2:8080", "[::1]:43117"; "localhost" shows as
 * 127.0.0.1). Borrowed, valid while srv lives. */
const char *pw_http_server_addr(const pw_http_server *srv);
/* Stops accepting new connections; requests in flight go on. Idempotent. */
void pw_http_server_quiesce(pw_http_server *srv);
/* TLS certificate reloads that succeeded since start (tests, metrics). */
unsigned pw_http_server_tls_reloads(pw_http_server *srv);
/* Closes every open stream, waits for handlers in flight, stops, frees. NULL is a no-op. */
void pw_http_server_free(pw_http_server *srv);

/* ---- the request: every pointer returned is borrowed and valid until the handler returns ---- */
const char *pw_http_req_method(const pw_http_req *req);
/* The path, percent-decoded, without the query string. */
const char *pw_http_req_path(const pw_http_req *req);
/* A query argument (decoded), NULL when absent; "" for "?flag". */
const char *pw_http_req_query(const pw_http_req *req, const char *name);
/* A request header (case-insensitive name), NULL when absent. */
const char *pw_http_req_header(const pw_http_req *req, const char *name);
/* A "{name}" segment of the matched route, NULL when the route has none. */
const char *pw_http_req_param(const pw_http_req *req, const char *name);
/* The request body (NUL-terminated; *len gets its length; "" with 0 when there is none). */
const char *pw_http_req_body(const pw_http_req *req, size_t *len);
/* The client's address "host:port". */
const char *pw_http_req_peer(const pw_http_req *req);
/* Attaches data to the request for its middleware and handler; free_fn(data) runs when the request
 * ends (free_fn may be NULL). A second call replaces (and frees) the first. */
void pw_http_req_set_data(pw_http_req *req, void *data, void (*free_fn)(void *));
void *pw_http_req_data(const pw_http_req *req);
/* 1 when the client presented a certificate that verifies against tls_client_ca_pem, and its subject
 * common name is copied into cn (when cn is not NULL, cn_size > 0); 0 otherwise. */
int pw_http_req_client_cert(pw_http_req *req, char *cn, size_t cn_size);

/* ---- replying: exactly one reply per request ---- */
/* Adds a response header to the coming reply. Name and value are copied. */
void pw_http_add_header(pw_http_req *req, const char *name, const char *value);
/* Replies with a copy of body. content_type NULL -> "text/plain; charset=utf-8". */
void pw_http_reply(pw_http_req *req, int status, const char *content_type, const char *body, size_t len);
/* Replies with obj encoded compactly, Content-Type application/json. Takes ownership of obj. */
void pw_http_reply_json(pw_http_req *req, int status, json_t *obj);

/* Starts a chunked response and returns the stream (never NULL). The caller owns one reference to it
 * and must drop it with pw_http_stream_close() once, from any thread, at any later time. */
pw_http_stream *pw_http_reply_stream(pw_http_req *req, int status, const char *content_type);
/* Queues data for the client. PW_ECANCELED when the client is gone or the server is stopping (the
 * caller should then close its reference), PW_ETOOLARGE when more than the stream's backlog cap
 * (16 MiB) waits unsent (the stream is then ended). Never blocks on the network. */
int pw_http_stream_write(pw_http_stream *s, const void *data, size_t n);
/* True when the client is gone or the server is stopping. */
bool pw_http_stream_dead(pw_http_stream *s);
/* Bytes queued and not yet handed to the network (for writers that pace themselves under the cap). */
size_t pw_http_stream_pending(pw_http_stream *s);
/* Ends the response after what was queued and drops the caller's reference. */
void pw_http_stream_close(pw_http_stream *s);

#endif
