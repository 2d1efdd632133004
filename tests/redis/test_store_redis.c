/*
 * test_store_redis - what only the Redis store backend has (pool, breaker,
 * Sentinel, reconnect, script loading, key layout and expiry, one round trip
 * per decision; the store contract itself is tests/store), against real
 * redis-server
 * processes started here, on free 127.0.0.1 ports, in a temporary
 * directory. Nothing else is touched; a server that cannot start fails
 * the test (group setup), it is never skipped.
 *
 * SG_REDIS_SERVER / SG_REDIS_SENTINEL name the binaries (ctest sets them;
 * default /usr/bin/redis-server, /usr/bin/redis-sentinel).
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

#include "sg_store_redis.h"

/* --- throwaway servers ------------------------------------------------------ */

struct srv {
    pid_t pid;
    int port;
    char dir[200];
    char sock[260];
    char name[32];
};

static char g_tmp[128];
static struct srv g_srv;                 /* the shared server */
static struct sg_store_redis *g_st;      /* store on g_srv */
static sg_store_t *g_store;              /* the same, through the store handle */

/* Every server started, so that a failed test (which longjmps out before
 * its own cleanup) leaves none behind: group teardown kills the rest, and
 * PR_SET_PDEATHSIG kills them if this process dies. */
static pid_t g_pids[32];

static void track(pid_t pid, bool add)
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

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static const char *bin(const char *env, const char *def)
{
    const char *b = getenv(env);
    return b && *b ? b : def;
}

static int free_port(void)
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

static redisContext *admin(const struct srv *s)
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
static redisReply *cmd(const struct srv *s, const char *fmt, ...)
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

static int ping(const struct srv *s)
{
    redisReply *rep = cmd(s, "PING");
    int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;

    if (rep != NULL)
        freeReplyObject(rep);
    return ok;
}

static void srv_kill(struct srv *s, int sig)
{
    if (s->pid > 0) {
        kill(s->pid, sig);
        waitpid(s->pid, NULL, 0);
        track(s->pid, false);
        s->pid = 0;
    }
}

/* Start argv (argv[0] the binary), logs to DIR/NAME.log; wait for PING. */
static int spawn(struct srv *s, char *const argv[])
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
static int srv_start(struct srv *s, const char *name, const char *const *extra)
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


static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
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
static uint64_t test_clock(void *ctx)
{
    return (uint64_t)*(int64_t *)ctx;
}

static struct sg_store_redis *open_store_clock(int port, const char *unix_path, int64_t *now)
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

static struct sg_store_redis *open_store(int port, const char *unix_path)
{
    return open_store_clock(port, unix_path, NULL);
}

static struct sg_limit lim(const char *name, uint64_t window_ms, uint64_t msgs,
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

static struct sg_charge chg(uint64_t rcpts, uint64_t bytes, const uint64_t *hashes,
                            size_t nhashes)
{
    struct sg_charge c = { .rcpt_hashes = hashes, .nrcpt_hashes = nhashes };
    c.units[SG_UNIT_MESSAGES] = 1;
    c.units[SG_UNIT_RECIPIENTS] = rcpts;
    c.units[SG_UNIT_BYTES] = bytes;
    return c;
}

static enum sg_store_status decide(struct sg_store_redis *st, const char *acct,
                                   const struct sg_limit *l, size_t nl,
                                   const struct sg_charge *c, struct sg_store_result *res)
{
    struct sg_evidence ev = { .qid = "Q1", .client_ip = "192.0.2.1", .identity = "jdoe" };

    sg_store_redis_decide(st, acct, l, nl, c, &ev, false, res);
    return res->status;
}

static void unique(char *buf, size_t n, const char *what)
{
    static int seq;
    snprintf(buf, n, "%s-%d-%d@example.com", what, (int)getpid(), ++seq);
}

/* --- group setup -------------------------------------------------------- */

static int group_teardown(void **state)
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

static int group_setup(void **state)
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

static void test_noscript(void **state)
{
    struct sg_limit l = lim("1h", 3600000, 100, 0, 0, 0);
    struct sg_charge c = chg(1, 1, NULL, 0);
    struct sg_store_result res;
    redisReply *rep;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "noscript");
    assert_int_equal(decide(g_st, a, &l, 1, &c, &res), SG_STORE_OK);
    rep = cmd(&g_srv, "SCRIPT FLUSH");
    assert_non_null(rep);
    freeReplyObject(rep);
    assert_int_equal(decide(g_st, a, &l, 1, &c, &res), SG_STORE_OK);
    assert_int_equal(res.used, 2);
}

