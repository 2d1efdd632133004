/*
 * sendguard.c - the daemon: options, config, socket, privileges, signals,
 * then libmilter's main loop.
 *
 * Must not: make decisions (policy/) or talk to the OVHcloud API itself
 * (ovh/); touch a path as root that someone else could redirect (the
 * socket is created under the service user's own ids, the pidfile after
 * the drop).
 *
 * Threads and signals: libmilter spawns its own sigwait() thread, which
 * stops the milter on SIGHUP, SIGTERM and SIGINT. smfi_main() therefore
 * runs in a thread of its own and the main thread sigwait()s on every
 * signal we handle: Linux hands a process-directed signal to the main
 * thread first when it is waiting for it, so SIGHUP and SIGUSR1 reload
 * (in a reloader thread, the main thread is back in sigwait() at once)
 * and SIGTERM/SIGINT stop through smfi_stop().
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "sg_log.h"
#include "sg_milter.h"
#include "sg_policy.h"
#include "sg_jobs.h"
#include "sg_metrics.h"
#include "sg_ovh.h"

#define STOP_GRACE_S 10           /* how long a stop waits for decisions in progress */

/* What main() keeps of the first configuration: a reload frees that
 * snapshot, so nothing here may point into it. */
struct startup {
    char *path, *user, *pidfile, *socket;
    struct passwd pw;             /* the service user (pw_name etc. copied) */
    bool root;                    /* started as root */
    bool drop;                    /* started as root and dropping to pw */
    gid_t sock_gid;               /* group of a unix socket, (gid_t)-1: keep */
    dev_t sock_dev;               /* the unix socket we created */
    ino_t sock_ino;
};

static atomic_bool milter_done;
static pthread_mutex_t reload_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reload_cv = PTHREAD_COND_INITIALIZER;
static unsigned reload_asked;

static void usage(FILE *f)
{
    fprintf(f, "usage: sendguard [-c FILE] [-f] [-t] [-V] [-u USER] [-p PIDFILE]\n"
               "  -c FILE     configuration (default /etc/sendguard/sendguard.conf)\n"
               "  -f          stay in the foreground (else detach) and log to stderr too\n"
               "  -t          check the configuration and exit (0, or 78 with errors)\n"
               "  -V          print the version and exit\n"
               "  -u USER     run as USER (overrides `user`; \"root\" to stay root)\n"
               "  -p PIDFILE  write the process id there (overrides `pidfile`)\n");
}

static void log_conf_error(void *ctx, const char *line)
{
    (void)ctx;
    sg_log(LOG_ERR, "%s", line);
}

static const char *unix_path(const char *spec)
{
    if (strncmp(spec, "unix:", 5) == 0)
        return spec + 5;
    if (strncmp(spec, "local:", 6) == 0)
        return spec + 6;
    return NULL;
}

/* sendguard -t: what the file allows but a postmaster should know. libmilter
 * trusts whoever connects (Debian 12's 8.17.1.9 reads past a malformed
 * macro packet), so only the MTA should be able to reach the socket. */
static void check_warnings(const struct sg_settings *s, const char *path)
{
    if (strncmp(s->milter_socket, "inet", 4) == 0)
        fprintf(stderr, "%s: warning: milter.socket: %s: any local user can connect to a TCP "
                "socket, and libmilter trusts whoever connects; prefer a unix socket\n",
                path, s->milter_socket);
    else if ((s->socket_mode & 0007) != 0)
        fprintf(stderr, "%s: warning: milter.socket_mode: %04o lets every local user connect, "
                "and libmilter trusts whoever connects; use 0660\n", path,
                (unsigned)s->socket_mode);
    if (s->user != NULL && strcmp(s->user, "root") == 0)
        fprintf(stderr, "%s: warning: user: \"root\": the daemon keeps every privilege\n", path);
}

/* Who the daemon runs as. Started as root: the configured user (default
 * "sendguard"), or root only when written as such. Started as anyone else:
 * stays who it is. */
