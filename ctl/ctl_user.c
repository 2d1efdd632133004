/*
 * ctl_user.c - what sendguardctl does with the invoking user's files when
 * it runs as root through sudo (the sudoedit model): the reply draft is
 * edited, and an --answers file read, by a child process that has become
 * SUDO_UID/SUDO_GID, with a clean environment and no descriptor of ours;
 * root only receives the text through a pipe.
 *
 * Must not: open a path the invoking user names with root's rights, or
 * start the user's editor as root, with our sockets or our environment
 * (OVH_* secrets).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "ctl.h"
#include "sg_run.h"

#define MAX_TEXT (256 * 1024)

/* Under sudo: root with SUDO_UID naming another user. */
bool sg_ctl_sudo_user(uid_t *uid, gid_t *gid)
{
    const char *u = getenv("SUDO_UID"), *g = getenv("SUDO_GID");
    char *end;
    long lu, lg;

    if (geteuid() != 0 || u == NULL || g == NULL)
        return false;
    lu = strtol(u, &end, 10);
    if (*u == '\0' || *end != '\0' || lu <= 0)
        return false;
    lg = strtol(g, &end, 10);
    if (*g == '\0' || *end != '\0' || lg < 0)
        return false;
    *uid = (uid_t)lu;
    *gid = (gid_t)lg;
    return true;
}

static void close_from_4(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 4U, ~0U, 0U) == 0)
        return;
#endif
    for (int fd = 4; fd < 1024; fd++)
        close(fd);
}

/* In the child: become the invoking user (when under sudo), with a clean
 * environment. _exit on failure: nothing runs as root by mistake. */
static void become_invoker(int keep_fd)
{
    static const char *const keep[] = { "TERM", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES",
                                        "VISUAL", "EDITOR", "TZ", "COLORTERM", NULL };
    char *saved[sizeof(keep) / sizeof(keep[0])];
    struct passwd *pw = NULL;
    uid_t uid;
    gid_t gid;

    if (keep_fd != 3 && (dup2(keep_fd, 3) < 0 || close(keep_fd) != 0))
        _exit(120);
    close_from_4();                /* our sockets (Redis, curl) stay with root */
    for (size_t i = 0; keep[i]; i++) {
        const char *v = getenv(keep[i]);
        saved[i] = v ? strdup(v) : NULL;
    }
    if (sg_ctl_sudo_user(&uid, &gid)) {
        pw = getpwuid(uid);
        if (setgroups(0, NULL) != 0 ||
            (pw != NULL && initgroups(pw->pw_name, gid) != 0) ||
            setgid(gid) != 0 || setuid(uid) != 0 || setuid(0) == 0)
            _exit(121);
    } else {
        pw = getpwuid(getuid());
    }
    clearenv();
    for (size_t i = 0; keep[i]; i++) {
        if (saved[i] != NULL)
            setenv(keep[i], saved[i], 1);
        free(saved[i]);
    }
    setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
    if (pw != NULL) {
        setenv("HOME", pw->pw_dir, 1);
        setenv("USER", pw->pw_name, 1);
        setenv("LOGNAME", pw->pw_name, 1);
    }
}

/* Run fn(arg) in a child that is the invoking user; the child writes its
 * text on fd 3; NULL when it fails (it said why on stderr). */
static char *as_invoker(int (*fn)(const void *arg), const void *arg)
{
    int p[2], status;
    size_t len = 0;
    char *text;
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) != 0)
        return NULL;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return NULL;
    }
    if (pid == 0) {
        close(p[0]);
        become_invoker(p[1]);
        fcntl(3, F_SETFD, FD_CLOEXEC);
        _exit(fn(arg) == 0 ? 0 : 1);
    }
    close(p[1]);
    text = sg_read_fd(p[0], MAX_TEXT, &len);
    close(p[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        free(text);
        return NULL;
    }
    if (text != NULL && strlen(text) != len) {     /* a NUL in the text */
        free(text);
        errno = EINVAL;
        return NULL;
    }
    return text;
}

static int read_child(const void *arg)
{
    const char *path = arg;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    size_t len = 0;
    char *t;

    if (fd < 0 || (t = sg_read_fd(fd, MAX_TEXT, &len)) == NULL) {
        fprintf(stderr, "sendguardctl: %s: %s\n", path, strerror(errno));
        return -1;
    }
    close(fd);
    fd = sg_write_all(3, t, len);
    free(t);
    return fd;
}

char *sg_ctl_read_user_file(const char *path)
{
    return as_invoker(read_child, path);
}

static int edit_child(const void *arg)
{
    const char *draft = arg;
    char path[] = "/tmp/sendguard-reply-XXXXXX", *copy, *args[16], *save, *text;
    const char *ed = getenv("VISUAL");
    int fd = mkstemp(path), status, n = 0;
    size_t len = 0;
    pid_t pid;

    if (ed == NULL || !*ed)
        ed = getenv("EDITOR");
    if (ed == NULL || !*ed)
        ed = access("/usr/bin/sensible-editor", X_OK) == 0 ? "sensible-editor" : "vi";
    if (fd < 0 || sg_write_all(fd, draft, strlen(draft)) != 0) {
        fprintf(stderr, "sendguardctl: cannot write the draft: %s\n", strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return -1;
    }
    close(fd);
    copy = strdup(ed);
    if (copy == NULL)
        return -1;
    for (char *w = strtok_r(copy, " \t", &save); w && n < 14; w = strtok_r(NULL, " \t", &save))
        args[n++] = w;
    args[n++] = path;
    args[n] = NULL;
    pid = fork();
    if (pid == 0) {
        close(3);                  /* the editor gets nothing of ours */
        execvp(args[0], args);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "sendguardctl: the editor (%s) failed: nothing posted\n", args[0]);
        unlink(path);
        free(copy);
        return -1;
    }
    free(copy);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    unlink(path);
    if (fd < 0 || (text = sg_read_fd(fd, MAX_TEXT, &len)) == NULL) {
        fprintf(stderr, "sendguardctl: reading the edited reply: %s\n", strerror(errno));
        return -1;
    }
    close(fd);
    n = sg_write_all(3, text, len);
    free(text);
    return n;
}

char *sg_ctl_edit_as_user(const char *draft)
{
    return as_invoker(edit_child, draft);
}
