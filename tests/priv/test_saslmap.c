/*
 * test_saslmap.c - the SASL map rewrite under attack (issue 10, item 5):
 * mode, owner and group kept; a symlinked map refused (before any API
 * call) without touching its target; concurrent rewrites losing no
 * password; a map the daemon's user cannot replace reported before the
 * password is changed through the API (the unprivileged side runs as
 * nobody). Needs root (chown, setuid to nobody).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "sg_block.h"
#include "sg_conf.h"
#include "sg_ovh.h"
#include "sg_saslmap.h"
#include "sg_store.h"

static char dir[] = "/tmp/sg-priv-XXXXXX";
static struct passwd nobody;

static int setup(void **state)
{
    struct passwd *pw = getpwnam("nobody");

    (void)state;
    if (geteuid() != 0 || pw == NULL) {
        fprintf(stderr, "test_saslmap needs root and a user nobody\n");
        return -1;                 /* FAILS: never skipped */
    }
    nobody = *pw;
    if (mkdtemp(dir) == NULL)
        return -1;
    chmod(dir, 0755);
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

static char *get(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_rewrite_keeps_mode_owner(void **state)
{
    char path[256], err[512];
    const char *text =
        "# relay credentials\n"
        "[ssl0.ovh.net]:587 Sales@Example.com:oldpass\n"
        "[ssl0.ovh.net]:465\tsales@example.com:old:with:colons\n"
        "sales2@example.com [ssl0.ovh.net]:587 sales2@example.com:keep\n"
        "\n";
    struct stat st;

    (void)state;
    snprintf(path, sizeof(path), "%s/keep", dir);
    put(path, text, 0640);
    assert_int_equal(chown(path, nobody.pw_uid, nobody.pw_gid), 0);
    assert_int_equal(sg_saslmap_check(path, "sales@example.com", err, sizeof(err)), 0);
    assert_int_equal(sg_saslmap_rewrite(path, "sales@example.com", "N3w-Pass!word", err,
                                        sizeof(err)), 2);
    assert_string_equal(get(path),
        "# relay credentials\n"
        "[ssl0.ovh.net]:587 Sales@Example.com:N3w-Pass!word\n"
        "[ssl0.ovh.net]:465\tsales@example.com:N3w-Pass!word\n"
        "sales2@example.com [ssl0.ovh.net]:587 sales2@example.com:keep\n"
        "\n");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);        /* not 0600 */
    assert_int_equal(st.st_uid, nobody.pw_uid);
    assert_int_equal(st.st_gid, nobody.pw_gid);
    assert_int_equal(sg_saslmap_rewrite(path, "other@example.com", "xpw-secret", err,
                                        sizeof(err)), 0);
    assert_null(strstr(err, "xpw-secret"));
    assert_int_equal(sg_saslmap_check(path, "other@example.com", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no line for other@example.com"));
    unlink(path);
    assert_int_equal(sg_saslmap_rewrite(path, "a@b", "secretpw", err, sizeof(err)), -1);
    assert_null(strstr(err, "secretpw"));
}

/* A symlinked map: refused by the check and by the rewrite; the link stays
 * a link and its target keeps its text (today: the link was replaced by a
 * regular file, the target kept the old password). */
static void test_symlink_refused(void **state)
{
    char path[256], link_[256], err[512];
    const char *text = "[ssl0.ovh.net]:587 a@example.com:old\n";
    struct stat st;

    (void)state;
    snprintf(path, sizeof(path), "%s/target", dir);
    snprintf(link_, sizeof(link_), "%s/link", dir);
    put(path, text, 0600);
    assert_int_equal(symlink(path, link_), 0);
    assert_int_equal(sg_saslmap_check(link_, "a@example.com", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(sg_saslmap_rewrite(link_, "a@example.com", "newpw-123", err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(lstat(link_, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_string_equal(get(path), text);
    unlink(link_);
    /* a hard link: refused too (the other name could be anyone's file) */
    assert_int_equal(link(path, link_), 0);
    assert_int_equal(sg_saslmap_check(link_, "a@example.com", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "hard links"));
    assert_int_equal(sg_saslmap_rewrite(path, "a@example.com", "newpw-123", err, sizeof(err)),
                     -1);
    assert_string_equal(get(path), text);
    unlink(link_);
    unlink(path);
}

/* Six writers, each rewriting its own account 25 times at once: every
 * account ends with its last password (today: some were lost). */
static void test_concurrent(void **state)
{
    enum { W = 6, ROUNDS = 25 };
    char path[256], text[1024] = "", line[128];
    pid_t pids[W];

    (void)state;
    snprintf(path, sizeof(path), "%s/busy", dir);
    for (int w = 0; w < W; w++) {
        snprintf(line, sizeof(line), "[relay%d]:587 u%d@example.com:start\n", w, w);
        strcat(text, line);
    }
    put(path, text, 0600);
    for (int w = 0; w < W; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0) {
            char user[64], pw[64], err[512];
            snprintf(user, sizeof(user), "u%d@example.com", w);
            for (int r = 0; r < ROUNDS; r++) {
                snprintf(pw, sizeof(pw), "pw-%d-%d", w, r);
                if (sg_saslmap_rewrite(path, user, pw, err, sizeof(err)) != 1)
                    _exit(1);
            }
            _exit(0);
        }
    }
    for (int w = 0; w < W; w++) {
        int status;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    text[0] = '\0';
    for (int w = 0; w < W; w++) {
        snprintf(line, sizeof(line), "[relay%d]:587 u%d@example.com:pw-%d-%d\n", w, w, w,
                 ROUNDS - 1);
        strcat(text, line);
    }
    assert_string_equal(get(path), text);
    unlink(path);
}

static void become_nobody(void)
{
    if (setgroups(0, NULL) != 0 || setgid(nobody.pw_gid) != 0 || setuid(nobody.pw_uid) != 0)
        _exit(99);
}

/* As nobody: a map in a directory nobody cannot write is reported by the
 * check; in its own directory, it passes. */
static void test_check_as_nobody(void **state)
{
    char sub[256], path[256], own[256], ownpath[256];
    pid_t pid;
    int status;

    (void)state;
    snprintf(sub, sizeof(sub), "%s/rootdir", dir);
    snprintf(path, sizeof(path), "%s/sasl_passwd", sub);
    snprintf(own, sizeof(own), "%s/nobodydir", dir);
    snprintf(ownpath, sizeof(ownpath), "%s/sasl_passwd", own);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mkdir(own, 0755), 0);
    assert_int_equal(chown(own, nobody.pw_uid, nobody.pw_gid), 0);
    put(path, "[relay]:587 a@example.com:old\n", 0600);
    put(ownpath, "[relay]:587 a@example.com:old\n", 0600);
    assert_int_equal(chown(path, nobody.pw_uid, nobody.pw_gid), 0);
    assert_int_equal(chown(ownpath, nobody.pw_uid, nobody.pw_gid), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[512];
        become_nobody();
        if (sg_saslmap_check(path, "a@example.com", err, sizeof(err)) != -1 ||
            strstr(err, "cannot create a file in") == NULL)
            _exit(1);
        if (sg_saslmap_check(ownpath, "a@example.com", err, sizeof(err)) != 0)
            _exit(2);
        if (sg_saslmap_rewrite(ownpath, "a@example.com", "pw-nobody", err, sizeof(err)) != 1)
            _exit(3);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_string_equal(get(ownpath), "[relay]:587 a@example.com:pw-nobody\n");
}

/* rotate as nobody (the daemon's auto_reply): with a map it cannot
 * replace, no request reaches the API (a loopback listener sees no
 * connection); with a map it can, the password change is attempted. */
static int rotate_as_nobody(const char *map, const char *creds, int lfd, char *msg, size_t len)
{
    int p[2], status;
    pid_t pid;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sg_settings s;
        struct sg_account a;
        struct sg_ovh_opts o;
        struct sg_ovh_err e;
        char err[512], out[1024];
        sg_ovh_creds_t *c;
        sg_ovh_t *cl;
        sg_store_t *st;
        int rc;

        close(p[0]);
        close(lfd);
        become_nobody();
        memset(&s, 0, sizeof(s));
        memset(&a, 0, sizeof(a));
        a.address = "a@example.com";
        a.offer = SG_OFFER_MXPLAN_LEGACY;
        a.domain = "example.com";
        a.local = "a";
        a.service = "example.com";
        a.sasl_map_file = map;
        if ((c = sg_ovh_creds_load(creds, NULL, err, sizeof(err))) == NULL)
            _exit(10);
        sg_ovh_opts_default(&o);
        o.timeout_ms = 300;
        o.attempts = 1;
        cl = sg_ovh_new(c, &o, &e);
        sg_ovh_creds_free(c);
        st = sg_store_memory_new(NULL, NULL);
        if (cl == NULL || st == NULL)
            _exit(11);
        rc = sg_block_rotate(cl, st, &s, &a, "test", false, out, sizeof(out));
        if (write(p[1], out, strlen(out)) < 0)
            _exit(12);
        sg_ovh_free(cl);
        sg_store_free(st);
        _exit(rc == 0 ? 0 : 1);
    }
    close(p[1]);
    ssize_t n = read(p[0], msg, len - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(p[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_unwritable_map_before_api(void **state)
{
    char creds[256], text[512], msg[1024], path[256], ownpath[256];
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), cfd;

    (void)state;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(creds, sizeof(creds), "%s/ovh.conf", dir);
    snprintf(text, sizeof(text),
             "[default]\nendpoint=http://127.0.0.1:%d/1.0\n[http://127.0.0.1:%d/1.0]\n"
             "application_key=ak\napplication_secret=as\nconsumer_key=ck\n",
             ntohs(sa.sin_port), ntohs(sa.sin_port));
    put(creds, text, 0600);
    assert_int_equal(chown(creds, nobody.pw_uid, nobody.pw_gid), 0);
    snprintf(path, sizeof(path), "%s/rootdir/sasl_passwd", dir);       /* test_check_as_nobody */
    snprintf(ownpath, sizeof(ownpath), "%s/nobodydir/sasl_passwd", dir);

    assert_int_equal(rotate_as_nobody(path, creds, lfd, msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "cannot create a file in"));
    assert_non_null(strstr(msg, "nothing was changed"));
    cfd = accept(lfd, NULL, NULL);
    assert_int_equal(cfd, -1);                      /* no API request was made */
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

    /* Control: the same with a map nobody can replace reaches the API. */
    assert_int_equal(rotate_as_nobody(ownpath, creds, lfd, msg, sizeof(msg)), 1);
    assert_null(strstr(msg, "cannot create a file in"));
    cfd = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0);
    close(cfd);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rewrite_keeps_mode_owner),
        cmocka_unit_test(test_symlink_refused),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_check_as_nobody),
        cmocka_unit_test(test_unwritable_map_before_api),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
