/*
 * test_conf.c - unit tests of conf/ (sg_conf_*): the example config loads,
 * every key lands in its field, bad files give exactly the expected
 * "FILE:LINE: key: problem" lines, durations, defaults, senders, lookup,
 * reference counting.
 *
 * Usage: test_conf [GROUP]   (no GROUP: all groups). An unknown GROUP
 * fails: a test that does not run never passes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "sg_conf.h"

#ifndef SG_EXAMPLE_CONF
#error "SG_EXAMPLE_CONF must name conf/sendguard.conf"
#endif

/* ------------------------------------------------------------------------ */
/* Helpers: a scratch directory, files in it, an error collector            */

static char scratch[256];
static int nfiles;

static int make_scratch(void **state)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(scratch, sizeof(scratch), "%s/sg_conf_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", scratch, strerror(errno));
        return -1;
    }
    return 0;
}

static int remove_scratch(void **state)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
    return system(cmd) == 0 ? 0 : -1;
}

/* write_file - scratch/NAME with text; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", scratch, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0640), 0);    /* as a config with a secret must be */
    return path;
}

/* write_conf - a fresh file per call, so a test never reads a stale one. */
static const char *write_conf(const char *text)
{
    char name[32];

    snprintf(name, sizeof(name), "t%03d.conf", ++nfiles);
    return write_file(name, text);
}

struct errs {
    char *line[64];
    size_t n;
};

static void collect(void *ctx, const char *line)
{
    struct errs *e = ctx;

    assert_true(e->n < 64);
    e->line[e->n] = strdup(line);
    assert_non_null(e->line[e->n]);
    e->n++;
}

static void errs_free(struct errs *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->line[i]);
    e->n = 0;
}

static void errs_print(const struct errs *e)
{
    for (size_t i = 0; i < e->n; i++)
        print_message("  got:  %s\n", e->line[i]);
}

/* load_ok - load text that must be valid; fails the test with the
 * problems otherwise. */
static sg_conf_t *load_ok(const char *text)
{
    struct errs e = { .n = 0 };
    sg_conf_t *c = sg_conf_load(write_conf(text), collect, &e);

    errs_print(&e);
    assert_int_equal(e.n, 0);
    assert_non_null(c);
    errs_free(&e);
    return c;
}

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
/* Bad files: the exact lines                                                */

struct bad_case {
    const char *name;
    const char *text;
    const char *want[12];         /* each without the "FILE" prefix, e.g. ":3: key: x" */
};

