/*
 * sg_workflow - the block workflow's state: what an account's phase means,
 * which event moves it where, and the one way a change reaches the store.
 *
 * The phase is kept in the store as the same strings as ever ("ok",
 * "blocked", "replied", "password_pending", "password_failed",
 * "password_changed", "unblocked", "lockdown"; "" = never written), so
 * existing data and `sendguardctl status` read the same. The lockdown flag
 * (struct sg_account_state.blocked) travels beside it: an account can be
 * in "replied" without a lockdown (a reply posted before the watcher saw
 * the block), so the decision takes both.
 *
 * sg_wf_decide is pure: (state, locked, event) -> (verdict, new state,
 * actions). sg_wf_apply is the only writer of an account's state: it reads
 * the state, decides, and writes with the store's compare-and-set on the
 * version it read; a write that lost a race is decided again on the state
 * that won, never written blindly. The actions a step asks for (alert,
 * auto_reply...) are carried out by the caller that applied it, so by one
 * process only.
 */
#ifndef SG_WORKFLOW_H
#define SG_WORKFLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "sg_store.h"

enum sg_wf_state {
    SG_WF_NONE,                   /* "": never written (reads as ok) */
    SG_WF_OK,                     /* "ok": checked, not blocked */
    SG_WF_BLOCKED,                /* "blocked": OVHcloud blocked it (the watcher saw it) */
    SG_WF_REPLIED,                /* "replied": our answer is on the spam ticket */
    SG_WF_PASSWORD_PENDING,       /* "password_pending": the unblock's password task runs */
    SG_WF_PASSWORD_FAILED,        /* "password_failed": that task ended in error */
    SG_WF_PASSWORD_CHANGED,       /* "password_changed": the new password is in the map */
    SG_WF_UNBLOCKED,              /* "unblocked": OVHcloud unblocked it, or lockdown lifted */
    SG_WF_LOCKDOWN,               /* "lockdown": locked down by hand */
    SG_WF_OTHER,                  /* a phase this version does not know: kept as written */
    SG_WF_NSTATES
};

enum sg_wf_event {
    SG_WF_EV_API_BLOCKED,         /* the watcher: the API says blocked */
    SG_WF_EV_API_CLEAR,           /* the watcher: the API says not blocked */
    SG_WF_EV_LOCKDOWN,            /* sendguardctl lockdown */
    SG_WF_EV_LOCKDOWN_OFF,        /* sendguardctl lockdown --off */
    SG_WF_EV_REPLIED,             /* a reply is on the ticket (unblock, auto_reply) */
    SG_WF_EV_PASSWORD_START,      /* the unblock's password change is under way */
    SG_WF_EV_PASSWORD_DONE,       /* a password task is done (the map has it) */
    SG_WF_EV_PASSWORD_FAILED,     /* a password task ended in error */
    SG_WF_EV_NOTE,                /* only the note changes (a plain rotation) */
    SG_WF_NEVENTS
};

enum sg_wf_verdict {
    SG_WF_APPLY,                  /* write the step */
    SG_WF_NOTHING,                /* nothing to do (already so) */
    SG_WF_REFUSE,                 /* not this event's to change (lockdown --off of a block) */
};

/* What a step does, beside the phase (bits). */
#define SG_WF_A_LOCK         (1u << 0)   /* lockdown on */
#define SG_WF_A_UNLOCK       (1u << 1)   /* lockdown off */
#define SG_WF_A_SINCE        (1u << 2)   /* the state begins now (since_ms) */
#define SG_WF_A_CHECKED      (1u << 3)   /* the API was read now: checked_ms, API state */
#define SG_WF_A_TICKET       (1u << 4)   /* a new block: the API's ticket, a fresh note */
#define SG_WF_A_FOLLOW       (1u << 5)   /* a known block: take a ticket number that came later */
#define SG_WF_A_CLEAR_TICKET (1u << 6)   /* ticket = -1 */
#define SG_WF_A_NOTE         (1u << 7)   /* the event's note (or the step's default) */
#define SG_WF_A_ALERT        (1u << 8)   /* log it and run alert.command */
#define SG_WF_A_AUTO_REPLY   (1u << 9)   /* answer the ticket when the account says auto_reply */

struct sg_wf_step {
    enum sg_wf_verdict verdict;
    enum sg_wf_state from, to;
    unsigned actions;             /* SG_WF_A_* */
    const char *note;             /* the default note for SG_WF_A_NOTE, or NULL */
};

/* The phase string of a state ("" for NONE, NULL for OTHER) and back
 * (NULL or an unknown string: OTHER; "" NONE). */
const char *sg_wf_state_name(enum sg_wf_state s);
enum sg_wf_state sg_wf_state_parse(const char *phase);
const char *sg_wf_event_name(enum sg_wf_event e);

/* The transition function (pure). locked: the lockdown flag as stored. */
struct sg_wf_step sg_wf_decide(enum sg_wf_state s, bool locked, enum sg_wf_event e);

/* Is the lockdown the watcher's (a block it saw, answered or not)? Then it
 * lifts it when the API reads the account unblocked. */
bool sg_wf_watcher_owns(enum sg_wf_state s, bool locked);

/* An event as sg_wf_apply takes it. */
struct sg_wf_event_in {
    enum sg_wf_event event;
    int64_t now_ms;
    const char *note;             /* for SG_WF_A_NOTE; NULL: the step's default (or kept) */
    const char *api_state;        /* SG_WF_A_CHECKED: the API's "state" field ("" none) */
    int64_t ticket;               /* watcher events: the API's ticket number, -1 none */
    /* Called once per decision with the state about to be written (may be
     * NULL): e.g. the watcher notes the ticket it looked up. It may be
     * called again after a lost race, with a new decision. */
    void (*fill)(void *ctx, const struct sg_account_state *cur, const struct sg_wf_step *step,
                 struct sg_account_state *next);
    void *ctx;
};

/* Apply one event to an account's state atomically. 1: applied (*step the
 * decision, *out the state now stored); 0: nothing written (step->verdict
 * NOTHING or REFUSE; *out the current state); -1: the store failed (or
 * kept losing races): nothing known to be written. step and out may be
 * NULL. */
int sg_wf_apply(sg_store_t *st, const char *account, const struct sg_wf_event_in *in,
                struct sg_wf_step *step, struct sg_account_state *out);

#endif
