/* Unit tests for src/k8s/labels.c: every selector operator, parse errors, and the validation helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/labels.h"

static bool sel_match(const char *sel, const char *labels_json)
{
    pw_labelsel *s = NULL;
    char *err = NULL;
    int rc = pw_labelsel_parse(sel, &s, &err);
    if (rc != 0)
        fail_msg("parse of '%s' failed: %s", sel, err ? err : "?");
    json_t *labels = labels_json ? json_loads(labels_json, 0, NULL) : NULL;
    bool m = pw_labelsel_matches(s, labels);
    json_decref(labels);
    pw_labelsel_free(s);
    return m;
}

static void expect_error(const char *sel, const char *fragment)
{
    pw_labelsel *s = (pw_labelsel *)0x1;
    char *err = NULL;
    assert_int_equal(pw_labelsel_parse(sel, &s, &err), PW_EINVAL);
    assert_ptr_equal(s, (pw_labelsel *)0x1); /* untouched */
    assert_non_null(err);
    if (fragment && !strstr(err, fragment))
        fail_msg("error for '%s' is '%s', wanted '%s' in it", sel, err, fragment);
    free(err);
}

static void test_equality(void **state)
{
    (void)state;
    const char *L = "{\"app\":\"web\",\"tier\":\"front\",\"n\":\"5\",\"e\":\"\"}";
    assert_true(sel_match("app=web", L));
    assert_true(sel_match("app==web", L));
    assert_false(sel_match("app=db", L));
    assert_true(sel_match("app!=db", L));
    assert_false(sel_match("app!=web", L));
    assert_true(sel_match("missing!=x", L)); /* != matches objects without the key */
    assert_false(sel_match("missing=x", L));
    assert_true(sel_match("app=web,tier=front", L));
    assert_false(sel_match("app=web,tier=back", L));
    assert_true(sel_match(" app = web , tier = front ", L));
    assert_true(sel_match("e=", L)); /* empty value */
    assert_false(sel_match("app=", L));
}

static void test_sets_and_exists(void **state)
{
    (void)state;
    const char *L = "{\"app\":\"web\",\"kubernetes.io/arch\":\"arm64\"}";
    assert_true(sel_match("app in (web,db)", L));
    assert_true(sel_match("app in ( db , web )", L));
    assert_false(sel_match("app in (db)", L));
    assert_true(sel_match("app notin (db)", L));
    assert_false(sel_match("app notin (db,web)", L));
    assert_true(sel_match("other notin (x)", L)); /* notin matches objects without the key */
    assert_false(sel_match("other in (x)", L));
    assert_true(sel_match("app", L));
    assert_false(sel_match("other", L));
    assert_true(sel_match("!other", L));
    assert_false(sel_match("!app", L));
    assert_true(sel_match("kubernetes.io/arch in (arm64),app,!gpu", L));
    assert_false(sel_match("kubernetes.io/arch notin (arm64)", L));
    assert_true(sel_match("app", "{\"app\":\"\"}"));
    assert_false(sel_match("app", NULL));
    assert_true(sel_match("!app", NULL));
}

static void test_gt_lt(void **state)
{
    (void)state;
    const char *L = "{\"n\":\"5\",\"s\":\"abc\"}";
    assert_true(sel_match("n>4", L));
    assert_false(sel_match("n>5", L));
    assert_true(sel_match("n<6", L));
    assert_false(sel_match("n<5", L));
    assert_false(sel_match("s>1", L)); /* not a number */
    assert_false(sel_match("m>1", L)); /* absent */
    expect_error("n>x", "integer");
}

static void test_empty(void **state)
{
    (void)state;
    pw_labelsel *s;
    assert_int_equal(pw_labelsel_parse(NULL, &s, NULL), 0);
    assert_true(pw_labelsel_empty(s));
    assert_true(pw_labelsel_matches(s, NULL));
    pw_labelsel_free(s);
    assert_int_equal(pw_labelsel_parse("  ", &s, NULL), 0);
    assert_true(pw_labelsel_empty(s));
    pw_labelsel_free(s);
    assert_int_equal(pw_labelsel_parse("a=b", &s, NULL), 0);
    assert_false(pw_labelsel_empty(s));
    pw_labelsel_free(s);
    pw_labelsel_free(NULL);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_error("a=b,", "identifier");
    expect_error(",a", "identifier");
    expect_error("a in b", "'('");
    expect_error("a in (b", NULL);
    expect_error("a in (b c)", NULL);
    expect_error("!a=b", NULL);
    expect_error("a b", NULL);
    expect_error("=b", "identifier");
    expect_error("a=(b)", "identifier");
    expect_error("a=b=c", NULL);
    expect_error("-bad=x", "name part must consist");
    expect_error("a/b/c=x", NULL);
    expect_error("Bad_Prefix/x=y", "prefix part");
    expect_error("a=-bad", "Invalid value");
    char long_key[80];
    memset(long_key, 'k', 64);
    long_key[64] = 0;
    expect_error(long_key, "no more than 63");
    expect_error("a in (x,-y)", "Invalid value");
    pw_labelsel *s;
    assert_int_equal(pw_labelsel_parse("a=b,", &s, NULL), PW_EINVAL); /* errmsg may be NULL */
}

static void test_validation(void **state)
{
    (void)state;
    char *err = NULL;
    assert_int_equal(pw_label_key_valid("app", NULL), 0);
    assert_int_equal(pw_label_key_valid("example.com/app-name_1.x", NULL), 0);
    assert_int_equal(pw_label_key_valid("", &err), PW_EINVAL);
    assert_non_null(strstr(err, "non-empty"));
    free(err);
    assert_int_equal(pw_label_key_valid("/x", &err), PW_EINVAL);
    assert_non_null(strstr(err, "prefix part must be non-empty"));
    free(err);
    assert_int_equal(pw_label_key_valid("x/", &err), PW_EINVAL);
    free(err);
    assert_int_equal(pw_label_key_valid("has space", &err), PW_EINVAL);
    free(err);
    assert_int_equal(pw_label_value_valid("", NULL), 0);
    assert_int_equal(pw_label_value_valid("A-b_c.9", NULL), 0);
    assert_int_equal(pw_label_value_valid("-a", &err), PW_EINVAL);
    free(err);
    char v[70];
    memset(v, 'v', 64);
    v[64] = 0;
    assert_int_equal(pw_label_value_valid(v, &err), PW_EINVAL);
    assert_string_equal(err, "must be no more than 63 characters");
    free(err);
    v[63] = 0;
    assert_int_equal(pw_label_value_valid(v, NULL), 0);
    assert_true(pw_dns1123_subdomain("a.b-c.d"));
    assert_false(pw_dns1123_subdomain("A"));
    assert_false(pw_dns1123_subdomain("a..b"));
    assert_false(pw_dns1123_subdomain("-a"));
    assert_false(pw_dns1123_subdomain(""));
    assert_true(pw_dns1123_label("abc-1"));
    assert_false(pw_dns1123_label("a.b"));
    assert_false(pw_dns1123_label("abc-"));
    char l[70];
    memset(l, 'a', 64);
    l[64] = 0;
    assert_false(pw_dns1123_label(l));
    l[63] = 0;
    assert_true(pw_dns1123_label(l));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equality),     cmocka_unit_test(test_sets_and_exists), cmocka_unit_test(test_gt_lt),
        cmocka_unit_test(test_empty),        cmocka_unit_test(test_parse_errors),    cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
