/* args.c: prewarmctl's command line: a table-driven parser (the option tables live beside the command
 * table in commands.c), the cheap local validation (numbers, durations, KEY=VALUE forms, choices) that
 * turns typos into exit 2 before any request, the usage text generated from the same tables, and the
 * create request body built from the parsed arguments. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "base/sv.h"
#include "cli/cli_int.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return PW_EINVAL;
}

static void strv_push(pw_cli_strv *sv, const char *s)
{
    sv->v = pw_xrealloc(sv->v, (sv->n + 1) * sizeof(*sv->v));
    sv->v[sv->n++] = s;
}

int pw_cli_parse_duration_s(const char *s, long min, long max, long *out, char *err, size_t errlen)
{
    long long ms = 0;
    if (pw_parse_duration_ms(s, &ms) != 0)
        return fail(err, errlen, "\"%s\" is not a duration (want e.g. 90s, 10m, 1h30m)", s);
    if (ms % 1000 != 0)
        return fail(err, errlen, "\"%s\": want whole seconds", s);
    long long secs = ms / 1000;
    if (secs < min || secs > max)
        return fail(err, errlen, "\"%s\" is out of range (%lds to %lds)", s, min, max);
    *out = (long)secs;
    return 0;
}

/* KEY=VALUE with a non-empty key free of spaces; the value may be empty (as Kubernetes labels allow). */
static bool kv_valid(const char *s)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s)
        return false;
    for (const char *p = s; p < eq; p++) {
        if (isspace((unsigned char)*p) || *p == ',')
            return false;
    }
    return true;
}

static bool choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

/* Stores value into the field opt names; value is NULL for a flag given without "=". */
static int apply(const pw_cli_opt *opt, const char *value, pw_cli_args *a, char *err, size_t errlen)
{
    char *field = (char *)a + opt->offset;
    char sub[160];
    switch (opt->kind) {
    case PW_CLI_OPT_FLAG: {
        bool b = true;
        if (value && pw_parse_bool(value, &b) != 0)
            return fail(err, errlen, "--%s=%s: want true or false", opt->name, value);
        *(bool *)field = b;
        return 0;
    }
    case PW_CLI_OPT_STR:
        if (opt->choices && !choice_ok(opt->choices, value))
            return fail(err, errlen, "--%s \"%s\": want one of %s", opt->name, value, opt->choices);
        if (!*value)
            return fail(err, errlen, "--%s: the value is empty", opt->name);
        *(const char **)field = value;
        return 0;
    case PW_CLI_OPT_LIST:
        if (!*value)
            return fail(err, errlen, "--%s: the value is empty", opt->name);
        strv_push((pw_cli_strv *)field, value);
        return 0;
    case PW_CLI_OPT_KV:
        if (!kv_valid(value))
            return fail(err, errlen, "--%s \"%s\": want KEY=VALUE", opt->name, value);
        strv_push((pw_cli_strv *)field, value);
        return 0;
    case PW_CLI_OPT_INT: {
        long v;
        if (pw_parse_long(value, opt->min, opt->max, &v) != 0)
            return fail(err, errlen, "--%s \"%s\": want a whole number from %ld to %ld", opt->name, value, opt->min,
                        opt->max);
        *(pw_cli_num *)field = (pw_cli_num){true, v};
        return 0;
    }
    case PW_CLI_OPT_DURATION: {
        long v;
        if (pw_cli_parse_duration_s(value, opt->min, opt->max, &v, sub, sizeof(sub)) != 0)
            return fail(err, errlen, "--%s %s", opt->name, sub);
        *(pw_cli_num *)field = (pw_cli_num){true, v};
        return 0;
    }
    case PW_CLI_OPT_RATIO: {
        char *end = NULL;
        errno = 0;
        double d = strtod(value, &end);
        if (!*value || errno || !end || *end || !isfinite(d) || d < 0 || d > 1)
            return fail(err, errlen, "--%s \"%s\": want a number from 0 to 1", opt->name, value);
        *(pw_cli_real *)field = (pw_cli_real){true, d};
        return 0;
    }
    }
    return fail(err, errlen, "--%s: unsupported option kind", opt->name);
}

static const pw_cli_opt *find_long(const pw_cli_opt *tab, const char *name, size_t n)
{
    for (; tab && tab->name; tab++) {
        if (strlen(tab->name) == n && strncmp(tab->name, name, n) == 0)
            return tab;
    }
    return NULL;
}

static const pw_cli_opt *find_short(const pw_cli_opt *tab, char c)
{
    for (; tab && tab->name; tab++) {
        if (tab->short_name && tab->short_name == c)
            return tab;
    }
    return NULL;
}

