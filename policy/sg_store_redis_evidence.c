/*
 * sg_store_redis_evidence.c - reading back what the Redis backend
 * recorded: an account's evidence (typed: struct sg_evidence_report), and
 * the relay-wide flood summary of implicit identities (JSON), which
 * each relay adds up in memory (sg_topk) and writes every FLOOD_FLUSH_MS
 * in one pipeline of plain commands (not per message).
 *
 * Must not: write an account's keys (the script does), or trust what it
 * reads: every string is UTF-8-cleaned, every number bounded.
 */
#include "sg_time.h"
#include "sg_store_redis_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- evidence, typed --------------------------------------------------------------- */

enum { EV_META, EV_IP, EV_IPFIRST, EV_MUA, EV_MUAFIRST, EV_DOM, EV_FROMX, EV_RECENT,
       EV_HOUR, EV_N };

struct evidence_job {
    char tag[41];
    redisReply *rep[EV_N];
};

static enum job_rc evidence_job(struct sg_store_redis *r, redisContext *c, void *arg,
                                char *err, size_t errlen)
{
    static const char *const sfx[EV_N] = {
        "meta", "ev:ip", "ev:ipfirst", "ev:mua", "ev:muafirst", "ev:dom",
        "ev:fromx", "ev:recent", "ev:hour",
    };
    struct evidence_job *j = arg;
    char key[600];

    for (int i = 0; i < EV_N; i++) {
        int rc2;
        snprintf(key, sizeof(key), "%s{%s}:%s", r->prefix, j->tag, sfx[i]);
        if (i == EV_FROMX || i == EV_RECENT)
            rc2 = redisAppendCommand(c, "LRANGE %s 0 -1", key);
        else
            rc2 = redisAppendCommand(c, "HGETALL %s", key);
        if (rc2 != REDIS_OK)
            return J_IO;
    }
    for (int i = 0; i < EV_N; i++) {
        void *p = NULL;
        if (redisGetReply(c, &p) != REDIS_OK || p == NULL)
            return i == 0 && c->err == REDIS_ERR_EOF ? J_IO_RETRY : J_IO;
        j->rep[i] = p;
        if (j->rep[i]->type != REDIS_REPLY_ARRAY) {
            snprintf(err, errlen, "evidence: %s",
                     j->rep[i]->type == REDIS_REPLY_ERROR ? j->rep[i]->str : "?");
            /* read the rest so the context stays usable */
            for (int k = i + 1; k < EV_N; k++) {
                if (redisGetReply(c, &p) != REDIS_OK || p == NULL)
                    return J_IO;
                j->rep[k] = p;
            }
            return J_ERR;
        }
    }
    return J_OK;
}

static json_int_t rep_int(const redisReply *v)
{
    return v->type == REDIS_REPLY_STRING ? (json_int_t)strtoll(v->str, NULL, 10) : 0;
}

/* A reply's number, never negative (what a hostile writer could put). */
static uint64_t rep_count(const redisReply *v)
{
    json_int_t n = rep_int(v);
    return n > 0 ? (uint64_t)n : 0;
}

/* A malloc'd UTF-8-clean copy of an outside string ("" for NULL). */
static char *dup_clean(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p != NULL)
        sg_store_utf8_clean(p, n + 1, s ? s : "", s ? n : 0);
    return p;
}

/* Fields of an HGETALL reply (pairs of strings), sorted by bytes. */
struct field {
    const char *s;
    size_t len;
    const redisReply *v;
};

static int field_cmp(const void *a, const void *b)
{
    const struct field *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);

    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static struct field *fields_sorted(const redisReply *h, size_t *n)
{
    struct field *f = calloc(h->elements / 2 + 1, sizeof(*f));

    *n = 0;
    for (size_t i = 0; f != NULL && i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING)
            f[(*n)++] = (struct field){ h->element[i]->str, h->element[i]->len,
                                        h->element[i + 1] };
    if (f != NULL)
        qsort(f, *n, sizeof(*f), field_cmp);
    return f;
}

/* Values counted in hash cnt, with their first-seen time from hash first
 * (NULL: none). */
static int seen_list(const redisReply *cnt, const redisReply *first,
                     struct sg_ev_seen **out, size_t *nout)
{
    size_t nf = 0;
    struct field *f = first ? fields_sorted(first, &nf) : NULL;
    struct sg_ev_seen *v = calloc(cnt->elements / 2 + 1, sizeof(*v));

