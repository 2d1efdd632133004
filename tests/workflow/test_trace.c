/*
 * test_trace.c - workflow/sg_trace: the ticket's header sample traced to the
 * relays' records (issue 18).
 *
 * The Received: headers are real: written by Postfix in the end-to-end
 * harness and saved at smtp-sink by tests/workflow/data/capture.py (its
 * capture.txt names the queue ids and Message-IDs). A missing data file
 * fails the test. The samples are quoted here the ways tickets quote them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "sg_trace.h"

#define H 3600000LL

/* --- the captured data ------------------------------------------------------ */

static char *slurp(const char *name)
{
    char path[512], *s;
    FILE *f;
    long n;

    snprintf(path, sizeof(path), "%s/%s", SG_TRACE_DATA, name);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("missing data file %s (tests/workflow/data/capture.py makes it)", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static struct {
    char esmtpa_qid[64], esmtp_qid[64], esmtpa_msgid[256], esmtp_msgid[256], relay[128];
    char login[64], ip[48];
} cap;

static void load_capture(void)
{
    char *s = slurp("capture.txt"), *save = NULL;

    for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(l, '=');
        assert_non_null(eq);
        *eq++ = '\0';
#define KV(k) if (strcmp(l, #k) == 0) snprintf(cap.k, sizeof(cap.k), "%s", eq)
        KV(esmtpa_qid);
        KV(esmtp_qid);
        KV(relay);
        KV(login);
        KV(ip);
        if (strcmp(l, "client_ip") == 0)
            snprintf(cap.ip, sizeof(cap.ip), "%s", eq);
        if (strcmp(l, "esmtpa_msgid") == 0 || strcmp(l, "esmtp_msgid") == 0) {
            char *v = eq[0] == '<' ? eq + 1 : eq;
            size_t n = strcspn(v, ">");
            snprintf(l[1] == 's' && l[5] == 'a' ? cap.esmtpa_msgid : cap.esmtp_msgid, 256,
                     "%.*s", (int)n, v);
        }
#undef KV
    }
    free(s);
    assert_true(cap.esmtpa_qid[0] && cap.esmtp_qid[0] && cap.esmtpa_msgid[0] &&
                cap.esmtp_msgid[0] && cap.relay[0] && cap.login[0] && cap.ip[0]);
}

/* A body the way a ticket quotes a sample: prefix on every line, CRLF. */
static char *quoted(const char *s, const char *prefix, bool crlf)
{
    size_t n = strlen(s), cap_ = n * 3 + 64, k = 0;
    char *o = malloc(cap_);

    assert_non_null(o);
    k += (size_t)sprintf(o, "Hello,%s%s", crlf ? "\r\n" : "\n", crlf ? "\r\n" : "\n");
    bool bol = true;
    for (size_t i = 0; i < n; i++) {
        if (bol) {
            k += (size_t)sprintf(o + k, "%s", prefix);
            bol = false;
        }
        if (s[i] == '\n') {
            if (crlf)
                o[k++] = '\r';
            bol = true;
        }
        o[k++] = s[i];
    }
    o[k] = '\0';
    return o;
}

/* The same as an HTML ticket body: <br>, entities, &nbsp; for the folds. */
static char *html(const char *s)
{
    size_t n = strlen(s), k = 0;
    char *o = malloc(n * 14 + 64);

    assert_non_null(o);
    k += (size_t)sprintf(o, "<p>Bonjour,</p><p>");
    for (size_t i = 0; i < n; i++) {
        const char *r = s[i] == '<' ? "&lt;" : s[i] == '>' ? "&gt;" : s[i] == '&' ? "&amp;"
                      : s[i] == '\t' ? "&nbsp;&nbsp;" : s[i] == '\n' ? "<br />\n" : NULL;
        if (r)
            k += (size_t)sprintf(o + k, "%s", r);
        else
            o[k++] = s[i];
    }
    k += (size_t)sprintf(o + k, "</p>");
    o[k] = '\0';
    return o;
}

/* --- the records ------------------------------------------------------------ */

static struct sg_ev_msg rec(int64_t t, const char *qid, const char *ip, const char *id,
                            const char *msgid, const char *mailer, const char *relay)
{
    struct sg_ev_msg m = { .t_ms = t, .qid = (char *)qid, .ip = (char *)ip,
                           .identity = (char *)id, .msgid = (char *)msgid,
                           .mailer = (char *)mailer, .relay = (char *)relay, .rcpts = 1 };
    return m;
}

static const struct sg_trace_relay RELAYS[] = { { "mx9.example.net", NULL },
                                                { "sg-e2e.example", "relay1" } };

/* The capture's time is read from its own hop; the record covers 2 days
 * before it to 1 h after. */
static int64_t T0;

static void lookup(struct sg_trace_lookup *lk, struct sg_trace_array *arr, struct sg_ev_msg *v,
                   size_t n)
{
    arr->v = v;
    arr->n = n;
    memset(lk, 0, sizeof(*lk));
    sg_trace_lookup_array(lk, arr);
    lk->relays = RELAYS;
    lk->nrelays = 2;
    lk->now_ms = T0 + H;
}

static struct sg_trace_result *trace(const char *body, struct sg_trace_lookup *lk)
{
    struct sg_trace_samples *s = sg_trace_parse(body, strlen(body));
    struct sg_trace_result *r = malloc(sizeof(*r));

    assert_non_null(s);
    assert_non_null(r);
    sg_trace_match(s, lk, r);
    free(s);
    return r;
}

/* --- parsing ---------------------------------------------------------------- */

static void check_esmtpa(const struct sg_trace_samples *s)
{
    const struct sg_trace_sample *x;

    assert_int_equal(s->n, 1);
    x = &s->s[0];
    assert_int_equal(x->nhops, 2);
    assert_false(x->truncated);
    assert_string_equal(x->hops[0].by, "smtp-sink");
    assert_string_equal(x->hops[0].from, cap.relay);
    assert_string_equal(x->hops[1].by, cap.relay);
    assert_string_equal(x->hops[1].with, "ESMTPA");
    assert_string_equal(x->hops[1].id, cap.esmtpa_qid);
    assert_string_equal(x->hops[1].from, "client.example");
    assert_string_equal(x->hops[1].from_rdns, "unknown");
    assert_string_equal(x->hops[1].ip, cap.ip);
    assert_string_equal(x->hops[1].auth, cap.login);
    assert_true(x->hops[1].t_ms > 1700000000000LL);
    assert_true(x->hops[0].t_ms >= x->hops[1].t_ms);
    assert_string_equal(x->msgid, cap.esmtpa_msgid);
    assert_string_equal(x->mailer, "sendguard-harness");    /* X-Mailer before User-Agent */
    assert_string_equal(x->from, "<alice@example.com>");
    assert_true(x->date_seen);
    assert_true(x->date_ms > 0 && x->date_ms <= x->hops[1].t_ms + 60000);
}

static void test_parse_real_postfix(void **state)
{
    char *raw = slurp("postfix-esmtpa.txt"), *raw2 = slurp("postfix-esmtp.txt");
    struct sg_trace_samples *s = sg_trace_parse(raw, strlen(raw));

    (void)state;
    check_esmtpa(s);
    T0 = s->s[0].hops[1].t_ms;
    free(s);
    s = sg_trace_parse(raw2, strlen(raw2));
    assert_int_equal(s->n, 1);
    assert_string_equal(s->s[0].hops[1].with, "ESMTP");
    assert_string_equal(s->s[0].hops[1].id, cap.esmtp_qid);
    assert_string_equal(s->s[0].hops[1].auth, "");
    assert_string_equal(s->s[0].msgid, cap.esmtp_msgid);
    free(s);
    free(raw);
    free(raw2);
}

static void test_parse_quoted_forms(void **state)
{
    char *raw = slurp("postfix-esmtpa.txt");
    const char *prefixes[] = { "> ", ">> ", "> > ", ">", "" };
    (void)state;

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        for (int crlf = 0; crlf < 2; crlf++) {
            char *b = quoted(raw, prefixes[i], crlf);
            struct sg_trace_samples *s = sg_trace_parse(b, strlen(b));
            check_esmtpa(s);
            free(s);
            free(b);
        }
    {
        char *b = html(raw);
        struct sg_trace_samples *s = sg_trace_parse(b, strlen(b));
        check_esmtpa(s);
        free(s);
        free(b);
    }
    {   /* HTML with the sample in <pre>: its own line ends and tabs, entities */
        size_t n = strlen(raw) * 5 + 100, k = 0;
        char *b = malloc(n);
        struct sg_trace_samples *s;
        assert_non_null(b);
        k += (size_t)sprintf(b, "<div>Bonjour,<br>voici :</div>\n<pre>\n");
        for (const char *c = raw; *c; c++)
            k += (size_t)sprintf(b + k, "%s", *c == '<' ? "&lt;" : *c == '>' ? "&gt;"
                                              : (char[2]){ *c, 0 });
        sprintf(b + k, "</pre>\n<p>Cordialement</p>");
        s = sg_trace_parse(b, strlen(b));
        check_esmtpa(s);
        free(s);
        free(b);
    }
    free(raw);
}

static void test_parse_several_samples(void **state)
{
    char *a = slurp("postfix-esmtpa.txt"), *b = slurp("postfix-esmtp.txt");
    char *body = malloc(strlen(a) + strlen(b) + 200);
    struct sg_trace_samples *s;

    (void)state;
    sprintf(body, "Sample of the headers:\n\n%s\n---\nAnother one:\n%s", a, b);
    s = sg_trace_parse(body, strlen(body));
    assert_int_equal(s->n, 2);
    assert_string_equal(s->s[0].hops[1].id, cap.esmtpa_qid);
    assert_string_equal(s->s[1].hops[1].id, cap.esmtp_qid);
    assert_string_equal(s->s[1].msgid, cap.esmtp_msgid);
    free(s);
    /* back to back, no separator: the repeated Received: after the others starts a sample */
    sprintf(body, "%s%s", a, b);
    s = sg_trace_parse(body, strlen(body));
    assert_int_equal(s->n, 2);
    free(s);
    free(body);
    free(a);
    free(b);
}

static void test_parse_bounds(void **state)
{
    size_t n = 40 * 200 + 20 * 200 + SG_TRACE_INPUT_MAX;
    char *b = malloc(n + 1), *p = b;
    struct sg_trace_samples *s;

    (void)state;
    for (int i = 0; i < 40; i++)
        p += sprintf(p, "Received: from h%d ([192.0.2.%d]) by x%d with SMTP id Q%d; "
                        "2 Dec 2026 10:00 +0000\n", i, i, i, i);
    p += sprintf(p, "Message-ID: <");
    memset(p, 'm', 1000);
    p += 1000;
    p += sprintf(p, "@x>\n");
    for (int i = 0; i < 20; i++)
        p += sprintf(p, "Message-ID: <s%d@x>\nDate: 2 Dec 2026 10:00 +0000\n", i);
    s = sg_trace_parse(b, strlen(b));
    assert_int_equal(s->n, SG_TRACE_MAX_SAMPLES);
    assert_true(s->more);
    assert_int_equal(s->s[0].nhops, SG_TRACE_MAX_HOPS);
    assert_true(s->s[0].hops_cut);
    assert_true(strlen(s->s[0].msgid) < SG_TRACE_VALUE);
    assert_string_equal(s->s[0].hops[15].id, "Q15");
    free(s);
    /* longer than the bound: read up to it, said so, the open sample marked cut */
    p = b;
    p += sprintf(p, "Message-ID: <big@x>\nX-Mailer: ");
    memset(p, 'y', n - 40);
    p[n - 40] = '\0';
    s = sg_trace_parse(b, strlen(b));
    assert_true(s->input_cut);
    assert_int_equal(s->n, 1);
    assert_true(s->s[0].truncated);
    assert_true(strlen(s->s[0].mailer) < SG_TRACE_VALUE);
    free(s);
    /* no sample at all / a header block with neither Message-ID nor hop */
    s = sg_trace_parse("Dear customer,\nplease answer.\n", 30);
    assert_int_equal(s->n, 0);
    assert_int_equal(s->unreadable, 0);
    free(s);
    s = sg_trace_parse("From: a@b\nTo: c@d\nSubject: x\n", 29);
    assert_int_equal(s->n, 0);
    assert_int_equal(s->unreadable, 1);
    free(s);
    s = sg_trace_parse(NULL, 0);
    assert_int_equal(s->n, 0);
    free(s);
    free(b);
}

static void test_dates(void **state)
{
    static const struct { const char *s; int64_t ms; } v[] = {
        { "Wed,  2 Dec 2026 15:40:02 +0000 (UTC)", 1796226002000LL },
        { "Wed, 02 Dec 2026 16:40:02 +0100", 1796226002000LL },
        { "2 Dec 2026 15:40:02 GMT", 1796226002000LL },
        { "2 Dec 26 15:40:02 UT", 1796226002000LL },
        { " (comment) Wednesday, 2 December 2026 16:40:02 CET", 1796226002000LL },
        { "Wed, 2 Dec 2026 15:40 +0000", 1796226000000LL },
        { "2026-12-02T16:40:02+01:00", 1796226002000LL },
        { "Wed Dec 2 15:40:02 2026", -1 },      /* asctime: the year after the time, refused */
        { "Wed, 2 Dec 2026 10:40:02 EST", 1796226002000LL },
        { "2 Dec 2026 15:40:02", 1796226002000LL },   /* no zone: +0000 */
        { "yesterday", -1 }, { "", -1 }, { "32 Dec 2026 10:00 +0000", -1 },
        { "2 Foo 2026 10:00 +0000", -1 }, { "2 Dec 2026 25:00 +0000", -1 },
        { "2 Dec 2026 10:00 +2", -1 }, { "31 Dec 1969 23:59:59 +0000", -1 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int64_t got = sg_trace_date(v[i].s, strlen(v[i].s));
        if (got != v[i].ms)
            fail_msg("date \"%s\": got %lld, want %lld", v[i].s, (long long)got,
                     (long long)v[i].ms);
    }
    /* never read past len: a date cut to its first 11 bytes has no time */
    assert_int_equal(sg_trace_date("2 Dec 2026 15:40:02 +0000", 11), -1);
}

/* --- conclusions ------------------------------------------------------------ */

static struct sg_ev_msg RECS[6];

static void fill_records(void)
{
    RECS[0] = rec(T0 - 47 * H, "OLD1", "192.0.2.99", "bob", "<x1@example.org>", "Outlook", "relay1");
    RECS[1] = rec(T0, cap.esmtpa_qid, cap.ip, cap.login, NULL, "sendguard-harness", "relay1");
    RECS[1].msgid = (char *)"<whatever@else>";    /* the hop decides, not the Message-ID */
    RECS[2] = rec(T0 - 1000, "SAMEHOUR1", cap.ip, "carol", "<c@x>", "PHPMailer", "relay1");
    RECS[3] = rec(T0 + 1000, "SAMEHOUR2", "198.51.100.7", cap.login, "<d@x>", "PHPMailer", "relay1");
    RECS[4] = rec(T0 + 2000, "OTHERIP", "198.51.100.8", "dave", "<e@x>", "PHPMailer", "relay1");
    RECS[5] = rec(T0 - 5 * H, "BYMSGID", "192.0.2.50", "erin",
                  " <sg-by-msgid@example.org> ", "Thunderbird", "relay1");
}

static void test_passed_by_hop(void **state)
{
    char *raw = slurp("postfix-esmtpa.txt"), *body = quoted(raw, "> ", true), *t, *en, *fr, *j;
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_result *r;
    json_t *o;

    (void)state;
    fill_records();
    lookup(&lk, &arr, RECS, 6);
    r = trace(body, &lk);
    assert_int_equal(r->verdict, SG_TRACE_PASSED);
    assert_int_equal(r->f[0].how, SG_TRACE_BY_HOP);
    assert_string_equal(r->f[0].msg.qid, cap.esmtpa_qid);
    assert_string_equal(r->f[0].msg.identity, cap.login);
    assert_int_equal(r->f[0].others_total, 2);    /* same IP (carol) and same login */

    t = sg_trace_text(r, "sales@example.com");
    assert_non_null(strstr(t, cap.esmtpa_qid));
    assert_non_null(strstr(t, "client IP 127.0.0.1, login alice"));
    assert_non_null(strstr(t, "SAMEHOUR1"));
    assert_non_null(strstr(t, "SAMEHOUR2"));
    assert_null(strstr(t, "OTHERIP"));
    assert_null(strstr(t, "rotate-password"));
    en = sg_trace_answer(r, "sales@example.com", false);
    fr = sg_trace_answer(r, "sales@example.com", true);
    assert_true(strncmp(en, "Yes. ", 5) == 0);
    assert_true(strncmp(fr, "Oui. ", 5) == 0);
    assert_non_null(strstr(en, cap.esmtpa_qid));
    assert_non_null(strstr(en, "from the client IP address 127.0.0.1 (login alice"));
    assert_non_null(strstr(en, "2 other message(s)"));
    assert_non_null(strstr(fr, cap.esmtpa_qid));
    assert_non_null(strstr(fr, "depuis l'adresse IP cliente 127.0.0.1 (identifiant alice"));
    assert_non_null(strstr(fr, "[\u00e0 compl\u00e9ter"));
    o = sg_trace_json(r);
    j = json_dumps(o, JSON_COMPACT);
    assert_non_null(strstr(j, "\"verdict\":\"passed\""));
    assert_non_null(strstr(j, "\"matched_by\":\"received\""));
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(
        json_object_get(o, "samples"), 0), "message"), "qid")), cap.esmtpa_qid);
    json_decref(o);
    free(j);
    free(t);
    free(en);
    free(fr);
    free(r);
    free(body);
    free(raw);
}

