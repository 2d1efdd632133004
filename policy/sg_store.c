/*
 * sg_store.c - the store handle: picks a backend and forwards to it.
 *
 * Must not: hold limit logic (that is in each backend, atomically) or
 * talk to the network itself.
 */
#include "sg_time.h"
#include "sg_store.h"
#include "sg_store_backend.h"
#include "sg_store_redis.h"
#include "sg_log.h"
#include "sg_topk.h"

#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sg_store {
    const struct sg_store_ops *ops;
    void *be;
};

/* The flood log: new implicit identities per FLOOD_WINDOW_S on this relay,
 * with the client IP and mailer they came from most. When a window's
 * count reaches identity.flood_threshold, one warning (so at most one per
 * window: an ongoing flood logs once every 10 minutes). */
#define FLOOD_WINDOW_S 600

static struct {
    pthread_mutex_t mu;
    uint64_t start_ms, fresh, overflow;
    bool logged;
    struct sg_topk ip, mailer;
} flood = { .mu = PTHREAD_MUTEX_INITIALIZER };

void sg_store_flood_note(uint64_t now_ms, bool fresh, bool overflow, const char *ip,
                         const char *mailer, unsigned threshold)
{
    uint64_t n = 0, ov = 0, mins = 0;
    char tip[SG_TOPK_LEN] = "-", tmua[SG_TOPK_LEN] = "-";
    bool log = false;
    int i;

    if (!fresh && !overflow)
        return;
    pthread_mutex_lock(&flood.mu);
    if (flood.start_ms == 0 || now_ms < flood.start_ms ||
        now_ms - flood.start_ms >= FLOOD_WINDOW_S * 1000u) {
        flood.fresh = flood.overflow = 0;
        flood.logged = false;
        memset(&flood.ip, 0, sizeof(flood.ip));
        memset(&flood.mailer, 0, sizeof(flood.mailer));
        flood.start_ms = now_ms;
    }
    flood.fresh += fresh;
    flood.overflow += overflow;
    sg_topk_add(&flood.ip, ip && ip[0] ? ip : "(none)", 1);
    sg_topk_add(&flood.mailer, mailer && mailer[0] ? mailer : "(none)", 1);
    if (threshold > 0 && !flood.logged && flood.fresh + flood.overflow >= threshold) {
        flood.logged = log = true;
        n = flood.fresh;
        ov = flood.overflow;
        mins = (now_ms - flood.start_ms + 59999) / 60000;
        if ((i = sg_topk_max(&flood.ip)) >= 0)
            memcpy(tip, flood.ip.v[i], sizeof(tip));
        if ((i = sg_topk_max(&flood.mailer)) >= 0)
            memcpy(tmua, flood.mailer.v[i], sizeof(tmua));
    }
    pthread_mutex_unlock(&flood.mu);
    if (log) {
        char e1[SG_TOPK_LEN * 4], e2[SG_TOPK_LEN * 4];

        sg_log(LOG_WARNING, "flood: %llu new implicit identities in the last %llum "
               "(top ip=%s, mailer=%s)%s; sendguardctl report --flood shows more",
               (unsigned long long)(n + ov), (unsigned long long)(mins ? mins : 1),
               sg_log_esc(e1, sizeof(e1), tip), sg_log_esc(e2, sizeof(e2), tmua),
               ov ? " some past store.memory.max_identities (overflow account)" : "");
    }
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Copy src into dst (dstsize > 0) as valid UTF-8 without control
 * characters: anything else becomes '?'. Cut at a character boundary.
 * Returns the length written. */
size_t sg_store_utf8_clean(char *dst, size_t dstsize, const char *src, size_t srclen)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0;

    while (i < srclen) {
        size_t n = utf8_seq(s + i, srclen - i);
        if (n == 0 || (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
            if (o + 1 >= dstsize)
                break;
            dst[o++] = '?';
            i++;
            continue;
        }
        if (o + n >= dstsize)
            break;
        memcpy(dst + o, s + i, n);
        o += n;
        i += n;
    }
    dst[o] = '\0';
    return o;
}

uint64_t sg_clock_realtime_ms(void *ctx)
{
    (void)ctx;
    return (uint64_t)sg_time_real_ms();
}

static sg_store_t *store_wrap(const struct sg_store_ops *ops, void *be)
{
    sg_store_t *st;

    if (be == NULL)
        return NULL;
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        ops->close(be);
        return NULL;
    }
    st->ops = ops;
    st->be = be;
    return st;
}

