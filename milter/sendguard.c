/*
 * sendguard.c - the daemon: options, config, socket, privileges, signals,
 * then the milter server (sg_mproto).
 *
 * Must not: make decisions (policy/) or talk to the OVHcloud API itself
 * (ovh/). Signals are taken by a sigwait() thread, never by a handler:
 * SIGUSR1 and SIGHUP reload, SIGTERM and SIGINT stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "sg_log.h"
#include "sg_milter.h"
#include "sg_policy.h"
#include "sg_jobs.h"
#include "sg_ovh.h"

#define EX_USAGE_ 64
#define EX_UNAVAILABLE_ 69
#define EX_SOFTWARE_ 70
#define EX_OSERR_ 71
#define EX_CANTCREAT_ 73

static void usage(FILE *f)
{
    fprintf(f, "usage: sendguard [-c FILE] [-f] [-t] [-V] [-u USER] [-p PIDFILE]\n"
               "  -c FILE     configuration (default /etc/sendguard/sendguard.conf)\n"
               "  -f          stay in the foreground (else detach) and log to stderr too\n"
               "  -t          check the configuration and exit (0, or 78 with errors)\n"
               "  -V          print the version and exit\n"
               "  -u USER     run as USER once the socket exists (overrides `user`)\n"
               "  -p PIDFILE  write the process id there (overrides `pidfile`)\n");
}

static void log_conf_error(void *ctx, const char *line)
{
    (void)ctx;
    sg_log(LOG_ERR, "%s", line);
}

/* "unix:/path" or "local:/path": remove the socket file if nothing listens. */
static int remove_stale_socket(const char *spec)
{
    const char *path = NULL;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd, rc;

    if (strncmp(spec, "unix:", 5) == 0)
        path = spec + 5;
    else if (strncmp(spec, "local:", 6) == 0)
        path = spec + 6;
    if (path == NULL || lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        sg_log(LOG_ERR, "%s exists and is not a socket: not removing it", path);
        return -1;
    }
    if (strlen(path) >= sizeof(sa.sun_path)) {
        sg_log(LOG_ERR, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
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

static int set_socket_mode(const char *spec, int mode, const struct passwd *pw)
{
    const char *path = strncmp(spec, "unix:", 5) == 0 ? spec + 5 :
                       strncmp(spec, "local:", 6) == 0 ? spec + 6 : NULL;

    if (path == NULL)
        return 0;
    if (chmod(path, (mode_t)mode) != 0) {
        sg_log(LOG_ERR, "chmod %s: %s", path, strerror(errno));
        return -1;
    }
    if (pw != NULL && chown(path, pw->pw_uid, pw->pw_gid) != 0) {
        sg_log(LOG_ERR, "chown %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int drop_privileges(const struct passwd *pw)
{
    if (pw == NULL)
        return 0;
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        sg_log(LOG_ERR, "cannot become user %s: %s", pw->pw_name, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 && pw->pw_uid != 0) {
        sg_log(LOG_ERR, "privileges could be regained after dropping them: refusing to run");
        return -1;
    }
    return 0;
}

static int write_pidfile(const char *path)
{
    FILE *f;

    if (path == NULL)
        return 0;
    f = fopen(path, "w");
    if (f == NULL) {
        sg_log(LOG_ERR, "pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%ld\n", (long)getpid());
    return fclose(f) == 0 ? 0 : -1;
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

    if (differ(o->milter_socket, n->milter_socket) || o->socket_mode != n->socket_mode)
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

/* SIGUSR1: build and validate a new config, then swap; a bad one changes nothing. */
static void reload(void)
{
    sg_conf_t *old = sg_conf_current();
    sg_conf_t *conf = sg_conf_load(sg_conf_path(old), log_conf_error, NULL);

    if (conf == NULL) {
        sg_log(LOG_ERR, "reload of %s failed: keeping the running configuration",
               sg_conf_path(old));
    } else {
        const struct sg_settings *o = sg_conf_settings(old), *n = sg_conf_settings(conf);

        restart_only(o, n);
        sg_log_set_facility(n->syslog_facility);
        sg_conf_swap(conf);
        sg_log(LOG_NOTICE, "reloaded %s", sg_conf_path(old));
        sg_jobs_reloaded();
    }
    sg_conf_unref(old);
}

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig;

    for (;;) {
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGUSR1 || sig == SIGHUP) {
            reload();
        } else {
            sg_log(LOG_NOTICE, "%s: stopping", strsignal(sig));
            sg_mproto_stop();
        }
    }
    return NULL;
}

static sg_store_t *open_primary(const struct sg_settings *s)
{
    char err[256] = "";
    sg_store_t *st;

    if (s->store_backend == SG_STORE_MEMORY)
        return sg_store_memory_new(NULL, NULL);
    st = sg_store_redis_new(&s->redis, err, sizeof(err));
    if (st == NULL)
        sg_log(LOG_ERR, "store: %s", err);
    return st;
}

int main(int argc, char **argv)
{
    const char *path = "/etc/sendguard/sendguard.conf", *user = NULL, *pidfile = NULL;
    bool foreground = false, test = false;
    const struct sg_settings *s;
    struct passwd *pw = NULL;
    static sigset_t blocked;
    pthread_t sigthr;
    sg_conf_t *conf;
    char err[256];
    int opt, rc;

    while ((opt = getopt(argc, argv, "c:ftVu:p:h")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'f': foreground = true; break;
        case 't': test = true; break;
        case 'u': user = optarg; break;
        case 'p': pidfile = optarg; break;
        case 'V': printf("sendguard %s\n", SG_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EX_USAGE_;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE_;
    }
    conf = sg_conf_load(path, NULL, NULL);     /* errors on stderr */
    if (conf == NULL)
        return SG_EX_CONFIG;
    if (test) {
        sg_conf_unref(conf);
        return 0;
    }
    s = sg_conf_settings(conf);
    sg_log_open("sendguard", s->syslog_facility, foreground);
    sg_conf_swap(conf);                       /* the current snapshot owns it now */
    if (user == NULL)
        user = s->user;
    if (pidfile == NULL)
        pidfile = s->pidfile;
    if (user != NULL && (pw = getpwnam(user)) == NULL) {
        sg_log(LOG_ERR, "unknown user %s", user);
        return EX_USAGE_;
    }
    snprintf(sg_rt.relay, sizeof(sg_rt.relay), "%s", s->relay_name);
    sg_rt.tcp = strncmp(s->milter_socket, "inet", 4) == 0;
    sg_rt.fallback = sg_store_memory_new(NULL, NULL);
    sg_rt.primary = open_primary(s);
    if (sg_rt.primary == NULL || sg_rt.fallback == NULL)
        return SG_EX_CONFIG;

    signal(SIGPIPE, SIG_IGN);
    if (sg_ovh_global_init() != 0) {         /* before any thread */
        sg_log(LOG_ERR, "curl_global_init failed");
        return EX_SOFTWARE_;
    }
    /* Block, in every thread to come, the signals the signal thread waits
     * for: otherwise the kernel may deliver SIGTERM to a thread that does
     * not wait for it, killing the process without a clean stop. */
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGHUP);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);

    if (remove_stale_socket(s->milter_socket) != 0)
        return EX_UNAVAILABLE_;
    if (sg_mproto_listen(s->milter_socket, err, sizeof(err)) != 0) {
        sg_log(LOG_ERR, "cannot listen on %s: %s", s->milter_socket, err);
        return EX_UNAVAILABLE_;
    }
    if (set_socket_mode(s->milter_socket, s->socket_mode, pw) != 0)
        return EX_OSERR_;
    /* Without -f: detach, once the socket is up (so a start that cannot
     * listen fails in the foreground) and before any thread exists. */
    if (!foreground && daemon(0, 0) != 0) {
        sg_log(LOG_ERR, "cannot detach: %s", strerror(errno));
        return EX_OSERR_;
    }
    if (write_pidfile(pidfile) != 0 || drop_privileges(pw) != 0)
        return EX_OSERR_;
    if (pthread_create(&sigthr, NULL, signal_thread, &blocked) != 0) {
        sg_log(LOG_ERR, "cannot start the signal thread");
        return EX_OSERR_;
    }
    pthread_detach(sigthr);
    sg_jobs_start(sg_rt.primary, sg_rt.fallback, sg_rt.relay);
    sg_log(LOG_NOTICE, "sendguard %s listening on %s, store %s, %zu accounts, %zu default limits",
           SG_VERSION, s->milter_socket, sg_store_name(sg_rt.primary), s->naccounts, s->nlimits);

    rc = sg_mproto_run(&sg_milter_handlers, s->milter_timeout_s);

    sg_jobs_stop();
    if (pidfile != NULL)
        unlink(pidfile);
    if (rc == 1)                  /* a decision still running uses the stores */
        return 0;
    sg_store_free(sg_rt.primary);
    sg_store_free(sg_rt.fallback);
    sg_conf_swap(NULL);
    sg_log(LOG_NOTICE, "stopped");
    return rc == 0 ? 0 : EX_SOFTWARE_;
}