/* Cut by the ticket after the relay hop of smtp-sink: our hop is gone, the
 * Message-ID (the record's) is what is left. */
static void test_passed_by_msgid(void **state)
{
    char body[1024];
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_result *r;
    char *en;

    (void)state;
    fill_records();
    lookup(&lk, &arr, RECS, 6);
    snprintf(body, sizeof(body), "Message-ID: <sg-by-msgid@example.org>\n"
             "Received: from sg-e2e.example ([127.0.0.1])\n\tby smtp-sink (smtp-sink) with ESMTP "
             "id 9f00;\n\tWed, 2 Dec 2026 10:00:00 +0000\n[...]\n");
    r = trace(body, &lk);
    /* Message-ID first, then Received: two blocks; the first is the match */
    assert_int_equal(r->verdict, SG_TRACE_PASSED);
    assert_int_equal(r->f[0].how, SG_TRACE_BY_MSGID);
    assert_string_equal(r->f[0].msg.qid, "BYMSGID");
    en = sg_trace_answer(r, NULL, false);
    assert_non_null(strstr(en, "BYMSGID"));
    assert_non_null(strstr(en, "192.0.2.50"));
    free(en);
    free(r);
}

/* OVHcloud's own sample of a message sent from elsewhere (their relay, an
 * unknown client), dated inside the record. */
