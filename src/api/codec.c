/* codec.c: the REST API's request decoding (content type, JSON, the create request through
 * pw_taskspec_parse) and the error body of ARCHITECTURE §3. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "base/err.h"
#include "base/mem.h"

json_t *pw_api_error(int code, const char *message, const char *field)
{
    json_t *o = json_object();
    json_object_set_new(o, "code", json_integer(pw_err_http_status(code)));
    json_object_set_new(o, "reason", json_string(pw_err_reason(code)));
    json_object_set_new(o, "message", json_string(message ? message : pw_strerror(code)));
    if (field) {
        const char *colon = message ? strstr(message, ": ") : NULL;
        json_t *d = json_object();
        json_object_set_new(d, "field", json_string(field));
        json_object_set_new(d, "message", json_string(colon ? colon + 2 : message ? message : ""));
        json_t *arr = json_array();
        json_array_append_new(arr, d);
        json_object_set_new(o, "details", arr);
    }
    return o;
}

/* True for application/json, with or without parameters (charset). */
static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    return n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0;
}

json_t *pw_api_field_errors(const struct pw_field_errors *errs)
{
    const struct pw_field_error *first = &errs->e[0];
    char *msg = pw_xasprintf("%s: %s", first->field, first->message);
    json_t *o = pw_api_error(PW_EINVAL, msg, NULL);
    free(msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < errs->n; i++) {
        json_t *d = json_object();
        json_object_set_new(d, "field", json_string(errs->e[i].field));
        json_object_set_new(d, "message", json_string(errs->e[i].message));
        json_array_append_new(arr, d);
    }
    json_object_set_new(o, "details", arr);
    return o;
}

int pw_api_parse_json(const char *content_type, const char *body, size_t len, json_t **out, json_t **err)
{
    if (!is_json_type(content_type)) {
        char *msg = pw_xasprintf("Content-Type must be application/json (got \"%s\")",
                                 content_type ? content_type : "");
        *err = pw_api_error(PW_EMEDIATYPE, msg, NULL);
        free(msg);
        return PW_EMEDIATYPE;
    }
    json_error_t jerr;
    json_t *req = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        char *msg = pw_xasprintf("body: invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                                 jerr.column);
        *err = pw_api_error(PW_EINVAL, msg, "body");
        free(msg);
        return PW_EINVAL;
    }
    *out = req;
    return 0;
}

int pw_api_parse_create(const char *content_type, const char *body, size_t len, struct pw_taskspec *out,
                        json_t **err)
{
    json_t *req = NULL;
    int rc = pw_api_parse_json(content_type, body, len, &req, err);
    if (rc != 0)
        return rc;
    struct pw_field_errors errs;
    rc = pw_taskspec_parse(req, out, &errs);
    json_decref(req);
    if (rc != 0)
        *err = pw_api_field_errors(&errs);
    return rc;
}
