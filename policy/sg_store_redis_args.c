/*
 * sg_store_redis_args.c - the Redis backend's argument vectors (strings in
 * an arena of stable blocks, sent binary-safe), its key names, and the
 * UTF-8 cleaning of every outside string before it reaches Redis.
 *
 * Must not: talk to Redis, or let a byte of an outside string (an account
 * name, a mailer) choose a key other than its own.
 */
#include "sg_store_redis_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void sgr_sha1_hex(char out[41], const void *data, size_t len)
{
    unsigned char md[SHA_DIGEST_LENGTH];

    SHA1(data, len, md);
    hex(out, md, sizeof(md));
}

/* --- argument vectors: strings kept in an arena of stable blocks -------- */

void sgr_args_free(struct args *a)
{
    while (a->blocks != NULL) {
        struct ablock *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    free(a->v);
    free(a->len);
    memset(a, 0, sizeof(*a));
}

char *sgr_args_alloc(struct args *a, size_t n)
{
    struct ablock *b = a->blocks;

    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL) {
            a->oom = true;
            return NULL;
        }
        b->cap = cap;
        b->used = 0;
        b->next = a->blocks;
        a->blocks = b;
    }
    b->used += n;
    return b->data + b->used - n;
}

/* Append s (not copied: it must outlive the call). */
void sgr_args_add(struct args *a, const char *s, size_t len)
{
    if (a->oom)
        return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        const char **v = realloc(a->v, cap * sizeof(*v));
        size_t *l;
        if (v == NULL) {
            a->oom = true;
            return;
        }
        a->v = v;
        l = realloc(a->len, cap * sizeof(*l));
        if (l == NULL) {
            a->oom = true;
            return;
        }
        a->len = l;
        a->cap = cap;
    }
    a->v[a->n] = s ? s : "";
    a->len[a->n] = s ? len : 0;
    a->n++;
}

void sgr_args_addz(struct args *a, const char *s)
{
    sgr_args_add(a, s, s ? strlen(s) : 0);
}

__attribute__((format(printf, 2, 3)))
void sgr_args_fmt(struct args *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (p = sgr_args_alloc(a, (size_t)n + 1)) == NULL) {
        a->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sgr_args_add(a, p, (size_t)n);
}

void sgr_args_u64(struct args *a, uint64_t v)
{
    sgr_args_fmt(a, "%" PRIu64, v);
}

/* A cleaned-up copy of an outside string (evidence). */
void sgr_args_clean(struct args *a, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    char *p;

    if (n > max)
        n = max;
    p = sgr_args_alloc(a, n + 1);
    if (p == NULL)
        return;
    sgr_args_add(a, p, sg_store_utf8_clean(p, n + 1, s ? s : "", s ? strlen(s) : 0));
}

/* '"name":"value"' with the value of argument i, which went through
 * utf8_clean (valid UTF-8, no control character): only '"' and '\\' need
 * escaping. An empty value is `none` when given. Writes at most
 * strlen(name) + 2 * len + 16 bytes (no NUL). */
static size_t json_member(char *dst, const char *name, const struct args *a, size_t i,
                          const char *none)
{
    const char *v = a->v[i];
    size_t n = a->len[i], o = (size_t)sprintf(dst, "\"%s\":\"", name);

    if (n == 0 && none != NULL) {
        v = none;
        n = strlen(none);
    }
    for (size_t k = 0; k < n; k++) {
        if (v[k] == '"' || v[k] == '\\')
            dst[o++] = '\\';
        dst[o++] = v[k];
    }
    dst[o++] = '"';
    return o;
}

/* The members of sg_decide.lua's "recent" record but t, action and charged
 * (the script adds those), from the arguments already added: the names and
 * values the script used to cjson.encode itself, as JSON text made here,
 * which costs Redis nothing. Appended as the script's last argument. */
void sgr_args_recent(struct args *a, const struct recent_at *at, uint64_t rcpts,
                        uint64_t size)
{
    size_t cap = 256, o = 0;
    char *p;

    if (a->oom)
        return;
    cap += 2 * (a->len[at->qid] + a->len[at->ip] + a->len[at->identity] +
                a->len[at->mailer] + a->len[at->msgid] + a->len[at->relay]);
    if ((p = sgr_args_alloc(a, cap)) == NULL)
        return;
    o += json_member(p + o, "qid", a, at->qid, NULL);
    p[o++] = ',';
    o += json_member(p + o, "ip", a, at->ip, "(none)");
    p[o++] = ',';
    o += json_member(p + o, "identity", a, at->identity, NULL);
    o += (size_t)sprintf(p + o, ",\"rcpts\":%" PRIu64 ",\"size\":%" PRIu64 ",", rcpts, size);
    o += json_member(p + o, "msgid", a, at->msgid, NULL);
    p[o++] = ',';
    o += json_member(p + o, "mailer", a, at->mailer, "(none)");
    p[o++] = ',';
    o += json_member(p + o, "relay", a, at->relay, NULL);
    sgr_args_add(a, p, o);
}

