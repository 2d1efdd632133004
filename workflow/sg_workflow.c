/*
 * sg_workflow.c - the block workflow's transition function and the one
 * writer of an account's state (read, decide, compare-and-set, and on a
 * lost race decide again on the state that won).
 *
 * Must not: write a state without sg_store_state_cas, talk to the API
 * (callers do; the fill hook is theirs), carry out a step's actions (the
 * caller that applied it does), or rename a phase string (stored data and
 * `sendguardctl status` read them).
 */
#include "sg_workflow.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sg_log.h"

#define APPLY_ATTEMPTS 64                 /* lost races in a row before giving up */

static const char *const state_names[SG_WF_NSTATES] = {
    [SG_WF_NONE] = "",
    [SG_WF_OK] = "ok",
    [SG_WF_BLOCKED] = "blocked",
    [SG_WF_REPLIED] = "replied",
    [SG_WF_PASSWORD_PENDING] = "password_pending",
    [SG_WF_PASSWORD_FAILED] = "password_failed",
    [SG_WF_PASSWORD_CHANGED] = "password_changed",
    [SG_WF_UNBLOCKED] = "unblocked",
    [SG_WF_LOCKDOWN] = "lockdown",
    [SG_WF_OTHER] = NULL,
};

static const char *const event_names[SG_WF_NEVENTS] = {
    [SG_WF_EV_API_BLOCKED] = "api_blocked",
    [SG_WF_EV_API_CLEAR] = "api_clear",
    [SG_WF_EV_LOCKDOWN] = "lockdown",
    [SG_WF_EV_LOCKDOWN_OFF] = "lockdown_off",
    [SG_WF_EV_REPLIED] = "replied",
    [SG_WF_EV_PASSWORD_START] = "password_start",
    [SG_WF_EV_PASSWORD_DONE] = "password_done",
    [SG_WF_EV_PASSWORD_FAILED] = "password_failed",
    [SG_WF_EV_NOTE] = "note",
};

const char *sg_wf_state_name(enum sg_wf_state s)
{
    return (unsigned)s < SG_WF_NSTATES ? state_names[s] : NULL;
}

enum sg_wf_state sg_wf_state_parse(const char *phase)
{
    if (phase == NULL)
        return SG_WF_OTHER;
    for (int s = 0; s < SG_WF_NSTATES; s++)
        if (state_names[s] != NULL && strcmp(state_names[s], phase) == 0)
            return (enum sg_wf_state)s;
    return SG_WF_OTHER;
}

const char *sg_wf_event_name(enum sg_wf_event e)
{
    return (unsigned)e < SG_WF_NEVENTS ? event_names[e] : "?";
}

bool sg_wf_watcher_owns(enum sg_wf_state s, bool locked)
{
    return locked && (s == SG_WF_BLOCKED || s == SG_WF_REPLIED || s == SG_WF_PASSWORD_CHANGED);
}

/* The unblock's password change in progress or failed: the lockdown holds
 * until it is settled, whatever the API reads. */
static bool password_holds(enum sg_wf_state s, bool locked)
{
    return locked && (s == SG_WF_PASSWORD_PENDING || s == SG_WF_PASSWORD_FAILED);
}

static struct sg_wf_step step(enum sg_wf_state from, enum sg_wf_state to, unsigned actions)
{
    return (struct sg_wf_step){ .verdict = SG_WF_APPLY, .from = from, .to = to,
                                .actions = actions };
}

static struct sg_wf_step verdict(enum sg_wf_state from, enum sg_wf_verdict v)
{
    return (struct sg_wf_step){ .verdict = v, .from = from, .to = from };
}

struct sg_wf_step sg_wf_decide(enum sg_wf_state s, bool locked, enum sg_wf_event e)
{
    struct sg_wf_step r;

