/*
 * sg_store_redis.c - the Redis store backend's calls: counters, account
 * state, locks and held queue ids shared by every relay.
 *
 * A message costs one EVALSHA of sg_decide.lua (embedded at build time),
 * which checks every limit, commits only if all pass, records the
 * evidence, reads the account's lockdown flag and, for a message held on
 * lockdown, records its queue id: one round trip. Time is redis TIME (or
 * the clock given to open(), for tests). Key layout: sg_store_redis_int.h.
 *
 * Must not: read-modify-write a counter or a state from C (the script
 * does, atomically), or hold connection logic (sg_store_redis_conn.c).
 */
#include "sg_store_redis_int.h"
#include "sg_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- decide ---------------------------------------------------------------- */

struct decide_job {
    struct args a;
    bool implicit;
    size_t nlimits;
    struct sg_store_result *out;
};

static enum job_rc decide_job(struct sg_store_redis *r, redisContext *c, void *arg,
                              char *err, size_t errlen)
{
    struct decide_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = sgr_eval(r, c, &j->a, &rc, err, errlen);
    struct sg_store_result *out = j->out;

    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 8) {
        snprintf(err, errlen, "decide: unexpected reply");
        freeReplyObject(rep);
        return J_ERR;
    }
    out->status = sgr_rep_u64(rep->element[0]) ? SG_STORE_OVER : SG_STORE_OK;
    out->limit = (size_t)sgr_rep_u64(rep->element[1]);
    out->unit = (enum sg_unit)sgr_rep_u64(rep->element[2]);
    out->used = sgr_rep_u64(rep->element[3]);
    out->cap = sgr_rep_u64(rep->element[4]);
    out->retry_after_ms = sgr_rep_u64(rep->element[5]);
    out->warn_mask = (uint32_t)sgr_rep_u64(rep->element[6]);
    out->lockdown = sgr_rep_u64(rep->element[7]) != 0;
    out->new_identity = j->implicit && rep->elements >= 10 && sgr_rep_u64(rep->element[9]) != 0;
    out->held = rep->elements >= 11 && sgr_rep_u64(rep->element[10]) != 0;
    if (out->limit >= j->nlimits && j->nlimits > 0)
        out->limit = 0;
    if ((unsigned)out->unit >= SG_UNIT_COUNT)
        out->unit = SG_UNIT_MESSAGES;
    freeReplyObject(rep);
    return J_OK;
}

/* A LIMIT_TAG_LEN-character tag of each limit (its name and window), the
 * prefix of its fields in an implicit identity's hash; distinct among the
 * limits given, the same for the same limits. */
static void limit_tags(const struct sg_limit *limits, size_t n,
                       char tags[][LIMIT_TAG_LEN + 1])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";

    for (size_t i = 0; i < n; i++) {
        const char *name = limits[i].name ? limits[i].name : "";
        for (unsigned salt = 0;; salt++) {
            char win[48];
            uint64_t h = 1469598103934665603ULL;
            size_t j, wl = (size_t)snprintf(win, sizeof(win), ":%" PRIu64 ":%u",
                                            limits[i].window_ms, salt);

            for (const char *p = name; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ULL;
            for (size_t k = 0; k < wl; k++)
                h = (h ^ (unsigned char)win[k]) * 1099511628211ULL;
            for (int k = 0; k < LIMIT_TAG_LEN; k++) {
                tags[i][k] = digits[h % 36];
                h /= 36;
            }
            tags[i][LIMIT_TAG_LEN] = '\0';
            for (j = 0; j < i && strcmp(tags[j], tags[i]) != 0; j++)
                ;
            if (j == i)
                break;
        }
    }
}

/* Key "P{H}:held:<relay>" (relay NULL: ""), the set of held queue ids. */
static void args_held_key(struct args *a, const struct sg_store_redis *r, const char *tag,
                          const char *relay)
{
    size_t cap = strlen(r->prefix) + 60 + (relay ? strlen(relay) : 0);
    char *k = sgr_args_alloc(a, cap);

    if (k != NULL)
        sgr_args_add(a, k, (size_t)snprintf(k, cap, "%s{%s}:held:%s", r->prefix, tag,
                                            relay ? relay : ""));
}

