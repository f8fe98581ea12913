/* sv.c: string views and scalar parsers shared by the API, the CLI, and kubesim. */
#include "base/sv.h"

#include "base/err.h"
#include "base/mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

pw_sv pw_sv_from(const char *s)
{
    return (pw_sv){s, s ? strlen(s) : 0};
}

bool pw_sv_eq_cstr(pw_sv a, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return a.n == n && (n == 0 || memcmp(a.p, s, n) == 0);
}

pw_sv pw_sv_trim(pw_sv a)
{
    while (a.n && isspace((unsigned char)a.p[0])) {
        a.p++;
        a.n--;
    }
    while (a.n && isspace((unsigned char)a.p[a.n - 1]))
        a.n--;
    return a;
}

pw_sv pw_sv_cut(pw_sv a, char c, pw_sv *head)
{
    const char *hit = a.n ? memchr(a.p, c, a.n) : NULL;
    if (!hit) {
        *head = a;
        return (pw_sv){NULL, 0};
    }
    *head = (pw_sv){a.p, (size_t)(hit - a.p)};
    return (pw_sv){hit + 1, a.n - (size_t)(hit - a.p) - 1};
}

char *pw_sv_dup(pw_sv a)
{
    return pw_xstrndup(a.p ? a.p : "", a.n);
}

int pw_parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s)
        return PW_EINVAL;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return PW_EINVAL;
    *out = v;
    return 0;
}

int pw_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (unsigned i = 0; i < 6; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return PW_EINVAL;
}

int pw_parse_duration_ms(const char *s, long long *out)
{
    if (!s || !*s)
        return PW_EINVAL;
    long long total = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return PW_EINVAL;
        long long v = 0;
        while (isdigit((unsigned char)*p)) {
            v = v * 10 + (*p - '0');
            if (v > 1000000000LL)
                return PW_EINVAL;
            p++;
        }
        long long unit;
        if (strncmp(p, "ms", 2) == 0) {
            unit = 1;
            p += 2;
        } else if (*p == 's') {
            unit = 1000;
            p++;
        } else if (*p == 'm') {
            unit = 60000;
            p++;
        } else if (*p == 'h') {
            unit = 3600000;
            p++;
        } else if (*p == '\0' && p == s + strspn(s, "0123456789")) {
            unit = 1000; /* a bare number is seconds */
        } else {
            return PW_EINVAL;
        }
        total += v * unit;
    }
    *out = total;
    return 0;
}