/* Exactly one EVALSHA per decision, and no other command from the store. */
static void test_one_round_trip(void **state)
{
    struct sg_limit l[3] = { lim("1h", 3600000, 1000, 5000, 0, 0),
                             lim("1d", 86400000, 5000, 0, 0, 0),
                             lim("dist", 86400000, 0, 0, 0, 500) };
    uint64_t h[] = { 11, 12, 13 };
    const char *doms[] = { "a.example", "b.example" };
    struct sg_charge c = chg(3, 1000, h, 3);
    struct sg_evidence ev = { .qid = "ABC", .client_ip = "192.0.2.9", .identity = "x",
                              .mailer = "m", .msgid = "<id@x>", .rcpt_domains = doms,
                              .nrcpt_domains = 2, .from_mismatch = true,
                              .from_header_domain = "evil.example" };
    struct sg_store_result res;
    redisContext *mon = admin(&g_srv), *adm = admin(&g_srv);
    redisReply *rep;
    struct sockaddr_in me;
    socklen_t mel = sizeof(me);
    char a[128], admaddr[64], *p;
    const int M = 25;
    int evalsha = 0, other = 0;

    (void)state;
    assert_non_null(mon);
    assert_non_null(adm);
    unique(a, sizeof(a), "rtt");
    /* warm up: pool connected, script loaded */
    assert_int_equal(sg_store_redis_decide(g_st, a, l, 3, &c, &ev, false, &res), 0);
    getsockname(adm->fd, (struct sockaddr *)&me, &mel);
    snprintf(admaddr, sizeof(admaddr), "127.0.0.1:%d", ntohs(me.sin_port));
    rep = redisCommand(adm, "CONFIG RESETSTAT");
    freeReplyObject(rep);
    rep = redisCommand(mon, "MONITOR");
    assert_non_null(rep);
    freeReplyObject(rep);
    for (int i = 0; i < M; i++) {
        assert_int_equal(sg_store_redis_decide(g_st, a, l, 3, &c, &ev, false, &res), 0);
        assert_int_equal(res.status, SG_STORE_OK);
    }
    rep = redisCommand(adm, "INFO commandstats");
    assert_non_null(rep);
    p = strstr(rep->str, "cmdstat_evalsha:calls=");
    assert_non_null(p);
    assert_int_equal(atoi(p + strlen("cmdstat_evalsha:calls=")), M);
    freeReplyObject(rep);
    rep = redisCommand(adm, "ECHO sg-end-marker");
    freeReplyObject(rep);
    for (;;) {
        void *r = NULL;
        const char *lb, *sp, *rb;
        char src[64];
        assert_int_equal(redisGetReply(mon, &r), REDIS_OK);
        rep = r;
        if (strstr(rep->str, "sg-end-marker") != NULL) {
            freeReplyObject(rep);
            break;
        }
        /* "<time> [<db> <source>] "<command>" ...": source lua = inside the script */
        lb = strchr(rep->str, '[');
        sp = lb ? strchr(lb, ' ') : NULL;
        rb = sp ? strchr(sp, ']') : NULL;
        assert_non_null(rb);
        snprintf(src, sizeof(src), "%.*s", (int)(rb - sp - 1), sp + 1);
        if (strcmp(src, "lua") != 0 && strcmp(src, admaddr) != 0) {
            if (strncasecmp(rb + 2, "\"evalsha\"", 9) == 0)
                evalsha++;
            else
                other++, fprintf(stderr, "unexpected command: %s\n", rep->str);
        }
        freeReplyObject(rep);
    }
    assert_int_equal(evalsha, M);
    assert_int_equal(other, 0);
    redisFree(mon);
    redisFree(adm);
}

