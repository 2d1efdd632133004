/*
 * test_conf.c - unit tests of conf/ (sg_conf_*): the example config loads,
 * every key lands in its field, durations, defaults, senders, lookup,
 * reference counting. Bad files and their "FILE:LINE: key: problem" lines
 * are in test_conf_errors.c; the helpers in test_conf_util.c.
 * Must not: read or write outside its scratch directory (and the example
 * config), or pass a group it did not run.
 *
 * Usage: test_conf [GROUP]   (no GROUP: all groups). An unknown GROUP
 * fails: a test that does not run never passes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "test_conf_util.h"

#ifndef SG_EXAMPLE_CONF
#error "SG_EXAMPLE_CONF must name conf/sendguard.conf"
#endif

/* ------------------------------------------------------------------------ */
/* The example config                                                        */

static void test_example_loads(void **state)
{
    struct errs e = { .n = 0 };
    sg_conf_t *c = sg_conf_load(SG_EXAMPLE_CONF, collect, &e);
    const struct sg_settings *s;
    const struct sg_account *a;

    errs_print(&e);
    assert_int_equal(e.n, 0);
    assert_non_null(c);
    s = sg_conf_settings(c);
    assert_string_equal(sg_conf_path(c), SG_EXAMPLE_CONF);

    assert_string_equal(s->milter_socket, "unix:/var/spool/postfix/sendguard/sendguard.sock");
    assert_int_equal(s->socket_mode, 0660);
    assert_null(s->socket_group);
    assert_int_equal(s->store_backend, SG_STORE_MEMORY);
    assert_int_equal(s->store_on_error, SG_ON_ERROR_ACCEPT);
    assert_int_equal(s->syslog_facility, LOG_MAIL);
    assert_false(s->strict);

    /* the conservative default: below ~200 messages/hour */
    assert_int_equal(s->nlimits, 2);
    assert_string_equal(s->limits[0].name, "hourly");
    assert_int_equal(s->limits[0].window_ms, 3600000);
    assert_int_equal(s->limits[0].cap[SG_UNIT_MESSAGES], 150);
    assert_int_equal(s->limits[0].cap[SG_UNIT_RECIPIENTS], 500);
    assert_int_equal(s->limits[0].cap[SG_UNIT_BYTES], 0);
    assert_int_equal(s->limits[0].action, SG_ACT_TEMPFAIL);
    assert_true(s->limits[0].warn_at > 0.79 && s->limits[0].warn_at < 0.81);
    assert_string_equal(s->limits[1].name, "daily");
    assert_int_equal(s->limits[1].window_ms, 86400000);
    assert_int_equal(s->limits[1].cap[SG_UNIT_MESSAGES], 1000);
    assert_int_equal(s->limits[1].action, SG_ACT_HOLD);

    /* the watcher is off: the example needs no API credentials */
    assert_int_equal(s->ovh_poll_interval_ms, 0);

    assert_int_equal(s->naccounts, 2);
    a = sg_conf_find_account(c, "sales@example.com");
    assert_non_null(a);
    assert_int_equal(a->offer, SG_OFFER_MXPLAN_LEGACY);
    assert_string_equal(a->senders[0], "sales@example.com");
    assert_int_equal(a->nsenders, 3);
    assert_string_equal(a->senders[1], "*@sales.example.com");
    assert_string_equal(a->senders[2], "jdoe");
    assert_string_equal(a->sasl_map_file, "/etc/postfix/sendguard/sasl_passwd");
    assert_int_equal(a->nlimits, 2);
    assert_ptr_not_equal(a->limits, s->limits);
    assert_int_equal(a->limits[0].cap[SG_UNIT_MESSAGES], 100);

    a = sg_conf_find_account(c, "boss@example.com");
    assert_non_null(a);
    assert_int_equal(a->offer, SG_OFFER_EXCHANGE);
    assert_string_equal(a->organization, "hosted-ab123-1");
    assert_string_equal(a->service, "hosted-ab123-1");
    assert_int_equal(a->on_block, SG_ACT_TEMPFAIL);
    assert_ptr_equal(a->limits, s->limits);          /* inherited */
    assert_int_equal(a->nlimits, s->nlimits);
    sg_conf_unref(c);
}

