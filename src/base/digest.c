/* digest.c: SHA-256 hex over byte strings (digest.h). */
#include "base/digest.h"

#include <openssl/evp.h>
#include <stdio.h>

void pw_sha256_hex(const void *const *parts, const size_t *lens, size_t n, char out[PW_SHA256_HEX_LEN + 1])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    for (size_t i = 0; i < n; i++)
        EVP_DigestUpdate(c, parts[i], lens[i]);
    EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[PW_SHA256_HEX_LEN] = '\0';
}