    if (v == NULL || (first != NULL && f == NULL)) {
        free(f);
        free(v);
        return -1;
    }
    *out = v;
    for (size_t i = 0; i + 1 < cnt->elements; i += 2) {
        const redisReply *k = cnt->element[i];
        struct field key = { k->str, k->len, NULL }, *hit;

        if (k->type != REDIS_REPLY_STRING)
            continue;
        hit = f ? bsearch(&key, f, nf, sizeof(*f), field_cmp) : NULL;
        v[*nout].count = rep_count(cnt->element[i + 1]);
        v[*nout].first_seen_ms = hit ? rep_int(hit->v) : -1;
        if ((v[*nout].value = dup_clean(k->str, k->len)) == NULL) {
            free(f);
            return -1;
        }
        (*nout)++;
    }
    free(f);
    return 0;
}

static int hour_cmp(const void *a, const void *b)
{
    const struct sg_ev_hour *x = a, *y = b;

    return (x->hour > y->hour) - (x->hour < y->hour);
}

/* "<hour>:m|r|x" -> count fields into hours, oldest first. */
static int hour_list(const redisReply *h, struct sg_evidence_report *out)
{
    size_t n = 0;
    struct sg_ev_hour *v = calloc(h->elements / 2 + 1, sizeof(*v));

    if (v == NULL)
        return -1;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i];
        char *end;
        long long hour;
        uint64_t c = rep_count(h->element[i + 1]);

        if (f->type != REDIS_REPLY_STRING)
            continue;
        hour = strtoll(f->str, &end, 10);
        if (end == f->str || end[0] != ':' || strchr("mrx", end[1]) == NULL ||
            end[1] == '\0' || end[2] != '\0')
            continue;
        v[n].hour = hour;
        v[n].messages = end[1] == 'm' ? c : 0;
        v[n].recipients = end[1] == 'r' ? c : 0;
        v[n].refused = end[1] == 'x' ? c : 0;
        n++;
    }
    qsort(v, n, sizeof(*v), hour_cmp);
    out->nhours = 0;
    for (size_t i = 0; i < n; i++) {              /* merge the fields of an hour */
        struct sg_ev_hour *o = out->nhours ? &v[out->nhours - 1] : NULL;
        if (o != NULL && o->hour == v[i].hour) {
            o->messages += v[i].messages;
            o->recipients += v[i].recipients;
            o->refused += v[i].refused;
        } else {
            v[out->nhours++] = v[i];
        }
    }
    out->hours = v;
    return 0;
}

/* Members of a JSON record of the lists (made by the script and the C
 * side: JSON lives in Redis only). */
static char *jdup(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));

    return dup_clean(s, s ? strlen(s) : 0);
}

static int64_t jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);

    return json_is_integer(v) ? (int64_t)json_integer_value(v) :
           json_is_real(v) ? (int64_t)json_real_value(v) : 0;
}

static int mismatch_list(const redisReply *l, struct sg_evidence_report *out)
{
    out->mismatches = calloc(l->elements + 1, sizeof(*out->mismatches));
    if (out->mismatches == NULL)
        return -1;
    for (size_t i = 0; i < l->elements; i++) {
        json_t *o = l->element[i]->type == REDIS_REPLY_STRING ?
                    json_loadb(l->element[i]->str, l->element[i]->len, 0, NULL) : NULL;
        struct sg_ev_mismatch *m = &out->mismatches[out->nmismatches];

        if (!json_is_object(o)) {
            json_decref(o);
            continue;
        }
        m->t_ms = jint(o, "t");
        m->qid = jdup(o, "qid");
        m->identity = jdup(o, "identity");
        m->from_domain = jdup(o, "from_domain");
        m->ip = jdup(o, "ip");
        json_decref(o);
        out->nmismatches++;
        if (!m->qid || !m->identity || !m->from_domain || !m->ip)
            return -1;
    }
    return 0;
}

