/*
 * sg_trace_store.c - sg_trace's lookup backed by the store's trace index
 * (sg_store_trace_*), and the whole trace of a ticket's sample for the
 * block workflow: parse, know our relays, match.
 *
 * Our relays: the relay names the account's records carry (every relay
 * that decided a message of it), each known by a Received: "by" host that
 * is that name, or that name followed by a domain (relay_name "mx1",
 * Postfix myhostname "mx1.example.com"). relay_name defaults to the host
 * name, which is also Postfix's default myhostname.
 *
 * Must not: write to the store, or keep a record past sg_trace_store_free.
 */
#include "sg_trace.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RELAYS 32
#define MAX_KEPT 256              /* records a trace keeps alive at most */

struct sg_trace_store {
    sg_store_t *st;
    const char *account;
    struct sg_ev_msg kept[MAX_KEPT];
    size_t nkept;
    struct sg_ev_msg *hour;       /* the last same_hour answer */
    size_t nhour;
    struct sg_trace_relay relays[MAX_RELAYS];
    char names[MAX_RELAYS][2][SG_TRACE_HOST];
    size_t nrelays;
    bool error;                   /* a lookup failed: the store could not say */
};

static const struct sg_ev_msg *keep(struct sg_trace_store *ts, int rc, struct sg_ev_msg *m)
{
    if (rc < 0)
        ts->error = true;
    if (rc != 1)
        return NULL;
    if (ts->nkept == MAX_KEPT) {
        sg_ev_msg_clear(m);
        return NULL;
    }
    ts->kept[ts->nkept] = *m;
    return &ts->kept[ts->nkept++];
}

static const struct sg_ev_msg *st_by_msgid(void *ctx, const char *msgid)
{
    struct sg_trace_store *ts = ctx;
    struct sg_ev_msg m;

    return keep(ts, sg_store_trace_by_msgid(ts->st, ts->account, msgid, &m), &m);
}

static const struct sg_ev_msg *st_by_qid(void *ctx, const char *relay, const char *qid)
{
    struct sg_trace_store *ts = ctx;
    struct sg_ev_msg m;

    return keep(ts, sg_store_trace_by_qid(ts->st, ts->account, relay, qid, &m), &m);
}

static size_t st_same_hour(void *ctx, const struct sg_ev_msg *m, const struct sg_ev_msg **out,
                           size_t max)
{
    struct sg_trace_store *ts = ctx;

    sg_ev_msgv_free(ts->hour, ts->nhour);
    ts->hour = NULL;
    ts->nhour = 0;
    if (sg_store_trace_same_hour(ts->st, ts->account, m, &ts->hour, &ts->nhour) != 0)
        return 0;
    for (size_t i = 0; i < ts->nhour && i < max; i++)
        out[i] = &ts->hour[i];
    return ts->nhour;
}

/* A hop's by-host is relay name R's when it is R, or R and a domain. */
static bool host_is(const char *host, const char *relay)
{
    size_t n = strlen(relay);

    return n > 0 && strncasecmp(host, relay, n) == 0 && (host[n] == '\0' || host[n] == '.');
}

static void add_relay(struct sg_trace_store *ts, const char *host, const char *relay)
{
    for (size_t i = 0; i < ts->nrelays; i++)
        if (strcasecmp(ts->names[i][0], host) == 0 && strcmp(ts->names[i][1], relay) == 0)
            return;
    if (ts->nrelays == MAX_RELAYS || strlen(host) >= SG_TRACE_HOST ||
        strlen(relay) >= SG_TRACE_HOST)
        return;
    strcpy(ts->names[ts->nrelays][0], host);
    strcpy(ts->names[ts->nrelays][1], relay);
    ts->relays[ts->nrelays].host = ts->names[ts->nrelays][0];
    ts->relays[ts->nrelays].relay = ts->names[ts->nrelays][1];
    ts->nrelays++;
}

struct sg_trace_store *sg_trace_store_new(sg_store_t *st, const char *account,
                                          const char *const *relay_names, size_t nnames,
                                          const struct sg_trace_samples *s, int64_t now_ms,
                                          struct sg_trace_lookup *lk)
{
    struct sg_trace_store *ts = calloc(1, sizeof(*ts));

