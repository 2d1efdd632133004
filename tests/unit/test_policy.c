/*
 * test_policy.c - the decision for whole messages, from a real config
 * file through sg_policy_decide, with an injected clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sg_policy.h"

static uint64_t fake_now = 1700000000000ULL;
static uint64_t fake_clock(void *ctx) { (void)ctx; return fake_now; }

static const char *CONF_TEXT =
    "milter = { socket = \"inet:8890@127.0.0.1\"; };\n"
    "store = { backend = \"memory\"; };\n"
    "allow = [ \"monitor@example.com\" ];\n"
    "limits = ( { name = \"hourly\"; window = \"1h\"; messages = 3; recipients = 10;"
    " action = \"tempfail\"; } );\n"
    "accounts = (\n"
    "  { address = \"sales@example.com\"; offer = \"mxplan-legacy\";"
    " senders = [ \"*@sales.example.com\", \"jdoe\" ];\n"
    "    limits = ( { name = \"burst\"; window = \"10m\"; messages = 2; action = \"hold\"; } ); },\n"
    "  { address = \"boss@example.com\"; offer = \"exchange\"; organization = \"org\";"
    " service = \"ex\"; on_block = \"tempfail\";\n"
    "    limits = ( { name = \"strict\"; window = \"1h\"; messages = 1; action = \"reject\"; } ); },\n"
    "  { address = \"news@example.com\"; offer = \"emailpro\"; service = \"pro\";\n"
    "    limits = ( { name = \"soft\"; window = \"1h\"; messages = 1; action = \"warn\"; } ); },\n"
    "  { address = \"trial@example.com\"; offer = \"emailpro\"; service = \"pro\"; mode = \"observe\";\n"
    "    limits = ( { name = \"trial\"; window = \"1h\"; messages = 2; action = \"tempfail\"; } ); }\n"
    ");\n";

static sg_conf_t *conf;
static sg_store_t *st;

static int setup(void **state)
{
    char path[] = "/tmp/sg-policy-XXXXXX";
    int fd = mkstemp(path);

    (void)state;
    if (fd < 0 || write(fd, CONF_TEXT, strlen(CONF_TEXT)) != (ssize_t)strlen(CONF_TEXT))
        return -1;
    close(fd);
    conf = sg_conf_load(path, NULL, NULL);
    unlink(path);
    st = sg_store_memory_new(fake_clock, NULL);
    return conf && st ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sg_store_free(st);
    sg_conf_unref(conf);
    return 0;
}

static void decide(const char *auth, const char *from, size_t nrcpts, struct sg_verdict *v)
{
    static const char *rcpts[600];
    struct sg_request req = { 0 };

    for (size_t i = 0; i < nrcpts; i++)
        rcpts[i] = "<someone@dest.example>";
    req.auth_authen = auth;
    req.envfrom = from;
    req.rcpts = rcpts;
    req.nrcpts = nrcpts;
    req.client_ip = "192.0.2.1";
    sg_policy_decide(conf, st, NULL, &req, v);
}

static void test_default_limits_tempfail(void **state)
{
    struct sg_verdict v;

    (void)state;
    for (int i = 0; i < 3; i++) {
        decide(NULL, "<Stranger@Else.ORG>", 1, &v);
        assert_int_equal(v.action, SG_ACT_ACCEPT);
        assert_string_equal(v.account, "stranger@else.org");   /* implicit account */
        assert_null(v.acct);
    }
    decide(NULL, "<stranger@else.org>", 1, &v);
    assert_int_equal(v.action, SG_ACT_TEMPFAIL);
    assert_string_equal(v.smtp_code, "451");
    assert_string_equal(v.smtp_xcode, "4.7.1");
    assert_non_null(strstr(v.reason, "hourly"));
    assert_non_null(strstr(v.reason, "try again in"));
    assert_string_equal(v.limit->name, "hourly");
    assert_int_equal(v.used, 3);
    assert_int_equal(v.cap, 3);
    /* Another sender has its own budget. */
    decide(NULL, "<other@else.org>", 1, &v);
    assert_int_equal(v.action, SG_ACT_ACCEPT);
}

static void test_account_hold_and_identity(void **state)
{
    struct sg_verdict v;

    (void)state;
    decide("JDoe", "<anything@elsewhere.com>", 1, &v);       /* SASL login wins */
    assert_string_equal(v.identity, "jdoe");
    assert_string_equal(v.account, "sales@example.com");
    assert_int_equal(v.action, SG_ACT_ACCEPT);
    decide(NULL, "<printer@sales.example.com>", 1, &v);       /* same account, same budget */
    assert_int_equal(v.action, SG_ACT_ACCEPT);
    decide(NULL, "<sales@example.com>", 1, &v);               /* own address is a sender */
    assert_int_equal(v.action, SG_ACT_HOLD);
    assert_non_null(strstr(v.reason, "burst"));
    assert_string_equal(v.smtp_code, "");
}