static int recent_list(const redisReply *l, struct sg_evidence_report *out)
{
    out->recent = calloc(l->elements + 1, sizeof(*out->recent));
    if (out->recent == NULL)
        return -1;
    for (size_t i = 0; i < l->elements; i++) {
        json_t *o = l->element[i]->type == REDIS_REPLY_STRING ?
                    json_loadb(l->element[i]->str, l->element[i]->len, 0, NULL) : NULL;
        struct sg_ev_msg *m = &out->recent[out->nrecent];
        const char *act;
        int64_t n;

        if (!json_is_object(o)) {
            json_decref(o);
            continue;
        }
        act = json_string_value(json_object_get(o, "action"));
        m->t_ms = jint(o, "t");
        m->qid = jdup(o, "qid");
        m->ip = jdup(o, "ip");
        m->identity = jdup(o, "identity");
        m->msgid = jdup(o, "msgid");
        m->mailer = jdup(o, "mailer");
        m->relay = jdup(o, "relay");
        m->rcpts = (n = jint(o, "rcpts")) > 0 ? (uint64_t)n : 0;
        m->size = (n = jint(o, "size")) > 0 ? (uint64_t)n : 0;
        m->action = act && strcmp(act, "over") == 0 ? SG_EV_OVER :
                    act && strcmp(act, "lockdown") == 0 ? SG_EV_LOCKDOWN : SG_EV_OK;
        m->charged = json_is_true(json_object_get(o, "charged"));
        json_decref(o);
        out->nrecent++;
        if (!m->qid || !m->ip || !m->identity || !m->msgid || !m->mailer || !m->relay)
            return -1;
    }
    return 0;
}

int sg_store_redis_evidence_get(struct sg_store_redis *r, const char *account,
                                struct sg_evidence_report *out)
{
    struct evidence_job j = { 0 };
    const redisReply *meta;
    int rc;

    memset(out, 0, sizeof(*out));
    out->last_seen_ms = -1;
    if (account == NULL)
        return -1;
    sgr_account_tag(j.tag, account);
    rc = sgr_run(r, evidence_job, &j);
    if (rc < 0)
        goto out;
    meta = j.rep[EV_META];
    for (size_t i = 0; i + 1 < meta->elements; i += 2) {
        if (meta->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(meta->element[i]->str, "from_mismatch") == 0)
            out->from_mismatch = rep_count(meta->element[i + 1]);
        else if (strcmp(meta->element[i]->str, "last_ms") == 0)
            out->last_seen_ms = rep_int(meta->element[i + 1]);
    }
    if (seen_list(j.rep[EV_IP], j.rep[EV_IPFIRST], &out->ips, &out->nips) < 0 ||
        seen_list(j.rep[EV_MUA], j.rep[EV_MUAFIRST], &out->mailers, &out->nmailers) < 0 ||
        seen_list(j.rep[EV_DOM], NULL, &out->domains, &out->ndomains) < 0 ||
        hour_list(j.rep[EV_HOUR], out) < 0 || mismatch_list(j.rep[EV_FROMX], out) < 0 ||
        recent_list(j.rep[EV_RECENT], out) < 0)
        rc = -1;
out:
    for (int i = 0; i < EV_N; i++)
        if (j.rep[i] != NULL)
            freeReplyObject(j.rep[i]);
    if (rc < 0) {
        sg_evidence_report_free(out);
        out->last_seen_ms = -1;
    }
    return rc;
}

/* --- the flood summary -------------------------------------------------------- */

#define FLOOD_MAX_HOURS 48
#define FLOOD_SHOW 10

static const char *const flood_z[3] = { "id", "ip", "mua" };

struct flush_job {
    struct flood_agg agg;
};

/* One pipeline: the counters and the three top lists of the hour, each
 * trimmed back to FLOOD_TOP_K members, every key with its expiry. */
static enum job_rc flush_job(struct sg_store_redis *r, redisContext *c, void *arg,
                             char *err, size_t errlen)
{
    struct flush_job *j = arg;
    const struct flood_agg *g = &j->agg;
    char k[600];
    size_t sent = 0;
    enum job_rc rc = J_OK;

    snprintf(k, sizeof(k), "%s{flood}:n:%" PRIu64, r->prefix, g->hour);
    redisAppendCommand(c, "HINCRBY %s messages %" PRIu64, k, g->messages);
    redisAppendCommand(c, "HINCRBY %s new %" PRIu64, k, g->fresh);
    redisAppendCommand(c, "PEXPIRE %s %" PRIu64, k, (uint64_t)FLOOD_TTL_MS);
    sent += 3;
    for (int z = 0; z < 3; z++) {
        const struct sg_topk *t = &g->top[z];

        if (t->len == 0)
            continue;
        snprintf(k, sizeof(k), "%s{flood}:%s:%" PRIu64, r->prefix, flood_z[z], g->hour);
        /* what each value was certainly seen (a lower bound): a flood of
         * distinct values then shows counts of 1, not inherited ones */
        for (size_t i = 0; i < t->len; i++)
            redisAppendCommand(c, "ZINCRBY %s %" PRIu64 " %s", k, t->n[i] - t->err[i], t->v[i]);
        redisAppendCommand(c, "ZREMRANGEBYRANK %s 0 %d", k, -(FLOOD_TOP_K + 1));
        redisAppendCommand(c, "PEXPIRE %s %" PRIu64, k, (uint64_t)FLOOD_TTL_MS);
        sent += t->len + 2;
    }
    for (size_t i = 0; i < sent; i++) {
        void *p = NULL;
        if (redisGetReply(c, &p) != REDIS_OK || p == NULL)
            return i == 0 && c->err == REDIS_ERR_EOF ? J_IO_RETRY : J_IO;
        if (((redisReply *)p)->type == REDIS_REPLY_ERROR && rc == J_OK) {
            snprintf(err, errlen, "flood summary: %s", ((redisReply *)p)->str);
            rc = J_ERR;
        }
        freeReplyObject(p);
    }
    return rc;
}

