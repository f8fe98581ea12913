/* imageref.c: the distribution reference grammar (github.com/distribution/reference), checked by
 * hand-written scanners rather than regular expressions, with the docker.io normalisation of its
 * ParseNormalizedNamed, and the presence test against a node's status.images.
 *
 * The order of the checks follows the Go library so that the error a user sees for a bad reference
 * is the one docker, containerd and the kubelet would print. */
#include "engine/imageref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"

#define NAME_MAX_LEN 255 /* NameTotalLengthMax */
#define TAG_MAX_LEN 128

static const char DEFAULT_DOMAIN[] = "docker.io";
static const char LEGACY_DOMAIN[] = "index.docker.io";
static const char OFFICIAL_PREFIX[] = "library/";

/* Digest algorithms go-digest knows, with the length of their hex encoding. */
static const struct {
    const char *name;
    size_t hex_len;
} DIGEST_ALGS[] = {
    {"sha256", 64},
    {"sha384", 96},
    {"sha512", 128},
};

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_word(char c)
{
    return is_alnum(c) || c == '_';
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool is_hex(char c)
{
    return is_lower_hex(c) || (c >= 'A' && c <= 'F');
}

static int fail(char **errmsg, const char *detail)
{
    if (errmsg != NULL)
        *errmsg = detail != NULL ? pw_xasprintf("invalid reference format: %s", detail)
                                 : pw_xstrdup("invalid reference format");
    return PW_EINVAL;
}

/* A path component: [a-z0-9]+ ( ( [._] | __ | -+ ) [a-z0-9]+ )*. */
static bool path_component_ok(const char *p, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(p[0]))
        return false;
    while (i < n) {
        while (i < n && is_lower_alnum(p[i]))
            i++;
        if (i == n)
            return true;
        /* a separator, then at least one alphanumeric */
        if (p[i] == '.') {
            i++;
        } else if (p[i] == '_') {
            i++;
            if (i < n && p[i] == '_')
                i++;
        } else if (p[i] == '-') {
            while (i < n && p[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == n || !is_lower_alnum(p[i]))
            return false;
    }
    return true;
}

/* A domain name component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]. */
static bool domain_component_ok(const char *p, size_t n)
{
    if (n == 0 || !is_alnum(p[0]) || !is_alnum(p[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!is_alnum(p[i]) && p[i] != '-')
            return false;
    return true;
}

/* host [":" port], host = domain-name | "[" ipv6 hex and colons "]". */
static bool domain_ok(const char *p, size_t n)
{
    size_t host_end = n;
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL || close == p + 1)
            return false;
        for (const char *c = p + 1; c < close; c++)
            if (!is_hex(*c) && *c != ':')
                return false;
        host_end = (size_t)(close - p) + 1;
        if (host_end < n && p[host_end] != ':')
            return false;
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon != NULL)
            host_end = (size_t)(colon - p);
        size_t start = 0;
        for (size_t i = 0; i <= host_end; i++) {
            if (i == host_end || p[i] == '.') {
                if (!domain_component_ok(p + start, i - start))
                    return false;
                start = i + 1;
            }
        }
    }
    if (host_end < n) { /* ":" port */
        if (host_end + 1 == n)
            return false;
        for (size_t i = host_end + 1; i < n; i++)
            if (p[i] < '0' || p[i] > '9')
                return false;
    }
    return true;
}

/* tag: [\w][\w.-]{0,127}. */
static bool tag_ok(const char *p, size_t n)
{
    if (n == 0 || n > TAG_MAX_LEN || !is_word(p[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_word(p[i]) && p[i] != '.' && p[i] != '-')
            return false;
    return true;
}

/* algorithm ":" encoded. The grammar allows any algorithm [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z]
 * [A-Za-z0-9]*)* with 32+ hex digits; go-digest then accepts only the algorithms it knows, with
 * their exact length in lowercase hex. Returns NULL when fine, else the detail to report. */
static const char *digest_problem(const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (colon == NULL || colon == p)
        return "invalid digest format";
    size_t alg_len = (size_t)(colon - p);
    const char *hex = colon + 1;
    size_t hex_len = n - alg_len - 1;
    if (hex_len < 32)
        return "invalid digest format";
    for (size_t i = 0; i < hex_len; i++)
        if (!is_hex(hex[i]))
            return "invalid digest format";
    for (size_t i = 0; i < sizeof DIGEST_ALGS / sizeof DIGEST_ALGS[0]; i++) {
        if (strlen(DIGEST_ALGS[i].name) != alg_len || memcmp(DIGEST_ALGS[i].name, p, alg_len) != 0)
            continue;
        if (hex_len != DIGEST_ALGS[i].hex_len)
            return "invalid checksum digest length";
        for (size_t j = 0; j < hex_len; j++)
            if (!is_lower_hex(hex[j]))
                return "invalid checksum digest format";
        return NULL;
    }
    return "unsupported digest algorithm";
}

static bool has_upper(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            return true;
    return false;
}

/* A bare 64-hex string is an image ID, refused as a name (as ParseNormalizedNamed does). */
static bool is_identifier(const char *s)
{
    size_t n = strlen(s);
    if (n != 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_hex(s[i]))
            return false;
    return true;
}

int pw_imageref_parse(const char *ref, struct pw_imageref *out, char **errmsg)
{
    if (ref == NULL || ref[0] == '\0')
        return fail(errmsg, "repository name must have at least one component");
    if (is_identifier(ref))
        return fail(errmsg, "cannot specify 64-byte hexadecimal strings");

    /* name [":" tag] ["@" digest]: the name has no '@', so the first '@' starts the digest. */
    size_t len = strlen(ref);
    const char *at = strchr(ref, '@');
    size_t nt_len = at != NULL ? (size_t)(at - ref) : len; /* name and tag */
    const char *digest = at != NULL ? at + 1 : NULL;
    size_t digest_len = at != NULL ? len - nt_len - 1 : 0;

    /* The tag is after the last ':' that follows the last '/' (a ':' before it is a port). */
    const char *slash = NULL, *colon = NULL;
    for (size_t i = 0; i < nt_len; i++) {
        if (ref[i] == '/')
            slash = ref + i;
        else if (ref[i] == ':')
            colon = ref + i;
    }
    if (colon != NULL && slash != NULL && colon < slash)
        colon = NULL;
    size_t name_len = colon != NULL ? (size_t)(colon - ref) : nt_len;
    const char *tag = colon != NULL ? colon + 1 : NULL;
    size_t tag_len = colon != NULL ? nt_len - name_len - 1 : 0;

    if (name_len == 0)
        return fail(errmsg, "repository name must have at least one component");

    /* splitDockerDomain: the first component is a domain when it has '.' or ':', is "localhost",
     * or has an uppercase letter (a path never may). */
    const char *first_slash = memchr(ref, '/', name_len);
    const char *dom = NULL, *path = ref;
    size_t dom_len = 0, path_len = name_len;
    if (first_slash != NULL) {
        size_t fl = (size_t)(first_slash - ref);
        bool is_domain = memchr(ref, '.', fl) != NULL || memchr(ref, ':', fl) != NULL ||
                         (fl == 9 && memcmp(ref, "localhost", 9) == 0) || has_upper(ref, fl);
        if (is_domain) {
            dom = ref;
            dom_len = fl;
            path = first_slash + 1;
            path_len = name_len - fl - 1;
        }
    }
    if (has_upper(path, path_len))
        return fail(errmsg, "repository name must be lowercase");
    if (dom != NULL && !domain_ok(dom, dom_len))
        return fail(errmsg, NULL);
    if (path_len == 0)
        return fail(errmsg, "repository name must have at least one component");
    for (size_t start = 0, i = 0; i <= path_len; i++) {
        if (i == path_len || path[i] == '/') {
            if (!path_component_ok(path + start, i - start))
                return fail(errmsg, NULL);
            start = i + 1;
        }
    }
    if (tag != NULL && !tag_ok(tag, tag_len))
        return fail(errmsg, NULL);
    if (digest != NULL) {
        const char *why = digest_problem(digest, digest_len);
        if (why != NULL)
            return fail(errmsg, why);
    }

    /* Normalise: docker.io for Docker Hub, library/ for its one-component official images. */
    char *domain_s = dom != NULL ? pw_xstrndup(dom, dom_len) : pw_xstrdup(DEFAULT_DOMAIN);
    if (strcmp(domain_s, LEGACY_DOMAIN) == 0) {
        free(domain_s);
        domain_s = pw_xstrdup(DEFAULT_DOMAIN);
    }
    char *path_s;
    if (strcmp(domain_s, DEFAULT_DOMAIN) == 0 && memchr(path, '/', path_len) == NULL)
        path_s = pw_xasprintf("%s%.*s", OFFICIAL_PREFIX, (int)path_len, path);
    else
        path_s = pw_xstrndup(path, path_len);
    if (strlen(domain_s) + 1 + strlen(path_s) > NAME_MAX_LEN) {
        free(domain_s);
        free(path_s);
        return fail(errmsg, "repository name must not be more than 255 characters");
    }
    out->domain = domain_s;
    out->path = path_s;
    out->tag = tag != NULL ? pw_xstrndup(tag, tag_len) : NULL;
    out->digest = digest != NULL ? pw_xstrndup(digest, digest_len) : NULL;
    return 0;
}

void pw_imageref_fini(struct pw_imageref *r)
{
    if (r == NULL)
        return;
    free(r->domain);
    free(r->path);
    free(r->tag);
    free(r->digest);
    r->domain = r->path = r->tag = r->digest = NULL;
}

char *pw_imageref_normalized(const struct pw_imageref *r)
{
    const char *tag = r->tag;
    if (tag == NULL && r->digest == NULL)
        tag = "latest";
    return pw_xasprintf("%s/%s%s%s%s%s", r->domain, r->path, tag != NULL ? ":" : "", tag != NULL ? tag : "",
                        r->digest != NULL ? "@" : "", r->digest != NULL ? r->digest : "");
}

/* Whether the node's image name (as the kubelet lists it) is the same repository as r and names
 * the same digest (digest refs) or the same tag (tag refs). */
static bool name_matches(const struct pw_imageref *r, const char *name)
{
    struct pw_imageref n;
    if (pw_imageref_parse(name, &n, NULL) != 0)
        return false;
    bool same = strcmp(n.domain, r->domain) == 0 && strcmp(n.path, r->path) == 0;
    if (same && r->digest != NULL)
        same = n.digest != NULL && strcmp(n.digest, r->digest) == 0;
    else if (same)
        same = n.tag != NULL && strcmp(n.tag, r->tag) == 0;
    pw_imageref_fini(&n);
    return same;
}

bool pw_imageref_present(const struct pw_imageref *r, const json_t *node_images)
{
    if (r == NULL || !json_is_array(node_images))
        return false;
    /* A moving tag may point elsewhere by now: only a digest or a fixed tag is trusted. */
    if (r->digest == NULL && (r->tag == NULL || strcmp(r->tag, "latest") == 0))
        return false;
    size_t i;
    const json_t *entry;
    json_array_foreach(node_images, i, entry)
    {
        if (json_is_string(entry)) { /* the compact form: one name per entry */
            if (name_matches(r, json_string_value(entry)))
                return true;
            continue;
        }
        const json_t *names = json_object_get(entry, "names");
        size_t j;
        const json_t *name;
        json_array_foreach(names, j, name)
        {
            if (json_is_string(name) && name_matches(r, json_string_value(name)))
                return true;
        }
    }
    return false;
}