/* The tail of decide's and implicit's arguments: hold_on_lockdown, [qid,]
 * the held set's ttl. */
static void args_hold(struct args *a, const struct sg_evidence *ev, bool with_qid)
{
    sgr_args_addz(a, ev->hold_on_lockdown ? "1" : "0");
    if (with_qid)
        sgr_args_clean(a, ev->qid, 64);
    sgr_args_u64(a, HELD_TTL_MS);
}

static int decide_implicit(struct sg_store_redis *r, const char *account,
                           const struct sg_limit *limits, size_t nlimits,
                           const struct sg_charge *charge, const struct sg_evidence *ev,
                           bool charge_refused, struct sg_store_result *out)
{
    struct decide_job j = { .nlimits = nlimits, .out = out, .implicit = true };
    struct args *a = &j.a;
    char tag[41], tags[SG_STORE_MAX_LIMITS][LIMIT_TAG_LEN + 1];
    int rc;

    sgr_account_tag(tag, account);
    limit_tags(limits, nlimits, tags);
    sgr_args_eval_head(a, r, 3);
    sgr_args_key(a, r, tag, "state", NULL, 0);
    sgr_args_key(a, r, tag, "i", NULL, 0);
    args_held_key(a, r, tag, ev->relay);
    sgr_args_addz(a, "implicit");
    sgr_args_now(a, r);
    sgr_args_addz(a, charge_refused ? "1" : "0");
    sgr_args_u64(a, charge->units[SG_UNIT_MESSAGES]);
    sgr_args_u64(a, charge->units[SG_UNIT_RECIPIENTS]);
    sgr_args_u64(a, charge->units[SG_UNIT_BYTES]);
    sgr_args_u64(a, nlimits);
    sgr_args_u64(a, charge->rcpt_hashes ? charge->nrcpt_hashes : 0);
    for (size_t i = 0; i < nlimits; i++) {
        const struct sg_limit *l = &limits[i];
        double warn_at = l->warn_at > 0 && l->warn_at <= 1 ? l->warn_at : 1.0;

        sgr_args_addz(a, tags[i]);
        sgr_args_u64(a, l->window_ms ? l->window_ms : 1);
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            sgr_args_u64(a, l->cap[u]);
        sgr_args_fmt(a, "%.6f", warn_at);
    }
    for (size_t i = 0; charge->rcpt_hashes && i < charge->nrcpt_hashes; i++)
        sgr_args_fmt(a, "%016" PRIx64, charge->rcpt_hashes[i]);
    args_hold(a, ev, true);

    if (a->oom) {
        sgr_args_free(a);
        return -1;
    }
    rc = sgr_run(r, decide_job, &j);
    sgr_args_free(a);
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        out->status = SG_STORE_ERROR;
        return rc;
    }
    sgr_flood_count(r, ev->identity ? ev->identity : account, ev->client_ip, ev->mailer,
                out->new_identity);
    return rc;
}

int sg_store_redis_decide(struct sg_store_redis *r, const char *account,
                          const struct sg_limit *limits, size_t nlimits,
                          const struct sg_charge *charge,
                          const struct sg_evidence *ev, bool charge_refused,
                          struct sg_store_result *out)
{
    static const struct sg_evidence none;
    static const char *const fixed[DECIDE_FIXED_KEYS] = {
        "state", "meta", "ev:ip", "ev:ipfirst", "ev:mua", "ev:muafirst",
        "ev:dom", "ev:fromx", "ev:recent", "ev:hour",
    };
    struct decide_job j = { .nlimits = nlimits, .out = out };
    struct args *a = &j.a;
    struct recent_at at;
    char tag[41];
    int rc;

    memset(out, 0, sizeof(*out));
    out->status = SG_STORE_ERROR;
    if (account == NULL || charge == NULL || nlimits > SG_STORE_MAX_LIMITS)
        return -1;
    if (ev == NULL)
        ev = &none;
    sgr_evict_check(r);
    if (charge->implicit)
        return decide_implicit(r, account, limits, nlimits, charge, ev, charge_refused, out);
    sgr_account_tag(tag, account);

