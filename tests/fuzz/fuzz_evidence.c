/*
 * fuzz_evidence - the block workflow's reading of evidence and its drafts
 * (workflow/sg_block.h): the store's evidence JSON (hourly counts, client IPs,
 * mailers, domains: names that came from the MTA) through sg_block_analyse,
 * then sg_block_spark, sg_block_looks_legitimate and sg_block_draft; and
 * OVHcloud's ticket text (what support writes: the count of suspicious
 * messages, the header sample) through sg_ovh_ticket_evidence.
 *
 * Input: byte 0 = options (bits 0-1 the offer, bit 2 French, bit 3 a
 * ticket number, bits 4-5 redirections shown, bit 7: the rest is a
 * ticket message body rather than evidence JSON).
 * Checks: a refused JSON says why; the analysis stays inside its bounds
 * (nhours <= SG_BLOCK_HOURS, ntop <= 5, counts of new <= counts seen); a
 * draft is produced for every analysed case and is one NUL-terminated text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg_block.h"
#include "sg_ovh.h"

#define NOW_MS 1767225600000LL     /* 2026-01-01T00:00:00Z */

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
    struct sg_block_facts f;
    unsigned opt;
    char *text, err[256];

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
    if (sg_block_analyse(text, NOW_MS, NOW_MS - 86400000LL, &f, err, sizeof(err)) != 0) {
        if (err[0] == '\0')
            abort();              /* refused without saying why */
        free(text);
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
    free(text);
    return 0;
}
