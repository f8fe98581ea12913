/* fuzz_redisurl.c: prewarmd's --store redis://... value: the parser (pw_redis_url_parse,
 * src/store/redis_url.c) and the redaction log lines show it by (pw_store_url_redacted,
 * src/store/store.c).
 * Input: the url after "redis:" (what the parser gets, e.g. "//:pw@host:6379/0?prefix=p").
 * Checks: a refusal says why; an accepted url has a host, a port 1-65535, a db 0-100000 and a prefix,
 * and a password only with a non-empty text; its redacted form hides the password: it parses to the
 * same host, port, db, prefix and user with the password "***" in its place. */
#include "fuzz.h"
#include "store/redis_int.h"
#include "store/store.h"

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *rest = fuzz_cstr(data, size);
    struct pw_redis_url u;
    const char *why = NULL;
    if (pw_redis_url_parse(rest, &u, &why) != 0) {
        if (!why)
            abort();
        free(rest);
        return 0;
    }
    if (!u.host || !*u.host || u.port < 1 || u.port > 65535 || u.db < 0 || u.db > 100000 || !u.prefix ||
        (u.pass && !*u.pass))
        abort();
    char *url = malloc(strlen(rest) + 7);
    if (!url)
        abort();
    memcpy(url, "redis:", 6);
    memcpy(url + 6, rest, strlen(rest) + 1);
    char *shown = pw_store_url_redacted(url);
    if (strncmp(shown, "redis://", 8) != 0)
        abort();
    struct pw_redis_url r;
    if (pw_redis_url_parse(shown + 6, &r, &why) != 0)
        abort(); /* the redacted url must still read as the same store */
    if (!same(u.host, r.host) || u.port != r.port || u.db != r.db || !same(u.prefix, r.prefix) || !same(u.user, r.user))
        abort();
    if (u.pass) {
        if (!same(r.pass, "***"))
            abort(); /* the password is shown */
    } else if (strcmp(shown, url) != 0 && r.pass) {
        abort(); /* nothing to hide, yet a password appeared */
    }
    pw_redis_url_fini(&r);
    pw_redis_url_fini(&u);
    free(shown);
    free(url);
    free(rest);
    return 0;
}
