/* log.h: levelled logging, one line per record to stderr, JSON lines by default or plain text.
 *
 * PW_LOG checks the level before formatting anything, so disabled levels cost one comparison.
 * Messages are printf-format checked. Key/value fields go in the message as "key=value" text or, for
 * structured output, through pw_log_kv(). Secrets (tokens, keys, passwords) must never be passed here.
 * Thread model: safe from any thread; a record is written with one write(2) so lines never interleave. */
#ifndef PW_LOG_H
#define PW_LOG_H

enum pw_log_level { PW_LOG_DEBUG = 0, PW_LOG_INFO = 1, PW_LOG_WARN = 2, PW_LOG_ERROR = 3, PW_LOG_OFF = 4 };

extern int pw_log_threshold; /* read by PW_LOG; set through pw_log_set_level() */

/* Sets the minimum level printed. */
void pw_log_set_level(enum pw_log_level level);
/* Parses "debug", "info", "warn", "error", "off" into *out; PW_EINVAL when unknown (nothing changes). */
int pw_log_parse_level(const char *s, enum pw_log_level *out);
/* json != 0: JSON lines {"time","level","component","msg"}; 0: "TIME LEVEL component: msg". */
void pw_log_set_json(int json);
/* The component name put on each line ("prewarmd", "kubesim"); borrowed, must outlive logging. */
void pw_log_set_component(const char *name);

void pw_log_write(enum pw_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define PW_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((int)(level) >= pw_log_threshold)                                                      \
            pw_log_write((level), __VA_ARGS__);                                                    \
    } while (0)
#define PW_DEBUG(...) PW_LOG(PW_LOG_DEBUG, __VA_ARGS__)
#define PW_INFO(...) PW_LOG(PW_LOG_INFO, __VA_ARGS__)
#define PW_WARN(...) PW_LOG(PW_LOG_WARN, __VA_ARGS__)
#define PW_ERROR(...) PW_LOG(PW_LOG_ERROR, __VA_ARGS__)

#endif
