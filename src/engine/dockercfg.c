/* dockercfg.c: image pull secret parsing and the kubelet's registry key matching (dockercfg.h). */
#include "engine/dockercfg.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/b64.h"
#include "base/err.h"
#include "base/mem.h"
#include "engine/imageref.h"

#define MAX_KEYS 1000

int pw_dockercfg_parse(const char *text, size_t len, json_t **out, const char **why)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text ? text : "", len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        *why = "not a JSON object";
        return PW_EINVAL;
    }
    json_t *auths = json_object_get(doc, "auths");
    if (!auths)
        auths = doc; /* .dockercfg: the keys at the top */
    if (!json_is_object(auths) || json_object_size(auths) > MAX_KEYS) {
        *why = json_is_object(auths) ? "too many registries" : "\"auths\" is not an object";
        json_decref(doc); /* auths is doc's */
        return PW_EINVAL;
    }
    json_t *res = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(auths, k, v) {
        if (!json_is_object(v))
            continue;
        json_t *e = json_object();
        static const char *const fields[] = {"username", "password", "auth", "identitytoken", "registrytoken"};
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            const char *s = json_string_value(json_object_get(v, fields[i]));
            if (s && *s)
                json_object_set_new(e, fields[i], json_string(s));
        }
        const char *a = json_string_value(json_object_get(e, "auth"));
        if (a && !json_object_get(e, "username")) {
            void *dec = NULL;
            size_t n = 0;
            if (pw_b64_decode(a, strlen(a), &dec, &n) == 0) {
                char *colon = memchr(dec, ':', n);
                if (colon) {
                    json_object_set_new(e, "username", json_stringn(dec, (size_t)(colon - (char *)dec)));
                    json_object_set_new(e, "password", json_stringn(colon + 1, n - (size_t)(colon + 1 - (char *)dec)));
                }
                memset(dec, 0, n);
                free(dec);
            }
        }
        json_object_set_new(res, k, e);
    }
    json_decref(doc);
    *out = res;
    return 0;
}

/* A key split into host[:port] and path ("" if none), scheme and "/v1/"-like suffix dropped. */
static void key_split(const char *key, char **host, char **path)
{
    const char *p = key;
    if (strncmp(p, "https://", 8) == 0)
        p += 8;
    else if (strncmp(p, "http://", 7) == 0)
        p += 7;
    const char *slash = strchr(p, '/');
    *host = slash ? pw_xstrndup(p, (size_t)(slash - p)) : pw_xstrdup(p);
    char *pa = pw_xstrdup(slash ? slash + 1 : "");
    size_t n = strlen(pa);
    while (n && pa[n - 1] == '/')
        pa[--n] = 0;
    if (strcmp(pa, "v1") == 0 || strcmp(pa, "v2") == 0)
        pa[0] = 0; /* "https://index.docker.io/v1/" names the registry, not a repository */
    *path = pa;
    if (strcmp(*host, "index.docker.io") == 0 || strcmp(*host, "registry-1.docker.io") == 0) {
        free(*host);
        *host = pw_xstrdup("docker.io");
    }
}

/* The next label of [*p, end): its length; *p moves past it and its dot. */
static size_t next_label(const char **p, const char *end, const char **label)
{
    const char *dot = memchr(*p, '.', (size_t)(end - *p));
    size_t n = dot ? (size_t)(dot - *p) : (size_t)(end - *p);
    *label = *p;
    *p = dot ? dot + 1 : end;
    return n;
}

/* The ":port" of host[:port] ("[v6]:port" too), or NULL. */
static const char *port_of(const char *h)
{
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        return rb && rb[1] == ':' ? rb + 1 : NULL;
    }
    return strrchr(h, ':');
}

/* host[:port] patterns: the same number of labels, each equal (case-insensitive) or "*"; ports
 * equal (both absent, or the same). */
static bool host_matches(const char *pat, const char *host)
{
    const char *pc = port_of(pat), *hc = port_of(host);
    if ((pc == NULL) != (hc == NULL) || (pc && strcmp(pc, hc) != 0))
        return false;
    const char *a = pat, *ae = pc ? pc : pat + strlen(pat);
    const char *b = host, *be = hc ? hc : host + strlen(host);
    while (a < ae && b < be) {
        const char *la, *lb;
        size_t an = next_label(&a, ae, &la), bn = next_label(&b, be, &lb);
        if (!(an == 1 && la[0] == '*') && (an != bn || strncasecmp(la, lb, an) != 0))
            return false;
    }
    return a >= ae && b >= be;
}

static bool path_matches(const char *prefix, const char *path)
{
    size_t n = strlen(prefix);
    return n == 0 || (strncmp(prefix, path, n) == 0 && (path[n] == 0 || path[n] == '/'));
}

static int desc_cmp(const void *x, const void *y)
{
    return -strcmp(*(const char *const *)x, *(const char *const *)y);
}

json_t *pw_dockercfg_match(const json_t *auths, const char *image)
{
    struct pw_imageref ref;
    if (!json_is_object(auths) || pw_imageref_parse(image, &ref, NULL) != 0)
        return NULL;
    size_t n = json_object_size(auths), k = 0;
    const char **keys = pw_xcalloc(n ? n : 1, sizeof *keys);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)auths, key, v) {
        keys[k++] = key;
    }
    qsort(keys, k, sizeof *keys, desc_cmp);
    json_t *res = NULL;
    for (size_t i = 0; i < k && !res; i++) {
        char *host, *path;
        key_split(keys[i], &host, &path);
        if (host_matches(host, ref.domain) && path_matches(path, ref.path)) {
            const json_t *e = json_object_get(auths, keys[i]);
            res = json_object();
            static const char *const from[] = {"username", "password", "auth", "identitytoken", "registrytoken"};
            static const char *const to[] = {"username", "password", "auth", "identityToken", "registryToken"};
            for (size_t f = 0; f < 5; f++)
                if (json_object_get(e, from[f]))
                    json_object_set(res, to[f], json_object_get(e, from[f]));
            /* a URL: containerd parses it and gives the credentials only when its host is the
             * registry's (a bare "host:port" does not parse as a URL) */
            char *url = pw_xasprintf("https://%s", ref.domain);
            json_object_set_new(res, "serverAddress", json_string(url));
            free(url);
        }
        free(host);
        free(path);
    }
    free(keys);
    pw_imageref_fini(&ref);
    return res;
}