static void test_outage_and_return(void **state)
{
    struct srv s = { 0 };
    struct sg_store_redis *st;
    struct sg_limit l = lim("1h", 3600000, 1000, 0, 0, 0);
    struct sg_charge c = chg(1, 1, NULL, 0);
    struct sg_store_result res;
    uint64_t t0, busy = 0, back;
    char a[128];
    int n;

    (void)state;
    assert_int_equal(srv_start(&s, "outage", NULL), 0);
    st = open_store(s.port, NULL);
    assert_non_null(st);
    unique(a, sizeof(a), "outage");
    for (int i = 0; i < 3; i++)
        assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_OK);

    srv_kill(&s, SIGKILL);
    t0 = now_ms();
    assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_ERROR);
    assert_true(now_ms() - t0 < 5000);             /* refused: no timeout to wait for */
    /* breaker open: every call fails at once (a probe every 250-500 ms
     * may pay a refused connect, still milliseconds) */
    for (n = 0; n < 100; n++) {
        uint64_t t = now_ms();
        assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_ERROR);
        busy += now_ms() - t;
        sleep_ms(5);
    }
    /* were each call to wait a connect or command timeout (200 ms), the
     * 100 would take 20 s: a generous bound a loaded machine keeps */
    assert_true(busy < 5000);
    assert_int_equal(sg_store_redis_usage(st, a, &l, 1, &(struct sg_usage){ 0 }), -1);

    assert_int_equal(srv_start(&s, "outage", NULL), 0);   /* same port */
    back = now_ms();
    while (decide(st, a, &l, 1, &c, &res) != SG_STORE_OK) {
        assert_true(now_ms() - back < 1500);
        sleep_ms(10);
    }
    fprintf(stderr, "store usable again %" PRIu64 " ms after restart\n", now_ms() - back);
    assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_OK);
    assert_int_equal(res.used, 2);                 /* fresh server, no persistence */
    sg_store_redis_close(st);
    srv_kill(&s, SIGTERM);
}

/* A server that stops answering (DEBUG SLEEP): the command timeout, then
 * the breaker, keep every call short. */
static void test_stall(void **state)
{
    struct srv s = { 0 };
    struct sg_store_redis *st;
    struct sg_limit l = lim("1h", 3600000, 1000, 0, 0, 0);
    struct sg_charge c = chg(1, 1, NULL, 0);
    struct sg_store_result res;
    redisContext *sleeper;
    uint64_t t0;
    char a[128];
    int done = 0;

    (void)state;
    assert_int_equal(srv_start(&s, "stall", NULL), 0);
    st = open_store(s.port, NULL);
    assert_non_null(st);
    unique(a, sizeof(a), "stall");
    assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_OK);
    sleeper = admin(&s);
    assert_non_null(sleeper);
    redisAppendCommand(sleeper, "DEBUG SLEEP 1.5");
    while (!done)
        assert_int_equal(redisBufferWrite(sleeper, &done), REDIS_OK);
    sleep_ms(50);
    t0 = now_ms();
    assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_ERROR);
    assert_true(now_ms() - t0 < 1400);             /* the timeout (200), not the 1.5 s sleep */
    t0 = now_ms();
    for (int i = 0; i < 20; i++)
        assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_ERROR);
    assert_true(now_ms() - t0 < 2000);             /* not 20 timeouts (4 s): a probe or two */
    {
        void *r = NULL;
        redisGetReply(sleeper, &r);                /* the sleep is over */
        if (r)
            freeReplyObject(r);
    }
    t0 = now_ms();
    while (decide(st, a, &l, 1, &c, &res) != SG_STORE_OK) {
        assert_true(now_ms() - t0 < 1500);
        sleep_ms(10);
    }
    redisFree(sleeper);
    sg_store_redis_close(st);
    srv_kill(&s, SIGTERM);
}

static int sentinel_start(struct srv *s, int master_port)
{
    char conf[300];
    FILE *f;
    char *argv[3];

    snprintf(s->name, sizeof(s->name), "sentinel");
    snprintf(s->dir, sizeof(s->dir), "%s/sentinel", g_tmp);
    mkdir(s->dir, 0700);
    s->port = free_port();
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", s->dir);
    f = fopen(conf, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
               "sentinel monitor mymaster 127.0.0.1 %d 1\n"
               "sentinel down-after-milliseconds mymaster 2000\n"
               "sentinel failover-timeout mymaster 4000\n", s->port, s->dir, master_port);
    fclose(f);
    argv[0] = (char *)bin("SG_REDIS_SENTINEL", "/usr/bin/redis-sentinel");
    argv[1] = conf;
    argv[2] = NULL;
    return spawn(s, argv);
}

