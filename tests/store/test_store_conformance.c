/*
 * test_store_conformance - one store contract, both backends: every store
 * operation (decide, each cap kind, all-or-nothing, charge_refused,
 * sliding windows, warn_at, lockdown, held queue ids, state transitions,
 * evidence, implicit identities, locks) through sg_store_t only, the
 * dispatch the daemon uses.
 *
 *   test_store_conformance memory
 *   test_store_conformance redis     (starts its own redis-server on a
 *                                     free 127.0.0.1 port, temp dir)
 *
 * Time is a test clock given to the store as a setting (both backends).
 * What only one backend can promise is said where it is tested (Redis:
 * one round trip per held message, evidence recorded). No wall-clock
 * timing assertion anywhere. A redis-server that cannot start FAILS.
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
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sg_store.h"

static bool g_redis;              /* the backend under test */
static sg_store_t *g_st;
static _Atomic int64_t g_now;     /* the test clock, ms */
static bool g_implicit;           /* the tests again, as implicit identities */
static const char *RELAY = "relay-1";

static uint64_t test_clock(void *ctx)
{
    (void)ctx;
    return (uint64_t)atomic_load(&g_now);
}

/* --- a throwaway redis-server --------------------------------------------- */

static char g_tmp[128];
static pid_t g_pid;
static int g_port;

