/* file.h: reading a whole small file (certificates, CA bundles) into memory.
 *
 * Thread model: pure apart from the file system; safe from any thread. */
#ifndef PW_FILE_H
#define PW_FILE_H

#include <stddef.h>

/* Reads the file at path, at most max bytes: 0 with *out (NUL-terminated, caller frees) and *len (may
 * be NULL); PW_EIO when it cannot be opened or read (errno says why), PW_ETOOLARGE when it is longer
 * than max. */
int pw_file_read(const char *path, size_t max, char **out, size_t *len);

#endif
