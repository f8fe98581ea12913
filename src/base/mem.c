/* mem.c: the aborting allocators. An out-of-memory in a service this size is not recoverable in any
 * useful way, and checking every allocation hides the checks that matter. */
#include "base/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void mem_die(size_t n)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", n);
    abort();
}

void *pw_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        mem_die(n);
    return p;
}

void *pw_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        mem_die(count * n);
    return p;
}

void *pw_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        mem_die(n);
    return q;
}

char *pw_xstrdup(const char *s)
{
    return pw_xstrndup(s, strlen(s));
}

char *pw_xstrndup(const char *s, size_t n)
{
    char *p = pw_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *pw_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0)
        mem_die(0);
    return out;
}
