/*
 * sg_store_redis_trace.c - reading the trace index the decide script
 * writes (issue 18): the record of a message by its Message-ID or by the
 * queue id a relay gave it, the other messages of the same client IP or
 * login in the same clock hour, and where the index starts.
 *
 * Must not: write any key (sg_decide.lua's trace_index does, in decide's
 * round trip), or trust what it reads: every string is UTF-8-cleaned,
 * every number bounded, a malformed record is skipped.
 */
#include "sg_store_redis_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_HOUR_MAX 2000       /* records of one hour read for same_hour */

enum trace_op { T_FIELD, T_MSGID, T_HOUR, T_OLDEST };

struct trace_job {
    enum trace_op op;
    char tag[41];
    const char *field;            /* T_FIELD: "relay|qid"; T_MSGID: the digest */
    int64_t lo, hi;               /* T_HOUR: scores */
    redisReply *rep;              /* T_FIELD, T_MSGID: HGET; T_HOUR: HMGET; T_OLDEST: ZRANGE */
};

static void trace_key(char *key, size_t size, const struct sg_store_redis *r, const char *tag,
                      const char *sfx)
{
    snprintf(key, size, "%s{%s}:%s", r->prefix, tag, sfx);
}

static enum job_rc reply_ok(redisReply *rep, enum job_rc rc, char *err, size_t errlen)
{
    if (rep == NULL)
        return rc;
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "trace: %s", rep->str);
        rc = sgr_reply_error(rep);
        freeReplyObject(rep);
        return rc;
    }
    return J_OK;
}

static enum job_rc trace_job(struct sg_store_redis *r, redisContext *c, void *arg,
                             char *err, size_t errlen)
{
    struct trace_job *j = arg;
    char kmsg[600], kother[600], lo[24], hi[24], lim[24];
    const char *field = j->field;
    redisReply *rep = NULL;
    enum job_rc rc = J_OK;

    if (j->rep != NULL) {         /* a retry */
        freeReplyObject(j->rep);
        j->rep = NULL;
    }
    trace_key(kmsg, sizeof(kmsg), r, j->tag, "ev:msg");
    switch (j->op) {
    case T_MSGID:
        trace_key(kother, sizeof(kother), r, j->tag, "ev:mid");
        rep = sgr_commandv(c, &rc, 3, "HGET", kother, field);
        if ((rc = reply_ok(rep, rc, err, errlen)) != J_OK)
            return rc;
        if (rep->type != REDIS_REPLY_STRING) {
            j->rep = rep;         /* nil: no such Message-ID */
            return J_OK;
        }
        {
            redisReply *rec = sgr_commandv(c, &rc, 3, "HGET", kmsg, rep->str);
            freeReplyObject(rep);
            rep = rec;
        }
        break;
    case T_FIELD:
        rep = sgr_commandv(c, &rc, 3, "HGET", kmsg, field);
        break;
    case T_OLDEST:
        trace_key(kother, sizeof(kother), r, j->tag, "ev:t");
        rep = sgr_commandv(c, &rc, 5, "ZRANGE", kother, "0", "0", "WITHSCORES");
        break;
    case T_HOUR: {
        const char **argv;
        size_t *lens, n;

        trace_key(kother, sizeof(kother), r, j->tag, "ev:t");
        snprintf(lo, sizeof(lo), "%" PRId64, j->lo);
        snprintf(hi, sizeof(hi), "(%" PRId64, j->hi);
        snprintf(lim, sizeof(lim), "%d", TRACE_HOUR_MAX);
        rep = sgr_commandv(c, &rc, 7, "ZRANGEBYSCORE", kother, lo, hi, "LIMIT", "0", lim);
        if ((rc = reply_ok(rep, rc, err, errlen)) != J_OK)
            return rc;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
            j->rep = rep;
            return J_OK;
        }
        n = rep->elements;
        argv = calloc(n + 2, sizeof(*argv));
        lens = calloc(n + 2, sizeof(*lens));
        if (argv == NULL || lens == NULL) {
            free(argv);
            free(lens);
            freeReplyObject(rep);
            snprintf(err, errlen, "trace: out of memory");
            return J_ERR;
        }
        argv[0] = "HMGET";
        argv[1] = kmsg;
        lens[0] = 5;
        lens[1] = strlen(kmsg);
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = rep->element[i];
            argv[i + 2] = e->type == REDIS_REPLY_STRING ? e->str : "";
            lens[i + 2] = e->type == REDIS_REPLY_STRING ? e->len : 0;
        }
        j->rep = sgr_command(c, (int)n + 2, argv, lens, &rc);
        free(argv);
        free(lens);
        freeReplyObject(rep);
        rep = j->rep;
        j->rep = NULL;
        break;
    }
    }
    if ((rc = reply_ok(rep, rc, err, errlen)) != J_OK)
        return rc;
    j->rep = rep;
    return J_OK;
}

static char *dup_clean(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p != NULL)
        sg_store_utf8_clean(p, n + 1, s, n);
    return p;
}