#define ELSEWHERE \
    "Notre syst\xc3\xa8me a d\xc3\xa9tect\xc3\xa9 ...\n\n" \
    "\xc3\x89" "chantillon d'en-t\xc3\xaates des e-mails envoy\xc3\xa9s :\n\n" \
    "> Received: from [203.0.113.45] (unknown [203.0.113.45])\n" \
    ">\t(Authenticated sender: sales@example.com)\n" \
    ">\tby pro1.mail.ovh.net (Postfix) with ESMTPSA id 4F2A1C3B7\n" \
    ">\tfor <victim1@example.invalid>; %s\n" \
    "> From: \"Invoice Department\" <sales@example.com>\n" \
    "> Subject: Your invoice #88412 is ready\n" \
    "> Date: %s\n" \
    "> Message-ID: <20240115102030.4F2A1C3B7@example.com>\n" \
    "> X-Mailer: PHPMailer 5.2.7 (https://github.com/PHPMailer/PHPMailer/)\n"

static struct sg_trace_result *elsewhere(int64_t at, struct sg_trace_lookup *lk)
{
    char date[64], body[2048];
    time_t t = (time_t)(at / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    snprintf(body, sizeof(body), ELSEWHERE, date, date);
    return trace(body, lk);
}

static void test_not_ours(void **state)
{
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_result *r;
    char *t, *en, *fr, *j;
    json_t *o;

    (void)state;
    fill_records();
    lookup(&lk, &arr, RECS, 6);
    r = elsewhere(T0 - 3 * H, &lk);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->verdict, SG_TRACE_NOT_OURS);
    t = sg_trace_text(r, "sales@example.com");
    en = sg_trace_answer(r, "sales@example.com", false);
    fr = sg_trace_answer(r, "sales@example.com", true);
    assert_non_null(strstr(t, "did not pass through any of our relays"));
    assert_non_null(strstr(t, "sendguardctl rotate-password sales@example.com` before asking"));
    assert_true(strncmp(en, "No. ", 4) == 0);
    assert_non_null(strstr(en, "(Message-ID <20240115102030.4F2A1C3B7@example.com>, dated "));
    assert_non_null(strstr(en, "password is therefore used outside our relays"));
    assert_non_null(strstr(en, "change the password first (sendguardctl rotate-password "
                               "sales@example.com)"));
    assert_true(strncmp(fr, "Non. ", 5) == 0);
    assert_non_null(strstr(fr, "utilis\u00e9 en dehors de nos relais"));
    assert_non_null(strstr(fr, "changer d'abord le mot de passe (sendguardctl rotate-password "
                               "sales@example.com)"));
    o = sg_trace_json(r);
    j = json_dumps(o, JSON_COMPACT);
    assert_non_null(strstr(j, "\"verdict\":\"not_ours\""));
    free(j);
    json_decref(o);
    free(t);
    free(en);
    free(fr);
    free(r);
}

