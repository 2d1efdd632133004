/*
 * sg_milter.c - thin libmilter callbacks: collect what the MTA says about
 * a message, hand it to sg_policy at end of message, map the verdict to
 * SMFIS_* and log one key=value line.
 *
 * Must not: decide anything itself, block on anything but the store call
 * in eom, or let a byte of the message reach a log line unescaped.
 * Steps the decision does not need are negotiated away, and the ones kept
 * are "no reply" steps (SMFIS_NOREPLY), so the MTA never waits on us
 * before end of message; a failure on such a step is remembered and
 * answered at end of message.
 */
#include "sg_milter.h"
#include "sg_time.h"

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

#include "sg_jobs.h"
#include "sg_log.h"
#include "sg_metrics.h"
#include "sg_policy.h"
#include "sg_release.h"

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
    unsigned long nr;             /* SMFIP_NR_* steps the MTA agreed to */
    struct msgctx m;
};

static atomic_ulong n_msgs, n_auth;
static atomic_int n_deciding;     /* end of message callbacks running */
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

/* --- callbacks ----------------------------------------------------------- */

/* The answer to a step: none if the MTA agreed to skip the reply. */
static sfsistat noreply(const struct connctx *c, unsigned long step)
{
    return (c->nr & step) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static struct connctx *conn_get(SMFICTX *ctx)
{
    struct connctx *c = smfi_getpriv(ctx);

    if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL)
        smfi_setpriv(ctx, c);
    return c;
}

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    struct connctx *c = conn_get(ctx);
    sg_conf_t *conf = sg_conf_current();
    unsigned long want = SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH |
                         SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                         SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_DATA |
                         SMFIP_NR_UNKN;

    (void)f2;
    (void)f3;
    if (!config_counts_bytes(conf))
        want |= SMFIP_NOBODY;
    sg_conf_unref(conf);
    /* Over TCP, answer the DATA step: Postfix writes the envelope, then the
     * headers and end of message, without TCP_NODELAY; with nothing to
     * answer in between, that second write waits for our delayed ACK
     * (~40 ms a message). A reply at DATA carries the ACK at once. EOH is
     * then kept too, with no reply: libmilter refuses end of message
     * straight after an answered DATA when a message has no header. */
    if (sg_rt.tcp)
        want &= ~(SMFIP_NODATA | SMFIP_NR_DATA | SMFIP_NOEOH);
    if (!(f0 & SMFIF_QUARANTINE) && sg_log_ratelimit(&warned_noquarantine, 3600))
        sg_log(LOG_WARNING, "MTA does not offer quarantine: action hold falls back to tempfail");
    *pf0 = f0 & SMFIF_QUARANTINE;
    *pf1 = f1 & want;             /* ask only for what the MTA can do */
    *pf2 = *pf3 = 0;
    if (c != NULL)
        c->nr = *pf1;
    if ((f0 & SMFIF_SETSYMLIST) != 0) {
        smfi_setsymlist(ctx, SMFIM_ENVFROM, "{auth_authen} i");
        smfi_setsymlist(ctx, SMFIM_EOM, "i");
    }
    return SMFIS_CONTINUE;
}

static sfsistat cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
    struct connctx *c = conn_get(ctx);

    (void)host;
    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (sa == NULL)
        snprintf(c->ip, sizeof(c->ip), "local");
    else if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)sa)->sin_addr, c->ip, sizeof(c->ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)sa)->sin6_addr, c->ip,
                  sizeof(c->ip));
    else
        snprintf(c->ip, sizeof(c->ip), "local");
    return noreply(c, SMFIP_NR_CONN);
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct connctx *c = conn_get(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (c->ip[0] == '\0')         /* CONNECT negotiated away or never sent */
        snprintf(c->ip, sizeof(c->ip), "unknown");
    msg_reset(&c->m);
    c->m.conf = sg_conf_current();
    c->m.envfrom = dup_cut(argv != NULL && argv[0] != NULL ? argv[0] : "", RCPT_KEEP);
    c->m.auth = dup_cut(smfi_getsymval(ctx, "{auth_authen}"), RCPT_KEEP);
    c->m.qid = dup_cut(smfi_getsymval(ctx, "i"), 64);
    if (c->m.envfrom == NULL)
        c->m.failed = true;
    return noreply(c, SMFIP_NR_MAIL);
}