/* Every key set to a value other than its default, each checked in its
 * field: catches a table entry pointing at the wrong member. */
static void test_every_key(void **state)
{
    sg_conf_t *c = load_ok(
        "milter = { socket = \"unix:/run/sendguard/milter.sock\"; socket_mode = \"0600\";\n"
        "           timeout = \"30s\"; };\n"
        "syslog_facility = \"local3\";\n"
        "user = \"sg\"; pidfile = \"/run/sg.pid\"; relay_name = \"relay-2\";\n"
        "identity = { lowercase = false; strip_tag = true; tag_separator = \"-\";\n"
        "  batv = true; srs = true; verp = [ \"Bounce-*@Lists.example.com\" ];\n"
        "  flood_threshold = 0; };\n"
        "allow = [ \"PostMaster@example.com\", \"*@mon.example.com\" ];\n"
        "store = { backend = \"redis\"; on_error = \"tempfail\";\n"
        "  redis = { host = \"10.0.0.9\"; port = 6380; username = \"u\"; password = \"p w\";\n"
        "            db = 3; prefix = \"x:\"; connect_timeout_ms = 150; command_timeout_ms = 250;\n"
        "            pool_size = 4;\n"
        "            sentinel = { master = \"mymaster\";\n"
        "                         servers = [ \"10.0.0.1:26379\", \"[::1]:26380\" ]; }; }; };\n"
        "strict = true;\n"
        "limits = ( { name = \"burst\"; window = \"90s\"; messages = 10; recipients = 20;\n"
        "             bytes = 5000000000L; distinct_recipients = 15; action = \"warn\";\n"
        "             warn_at = 0.5; },\n"
        "           { name = \"week\"; window = 604800; messages = 5000; action = \"reject\";\n"
        "             warn_at = 1; } );\n"
        "accounts = ( { address = \"A@Example.com\"; offer = \"emailpro\"; service = \"emailpro-1\";\n"
        "               on_block = \"tempfail\"; auto_reply = false; sasl_map_file = \"/etc/m\";\n"
        "               limits = (); },\n"
        "             { address = \"b@example.org\"; offer = \"mxplan\"; service = \"mxplan-1\"; } );\n"
        "ovh = { endpoint = \"https://eu.api.ovh.com/1.0\"; credentials = \"/etc/sg/ovh.conf\";\n"
        "        poll_interval = \"2m\"; timeout = \"20s\"; };\n"
        "on_block = \"hold\";\n"
        "release_command = [ \"/usr/sbin/postsuper\", \"-H\", \"-\" ];\n"
        "after_password_change = [ \"postmap\", \"/etc/postfix/sasl_passwd\" ];\n"
        "auto_reply = true;\n"
        "alert = { command = [ \"/bin/page\", \"now\" ]; interval = \"2h\"; };\n");
    const struct sg_settings *s = sg_conf_settings(c);
    const struct sg_account *a, *b;

    assert_string_equal(s->milter_socket, "unix:/run/sendguard/milter.sock");
    assert_int_equal(s->socket_mode, 0600);
    assert_int_equal(s->milter_timeout_s, 30);
    assert_int_equal(s->syslog_facility, LOG_LOCAL3);
    assert_string_equal(s->user, "sg");
    assert_string_equal(s->pidfile, "/run/sg.pid");
    assert_string_equal(s->relay_name, "relay-2");
    assert_false(s->lowercase);
    assert_true(s->strip_tag);
    assert_int_equal(s->tag_separator, '-');
    assert_true(s->batv);
    assert_true(s->srs);
    assert_int_equal(s->nverp, 1);
    assert_string_equal(s->verp[0], "Bounce-*@Lists.example.com");   /* lowercase = false */
    assert_int_equal(s->flood_threshold, 0);
    assert_int_equal(s->nallow, 2);
    assert_string_equal(s->allow[0], "PostMaster@example.com");   /* lowercase = false */
    assert_string_equal(s->allow[1], "*@mon.example.com");

    assert_int_equal(s->store_backend, SG_STORE_REDIS);
    assert_int_equal(s->store_on_error, SG_ON_ERROR_TEMPFAIL);
    assert_string_equal(s->redis.host, "10.0.0.9");
    assert_int_equal(s->redis.port, 6380);
    assert_null(s->redis.unix_path);
    assert_string_equal(s->redis.username, "u");
    assert_string_equal(s->redis.password, "p w");
    assert_int_equal(s->redis.db, 3);
    assert_string_equal(s->redis.prefix, "x:");
    assert_int_equal(s->redis.connect_timeout_ms, 150);
    assert_int_equal(s->redis.command_timeout_ms, 250);
    assert_int_equal(s->redis.pool_size, 4);
    assert_string_equal(s->redis.sentinel_master, "mymaster");
    assert_int_equal(s->redis.nsentinels, 2);
    assert_string_equal(s->redis.sentinels[0], "10.0.0.1:26379");
    assert_string_equal(s->redis.sentinels[1], "[::1]:26380");

    assert_true(s->strict);
    assert_int_equal(s->nlimits, 2);
    assert_string_equal(s->limits[0].name, "burst");
    assert_int_equal(s->limits[0].window_ms, 90000);
    assert_int_equal(s->limits[0].cap[SG_UNIT_MESSAGES], 10);
    assert_int_equal(s->limits[0].cap[SG_UNIT_RECIPIENTS], 20);
    assert_true(s->limits[0].cap[SG_UNIT_BYTES] == 5000000000ULL);
    assert_int_equal(s->limits[0].cap[SG_UNIT_DISTINCT], 15);
    assert_int_equal(s->limits[0].action, SG_ACT_WARN);
    assert_true(s->limits[0].warn_at == 0.5);
    assert_int_equal(s->limits[1].window_ms, 604800000);
    assert_int_equal(s->limits[1].action, SG_ACT_REJECT);
    assert_true(s->limits[1].warn_at == 1.0);

    assert_int_equal(s->naccounts, 2);
    a = &s->accounts[0];
    assert_string_equal(a->address, "a@example.com");             /* always lower-cased */
    assert_string_equal(a->local, "a");
    assert_string_equal(a->domain, "example.com");
    assert_int_equal(a->offer, SG_OFFER_EMAILPRO);
    assert_null(a->organization);
    assert_string_equal(a->service, "emailpro-1");
    assert_int_equal(a->on_block, SG_ACT_TEMPFAIL);
    assert_false(a->auto_reply);                                   /* own value wins */
    assert_string_equal(a->sasl_map_file, "/etc/m");
    assert_int_equal(a->nlimits, 0);                               /* limits = (): none */
    b = &s->accounts[1];
    assert_int_equal(b->offer, SG_OFFER_MXPLAN);
    assert_int_equal(b->on_block, SG_ACT_HOLD);
    assert_true(b->auto_reply);                                    /* inherited */
    assert_ptr_equal(b->limits, s->limits);
    assert_null(b->sasl_map_file);

    assert_string_equal(s->ovh_endpoint, "https://eu.api.ovh.com/1.0");
    assert_string_equal(s->ovh_credentials, "/etc/sg/ovh.conf");
    assert_int_equal(s->ovh_poll_interval_ms, 120000);
    assert_int_equal(s->ovh_timeout_ms, 20000);
    assert_int_equal(s->on_block, SG_ACT_HOLD);
    assert_int_equal(s->nrelease_command, 3);
    assert_string_equal(s->release_command[0], "/usr/sbin/postsuper");
    assert_int_equal(s->nafter_password_change, 2);
    assert_string_equal(s->after_password_change[1], "/etc/postfix/sasl_passwd");
    assert_true(s->auto_reply);
    assert_int_equal(s->nalert_command, 2);
    assert_string_equal(s->alert_command[0], "/bin/page");
    assert_string_equal(s->alert_command[1], "now");
    assert_int_equal(s->alert_interval_ms, 7200000);
    sg_conf_unref(c);
}

