/* err.h: prewarm's one error enum, its messages, and its mapping to HTTP statuses.
 *
 * Every fallible function in the project returns int: 0 on success, a negative PW_E* code otherwise.
 * Thread model: pure functions, safe from any thread. */
#ifndef PW_ERR_H
#define PW_ERR_H

enum {
    PW_OK = 0,
    PW_EINVAL = -1,      /* bad input: a parse or validation failure */
    PW_ENOMEM = -2,      /* an allocation or a size cap was exceeded */
    PW_ENOTFOUND = -3,   /* the object does not exist */
    PW_EEXIST = -4,      /* the object already exists */
    PW_ECONFLICT = -5,   /* state or version conflict */
    PW_EIO = -6,         /* I/O error: file, socket, store */
    PW_ETIMEDOUT = -7,   /* a deadline passed */
    PW_ETOOLARGE = -8,   /* input over its size cap */
    PW_EUNAVAIL = -9,    /* a dependency is unavailable: retry later */
    PW_EAUTH = -10,      /* authentication failed */
    PW_EFORBIDDEN = -11, /* authenticated, not allowed */
    PW_EGONE = -12,      /* a resource version or token expired */
    PW_ETOOMANY = -13,   /* rate limited */
    PW_ECANCELED = -14,  /* the operation was cancelled */
    PW_EPROTO = -15,     /* the peer broke a protocol */
    PW_EINTERNAL = -16,  /* a bug: an invariant did not hold */
    PW_EMEDIATYPE = -17, /* unsupported media type */
    PW_ELAST = -18
};

/* Returns a static English message for code; never NULL (unknown codes give "unknown error"). */
const char *pw_strerror(int code);

/* Returns the HTTP status that best reports code (0 -> 200, PW_EINVAL -> 400, ...). */
int pw_err_http_status(int code);

/* Returns the API "reason" word for code, as ARCHITECTURE.md §3 lists them ("Invalid", "NotFound", ...). */
const char *pw_err_reason(int code);

#endif