static sfsistat cb_envrcpt(SMFICTX *ctx, char **argv)
{
    struct connctx *c = smfi_getpriv(ctx);
    struct msgctx *m;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (c->m.conf == NULL)        /* RCPT before MAIL: end of message tempfails */
        return noreply(c, SMFIP_NR_RCPT);
    m = &c->m;
    if (m->nrcpts == m->rcap) {
        size_t ncap = m->rcap ? m->rcap * 2 : 8;
        char **n = realloc(m->rcpts, ncap * sizeof(*n));
        if (n == NULL) {
            m->failed = true;
            return noreply(c, SMFIP_NR_RCPT);
        }
        m->rcpts = n;
        m->rcap = ncap;
    }
    m->rcpts[m->nrcpts] = dup_cut(argv != NULL && argv[0] != NULL ? argv[0] : "", RCPT_KEEP);
    if (m->rcpts[m->nrcpts] == NULL)
        m->failed = true;
    else
        m->nrcpts++;
    return noreply(c, SMFIP_NR_RCPT);
}

static sfsistat cb_data(SMFICTX *ctx)
{
    struct connctx *c = smfi_getpriv(ctx);

    return c != NULL ? noreply(c, SMFIP_NR_DATA) : SMFIS_CONTINUE;
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
    struct connctx *c = smfi_getpriv(ctx);

    return c != NULL ? noreply(c, SMFIP_NR_EOH) : SMFIS_CONTINUE;
}

static void keep_header(char *dst, const char *v)
{
    if (dst[0] == '\0')           /* first occurrence wins */
        snprintf(dst, HDR_KEEP, "%s", v);
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
    struct connctx *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (c->m.conf == NULL || name == NULL || value == NULL)
        return noreply(c, SMFIP_NR_HDR);    /* no message: end of message tempfails */
    c->m.size += strlen(name) + strlen(value) + 4;    /* "name: value\r\n" */
    if (strcasecmp(name, "From") == 0)
        keep_header(c->m.from, value);
    else if (strcasecmp(name, "Message-ID") == 0)
        keep_header(c->m.msgid, value);
    else if (strcasecmp(name, "X-Mailer") == 0 || strcasecmp(name, "User-Agent") == 0)
        keep_header(c->m.mailer, value);
    return noreply(c, SMFIP_NR_HDR);
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct connctx *c = smfi_getpriv(ctx);

    (void)chunk;
    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (c->m.conf != NULL)
        c->m.size += len;
    return noreply(c, SMFIP_NR_BODY);
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
           " limit=%s used=%llu cap=%llu store=%s ms=%.2f%s%s%s%s%s",
           sg_log_esc(qid, sizeof(qid), m->qid), sg_log_esc(acct, sizeof(acct), v->account),
           sg_log_esc(ident, sizeof(ident), v->identity), ip, m->nrcpts,
           (unsigned long long)m->size, sg_action_name(v->action),
           sg_log_esc(lim, sizeof(lim), v->limit ? v->limit->name : NULL),
           (unsigned long long)v->used, (unsigned long long)v->cap, v->store, ms,
           v->warned ? " warn=1" : "", v->observed ? " observe=1" : "",
           v->allowed ? " allow=1" : "",
           v->lockdown ? " lockdown=1" : "", v->store_error ? " store_error=1" : "");
}

static void check_macros(const struct msgctx *m)
{
    unsigned long n = atomic_fetch_add(&n_msgs, 1) + 1;

    if (m->auth != NULL)
        atomic_fetch_add(&n_auth, 1);
    if (m->qid == NULL && sg_log_ratelimit(&warned_noqid, 3600))
        sg_log(LOG_WARNING, "the MTA sends no {i} macro: queue ids will be missing from logs"
               " and held mail cannot be tracked; Postfix: milter_end_of_data_macros = i;"
               " Sendmail: confMILTER_MACROS_EOM with {i}");
    if (n == MACRO_WARN_AFTER && atomic_load(&n_auth) == 0 &&
        sg_log_ratelimit(&warned_noauth, 3600))
        sg_log(LOG_WARNING, "no {auth_authen} macro in %d messages: identities fall back to the"
               " envelope sender; if clients authenticate, Postfix needs milter_mail_macros to"
               " include {auth_authen}", MACRO_WARN_AFTER);
}

/* A message held on lockdown whose queue id the decision did not record
 * (sg_policy_decide records it in the same store call): say why, since it
 * must then be released by hand. */