static const struct bad_case bad_cases[] = {
    { "syntax",
      "milter = {\n  socket = \"inet:1@h\"\n  timeout = ;\n};\n",
      { ":3: syntax: syntax error" } },
    { "duplicate key (libconfig)",
      "strict = true;\nstrict = false;\n",
      { ":2: syntax: duplicate setting name" } },
    { "unknown keys, with and without a suggestion",
      "milter = { sockte = \"unix:/x\"; };\nfoo = 1;\nstore = { redis = { hots = \"x\"; }; };\n",
      { ":1: milter.sockte: unknown key (did you mean \"socket\"?)",
        ":2: foo: unknown key",
        ":3: store.redis.hots: unknown key (did you mean \"host\"?)" } },
    { "wrong types",
      "milter = \"inet:1@h\";\nstrict = 1;\nidentity = { lowercase = \"yes\"; };\n"
      "store = { redis = { port = \"6379\"; }; };\nallow = \"*@x\";\n",
      { ":1: milter: must be a group { ... } (got a string)",
        ":2: strict: must be true or false (got an integer)",
        ":3: identity.lowercase: must be true or false (got a string)",
        ":4: store.redis.port: must be an integer (got a string)",
        ":5: allow: must be an array of strings (got a string)" } },
    { "socket forms",
      "milter = { socket = \"tcp:8890\"; };\n",
      { ":1: milter.socket: must start with inet:, inet6: or unix: (got \"tcp:8890\")" } },
    { "socket port",
      "milter = { socket = \"inet:0@127.0.0.1\"; };\n",
      { ":1: milter.socket: must be inet:PORT@HOST (or inet6:PORT@HOST) with PORT from 1 to "
        "65535 (got \"inet:0@127.0.0.1\")" } },
    { "socket path",
      "milter = { socket = \"unix:run/x.sock\"; socket_mode = \"0999\"; };\n",
      { ":1: milter.socket: must be unix:/absolute/path (got \"unix:run/x.sock\")",
        ":1: milter.socket_mode: must be an octal mode such as \"0660\" (got \"0999\")" } },
    { "socket_mode as an integer",
      "milter = { socket_mode = 660; };\n",
      { ":1: milter.socket_mode: must be an octal string such as \"0660\" (got an integer)" } },
    { "facility",
      "syslog_facility = \"mial\";\n",
      { ":1: syslog_facility: must be mail, daemon, user or local0 to local7 (got \"mial\")" } },
    { "durations",
      "milter = { timeout = \"5x\"; };\novh = { poll_interval = \"0\"; timeout = \"10m\"; };\n"
      "alert = { interval = -5; };\n",
      { ":1: milter.timeout: must be a duration such as \"90s\", \"5m\", \"1h\" or \"2d\" "
        "(got \"5x\")",
        ":2: ovh.poll_interval: must be a duration such as \"90s\", \"5m\", \"1h\" or \"2d\", "
        "or \"off\" (got \"0\")",
        ":2: ovh.timeout: must be between 1s and 5m (got \"10m\")",
        ":3: alert.interval: must be a positive number of seconds or a duration such as "
        "\"90s\", \"5m\", \"1h\" or \"2d\" (got -5)" } },
    { "enums",
      "on_block = \"reject\";\nstore = { backend = \"mongo\"; on_error = \"drop\"; };\n",
      { ":1: on_block: must be hold or tempfail (got \"reject\")",
        ":2: store.backend: must be memory or redis (got \"mongo\")",
        ":2: store.on_error: must be accept or tempfail (got \"drop\")" } },
    { "limit fields",
      "limits = (\n"
      "  { name = \"hourly\"; window = \"1h\"; messages = 0; recipients = -3;\n"
      "    action = \"defer\"; warn_at = 1.5; },\n"
      "  { name = \"daily\"; window = \"45d\"; bytes = 1.5; distinct_recipients = \"9\";\n"
      "    warn_at = 0; }\n"
      ");\n",
      { ":2: limits[hourly].messages: must be a positive integer (got 0)",
        ":2: limits[hourly].recipients: must be a positive integer (got -3)",
        ":3: limits[hourly].action: must be warn, tempfail, hold or reject (got \"defer\")",
        ":3: limits[hourly].warn_at: must be more than 0 and at most 1 (got 1.5)",
        ":4: limits[daily].window: must be between 1s and 31d (got \"45d\")",
        ":4: limits[daily].bytes: must be a positive integer (got a number with a fraction)",
        ":4: limits[daily].distinct_recipients: must be a positive integer (got a string)",
        ":5: limits[daily].warn_at: must be more than 0 and at most 1 (got 0)" } },
    { "limit: required keys, nothing counted, not a group, bad name",
      "limits = (\n  { messages = 5; },\n  { name = \"x\"; window = \"1h\"; },\n  \"hourly\",\n"
      "  { name = \"a b\"; window = \"1m\"; messages = 1; }\n);\n",
      { ":2: limits[0].name: is required",
        ":2: limits[0].window: is required",
        ":3: limits[x]: needs at least one of messages, recipients, bytes, distinct_recipients",
        ":4: limits[2]: must be a group { name = ...; window = ...; ... } (got a string)",
        ":5: limits[3].name: must be 1 to 64 letters, digits, '.', '_' or '-' (got \"a b\")" } },
    { "duplicate limit names, case-insensitive, in an account too",
      "limits = (\n  { name = \"hourly\"; window = \"1h\"; messages = 5; },\n"
      "  { name = \"Hourly\"; window = \"2h\"; messages = 9; }\n);\n"
      "accounts = ( { address = \"a@b.c\"; offer = \"mxplan-legacy\";\n"
      "  limits = ( { name = \"d\"; window = \"1d\"; messages = 1; },\n"
      "             { name = \"d\"; window = \"1d\"; messages = 2; } ); } );\n",
      { ":3: limits[Hourly].name: duplicate limit name \"Hourly\" (first at line 2)",
        ":7: accounts[a@b.c].limits[d].name: duplicate limit name \"d\" (first at line 6)" } },
    { "too many limits",
      "limits = (\n"
      "{name=\"l1\";window=\"1h\";messages=1;},{name=\"l2\";window=\"1h\";messages=1;},\n"
      "{name=\"l3\";window=\"1h\";messages=1;},{name=\"l4\";window=\"1h\";messages=1;},\n"
      "{name=\"l5\";window=\"1h\";messages=1;},{name=\"l6\";window=\"1h\";messages=1;},\n"
      "{name=\"l7\";window=\"1h\";messages=1;},{name=\"l8\";window=\"1h\";messages=1;},\n"
      "{name=\"l9\";window=\"1h\";messages=1;},{name=\"l10\";window=\"1h\";messages=1;},\n"
      "{name=\"l11\";window=\"1h\";messages=1;},{name=\"l12\";window=\"1h\";messages=1;},\n"
      "{name=\"l13\";window=\"1h\";messages=1;},{name=\"l14\";window=\"1h\";messages=1;},\n"
      "{name=\"l15\";window=\"1h\";messages=1;},{name=\"l16\";window=\"1h\";messages=1;},\n"
      "{name=\"l17\";window=\"1h\";messages=1;},{name=\"l18\";window=\"1h\";messages=1;},\n"
      "{name=\"l19\";window=\"1h\";messages=1;},{name=\"l20\";window=\"1h\";messages=1;},\n"
      "{name=\"l21\";window=\"1h\";messages=1;},{name=\"l22\";window=\"1h\";messages=1;},\n"
      "{name=\"l23\";window=\"1h\";messages=1;},{name=\"l24\";window=\"1h\";messages=1;},\n"
      "{name=\"l25\";window=\"1h\";messages=1;},{name=\"l26\";window=\"1h\";messages=1;},\n"
      "{name=\"l27\";window=\"1h\";messages=1;},{name=\"l28\";window=\"1h\";messages=1;},\n"
      "{name=\"l29\";window=\"1h\";messages=1;},{name=\"l30\";window=\"1h\";messages=1;},\n"
      "{name=\"l31\";window=\"1h\";messages=1;},{name=\"l32\";window=\"1h\";messages=1;},\n"
      "{name=\"l33\";window=\"1h\";messages=1;}\n);\n",
      { ":1: limits: at most 32 limits per list (got 33)" } },
    { "limits not a list",
      "limits = { name = \"h\"; };\n",
      { ":1: limits: must be a list ( { ... }, ... ) of limits (got a group { })" } },
    { "accounts: offers",
      "accounts = (\n"
      "  { address = \"a@example.com\"; offer = \"exchange\"; service = \"s\"; },\n"
      "  { address = \"b@example.com\"; offer = \"emailpro\"; organization = \"o\"; },\n"
      "  { address = \"c@example.com\"; offer = \"mxplan-legacy\"; service = \"s\";\n"
      "    organization = \"o\"; },\n"
      "  { address = \"d@example.com\"; offer = \"gmail\"; },\n"
      "  { address = \"e@example.com\"; }\n"
      ");\n",
      { ":2: accounts[a@example.com].organization: is required for offer exchange",
        ":3: accounts[b@example.com].organization: does not apply to offer emailpro",
        ":3: accounts[b@example.com].service: is required for offer emailpro",
        ":4: accounts[c@example.com].service: does not apply to offer mxplan-legacy",
        ":5: accounts[c@example.com].organization: does not apply to offer mxplan-legacy",
        ":6: accounts[d@example.com].offer: must be exchange, emailpro, mxplan or "
        "mxplan-legacy (got \"gmail\")",
        ":7: accounts[e@example.com].offer: is required" } },
    { "accounts: addresses",
      "accounts = (\n"
      "  { address = \"nobody\"; offer = \"mxplan-legacy\"; },\n"
      "  { address = \"a@b@c\"; offer = \"mxplan-legacy\"; },\n"
      "  { address = \"@example.com\"; offer = \"mxplan-legacy\"; },\n"
      "  { address = \"a b@example.com\"; offer = \"mxplan-legacy\"; },\n"
      "  { offer = \"mxplan-legacy\"; },\n"
      "  { address = \"x\\ty@example.com\"; offer = \"mxplan-legacy\"; }\n"
      ");\n",
      { ":2: accounts[nobody].address: must be an address such as \"user@example.com\" "
        "(got \"nobody\")",
        ":3: accounts[a@b@c].address: must be an address such as \"user@example.com\" "
        "(got \"a@b@c\")",
        ":4: accounts[@example.com].address: must be an address such as \"user@example.com\" "
        "(got \"@example.com\")",
        ":5: accounts[3].address: must be an address such as \"user@example.com\" "
        "(got \"a b@example.com\")",
        ":6: accounts[4].address: is required",
        ":7: accounts[5].address: must be an address such as \"user@example.com\" "
        "(got \"x\\x09y@example.com\")" } },
    { "accounts: duplicate addresses, case-insensitive",
      "accounts = (\n"
      "  { address = \"Sales@Example.com\"; offer = \"mxplan-legacy\"; },\n"
      "  { address = \"boss@example.com\"; offer = \"mxplan-legacy\"; },\n"
      "  { address = \"sales@example.COM\"; offer = \"mxplan-legacy\"; }\n"
      ");\n",
      { ":4: accounts[sales@example.COM].address: duplicate address \"sales@example.com\" "
        "(first at line 2)" } },
    { "accounts: a sender in two accounts",
      "accounts = (\n"
      "  { address = \"a@example.com\"; offer = \"mxplan-legacy\"; senders = [ \"jdoe\" ]; },\n"
      "  { address = \"b@example.com\"; offer = \"mxplan-legacy\";\n"
      "    senders = [ \"JDoe\", \"*@b.example.com\", \"a@example.com\" ]; }\n"
      ");\n",
      { ":4: accounts[b@example.com].senders[2]: \"a@example.com\" already belongs to "
        "accounts[a@example.com] (line 2), which comes first",
        ":4: accounts[b@example.com].senders[0]: \"jdoe\" already belongs to "
        "accounts[a@example.com] (line 2), which comes first" } },
    { "accounts: senders",
      "accounts = ( { address = \"a@example.com\"; offer = \"mxplan-legacy\";\n"
      "  senders = ( \"ok\", 5, \"has space\", \"\" ); on_block = \"reject\";\n"
      "  sasl_map_file = \"sasl_passwd\"; auto_reply = \"no\"; colour = \"red\"; } );\n",
      { ":2: accounts[a@example.com].senders[1]: must be a string (got an integer)",
        ":2: accounts[a@example.com].senders[2]: must be a sender pattern (\"*@example.com\", "
        "\"user@example.com\", \"login\"), without spaces or control characters "
        "(got \"has space\")",
        ":2: accounts[a@example.com].senders[3]: must be a sender pattern (\"*@example.com\", "
        "\"user@example.com\", \"login\"), without spaces or control characters (got \"\")",
        ":2: accounts[a@example.com].on_block: must be hold or tempfail (got \"reject\")",
        ":3: accounts[a@example.com].sasl_map_file: must be an absolute path "
        "(got \"sasl_passwd\")",
        ":3: accounts[a@example.com].auto_reply: must be true or false (got a string)",
        ":3: accounts[a@example.com].colour: unknown key" } },
    { "redis",
      "store = { backend = \"redis\"; redis = {\n"
      "  port = 70000; db = -1; prefix = \"sg:{x}\"; pool_size = 0;\n"
      "  connect_timeout_ms = 0; command_timeout_ms = 60001; unix = \"redis.sock\";\n"
      "  host = \"\"; username = \"a b\";\n"
      "}; };\n",
      { ":2: store.redis.port: must be between 1 and 65535 (got 70000)",
        ":2: store.redis.db: must be between 0 and 65535 (got -1)",
        ":2: store.redis.prefix: must be 1 to 64 printable characters, without spaces, '{' "
        "or '}' (got \"sg:{x}\")",
        ":2: store.redis.pool_size: must be between 1 and 1024 (got 0)",
        ":3: store.redis.connect_timeout_ms: must be between 1 and 60000 (got 0)",
        ":3: store.redis.command_timeout_ms: must be between 1 and 60000 (got 60001)",
        ":3: store.redis.unix: must be an absolute path (got \"redis.sock\")",
        ":4: store.redis.host: must be a non-empty word, without spaces or control "
        "characters (got \"\")",
        ":4: store.redis.username: must be a non-empty word, without spaces or control "
        "characters (got \"a b\")" } },
    { "sentinel",
      "store = { redis = {\n  sentinel = { servers = [ \"10.0.0.1\", \"h:0\", \"[::1]26379\" ]; };\n"
      "}; };\n",
      { ":2: store.redis.sentinel.servers[0]: must be host:port with port from 1 to 65535 "
        "(got \"10.0.0.1\")",
        ":2: store.redis.sentinel.servers[1]: must be host:port with port from 1 to 65535 "
        "(got \"h:0\")",
        ":2: store.redis.sentinel.servers[2]: must be host:port with port from 1 to 65535 "
        "(got \"[::1]26379\")",
        ":2: store.redis.sentinel.master: is required" } },
    { "sentinel: no servers, and a unix socket",
      "store = { redis = { unix = \"/run/redis.sock\";\n"
      "  sentinel = { master = \"m\"; servers = []; }; }; };\n",
      { ":1: store.redis.unix: cannot be used with store.redis.sentinel",
        ":2: store.redis.sentinel.servers: must not be empty" } },
    { "identity rewrites and the memory bound",
      "identity = { batv = 1; verp = [ \"a b@x\" ]; flood_threshold = -1; };\n"
      "store = { memory = { max_identities = -5; size = 3; }; };\n",
      { ":1: identity.batv: must be true or false (got an integer)",
        ":1: identity.verp[0]: must be a sender pattern (\"*@example.com\", \"user@example.com\", "
        "\"login\"), without spaces or control characters (got \"a b@x\")",
        ":1: identity.flood_threshold: must be between 0 and 100000000 (got -1)",
        ":2: store.memory.max_identities: must be between 0 and 100000000 (got -5)",
        ":2: store.memory.size: unknown key" } },
    { "commands",
      "release_command = [];\nafter_password_change = [ \"\", \"x\" ];\n"
      "alert = { command = \"/bin/page\"; };\n",
      { ":1: release_command: must not be empty",
        ":2: after_password_change[0]: must not be empty (it is the program to run)",
        ":3: alert.command: must be a command: an array of strings (got a string)" } },
    { "identity, process, ovh",
      "identity = { tag_separator = \"++\"; };\nuser = \"\";\npidfile = \"run/x.pid\";\n"
      "relay_name = \"relay 1\";\novh = { endpoint = \"ovh-moon\"; credentials = \"ovh.conf\"; };\n"
      "ovh2 = { endpoint = \"https://eu.api.ovh.com/1.0/\"; };\n",
      { ":1: identity.tag_separator: must be one character other than a letter, digit, space, "
        "'@' or '*' (got \"++\")",
        ":2: user: must be a non-empty word, without spaces or control characters (got \"\")",
        ":3: pidfile: must be an absolute path (got \"run/x.pid\")",
        ":4: relay_name: must be 1 to 64 letters, digits, '.', '_' or '-' (got \"relay 1\")",
        ":5: ovh.endpoint: must be ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, "
        "soyoustart-eu, soyoustart-ca or an https:// URL (got \"ovh-moon\")",
        ":5: ovh.credentials: must be an absolute path (got \"ovh.conf\")",
        ":6: ovh2: unknown key (did you mean \"ovh\"?)" } },
    { "integers libconfig would cut to 32 bits",
      "limits = ( { name = \"b\"; window = \"1d\";\n"
      "  bytes = 5000000000; recipients = 0x80000000; messages = 2147483647; } );\n"
      "strict = false; # 9999999999 in a comment is fine\n"
      "user = \"u9999999999\";\n",
      { ":2: syntax: integer 5000000000 does not fit in 32 bits; write 5000000000L",
        ":2: syntax: integer 0x80000000 does not fit in 32 bits; write 0x80000000L" } },
    { "@include of a directory (libconfig 1.5 would exit(2) on it: a reload must not)",
      "strict = false;\n@include \".\"\n",
      { ":2: @include: \".\" is not a regular file" } },
    { "every problem is reported, sorted by line",
      "strict = 2;\n"
      "limits = ( { name = \"h\"; window = \"1h\"; } );\n"
      "accounts = ( { address = \"a@b.c\"; offer = \"exchange\"; } );\n"
      "milter = { socket = \"x\"; };\n",
      { ":1: strict: must be true or false (got an integer)",
        ":2: limits[h]: needs at least one of messages, recipients, bytes, distinct_recipients",
        ":3: accounts[a@b.c].organization: is required for offer exchange",
        ":3: accounts[a@b.c].service: is required for offer exchange",
        ":4: milter.socket: must start with inet:, inet6: or unix: (got \"x\")" } },
};

