/*
 * test_qid.c - what the daemon records and the root helper accepts as a
 * queue id (issue 10, item 4): Postfix short and long ids, Sendmail ids,
 * and nothing else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sg_release.h"

static void test_valid(void **state)
{
    static const char *const ok[] = {
        "4F2A1C3", "ABCDEF", "0123456789ABCDEF",             /* Postfix short (hex) */
        "4VgRkq0BT1zJ9xx", "3xYzAbCdEf",                      /* Postfix long */
        "0B2Gx1Zq012345", "wAB12345", "abcdefgh",             /* Sendmail */
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",                   /* 32: the bound */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(sg_release_qid_valid(ok[i]));
}

static void test_invalid(void **state)
{
    static const char *const bad[] = {
        "", "ABCDE", "abcdef", "ABCDEg", "4F2A1C3 -H ALL", "4F2A1C3\n", "ABC\nDEFGHIJ",
        "-H", "ALL", "--", "../../etc", "4F2A1C3;rm", "4F2A1C3\r", " 4F2A1C3", "4F2A1C3 ",
        "4F2A-1C3", "4F2A_1C3", "4F2A.1C3", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",                  /* 33 */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(sg_release_qid_valid(bad[i]));
    assert_false(sg_release_qid_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