static void test_older_than_record(void **state)
{
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_result *r;
    char *t, *en, *fr;

    (void)state;
    fill_records();
    lookup(&lk, &arr, RECS, 6);
    r = elsewhere(T0 - 60 * H, &lk);          /* the record starts at T0 - 47 h */
    assert_int_equal(r->verdict, SG_TRACE_CANNOT_TELL);
    assert_int_equal(r->why, SG_TRACE_WHY_OLDER);
    t = sg_trace_text(r, "sales@example.com");
    en = sg_trace_answer(r, "sales@example.com", false);
    fr = sg_trace_answer(r, "sales@example.com", true);
    assert_non_null(strstr(t, "cannot tell: the sample is older than our records"));
    assert_null(strstr(t, "rotate-password"));
    assert_string_equal(en, "[to be completed: the header sample could not be traced in our "
                            "relays' records: the sample is older than our records.]\n");
    assert_non_null(strstr(fr, "[\u00e0 compl\u00e9ter : l'\u00e9chantillon d'en-t\u00eates"));
    assert_non_null(strstr(fr, "plus ancien que nos relev\u00e9s"));
    free(t);
    free(en);
    free(fr);
    free(r);
}

static void test_truncated_and_other_reasons(void **state)
{
    char *raw = slurp("postfix-esmtp.txt"), body[4096];
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_result *r;
    char *cut;

    (void)state;
    fill_records();
    lookup(&lk, &arr, RECS, 6);
    /* the real sample cut after its first (smtp-sink) hop, as a ticket shortens it */
    cut = strstr(raw, "\nReceived: from client.example");
    assert_non_null(cut);
    snprintf(body, sizeof(body), "%.*s\n[...]\n", (int)(cut - raw), raw);
    r = trace(body, &lk);
    assert_int_equal(r->verdict, SG_TRACE_CANNOT_TELL);
    assert_int_equal(r->why, SG_TRACE_WHY_TRUNCATED);
    free(r);
    /* cut in the middle of our hop (no date part): truncated too */
    cut = strstr(raw, "\n\tfor <victim2");
    assert_non_null(cut);
    snprintf(body, sizeof(body), "%.*s", (int)(cut - raw), raw);
    {
        struct sg_trace_samples *s = sg_trace_parse(body, strlen(body));
        assert_int_equal(s->n, 1);
        assert_true(s->s[0].truncated);
        assert_string_equal(s->s[0].hops[1].id, cap.esmtp_qid);
        free(s);
    }
    /* our hop, but no record of its queue id (ESMTP one is not in RECS) */
    r = trace(raw, &lk);
    assert_int_equal(r->verdict, SG_TRACE_CANNOT_TELL);
    assert_int_equal(r->why, SG_TRACE_WHY_NOT_RECORDED);
    assert_string_equal(r->f[0].hop_id, cap.esmtp_qid);
    free(r);
    /* undated: no date after ';', no Date: */
    r = trace("Received: from a ([192.0.2.1]) by mx.elsewhere.example id Z1;\n"
              "Message-ID: <undated@x>\n", &lk);
    assert_int_equal(r->why, SG_TRACE_WHY_UNDATED);
    free(r);
    /* unreadable / no sample */
    r = trace("From: a@b\nSubject: hi\n", &lk);
    assert_int_equal(r->why, SG_TRACE_WHY_UNREADABLE);
    free(r);
    r = trace("Bonjour, merci.\n", &lk);
    assert_int_equal(r->why, SG_TRACE_WHY_NO_SAMPLE);
    free(r);
    /* no relay names given and no Message-ID: the hops cannot tell */
    lk.nrelays = 0;
    r = trace("Received: from a ([192.0.2.1]) by mx.elsewhere.example id Z1; "
              "Wed, 2 Dec 2026 10:00:00 +0000\n", &lk);
    assert_int_equal(r->why, SG_TRACE_WHY_NO_RELAYS);
    free(r);
    lk.nrelays = 2;
    /* nothing recorded for the account */
    lookup(&lk, &arr, RECS, 0);
    r = elsewhere(T0, &lk);
    assert_int_equal(r->why, SG_TRACE_WHY_NO_RECORD);
    free(r);
    free(raw);
}