static void held_unrecorded(const char *account, const char *qid)
{
    static long last_fail;
    char esc[200], aesc[400];

    if (qid == NULL || qid[0] == '\0')
        return;                   /* no {i}: already warned about; cannot be released by id */
    if (!sg_release_qid_valid(qid))
        sg_log(LOG_WARNING, "refusing to record qid=%s of account=<%s>: not a Postfix or "
               "Sendmail queue id (check the MTA's {i} macro); the message stays held: "
               "release it by hand", sg_log_esc(esc, sizeof(esc), qid),
               sg_log_esc(aesc, sizeof(aesc), account));
    else if (sg_log_ratelimit(&last_fail, 300))
        sg_log(LOG_ERR, "cannot record held message qid=%s: release it by hand once the account"
               " is unblocked (postsuper -H)", sg_log_esc(esc, sizeof(esc), qid));
}

static sfsistat cb_eom(SMFICTX *ctx)
{
    struct connctx *c = smfi_getpriv(ctx);
    struct sg_request req = { 0 };
    struct sg_verdict v;
    struct msgctx *m;
    sfsistat rc = SMFIS_CONTINUE;
    double t0 = sg_time_mono_msf();

    if (c == NULL || c->m.conf == NULL)
        return SMFIS_TEMPFAIL;    /* end of message without MAIL */
    atomic_fetch_add(&n_deciding, 1);
    m = &c->m;
    if (m->failed) {
        sg_log(LOG_ERR, "out of memory while reading a message: tempfail");
        msg_reset(m);
        atomic_fetch_sub(&n_deciding, 1);
        return SMFIS_TEMPFAIL;
    }
    if (m->qid == NULL)
        m->qid = dup_cut(smfi_getsymval(ctx, "i"), 64);
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

    switch (v.observed ? SG_ACT_ACCEPT : v.action) {
    case SG_ACT_TEMPFAIL:
    case SG_ACT_REJECT:
        if (smfi_setreply(ctx, (char *)v.smtp_code, (char *)v.smtp_xcode,
                          (char *)v.reason) != MI_SUCCESS)
            sg_log(LOG_WARNING, "smfi_setreply failed: the MTA uses its default text");
        rc = v.action == SG_ACT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
        break;
    case SG_ACT_HOLD:
        if (smfi_quarantine(ctx, (char *)v.reason) != MI_SUCCESS) {
            sg_log(LOG_ERR, "quarantine refused by the MTA: tempfail instead of hold");
            if (v.held)           /* not held after all: nothing to release */
                sg_store_held_del(v.store_error ? sg_rt.fallback : sg_rt.primary, v.account,
                                  sg_rt.relay, (const char *const *)&m->qid, 1);
            v.action = SG_ACT_TEMPFAIL;
            smfi_setreply(ctx, "451", "4.7.1", (char *)v.reason);
            rc = SMFIS_TEMPFAIL;
        }
        break;
    default:
        break;
    }
    if (v.lockdown && v.action == SG_ACT_HOLD && !v.observed) {
        if (v.held)
            sg_jobs_follow(v.account);
        else
            held_unrecorded(v.account, m->qid);
    }
    log_verdict(m, c->ip, &v, sg_time_mono_msf() - t0);
    sg_metrics_decision(&v, sg_time_mono_msf() - t0, v.store_ms);
    msg_reset(m);
    atomic_fetch_sub(&n_deciding, 1);
    return rc;
}

bool sg_milter_wait_idle(int max_s)
{
    struct timespec t = { 0, 10 * 1000 * 1000 };

    for (int i = 0; i < max_s * 100 && atomic_load(&n_deciding) > 0; i++)
        nanosleep(&t, NULL);
    return atomic_load(&n_deciding) == 0;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
    struct connctx *c = smfi_getpriv(ctx);

    if (c != NULL)
        msg_reset(&c->m);
    return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
    struct connctx *c = smfi_getpriv(ctx);

    if (c != NULL) {
        msg_reset(&c->m);
        free(c);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

struct smfiDesc sg_milter_desc = {
    .xxfi_name = "sendguard",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_QUARANTINE | SMFIF_SETSYMLIST,
    .xxfi_connect = cb_connect,
    .xxfi_envfrom = cb_envfrom,
    .xxfi_envrcpt = cb_envrcpt,
    .xxfi_header = cb_header,
    .xxfi_eoh = cb_eoh,
    .xxfi_body = cb_body,
    .xxfi_eom = cb_eom,
    .xxfi_abort = cb_abort,
    .xxfi_close = cb_close,
    .xxfi_data = cb_data,
    .xxfi_negotiate = cb_negotiate,
};
