/*
 * test_conf_errors.c - unit tests of conf/ on bad input: every bad file
 * gives exactly the expected "FILE:LINE: key: problem" lines, a missing
 * file, a secret never printed, a secret file's mode, includes.
 * Must not: read or write outside its scratch directory, or pass a group
 * it did not run.
 *
 * Usage: test_conf_errors [errors]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "test_conf_util.h"

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

static const struct CMUnitTest errors_tests[] = {
    cmocka_unit_test(test_bad_configs),
    cmocka_unit_test(test_missing_file),
    cmocka_unit_test(test_secret_not_printed),
    cmocka_unit_test(test_secret_file_mode),
    cmocka_unit_test(test_include),
};

int main(int argc, char **argv)
{
    static const struct conf_group groups[] = { CONF_GROUP("errors", errors_tests) };

    return conf_test_main("test_conf_errors", argc, argv, groups, 1);
}
