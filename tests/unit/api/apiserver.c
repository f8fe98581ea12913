/* apiserver.c: the REST API on an engine with no cluster, for the api unit tests (apiserver.h). */
#include "apiserver.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"

int pw_apiserver_start(struct pw_apiserver *s, const char *url, int64_t history_ms)
{
    memset(s, 0, sizeof *s);
    int rc = pw_store_open(url, &s->store, NULL);
    if (rc != 0)
        return rc;
    struct pw_engine_config cfg = {.store = s->store, .history_ms = history_ms};
    rc = pw_nocluster_init(&s->nc);
    if (rc == 0) {
        pw_nocluster_apply(&s->nc, &cfg);
        rc = pw_engine_new(&cfg, &s->engine);
        if (rc != 0)
            s->engine = NULL;
    }
    if (rc == 0)
        rc = pw_engine_start(s->engine);
    if (rc == 0) {
        s->ctx.engine = s->engine;
        struct pw_http_config h = {.listen = "127.0.0.1:0", .routes = pw_api_routes, .ctx = &s->ctx};
        rc = pw_http_server_new(&h, &s->srv);
        if (rc != 0)
            s->srv = NULL;
    }
    if (rc != 0) {
        pw_apiserver_stop(s);
        return rc;
    }
    s->port = pw_http_server_port(s->srv);
    return 0;
}

void pw_apiserver_stop(struct pw_apiserver *s)
{
    if (!s->store)
        return;
    pw_http_server_free(s->srv);
    pw_engine_free(s->engine);
    pw_nocluster_fini(&s->nc);
    pw_store_close(s->store);
    memset(s, 0, sizeof *s);
}

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    pw_buf_append(arg, p, sz * n);
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct pw_apiserver_resp *r = arg;
    if (strncasecmp(p, "Location: ", 10) == 0) {
        snprintf(r->location, sizeof r->location, "%.*s", (int)(sz * n - 10), p + 10);
        r->location[strcspn(r->location, "\r\n")] = 0;
    }
    return sz * n;
}

struct pw_apiserver_resp pw_apiserver_call(const struct pw_apiserver *s, const char *method, const char *path,
                                           const char *ctype, const char *body)
{
    struct pw_apiserver_resp r = {0};
    CURL *c = curl_easy_init();
    if (!c)
        return r;
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    pw_buf b;
    pw_buf_init(&b, 0);
    struct curl_slist *h = NULL;
    if (ctype) {
        char hd[128];
        snprintf(hd, sizeof hd, "Content-Type: %s", ctype);
        h = curl_slist_append(h, hd);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        r.body = b.p ? json_loads(b.p, 0, NULL) : NULL;
        if (!r.body && b.p)
            r.body = json_string(b.p);
    }
    pw_buf_fini(&b);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return r;
}