/* Key "P{H}:" + suffix (+ name + ":" + window when name is given). */
void sgr_args_key(struct args *a, const struct sg_store_redis *r, const char *tag,
                     const char *suffix, const char *name, uint64_t window_ms)
{
    size_t pl = strlen(r->prefix), sl = strlen(suffix), nl = name ? strlen(name) : 0;
    size_t cap = pl + 44 + sl + nl + 24;
    char *p = sgr_args_alloc(a, cap);
    size_t o;

    if (p == NULL)
        return;
    o = (size_t)snprintf(p, cap, "%s{%s}:%s", r->prefix, tag, suffix);
    if (name != NULL) {
        memcpy(p + o, name, nl);  /* any byte but NUL: not through printf */
        o += nl;
        o += (size_t)snprintf(p + o, cap - o, ":%" PRIu64, window_ms);
    }
    sgr_args_add(a, p, o);
}

void sgr_account_tag(char tag[41], const char *account)
{
    sgr_sha1_hex(tag, account, strlen(account));
}

void sgr_args_eval_head(struct args *a, const struct sg_store_redis *r, size_t nkeys)
{
    sgr_args_addz(a, "EVALSHA");
    sgr_args_add(a, r->sha, 40);
    sgr_args_u64(a, nkeys);
}

/* The script's "now": the store's clock when one was given, else "" (the
 * script reads redis TIME, one clock for every relay). */
void sgr_args_now(struct args *a, const struct sg_store_redis *r)
{
    if (r->clock != NULL)
        sgr_args_fmt(a, "%" PRIu64, r->clock(r->clock_ctx));
    else
        sgr_args_add(a, "", 0);
}

uint64_t sgr_rep_u64(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer > 0 ? (uint64_t)e->integer : 0;
    if (e->type == REDIS_REPLY_STRING)
        return strtoull(e->str, NULL, 10);
    return 0;
}


void sgr_msgid_digest(char out[TRACE_DIGEST_HEX + 1], const char *msgid)
{
    const char *v = msgid ? msgid : "", *end = v + strlen(v), *lt = strchr(v, '<');
    char norm[1024], hex[41];
    size_t k = 0;

    if (lt != NULL) {
        const char *gt = strchr(lt, '>');
        v = lt + 1;
        end = gt ? gt : end;
    }
    for (; v < end && k + 1 < sizeof(norm); v++)
        if (!isspace((unsigned char)*v) && *v != '<' && *v != '>')
            norm[k++] = *v;
    out[0] = '\0';
    if (k == 0)
        return;
    sgr_sha1_hex(hex, norm, k);
    memcpy(out, hex, TRACE_DIGEST_HEX);
    out[TRACE_DIGEST_HEX] = '\0';
}

/* An argument already cleaned (no control character, so no tab), cut at a
 * UTF-8 boundary to max bytes. */
static size_t trace_field(char *dst, const struct args *a, size_t i, size_t max)
{
    size_t n = a->len[i];

    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)a->v[i][n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, a->v[i], n);
    dst[n] = '\t';
    return n + 1;
}

void sgr_args_trace(struct args *a, const struct sg_store_redis *r, const struct recent_at *at,
                    const char *msgid, uint64_t rcpts, uint64_t size)
{
    char dig[TRACE_DIGEST_HEX + 1], *p;
    size_t cap = 64, o = 0;

    if (a->oom)
        return;
    sgr_args_u64(a, r->trace_max);
    sgr_args_u64(a, EV_TTL_MS);
    sgr_args_u64(a, TRACE_TTL_MS);
    sgr_msgid_digest(dig, msgid);
    sgr_args_fmt(a, "%s", dig);     /* copied: dig is on the stack */
    cap += a->len[at->qid] + a->len[at->ip] + a->len[at->identity] + a->len[at->mailer] +
           a->len[at->msgid] + a->len[at->relay] + 8;
    if ((p = sgr_args_alloc(a, cap)) == NULL)
        return;
    o += trace_field(p + o, a, at->qid, 64);
    o += trace_field(p + o, a, at->ip, 64);
    o += trace_field(p + o, a, at->identity, EV_STR_MAX);
    o += trace_field(p + o, a, at->msgid, TRACE_MSGID_MAX);
    o += trace_field(p + o, a, at->mailer, TRACE_MAILER_MAX);
    o += trace_field(p + o, a, at->relay, EV_STR_MAX);
    o += (size_t)sprintf(p + o, "%" PRIu64 "\t%" PRIu64, rcpts, size);
    sgr_args_add(a, p, o);
}
