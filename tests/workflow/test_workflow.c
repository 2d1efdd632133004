/*
 * test_workflow.c - the block workflow's transition function, by a table
 * of every state x lockdown flag x event (written out, not derived from
 * the code), and sg_wf_apply on the memory store: a transition that lost
 * a race is decided again on the state that won, never written blindly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sg_store.h"
#include "sg_workflow.h"

/* Events in enum order: API_BLOCKED, API_CLEAR, LOCKDOWN, LOCKDOWN_OFF,
 * REPLIED, PASSWORD_START, PASSWORD_DONE, PASSWORD_FAILED, NOTE.
 * A cell: "nothing", "refuse", or "<new phase|=> <actions>" with the
 * actions L lock, U unlock, S since, C checked, T new ticket, F follow the
 * ticket, K clear the ticket, N note, A alert, R auto_reply. */
static const struct row {
    const char *state;
    bool locked;
    const char *cell[SG_WF_NEVENTS];
} table[] = {
    { "none",             false, { "blocked CLSTAR", "ok CSK", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "ok",               false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "blocked",          false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "replied",          false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "password_pending", false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "password_changed N", "password_failed N", "= N" } },
    { "password_failed",  false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "password_changed", false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "unblocked",        false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "lockdown",         false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "other",            false, { "blocked CLSTAR", "= C", "lockdown LSNA", "nothing", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "none",             true , { "blocked CLSTAR", "= C", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "ok",               true , { "blocked CLSTAR", "= C", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "blocked",          true , { "= CF", "unblocked CUSNA", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "replied",          true , { "= CF", "unblocked CUSNA", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "password_pending", true , { "= C", "= C", "nothing", "refuse", "replied N", "password_pending N", "password_changed N", "password_failed N", "= N" } },
    { "password_failed",  true , { "= C", "= C", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "password_changed", true , { "= CF", "unblocked CUSNA", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "unblocked",        true , { "blocked CLSTAR", "= C", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "lockdown",         true , { "blocked CLSTAR", "= C", "nothing", "unblocked USNA", "replied N", "password_pending N", "= N", "= N", "= N" } },
    { "other",            true , { "blocked CLSTAR", "= C", "nothing", "refuse", "replied N", "password_pending N", "= N", "= N", "= N" } },
};

static enum sg_wf_state state_of(const char *name)
{
    if (strcmp(name, "none") == 0)
        return SG_WF_NONE;
    if (strcmp(name, "other") == 0)
        return SG_WF_OTHER;
    enum sg_wf_state s = sg_wf_state_parse(name);
    assert_int_not_equal(s, SG_WF_OTHER);
    return s;
}

static unsigned actions_of(const char *flags)
{
    static const struct { char c; unsigned bit; } map[] = {
        { 'L', SG_WF_A_LOCK }, { 'U', SG_WF_A_UNLOCK }, { 'S', SG_WF_A_SINCE },
        { 'C', SG_WF_A_CHECKED }, { 'T', SG_WF_A_TICKET }, { 'F', SG_WF_A_FOLLOW },
        { 'K', SG_WF_A_CLEAR_TICKET }, { 'N', SG_WF_A_NOTE }, { 'A', SG_WF_A_ALERT },
        { 'R', SG_WF_A_AUTO_REPLY },
    };
    unsigned bits = 0;

    for (const char *p = flags; *p; p++) {
        size_t i;
        for (i = 0; i < sizeof(map) / sizeof(map[0]) && map[i].c != *p; i++)
            ;
        if (i == sizeof(map) / sizeof(map[0]))
            fail_msg("unknown action letter %c in the table", *p);
        bits |= map[i].bit;
    }
    return bits;
}

/* Every (state, locked) pair is in the table exactly once, each with a cell
 * for every event, and sg_wf_decide gives what the cell says. */
static void test_table(void **unused)
{
    int seen[SG_WF_NSTATES][2] = { { 0 } };
    size_t cells = 0;

    (void)unused;
    for (size_t r = 0; r < sizeof(table) / sizeof(table[0]); r++) {
        enum sg_wf_state s = state_of(table[r].state);
        seen[s][table[r].locked]++;
        for (int e = 0; e < SG_WF_NEVENTS; e++) {
            const char *cell = table[r].cell[e];
            struct sg_wf_step got = sg_wf_decide(s, table[r].locked, (enum sg_wf_event)e);
            char to[40];
            const char *sp;

            assert_non_null(cell);
            cells++;
            assert_int_equal(got.from, s);
            if (strcmp(cell, "nothing") == 0 || strcmp(cell, "refuse") == 0) {
                if (got.verdict != (cell[0] == 'n' ? SG_WF_NOTHING : SG_WF_REFUSE))
                    fail_msg("%s%s x %s: expected %s, got verdict %d", table[r].state,
                             table[r].locked ? " (locked)" : "", sg_wf_event_name(e), cell,
                             (int)got.verdict);
                assert_int_equal(got.to, s);
                continue;
            }
            sp = strchr(cell, ' ');
            assert_non_null(sp);
            snprintf(to, sizeof(to), "%.*s", (int)(sp - cell), cell);
            enum sg_wf_state want = strcmp(to, "=") == 0 ? s : state_of(to);
            if (got.verdict != SG_WF_APPLY || got.to != want || got.actions != actions_of(sp + 1))
                fail_msg("%s%s x %s: expected \"%s\", got verdict %d to %s actions %#x",
                         table[r].state, table[r].locked ? " (locked)" : "", sg_wf_event_name(e),
                         cell, (int)got.verdict, sg_wf_state_name(got.to) ?
                         sg_wf_state_name(got.to) : "(other)", got.actions);
        }
    }
    for (int s = 0; s < SG_WF_NSTATES; s++)
        for (int l = 0; l < 2; l++)
            if (seen[s][l] != 1)
                fail_msg("state %d locked=%d: %d rows in the table, expected 1", s, l, seen[s][l]);
    assert_int_equal(cells, (size_t)SG_WF_NSTATES * 2 * SG_WF_NEVENTS);
}

static void test_names(void **unused)
{
    (void)unused;
    /* The stored strings do not change: existing data reads the same. */
    static const char *const names[] = { "ok", "blocked", "replied", "password_pending",
                                         "password_failed", "password_changed", "unblocked",
                                         "lockdown" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_string_equal(sg_wf_state_name(sg_wf_state_parse(names[i])), names[i]);
    assert_int_equal(sg_wf_state_parse(""), SG_WF_NONE);
    assert_int_equal(sg_wf_state_parse("someday"), SG_WF_OTHER);
    assert_int_equal(sg_wf_state_parse(NULL), SG_WF_OTHER);
    assert_null(sg_wf_state_name(SG_WF_OTHER));
    for (int e = 0; e < SG_WF_NEVENTS; e++)
        assert_string_not_equal(sg_wf_event_name((enum sg_wf_event)e), "?");
}

static uint64_t fixed_clock(void *ctx)
{
    (void)ctx;
    return 1700000000000ULL;
}

static void test_apply(void **unused)
{
    sg_store_t *st = sg_store_memory_new(fixed_clock, NULL);
    struct sg_account_state s;
    struct sg_wf_step sp;
    struct sg_wf_event_in lock = { .event = SG_WF_EV_LOCKDOWN, .now_ms = 1000,
                                   .note = "locked down by test" };
    struct sg_wf_event_in off = { .event = SG_WF_EV_LOCKDOWN_OFF, .now_ms = 2000 };

    (void)unused;
    assert_int_equal(sg_wf_apply(st, "a@example.com", &lock, &sp, &s), 1);
    assert_true(s.blocked);
    assert_string_equal(s.phase, "lockdown");
    assert_string_equal(s.note, "locked down by test");
    assert_int_equal(s.since_ms, 1000);
    assert_int_equal(s.version, 1);
    /* Again: nothing to do, nothing written. */
    assert_int_equal(sg_wf_apply(st, "a@example.com", &lock, &sp, &s), 0);
    assert_int_equal(sp.verdict, SG_WF_NOTHING);
    assert_int_equal(s.version, 1);
    /* Off: the note keeps the old one when the event brings none and the
     * step has no default. */
    assert_int_equal(sg_wf_apply(st, "a@example.com", &off, &sp, &s), 1);
    assert_false(s.blocked);
    assert_string_equal(s.phase, "unblocked");
    assert_int_equal(s.version, 2);
    /* The watcher: a new block takes the API's ticket and state. */
    struct sg_wf_event_in blk = { .event = SG_WF_EV_API_BLOCKED, .now_ms = 3000,
                                  .api_state = "ok", .ticket = 77 };
    assert_int_equal(sg_wf_apply(st, "a@example.com", &blk, &sp, &s), 1);
    assert_true(sp.actions & SG_WF_A_ALERT);
    assert_true(s.blocked);
    assert_int_equal(s.ticket, 77);
    assert_int_equal(s.checked_ms, 3000);
    assert_string_equal(s.note, "");
    /* Seen again: no alert, the version still moves (checked_ms). */
    blk.now_ms = 4000;
    assert_int_equal(sg_wf_apply(st, "a@example.com", &blk, &sp, &s), 1);
    assert_false(sp.actions & SG_WF_A_ALERT);
    assert_int_equal(s.checked_ms, 4000);
    assert_int_equal(s.version, 4);
    /* A lockdown --off of OVHcloud's block is refused. */
    assert_int_equal(sg_wf_apply(st, "a@example.com", &off, &sp, &s), 0);
    assert_int_equal(sp.verdict, SG_WF_REFUSE);
    /* Cleared at the API: unblocked, with the default note. */
    struct sg_wf_event_in clr = { .event = SG_WF_EV_API_CLEAR, .now_ms = 5000, .ticket = -1 };
    assert_int_equal(sg_wf_apply(st, "a@example.com", &clr, &sp, &s), 1);
    assert_false(s.blocked);
    assert_string_equal(s.note, "unblocked by OVHcloud; password change due");
    /* An unknown phase is kept as written by a note-only event. */
    s.version = 0;
    snprintf(s.phase, sizeof(s.phase), "someday");
    struct sg_account_state cur;
    assert_int_equal(sg_store_state_cas(st, "b@example.com", 0, &s, &cur), 1);
    struct sg_wf_event_in note = { .event = SG_WF_EV_NOTE, .note = "hello" };
    assert_int_equal(sg_wf_apply(st, "b@example.com", &note, &sp, &s), 1);
    assert_string_equal(s.phase, "someday");
    assert_string_equal(s.note, "hello");
    sg_store_free(st);
}

/* The race: between our read and our write, the watcher applies a block.
 * Our lockdown --off lost; decided again on the block, it is refused. */
struct race {
    sg_store_t *st;
    int calls;
};

static void interfere(void *ctx, const struct sg_account_state *cur, const struct sg_wf_step *sp,
                      struct sg_account_state *next)
{
    struct race *r = ctx;
    struct sg_wf_event_in blk = { .event = SG_WF_EV_API_BLOCKED, .now_ms = 7000,
                                  .api_state = "ok", .ticket = 5 };

    (void)cur, (void)sp, (void)next;
    if (r->calls++ == 0)
        assert_int_equal(sg_wf_apply(r->st, "c@example.com", &blk, NULL, NULL), 1);
}

static void test_lost_race(void **unused)
{
    struct race r = { sg_store_memory_new(fixed_clock, NULL), 0 };
    struct sg_wf_event_in lock = { .event = SG_WF_EV_LOCKDOWN, .now_ms = 1000, .note = "x" };
    struct sg_wf_event_in off = { .event = SG_WF_EV_LOCKDOWN_OFF, .now_ms = 2000,
                                  .fill = interfere, .ctx = &r };
    struct sg_account_state s;
    struct sg_wf_step sp;

    (void)unused;
    assert_int_equal(sg_wf_apply(r.st, "c@example.com", &lock, NULL, NULL), 1);
    assert_int_equal(sg_wf_apply(r.st, "c@example.com", &off, &sp, &s), 0);
    assert_int_equal(r.calls, 1);                /* decided once, lost, decided again: refused */
    assert_int_equal(sp.verdict, SG_WF_REFUSE);
    assert_string_equal(s.phase, "blocked");
    assert_true(s.blocked);
    assert_int_equal(s.version, 2);
    assert_int_equal(sg_store_state_get(r.st, "c@example.com", &s), 0);
    assert_string_equal(s.phase, "blocked");
    assert_int_equal(s.ticket, 5);
    sg_store_free(r.st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_lost_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
