/* Unit tests for src/http: routing with parameters, query arguments, 404/405 (with Allow), body caps
 * (413 by Content-Length and by chunked upload), JSON replies, and chunked streams written from another
 * thread, including a client that goes away, and a server with small connection memory (the agent
 * listener's). Talks to the server through libcurl and raw sockets on loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "http/http.h"

static void h_item(pw_http_req *req, void *ctx)
{
    (void)ctx;
    const char *q = pw_http_req_query(req, "q");
    json_t *o = json_pack("{s:s, s:s?, s:s}", "id", pw_http_req_param(req, "id"), "q", q, "method",
                          pw_http_req_method(req));
    pw_http_reply_json(req, 200, o);
}

static void h_post(pw_http_req *req, void *ctx)
{
    (void)ctx;
    size_t n = 0;
    pw_http_req_body(req, &n);
    char text[64];
    snprintf(text, sizeof text, "%zu", n);
    pw_http_add_header(req, "X-Body-Length", text);
    pw_http_reply(req, 201, NULL, text, strlen(text));
}

struct producer {
    pw_http_stream *s;
    int lines;
    int delay_ms;
    int written; /* lines accepted before the stream died */
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < p->lines; i++) {
        char line[32];
        snprintf(line, sizeof line, "line %d\n", i);
        if (pw_http_stream_write(p->s, line, strlen(line)) != 0)
            break;
        p->written++;
        pw_clock_sleep_ms(p->delay_ms);
    }
    pw_http_stream_close(p->s);
    return NULL;
}

static struct producer g_prod;
static pthread_t g_prod_thread;

static void h_stream(pw_http_req *req, void *ctx)
{
    (void)ctx;
    long lines = 5, delay = 20;
    const char *l = pw_http_req_query(req, "lines");
    const char *d = pw_http_req_query(req, "delay");
    if (l)
        lines = strtol(l, NULL, 10);
    if (d)
        delay = strtol(d, NULL, 10);
    g_prod = (struct producer){.s = pw_http_reply_stream(req, 200, "application/json"),
                               .lines = (int)lines,
                               .delay_ms = (int)delay};
    pthread_create(&g_prod_thread, NULL, produce, &g_prod);
}

static const struct pw_http_route routes[] = {
    {"GET", "/items/{id}", h_item},
    {"DELETE", "/items/{id}", h_item},
    {"POST", "/upload", h_post},
    {"GET", "/stream", h_stream},
    {"*", NULL, NULL},
};

static pw_http_server *g_srv;
static char g_base[64];

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    pw_buf_append(arg, p, size * n);
    return size * n;
}

/* Performs one request; returns the status, fills body and headers (both capped). */
static long fetch(const char *method, const char *path, const char *body, long body_len, bool chunked, pw_buf *out,
                  pw_buf *headers, long timeout_ms)
{
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "%s%s", g_base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    struct curl_slist *hdrs = NULL;
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, body_len);
        if (chunked) {
            hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        }
    }
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return status;
}

static int setup(void **state)
{
    (void)state;
    struct pw_http_config cfg = {.listen = "127.0.0.1:0", .routes = routes, .max_body = 1000, .threads = 2};
    if (pw_http_server_new(&cfg, &g_srv) != 0)
        return -1;
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", pw_http_server_port(g_srv));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pw_http_server_free(g_srv);
    return 0;
}

static void test_route_params_query(void **state)
{
    (void)state;
    pw_buf body, hdr;
    pw_buf_init(&body, 1 << 16);
    pw_buf_init(&hdr, 1 << 16);
    assert_int_equal(fetch("GET", "/items/abc?q=a%20b", NULL, 0, false, &body, &hdr, 5000), 200);
    json_t *o = json_loads(body.p, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "id")), "abc");
    assert_string_equal(json_string_value(json_object_get(o, "q")), "a b");
    assert_non_null(strstr(hdr.p, "application/json"));
    json_decref(o);
    pw_buf_fini(&body);
    pw_buf_fini(&hdr);
}

static void test_not_found_and_method(void **state)
{
    (void)state;
    pw_buf body, hdr;
    pw_buf_init(&body, 1 << 16);
    pw_buf_init(&hdr, 1 << 16);
    assert_int_equal(fetch("GET", "/nothing", NULL, 0, false, &body, &hdr, 5000), 404);
    assert_non_null(strstr(body.p, "\"reason\":\"NotFound\""));
    pw_buf_reset(&body);
    pw_buf_reset(&hdr);
    assert_int_equal(fetch("PUT", "/items/x", NULL, 0, false, &body, &hdr, 5000), 405);
    assert_non_null(strstr(hdr.p, "Allow: GET, DELETE"));
    pw_buf_reset(&body);
    /* "{id}" must not match an empty segment */
    assert_int_equal(fetch("GET", "/items/", NULL, 0, false, &body, &hdr, 5000), 404);
    pw_buf_fini(&body);
    pw_buf_fini(&hdr);
}