sg_store_t *sg_store_memory_new(sg_clock_fn clock, void *clock_ctx)
{
    return store_wrap(&sg_store_memory_ops,
                      sg_store_memory_open(clock ? clock : sg_clock_realtime_ms, clock_ctx));
}

extern const struct sg_store_ops sg_store_redis_ops;

sg_store_t *sg_store_redis_new(const struct sg_redis_settings *rs, sg_clock_fn clock,
                               void *clock_ctx, char *err, size_t errlen)
{
    return store_wrap(&sg_store_redis_ops, sg_store_redis_open(rs, clock, clock_ctx, err, errlen));
}

void sg_store_free(sg_store_t *st)
{
    if (st == NULL)
        return;
    st->ops->close(st->be);
    free(st);
}

const char *sg_store_name(const sg_store_t *st)
{
    return st->ops->name;
}

bool sg_store_records_evidence(const sg_store_t *st)
{
    return st->ops->evidence;
}

int sg_store_decide(sg_store_t *st, const char *account,
                    const struct sg_limit *limits, size_t nlimits,
                    const struct sg_charge *charge,
                    const struct sg_evidence *ev, bool charge_refused,
                    struct sg_store_result *out)
{
    memset(out, 0, sizeof(*out));
    if (nlimits > SG_STORE_MAX_LIMITS) {
        out->status = SG_STORE_ERROR;
        return -1;
    }
    return st->ops->decide(st->be, account, limits, nlimits, charge, ev,
                           charge_refused, out);
}

int sg_store_decide_flood(sg_store_t *st, const char *account,
                          const struct sg_limit *limits, size_t nlimits,
                          const struct sg_charge *charge,
                          const struct sg_evidence *ev, bool charge_refused,
                          unsigned flood_threshold, struct sg_store_result *out)
{
    int rc = sg_store_decide(st, account, limits, nlimits, charge, ev, charge_refused, out);

    if (rc == 0 && charge->implicit)
        sg_store_flood_note(sg_clock_realtime_ms(NULL), out->new_identity, out->overflow,
                            ev ? ev->client_ip : NULL, ev ? ev->mailer : NULL,
                            flood_threshold);
    return rc;
}

int sg_store_usage(sg_store_t *st, const char *account,
                   const struct sg_limit *limits, size_t nlimits,
                   struct sg_usage *usage)
{
    memset(usage, 0, nlimits * sizeof(*usage));
    return st->ops->usage(st->be, account, limits, nlimits, usage);
}

int sg_store_reset(sg_store_t *st, const char *account)
{
    return st->ops->reset(st->be, account);
}

int sg_store_state_get(sg_store_t *st, const char *account, struct sg_account_state *out)
{
    memset(out, 0, sizeof(*out));
    out->ticket = -1;
    snprintf(out->phase, sizeof(out->phase), "ok");
    return st->ops->state_get(st->be, account, out);
}

int sg_store_state_cas(sg_store_t *st, const char *account, uint64_t expect_version,
                       const struct sg_account_state *next, struct sg_account_state *cur)
{
    struct sg_account_state tmp;

    if (account == NULL || next == NULL)
        return -1;
    if (cur == NULL)
        cur = &tmp;
    memset(cur, 0, sizeof(*cur));
    cur->ticket = -1;
    snprintf(cur->phase, sizeof(cur->phase), "ok");
    return st->ops->state_cas(st->be, account, expect_version, next, cur);
}

int sg_store_lock(sg_store_t *st, const char *name, const char *owner, uint64_t ttl_ms)
{
    if (name == NULL || owner == NULL || owner[0] == '\0')
        return -1;
    return st->ops->lock(st->be, name, owner, ttl_ms);
}

