/* format.c: prewarmctl's pure formatters: kubectl-style ages and tables, the progress line (the
 * terminal bar and the plain log line), the sliding-window rate behind "nodes/s" and the ETA, and a
 * YAML writer for -o yaml (block style from a JSON document; strings quoted whenever a plain scalar
 * would read back as something else). Nothing here does I/O, so all of it is unit-tested. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/mem.h"
#include "cli/cli_int.h"

/* ---------------------------------------------------------------- ages and durations */

void pw_cli_fmt_age(int64_t secs, char *out, size_t n)
{
    static const struct {
        int64_t below; /* use this unit while secs < below */
        int64_t unit;
        char suffix;
    } units[] = {
        {60, 1, 's'}, {3600, 60, 'm'}, {86400, 3600, 'h'}, {86400LL * 365, 86400, 'd'}, {INT64_MAX, 86400LL * 365, 'y'},
    };
    if (secs < 0)
        secs = 0;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (secs < units[i].below || i + 1 == sizeof(units) / sizeof(units[0])) {
            snprintf(out, n, "%lld%c", (long long)(secs / units[i].unit), units[i].suffix);
            return;
        }
    }
}

void pw_cli_fmt_duration(double secs, char *out, size_t n)
{
    if (!isfinite(secs) || secs < 0)
        secs = 0;
    long long s = llround(secs);
    if (s < 60)
        snprintf(out, n, "%llds", s);
    else if (s < 3600)
        snprintf(out, n, "%lldm%02llds", s / 60, s % 60);
    else
        snprintf(out, n, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
}

void pw_cli_fmt_age_of(const char *ts, time_t now, char *out, size_t n)
{
    time_t t;
    if (!ts || pw_time_parse_rfc3339(ts, &t) != 0) {
        snprintf(out, n, "<unknown>");
        return;
    }
    pw_cli_fmt_age((int64_t)(now - t), out, n);
}

/* ---------------------------------------------------------------- tables */

struct pw_cli_table {
    size_t ncols, nrows;
    char **cells; /* (nrows + 1) * ncols; row 0 is the header */
};

pw_cli_table *pw_cli_table_new(size_t ncols, const char *const *headers)
{
    pw_cli_table *t = pw_xcalloc(1, sizeof(*t));
    t->ncols = ncols;
    pw_cli_table_add(t, headers);
    return t;
}

void pw_cli_table_free(pw_cli_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

void pw_cli_table_add(pw_cli_table *t, const char *const *cells)
{
    t->cells = pw_xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    for (size_t c = 0; c < t->ncols; c++)
        t->cells[t->nrows * t->ncols + c] = pw_xstrdup(cells[c] ? cells[c] : "");
    t->nrows++;
}

void pw_cli_table_render(const pw_cli_table *t, pw_buf *b)
{
    pw_cli_table_render_fit(t, b, 0);
}

void pw_cli_table_render_fit(const pw_cli_table *t, pw_buf *b, size_t max_width)
{
    size_t *width = pw_xcalloc(t->ncols, sizeof(size_t));
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = strlen(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    /* Room left for the last column when lines must fit max_width (at least 20 characters). */
    size_t lead = 0;
    for (size_t c = 0; c + 1 < t->ncols; c++)
        lead += width[c] + 3;
    size_t room = max_width > lead + 20 ? max_width - lead : 20;
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            if (c + 1 < t->ncols)
                pw_buf_printf(b, "%-*s   ", (int)width[c], cell);
            else if (max_width > 0 && strlen(cell) > room)
                pw_buf_printf(b, "%.*s...", (int)(room - 3), cell);
            else
                pw_buf_puts(b, cell);
        }
        /* A trailing empty last column leaves spaces behind: trim them. */
        while (b->len > 0 && b->p[b->len - 1] == ' ')
            b->p[--b->len] = '\0';
        pw_buf_puts(b, "\n");
    }
    free(width);
}

/* ---------------------------------------------------------------- progress */

long pw_cli_progress_done(const pw_cli_progress *p)
{
    return p->succeeded + p->failed + p->skipped + p->cancelled;
}

static double progress_pct(const pw_cli_progress *p)
{
    if (p->total > 0)
        return 100.0 * (double)pw_cli_progress_done(p) / (double)p->total;
    return p->percentage;
}

static long json_long(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (long)json_integer_value(v);
    if (json_is_real(v))
        return (long)json_real_value(v);
    return 0;
}

void pw_cli_progress_from_task(const json_t *task, pw_cli_progress *p)
{
    const json_t *pr = json_object_get(task, "progress");
    p->total = json_long(pr, "totalNodes");
    p->pending = json_long(pr, "pendingNodes");
    p->running = json_long(pr, "runningNodes");
    p->succeeded = json_long(pr, "succeededNodes");
    p->failed = json_long(pr, "failedNodes");
    p->skipped = json_long(pr, "skippedNodes");
    p->cancelled = json_long(pr, "cancelledNodes");
    p->percentage = json_number_value(json_object_get(pr, "percentage"));
    p->status = json_string_value(json_object_get(task, "status"));
    if (!p->status)
        p->status = "unknown";
}

/* Appends to out at *len, keeping out NUL-terminated and never overflowing. */
static void add(char *out, size_t n, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void add(char *out, size_t n, size_t *len, const char *fmt, ...)
{
    if (*len >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(out + *len, n - *len, fmt, ap);
    va_end(ap);
    if (w > 0)
        *len = *len + (size_t)w < n ? *len + (size_t)w : n - 1;
}

void pw_cli_progress_bar(const pw_cli_progress *p, int bar_width, bool color, char *out, size_t n)
{
    size_t len = 0;
    if (n == 0)
        return;
    out[0] = '\0';
    long done = pw_cli_progress_done(p);
    double pct = progress_pct(p);
    if (bar_width > 0) {
        int fill = (int)floor(pct / 100.0 * bar_width + 1e-9);
        if (fill > bar_width)
            fill = bar_width;
        if (fill < 0)
            fill = 0;
        add(out, n, &len, "[");
        for (int i = 0; i < bar_width; i++)
            add(out, n, &len, "%c", i < fill ? '=' : (i == fill ? '>' : ' '));
        add(out, n, &len, "] ");
    }
    add(out, n, &len, "%ld/%ld %.1f%%  ", done, p->total, pct);
    add(out, n, &len, "%sok %ld%s", color ? "\033[32m" : "", p->succeeded, color ? "\033[0m" : "");
    add(out, n, &len, " %sfailed %ld%s", color && p->failed ? "\033[31m" : "", p->failed,
        color && p->failed ? "\033[0m" : "");
    add(out, n, &len, " skipped %ld", p->skipped);
    if (p->cancelled)
        add(out, n, &len, " cancelled %ld", p->cancelled);
    if (p->rate >= 0)
        add(out, n, &len, "  %.1f nodes/s", p->rate);
    if (p->eta_s >= 0 && done < p->total) {
        char eta[32];
        pw_cli_fmt_duration(p->eta_s, eta, sizeof(eta));
        add(out, n, &len, "  ETA %s", eta);
    }
}

void pw_cli_progress_plain(const pw_cli_progress *p, char *out, size_t n)
{
    size_t len = 0;
    if (n == 0)
        return;
    out[0] = '\0';
    char el[32];
    pw_cli_fmt_duration(p->elapsed_s, el, sizeof(el));
    add(out, n, &len, "[%s] %s: %ld/%ld nodes (%.1f%%), ok %ld, failed %ld, skipped %ld", el,
        p->status ? p->status : "unknown", pw_cli_progress_done(p), p->total, progress_pct(p), p->succeeded, p->failed,
        p->skipped);
    if (p->cancelled)
        add(out, n, &len, ", cancelled %ld", p->cancelled);
    add(out, n, &len, ", in flight %ld, pending %ld", p->running, p->pending);
    if (p->rate >= 0)
        add(out, n, &len, ", %.1f nodes/s", p->rate);
    if (p->eta_s >= 0 && pw_cli_progress_done(p) < p->total) {
        char eta[32];
        pw_cli_fmt_duration(p->eta_s, eta, sizeof(eta));
        add(out, n, &len, ", ETA %s", eta);
    }
}

void pw_cli_rate_init(pw_cli_rate *r, int64_t window_ms)
{
    memset(r, 0, sizeof(*r));
    r->window_ms = window_ms;
}

void pw_cli_rate_add(pw_cli_rate *r, int64_t t_ms, long done)
{
    size_t idx = (r->head + r->n) % PW_CLI_RATE_SAMPLES;
    if (r->n == PW_CLI_RATE_SAMPLES) {
        r->head = (r->head + 1) % PW_CLI_RATE_SAMPLES;
        r->n--;
    }
    r->t_ms[idx] = t_ms;
    r->done[idx] = done;
    r->n++;
    /* Drop samples older than the window, keeping at least two. */
    while (r->n > 2 && t_ms - r->t_ms[(r->head + 1) % PW_CLI_RATE_SAMPLES] >= r->window_ms) {
        r->head = (r->head + 1) % PW_CLI_RATE_SAMPLES;
        r->n--;
    }
}

double pw_cli_rate_get(const pw_cli_rate *r)
{
    if (r->n < 2)
        return -1;
    size_t first = r->head, last = (r->head + r->n - 1) % PW_CLI_RATE_SAMPLES;
    int64_t dt = r->t_ms[last] - r->t_ms[first];
    if (dt < 1000)
        return -1;
    long dd = r->done[last] - r->done[first];
    if (dd < 0)
        dd = 0;
    return (double)dd * 1000.0 / (double)dt;
}

/* ---------------------------------------------------------------- YAML */

static bool yaml_plain_ok(const char *s)
{
    static const char *const reserved[] = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", NULL};
    size_t n = strlen(s);
    if (n == 0 || strchr("-?:,[]{}#&*!|>'\"%@` \t", s[0]))
        return false;
    if ((s[0] >= '0' && s[0] <= '9') || s[0] == '+' || s[0] == '.')
        return false; /* numbers, times, versions, .inf/.nan: quote them all */
    if (s[n - 1] == ' ' || s[n - 1] == ':')
        return false;
    if (strstr(s, ": ") || strstr(s, " #"))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
    }
    for (size_t i = 0; reserved[i]; i++) {
        if (strcasecmp(s, reserved[i]) == 0)
            return false;
    }
    return true;
}

static void yaml_string(const char *s, pw_buf *b)
{
    if (yaml_plain_ok(s)) {
        pw_buf_puts(b, s);
        return;
    }
    /* A JSON string literal is a valid YAML double-quoted scalar. */
    json_t *js = json_string(s);
    char *q = json_dumps(js, JSON_ENCODE_ANY);
    pw_buf_puts(b, q ? q : "\"\"");
    free(q);
    json_decref(js);
}

static bool yaml_inline(const json_t *v)
{
    if (json_is_object(v))
        return json_object_size(v) == 0;
    if (json_is_array(v))
        return json_array_size(v) == 0;
    return true;
}

static void yaml_scalar(const json_t *v, pw_buf *b)
{
    if (json_is_string(v)) {
        yaml_string(json_string_value(v), b);
    } else if (json_is_object(v)) {
        pw_buf_puts(b, "{}");
    } else if (json_is_array(v)) {
        pw_buf_puts(b, "[]");
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
        pw_buf_puts(b, s ? s : "null");
        free(s);
    }
}

static void pad(int indent, pw_buf *b)
{
    for (int i = 0; i < indent; i++)
        pw_buf_puts(b, " ");
}

/* Writes a non-empty container v as block lines at indent; the first line's indentation is left out
 * when the caller already wrote "- " on it. */
static void yaml_block(const json_t *v, int indent, bool inline_first, pw_buf *b)
{
    bool first = true;
    if (json_is_object(v)) {
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)v, key, val)
        {
            if (!(first && inline_first))
                pad(indent, b);
            first = false;
            yaml_string(key, b);
            pw_buf_puts(b, ":");
            if (yaml_inline(val)) {
                pw_buf_puts(b, " ");
                yaml_scalar(val, b);
                pw_buf_puts(b, "\n");
            } else {
                pw_buf_puts(b, "\n");
                yaml_block(val, json_is_object(val) ? indent + 2 : indent, false, b);
            }
        }
        return;
    }
    size_t i;
    const json_t *item;
    json_array_foreach(v, i, item)
    {
        if (!(first && inline_first))
            pad(indent, b);
        first = false;
        pw_buf_puts(b, "- ");
        if (yaml_inline(item)) {
            yaml_scalar(item, b);
            pw_buf_puts(b, "\n");
        } else {
            yaml_block(item, indent + 2, true, b);
        }
    }
}

void pw_cli_yaml(const json_t *v, pw_buf *b)
{
    if (yaml_inline(v)) {
        yaml_scalar(v, b);
        pw_buf_puts(b, "\n");
        return;
    }
    yaml_block(v, 0, false, b);
}
