/* ctlbody.c: bodies and errors of the test-control endpoints (ctlbody.h). */
#include "sim/ctlbody.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sim_ctl_error(pw_http_req *req, int status, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pw_http_reply_json(req, status, json_pack("{s:s}", "error", buf));
}

json_t *sim_ctl_body(pw_http_req *req)
{
    size_t len = 0;
    const char *body = pw_http_req_body(req, &len);
    json_error_t err;
    json_t *j = len ? json_loadb(body, len, 0, &err) : json_object();
    if (!j) {
        sim_ctl_error(req, 400, "the body is not JSON: %s", err.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        sim_ctl_error(req, 400, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

bool sim_ctl_known_fields(pw_http_req *req, const json_t *obj, const char *const *allowed, const char *where)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, k) == 0;
        if (!ok) {
            sim_ctl_error(req, 400, "%s%s: unknown field", where, k);
            return false;
        }
    }
    return true;
}

bool sim_ctl_number(pw_http_req *req, const json_t *obj, const char *key, double min, double max, double def,
                    const char *where, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = def;
        return true;
    }
    if (!json_is_number(v) || json_number_value(v) < min || json_number_value(v) > max) {
        sim_ctl_error(req, 400, "%s%s: must be a number from %g to %g", where, key, min, max);
        return false;
    }
    *out = json_number_value(v);
    return true;
}

void sim_ctl_methods(pw_http_req *req, void *arg, sim_ctl_fn post, sim_ctl_fn get, sim_ctl_fn del, const char *path)
{
    const char *m = pw_http_req_method(req);
    sim_ctl_fn fn = strcmp(m, "POST") == 0 ? post : strcmp(m, "GET") == 0 ? get : strcmp(m, "DELETE") == 0 ? del : NULL;
    if (fn)
        fn(req, arg);
    else
        sim_ctl_error(req, 405, "%s: GET, POST or DELETE", path);
}
