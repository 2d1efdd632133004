/*
 * test_store_conformance - one store contract, both backends: every store
 * operation (decide, each cap kind, all-or-nothing, charge_refused,
 * sliding windows, warn_at, lockdown, held queue ids, state transitions,
 * evidence, the trace index, implicit identities, locks) through sg_store_t only, the
 * dispatch the daemon uses. This file: the server, the decisions and the
 * windows; store_conformance_state.c: state, held ids, evidence, locks;
 * store_conformance_trace.c: the trace index.
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
#include "store_conformance.h"

bool g_redis;              /* the backend under test */
sg_store_t *g_st;
_Atomic int64_t g_now;     /* the test clock, ms */
bool g_implicit;           /* the tests again, as implicit identities */
const char *const RELAY = "relay-1";

static uint64_t test_clock(void *ctx)
{
    (void)ctx;
    return (uint64_t)atomic_load(&g_now);
}

/* --- a throwaway redis-server --------------------------------------------- */

static char g_tmp[128];
static pid_t g_pid;
static int g_port;

redisContext *admin(void)
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

/* Another Redis store on the test's server, with its own trace bound. */
sg_store_t *redis_store_bounded(int trace_max)
{
    char err[256] = "";
    struct sg_redis_settings rs = {
        .host = "127.0.0.1", .port = g_port, .prefix = "sgc:", .connect_timeout_ms = 2000,
        .command_timeout_ms = 5000, .pool_size = 2, .trace_max = trace_max,
    };
    sg_store_t *st = sg_store_redis_new(&rs, test_clock, NULL, err, sizeof(err));

    if (st == NULL)
        fprintf(stderr, "store: %s\n", err);
    return st;
}

void unique(char *buf, size_t n, const char *what)
{
    static int seq;
    snprintf(buf, n, "%s-%d-%d@example.com", what, (int)getpid(), ++seq);
}

void advance(int64_t ms)
{
    atomic_fetch_add(&g_now, ms);
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
    struct sg_charge c = { .rcpt_hashes = hashes, .nrcpt_hashes = nhashes,
                           .implicit = g_implicit };
    c.units[SG_UNIT_MESSAGES] = 1;
    c.units[SG_UNIT_RECIPIENTS] = rcpts;
    c.units[SG_UNIT_BYTES] = bytes;
    return c;
}

enum sg_store_status decide(const char *acct, const struct sg_limit *l, size_t nl,
                                   const struct sg_charge *c, bool charge_refused,
                                   struct sg_store_result *res)
{
    struct sg_evidence ev = { .qid = "4ABC123", .client_ip = "192.0.2.1", .identity = acct,
                              .relay = RELAY };

    assert_int_equal(sg_store_decide(g_st, acct, l, nl, c, &ev, charge_refused, res), 0);
    return res->status;
}

uint64_t used(const char *acct, const struct sg_limit *l, enum sg_unit u)
{
    struct sg_usage us;

    assert_int_equal(sg_store_usage(g_st, acct, l, 1, &us), 0);
    return us.used[u];
}

/* Write an account's state the only way there is: a compare-and-set on
 * the version just read. */
void put_state(const char *acct, const struct sg_account_state *s)
{
    struct sg_account_state cur;

    assert_int_equal(sg_store_state_get(g_st, acct, &cur), 0);
    assert_int_equal(sg_store_state_cas(g_st, acct, cur.version, s, NULL), 1);
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
        cmocka_unit_test(test_trace_index),
        cmocka_unit_test(test_trace_trim),
    };

    if (argc != 2 || (strcmp(argv[1], "memory") != 0 && strcmp(argv[1], "redis") != 0)) {
        fprintf(stderr, "usage: %s memory|redis\n", argv[0]);
        return 64;
    }
    g_redis = strcmp(argv[1], "redis") == 0;
    cmocka_set_message_output(CM_OUTPUT_STDOUT);
    return cmocka_run_group_tests_name(argv[1], tests, group_setup, group_teardown);
}