static const pw_cli_cmd *find_cmd(const char *name)
{
    for (const pw_cli_cmd *c = pw_cli_commands; c->name; c++) {
        if (strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

/* Parses the option at argv[*i]; advances *i past a separate value. */
static int parse_option(int argc, char **argv, int *i, pw_cli_args *a, char *err, size_t errlen)
{
    const char *arg = argv[*i];
    const pw_cli_opt *cmd_opts = a->cmd ? a->cmd->opts : NULL;
    const pw_cli_opt *opt = NULL;
    const char *value = NULL;
    char shown[64];
    if (arg[1] == '-') {
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        opt = find_long(cmd_opts, name, n);
        if (!opt)
            opt = find_long(pw_cli_global_opts, name, n);
        snprintf(shown, sizeof(shown), "--%.*s", (int)(n > 40 ? 40 : n), name);
        if (eq)
            value = eq + 1;
    } else {
        opt = find_short(cmd_opts, arg[1]);
        if (!opt)
            opt = find_short(pw_cli_global_opts, arg[1]);
        snprintf(shown, sizeof(shown), "-%c", arg[1]);
        if (opt && arg[2]) {
            if (opt->kind == PW_CLI_OPT_FLAG)
                return fail(err, errlen, "%s takes no value (in \"%s\")", shown, arg);
            value = arg[2] == '=' ? arg + 3 : arg + 2;
        }
    }
    if (!opt) {
        if (a->cmd)
            return fail(err, errlen, "unknown option %s for \"%s\"", shown, a->cmd->name);
        return fail(err, errlen, "unknown option %s (command options go after the command)", shown);
    }
    if (opt->kind != PW_CLI_OPT_FLAG && !value) {
        if (*i + 1 >= argc)
            return fail(err, errlen, "%s needs a value (%s)", shown, opt->metavar ? opt->metavar : "VALUE");
        value = argv[++*i];
    }
    return apply(opt, value, a, err, errlen);
}

int pw_cli_args_parse(int argc, char **argv, const char *env_server, pw_cli_args *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->output = "table";
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!only_pos && arg[0] == '-' && arg[1] != '\0') {
            if (strcmp(arg, "--") == 0) {
                only_pos = true;
                continue;
            }
            int rc = parse_option(argc, argv, &i, a, err, errlen);
            if (rc != 0)
                return rc;
        } else if (!a->cmd) {
            if (strcmp(arg, "help") == 0) {
                a->help = true;
                if (i + 1 < argc && find_cmd(argv[i + 1]))
                    a->cmd = find_cmd(argv[++i]);
                continue;
            }
            a->cmd = find_cmd(arg);
            if (!a->cmd)
                return fail(err, errlen, "unknown command \"%s\"", arg);
        } else {
            strv_push(&a->pos, arg);
        }
    }
    if (!a->server)
        a->server = env_server && *env_server ? env_server : PW_CLI_DEFAULT_SERVER;
    if (strncmp(a->server, "http://", 7) != 0 && strncmp(a->server, "https://", 8) != 0)
        return fail(err, errlen, "--server \"%s\": want an http:// or https:// URL", a->server);
    if (a->help)
        return 0;
    if (!a->cmd)
        return fail(err, errlen, "no command given");
    const pw_cli_cmd *c = a->cmd;
    if ((long)a->pos.n < c->min_pos) {
        if (c->min_pos == 1 && c->max_pos == 1)
            return fail(err, errlen, "\"%s\" needs one %s", c->name, c->args_usage);
        return fail(err, errlen, "\"%s\" needs at least one %.*s", c->name, (int)strcspn(c->args_usage, "."),
                    c->args_usage);
    }
    if (c->max_pos >= 0 && (long)a->pos.n > c->max_pos) {
        if (c->max_pos == 0)
            return fail(err, errlen, "\"%s\" takes no arguments (got \"%s\")", c->name, a->pos.v[0]);
        return fail(err, errlen, "\"%s\" takes %d argument%s (got %zu)", c->name, c->max_pos,
                    c->max_pos == 1 ? "" : "s", a->pos.n);
    }
    return 0;
}

void pw_cli_args_fini(pw_cli_args *a)
{
    pw_cli_strv *lists[] = {&a->pos, &a->nodes, &a->node_selectors, &a->pull_secrets, &a->labels, &a->clusters};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        free(lists[i]->v);
        lists[i]->v = NULL;
        lists[i]->n = 0;
    }
}

static json_t *kv_object(const pw_cli_strv *sv)
{
    json_t *o = json_object();
    for (size_t i = 0; i < sv->n; i++) {
        const char *eq = strchr(sv->v[i], '=');
        char *key = pw_xstrndup(sv->v[i], (size_t)(eq - sv->v[i]));
        json_object_set_new(o, key, json_string(eq + 1));
        free(key);
    }
    return o;
}

static json_t *str_array(const pw_cli_strv *sv)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < sv->n; i++)
        json_array_append_new(arr, json_string(sv->v[i]));
    return arr;
}

