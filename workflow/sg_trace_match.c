/*
 * sg_trace_match.c - a parsed header sample against what the relays
 * recorded (sg_trace.h): by a Received: hop of one of our relays (host and
 * queue id), then by Message-ID, through the caller's lookup; the
 * conclusion (passed / not ours / cannot tell, and why). Also a ready
 * lookup over an array of records.
 *
 * Must NOT: do I/O or read the clock (now comes with the lookup), or keep a
 * pointer into the caller's records (what is kept is copied, cut).
 */
#include "sg_trace.h"
#include "sg_trace_internal.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#define DAY_MS 86400000LL
#define SKEW_MS (10 * 60000LL)    /* clocks of the sample's hosts and ours */

/* --- 5. matching ------------------------------------------------------------ */

static void keep(struct sg_trace_msg *d, const struct sg_ev_msg *m)
{
#define K(f) sg_trace_copy(d->f, sizeof(d->f), m->f ? m->f : "", m->f ? strlen(m->f) : 0)
    memset(d, 0, sizeof(*d));
    d->t_ms = m->t_ms;
    d->rcpts = m->rcpts;
    K(qid);
    K(ip);
    K(identity);
    K(mailer);
    K(relay);
    if (m->msgid)
        sg_trace_msgid(d->msgid, sizeof(d->msgid), m->msgid, strlen(m->msgid));
#undef K
}

/* The relay (record name) that wrote hop h, or NULL when none of ours. */
static const struct sg_trace_relay *our_relay(const struct sg_trace_lookup *lk,
                                              const struct sg_trace_hop *h)
{
    if (h->by[0] == '\0' || h->id[0] == '\0')
        return NULL;
    for (size_t i = 0; i < lk->nrelays; i++)
        if (lk->relays[i].host && strcasecmp(lk->relays[i].host, h->by) == 0)
            return &lk->relays[i];
    return NULL;
}

/* The date the sample crossed the hosts: its newest dated hop, else Date:. */
static int64_t sample_date(const struct sg_trace_sample *s)
{
    for (size_t i = 0; i < s->nhops; i++)
        if (s->hops[i].t_ms >= 0)
            return s->hops[i].t_ms;
    return s->date_ms;
}

static void passed(struct sg_trace_finding *f, const struct sg_trace_lookup *lk,
                   const struct sg_ev_msg *m, enum sg_trace_how how)
{
    const struct sg_ev_msg *o[SG_TRACE_MAX_OTHERS];

    f->verdict = SG_TRACE_PASSED;
    f->how = how;
    keep(&f->msg, m);
    if (lk->same_hour) {
        size_t total = lk->same_hour(lk->ctx, m, o, SG_TRACE_MAX_OTHERS);
        f->others_total = total;
        for (size_t i = 0; i < total && i < SG_TRACE_MAX_OTHERS; i++)
            if (o[i])
                keep(&f->others[f->nothers++], o[i]);
    }
}

static void match_one(const struct sg_trace_sample *s, const struct sg_trace_lookup *lk,
                      struct sg_trace_finding *f)
{
    const struct sg_trace_hop *ours = NULL;
    const struct sg_ev_msg *m;

    memset(f, 0, offsetof(struct sg_trace_finding, others));  /* the others: as kept */
    memset((char *)f + offsetof(struct sg_trace_finding, nothers), 0,
           sizeof(*f) - offsetof(struct sg_trace_finding, nothers));
    f->verdict = SG_TRACE_CANNOT_TELL;
    f->date_ms = sample_date(s);
    sg_trace_copy(f->msgid, sizeof(f->msgid), s->msgid, strlen(s->msgid));
    for (size_t i = 0; i < s->nhops; i++) {
        const struct sg_trace_relay *r = our_relay(lk, &s->hops[i]);
        if (r == NULL)
            continue;
        if (lk->by_qid && (m = lk->by_qid(lk->ctx, r->relay ? r->relay : r->host,
                                          s->hops[i].id)) != NULL) {
            passed(f, lk, m, SG_TRACE_BY_HOP);
            return;
        }
        if (ours == NULL)
            ours = &s->hops[i];
    }
    if (s->msgid[0] && lk->by_msgid && (m = lk->by_msgid(lk->ctx, s->msgid)) != NULL) {
        passed(f, lk, m, SG_TRACE_BY_MSGID);
        return;
    }
    if (lk->oldest_ms < 0)
        f->why = SG_TRACE_WHY_NO_RECORD;
    else if (f->date_ms < 0)
        f->why = SG_TRACE_WHY_UNDATED;
    else if (f->date_ms + SKEW_MS < lk->oldest_ms)
        f->why = SG_TRACE_WHY_OLDER;
    else if (f->date_ms > lk->now_ms + DAY_MS)
        f->why = SG_TRACE_WHY_FUTURE;
    else if (ours) {
        f->why = SG_TRACE_WHY_NOT_RECORDED;
        sg_trace_copy(f->hop_host, sizeof(f->hop_host), ours->by, strlen(ours->by));
        sg_trace_copy(f->hop_id, sizeof(f->hop_id), ours->id, strlen(ours->id));
    } else if (s->msgid[0] == '\0' && lk->nrelays == 0)
        f->why = SG_TRACE_WHY_NO_RELAYS;      /* the hops could not have told */
    else if (s->msgid[0] == '\0' && s->truncated)
        f->why = SG_TRACE_WHY_TRUNCATED;      /* our hop may be in what was cut */
    else
        f->verdict = SG_TRACE_NOT_OURS;
}

