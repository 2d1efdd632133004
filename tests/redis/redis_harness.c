/*
 * redis_harness.c - the harness of the Redis store tests: throwaway
 * redis-server processes (tracked, killed at teardown and on our death),
 * a store on them with an optional test clock, builders of limits and
 * charges, group setup and teardown.
 * Must not: hold a test, listen anywhere but 127.0.0.1 (or a socket in its
 * temporary directory), or leave a server or a file behind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


#include "redis_harness.h"

/* --- throwaway servers ------------------------------------------------------ */


char g_tmp[128];
struct srv g_srv;                 /* the shared server */
struct sg_store_redis *g_st;      /* store on g_srv */
sg_store_t *g_store;              /* the same, through the store handle */

/* Every server started, so that a failed test (which longjmps out before
 * its own cleanup) leaves none behind: group teardown kills the rest, and
 * PR_SET_PDEATHSIG kills them if this process dies. */
pid_t g_pids[32];

void track(pid_t pid, bool add)
{
    for (size_t i = 0; i < sizeof(g_pids) / sizeof(g_pids[0]); i++) {
        if (add && g_pids[i] == 0) {
            g_pids[i] = pid;
            return;
        }
        if (!add && g_pids[i] == pid) {
            g_pids[i] = 0;
            return;
        }
    }
}

uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

const char *bin(const char *env, const char *def)
{
    const char *b = getenv(env);
    return b && *b ? b : def;
}

int free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

redisContext *admin(const struct srv *s)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);

    if (c != NULL && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* One command on a fresh admin connection; the reply (or NULL). */
redisReply *cmd(const struct srv *s, const char *fmt, ...)
{
    redisContext *c = admin(s);
    redisReply *rep = NULL;
    va_list ap;

    if (c == NULL)
        return NULL;
    va_start(ap, fmt);
    rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

int ping(const struct srv *s)
{
    redisReply *rep = cmd(s, "PING");
    int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;

    if (rep != NULL)
        freeReplyObject(rep);
    return ok;
}

void srv_kill(struct srv *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        waitpid(s->pid, NULL, 0);
        track(s->pid, false);
        s->pid = 0;
    }
}

/* Start argv (argv[0] the binary), logs to DIR/NAME.log; wait for PING. */
int spawn(struct srv *s, char *const argv[])
{
    char log[300];
    uint64_t t0 = now_ms();

    snprintf(log, sizeof(log), "%s/%s.log", s->dir, s->name);
    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    track(s->pid, true);
    while (now_ms() - t0 < 5000) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            fprintf(stderr, "%s exited at start; see %s\n", argv[0], log);
            track(s->pid, false);
            s->pid = 0;
            return -1;
        }
        if (ping(s))
            return 0;
        sleep_ms(20);
    }
    fprintf(stderr, "%s did not answer on port %d; see %s\n", argv[0], s->port, log);
    srv_kill(s, SIGKILL);
    return -1;
}

