/* predictions.c: GET /api/v1/predictions (docs/api.md): the pools prewarmd has learnt, or with
 * ?pool= one pool's ranking by expected benefit and why each image is or is not selected. The
 * optional ?maxBytesPerNode=, ?minProbability=, ?maxImages=, ?targetHitRate= preview the selection a
 * policy's "predict" object with those values would make. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/err.h"
#include "base/mem.h"
#include "predict/predict.h"

static void reply_error(pw_http_req *req, int code, const char *message, const char *field)
{
    pw_http_reply_json(req, pw_err_http_status(code), pw_api_error(code, message, field));
}

/* The query's limits as a "predict" object (numbers parsed as JSON); 0, or the 400 already sent. */
static int query_limits(pw_http_req *req, struct pw_predict_limits *lim)
{
    static const char *const names[] = {"maxBytesPerNode", "minProbability", "maxImages", "targetHitRate"};
    json_t *spec = json_object();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = pw_http_req_query(req, names[i]);
        if (!v || !*v)
            continue;
        json_t *num = json_loads(v, JSON_DECODE_ANY, NULL);
        if (!json_is_number(num)) {
            char *msg = pw_xasprintf("%s: must be a number", names[i]);
            reply_error(req, PW_EINVAL, msg, names[i]);
            free(msg);
            json_decref(num);
            json_decref(spec);
            return PW_EINVAL;
        }
        json_object_set_new(spec, names[i], num);
    }
    const char *pool_label;
    char *field = NULL, *msg = NULL;
    int rc = pw_predict_parse_spec(spec, lim, &pool_label, &field, &msg);
    json_decref(spec);
    if (rc != 0) {
        const char *f = strncmp(field, "predict.", 8) == 0 ? field + 8 : field;
        char *text = pw_xasprintf("%s: %s", f, msg);
        reply_error(req, PW_EINVAL, text, f);
        free(text);
        free(field);
        free(msg);
    }
    return rc;
}

void pw_api_h_predictions(pw_http_req *req, void *ctx)
{
    struct pw_api_ctx *c = ctx;
    if (!c->predict) {
        reply_error(req, PW_ENOTFOUND, "prediction is off (prewarmd --predict=false)", NULL);
        return;
    }
    struct pw_predict_limits lim;
    if (query_limits(req, &lim) != 0)
        return;
    const char *pool = pw_http_req_query(req, "pool");
    json_t *out = NULL;
    char *msg = NULL;
    int rc = pw_predict_query(c->predict, pool && *pool ? pool : NULL, &lim, &out, &msg);
    if (rc != 0) {
        reply_error(req, rc, msg, "pool");
        free(msg);
        return;
    }
    pw_http_reply_json(req, 200, out);
}