/* Several samples: one of ours, one from elsewhere -> passed, and the
 * answer says the password is also used elsewhere. */
static void test_mixed(void **state)
{
    char *a = slurp("postfix-esmtpa.txt"), body[8192], date[64], *en, *t;
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_result *r;
    time_t tt = (time_t)(T0 / 1000);
    struct tm tm;

    (void)state;
    fill_records();
    lookup(&lk, &arr, RECS, 6);
    gmtime_r(&tt, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    snprintf(body, sizeof(body), "%s\n\n", a);
    snprintf(body + strlen(body), sizeof(body) - strlen(body), ELSEWHERE, date, date);
    r = trace(body, &lk);
    assert_int_equal(r->n, 2);
    assert_int_equal(r->verdict, SG_TRACE_PASSED);
    assert_int_equal(r->npassed, 1);
    assert_int_equal(r->nnot_ours, 1);
    en = sg_trace_answer(r, "sales@example.com", false);
    assert_non_null(strstr(en, "1 other sample(s) did not pass through any of our relays"));
    t = sg_trace_text(r, "sales@example.com");
    assert_non_null(strstr(t, "rotate-password"));
    assert_non_null(strstr(t, "machine or application to clean"));
    free(t);
    free(en);
    free(r);
    free(a);
}

/* Hostile bytes in the sample and in the record never make a line of
 * their own in the text, and the JSON stays valid. */
static void test_hostile_escaped(void **state)
{
    struct sg_ev_msg recs[2];
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_result *r;
    char *outs[4];
    json_t *o;

    (void)state;
    T0 = T0 ? T0 : 1796226002000LL;
    recs[0] = rec(T0, "Q1\nForged: yes", "192.0.2.1\r\nX", "eve\x1b[2J", "<m@x>",
                  "Evil\n1. Yes we sent it\xff", "relay1");
    recs[1] = rec(T0 - 40 * H, "Q0", "192.0.2.2", "old", "<o@x>", "x", "relay1");
    lookup(&lk, &arr, recs, 2);
    r = trace("Message-ID: <m@x>\nDate: Wed, 2 Dec 2026 15:40:02 +0000\n", &lk);
    assert_int_equal(r->verdict, SG_TRACE_PASSED);
    outs[0] = sg_trace_text(r, "a\nb");
    outs[1] = sg_trace_answer(r, "a\nb", false);
    outs[2] = sg_trace_answer(r, "a\nb", true);
    o = sg_trace_json(r);
    outs[3] = json_dumps(o, JSON_COMPACT);
    assert_non_null(outs[3]);
    for (int i = 0; i < 4; i++) {
        assert_null(strstr(outs[i], "\nForged"));
        assert_null(strstr(outs[i], "\n1. Yes"));
        assert_null(strchr(outs[i], '\x1b'));
        assert_null(strchr(outs[i], '\r'));
        free(outs[i]);
    }
    json_decref(o);
    free(r);
    /* and the NOT_OURS answer with a hostile Message-ID and account */
    r = trace("Received: from x ([192.0.2.9]) by elsewhere.example id 1; "
              "Wed, 2 Dec 2026 15:40:02 +0000\nMessage-ID: <a\x01\x1b]0;x\x07@y>\n", &lk);
    assert_int_equal(r->verdict, SG_TRACE_NOT_OURS);
    outs[0] = sg_trace_answer(r, "x\n2. No", false);
    assert_null(strchr(outs[0], '\x1b'));
    assert_null(strchr(outs[0], '\x07'));
    assert_null(strstr(outs[0], "\n2. No"));
    free(outs[0]);
    free(r);
}

static int setup(void **state)
{
    (void)state;
    load_capture();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_real_postfix),      /* first: sets T0 */
        cmocka_unit_test(test_parse_quoted_forms),
        cmocka_unit_test(test_parse_several_samples),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_passed_by_hop),
        cmocka_unit_test(test_passed_by_msgid),
        cmocka_unit_test(test_not_ours),
        cmocka_unit_test(test_older_than_record),
        cmocka_unit_test(test_truncated_and_other_reasons),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_hostile_escaped),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
