/*
 * sg_policy.c - the decision for one message: who sent it (identity),
 * which OVHcloud account carries it, whether its limits let it through,
 * and what to tell the MTA.
 *
 * Pure apart from the store it is handed: no syslog, no libmilter, no
 * network of its own, no exit(). Every string it gets may hold hostile
 * bytes; none of them reaches the SMTP reply text.
 */
#include "sg_policy.h"
#include "sg_time.h"
#include "sg_release.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#define DISTINCT_STACK 64

static uint64_t fnv64(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void strip_tag(const struct sg_settings *s, char *out)
{
    if (s->strip_tag && s->tag_separator) {
        char *atp = strrchr(out, '@');
        size_t at = atp ? (size_t)(atp - out) : strlen(out);
        char *tag = memchr(out, s->tag_separator, at);

        if (tag != NULL && tag > out)
            memmove(tag, out + at, strlen(out + at) + 1);
    }
}

static char *normalize(const struct sg_settings *s, const char *in, char *out, bool tag);

char *sg_policy_normalize(const struct sg_settings *s, const char *in, char *out)
{
    return normalize(s, in, out, true);
}

/* Length of a run of characters other than '=' and '@' starting at p. */
static size_t field(const char *p)
{
    return strcspn(p, "=@");
}

/* SRS0=HHH=TT=domain=local@forwarder -> local@domain; SRS1=HHH=fwd==HHH=
 * TT=domain=local@forwarder2 -> local@domain (the separator after SRS0/1 may
 * be '=', '+' or '-'). Anything that does not parse is left alone. */
static void unwrap_srs(char *id)
{
    char *p = id, *dom, *loc, *at;
    size_t n;
    char buf[SG_ADDR_MAX + 1];

    if (strncasecmp(p, "srs1", 4) == 0 && p[4] && strchr("=+-", p[4])) {
        p += 5;
        if ((n = field(p)) == 0 || p[n] != '=')          /* hash */
            return;
        p += n + 1;
        if ((n = field(p)) == 0 || p[n] != '=')          /* first forwarder */
            return;
        p += n + 1;
        if (*p == '\0' || strchr("=+-", *p) == NULL)    /* the SRS0 separator */
            return;
        p += 1;
    } else if (strncasecmp(p, "srs0", 4) == 0 && p[4] && strchr("=+-", p[4])) {
        p += 5;
    } else {
        return;
    }
    if ((n = field(p)) == 0 || p[n] != '=')              /* hash */
        return;
    p += n + 1;
    if ((n = field(p)) == 0 || p[n] != '=')              /* timestamp */
        return;
    p += n + 1;
    dom = p;
    if ((n = field(p)) == 0 || p[n] != '=')              /* original domain */
        return;
    loc = p + n + 1;
    at = strrchr(loc, '@');
    if (at == NULL || at == loc)
        return;
    snprintf(buf, sizeof(buf), "%.*s@%.*s", (int)(at - loc), loc, (int)n, dom);
    strcpy(id, buf);
}

/* prvs=TAG=local@domain -> local@domain (BATV, the tag being hex digits). */
static void unwrap_batv(char *id)
{
    char *p;
    size_t n;

    if (strncasecmp(id, "prvs=", 5) != 0)
        return;
    p = id + 5;
    n = strspn(p, "0123456789abcdefABCDEF");
    if (n < 4 || n > 32 || p[n] != '=' || p[n + 1] == '@' || p[n + 1] == '\0' ||
        strchr(p + n + 1, '@') == NULL)
        return;
    memmove(id, p + n + 1, strlen(p + n + 1) + 1);
}

char *sg_policy_sender(const struct sg_settings *s, const char *in, char *out)
{
    normalize(s, in, out, false);
    if (strcmp(out, "<>") == 0)
        return out;
    if (s->srs)
        unwrap_srs(out);
    if (s->batv)
        unwrap_batv(out);
    strip_tag(s, out);
    for (size_t i = 0; i < s->nverp; i++)
        if (sg_policy_match(s->verp[i], out)) {
            snprintf(out, SG_ADDR_MAX + 1, "%s", s->verp[i]);
            break;
        }
    return out;
}

static char *normalize(const struct sg_settings *s, const char *in, char *out, bool tag)
{
    const char *b = in ? in : "", *e;
    size_t n;
    char *p;

    while (*b == ' ' || *b == '\t')
        b++;
    e = b + strlen(b);
    while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (e - b >= 2 && *b == '<' && e[-1] == '>') {
        b++;
        e--;
    }
    n = (size_t)(e - b);
    if (n == 0) {
        strcpy(out, "<>");
        return out;
    }
    if (n > SG_ADDR_MAX) {
        /* Keep distinct over-long inputs distinct: cut, then a hash of the whole. */
        memcpy(out, b, SG_ADDR_MAX - 17);
        snprintf(out + SG_ADDR_MAX - 17, 18, "#%016llx", (unsigned long long)fnv64(b, n));
        n = SG_ADDR_MAX;
    } else {
        memcpy(out, b, n);
        out[n] = '\0';
    }
    if (s->lowercase)
        for (p = out; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    if (tag)
        strip_tag(s, out);
    return out;
}

bool sg_policy_match(const char *pat, const char *str)
{
    const char *star = NULL, *resume = NULL;

    while (*str) {
        if (*pat == '*') {
            star = pat++;
            resume = str;
        } else if (*pat == *str) {
            pat++;
            str++;
        } else if (star != NULL) {
            pat = star + 1;
            str = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

const struct sg_account *sg_policy_account(const struct sg_settings *s, const char *identity)
{
    for (size_t i = 0; i < s->naccounts; i++)
        for (size_t j = 0; j < s->accounts[i].nsenders; j++)
            if (sg_policy_match(s->accounts[i].senders[j], identity))
                return &s->accounts[i];
    return NULL;
}

void sg_policy_resolve(const struct sg_settings *s, const char *login, const char *envfrom,
                       struct sg_resolved *r)
{
    if (login != NULL && login[0] != '\0')
        sg_policy_normalize(s, login, r->identity);
    else
        sg_policy_sender(s, envfrom, r->identity);
    r->acct = sg_policy_account(s, r->identity);
    snprintf(r->account, sizeof(r->account), "%s", r->acct ? r->acct->address : r->identity);
    r->limits = r->acct ? r->acct->limits : s->limits;
    r->nlimits = r->acct ? r->acct->nlimits : s->nlimits;
    r->observe = r->acct ? r->acct->observe : s->observe;
}

uint64_t sg_policy_rcpt_hash(const char *rcpt)
{
    return fnv64(rcpt, strlen(rcpt));
}

static bool allowed(const struct sg_settings *s, const char *identity)
{
    for (size_t i = 0; i < s->nallow; i++)
        if (sg_policy_match(s->allow[i], identity))
            return true;
    return false;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Deduplicated hashes of the normalised recipients. */
static size_t rcpt_hashes(const struct sg_settings *s, const struct sg_request *req,
                          uint64_t *h)
{
    char buf[SG_ADDR_MAX + 1];
    size_t n = 0;

    for (size_t i = 0; i < req->nrcpts; i++)
        h[i] = sg_policy_rcpt_hash(sg_policy_normalize(s, req->rcpts[i], buf));
    qsort(h, req->nrcpts, sizeof(*h), cmp_u64);
    for (size_t i = 0; i < req->nrcpts; i++)
        if (n == 0 || h[n - 1] != h[i])
            h[n++] = h[i];
    return n;
}

/* Printable, %-free copy of a config name for SMTP reply text. */
static void reply_safe(char *dst, size_t size, const char *src)
{
    size_t o = 0;

    for (; src && *src && o + 1 < size; src++)
        if (*src > 0x20 && *src < 0x7f && *src != '%' && *src != '\\')
            dst[o++] = *src;
    dst[o] = '\0';
}

static void human_duration(char *buf, size_t size, uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;

    if (s < 120)
        snprintf(buf, size, "%llus", (unsigned long long)s);
    else if (s < 7200)
        snprintf(buf, size, "%llum", (unsigned long long)((s + 59) / 60));
    else if (s < 172800)
        snprintf(buf, size, "%lluh", (unsigned long long)((s + 3599) / 3600));
    else
        snprintf(buf, size, "%llud", (unsigned long long)((s + 86399) / 86400));
}

static const char *unit_words(enum sg_unit u)
{
    static const char *w[] = { "messages", "recipients", "bytes", "distinct recipients" };
    return w[u];
}

static void set_reply(struct sg_verdict *v, const char *code, const char *xcode)
{
    snprintf(v->smtp_code, sizeof(v->smtp_code), "%s", code);
    snprintf(v->smtp_xcode, sizeof(v->smtp_xcode), "%s", xcode);
}

/* Text for a refusal by limit l: names the limit and, if it helps, when to retry. */
static void over_reason(struct sg_verdict *v)
{
    char name[64], win[16], retry[16];

    reply_safe(name, sizeof(name), v->limit->name);
    human_duration(win, sizeof(win), v->limit->window_ms);
    human_duration(retry, sizeof(retry), v->retry_after_ms);
    if (v->too_big)
        snprintf(v->reason, sizeof(v->reason),
                 "sending limit %s: this message alone exceeds %llu %s per %s",
                 name, (unsigned long long)v->cap, unit_words(v->unit), win);
    else if (v->action == SG_ACT_TEMPFAIL)
        snprintf(v->reason, sizeof(v->reason),
                 "sending limit %s reached (%llu %s per %s), try again in %s",
                 name, (unsigned long long)v->cap, unit_words(v->unit), win, retry);
    else
        snprintf(v->reason, sizeof(v->reason),
                 "sending limit %s reached (%llu %s per %s)",
                 name, (unsigned long long)v->cap, unit_words(v->unit), win);
}

/* Lower-cased domain of the address in a header value or envelope argument
 * ("Name <a@b.c>", "<a@b.c>", "a@b.c"); "" when there is none. */
static void addr_domain(const char *v, char *out, size_t size)
{
    const char *lt = v ? strchr(v, '<') : NULL, *start = lt ? lt + 1 : v, *at = NULL;
    size_t o = 0;

    out[0] = '\0';
    if (start == NULL)
        return;
    for (const char *p = start; *p && *p != '>'; p++)
        if (*p == '@')
            at = p;
    if (at == NULL)
        return;
    for (const char *p = at + 1; *p && *p != '>' && *p != ' ' && *p != ',' && *p != ';' &&
                                 *p != '\t' && o + 1 < size; p++)
        out[o++] = (char)tolower((unsigned char)*p);
    out[o] = '\0';
}

#define EV_DOMAINS 32
#define EV_DOMAIN_LEN 128

/* Distinct recipient domains of a message, at most EV_DOMAINS. */
static size_t rcpt_domains(const struct sg_request *req, char dom[][EV_DOMAIN_LEN],
                           const char **ptrs)
{
    size_t n = 0;

    for (size_t i = 0; i < req->nrcpts && n < EV_DOMAINS; i++) {
        size_t j;
        addr_domain(req->rcpts[i], dom[n], EV_DOMAIN_LEN);
        if (dom[n][0] == '\0')
            continue;
        for (j = 0; j < n && strcmp(dom[j], dom[n]) != 0; j++)
            ;
        if (j == n) {
            ptrs[n] = dom[n];
            n++;
        }
    }
    return n;
}

static bool caps_distinct(const struct sg_limit *l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].cap[SG_UNIT_DISTINCT])
            return true;
    return false;
}

void sg_policy_decide(const sg_conf_t *conf, sg_store_t *primary, sg_store_t *fallback,
                      const struct sg_request *req, struct sg_verdict *v)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const struct sg_limit *limits;
    struct sg_resolved who;
    uint64_t stack_h[DISTINCT_STACK], *h = stack_h;
    struct sg_charge charge = { .units = { 0 } };
    struct sg_evidence ev = { 0 };
    struct sg_store_result r;
    size_t nlimits;
    bool observe, charge_all;
    double t0;
    sg_store_t *used_store = primary;
    char from_dom[EV_DOMAIN_LEN], doms[EV_DOMAINS][EV_DOMAIN_LEN];
    const char *dom_ptrs[EV_DOMAINS];

    memset(v, 0, sizeof(*v));
    v->store_ms = -1;
    sg_policy_resolve(s, req->auth_authen, req->envfrom, &who);
    memcpy(v->identity, who.identity, sizeof(v->identity));
    memcpy(v->account, who.account, sizeof(v->account));
    v->acct = who.acct;
    limits = who.limits;
    nlimits = who.nlimits;
    v->allowed = allowed(s, v->identity);
    v->store = "none";
    observe = who.observe;
    /* observe mode accepts what it would refuse: charge it, so the counts
     * (and suggest-limits) see the real traffic */
    charge_all = s->strict || v->allowed || observe;

    charge.implicit = v->acct == NULL;
    charge.implicit_max = (size_t)s->memory_max_identities;
    charge.units[SG_UNIT_MESSAGES] = 1;
    charge.units[SG_UNIT_RECIPIENTS] = req->nrcpts;
    charge.units[SG_UNIT_BYTES] = req->size;
    if (caps_distinct(limits, nlimits)) {       /* recipient hashes only when counted */
        if (req->nrcpts > DISTINCT_STACK)
            h = malloc(req->nrcpts * sizeof(*h));
        if (h == NULL) {
            v->action = SG_ACT_TEMPFAIL;
            set_reply(v, "451", "4.3.0");
            snprintf(v->reason, sizeof(v->reason), "sendguard: out of memory, try again later");
            return;
        }
        charge.rcpt_hashes = h;
        charge.nrcpt_hashes = rcpt_hashes(s, req, h);
    }

    if (sg_store_records_evidence(primary)) {     /* the memory store keeps none */
        const char *acct_dom = strrchr(v->account, '@');
        addr_domain(req->from_header, from_dom, sizeof(from_dom));
        ev.from_header_domain = from_dom[0] ? from_dom : NULL;
        ev.from_mismatch = from_dom[0] && acct_dom && strcmp(from_dom, acct_dom + 1) != 0;
        ev.rcpt_domains = dom_ptrs;
        ev.nrcpt_domains = rcpt_domains(req, doms, dom_ptrs);
    }
    ev.qid = req->qid;
    ev.client_ip = req->client_ip;
    ev.identity = v->identity;
    ev.mailer = req->mailer;
    ev.msgid = req->msgid;
    ev.relay = req->relay;
    /* held on lockdown (on_block hold, enforced): the store records the
     * queue id in the same call; only a real queue id (the milter warns
     * about the others) */
    ev.hold_on_lockdown = (v->acct ? v->acct->on_block : s->on_block) == SG_ACT_HOLD &&
                          !(observe && s->observe_lockdown) && req->qid != NULL &&
                          sg_release_qid_valid(req->qid);

    t0 = sg_time_mono_msf();
    if (sg_store_decide_flood(primary, v->account, limits, nlimits, &charge, &ev, charge_all,
                              (unsigned)s->flood_threshold, &r) == 0 &&
        r.status != SG_STORE_ERROR)
        v->store_ms = sg_time_mono_msf() - t0;
    else {
        v->store_error = true;
        used_store = NULL;
        if (s->store_on_error == SG_ON_ERROR_ACCEPT && fallback != NULL &&
            sg_store_decide_flood(fallback, v->account, limits, nlimits, &charge, &ev,
                                  charge_all, (unsigned)s->flood_threshold,
                                  &r) == 0 && r.status != SG_STORE_ERROR)
            used_store = fallback;
    }
    if (h != stack_h)
        free(h);
    if (used_store == NULL) {
        v->action = s->store_on_error == SG_ON_ERROR_ACCEPT ? SG_ACT_ACCEPT : SG_ACT_TEMPFAIL;
        if (v->action == SG_ACT_TEMPFAIL) {
            set_reply(v, "451", "4.3.0");
            snprintf(v->reason, sizeof(v->reason),
                     "sendguard: rate store unavailable, try again later");
        }
        return;
    }
    v->store = sg_store_name(used_store);
    if (r.overflow)                        /* what was charged: the shared account */
        snprintf(v->account, sizeof(v->account), "%s", SG_STORE_OVERFLOW_ACCOUNT);
    if (nlimits > 0 && r.limit < nlimits) {
        v->limit = &limits[r.limit];
        v->unit = r.unit;
        v->used = r.used;
        v->cap = r.cap;
    }
    v->warned = r.warn_mask != 0;
    v->action = SG_ACT_ACCEPT;

    if (r.status == SG_STORE_OVER && !v->allowed) {
        v->retry_after_ms = r.retry_after_ms;
        v->action = v->limit->action;
        v->too_big = r.retry_after_ms == 0;
        if (v->too_big && v->action == SG_ACT_TEMPFAIL)
            v->action = SG_ACT_REJECT;     /* would never fit: say so now, not in 5 days */
        if (v->action == SG_ACT_WARN) {
            v->warned = true;
            v->action = SG_ACT_ACCEPT;
        }
        over_reason(v);
    } else if (r.status == SG_STORE_OVER) {
        v->warned = true;                  /* allowed sender over a cap: logged, let through */
    }
    if (r.lockdown) {
        v->lockdown = true;
        v->held = r.held;
        v->action = v->acct ? v->acct->on_block : s->on_block;
        snprintf(v->reason, sizeof(v->reason),
                 "account blocked for spam at OVHcloud: mail held until it is unblocked");
    }
    if (observe && (v->action == SG_ACT_TEMPFAIL || v->action == SG_ACT_HOLD ||
                    v->action == SG_ACT_REJECT) && (!v->lockdown || s->observe_lockdown))
        v->observed = true;       /* logged as it would be enforced, then accepted */
    switch (v->action) {
    case SG_ACT_TEMPFAIL:
        set_reply(v, "451", "4.7.1");
        break;
    case SG_ACT_REJECT:
        set_reply(v, "550", "5.7.1");
        break;
    default:
        break;
    }
}
