/* Unit tests for src/engine/imageref: the distribution reference grammar (a table of valid and
 * invalid references with their normalised forms and errors) and presence on a node. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "engine/imageref.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX64B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* Valid references: the input, then domain, path, tag, digest and normalised form. */
static const struct {
    const char *ref, *domain, *path, *tag, *digest, *norm;
} VALID[] = {
    {"nginx", "docker.io", "library/nginx", NULL, NULL, "docker.io/library/nginx:latest"},
    {"nginx:1.27", "docker.io", "library/nginx", "1.27", NULL, "docker.io/library/nginx:1.27"},
    {"user/app", "docker.io", "user/app", NULL, NULL, "docker.io/user/app:latest"},
    {"user/app:v1", "docker.io", "user/app", "v1", NULL, "docker.io/user/app:v1"},
    {"docker.io/nginx", "docker.io", "library/nginx", NULL, NULL, "docker.io/library/nginx:latest"},
    {"docker.io/library/nginx:1.27", "docker.io", "library/nginx", "1.27", NULL, "docker.io/library/nginx:1.27"},
    {"index.docker.io/redis:7", "docker.io", "library/redis", "7", NULL, "docker.io/library/redis:7"},
    {"index.docker.io/u/r", "docker.io", "u/r", NULL, NULL, "docker.io/u/r:latest"},
    {"quay.io/prometheus/node-exporter:v1.8.0", "quay.io", "prometheus/node-exporter", "v1.8.0", NULL,
     "quay.io/prometheus/node-exporter:v1.8.0"},
    {"registry.example.com:5000/team/app:2024.01_rc-1", "registry.example.com:5000", "team/app", "2024.01_rc-1", NULL,
     "registry.example.com:5000/team/app:2024.01_rc-1"},
    {"localhost/app", "localhost", "app", NULL, NULL, "localhost/app:latest"},
    {"localhost:5000/app:dev", "localhost:5000", "app", "dev", NULL, "localhost:5000/app:dev"},
    {"127.0.0.1:5000/a/b/c", "127.0.0.1:5000", "a/b/c", NULL, NULL, "127.0.0.1:5000/a/b/c:latest"},
    {"[::1]:5000/app:1", "[::1]:5000", "app", "1", NULL, "[::1]:5000/app:1"},
    {"[fe80::1]/app", "[fe80::1]", "app", NULL, NULL, "[fe80::1]/app:latest"},
    {"gcr.io/distroless/static-debian12:nonroot", "gcr.io", "distroless/static-debian12", "nonroot", NULL,
     "gcr.io/distroless/static-debian12:nonroot"},
    {"nginx@sha256:" HEX64, "docker.io", "library/nginx", NULL, "sha256:" HEX64,
     "docker.io/library/nginx@sha256:" HEX64},
    {"nginx:1.27@sha256:" HEX64, "docker.io", "library/nginx", "1.27", "sha256:" HEX64,
     "docker.io/library/nginx:1.27@sha256:" HEX64},
    {"localhost:5000/app@sha256:" HEX64, "localhost:5000", "app", NULL, "sha256:" HEX64,
     "localhost:5000/app@sha256:" HEX64},
    {"a.b/c__d/e-f/g.h/i---j", "a.b", "c__d/e-f/g.h/i---j", NULL, NULL, "a.b/c__d/e-f/g.h/i---j:latest"},
    {"app:_tag", "docker.io", "library/app", "_tag", NULL, "docker.io/library/app:_tag"},
    {"app:UPPER.case-Tag_1", "docker.io", "library/app", "UPPER.case-Tag_1", NULL,
     "docker.io/library/app:UPPER.case-Tag_1"},
    {"my-registry.local/app", "my-registry.local", "app", NULL, NULL, "my-registry.local/app:latest"},
    /* an uppercase first component is a domain (as in splitDockerDomain) */
    {"Registry/app", "Registry", "app", NULL, NULL, "Registry/app:latest"},
    {"a/b/c/d/e/f", "docker.io", "a/b/c/d/e/f", NULL, NULL, "docker.io/a/b/c/d/e/f:latest"},
    {"x:1", "docker.io", "library/x", "1", NULL, "docker.io/library/x:1"},
    /* without a '/', nothing is a domain: "localhost" is a repository, ":5000" a tag */
    {"localhost", "docker.io", "library/localhost", NULL, NULL, "docker.io/library/localhost:latest"},
    {"localhost:5000", "docker.io", "library/localhost", "5000", NULL, "docker.io/library/localhost:5000"},
    {"example.com", "docker.io", "library/example.com", NULL, NULL, "docker.io/library/example.com:latest"},
};

