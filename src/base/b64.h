/* b64.h: base64 (RFC 4648) encoding and decoding, standard and URL-safe alphabets.
 * Thread model: pure functions. */
#ifndef PW_B64_H
#define PW_B64_H

#include <stdbool.h>
#include <stddef.h>

/* The base64 text of the n bytes at p (p may be NULL when n == 0), NUL-terminated, no line breaks.
 * url false: standard alphabet ("+/") with "=" padding (Kubernetes data fields, kubeconfigs);
 * url true: URL-safe alphabet ("-_") without padding (tokens in query strings).
 * Returns a new string the caller frees with free(); aborts on out-of-memory. */
char *pw_b64_encode(const void *p, size_t n, bool url);

/* Decodes the n characters at s. Accepts both alphabets ("+/" and "-_"), with or without "="
 * padding; ASCII whitespace (space, tab, CR, LF) is skipped anywhere. Rejects any other character,
 * data after padding, more padding than the last quantum needs, and a dangling single character.
 * On success returns 0 and sets *out to a new buffer of *out_len bytes followed by a NUL (not counted),
 * which the caller frees with free(); on failure returns PW_EINVAL and leaves *out and *out_len
 * untouched. */
int pw_b64_decode(const char *s, size_t n, void **out, size_t *out_len);

#endif
