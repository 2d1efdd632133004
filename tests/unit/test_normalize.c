/*
 * test_normalize.c - identity normalisation, sender patterns and log
 * escaping: the places hostile addresses go through first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sg_log.h"
#include "sg_policy.h"

static struct sg_settings S = { .lowercase = true, .strip_tag = false, .tag_separator = '+' };

static const char *norm(const char *in)
{
    static char out[SG_ADDR_MAX + 1];
    return sg_policy_normalize(&S, in, out);
}

static void test_normalize_basic(void **state)
{
    (void)state;
    assert_string_equal(norm("<John.Doe@Example.COM>"), "john.doe@example.com");
    assert_string_equal(norm("  <a@b>  "), "a@b");
    assert_string_equal(norm("<>"), "<>");
    assert_string_equal(norm(""), "<>");
    assert_string_equal(norm(NULL), "<>");
    assert_string_equal(norm("JDoe"), "jdoe");                       /* SASL login */
    assert_string_equal(norm("<\"John Doe\"@Example.com>"), "\"john doe\"@example.com");
    assert_string_equal(norm("<J\xc3\xa9r\xc3\xb4me@exemple.fr>"), "j\xc3\xa9r\xc3\xb4me@exemple.fr");
    assert_string_equal(norm("<sales+news@x.com>"), "sales+news@x.com");
    S.strip_tag = true;
    assert_string_equal(norm("<sales+news@x.com>"), "sales@x.com");
    assert_string_equal(norm("<+only@x.com>"), "+only@x.com");        /* no local part left */
    assert_string_equal(norm("a+b+c@x"), "a@x");
    S.strip_tag = false;
    S.lowercase = false;
    assert_string_equal(norm("<Mixed@Case>"), "Mixed@Case");
    S.lowercase = true;
}

static void test_normalize_long(void **state)
{
    char a[2100], b[2100], ra[SG_ADDR_MAX + 1], rb[SG_ADDR_MAX + 1];

    (void)state;
    memset(a, 'x', 2000);
    strcpy(a + 2000, "@a.com");
    memcpy(b, a, sizeof(a));
    b[1999] = 'y';
    sg_policy_normalize(&S, a, ra);
    sg_policy_normalize(&S, b, rb);
    assert_int_equal(strlen(ra), SG_ADDR_MAX);
    assert_string_not_equal(ra, rb);                       /* distinct stays distinct */
    assert_non_null(strchr(ra, '#'));
}

static const char *sender(const char *in)
{
    static char out[SG_ADDR_MAX + 1];
    return sg_policy_sender(&S, in, out);
}

/* BATV, SRS and VERP: off by default (the identity stays unique), each
 * undone when enabled; what does not parse is left alone. */
static void test_sender_rewrites(void **state)
{
    static const char *const verp[] = { "bounce-*@lists.example.com" };

    (void)state;
    assert_string_equal(sender("<prvs=1a2b3c4d5e=jane@example.com>"),
                        "prvs=1a2b3c4d5e=jane@example.com");
    assert_string_equal(sender("<SRS0=HHH=TT=example.org=jane@fwd.example>"),
                        "srs0=hhh=tt=example.org=jane@fwd.example");
    assert_string_equal(sender("<bounce-1234-jane=example.org@lists.example.com>"),
                        "bounce-1234-jane=example.org@lists.example.com");
    S.batv = true;
    S.srs = true;
    S.verp = verp;
    S.nverp = 1;
    assert_string_equal(sender("<prvs=1a2b3c4d5e=jane@example.com>"), "jane@example.com");
    assert_string_equal(sender("<PRVS=0123ABCDEF=Jane@Example.com>"), "jane@example.com");
    assert_string_equal(sender("<prvs=zz=jane@example.com>"), "prvs=zz=jane@example.com");
    assert_string_equal(sender("<prvs=1a2b3c4d5e=@example.com>"), "prvs=1a2b3c4d5e=@example.com");
    assert_string_equal(sender("<SRS0=HHH=TT=example.org=jane@fwd.example>"),
                        "jane@example.org");
    assert_string_equal(sender("<SRS0+xGf3=2A=example.org=jane@fwd.example>"),
                        "jane@example.org");
    assert_string_equal(sender("<SRS1=HHH=first.example==HHH=TT=example.org=jane@second.example>"),
                        "jane@example.org");
    assert_string_equal(sender("<srs0=broken@fwd.example>"), "srs0=broken@fwd.example");
    /* SRS around BATV: both undone */
    assert_string_equal(sender("<SRS0=HH=TT=example.com=prvs=1a2b3c4d5e=jane@fwd.example>"),
                        "jane@example.com");
    assert_string_equal(sender("<bounce-1234-jane=example.org@lists.example.com>"),
                        "bounce-*@lists.example.com");
    assert_string_equal(sender("<bounce-99-bob=example.net@lists.example.com>"),
                        "bounce-*@lists.example.com");
    assert_string_equal(sender("<news@lists.example.com>"), "news@lists.example.com");
    assert_string_equal(sender("<>"), "<>");
    /* the +tag is stripped after SRS is undone (SRS0+ is not a tag) */
    S.strip_tag = true;
    assert_string_equal(sender("<SRS0+xGf3=2A=example.org=jane+news@fwd.example>"),
                        "jane@example.org");
    S.strip_tag = false;
    S.batv = false;
    S.srs = false;
    S.verp = NULL;
    S.nverp = 0;
}