/* The counts so far, for a flush_job; the next ones start from zero.
 * Called with mu held; NULL if there is nothing (or no memory). */
static struct flush_job *flood_take(struct sg_store_redis *r, uint64_t now)
{
    struct flush_job *j = NULL;

    if (r->agg.messages > 0 && (j = malloc(sizeof(*j))) != NULL)
        j->agg = r->agg;
    memset(&r->agg, 0, sizeof(r->agg));
    r->agg_next = now + FLOOD_FLUSH_MS;
    return j;
}

static void flood_write(struct sg_store_redis *r, struct flush_job *j)
{
    if (j != NULL)
        sgr_run(r, flush_job, j);     /* best effort: a summary, not a counter */
    free(j);
}

/* Write what was counted now (report, close). Called without mu held. */
void sgr_flood_flush(struct sg_store_redis *r, bool force)
{
    struct flush_job *j = NULL;
    uint64_t now = (uint64_t)sg_time_mono_ms();

    pthread_mutex_lock(&r->mu);
    if (force || now >= r->agg_next)
        j = flood_take(r, now);
    pthread_mutex_unlock(&r->mu);
    flood_write(r, j);
}

/* Count one decision of an implicit identity; every FLOOD_FLUSH_MS (and
 * when the hour turns, so that an hour's counts go to that hour) the
 * thread that notices writes the counts. */
void sgr_flood_count(struct sg_store_redis *r, const char *identity, const char *ip,
                        const char *mailer, bool fresh)
{
    uint64_t hour = sgr_wall_ms(r) / 3600000u, now = (uint64_t)sg_time_mono_ms();
    struct flush_job *old = NULL, *due = NULL;

    pthread_mutex_lock(&r->mu);
    if (r->agg.messages > 0 && r->agg.hour != hour)
        old = flood_take(r, now);
    if (r->agg.messages == 0) {
        r->agg.hour = hour;
        if (r->agg_next == 0)
            r->agg_next = now + FLOOD_FLUSH_MS;
    }
    r->agg.messages++;
    r->agg.fresh += fresh;
    sg_topk_add(&r->agg.top[0], identity, 1);
    sg_topk_add(&r->agg.top[1], ip && ip[0] ? ip : "(none)", 1);
    sg_topk_add(&r->agg.top[2], mailer && mailer[0] ? mailer : "(none)", 1);
    if (now >= r->agg_next)
        due = flood_take(r, now);
    pthread_mutex_unlock(&r->mu);
    flood_write(r, old);
    flood_write(r, due);
}

struct flood_job {
    uint64_t hour;                /* the newest */
    unsigned hours;
    redisReply *rep[FLOOD_MAX_HOURS * 4];
    size_t nrep;
};

static enum job_rc flood_job(struct sg_store_redis *r, redisContext *c, void *arg,
                             char *err, size_t errlen)
{
    struct flood_job *j = arg;
    size_t sent = 0;

    for (unsigned i = 0; i < j->hours; i++) {
        uint64_t h = j->hour - i;
        char k[600];

        snprintf(k, sizeof(k), "%s{flood}:n:%" PRIu64, r->prefix, h);
        if (redisAppendCommand(c, "HGETALL %s", k) != REDIS_OK)
            return J_IO;
        for (int z = 0; z < 3; z++) {
            snprintf(k, sizeof(k), "%s{flood}:%s:%" PRIu64, r->prefix, flood_z[z], h);
            if (redisAppendCommand(c, "ZRANGE %s 0 -1 WITHSCORES", k) != REDIS_OK)
                return J_IO;
        }
        sent += 4;
    }
    for (size_t i = 0; i < sent; i++) {
        void *p = NULL;
        if (redisGetReply(c, &p) != REDIS_OK || p == NULL)
            return i == 0 && c->err == REDIS_ERR_EOF ? J_IO_RETRY : J_IO;
        j->rep[j->nrep++] = p;
    }
    for (size_t i = 0; i < j->nrep; i++)
        if (j->rep[i]->type != REDIS_REPLY_ARRAY) {
            snprintf(err, errlen, "flood: %s",
                     j->rep[i]->type == REDIS_REPLY_ERROR ? j->rep[i]->str : "?");
            return J_ERR;
        }
    return J_OK;
}

