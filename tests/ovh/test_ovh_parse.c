/*
 * test_ovh_parse.c - the pure helpers: ticket evidence (suspicious count and
 * header sample, English and French), password rules per offer, and how
 * errors print.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sg_ovh_internal.h"

static void test_evidence_en(void **state)
{
    struct sg_ovh_message m[2] = {
        { 1, "support", "2024-01-15T10:20:30+01:00",
          "Dear Customer,\n\nWe have currently detected 312 suspicious message(s).\n\n"
          "1. Are you the sender of the e-mail in question (see the header below)?\n\n"
          "Sample of the headers of the e-mails sent:\n\n"
          "Received: from [203.0.113.45] (unknown [203.0.113.45])\n"
          "\tby pro1.mail.ovh.net (Postfix)\nFrom: <sales@example.com>\n" },
        { 2, "customer", "2024-01-15T11:00:00+01:00", "We have 5 suspect things. Received: no" },
    };
    struct sg_ovh_evidence ev;

    (void)state;
    sg_ovh_ticket_evidence(m, 2, &ev);
    assert_int_equal(ev.suspicious, 312);
    assert_non_null(ev.headers);
    assert_true(strncmp(ev.headers, "Received: from [203.0.113.45]", 29) == 0);
    assert_non_null(strstr(ev.headers, "From: <sales@example.com>"));
    sg_ovh_evidence_clear(&ev);
    assert_null(ev.headers);
}

static void test_evidence_fr(void **state)
{
    struct sg_ovh_message m[1] = {
        { 1, "support", "",
          "Cher Client,\n\nNous avons actuellement d\xc3\xa9tect\xc3\xa9 **12** message(s) suspect(s).\n\n"
          "\xc3\x89" "chantillon d'en-t\xc3\xaates :\n\n> Return-Path: <x@example.com>\n" },
    };
    struct sg_ovh_evidence ev;

    (void)state;
    sg_ovh_ticket_evidence(m, 1, &ev);
    assert_int_equal(ev.suspicious, 12);
    assert_non_null(ev.headers);
    assert_non_null(strstr(ev.headers, "Return-Path: <x@example.com>"));
    sg_ovh_evidence_clear(&ev);

    struct sg_ovh_message none[1] = { { 1, "support", "", "Hello, nothing here." } };
    sg_ovh_ticket_evidence(none, 1, &ev);
    assert_int_equal(ev.suspicious, -1);
    assert_null(ev.headers);
    sg_ovh_evidence_clear(&ev);
    sg_ovh_ticket_evidence(NULL, 0, &ev);
    assert_int_equal(ev.suspicious, -1);
}

static void test_password_rules(void **state)
{
    (void)state;
    assert_null(sg_ovh_password_problem(SG_OFFER_MXPLAN_LEGACY, "Abcdef-123"));
    assert_non_null(sg_ovh_password_problem(SG_OFFER_MXPLAN_LEGACY, "short12"));
    assert_non_null(sg_ovh_password_problem(SG_OFFER_MXPLAN_LEGACY, "0123456789012345678901234567890"));
    assert_null(sg_ovh_password_problem(SG_OFFER_MXPLAN_LEGACY, "012345678901234567890123456789"));
    assert_non_null(sg_ovh_password_problem(SG_OFFER_MXPLAN_LEGACY, " Abcdef-123"));
    assert_non_null(sg_ovh_password_problem(SG_OFFER_MXPLAN_LEGACY, "Abcdef-123 "));
    assert_non_null(sg_ovh_password_problem(SG_OFFER_MXPLAN_LEGACY, "Abcd\xc3\xa9" "f-123"));
    assert_null(sg_ovh_password_problem(SG_OFFER_EXCHANGE, "Abcd\xc3\xa9" "f-123"));
    assert_non_null(sg_ovh_password_problem(SG_OFFER_EXCHANGE, ""));
    assert_non_null(sg_ovh_password_problem(SG_OFFER_EMAILPRO, "abc\ndef12345"));
}

static void test_strerror(void **state)
{
    struct sg_ovh_err e;
    char buf[1024];

    (void)state;
    memset(&e, 0, sizeof(e));
    e.rc = SG_OVH_E_API;
    e.http_status = 403;
    snprintf(e.code, sizeof(e.code), "INVALID_CREDENTIAL");
    snprintf(e.message, sizeof(e.message), "This credential is not valid");
    snprintf(e.query_id, sizeof(e.query_id), "EU.ext-3");
    snprintf(e.request, sizeof(e.request), "GET /email/pro/pro1/account/sales@example.com");
    assert_string_equal(sg_ovh_strerror(&e, buf, sizeof(buf)),
        "GET /email/pro/pro1/account/sales@example.com: HTTP 403 INVALID_CREDENTIAL: "
        "This credential is not valid (query id EU.ext-3)");
    assert_true(sg_ovh_err_is_auth(&e));
    e.http_status = 404;
    e.code[0] = '\0';
    assert_false(sg_ovh_err_is_auth(&e));
    sg_ovh_strerror(&e, buf, 10);                    /* truncation is safe */
    assert_int_equal(strlen(buf), 9);

    /* Outside text is escaped on its way into an error. */
    sg_ovh_err_field(e.message, sizeof(e.message), "bad\r\nline\x1b[31m", 14);
    assert_null(strchr(e.message, '\n'));
    assert_null(strchr(e.message, '\x1b'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_evidence_en),
        cmocka_unit_test(test_evidence_fr),
        cmocka_unit_test(test_password_rules),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
