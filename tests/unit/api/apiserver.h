/* apiserver.h: for the api unit tests: prewarmd's REST API (pw_api_routes) served on a real HTTP
 * server at 127.0.0.1:0 by an engine with no cluster (nocluster.h: tasks stay pending) on a store of
 * the test's choice, and one request to it with libcurl.
 *
 * Thread model: one test thread uses an apiserver; the server's own threads answer. */
#ifndef PW_TESTS_APISERVER_H
#define PW_TESTS_APISERVER_H

#include <stdint.h>

#include <jansson.h>

#include "../engine/nocluster.h"
#include "api/api.h"
#include "store/store.h"

struct pw_apiserver {
    pw_store *store;
    pw_engine *engine;
    struct pw_nocluster nc;
    struct pw_api_ctx ctx;
    pw_http_server *srv;
    int port;
};

/* Opens the store at url, starts an engine on it (history_ms: its retention; 0: the default) and the
 * server. 0, or the first failing call's PW_E* code with s stopped (nothing to free). */
int pw_apiserver_start(struct pw_apiserver *s, const char *url, int64_t history_ms);
/* Stops the server and the engine and closes the store; s can be started again. A stopped (zeroed)
 * s is a no-op. */
void pw_apiserver_stop(struct pw_apiserver *s);

struct pw_apiserver_resp {
    long status;        /* 0: no answer */
    json_t *body;       /* the JSON answer, or a JSON string of a text answer, or NULL (caller decrefs) */
    char location[256]; /* the Location header, or "" */
};
/* One request: ctype the Content-Type (NULL: none), body the request body (NULL: none). */
struct pw_apiserver_resp pw_apiserver_call(const struct pw_apiserver *s, const char *method, const char *path,
                                           const char *ctype, const char *body);

#endif
