/*
 * sg_ovh_watch.c - the daemon's watcher thread: every ovh.poll_interval it
 * asks the API whether each configured account is blocked for spam and
 * writes the answer to the shared store, so every relay (and
 * `sendguardctl status`) sees it.
 *
 * A block is logged at LOG_ALERT once, when the store's state changes (so
 * once across relays sharing Redis), the return to normal at LOG_NOTICE.
 * With several relays, hooks->try_lock elects the one that polls (a lock
 * with expiry in the store, renewed each round by its holder; without the
 * hook every relay polls, which is correct but costs API calls).
 * Must not: clear a lockdown it did not set (a phase other than "blocked",
 * "replied" or "password_changed" is someone else's), hold a config snapshot across rounds
 * longer than its client needs, or block sg_ovh_watch_stop for long (the
 * client's abort hook ends a call in progress).
 */
#include "sg_ovh_internal.h"
#include "sg_log.h"
#include "sg_store.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_NO_CONF_MS (60 * 1000)
#define IDLE_MS (3600 * 1000)

struct sg_ovh_watch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* on CLOCK_MONOTONIC */
    bool stop, kick;
    atomic_bool stopping;
    sg_conf_t *(*get_conf)(void);
    sg_store_t *store;
    struct sg_ovh_watch_hooks hooks;
};

/* Rate limits for repeated failures ("once per outage" style). */
static long last_global_fail, last_account_fail, last_store_fail;

static bool phase_is(const struct sg_account_state *s, const char *p)
{
    return strcmp(s->phase, p) == 0;
}

/* note_ticket - on a new block, find the ticket and its evidence; the note
 * is key=value ("ticket_id=9000003 suspicious=42 headers=yes"), fit for the
 * alert line. A failed lookup is logged on its own line. */
static void note_ticket(sg_ovh_t *c, const struct sg_account *a, int64_t number,
                        struct sg_account_state *next)
{
    struct sg_ovh_ticket t;
    struct sg_ovh_err err;
    struct sg_ovh_message *m = NULL;
    size_t nm = 0;

    if (sg_ovh_ticket_find(c, a, number, &t, &err) != 0) {
        char msg[700], esc[300];
        snprintf(next->note, sizeof(next->note), "ticket_id=- ticket_lookup=failed");
        sg_log(LOG_WARNING, "ovh: account=<%s> spam ticket not found: %s",
               sg_log_esc(esc, sizeof(esc), a->address), sg_ovh_strerror(&err, msg, sizeof(msg)));
        return;
    }
    if (next->ticket < 0)
        next->ticket = t.number;
    if (sg_ovh_ticket_messages(c, t.id, &m, &nm, &err) == 0) {
        struct sg_ovh_evidence ev;
        sg_ovh_ticket_evidence(m, nm, &ev);
        snprintf(next->note, sizeof(next->note), "ticket_id=%" PRId64 " suspicious=%ld headers=%s",
                 t.id, ev.suspicious, ev.headers ? "yes" : "no");
        sg_ovh_evidence_clear(&ev);
        sg_ovh_messages_free(m, nm);
    } else {
        snprintf(next->note, sizeof(next->note), "ticket_id=%" PRId64, t.id);
    }
}

