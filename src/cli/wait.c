/* wait.c: `prewarmctl wait` and `create --wait`: follows the task's event stream
 * (GET /api/v1/tasks/{id}/events, Server-Sent Events: a "task" event at each change, at most ~4 a
 * second, then "end"), or, against a prewarmd without it, polls GET /api/v1/tasks/{id} about every
 * 500 ms, until the task finishes; draws a live progress bar on a terminal (redrawn in place, cursor
 * hidden and restored) or plain log lines elsewhere (on each change of counts, and every few seconds
 * without one), then a summary and the failed nodes with their reasons. Ctrl-C stops the waiting,
 * never the task. A stream that breaks is resumed with Last-Event-ID; short outages of prewarmd (a
 * restart) are ridden out for up to 30 s before giving up with exit 4. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "cli/cli_int.h"

#define POLL_MS 500
#define HEARTBEAT_MS 5000
#define OUTAGE_MS 30000
#define RATE_WINDOW_MS 10000
#define STREAM_IDLE_S 60 /* a stream silent this long (the server's heartbeat is 15 s) is dead */
#define STREAM_LINE_MAX PW_CLI_RESPONSE_CAP

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* How each final status ends the program. */
static const struct {
    const char *status;
    int exit_code;
    const char *color;
} outcomes[] = {
    {"succeeded", PW_CLI_EXIT_OK, "\033[32m"},
    {"failed", PW_CLI_EXIT_FAILED, "\033[31m"},
    {"cancelled", PW_CLI_EXIT_CANCELLED, "\033[33m"},
};

static int outcome_of(const char *status)
{
    for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++) {
        if (status && strcmp(status, outcomes[i].status) == 0)
            return (int)i;
    }
    return -1;
}

/* Sleeps ms in short slices so Ctrl-C is noticed at once. */
static void nap(int64_t ms)
{
    int64_t end = pw_clock_mono_ms() + ms;
    while (!interrupted) {
        int64_t left = end - pw_clock_mono_ms();
        if (left <= 0)
            break;
        pw_clock_sleep_ms(left < 50 ? left : 50);
    }
}

/* The terminal's width, 100 when it does not say. */
static int columns(FILE *f)
{
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 100;
}

/* The widest bar (6 to 40 characters) that keeps the whole line within the terminal, and never wider
 * than the last one (so the bar does not jump as the numbers grow); 0: no room. */
static int bar_width_for(FILE *f, const pw_cli_progress *p, int *last)
{
    char plain[512];
    pw_cli_progress_bar(p, 0, false, plain, sizeof(plain));
    int w = columns(f) - 1 - (int)strlen(plain) - 3; /* "[" "] " around the bar, one column spare */
    if (w > *last)
        w = *last;
    if (w < 6)
        w = 0;
    *last = w;
    return w;
}

typedef struct wait_state {
    pw_cli_ctx *ctx;
    const char *id;
    FILE *pf; /* where progress goes: stdout for table output, stderr for -o json/yaml */
    bool tty; /* pf is a terminal: draw the bar in place */
    bool color;
    int64_t start_ms, last_line_ms, outage_since;
    pw_cli_progress last; /* last.status is not kept: the task it pointed into is freed */
    char last_status[32];
    int bar_width; /* only shrinks, from 40 */
    bool drawn;
    pw_cli_rate rate;
} wait_state;

static void show(wait_state *w, pw_cli_progress *p)
{
    int64_t now = pw_clock_mono_ms();
    long done = pw_cli_progress_done(p);
    pw_cli_rate_add(&w->rate, now, done);
    p->rate = pw_cli_rate_get(&w->rate);
    p->eta_s = p->rate > 0 ? (double)(p->total - done) / p->rate : -1;
    p->elapsed_s = (double)(now - w->start_ms) / 1000.0;
    char line[512];
    if (w->tty) {
        pw_cli_progress_bar(p, bar_width_for(w->pf, p, &w->bar_width), w->color, line, sizeof(line));
        fprintf(w->pf, "\r%s\033[K", line);
        fflush(w->pf);
        w->drawn = true;
        return;
    }
    bool changed = !w->drawn || p->succeeded != w->last.succeeded || p->failed != w->last.failed ||
                   p->skipped != w->last.skipped || p->cancelled != w->last.cancelled ||
                   p->running != w->last.running || p->total != w->last.total || strcmp(p->status, w->last_status) != 0;
    if (changed || now - w->last_line_ms >= HEARTBEAT_MS) {
        pw_cli_progress_plain(p, line, sizeof(line));
        fprintf(w->pf, "%s\n", line);
        fflush(w->pf);
        w->last_line_ms = now;
        w->drawn = true;
    }
}