static void test_bad_configs(void **state)
{
    size_t failures = 0;

    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        struct errs e = { .n = 0 };
        const char *path = write_conf(bc->text);
        char want[1024];
        size_t nwant = 0;
        sg_conf_t *c;
        bool same;

        while (nwant < 12 && bc->want[nwant])
            nwant++;
        assert_true(nwant > 0);                   /* a case must expect something */
        c = sg_conf_load(path, collect, &e);
        same = c == NULL && e.n == nwant;
        for (size_t j = 0; same && j < nwant; j++) {
            snprintf(want, sizeof(want), "%s%s", path, bc->want[j]);
            same = strcmp(e.line[j], want) == 0;
        }
        if (!same) {
            print_error("case \"%s\": %s\n", bc->name, c ? "loaded" : "not the expected lines");
            for (size_t j = 0; j < nwant; j++)
                print_error("  want: %s%s\n", path, bc->want[j]);
            errs_print(&e);
            failures++;
        }
        sg_conf_unref(c);
        errs_free(&e);
    }
    assert_int_equal(failures, 0);
}

static void test_missing_file(void **state)
{
    struct errs e = { .n = 0 };
    char path[512], want[600];

    snprintf(path, sizeof(path), "%s/does-not-exist.conf", scratch);
    assert_null(sg_conf_load(path, collect, &e));
    assert_int_equal(e.n, 1);
    snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
    assert_string_equal(e.line[0], want);
    errs_free(&e);

    assert_null(sg_conf_load(scratch, collect, &e));
    assert_int_equal(e.n, 1);
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", scratch);
    assert_string_equal(e.line[0], want);
    errs_free(&e);
}