static void test_sentinel_failover(void **state)
{
    struct srv m = { 0 }, rp = { 0 }, sn = { 0 };
    char sent[64];
    struct sg_store_redis *st;
    struct sg_limit l = lim("1h", 3600000, 1000, 0, 0, 0);
    struct sg_charge c = chg(1, 1, NULL, 0);
    struct sg_store_result res;
    struct sg_usage u;
    redisReply *rep;
    uint64_t t0;
    char a[128], err[256];
    int ok, errors = 0;

    (void)state;
    {
        const char *ex[] = { "--repl-diskless-sync-delay", "0", NULL };
        assert_int_equal(srv_start(&m, "master", ex), 0);
    }
    {
        const char *ex[] = { "--replicaof", "127.0.0.1", NULL, NULL };
        char p[16];
        snprintf(p, sizeof(p), "%d", m.port);
        ex[2] = p;
        assert_int_equal(srv_start(&rp, "replica", ex), 0);
    }
    assert_int_equal(sentinel_start(&sn, m.port), 0);
    snprintf(sent, sizeof(sent), "127.0.0.1:%d", sn.port);
    {
        const char *sents[] = { "127.0.0.1:1", sent };  /* a dead one first */
        struct sg_redis_settings rs = {
            .prefix = "sgt:", .connect_timeout_ms = 200, .command_timeout_ms = 200,
            .pool_size = 4, .sentinel_master = "mymaster", .sentinels = sents,
            .nsentinels = 2,
        };
        st = sg_store_redis_open(&rs, NULL, NULL, err, sizeof(err));
        assert_non_null(st);
    }
    unique(a, sizeof(a), "failover");
    for (int i = 0; i < 3; i++)
        assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_OK);

    /* wait until the sentinel knows a healthy replica, then fail over */
    t0 = now_ms();
    for (ok = 0; !ok && now_ms() - t0 < 20000; ) {
        /* WAIT counts replicas that have this connection's last write */
        redisContext *w = admin(&m);
        assert_non_null(w);
        rep = redisCommand(w, "SET sgt:sync 1 PX 60000");
        if (rep)
            freeReplyObject(rep);
        rep = redisCommand(w, "WAIT 1 1000");
        ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
        if (rep)
            freeReplyObject(rep);
        redisFree(w);
    }
    assert_true(ok);                                /* the replica has the counts */
    t0 = now_ms();
    for (ok = 0; !ok && now_ms() - t0 < 20000; ) {
        rep = cmd(&sn, "SENTINEL FAILOVER mymaster");
        ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
        if (rep)
            freeReplyObject(rep);
        if (!ok)
            sleep_ms(200);
    }
    assert_true(ok);
    t0 = now_ms();
    for (ok = 0; !ok && now_ms() - t0 < 20000; ) {
        rep = cmd(&sn, "SENTINEL get-master-addr-by-name mymaster");
        ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
             atoi(rep->element[1]->str) == rp.port;
        if (rep)
            freeReplyObject(rep);
        /* decisions go on during the failover: some may fail over to memory */
        if (decide(st, a, &l, 1, &c, &res) != SG_STORE_OK)
            errors++;
        sleep_ms(50);
    }
    assert_true(ok);
    fprintf(stderr, "failover seen after %" PRIu64 " ms, %d errors meanwhile\n",
            now_ms() - t0, errors);
    /* The old master takes writes until the sentinel demotes it (some
     * seconds later; it then drops its clients): decisions go on meanwhile,
     * and land on the new master afterwards. */
    t0 = now_ms();
    for (ok = 0; !ok && now_ms() - t0 < 30000; ) {
        rep = cmd(&m, "ROLE");
        ok = rep && rep->type == REDIS_REPLY_ARRAY && strcmp(rep->element[0]->str, "slave") == 0;
        if (rep)
            freeReplyObject(rep);
        if (decide(st, a, &l, 1, &c, &res) != SG_STORE_OK)
            errors++;
        sleep_ms(50);
    }
    assert_true(ok);
    fprintf(stderr, "old master demoted after %" PRIu64 " ms more, %d errors in all\n",
            now_ms() - t0, errors);
    t0 = now_ms();
    while (decide(st, a, &l, 1, &c, &res) != SG_STORE_OK) {
        assert_true(now_ms() - t0 < 5000);
        sleep_ms(20);
    }
    rep = cmd(&rp, "ROLE");
    assert_non_null(rep);
    assert_string_equal(rep->element[0]->str, "master");
    freeReplyObject(rep);
    rep = cmd(&rp, "CONFIG RESETSTAT");
    freeReplyObject(rep);
    for (int i = 0; i < 5; i++)
        assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_OK);
    rep = cmd(&rp, "INFO commandstats");
    assert_non_null(rep);
    assert_non_null(strstr(rep->str, "cmdstat_evalsha:calls=5,"));
    freeReplyObject(rep);
    /* the counts made before the failover were replicated (WAIT) */
    assert_int_equal(sg_store_redis_usage(st, a, &l, 1, &u), 0);
    fprintf(stderr, "usage after failover: %" PRIu64 " messages\n", u.used[SG_UNIT_MESSAGES]);
    assert_true(u.used[SG_UNIT_MESSAGES] >= 3 + 5);

    sg_store_redis_close(st);

    /* the old master, now a replica, answers READONLY: an error, at once
     * (with a 10 s command timeout, an answer well before it) */
    {
        struct sg_redis_settings rs2 = { .host = "127.0.0.1", .port = m.port,
                                         .prefix = "sgt:", .connect_timeout_ms = 10000,
                                         .command_timeout_ms = 10000, .pool_size = 2 };
        char err2[256];
        st = sg_store_redis_open(&rs2, NULL, NULL, err2, sizeof(err2));
    }
    assert_non_null(st);
    t0 = now_ms();
    assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_ERROR);
    assert_true(now_ms() - t0 < 5000);
    assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_ERROR);
    sg_store_redis_close(st);
    srv_kill(&sn, SIGTERM);
    srv_kill(&rp, SIGTERM);
    srv_kill(&m, SIGTERM);
}