/* ------------------------------------------------------------------------ */
/* Defaults                                                                  */

static void test_defaults(void **state)
{
    sg_conf_t *c = load_ok("# nothing set\n");
    const struct sg_settings *s = sg_conf_settings(c);
    char host[256];

    assert_string_equal(s->milter_socket, "unix:/var/spool/postfix/sendguard/sendguard.sock");
    assert_int_equal(s->socket_mode, 0660);
    assert_null(s->socket_group);
    assert_int_equal(s->milter_timeout_s, 7210);
    assert_int_equal(s->syslog_facility, LOG_MAIL);
    assert_string_equal(s->user, "sendguard");
    assert_null(s->pidfile);
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    host[sizeof(host) - 1] = '\0';
    assert_string_equal(s->relay_name, host);
    assert_true(s->lowercase);
    assert_false(s->strip_tag);
    assert_int_equal(s->tag_separator, '+');
    assert_false(s->batv);
    assert_false(s->srs);
    assert_int_equal(s->nverp, 0);
    assert_int_equal(s->flood_threshold, 1000);
    assert_int_equal(s->memory_max_identities, 0);
    assert_int_equal(s->nallow, 0);
    assert_int_equal(s->store_backend, SG_STORE_MEMORY);
    assert_int_equal(s->store_on_error, SG_ON_ERROR_ACCEPT);
    assert_string_equal(s->redis.host, "127.0.0.1");
    assert_int_equal(s->redis.port, 6379);
    assert_null(s->redis.unix_path);
    assert_null(s->redis.username);
    assert_null(s->redis.password);
    assert_int_equal(s->redis.db, 0);
    assert_string_equal(s->redis.prefix, "sg:");
    assert_int_equal(s->redis.connect_timeout_ms, 200);
    assert_int_equal(s->redis.command_timeout_ms, 200);
    assert_int_equal(s->redis.pool_size, 8);
    assert_null(s->redis.sentinel_master);
    assert_int_equal(s->redis.nsentinels, 0);
    assert_false(s->strict);

    /* built-in limits: hourly 150 msgs / 500 rcpts, daily 1000 msgs */
    assert_int_equal(s->nlimits, 2);
    assert_string_equal(s->limits[0].name, "hourly");
    assert_int_equal(s->limits[0].window_ms, 3600000);
    assert_int_equal(s->limits[0].cap[SG_UNIT_MESSAGES], 150);
    assert_int_equal(s->limits[0].cap[SG_UNIT_RECIPIENTS], 500);
    assert_int_equal(s->limits[0].action, SG_ACT_TEMPFAIL);
    assert_string_equal(s->limits[1].name, "daily");
    assert_int_equal(s->limits[1].window_ms, 86400000);
    assert_int_equal(s->limits[1].cap[SG_UNIT_MESSAGES], 1000);
    assert_int_equal(s->limits[1].cap[SG_UNIT_RECIPIENTS], 0);
    assert_int_equal(s->limits[1].action, SG_ACT_TEMPFAIL);

    assert_int_equal(s->naccounts, 0);
    assert_null(s->ovh_endpoint);
    assert_null(s->ovh_credentials);
    assert_int_equal(s->ovh_poll_interval_ms, 300000);
    assert_int_equal(s->ovh_timeout_ms, 60000);
    assert_int_equal(s->on_block, SG_ACT_HOLD);
    assert_int_equal(s->nrelease_command, 3);
    assert_string_equal(s->release_command[0], "postsuper");
    assert_string_equal(s->release_command[1], "-H");
    assert_string_equal(s->release_command[2], "-");
    assert_int_equal(s->nafter_password_change, 0);
    assert_int_equal(s->nalert_command, 0);
    assert_int_equal(s->alert_interval_ms, 3600000);
    assert_false(s->auto_reply);
    sg_conf_unref(c);
}