    sgr_args_eval_head(a, r, DECIDE_FIXED_KEYS + 3 * nlimits + 1 + TRACE_KEYS);
    for (size_t i = 0; i < DECIDE_FIXED_KEYS; i++)
        sgr_args_key(a, r, tag, fixed[i], NULL, 0);
    for (size_t i = 0; i < nlimits; i++) {
        const char *name = limits[i].name ? limits[i].name : "";
        sgr_args_key(a, r, tag, "w:", name, limits[i].window_ms);
        sgr_args_key(a, r, tag, "d:", name, limits[i].window_ms);
        sgr_args_key(a, r, tag, "warn:", name, limits[i].window_ms);
    }
    args_held_key(a, r, tag, ev->relay);
    sgr_args_key(a, r, tag, "ev:msg", NULL, 0);
    sgr_args_key(a, r, tag, "ev:mid", NULL, 0);
    sgr_args_key(a, r, tag, "ev:t", NULL, 0);
    sgr_args_addz(a, "decide");
    sgr_args_now(a, r);
    sgr_args_addz(a, charge_refused ? "1" : "0");
    sgr_args_addz(a, account);
    sgr_args_u64(a, EV_TTL_MS);
    sgr_args_u64(a, RECENT_LEN);
    sgr_args_u64(a, EV_MAX_FIELDS);
    at.qid = a->n;
    sgr_args_clean(a, ev->qid, 64);
    at.ip = a->n;
    sgr_args_clean(a, ev->client_ip, 64);
    at.identity = a->n;
    sgr_args_clean(a, ev->identity, EV_STR_MAX);
    at.mailer = a->n;
    sgr_args_clean(a, ev->mailer, EV_STR_MAX);
    at.msgid = a->n;
    sgr_args_clean(a, ev->msgid, EV_STR_MAX);
    sgr_args_clean(a, ev->from_header_domain, EV_STR_MAX);
    sgr_args_addz(a, ev->from_mismatch ? "1" : "0");
    at.relay = a->n;
    sgr_args_clean(a, ev->relay, EV_STR_MAX);
    sgr_args_u64(a, charge->units[SG_UNIT_MESSAGES]);
    sgr_args_u64(a, charge->units[SG_UNIT_RECIPIENTS]);
    sgr_args_u64(a, charge->units[SG_UNIT_BYTES]);
    sgr_args_u64(a, nlimits);
    sgr_args_u64(a, charge->rcpt_hashes ? charge->nrcpt_hashes : 0);
    sgr_args_u64(a, ev->rcpt_domains ? ev->nrcpt_domains : 0);
    for (size_t i = 0; i < nlimits; i++) {
        const struct sg_limit *l = &limits[i];
        double warn_at = l->warn_at > 0 && l->warn_at <= 1 ? l->warn_at : 1.0;

        sgr_args_u64(a, l->window_ms ? l->window_ms : 1);
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            sgr_args_u64(a, l->cap[u]);
        sgr_args_fmt(a, "%.6f", warn_at);
    }
    for (size_t i = 0; charge->rcpt_hashes && i < charge->nrcpt_hashes; i++)
        sgr_args_fmt(a, "%016" PRIx64, charge->rcpt_hashes[i]);
    for (size_t i = 0; ev->rcpt_domains && i < ev->nrcpt_domains; i++)
        sgr_args_clean(a, ev->rcpt_domains[i], 255);
    sgr_args_recent(a, &at, charge->units[SG_UNIT_RECIPIENTS], charge->units[SG_UNIT_BYTES]);
    args_hold(a, ev, false);
    sgr_args_trace(a, r, &at, ev->msgid, charge->units[SG_UNIT_RECIPIENTS],
                   charge->units[SG_UNIT_BYTES]);

    if (a->oom) {
        sgr_args_free(a);
        return -1;
    }
    rc = sgr_run(r, decide_job, &j);
    sgr_args_free(a);
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        out->status = SG_STORE_ERROR;
    }
    return rc;
}

/* --- usage ----------------------------------------------------------------- */

struct usage_job {
    struct args a;
    size_t nlimits;
    struct sg_usage *usage;
};