static int resolve_user(struct startup *st, const struct sg_settings *s)
{
    const char *group = s->socket_group;
    struct passwd *pw;
    struct group *gr;

    st->sock_gid = (gid_t)-1;
    st->root = geteuid() == 0;
    if (st->root) {
        if (strcmp(st->user, "root") == 0) {
            sg_log(LOG_WARNING, "running as root (user = \"root\"): every privilege is kept");
        } else if ((pw = getpwnam(st->user)) == NULL) {
            sg_log(LOG_ERR, "user %s does not exist: create it (adduser --system --group %s) "
                   "or set `user` in %s", st->user, st->user, st->path);
            return -1;
        } else if (pw->pw_uid == 0) {
            sg_log(LOG_ERR, "user %s has uid 0: write user = \"root\" to run as root", st->user);
            return -1;
        } else {
            st->pw = *pw;
            st->pw.pw_name = strdup(pw->pw_name);
            st->pw.pw_passwd = st->pw.pw_gecos = st->pw.pw_dir = st->pw.pw_shell = NULL;
            if (st->pw.pw_name == NULL)
                return -1;
            st->drop = true;
        }
    } else if ((pw = getpwuid(geteuid())) == NULL || strcmp(pw->pw_name, st->user) != 0) {
        sg_log(LOG_NOTICE, "not started as root: running as uid %ld, `user` %s not applied",
               (long)geteuid(), st->user);
    }
    if (unix_path(st->socket) == NULL)
        return 0;
    if (group == NULL)
        group = "postfix";        /* the MTA's group, where it exists */
    if ((gr = getgrnam(group)) != NULL)
        st->sock_gid = gr->gr_gid;
    else if (s->socket_group != NULL) {
        sg_log(LOG_ERR, "milter.socket_group: group %s does not exist", group);
        return -1;
    }
    return 0;
}

/* Become the service user's effective ids (and the socket's group) for
 * the socket file: it is then created by bind() as theirs, with its mode
 * from the umask, so root never chmods or chowns a path. back = true
 * returns to root. */
static int as_service_user(const struct startup *st, bool back)
{
    gid_t gid = st->sock_gid != (gid_t)-1 ? st->sock_gid : st->drop ? st->pw.pw_gid : 0;

    if (!st->root)
        return 0;
    if (back)
        return seteuid(0) == 0 && setegid(0) == 0 ? 0 : -1;
    if (setegid(gid) != 0 || (st->drop && seteuid(st->pw.pw_uid) != 0)) {
        sg_log(LOG_ERR, "cannot take the ids of %s for the socket: %s",
               st->drop ? st->pw.pw_name : "root", strerror(errno));
        return -1;
    }
    return 0;
}

/* A unix socket nobody listens on (a crash) is removed; a live one means
 * another sendguard: refuse. Runs under the service user's ids. */
