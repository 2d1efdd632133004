/*
 * test_store_redis - what only the Redis store backend has (pool, script
 * loading, key layout and expiry, one round trip per decision, a Unix
 * socket with AUTH and a database; the store contract itself is
 * tests/store; outage, stall and Sentinel are test_store_redis_failover),
 * against real redis-server
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
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