static uint64_t num(const char *s, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n && i < 19 && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

/* A record "t qid ip login msgid mailer relay rcpts size action digest"
 * (tab-separated) into m. false: malformed (m untouched). */
static bool parse_record(const char *s, size_t len, struct sg_ev_msg *m)
{
    const char *f[11];
    size_t fl[11], k = 0;
    const char *p = s, *end = s + len;

    while (k < 11) {
        const char *t = memchr(p, '\t', (size_t)(end - p));
        f[k] = p;
        fl[k] = (t ? t : end) - p;
        k++;
        if (t == NULL)
            break;
        p = t + 1;
    }
    if (k < 10)
        return false;
    memset(m, 0, sizeof(*m));
    m->t_ms = (int64_t)num(f[0], fl[0]);
    m->qid = dup_clean(f[1], fl[1]);
    m->ip = dup_clean(f[2], fl[2]);
    m->identity = dup_clean(f[3], fl[3]);
    m->msgid = dup_clean(f[4], fl[4]);
    m->mailer = dup_clean(f[5], fl[5]);
    m->relay = dup_clean(f[6], fl[6]);
    m->rcpts = num(f[7], fl[7]);
    m->size = num(f[8], fl[8]);
    m->action = fl[9] == 4 && memcmp(f[9], "over", 4) == 0 ? SG_EV_OVER :
                fl[9] == 8 && memcmp(f[9], "lockdown", 8) == 0 ? SG_EV_LOCKDOWN : SG_EV_OK;
    m->charged = m->action == SG_EV_OK;
    if (!m->qid || !m->ip || !m->identity || !m->msgid || !m->mailer || !m->relay) {
        sg_ev_msg_clear(m);
        return false;
    }
    return true;
}

static int trace_one(struct sg_store_redis *r, struct trace_job *j, struct sg_ev_msg *out)
{
    int rc = sgr_run(r, trace_job, j), found = 0;

    if (rc == 0 && j->rep && j->rep->type == REDIS_REPLY_STRING)
        found = parse_record(j->rep->str, j->rep->len, out) ? 1 : 0;
    if (j->rep)
        freeReplyObject(j->rep);
    return rc < 0 ? -1 : found;
}

int sg_store_redis_trace_by_msgid(struct sg_store_redis *r, const char *account,
                                  const char *msgid, struct sg_ev_msg *out)
{
    struct trace_job j = { .op = T_MSGID };
    char dig[TRACE_DIGEST_HEX + 1];

    sgr_msgid_digest(dig, msgid);
    if (dig[0] == '\0')
        return 0;
    sgr_account_tag(j.tag, account);
    j.field = dig;
    return trace_one(r, &j, out);
}

int sg_store_redis_trace_by_qid(struct sg_store_redis *r, const char *account,
                                const char *relay, const char *qid, struct sg_ev_msg *out)
{
    struct trace_job j = { .op = T_FIELD };
    char field[600];

    /* as written: the cleaned relay name, '|', the cleaned queue id */
    size_t o = sg_store_utf8_clean(field, EV_STR_MAX + 1, relay, strlen(relay));
    field[o++] = '|';
    sg_store_utf8_clean(field + o, 65, qid, strlen(qid) > 64 ? 64 : strlen(qid));
    sgr_account_tag(j.tag, account);
    j.field = field;
    return trace_one(r, &j, out);
}

int sg_store_redis_trace_oldest(struct sg_store_redis *r, const char *account,
                                int64_t *oldest_ms)
{
    struct trace_job j = { .op = T_OLDEST };
    int rc;

    *oldest_ms = -1;
    sgr_account_tag(j.tag, account);
    rc = sgr_run(r, trace_job, &j);
    if (rc == 0 && j.rep && j.rep->type == REDIS_REPLY_ARRAY && j.rep->elements == 2 &&
        j.rep->element[1]->type == REDIS_REPLY_STRING)
        *oldest_ms = (int64_t)num(j.rep->element[1]->str, j.rep->element[1]->len);
    if (j.rep)
        freeReplyObject(j.rep);
    return rc < 0 ? -1 : 0;
}

static bool same(const char *a, const char *b)
{
    return a && b && a[0] && strcmp(a, "(none)") != 0 && strcmp(a, b) == 0;
}

int sg_store_redis_trace_same_hour(struct sg_store_redis *r, const char *account,
                                   const struct sg_ev_msg *m, struct sg_ev_msg **v, size_t *n)
{
    struct trace_job j = { .op = T_HOUR };
    int rc;

    *v = NULL;
    *n = 0;
    sgr_account_tag(j.tag, account);
    j.lo = m->t_ms - m->t_ms % 3600000;
    j.hi = j.lo + 3600000;
    rc = sgr_run(r, trace_job, &j);
    if (rc == 0 && j.rep && j.rep->type == REDIS_REPLY_ARRAY && j.rep->elements > 0 &&
        (*v = calloc(j.rep->elements, sizeof(**v))) != NULL) {
        for (size_t i = 0; i < j.rep->elements; i++) {
            const redisReply *e = j.rep->element[i];
            struct sg_ev_msg *o = &(*v)[*n];
            if (e->type != REDIS_REPLY_STRING || !parse_record(e->str, e->len, o))
                continue;
            if ((strcmp(o->qid, m->qid ? m->qid : "") == 0 &&
                 strcmp(o->relay, m->relay ? m->relay : "") == 0) ||
                (!same(o->ip, m->ip) && !same(o->identity, m->identity))) {
                sg_ev_msg_clear(o);
                continue;
            }
            (*n)++;
        }
    } else if (rc == 0 && j.rep && j.rep->type == REDIS_REPLY_ARRAY && j.rep->elements > 0)
        rc = -1;
    if (j.rep)
        freeReplyObject(j.rep);
    if (*n == 0) {
        free(*v);
        *v = NULL;
    }
    return rc < 0 ? -1 : 0;
}
