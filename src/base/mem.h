/* mem.h: allocation that aborts on out-of-memory, so callers carry no dead NULL checks.
 * Thread model: safe from any thread. */
#ifndef PW_MEM_H
#define PW_MEM_H

#include <stddef.h>

/* Each returns memory the caller frees with free(); on out-of-memory the process aborts. */
void *pw_xmalloc(size_t n);
void *pw_xcalloc(size_t count, size_t n);
void *pw_xrealloc(void *p, size_t n);
/* s must not be NULL. */
char *pw_xstrdup(const char *s);
char *pw_xstrndup(const char *s, size_t n);
/* printf into a new string; caller frees with free(). */
char *pw_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
