/*
 * test_time.c - util/sg_time: the UTC formatter on known instants and
 * short buffers, the clocks against each other and against time(2), and
 * the condition-variable deadline (bounds generous: a loaded machine).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "sg_time.h"

static void test_utc(void **state)
{
    char buf[64];

    (void)state;
    assert_string_equal(sg_time_utc(buf, sizeof(buf), 0, SG_TIME_MINUTE), "1970-01-01 00:00 UTC");
    assert_string_equal(sg_time_utc(buf, sizeof(buf), 1700000000123LL, SG_TIME_MINUTE),
                        "2023-11-14 22:13 UTC");
    assert_string_equal(sg_time_utc(buf, sizeof(buf), 1700000000999LL, "%Y-%m-%d %H:%M:%S"),
                        "2023-11-14 22:13:20");
    assert_string_equal(sg_time_utc(buf, sizeof(buf), 19675LL * 86400000, "%Y-%m-%d"),
                        "2023-11-14");
    assert_string_equal(sg_time_utc(buf, sizeof(buf), 472222LL * 3600000, "%Y-%m-%d %H:00"),
                        "2023-11-14 22:00");
    memset(buf, 'x', sizeof(buf));
    assert_string_equal(sg_time_utc(buf, 8, 1700000000000LL, SG_TIME_MINUTE), "");  /* too short */
    assert_int_equal(buf[8], 'x');                                      /* nothing past it */
    assert_ptr_equal(sg_time_utc(buf, 0, 0, SG_TIME_MINUTE), buf);
}

static void test_clocks(void **state)
{
    int64_t real = sg_time_real_ms(), now = (int64_t)time(NULL) * 1000;
    int64_t m1 = sg_time_mono_ms(), m2;
    double f = sg_time_mono_msf();

    (void)state;
    assert_true(real > 1600000000000LL);
    assert_true(real - now > -5000 && real - now < 5000);
    m2 = sg_time_mono_ms();
    assert_true(m2 >= m1);
    assert_true(f >= (double)m1 && f < (double)m2 + 5000.0);
}

static void test_deadline(void **state)
{
    int64_t before = sg_time_real_ms();
    struct timespec d = sg_time_deadline(1999);
    int64_t at = (int64_t)d.tv_sec * 1000 + d.tv_nsec / 1000000;

    (void)state;
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    assert_true(at >= before + 1999);
    assert_true(at < before + 1999 + 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