static int remove_stale_socket(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat sb;
    int fd, rc;

    if (lstat(path, &sb) != 0)
        return 0;
    if (!S_ISSOCK(sb.st_mode)) {
        sg_log(LOG_ERR, "%s exists and is not a socket: not removing it", path);
        return -1;
    }
    if (strlen(path) >= sizeof(sa.sun_path)) {
        sg_log(LOG_ERR, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (rc == 0) {
        sg_log(LOG_ERR, "%s: another sendguard is listening there", path);
        return -1;
    }
    if (unlink(path) != 0) {
        sg_log(LOG_ERR, "cannot remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    sg_log(LOG_INFO, "removed stale socket %s", path);
    return 0;
}

/* TCP_NODELAY on libmilter's listening socket (libmilter does not hand out
 * its descriptor: it is the only listening TCP socket of the process at
 * this point). Linux passes the option on to accepted connections, so our
 * small replies are not held back by Nagle. */
static void tcp_nodelay_listener(void)
{
    int one = 1;

    for (int fd = 0; fd < 1024; fd++) {
        int acc = 0, domain = 0;
        socklen_t len = sizeof(acc), dlen = sizeof(domain);

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) != 0 || !acc ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) != 0 ||
            (domain != AF_INET && domain != AF_INET6))
            continue;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
            sg_log(LOG_WARNING, "TCP_NODELAY on the milter socket: %s", strerror(errno));
    }
}

static int open_socket(struct startup *st, int mode, int timeout_s)
{
    const char *path = unix_path(st->socket);
    mode_t old = 0;
    struct stat sb;
    int rc = -1;

    if (smfi_setconn(st->socket) != MI_SUCCESS) {
        sg_log(LOG_ERR, "cannot use milter.socket %s", st->socket);
        return -1;
    }
    smfi_settimeout(timeout_s);
    if (path != NULL && strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        sg_log(LOG_ERR, "milter.socket: the path %s is %zu bytes long; a unix socket path "
               "has at most %zu", path, strlen(path),
               sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return -1;
    }
    if (path == NULL) {           /* inet: libmilter binds as it is */
        if (smfi_opensocket(false) != MI_SUCCESS) {
            sg_log(LOG_ERR, "cannot listen on %s", st->socket);
            return -1;
        }
        tcp_nodelay_listener();
        return 0;
    }
    if (as_service_user(st, false) != 0)
        return -1;
    old = umask((mode_t)(~mode & 0777));
    if (remove_stale_socket(path) == 0) {
        if (smfi_opensocket(false) != MI_SUCCESS)
            sg_log(LOG_ERR, "cannot listen on %s (its directory must be writable by %s): %s",
                   st->socket, st->drop ? st->pw.pw_name : "this user", strerror(errno));
        else if (lstat(path, &sb) != 0 || !S_ISSOCK(sb.st_mode))
            sg_log(LOG_ERR, "%s: not a socket right after it was created", path);
        else {
            st->sock_dev = sb.st_dev;
            st->sock_ino = sb.st_ino;
            rc = 0;
            /* not root: give the socket to the MTA's group ourselves, as its
             * owner (no privilege involved) */
            if (!st->root && st->sock_gid != (gid_t)-1 && sb.st_gid != st->sock_gid &&
                fchownat(AT_FDCWD, path, (uid_t)-1, st->sock_gid, AT_SYMLINK_NOFOLLOW) != 0)
                sg_log(LOG_WARNING, "%s: cannot give the socket to group %ld (%s): the MTA may "
                       "not be able to connect; make its directory setgid to that group "
                       "(chgrp postfix DIR; chmod 2750 DIR)", path, (long)st->sock_gid,
                       strerror(errno));
        }
    }
    umask(old);
    if (as_service_user(st, true) != 0) {
        sg_log(LOG_ERR, "cannot return to root after creating the socket: %s", strerror(errno));
        return -1;
    }
    return rc;
}

/* Remove our socket at exit (as the service user), only if it is still
 * the file we created. */
static void remove_socket(const struct startup *st)
{
    const char *path = unix_path(st->socket);
    struct stat sb;

    if (path != NULL && st->sock_ino != 0 && lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode) &&
        sb.st_dev == st->sock_dev && sb.st_ino == st->sock_ino)
        unlink(path);
}

static int drop_privileges(const struct startup *st)
{
    if (!st->drop)
        return 0;
    if (initgroups(st->pw.pw_name, st->pw.pw_gid) != 0 || setgid(st->pw.pw_gid) != 0 ||
        setuid(st->pw.pw_uid) != 0) {
        sg_log(LOG_ERR, "cannot become user %s: %s", st->pw.pw_name, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || seteuid(0) == 0) {
        sg_log(LOG_ERR, "privileges could be regained after dropping them: refusing to run");
        return -1;
    }
    return 0;
}

/* Written after the drop, as the service user: never follows a link,
 * never truncates someone else's file. A leftover pidfile whose process is
 * gone is replaced. */
static int write_pidfile(const char *path)
{
    char buf[32];
    int fd, n;

    for (int tries = 0; tries < 2; tries++) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd >= 0)
            break;
        if (errno == EEXIST && tries == 0) {
            int rfd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
            struct stat sb;
            long pid = 0;

            if (rfd >= 0 && fstat(rfd, &sb) == 0 && S_ISREG(sb.st_mode)) {
                n = (int)read(rfd, buf, sizeof(buf) - 1);
                buf[n > 0 ? n : 0] = '\0';
                pid = strtol(buf, NULL, 10);
            }
            if (rfd >= 0)
                close(rfd);
            if (rfd < 0 || (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))) {
                sg_log(LOG_ERR, "pidfile %s exists%s: not replacing it", path,
                       pid > 0 ? " and its process runs" : " and is not a regular file");
                return -1;
            }
            if (unlink(path) == 0)
                continue;
        }
        sg_log(LOG_ERR, "pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (write(fd, buf, (size_t)n) != n) {
        sg_log(LOG_ERR, "pidfile %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    return close(fd);
}

static bool differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* Settings read once at start: say so when a reload changes them. */
static void restart_only(const struct sg_settings *o, const struct sg_settings *n)
{
    const struct sg_redis_settings *a = &o->redis, *b = &n->redis;
    const char *what = NULL;

    if (differ(o->milter_socket, n->milter_socket) || o->socket_mode != n->socket_mode ||
        differ(o->socket_group, n->socket_group))
        what = "milter.socket";
    else if (differ(o->user, n->user) || differ(o->pidfile, n->pidfile))
        what = "user/pidfile";
    else if (differ(o->relay_name, n->relay_name))
        what = "relay_name";
    else if (o->store_backend != n->store_backend)
        what = "store.backend";
    else if (differ(a->host, b->host) || a->port != b->port || differ(a->unix_path, b->unix_path) ||
             differ(a->username, b->username) || differ(a->password, b->password) ||
             a->db != b->db || differ(a->prefix, b->prefix) ||
             differ(a->sentinel_master, b->sentinel_master) || a->nsentinels != b->nsentinels ||
             a->connect_timeout_ms != b->connect_timeout_ms ||
             a->command_timeout_ms != b->command_timeout_ms || a->pool_size != b->pool_size)
        what = "store.redis";
    if (what != NULL)
        sg_log(LOG_WARNING, "reload: %s changed: it applies at the next restart; the rest of the "
               "new configuration is in force", what);
}

/* Build and validate a new config, then swap; a bad one changes nothing. */
static void reload(void)
{
    sg_conf_t *old = sg_conf_current();
    sg_conf_t *conf = sg_conf_load(sg_conf_path(old), log_conf_error, NULL);

    if (conf == NULL) {
        sg_log(LOG_ERR, "reload of %s failed: keeping the running configuration",
               sg_conf_path(old));
        sg_metrics_reload(false);
    } else {
        const struct sg_settings *o = sg_conf_settings(old), *n = sg_conf_settings(conf);

        restart_only(o, n);
        sg_log_set_facility(n->syslog_facility);
        sg_conf_swap(conf);
        sg_log(LOG_NOTICE, "reloaded %s", sg_conf_path(old));
        sg_jobs_reloaded();
        sg_metrics_reload(true);
        sg_metrics_reloaded();
    }
    sg_conf_unref(old);
}

static void *reload_thread(void *arg)
{
    unsigned done = 0;

    (void)arg;
    pthread_mutex_lock(&reload_mu);
    for (;;) {
        while (reload_asked == done)
            pthread_cond_wait(&reload_cv, &reload_mu);
        done = reload_asked;      /* several signals in a row: one reload */
        pthread_mutex_unlock(&reload_mu);
        reload();
        pthread_mutex_lock(&reload_mu);
    }
    return NULL;
}

static void *milter_thread(void *arg)
{
    int *rc = arg;

    *rc = smfi_main();
    atomic_store(&milter_done, true);
    return NULL;
}

/* The main thread's loop: every signal we handle, until libmilter stops. */
static void wait_signals(const sigset_t *set)
{
    struct timespec tick = { 0, 200 * 1000 * 1000 };
    bool stopping = false;
    int sig;

    while (!atomic_load(&milter_done)) {
        sig = sigtimedwait(set, NULL, &tick);
        if (sig == SIGUSR1 || sig == SIGHUP) {
            pthread_mutex_lock(&reload_mu);
            reload_asked++;
            pthread_cond_signal(&reload_cv);
            pthread_mutex_unlock(&reload_mu);
        } else if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
            sg_log(LOG_NOTICE, "%s: stopping", strsignal(sig));
            stopping = true;
            smfi_stop();
        }
    }
}

static sg_store_t *open_primary(const struct sg_settings *s)
{
    char err[256] = "";
    sg_store_t *st;

    if (s->store_backend == SG_STORE_MEMORY)
        return sg_store_memory_new(NULL, NULL);
    st = sg_store_redis_new(&s->redis, NULL, NULL, err, sizeof(err));
    if (st == NULL)
        sg_log(LOG_ERR, "store: %s", err);
    return st;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* Root only while setting up: no core file may hold its memory. */
static void no_core_while_root(void)
{
    struct rlimit rl = { 0, 0 };

    if (geteuid() != 0)
        return;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    setrlimit(RLIMIT_CORE, &rl);
}

int main(int argc, char **argv)
{
    const char *opt_user = NULL, *opt_pidfile = NULL;
    struct startup st = { .path = (char *)"/etc/sendguard/sendguard.conf" };
    bool foreground = false, test = false;
    const struct sg_settings *s;
    sigset_t set;
    pthread_t thr;
    sg_conf_t *conf;
    int opt, ex, rc = MI_FAILURE;

    while ((opt = getopt(argc, argv, "c:ftVu:p:h")) != -1) {
        switch (opt) {
        case 'c': st.path = optarg; break;
        case 'f': foreground = true; break;
        case 't': test = true; break;
        case 'u': opt_user = optarg; break;
        case 'p': opt_pidfile = optarg; break;
        case 'V': printf("sendguard %s\n", SG_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }
    no_core_while_root();
    /* libmilter serves each busy MTA connection in a worker thread; glibc
     * would give each of them a malloc arena of its own (up to 8 per
     * CPU), memory a milter whose decisions allocate a few KiB does not
     * need: two arenas are shared by all. */
    mallopt(M_ARENA_MAX, 2);
    conf = sg_conf_load(st.path, NULL, NULL);     /* errors on stderr */
    if (conf == NULL)
        return EX_CONFIG;
    s = sg_conf_settings(conf);
    if (test) {
        check_warnings(s, st.path);
        sg_conf_unref(conf);
        return 0;
    }
    sg_log_open("sendguard", s->syslog_facility, foreground);
    /* Block, from now on and in every thread to come, the signals the main
     * thread waits for (libmilter's own signal thread blocks the first three
     * again): a SIGTERM as soon as the socket accepts stays pending until
     * wait_signals() takes it, instead of killing a half-started daemon. */
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    st.path = strdup(st.path);
    st.user = dup_or_null(opt_user != NULL ? opt_user : s->user != NULL ? s->user : "sendguard");
    st.pidfile = dup_or_null(opt_pidfile != NULL ? opt_pidfile : s->pidfile);
    st.socket = strdup(s->milter_socket);
    if (st.path == NULL || st.user == NULL || st.socket == NULL ||
        (st.pidfile == NULL && (opt_pidfile != NULL || s->pidfile != NULL))) {
        ex = EX_OSERR;
        goto fail;
    }
    if (resolve_user(&st, s) != 0) {
        ex = EX_NOUSER;
        goto fail;
    }
    snprintf(sg_rt.relay, sizeof(sg_rt.relay), "%s", s->relay_name);
    sg_rt.tcp = strncmp(s->milter_socket, "inet", 4) == 0;
    sg_rt.fallback = sg_store_memory_new(NULL, NULL);
    sg_rt.primary = open_primary(s);
    if (sg_rt.primary == NULL || sg_rt.fallback == NULL) {
        ex = EX_CONFIG;
        goto fail;
    }

    signal(SIGPIPE, SIG_IGN);
    sg_ovh_set_call_observer(sg_metrics_api_call);
    if (sg_ovh_global_init() != 0) {         /* before any thread */
        sg_log(LOG_ERR, "curl_global_init failed");
        ex = EX_SOFTWARE;
        goto fail;
    }
    if (smfi_register(sg_milter_desc) != MI_SUCCESS) {
        sg_log(LOG_ERR, "smfi_register failed");
        ex = EX_SOFTWARE;
        goto fail;
    }
    if (open_socket(&st, s->socket_mode, s->milter_timeout_s) != 0) {
        ex = EX_UNAVAILABLE;
        goto fail;
    }
    /* Without -f: detach, once the socket is up (so a start that cannot
     * listen fails in the foreground) and before any thread exists. */
    if (!foreground && daemon(0, 0) != 0) {
        sg_log(LOG_ERR, "cannot detach: %s", strerror(errno));
        ex = EX_OSERR;
        goto fail;
    }
    if (drop_privileges(&st) != 0 || (st.pidfile != NULL && write_pidfile(st.pidfile) != 0)) {
        ex = EX_OSERR;
        goto fail;
    }
    sg_conf_swap(conf);                       /* the current snapshot owns it now */
    s = NULL;

    if (pthread_create(&thr, NULL, reload_thread, NULL) != 0) {
        sg_log(LOG_ERR, "cannot start the reload thread");
        return EX_OSERR;
    }
    pthread_detach(thr);
    sg_jobs_start(sg_rt.primary, sg_rt.fallback, sg_rt.relay);
    sg_metrics_start(sg_rt.primary, sg_rt.relay);
    conf = sg_conf_current();
    sg_log(LOG_NOTICE, "sendguard %s listening on %s as %s, store %s, %zu accounts, "
           "%zu default limits", SG_VERSION, st.socket, st.drop ? st.pw.pw_name :
           geteuid() == 0 ? "root" : "this user", sg_store_name(sg_rt.primary),
           sg_conf_settings(conf)->naccounts, sg_conf_settings(conf)->nlimits);
    sg_conf_unref(conf);
    if (pthread_create(&thr, NULL, milter_thread, &rc) != 0) {
        sg_log(LOG_ERR, "cannot start the milter thread");
        return EX_OSERR;
    }
    wait_signals(&set);
    pthread_join(thr, NULL);

    sg_jobs_stop();
    sg_metrics_stop();
    remove_socket(&st);
    if (st.pidfile != NULL)
        unlink(st.pidfile);
    /* a decision still running uses the stores: leave them to exit() */
    if (sg_milter_wait_idle(STOP_GRACE_S)) {
        sg_store_free(sg_rt.primary);
        sg_store_free(sg_rt.fallback);
        sg_conf_swap(NULL);
    }
    sg_log(LOG_NOTICE, "stopped");
    free(st.path);
    free(st.user);
    free(st.pidfile);
    free(st.socket);
    free(st.pw.pw_name);
    return rc == MI_SUCCESS ? 0 : EX_SOFTWARE;

fail:                             /* before the threads: free what was set up */
    remove_socket(&st);
    if (sg_rt.primary != NULL)
        sg_store_free(sg_rt.primary);
    if (sg_rt.fallback != NULL)
        sg_store_free(sg_rt.fallback);
    sg_conf_unref(conf);
    free(st.path);
    free(st.user);
    free(st.pidfile);
    free(st.socket);
    free(st.pw.pw_name);
    return ex;
}
