/*
 * sg_watch - the daemon's watcher thread: every ovh.poll_interval it asks
 * the OVHcloud API (ovh/, the client alone) whether each configured
 * account is blocked for spam, and applies what it reads to the account's
 * state through the workflow (sg_wf_apply). The relay that applied a
 * change alone logs it, runs alert.command and, for an account with
 * auto_reply, answers the ticket with the same client and the ticket it
 * found.
 */
#ifndef SG_WATCH_H
#define SG_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sg_conf.h"
#include "sg_ovh.h"
#include "sg_store.h"

typedef struct sg_watch sg_watch_t;

struct sg_watch_hooks {
    /* Multi-relay election (a lock with expiry in the store). Return true
     * when this relay holds the lock for ttl_ms and should poll now.
     * NULL: always poll. */
    bool (*try_lock)(void *ctx, uint64_t ttl_ms);
    void (*unlock)(void *ctx);    /* may be NULL */
    /* After this relay applied a change of an account (blocked, or back to
     * normal), alerted and answered: e.g. release held mail now. May be
     * NULL. */
    void (*on_change)(void *ctx, const struct sg_account *a, const struct sg_account_state *st);
    void *ctx;
};

/* Start the watcher thread. get_conf returns a new reference to the current
 * config (sg_conf_current); each round uses one snapshot, re-reads the
 * credentials, and checks every account with an offer every
 * ovh.poll_interval (0 = the thread idles). store must outlive the watcher.
 * hooks may be NULL. NULL on error (err filled). */
sg_watch_t *sg_watch_start(sg_conf_t *(*get_conf)(void), sg_store_t *store,
                           const struct sg_watch_hooks *hooks, char *err, size_t errlen);
/* Poll now (e.g. after a reload). */
void sg_watch_kick(sg_watch_t *w);
/* Stop the thread (aborting a call in progress) and free. NULL is fine. */
void sg_watch_stop(sg_watch_t *w);

/* One round over accounts with client c, applying to store; what the
 * thread does each interval. s: the settings the accounts come from, for
 * alert.command, auto_reply and the relay's name (NULL: neither runs).
 * Returns how many accounts could not be checked. hooks may be NULL. */
size_t sg_watch_round(sg_ovh_t *c, sg_store_t *store, const struct sg_settings *s,
                      const struct sg_account *accounts, size_t naccounts,
                      const struct sg_watch_hooks *hooks, int64_t now_ms);

#endif
