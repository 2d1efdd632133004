/*
 * test_fuzz.c - hostile input, many times over: deterministic random and
 * mutated inputs through every parser of outside data (addresses, log
 * escaping, whole decisions, evidence reports, ticket messages, ovh.conf, the
 * config file). Under ASan/UBSan (and valgrind) this is a fuzz smoke test:
 * it must never crash, and every escaped text must stay one clean line.
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
#include "sg_log.h"
#include "sg_ovh.h"
#include "sg_ovh_internal.h"
#include "sg_policy.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(void)                 /* xorshift64*: the same run every time */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Random bytes (no NUL), biased towards the ones parsers care about. */
static size_t random_text(char *buf, size_t max)
{
    static const char special[] = "<>@\"\\ \t\r\n=:;,.+*[]{}%#-_\x7f\x80\xc3\xa9\xff";
    size_t n = rnd() % max;

    for (size_t i = 0; i < n; i++) {
        unsigned r = rnd() % 4;
        buf[i] = r == 0 ? special[rnd() % (sizeof(special) - 1)]
               : r == 1 ? (char)(1 + rnd() % 255) : (char)('a' + rnd() % 26);
    }
    buf[n] = '\0';
    return n;
}

/* Flip, insert, delete or duplicate bytes of a valid sample. */
static size_t mutate(const char *in, char *out, size_t max)
{
    size_t n = strlen(in);

    if (n >= max)
        n = max - 1;
    memcpy(out, in, n);
    for (int k = 1 + (int)(rnd() % 6); k > 0 && n > 0; k--) {
        size_t at = rnd() % n;
        switch (rnd() % 4) {
        case 0: out[at] = (char)(1 + rnd() % 255); break;
        case 1: memmove(out + at, out + at + 1, n - at - 1); n--; break;
        case 2:
            if (n + 1 < max) {
                memmove(out + at + 1, out + at, n - at);
                out[at] = "{}[]\":,=\n#;"[rnd() % 11];
                n++;
            }
            break;
        default: {
            size_t len = rnd() % 16;
            if (at + len <= n && n + len < max) {
                memmove(out + at + len, out + at, n - at);
                n += len;
            }
        }
        }
    }
    out[n] = '\0';
    return n;
}

static void assert_clean_line(const char *s, size_t size, int text)
{
    size_t len = strlen(s);

    assert_true(len < size);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        assert_true(*p >= 0x20 && *p != 0x7f);
        if (!text)
            assert_true(*p < 0x7f && *p != ' ' && *p != '=' && *p != '<' && *p != '>');
    }
}

static void test_addresses_and_escaping(void **state)
{
    struct sg_settings s = { .lowercase = true, .strip_tag = true, .tag_separator = '+' };
    char in[2600], out[SG_ADDR_MAX + 1], esc[300];

    (void)state;
    for (int i = 0; i < 20000; i++) {
        size_t n = random_text(in, sizeof(in) - 1);
        size_t cap = 1 + rnd() % sizeof(esc);

        sg_policy_normalize(&s, in, out);
        assert_true(strlen(out) <= SG_ADDR_MAX && strlen(out) > 0);
        (void)sg_policy_match(in, out);
        (void)sg_policy_match(out, in);
        (void)sg_policy_rcpt_hash(out);
        sg_log_escape(esc, cap, in, n);
        assert_clean_line(esc, cap, 0);
        sg_log_escape_text(esc, cap, in, n);
        assert_clean_line(esc, cap, 1);
    }
}

static void test_whole_decisions(void **state)
{
    static char text[8][600];
    static char rcpt[60][300];
    const char *rcpts[60];
    char path[] = "/tmp/sg-fuzz-XXXXXX";
    static const char conf_text[] =
        "store = { backend = \"memory\"; };\n"
        "limits = ( { name = \"h\"; window = \"1h\"; messages = 50; recipients = 200;"
        " distinct_recipients = 100; bytes = 1000000; action = \"tempfail\"; } );\n"
        "accounts = ( { address = \"a@example.com\"; offer = \"mxplan\"; service = \"s\";"
        " senders = [ \"*@example.com\", \"*x*\" ]; } );\n";
    int fd = mkstemp(path);
    sg_store_t *st = sg_store_memory_new(NULL, NULL);
    sg_conf_t *conf;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, conf_text, sizeof(conf_text) - 1), (ssize_t)sizeof(conf_text) - 1);
    close(fd);
    conf = sg_conf_load(path, NULL, NULL);
    unlink(path);
    assert_non_null(conf);
    for (int i = 0; i < 5000; i++) {
        struct sg_request req = { 0 };
        struct sg_verdict v;
        size_t nr = rnd() % 60;

        for (int k = 0; k < 8; k++)
            random_text(text[k], sizeof(text[k]));
        for (size_t k = 0; k < nr; k++) {
            random_text(rcpt[k], sizeof(rcpt[k]));
            rcpts[k] = rcpt[k];
        }
        req.auth_authen = rnd() % 3 ? NULL : text[0];
        req.envfrom = rnd() % 5 ? text[1] : NULL;
        req.client_ip = text[2];
        req.qid = rnd() % 4 ? text[3] : NULL;
        req.mailer = text[4];
        req.from_header = rnd() % 2 ? text[5] : NULL;
        req.msgid = text[6];
        req.rcpts = rcpts;
        req.nrcpts = nr;
        req.size = rnd();
        req.relay = "relay1";
        sg_policy_decide(conf, st, NULL, &req, &v);
        assert_true(v.action >= SG_ACT_ACCEPT && v.action <= SG_ACT_REJECT);
        for (const char *p = v.reason; *p; p++)       /* reply text: no CR/LF/% */
            assert_true(*p >= 0x20 && *p != 0x7f && *p != '%');
    }
    sg_conf_unref(conf);
    sg_store_free(st);
}