static void test_reject_and_too_big(void **state)
{
    struct sg_verdict v;

    (void)state;
    decide(NULL, "<boss@example.com>", 1, &v);
    assert_int_equal(v.action, SG_ACT_ACCEPT);
    decide(NULL, "<boss@example.com>", 1, &v);
    assert_int_equal(v.action, SG_ACT_REJECT);
    assert_string_equal(v.smtp_code, "550");
    assert_string_equal(v.smtp_xcode, "5.7.1");
    /* 11 recipients can never fit a cap of 10: rejected now rather than retried for days. */
    decide(NULL, "<big@else.org>", 11, &v);
    assert_int_equal(v.action, SG_ACT_REJECT);
    assert_true(v.too_big);
    assert_non_null(strstr(v.reason, "alone exceeds"));
}

static void test_warn_and_allow(void **state)
{
    struct sg_verdict v;

    (void)state;
    decide(NULL, "<news@example.com>", 1, &v);
    decide(NULL, "<news@example.com>", 1, &v);
    assert_int_equal(v.action, SG_ACT_ACCEPT);                /* warn: let through, logged */
    assert_true(v.warned);
    for (int i = 0; i < 5; i++) {
        decide(NULL, "<monitor@example.com>", 1, &v);
        assert_int_equal(v.action, SG_ACT_ACCEPT);
        assert_true(v.allowed);
    }
    assert_true(v.warned);                                    /* over the cap, still allowed */
}

static void put_state(const char *acct, const struct sg_account_state *s)
{
    struct sg_account_state cur;

    assert_int_equal(sg_store_state_get(st, acct, &cur), 0);
    assert_int_equal(sg_store_state_cas(st, acct, cur.version, s, NULL), 1);
}

static void test_lockdown(void **state)
{
    struct sg_account_state s = { 0 };
    struct sg_verdict v;

    (void)state;
    s.blocked = true;
    s.ticket = 7;
    put_state("boss@example.com", &s);
    put_state("sales@example.com", &s);
    fake_now += 7200000;                                      /* fresh windows */
    decide(NULL, "<boss@example.com>", 1, &v);
    assert_true(v.lockdown);
    assert_int_equal(v.action, SG_ACT_TEMPFAIL);              /* this account's on_block */
    decide("jdoe", NULL, 1, &v);
    assert_int_equal(v.action, SG_ACT_HOLD);                  /* the default on_block */
    s.blocked = false;
    put_state("sales@example.com", &s);
    fake_now += 7200000;
    decide("jdoe", NULL, 1, &v);
    assert_int_equal(v.action, SG_ACT_ACCEPT);
}

/* mode = "observe": decided and logged as enforcement would, accepted all
 * the same, and charged (the counts see the real traffic); a lockdown is
 * still enforced (observe_lockdown is off). */
static void test_observe(void **state)
{
    struct sg_account_state s = { 0 };
    struct sg_verdict v;

    (void)state;
    fake_now += 7200000;
    for (int i = 0; i < 2; i++) {
        decide(NULL, "<trial@example.com>", 1, &v);
        assert_int_equal(v.action, SG_ACT_ACCEPT);
        assert_false(v.observed);
    }
    for (uint64_t used = 2; used < 5; used++) {
        decide(NULL, "<trial@example.com>", 1, &v);
        assert_int_equal(v.action, SG_ACT_TEMPFAIL);          /* what enforcement would do */
        assert_true(v.observed);                              /* ... but accepted */
        assert_int_equal(v.used, used);                       /* and charged */
        assert_int_equal(v.cap, 2);
    }
    s.blocked = true;
    put_state("trial@example.com", &s);
    decide(NULL, "<trial@example.com>", 1, &v);
    assert_true(v.lockdown);
    assert_int_equal(v.action, SG_ACT_HOLD);
    assert_false(v.observed);                                 /* a lockdown is enforced */
    /* the enforcing accounts are not affected */
    for (int i = 0; i < 4; i++)
        decide(NULL, "<enforced@else.org>", 1, &v);
    assert_int_equal(v.action, SG_ACT_TEMPFAIL);
    assert_false(v.observed);
}

/* A flood of rewritten and random senders: BATV and VERP fold a list's
 * bounces into one identity; past store.memory.max_identities, new
 * identities are charged to the shared overflow account (and the verdict
 * says so); the configured account keeps its own exact cap. */