/* Invalid references with a substring their error must contain. */
static const struct {
    const char *ref, *err;
} INVALID[] = {
    {"", "at least one component"},
    {"Nginx", "must be lowercase"},
    {"user/App", "must be lowercase"},
    {"docker.io/Library/nginx", "must be lowercase"},
    {"nginx:", "invalid reference format"},
    {"nginx:-tag", "invalid reference format"},
    {"nginx:.tag", "invalid reference format"},
    {"nginx:tag!", "invalid reference format"},
    {"nginx:a:b", "invalid reference format"},
    {":tag", "at least one component"},
    {"@sha256:" HEX64, "at least one component"},
    {"nginx@", "invalid digest format"},
    {"nginx@sha256:abc", "invalid digest format"},
    {"nginx@sha256:" HEX64 "0", "invalid checksum digest length"},
    {"nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", "invalid checksum digest length"},
    {"nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "invalid checksum digest format"},
    {"nginx@md5:0123456789abcdef0123456789abcdef", "unsupported digest algorithm"},
    {"nginx@sha256:" HEX64 "@sha256:" HEX64, "invalid digest format"},
    {"nginx@sha256" HEX64, "invalid digest format"},
    {"/nginx", "invalid reference format"},
    {"nginx/", "invalid reference format"},
    {"a//b", "invalid reference format"},
    {"docker.io/", "at least one component"},
    {"-app", "invalid reference format"},
    {"app-", "invalid reference format"},
    {"a..b", "invalid reference format"},
    {"a___b", "invalid reference format"},
    {"a_-b", "invalid reference format"},
    {"a b", "invalid reference format"},
    {"localhost:/app", "invalid reference format"},
    {"localhost:port/app", "invalid reference format"},
    {"-bad.com/app", "invalid reference format"},
    {"bad-.com/app", "invalid reference format"},
    {"bad..com/app", "invalid reference format"},
    {"bad_host.com/app", "invalid reference format"},
    {"[::1/app", "invalid reference format"},
    {"[]/app", "invalid reference format"},
    {"[zz::1]/app", "invalid reference format"},
    {HEX64, "64-byte hexadecimal"},
    {"app\n", "invalid reference format"},
};

static void test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof VALID / sizeof VALID[0]; i++) {
        struct pw_imageref r;
        char *err = NULL;
        int rc = pw_imageref_parse(VALID[i].ref, &r, &err);
        if (rc != 0)
            fail_msg("%s: %s", VALID[i].ref, err);
        assert_null(err);
        assert_string_equal(r.domain, VALID[i].domain);
        assert_string_equal(r.path, VALID[i].path);
        if (VALID[i].tag == NULL)
            assert_null(r.tag);
        else
            assert_string_equal(r.tag, VALID[i].tag);
        if (VALID[i].digest == NULL)
            assert_null(r.digest);
        else
            assert_string_equal(r.digest, VALID[i].digest);
        char *norm = pw_imageref_normalized(&r);
        assert_string_equal(norm, VALID[i].norm);
        /* the normalised form parses back to itself */
        struct pw_imageref again;
        assert_int_equal(pw_imageref_parse(norm, &again, NULL), 0);
        char *norm2 = pw_imageref_normalized(&again);
        assert_string_equal(norm2, norm);
        free(norm2);
        free(norm);
        pw_imageref_fini(&again);
        pw_imageref_fini(&r);
        assert_null(r.domain);
        pw_imageref_fini(&r); /* twice is harmless */
    }
}

static void test_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof INVALID / sizeof INVALID[0]; i++) {
        struct pw_imageref r = {(char *)"untouched", NULL, NULL, NULL};
        char *err = NULL;
        int rc = pw_imageref_parse(INVALID[i].ref, &r, &err);
        if (rc != PW_EINVAL)
            fail_msg("'%s' parsed (rc %d)", INVALID[i].ref, rc);
        assert_non_null(err);
        if (strstr(err, INVALID[i].err) == NULL)
            fail_msg("'%s': error '%s' lacks '%s'", INVALID[i].ref, err, INVALID[i].err);
        assert_non_null(strstr(err, "invalid reference format"));
        assert_string_equal(r.domain, "untouched"); /* out written only on success */
        free(err);
        /* errmsg may be NULL */
        assert_int_equal(pw_imageref_parse(INVALID[i].ref, &r, NULL), PW_EINVAL);
    }
    assert_int_equal(pw_imageref_parse(NULL, &(struct pw_imageref){0}, NULL), PW_EINVAL);
}

static void test_uppercase_message(void **state)
{
    (void)state;
    struct pw_imageref r;
    char *err = NULL;
    assert_int_equal(pw_imageref_parse("NGINX:1.27", &r, &err), PW_EINVAL);
    assert_string_equal(err, "invalid reference format: repository name must be lowercase");
    free(err);
}