/* The password never appears in a message, whatever is wrong with it. */
static void test_secret_not_printed(void **state)
{
    static const char *const texts[] = {
        "store = { redis = { password = \"hunter2\\n\"; }; };\n",
        "store = { redis = { password = \"\"; port = \"hunter2\"; }; };\n",
        "store = { redis = { password = [ \"hunter2\" ]; }; };\n",
    };
    static const char *const want[] = {
        ":1: store.redis.password: must not contain control characters",
        ":1: store.redis.password: must not be empty",
        ":1: store.redis.password: must be a string (got an array [ ])",
    };

    for (size_t i = 0; i < 3; i++) {
        struct errs e = { .n = 0 };
        const char *path = write_conf(texts[i]);
        char line[600];

        assert_null(sg_conf_load(path, collect, &e));
        assert_true(e.n >= 1);
        snprintf(line, sizeof(line), "%s%s", path, want[i]);
        assert_string_equal(e.line[0], line);
        for (size_t j = 0; j < e.n; j++)
            if (strstr(e.line[j], "store.redis.password") != NULL)
                assert_null(strstr(e.line[j], "hunter2"));
        errs_free(&e);
    }
}

/* A password in a file every user can read is refused, the fix named;
 * the same file readable by its group only loads. */
static void test_secret_file_mode(void **state)
{
    struct errs e = { .n = 0 };
    const char *path = write_conf("store = { redis = { password = \"hunter2\"; }; };\n");
    char want[1400];
    sg_conf_t *c;

    (void)state;
    assert_int_equal(chmod(path, 0644), 0);
    assert_null(sg_conf_load(path, collect, &e));
    assert_int_equal(e.n, 1);
    snprintf(want, sizeof(want), "%s:1: store.redis.password: is a secret, and %s is readable "
             "by every user; run: chmod o-r %s", path, path, path);
    assert_string_equal(e.line[0], want);
    assert_null(strstr(e.line[0], "hunter2"));
    errs_free(&e);
    assert_int_equal(chmod(path, 0640), 0);
    c = sg_conf_load(path, NULL, NULL);
    assert_non_null(c);
    sg_conf_unref(c);
}