#define POLL_AGAIN (-1) /* poll_task: a transient failure, poll again */

/* One poll. Returns 0 with *task, POLL_AGAIN, or an exit code. */
static int poll_task(wait_state *w, const char *path, json_t **task)
{
    long status = 0;
    json_t *resp = NULL;
    char err[512];
    int rc = pw_cli_client_call(w->ctx->client, "GET", path, NULL, &status, &resp, err, sizeof(err));
    if (rc == PW_ECANCELED || interrupted) {
        json_decref(resp);
        return PW_CLI_EXIT_INTERRUPTED;
    }
    /* Ride out an outage (a restart mid-task, 502/503/504, 429); a server never reached at all is a
     * mistake in --server, reported at once. */
    if (rc == 0)
        w->ctx->server_seen = true;
    bool busy = rc == 0 && (status == 502 || status == 503 || status == 504 || status == 429);
    bool transient = busy || (rc != 0 && w->ctx->server_seen);
    if (transient) {
        int64_t now = pw_clock_mono_ms();
        if (!w->outage_since) {
            w->outage_since = now;
            char why[600];
            const char *msg = json_string_value(json_object_get(resp, "message"));
            if (rc != 0)
                snprintf(why, sizeof(why), "%s", err);
            else
                snprintf(why, sizeof(why), "prewarmd answered HTTP %ld%s%s", status, msg ? ": " : "", msg ? msg : "");
            fprintf(w->pf, "%s%s; retrying for up to %ds\n", w->tty ? "\r\033[K" : "", why, OUTAGE_MS / 1000);
            fflush(w->pf);
        }
        if (now - w->outage_since < OUTAGE_MS) {
            json_decref(resp);
            return POLL_AGAIN;
        }
    }
    if (rc != 0) {
        fprintf(w->ctx->err, "%serror: %s\n", w->tty && w->drawn ? "\n" : "", err);
        return PW_CLI_EXIT_API;
    }
    if (status < 200 || status > 299 || !json_is_object(resp)) {
        if (w->tty && w->drawn)
            fputc('\n', w->pf);
        pw_cli_print_api_error(w->ctx->err, status, resp);
        json_decref(resp);
        return PW_CLI_EXIT_API;
    }
    w->outage_since = 0;
    *task = resp;
    return 0;
}

/* ---- following the event stream ---- */

#define WAIT_POLL (-2) /* wait_stream: the server has no event stream: poll instead */

typedef struct sse_reader {
    wait_state *w;
    pw_buf line;      /* the line being received */
    pw_buf data;      /* the event's data lines */
    char event[32];   /* the event's type */
    char last_id[32]; /* the last id received: resumes the stream */
    json_t *task;     /* the newest task seen (owned) */
    bool ended;
    bool broken; /* a line over the cap */
} sse_reader;

static void sse_dispatch(sse_reader *r)
{
    if (r->data.len && strcmp(r->event, "task") == 0) {
        json_t *t = json_loadb(r->data.p, r->data.len, 0, NULL);
        if (json_is_object(t)) {
            json_decref(r->task);
            r->task = t;
            pw_cli_progress p;
            memset(&p, 0, sizeof(p));
            pw_cli_progress_from_task(t, &p);
            show(r->w, &p);
            r->w->last = p;
            r->w->last.status = NULL;
            snprintf(r->w->last_status, sizeof(r->w->last_status), "%s", p.status);
        } else {
            json_decref(t);
        }
    } else if (strcmp(r->event, "end") == 0) {
        r->ended = true;
    }
    pw_buf_reset(&r->data);
    r->event[0] = '\0';
}

/* One line of the stream (without its end of line), per the SSE rules: "field: value", a comment
 * (":..."), or the blank line that ends an event. */
