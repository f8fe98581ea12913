/* digest.h: SHA-256 in lowercase hex over one or more byte strings (OpenSSL's EVP), for the names,
 * ids and cache keys that are hashes: Job names, agent assignment ids, token cache keys.
 * Thread model: pure functions, safe from any thread. */
#ifndef PW_BASE_DIGEST_H
#define PW_BASE_DIGEST_H

#include <stddef.h>

#define PW_SHA256_HEX_LEN 64

/* out (PW_SHA256_HEX_LEN + 1 bytes) gets the hex SHA-256 of the n parts, each parts[i] of lens[i]
 * bytes, hashed one after the other (callers that need ("ab","c") != ("a","bc") include a separator
 * such as the NUL in the lengths). */
void pw_sha256_hex(const void *const *parts, const size_t *lens, size_t n, char out[PW_SHA256_HEX_LEN + 1]);

#endif