/* A lock's lease runs out in real time (the contract itself is in
 * tests/store). */
static void test_lock(void **state)
{
    char name[64];
    uint64_t t0;

    (void)state;
    snprintf(name, sizeof(name), "watcher-%d", (int)getpid());
    assert_int_equal(sg_store_redis_lock(g_st, name, "relay-b", 150), 1);
    t0 = now_ms();
    assert_int_equal(sg_store_redis_lock(g_st, name, "relay-a", 10000), 0);
    while (sg_store_redis_lock(g_st, name, "relay-a", 10000) != 1) {   /* b's lease runs out */
        assert_true(now_ms() - t0 < 10000);
        sleep_ms(20);
    }
    assert_true(now_ms() - t0 >= 100);              /* not before it was due */
    assert_int_equal(sg_store_redis_lock(g_st, name, "relay-a", 0), 1);
}

static void test_reset(void **state)
{
    struct sg_limit l[2] = { lim("1h", 3600000, 10, 0, 0, 0), lim("d", 3600000, 0, 0, 0, 10) };
    uint64_t h[] = { 1, 2 };
    struct sg_charge c = chg(2, 1, h, 2);
    struct sg_store_result res;
    struct sg_account_state in = { .blocked = true, .ticket = 7 }, out;
    struct sg_usage u[2];
    struct sg_evidence_report ev;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "reset*[x]");
    for (int i = 0; i < 3; i++)
        assert_int_equal(decide(g_st, a, l, 2, &c, &res), SG_STORE_OK);
    assert_int_equal(sg_store_redis_state_cas(g_st, a, 0, &in, &out), 1);
    assert_int_equal(sg_store_redis_reset(g_st, a), 0);
    assert_int_equal(sg_store_redis_usage(g_st, a, l, 2, u), 0);
    assert_int_equal(u[0].used[SG_UNIT_MESSAGES], 0);
    assert_int_equal(u[1].used[SG_UNIT_DISTINCT], 0);
    assert_int_equal(sg_store_redis_state_get(g_st, a, &out), 0);   /* state kept */
    assert_true(out.blocked);
    assert_int_equal(out.ticket, 7);
    assert_int_equal(sg_store_evidence_get(g_store, a, &ev), 0);  /* evidence kept */
    assert_int_equal(ev.nips, 1);
    assert_string_equal(ev.ips[0].value, "192.0.2.1");
    sg_evidence_report_free(&ev);
    assert_int_equal(decide(g_st, a, l, 2, &c, &res), SG_STORE_OK);
    assert_int_equal(res.used, 2);                   /* the fullest: distinct 2/10 */
}

