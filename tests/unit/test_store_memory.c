/*
 * test_store_memory.c - the memory store's limit algorithm, with an
 * injected clock: thousands of random timestamps replayed, then every
 * sliding window of length T checked against the cap.
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

struct event { uint64_t t; uint64_t cost; };

/* Largest total cost in any closed window [t - T, t]. */
static uint64_t max_window(const struct event *ev, size_t n, uint64_t T)
{
    uint64_t best = 0, sum = 0;
    size_t lo = 0;

    for (size_t hi = 0; hi < n; hi++) {
        sum += ev[hi].cost;
        while (ev[lo].t + T < ev[hi].t)
            sum -= ev[lo++].cost;
        if (sum > best)
            best = sum;
    }
    return best;
}

static struct sg_limit mk_limit(const char *name, uint64_t window_ms, uint64_t msgs,
                                uint64_t rcpts)
{
    struct sg_limit l = { .name = name, .window_ms = window_ms, .action = SG_ACT_TEMPFAIL,
                          .warn_at = 0.8 };
    l.cap[SG_UNIT_MESSAGES] = msgs;
    l.cap[SG_UNIT_RECIPIENTS] = rcpts;
    return l;
}

static int cmp_event(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

static bool as_implicit;          /* replay as an implicit identity (sparse path) */

/* The property, for messages and recipients, on random arrival times. */
static void test_sliding_window_property(void **state)
{
    enum { N = 20000 };
    const uint64_t T = 3600000, CAPM = 150, CAPR = 500;
    struct sg_limit lim = mk_limit("hourly", T, CAPM, CAPR);
    struct event *msgs = calloc(N, sizeof(*msgs)), *rcpts = calloc(N, sizeof(*rcpts));
    uint64_t *times = calloc(N, sizeof(*times));
    size_t acc = 0;
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);

    (void)state;
    srand(12345);
    /* Bursty arrivals over ~20 hours: clusters and gaps. */
    for (size_t i = 0; i < N; i++)
        times[i] = 1700000000000ULL + (uint64_t)rand() % (20 * T) +
                   (rand() % 4 == 0 ? (uint64_t)(rand() % 1000) : 0);
    {
        struct event *tmp = calloc(N, sizeof(*tmp));
        for (size_t i = 0; i < N; i++)
            tmp[i].t = times[i];
        qsort(tmp, N, sizeof(*tmp), cmp_event);
        for (size_t i = 0; i < N; i++)
            times[i] = tmp[i].t;
        free(tmp);
    }
    for (size_t i = 0; i < N; i++) {
        struct sg_charge c = { .units = { 0 } };
        struct sg_store_result r;
        uint64_t nr = 1 + (uint64_t)(rand() % 8);

        c.units[SG_UNIT_MESSAGES] = 1;
        c.units[SG_UNIT_RECIPIENTS] = nr;
        c.implicit = as_implicit;
        c.implicit_max = 10;
        fake_now = times[i];
        assert_int_equal(sg_store_decide(st, "a@example.com", &lim, 1, &c, NULL, false, &r), 0);
        if (r.status == SG_STORE_OK) {
            msgs[acc] = (struct event){ times[i], 1 };
            rcpts[acc] = (struct event){ times[i], nr };
            acc++;
        } else {
            assert_int_equal(r.status, SG_STORE_OVER);
            assert_true(r.retry_after_ms > 0 && r.retry_after_ms <= T + T / 60);
        }
    }
    assert_true(max_window(msgs, acc, T) <= CAPM);
    assert_true(max_window(rcpts, acc, T) <= CAPR);
    /* Not uselessly strict: ~20 windows of load far above the cap, so close
     * to 20 windows' worth of the binding cap (recipients, ~4.5 per message). */
    assert_true(acc >= 19 * CAPR / 5);
    free(msgs);
    free(rcpts);
    free(times);
    sg_store_free(st);
}

