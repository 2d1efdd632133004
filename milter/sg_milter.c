/*
 * sg_milter.c - thin milter handlers: collect what the MTA says about
 * a message, hand it to sg_policy at end of message, map the verdict to
 * a milter answer and log one key=value line.
 *
 * Must not: decide anything itself, block on anything but the store call
 * in eom, or let a byte of the message reach a log line unescaped.
 * Steps the decision does not need are negotiated away, and the ones kept
 * are "no reply" steps, so the MTA never waits on us before end of message
 * (sg_mproto.c sends nothing for those, whatever a handler returns: a
 * failure there is remembered and answered at end of message).
 */
#include "sg_milter.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "sg_log.h"
#include "sg_jobs.h"
#include "sg_policy.h"

#define HDR_KEEP 512              /* bytes kept of an evidence header */
#define RCPT_KEEP 1024            /* bytes kept of one recipient */
#define MACRO_WARN_AFTER 100      /* messages before "{auth_authen} never seen" */

struct sg_runtime sg_rt;

struct msgctx {
    sg_conf_t *conf;              /* the snapshot this message is decided with */
    char *envfrom, *auth, *qid;
    char **rcpts;
    size_t nrcpts, rcap;
    char mailer[HDR_KEEP], from[HDR_KEEP], msgid[HDR_KEEP];
    uint64_t size;
    bool failed;                  /* out of memory on a no-reply step */
};

struct connctx {
    char ip[INET6_ADDRSTRLEN];
    struct msgctx m;
};

static atomic_ulong n_msgs, n_auth;
static long warned_noqid, warned_noauth, warned_noquarantine;

/* --- helpers ------------------------------------------------------------- */

static char *dup_cut(const char *s, size_t max)
{
    return s ? strndup(s, max) : NULL;
}

static void msg_reset(struct msgctx *m)
{
    free(m->envfrom);
    free(m->auth);
    free(m->qid);
    for (size_t i = 0; i < m->nrcpts; i++)
        free(m->rcpts[i]);
    free(m->rcpts);
    if (m->conf)
        sg_conf_unref(m->conf);
    memset(m, 0, sizeof(*m));
}

static bool config_counts_bytes(const sg_conf_t *conf)
{
    const struct sg_settings *s = sg_conf_settings(conf);

    for (size_t i = 0; i < s->nlimits; i++)
        if (s->limits[i].cap[SG_UNIT_BYTES])
            return true;
    for (size_t a = 0; a < s->naccounts; a++)
        for (size_t i = 0; i < s->accounts[a].nlimits; i++)
            if (s->accounts[a].limits[i].cap[SG_UNIT_BYTES])
                return true;
    return false;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* --- handlers ------------------------------------------------------------ */

static struct connctx *conn_get(sg_msess_t *ms)
{
    struct connctx *c = sg_mproto_getpriv(ms);

    if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL)
        sg_mproto_setpriv(ms, c);
    return c;
}

static void h_negotiate(sg_msess_t *ms, struct sg_mp_options *o)
{
    sg_conf_t *conf = sg_conf_current();
    uint32_t want = SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH |
                    SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                    SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_DATA |
                    SMFIP_NR_UNKN;

    (void)ms;
    if (!config_counts_bytes(conf))
        want |= SMFIP_NOBODY;
    /* Over TCP, answer the DATA step: Postfix writes the envelope, then the
     * headers and end of message, without TCP_NODELAY; with nothing to
     * answer in between, that second write waits for our delayed ACK
     * (~40 ms a message). A reply at DATA carries the ACK at once. */
    if (sg_rt.tcp)
        want &= ~(SMFIP_NODATA | SMFIP_NR_DATA);
    sg_conf_unref(conf);
    if (!(o->mta_actions & SMFIF_QUARANTINE) && sg_log_ratelimit(&warned_noquarantine, 3600))
        sg_log(LOG_WARNING, "MTA does not offer quarantine: action hold falls back to tempfail");
    o->actions = SMFIF_QUARANTINE;
    o->steps = want;              /* the engine keeps what the MTA offered */
    o->symlist[SMFIM_ENVFROM] = "{auth_authen} i";
    o->symlist[SMFIM_EOM] = "i";
}

static enum sg_mp_reply h_connect(sg_msess_t *ms, const char *host, int family, const char *addr)
{
    struct connctx *c = conn_get(ms);
    unsigned char bin[sizeof(struct in6_addr)];

