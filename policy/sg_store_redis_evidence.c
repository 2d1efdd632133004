/*
 * sg_store_redis_evidence.c - reading back what the Redis backend
 * recorded: an account's evidence (typed, and as JSON made from the typed
 * report), and the relay-wide flood summary of implicit identities, which
 * each relay adds up in memory (sg_topk) and writes every FLOOD_FLUSH_MS
 * in one pipeline of plain commands (not per message).
 *
 * Must not: write an account's keys (the script does), or trust what it
 * reads: every string is UTF-8-cleaned, every number bounded.
 */
#include "sg_store_redis_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- evidence as JSON --------------------------------------------------------- */

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

static json_t *jstr(const char *s, size_t n)
{
    char buf[1024];

    sgr_utf8_clean(buf, sizeof(buf), s, n);
    return json_string(buf);
}

static void jset(json_t *obj, const char *k, size_t klen, json_t *v)
{
    char buf[1024];

    sgr_utf8_clean(buf, sizeof(buf), k, klen);
    json_object_set_new(obj, buf, v);
}

static json_int_t rep_int(const redisReply *v)
{
    return v->type == REDIS_REPLY_STRING ? (json_int_t)strtoll(v->str, NULL, 10) : 0;
}

/* {field: {count, first_seen}} from a count hash and a first-seen hash. */
static json_t *counted(const redisReply *cnt, const redisReply *first)
{
    json_t *firsts = json_object(), *out = json_object();

    for (size_t i = 0; i + 1 < first->elements; i += 2)
        jset(firsts, first->element[i]->str, first->element[i]->len,
             json_integer(rep_int(first->element[i + 1])));
    for (size_t i = 0; i + 1 < cnt->elements; i += 2) {
        const redisReply *f = cnt->element[i];
        char buf[1024];
        json_t *fs, *o = json_object();

        sgr_utf8_clean(buf, sizeof(buf), f->str, f->len);
        fs = json_object_get(firsts, buf);
        json_object_set_new(o, "count", json_integer(rep_int(cnt->element[i + 1])));
        json_object_set(o, "first_seen", fs ? fs : json_null());
        json_object_set_new(out, buf, o);
    }
    json_decref(firsts);
    return out;
}

static json_t *json_list(const redisReply *l)
{
    json_t *a = json_array();

    for (size_t i = 0; i < l->elements; i++) {
        json_error_t je;
        json_t *v = json_loadb(l->element[i]->str, l->element[i]->len, 0, &je);
        if (v != NULL)
            json_array_append_new(a, v);
    }
    return a;
}

int sg_store_redis_evidence_json(struct sg_store_redis *r, const char *account,
                                 char **json_out)
{
    struct evidence_job j = { 0 };
    json_t *root = NULL, *dom, *hourly;
    const redisReply *meta;
    int rc;

    *json_out = NULL;
    if (account == NULL)
        return -1;
    sgr_account_tag(j.tag, account);
    rc = sgr_run(r, evidence_job, &j);
    if (rc < 0)
        goto out;
    rc = -1;
    root = json_object();
    json_object_set_new(root, "account", jstr(account, strlen(account)));
    meta = j.rep[EV_META];
    json_object_set_new(root, "from_mismatch", json_integer(0));
    json_object_set_new(root, "last_seen", json_null());
    for (size_t i = 0; i + 1 < meta->elements; i += 2) {
        if (strcmp(meta->element[i]->str, "from_mismatch") == 0)
            json_object_set_new(root, "from_mismatch",
                                json_integer(rep_int(meta->element[i + 1])));
        else if (strcmp(meta->element[i]->str, "last_ms") == 0)
            json_object_set_new(root, "last_seen", json_integer(rep_int(meta->element[i + 1])));
    }
    json_object_set_new(root, "by_ip", counted(j.rep[EV_IP], j.rep[EV_IPFIRST]));
    json_object_set_new(root, "by_mailer", counted(j.rep[EV_MUA], j.rep[EV_MUAFIRST]));
    dom = json_object();
    for (size_t i = 0; i + 1 < j.rep[EV_DOM]->elements; i += 2)
        jset(dom, j.rep[EV_DOM]->element[i]->str, j.rep[EV_DOM]->element[i]->len,
             json_integer(rep_int(j.rep[EV_DOM]->element[i + 1])));
    json_object_set_new(root, "by_domain", dom);
    hourly = json_object();
    for (size_t i = 0; i + 1 < j.rep[EV_HOUR]->elements; i += 2) {
        const char *f = j.rep[EV_HOUR]->element[i]->str;
        const char *colon = strchr(f, ':');
        char hour[32];
        json_t *h;
        const char *what;

        if (colon == NULL || colon - f >= (ptrdiff_t)sizeof(hour))
            continue;
        snprintf(hour, sizeof(hour), "%.*s", (int)(colon - f), f);
        what = colon[1] == 'm' ? "messages" : colon[1] == 'r' ? "recipients" :
               colon[1] == 'x' ? "refused" : NULL;
        if (what == NULL)
            continue;
        h = json_object_get(hourly, hour);
        if (h == NULL) {
            h = json_pack("{s:I,s:I,s:I}", "messages", (json_int_t)0,
                          "recipients", (json_int_t)0, "refused", (json_int_t)0);
            json_object_set_new(hourly, hour, h);
        }
        json_object_set_new(h, what, json_integer(rep_int(j.rep[EV_HOUR]->element[i + 1])));
    }
    json_object_set_new(root, "hourly", hourly);
    json_object_set_new(root, "from_mismatch_recent", json_list(j.rep[EV_FROMX]));
    json_object_set_new(root, "recent", json_list(j.rep[EV_RECENT]));
    *json_out = json_dumps(root, JSON_COMPACT);
    rc = *json_out != NULL ? 0 : -1;
out:
    json_decref(root);
    for (int i = 0; i < EV_N; i++)
        if (j.rep[i] != NULL)
            freeReplyObject(j.rep[i]);
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
    uint64_t now = sgr_mono_ms();

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
    uint64_t hour = sgr_wall_ms(r) / 3600000u, now = sgr_mono_ms();
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

                sgr_utf8_clean(buf, sizeof(buf), zr->element[m]->str, zr->element[m]->len);
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

