/*
 * sg_store_redis.c - the Redis store backend: counters, account state and
 * evidence shared by every relay.
 *
 * A message costs one EVALSHA of sg_decide.lua (embedded at build time),
 * which checks every limit, commits only if all pass, records the
 * evidence and reads the account's lockdown flag, with the time taken
 * from redis TIME (or from the clock given to open(), for tests). Nothing is read-modify-written from C.
 *
 * Connections: a pool of at most store.redis.pool_size hiredis contexts
 * guarded by a mutex (a burst of decisions waits for one rather than
 * opening more); a context is used by one thread at a time and discarded
 * after any
 * transport error (and the whole pool with it: the server is probably
 * gone). With Sentinel, the master's address comes from the sentinels and
 * is asked again after a transport error or a READONLY reply. A circuit
 * breaker turns an outage into immediate errors: after a failure, calls
 * fail at once until one probe, every 250-500 ms, gets through.
 *
 * Keys of an account (P = prefix, H = hex SHA-1 of the account name, so
 * that no byte of the name can break the Cluster hash tag):
 *   P{H}:state                  hash: the block workflow state (30 days)
 *   P{H}:meta                   hash: name, last_ms, from_mismatch, ttl_ms
 *                               (when the evidence expiry was last refreshed)
 *   P{H}:w:<limit>:<window_ms>  hash: "m|r|b<bucket>" -> units, and the
 *                               script's running totals lo, tm, tr, tb, hi
 *   P{H}:d:<limit>:<window_ms>  zset: recipient hash -> last seen ms
 *   P{H}:warn:<limit>:<window_ms>  marker: warned this window
 *   P{H}:ev:ip, :ev:ipfirst, :ev:mua, :ev:muafirst, :ev:dom, :ev:fromx,
 *   :ev:recent, :ev:hour        evidence (7 days; hour: 15 days, per-hour counts)
 *   P lock:<name>               leader locks (sg_store_redis_lock)
 * An implicit identity (no configured account matches it) has ONE key:
 *   P{H}:i                      hash: every limit's windows, fields only
 *                               for buckets in use (see sg_decide.lua,
 *                               "implicit"); expires T + w + 1 s after its
 *                               last charge
 * and is counted, instead of evidence keys, in a summary of all relays,
 * bounded whatever the number of identities (hash tag "{flood}", 25 h):
 *   P{flood}:n:<hour>  hash: messages, new (identities that had no key)
 *   P{flood}:id:<hour>, :ip:<hour>, :mua:<hour>  zsets: the top FLOOD_TOP_K
 *                      (counts are lower bounds: what was certainly seen)
 * Each relay adds up its own in memory (sg_topk) and writes it every
 * FLOOD_FLUSH_MS in one pipeline of plain commands (not per message).
 * Every minute (on the decision path) INFO tells whether Redis evicted
 * keys: logged as a warning, since lost counters weaken the caps.
 *
 * Must not: log secrets, block longer than the configured timeouts, or
 * share a hiredis context between threads.
 */
#include "sg_store_redis.h"
#include "sg_decide_lua.h"
#include "sg_log.h"
#include "sg_topk.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define EV_TTL_MS (7ULL * 24 * 3600 * 1000)
#define STATE_TTL_MS (30ULL * 24 * 3600 * 1000)
#define RECENT_LEN 1000
#define EV_MAX_FIELDS 1000        /* per evidence hash; the rest is "(other)" */
#define EV_STR_MAX 256            /* bytes kept of an evidence string */
#define BREAKER_MIN_MS 250
#define BREAKER_MAX_MS 500
#define DECIDE_FIXED_KEYS 10
#define DECIDE_FIXED_ARGS 21
#define LIMIT_TAG_LEN 5           /* field prefix of a limit in an implicit hash */
#define FLOOD_TOP_K 100           /* members of each hourly top list */
#define FLOOD_TTL_MS (25ULL * 3600 * 1000)
#define FLOOD_FLUSH_MS 10000
#define EVICT_CHECK_MS 60000

/* What a job on one connection came to. */
enum job_rc {
    J_OK = 0,
    J_ERR,                        /* Redis answered with an error: context fine */
    J_IO_RETRY,                   /* transport failed before the command ran */
    J_IO,                         /* transport failed, outcome unknown */
    J_MOVED,                      /* READONLY/MASTERDOWN: ask the sentinels again */
};

enum gate { GATE_DENY, GATE_PASS, GATE_PROBE };

struct sg_store_redis {
    /* settings, copied */
    char *host, *unix_path, *username, *password, *prefix, *master_name;
    int port, db, connect_ms, command_ms;
    char **sent_host;
    int *sent_port;
    size_t nsent;
    size_t pool_max;
    char sha[41];                 /* of the script, for EVALSHA */

    pthread_mutex_t mu;           /* guards everything below */
    pthread_cond_t freed;         /* a context came back, or one fewer exists */
    redisContext **idle;
    unsigned *idle_gen;
    size_t nidle;
    size_t nbusy;                 /* contexts out of the pool or being connected */
    unsigned gen;                 /* bumped on a transport error: older contexts are dropped */
    char mhost[256];              /* sentinel mode: the master, when known */
    int mport;
    bool mknown;
    uint64_t mchecked;            /* sentinel mode: when the master was last asked (mono ms) */
    bool mchecking;               /* a thread is asking now */
    size_t snext;                 /* sentinel to ask first */
    bool open;                    /* breaker */
    bool probing;
    uint64_t retry_at, backoff, down_since;
    long logstamp;
    sg_clock_fn clock;            /* NULL: redis TIME (the script reads it) */
    void *clock_ctx;
    uint64_t evict_next;          /* mono ms of the next INFO check; 0 = at once */
    long long evicted;            /* evicted_keys at the last check, -1 = unknown */
    bool evict_checking;
    bool policy_warned;
    /* the flood summary not yet written (guarded by mu) */
    struct flood_agg {
        uint64_t hour, messages, fresh;
        struct sg_topk top[3];    /* identities, client IPs, mailers */
    } agg;
    uint64_t agg_next;            /* mono ms of the next write */
};

struct conn {
    redisContext *c;
    unsigned gen;
    bool reused;
};

/* --- small helpers -------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return tv;
}

static void hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha1_hex(char out[41], const void *data, size_t len)
{
    unsigned char md[SHA_DIGEST_LENGTH];

    SHA1(data, len, md);
    hex(out, md, sizeof(md));
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
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
static size_t utf8_clean(char *dst, size_t dstsize, const char *src, size_t srclen)
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

/* --- argument vectors: strings kept in an arena of stable blocks -------- */