/* A name of exactly n characters once normalised: "reg.io/" + a path of 'a's split every 50. */
static char *name_of_len(size_t n)
{
    const char *prefix = "reg.io/";
    char *s = pw_xmalloc(n + 1);
    size_t len = strlen(prefix);
    memcpy(s, prefix, len);
    size_t run = 0;
    while (len < n) {
        /* never end on, or repeat, a slash */
        if (run == 50 && len + 1 < n) {
            s[len++] = '/';
            run = 0;
        } else {
            s[len++] = 'a';
            run++;
        }
    }
    s[len] = '\0';
    return s;
}

static void test_length(void **state)
{
    (void)state;
    struct pw_imageref r;
    char *err = NULL;
    char *ok = name_of_len(255);
    assert_int_equal(strlen(ok), 255);
    assert_int_equal(pw_imageref_parse(ok, &r, &err), 0);
    pw_imageref_fini(&r);
    char *with_tag = pw_xasprintf("%s:%s", ok, "v1");
    assert_int_equal(pw_imageref_parse(with_tag, &r, NULL), 0); /* the tag does not count */
    pw_imageref_fini(&r);
    char *bad = name_of_len(256);
    assert_int_equal(pw_imageref_parse(bad, &r, &err), PW_EINVAL);
    assert_non_null(strstr(err, "not be more than 255 characters"));
    free(err);
    /* the limit applies to the normalised name: docker.io/library/ counts */
    char *hub = pw_xmalloc(256);
    memset(hub, 'a', 240);
    hub[240] = '\0';
    assert_int_equal(pw_imageref_parse(hub, &r, NULL), PW_EINVAL);
    hub[230] = '\0'; /* docker.io/library/ + 230 = 248 */
    assert_int_equal(pw_imageref_parse(hub, &r, NULL), 0);
    pw_imageref_fini(&r);
    /* tags: 128 characters at most */
    char tag[140];
    memset(tag, 't', 128);
    tag[128] = '\0';
    char *t128 = pw_xasprintf("app:%s", tag);
    assert_int_equal(pw_imageref_parse(t128, &r, NULL), 0);
    pw_imageref_fini(&r);
    char *t129 = pw_xasprintf("app:%st", tag);
    assert_int_equal(pw_imageref_parse(t129, &r, NULL), PW_EINVAL);
    free(t128);
    free(t129);
    free(hub);
    free(with_tag);
    free(ok);
    free(bad);
}

static void test_other_digests(void **state)
{
    (void)state;
    struct pw_imageref r;
    char hex[129];
    memset(hex, 'a', 128);
    hex[128] = '\0';
    char *s512 = pw_xasprintf("app@sha512:%s", hex);
    assert_int_equal(pw_imageref_parse(s512, &r, NULL), 0);
    pw_imageref_fini(&r);
    hex[96] = '\0';
    char *s384 = pw_xasprintf("app@sha384:%s", hex);
    assert_int_equal(pw_imageref_parse(s384, &r, NULL), 0);
    pw_imageref_fini(&r);
    free(s512);
    free(s384);
}

/* Random strings over the grammar's alphabet: no crash or leak (ASan), and every accepted reference
 * normalises to a form that parses back to itself, with a lowercase path. Deterministic (fixed seed). */
static void test_random(void **state)
{
    (void)state;
    static const char ALPHABET[] = "abcz09AZ._-/:@[]";
    static const char *const PIECES[] = {("sha256:" HEX64), "localhost", "docker.io", "library", ":5000", "__"};
    unsigned long long x = 0x9e3779b97f4a7c15ULL;
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char s[96];
        size_t n = 0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t len = (size_t)(x % 24);
        for (size_t k = 0; k < len && n < 20; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (x % 9 == 0) {
                const char *p = PIECES[(x >> 8) % (sizeof PIECES / sizeof PIECES[0])];
                size_t pl = strlen(p);
                if (n + pl < sizeof s - 1) {
                    memcpy(s + n, p, pl);
                    n += pl;
                }
            } else {
                s[n++] = ALPHABET[(x >> 8) % (sizeof ALPHABET - 1)];
            }
        }
        s[n] = '\0';
        struct pw_imageref r;
        char *err = NULL;
        int rc = pw_imageref_parse(s, &r, &err);
        if (rc != 0) {
            assert_int_equal(rc, PW_EINVAL);
            assert_non_null(err);
            free(err);
            continue;
        }
        accepted++;
        for (const char *c = r.path; *c; c++)
            assert_false(*c >= 'A' && *c <= 'Z');
        char *norm = pw_imageref_normalized(&r);
        struct pw_imageref again;
        if (pw_imageref_parse(norm, &again, NULL) != 0)
            fail_msg("'%s' -> '%s' does not parse", s, norm);
        char *norm2 = pw_imageref_normalized(&again);
        assert_string_equal(norm, norm2);
        free(norm2);
        free(norm);
        pw_imageref_fini(&again);
        pw_imageref_fini(&r);
    }
    assert_true(accepted > 100); /* the generator does reach valid references */
}

