/*
 * test_run.c - sg_run: argv without a shell, stdin data, environment,
 * exit codes and the deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "sg_run.h"

static void test_stdin_and_output(void **state)
{
    const char *argv[] = { "cat" };
    char out[64];

    (void)state;
    assert_int_equal(sg_run(argv, 1, NULL, 0, "Q1\nQ2\n", 5, out, sizeof(out)), 0);
    assert_string_equal(out, "Q1\nQ2\n");
}

static void test_no_shell_and_env(void **state)
{
    const char *argv[] = { "printenv", "SG_ACCOUNT" };
    const char *env[] = { "SG_ACCOUNT=a@b; rm -rf /" };
    const char *echo[] = { "echo", "$HOME", "a;b" };
    char out[128];

    (void)state;
    assert_int_equal(sg_run(argv, 2, env, 1, NULL, 5, out, sizeof(out)), 0);
    assert_string_equal(out, "a@b; rm -rf /\n");
    assert_int_equal(sg_run(echo, 3, NULL, 0, NULL, 5, out, sizeof(out)), 0);
    assert_string_equal(out, "$HOME a;b\n");           /* no shell expansion */
}

static void test_status_and_deadline(void **state)
{
    const char *f[] = { "false" };
    const char *missing[] = { "/nonexistent/sg-command" };
    const char *slow[] = { "sleep", "30" };
    char out[128];
    time_t t0;

    (void)state;
    assert_int_equal(sg_run(f, 1, NULL, 0, NULL, 5, NULL, 0), 1);
    assert_int_equal(sg_run(missing, 1, NULL, 0, NULL, 5, out, sizeof(out)), 127);
    assert_non_null(strstr(out, "cannot execute"));
    t0 = time(NULL);
    assert_int_equal(sg_run(slow, 2, NULL, 0, NULL, 1, NULL, 0), 128 + 9);
    assert_true(time(NULL) - t0 < 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdin_and_output),
        cmocka_unit_test(test_no_shell_and_env),
        cmocka_unit_test(test_status_and_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
