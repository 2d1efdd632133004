/*
 * test_store_redis_failover - the Redis store when Redis fails: an outage
 * and its return (breaker, reconnect), a stalled server, a Sentinel
 * failover to the replica, against real redis-server and redis-sentinel
 * processes started here, on free 127.0.0.1 ports, in a temporary
 * directory. Nothing else is touched; a server that cannot start fails
 * the test (group setup), it is never skipped. The servers and helpers are
 * redis_harness.c's.
 *
 * SG_REDIS_SERVER / SG_REDIS_SENTINEL name the binaries (ctest sets them;
 * default /usr/bin/redis-server, /usr/bin/redis-sentinel).
 * Must not: touch a Redis it did not start, or pass a test it did not run.
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

/* --- tests ------------------------------------------------------------------- */


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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outage_and_return),
        cmocka_unit_test(test_stall),
        cmocka_unit_test(test_sentinel_failover),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