json_t *pw_cli_create_body(const pw_cli_args *a)
{
    json_t *o = json_object();
    json_object_set_new(o, "images", str_array(&a->pos));
    if (a->batch_size.set)
        json_object_set_new(o, "batchSize", json_integer(a->batch_size.v));
    if (a->strategy)
        json_object_set_new(o, "strategy", json_string(a->strategy));
    if (a->node_selectors.n)
        json_object_set_new(o, "nodeSelector", kv_object(&a->node_selectors));
    if (a->selector)
        json_object_set_new(o, "labelSelector", json_string(a->selector));
    if (a->nodes.n)
        json_object_set_new(o, "nodeNames", str_array(&a->nodes));
    if (a->clusters.n)
        json_object_set_new(o, "clusters", str_array(&a->clusters));
    if (a->cluster_selector)
        json_object_set_new(o, "clusterSelector", json_string(a->cluster_selector));
    if (a->include_not_ready)
        json_object_set_new(o, "includeNotReady", json_true());
    if (a->include_unschedulable)
        json_object_set_new(o, "includeUnschedulable", json_true());
    if (a->pull_policy)
        json_object_set_new(o, "pullPolicy", json_string(a->pull_policy));
    if (a->mode)
        json_object_set_new(o, "mode", json_string(a->mode));
    if (a->pull_secrets.n)
        json_object_set_new(o, "imagePullSecrets", str_array(&a->pull_secrets));
    if (a->timeout_s.set)
        json_object_set_new(o, "timeoutSeconds", json_integer(a->timeout_s.v));
    if (a->retries.set)
        json_object_set_new(o, "retries", json_integer(a->retries.v));
    if (a->success_threshold.set)
        json_object_set_new(o, "successThreshold", json_real(a->success_threshold.v));
    if (a->priority.set)
        json_object_set_new(o, "priority", json_integer(a->priority.v));
    if (a->labels.n)
        json_object_set_new(o, "labels", kv_object(&a->labels));
    return o;
}

static void print_opts(FILE *f, const pw_cli_opt *opts)
{
    for (const pw_cli_opt *o = opts; o && o->name; o++) {
        char left[64];
        char shortpart[8] = "    ";
        if (o->short_name)
            snprintf(shortpart, sizeof(shortpart), "-%c, ", o->short_name);
        if (o->kind == PW_CLI_OPT_FLAG)
            snprintf(left, sizeof(left), "%s--%s", shortpart, o->name);
        else
            snprintf(left, sizeof(left), "%s--%s %s", shortpart, o->name, o->metavar ? o->metavar : "VALUE");
        fprintf(f, "  %-34s %s\n", left, o->help);
    }
}

static const char exit_codes_text[] = "Exit codes:\n"
                                      "  0    success (for --wait and wait: the task succeeded)\n"
                                      "  1    the task failed\n"
                                      "  2    usage error\n"
                                      "  3    the task was cancelled\n"
                                      "  4    prewarmd unreachable, or it answered with an error\n"
                                      "  130  Ctrl-C while waiting (the task goes on: resume with "
                                      "'prewarmctl wait ID')\n";

void pw_cli_usage(FILE *f, const pw_cli_cmd *cmd)
{
    if (cmd) {
        fprintf(f, "Usage: prewarmctl %s%s%s [options]\n\n%s\n", cmd->name, cmd->args_usage[0] ? " " : "",
                cmd->args_usage, cmd->summary);
        if (cmd->opts && cmd->opts->name) {
            fprintf(f, "\nOptions:\n");
            print_opts(f, cmd->opts);
        }
        fprintf(f, "\nGlobal options:\n");
        print_opts(f, pw_cli_global_opts);
        fprintf(f, "\n%s", exit_codes_text);
        return;
    }
    fprintf(f, "prewarmctl: the command-line client of prewarmd, the Kubernetes image-prewarming service.\n\n"
               "Usage: prewarmctl COMMAND [ARGS] [options]\n\nCommands:\n");
    for (const pw_cli_cmd *c = pw_cli_commands; c->name; c++) {
        char left[64];
        snprintf(left, sizeof(left), "%s %s", c->name, c->args_usage);
        const char *nl = strchr(c->summary, '\n');
        fprintf(f, "  %-20s %.*s\n", left, nl ? (int)(nl - c->summary) : (int)strlen(c->summary), c->summary);
    }
    fprintf(f, "\nGlobal options:\n");
    print_opts(f, pw_cli_global_opts);
    fprintf(f,
            "\nEnvironment:\n"
            "  PREWARM_SERVER  the prewarmd URL when --server is not given (default %s)\n"
            "  NO_COLOR        when set, no colours\n\n%s\n"
            "Run 'prewarmctl COMMAND --help' for the options of a command.\n",
            PW_CLI_DEFAULT_SERVER, exit_codes_text);
}
