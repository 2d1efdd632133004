/*
 * fuzz_trace - the header sample of a spam ticket (workflow/sg_trace.h):
 * what OVHcloud's support writes, or a customer quotes back, in a ticket
 * message's body, through sg_trace_parse, sg_trace_date, sg_trace_match
 * (the array lookup) and the three renderings (sg_trace_text,
 * sg_trace_json, sg_trace_answer in English and French).
 *
 * Input: byte 0 = options (bit 0 French, bit 1 the relay list names the
 * first hop's host so that a record can match it, bit 2 records made from
 * the parsed sample (its hop ids and Message-ID: the PASSED path with
 * hostile strings), bit 3 no record at all); the rest is the body, in a
 * heap buffer of exactly its size (no NUL: a read past it is seen).
 * Checks: the parse stays inside its bounds (n, nhops, every field
 * NUL-terminated inside its array, dates -1 or >= 0); the verdict is one
 * of the three and agrees with the counts; text and answers are produced,
 * and have no control byte but '\n' (no forged line, no terminal escape);
 * the JSON is produced and dumps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg_trace.h"

#define NOW_MS 1796226002000LL     /* 2026-12-02T15:40:02Z */

static void field(const char *s, size_t size)
{
    if (strnlen(s, size) >= size)
        abort();                  /* not terminated inside its array */
}

static void check_parse(const struct sg_trace_samples *s)
{
    if (s->n > SG_TRACE_MAX_SAMPLES)
        abort();
    for (size_t i = 0; i < s->n; i++) {
        const struct sg_trace_sample *x = &s->s[i];
        if (x->nhops > SG_TRACE_MAX_HOPS || x->date_ms < -1)
            abort();
        if (x->msgid[0] == '\0' && x->nhops == 0)
            abort();              /* kept samples have one or the other */
        field(x->msgid, sizeof(x->msgid));
        field(x->from, sizeof(x->from));
        field(x->mailer, sizeof(x->mailer));
        for (size_t h = 0; h < x->nhops; h++) {
            const struct sg_trace_hop *p = &x->hops[h];
            field(p->from, sizeof(p->from));
            field(p->from_rdns, sizeof(p->from_rdns));
            field(p->ip, sizeof(p->ip));
            field(p->auth, sizeof(p->auth));
            field(p->by, sizeof(p->by));
            field(p->with, sizeof(p->with));
            field(p->id, sizeof(p->id));
            if (p->t_ms < -1)
                abort();
        }
    }
}

static void clean_text(const char *t)
{
    if (t == NULL || t[0] == '\0')
        abort();
    for (; *t; t++)
        if (((unsigned char)*t < 0x20 && *t != '\n') || *t == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sg_trace_samples *s;
    struct sg_trace_result *r;
    struct sg_trace_lookup lk;
    struct sg_trace_array arr;
    struct sg_trace_relay relays[2] = { { "sg-e2e.example", "relay1" }, { NULL, "relay1" } };
    struct sg_ev_msg recs[SG_TRACE_MAX_HOPS + 3];
    size_t nrec = 0;
    unsigned opt;
    char *body, *t;
    json_t *j;

    if (size < 1)
        return 0;
    opt = data[0];
    data++;
    size--;
    if ((body = malloc(size ? size : 1)) == NULL)
        return 0;
    memcpy(body, data, size);

    if (sg_trace_date(body, size) < -1)
        abort();
    if ((s = sg_trace_parse(body, size)) == NULL || (r = malloc(sizeof(*r))) == NULL) {
        free(s);
        free(body);
        return 0;
    }
    check_parse(s);

    memset(recs, 0, sizeof(recs));
    recs[nrec++] = (struct sg_ev_msg){ .t_ms = NOW_MS - 86400000LL, .qid = "OLD", .ip = "192.0.2.1",
                                       .identity = "bob", .msgid = "<old@x>", .mailer = "Outlook",
                                       .relay = "relay1" };
    if ((opt & 4) && s->n > 0) {  /* records made of the sample's own strings */
        const struct sg_trace_sample *x = &s->s[0];
        for (size_t h = 0; h < x->nhops && nrec < SG_TRACE_MAX_HOPS + 1; h++)
            recs[nrec++] = (struct sg_ev_msg){ .t_ms = NOW_MS - (int64_t)h * 1000,
                                               .qid = (char *)x->hops[h].id,
                                               .ip = (char *)x->hops[h].ip,
                                               .identity = (char *)x->hops[h].auth,
                                               .msgid = (char *)x->msgid,
                                               .mailer = (char *)x->mailer,
                                               .relay = (char *)x->hops[h].by };
        if (s->s[0].nhops > 0)
            relays[1].host = s->s[0].hops[0].by;
    }
    arr.v = recs;
    arr.n = (opt & 8) ? 0 : nrec;
    memset(&lk, 0, sizeof(lk));
    sg_trace_lookup_array(&lk, &arr);
    lk.relays = relays;
    lk.nrelays = (opt & 2) && relays[1].host ? 2 : 1;
    lk.now_ms = NOW_MS;

    sg_trace_match(s, &lk, r);
    if (r->n > SG_TRACE_MAX_SAMPLES || r->npassed + r->nnot_ours > r->n ||
        (r->verdict == SG_TRACE_PASSED) != (r->npassed > 0) ||
        (r->verdict == SG_TRACE_NOT_OURS && r->nnot_ours == 0))
        abort();

    t = sg_trace_text(r, (opt & 1) ? "sales@example.com" : NULL);
    clean_text(t);
    free(t);
    t = sg_trace_answer(r, "sales@example.com", (opt & 1) != 0);
    clean_text(t);
    free(t);
    if ((j = sg_trace_json(r)) == NULL || (t = json_dumps(j, JSON_COMPACT)) == NULL)
        abort();
    free(t);
    json_decref(j);

    free(r);
    free(s);
    free(body);
    return 0;
}