static int cmp_count_desc(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "count"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "count"));

    return x < y ? 1 : x > y ? -1 : 0;
}

/* {value: summed count} -> [{value, count}] sorted, the first FLOOD_SHOW. */
static json_t *top_list(json_t *sum)
{
    json_t *arr = json_array(), *out = json_array(), **v;
    const char *k;
    json_t *n;
    size_t len;

    json_object_foreach(sum, k, n)
        json_array_append_new(arr, json_pack("{s:s,s:I}", "value", k, "count",
                                             json_integer_value(n)));
    len = json_array_size(arr);
    v = calloc(len + 1, sizeof(*v));
    for (size_t i = 0; v != NULL && i < len; i++)
        v[i] = json_array_get(arr, i);
    if (v != NULL) {
        qsort(v, len, sizeof(*v), cmp_count_desc);
        for (size_t i = 0; i < len && i < FLOOD_SHOW; i++)
            json_array_append(out, v[i]);
    }
    free(v);
    json_decref(arr);
    return out;
}

int sg_store_redis_flood_json(struct sg_store_redis *r, unsigned hours, char **json_out)
{
    struct flood_job *j = calloc(1, sizeof(*j));
    json_t *root = NULL, *hl, *sums[3];
    static const char *const names[3] = { "identities", "ips", "mailers" };
    json_int_t tm = 0, tn = 0;
    int rc = -1;

    *json_out = NULL;
    if (j == NULL)
        return -1;
    sgr_flood_flush(r, true);
    j->hours = hours < 1 ? 1 : hours > FLOOD_MAX_HOURS ? FLOOD_MAX_HOURS : hours;
    j->hour = sgr_wall_ms(r) / 3600000u;
    if (sgr_run(r, flood_job, j) < 0)
        goto out;
    root = json_object();
    hl = json_array();
    for (int z = 0; z < 3; z++)
        sums[z] = json_object();
    for (unsigned i = 0; i < j->hours; i++) {
        redisReply **rp = &j->rep[4 * i];
        json_int_t msgs = 0, fresh = 0;

        for (size_t f = 0; f + 1 < rp[0]->elements; f += 2) {
            if (strcmp(rp[0]->element[f]->str, "messages") == 0)
                msgs = rep_int(rp[0]->element[f + 1]);
            else if (strcmp(rp[0]->element[f]->str, "new") == 0)
                fresh = rep_int(rp[0]->element[f + 1]);
        }
        tm += msgs;
        tn += fresh;
        if (msgs > 0)
            json_array_append_new(hl, json_pack("{s:I,s:I,s:I}", "hour",
                                                (json_int_t)(j->hour - i), "messages", msgs,
                                                "new", fresh));
        for (int z = 0; z < 3; z++) {
            const redisReply *zr = rp[1 + z];
            for (size_t m = 0; m + 1 < zr->elements; m += 2) {
                char buf[1024];
                json_t *cur;

                sg_store_utf8_clean(buf, sizeof(buf), zr->element[m]->str, zr->element[m]->len);
                cur = json_object_get(sums[z], buf);
                json_object_set_new(sums[z], buf, json_integer(
                    (cur ? json_integer_value(cur) : 0) +
                    (json_int_t)strtoll(zr->element[m + 1]->str, NULL, 10)));
            }
        }
    }
    json_object_set_new(root, "hours", hl);
    json_object_set_new(root, "messages", json_integer(tm));
    json_object_set_new(root, "new", json_integer(tn));
    json_object_set_new(root, "top_k", json_integer(FLOOD_TOP_K));
    for (int z = 0; z < 3; z++) {
        json_object_set_new(root, names[z], top_list(sums[z]));
        json_decref(sums[z]);
    }
    *json_out = json_dumps(root, JSON_COMPACT);
    rc = *json_out != NULL ? 0 : -1;
out:
    json_decref(root);
    for (size_t i = 0; i < j->nrep; i++)
        freeReplyObject(j->rep[i]);
    free(j);
    return rc;
}