struct ablock {
    struct ablock *next;
    size_t used, cap;
    char data[];
};

struct args {
    struct ablock *blocks;
    const char **v;
    size_t *len;
    size_t n, cap;
    bool oom;
};

static void args_free(struct args *a)
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

static char *args_alloc(struct args *a, size_t n)
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
static void args_add(struct args *a, const char *s, size_t len)
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

static void args_addz(struct args *a, const char *s)
{
    args_add(a, s, s ? strlen(s) : 0);
}

__attribute__((format(printf, 2, 3)))
static void args_fmt(struct args *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || (p = args_alloc(a, (size_t)n + 1)) == NULL) {
        a->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    args_add(a, p, (size_t)n);
}

static void args_u64(struct args *a, uint64_t v)
{
    args_fmt(a, "%" PRIu64, v);
}

/* A cleaned-up copy of an outside string (evidence). */
static void args_clean(struct args *a, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    char *p;

    if (n > max)
        n = max;
    p = args_alloc(a, n + 1);
    if (p == NULL)
        return;
    args_add(a, p, utf8_clean(p, n + 1, s ? s : "", s ? strlen(s) : 0));
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

/* Indices in an argument vector of what the "recent" record holds. */
struct recent_at {
    size_t qid, ip, identity, mailer, msgid, relay;
};

/* The members of sg_decide.lua's "recent" record but t, action and charged
 * (the script adds those), from the arguments already added: the names and
 * values the script used to cjson.encode itself, as JSON text made here,
 * which costs Redis nothing. Appended as the script's last argument. */
static void args_recent(struct args *a, const struct recent_at *at, uint64_t rcpts,
                        uint64_t size)
{
    size_t cap = 256, o = 0;
    char *p;

    if (a->oom)
        return;
    cap += 2 * (a->len[at->qid] + a->len[at->ip] + a->len[at->identity] +
                a->len[at->mailer] + a->len[at->msgid] + a->len[at->relay]);
    if ((p = args_alloc(a, cap)) == NULL)
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
    args_add(a, p, o);
}

/* Key "P{H}:" + suffix (+ name + ":" + window when name is given). */
static void args_key(struct args *a, const struct sg_store_redis *r, const char *tag,
                     const char *suffix, const char *name, uint64_t window_ms)
{
    size_t pl = strlen(r->prefix), sl = strlen(suffix), nl = name ? strlen(name) : 0;
    size_t cap = pl + 44 + sl + nl + 24;
    char *p = args_alloc(a, cap);
    size_t o;

    if (p == NULL)
        return;
    o = (size_t)snprintf(p, cap, "%s{%s}:%s", r->prefix, tag, suffix);
    if (name != NULL) {
        memcpy(p + o, name, nl);  /* any byte but NUL: not through printf */
        o += nl;
        o += (size_t)snprintf(p + o, cap - o, ":%" PRIu64, window_ms);
    }
    args_add(a, p, o);
}

static void account_tag(char tag[41], const char *account)
{
    sha1_hex(tag, account, strlen(account));
}

/* --- circuit breaker ------------------------------------------------------ */

static enum gate breaker_enter(struct sg_store_redis *r)
{
    enum gate g = GATE_PASS;

    pthread_mutex_lock(&r->mu);
    if (r->open) {
        if (!r->probing && mono_ms() >= r->retry_at) {
            r->probing = true;
            g = GATE_PROBE;
        } else {
            g = GATE_DENY;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return g;
}

static void breaker_done(struct sg_store_redis *r, enum gate g, bool ok, const char *why)
{
    uint64_t now = mono_ms();
    char esc[256];

    pthread_mutex_lock(&r->mu);
    if (g == GATE_PROBE)
        r->probing = false;
    if (ok) {
        if (r->open)
            sg_log(LOG_NOTICE, "store=redis event=up down_ms=%" PRIu64, now - r->down_since);
        r->open = false;
        r->backoff = BREAKER_MIN_MS;
    } else {
        if (!r->open) {
            r->open = true;
            r->down_since = now;
            r->backoff = BREAKER_MIN_MS;
            if (sg_log_ratelimit(&r->logstamp, 60))
                sg_log(LOG_WARNING, "store=redis event=down error=\"%s\"",
                       sg_log_esc(esc, sizeof(esc), why));
        } else if (g == GATE_PROBE) {
            r->backoff = r->backoff * 2 > BREAKER_MAX_MS ? BREAKER_MAX_MS : r->backoff * 2;
        }
        r->retry_at = now + r->backoff;
    }
    pthread_mutex_unlock(&r->mu);
}

/* --- connections ---------------------------------------------------------- */

/* Send one command, read its reply. NULL with *rc set on transport error. */
static redisReply *command(redisContext *c, int argc, const char **argv,
                           const size_t *lens, enum job_rc *rc)
{
    void *rep = NULL;
    int done = 0, e;

    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
        *rc = J_IO;
        return NULL;
    }
    do {
        if (redisBufferWrite(c, &done) == REDIS_ERR) {
            *rc = J_IO_RETRY;     /* not (fully) sent: Redis ran nothing */
            return NULL;
        }
    } while (!done);
    errno = 0;
    if (redisGetReply(c, &rep) != REDIS_OK || rep == NULL) {
        e = errno;
        /* closed or reset before any reply: the server went away without
         * running the command (an idle pooled context to a restarted
         * server); a timeout may have run it, so no retry then. */
        *rc = (c->err == REDIS_ERR_EOF || (c->err == REDIS_ERR_IO && e == ECONNRESET))
              ? J_IO_RETRY : J_IO;
        return NULL;
    }
    return rep;
}

static redisReply *commandv(redisContext *c, enum job_rc *rc, int argc, ...)
{
    const char *argv[8];
    size_t lens[8];
    va_list ap;

    va_start(ap, argc);
    for (int i = 0; i < argc && i < 8; i++) {
        argv[i] = va_arg(ap, const char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    return command(c, argc, argv, lens, rc);
}

/* Classify an error reply. */
static enum job_rc reply_error(const redisReply *rep)
{
    if (strncmp(rep->str, "READONLY", 8) == 0 || strstr(rep->str, " READONLY ") != NULL ||
        strncmp(rep->str, "MASTERDOWN", 10) == 0)
        return J_MOVED;
    if (strncmp(rep->str, "LOADING", 7) == 0 || strncmp(rep->str, "BUSY", 4) == 0)
        return J_IO;
    return J_ERR;
}

static redisContext *dial(struct sg_store_redis *r, const char *host, int port,
                          bool use_unix, char *err, size_t errlen)
{
    redisContext *c;

    if (use_unix)
        c = redisConnectUnixWithTimeout(r->unix_path, ms_tv(r->connect_ms));
    else
        c = redisConnectWithTimeout(host, port, ms_tv(r->connect_ms));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(err, errlen, "connect %s:%d: %s", use_unix ? r->unix_path : host,
                 use_unix ? 0 : port, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, ms_tv(r->command_ms)) != REDIS_OK) {
        snprintf(err, errlen, "set timeout: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (!use_unix)
        redisEnableKeepAlive(c);
    return c;
}

/* Ask the sentinels, in turn, where the master is. */
static int sentinel_ask(struct sg_store_redis *r, char *host, size_t hostlen, int *port,
                        char *err, size_t errlen)
{
    size_t start;

    pthread_mutex_lock(&r->mu);
    start = r->snext;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < r->nsent; i++) {
        size_t s = (start + i) % r->nsent;
        redisContext *c = dial(r, r->sent_host[s], r->sent_port[s], false, err, errlen);
        enum job_rc rc;
        redisReply *rep;

        if (c == NULL)
            continue;
        rep = commandv(c, &rc, 3, "SENTINEL", "get-master-addr-by-name", r->master_name);
        if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            rep->element[1]->type == REDIS_REPLY_STRING) {
            snprintf(host, hostlen, "%s", rep->element[0]->str);
            *port = atoi(rep->element[1]->str);
            freeReplyObject(rep);
            redisFree(c);
            pthread_mutex_lock(&r->mu);
            r->snext = s;
            pthread_mutex_unlock(&r->mu);
            return 0;
        }
        snprintf(err, errlen, "sentinel %s:%d: %s", r->sent_host[s], r->sent_port[s],
                 rep == NULL ? c->errstr :
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "master unknown");
        if (rep != NULL)
            freeReplyObject(rep);
        redisFree(c);
    }
    return -1;
}

/* A new, authenticated context on the right server and database. */
static redisContext *connect_new(struct sg_store_redis *r, unsigned *gen, char *err,
                                 size_t errlen)
{
    char host[256];
    int port;
    bool known;
    redisContext *c;
    redisReply *rep = NULL;
    enum job_rc rc;
    char db[16];

    pthread_mutex_lock(&r->mu);
    *gen = r->gen;
    known = r->mknown;
    snprintf(host, sizeof(host), "%s", r->mhost);
    port = r->mport;
    pthread_mutex_unlock(&r->mu);

    if (r->master_name != NULL) {
        if (!known) {
            if (sentinel_ask(r, host, sizeof(host), &port, err, errlen) < 0)
                return NULL;
            pthread_mutex_lock(&r->mu);
            if (r->gen == *gen) {
                snprintf(r->mhost, sizeof(r->mhost), "%s", host);
                r->mport = port;
                r->mknown = true;
            }
            pthread_mutex_unlock(&r->mu);
        }
        c = dial(r, host, port, false, err, errlen);
    } else {
        c = dial(r, r->host, r->port, r->unix_path != NULL, err, errlen);
    }
    if (c == NULL)
        goto forget;
    if (r->password != NULL) {
        if (r->username != NULL)
            rep = commandv(c, &rc, 3, "AUTH", r->username, r->password);
        else
            rep = commandv(c, &rc, 2, "AUTH", r->password);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            /* the reply names no secret; still, keep only its first word */
            snprintf(err, errlen, "auth: %.40s", rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    if (r->db != 0) {
        snprintf(db, sizeof(db), "%d", r->db);
        rep = commandv(c, &rc, 2, "SELECT", db);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "select %d: %s", r->db, rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    if (r->master_name != NULL) {
        /* the sentinels may lag behind a failover: check */
        rep = commandv(c, &rc, 1, "ROLE");
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            strcmp(rep->element[0]->str, "master") != 0) {
            snprintf(err, errlen, "%.200s:%d is not the master", host, port);
            goto fail;
        }
        freeReplyObject(rep);
    }
    return c;
fail:
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
forget:
    /* sentinel mode: whatever went wrong, ask the sentinels next time */
    pthread_mutex_lock(&r->mu);
    if (r->master_name != NULL && r->gen == *gen) {
        r->gen++;
        r->mknown = false;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Sentinel mode: ask the sentinels again about once a second. A manual
 * failover leaves the old master writable for seconds; without this the
 * pool would keep writing there until it is demoted and drops clients. */
#define SENTINEL_RECHECK_MS 1000

static void sentinel_recheck(struct sg_store_redis *r)
{
    uint64_t now = mono_ms();
    char host[256], err[256];
    int port;
    bool moved = false;

    pthread_mutex_lock(&r->mu);
    if (r->master_name == NULL || !r->mknown || r->mchecking ||
        now - r->mchecked < SENTINEL_RECHECK_MS) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->mchecking = true;
    r->mchecked = now;
    pthread_mutex_unlock(&r->mu);
    if (sentinel_ask(r, host, sizeof(host), &port, err, sizeof(err)) == 0) {
        pthread_mutex_lock(&r->mu);
        if (r->mknown && (strcmp(host, r->mhost) != 0 || port != r->mport)) {
            snprintf(r->mhost, sizeof(r->mhost), "%s", host);
            r->mport = port;
            r->gen++;             /* pooled contexts to the old master are dropped */
            moved = true;
        }
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&r->mu);
    r->mchecking = false;
    pthread_mutex_unlock(&r->mu);
    if (moved)
        sg_log(LOG_NOTICE, "redis: sentinel master %s moved to %s:%d", r->master_name, host, port);
}

/* How long a decision waits for a pooled connection. Not the command
 * timeout: on a saturated relay a thread holding a connection can wait
 * that long just to be scheduled again (100 SMTP sessions on 2 CPUs: over
 * 200 ms), and that is queueing, not a Redis failure. A Redis that stops
 * answering frees the connections within the command timeout anyway. */
#define POOL_WAIT_MS 5000

/* A context: an idle one, else a new one while fewer than pool_max are out,
 * else wait for one to come back (at most POOL_WAIT_MS: then the store
 * counts as failing for this message). Never more than pool_max
 * connections: a burst of decisions queues here instead of opening (and
 * closing) a connection each. */
static int conn_get(struct sg_store_redis *r, struct conn *cn, char *err, size_t errlen)
{
    redisContext *stale[16];
    size_t nstale = 0;
    struct timespec until;
    bool waited = false;

    sentinel_recheck(r);

    cn->c = NULL;
    cn->gen = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->nidle > 0 && cn->c == NULL) {
            r->nidle--;
            if (r->idle_gen[r->nidle] == r->gen) {
                cn->c = r->idle[r->nidle];
                cn->gen = r->gen;
            } else if (nstale < 16) {
                stale[nstale++] = r->idle[r->nidle];
            } else {
                redisFree(r->idle[r->nidle]);
            }
        }
        if (cn->c != NULL || r->nbusy < r->pool_max)
            break;
        if (!waited) {
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += POOL_WAIT_MS / 1000;
            until.tv_nsec += (long)(POOL_WAIT_MS % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            waited = true;
        }
        if (pthread_cond_timedwait(&r->freed, &r->mu, &until) != 0) {
            pthread_mutex_unlock(&r->mu);
            while (nstale > 0)
                redisFree(stale[--nstale]);
            snprintf(err, errlen, "all %zu connections busy for %d ms", r->pool_max, POOL_WAIT_MS);
            return -1;
        }
    }
    r->nbusy++;
    pthread_mutex_unlock(&r->mu);
    while (nstale > 0)
        redisFree(stale[--nstale]);
    if (cn->c != NULL) {
        cn->reused = true;
        return 0;
    }
    cn->reused = false;
    cn->c = connect_new(r, &cn->gen, err, errlen);
    if (cn->c == NULL) {
        pthread_mutex_lock(&r->mu);
        r->nbusy--;
        pthread_cond_signal(&r->freed);
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    return 0;
}

static void conn_put(struct sg_store_redis *r, struct conn *cn)
{
    pthread_mutex_lock(&r->mu);
    r->nbusy--;
    if (cn->gen == r->gen && r->nidle < r->pool_max) {
        r->idle[r->nidle] = cn->c;
        r->idle_gen[r->nidle] = cn->gen;
        r->nidle++;
        cn->c = NULL;
    }
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->mu);
    if (cn->c != NULL)
        redisFree(cn->c);
    cn->c = NULL;
}

/* Drop a failed context, and with it every idle one of its generation;
 * in sentinel mode the master is asked again. */
static void conn_drop(struct sg_store_redis *r, struct conn *cn)
{
    pthread_mutex_lock(&r->mu);
    r->nbusy--;
    if (cn->gen == r->gen) {
        r->gen++;
        r->mknown = false;
    }
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->mu);
    redisFree(cn->c);
    cn->c = NULL;
}

typedef enum job_rc (*job_fn)(struct sg_store_redis *r, redisContext *c, void *arg,
                              char *err, size_t errlen);

/* Run a job through the breaker on a pooled context: once, and once more
 * on a fresh context when the first failed in a way that is safe to
 * repeat (nothing ran: a dead pooled context, or a replica's READONLY). */
static int run(struct sg_store_redis *r, job_fn fn, void *arg)
{
    enum gate g = breaker_enter(r);
    char err[256] = "";
    struct conn cn;

    if (g == GATE_DENY)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        enum job_rc rc;

        if (conn_get(r, &cn, err, sizeof(err)) < 0)
            break;
        rc = fn(r, cn.c, arg, err, sizeof(err));
        if (rc == J_OK || rc == J_ERR) {
            conn_put(r, &cn);
            breaker_done(r, g, true, NULL);
            return rc == J_OK ? 0 : -1;
        }
        if (err[0] == '\0')
            snprintf(err, sizeof(err), "%s", cn.c->err ? cn.c->errstr : "transport error");
        conn_drop(r, &cn);
        if (!(rc == J_MOVED || (rc == J_IO_RETRY && cn.reused)))
            break;
    }
    breaker_done(r, g, false, err);
    return -1;
}

/* EVALSHA, loading the script on NOSCRIPT. */
static redisReply *eval(struct sg_store_redis *r, redisContext *c, struct args *a,
                        enum job_rc *rc, char *err, size_t errlen)
{
    redisReply *rep = command(c, (int)a->n, a->v, a->len, rc);

    if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        const char *lv[3] = { "SCRIPT", "LOAD", sg_decide_lua };
        size_t ll[3] = { 6, 4, strlen(sg_decide_lua) };

        freeReplyObject(rep);
        rep = command(c, 3, lv, ll, rc);
        if (rep == NULL)
            return NULL;
        if (rep->type == REDIS_REPLY_ERROR) {
            *rc = reply_error(rep);
            snprintf(err, errlen, "script load: %s", rep->str);
            freeReplyObject(rep);
            return NULL;
        }
        freeReplyObject(rep);
        rep = command(c, (int)a->n, a->v, a->len, rc);
    }
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        *rc = reply_error(rep);
        snprintf(err, errlen, "%s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

static void args_eval_head(struct args *a, const struct sg_store_redis *r, size_t nkeys)
{
    args_addz(a, "EVALSHA");
    args_add(a, r->sha, 40);
    args_u64(a, nkeys);
}

/* The script's "now": the store's clock when one was given, else "" (the
 * script reads redis TIME, one clock for every relay). */
static void args_now(struct args *a, const struct sg_store_redis *r)
{
    if (r->clock != NULL)
        args_fmt(a, "%" PRIu64, r->clock(r->clock_ctx));
    else
        args_add(a, "", 0);
}

/* --- open / close --------------------------------------------------------- */

static int parse_hostport(const char *s, char **host, int *port)
{
    const char *colon, *h = s;
    size_t hl;
    char *end;
    long p;

    if (s[0] == '[') {            /* [v6]:port */
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (hl == 0 || *end != '\0' || errno || p < 1 || p > 65535)
        return -1;
    *host = strndup(h, hl);
    *port = (int)p;
    return *host ? 0 : -1;
}

struct sg_store_redis *sg_store_redis_open(const struct sg_redis_settings *rs,
                                           sg_clock_fn clock, void *clock_ctx,
                                           char *err, size_t errlen)
{
    struct sg_store_redis *r = calloc(1, sizeof(*r));
    const char *prefix = rs->prefix ? rs->prefix : "sg:";

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->freed, NULL);
    r->clock = clock;
    r->clock_ctx = clock_ctx;
    r->evicted = -1;
    r->backoff = BREAKER_MIN_MS;
    if (strchr(prefix, '{') != NULL || strchr(prefix, '}') != NULL) {
        snprintf(err, errlen, "store.redis.prefix: must not contain '{' or '}'");
        goto fail;
    }
    if (rs->sentinel_master != NULL && rs->nsentinels == 0) {
        snprintf(err, errlen, "store.redis.sentinel: master set but no sentinels");
        goto fail;
    }
    if (rs->port < 0 || rs->port > 65535 || rs->db < 0) {
        snprintf(err, errlen, "store.redis: bad port or db");
        goto fail;
    }
    r->host = strdup(rs->host ? rs->host : "127.0.0.1");
    r->port = rs->port ? rs->port : 6379;
    r->unix_path = xstrdup(rs->unix_path);
    r->username = xstrdup(rs->username);
    r->password = xstrdup(rs->password);
    r->prefix = strdup(prefix);
    r->master_name = xstrdup(rs->sentinel_master);
    r->db = rs->db;
    r->connect_ms = rs->connect_timeout_ms > 0 ? rs->connect_timeout_ms : 200;
    r->command_ms = rs->command_timeout_ms > 0 ? rs->command_timeout_ms : 200;
    r->pool_max = rs->pool_size > 0 ? (size_t)rs->pool_size : 8;
    r->idle = calloc(r->pool_max, sizeof(*r->idle));
    r->idle_gen = calloc(r->pool_max, sizeof(*r->idle_gen));
    if (r->host == NULL || r->prefix == NULL || r->idle == NULL || r->idle_gen == NULL ||
        (rs->unix_path && !r->unix_path) || (rs->username && !r->username) ||
        (rs->password && !r->password) || (rs->sentinel_master && !r->master_name)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (rs->sentinel_master != NULL) {
        r->sent_host = calloc(rs->nsentinels, sizeof(*r->sent_host));
        r->sent_port = calloc(rs->nsentinels, sizeof(*r->sent_port));
        if (r->sent_host == NULL || r->sent_port == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < rs->nsentinels; i++) {
            if (parse_hostport(rs->sentinels[i], &r->sent_host[i], &r->sent_port[i]) < 0) {
                snprintf(err, errlen, "store.redis.sentinel: bad address \"%s\" (host:port)",
                         rs->sentinels[i]);
                r->nsent = i;
                goto fail;
            }
        }
        r->nsent = rs->nsentinels;
    }
    sha1_hex(r->sha, sg_decide_lua, strlen(sg_decide_lua));
    return r;
fail:
    sg_store_redis_close(r);
    return NULL;
}

static void flood_flush(struct sg_store_redis *r, bool force);

void sg_store_redis_close(struct sg_store_redis *r)
{
    if (r == NULL)
        return;
    flood_flush(r, true);
    for (size_t i = 0; i < r->nidle; i++)
        redisFree(r->idle[i]);
    for (size_t i = 0; i < r->nsent; i++)
        free(r->sent_host[i]);
    free(r->sent_host);
    free(r->sent_port);
    free(r->idle);
    free(r->idle_gen);
    free(r->host);
    free(r->unix_path);
    free(r->username);
    if (r->password != NULL) {
        explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->prefix);
    free(r->master_name);
    pthread_cond_destroy(&r->freed);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* --- decide ---------------------------------------------------------------- */

struct decide_job {
    struct args a;
    bool implicit;
    size_t nlimits;
    struct sg_store_result *out;
};

static uint64_t rep_u64(const redisReply *e)
{
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer > 0 ? (uint64_t)e->integer : 0;
    if (e->type == REDIS_REPLY_STRING)
        return strtoull(e->str, NULL, 10);
    return 0;
}

static enum job_rc decide_job(struct sg_store_redis *r, redisContext *c, void *arg,
                              char *err, size_t errlen)
{
    struct decide_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = eval(r, c, &j->a, &rc, err, errlen);
    struct sg_store_result *out = j->out;

    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 8) {
        snprintf(err, errlen, "decide: unexpected reply");
        freeReplyObject(rep);
        return J_ERR;
    }
    out->status = rep_u64(rep->element[0]) ? SG_STORE_OVER : SG_STORE_OK;
    out->limit = (size_t)rep_u64(rep->element[1]);
    out->unit = (enum sg_unit)rep_u64(rep->element[2]);
    out->used = rep_u64(rep->element[3]);
    out->cap = rep_u64(rep->element[4]);
    out->retry_after_ms = rep_u64(rep->element[5]);
    out->warn_mask = (uint32_t)rep_u64(rep->element[6]);
    out->lockdown = rep_u64(rep->element[7]) != 0;
    out->new_identity = j->implicit && rep->elements >= 10 && rep_u64(rep->element[9]) != 0;
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

static uint64_t wall_ms(const struct sg_store_redis *r)
{
    return r->clock != NULL ? r->clock(r->clock_ctx) : sg_clock_realtime_ms(NULL);
}

static void flood_count(struct sg_store_redis *r, const char *identity, const char *ip,
                        const char *mailer, bool fresh);

static int decide_implicit(struct sg_store_redis *r, const char *account,
                           const struct sg_limit *limits, size_t nlimits,
                           const struct sg_charge *charge, const struct sg_evidence *ev,
                           bool charge_refused, struct sg_store_result *out)
{
    struct decide_job j = { .nlimits = nlimits, .out = out, .implicit = true };
    struct args *a = &j.a;
    char tag[41], tags[SG_STORE_MAX_LIMITS][LIMIT_TAG_LEN + 1];
    int rc;

    account_tag(tag, account);
    limit_tags(limits, nlimits, tags);
    args_eval_head(a, r, 2);
    args_key(a, r, tag, "state", NULL, 0);
    args_key(a, r, tag, "i", NULL, 0);
    args_addz(a, "implicit");
    args_now(a, r);
    args_addz(a, charge_refused ? "1" : "0");
    args_u64(a, charge->units[SG_UNIT_MESSAGES]);
    args_u64(a, charge->units[SG_UNIT_RECIPIENTS]);
    args_u64(a, charge->units[SG_UNIT_BYTES]);
    args_u64(a, nlimits);
    args_u64(a, charge->rcpt_hashes ? charge->nrcpt_hashes : 0);
    for (size_t i = 0; i < nlimits; i++) {
        const struct sg_limit *l = &limits[i];
        double warn_at = l->warn_at > 0 && l->warn_at <= 1 ? l->warn_at : 1.0;

        args_addz(a, tags[i]);
        args_u64(a, l->window_ms ? l->window_ms : 1);
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            args_u64(a, l->cap[u]);
        args_fmt(a, "%.6f", warn_at);
    }
    for (size_t i = 0; charge->rcpt_hashes && i < charge->nrcpt_hashes; i++)
        args_fmt(a, "%016" PRIx64, charge->rcpt_hashes[i]);

    if (a->oom) {
        args_free(a);
        return -1;
    }
    rc = run(r, decide_job, &j);
    args_free(a);
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        out->status = SG_STORE_ERROR;
        return rc;
    }
    flood_count(r, ev->identity ? ev->identity : account, ev->client_ip, ev->mailer,
                out->new_identity);
    return rc;
}

static void evict_check(struct sg_store_redis *r);

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
    evict_check(r);
    if (charge->implicit)
        return decide_implicit(r, account, limits, nlimits, charge, ev, charge_refused, out);
    account_tag(tag, account);

    args_eval_head(a, r, DECIDE_FIXED_KEYS + 3 * nlimits);
    for (size_t i = 0; i < DECIDE_FIXED_KEYS; i++)
        args_key(a, r, tag, fixed[i], NULL, 0);
    for (size_t i = 0; i < nlimits; i++) {
        const char *name = limits[i].name ? limits[i].name : "";
        args_key(a, r, tag, "w:", name, limits[i].window_ms);
        args_key(a, r, tag, "d:", name, limits[i].window_ms);
        args_key(a, r, tag, "warn:", name, limits[i].window_ms);
    }
    args_addz(a, "decide");
    args_now(a, r);
    args_addz(a, charge_refused ? "1" : "0");
    args_addz(a, account);
    args_u64(a, EV_TTL_MS);
    args_u64(a, RECENT_LEN);
    args_u64(a, EV_MAX_FIELDS);
    at.qid = a->n;
    args_clean(a, ev->qid, 64);
    at.ip = a->n;
    args_clean(a, ev->client_ip, 64);
    at.identity = a->n;
    args_clean(a, ev->identity, EV_STR_MAX);
    at.mailer = a->n;
    args_clean(a, ev->mailer, EV_STR_MAX);
    at.msgid = a->n;
    args_clean(a, ev->msgid, EV_STR_MAX);
    args_clean(a, ev->from_header_domain, EV_STR_MAX);
    args_addz(a, ev->from_mismatch ? "1" : "0");
    at.relay = a->n;
    args_clean(a, ev->relay, EV_STR_MAX);
    args_u64(a, charge->units[SG_UNIT_MESSAGES]);
    args_u64(a, charge->units[SG_UNIT_RECIPIENTS]);
    args_u64(a, charge->units[SG_UNIT_BYTES]);
    args_u64(a, nlimits);
    args_u64(a, charge->rcpt_hashes ? charge->nrcpt_hashes : 0);
    args_u64(a, ev->rcpt_domains ? ev->nrcpt_domains : 0);
    for (size_t i = 0; i < nlimits; i++) {
        const struct sg_limit *l = &limits[i];
        double warn_at = l->warn_at > 0 && l->warn_at <= 1 ? l->warn_at : 1.0;

        args_u64(a, l->window_ms ? l->window_ms : 1);
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            args_u64(a, l->cap[u]);
        args_fmt(a, "%.6f", warn_at);
    }
    for (size_t i = 0; charge->rcpt_hashes && i < charge->nrcpt_hashes; i++)
        args_fmt(a, "%016" PRIx64, charge->rcpt_hashes[i]);
    for (size_t i = 0; ev->rcpt_domains && i < ev->nrcpt_domains; i++)
        args_clean(a, ev->rcpt_domains[i], 255);
    args_recent(a, &at, charge->units[SG_UNIT_RECIPIENTS], charge->units[SG_UNIT_BYTES]);

    if (a->oom) {
        args_free(a);
        return -1;
    }
    rc = run(r, decide_job, &j);
    args_free(a);
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
    redisReply *rep = eval(r, c, &j->a, &rc, err, errlen);

    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4 * j->nlimits) {
        snprintf(err, errlen, "usage: unexpected reply");
        freeReplyObject(rep);
        return J_ERR;
    }
    for (size_t i = 0; i < j->nlimits; i++)
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            j->usage[i].used[u] = rep_u64(rep->element[4 * i + (size_t)u]);
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
    account_tag(tag, account);
    args_eval_head(&j.a, r, 2 * nlimits);
    for (size_t i = 0; i < nlimits; i++) {
        const char *name = limits[i].name ? limits[i].name : "";
        args_key(&j.a, r, tag, "w:", name, limits[i].window_ms);
        args_key(&j.a, r, tag, "d:", name, limits[i].window_ms);
    }
    args_addz(&j.a, "usage");
    args_now(&j.a, r);
    args_u64(&j.a, nlimits);
    for (size_t i = 0; i < nlimits; i++)
        args_u64(&j.a, limits[i].window_ms ? limits[i].window_ms : 1);
    if (j.a.oom) {
        args_free(&j.a);
        return -1;
    }
    rc = run(r, usage_job, &j);
    args_free(&j.a);
    if (rc < 0)
        return rc;
    {
        /* the same account may have been implicit: its one hash too */
        struct sg_usage iu[SG_STORE_MAX_LIMITS];
        struct usage_job k = { .nlimits = nlimits, .usage = iu };
        char tags[SG_STORE_MAX_LIMITS][LIMIT_TAG_LEN + 1];

        memset(iu, 0, sizeof(iu));
        limit_tags(limits, nlimits, tags);
        args_eval_head(&k.a, r, 1);
        args_key(&k.a, r, tag, "i", NULL, 0);
        args_addz(&k.a, "iusage");
        args_now(&k.a, r);
        args_u64(&k.a, nlimits);
        for (size_t i = 0; i < nlimits; i++) {
            args_addz(&k.a, tags[i]);
            args_u64(&k.a, limits[i].window_ms ? limits[i].window_ms : 1);
        }
        if (k.a.oom) {
            args_free(&k.a);
            return -1;
        }
        rc = run(r, usage_job, &k);
        args_free(&k.a);
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
        redisReply *rep = commandv(c, &rc, 6, "SCAN", cursor, "MATCH", j->pattern,
                                   "COUNT", "1000");
        struct args del = { 0 };

        if (rep == NULL)
            return rc;
        if (rep->type == REDIS_REPLY_ERROR || rep->type != REDIS_REPLY_ARRAY ||
            rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            snprintf(err, errlen, "scan: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
            rc = rep->type == REDIS_REPLY_ERROR ? reply_error(rep) : J_ERR;
            freeReplyObject(rep);
            return rc;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        args_addz(&del, "UNLINK");
        for (size_t i = 0; i < rep->element[1]->elements; i++) {
            const redisReply *k = rep->element[1]->element[i];
            if (k->type == REDIS_REPLY_STRING && k->len > j->keep &&
                counter_key(k->str + j->keep))
                args_add(&del, k->str, k->len);
        }
        if (del.oom) {
            args_free(&del);
            freeReplyObject(rep);
            return J_ERR;
        }
        if (del.n > 1) {
            redisReply *d = command(c, (int)del.n, del.v, del.len, &rc);
            if (d == NULL) {
                args_free(&del);
                freeReplyObject(rep);
                return rc == J_IO_RETRY ? J_IO : rc;  /* earlier UNLINKs ran */
            }
            if (d->type == REDIS_REPLY_ERROR) {
                snprintf(err, errlen, "unlink: %s", d->str);
                rc = reply_error(d);
                freeReplyObject(d);
                args_free(&del);
                freeReplyObject(rep);
                return rc;
            }
            freeReplyObject(d);
        }
        args_free(&del);
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
    account_tag(tag, account);
    /* the prefix, glob characters escaped, then the tag */
    for (const char *p = r->prefix; *p != '\0' && o < sizeof(j.pattern) - 50; p++) {
        if (strchr("*?[]\\", *p) != NULL)
            j.pattern[o++] = '\\';
        j.pattern[o++] = *p;
    }
    snprintf(j.pattern + o, sizeof(j.pattern) - o, "{%s}:*", tag);
    j.keep = strlen(r->prefix) + 43;
    return run(r, reset_job, &j);
}

/* --- account state --------------------------------------------------------- */

struct state_job {
    struct args a;                /* state_set: the HSET */
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
    redisReply *rep = commandv(c, &rc, 2, "HGETALL", j->key);

    (void)r;
    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "hgetall: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        rc = rep->type == REDIS_REPLY_ERROR ? reply_error(rep) : J_ERR;
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
    account_tag(tag, account);
    snprintf(j.key, sizeof(j.key), "%s{%s}:state", r->prefix, tag);
    return run(r, state_get_job, &j);
}

/* The state's fields as HSET pairs (without "version"). */
static void args_state(struct args *a, const char *account, const struct sg_account_state *in)
{
    args_addz(a, "blocked");
    args_addz(a, in->blocked ? "1" : "0");
    args_addz(a, "ticket");
    args_fmt(a, "%" PRId64, in->ticket);
    args_addz(a, "since_ms");
    args_fmt(a, "%" PRId64, in->since_ms);
    args_addz(a, "checked_ms");
    args_fmt(a, "%" PRId64, in->checked_ms);
    args_addz(a, "state");
    args_add(a, in->state, strnlen(in->state, sizeof(in->state)));
    args_addz(a, "phase");
    args_add(a, in->phase, strnlen(in->phase, sizeof(in->phase)));
    args_addz(a, "note");
    args_add(a, in->note, strnlen(in->note, sizeof(in->note)));
    args_addz(a, "account");
    args_addz(a, account);
}

static enum job_rc state_set_job(struct sg_store_redis *r, redisContext *c, void *arg,
                                 char *err, size_t errlen)
{
    struct state_job *j = arg;
    char ttl[32];
    const char *pe[3] = { "PEXPIRE", j->key, ttl };
    size_t pel[3];
    redisReply *rep;
    enum job_rc rc = J_OK;

    (void)r;
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)STATE_TTL_MS);
    pel[0] = 7;
    pel[1] = strlen(j->key);
    pel[2] = strlen(ttl);
    /* MULTI DEL HSET PEXPIRE EXEC, in one pipeline */
    if (redisAppendCommand(c, "MULTI") != REDIS_OK ||
        redisAppendCommand(c, "DEL %s", j->key) != REDIS_OK ||
        redisAppendCommandArgv(c, (int)j->a.n, j->a.v, j->a.len) != REDIS_OK ||
        redisAppendCommandArgv(c, 3, pe, pel) != REDIS_OK)
        return J_IO;
    rep = commandv(c, &rc, 1, "EXEC");
    if (rep == NULL)
        return rc == J_IO_RETRY ? J_IO_RETRY : J_IO;
    freeReplyObject(rep);         /* that was MULTI's +OK */
    rc = J_OK;
    for (int i = 0; i < 4; i++) {
        void *p = NULL;
        if (redisGetReply(c, &p) != REDIS_OK || p == NULL)
            return J_IO;
        rep = p;
        if (rc == J_OK && (rep->type == REDIS_REPLY_ERROR ||
                           (i == 3 && rep->type != REDIS_REPLY_ARRAY))) {
            /* the first error tells why (READONLY on a replica...) */
            snprintf(err, errlen, "state set: %s",
                     rep->type == REDIS_REPLY_ERROR ? rep->str : "transaction failed");
            rc = rep->type == REDIS_REPLY_ERROR ? reply_error(rep) : J_ERR;
        }
        freeReplyObject(rep);
    }
    return rc;
}

int sg_store_redis_state_set(struct sg_store_redis *r, const char *account,
                             const struct sg_account_state *in)
{
    struct state_job j = { 0 };
    char tag[41];
    int rc;

    if (account == NULL || in == NULL)
        return -1;
    account_tag(tag, account);
    snprintf(j.key, sizeof(j.key), "%s{%s}:state", r->prefix, tag);
    args_addz(&j.a, "HSET");
    args_addz(&j.a, j.key);
    args_state(&j.a, account, in);
    if (j.a.oom) {
        args_free(&j.a);
        return -1;
    }
    rc = run(r, state_set_job, &j);
    args_free(&j.a);
    return rc;
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
    redisReply *rep = eval(r, c, &j->a, &rc, err, errlen);

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
    account_tag(tag, account);
    args_eval_head(&j.a, r, 1);
    args_fmt(&j.a, "%s{%s}:state", r->prefix, tag);
    args_addz(&j.a, "state_cas");
    args_add(&j.a, "", 0);
    args_u64(&j.a, expect_version);
    args_u64(&j.a, STATE_TTL_MS);
    args_state(&j.a, account, next);
    if (j.a.oom) {
        args_free(&j.a);
        return -1;
    }
    rc = run(r, state_cas_job, &j);
    args_free(&j.a);
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
    redisReply *rep = eval(r, c, &j->a, &rc, err, errlen);

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
    args_eval_head(&j.a, r, 1);
    args_fmt(&j.a, "%slock:%s", r->prefix, name);
    args_addz(&j.a, "lock");
    args_add(&j.a, "", 0);
    args_addz(&j.a, owner);
    args_u64(&j.a, ttl_ms);
    if (j.a.oom) {
        args_free(&j.a);
        return -1;
    }
    rc = run(r, lock_job, &j);
    args_free(&j.a);
    return rc < 0 ? -1 : j.result;
}

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

    utf8_clean(buf, sizeof(buf), s, n);
    return json_string(buf);
}

static void jset(json_t *obj, const char *k, size_t klen, json_t *v)
{
    char buf[1024];

    utf8_clean(buf, sizeof(buf), k, klen);
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

        utf8_clean(buf, sizeof(buf), f->str, f->len);
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
    account_tag(j.tag, account);
    rc = run(r, evidence_job, &j);
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

/* --- mail held on lockdown, per relay ------------------------------------------ */

#define HELD_TTL_MS (30ULL * 86400000ULL)

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
        rc = reply_error(first);
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

    account_tag(tag, account);
    args_addz(&j.a[0], verb);
    {                             /* "P{H}:held:<relay>" */
        size_t cap = strlen(r->prefix) + 60 + strlen(relay);
        char *k = args_alloc(&j.a[0], cap);
        if (k != NULL)
            args_add(&j.a[0], k, (size_t)snprintf(k, cap, "%s{%s}:held:%s", r->prefix, tag,
                                                   relay));
    }
    for (size_t i = 0; i < n; i++)
        args_clean(&j.a[0], qids[i], 64);
    if (expire) {
        args_addz(&j.a[1], "PEXPIRE");
        args_add(&j.a[1], j.a[0].v[1], j.a[0].len[1]);
        args_u64(&j.a[1], HELD_TTL_MS);
    }
    rc = (j.a[0].oom || j.a[1].oom) ? -1 : run(r, cmd_job, &j);
    if (rc == 0 && out != NULL)
        *out = j.rep;
    else if (j.rep != NULL)
        freeReplyObject(j.rep);
    args_free(&j.a[0]);
    args_free(&j.a[1]);
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

/* --- eviction watch -------------------------------------------------------- */

struct info_job {
    long long evicted, maxmemory, used;
    char policy[64];
};

static long long info_num(const char *info, const char *name)
{
    const char *p = strstr(info, name);

    return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

static enum job_rc info_job(struct sg_store_redis *r, redisContext *c, void *arg,
                            char *err, size_t errlen)
{
    struct info_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = commandv(c, &rc, 1, "INFO");
    const char *p;

    (void)r;
    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "info: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        freeReplyObject(rep);
        return J_ERR;
    }
    j->evicted = info_num(rep->str, "\nevicted_keys:");
    j->maxmemory = info_num(rep->str, "\nmaxmemory:");
    j->used = info_num(rep->str, "\nused_memory:");
    p = strstr(rep->str, "\nmaxmemory_policy:");
    if (p != NULL)
        sscanf(p + 18, "%63[a-z-]", j->policy);
    freeReplyObject(rep);
    return J_OK;
}

/* Once a minute, on the decision path: did Redis evict keys since the last
 * look? Lost window keys undercount (the caps then let more through), lost
 * state forgets a lockdown: worth a warning each time it happens. */
static void evict_check(struct sg_store_redis *r)
{
    struct info_job j = { .evicted = -1 };
    uint64_t now = mono_ms();
    long long before;

    pthread_mutex_lock(&r->mu);
    if (r->evict_checking || r->open || now < r->evict_next) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->evict_checking = true;
    r->evict_next = now + EVICT_CHECK_MS;
    pthread_mutex_unlock(&r->mu);

    if (run(r, info_job, &j) == 0 && j.evicted >= 0) {
        if (j.maxmemory > 0 && strncmp(j.policy, "allkeys-", 8) == 0 && !r->policy_warned) {
            r->policy_warned = true;
            sg_log(LOG_WARNING, "store=redis maxmemory_policy=%s maxmemory=%lld: Redis may "
                   "evict any key, sendguard's counters and account state included; use "
                   "volatile-ttl (or noeviction) with enough maxmemory (README: Redis memory)",
                   j.policy, j.maxmemory);
        }
        pthread_mutex_lock(&r->mu);
        before = r->evicted;
        r->evicted = j.evicted;
        pthread_mutex_unlock(&r->mu);
        if (before >= 0 && j.evicted > before)
            sg_log(LOG_WARNING, "store=redis event=evicted evicted_keys=%lld "
                   "maxmemory_policy=%s used_memory=%lld maxmemory=%lld: Redis evicted keys "
                   "in the last minute, maybe sendguard's (its counters then undercount): "
                   "raise maxmemory (README: Redis memory)",
                   j.evicted - before, j.policy[0] ? j.policy : "?", j.used, j.maxmemory);
    }
    pthread_mutex_lock(&r->mu);
    r->evict_checking = false;
    pthread_mutex_unlock(&r->mu);
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
        run(r, flush_job, j);     /* best effort: a summary, not a counter */
    free(j);
}

/* Write what was counted now (report, close). Called without mu held. */
static void flood_flush(struct sg_store_redis *r, bool force)
{
    struct flush_job *j = NULL;
    uint64_t now = mono_ms();

    pthread_mutex_lock(&r->mu);
    if (force || now >= r->agg_next)
        j = flood_take(r, now);
    pthread_mutex_unlock(&r->mu);
    flood_write(r, j);
}

/* Count one decision of an implicit identity; every FLOOD_FLUSH_MS (and
 * when the hour turns, so that an hour's counts go to that hour) the
 * thread that notices writes the counts. */
static void flood_count(struct sg_store_redis *r, const char *identity, const char *ip,
                        const char *mailer, bool fresh)
{
    uint64_t hour = wall_ms(r) / 3600000u, now = mono_ms();
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
    flood_flush(r, true);
    j->hours = hours < 1 ? 1 : hours > FLOOD_MAX_HOURS ? FLOOD_MAX_HOURS : hours;
    j->hour = wall_ms(r) / 3600000u;
    if (run(r, flood_job, j) < 0)
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

                utf8_clean(buf, sizeof(buf), zr->element[m]->str, zr->element[m]->len);
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