/* The same replay for an implicit identity (bounded, sparse entries). */
static void test_sliding_window_property_implicit(void **state)
{
    as_implicit = true;
    test_sliding_window_property(state);
    as_implicit = false;
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

/* The checker itself can fail: a fixed window lets 2N through across a boundary. */
static void test_checker_catches_fixed_window(void **state)
{
    const uint64_t T = 1000, CAP = 10;
    struct event ev[40];
    size_t n = 0;
    uint64_t window = UINT64_MAX, count = 0;

    (void)state;
    for (uint64_t t = 900; t < 1100; t += 10) {
        if (t / T != window) {
            window = t / T;
            count = 0;
        }
        if (count < CAP) {
            count++;
            ev[n++] = (struct event){ t, 1 };
        }
    }
    assert_true(max_window(ev, n, T) > CAP);
}

static void test_refused_not_charged_and_retry_after(void **state)
{
    struct sg_limit lim = mk_limit("l", 60000, 3, 0);
    struct sg_charge c = { .units = { 1, 1, 0, 0 } };
    struct sg_store_result r;
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);

    (void)state;
    fake_now = 1000000;
    for (int i = 0; i < 3; i++) {
        sg_store_decide(st, "x", &lim, 1, &c, NULL, false, &r);
        assert_int_equal(r.status, SG_STORE_OK);
        fake_now += 1000;
    }
    for (int i = 0; i < 5; i++) {              /* refusals do not pile up */
        sg_store_decide(st, "x", &lim, 1, &c, NULL, false, &r);
        assert_int_equal(r.status, SG_STORE_OVER);
        assert_int_equal(r.used, 3);
        assert_int_equal(r.cap, 3);
    }
    /* The first accepted message's bucket leaves the window at retry_after. */
    fake_now += r.retry_after_ms - 1;
    sg_store_decide(st, "x", &lim, 1, &c, NULL, false, &r);
    assert_int_equal(r.status, SG_STORE_OVER);
    fake_now += 1;
    sg_store_decide(st, "x", &lim, 1, &c, NULL, false, &r);
    assert_int_equal(r.status, SG_STORE_OK);
    /* Other accounts are untouched. */
    sg_store_decide(st, "y", &lim, 1, &c, NULL, false, &r);
    assert_int_equal(r.status, SG_STORE_OK);
    sg_store_free(st);
}

static void test_all_or_nothing(void **state)
{
    struct sg_limit lims[2] = { mk_limit("short", 60000, 100, 0), mk_limit("long", 3600000, 2, 0) };
    struct sg_charge c = { .units = { 1, 1, 0, 0 } };
    struct sg_usage u[2];
    struct sg_store_result r;
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);

    (void)state;
    fake_now = 5000000;
    for (int i = 0; i < 4; i++)
        sg_store_decide(st, "a", lims, 2, &c, NULL, false, &r);
    assert_int_equal(r.status, SG_STORE_OVER);
    assert_int_equal(r.limit, 1);
    assert_int_equal(sg_store_usage(st, "a", lims, 2, u), 0);
    assert_int_equal(u[0].used[SG_UNIT_MESSAGES], 2);  /* "short" not charged for refusals */
    assert_int_equal(u[1].used[SG_UNIT_MESSAGES], 2);
    sg_store_decide(st, "a", lims, 2, &c, NULL, true, &r);   /* strict: charged anyway */
    sg_store_usage(st, "a", lims, 2, u);
    assert_int_equal(u[0].used[SG_UNIT_MESSAGES], 3);
    assert_int_equal(sg_store_reset(st, "a"), 0);
    sg_store_usage(st, "a", lims, 2, u);
    assert_int_equal(u[1].used[SG_UNIT_MESSAGES], 0);
    sg_store_free(st);
}

static void test_distinct_recipients(void **state)
{
    enum { N = 5000, POOL = 300 };
    const uint64_t T = 600000, CAP = 40;
    struct sg_limit lim = { .name = "d", .window_ms = T, .action = SG_ACT_HOLD, .warn_at = 1 };
    struct { uint64_t t, h; } acc[N * 3];
    size_t nacc = 0;
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);

    (void)state;
    lim.cap[SG_UNIT_DISTINCT] = CAP;
    srand(777);
    fake_now = 1700000000000ULL;
    for (int i = 0; i < N; i++) {
        uint64_t h[3];
        struct sg_charge c = { .units = { 1, 3, 0, 0 }, .rcpt_hashes = h };
        struct sg_store_result r;

        fake_now += (uint64_t)(rand() % 4000);
        for (int k = 0; k < 3; k++) {
            uint64_t x = (uint64_t)(rand() % POOL) + 1;
            int dup = 0;
            for (size_t j = 0; j < c.nrcpt_hashes; j++)
                dup |= h[j] == x;
            if (!dup)
                h[c.nrcpt_hashes++] = x;
        }
        sg_store_decide(st, "d", &lim, 1, &c, NULL, false, &r);
        if (r.status == SG_STORE_OK)
            for (size_t j = 0; j < c.nrcpt_hashes; j++)
                acc[nacc].t = fake_now, acc[nacc++].h = h[j];
    }
    /* In every window [t - T, t] ending at an accepted message, at most CAP distinct. */
    for (size_t e = 0; e < nacc; e++) {
        char seen[POOL + 1] = { 0 };
        uint64_t distinct = 0;
        for (size_t j = 0; j <= e; j++)
            if (acc[j].t + T >= acc[e].t && !seen[acc[j].h]) {
                seen[acc[j].h] = 1;
                distinct++;
            }
        assert_true(distinct <= CAP);
    }
    assert_true(nacc >= 500);           /* ~16 windows of 40 distinct each */
    sg_store_free(st);
}