static enum job_rc usage_job(struct sg_store_redis *r, redisContext *c, void *arg,
                             char *err, size_t errlen)
{
    struct usage_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = sgr_eval(r, c, &j->a, &rc, err, errlen);

    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 * j->nlimits) {
        snprintf(err, errlen, "usage: unexpected reply");
        freeReplyObject(rep);
        return J_ERR;
    }
    for (size_t i = 0; i < j->nlimits; i++)
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            j->usage[i].used[u] = sgr_rep_u64(rep->element[4 * i + (size_t)u]);
    freeReplyObject(rep);
    return J_OK;
}

int sg_store_redis_usage(struct sg_store_redis *r, const char *account,
                         const struct sg_limit *limits, size_t nlimits,
                         struct sg_usage *usage)
{
    struct usage_job j = { .nlimits = nlimits, .usage = usage };
    char tag[41];
    int rc;

    if (account == NULL || nlimits > SG_STORE_MAX_LIMITS)
        return -1;
    memset(usage, 0, nlimits * sizeof(*usage));
    if (nlimits == 0)
        return 0;
    sgr_account_tag(tag, account);
    sgr_args_eval_head(&j.a, r, 2 * nlimits);
    for (size_t i = 0; i < nlimits; i++) {
        const char *name = limits[i].name ? limits[i].name : "";
        sgr_args_key(&j.a, r, tag, "w:", name, limits[i].window_ms);
        sgr_args_key(&j.a, r, tag, "d:", name, limits[i].window_ms);
    }
    sgr_args_addz(&j.a, "usage");
    sgr_args_now(&j.a, r);
    sgr_args_u64(&j.a, nlimits);
    for (size_t i = 0; i < nlimits; i++)
        sgr_args_u64(&j.a, limits[i].window_ms ? limits[i].window_ms : 1);
    if (j.a.oom) {
        sgr_args_free(&j.a);
        return -1;
    }
    rc = sgr_run(r, usage_job, &j);
    sgr_args_free(&j.a);
    if (rc < 0)
        return rc;
    {
        /* the same account may have been implicit: its one hash too */
        struct sg_usage iu[SG_STORE_MAX_LIMITS];
        struct usage_job k = { .nlimits = nlimits, .usage = iu };
        char tags[SG_STORE_MAX_LIMITS][LIMIT_TAG_LEN + 1];

        memset(iu, 0, sizeof(iu));
        limit_tags(limits, nlimits, tags);
        sgr_args_eval_head(&k.a, r, 1);
        sgr_args_key(&k.a, r, tag, "i", NULL, 0);
        sgr_args_addz(&k.a, "iusage");
        sgr_args_now(&k.a, r);
        sgr_args_u64(&k.a, nlimits);
        for (size_t i = 0; i < nlimits; i++) {
            sgr_args_addz(&k.a, tags[i]);
            sgr_args_u64(&k.a, limits[i].window_ms ? limits[i].window_ms : 1);
        }
        if (k.a.oom) {
            sgr_args_free(&k.a);
            return -1;
        }
        rc = sgr_run(r, usage_job, &k);
        sgr_args_free(&k.a);
        for (size_t i = 0; rc == 0 && i < nlimits; i++)
            for (int u = 0; u < SG_UNIT_COUNT; u++)
                usage[i].used[u] += iu[i].used[u];
    }
    return rc;
}

/* --- reset ----------------------------------------------------------------- */

struct reset_job {
    char pattern[600];
    size_t keep;                  /* length of "P{H}:" */
};

static bool counter_key(const char *rest)
{
    return strncmp(rest, "w:", 2) == 0 || strncmp(rest, "d:", 2) == 0 ||
           strncmp(rest, "warn:", 5) == 0 || strcmp(rest, "i") == 0;
}

