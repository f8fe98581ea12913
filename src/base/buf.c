/* buf.c: pw_buf, a capped growable buffer. */
#include "base/buf.h"

#include "base/err.h"
#include "base/mem.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

void pw_buf_init(pw_buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void pw_buf_fini(pw_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

void pw_buf_reset(pw_buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static int buf_reserve(pw_buf *b, size_t extra)
{
    if (b->max && b->len + extra > b->max)
        return PW_ETOOLARGE;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->p = pw_xrealloc(b->p, cap);
    b->cap = cap;
    return 0;
}

int pw_buf_append(pw_buf *b, const void *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int pw_buf_puts(pw_buf *b, const char *s)
{
    return pw_buf_append(b, s, strlen(s));
}

int pw_buf_printf(pw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return PW_EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void pw_buf_consume(pw_buf *b, size_t n)
{
    if (n >= b->len) {
        pw_buf_reset(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

char *pw_buf_steal(pw_buf *b)
{
    char *p = b->p ? b->p : pw_xstrdup("");
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}
