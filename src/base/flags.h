/* flags.h: the command-line flag tables of prewarm's programs (prewarmd, prewarm-agent): one row per
 * flag with its environment twin, kind, default and help. Values are read as defaults, then the
 * environment, then the command line ("--flag value", "--flag=value", a bare "--flag" for booleans).
 *
 * Thread model: call from main() before any thread starts (getenv). */
#ifndef PW_BASE_FLAGS_H
#define PW_BASE_FLAGS_H

#include <stddef.h>
#include <stdio.h>

enum pw_flag_kind {
    PW_FLAG_STR,      /* const char *: the argv/environ text itself (borrowed) */
    PW_FLAG_INT,      /* long, 0..1e9 */
    PW_FLAG_DOUBLE,   /* double, > 0 */
    PW_FLAG_BOOL,     /* bool: true/false/1/0/yes/no */
    PW_FLAG_DURATION, /* long long ms: "500ms", "30s", "5m", "2h", "7d", "1d12h" */
    PW_FLAG_BYTES,    /* long long: "1000000", "500Mi", "10Gi", "2G" (powers of 1024 with i, of 1000 without) */
    PW_FLAG_LIST      /* struct pw_flag_list: a repeatable flag, each use appends (the environment's value
                       * is one item) */
};

#define PW_FLAG_LIST_MAX 16
struct pw_flag_list {
    const char *v[PW_FLAG_LIST_MAX]; /* the argv/environ texts (borrowed) */
    size_t n;
};

struct pw_flag {
    const char *flag; /* without the leading "--" */
    const char *env;  /* NULL: none */
    enum pw_flag_kind kind;
    size_t off;       /* offsetof the field in the program's options struct */
    const char *def;  /* parsed like a command-line value; NULL: unset (zero) */
    const char *help;
};

/* Fills opts (zeroed first) from table[0..n-1]. Returns 0, or 2 after printing to stderr what was
 * wrong (prog names the program). */
int pw_flags_parse(const char *prog, const struct pw_flag *table, size_t n, void *opts, size_t opts_size, int argc,
                   char **argv);
/* The help text: one line per flag with its environment variable, help and default. */
void pw_flags_usage(FILE *f, const char *prog, const struct pw_flag *table, size_t n);

#endif