static void sse_line(sse_reader *r, const char *line, size_t n)
{
    if (n == 0) {
        sse_dispatch(r);
        return;
    }
    if (line[0] == ':')
        return;
    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    if (colon && v < line + n && *v == ' ')
        v++;
    size_t vlen = (size_t)(line + n - v);
    if (flen == 4 && strncmp(line, "data", 4) == 0) {
        if (r->data.len)
            pw_buf_append(&r->data, "\n", 1);
        if (pw_buf_append(&r->data, v, vlen) != 0)
            r->broken = true;
    } else if (flen == 5 && strncmp(line, "event", 5) == 0) {
        snprintf(r->event, sizeof(r->event), "%.*s", (int)vlen, v);
    } else if (flen == 2 && strncmp(line, "id", 2) == 0 && vlen < sizeof(r->last_id)) {
        memcpy(r->last_id, v, vlen);
        r->last_id[vlen] = '\0';
    }
}

static int sse_on_data(void *arg, const char *data, size_t n)
{
    sse_reader *r = arg;
    for (size_t i = 0; i < n && !r->ended; i++) {
        char ch = data[i];
        if (ch == '\n') {
            size_t len = r->line.len;
            if (len && r->line.p[len - 1] == '\r')
                len--;
            sse_line(r, r->line.p ? r->line.p : "", len);
            pw_buf_reset(&r->line);
        } else if (pw_buf_append(&r->line, &ch, 1) != 0) {
            r->broken = true;
        }
        if (r->broken)
            return 1;
    }
    return r->ended || interrupted ? 1 : 0;
}

/* Follows the stream until the task's end. 0 with *task (the final task), WAIT_POLL, or an exit code. */
static int wait_stream(wait_state *w, json_t **task)
{
    char *esc = pw_cli_escape(w->id);
    char *path = pw_xasprintf("/api/v1/tasks/%s/events", esc);
    free(esc);
    sse_reader r = {.w = w};
    pw_buf_init(&r.line, STREAM_LINE_MAX);
    pw_buf_init(&r.data, STREAM_LINE_MAX);
    int rc;
    for (;;) {
        bool streamed = false;
        long status = 0;
        json_t *resp = NULL;
        char err[512];
        pw_buf_reset(&r.line);
        pw_buf_reset(&r.data);
        r.event[0] = '\0';
        rc = pw_cli_client_stream(w->ctx->client, path, r.last_id[0] ? r.last_id : NULL, STREAM_IDLE_S, sse_on_data,
                                  &r, &streamed, &status, &resp, err, sizeof(err));
        if (rc == PW_ECANCELED || interrupted) {
            json_decref(resp);
            rc = PW_CLI_EXIT_INTERRUPTED;
            break;
        }
        if (rc == 0 && !streamed) {
            /* no stream here (an older prewarmd, or an error such as 404): polling says which */
            json_decref(resp);
            rc = WAIT_POLL;
            break;
        }
        if (rc == 0)
            w->ctx->server_seen = true;
        if (r.ended) {
            rc = 0;
            break;
        }
        if (r.broken) {
            rc = WAIT_POLL; /* an event over the cap: polling still works */
            break;
        }
        /* the stream broke (a restart, a cut-off): reconnect, resuming after the last id */
        if (!w->ctx->server_seen && rc != 0) {
            fprintf(w->ctx->err, "error: %s\n", err);
            rc = PW_CLI_EXIT_API;
            break;
        }
        int64_t now = pw_clock_mono_ms();
        if (rc != 0 && !w->outage_since) {
            w->outage_since = now;
            fprintf(w->pf, "%s%s; retrying for up to %ds\n", w->tty ? "\r\033[K" : "", err, OUTAGE_MS / 1000);
            fflush(w->pf);
        }
        if (rc != 0 && now - w->outage_since >= OUTAGE_MS) {
            fprintf(w->ctx->err, "%serror: %s\n", w->tty && w->drawn ? "\n" : "", err);
            rc = PW_CLI_EXIT_API;
            break;
        }
        if (rc == 0)
            w->outage_since = 0;
        nap(POLL_MS);
    }
    pw_buf_fini(&r.line);
    pw_buf_fini(&r.data);
    free(path);
    const char *st = json_string_value(json_object_get(r.task, "status"));
    if (rc == 0 && outcome_of(st) < 0) {
        rc = WAIT_POLL; /* an end without the final task before it: read it */
    }
    if (rc == 0)
        *task = r.task;
    else
        json_decref(r.task);
    return rc;
}

