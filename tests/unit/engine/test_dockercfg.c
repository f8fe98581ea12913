/* Unit tests for src/engine/dockercfg: parsing image pull secrets and the kubelet's matching of
 * registry keys to images (globs, ports, path prefixes, Docker Hub's names, the most specific key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/dockercfg.h"

static json_t *parse_ok(const char *text)
{
    json_t *a = NULL;
    const char *why = NULL;
    assert_int_equal(pw_dockercfg_parse(text, strlen(text), &a, &why), 0);
    return a;
}

/* The username the match gives image, or "-" for none. */
static const char *who(const json_t *auths, const char *image, char *buf, size_t n)
{
    json_t *m = pw_dockercfg_match(auths, image);
    snprintf(buf, n, "%s", m ? json_string_value(json_object_get(m, "username")) : "-");
    json_decref(m);
    return buf;
}

static void test_parse(void **state)
{
    (void)state;
    /* "auth" is base64 user:password and fills the fields when they are absent */
    json_t *a = parse_ok("{\"auths\":{\"reg.example.com\":{\"auth\":\"YWxpY2U6czNjcjN0\"}}}");
    json_t *m = pw_dockercfg_match(a, "reg.example.com/app:1");
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "username")), "alice");
    assert_string_equal(json_string_value(json_object_get(m, "password")), "s3cr3t");
    assert_string_equal(json_string_value(json_object_get(m, "serverAddress")), "https://reg.example.com");
    json_decref(m);
    json_decref(a);
    /* the older .dockercfg form: the keys at the top */
    a = parse_ok("{\"https://index.docker.io/v1/\":{\"username\":\"bob\",\"password\":\"p\"}}");
    char b[64];
    assert_string_equal(who(a, "nginx:1.27", b, sizeof b), "bob");
    assert_string_equal(who(a, "docker.io/library/redis:7", b, sizeof b), "bob");
    assert_string_equal(who(a, "quay.io/x/y:1", b, sizeof b), "-");
    json_decref(a);
    /* refused: not an object, auths not an object; never secret data in the message */
    const char *why = NULL;
    json_t *out = NULL;
    assert_int_equal(pw_dockercfg_parse("[1]", 3, &out, &why), PW_EINVAL);
    assert_non_null(why);
    assert_int_equal(pw_dockercfg_parse("{\"auths\":3}", 11, &out, &why), PW_EINVAL);
    assert_int_equal(pw_dockercfg_parse("{not json", 9, &out, &why), PW_EINVAL);
    assert_null(out);
}

static void test_match_rules(void **state)
{
    (void)state;
    json_t *a = parse_ok("{\"auths\":{"
                         "\"*.example.com\":{\"username\":\"glob\",\"password\":\"x\"},"
                         "\"reg.example.com:5000\":{\"username\":\"port\",\"password\":\"x\"},"
                         "\"reg.example.com/team\":{\"username\":\"team\",\"password\":\"x\"},"
                         "\"reg.example.com/team/app\":{\"username\":\"app\",\"password\":\"x\"},"
                         "\"http://127.0.0.1:5001\":{\"username\":\"local\",\"password\":\"x\"}}}");
    char b[64];
    /* the most specific key first: a longer path beats a shorter one and the glob */
    assert_string_equal(who(a, "reg.example.com/team/app:1", b, sizeof b), "app");
    assert_string_equal(who(a, "reg.example.com/team/other:1", b, sizeof b), "team");
    /* a path prefix only on a "/" boundary */
    assert_string_equal(who(a, "reg.example.com/teamx/app:1", b, sizeof b), "glob");
    /* "*" is one label: a.example.com yes, example.com and a.b.example.com no */
    assert_string_equal(who(a, "a.example.com/x:1", b, sizeof b), "glob");
    assert_string_equal(who(a, "example.com/x:1", b, sizeof b), "-");
    assert_string_equal(who(a, "a.b.example.com/x:1", b, sizeof b), "-");
    /* ports must be equal */
    assert_string_equal(who(a, "reg.example.com:5000/x:1", b, sizeof b), "port");
    assert_string_equal(who(a, "reg.example.com:5001/x:1", b, sizeof b), "-");
    assert_string_equal(who(a, "127.0.0.1:5001/private:1", b, sizeof b), "local");
    assert_string_equal(who(a, "127.0.0.1:5002/private:1", b, sizeof b), "-");
    /* host names compare without case */
    assert_string_equal(who(a, "A.Example.COM/x:1", b, sizeof b), "glob");
    /* a bad reference matches nothing */
    assert_string_equal(who(a, "Not A Ref", b, sizeof b), "-");
    json_decref(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_match_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
