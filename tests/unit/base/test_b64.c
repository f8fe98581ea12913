/* Unit tests for src/base/b64: RFC 4648 vectors, URL form, padding-less and whitespace input, rejects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/b64.h"
#include "base/err.h"

static const char *const VEC[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void dec_ok(const char *in, const void *want, size_t want_len)
{
    void *out = NULL;
    size_t n = 99;
    assert_int_equal(pw_b64_decode(in, strlen(in), &out, &n), 0);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
    assert_int_equal(((char *)out)[n], '\0');
    free(out);
}

static void test_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof VEC / sizeof VEC[0]; i++) {
        char *e = pw_b64_encode(VEC[i][0], strlen(VEC[i][0]), false);
        assert_string_equal(e, VEC[i][1]);
        free(e);
        dec_ok(VEC[i][1], VEC[i][0], strlen(VEC[i][0]));
    }
}

static void test_url_and_unpadded(void **state)
{
    (void)state;
    const unsigned char bin[] = {0xfb, 0xff, 0xfe, 0x00, 0x3e};
    char *s = pw_b64_encode(bin, sizeof bin, false);
    assert_string_equal(s, "+//+AD4=");
    free(s);
    s = pw_b64_encode(bin, sizeof bin, true);
    assert_string_equal(s, "-__-AD4");
    dec_ok(s, bin, sizeof bin);
    free(s);
    dec_ok("+//+AD4", bin, sizeof bin);
    dec_ok("Zm9vYg", "foob", 4);
    dec_ok("Zm9vYmE", "fooba", 5);
    dec_ok("aGVs\nbG8=", "hello", 5);
    dec_ok(" aGVs\r\nbG8h\n", "hello!", 6);
    char *e = pw_b64_encode(NULL, 0, true);
    assert_string_equal(e, "");
    free(e);
}

static void test_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {"aGV*", "aG=V", "Zg===", "Zm9vY", "Zg=", "Z", "Zm9v=", "Zg==Zg==", "Zm\x80v"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)1;
        size_t n = 7;
        assert_int_equal(pw_b64_decode(bad[i], strlen(bad[i]), &out, &n), PW_EINVAL);
        assert_ptr_equal(out, (void *)1);
        assert_int_equal(n, 7);
    }
    /* n bounds the input: a NUL or anything after n is not read. */
    void *out;
    size_t n;
    assert_int_equal(pw_b64_decode("Zm9vYmFy", 4, &out, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "foo", 3);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_url_and_unpadded),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