size_t sg_ovh_watch_round(sg_ovh_t *c, struct sg_store *store, const struct sg_account *accounts,
                          size_t naccounts, const struct sg_ovh_watch_hooks *hooks,
                          int64_t now_ms)
{
    size_t failed = 0;
    char esc[300], msg[700];

    for (size_t i = 0; i < naccounts; i++) {
        const struct sg_account *a = &accounts[i];
        struct sg_ovh_status st;
        struct sg_ovh_err err;
        struct sg_account_state prev, next;
        bool changed = false;

        if (a->offer == SG_OFFER_NONE)
            continue;
        sg_log_esc(esc, sizeof(esc), a->address);
        if (sg_ovh_account_status(c, a, &st, &err) != 0) {
            failed++;
            if (err.rc == SG_OVH_E_ABORTED)
                break;
            if (sg_ovh_err_is_auth(&err) || err.rc == SG_OVH_E_NET) {
                /* Every other account would fail the same way. */
                if (sg_log_ratelimit(&last_global_fail, 3600))
                    sg_log(LOG_ERR, "ovh: cannot check accounts: %s",
                           sg_ovh_strerror(&err, msg, sizeof(msg)));
                for (size_t k = i + 1; k < naccounts; k++)
                    failed += accounts[k].offer != SG_OFFER_NONE;
                break;
            }
            if (sg_log_ratelimit(&last_account_fail, 3600))
                sg_log(LOG_WARNING, "ovh: account=<%s> check failed: %s", esc,
                       sg_ovh_strerror(&err, msg, sizeof(msg)));
            continue;
        }
        if (sg_store_state_get(store, a->address, &prev) != 0) {
            failed++;
            if (sg_log_ratelimit(&last_store_fail, 3600))
                sg_log(LOG_WARNING, "ovh: account=<%s> store=%s: cannot read state", esc,
                       sg_store_name(store));
            continue;
        }
        next = prev;
        next.checked_ms = now_ms;
        snprintf(next.state, sizeof(next.state), "%s", st.state);

        /* A lockdown this watcher set (then answered by a reply or a new
         * password); any other phase (a manual lockdown) is not its to lift. */
        bool api_blocked_before = prev.blocked && (phase_is(&prev, "blocked") ||
                                                   phase_is(&prev, "replied") ||
                                                   phase_is(&prev, "password_changed"));
        if (st.blocked && !api_blocked_before) {
            next.blocked = true;
            next.ticket = st.ticket;
            next.since_ms = now_ms;
            snprintf(next.phase, sizeof(next.phase), "blocked");
            next.note[0] = '\0';
            if (a->offer != SG_OFFER_MXPLAN_LEGACY)
                note_ticket(c, a, st.ticket, &next);
            else
                snprintf(next.note, sizeof(next.note), "ticket_id=- unblock=password_change");
            {
                char summary[512] = "";
                if (hooks && hooks->describe)
                    hooks->describe(hooks->ctx, a, summary, sizeof(summary));
                sg_log(LOG_ALERT, "ovh: account=<%s> offer=%s event=blocked ticket=%" PRId64
                       " state=%s %s%s%s", esc, sg_offer_name(a->offer), next.ticket,
                       *st.state ? st.state : "-", next.note, summary[0] ? " " : "", summary);
            }
            changed = true;
        } else if (!st.blocked && api_blocked_before) {
            next.blocked = false;
            next.since_ms = now_ms;
            snprintf(next.phase, sizeof(next.phase), "unblocked");
            snprintf(next.note, sizeof(next.note), "unblocked by OVHcloud; password change due");
            sg_log(LOG_NOTICE, "ovh: account=<%s> offer=%s event=unblocked ticket=%" PRId64 " state=%s",
                   esc, sg_offer_name(a->offer), prev.ticket, *st.state ? st.state : "-");
            changed = true;
        } else if (st.blocked) {
            if (st.ticket >= 0 && st.ticket != prev.ticket) {
                next.ticket = st.ticket;              /* the ticket number came later */
                if (a->offer != SG_OFFER_MXPLAN_LEGACY)
                    note_ticket(c, a, st.ticket, &next);
            }
        } else if (!prev.blocked && prev.phase[0] == '\0') {
            snprintf(next.phase, sizeof(next.phase), "ok");
            next.ticket = -1;
            next.since_ms = now_ms;
        }
        if (sg_store_state_set(store, a->address, &next) != 0) {
            failed++;
            if (sg_log_ratelimit(&last_store_fail, 3600))
                sg_log(LOG_WARNING, "ovh: account=<%s> store=%s: cannot write state", esc,
                       sg_store_name(store));
            continue;
        }
        if (changed && hooks && hooks->on_change)
            hooks->on_change(hooks->ctx, a, &next);
    }
    return failed;
}

static bool stop_requested(void *ctx)
{
    struct sg_ovh_watch *w = ctx;
    return atomic_load(&w->stopping);
}

static sg_ovh_t *make_client(struct sg_ovh_watch *w, const struct sg_settings *s)
{
    char msg[700];
    struct sg_ovh_err e;
    sg_ovh_t *c = sg_ovh_open(s, &e);

    if (!c) {
        if (sg_log_ratelimit(&last_global_fail, 3600))
            sg_log(LOG_ERR, "ovh: %s", sg_ovh_strerror(&e, msg, sizeof(msg)));
        return NULL;
    }
    sg_ovh_set_abort(c, stop_requested, w);
    return c;
}

