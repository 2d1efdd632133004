/*
 * sg_store_redis_glue.c - plugs the Redis backend (sg_store_redis*.c) into
 * the store handle's table of functions.
 *
 * Must not: hold any logic: each entry forwards to its typed function.
 */
#include "sg_store_backend.h"
#include "sg_store_redis.h"

#include <stdlib.h>

static int r_decide(void *be, const char *account, const struct sg_limit *limits,
                    size_t nlimits, const struct sg_charge *charge,
                    const struct sg_evidence *ev, bool charge_refused,
                    struct sg_store_result *out)
{
    return sg_store_redis_decide(be, account, limits, nlimits, charge, ev, charge_refused, out);
}

static int r_usage(void *be, const char *account, const struct sg_limit *limits,
                   size_t nlimits, struct sg_usage *usage)
{
    return sg_store_redis_usage(be, account, limits, nlimits, usage);
}

static int r_reset(void *be, const char *account)
{
    return sg_store_redis_reset(be, account);
}

static int r_state_get(void *be, const char *account, struct sg_account_state *out)
{
    return sg_store_redis_state_get(be, account, out);
}

static int r_state_cas(void *be, const char *account, uint64_t expect_version,
                       const struct sg_account_state *next, struct sg_account_state *cur)
{
    return sg_store_redis_state_cas(be, account, expect_version, next, cur);
}

static int r_lock(void *be, const char *name, const char *owner, uint64_t ttl_ms)
{
    return sg_store_redis_lock(be, name, owner, ttl_ms);
}

static int r_evidence_get(void *be, const char *account, struct sg_evidence_report *out)
{
    return sg_store_redis_evidence_get(be, account, out);
}

static int r_held_add(void *be, const char *account, const char *relay, const char *qid)
{
    return sg_store_redis_held_add(be, account, relay, qid);
}

static int r_held_list(void *be, const char *account, const char *relay, char ***qids,
                       size_t *n)
{
    return sg_store_redis_held_list(be, account, relay, qids, n);
}

static int r_held_del(void *be, const char *account, const char *relay,
                      const char *const *qids, size_t n)
{
    return sg_store_redis_held_del(be, account, relay, qids, n);
}

static int r_flood_json(void *be, unsigned hours, char **json_out)
{
    return sg_store_redis_flood_json(be, hours, json_out);
}

static int r_trace_by_msgid(void *be, const char *account, const char *msgid,
                            struct sg_ev_msg *out)
{
    return sg_store_redis_trace_by_msgid(be, account, msgid, out);
}

static int r_trace_by_qid(void *be, const char *account, const char *relay, const char *qid,
                          struct sg_ev_msg *out)
{
    return sg_store_redis_trace_by_qid(be, account, relay, qid, out);
}

static int r_trace_same_hour(void *be, const char *account, const struct sg_ev_msg *m,
                             struct sg_ev_msg **v, size_t *n)
{
    return sg_store_redis_trace_same_hour(be, account, m, v, n);
}

static int r_trace_oldest(void *be, const char *account, int64_t *oldest_ms)
{
    return sg_store_redis_trace_oldest(be, account, oldest_ms);
}

static void r_close(void *be)
{
    sg_store_redis_close(be);
}

const struct sg_store_ops sg_store_redis_ops = {
    .name = "redis",
    .evidence = true,
    .decide = r_decide,
    .usage = r_usage,
    .reset = r_reset,
    .state_get = r_state_get,
    .state_cas = r_state_cas,
    .lock = r_lock,
    .evidence_get = r_evidence_get,
    .held_add = r_held_add,
    .held_list = r_held_list,
    .held_del = r_held_del,
    .flood_json = r_flood_json,
    .trace_by_msgid = r_trace_by_msgid,
    .trace_by_qid = r_trace_by_qid,
    .trace_same_hour = r_trace_same_hour,
    .trace_oldest = r_trace_oldest,
    .close = r_close,
};