static void test_body_caps(void **state)
{
    (void)state;
    static char big[5000];
    memset(big, 'x', sizeof big);
    pw_buf body, hdr;
    pw_buf_init(&body, 1 << 16);
    pw_buf_init(&hdr, 1 << 16);
    assert_int_equal(fetch("POST", "/upload", big, 999, false, &body, &hdr, 5000), 201);
    assert_string_equal(body.p, "999");
    pw_buf_reset(&body);
    assert_int_equal(fetch("POST", "/upload", big, sizeof big, false, &body, &hdr, 5000), 413);
    assert_non_null(strstr(body.p, "TooLarge"));
    pw_buf_reset(&body);
    assert_int_equal(fetch("POST", "/upload", big, sizeof big, true, &body, &hdr, 5000), 413);
    pw_buf_reset(&body);
    assert_int_equal(fetch("POST", "/upload", big, 10, true, &body, &hdr, 5000), 201);
    assert_string_equal(body.p, "10");
    pw_buf_fini(&body);
    pw_buf_fini(&hdr);
}

/* Sends raw bytes (a whole request, body included, as a client that does not wait for 100-continue)
 * on a new connection and reads the reply until the server closes or 5 s pass. */
static void raw_exchange(const char *head, size_t body_len, pw_buf *reply)
{
    int port = pw_http_server_port(g_srv);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    assert_int_equal(send(fd, head, strlen(head), MSG_NOSIGNAL), (ssize_t)strlen(head));
    static char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    for (size_t sent = 0; sent < body_len;) {
        size_t n = body_len - sent < sizeof chunk ? body_len - sent : sizeof chunk;
        ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
        assert_true(w > 0); /* the server reads (and discards) the body: the client is never cut off */
        sent += (size_t)w;
    }
    char buf[4096];
    ssize_t r;
    while ((r = recv(fd, buf, sizeof buf, 0)) > 0) {
        pw_buf_append(reply, buf, (size_t)r);
        if (strstr(reply->p, "\r\n\r\n") && strchr(strstr(reply->p, "\r\n\r\n"), '}'))
            break;
    }
    close(fd);
}

/* Over-large requests get the JSON error body, readable by the client: a body over the cap sent
 * whole without Expect (413), a URI over PW_HTTP_MAX_URI (414), header fields over
 * PW_HTTP_MAX_HEADERS (431). */
static void test_limits_json(void **state)
{
    (void)state;
    pw_buf reply;
    pw_buf_init(&reply, 1 << 20);
    raw_exchange("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6000\r\n\r\n", 6000, &reply);
    assert_non_null(strstr(reply.p, "HTTP/1.1 413"));
    assert_non_null(strstr(reply.p, "TooLarge"));
    assert_non_null(strstr(reply.p, "application/json"));
    pw_buf_reset(&reply);
    static char head[PW_HTTP_MAX_HEADERS * 2];
    snprintf(head, sizeof head, "GET /items/");
    size_t n = strlen(head);
    memset(head + n, 'a', PW_HTTP_MAX_URI + 10);
    snprintf(head + n + PW_HTTP_MAX_URI + 10, sizeof head - n - PW_HTTP_MAX_URI - 10, " HTTP/1.1\r\nHost: x\r\n\r\n");
    raw_exchange(head, 0, &reply);
    assert_non_null(strstr(reply.p, "HTTP/1.1 414"));
    assert_non_null(strstr(reply.p, "TooLarge"));
    assert_non_null(strstr(reply.p, "application/json"));
    pw_buf_reset(&reply);
    n = (size_t)snprintf(head, sizeof head, "GET /items/1 HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; n + 1100 < sizeof head && i < 40; i++) {
        n += (size_t)snprintf(head + n, sizeof head - n, "X-Filler-%d: ", i);
        memset(head + n, 'b', 1000);
        n += 1000;
        n += (size_t)snprintf(head + n, sizeof head - n, "\r\n");
    }
    snprintf(head + n, sizeof head - n, "\r\n");
    raw_exchange(head, 0, &reply);
    assert_non_null(strstr(reply.p, "HTTP/1.1 431"));
    assert_non_null(strstr(reply.p, "TooLarge"));
    assert_non_null(strstr(reply.p, "application/json"));
    pw_buf_fini(&reply);
}

/* A server with PW_HTTP_SMALL_CONN_MEMORY (the agent listener: thousands of long polls): a head with
 * a large bearer token and a body many times the connection memory are served (the body streams
 * through in pieces), and a head past the connection memory gets libmicrohttpd's own plain 431, not
 * our JSON one: the smaller pool is the one in use. */
