/*
 * fuzz_evidence - the block workflow's reading of evidence and its drafts
 * (workflow/sg_block.h): the store's typed evidence report (hourly counts,
 * client IPs, mailers, domains: names that came from the MTA, counts and
 * times that came from Redis) through sg_block_analyse, then
 * sg_block_spark, sg_block_looks_legitimate and sg_block_draft; and
 * OVHcloud's ticket text (what support writes: the count of suspicious
 * messages, the header sample) through sg_ovh_ticket_evidence.
 *
 * Input: byte 0 = options (bits 0-1 the offer, bit 2 French, bit 3 a
 * ticket number, bits 4-5 redirections shown, bit 7: the rest is a
 * ticket message body rather than evidence). Evidence is one record a
 * line, decoded here into a struct sg_evidence_report (numbers in decimal,
 * any value, a NAME is the rest of the line, any bytes but '\n'):
 *   h HOUR MESSAGES RECIPIENTS REFUSED     an hour (unix time / 3600)
 *   i COUNT FIRST_SEEN NAME                a client IP (FIRST_SEEN -1 unknown)
 *   m COUNT FIRST_SEEN NAME                a mailer
 *   d COUNT NAME                           a recipient domain
 *   x N                                    From: mismatches
 *   l LAST_SEEN
 * other lines are skipped.
 * Checks: a refused report says why; the analysis stays inside its bounds
 * (nhours <= SG_BLOCK_HOURS, ntop <= 5, counts of new <= counts seen); a
 * draft is produced for every analysed case and is one NUL-terminated text.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg_block.h"
#include "sg_ovh.h"

#define NOW_MS 1767225600000LL     /* 2026-01-01T00:00:00Z */

/* The numbers at *p (n of them, signed or not), then the rest of the line
 * as a name when name != NULL. false when a number is missing. */
static bool fields(const char **p, int64_t *v, int n, char **name)
{
    for (int i = 0; i < n; i++) {
        char *end;

        while (**p == ' ')
            (*p)++;
        if (**p == '-')
            v[i] = strtoll(*p, &end, 10);
        else
            v[i] = (int64_t)strtoull(*p, &end, 10);
        if (end == *p)
            return false;
        *p = end;
    }
    if (name != NULL) {
        if (**p == ' ')
            (*p)++;
        *name = strdup(*p);
        return *name != NULL;
    }
    return true;
}

static void *grow(void *v, size_t n, size_t size)
{
    void *w = realloc(v, (n + 1) * size);

    if (w == NULL)
        abort();
    memset((char *)w + n * size, 0, size);
    return w;
}

/* The line format above → a report (free with sg_evidence_report_free). */
static void decode(char *text, struct sg_evidence_report *r)
{
    memset(r, 0, sizeof(*r));
    r->last_seen_ms = -1;
    for (char *line = text, *next; line != NULL; line = next) {
        const char *p = line + 1;
        char *name = NULL;
        int64_t v[4];

        if ((next = strchr(line, '\n')) != NULL)
            *next++ = '\0';
        switch (line[0]) {
        case 'h':
            if (fields(&p, v, 4, NULL)) {
                r->hours = grow(r->hours, r->nhours, sizeof(*r->hours));
                r->hours[r->nhours++] = (struct sg_ev_hour){ v[0], (uint64_t)v[1],
                                                             (uint64_t)v[2], (uint64_t)v[3] };
            }
            break;
        case 'i':
        case 'm':
            if (fields(&p, v, 2, &name)) {
                struct sg_ev_seen **a = line[0] == 'i' ? &r->ips : &r->mailers;
                size_t *n = line[0] == 'i' ? &r->nips : &r->nmailers;

                *a = grow(*a, *n, sizeof(**a));
                (*a)[(*n)++] = (struct sg_ev_seen){ name, (uint64_t)v[0], v[1] };
            }
            break;
        case 'd':
            if (fields(&p, v, 1, &name)) {
                r->domains = grow(r->domains, r->ndomains, sizeof(*r->domains));
                r->domains[r->ndomains++] = (struct sg_ev_seen){ name, (uint64_t)v[0], -1 };
            }
            break;
        case 'x':
            if (fields(&p, v, 1, NULL))
                r->from_mismatch = (uint64_t)v[0];
            break;
        case 'l':
            if (fields(&p, v, 1, NULL))
                r->last_seen_ms = v[0];
            break;
        default:
            break;
        }
    }
}

static void draft(unsigned opt, const struct sg_block_facts *f, long suspicious)
{
    static const enum sg_offer offers[4] = { SG_OFFER_EXCHANGE, SG_OFFER_EMAILPRO,
                                             SG_OFFER_MXPLAN, SG_OFFER_MXPLAN_LEGACY };
    static const char *const redir[3] = { "home@example.org", "x\"<y>@example.net", "" };
    struct sg_account a = { .address = "sales@example.com", .domain = "example.com",
                            .local = "sales", .service = "pro1", .organization = "org1" };
    struct sg_block_ticket_info t = { (opt & 8) ? 7654321 : -1, suspicious, (opt & 4) != 0 };
    size_t nredir = (opt >> 4) & 3;
    char *d;

    a.offer = offers[opt & 3];
    d = sg_block_draft(&a, f, &t, redir, nredir > 3 ? 3 : nredir, nredir != 0);
    if (!d || d[0] == '\0')
        abort();                  /* every case gets a draft */
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_evidence_report rep;
    struct sg_block_facts f;
    unsigned opt;
    char *text, err[256];
    int rc;

    if (size < 1)
        return 0;
    opt = data[0];
    data++;
    size--;
    if (!(text = malloc(size + 1)))
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    if (opt & 0x80) {             /* a support message of the spam ticket */
        struct sg_ovh_message m[2] = {
            { .id = 1, .from = "support", .date = "2026-01-01T00:00:00+01:00", .body = text },
            { .id = 2, .from = "customer", .date = "2026-01-01T01:00:00+01:00", .body = "ok" },
        };
        struct sg_ovh_evidence ev;

        sg_ovh_ticket_evidence(m, 2, &ev);
        if (ev.suspicious < -1)
            abort();
        memset(&f, 0, sizeof(f));
        f.now_ms = NOW_MS;
        f.since_ms = NOW_MS - 86400000LL;
        draft(opt, &f, ev.suspicious);
        sg_ovh_evidence_clear(&ev);
        free(text);
        return 0;
    }

    err[0] = '\0';
    decode(text, &rep);
    free(text);
    rc = sg_block_analyse(&rep, NOW_MS, NOW_MS - 86400000LL, &f, err, sizeof(err));
    sg_evidence_report_free(&rep);
    if (rc != 0) {
        if (err[0] == '\0')
            abort();              /* refused without saying why */
        return 0;
    }
    if (f.nhours > SG_BLOCK_HOURS || f.ntop > 5 || f.new_ips > f.nips ||
        f.new_mailers > f.nmailers)
        abort();
    char spark[SG_BLOCK_HOURS * 4 + 1];
    sg_block_spark(f.msgs, f.nhours, spark, sizeof(spark));
    (void)sg_block_looks_legitimate(&f);
    draft(opt, &f, -1);
    sg_block_facts_free(&f);
    return 0;
}
