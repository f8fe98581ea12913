/* fuzz_retryafter.c: a webhook receiver's Retry-After header (RFC 9110: delay-seconds or an
 * HTTP-date) through pw_wh_retry_after_ms (src/webhook/policy.c, libcurl's curl_getdate for dates),
 * and the retry schedule it competes with, pw_wh_backoff_ms.
 * Input: the header's value (the first 8 bytes also pick the backoff's arguments).
 * Checks: the delay is -1 (not a Retry-After) or >= 0; a value of digits alone (with the blanks the
 * parser skips) is those seconds; a date far in the past is 0; the backoff stays within
 * [d/2, d] of its capped doubling. */
#include <ctype.h>

#include "fuzz.h"
#include "webhook/webhook_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *v = fuzz_cstr(data, size);
    const int64_t now = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    int64_t d = pw_wh_retry_after_ms(v, now);
    if (d < -1)
        abort();
    /* digits only: the seconds, when below the parser's 100-year bound */
    const char *p = v;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t nd = 0;
    while (isdigit((unsigned char)p[nd]))
        nd++;
    const char *q = p + nd;
    while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
        q++;
    if (nd > 0 && nd < 10 && !*q) {
        long long s = strtoll(p, NULL, 10);
        if (d != s * 1000)
            abort();
    }
    int64_t past = pw_wh_retry_after_ms(v, INT64_MAX / 2);
    if (d > 0 && past > d)
        abort(); /* a later now never makes the wait longer */
    if (size >= 8) {
        int attempt = data[0] % 40;
        int64_t base = 1 + data[1] * 100LL, max = base * (1 + data[2] % 64);
        double rnd = data[3] / 256.0;
        int64_t b = pw_wh_backoff_ms(attempt, base, max, rnd);
        if (b < 0 || b > max || b < (base < max ? base : max) / 2)
            abort();
    }
    free(v);
    return 0;
}
