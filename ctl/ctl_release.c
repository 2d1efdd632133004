/*
 * ctl_release.c - `sendguardctl release-helper`: the root side of the one
 * privileged path (util/sg_release.h). Without --listen it serves the
 * connection on its stdin/stdout (systemd: sendguard-release.socket,
 * Accept=yes); with --listen SOCKET it listens there itself and forks a
 * child per connection (systems without systemd, tests).
 *
 * Must not: run anything but the release_command of its own configuration
 * (re-read for each connection, so the permission checks of conf/ apply),
 * take anything from the client but queue ids, or create its socket where
 * another user could swap the path (the directory must be root's, or
 * ours, and not writable by others).
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "ctl.h"
#include "sg_log.h"
#include "sg_release.h"


static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static void peer_of(int fd, char *buf, size_t size)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0)
        snprintf(buf, size, "uid=%ld,pid=%ld", (long)cr.uid, (long)cr.pid);
    else
        snprintf(buf, size, "-");
}

/* One connection: the current configuration's release_command. */
static int serve(const char *conf_path, int in, int out)
{
    sg_conf_t *conf = sg_conf_load(conf_path, NULL, NULL);
    const struct sg_settings *s;
    char peer[64];
    int rc;

    peer_of(in, peer, sizeof(peer));
    if (conf == NULL) {
        static const char msg[] = "ERR the helper's configuration has errors\n";
        sg_log(LOG_ERR, "release-helper: %s has errors: nothing released", conf_path);
        if (write(out, msg, sizeof(msg) - 1) < 0)
            return -1;
        return -1;
    }
    s = sg_conf_settings(conf);
    rc = sg_release_serve(in, out, s->release_command, s->nrelease_command, peer);
    sg_conf_unref(conf);
    return rc;
}

/* The socket's directory: only root (or we) may change what is in it. */
static int safe_dir(const char *path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)], *slash;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s", path);
    if ((slash = strrchr(dir, '/')) == NULL) {
        fprintf(stderr, "sendguardctl: release-helper: %s: give an absolute path\n", path);
        return -1;
    }
    slash[slash == dir] = '\0';
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "sendguardctl: release-helper: %s: not a directory\n", dir);
        return -1;
    }
    if ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        fprintf(stderr, "sendguardctl: release-helper: %s must be owned by root and writable "
                "by its owner alone (mode %04o, uid %ld)\n", dir,
                (unsigned)(st.st_mode & 07777), (long)st.st_uid);
        return -1;
    }
    return 0;
}

static int listen_on(const char *path, const char *group, int mode)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    mode_t old;
    gid_t gid = (gid_t)-1;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path) || safe_dir(path) != 0)
        return -1;
    if (group != NULL) {
        struct group *gr = getgrnam(group);
        if (gr == NULL) {
            fprintf(stderr, "sendguardctl: release-helper: unknown group %s\n", group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    strcpy(sa.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode) || unlink(path) != 0) {
            fprintf(stderr, "sendguardctl: release-helper: %s exists and is not a socket\n",
                    path);
            return -1;
        }
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    old = umask(0177);             /* 0600 from the start; opened up below */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        umask(old);
        fprintf(stderr, "sendguardctl: release-helper: %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    umask(old);
    /* By path, but in a directory nobody else can write (safe_dir). */
    if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) || chmod(path, (mode_t)mode) != 0
        || listen(fd, 64) != 0) {
        fprintf(stderr, "sendguardctl: release-helper: %s: %s\n", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    return fd;
}

static int loop(const char *conf_path, const char *path, int lfd)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sg_log(LOG_NOTICE, "release-helper: listening on %s", path);
    while (!stop) {
        struct pollfd p = { lfd, POLLIN, 0 };
        int cfd;
        pid_t pid;

        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        if (poll(&p, 1, 500) <= 0)
            continue;
        if ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        pid = fork();
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL);
            signal(SIGINT, SIG_DFL);
            close(lfd);
            _exit(serve(conf_path, cfd, cfd) == 0 ? 0 : 1);
        }
        if (pid < 0)
            sg_log(LOG_ERR, "release-helper: fork: %s", strerror(errno));
        close(cfd);
    }
    unlink(path);
    close(lfd);
    while (waitpid(-1, NULL, 0) > 0)
        ;
    sg_log(LOG_NOTICE, "release-helper: stopped");
    return 0;
}

int sg_ctl_release_helper(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const char *listen_path = NULL, *group = NULL;
    int mode = 0660, lfd;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_path = argv[++i];
        } else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc) {
            group = argv[++i];
        } else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            char *end;
            mode = (int)strtol(argv[++i], &end, 8);
            if (*end != '\0' || mode < 0 || mode > 0777)
                goto usage;
        } else {
            goto usage;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (listen_path == NULL) {     /* socket-activated: the connection is stdin/stdout */
        sg_log_open("sendguard-release", s->syslog_facility, false);
        return serve(sg_conf_path(conf), 0, 1) == 0 ? 0 : 1;
    }
    sg_log_open("sendguard-release", s->syslog_facility, true);
    if (geteuid() != 0)
        sg_log(LOG_WARNING, "release-helper: not running as root: release_command runs as "
               "uid %ld", (long)geteuid());
    if ((lfd = listen_on(listen_path, group, mode)) < 0)
        return EX_UNAVAILABLE;
    return loop(sg_conf_path(conf), listen_path, lfd);
usage:
    fprintf(stderr, "usage: sendguardctl [-c FILE] release-helper [--listen SOCKET "
            "[--group GROUP] [--mode 0660]]\n");
    return EX_USAGE;
}