int sg_store_evidence_get(sg_store_t *st, const char *account, struct sg_evidence_report *out)
{
    memset(out, 0, sizeof(*out));
    out->last_seen_ms = -1;
    if (account == NULL)
        return -1;
    return st->ops->evidence_get ? st->ops->evidence_get(st->be, account, out) : 0;
}

void sg_evidence_report_free(struct sg_evidence_report *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nips; i++)
        free(r->ips[i].value);
    for (size_t i = 0; i < r->nmailers; i++)
        free(r->mailers[i].value);
    for (size_t i = 0; i < r->ndomains; i++)
        free(r->domains[i].value);
    for (size_t i = 0; i < r->nmismatches; i++) {
        free(r->mismatches[i].qid);
        free(r->mismatches[i].identity);
        free(r->mismatches[i].from_domain);
        free(r->mismatches[i].ip);
    }
    for (size_t i = 0; i < r->nrecent; i++) {
        struct sg_ev_msg *m = &r->recent[i];
        free(m->qid);
        free(m->ip);
        free(m->identity);
        free(m->msgid);
        free(m->mailer);
        free(m->relay);
    }
    free(r->ips);
    free(r->mailers);
    free(r->domains);
    free(r->mismatches);
    free(r->hours);
    free(r->recent);
    memset(r, 0, sizeof(*r));
}

/* --- the trace index --- */

void sg_ev_msg_clear(struct sg_ev_msg *m)
{
    if (m == NULL)
        return;
    free(m->qid);
    free(m->ip);
    free(m->identity);
    free(m->msgid);
    free(m->mailer);
    free(m->relay);
    memset(m, 0, sizeof(*m));
}

void sg_ev_msgv_free(struct sg_ev_msg *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        sg_ev_msg_clear(&v[i]);
    free(v);
}

int sg_store_trace_by_msgid(sg_store_t *st, const char *account, const char *msgid,
                            struct sg_ev_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (account == NULL || msgid == NULL)
        return -1;
    return st->ops->trace_by_msgid ? st->ops->trace_by_msgid(st->be, account, msgid, out) : 0;
}

int sg_store_trace_by_qid(sg_store_t *st, const char *account, const char *relay,
                          const char *qid, struct sg_ev_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (account == NULL || relay == NULL || qid == NULL)
        return -1;
    if (qid[0] == '\0' || st->ops->trace_by_qid == NULL)
        return 0;
    return st->ops->trace_by_qid(st->be, account, relay, qid, out);
}

int sg_store_trace_same_hour(sg_store_t *st, const char *account, const struct sg_ev_msg *m,
                             struct sg_ev_msg **v, size_t *n)
{
    *v = NULL;
    *n = 0;
    if (account == NULL || m == NULL)
        return -1;
    return st->ops->trace_same_hour ? st->ops->trace_same_hour(st->be, account, m, v, n) : 0;
}

int sg_store_trace_oldest(sg_store_t *st, const char *account, int64_t *oldest_ms)
{
    *oldest_ms = -1;
    if (account == NULL)
        return -1;
    return st->ops->trace_oldest ? st->ops->trace_oldest(st->be, account, oldest_ms) : 0;
}

int sg_store_flood_json(sg_store_t *st, unsigned hours, char **json_out)
{
    *json_out = NULL;
    return st->ops->flood_json ? st->ops->flood_json(st->be, hours, json_out) : -1;
}

int sg_store_held_add(sg_store_t *st, const char *account, const char *relay, const char *qid)
{
    if (qid == NULL || qid[0] == '\0')
        return -1;
    return st->ops->held_add(st->be, account, relay, qid);
}

int sg_store_held_list(sg_store_t *st, const char *account, const char *relay,
                       char ***qids, size_t *n)
{
    *qids = NULL;
    *n = 0;
    return st->ops->held_list(st->be, account, relay, qids, n);
}

int sg_store_held_del(sg_store_t *st, const char *account, const char *relay,
                      const char *const *qids, size_t n)
{
    return n == 0 ? 0 : st->ops->held_del(st->be, account, relay, qids, n);
}

void sg_store_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