    if (ts == NULL)
        return NULL;
    ts->st = st;
    ts->account = account;
    for (size_t k = 0; k < nnames; k++) {
        if (relay_names[k] == NULL || relay_names[k][0] == '\0')
            continue;
        add_relay(ts, relay_names[k], relay_names[k]);
        for (size_t i = 0; s != NULL && i < s->n; i++)
            for (size_t h = 0; h < s->s[i].nhops; h++)
                if (host_is(s->s[i].hops[h].by, relay_names[k]))
                    add_relay(ts, s->s[i].hops[h].by, relay_names[k]);
    }
    memset(lk, 0, sizeof(*lk));
    lk->ctx = ts;
    lk->by_msgid = st_by_msgid;
    lk->by_qid = st_by_qid;
    lk->same_hour = st_same_hour;
    lk->relays = ts->relays;
    lk->nrelays = ts->nrelays;
    lk->now_ms = now_ms;
    if (sg_store_trace_oldest(st, account, &lk->oldest_ms) != 0) {
        lk->oldest_ms = -1;
        ts->error = true;
    }
    return ts;
}

bool sg_trace_store_failed(const struct sg_trace_store *ts)
{
    return ts != NULL && ts->error;
}

void sg_trace_store_free(struct sg_trace_store *ts)
{
    if (ts == NULL)
        return;
    for (size_t i = 0; i < ts->nkept; i++)
        sg_ev_msg_clear(&ts->kept[i]);
    sg_ev_msgv_free(ts->hour, ts->nhour);
    free(ts);
}

static struct sg_trace_result *trace_run(sg_store_t *st, const char *account,
                                         const char *const *relay_names, size_t nnames,
                                         const char *text, int64_t now_ms);

/* Our relays, when the caller names none: the relay names the account's
 * recent records carry (at most 32, deduplicated). */
static size_t recorded_relays(const struct sg_evidence_report *rep, const char **names,
                              size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < rep->nrecent && n < max; i++) {
        const char *r = rep->recent[i].relay;
        bool dup = r == NULL || r[0] == '\0';
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(names[k], r) == 0;
        if (!dup)
            names[n++] = r;
    }
    return n;
}

struct sg_trace_result *sg_trace_run(sg_store_t *st, const char *account,
                                     const char *const *relay_names, size_t nnames,
                                     const char *text, int64_t now_ms)
{
    struct sg_trace_result *r;
    struct sg_evidence_report rep;
    const char *names[32];

    if (relay_names != NULL)
        return trace_run(st, account, relay_names, nnames, text, now_ms);
    if (sg_store_evidence_get(st, account, &rep) != 0)
        return trace_run(st, account, NULL, 0, text, now_ms);
    nnames = recorded_relays(&rep, names, 32);
    r = trace_run(st, account, names, nnames, text, now_ms);
    sg_evidence_report_free(&rep);
    return r;
}

static struct sg_trace_result *trace_run(sg_store_t *st, const char *account,
                                         const char *const *relay_names, size_t nnames,
                                         const char *text, int64_t now_ms)
{
    struct sg_trace_result *r = calloc(1, sizeof(*r));
    struct sg_trace_samples *s = NULL;
    struct sg_trace_lookup lk;
    struct sg_trace_store *ts;

    if (r == NULL)
        return NULL;
    if (text != NULL && (s = sg_trace_parse(text, strlen(text))) == NULL) {
        free(r);
        return NULL;
    }
    if ((ts = sg_trace_store_new(st, account, relay_names, nnames, s, now_ms, &lk)) == NULL) {
        free(s);
        free(r);
        return NULL;
    }
    sg_trace_match(s, &lk, r);
    if (sg_trace_store_failed(ts) && r->verdict != SG_TRACE_PASSED) {
        /* the store did not answer: a "not ours" would be a guess */
        r->verdict = SG_TRACE_CANNOT_TELL;
        r->why = SG_TRACE_WHY_NO_RECORD;
        for (size_t i = 0; i < r->n; i++)
            if (r->f[i].verdict == SG_TRACE_NOT_OURS) {
                r->f[i].verdict = SG_TRACE_CANNOT_TELL;
                r->f[i].why = SG_TRACE_WHY_NO_RECORD;
            }
        r->nnot_ours = 0;
    }
    sg_trace_store_free(ts);
    free(s);
    return r;
}