/* A reload that changes a window starts a fresh counter. */
static void test_window_change(void **state)
{
    struct sg_limit l1 = lim("x", 3600000, 2, 0, 0, 0), l2 = lim("x", 7200000, 2, 0, 0, 0);
    struct sg_charge c = chg(1, 1, NULL, 0);
    struct sg_store_result res;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "window");
    assert_int_equal(decide(g_st, a, &l1, 1, &c, &res), SG_STORE_OK);
    assert_int_equal(decide(g_st, a, &l1, 1, &c, &res), SG_STORE_OK);
    assert_int_equal(decide(g_st, a, &l1, 1, &c, &res), SG_STORE_OVER);
    assert_int_equal(decide(g_st, a, &l2, 1, &c, &res), SG_STORE_OK);
}

static long long pttl(const char *key)
{
    redisReply *rep = cmd(&g_srv, "PTTL %s", key);
    long long v = rep != NULL && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -3;

    if (rep != NULL)
        freeReplyObject(rep);
    return v;
}

/* A window key's expiry (T + w + 1000 ms) moves when a newer bucket is
 * charged, not on every message, and not when the clock steps back. */
static void test_window_expiry(void **state)
{
    struct sg_limit l = lim("exp", 60000, 1000, 0, 0, 0);     /* w = 1000 ms */
    struct sg_charge c = chg(1, 1, NULL, 0);
    int64_t now = 0;
    struct sg_store_redis *st = open_store_clock(g_srv.port, NULL, &now);
    struct sg_store_result res;
    const long long ttl = 60000 + 1000 + 1000;
    unsigned char md[SHA_DIGEST_LENGTH];
    char a[128], key[200], *o;
    long long t0, p1, p2, p3, p4;
    redisReply *rep;

    (void)state;
    assert_non_null(st);
    unique(a, sizeof(a), "expiry");
    SHA1((const unsigned char *)a, strlen(a), md);
    o = key + sprintf(key, "sgt:{");
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        o += sprintf(o, "%02x", md[i]);
    sprintf(o, "}:w:exp:60000");
    rep = cmd(&g_srv, "TIME");                     /* the server's clock */
    assert_non_null(rep);
    t0 = atoll(rep->element[0]->str) * 1000 + atoll(rep->element[1]->str) / 1000;
    freeReplyObject(rep);
    t0 -= t0 % 1000;                               /* a bucket's start */

    now = t0 + 10;
    assert_int_equal(sg_store_redis_decide(st, a, &l, 1, &c, NULL, false, &res), 0);
    assert_int_equal(res.status, SG_STORE_OK);
    p1 = pttl(key);
    assert_true(p1 > ttl - 250 && p1 <= ttl);
    sleep_ms(300);
    now = t0 + 500;    /* the same bucket: left */
    assert_int_equal(sg_store_redis_decide(st, a, &l, 1, &c, NULL, false, &res), 0);
    assert_int_equal(res.used, 2);
    p2 = pttl(key);
    assert_true(p2 > 0 && p2 < p1 - 200);
    now = t0 + 2000;   /* a newer bucket: moved */
    assert_int_equal(sg_store_redis_decide(st, a, &l, 1, &c, NULL, false, &res), 0);
    p3 = pttl(key);
    assert_true(p3 > ttl - 250 && p3 <= ttl);
    sleep_ms(300);
    now = t0 - 5000;   /* the clock back: left */
    assert_int_equal(sg_store_redis_decide(st, a, &l, 1, &c, NULL, false, &res), 0);
    assert_int_equal(res.status, SG_STORE_OK);
    p4 = pttl(key);
    assert_true(p4 > 0 && p4 < p3 - 200);
    sg_store_redis_close(st);
}

