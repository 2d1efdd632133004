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

static struct sg_ev_seen seen(const char *name, uint64_t count, int64_t first)
{
    return (struct sg_ev_seen){ strdup(name), count, first };
}

/* 48 h of evidence: 5 messages an hour from a known IP and mailer, then
 * (when spike) 300 messages in the last hour but one from a new IP. */
static void evidence(int spike, struct sg_evidence_report *r)
{
    int64_t now_hour = NOW / H;

    memset(r, 0, sizeof(*r));
    r->last_seen_ms = NOW - 60000;
    r->hours = calloc(48, sizeof(*r->hours));
    for (int64_t h = now_hour - 47; h <= now_hour; h++)
        r->hours[r->nhours++] = (struct sg_ev_hour){ h, spike && h == now_hour - 1 ? 300 : 5,
                                                     9, 0 };
    r->ips = calloc(2, sizeof(*r->ips));
    r->mailers = calloc(2, sizeof(*r->mailers));
    r->ips[r->nips++] = seen("192.0.2.10", 240, NOW - 40 * H);
    r->mailers[r->nmailers++] = seen("Outlook 16", 240, NOW - 40 * H);
    if (spike) {
        r->ips[r->nips++] = seen("203.0.113.66", 300, NOW - 2 * H + 60000);
        r->mailers[r->nmailers++] = seen("PHPMailer 5.2", 300, NOW - 2 * H + 60000);
    }
    r->domains = calloc(3, sizeof(*r->domains));
    r->domains[r->ndomains++] = seen("gmail.com", 50, -1);
    r->domains[r->ndomains++] = seen("example.org", 400, -1);
    r->domains[r->ndomains++] = seen("yahoo.fr", 7, -1);
    r->from_mismatch = spike ? 300 : 0;
}

static const struct sg_account ACCT = { .address = "sales@example.com",
                                        .offer = SG_OFFER_EMAILPRO };

static void test_spike_and_new_ip(void **state)
{
    struct sg_evidence_report ev;
    char err[128], spark[256];
    struct sg_block_facts f;
    struct sg_block_ticket_info t = { 1234567, 312, false };
    char *draft;

    (void)state;
    evidence(1, &ev);
    assert_int_equal(sg_block_analyse(&ev, NOW, NOW - 24 * H, &f, err, sizeof(err)), 0);
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
    assert_string_equal(f.top_domains[1], "gmail.com");
    assert_int_equal(f.ntop, 3);
    assert_int_equal(f.nhours, 25);                          /* since 24 h ago, this hour too */
    assert_int_equal(f.period_msgs, 24 * 5 + 300);
    assert_int_equal(f.period_rcpts, 25 * 9);
    assert_int_equal(f.from_mismatch, 300);
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
    sg_evidence_report_free(&ev);
}

static void test_quiet_account_is_legitimate(void **state)
{
    struct sg_evidence_report ev;
    char err[128], *draft;
    struct sg_block_facts f;
    struct sg_block_ticket_info t = { 99, -1, true };
    const char *redir[] = { "archive@example.net" };

    (void)state;
    evidence(0, &ev);
    assert_int_equal(sg_block_analyse(&ev, NOW, NOW - 24 * H, &f, err, sizeof(err)), 0);
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
    sg_evidence_report_free(&ev);
    assert_int_equal(sg_block_analyse(NULL, NOW, NOW - H, &f, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no evidence"));
}

static void test_no_traffic_is_not_us(void **state)
{
    struct sg_evidence_report ev = { .last_seen_ms = -1 };     /* what the store gives */
    struct sg_block_facts f;
    struct sg_block_ticket_info t = { 5, 40, false };
    char err[64], *draft;

    (void)state;
    assert_int_equal(sg_block_analyse(&ev, NOW, NOW - 24 * H, &f, err, sizeof(err)), 0);
    assert_int_equal(f.nips, 0);
    assert_int_equal(f.period_msgs, 0);
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
