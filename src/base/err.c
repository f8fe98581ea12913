/* err.c: the table behind pw_strerror(), pw_err_http_status() and pw_err_reason(). */
#include "base/err.h"

#include <stddef.h>

struct err_row {
    int code;
    int http;
    const char *reason;
    const char *message;
};

static const struct err_row err_table[] = {
    {PW_OK, 200, "OK", "success"},
    {PW_EINVAL, 400, "Invalid", "invalid argument"},
    {PW_ENOMEM, 500, "Internal", "out of memory"},
    {PW_ENOTFOUND, 404, "NotFound", "not found"},
    {PW_EEXIST, 409, "Conflict", "already exists"},
    {PW_ECONFLICT, 409, "Conflict", "conflict"},
    {PW_EIO, 503, "Unavailable", "input/output error"},
    {PW_ETIMEDOUT, 503, "Unavailable", "timed out"},
    {PW_ETOOLARGE, 413, "TooLarge", "too large"},
    {PW_EUNAVAIL, 503, "Unavailable", "unavailable"},
    {PW_EAUTH, 401, "Unauthorized", "unauthorized"},
    {PW_EFORBIDDEN, 403, "Forbidden", "forbidden"},
    {PW_EGONE, 410, "Expired", "expired"},
    {PW_ETOOMANY, 429, "TooManyRequests", "too many requests"},
    {PW_ECANCELED, 409, "Conflict", "cancelled"},
    {PW_EPROTO, 503, "Unavailable", "protocol error"},
    {PW_EINTERNAL, 500, "Internal", "internal error"},
    {PW_EMEDIATYPE, 415, "UnsupportedMediaType", "unsupported media type"},
};

static const struct err_row *err_find(int code)
{
    for (unsigned i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
        if (err_table[i].code == code)
            return &err_table[i];
    return NULL;
}

const char *pw_strerror(int code)
{
    const struct err_row *r = err_find(code);
    return r ? r->message : "unknown error";
}

int pw_err_http_status(int code)
{
    const struct err_row *r = err_find(code);
    return r ? r->http : 500;
}

const char *pw_err_reason(int code)
{
    const struct err_row *r = err_find(code);
    return r ? r->reason : "Internal";
}
