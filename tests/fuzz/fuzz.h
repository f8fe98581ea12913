/* fuzz.h: what every libFuzzer driver in tests/fuzz shares: the entry point's prototype (the build
 * has -Wmissing-prototypes) and the two ways a driver turns the fuzzer's bytes into parser input.
 * Each driver is one file, tests/fuzz/fuzz_NAME.c, with seeds in tests/fuzz/corpus/NAME/
 * (tests/fuzz/README.md). Included by exactly one file per program (it defines
 * LLVMFuzzerInitialize). */
#ifndef PW_TESTS_FUZZ_H
#define PW_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Once, before the first input: the parsers' warnings about bad input would be most of the work. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    pw_log_set_level(PW_LOG_OFF);
    return 0;
}

/* The bytes as a NUL-terminated string (an embedded NUL ends it, as it would a C caller's text).
 * Caller frees. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Splits the input at its first '\n': *head gets the text before it (NUL-terminated, caller frees),
 * *rest and *rest_n the bytes after it (borrowed; empty when there is no '\n'). */
static inline char *fuzz_head(const uint8_t *data, size_t size, const uint8_t **rest, size_t *rest_n)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t n = nl ? (size_t)(nl - data) : size;
    *rest = nl ? nl + 1 : data + size;
    *rest_n = nl ? size - n - 1 : 0;
    return fuzz_cstr(data, n);
}

#endif
