/*
 * store_conformance_state.c - the store contract, continued: account
 * state (lockdown, compare-and-set, a race of threads), held queue ids
 * (also recorded by the decision itself), the evidence report and locks.
 * Run by test_store_conformance.c on both backends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_conformance.h"

void test_lockdown(void **state)
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
    put_state(a, &s);
    assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    assert_true(r.lockdown);
    assert_int_equal(sg_store_state_get(g_st, a, &got), 0);
    assert_true(got.blocked);
    assert_int_equal(got.ticket, 42);
    assert_int_equal(got.since_ms, 1234);
    assert_string_equal(got.phase, "blocked");
    assert_string_equal(got.note, "by hand");
    s.blocked = false;
    put_state(a, &s);
    assert_int_equal(decide(a, &l, 1, &c, false, &r), SG_STORE_OK);
    assert_false(r.lockdown);
    /* counters reset, state kept */
    s.blocked = true;
    put_state(a, &s);
    assert_int_equal(sg_store_reset(g_st, a), 0);
    assert_int_equal(sg_store_state_get(g_st, a, &got), 0);
    assert_true(got.blocked);
}

void test_state_cas(void **state)
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

void test_state_cas_race(void **state)
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

void test_held(void **state)
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
void test_held_on_decide(void **state)
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
    put_state(a, &s);
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

void test_evidence(void **state)
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

void test_lock(void **state)
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