/* ---- presence ---------------------------------------------------------------------------------- */

static const char *NODE_IMAGES =
    "[{\"names\":[\"docker.io/library/nginx@sha256:" HEX64 "\",\"docker.io/library/nginx:1.27\"],"
    "  \"sizeBytes\":72000000},"
    " {\"names\":[\"registry.example.com:5000/team/app@sha256:" HEX64B "\","
    "   \"registry.example.com:5000/team/app:v2\"],\"sizeBytes\":1000},"
    " {\"names\":[\"docker.io/library/busybox:latest\"],\"sizeBytes\":4000000},"
    " {\"names\":[\"quay.io/x/y:1\"]},"
    " {\"names\":[\"NOT A REFERENCE\", 7]},"
    " {\"sizeBytes\":5}]";

static const struct {
    const char *ref;
    bool present;
} PRESENCE[] = {
    {"nginx:1.27", true},
    {"docker.io/library/nginx:1.27", true},
    {"index.docker.io/library/nginx:1.27", true},
    {"library/nginx:1.27", true},
    {"nginx:1.26", false},
    {"nginx@sha256:" HEX64, true},
    {"docker.io/library/nginx@sha256:" HEX64, true},
    {"nginx@sha256:" HEX64B, false},      /* another digest */
    {"nginx:1.26@sha256:" HEX64, true},   /* the digest decides */
    {"nginx:1.27@sha256:" HEX64B, false}, /* the digest decides */
    {"redis@sha256:" HEX64, false},       /* same digest, another repository */
    {"registry.example.com:5000/team/app:v2", true},
    {"registry.example.com/team/app:v2", false}, /* the port is part of the domain */
    {"registry.example.com:5000/team/app@sha256:" HEX64B, true},
    {"busybox", false},        /* tagless means latest: never trusted */
    {"busybox:latest", false}, /* nor an explicit latest */
    {"quay.io/x/y:1", true},
    {"quay.io/x/y", false},
    {"docker.io/x/y:1", false},
};

static void test_present(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *images = json_loads(NODE_IMAGES, 0, &jerr);
    assert_non_null(images);
    json_t *compact = json_array();
    size_t k;
    json_t *entry;
    json_array_foreach(images, k, entry) {
        json_array_extend(compact, json_object_get(entry, "names"));
    }
    for (size_t i = 0; i < sizeof PRESENCE / sizeof PRESENCE[0]; i++) {
        struct pw_imageref r;
        assert_int_equal(pw_imageref_parse(PRESENCE[i].ref, &r, NULL), 0);
        if (pw_imageref_present(&r, images) != PRESENCE[i].present)
            fail_msg("%s: expected present=%d", PRESENCE[i].ref, PRESENCE[i].present);
        /* the compact form of the engine's node cache (a flat array of names) reads the same */
        if (pw_imageref_present(&r, compact) != PRESENCE[i].present)
            fail_msg("%s (compact): expected present=%d", PRESENCE[i].ref, PRESENCE[i].present);
        assert_false(pw_imageref_present(&r, NULL));
        pw_imageref_fini(&r);
    }
    json_t *empty = json_array();
    json_t *notarray = json_object();
    struct pw_imageref r;
    assert_int_equal(pw_imageref_parse("nginx:1.27", &r, NULL), 0);
    assert_false(pw_imageref_present(&r, empty));
    assert_false(pw_imageref_present(&r, notarray));
    pw_imageref_fini(&r);
    json_decref(empty);
    json_decref(notarray);
    json_decref(images);
    json_decref(compact);
}

/* A node lists short names too (some runtimes do): they are normalised before comparing. */
static void test_present_short_names(void **state)
{
    (void)state;
    json_t *images = json_loads("[{\"names\":[\"nginx:1.27\",\"team/app@sha256:" HEX64 "\"]}]", 0, NULL);
    struct pw_imageref r;
    assert_int_equal(pw_imageref_parse("docker.io/library/nginx:1.27", &r, NULL), 0);
    assert_true(pw_imageref_present(&r, images));
    pw_imageref_fini(&r);
    assert_int_equal(pw_imageref_parse("docker.io/team/app@sha256:" HEX64, &r, NULL), 0);
    assert_true(pw_imageref_present(&r, images));
    pw_imageref_fini(&r);
    json_decref(images);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_uppercase_message),
        cmocka_unit_test(test_length),
        cmocka_unit_test(test_other_digests),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_present),
        cmocka_unit_test(test_present_short_names),
    };
    return cmocka_run_group_tests_name("engine/imageref", tests, NULL, NULL);
}
