/* file.c: whole small files into memory (file.h). */
#include "base/file.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"
#include "base/mem.h"

int pw_file_read(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return PW_EIO;
    size_t cap = 4096, n = 0;
    char *buf = pw_xmalloc(cap);
    int rc = 0;
    for (;;) {
        if (n + 1 >= cap)
            buf = pw_xrealloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (n > max) {
            rc = PW_ETOOLARGE;
            break;
        }
        if (r == 0) {
            if (ferror(f))
                rc = PW_EIO;
            break;
        }
    }
    fclose(f);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}