static redisContext *admin(void)
{
    struct timeval tv = { 5, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_port, tv);

    if (c != NULL && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static bool ping(void)
{
    redisContext *c = admin();
    redisReply *rep = c ? redisCommand(c, "PING") : NULL;
    bool ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;

    if (rep != NULL)
        freeReplyObject(rep);
    if (c != NULL)
        redisFree(c);
    return ok;
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

static int redis_start(void)
{
    const char *bin = getenv("SG_REDIS_SERVER");
    const char *t = getenv("TMPDIR");
    char port[16], log[200];
    struct timespec pause = { 0, 20 * 1000 * 1000 };

    snprintf(g_tmp, sizeof(g_tmp), "%s/sg-conform-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(g_tmp) == NULL || (g_port = free_port()) <= 0)
        return -1;
    snprintf(port, sizeof(port), "%d", g_port);
    snprintf(log, sizeof(log), "%s/redis.log", g_tmp);
    if (bin == NULL || *bin == '\0')
        bin = "/usr/bin/redis-server";
    g_pid = fork();
    if (g_pid < 0)
        return -1;
    if (g_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly",
              "no", "--dir", g_tmp, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1500; i++) {          /* until it answers (or died) */
        if (waitpid(g_pid, NULL, WNOHANG) == g_pid) {
            fprintf(stderr, "%s exited at start; see %s\n", bin, log);
            g_pid = 0;
            return -1;
        }
        if (ping())
            return 0;
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "%s did not answer on port %d; see %s\n", bin, g_port, log);
    return -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sg_store_free(g_st);
    g_st = NULL;
    if (g_pid > 0) {
        kill(g_pid, SIGTERM);
        waitpid(g_pid, NULL, 0);
        g_pid = 0;
    }
    if (g_tmp[0] && getenv("SG_KEEP_TMP") == NULL)
        nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int group_setup(void **state)
{
    char err[256] = "";

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    atomic_store(&g_now, (int64_t)sg_clock_realtime_ms(NULL));
    if (!g_redis) {
        g_st = sg_store_memory_new(test_clock, NULL);
    } else {
        struct sg_redis_settings rs = {
            .host = "127.0.0.1", .prefix = "sgc:", .connect_timeout_ms = 2000,
            .command_timeout_ms = 5000, .pool_size = 8,
        };
        if (redis_start() < 0) {
            group_teardown(state);
            return -1;
        }
        rs.port = g_port;
        g_st = sg_store_redis_new(&rs, test_clock, NULL, err, sizeof(err));
    }
    if (g_st == NULL) {
        fprintf(stderr, "store: %s\n", err);
        group_teardown(state);
        return -1;
    }
    return 0;
}

/* --- helpers --------------------------------------------------------------- */

static void unique(char *buf, size_t n, const char *what)
{
    static int seq;
    snprintf(buf, n, "%s-%d-%d@example.com", what, (int)getpid(), ++seq);
}

static void advance(int64_t ms)
{
    atomic_fetch_add(&g_now, ms);
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
    struct sg_charge c = { .rcpt_hashes = hashes, .nrcpt_hashes = nhashes,
                           .implicit = g_implicit };
    c.units[SG_UNIT_MESSAGES] = 1;
    c.units[SG_UNIT_RECIPIENTS] = rcpts;
    c.units[SG_UNIT_BYTES] = bytes;
    return c;
}

static enum sg_store_status decide(const char *acct, const struct sg_limit *l, size_t nl,
                                   const struct sg_charge *c, bool charge_refused,
                                   struct sg_store_result *res)
{
    struct sg_evidence ev = { .qid = "4ABC123", .client_ip = "192.0.2.1", .identity = acct,
                              .relay = RELAY };

    assert_int_equal(sg_store_decide(g_st, acct, l, nl, c, &ev, charge_refused, res), 0);
    return res->status;
}

static uint64_t used(const char *acct, const struct sg_limit *l, enum sg_unit u)
{
    struct sg_usage us;

    assert_int_equal(sg_store_usage(g_st, acct, l, 1, &us), 0);
    return us.used[u];
}

/* --- decide, each cap, all or nothing ------------------------------------------ */

static void test_decide_ok(void **state)
{
    struct sg_limit l = lim("ok", 60000, 10, 100, 0, 0);
    struct sg_charge c = chg(4, 100, NULL, 0);
    struct sg_store_result r;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "ok");
    assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    assert_int_equal(r.limit, 0);
    assert_false(r.lockdown);
    assert_false(r.held);
    assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    /* the fullest unit after this charge: recipients 8/100 < messages 2/10 */
    assert_int_equal(r.unit, SG_UNIT_MESSAGES);
    assert_int_equal(r.used, 2);
    assert_int_equal(r.cap, 10);
    assert_int_equal(used(a, &l, SG_UNIT_MESSAGES), 2);
    assert_int_equal(used(a, &l, SG_UNIT_RECIPIENTS), 8);
}

/* Cap `cap` on unit u: exactly the messages that fit pass, the next is
 * refused on that unit and not charged; retry_after when it fits again. */
static void cap_binds(enum sg_unit u, uint64_t cap, uint64_t per_msg)
{
    struct sg_limit l = lim("cap", 60000, 0, 0, 0, 0);
    struct sg_store_result r;
    uint64_t hashes[64];
    char a[128];
    uint64_t n = cap / per_msg;

    l.cap[u] = cap;
    unique(a, sizeof(a), "cap");
    for (uint64_t i = 0; i <= n; i++) {
        struct sg_charge c;
        for (uint64_t k = 0; k < per_msg && k < 64; k++)
            hashes[k] = 1000 * (i + 1) + k;       /* new recipients each time */
        c = chg(u == SG_UNIT_RECIPIENTS || u == SG_UNIT_DISTINCT ? per_msg : 1,
                u == SG_UNIT_BYTES ? per_msg : 10, hashes,
                u == SG_UNIT_DISTINCT ? per_msg : 0);
        if (i < n) {
            assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
            continue;
        }
        assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OVER);
        assert_int_equal(r.limit, 0);
        assert_int_equal(r.unit, u);
        assert_int_equal(r.used, n * per_msg);
        assert_int_equal(r.cap, cap);
        assert_true(r.retry_after_ms > 0 && r.retry_after_ms <= 60000 + 2000);
        if (u != SG_UNIT_DISTINCT)            /* refused: not charged */
            assert_int_equal(used(a, &l, u), n * per_msg);
        /* one that alone exceeds the cap: retry_after 0 (never fits) */
        for (uint64_t k = 0; k < 64 && k <= cap; k++)
            hashes[k] = 900000 + k;
        c = chg(u == SG_UNIT_RECIPIENTS || u == SG_UNIT_DISTINCT ? cap + 1 : 1,
                u == SG_UNIT_BYTES ? cap + 1 : 10, hashes,
                u == SG_UNIT_DISTINCT ? cap + 1 : 0);
        if (u != SG_UNIT_MESSAGES) {
            assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OVER);
            assert_int_equal(r.retry_after_ms, 0);
        }
        /* once the window has passed, it fits again */
        advance(62000);
        for (uint64_t k = 0; k < per_msg && k < 64; k++)
            hashes[k] = 7000000 + k;
        c = chg(u == SG_UNIT_RECIPIENTS || u == SG_UNIT_DISTINCT ? per_msg : 1,
                u == SG_UNIT_BYTES ? per_msg : 10, hashes,
                u == SG_UNIT_DISTINCT ? per_msg : 0);
        assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    }
}

static void test_cap_messages(void **state) { (void)state; cap_binds(SG_UNIT_MESSAGES, 5, 1); }
static void test_cap_recipients(void **state) { (void)state; cap_binds(SG_UNIT_RECIPIENTS, 12, 3); }
static void test_cap_bytes(void **state) { (void)state; cap_binds(SG_UNIT_BYTES, 10000, 2500); }
static void test_cap_distinct(void **state) { (void)state; cap_binds(SG_UNIT_DISTINCT, 9, 3); }

/* The same recipients again cost no distinct unit. */
static void test_distinct_repeat(void **state)
{
    struct sg_limit l = lim("rep", 60000, 0, 0, 0, 3);
    uint64_t h[3] = { 11, 12, 13 }, h4[1] = { 14 };
    struct sg_charge c = chg(3, 10, h, 3), c4 = chg(1, 10, h4, 1);
    struct sg_store_result r;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "rep");
    for (int i = 0; i < 5; i++)
        assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    assert_int_equal(used(a, &l, SG_UNIT_DISTINCT), 3);
    assert_int_equal(decide(a, &l, 1, &c4, false, &r), SG_STORE_OVER);
    assert_int_equal(r.unit, SG_UNIT_DISTINCT);
}

/* One limit refuses: none is charged; charge_refused charges them all. */
static void test_all_or_nothing(void **state)
{
    struct sg_limit l[2] = { lim("big", 3600000, 100, 0, 0, 0),
                             lim("small", 60000, 2, 0, 0, 0) };
    struct sg_charge c = chg(1, 10, NULL, 0);
    struct sg_store_result r;
    struct sg_usage us[2];
    char a[128];

    (void)state;
    unique(a, sizeof(a), "aon");
    assert_int_equal(decide(a, l, 2, &c, false, &r), SG_STORE_OK);
    assert_int_equal(decide(a, l, 2, &c, false, &r), SG_STORE_OK);
    assert_int_equal(decide(a, l, 2, &c, false, &r), SG_STORE_OVER);
    assert_int_equal(r.limit, 1);
    assert_int_equal(sg_store_usage(g_st, a, l, 2, us), 0);
    assert_int_equal(us[0].used[SG_UNIT_MESSAGES], 2);     /* "big" not charged either */
    assert_int_equal(us[1].used[SG_UNIT_MESSAGES], 2);
    /* strict mode: refused, and charged all the same */
    assert_int_equal(decide(a, l, 2, &c, true, &r), SG_STORE_OVER);
    assert_int_equal(r.limit, 1);
    assert_int_equal(sg_store_usage(g_st, a, l, 2, us), 0);
    assert_int_equal(us[0].used[SG_UNIT_MESSAGES], 3);
    assert_int_equal(us[1].used[SG_UNIT_MESSAGES], 3);
    /* reset forgets the counters */
    assert_int_equal(sg_store_reset(g_st, a), 0);
    assert_int_equal(sg_store_usage(g_st, a, l, 2, us), 0);
    assert_int_equal(us[0].used[SG_UNIT_MESSAGES], 0);
    assert_int_equal(decide(a, l, 2, &c, false, &r), SG_STORE_OK);
}

/* Many threads, one account: the cap holds exactly. */
struct capracer {
    const char *account;
    int ok;
};

static void *cap_race(void *arg)
{
    struct capracer *rc = arg;
    struct sg_limit l = lim("race", 3600000, 50, 0, 0, 0);
    struct sg_charge c = chg(1, 1, NULL, 0);
    struct sg_evidence ev = { .qid = "4RACE", .relay = RELAY };
    struct sg_store_result r;

    for (int i = 0; i < 20; i++)
        if (sg_store_decide(g_st, rc->account, &l, 1, &c, &ev, false, &r) == 0 &&
            r.status == SG_STORE_OK)
            rc->ok++;
    return NULL;
}

static void test_cap_race(void **state)
{
    pthread_t th[8];
    struct capracer rc[8];
    char a[128];
    int total = 0;

    (void)state;
    unique(a, sizeof(a), "caprace");
    for (int i = 0; i < 8; i++) {
        rc[i] = (struct capracer){ .account = a };
        assert_int_equal(pthread_create(&th[i], NULL, cap_race, &rc[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += rc[i].ok;
    }
    assert_int_equal(total, 50);
}

/* --- sliding windows: the property, with every cap kind binding ---------------- */

struct event {
    int64_t t;
    uint64_t rcpts, size;
    uint64_t h[12];
    size_t nh;
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* No closed window [t_j, t_j + T] of accepted events holds more than a cap
 * (the worst window starts at an accepted event). */
static void check_windows(const struct event *acc, size_t n, const struct sg_limit *l)
{
    size_t hi = 0;
    uint64_t sum[3] = { 0, 0, 0 };

    for (size_t lo = 0; lo < n; lo++) {
        while (hi < n && acc[hi].t <= acc[lo].t + (int64_t)l->window_ms) {
            sum[0] += 1;
            sum[1] += acc[hi].rcpts;
            sum[2] += acc[hi].size;
            hi++;
        }
        for (int u = 0; u < 3; u++)
            if (l->cap[u] && sum[u] > l->cap[u]) {
                fprintf(stderr, "limit %s unit %d: %" PRIu64 " > cap %" PRIu64
                        " in [%" PRId64 ", +%" PRIu64 "]\n", l->name, u, sum[u], l->cap[u],
                        acc[lo].t, l->window_ms);
                fail();
            }
        if (l->cap[SG_UNIT_DISTINCT]) {
            bool seen[1024] = { false };
            uint64_t d = 0;
            for (size_t k = lo; k < hi; k++)
                for (size_t x = 0; x < acc[k].nh; x++)
                    if (!seen[acc[k].h[x] % 1024]) {
                        seen[acc[k].h[x] % 1024] = true;
                        d++;
                    }
            assert_true(d <= l->cap[SG_UNIT_DISTINCT]);
        }
        sum[0] -= 1;
        sum[1] -= acc[lo].rcpts;
        sum[2] -= acc[lo].size;
    }
}

/* Traffic in phases, each pushing one kind of cap: many small messages,
 * many recipients (few distinct), big messages, many distinct recipients;
 * bursts and lulls. Windows whose T/60 is not whole. */
static void test_property_windows(void **state)
{
    struct sg_limit l[4] = {
        lim("p-msg", 60000, 20, 0, 0, 0),
        lim("p-rcpt", 59999, 0, 45, 0, 0),        /* w = 1000 */
        lim("p-bytes", 30017, 0, 0, 200000, 0),   /* w = 501 */
        lim("p-dist", 20011, 0, 0, 0, 15),        /* w = 334 */
    };
    const size_t N = 3000;
    struct event *acc = calloc(N * 2, sizeof(*acc));
    struct sg_store_result res;
    size_t nacc = 0, nover = 0, by_unit[SG_UNIT_COUNT] = { 0 };
    int64_t t = atomic_load(&g_now), t0 = t;
    int mode = 0;
    char a[128];

    (void)state;
    assert_non_null(acc);
    unique(a, sizeof(a), "property");
    for (size_t i = 0; i < N; i++) {
        struct event e = { 0 };
        struct sg_charge c;
        uint64_t r = rnd() % 10;

        if (i % 150 == 0)
            mode = (int)(rnd() % 4);
        t += r < 3 ? 0 : r < 9 ? (int64_t)(rnd() % 1500) : (int64_t)(rnd() % 20000);
        e.t = t;
        e.rcpts = mode == 1 ? 5 + rnd() % 6 : mode == 3 ? 1 + rnd() % 5 : 1;
        e.size = mode == 2 ? 20000 + rnd() % 40000 : 100 + rnd() % 900;
        for (uint64_t k = 0; k < e.rcpts && e.nh < 12; k++) {
            uint64_t h = mode == 3 ? 1 + rnd() % 300 : mode == 1 ? 1 + rnd() % 3 : 1;
            bool dup = false;
            for (size_t x = 0; x < e.nh; x++)
                dup = dup || e.h[x] == h;
            if (!dup)
                e.h[e.nh++] = h;
        }
        c = chg(e.rcpts, e.size, e.h, e.nh);
        atomic_store(&g_now, t);
        if (decide(a, l, 4, &c, false, &res) == SG_STORE_OK) {
            acc[nacc++] = e;
            continue;
        }
        assert_int_equal(res.status, SG_STORE_OVER);
        nover++;
        by_unit[res.unit]++;
        assert_true(res.retry_after_ms > 0);
        assert_true(res.retry_after_ms <= l[res.limit].window_ms + 1001);
        if (rnd() % 4 == 0) {
            /* at retry_after that limit lets it through (a later one may
             * refuse); Redis says exactly when: 1 ms earlier it refuses */
            size_t li = res.limit;
            enum sg_unit ui = res.unit;
            int64_t at = t + (int64_t)res.retry_after_ms;

            if (g_redis) {
                atomic_store(&g_now, at - 1);
                assert_int_equal(decide(a, l, 4, &c, false, &res), SG_STORE_OVER);
                assert_int_equal(res.limit, li);
                assert_int_equal(res.unit, ui);
            }
            atomic_store(&g_now, at);
            decide(a, l, 4, &c, false, &res);
            assert_true(res.status == SG_STORE_OK || res.limit > li ||
                        (res.limit == li && res.unit > ui));
            t = e.t = at;
            if (res.status == SG_STORE_OK)
                acc[nacc++] = e;
        }
    }
    fprintf(stderr, "property (%s%s): %zu accepted, %zu refused (messages %zu, recipients "
            "%zu, bytes %zu, distinct %zu), %" PRId64 " minutes\n", sg_store_name(g_st),
            g_implicit ? ", implicit" : "", nacc, nover, by_unit[0], by_unit[1], by_unit[2],
            by_unit[3], (t - t0) / 60000);
    for (int i = 0; i < 4; i++)
        check_windows(acc, nacc, &l[i]);
    /* every kind of cap did refuse: the property is tested on each */
    for (int u = 0; u < SG_UNIT_COUNT; u++)
        assert_true(by_unit[u] >= 10);
    /* and it does not just refuse */
    assert_true(nacc > N / 3);
    free(acc);
}

/* --- warn_at, lockdown, state ----------------------------------------------------- */

static void test_warn_once(void **state)
{
    struct sg_limit l = lim("warn", 1000, 10, 0, 0, 0);
    struct sg_charge c = chg(1, 10, NULL, 0);
    struct sg_store_result r;
    struct timespec pause = { 1, 200 * 1000 * 1000 };
    char a[128];
    int warns = 0;

    (void)state;
    l.warn_at = 0.5;
    unique(a, sizeof(a), "warn");
    for (int i = 0; i < 10; i++) {
        assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
        if (r.warn_mask != 0) {
            assert_int_equal(r.warn_mask, 1);
            assert_int_equal(i, 4);              /* the 5th of 10: warn_at 0.5 */
            warns++;
        }
    }
    assert_int_equal(warns, 1);
    /* a window later (the Redis marker expires in real time: wait it out
     * too; a slow machine only waits longer), it warns again */
    nanosleep(&pause, NULL);
    advance(1200);
    warns = 0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
        warns += r.warn_mask != 0;
    }
    assert_int_equal(warns, 1);
}

static void test_lockdown(void **state)
{
    struct sg_limit l = lim("ld", 60000, 100, 0, 0, 0);
    struct sg_charge c = chg(1, 10, NULL, 0);
    struct sg_store_result r;
    struct sg_account_state s = { .ticket = -1 }, got;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "lockdown");
    assert_int_equal(sg_store_state_get(g_st, a, &got), 0);
    assert_false(got.blocked);
    assert_int_equal(got.ticket, -1);
    assert_int_equal(got.version, 0);
    assert_string_equal(got.phase, "ok");
    assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    assert_false(r.lockdown);
    s.blocked = true;
    s.ticket = 42;
    s.since_ms = 1234;
    snprintf(s.phase, sizeof(s.phase), "blocked");
    snprintf(s.note, sizeof(s.note), "by hand");
    assert_int_equal(sg_store_state_set(g_st, a, &s), 0);
    assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    assert_true(r.lockdown);
    assert_int_equal(sg_store_state_get(g_st, a, &got), 0);
    assert_true(got.blocked);
    assert_int_equal(got.ticket, 42);
    assert_int_equal(got.since_ms, 1234);
    assert_string_equal(got.phase, "blocked");
    assert_string_equal(got.note, "by hand");
    s.blocked = false;
    assert_int_equal(sg_store_state_set(g_st, a, &s), 0);
    assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    assert_false(r.lockdown);
    /* counters reset, state kept */
    s.blocked = true;
    assert_int_equal(sg_store_state_set(g_st, a, &s), 0);
    assert_int_equal(sg_store_reset(g_st, a), 0);
    assert_int_equal(sg_store_state_get(g_st, a, &got), 0);
    assert_true(got.blocked);
}

static void test_state_cas(void **state)
{
    struct sg_account_state s = { .ticket = -1 }, cur;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "cas");
    snprintf(s.phase, sizeof(s.phase), "blocked");
    s.blocked = true;
    assert_int_equal(sg_store_state_cas(g_st, a, 1, &s, &cur), 0);   /* nothing stored */
    assert_int_equal(cur.version, 0);
    assert_false(cur.blocked);
    assert_int_equal(sg_store_state_cas(g_st, a, 0, &s, &cur), 1);
    assert_int_equal(cur.version, 1);
    assert_true(cur.blocked);
    assert_int_equal(sg_store_state_get(g_st, a, &cur), 0);
    assert_int_equal(cur.version, 1);
    assert_string_equal(cur.phase, "blocked");
    snprintf(s.phase, sizeof(s.phase), "replied");
    assert_int_equal(sg_store_state_cas(g_st, a, 0, &s, &cur), 0);   /* stale version */
    assert_int_equal(cur.version, 1);
    assert_string_equal(cur.phase, "blocked");                      /* the winner's */
    assert_int_equal(sg_store_state_cas(g_st, a, 1, &s, NULL), 1);
    assert_int_equal(sg_store_state_get(g_st, a, &cur), 0);
    assert_int_equal(cur.version, 2);
    assert_string_equal(cur.phase, "replied");
}

#define RACERS 4
#define RACE_N 25

struct racer {
    const char *account;
    uint64_t versions[RACE_N];
    int fails;
};

/* Increment a counter kept in the state's note, by compare and set. */
static void *race(void *arg)
{
    struct racer *rc = arg;

    for (int i = 0; i < RACE_N; i++) {
        for (;;) {
            struct sg_account_state cur, next;
            int r;

            if (sg_store_state_get(g_st, rc->account, &cur) != 0) {
                rc->fails++;
                break;
            }
            next = cur;
            snprintf(next.note, sizeof(next.note), "%llu",
                     strtoull(cur.note, NULL, 10) + 1);
            r = sg_store_state_cas(g_st, rc->account, cur.version, &next, &cur);
            if (r == 1) {
                rc->versions[i] = cur.version;
                break;
            }
            if (r < 0) {
                rc->fails++;
                break;
            }
        }
    }
    return NULL;
}

static void test_state_cas_race(void **state)
{
    static struct racer rs[RACERS];
    pthread_t th[RACERS];
    struct sg_account_state cur;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "race");
    for (int i = 0; i < RACERS; i++) {
        rs[i] = (struct racer){ .account = a };
        assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(sg_store_state_get(g_st, a, &cur), 0);
    /* no lost update: every increment is there, one version each */
    assert_int_equal(strtoull(cur.note, NULL, 10), RACERS * RACE_N);
    assert_int_equal(cur.version, RACERS * RACE_N);
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(rs[i].fails, 0);
        for (int k = 1; k < RACE_N; k++)
            assert_true(rs[i].versions[k] > rs[i].versions[k - 1]);
    }
    {
        bool seen[RACERS * RACE_N + 1] = { false };  /* and no version twice */
        for (int i = 0; i < RACERS; i++)
            for (int k = 0; k < RACE_N; k++) {
                uint64_t v = rs[i].versions[k];
                assert_true(v >= 1 && v <= RACERS * RACE_N);
                assert_false(seen[v]);
                seen[v] = true;
            }
    }
}

/* --- held queue ids ---------------------------------------------------------------- */

static void test_held(void **state)
{
    const char *del[] = { "4ABC1" };
    char **q, a[128];
    size_t n;

    (void)state;
    unique(a, sizeof(a), "held");
    assert_int_equal(sg_store_held_add(g_st, a, RELAY, "4ABC1"), 0);
    assert_int_equal(sg_store_held_add(g_st, a, RELAY, "4ABC2"), 0);
    assert_int_equal(sg_store_held_add(g_st, a, RELAY, "4ABC1"), 0);   /* once */
    assert_int_equal(sg_store_held_add(g_st, a, RELAY, ""), -1);
    assert_int_equal(sg_store_held_list(g_st, a, RELAY, &q, &n), 0);
    assert_int_equal(n, 2);
    sg_store_strv_free(q, n);
    assert_int_equal(sg_store_held_del(g_st, a, RELAY, del, 1), 0);
    assert_int_equal(sg_store_held_list(g_st, a, RELAY, &q, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(q[0], "4ABC2");
    sg_store_strv_free(q, n);
    assert_int_equal(sg_store_held_list(g_st, "nobody@example.com", RELAY, &q, &n), 0);
    assert_int_equal(n, 0);
}

static long long evalsha_calls(redisContext *c)
{
    redisReply *rep = redisCommand(c, "INFO commandstats");
    const char *p;
    long long n = 0;

    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    if ((p = strstr(rep->str, "cmdstat_evalsha:calls=")) != NULL)
        n = atoll(p + 22);
    freeReplyObject(rep);
    return n;
}

/* The commands clients sent (not those a script ran: commandstats counts
 * both), as MONITOR shows them, from now until the marker: the store's
 * round trips. INFO (the store's eviction watch, once a minute) is not
 * per message and not counted. */
static redisContext *monitor_start(void)
{
    redisContext *m = admin();
    redisReply *rep;

    assert_non_null(m);
    rep = redisCommand(m, "MONITOR");
    assert_non_null(rep);
    freeReplyObject(rep);
    return m;
}

static int monitor_count(redisContext *m, char *first, size_t firstlen)
{
    redisContext *adm = admin();
    redisReply *rep;
    int n = 0;

    first[0] = '\0';
    assert_non_null(adm);
    rep = redisCommand(adm, "ECHO sg-conformance-marker");
    freeReplyObject(rep);
    redisFree(adm);
    for (;;) {
        void *p = NULL;
        const char *line;

        assert_int_equal(redisGetReply(m, &p), REDIS_OK);
        rep = p;
        assert_int_equal(rep->type, REDIS_REPLY_STATUS);
        line = rep->str;
        if (strstr(line, "\"sg-conformance-marker\"") != NULL) {
            freeReplyObject(rep);
            break;
        }
        if (strstr(line, " lua] ") == NULL && strstr(line, "] \"INFO\"") == NULL &&
            strstr(line, "] \"info\"") == NULL) {
            if (n++ == 0)
                snprintf(first, firstlen, "%s", strchr(line, ']') ? strchr(line, ']') : line);
            else
                fprintf(stderr, "another round trip: %s\n", line);
        }
        freeReplyObject(rep);
    }
    redisFree(m);
    return n;
}

/* A message held on lockdown records its queue id in the decision itself:
 * for Redis one round trip (commandstats: one EVALSHA, nothing else). */
static void test_held_on_decide(void **state)
{
    struct sg_limit l = lim("hd", 60000, 100, 0, 0, 0);
    struct sg_charge c = chg(1, 10, NULL, 0);
    struct sg_account_state s = { .ticket = -1, .blocked = true };
    struct sg_evidence ev = { .qid = "4HELD1", .relay = RELAY, .hold_on_lockdown = true };
    struct sg_store_result r;
    redisContext *adm = NULL, *mon = NULL;
    long long e0 = 0;
    char **q, a[128], first[64];
    size_t n;

    (void)state;
    unique(a, sizeof(a), "heldondecide");
    /* not locked down: nothing recorded */
    assert_int_equal(sg_store_decide(g_st, a, &l, 1, &c, &ev, false, &r), 0);
    assert_false(r.lockdown);
    assert_false(r.held);
    assert_int_equal(sg_store_held_list(g_st, a, RELAY, &q, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sg_store_state_set(g_st, a, &s), 0);
    /* locked down but not to be held (on_block is not hold): nothing */
    ev.hold_on_lockdown = false;
    assert_int_equal(sg_store_decide(g_st, a, &l, 1, &c, &ev, false, &r), 0);
    assert_true(r.lockdown);
    assert_false(r.held);
    ev.hold_on_lockdown = true;
    if (g_redis) {
        assert_non_null(adm = admin());
        e0 = evalsha_calls(adm);
        mon = monitor_start();
    }
    assert_int_equal(sg_store_decide(g_st, a, &l, 1, &c, &ev, false, &r), 0);
    if (g_redis) {
        /* one round trip: the EVALSHA, nothing before or after it */
        assert_int_equal(monitor_count(mon, first, sizeof(first)), 1);
        assert_non_null(strstr(first, "\"EVALSHA\""));
        assert_int_equal(evalsha_calls(adm), e0 + 1);
        redisFree(adm);
    }
    assert_true(r.lockdown);
    assert_true(r.held);
    /* over a cap too: still held (the lockdown decides) */
    ev.qid = "4HELD2";
    l.cap[SG_UNIT_MESSAGES] = 1;
    assert_int_equal(sg_store_decide(g_st, a, &l, 1, &c, &ev, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OVER);
    assert_true(r.held);
    assert_int_equal(sg_store_held_list(g_st, a, RELAY, &q, &n), 0);
    assert_int_equal(n, 2);
    assert_true((strcmp(q[0], "4HELD1") == 0 && strcmp(q[1], "4HELD2") == 0) ||
                (strcmp(q[1], "4HELD1") == 0 && strcmp(q[0], "4HELD2") == 0));
    sg_store_strv_free(q, n);
}

/* --- evidence, locks ---------------------------------------------------------------- */

static void test_evidence(void **state)
{
    struct sg_limit l = lim("ev", 3600000, 3, 0, 0, 0);
    const char *d1[] = { "a.example", "b.example" }, *d2[] = { "a.example" };
    struct sg_evidence ev[4] = {
        { .qid = "Q1", .client_ip = "192.0.2.1", .identity = "jdoe", .mailer = "Thunderbird",
          .msgid = "<1@x>", .rcpt_domains = d1, .nrcpt_domains = 2 },
        { .qid = "Q2", .client_ip = "192.0.2.1", .identity = "jdoe", .mailer = "Thunderbird",
          .msgid = "<2\\@x>", .rcpt_domains = d2, .nrcpt_domains = 1, .relay = "mx/1" },
        { .qid = "Q3", .client_ip = "192.0.2.2", .identity = "bad\xff\x01id",
          .mailer = "PHPMailer \"6\"", .msgid = "<3@x>", .rcpt_domains = d2,
          .nrcpt_domains = 1, .from_mismatch = true, .from_header_domain = "evil.example" },
        { .qid = "Q4", .client_ip = "192.0.2.2", .identity = "jdoe", .mailer = NULL,
          .msgid = "<4@x>", .rcpt_domains = d2, .nrcpt_domains = 1 },
    };
    struct sg_charge c = chg(2, 100, NULL, 0);
    struct sg_store_result res;
    struct sg_evidence_report rep;
    uint64_t msgs = 0, rcpts = 0, refused = 0;
    int64_t t = atomic_load(&g_now);
    char a[128];

    (void)state;
    if (g_implicit)
        return;                   /* implicit identities keep no evidence */
    unique(a, sizeof(a), "evidence");
    for (int i = 0; i < 4; i++)
        assert_int_equal(sg_store_decide(g_st, a, &l, 1, &c, &ev[i], false, &res), 0);
    assert_int_equal(res.status, SG_STORE_OVER);
    assert_int_equal(sg_store_evidence_get(g_st, a, &rep), 0);
    if (!sg_store_records_evidence(g_st)) {      /* memory: an empty report */
        assert_int_equal(rep.last_seen_ms, -1);
        assert_int_equal(rep.nips + rep.nmailers + rep.ndomains + rep.nrecent + rep.nhours +
                         rep.nmismatches + rep.from_mismatch, 0);
        sg_evidence_report_free(&rep);
        return;
    }
    assert_int_equal(rep.last_seen_ms, t);
    assert_int_equal(rep.nips, 2);
    for (size_t i = 0; i < rep.nips; i++) {
        assert_int_equal(rep.ips[i].count, 2);
        assert_int_equal(rep.ips[i].first_seen_ms, t);
    }
    assert_int_equal(rep.nmailers, 3);           /* Thunderbird, PHPMailer, (none) */
    for (size_t i = 0; i < rep.nmailers; i++)
        if (strcmp(rep.mailers[i].value, "Thunderbird") == 0)
            assert_int_equal(rep.mailers[i].count, 2);
        else
            assert_true(strcmp(rep.mailers[i].value, "PHPMailer \"6\"") == 0 ||
                        strcmp(rep.mailers[i].value, "(none)") == 0);
    assert_int_equal(rep.ndomains, 2);
    for (size_t i = 0; i < rep.ndomains; i++) {
        assert_int_equal(rep.domains[i].count,
                         strcmp(rep.domains[i].value, "a.example") == 0 ? 4 : 1);
        assert_int_equal(rep.domains[i].first_seen_ms, -1);
    }
    assert_int_equal(rep.from_mismatch, 1);
    assert_int_equal(rep.nmismatches, 1);
    assert_string_equal(rep.mismatches[0].from_domain, "evil.example");
    assert_string_equal(rep.mismatches[0].identity, "bad??id");
    assert_int_equal(rep.nrecent, 4);
    assert_string_equal(rep.recent[0].qid, "Q4");            /* newest first */
    assert_int_equal(rep.recent[0].action, SG_EV_OVER);
    assert_false(rep.recent[0].charged);
    assert_string_equal(rep.recent[0].mailer, "(none)");
    assert_string_equal(rep.recent[0].relay, "");
    assert_int_equal(rep.recent[0].rcpts, 2);
    assert_int_equal(rep.recent[0].size, 100);
    assert_int_equal(rep.recent[0].t_ms, t);
    assert_string_equal(rep.recent[1].identity, "bad??id");
    assert_string_equal(rep.recent[1].mailer, "PHPMailer \"6\"");
    assert_int_equal(rep.recent[1].action, SG_EV_OK);
    assert_true(rep.recent[1].charged);
    assert_string_equal(rep.recent[2].msgid, "<2\\@x>");
    assert_string_equal(rep.recent[2].relay, "mx/1");
    assert_true(rep.nhours >= 1);
    for (size_t i = 0; i < rep.nhours; i++) {
        assert_int_equal(rep.hours[i].hour, t / 3600000);
        msgs += rep.hours[i].messages;
        rcpts += rep.hours[i].recipients;
        refused += rep.hours[i].refused;
    }
    assert_int_equal(msgs, 3);
    assert_int_equal(rcpts, 6);
    assert_int_equal(refused, 1);
    sg_evidence_report_free(&rep);
    /* an account never seen: empty */
    assert_int_equal(sg_store_evidence_get(g_st, "nobody@example.com", &rep), 0);
    assert_int_equal(rep.last_seen_ms, -1);
    assert_int_equal(rep.nrecent + rep.nips, 0);
    sg_evidence_report_free(&rep);
}

static void test_lock(void **state)
{
    char name[128];

    (void)state;
    unique(name, sizeof(name), "lock");
    assert_int_equal(sg_store_lock(g_st, name, "r1", 60000), 1);
    assert_int_equal(sg_store_lock(g_st, name, "r2", 60000), 0);
    assert_int_equal(sg_store_lock(g_st, name, "r1", 60000), 1);        /* renewed */
    assert_int_equal(sg_store_lock(g_st, name, "r2", 0), 0);            /* not r2's */
    assert_int_equal(sg_store_lock(g_st, name, "r1", 0), 1);            /* released */
    assert_int_equal(sg_store_lock(g_st, name, "r2", 60000), 1);
    assert_int_equal(sg_store_lock(g_st, name, "", 60000), -1);
    assert_int_equal(sg_store_lock(g_st, name, "r2", 0), 1);
}

/* The tests that charge, run again as implicit identities. */
static int implicit_on(void **state)
{
    (void)state;
    g_implicit = true;
    return 0;
}

static int implicit_off(void **state)
{
    (void)state;
    g_implicit = false;
    return 0;
}

#define BOTH(t) cmocka_unit_test(t), \
    cmocka_unit_test_setup_teardown(t, implicit_on, implicit_off)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_decide_ok),
        BOTH(test_cap_messages),
        BOTH(test_cap_recipients),
        BOTH(test_cap_bytes),
        BOTH(test_cap_distinct),
        BOTH(test_distinct_repeat),
        BOTH(test_all_or_nothing),
        BOTH(test_cap_race),
        BOTH(test_property_windows),
        BOTH(test_warn_once),
        BOTH(test_lockdown),
        BOTH(test_held_on_decide),
        cmocka_unit_test(test_state_cas),
        cmocka_unit_test(test_state_cas_race),
        cmocka_unit_test(test_held),
        cmocka_unit_test(test_evidence),
        cmocka_unit_test(test_lock),
    };

    if (argc != 2 || (strcmp(argv[1], "memory") != 0 && strcmp(argv[1], "redis") != 0)) {
        fprintf(stderr, "usage: %s memory|redis\n", argv[0]);
        return 64;
    }
    g_redis = strcmp(argv[1], "redis") == 0;
    cmocka_set_message_output(CM_OUTPUT_STDOUT);
    return cmocka_run_group_tests_name(argv[1], tests, group_setup, group_teardown);
}