    (void)host;
    if (c == NULL)
        return SG_MP_TEMPFAIL;
    /* the address is printed in log lines: only a parsed one is kept */
    if (family == '4' && addr != NULL && inet_pton(AF_INET, addr, bin) == 1)
        inet_ntop(AF_INET, bin, c->ip, sizeof(c->ip));
    else if (family == '6' && addr != NULL &&
             inet_pton(AF_INET6, strncmp(addr, "IPv6:", 5) == 0 ? addr + 5 : addr, bin) == 1)
        inet_ntop(AF_INET6, bin, c->ip, sizeof(c->ip));
    else if (family == '4' || family == '6')
        snprintf(c->ip, sizeof(c->ip), "unknown");
    else
        snprintf(c->ip, sizeof(c->ip), "local");
    return SG_MP_CONTINUE;
}

static enum sg_mp_reply h_mail(sg_msess_t *ms, char **argv, int argc)
{
    struct connctx *c = conn_get(ms);

    if (c == NULL)
        return SG_MP_TEMPFAIL;
    if (c->ip[0] == '\0')         /* CONNECT negotiated away or never sent */
        snprintf(c->ip, sizeof(c->ip), "unknown");
    msg_reset(&c->m);
    c->m.conf = sg_conf_current();
    c->m.envfrom = dup_cut(argc > 0 ? argv[0] : "", RCPT_KEEP);
    c->m.auth = dup_cut(sg_mproto_getsymval(ms, "{auth_authen}"), RCPT_KEEP);
    c->m.qid = dup_cut(sg_mproto_getsymval(ms, "i"), 64);
    if (c->m.envfrom == NULL)
        c->m.failed = true;
    return c->m.failed ? SG_MP_TEMPFAIL : SG_MP_CONTINUE;
}

static enum sg_mp_reply h_rcpt(sg_msess_t *ms, char **argv, int argc)
{
    struct connctx *c = sg_mproto_getpriv(ms);
    struct msgctx *m;

    if (c == NULL || c->m.conf == NULL)
        return SG_MP_TEMPFAIL;    /* RCPT before MAIL: EOM will tempfail too */
    m = &c->m;
    if (m->nrcpts == m->rcap) {
        size_t ncap = m->rcap ? m->rcap * 2 : 8;
        char **n = realloc(m->rcpts, ncap * sizeof(*n));
        if (n == NULL) {
            m->failed = true;
            return SG_MP_TEMPFAIL;
        }
        m->rcpts = n;
        m->rcap = ncap;
    }
    m->rcpts[m->nrcpts] = dup_cut(argc > 0 ? argv[0] : "", RCPT_KEEP);
    if (m->rcpts[m->nrcpts] == NULL) {
        m->failed = true;
        return SG_MP_TEMPFAIL;
    }
    m->nrcpts++;
    return SG_MP_CONTINUE;
}

static void keep_header(char *dst, const char *v)
{
    if (dst[0] == '\0')           /* first occurrence wins */
        snprintf(dst, HDR_KEEP, "%s", v);
}

static enum sg_mp_reply h_header(sg_msess_t *ms, const char *name, const char *value)
{
    struct connctx *c = sg_mproto_getpriv(ms);

    if (c == NULL || c->m.conf == NULL)
        return SG_MP_CONTINUE;    /* no message: end of message tempfails */
    c->m.size += strlen(name) + strlen(value) + 4;    /* "name: value\r\n" */
    if (strcasecmp(name, "From") == 0)
        keep_header(c->m.from, value);
    else if (strcasecmp(name, "Message-ID") == 0)
        keep_header(c->m.msgid, value);
    else if (strcasecmp(name, "X-Mailer") == 0 || strcasecmp(name, "User-Agent") == 0)
        keep_header(c->m.mailer, value);
    return SG_MP_CONTINUE;
}

static enum sg_mp_reply h_body(sg_msess_t *ms, const unsigned char *chunk, size_t len)
{
    struct connctx *c = sg_mproto_getpriv(ms);

    (void)chunk;
    if (c != NULL && c->m.conf != NULL)
        c->m.size += len;
    return SG_MP_CONTINUE;
}

static void log_verdict(const struct msgctx *m, const char *ip, const struct sg_verdict *v,
                        double ms)
{
    char qid[80], acct[4 * 64], ident[4 * 64], lim[80];
    int prio = LOG_INFO;

    if (v->action == SG_ACT_TEMPFAIL || v->action == SG_ACT_HOLD || v->action == SG_ACT_REJECT)
        prio = LOG_NOTICE;
    if (v->warned)
        prio = LOG_WARNING;
    sg_log(prio, "qid=%s account=<%s> identity=<%s> ip=%s rcpts=%zu size=%llu action=%s"
           " limit=%s used=%llu cap=%llu store=%s ms=%.2f%s%s%s%s",
           sg_log_esc(qid, sizeof(qid), m->qid), sg_log_esc(acct, sizeof(acct), v->account),
           sg_log_esc(ident, sizeof(ident), v->identity), ip, m->nrcpts,
           (unsigned long long)m->size, sg_action_name(v->action),
           sg_log_esc(lim, sizeof(lim), v->limit ? v->limit->name : NULL),
           (unsigned long long)v->used, (unsigned long long)v->cap, v->store, ms,
           v->warned ? " warn=1" : "", v->allowed ? " allow=1" : "",
           v->lockdown ? " lockdown=1" : "", v->store_error ? " store_error=1" : "");
}

