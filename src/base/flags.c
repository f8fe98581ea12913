/* flags.c: flag tables (flags.h). */
#include "base/flags.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/sv.h"

static int set_str(void *field, const char *value)
{
    *(const char **)field = value;
    return 0;
}

static int set_int(void *field, const char *value)
{
    long l;
    if (pw_parse_long(value, 0, 1000000000L, &l) != 0)
        return PW_EINVAL;
    *(long *)field = l;
    return 0;
}

static int set_double(void *field, const char *value)
{
    char *end;
    double d = strtod(value, &end);
    if (!*value || *end || !(d > 0))
        return PW_EINVAL;
    *(double *)field = d;
    return 0;
}

static int set_bool(void *field, const char *value)
{
    return pw_parse_bool(value, (bool *)field);
}

/* A duration as pw_parse_duration_ms reads it, with days too: "7d", "1d12h". */
static int set_duration(void *field, const char *value)
{
    long long ms = 0, days = 0;
    const char *d = strchr(value, 'd');
    if (d) {
        char *end;
        days = strtoll(value, &end, 10);
        if (end != d || end == value || days < 0 || days > 36500)
            return PW_EINVAL;
        value = d + 1;
    }
    if (*value && (pw_parse_duration_ms(value, &ms) != 0 || ms < 0))
        return PW_EINVAL;
    if (!*value && !d)
        return PW_EINVAL;
    *(long long *)field = ms + days * 86400000LL;
    return 0;
}

static int set_bytes(void *field, const char *value)
{
    char *end;
    if (!*value || *value == '-')
        return PW_EINVAL;
    unsigned long long v = strtoull(value, &end, 10);
    if (end == value)
        return PW_EINVAL;
    static const struct {
        const char *suffix;
        unsigned long long mult;
    } units[] = {{"", 1},           {"K", 1000ULL},       {"M", 1000000ULL},   {"G", 1000000000ULL},
                 {"T", 1000000000000ULL}, {"Ki", 1ULL << 10}, {"Mi", 1ULL << 20}, {"Gi", 1ULL << 30},
                 {"Ti", 1ULL << 40}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (v > (unsigned long long)(1LL << 62) / units[i].mult)
            return PW_EINVAL;
        *(long long *)field = (long long)(v * units[i].mult);
        return 0;
    }
    return PW_EINVAL;
}

static int set_list(void *field, const char *value)
{
    struct pw_flag_list *l = field;
    if (l->n == PW_FLAG_LIST_MAX || !*value)
        return PW_EINVAL;
    l->v[l->n++] = value;
    return 0;
}

static int (*const parsers[])(void *field, const char *value) = {
    [PW_FLAG_STR] = set_str,           [PW_FLAG_INT] = set_int,   [PW_FLAG_DOUBLE] = set_double,
    [PW_FLAG_BOOL] = set_bool,         [PW_FLAG_DURATION] = set_duration, [PW_FLAG_BYTES] = set_bytes,
    [PW_FLAG_LIST] = set_list,
};

static int flag_set(void *opts, const struct pw_flag *r, const char *value)
{
    return parsers[r->kind]((char *)opts + r->off, value);
}

void pw_flags_usage(FILE *f, const char *prog, const struct pw_flag *table, size_t n)
{
    fprintf(f, "usage: %s [flags]\n\nFlags (each also read from its environment variable):\n", prog);
    for (size_t i = 0; i < n; i++) {
        const struct pw_flag *r = &table[i];
        fprintf(f, "  --%-22s %-30s %s%s%s%s\n", r->flag, r->env ? r->env : "", r->help, r->def ? " (default " : "",
                r->def ? r->def : "", r->def ? ")" : "");
    }
}

int pw_flags_parse(const char *prog, const struct pw_flag *table, size_t n, void *opts, size_t opts_size, int argc,
                   char **argv)
{
    memset(opts, 0, opts_size);
    for (size_t i = 0; i < n; i++) {
        const struct pw_flag *r = &table[i];
        if (r->def)
            flag_set(opts, r, r->def);
        const char *ev = r->env ? getenv(r->env) : NULL;
        if (ev && flag_set(opts, r, ev) != 0) {
            fprintf(stderr, "%s: bad value \"%s\" in %s\n", prog, ev, r->env);
            return 2;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "%s: unexpected argument \"%s\"\n", prog, arg);
            return 2;
        }
        arg += 2;
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct pw_flag *r = NULL;
        for (size_t i = 0; i < n && !r; i++)
            if (strlen(table[i].flag) == len && strncmp(table[i].flag, arg, len) == 0)
                r = &table[i];
        if (!r) {
            fprintf(stderr, "%s: unknown flag --%.*s (see --help)\n", prog, (int)len, arg);
            return 2;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && r->kind == PW_FLAG_BOOL)
            value = "true";
        else if (!value && a + 1 < argc)
            value = argv[++a];
        if (!value || flag_set(opts, r, value) != 0) {
            fprintf(stderr, "%s: bad value for --%s\n", prog, r->flag);
            return 2;
        }
    }
    return 0;
}