static enum job_rc reset_job(struct sg_store_redis *r, redisContext *c, void *arg,
                             char *err, size_t errlen)
{
    struct reset_job *j = arg;
    char cursor[32] = "0";
    enum job_rc rc = J_OK;

    (void)r;
    do {
        redisReply *rep = sgr_commandv(c, &rc, 6, "SCAN", cursor, "MATCH", j->pattern,
                                   "COUNT", "1000");
        struct args del = { 0 };

        if (rep == NULL)
            return rc;
        if (rep->type == REDIS_REPLY_ERROR || rep->type != REDIS_REPLY_ARRAY ||
            rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            snprintf(err, errlen, "scan: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
            rc = rep->type == REDIS_REPLY_ERROR ? sgr_reply_error(rep) : J_ERR;
            freeReplyObject(rep);
            return rc;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        sgr_args_addz(&del, "UNLINK");
        for (size_t i = 0; i < rep->element[1]->elements; i++) {
            const redisReply *k = rep->element[1]->element[i];
            if (k->type == REDIS_REPLY_STRING && k->len > j->keep &&
                counter_key(k->str + j->keep))
                sgr_args_add(&del, k->str, k->len);
        }
        if (del.oom) {
            sgr_args_free(&del);
            freeReplyObject(rep);
            return J_ERR;
        }
        if (del.n > 1) {
            redisReply *d = sgr_command(c, (int)del.n, del.v, del.len, &rc);
            if (d == NULL) {
                sgr_args_free(&del);
                freeReplyObject(rep);
                return rc == J_IO_RETRY ? J_IO : rc;  /* earlier UNLINKs ran */
            }
            if (d->type == REDIS_REPLY_ERROR) {
                snprintf(err, errlen, "unlink: %s", d->str);
                rc = sgr_reply_error(d);
                freeReplyObject(d);
                sgr_args_free(&del);
                freeReplyObject(rep);
                return rc;
            }
            freeReplyObject(d);
        }
        sgr_args_free(&del);
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    return J_OK;
}

int sg_store_redis_reset(struct sg_store_redis *r, const char *account)
{
    struct reset_job j;
    char tag[41];
    size_t o = 0;

    if (account == NULL)
        return -1;
    sgr_account_tag(tag, account);
    /* the prefix, glob characters escaped, then the tag */
    for (const char *p = r->prefix; *p != '\0' && o < sizeof(j.pattern) - 50; p++) {
        if (strchr("*?[]\\", *p) != NULL)
            j.pattern[o++] = '\\';
        j.pattern[o++] = *p;
    }
    snprintf(j.pattern + o, sizeof(j.pattern) - o, "{%s}:*", tag);
    j.keep = strlen(r->prefix) + 43;
    return sgr_run(r, reset_job, &j);
}

/* --- account state --------------------------------------------------------- */

struct state_job {
    char key[600];
    struct sg_account_state *out;
};

static void copy_field(char *dst, size_t dstsize, const redisReply *v)
{
    snprintf(dst, dstsize, "%.*s", (int)(v->len < dstsize ? v->len : dstsize - 1), v->str);
}

/* An HGETALL reply of a state hash into *s (fields not there keep their
 * value). */
static void parse_state(const redisReply *rep, struct sg_account_state *s)
{
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i], *v = rep->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "blocked") == 0)
            s->blocked = strcmp(v->str, "1") == 0;
        else if (strcmp(f->str, "ticket") == 0)
            s->ticket = strtoll(v->str, NULL, 10);
        else if (strcmp(f->str, "since_ms") == 0)
            s->since_ms = strtoll(v->str, NULL, 10);
        else if (strcmp(f->str, "checked_ms") == 0)
            s->checked_ms = strtoll(v->str, NULL, 10);
        else if (strcmp(f->str, "version") == 0)
            s->version = strtoull(v->str, NULL, 10);
        else if (strcmp(f->str, "state") == 0)
            copy_field(s->state, sizeof(s->state), v);
        else if (strcmp(f->str, "phase") == 0)
            copy_field(s->phase, sizeof(s->phase), v);
        else if (strcmp(f->str, "note") == 0)
            copy_field(s->note, sizeof(s->note), v);
    }
}

static enum job_rc state_get_job(struct sg_store_redis *r, redisContext *c, void *arg,
                                 char *err, size_t errlen)
{
    struct state_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = sgr_commandv(c, &rc, 2, "HGETALL", j->key);

    (void)r;
    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "hgetall: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        rc = rep->type == REDIS_REPLY_ERROR ? sgr_reply_error(rep) : J_ERR;
        freeReplyObject(rep);
        return rc;
    }
    parse_state(rep, j->out);
    freeReplyObject(rep);
    return J_OK;
}

int sg_store_redis_state_get(struct sg_store_redis *r, const char *account,
                             struct sg_account_state *out)
{
    struct state_job j = { .out = out };
    char tag[41];