static void check_macros(const struct msgctx *m)
{
    unsigned long n = atomic_fetch_add(&n_msgs, 1) + 1;

    if (m->auth != NULL)
        atomic_fetch_add(&n_auth, 1);
    if (m->qid == NULL && sg_log_ratelimit(&warned_noqid, 3600))
        sg_log(LOG_WARNING, "the MTA sends no {i} macro: queue ids will be missing from logs"
               " and held mail cannot be tracked; Postfix: milter_end_of_data_macros = i");
    if (n == MACRO_WARN_AFTER && atomic_load(&n_auth) == 0 &&
        sg_log_ratelimit(&warned_noauth, 3600))
        sg_log(LOG_WARNING, "no {auth_authen} macro in %d messages: identities fall back to the"
               " envelope sender; if clients authenticate, Postfix needs milter_mail_macros to"
               " include {auth_authen}", MACRO_WARN_AFTER);
}

static enum sg_mp_reply h_eom(sg_msess_t *ms)
{
    struct connctx *c = sg_mproto_getpriv(ms);
    struct sg_request req = { 0 };
    struct sg_verdict v;
    struct msgctx *m;
    enum sg_mp_reply rc = SG_MP_CONTINUE;
    double t0 = now_ms();

    if (c == NULL || c->m.conf == NULL)
        return SG_MP_TEMPFAIL;    /* end of message without MAIL */
    m = &c->m;
    if (m->failed) {
        sg_log(LOG_ERR, "out of memory while reading a message: tempfail");
        msg_reset(m);
        return SG_MP_TEMPFAIL;
    }
    if (m->qid == NULL)
        m->qid = dup_cut(sg_mproto_getsymval(ms, "i"), 64);
    check_macros(m);
    req.auth_authen = m->auth;
    req.envfrom = m->envfrom;
    req.client_ip = c->ip;
    req.qid = m->qid;
    req.mailer = m->mailer[0] ? m->mailer : NULL;
    req.from_header = m->from[0] ? m->from : NULL;
    req.msgid = m->msgid[0] ? m->msgid : NULL;
    req.rcpts = (const char *const *)m->rcpts;
    req.nrcpts = m->nrcpts;
    req.size = m->size;
    req.relay = sg_rt.relay;
    sg_policy_decide(m->conf, sg_rt.primary, sg_rt.fallback, &req, &v);

    switch (v.action) {
    case SG_ACT_TEMPFAIL:
    case SG_ACT_REJECT:
        if (sg_mproto_setreply(ms, v.smtp_code, v.smtp_xcode, v.reason) != 0)
            sg_log(LOG_WARNING, "cannot set the SMTP reply: the MTA uses its default text");
        rc = v.action == SG_ACT_REJECT ? SG_MP_REJECT : SG_MP_TEMPFAIL;
        break;
    case SG_ACT_HOLD:
        if (sg_mproto_quarantine(ms, v.reason) != 0) {
            sg_log(LOG_ERR, "quarantine refused by the MTA: tempfail instead of hold");
            v.action = SG_ACT_TEMPFAIL;
            sg_mproto_setreply(ms, "451", "4.7.1", v.reason);
            rc = SG_MP_TEMPFAIL;
        }
        break;
    default:
        break;
    }
    if (v.lockdown && v.action == SG_ACT_HOLD)
        sg_jobs_held(v.account, m->qid);
    log_verdict(m, c->ip, &v, now_ms() - t0);
    msg_reset(m);
    return rc;
}

static void h_abort(sg_msess_t *ms)
{
    struct connctx *c = sg_mproto_getpriv(ms);

    if (c != NULL)
        msg_reset(&c->m);
}

static void h_close(sg_msess_t *ms)
{
    struct connctx *c = sg_mproto_getpriv(ms);

    if (c != NULL) {
        msg_reset(&c->m);
        free(c);
        sg_mproto_setpriv(ms, NULL);
    }
}

const struct sg_mp_handlers sg_milter_handlers = {
    .negotiate = h_negotiate,
    .connect = h_connect,
    .mail = h_mail,
    .rcpt = h_rcpt,
    .header = h_header,
    .body = h_body,
    .eom = h_eom,
    .abort = h_abort,
    .close = h_close,
};
