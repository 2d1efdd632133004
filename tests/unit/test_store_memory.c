/*
 * test_store_memory.c - what only the memory store has, with an injected
 * clock: its bound on implicit identities (the overflow account), and a
 * lock lease that runs out on the store's clock. The store contract itself
 * (caps, windows, state, held ids...) is tests/store, on both backends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sg_store.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *ctx) { (void)ctx; return fake_now; }

static struct sg_limit mk_limit(const char *name, uint64_t window_ms, uint64_t msgs,
                                uint64_t rcpts)
{
    struct sg_limit l = { .name = name, .window_ms = window_ms, .action = SG_ACT_TEMPFAIL,
                          .warn_at = 0.8 };
    l.cap[SG_UNIT_MESSAGES] = msgs;
    l.cap[SG_UNIT_RECIPIENTS] = rcpts;
    return l;
}


/* store.memory.max_identities: past it, new implicit identities share the
 * overflow account with the default limits (throttled together, never
 * unthrottled); known ones and configured accounts keep their own; once the
 * old ones expire, new identities get their own again. */
static void test_bound_overflow(void **state)
{
    struct sg_limit lim = mk_limit("hourly", 3600000, 2, 0);
    struct sg_charge c = { .units = { 1, 1, 0, 0 }, .implicit = true, .implicit_max = 3 };
    struct sg_store_result r;
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);
    char who[32];

    (void)state;
    assert_true(sg_store_memory_default_max() >= 10000);    /* from the machine's memory */
    assert_true(sg_store_memory_default_max() <= 4000000);
    fake_now = 1700000000000ULL;
    for (int i = 0; i < 3; i++) {
        snprintf(who, sizeof(who), "id%d@x", i);
        assert_int_equal(sg_store_decide(st, who, &lim, 1, &c, NULL, false, &r), 0);
        assert_int_equal(r.status, SG_STORE_OK);
        assert_true(r.new_identity);
        assert_false(r.overflow);
    }
    /* a known identity: its own account, not new */
    assert_int_equal(sg_store_decide(st, "id0@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OK);
    assert_false(r.new_identity);
    assert_false(r.overflow);
    assert_int_equal(sg_store_decide(st, "id0@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OVER);          /* its own cap of 2 */
    /* new identities past the bound: one shared account, cap 2 for all */
    assert_int_equal(sg_store_decide(st, "new1@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OK);
    assert_true(r.overflow);
    assert_false(r.new_identity);
    assert_int_equal(sg_store_decide(st, "new2@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OK);
    assert_true(r.overflow);
    for (int i = 3; i < 50; i++) {
        snprintf(who, sizeof(who), "new%d@x", i);
        assert_int_equal(sg_store_decide(st, who, &lim, 1, &c, NULL, false, &r), 0);
        assert_int_equal(r.status, SG_STORE_OVER);      /* throttled together */
        assert_true(r.overflow);
    }
    {
        struct sg_usage u;
        assert_int_equal(sg_store_usage(st, SG_STORE_OVERFLOW_ACCOUNT, &lim, 1, &u), 0);
        assert_int_equal(u.used[SG_UNIT_MESSAGES], 2);
        assert_int_equal(sg_store_usage(st, "new1@x", &lim, 1, &u), 0);
        assert_int_equal(u.used[SG_UNIT_MESSAGES], 0);  /* no entry of its own */
    }
    /* a configured account is never refused an entry of its own */
    c.implicit = false;
    assert_int_equal(sg_store_decide(st, "sales@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OK);
    assert_false(r.overflow);
    assert_int_equal(sg_store_decide(st, "sales@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OK);
    assert_int_equal(sg_store_decide(st, "sales@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OVER);          /* its cap, exactly */
    /* once the window (and a bucket) has passed, the sweep frees the old
     * identities: a new one has its own account again */
    c.implicit = true;
    fake_now += 3600000 + 60000 + 60001;
    assert_int_equal(sg_store_decide(st, "later@x", &lim, 1, &c, NULL, false, &r), 0);
    assert_int_equal(r.status, SG_STORE_OK);
    assert_false(r.overflow);
    assert_true(r.new_identity);
    sg_store_free(st);
}

/* A lease runs out on the store's clock. */
static void test_lock_expiry(void **state)
{
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);

    (void)state;
    fake_now = 1000;
    assert_int_equal(sg_store_lock(st, "poll", "r1", 1000), 1);
    fake_now += 999;
    assert_int_equal(sg_store_lock(st, "poll", "r2", 1000), 0);        /* still r1's */
    fake_now += 1;
    assert_int_equal(sg_store_lock(st, "poll", "r2", 1000), 1);        /* expired */
    sg_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_overflow),
        cmocka_unit_test(test_lock_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