static void *watch_main(void *arg)
{
    struct sg_ovh_watch *w = arg;
    sg_ovh_t *client = NULL;
    sg_conf_t *client_conf = NULL;      /* the snapshot the client was made from */
    int64_t next = 0;                   /* monotonic ms of the next round */

    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (!w->stop && !w->kick && sg_ovh_mono_ms() < next) {
            int64_t until = next;
            struct timespec ts = { (time_t)(until / 1000), (long)(until % 1000) * 1000000L };
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        bool stop = w->stop;
        w->kick = false;
        pthread_mutex_unlock(&w->mu);
        if (stop)
            break;

        sg_conf_t *conf = w->get_conf();
        if (!conf) {
            next = sg_ovh_mono_ms() + RETRY_NO_CONF_MS;
            continue;
        }
        const struct sg_settings *s = sg_conf_settings(conf);
        uint64_t interval = s->ovh_poll_interval_ms;
        size_t watched = 0;
        for (size_t i = 0; i < s->naccounts; i++)
            watched += s->accounts[i].offer != SG_OFFER_NONE;
        if (interval == 0 || watched == 0) {   /* nothing to watch: no client, no error */
            sg_conf_unref(conf);
            next = sg_ovh_mono_ms() + IDLE_MS;       /* off: wait for a reload's kick */
            continue;
        }
        if (conf != client_conf || !client) {
            /* New config (or the last client failed on its credentials):
             * re-read the credentials, which may have been fixed meanwhile. */
            sg_ovh_free(client);
            if (client_conf)
                sg_conf_unref(client_conf);
            client_conf = sg_conf_ref(conf);
            client = make_client(w, s);
        }
        /* The holder renews the lock every round, so it keeps it; it lives
         * 1.5 intervals, so another relay takes over half an interval after
         * the holder stopped renewing (at once after a clean stop: unlock). */
        bool mine = !w->hooks.try_lock || w->hooks.try_lock(w->hooks.ctx, interval * 3 / 2);
        if (client && mine) {
            size_t nacc = 0;
            for (size_t i = 0; i < s->naccounts; i++)
                nacc += s->accounts[i].offer != SG_OFFER_NONE;
            size_t failed = sg_ovh_watch_round(client, w->store, s->accounts, s->naccounts,
                                               &w->hooks, sg_ovh_now_ms());
            if (failed == nacc && nacc > 0) {
                /* Nothing worked: start from fresh credentials next time. */
                sg_ovh_free(client);
                client = NULL;
            }
        }
        sg_conf_unref(conf);
        next = sg_ovh_mono_ms() + (int64_t)interval;
    }
    if (w->hooks.unlock)
        w->hooks.unlock(w->hooks.ctx);
    sg_ovh_free(client);
    if (client_conf)
        sg_conf_unref(client_conf);
    return NULL;
}

sg_ovh_watch_t *sg_ovh_watch_start(sg_conf_t *(*get_conf)(void), struct sg_store *store,
                                   const struct sg_ovh_watch_hooks *hooks,
                                   char *err, size_t errlen)
{
    struct sg_ovh_watch *w;
    pthread_condattr_t ca;
    int e;

    if (!get_conf || !store) {
        snprintf(err, errlen, "watcher: no config or store");
        return NULL;
    }
    if (sg_ovh_global_init() != 0) {
        snprintf(err, errlen, "watcher: curl_global_init failed");
        return NULL;
    }
    if (!(w = calloc(1, sizeof(*w)))) {
        snprintf(err, errlen, "watcher: out of memory");
        return NULL;
    }
    w->get_conf = get_conf;
    w->store = store;
    if (hooks)
        w->hooks = *hooks;
    atomic_init(&w->stopping, false);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if ((e = pthread_create(&w->thread, NULL, watch_main, w)) != 0) {
        snprintf(err, errlen, "watcher: pthread_create: %s", strerror(e));
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void sg_ovh_watch_kick(sg_ovh_watch_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->kick = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void sg_ovh_watch_stop(sg_ovh_watch_t *w)
{
    if (!w)
        return;
    atomic_store(&w->stopping, true);
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