static void test_limit_defaults(void **state)
{
    sg_conf_t *c = load_ok("limits = ( { name = \"h\"; window = \"1h\"; bytes = 1000; } );\n"
                           "on_block = \"tempfail\";\n"
                           "accounts = ( { address = \"x@y.z\"; offer = \"mxplan-legacy\"; } );\n");
    const struct sg_settings *s = sg_conf_settings(c);

    assert_int_equal(s->nlimits, 1);
    assert_int_equal(s->limits[0].action, SG_ACT_TEMPFAIL);
    assert_true(s->limits[0].warn_at == 0.8);
    assert_int_equal(s->limits[0].cap[SG_UNIT_MESSAGES], 0);
    assert_int_equal(s->limits[0].cap[SG_UNIT_BYTES], 1000);
    assert_int_equal(s->accounts[0].on_block, SG_ACT_TEMPFAIL);   /* top-level on_block */
    assert_ptr_equal(s->accounts[0].limits, s->limits);
    sg_conf_unref(c);

    c = load_ok("limits = ();\n");                                 /* count and log only */
    assert_int_equal(sg_conf_settings(c)->nlimits, 0);
    sg_conf_unref(c);
}

/* ------------------------------------------------------------------------ */
/* Durations                                                                 */

static void test_duration(void **state)
{
    static const struct { const char *in; bool ok; uint64_t ms; } cases[] = {
        { "90s", true, 90000 },     { "5m", true, 300000 },    { "1h", true, 3600000 },
        { "2d", true, 172800000 },  { "30", true, 30000 },     { "1s", true, 1000 },
        { "007m", true, 420000 },
        { "213503982334d", true, 213503982334ULL * 86400000ULL },
        { "213503982335d", false, 0 },                         /* ms overflow */
        { "18446744073709551", true, 18446744073709551ULL * 1000ULL },
        { "18446744073709552", false, 0 },
        { "99999999999999999999", false, 0 },                  /* digits overflow */
        { "0", false, 0 },          { "0s", false, 0 },        { "", false, 0 },
        { "s", false, 0 },          { "5", true, 5000 },       { "-5m", false, 0 },
        { "+5m", false, 0 },        { "5 m", false, 0 },       { " 5m", false, 0 },
        { "5m ", false, 0 },        { "5ms", false, 0 },       { "5w", false, 0 },
        { "5M", false, 0 },         { "1.5h", false, 0 },      { "1h30m", false, 0 },
        { "off", false, 0 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345;
        bool ok = sg_conf_parse_duration(cases[i].in, &ms);

        if (ok != cases[i].ok || (ok && ms != cases[i].ms))
            fail_msg("\"%s\": got %s %llu", cases[i].in, ok ? "ok" : "error",
                     (unsigned long long)ms);
        if (!ok)
            assert_int_equal(ms, 12345);             /* untouched on error */
    }
    assert_false(sg_conf_parse_duration(NULL, &(uint64_t){ 0 }));
}

/* Durations in the file: a string, a bare number (seconds), "off". */
static void test_duration_keys(void **state)
{
    sg_conf_t *c = load_ok("milter = { timeout = 45; };\n"
                           "ovh = { poll_interval = \"off\"; timeout = \"2m\"; };\n"
                           "limits = ( { name = \"a\"; window = \"3600\"; messages = 1; } );\n");
    const struct sg_settings *s = sg_conf_settings(c);

    assert_int_equal(s->milter_timeout_s, 45);
    assert_int_equal(s->ovh_poll_interval_ms, 0);
    assert_int_equal(s->ovh_timeout_ms, 120000);
    assert_int_equal(s->limits[0].window_ms, 3600000);
    sg_conf_unref(c);
}

/* ------------------------------------------------------------------------ */
/* Senders and accounts                                                      */

static void test_senders(void **state)
{
    sg_conf_t *c = load_ok(
        "accounts = (\n"
        "  { address = \"Sales@Example.COM\"; offer = \"mxplan-legacy\";\n"
        "    senders = [ \"*@Sales.Example.com\", \"SALES@example.com\", \"JDoe\", \"jdoe\" ]; },\n"
        "  { address = \"b@example.com\"; offer = \"mxplan-legacy\"; },\n"
        "  { address = \"c@example.com\"; offer = \"mxplan-legacy\";\n"
        "    senders = [ \"x\", \"c@example.com\" ]; }\n"
        ");\n");
    const struct sg_settings *s = sg_conf_settings(c);
    const struct sg_account *a = &s->accounts[0];

    /* address first, lower-cased; listed again: not repeated; case
     * duplicates folded */
    assert_int_equal(a->nsenders, 3);
    assert_string_equal(a->senders[0], "sales@example.com");
    assert_string_equal(a->senders[1], "*@sales.example.com");
    assert_string_equal(a->senders[2], "jdoe");
    assert_int_equal(s->accounts[1].nsenders, 1);
    assert_string_equal(s->accounts[1].senders[0], "b@example.com");
    assert_int_equal(s->accounts[2].nsenders, 2);
    assert_string_equal(s->accounts[2].senders[0], "c@example.com");
    assert_string_equal(s->accounts[2].senders[1], "x");
    sg_conf_unref(c);

    /* identity.lowercase = false keeps the patterns as written (the address
     * itself is always lower-cased) */
    c = load_ok("identity = { lowercase = false; };\n"
                "accounts = ( { address = \"A@B.C\"; offer = \"mxplan-legacy\";\n"
                "  senders = [ \"JDoe\", \"jdoe\" ]; } );\n");
    a = &sg_conf_settings(c)->accounts[0];
    assert_int_equal(a->nsenders, 3);
    assert_string_equal(a->senders[0], "a@b.c");
    assert_string_equal(a->senders[1], "JDoe");
    assert_string_equal(a->senders[2], "jdoe");
    sg_conf_unref(c);
}

static void test_find_account(void **state)
{
    sg_conf_t *c = load_ok(
        "accounts = (\n"
        "  { address = \"zed@example.com\"; offer = \"mxplan-legacy\"; },\n"
        "  { address = \"Sales@Example.com\"; offer = \"emailpro\"; service = \"p\"; },\n"
        "  { address = \"amy@example.org\"; offer = \"mxplan\"; service = \"m\"; }\n"
        ");\n");
    const struct sg_settings *s = sg_conf_settings(c);

    assert_ptr_equal(sg_conf_find_account(c, "sales@example.com"), &s->accounts[1]);
    assert_ptr_equal(sg_conf_find_account(c, "SALES@EXAMPLE.COM"), &s->accounts[1]);
    assert_ptr_equal(sg_conf_find_account(c, "Zed@Example.Com"), &s->accounts[0]);
    assert_ptr_equal(sg_conf_find_account(c, "amy@example.org"), &s->accounts[2]);
    assert_null(sg_conf_find_account(c, "amy@example.com"));
    assert_null(sg_conf_find_account(c, "sales"));
    assert_null(sg_conf_find_account(c, ""));
    assert_null(sg_conf_find_account(c, NULL));
    assert_null(sg_conf_find_account(NULL, "sales@example.com"));
    sg_conf_unref(c);

    c = load_ok("\n");
    assert_null(sg_conf_find_account(c, "sales@example.com"));
    sg_conf_unref(c);
}

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */

static void test_refcount_and_swap(void **state)
{
    sg_conf_t *a = load_ok("relay_name = \"a\";\n");
    sg_conf_t *b = load_ok("relay_name = \"b\";\n");
    sg_conf_t *cur;

    assert_null(sg_conf_current());
    sg_conf_swap(a);                                  /* current owns a's reference */
    cur = sg_conf_current();
    assert_ptr_equal(cur, a);
    assert_string_equal(sg_conf_settings(cur)->relay_name, "a");

    sg_conf_swap(b);                                  /* a lives on through cur */
    assert_string_equal(sg_conf_settings(cur)->relay_name, "a");
    sg_conf_unref(cur);                               /* a freed here (ASan/valgrind) */

    cur = sg_conf_current();
    assert_ptr_equal(cur, b);
    assert_ptr_equal(sg_conf_ref(cur), b);
    sg_conf_unref(cur);
    sg_conf_unref(cur);
    assert_string_equal(sg_conf_settings(b)->relay_name, "b");

    sg_conf_swap(NULL);                               /* b freed */
    assert_null(sg_conf_current());
    assert_null(sg_conf_ref(NULL));
    sg_conf_unref(NULL);
}

static void test_names(void **state)
{
    assert_string_equal(sg_action_name(SG_ACT_ACCEPT), "accept");
    assert_string_equal(sg_action_name(SG_ACT_WARN), "warn");
    assert_string_equal(sg_action_name(SG_ACT_TEMPFAIL), "tempfail");
    assert_string_equal(sg_action_name(SG_ACT_HOLD), "hold");
    assert_string_equal(sg_action_name(SG_ACT_REJECT), "reject");
    assert_string_equal(sg_unit_name(SG_UNIT_MESSAGES), "messages");
    assert_string_equal(sg_unit_name(SG_UNIT_RECIPIENTS), "recipients");
    assert_string_equal(sg_unit_name(SG_UNIT_BYTES), "bytes");
    assert_string_equal(sg_unit_name(SG_UNIT_DISTINCT), "distinct_recipients");
    assert_string_equal(sg_offer_name(SG_OFFER_NONE), "none");
    assert_string_equal(sg_offer_name(SG_OFFER_EXCHANGE), "exchange");
    assert_string_equal(sg_offer_name(SG_OFFER_EMAILPRO), "emailpro");
    assert_string_equal(sg_offer_name(SG_OFFER_MXPLAN), "mxplan");
    assert_string_equal(sg_offer_name(SG_OFFER_MXPLAN_LEGACY), "mxplan-legacy");
}

/* ------------------------------------------------------------------------ */

static const struct CMUnitTest example_tests[] = {
    cmocka_unit_test(test_example_loads),
    cmocka_unit_test(test_every_key),
};
static const struct CMUnitTest defaults_tests[] = {
    cmocka_unit_test(test_defaults),
    cmocka_unit_test(test_limit_defaults),
};
static const struct CMUnitTest duration_tests[] = {
    cmocka_unit_test(test_duration),
    cmocka_unit_test(test_duration_keys),
};
static const struct CMUnitTest accounts_tests[] = {
    cmocka_unit_test(test_senders),
    cmocka_unit_test(test_find_account),
};
static const struct CMUnitTest lifetime_tests[] = {
    cmocka_unit_test(test_refcount_and_swap),
    cmocka_unit_test(test_names),
};

int main(int argc, char **argv)
{
    static const struct conf_group groups[] = {
        CONF_GROUP("example", example_tests), CONF_GROUP("defaults", defaults_tests),
        CONF_GROUP("duration", duration_tests), CONF_GROUP("accounts", accounts_tests),
        CONF_GROUP("lifetime", lifetime_tests),
    };

    return conf_test_main("test_conf", argc, argv, groups, sizeof(groups) / sizeof(groups[0]));
}
