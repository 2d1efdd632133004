/*
 * store_conformance_trace.c - the trace index (issue 18) through sg_store_t:
 * what decide records in its own round trip, the lookups by Message-ID,
 * by (relay, queue id) and by hour, the 7-day trimming and the bound, with
 * the test clock. The memory store records nothing: every lookup says so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg_store.h"
#include "store_conformance.h"

#define DAY_MS (24LL * 3600 * 1000)

static void send_one(sg_store_t *st, const char *acct, const char *qid, const char *ip,
                     const char *login, const char *msgid, const char *relay)
{
    struct sg_limit l = lim("tr", 3600000, 1000000, 0, 0, 0);
    struct sg_charge c = chg(3, 1234, NULL, 0);
    struct sg_evidence ev = { .qid = qid, .client_ip = ip, .identity = login,
                              .mailer = "Thunderbird\t115", .msgid = msgid, .relay = relay };
    struct sg_store_result res;

    c.implicit = false;
    assert_int_equal(sg_store_decide(st, acct, &l, 1, &c, &ev, false, &res), 0);
    assert_int_equal(res.status, SG_STORE_OK);
}

static int64_t hour_start(int64_t t)
{
    return t - t % 3600000;
}

/* The TTL of an account's trace key, ms (-2 missing). */
static long long key_pttl(const char *acct, const char *sfx)
{
    redisContext *c = admin();
    long long v = -3;

    assert_non_null(c);
    {
        /* the meta hash holds the name: find ours */
        redisReply *keys = redisCommand(c, "KEYS sgc:{*}:meta");
        for (size_t i = 0; keys && i < keys->elements; i++) {
            redisReply *n = redisCommand(c, "HGET %s name", keys->element[i]->str);
            if (n && n->type == REDIS_REPLY_STRING && strcmp(n->str, acct) == 0) {
                char k[256];
                size_t pl = strlen(keys->element[i]->str) - strlen("meta");
                snprintf(k, sizeof(k), "%.*s%s", (int)pl, keys->element[i]->str, sfx);
                redisReply *t = redisCommand(c, "PTTL %s", k);
                v = t ? t->integer : -3;
                if (t)
                    freeReplyObject(t);
            }
            if (n)
                freeReplyObject(n);
        }
        if (keys)
            freeReplyObject(keys);
    }
    redisFree(c);
    return v;
}