/* A redis-server; port 0 = pick one (kept across restarts). */
int srv_start(struct srv *s, const char *name, const char *const *extra)
{
    char port[16];
    char *argv[40];
    int n = 0;

    if (s->dir[0] == '\0') {
        snprintf(s->name, sizeof(s->name), "%s", name);
        snprintf(s->dir, sizeof(s->dir), "%s/%s", g_tmp, name);
        if (mkdir(s->dir, 0700) < 0 && errno != EEXIST)
            return -1;
        snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    }
    if (s->port == 0)
        s->port = free_port();
    if (s->port <= 0)
        return -1;
    snprintf(port, sizeof(port), "%d", s->port);
    argv[n++] = (char *)bin("SG_REDIS_SERVER", "/usr/bin/redis-server");
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--unixsocket";
    argv[n++] = s->sock;
    argv[n++] = "--enable-debug-command";
    argv[n++] = "yes";
    for (size_t i = 0; extra && extra[i] && n < 38; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return spawn(s, argv);
}


int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* --- the store under test ------------------------------------------------ */

/* A test clock, one per store that needs one: the store's setting, not a
 * second compiled copy. */
uint64_t test_clock(void *ctx)
{
    return (uint64_t)*(int64_t *)ctx;
}

struct sg_store_redis *open_store_clock(int port, const char *unix_path, int64_t *now)
{
    struct sg_redis_settings rs = {
        .host = "127.0.0.1", .port = port, .unix_path = unix_path, .prefix = "sgt:",
        .connect_timeout_ms = 200, .command_timeout_ms = 200, .pool_size = 4,
    };
    char err[256];
    struct sg_store_redis *st = sg_store_redis_open(&rs, now ? test_clock : NULL, now,
                                                    err, sizeof(err));

    if (st == NULL)
        fprintf(stderr, "open: %s\n", err);
    return st;
}

struct sg_store_redis *open_store(int port, const char *unix_path)
{
    return open_store_clock(port, unix_path, NULL);
}

struct sg_limit lim(const char *name, uint64_t window_ms, uint64_t msgs,
                           uint64_t rcpts, uint64_t bytes, uint64_t distinct)
{
    struct sg_limit l = { .name = name, .window_ms = window_ms, .action = SG_ACT_TEMPFAIL,
                          .warn_at = 1.0 };
    l.cap[SG_UNIT_MESSAGES] = msgs;
    l.cap[SG_UNIT_RECIPIENTS] = rcpts;
    l.cap[SG_UNIT_BYTES] = bytes;
    l.cap[SG_UNIT_DISTINCT] = distinct;
    return l;
}

struct sg_charge chg(uint64_t rcpts, uint64_t bytes, const uint64_t *hashes,
                            size_t nhashes)
{
    struct sg_charge c = { .rcpt_hashes = hashes, .nrcpt_hashes = nhashes };
    c.units[SG_UNIT_MESSAGES] = 1;
    c.units[SG_UNIT_RECIPIENTS] = rcpts;
    c.units[SG_UNIT_BYTES] = bytes;
    return c;
}

enum sg_store_status decide(struct sg_store_redis *st, const char *acct,
                                   const struct sg_limit *l, size_t nl,
                                   const struct sg_charge *c, struct sg_store_result *res)
{
    struct sg_evidence ev = { .qid = "Q1", .client_ip = "192.0.2.1", .identity = "jdoe" };

    sg_store_redis_decide(st, acct, l, nl, c, &ev, false, res);
    return res->status;
}

void unique(char *buf, size_t n, const char *what)
{
    static int seq;
    snprintf(buf, n, "%s-%d-%d@example.com", what, (int)getpid(), ++seq);
}

/* --- group setup -------------------------------------------------------- */

int group_teardown(void **state)
{
    (void)state;
    sg_store_redis_close(g_st);
    sg_store_free(g_store);
    srv_kill(&g_srv, SIGTERM);
    for (size_t i = 0; i < sizeof(g_pids) / sizeof(g_pids[0]); i++) {
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
        }
    }
    if (g_tmp[0] && getenv("SG_KEEP_TMP") == NULL)
        nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int group_setup(void **state)
{
    const char *t = getenv("TMPDIR");

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_tmp, sizeof(g_tmp), "%s/sg-redis-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(g_tmp) == NULL)
        return -1;
    if (srv_start(&g_srv, "main", NULL) < 0 || (g_st = open_store(g_srv.port, NULL)) == NULL) {
        group_teardown(state);
        return -1;
    }
    {
        struct sg_redis_settings rs = { .host = "127.0.0.1", .port = g_srv.port,
                                        .prefix = "sgt:" };
        char err[256];
        g_store = sg_store_redis_new(&rs, NULL, NULL, err, sizeof(err));
    }
    if (g_store == NULL) {
        group_teardown(state);
        return -1;
    }
    return 0;
}

/* --- tests ------------------------------------------------------------------- */