    memset(out, 0, sizeof(*out));
    out->ticket = -1;
    snprintf(out->phase, sizeof(out->phase), "ok");
    if (account == NULL)
        return -1;
    sgr_account_tag(tag, account);
    snprintf(j.key, sizeof(j.key), "%s{%s}:state", r->prefix, tag);
    return sgr_run(r, state_get_job, &j);
}

/* The state's fields as HSET pairs (without "version"). */
static void args_state(struct args *a, const char *account, const struct sg_account_state *in)
{
    sgr_args_addz(a, "blocked");
    sgr_args_addz(a, in->blocked ? "1" : "0");
    sgr_args_addz(a, "ticket");
    sgr_args_fmt(a, "%" PRId64, in->ticket);
    sgr_args_addz(a, "since_ms");
    sgr_args_fmt(a, "%" PRId64, in->since_ms);
    sgr_args_addz(a, "checked_ms");
    sgr_args_fmt(a, "%" PRId64, in->checked_ms);
    sgr_args_addz(a, "state");
    sgr_args_add(a, in->state, strnlen(in->state, sizeof(in->state)));
    sgr_args_addz(a, "phase");
    sgr_args_add(a, in->phase, strnlen(in->phase, sizeof(in->phase)));
    sgr_args_addz(a, "note");
    sgr_args_add(a, in->note, strnlen(in->note, sizeof(in->note)));
    sgr_args_addz(a, "account");
    sgr_args_addz(a, account);
}


struct cas_job {
    struct args a;
    uint64_t expect;
    struct sg_account_state *cur;
    int result;
};

static enum job_rc state_cas_job(struct sg_store_redis *r, redisContext *c, void *arg,
                                 char *err, size_t errlen)
{
    struct cas_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = sgr_eval(r, c, &j->a, &rc, err, errlen);

    if (rep == NULL)
        return rc;
    if (rep->type == REDIS_REPLY_INTEGER) {
        j->cur->version = (uint64_t)rep->integer;
        j->result = 1;
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        parse_state(rep, j->cur);
        j->result = 0;
    } else {
        snprintf(err, errlen, "state cas: unexpected reply");
        freeReplyObject(rep);
        return J_ERR;
    }
    freeReplyObject(rep);
    return J_OK;
}

int sg_store_redis_state_cas(struct sg_store_redis *r, const char *account,
                             uint64_t expect_version, const struct sg_account_state *next,
                             struct sg_account_state *cur)
{
    struct cas_job j = { .expect = expect_version, .cur = cur, .result = -1 };
    char tag[41];
    int rc;

    if (account == NULL || next == NULL || cur == NULL)
        return -1;
    sgr_account_tag(tag, account);
    sgr_args_eval_head(&j.a, r, 1);
    sgr_args_fmt(&j.a, "%s{%s}:state", r->prefix, tag);
    sgr_args_addz(&j.a, "state_cas");
    sgr_args_add(&j.a, "", 0);
    sgr_args_u64(&j.a, expect_version);
    sgr_args_u64(&j.a, STATE_TTL_MS);
    args_state(&j.a, account, next);
    if (j.a.oom) {
        sgr_args_free(&j.a);
        return -1;
    }
    rc = sgr_run(r, state_cas_job, &j);
    sgr_args_free(&j.a);
    if (rc < 0)
        return -1;
    if (j.result == 1) {
        uint64_t v = cur->version;
        *cur = *next;
        cur->version = v;
    }
    return j.result;
}

/* --- leader lock ------------------------------------------------------------ */

struct lock_job {
    struct args a;
    int result;
};

static enum job_rc lock_job(struct sg_store_redis *r, redisContext *c, void *arg,
                            char *err, size_t errlen)
{
    struct lock_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = sgr_eval(r, c, &j->a, &rc, err, errlen);

    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "lock: unexpected reply");
        freeReplyObject(rep);
        return J_ERR;
    }
    j->result = rep->integer == 1 ? 1 : 0;
    freeReplyObject(rep);
    return J_OK;
}

