/*
 * sg_store_redis_int.h - private to the Redis store backend's files: its
 * handle, the key layout, the argument vectors and the connection runner.
 * Nobody outside policy/sg_store_redis*.c includes this.
 *
 * The files, along their seams:
 *   sg_store_redis_conn.c      pool, circuit breaker, Sentinel, open/close,
 *                              running a job on a connection, eviction watch
 *   sg_store_redis_args.c      argument vectors, keys, UTF-8 cleaning
 *   sg_store_redis.c           the script calls: decide, usage, reset,
 *                              state, lock, held queue ids
 *   sg_store_redis_evidence.c  reading back what was recorded: evidence,
 *                              the flood summary of implicit identities
 *   sg_store_redis_glue.c      the store handle's table of functions
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
 *   P{H}:held:<relay>           set: queue ids held on lockdown (30 days)
 *   P{H}:ev:msg, :ev:mid, :ev:t the trace index (issue 18): "relay|qid" ->
 *                               the message's record; Message-ID digest ->
 *                               "relay|qid"; "relay|qid" by time. Written by
 *                               decide, bounded by trace_max, 7 days + 1 h
 *                               (sg_decide.lua, trace_index)
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
 */
#ifndef SG_STORE_REDIS_INT_H
#define SG_STORE_REDIS_INT_H

#include "sg_store_backend.h"
#include "sg_store_redis.h"
#include "sg_topk.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
#define HELD_TTL_MS (30ULL * 86400000ULL)
#define TRACE_KEYS 3              /* ev:msg, ev:mid, ev:t (decide's last keys) */
#define TRACE_TTL_MS (EV_TTL_MS + 3600000ULL)
#define TRACE_DEFAULT_MAX 50000   /* messages indexed per account */
#define TRACE_DIGEST_HEX 20       /* hex digits kept of a Message-ID's SHA-1 */
#define TRACE_MSGID_MAX 250       /* bytes of a Message-ID kept in the record */
#define TRACE_MAILER_MAX 120

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
    uint64_t trace_max;           /* store.redis.trace_max: messages indexed per account */
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

/* Indices in an argument vector of what the "recent" record holds. */
struct recent_at {
    size_t qid, ip, identity, mailer, msgid, relay;
};

typedef enum job_rc (*job_fn)(struct sg_store_redis *r, redisContext *c, void *arg,
                              char *err, size_t errlen);

/* --- sg_store_redis_conn.c --- */
redisReply *sgr_command(redisContext *c, int argc, const char **argv,
                           const size_t *lens, enum job_rc *rc);
redisReply *sgr_commandv(redisContext *c, enum job_rc *rc, int argc, ...);
enum job_rc sgr_reply_error(const redisReply *rep);
int sgr_run(struct sg_store_redis *r, job_fn fn, void *arg);
redisReply *sgr_eval(struct sg_store_redis *r, redisContext *c, struct args *a,
                        enum job_rc *rc, char *err, size_t errlen);
uint64_t sgr_wall_ms(const struct sg_store_redis *r);
void sgr_evict_check(struct sg_store_redis *r);

/* --- sg_store_redis_args.c --- */
void sgr_sha1_hex(char out[41], const void *data, size_t len);
void sgr_args_free(struct args *a);
char *sgr_args_alloc(struct args *a, size_t n);
void sgr_args_add(struct args *a, const char *s, size_t len);
void sgr_args_addz(struct args *a, const char *s);
__attribute__((format(printf, 2, 3)))
void sgr_args_fmt(struct args *a, const char *fmt, ...);
void sgr_args_u64(struct args *a, uint64_t v);
void sgr_args_clean(struct args *a, const char *s, size_t max);
void sgr_args_recent(struct args *a, const struct recent_at *at, uint64_t rcpts,
                        uint64_t size);
void sgr_args_key(struct args *a, const struct sg_store_redis *r, const char *tag,
                     const char *suffix, const char *name, uint64_t window_ms);
void sgr_account_tag(char tag[41], const char *account);
void sgr_args_eval_head(struct args *a, const struct sg_store_redis *r, size_t nkeys);
void sgr_args_now(struct args *a, const struct sg_store_redis *r);
uint64_t sgr_rep_u64(const redisReply *e);
/* The trace index's Message-ID digest: SHA-1 of its content (sg_trace's
 * rule: inside the first <...>, spaces and <> removed), the first
 * TRACE_DIGEST_HEX hex digits; "" for none. */
void sgr_msgid_digest(char out[TRACE_DIGEST_HEX + 1], const char *msgid);
/* decide's trace arguments: trace_max, keep, ttl, digest, the record. */
void sgr_args_trace(struct args *a, const struct sg_store_redis *r, const struct recent_at *at,
                    const char *msgid, uint64_t rcpts, uint64_t size);

/* --- sg_store_redis_evidence.c --- */
void sgr_flood_flush(struct sg_store_redis *r, bool force);
void sgr_flood_count(struct sg_store_redis *r, const char *identity, const char *ip,
                        const char *mailer, bool fresh);

#endif