static double task_duration(const json_t *task, double fallback)
{
    time_t s, f;
    const char *st = json_string_value(json_object_get(task, "startedAt"));
    const char *fi = json_string_value(json_object_get(task, "finishedAt"));
    if (st && fi && pw_time_parse_rfc3339(st, &s) == 0 && pw_time_parse_rfc3339(fi, &f) == 0 && f >= s)
        return (double)(f - s);
    return fallback;
}

static void summary(wait_state *w, const json_t *task, const pw_cli_progress *p, int outcome)
{
    char dur[32];
    pw_cli_fmt_duration(task_duration(task, p->elapsed_s), dur, sizeof(dur));
    const char *col = w->color ? outcomes[outcome].color : "";
    const char *reset = w->color ? "\033[0m" : "";
    fprintf(w->pf, "Task %s %s%s%s in %s: %ld nodes, %ld succeeded, %ld failed, %ld skipped", w->id, col, p->status,
            reset, dur, p->total, p->succeeded, p->failed, p->skipped);
    if (p->cancelled)
        fprintf(w->pf, ", %ld cancelled", p->cancelled);
    fprintf(w->pf, "\n");
    const char *msg = json_string_value(json_object_get(task, "message"));
    if (msg && *msg)
        fprintf(w->pf, "Message: %s\n", msg);
    if (p->failed > 0)
        pw_cli_print_failed_nodes(w->ctx, w->pf, w->id, p->failed, w->tty ? (size_t)columns(w->pf) - 1 : 0);
}

int pw_cli_wait(pw_cli_ctx *ctx, const char *id)
{
    bool structured = strcmp(ctx->args->output, "json") == 0 || strcmp(ctx->args->output, "yaml") == 0;
    wait_state w = {.ctx = ctx, .id = id, .pf = structured ? ctx->err : ctx->out};
    w.tty = isatty(fileno(w.pf)) == 1;
    w.color = ctx->color && w.tty;
    w.start_ms = pw_clock_mono_ms();
    w.bar_width = 40;
    pw_cli_rate_init(&w.rate, RATE_WINDOW_MS);

    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: a sleep or a poll returns early */
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pw_cli_client_set_interrupt(ctx->client, &interrupted);
    if (w.tty)
        fputs("\033[?25l", w.pf); /* hide the cursor while the bar is redrawn */

    char *esc = pw_cli_escape(id);
    char *path = pw_xasprintf("/api/v1/tasks/%s", esc);
    free(esc);
    json_t *task = NULL;
    pw_cli_progress p;
    memset(&p, 0, sizeof(p));
    int outcome = -1;
    int rc = wait_stream(&w, &task);
    if (rc == 0) {
        pw_cli_progress_from_task(task, &p);
        p.elapsed_s = (double)(pw_clock_mono_ms() - w.start_ms) / 1000.0;
        outcome = outcome_of(p.status);
    }
    for (bool polling = rc == WAIT_POLL; polling;) {
        json_t *t = NULL;
        rc = poll_task(&w, path, &t);
        if (rc == POLL_AGAIN) {
            nap(POLL_MS);
            continue;
        }
        if (rc != 0)
            break;
        json_decref(task);
        task = t;
        memset(&p, 0, sizeof(p));
        pw_cli_progress_from_task(task, &p);
        show(&w, &p);
        w.last = p;
        w.last.status = NULL;
        snprintf(w.last_status, sizeof(w.last_status), "%s", p.status);
        outcome = outcome_of(p.status);
        if (outcome >= 0)
            break;
        nap(POLL_MS);
        if (interrupted) {
            rc = PW_CLI_EXIT_INTERRUPTED;
            break;
        }
    }
    free(path);
    if (w.tty) {
        if (w.drawn)
            fputc('\n', w.pf);
        fputs("\033[?25h", w.pf);
        fflush(w.pf);
    }
    pw_cli_client_set_interrupt(ctx->client, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    if (rc == PW_CLI_EXIT_INTERRUPTED) {
        fprintf(ctx->err, "Stopped waiting; task %s goes on. Resume with: prewarmctl wait %s\n", id, id);
    } else if (rc == 0 && outcome >= 0) {
        summary(&w, task, &p, outcome);
        if (structured)
            pw_cli_print_tasks(ctx, task, false);
        rc = outcomes[outcome].exit_code;
    }
    json_decref(task);
    return rc;
}
