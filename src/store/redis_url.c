/* redis_url.c: parsing of the redis:// store url (redis_int.h): credentials, host (a [v6] address
 * too), port, db and the key prefix, percent-decoded, each failure naming the part at fault. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "store/redis.h"
#include "store/redis_int.h"

#define RD_URL_MAX 1024

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes p[0..n) into a new string; NULL when an escape is malformed or decodes to NUL. */
static char *pct_decode(const char *p, size_t n)
{
    char *out = pw_xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            out[k++] = p[i];
            continue;
        }
        int hi = i + 2 < n ? hexdig(p[i + 1]) : -1;
        int lo = i + 2 < n ? hexdig(p[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[k++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[k] = '\0';
    return out;
}

void pw_redis_url_fini(struct pw_redis_url *u)
{
    free(u->host);
    free(u->user);
    if (u->pass)
        memset(u->pass, 0, strlen(u->pass));
    free(u->pass);
    free(u->prefix);
    free(u->ca);
    free(u->cert);
    free(u->key);
}

int pw_redis_url_parse(const char *rest, struct pw_redis_url *u, const char **why)
{
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (strlen(rest) > RD_URL_MAX) {
        *why = "the url is too long";
        return PW_EINVAL;
    }
    if (strncmp(rest, "//", 2) != 0) {
        *why = "expected redis://host[:port][/db]";
        return PW_EINVAL;
    }
    const char *p = rest + 2;
    const char *end = p + strcspn(p, "/?");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            *why = "credentials must be user:password@ or :password@";
            return PW_EINVAL;
        }
        if (colon > p)
            u->user = pct_decode(p, (size_t)(colon - p));
        u->pass = pct_decode(colon + 1, (size_t)(at - colon - 1));
        if ((colon > p && !u->user) || !u->pass || !*u->pass) {
            *why = "bad user or password (percent-encode special characters)";
            goto bad;
        }
        p = at + 1;
    }
    const char *host_end;
    if (*p == '[') { /* [v6 address] */
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close) {
            *why = "unclosed [ in the host";
            goto bad;
        }
        u->host = pw_xstrndup(p + 1, (size_t)(close - p - 1));
        host_end = close + 1;
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (!host_end)
            host_end = end;
        u->host = pw_xstrndup(p, (size_t)(host_end - p));
    }
    if (!*u->host) {
        *why = "no host";
        goto bad;
    }
    if (strchr(u->host, '@')) { /* a password with a raw '@': its rest would be taken for the host, and logged */
        *why = "an '@' in the host (percent-encode '@' in the password as %40)";
        goto bad;
    }
    if (host_end < end) {
        if (*host_end != ':') {
            *why = "junk after the host";
            goto bad;
        }
        char *e;
        long port = strtol(host_end + 1, &e, 10);
        if (e != end || e == host_end + 1 || port < 1 || port > 65535) {
            *why = "the port must be 1-65535";
            goto bad;
        }
        u->port = (int)port;
    }
    p = end;
    if (*p == '/') {
        p++;
        size_t dn = strcspn(p, "?");
        if (dn > 0) {
            char *e;
            long db = strtol(p, &e, 10);
            if (e != p + dn || db < 0 || db > 100000) {
                *why = "the db must be a number (0-100000)";
                goto bad;
            }
            u->db = (int)db;
        }
        p += dn;
    }
    if (*p == '?') {
        p++;
        while (*p) {
            size_t pn = strcspn(p, "&");
            static const char *const names[] = {"prefix=", "ca=", "cert=", "key="};
            char **dst[] = {&u->prefix, &u->ca, &u->cert, &u->key};
            size_t k = 0;
            while (k < 4 && strncmp(p, names[k], strlen(names[k])) != 0)
                k++;
            if (k == 4) {
                *why = "unknown url parameter (known: prefix, and for rediss:// ca, cert, key)";
                goto bad;
            }
            size_t nl = strlen(names[k]);
            free(*dst[k]);
            *dst[k] = pct_decode(p + nl, pn - nl);
            if (!*dst[k] || (k > 0 && !**dst[k])) { /* an empty prefix is allowed, an empty path is not */
                static const char *const bad_why[] = {"bad prefix (percent-encode special characters)",
                                                      "bad ca (a file path; percent-encode special characters)",
                                                      "bad cert (a file path; percent-encode special characters)",
                                                      "bad key (a file path; percent-encode special characters)"};
                *why = bad_why[k];
                goto bad;
            }
            p += pn + (p[pn] == '&');
        }
    }
    if (!u->prefix)
        u->prefix = pw_xstrdup(PW_STORE_REDIS_DEFAULT_PREFIX);
    return 0;
bad:
    pw_redis_url_fini(u);
    return PW_EINVAL;
}