/* Every key the store writes expires; an account's keys share one tag. */
static void test_keys(void **state)
{
    struct sg_limit l = lim("k", 3600000, 10, 0, 0, 10);
    uint64_t h[] = { 5 };
    struct sg_charge c = chg(1, 1, h, 1);
    struct sg_evidence ev = { .client_ip = "192.0.2.1", .from_mismatch = true };
    struct sg_store_result res;
    struct sg_account_state in = { .ticket = -1 };
    const char acct[] = "odd{acct}\xc3\x28name";
    unsigned char md[SHA_DIGEST_LENGTH];
    char tag[64], pat[128];
    redisContext *adm = admin(&g_srv);
    redisReply *rep;
    size_t n = 0;

    (void)state;
    assert_non_null(adm);
    l.warn_at = 0.1;
    assert_int_equal(sg_store_redis_decide(g_st, acct, &l, 1, &c, &ev, false, &res), 0);
    assert_int_equal(res.warn_mask, 1u);
    struct sg_account_state cur;
    assert_int_equal(sg_store_redis_state_cas(g_st, acct, 0, &in, &cur), 1);
    SHA1((const unsigned char *)acct, strlen(acct), md);
    tag[0] = '{';
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(tag + 1 + 2 * i, "%02x", md[i]);
    strcat(tag, "}");
    snprintf(pat, sizeof(pat), "sgt:%s:*", tag);
    rep = redisCommand(adm, "KEYS %s", pat);
    assert_non_null(rep);
    n = rep->elements;
    assert_true(n >= 12);          /* state meta w d warn + evidence */
    freeReplyObject(rep);
    assert_int_equal(sg_store_redis_lock(g_st, "keys-test", "me", 60000), 1);
    rep = redisCommand(adm, "KEYS sgt:*");
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *t = redisCommand(adm, "PTTL %s", rep->element[i]->str);
        if (t->integer <= 0)
            fprintf(stderr, "no expiry: %s\n", rep->element[i]->str);
        assert_true(t->integer > 0);
        freeReplyObject(t);
    }
    freeReplyObject(rep);
    redisFree(adm);
}

static void test_unix_auth_db(void **state)
{
    struct sg_limit l = lim("1h", 3600000, 10, 0, 0, 0);
    struct sg_charge c = chg(1, 1, NULL, 0);
    struct sg_store_result res;
    struct sg_store_redis *st;
    redisReply *rep;
    char a[128], err[256];

    (void)state;
    unique(a, sizeof(a), "unix");
    st = open_store(0, g_srv.sock);
    assert_non_null(st);
    assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_OK);
    sg_store_redis_close(st);

    rep = cmd(&g_srv, "ACL SETUSER sgtest on >s3cret ~sgt:* +@all");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    {
        struct sg_redis_settings rs = { .host = "127.0.0.1", .port = g_srv.port,
                                        .prefix = "sgt:", .username = "sgtest",
                                        .password = "s3cret", .db = 3, .pool_size = 2 };
        st = sg_store_redis_open(&rs, NULL, NULL, err, sizeof(err));
        assert_non_null(st);
        assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_OK);
        assert_int_equal(res.used, 1);             /* db 3: a different counter */
        sg_store_redis_close(st);
        rs.password = "wrong";
        st = sg_store_redis_open(&rs, NULL, NULL, err, sizeof(err));
        assert_non_null(st);
        assert_int_equal(decide(st, a, &l, 1, &c, &res), SG_STORE_ERROR);
        sg_store_redis_close(st);
    }
    rep = cmd(&g_srv, "SELECT 3");
    freeReplyObject(rep);
    {
        redisContext *adm = admin(&g_srv);
        rep = redisCommand(adm, "SELECT 3");
        freeReplyObject(rep);
        rep = redisCommand(adm, "DBSIZE");
        assert_true(rep->integer > 0);
        freeReplyObject(rep);
        redisFree(adm);
    }
    /* bad settings are refused at open */
    {
        struct sg_redis_settings rs = { .prefix = "a{b" };
        assert_null(sg_store_redis_open(&rs, NULL, NULL, err, sizeof(err)));
        rs.prefix = NULL;
        rs.sentinel_master = "m";
        assert_null(sg_store_redis_open(&rs, NULL, NULL, err, sizeof(err)));
        {
            const char *bad[] = { "nohostport" };
            rs.sentinels = bad;
            rs.nsentinels = 1;
            assert_null(sg_store_redis_open(&rs, NULL, NULL, err, sizeof(err)));
        }
    }
}

/* --- implicit identities: what one costs -------------------------------- */


static long long info_used_memory(redisContext *adm)
{
    redisReply *rep = redisCommand(adm, "INFO memory");
    const char *p = rep && rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "used_memory:") : NULL;
    long long v = p ? strtoll(p + 12, NULL, 10) : -1;

    freeReplyObject(rep);
    return v;
}

/* An implicit identity is one key (its windows, all limits, fields only
 * for buckets in use) with an expiry, and nothing else: no evidence keys.
 * 2,000 of them (limits 1 h and 1 d, one message each) stay under the
 * issue's 400 bytes and 2 keys each. The flood summary counts them. */
