/*
 * test_block.c - the block workflow's own logic: evidence → facts (spike,
 * new IPs), the draft answers, passwords, the SASL map rewrite.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "sg_block.h"

#define H 3600000LL
static const int64_t NOW = 1764230400000LL + 30 * 60000;   /* some hour + 30 min */

/* 48 h of evidence: 5 messages an hour from a known IP and mailer, then
 * (when spike) 300 messages in the last hour but one from a new IP. */
static char *evidence(int spike)
{
    json_t *root = json_object(), *hourly = json_object();
    int64_t now_hour = NOW / H;
    char k[32], *s;

    for (int64_t h = now_hour - 47; h <= now_hour; h++) {
        snprintf(k, sizeof(k), "%lld", (long long)h);
        json_object_set_new(hourly, k, json_pack("{s:I,s:I,s:I}", "messages", (json_int_t)
                            (spike && h == now_hour - 1 ? 300 : 5), "recipients", (json_int_t)9,
                            "refused", (json_int_t)0));
    }
    json_object_set_new(root, "hourly", hourly);
    json_object_set_new(root, "by_ip", json_pack("{s:{s:I,s:I}}", "192.0.2.10", "count",
                        (json_int_t)240, "first_seen", (json_int_t)(NOW - 40 * H)));
    json_object_set_new(root, "by_mailer", json_pack("{s:{s:I,s:I}}", "Outlook 16", "count",
                        (json_int_t)240, "first_seen", (json_int_t)(NOW - 40 * H)));
    if (spike) {
        json_object_set_new(json_object_get(root, "by_ip"), "203.0.113.66",
                            json_pack("{s:I,s:I}", "count", (json_int_t)300, "first_seen",
                                      (json_int_t)(NOW - 2 * H + 60000)));
        json_object_set_new(json_object_get(root, "by_mailer"), "PHPMailer 5.2",
                            json_pack("{s:I,s:I}", "count", (json_int_t)300, "first_seen",
                                      (json_int_t)(NOW - 2 * H + 60000)));
    }
    json_object_set_new(root, "by_domain", json_pack("{s:I,s:I,s:I}", "gmail.com", (json_int_t)50,
                        "example.org", (json_int_t)400, "yahoo.fr", (json_int_t)7));
    json_object_set_new(root, "from_mismatch", json_integer(spike ? 300 : 0));
    s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

static const struct sg_account ACCT = { .address = "sales@example.com",
                                        .offer = SG_OFFER_EMAILPRO };

static void test_spike_and_new_ip(void **state)
{
    char *ev = evidence(1), err[128], spark[256];
    struct sg_block_facts f;
    struct sg_block_ticket_info t = { 1234567, 312, false };
    char *draft;

    (void)state;
    assert_int_equal(sg_block_analyse(ev, NOW, NOW - 24 * H, &f, err, sizeof(err)), 0);
    assert_true(f.have_baseline);
    assert_true(f.spike);
    assert_int_equal(f.spike_msgs, 300);
    assert_int_equal(f.baseline_per_hour, 5);
    assert_int_equal(f.new_ips, 1);
    assert_int_equal(f.new_mailers, 1);
    assert_string_equal(f.ips[0].name, "203.0.113.66");      /* most messages first */
    assert_true(f.ips[0].is_new);
    assert_false(f.ips[1].is_new);
    assert_string_equal(f.top_domains[0], "example.org");
    assert_int_equal(f.top_domain_count[0], 400);
    assert_false(sg_block_looks_legitimate(&f));
    sg_block_spark(f.msgs, f.nhours, spark, sizeof(spark));
    assert_non_null(strstr(spark, "\u2588"));                 /* the spike is the full bar */
    assert_non_null(strstr(spark, "\u2581"));
    draft = sg_block_draft(&ACCT, &f, &t, NULL, 0, false);
    assert_non_null(strstr(draft, "1. Are you the sender"));
    assert_non_null(strstr(draft, "\nNo. "));
    assert_non_null(strstr(draft, "203.0.113.66 (300 messages)"));
    assert_non_null(strstr(draft, "PHPMailer 5.2"));
    assert_non_null(strstr(draft, "312 suspicious"));
    assert_non_null(strstr(draft, "could not be read through the API"));
    assert_non_null(strstr(draft, "3. Have you replied to a spam?"));
    assert_non_null(strstr(draft, "300 message(s) whose From:"));
    free(draft);
    sg_block_facts_free(&f);
    free(ev);
}

static void test_quiet_account_is_legitimate(void **state)
{
    char *ev = evidence(0), err[128], *draft;
    struct sg_block_facts f;
    struct sg_block_ticket_info t = { 99, -1, true };
    const char *redir[] = { "archive@example.net" };

    (void)state;
    assert_int_equal(sg_block_analyse(ev, NOW, NOW - 24 * H, &f, err, sizeof(err)), 0);
    assert_false(f.spike);
    assert_int_equal(f.new_ips, 0);
    assert_true(sg_block_looks_legitimate(&f));
    draft = sg_block_draft(&ACCT, &f, &t, redir, 1, true);    /* French ticket */
    assert_non_null(strstr(draft, "\nOui. "));
    assert_non_null(strstr(draft, "archive@example.net"));
    assert_non_null(strstr(draft, "Avez-vous r\u00e9pondu"));
    free(draft);
    draft = sg_block_draft(&ACCT, &f, &t, NULL, 0, true);
    assert_non_null(strstr(draft, "aucune redirection"));
    free(draft);
    sg_block_facts_free(&f);
    free(ev);
    assert_int_equal(sg_block_analyse("not json", NOW, NOW - H, &f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a JSON object"));
}

static void test_no_traffic_is_not_us(void **state)
{
    struct sg_block_facts f;
    struct sg_block_ticket_info t = { 5, 40, false };
    char err[64], *draft;

    (void)state;
    assert_int_equal(sg_block_analyse("{}", NOW, NOW - 24 * H, &f, err, sizeof(err)), 0);
    assert_false(sg_block_looks_legitimate(&f));   /* OVHcloud saw spam we never relayed */
    draft = sg_block_draft(&ACCT, &f, &t, NULL, 0, true);
    assert_non_null(strstr(draft, "\nNo. "));
    assert_non_null(strstr(draft, "sent no mail at all"));
    free(draft);
    sg_block_facts_free(&f);
}

static void test_password(void **state)
{
    char a[31], b[31];

    (void)state;
    assert_int_equal(sg_block_password(a, 20), 0);
    assert_int_equal(sg_block_password(b, 20), 0);
    assert_int_equal(strlen(a), 20);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 200; i++) {
        int up = 0, lo = 0, di = 0, sy = 0;
        assert_int_equal(sg_block_password(a, 12 + i % 19), 0);
        for (char *p = a; *p; p++) {
            assert_true(*p > 0x20 && *p < 0x7f && *p != ':');
            up |= *p >= 'A' && *p <= 'Z';
            lo |= *p >= 'a' && *p <= 'z';
            di |= *p >= '0' && *p <= '9';
            sy |= strchr("-_.!#%+=", *p) != NULL;
        }
        assert_true(up && lo && di && sy);
    }
    assert_int_equal(sg_block_password(a, 31), -1);
    assert_int_equal(sg_block_password(a, 8), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spike_and_new_ip),
        cmocka_unit_test(test_quiet_account_is_legitimate),
        cmocka_unit_test(test_no_traffic_is_not_us),
        cmocka_unit_test(test_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
