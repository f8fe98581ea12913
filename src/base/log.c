/* log.c: formats one record into a stack buffer and writes it with a single write(2). */
#include "base/log.h"

#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int pw_log_threshold = PW_LOG_INFO;
static int log_json = 1;
static const char *log_component = "prewarm";

static const char *const log_names[] = {"debug", "info", "warn", "error", "off"};

void pw_log_set_level(enum pw_log_level level)
{
    pw_log_threshold = (int)level;
}

int pw_log_parse_level(const char *s, enum pw_log_level *out)
{
    for (int i = 0; i <= PW_LOG_OFF; i++) {
        if (strcmp(s, log_names[i]) == 0) {
            *out = (enum pw_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = PW_LOG_WARN;
        return 0;
    }
    return PW_EINVAL;
}

void pw_log_set_json(int json)
{
    log_json = json;
}

void pw_log_set_component(const char *name)
{
    log_component = name;
}

/* Appends s to out as the inside of a JSON string; returns the new length, never past cap - 1. A cut
 * never splits a UTF-8 sequence, so the line stays valid JSON. */
static size_t log_escape(char *out, size_t len, size_t cap, const char *s)
{
    for (; *s && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0xC0) { /* the lead byte of a multi-byte character: copy it whole or stop */
            size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (len + n + 7 >= cap || strnlen(s, n) < n)
                break;
            memcpy(out + len, s, n);
            len += n;
            s += n - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            out[len++] = '\\';
            out[len++] = (char)c;
        } else if (c == '\n') {
            out[len++] = '\\';
            out[len++] = 'n';
        } else if (c < 0x20) {
            len += (size_t)snprintf(out + len, cap - len, "\\u%04x", c);
        } else {
            out[len++] = (char)c;
        }
    }
    return len;
}

void pw_log_write(enum pw_log_level level, const char *fmt, ...)
{
    char msg[2048];
    char line[4608];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    int lv = (level >= 0 && level < PW_LOG_OFF) ? (int)level : PW_LOG_ERROR;
    size_t n;
    if (log_json) {
        n = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"",
                             when, log_names[lv], log_component);
        n = log_escape(line, n, sizeof line - 4, msg);
        memcpy(line + n, "\"}\n", 3);
        n += 3;
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s %-5s %s: %s\n", when, log_names[lv], log_component, msg);
        if (n >= sizeof line)
            n = sizeof line - 1;
    }
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
