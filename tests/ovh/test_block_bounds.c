/*
 * test_block_bounds.c - sg_block_analyse on periods that do not fit the
 * 48-hour array: a `since` after `now` (what `report --since` with a
 * duration that wraps around gives), one far in the past, one exactly now.
 * Before the fix a since after now wrapped nhours around and the loops read
 * far past msgs[48] (ASan: stack-buffer-overflow, or a crash).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sg_block.h"

#define H 3600000LL
static struct sg_ev_hour hour = { 480000, 7, 9, 0 };
static const struct sg_evidence_report ev = { .last_seen_ms = -1, .hours = &hour, .nhours = 1 };

static void check(int64_t now, int64_t since, size_t want_hours)
{
    struct sg_block_facts f;
    char err[128];
    char spark[SG_BLOCK_HOURS * 4 + 1];

    assert_int_equal(sg_block_analyse(&ev, now, since, &f, err, sizeof(err)), 0);
    assert_true(f.nhours >= 1 && f.nhours <= SG_BLOCK_HOURS);
    assert_int_equal(f.nhours, want_hours);
    assert_true(f.since_ms <= f.now_ms);
    /* hour 480000, now's hour, is the last one shown: its 7 messages */
    assert_int_equal(f.msgs[f.nhours - 1], 7);
    assert_int_equal(f.period_msgs, 7);
    sg_block_spark(f.msgs, f.nhours, spark, sizeof(spark));
    sg_block_facts_free(&f);
}

static void test_since_after_now(void **state)
{
    int64_t now = 480000 * H + 1234;

    (void)state;
    check(now, now + 5 * H, 1);
    /* `report --since 18446744073702351`: the duration wraps and since
     * lands far in the future. */
    check(now, now - (int64_t)UINT64_C(18446744073702351000), 1);
    check(now, INT64_MAX, 1);
}

static void test_since_long_ago(void **state)
{
    int64_t now = 480000 * H + 1234;

    (void)state;
    check(now, now - 30 * 24 * H, SG_BLOCK_HOURS);
    check(now, INT64_MIN / 2, SG_BLOCK_HOURS);
    check(now, now, 1);
    check(now, now - 3 * H, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_since_after_now),
        cmocka_unit_test(test_since_long_ago),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
