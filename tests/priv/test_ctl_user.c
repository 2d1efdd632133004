/*
 * test_ctl_user.c - sendguardctl under sudo (issue 10, item 6): the reply
 * draft's editor runs as SUDO_UID with no OVH_* variable and none of our
 * sockets; --answers FILE is read as SUDO_UID (a root-only file is not).
 * Runs as root, with SUDO_UID/SUDO_GID naming nobody.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "ctl.h"

static char dir[] = "/tmp/sg-sudo-XXXXXX";
static struct passwd nobody;

static int setup(void **state)
{
    struct passwd *pw = getpwnam("nobody");
    char v[32];

    (void)state;
    if (geteuid() != 0 || pw == NULL) {
        fprintf(stderr, "test_ctl_user needs root and a user nobody\n");
        return -1;
    }
    nobody = *pw;
    if (mkdtemp(dir) == NULL)
        return -1;
    chmod(dir, 0755);
    snprintf(v, sizeof(v), "%ld", (long)pw->pw_uid);
    setenv("SUDO_UID", v, 1);
    snprintf(v, sizeof(v), "%ld", (long)pw->pw_gid);
    setenv("SUDO_GID", v, 1);
    setenv("SUDO_USER", "nobody", 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void test_answers_read_as_user(void **state)
{
    char secret[256], open_[256];
    uid_t u;
    gid_t g;
    char *t;

    (void)state;
    assert_true(sg_ctl_sudo_user(&u, &g));
    assert_int_equal(u, nobody.pw_uid);
    snprintf(secret, sizeof(secret), "%s/root-only", dir);
    snprintf(open_, sizeof(open_), "%s/answers.txt", dir);
    put(secret, "root:$6$hash:19000:0:99999:7:::\n", 0600);     /* like /etc/shadow */
    put(open_, "1. yes it was us\n", 0644);
    assert_null(sg_ctl_read_user_file(secret));      /* root could; nobody cannot */
    t = sg_ctl_read_user_file(open_);
    assert_non_null(t);
    assert_string_equal(t, "1. yes it was us\n");
    free(t);
}

/* The editor: a script that appends what it is and what it has to the
 * draft it edits. */
static void test_editor_as_user(void **state)
{
    char editor[256], line[64], *t, *p;
    int sv[2];

    (void)state;
    snprintf(editor, sizeof(editor), "%s/editor.sh", dir);
    put(editor, "#!/bin/sh\n{ echo \"uid=$(id -u)\"; env; ls -l /proc/$$/fd/; } >> \"$1\"\n",
        0755);
    setenv("EDITOR", editor, 1);
    unsetenv("VISUAL");
    setenv("OVH_CONSUMER_KEY", "ck-SECRET-sudo", 1);
    setenv("OVH_APPLICATION_SECRET", "as-SECRET-sudo", 1);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);   /* like a Redis socket */
    t = sg_ctl_edit_as_user("draft text\n");
    assert_non_null(t);
    assert_true(strncmp(t, "draft text\n", 11) == 0);
    snprintf(line, sizeof(line), "uid=%ld\n", (long)nobody.pw_uid);
    assert_non_null(strstr(t, line));
    assert_null(strstr(t, "OVH_"));
    assert_null(strstr(t, "SECRET"));
    assert_null(strstr(t, "SUDO_"));
    assert_null(strstr(t, "socket:"));                /* no descriptor of ours */
    assert_non_null(p = strstr(t, "HOME="));
    assert_true(strncmp(p + 5, nobody.pw_dir, strlen(nobody.pw_dir)) == 0);
    free(t);
    close(sv[0]);
    close(sv[1]);
    unsetenv("OVH_CONSUMER_KEY");
    unsetenv("OVH_APPLICATION_SECRET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_read_as_user),
        cmocka_unit_test(test_editor_as_user),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