    switch (e) {
    case SG_WF_EV_API_BLOCKED:
        if (password_holds(s, locked))
            return step(s, s, SG_WF_A_CHECKED);
        if (sg_wf_watcher_owns(s, locked))
            return step(s, s, SG_WF_A_CHECKED | SG_WF_A_FOLLOW);
        /* A new block (a manual lockdown included: the block takes it over). */
        return step(s, SG_WF_BLOCKED, SG_WF_A_CHECKED | SG_WF_A_LOCK | SG_WF_A_SINCE |
                    SG_WF_A_TICKET | SG_WF_A_ALERT | SG_WF_A_AUTO_REPLY);
    case SG_WF_EV_API_CLEAR:
        if (sg_wf_watcher_owns(s, locked)) {
            r = step(s, SG_WF_UNBLOCKED, SG_WF_A_CHECKED | SG_WF_A_UNLOCK | SG_WF_A_SINCE |
                     SG_WF_A_NOTE | SG_WF_A_ALERT);
            r.note = "unblocked by OVHcloud; password change due";
            return r;
        }
        if (!locked && s == SG_WF_NONE)
            return step(s, SG_WF_OK, SG_WF_A_CHECKED | SG_WF_A_SINCE | SG_WF_A_CLEAR_TICKET);
        return step(s, s, SG_WF_A_CHECKED);      /* someone else's lockdown, or nothing new */
    case SG_WF_EV_LOCKDOWN:
        if (locked)
            return verdict(s, SG_WF_NOTHING);
        return step(s, SG_WF_LOCKDOWN, SG_WF_A_LOCK | SG_WF_A_SINCE | SG_WF_A_NOTE |
                    SG_WF_A_ALERT);
    case SG_WF_EV_LOCKDOWN_OFF:
        if (!locked)
            return verdict(s, SG_WF_NOTHING);
        if (s != SG_WF_LOCKDOWN)
            return verdict(s, SG_WF_REFUSE);     /* OVHcloud's block ends when OVHcloud says */
        return step(s, SG_WF_UNBLOCKED, SG_WF_A_UNLOCK | SG_WF_A_SINCE | SG_WF_A_NOTE |
                    SG_WF_A_ALERT);
    case SG_WF_EV_REPLIED:
        return step(s, SG_WF_REPLIED, SG_WF_A_NOTE);
    case SG_WF_EV_PASSWORD_START:
        return step(s, SG_WF_PASSWORD_PENDING, SG_WF_A_NOTE);
    case SG_WF_EV_PASSWORD_DONE:
        return step(s, s == SG_WF_PASSWORD_PENDING ? SG_WF_PASSWORD_CHANGED : s, SG_WF_A_NOTE);
    case SG_WF_EV_PASSWORD_FAILED:
        return step(s, s == SG_WF_PASSWORD_PENDING ? SG_WF_PASSWORD_FAILED : s, SG_WF_A_NOTE);
    case SG_WF_EV_NOTE:
        return step(s, s, SG_WF_A_NOTE);
    case SG_WF_NEVENTS:
        break;
    }
    return verdict(s, SG_WF_REFUSE);
}

/* next_state - the state a decided step writes, from the current one */
static void next_state(const struct sg_account_state *cur, const struct sg_wf_step *sp,
                       const struct sg_wf_event_in *in, struct sg_account_state *next)
{
    *next = *cur;
    if (sp->to != sp->from)
        snprintf(next->phase, sizeof(next->phase), "%s", sg_wf_state_name(sp->to));
    if (sp->actions & SG_WF_A_LOCK)
        next->blocked = true;
    if (sp->actions & SG_WF_A_UNLOCK)
        next->blocked = false;
    if (sp->actions & SG_WF_A_SINCE)
        next->since_ms = in->now_ms;
    if (sp->actions & SG_WF_A_CHECKED) {
        next->checked_ms = in->now_ms;
        snprintf(next->state, sizeof(next->state), "%s", in->api_state ? in->api_state : "");
    }
    if (sp->actions & SG_WF_A_TICKET) {
        next->ticket = in->ticket;
        next->note[0] = '\0';
    }
    if ((sp->actions & SG_WF_A_FOLLOW) && in->ticket >= 0 && in->ticket != cur->ticket)
        next->ticket = in->ticket;               /* the ticket number came later */
    if (sp->actions & SG_WF_A_CLEAR_TICKET)
        next->ticket = -1;
    if ((sp->actions & SG_WF_A_NOTE) && (in->note || sp->note))
        snprintf(next->note, sizeof(next->note), "%s", in->note ? in->note : sp->note);
}

int sg_wf_apply(sg_store_t *st, const char *account, const struct sg_wf_event_in *in,
                struct sg_wf_step *step_out, struct sg_account_state *out)
{
    struct sg_account_state cur, next;
    struct sg_wf_step sp;

    if (sg_store_state_get(st, account, &cur) != 0)
        return -1;
    for (int attempt = 0; attempt < APPLY_ATTEMPTS; attempt++) {
        sp = sg_wf_decide(sg_wf_state_parse(cur.phase), cur.blocked, in->event);
        if (step_out)
            *step_out = sp;
        if (sp.verdict != SG_WF_APPLY) {
            if (out)
                *out = cur;
            return 0;
        }
        next_state(&cur, &sp, in, &next);
        if (in->fill)
            in->fill(in->ctx, &cur, &sp, &next);
        int rc = sg_store_state_cas(st, account, cur.version, &next, &cur);
        if (rc == 1) {
            if (out)
                *out = cur;
            return 1;
        }
        if (rc < 0)
            return -1;
        /* Lost the race: cur is the state that won; decide again on it. */
    }
    {
        char esc[300];
        sg_log(LOG_WARNING, "workflow: account=<%s> event=%s: lost %d races in a row, not applied",
               sg_log_esc(esc, sizeof(esc), account), sg_wf_event_name(in->event),
               APPLY_ATTEMPTS);
    }
    return -1;
}

