/*
 * sg_store.c - the store handle: picks a backend and forwards to it.
 *
 * Must not: hold limit logic (that is in each backend, atomically) or
 * talk to the network itself.
 */
#include "sg_store.h"
#include "sg_store_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sg_store {
    const struct sg_store_ops *ops;
    void *be;
};

uint64_t sg_clock_realtime_ms(void *ctx)
{
    struct timespec ts;

    (void)ctx;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static sg_store_t *store_wrap(const struct sg_store_ops *ops, void *be)
{
    sg_store_t *st;

    if (be == NULL)
        return NULL;
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        ops->close(be);
        return NULL;
    }
    st->ops = ops;
    st->be = be;
    return st;
}

sg_store_t *sg_store_memory_new(sg_clock_fn clock, void *clock_ctx)
{
    return store_wrap(&sg_store_memory_ops,
                      sg_store_memory_open(clock ? clock : sg_clock_realtime_ms, clock_ctx));
}

#ifdef SG_HAVE_REDIS
extern const struct sg_store_ops sg_store_redis_ops;
#include "sg_store_redis.h"

sg_store_t *sg_store_redis_new(const struct sg_redis_settings *rs, char *err, size_t errlen)
{
    return store_wrap(&sg_store_redis_ops, sg_store_redis_open(rs, err, errlen));
}
#else
sg_store_t *sg_store_redis_new(const struct sg_redis_settings *rs, char *err, size_t errlen)
{
    (void)rs;
    snprintf(err, errlen, "this build has no Redis backend");
    return NULL;
}
#endif

void sg_store_free(sg_store_t *st)
{
    if (st == NULL)
        return;
    st->ops->close(st->be);
    free(st);
}

const char *sg_store_name(const sg_store_t *st)
{
    return st->ops->name;
}

int sg_store_decide(sg_store_t *st, const char *account,
                    const struct sg_limit *limits, size_t nlimits,
                    const struct sg_charge *charge,
                    const struct sg_evidence *ev, bool charge_refused,
                    struct sg_store_result *out)
{
    memset(out, 0, sizeof(*out));
    if (nlimits > SG_STORE_MAX_LIMITS) {
        out->status = SG_STORE_ERROR;
        return -1;
    }
    return st->ops->decide(st->be, account, limits, nlimits, charge, ev,
                           charge_refused, out);
}

int sg_store_usage(sg_store_t *st, const char *account,
                   const struct sg_limit *limits, size_t nlimits,
                   struct sg_usage *usage)
{
    memset(usage, 0, nlimits * sizeof(*usage));
    return st->ops->usage(st->be, account, limits, nlimits, usage);
}

int sg_store_reset(sg_store_t *st, const char *account)
{
    return st->ops->reset(st->be, account);
}

int sg_store_state_get(sg_store_t *st, const char *account, struct sg_account_state *out)
{
    memset(out, 0, sizeof(*out));
    out->ticket = -1;
    snprintf(out->phase, sizeof(out->phase), "ok");
    return st->ops->state_get(st->be, account, out);
}

int sg_store_state_set(sg_store_t *st, const char *account, const struct sg_account_state *in)
{
    return st->ops->state_set(st->be, account, in);
}