void test_trace_index(void **state)
{
    struct sg_ev_msg m, *v = NULL;
    size_t n = 0;
    int64_t oldest, t0;
    char a[128];

    (void)state;
    unique(a, sizeof(a), "trace");
    t0 = atomic_load(&g_now);
    advance(3600000 - t0 % 3600000 + 60000);      /* 1 min into an hour */
    t0 = atomic_load(&g_now);
    send_one(g_st, a, "4QID1", "192.0.2.10", "jdoe", "<abc.1@mail.example>", "mx1");
    advance(1000);
    send_one(g_st, a, "4QID2", "192.0.2.10", "other", "<abc.2@mail.example>", "mx1");
    advance(1000);
    send_one(g_st, a, "4QID3", "198.51.100.7", "jdoe", "<abc.3@mail.example>", "mx2");
    advance(1000);
    send_one(g_st, a, "4QID4", "203.0.113.9", "nobody", "<abc.4@mail.example>", "mx1");
    advance(3600000);                             /* the next hour */
    send_one(g_st, a, "4QID5", "192.0.2.10", "jdoe", "<abc.5@mail.example>", "mx1");

    if (!sg_store_records_evidence(g_st)) {       /* memory: nothing recorded */
        assert_int_equal(sg_store_trace_by_msgid(g_st, a, "<abc.1@mail.example>", &m), 0);
        assert_int_equal(sg_store_trace_by_qid(g_st, a, "mx1", "4QID1", &m), 0);
        assert_int_equal(sg_store_trace_oldest(g_st, a, &oldest), 0);
        assert_int_equal(oldest, -1);
        m.t_ms = t0;
        assert_int_equal(sg_store_trace_same_hour(g_st, a, &m, &v, &n), 0);
        assert_int_equal(n, 0);
        assert_null(v);
        return;
    }
    /* by Message-ID: the header's form, folded spaces and all */
    assert_int_equal(sg_store_trace_by_msgid(g_st, a, " < abc.1@mail.example >", &m), 1);
    assert_string_equal(m.qid, "4QID1");
    assert_string_equal(m.ip, "192.0.2.10");
    assert_string_equal(m.identity, "jdoe");
    assert_string_equal(m.relay, "mx1");
    assert_string_equal(m.msgid, "<abc.1@mail.example>");
    assert_string_equal(m.mailer, "Thunderbird?115");       /* the tab cleaned */
    assert_int_equal(m.t_ms, t0);
    assert_int_equal(m.rcpts, 3);
    assert_int_equal(m.size, 1234);
    assert_int_equal(m.action, SG_EV_OK);
    sg_ev_msg_clear(&m);
    assert_int_equal(sg_store_trace_by_msgid(g_st, a, "abc.1@mail.example", &m), 1);
    sg_ev_msg_clear(&m);
    assert_int_equal(sg_store_trace_by_msgid(g_st, a, "<nope@mail.example>", &m), 0);
    assert_int_equal(sg_store_trace_by_msgid(g_st, a, "", &m), 0);
    /* by relay and queue id: the relay matters */
    assert_int_equal(sg_store_trace_by_qid(g_st, a, "mx2", "4QID3", &m), 1);
    assert_string_equal(m.ip, "198.51.100.7");
    sg_ev_msg_clear(&m);
    assert_int_equal(sg_store_trace_by_qid(g_st, a, "mx1", "4QID3", &m), 0);
    assert_int_equal(sg_store_trace_by_qid(g_st, "someone-else@example.com", "mx2", "4QID3",
                                           &m), 0);
    /* where the record starts */
    assert_int_equal(sg_store_trace_oldest(g_st, a, &oldest), 0);
    assert_int_equal(oldest, t0);
    /* the same hour: same IP (4QID2) or same login (4QID3), not itself,
     * not another client (4QID4), not the next hour (4QID5) */
    assert_int_equal(sg_store_trace_by_qid(g_st, a, "mx1", "4QID1", &m), 1);
    assert_int_equal(sg_store_trace_same_hour(g_st, a, &m, &v, &n), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        assert_true(strcmp(v[i].qid, "4QID2") == 0 || strcmp(v[i].qid, "4QID3") == 0);
    assert_int_equal(hour_start(v[0].t_ms), hour_start(t0));
    sg_ev_msgv_free(v, n);
    sg_ev_msg_clear(&m);
    /* every key expires: 7 days + 1 h at most */
    assert_true(key_pttl(a, "ev:msg") > 7 * DAY_MS);
    assert_true(key_pttl(a, "ev:msg") <= 7 * DAY_MS + 3600000);
    assert_true(key_pttl(a, "ev:mid") > 0);
    assert_true(key_pttl(a, "ev:t") > 0);
}

void test_trace_trim(void **state)
{
    struct sg_ev_msg m;
    sg_store_t *st;
    int64_t oldest, t0;
    char a[128], qid[32], mid[64];

    (void)state;
    if (!sg_store_records_evidence(g_st))
        return;                   /* nothing recorded: nothing to trim (test_trace_index) */
    /* 7 days: entries older than that go, a few per message */
    unique(a, sizeof(a), "trim");
    t0 = atomic_load(&g_now);
    send_one(g_st, a, "4OLD1", "192.0.2.1", "jdoe", "<old1@x>", "mx1");
    send_one(g_st, a, "4OLD2", "192.0.2.1", "jdoe", "<old2@x>", "mx1");
    advance(7 * DAY_MS + 1000);
    send_one(g_st, a, "4NEW1", "192.0.2.1", "jdoe", "<new1@x>", "mx1");
    assert_int_equal(sg_store_trace_by_qid(g_st, a, "mx1", "4OLD1", &m), 0);
    assert_int_equal(sg_store_trace_by_msgid(g_st, a, "<old2@x>", &m), 0);
    assert_int_equal(sg_store_trace_by_msgid(g_st, a, "<new1@x>", &m), 1);
    sg_ev_msg_clear(&m);
    assert_int_equal(sg_store_trace_oldest(g_st, a, &oldest), 0);
    assert_true(oldest > t0 + 7 * DAY_MS);

    /* the bound: the oldest go first */
    st = redis_store_bounded(5);
    assert_non_null(st);
    unique(a, sizeof(a), "bound");
    t0 = atomic_load(&g_now);
    for (int i = 0; i < 9; i++) {
        snprintf(qid, sizeof(qid), "4B%d", i);
        snprintf(mid, sizeof(mid), "<b%d@x>", i);
        send_one(st, a, qid, "192.0.2.1", "jdoe", mid, "mx1");
        advance(10);
    }
    for (int i = 0; i < 9; i++) {
        snprintf(qid, sizeof(qid), "4B%d", i);
        snprintf(mid, sizeof(mid), "<b%d@x>", i);
        assert_int_equal(sg_store_trace_by_qid(st, a, "mx1", qid, &m), i >= 4);
        sg_ev_msg_clear(&m);
        assert_int_equal(sg_store_trace_by_msgid(st, a, mid, &m), i >= 4);
        sg_ev_msg_clear(&m);
    }
    assert_int_equal(sg_store_trace_oldest(st, a, &oldest), 0);
    assert_int_equal(oldest, t0 + 40);
    sg_store_free(st);
}