static void test_implicit_cost(void **state)
{
    struct sg_limit l[2] = { lim("hourly", 3600000, 150, 500, 0, 0),
                             lim("daily", 86400000, 1000, 0, 0, 0) };
    struct sg_charge c = chg(1, 4096, NULL, 0);
    struct sg_evidence ev = { .client_ip = "203.0.113.66", .mailer = "PHPMailer 5.2.7" };
    struct sg_store_result res;
    redisContext *adm = admin(&g_srv);
    redisReply *rep;
    char a[128], pat[160], *json = NULL;
    unsigned char md[SHA_DIGEST_LENGTH];
    long long m0, m1, k0, k1;
    const int N = 2000;

    (void)state;
    assert_non_null(adm);
    c.implicit = true;
    unique(a, sizeof(a), "implicit");
    ev.identity = a;
    assert_int_equal(sg_store_redis_decide(g_st, a, l, 2, &c, &ev, false, &res), 0);
    assert_int_equal(res.status, SG_STORE_OK);
    assert_true(res.new_identity);
    assert_int_equal(sg_store_redis_decide(g_st, a, l, 2, &c, &ev, false, &res), 0);
    assert_false(res.new_identity);
    SHA1((const unsigned char *)a, strlen(a), md);
    snprintf(pat, sizeof(pat), "sgt:{");
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(pat + strlen(pat), "%02x", md[i]);
    strcat(pat, "}:*");
    rep = redisCommand(adm, "KEYS %s", pat);
    assert_int_equal(rep->elements, 1);
    assert_non_null(strstr(rep->element[0]->str, "}:i"));
    {
        redisReply *t = redisCommand(adm, "PTTL %s", rep->element[0]->str);
        redisReply *f = redisCommand(adm, "HLEN %s", rep->element[0]->str);
        assert_true(t->integer > 86400000 - 5000);
        assert_true(t->integer <= 86400000 + 1440000 + 1000);
        assert_int_equal(f->integer, 2);                  /* one bucket per limit */
        freeReplyObject(t);
        freeReplyObject(f);
    }
    freeReplyObject(rep);
    {
        struct sg_usage u[2];
        assert_int_equal(sg_store_redis_usage(g_st, a, l, 2, u), 0);
        assert_int_equal(u[0].used[SG_UNIT_MESSAGES], 2);
        assert_int_equal(u[1].used[SG_UNIT_RECIPIENTS], 2);
        assert_int_equal(u[1].used[SG_UNIT_BYTES], 8192);
        assert_int_equal(sg_store_redis_reset(g_st, a), 0);      /* forgets its one key */
        assert_int_equal(sg_store_redis_usage(g_st, a, l, 2, u), 0);
        assert_int_equal(u[0].used[SG_UNIT_MESSAGES], 0);
    }

    rep = redisCommand(adm, "DBSIZE");
    k0 = rep->integer;
    freeReplyObject(rep);
    m0 = info_used_memory(adm);
    for (int i = 0; i < N; i++) {
        unique(a, sizeof(a), "flood");
        ev.identity = a;
        assert_int_equal(sg_store_redis_decide(g_st, a, l, 2, &c, &ev, false, &res), 0);
        assert_int_equal(res.status, SG_STORE_OK);
        assert_true(res.new_identity);
    }
    m1 = info_used_memory(adm);
    rep = redisCommand(adm, "DBSIZE");
    k1 = rep->integer;
    freeReplyObject(rep);
    fprintf(stderr, "implicit identity: %.0f bytes, %.3f keys\n", (double)(m1 - m0) / N,
            (double)(k1 - k0) / N);
    assert_true(m0 > 0 && m1 > m0);
    assert_true((m1 - m0) / N <= 400);
    assert_true(k1 - k0 <= N + 8);                        /* + the summary's few keys */

    assert_int_equal(sg_store_redis_flood_json(g_st, 24, &json), 0);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"value\":\"203.0.113.66\",\"count\":"));
    assert_non_null(strstr(json, "PHPMailer 5.2.7"));
    {
        const char *n = strstr(json, "\"new\":");
        assert_non_null(n);
        assert_true(strtoll(n + 6, NULL, 10) >= N);
    }
    free(json);
    redisFree(adm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noscript),
        cmocka_unit_test(test_one_round_trip),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_window_change),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_window_expiry),
        cmocka_unit_test(test_unix_auth_db),
        cmocka_unit_test(test_implicit_cost),
        cmocka_unit_test(test_outage_and_return),
        cmocka_unit_test(test_stall),
        cmocka_unit_test(test_sentinel_failover),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
