/*
 * store_conformance.h - what the two files of the store conformance test
 * share: the store under test, its clock, and the helpers that charge it.
 */
#ifndef STORE_CONFORMANCE_H
#define STORE_CONFORMANCE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "sg_store.h"

extern bool g_redis;              /* the backend under test */
extern sg_store_t *g_st;
extern _Atomic int64_t g_now;     /* the test clock, ms */
extern bool g_implicit;           /* the tests again, as implicit identities */
extern const char *const RELAY;

redisContext *admin(void);        /* to the test's redis-server */
void unique(char *buf, size_t n, const char *what);
void advance(int64_t ms);
struct sg_limit lim(const char *name, uint64_t window_ms, uint64_t msgs, uint64_t rcpts,
                    uint64_t bytes, uint64_t distinct);
struct sg_charge chg(uint64_t rcpts, uint64_t bytes, const uint64_t *hashes, size_t nhashes);
enum sg_store_status decide(const char *acct, const struct sg_limit *l, size_t nl,
                            const struct sg_charge *c, bool charge_refused,
                            struct sg_store_result *res);
void put_state(const char *acct, const struct sg_account_state *s);
sg_store_t *redis_store_bounded(int trace_max);
uint64_t used(const char *acct, const struct sg_limit *l, enum sg_unit u);

/* store_conformance_state.c */
void test_lockdown(void **state);
void test_state_cas(void **state);
void test_state_cas_race(void **state);
void test_held(void **state);
void test_held_on_decide(void **state);
void test_evidence(void **state);
void test_lock(void **state);

/* store_conformance_trace.c */
void test_trace_index(void **state);
void test_trace_trim(void **state);

#endif