static void test_match(void **state)
{
    (void)state;
    assert_true(sg_policy_match("*@sales.example.com", "bob@sales.example.com"));
    assert_false(sg_policy_match("*@sales.example.com", "bob@example.com"));
    assert_false(sg_policy_match("*@sales.example.com", "bob@xsales.example.com.evil"));
    assert_true(sg_policy_match("jdoe", "jdoe"));
    assert_false(sg_policy_match("jdoe", "jdoe2"));
    assert_true(sg_policy_match("*", "anything"));
    assert_true(sg_policy_match("fax*@*", "fax01@example.com"));
    assert_false(sg_policy_match("fax*@*", "ofax@example.com"));
    assert_true(sg_policy_match("a*b*c", "aXXbYYc"));
    assert_false(sg_policy_match("a*b*c", "aXXbYYcd"));
}

static void test_account_mapping(void **state)
{
    static const char *s1[] = { "sales@example.com", "*@sales.example.com", "jdoe" };
    static const char *s2[] = { "boss@example.com", "*@example.com" };
    struct sg_account accts[2] = {
        { .address = "sales@example.com", .senders = s1, .nsenders = 3 },
        { .address = "boss@example.com", .senders = s2, .nsenders = 2 },
    };
    struct sg_settings s = S;

    (void)state;
    s.accounts = accts;
    s.naccounts = 2;
    assert_ptr_equal(sg_policy_account(&s, "jdoe"), &accts[0]);
    assert_ptr_equal(sg_policy_account(&s, "x@sales.example.com"), &accts[0]);
    assert_ptr_equal(sg_policy_account(&s, "sales@example.com"), &accts[0]);   /* first wins */
    assert_ptr_equal(sg_policy_account(&s, "other@example.com"), &accts[1]);
    assert_null(sg_policy_account(&s, "stranger@else.org"));
}

static void test_log_escape(void **state)
{
    char out[64];

    (void)state;
    sg_log_esc(out, sizeof(out), "a\r\nqid=1 action=accept");
    assert_null(strchr(out, '\r'));
    assert_null(strchr(out, '\n'));
    assert_null(strchr(out, ' '));
    assert_null(strchr(out, '='));
    assert_string_equal(out, "a\\x0d\\x0aqid\\x3d1\\x20action\\x3daccept");
    sg_log_esc(out, 16, "0123456789abcdefghij");
    assert_int_equal(strlen(out), 15);
    assert_string_equal(out + 12, "...");
    sg_log_esc(out, sizeof(out), "<x>");
    assert_string_equal(out, "\\x3cx\\x3e");
    sg_log_esc(out, sizeof(out), NULL);
    assert_string_equal(out, "-");
    /* the README promises '"' and '\\' are escaped too (a quoted value
     * could otherwise end early in a log parser) */
    sg_log_esc(out, sizeof(out), "a\"b\\c");
    assert_string_equal(out, "a\\x22b\\x5cc");
    /* every byte outside printable ASCII, and each of the six characters */
    for (int c = 1; c < 256; c++) {
        char in[2] = { (char)c, 0 };
        bool plain = c > 0x20 && c < 0x7f && !strchr("\"\\<>=", c);

        sg_log_esc(out, sizeof(out), in);
        if (plain)
            assert_int_equal(out[0], c);
        else
            assert_int_equal(strlen(out), 4);             /* \xHH */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_basic),
        cmocka_unit_test(test_normalize_long),
        cmocka_unit_test(test_sender_rewrites),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_account_mapping),
        cmocka_unit_test(test_log_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