static void test_flood_bound_and_rewrites(void **state)
{
    static const char text[] =
        "milter = { socket = \"inet:8890@127.0.0.1\"; };\n"
        "store = { backend = \"memory\"; memory = { max_identities = 3; }; };\n"
        "identity = { batv = true; verp = [ \"bounce-*@lists.example.com\" ]; };\n"
        "limits = ( { name = \"hourly\"; window = \"1h\"; messages = 2; action = \"tempfail\"; } );\n"
        "accounts = ( { address = \"sales@example.com\"; offer = \"mxplan-legacy\";\n"
        "  limits = ( { name = \"own\"; window = \"1h\"; messages = 4; action = \"hold\"; } ); } );\n";
    char path[] = "/tmp/sg-policy-XXXXXX";
    int fd = mkstemp(path);
    sg_conf_t *c;
    sg_store_t *m = sg_store_memory_new(fake_clock, NULL);
    struct sg_request req = { 0 };
    const char *rcpt[] = { "<a@dest.example>" };
    struct sg_verdict v;
    char from[64];
    int sales_ok = 0;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    c = sg_conf_load(path, NULL, NULL);
    unlink(path);
    assert_non_null(c);
    req.rcpts = rcpt;
    req.nrcpts = 1;
    req.client_ip = "203.0.113.66";

    req.envfrom = "<prvs=1a2b3c4d5e=jane@example.org>";
    sg_policy_decide(c, m, NULL, &req, &v);
    assert_string_equal(v.identity, "jane@example.org");
    assert_string_equal(v.account, "jane@example.org");
    req.envfrom = "<bounce-1-x=y.example@lists.example.com>";
    sg_policy_decide(c, m, NULL, &req, &v);
    assert_string_equal(v.account, "bounce-*@lists.example.com");
    req.envfrom = "<bounce-2-z=w.example@lists.example.com>";
    sg_policy_decide(c, m, NULL, &req, &v);
    assert_string_equal(v.account, "bounce-*@lists.example.com");
    assert_int_equal(v.used, 2);                       /* one identity, one budget */
    req.envfrom = "<third@example.net>";
    sg_policy_decide(c, m, NULL, &req, &v);
    assert_string_equal(v.account, "third@example.net");  /* the third identity: the bound */
    for (int i = 0; i < 40; i++) {
        snprintf(from, sizeof(from), "<rnd%d@spam.example>", i);
        req.envfrom = from;
        sg_policy_decide(c, m, NULL, &req, &v);
        assert_string_equal(v.account, SG_STORE_OVERFLOW_ACCOUNT);
        assert_int_equal(v.action, i < 2 ? SG_ACT_ACCEPT : SG_ACT_TEMPFAIL);
        if (i % 5 == 0) {
            req.envfrom = "<sales@example.com>";
            sg_policy_decide(c, m, NULL, &req, &v);
            assert_string_equal(v.account, "sales@example.com");
            sales_ok += v.action == SG_ACT_ACCEPT;
        }
    }
    assert_int_equal(sales_ok, 4);                     /* its cap, exactly */
    sg_store_free(m);
    sg_conf_unref(c);
}

/* sg_policy_resolve: the one mapping identity → account → limits the
 * daemon (login, else sender) and sendguardctl (argument as login) share. */
static void test_resolve(void **state)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    struct sg_resolved r;

    (void)state;
    sg_policy_resolve(s, "JDoe", "<anything@elsewhere.com>", &r);   /* login wins */
    assert_string_equal(r.identity, "jdoe");
    assert_string_equal(r.account, "sales@example.com");
    assert_ptr_equal(r.acct, &s->accounts[0]);
    assert_ptr_equal(r.limits, s->accounts[0].limits);
    assert_int_equal(r.nlimits, 1);
    assert_string_equal(r.limits[0].name, "burst");
    assert_int_equal(r.observe, 0);
    sg_policy_resolve(s, "", "<Printer@Sales.Example.COM>", &r);    /* empty login: sender */
    assert_string_equal(r.identity, "printer@sales.example.com");
    assert_string_equal(r.account, "sales@example.com");
    sg_policy_resolve(s, NULL, "<trial@example.com>", &r);
    assert_string_equal(r.account, "trial@example.com");
    assert_int_equal(r.observe, 1);                              /* the account's mode */
    sg_policy_resolve(s, "Stranger@Else.ORG", NULL, &r);        /* implicit account */
    assert_null(r.acct);
    assert_string_equal(r.account, "stranger@else.org");
    assert_string_equal(r.identity, r.account);
    assert_ptr_equal(r.limits, s->limits);
    assert_int_equal(r.nlimits, s->nlimits);
    assert_string_equal(r.limits[0].name, "hourly");
    sg_policy_resolve(s, NULL, NULL, &r);                        /* no sender at all */
    assert_string_equal(r.account, "<>");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_limits_tempfail),
        cmocka_unit_test(test_account_hold_and_identity),
        cmocka_unit_test(test_reject_and_too_big),
        cmocka_unit_test(test_warn_and_allow),
        cmocka_unit_test(test_lockdown),
        cmocka_unit_test(test_observe),
        cmocka_unit_test(test_flood_bound_and_rewrites),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
