/* Unit tests for src/base: buffers with caps, string views, scalar parsers, RFC 3339, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/sv.h"

static void test_buf_cap(void **state)
{
    (void)state;
    pw_buf b;
    pw_buf_init(&b, 8);
    assert_int_equal(pw_buf_puts(&b, "12345"), 0);
    assert_int_equal(pw_buf_puts(&b, "6789"), PW_ETOOLARGE);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.p, "12345");
    assert_int_equal(pw_buf_printf(&b, "%d", 678), 0);
    assert_string_equal(b.p, "12345678");
    pw_buf_consume(&b, 3);
    assert_string_equal(b.p, "45678");
    char *s = pw_buf_steal(&b);
    assert_string_equal(s, "45678");
    assert_null(b.p);
    free(s);
    pw_buf_fini(&b);
}

static void test_sv(void **state)
{
    (void)state;
    pw_sv head;
    pw_sv rest = pw_sv_cut(pw_sv_from("key=value"), '=', &head);
    assert_true(pw_sv_eq_cstr(head, "key"));
    assert_true(pw_sv_eq_cstr(rest, "value"));
    rest = pw_sv_cut(pw_sv_from("novalue"), '=', &head);
    assert_null(rest.p);
    assert_true(pw_sv_eq_cstr(head, "novalue"));
    assert_true(pw_sv_eq_cstr(pw_sv_trim(pw_sv_from("  x y \t")), "x y"));
}

static void test_parse_scalars(void **state)
{
    (void)state;
    long v = 7;
    assert_int_equal(pw_parse_long("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(pw_parse_long("101", 0, 100, &v), PW_EINVAL);
    assert_int_equal(pw_parse_long("4x", 0, 100, &v), PW_EINVAL);
    assert_int_equal(v, 42);
    bool b = false;
    assert_int_equal(pw_parse_bool("True", &b), 0);
    assert_true(b);
    assert_int_equal(pw_parse_bool("yes", &b), PW_EINVAL);
    long long ms = 0;
    assert_int_equal(pw_parse_duration_ms("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(pw_parse_duration_ms("90", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(pw_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(pw_parse_duration_ms("10x", &ms), PW_EINVAL);
}

static void test_rfc3339(void **state)
{
    (void)state;
    char out[PW_RFC3339_LEN];
    pw_time_rfc3339(1795773600, out);
    assert_string_equal(out, "2026-11-27T10:00:00Z");
    time_t t = 0;
    assert_int_equal(pw_time_parse_rfc3339("2026-11-27T10:00:00Z", &t), 0);
    assert_int_equal(t, 1795773600);
    assert_int_equal(pw_time_parse_rfc3339("2026-11-27T12:00:00.5+02:00", &t), 0);
    assert_int_equal(t, 1795773600);
    assert_int_equal(pw_time_parse_rfc3339("2026-13-27T10:00:00Z", &t), PW_EINVAL);
    pw_time_rfc3339_micro(1795773600123LL, out);
    assert_string_equal(out, "2026-11-27T10:00:00.123000Z");
}

static void test_errors(void **state)
{
    (void)state;
    assert_int_equal(pw_err_http_status(PW_EINVAL), 400);
    assert_int_equal(pw_err_http_status(PW_ENOTFOUND), 404);
    assert_string_equal(pw_err_reason(PW_ETOOLARGE), "TooLarge");
    assert_string_equal(pw_strerror(-999), "unknown error");
}

static void test_deadline(void **state)
{
    (void)state;
    struct timespec now, d;
    clock_gettime(CLOCK_REALTIME, &now);
    pw_clock_deadline_ts(1500, &d);
    long long diff_ms = (long long)(d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
    assert_true(diff_ms >= 1500 && diff_ms < 1600);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_sv),
        cmocka_unit_test(test_parse_scalars),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
