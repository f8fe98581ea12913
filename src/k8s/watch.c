/* watch.c: the watch stream parser. A watch response is a chunked body of JSON events, one per line
 * ({"type":"ADDED","object":{...}}\n); libcurl hands us arbitrary slices of it, so the parser keeps the
 * incomplete tail of the last line, capped per event so a hostile or broken server cannot grow it
 * without bound. Each complete line is parsed and handed to the callback. */
#include "k8s/k8s_int.h"

#include <string.h>

#include "base/err.h"
#include "base/log.h"

void pw_k8s_watch_parser_init(struct pw_k8s_watch_parser *p, size_t max_event, pw_k8s_watch_fn fn, void *arg)
{
    memset(p, 0, sizeof *p);
    p->max_event = max_event ? max_event : (size_t)16 << 20;
    pw_buf_init(&p->line, p->max_event);
    p->fn = fn;
    p->arg = arg;
}

void pw_k8s_watch_parser_fini(struct pw_k8s_watch_parser *p)
{
    pw_buf_fini(&p->line);
}

/* Parses one complete line (without its '\n'). Blank lines (keep-alives) are skipped. */
static int parse_line(struct pw_k8s_watch_parser *p, const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    if (n == 0)
        return 0;
    json_error_t jerr;
    json_t *ev = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    if (!type || !json_is_object(obj)) {
        PW_WARN("k8s watch: malformed event (%s)", ev ? "no type or object" : jerr.text);
        json_decref(ev);
        p->error = PW_EPROTO;
        return PW_EPROTO;
    }
    p->events++;
    int stop = p->fn ? p->fn(p->arg, type, obj) : 0;
    json_decref(ev);
    if (stop) {
        p->stopped = true;
        return 1;
    }
    return 0;
}

int pw_k8s_watch_parser_feed(struct pw_k8s_watch_parser *p, const char *data, size_t n)
{
    if (p->error)
        return p->error;
    if (p->stopped)
        return 1;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        int rc;
        if (p->line.len == 0 && nl) {
            /* the common case: a whole line inside this slice, parsed in place */
            if (take > p->max_event) {
                p->error = PW_ETOOLARGE;
                return p->error;
            }
            rc = parse_line(p, data, take);
        } else {
            if (pw_buf_append(&p->line, data, take) != 0) {
                PW_WARN("k8s watch: an event is over the %zu byte cap", p->max_event);
                p->error = PW_ETOOLARGE;
                return p->error;
            }
            rc = 0;
            if (nl) {
                rc = parse_line(p, p->line.p, p->line.len);
                pw_buf_reset(&p->line);
            }
        }
        if (rc != 0)
            return rc;
        if (!nl)
            break;
        data += take + 1;
        n -= take + 1;
    }
    return 0;
}

int pw_k8s_watch_parser_finish(struct pw_k8s_watch_parser *p)
{
    if (p->error)
        return p->error;
    if (p->stopped)
        return 1;
    int rc = 0;
    if (p->line.len > 0)
        rc = parse_line(p, p->line.p, p->line.len);
    pw_buf_reset(&p->line);
    return rc;
}
