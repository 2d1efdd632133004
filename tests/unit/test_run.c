/*
 * test_run.c - sg_run: argv without a shell, stdin data, environment,
 * exit codes and the deadline; what a child must not get (OVH_* secrets,
 * our sockets) and that it cannot outlive its deadline (issue 10, item 7).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The child sees PATH and the extras, not the OVH_* secrets nor the rest. */
static void test_minimal_env(void **state)
{
    const char *argv[] = { "env" };
    const char *env[] = { "SG_EVENT=blocked" };
    char out[4096];

    (void)state;
    setenv("OVH_APPLICATION_SECRET", "s3cret-value", 1);
    setenv("OVH_CONSUMER_KEY", "ck-value", 1);
    setenv("REDISCLI_AUTH", "redis-pw", 1);
    assert_int_equal(sg_run(argv, 1, env, 1, NULL, 5, out, sizeof(out)), 0);
    assert_null(strstr(out, "OVH_"));
    assert_null(strstr(out, "s3cret-value"));
    assert_null(strstr(out, "REDISCLI_AUTH"));
    assert_non_null(strstr(out, "SG_EVENT=blocked\n"));
    assert_non_null(strstr(out, "PATH="));
    unsetenv("OVH_APPLICATION_SECRET");
    unsetenv("OVH_CONSUMER_KEY");
    unsetenv("REDISCLI_AUTH");
}

/* A socket of ours without O_CLOEXEC (hiredis, libcurl) is not inherited. */
static void test_no_inherited_fd(void **state)
{
    int sv[2];
    char path[64], out[256];
    const char *argv[] = { "test", "-e", path };

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);   /* no SOCK_CLOEXEC */
    snprintf(path, sizeof(path), "/proc/self/fd/%d", sv[1]);
    assert_int_equal(sg_run(argv, 3, NULL, 0, NULL, 5, out, sizeof(out)), 1);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", 2);
    assert_int_equal(sg_run(argv, 3, NULL, 0, NULL, 5, out, sizeof(out)), 0);  /* the probe works */
    close(sv[0]);
    close(sv[1]);
}

/* A child that closes its output and goes on is still killed at its deadline. */
static void test_closed_output_deadline(void **state)
{
    const char *argv[] = { "sh", "-c", "exec >&- 2>&- </dev/null; sleep 30" };
    double t0 = now_s(), took;

    (void)state;
    assert_int_equal(sg_run(argv, 3, NULL, 0, NULL, 2, NULL, 0), 128 + 9);
    took = now_s() - t0;
    assert_true(took >= 1.9);
    assert_true(took < 3.5);
}

static char proc_state(long pid)
{
    char path[64], buf[256], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;                  /* gone */
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* What the child started dies with it at the deadline (its process group). */
static void test_group_killed(void **state)
{
    const char *argv[] = { "sh", "-c", "sleep 30 & echo $!; wait" };
    char out[128], st;
    double t0 = now_s();
    long gpid;

    (void)state;
    assert_int_equal(sg_run(argv, 3, NULL, 0, NULL, 1, out, sizeof(out)), 128 + 9);
    assert_true(now_s() - t0 < 3.0);
    gpid = strtol(out, NULL, 10);
    assert_true(gpid > 1);
    for (int i = 0; i < 100 && (st = proc_state(gpid)) != 0 && st != 'Z'; i++)
        usleep(20000);
    st = proc_state(gpid);
    assert_true(st == 0 || st == 'Z');     /* dead (a zombie until init reaps it) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_env),
        cmocka_unit_test(test_no_inherited_fd),
        cmocka_unit_test(test_closed_output_deadline),
        cmocka_unit_test(test_group_killed),
        cmocka_unit_test(test_stdin_and_output),
        cmocka_unit_test(test_no_shell_and_env),
        cmocka_unit_test(test_status_and_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