static void test_small_conn_memory(void **state)
{
    (void)state;
    pw_http_server *keep = g_srv;
    char keep_base[sizeof g_base];
    memcpy(keep_base, g_base, sizeof g_base);
    struct pw_http_config cfg = {.listen = "127.0.0.1:0", .routes = routes, .max_body = 1u << 20, .threads = 2,
                                 .conn_memory = PW_HTTP_SMALL_CONN_MEMORY};
    assert_int_equal(pw_http_server_new(&cfg, &g_srv), 0);
    static char head[PW_HTTP_SMALL_CONN_MEMORY * 2];
    size_t n = (size_t)snprintf(head, sizeof head,
                                "POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                "Content-Length: 300000\r\nAuthorization: Bearer ");
    memset(head + n, 't', 6000);
    snprintf(head + n + 6000, sizeof head - n - 6000, "\r\n\r\n");
    pw_buf reply;
    pw_buf_init(&reply, 1 << 20);
    raw_exchange(head, 300000, &reply);
    assert_non_null(strstr(reply.p, "HTTP/1.1 201"));
    assert_non_null(strstr(reply.p, "X-Body-Length: 300000"));
    pw_buf_reset(&reply);
    n = (size_t)snprintf(head, sizeof head, "GET /items/1 HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; n + 1100 < sizeof head - 4 && i < 40; i++) {
        n += (size_t)snprintf(head + n, sizeof head - n, "X-Filler-%d: ", i);
        memset(head + n, 'b', 1000);
        n += 1000;
        n += (size_t)snprintf(head + n, sizeof head - n, "\r\n");
    }
    snprintf(head + n, sizeof head - n, "\r\n");
    raw_exchange(head, 0, &reply);
    assert_non_null(strstr(reply.p, "HTTP/1.1 431"));
    assert_null(strstr(reply.p, "application/json"));
    pw_buf_fini(&reply);
    pw_http_server_free(g_srv);
    g_srv = keep;
    memcpy(g_base, keep_base, sizeof keep_base);
}

static void test_stream(void **state)
{
    (void)state;
    pw_buf body, hdr;
    pw_buf_init(&body, 1 << 16);
    pw_buf_init(&hdr, 1 << 16);
    assert_int_equal(fetch("GET", "/stream?lines=5&delay=20", NULL, 0, false, &body, &hdr, 5000), 200);
    pthread_join(g_prod_thread, NULL);
    assert_string_equal(body.p, "line 0\nline 1\nline 2\nline 3\nline 4\n");
    assert_non_null(strstr(hdr.p, "chunked"));
    pw_buf_fini(&body);
    pw_buf_fini(&hdr);
}

static void test_stream_client_gone(void **state)
{
    (void)state;
    pw_buf body, hdr;
    pw_buf_init(&body, 1 << 16);
    pw_buf_init(&hdr, 1 << 16);
    /* the client gives up after 300 ms; the producer must learn it and stop long before 200 lines */
    fetch("GET", "/stream?lines=200&delay=20", NULL, 0, false, &body, &hdr, 300);
    pthread_join(g_prod_thread, NULL);
    assert_true(g_prod.written < 200);
    assert_true(g_prod.written >= 1);
    pw_buf_fini(&body);
    pw_buf_fini(&hdr);
}

static void *fetch_quietly(void *arg)
{
    (void)arg;
    pw_buf body, hdr;
    pw_buf_init(&body, 1 << 16);
    pw_buf_init(&hdr, 1 << 16);
    fetch("GET", "/stream?lines=5&delay=1000", NULL, 0, false, &body, &hdr, 10000);
    pw_buf_fini(&body);
    pw_buf_fini(&hdr);
    return NULL;
}

/* A producer still writing when the server is freed: its writes fail, its close must not touch the
 * freed server (ASan watches). Uses a server of its own. */
static void test_stream_outlives_server(void **state)
{
    (void)state;
    pw_http_server *keep = g_srv;
    char keep_base[64];
    memcpy(keep_base, g_base, sizeof keep_base);
    struct pw_http_config cfg = {.listen = "127.0.0.1:0", .routes = routes, .threads = 1};
    assert_int_equal(pw_http_server_new(&cfg, &g_srv), 0);
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", pw_http_server_port(g_srv));
    pthread_t client;
    g_prod.written = 0;
    pthread_create(&client, NULL, fetch_quietly, NULL);
    for (int i = 0; i < 200 && g_prod.written < 1; i++)
        pw_clock_sleep_ms(10);
    assert_true(g_prod.written >= 1);
    /* the producer sleeps 1 s between lines: it closes its stream only after the server is gone */
    pw_http_server_free(g_srv);
    pthread_join(g_prod_thread, NULL);
    pthread_join(client, NULL);
    assert_true(g_prod.written < 5);
    g_srv = keep;
    memcpy(g_base, keep_base, sizeof keep_base);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_params_query),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_body_caps),
        cmocka_unit_test(test_limits_json),
        cmocka_unit_test(test_small_conn_memory),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_client_gone),
        cmocka_unit_test(test_stream_outlives_server),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
