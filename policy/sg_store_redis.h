/*
 * sg_store_redis.h - private: the Redis store backend, wired into the
 * store dispatcher (sg_store.c). Only policy/ and its tests see this.
 *
 * Semantics are those of sg_store.h; what is Redis-specific:
 *  - open() fails only on bad settings; an unreachable Redis makes every
 *    call return -1 (decide: status SG_STORE_ERROR) until it is back.
 *  - every call is thread-safe; each borrows a hiredis context from a
 *    small pool, and a circuit breaker makes calls fail in microseconds
 *    while Redis is down (one probe every 250-500 ms).
 *  - lock(): 1 acquired or renewed (owner already held it), 0 held by
 *    another owner, -1 error. ttl_ms = 0 releases the lock if owner holds
 *    it (1 released or free, 0 held by another).
 *  - evidence_get(): the typed report of sg_store.h, built from the
 *    replies (the store handle makes the JSON one from it).
 * The process should ignore SIGPIPE (libmilter's smfi_main does): hiredis
 * writes with write(2).
 */
#ifndef SG_STORE_REDIS_H
#define SG_STORE_REDIS_H

#include "sg_store.h"

struct sg_store_redis;

/* clock NULL: the script reads redis TIME (the daemon); else every call
 * sends clock(clock_ctx) as the script's "now" (tests). */
struct sg_store_redis *sg_store_redis_open(const struct sg_redis_settings *rs,
                                           sg_clock_fn clock, void *clock_ctx,
                                           char *err, size_t errlen);
void sg_store_redis_close(struct sg_store_redis *r);
int sg_store_redis_decide(struct sg_store_redis *r, const char *account,
                          const struct sg_limit *limits, size_t nlimits,
                          const struct sg_charge *charge,
                          const struct sg_evidence *ev, bool charge_refused,
                          struct sg_store_result *out);
int sg_store_redis_usage(struct sg_store_redis *r, const char *account,
                         const struct sg_limit *limits, size_t nlimits,
                         struct sg_usage *usage);
int sg_store_redis_reset(struct sg_store_redis *r, const char *account);
int sg_store_redis_state_get(struct sg_store_redis *r, const char *account,
                             struct sg_account_state *out);
int sg_store_redis_state_cas(struct sg_store_redis *r, const char *account,
                             uint64_t expect_version, const struct sg_account_state *next,
                             struct sg_account_state *cur);
int sg_store_redis_lock(struct sg_store_redis *r, const char *name,
                        const char *owner, uint64_t ttl_ms);
int sg_store_redis_evidence_get(struct sg_store_redis *r, const char *account,
                                struct sg_evidence_report *out);
int sg_store_redis_flood_json(struct sg_store_redis *r, unsigned hours, char **json_out);
int sg_store_redis_held_add(struct sg_store_redis *r, const char *account, const char *relay,
                            const char *qid);
int sg_store_redis_held_list(struct sg_store_redis *r, const char *account, const char *relay,
                             char ***qids, size_t *n);
int sg_store_redis_held_del(struct sg_store_redis *r, const char *account, const char *relay,
                            const char *const *qids, size_t n);
int sg_store_redis_trace_by_msgid(struct sg_store_redis *r, const char *account,
                                  const char *msgid, struct sg_ev_msg *out);
int sg_store_redis_trace_by_qid(struct sg_store_redis *r, const char *account,
                                const char *relay, const char *qid, struct sg_ev_msg *out);
int sg_store_redis_trace_same_hour(struct sg_store_redis *r, const char *account,
                                   const struct sg_ev_msg *m, struct sg_ev_msg **v, size_t *n);
int sg_store_redis_trace_oldest(struct sg_store_redis *r, const char *account,
                                int64_t *oldest_ms);

#endif
