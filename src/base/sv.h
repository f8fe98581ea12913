/* sv.h: string views (pointer + length) for parsing without copies, and small string helpers.
 * Thread model: pure functions. */
#ifndef PW_SV_H
#define PW_SV_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pw_sv {
    const char *p; /* borrowed */
    size_t n;
} pw_sv;

#define PW_SV_LIT(s) ((pw_sv){(s), sizeof(s) - 1})

/* A view of a NUL-terminated string (borrowed). */
pw_sv pw_sv_from(const char *s);
bool pw_sv_eq_cstr(pw_sv a, const char *s);
/* Strips ASCII whitespace on both ends. */
pw_sv pw_sv_trim(pw_sv a);
/* Splits at the first c: *head gets what precedes it, the return value what follows (n == 0 and
 * p == NULL when c is absent, and *head is then the whole of a). */
pw_sv pw_sv_cut(pw_sv a, char c, pw_sv *head);
/* A NUL-terminated copy; caller frees with free(). */
char *pw_sv_dup(pw_sv a);

/* Parses a base-10 integer filling the whole string; PW_EINVAL otherwise (or out of [min,max]). */
int pw_parse_long(const char *s, long min, long max, long *out);
/* Parses a boolean as Go's strconv.ParseBool does (1 t T TRUE true True 0 f F FALSE false False). */
int pw_parse_bool(const char *s, bool *out);
/* Parses a duration like "90", "90s", "10m", "1h30m", "500ms" into milliseconds. */
int pw_parse_duration_ms(const char *s, long long *out);

#endif
