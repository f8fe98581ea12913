/* buf.h: a growable byte buffer with a hard size cap, for anything filled from the network.
 *
 * Life cycle: pw_buf_init() / pw_buf_fini() on an embedded struct. The struct is shown because it is
 * embedded everywhere and read directly (p, len). p is always NUL-terminated after a successful append.
 * Thread model: none; one owner at a time. */
#ifndef PW_BUF_H
#define PW_BUF_H

#include <stddef.h>

typedef struct pw_buf {
    char *p;    /* owned; NULL until the first append */
    size_t len; /* bytes in use, not counting the terminating NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* the most len may reach; 0 = no cap (only for data we produce ourselves) */
} pw_buf;

void pw_buf_init(pw_buf *b, size_t max);
void pw_buf_fini(pw_buf *b);
/* Empties the buffer, keeping its memory. */
void pw_buf_reset(pw_buf *b);
/* Appends; PW_ETOOLARGE when len would pass max (nothing is appended then). */
int pw_buf_append(pw_buf *b, const void *data, size_t n);
int pw_buf_puts(pw_buf *b, const char *s);
int pw_buf_printf(pw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Removes the first n bytes (n <= len). */
void pw_buf_consume(pw_buf *b, size_t n);
/* Hands the contents to the caller (who frees with free()) and leaves b empty; never NULL. */
char *pw_buf_steal(pw_buf *b);

#endif