static void test_warn_once_and_lockdown(void **state)
{
    struct sg_limit lim = mk_limit("w", 60000, 10, 0);
    struct sg_charge c = { .units = { 1, 1, 0, 0 } };
    struct sg_store_result r;
    struct sg_account_state s0 = { 0 }, s1;
    int warns = 0;
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);

    (void)state;
    fake_now = 9000000;
    for (int i = 0; i < 10; i++) {
        sg_store_decide(st, "w", &lim, 1, &c, NULL, false, &r);
        assert_int_equal(r.status, SG_STORE_OK);
        warns += r.warn_mask != 0;
        if (r.warn_mask)
            assert_int_equal(i, 7);              /* 8 of 10 = warn_at 0.8 */
    }
    assert_int_equal(warns, 1);
    assert_false(r.lockdown);
    sg_store_state_get(st, "w", &s1);
    assert_false(s1.blocked);
    assert_int_equal(s1.ticket, -1);
    s0.blocked = true;
    s0.ticket = 42;
    assert_int_equal(sg_store_state_set(st, "w", &s0), 0);
    fake_now += 120000;
    sg_store_decide(st, "w", &lim, 1, &c, NULL, false, &r);
    assert_true(r.lockdown);
    sg_store_state_get(st, "w", &s1);
    assert_int_equal(s1.ticket, 42);
    sg_store_free(st);
}

static void test_held_lock_evidence(void **state)
{
    sg_store_t *st = sg_store_memory_new(fake_clock, NULL);
    const char *del[] = { "Q1" };
    char **q, *ev;
    size_t n;

    (void)state;
    fake_now = 1000;
    assert_int_equal(sg_store_held_add(st, "a@b", "relay1", "Q1"), 0);
    assert_int_equal(sg_store_held_add(st, "a@b", "relay1", "Q2"), 0);
    assert_int_equal(sg_store_held_add(st, "a@b", "relay1", "Q1"), 0);   /* once */
    assert_int_equal(sg_store_held_add(st, "a@b", "relay1", ""), -1);
    assert_int_equal(sg_store_held_list(st, "a@b", "relay1", &q, &n), 0);
    assert_int_equal(n, 2);
    sg_store_strv_free(q, n);
    assert_int_equal(sg_store_held_del(st, "a@b", "relay1", del, 1), 0);
    assert_int_equal(sg_store_held_list(st, "a@b", "relay1", &q, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(q[0], "Q2");
    sg_store_strv_free(q, n);
    assert_int_equal(sg_store_held_list(st, "nobody", "relay1", &q, &n), 0);
    assert_int_equal(n, 0);

    assert_int_equal(sg_store_lock(st, "poll", "r1", 1000), 1);
    assert_int_equal(sg_store_lock(st, "poll", "r2", 1000), 0);
    assert_int_equal(sg_store_lock(st, "poll", "r1", 1000), 1);        /* renewed */
    fake_now += 1001;
    assert_int_equal(sg_store_lock(st, "poll", "r2", 1000), 1);        /* expired */
    assert_int_equal(sg_store_lock(st, "poll", "r1", 0), 0);           /* not r1's */
    assert_int_equal(sg_store_lock(st, "poll", "r2", 0), 1);
    assert_int_equal(sg_store_lock(st, "poll", "r1", 1000), 1);
    assert_int_equal(sg_store_lock(st, "poll", "", 1000), -1);

    assert_int_equal(sg_store_evidence_json(st, "a@b", &ev), 0);
    assert_non_null(strstr(ev, "\"by_ip\":{}"));
    free(ev);
    sg_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sliding_window_property),
        cmocka_unit_test(test_sliding_window_property_implicit),
        cmocka_unit_test(test_bound_overflow),
        cmocka_unit_test(test_checker_catches_fixed_window),
        cmocka_unit_test(test_refused_not_charged_and_retry_after),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_distinct_recipients),
        cmocka_unit_test(test_warn_once_and_lockdown),
        cmocka_unit_test(test_held_lock_evidence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