int sg_store_redis_lock(struct sg_store_redis *r, const char *name, const char *owner,
                        uint64_t ttl_ms)
{
    struct lock_job j = { .result = -1 };
    int rc;

    if (name == NULL || owner == NULL || owner[0] == '\0')
        return -1;
    sgr_args_eval_head(&j.a, r, 1);
    sgr_args_fmt(&j.a, "%slock:%s", r->prefix, name);
    sgr_args_addz(&j.a, "lock");
    sgr_args_add(&j.a, "", 0);
    sgr_args_addz(&j.a, owner);
    sgr_args_u64(&j.a, ttl_ms);
    if (j.a.oom) {
        sgr_args_free(&j.a);
        return -1;
    }
    rc = sgr_run(r, lock_job, &j);
    sgr_args_free(&j.a);
    return rc < 0 ? -1 : j.result;
}

/* --- mail held on lockdown, per relay ------------------------------------------ */

struct cmd_job {
    struct args a[2];             /* one or two commands, pipelined */
    int ncmd;
    redisReply *rep;              /* reply of the first command */
};

static enum job_rc cmd_job(struct sg_store_redis *r, redisContext *c, void *arg,
                           char *err, size_t errlen)
{
    struct cmd_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *first = NULL;

    (void)r;
    for (int i = 0; i < j->ncmd; i++)         /* in order, one write */
        if (redisAppendCommandArgv(c, (int)j->a[i].n, j->a[i].v, j->a[i].len) != REDIS_OK)
            return J_IO;
    for (int i = 0; i < j->ncmd; i++) {
        void *p = NULL;
        if (redisGetReply(c, &p) != REDIS_OK || p == NULL) {
            if (first != NULL)
                freeReplyObject(first);
            return J_IO;
        }
        if (i == 0)
            first = p;
        else
            freeReplyObject(p);
    }
    if (first->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s", first->str);
        rc = sgr_reply_error(first);
        freeReplyObject(first);
        return rc;
    }
    if (j->rep != NULL)
        freeReplyObject(j->rep);
    j->rep = first;
    return J_OK;
}

static int held_run(struct sg_store_redis *r, const char *account, const char *relay,
                    const char *verb, const char *const *qids, size_t n, bool expire,
                    redisReply **out)
{
    struct cmd_job j = { .ncmd = expire ? 2 : 1 };
    char tag[41];
    int rc;

    sgr_account_tag(tag, account);
    sgr_args_addz(&j.a[0], verb);
    args_held_key(&j.a[0], r, tag, relay);
    for (size_t i = 0; i < n; i++)
        sgr_args_clean(&j.a[0], qids[i], 64);
    if (expire) {
        sgr_args_addz(&j.a[1], "PEXPIRE");
        sgr_args_add(&j.a[1], j.a[0].v[1], j.a[0].len[1]);
        sgr_args_u64(&j.a[1], HELD_TTL_MS);
    }
    rc = (j.a[0].oom || j.a[1].oom) ? -1 : sgr_run(r, cmd_job, &j);
    if (rc == 0 && out != NULL)
        *out = j.rep;
    else if (j.rep != NULL)
        freeReplyObject(j.rep);
    sgr_args_free(&j.a[0]);
    sgr_args_free(&j.a[1]);
    return rc;
}

int sg_store_redis_held_add(struct sg_store_redis *r, const char *account, const char *relay,
                            const char *qid)
{
    return held_run(r, account, relay, "SADD", &qid, 1, true, NULL);
}

int sg_store_redis_held_list(struct sg_store_redis *r, const char *account, const char *relay,
                             char ***qids, size_t *n)
{
    redisReply *rep = NULL;

    if (held_run(r, account, relay, "SMEMBERS", NULL, 0, false, &rep) != 0)
        return -1;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) {
        *qids = calloc(rep->elements, sizeof(**qids));
        for (size_t i = 0; *qids != NULL && i < rep->elements; i++)
            if (rep->element[i]->type == REDIS_REPLY_STRING &&
                ((*qids)[*n] = strndup(rep->element[i]->str, rep->element[i]->len)) != NULL)
                (*n)++;
    }
    freeReplyObject(rep);
    return 0;
}

int sg_store_redis_held_del(struct sg_store_redis *r, const char *account, const char *relay,
                            const char *const *qids, size_t n)
{
    return held_run(r, account, relay, "SREM", qids, n, false, NULL);
}