static void test_include(void **state)
{
    struct errs e = { .n = 0 };
    char main_path[512], want[600], inc_path[512];
    sg_conf_t *c;

    write_file("inc-accounts.conf",
               "accounts = ( { address = \"a@example.com\"; offer = \"mxplan-legacy\"; } );\n");
    snprintf(main_path, sizeof(main_path), "%s",
             write_file("inc-main.conf", "strict = true;\n@include \"inc-accounts.conf\"\n"));
    c = sg_conf_load(main_path, collect, &e);
    errs_print(&e);
    assert_non_null(c);
    assert_non_null(sg_conf_find_account(c, "a@example.com"));
    assert_true(sg_conf_settings(c)->strict);
    sg_conf_unref(c);

    /* a problem in an included file names that file, and comes after the
     * main file's problems */
    snprintf(inc_path, sizeof(inc_path), "%s",
             write_file("inc-bad.conf", "\naccounts = ( { address = \"a@example.com\"; } );\n"));
    snprintf(main_path, sizeof(main_path), "%s",
             write_file("inc-main2.conf", "@include \"inc-bad.conf\"\nstrict = 3;\n"));
    assert_null(sg_conf_load(main_path, collect, &e));
    if (e.n != 2)
        errs_print(&e);
    assert_int_equal(e.n, 2);
    snprintf(want, sizeof(want), "%s:2: strict: must be true or false (got an integer)",
             main_path);
    assert_string_equal(e.line[0], want);
    snprintf(want, sizeof(want), "%s:2: accounts[a@example.com].offer: is required", inc_path);
    assert_string_equal(e.line[1], want);
    errs_free(&e);
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
static const struct CMUnitTest errors_tests[] = {
    cmocka_unit_test(test_bad_configs),
    cmocka_unit_test(test_missing_file),
    cmocka_unit_test(test_secret_not_printed),
    cmocka_unit_test(test_secret_file_mode),
    cmocka_unit_test(test_include),
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

#define GROUP(name, tests) { name, tests, sizeof(tests) / sizeof(tests[0]) }

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        const struct CMUnitTest *tests;
        size_t n;
    } groups[] = {
        GROUP("example", example_tests), GROUP("defaults", defaults_tests),
        GROUP("errors", errors_tests), GROUP("duration", duration_tests),
        GROUP("accounts", accounts_tests), GROUP("lifetime", lifetime_tests),
    };
    int failed = 0, ran = 0;

    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (argc > 1 && strcmp(argv[1], groups[i].name) != 0)
            continue;
        ran++;
        failed += _cmocka_run_group_tests(groups[i].name, groups[i].tests, groups[i].n,
                                          make_scratch, remove_scratch);
    }
    if (ran == 0) {
        fprintf(stderr, "test_conf: no test group named \"%s\"\n", argv[1]);
        return 1;
    }
    return failed ? 1 : 0;
}