/* A random value among the ones that break arithmetic. */
static int64_t edge(int64_t near)
{
    static const int64_t e[] = { 0, -1, 1, INT64_MAX, INT64_MIN, INT64_MAX / 2 };

    return rnd() % 3 ? near + (int64_t)(rnd() % 200) - 100 : e[rnd() % 6];
}

/* A random evidence report around now_hour (strings mutated from names). */
static void random_report(int64_t now_hour, struct sg_evidence_report *r)
{
    static const char *const names[] = { "192.0.2.1", "x", "a.b", "Outlook 16", "" };
    char buf[512];

    memset(r, 0, sizeof(*r));
    r->last_seen_ms = edge(now_hour * 3600000LL);
    r->nhours = rnd() % 60;
    r->hours = calloc(r->nhours + 1, sizeof(*r->hours));
    for (size_t i = 0; i < r->nhours; i++)
        r->hours[i] = (struct sg_ev_hour){ edge(now_hour), (uint64_t)edge(5),
                                           (uint64_t)edge(9), (uint64_t)edge(0) };
    r->nips = rnd() % 6;
    r->nmailers = rnd() % 6;
    r->ndomains = rnd() % 9;
    r->ips = calloc(r->nips + 1, sizeof(*r->ips));
    r->mailers = calloc(r->nmailers + 1, sizeof(*r->mailers));
    r->domains = calloc(r->ndomains + 1, sizeof(*r->domains));
    for (size_t i = 0; i < r->nips + r->nmailers + r->ndomains; i++) {
        struct sg_ev_seen *v = i < r->nips ? &r->ips[i] :
                               i < r->nips + r->nmailers ? &r->mailers[i - r->nips] :
                               &r->domains[i - r->nips - r->nmailers];

        mutate(names[rnd() % 5], buf, sizeof(buf));
        *v = (struct sg_ev_seen){ strdup(buf), (uint64_t)edge(3),
                                  edge(now_hour * 3600000LL) };
    }
    r->from_mismatch = (uint64_t)edge(1);
}

static void test_evidence_and_ticket_text(void **state)
{
    static const char ticket[] =
        "Dear Customer,\nWe have currently detected 312 suspicious message(s).\n"
        "Sample of the headers of the e-mails sent:\n\nReceived: from [203.0.113.45]\n"
        "From: <sales@example.com>\n";
    const int64_t now = 1767225600000LL;
    char buf[4096], err[128];

    (void)state;
    for (int i = 0; i < 5000; i++) {
        struct sg_evidence_report rep;
        struct sg_block_facts f;
        struct sg_ovh_message m = { .id = 1, .from = "support", .date = "x" };
        struct sg_ovh_evidence ev;
        char spark[SG_BLOCK_HOURS * 4 + 1];
        struct sg_account a = { .address = "a@example.com", .offer = SG_OFFER_EMAILPRO };
        struct sg_block_ticket_info t = { 1, -1, rnd() % 2 == 0 };
        char *d;

        random_report(now / 3600000LL, &rep);
        assert_int_equal(sg_block_analyse(&rep, now, now - 86400000LL, &f, err, sizeof(err)), 0);
        sg_evidence_report_free(&rep);
        assert_true(f.nhours <= SG_BLOCK_HOURS && f.ntop <= 5 && f.new_ips <= f.nips &&
                    f.new_mailers <= f.nmailers);
        sg_block_spark(f.msgs, f.nhours, spark, sizeof(spark));
        d = sg_block_draft(&a, &f, &t, NULL, 0, false);
        assert_non_null(d);
        free(d);
        sg_block_facts_free(&f);
        mutate(ticket, buf, sizeof(buf));
        m.body = buf;
        sg_ovh_ticket_evidence(&m, 1, &ev);
        sg_ovh_evidence_clear(&ev);
    }
}

static void quiet_errors(void *ctx, const char *line)
{
    (void)ctx;
    assert_non_null(strchr(line, ':'));       /* every problem names its file */
}

static void test_files(void **state)
{
    static const char ini[] =
        "[default]\nendpoint=ovh-eu\n[ovh-eu]\napplication_key=AK\n"
        "application_secret=AS\nconsumer_key=CK\n; comment\n";
    char dir[] = "/tmp/sg-fuzzf-XXXXXX", path[600], buf[16384], err[512];
    FILE *f;
    size_t n;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/x.conf", dir);
    /* ovh.conf */
    for (int i = 0; i < 1500; i++) {
        const char *paths[1] = { path };
        sg_ovh_creds_t *c;

        n = mutate(ini, buf, sizeof(buf));
        f = fopen(path, "w");
        fwrite(buf, 1, n, f);
        fclose(f);
        chmod(path, 0600);
        c = sg_ovh_creds_load_files(paths, 1, true, NULL, err, sizeof(err));
        sg_ovh_creds_free(c);
    }
    /* the configuration file, from the example */
    f = fopen(SG_EXAMPLE_CONF, "r");
    assert_non_null(f);
    {
        static char example[65536];
        size_t len = fread(example, 1, sizeof(example) - 1, f);
        example[len] = '\0';
        fclose(f);
        for (int i = 0; i < 600; i++) {
            sg_conf_t *c;
            n = mutate(example, buf, sizeof(buf));
            f = fopen(path, "w");
            fwrite(buf, 1, n, f);
            fclose(f);
            chmod(path, 0600);
            c = sg_conf_load(path, quiet_errors, NULL);
            if (c != NULL)
                sg_conf_unref(c);
        }
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_and_escaping),
        cmocka_unit_test(test_whole_decisions),
        cmocka_unit_test(test_evidence_and_ticket_text),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