void sg_trace_match(const struct sg_trace_samples *s, const struct sg_trace_lookup *lk,
                    struct sg_trace_result *out)
{
    memset(out, 0, offsetof(struct sg_trace_result, f));     /* findings: as matched */
    out->n = out->npassed = out->nnot_ours = 0;
    out->verdict = SG_TRACE_CANNOT_TELL;
    out->oldest_ms = lk ? lk->oldest_ms : -1;
    out->now_ms = lk ? lk->now_ms : 0;
    if (s == NULL || s->n == 0 || lk == NULL) {
        out->why = s && s->unreadable ? SG_TRACE_WHY_UNREADABLE : SG_TRACE_WHY_NO_SAMPLE;
        return;
    }
    for (size_t i = 0; i < s->n && i < SG_TRACE_MAX_SAMPLES; i++) {
        match_one(&s->s[i], lk, &out->f[i]);
        out->npassed += out->f[i].verdict == SG_TRACE_PASSED;
        out->nnot_ours += out->f[i].verdict == SG_TRACE_NOT_OURS;
    }
    out->n = s->n < SG_TRACE_MAX_SAMPLES ? s->n : SG_TRACE_MAX_SAMPLES;
    if (out->npassed)
        out->verdict = SG_TRACE_PASSED;
    else if (out->nnot_ours)
        out->verdict = SG_TRACE_NOT_OURS;
    else
        out->why = out->f[0].why;
}

/* --- 6. a lookup over an array ---------------------------------------------- */

static bool same_msgid(const char *recorded, const char *msgid)
{
    char a[SG_TRACE_VALUE];

    if (recorded == NULL)
        return false;
    sg_trace_msgid(a, sizeof(a), recorded, strlen(recorded));
    return a[0] != '\0' && strcmp(a, msgid) == 0;
}

static const struct sg_ev_msg *arr_by_msgid(void *ctx, const char *msgid)
{
    const struct sg_trace_array *a = ctx;

    for (size_t i = 0; i < a->n; i++)
        if (same_msgid(a->v[i].msgid, msgid))
            return &a->v[i];
    return NULL;
}

static const struct sg_ev_msg *arr_by_qid(void *ctx, const char *relay, const char *qid)
{
    const struct sg_trace_array *a = ctx;

    for (size_t i = 0; i < a->n; i++) {
        const struct sg_ev_msg *m = &a->v[i];
        if (m->qid && strcmp(m->qid, qid) == 0 &&
            (relay == NULL || m->relay == NULL || m->relay[0] == '\0' ||
             strcasecmp(m->relay, relay) == 0))
            return m;
    }
    return NULL;
}

static bool same_str(const char *a, const char *b)
{
    return a && b && a[0] && strcmp(a, b) == 0;
}

static size_t arr_same_hour(void *ctx, const struct sg_ev_msg *m, const struct sg_ev_msg **out,
                            size_t max)
{
    const struct sg_trace_array *a = ctx;
    size_t n = 0;

    for (size_t i = 0; i < a->n; i++) {
        const struct sg_ev_msg *o = &a->v[i];
        if (o == m || o->t_ms / 3600000 != m->t_ms / 3600000)
            continue;
        if (!same_str(o->ip, m->ip) && !same_str(o->identity, m->identity))
            continue;
        if (n < max)
            out[n] = o;
        n++;
    }
    return n;
}

void sg_trace_lookup_array(struct sg_trace_lookup *lk, struct sg_trace_array *arr)
{
    lk->ctx = arr;
    lk->by_msgid = arr_by_msgid;
    lk->by_qid = arr_by_qid;
    lk->same_hour = arr_same_hour;
    lk->oldest_ms = -1;
    for (size_t i = 0; i < arr->n; i++)
        if (lk->oldest_ms < 0 || arr->v[i].t_ms < lk->oldest_ms)
            lk->oldest_ms = arr->v[i].t_ms;
}
