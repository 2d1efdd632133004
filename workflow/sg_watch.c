/*
 * sg_watch.c - the daemon's watcher thread: every ovh.poll_interval it asks
 * the API whether each configured account is blocked for spam and applies
 * the answer to the shared store through the workflow (sg_wf_apply: read,
 * decide, compare-and-set), so every relay (and `sendguardctl status`)
 * sees it and a change is applied once even when relays or sendguardctl
 * race on it.
 *
 * The relay that applied a block logs it at LOG_ALERT (the return to
 * normal at LOG_NOTICE) with the evidence summary, read once per event,
 * runs alert.command with it and, for an account with auto_reply, answers
 * the ticket with the same client and the ticket it already found.
 * With several relays, hooks->try_lock elects the one that polls (a lock
 * with expiry in the store, renewed each round by its holder; without the
 * hook every relay polls, which is correct but costs API calls).
 * Checks are spread over the interval (one account every interval/N), and
 * never faster than WATCH_SHARE a minute, which leaves part of the
 * process's request budget (SG_OVH_BUDGET a minute, ovh/sg_ovh_http.c) to
 * the ticket lookups and the block workflow; when N accounts do not fit in
 * poll_interval at that pace, each is checked every N/WATCH_SHARE minutes
 * instead (logged once per configuration). A check the budget delayed is
 * logged. Once a day the consumer key's expiry is read: a week before it,
 * a warning.
 * Must not: decide a transition itself (sg_wf_decide does: it never lifts
 * a lockdown it did not set, and leaves "password_pending" and
 * "password_failed" locked down until the password task is settled),
 * write a state but through sg_wf_apply, hold a config snapshot across
 * rounds longer than its client needs, or block sg_watch_stop for long
 * (the client's abort hook ends a call in progress).
 */
#include "sg_watch.h"
#include "sg_time.h"
#include "sg_trace.h"

#include "sg_block.h"
#include "sg_log.h"
#include "sg_workflow.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_NO_CONF_MS (60 * 1000)
#define IDLE_MS (3600 * 1000)
#define WATCH_SHARE 50                      /* account checks a minute, at most */
#define CRED_CHECK_MS (24 * 3600 * 1000LL)  /* read the key's expiry this often */
#define CRED_WARN_MS (7 * 24 * 3600 * 1000LL)

struct sg_watch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* on CLOCK_MONOTONIC */
    bool stop, kick;
    atomic_bool stopping;
    sg_conf_t *(*get_conf)(void);
    sg_store_t *store;
    struct sg_watch_hooks hooks;
};

/* Rate limits for repeated failures ("once per outage" style). */
static long last_global_fail, last_account_fail, last_store_fail, last_budget, last_cred;

/* The watcher's part of a transition: on a new block (or a ticket number
 * that came later) find the ticket and its evidence; the note is key=value
 * ("ticket_id=9000003 suspicious=42 headers=yes"), fit for the alert line.
 * Looked up once per round even when the write is decided again after a
 * lost race. A failed lookup is logged on its own line. */
struct watch_fill {
    sg_ovh_t *c;
    sg_store_t *store;
    const struct sg_account *a;
    int64_t looked_up;            /* the ticket number looked up, INT64_MIN: none yet */
    int64_t number;               /* the ticket's number as found, -1 none */
    bool found;                   /* ticket holds the ticket found (auto_reply reuses it) */
    struct sg_ovh_ticket ticket;
    char note[256];
    char trace[512];              /* the ticket's sample traced (sg_trace_token), "" none */
};

/* The ticket's header sample traced to the relays' records (the first
 * support message, else the sample cut from the messages), as one
 * key=value token for the alert (issue 18). */
static void trace_ticket(struct watch_fill *wf, const struct sg_ovh_message *m, size_t nm,
                         const char *sample)
{
    const char *text = sample;
    struct sg_trace_result *r;

    for (size_t i = 0; i < nm; i++)
        if (strcmp(m[i].from, "support") == 0 && m[i].body != NULL) {
            text = m[i].body;
            break;
        }
    if (text == NULL || wf->store == NULL)
        return;
    if ((r = sg_trace_run(wf->store, wf->a->address, NULL, 0, text, sg_time_real_ms())) == NULL)
        return;
    sg_trace_token(r, wf->trace, sizeof(wf->trace));
    free(r);
}

static void note_ticket(struct watch_fill *wf, int64_t number)
{
    struct sg_ovh_ticket t;
    struct sg_ovh_err err;
    struct sg_ovh_message *m = NULL;
    size_t nm = 0;

    if (wf->looked_up == number)
        return;
    wf->looked_up = number;
    wf->number = -1;
    wf->found = false;
    wf->trace[0] = '\0';
    if (sg_ovh_ticket_find(wf->c, wf->a, number, &t, &err) != 0) {
        char msg[700], esc[300];
        snprintf(wf->note, sizeof(wf->note), "ticket_id=- ticket_lookup=failed");
        sg_log(LOG_WARNING, "ovh: account=<%s> spam ticket not found: %s",
               sg_log_esc(esc, sizeof(esc), wf->a->address),
               sg_ovh_strerror(&err, msg, sizeof(msg)));
        return;
    }
    wf->number = t.number;
    wf->found = true;
    wf->ticket = t;
    if (sg_ovh_ticket_messages(wf->c, t.id, &m, &nm, &err) == 0) {
        struct sg_ovh_evidence ev;
        sg_ovh_ticket_evidence(m, nm, &ev);
        trace_ticket(wf, m, nm, ev.headers);
        snprintf(wf->note, sizeof(wf->note), "ticket_id=%" PRId64 " suspicious=%ld headers=%s",
                 t.id, ev.suspicious, ev.headers ? "yes" : "no");
        sg_ovh_evidence_clear(&ev);
        sg_ovh_messages_free(m, nm);
    } else {
        snprintf(wf->note, sizeof(wf->note), "ticket_id=%" PRId64, t.id);
    }
}

static void watch_fill(void *ctx, const struct sg_account_state *cur, const struct sg_wf_step *sp,
                       struct sg_account_state *next)
{
    struct watch_fill *wf = ctx;
    bool legacy = wf->a->offer == SG_OFFER_MXPLAN_LEGACY;

    if (sp->actions & SG_WF_A_TICKET) {
        if (legacy) {
            snprintf(next->note, sizeof(next->note), "ticket_id=- unblock=password_change");
            return;
        }
        note_ticket(wf, next->ticket);
    } else if ((sp->actions & SG_WF_A_FOLLOW) && next->ticket != cur->ticket && !legacy) {
        note_ticket(wf, next->ticket);
    } else {
        return;
    }
    if (next->ticket < 0)
        next->ticket = wf->number;
    snprintf(next->note, sizeof(next->note), "%s", wf->note);
}

/* announce - this relay applied a block or its end: log it with the
 * evidence summary (read once), run alert.command, answer the ticket when
 * the account says auto_reply. */
static void announce(sg_ovh_t *c, sg_store_t *store, const struct sg_settings *s,
                     const struct sg_account *a, const struct sg_ovh_status *st,
                     const struct sg_account_state *next, const struct sg_wf_step *sp,
                     const struct watch_fill *wf, int64_t now_ms)
{
    char esc[300], summary[1024];
    bool blocked = sp->to == SG_WF_BLOCKED;

    sg_log_esc(esc, sizeof(esc), a->address);
    sg_block_summary(store, a->address, now_ms, summary, sizeof(summary));
    if (blocked && wf->trace[0] != '\0') {
        size_t n = strlen(summary);
        snprintf(summary + n, sizeof(summary) - n, "%s%s", n ? " " : "", wf->trace);
    }
    if (blocked)
        sg_log(LOG_ALERT, "ovh: account=<%s> offer=%s event=blocked ticket=%" PRId64
               " state=%s %s%s%s", esc, sg_offer_name(a->offer), next->ticket,
               *st->state ? st->state : "-", next->note, summary[0] ? " " : "", summary);
    else
        sg_log(LOG_NOTICE, "ovh: account=<%s> offer=%s event=unblocked ticket=%" PRId64
               " state=%s", esc, sg_offer_name(a->offer), next->ticket,
               *st->state ? st->state : "-");
    if (s == NULL)
        return;
    sg_block_alert(s, store, a->address, a->offer, blocked ? "blocked" : "unblocked",
                   next->ticket, summary, s->relay_name);
    if (blocked && (sp->actions & SG_WF_A_AUTO_REPLY) && a->auto_reply)
        sg_block_auto_reply(c, store, s, a, st, wf->found ? &wf->ticket : NULL, now_ms);
}

size_t sg_watch_round(sg_ovh_t *c, sg_store_t *store, const struct sg_settings *s,
                      const struct sg_account *accounts, size_t naccounts,
                      const struct sg_watch_hooks *hooks, int64_t now_ms)
{
    size_t failed = 0;
    char esc[300], msg[700];

    for (size_t i = 0; i < naccounts; i++) {
        const struct sg_account *a = &accounts[i];
        struct sg_ovh_status st;
        struct sg_ovh_err err;
        struct sg_account_state next;
        struct sg_wf_step sp;
        struct watch_fill wf = { .c = c, .store = store, .a = a, .looked_up = INT64_MIN,
                                 .number = -1 };
        struct sg_wf_event_in ev;
        int rc;

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
        ev = (struct sg_wf_event_in){
            .event = st.blocked ? SG_WF_EV_API_BLOCKED : SG_WF_EV_API_CLEAR,
            .now_ms = now_ms, .api_state = st.state, .ticket = st.ticket,
            .fill = watch_fill, .ctx = &wf,
        };
        if ((rc = sg_wf_apply(store, a->address, &ev, &sp, &next)) < 0) {
            failed++;
            if (sg_log_ratelimit(&last_store_fail, 3600))
                sg_log(LOG_WARNING, "ovh: account=<%s> store=%s: cannot read or write state", esc,
                       sg_store_name(store));
            continue;
        }
        if (rc == 0 || !(sp.actions & SG_WF_A_ALERT))
            continue;
        /* This relay applied the change: it alone says so. */
        announce(c, store, s, a, &st, &next, &sp, &wf, now_ms);
        if (hooks && hooks->on_change)
            hooks->on_change(hooks->ctx, a, &next);
    }
    return failed;
}

static bool stop_requested(void *ctx)
{
    struct sg_watch *w = ctx;
    return atomic_load(&w->stopping);
}

static sg_ovh_t *make_client(struct sg_watch *w, const struct sg_settings *s)
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

/* wait_until - sleep to the monotonic deadline; false on stop or kick
 * (*kicked says which). */
static bool wait_until(struct sg_watch *w, int64_t until, bool *kicked)
{
    bool ok;

    pthread_mutex_lock(&w->mu);
    while (!w->stop && !w->kick && sg_time_mono_ms() < until) {
        struct timespec ts = { (time_t)(until / 1000), (long)(until % 1000) * 1000000L };
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
    }
    ok = !w->stop && !w->kick;
    *kicked = w->kick;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

/* check_credential - once a day: warn a week before the consumer key expires */
static void check_credential(sg_ovh_t *c, int64_t *next_ms)
{
    struct sg_ovh_current cur;
    struct sg_ovh_err e;
    char msg[700];

    if (sg_time_mono_ms() < *next_ms)
        return;
    *next_ms = sg_time_mono_ms() + CRED_CHECK_MS;
    if (sg_ovh_current_credential(c, &cur, &e) != 0) {
        if (sg_log_ratelimit(&last_cred, 24 * 3600))
            sg_log(LOG_INFO, "ovh: cannot read the consumer key's expiry: %s",
                   sg_ovh_strerror(&e, msg, sizeof(msg)));
        return;
    }
    int64_t left = cur.expires_ms >= 0 ? cur.expires_ms - sg_time_real_ms() : -1;
    if (cur.expires_ms >= 0 && left < CRED_WARN_MS)
        sg_log(LOG_WARNING, "ovh: the consumer key %s %s (in %lld hours): request a new one "
               "with `sendguardctl ovh credential` and put it in ovh.conf",
               left > 0 ? "expires on" : "expired on", cur.expiration,
               (long long)(left > 0 ? left / 3600000 : 0));
    sg_ovh_current_clear(&cur);
}

static void *watch_main(void *arg)
{
    struct sg_watch *w = arg;
    sg_ovh_t *client = NULL;
    sg_conf_t *client_conf = NULL;      /* the snapshot the client was made from */
    sg_conf_t *warned_conf = NULL;      /* the config the pace warning was logged for */
    int64_t next = 0;                   /* monotonic ms of the next round */
    int64_t cred_next = 0;              /* monotonic ms of the next key expiry check */
    bool kicked;

    for (;;) {
        if (!wait_until(w, next, &kicked) && !kicked)
            break;                      /* stop */
        pthread_mutex_lock(&w->mu);
        w->kick = false;
        pthread_mutex_unlock(&w->mu);

        sg_conf_t *conf = w->get_conf();
        if (!conf) {
            next = sg_time_mono_ms() + RETRY_NO_CONF_MS;
            continue;
        }
        const struct sg_settings *s = sg_conf_settings(conf);
        uint64_t interval = s->ovh_poll_interval_ms;
        size_t nacc = 0;
        for (size_t i = 0; i < s->naccounts; i++)
            nacc += s->accounts[i].offer != SG_OFFER_NONE;
        if (interval == 0 || nacc == 0) {      /* nothing to watch: no client, no error */
            sg_conf_unref(conf);
            next = sg_time_mono_ms() + IDLE_MS;       /* off: wait for a reload's kick */
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
        /* One account every `spacing`: spread over the interval, at most
         * WATCH_SHARE a minute. */
        int64_t spacing = (int64_t)(interval / nacc);
        int64_t min_spacing = sg_ovh_budget_minute_ms() / WATCH_SHARE;
        if (spacing < min_spacing)
            spacing = min_spacing;
        int64_t cycle = spacing * (int64_t)nacc;
        if (cycle > (int64_t)interval && warned_conf != conf) {
            warned_conf = conf;
            sg_log(LOG_WARNING, "ovh: %zu accounts every %llu s would take %llu API calls a "
                   "minute; OVHcloud advises staying under %d: each account is checked every "
                   "%lld s instead (raise ovh.poll_interval to silence this)", nacc,
                   (unsigned long long)(interval / 1000),
                   (unsigned long long)(nacc * 60000 / (interval ? interval : 1)), SG_OVH_BUDGET,
                   (long long)((cycle + 999) / 1000));
        }
        /* The holder renews the lock every cycle, so it keeps it; it lives
         * 1.5 cycles, so another relay takes over half a cycle after the
         * holder stopped renewing (at once after a clean stop: unlock). */
        bool mine = !w->hooks.try_lock || w->hooks.try_lock(w->hooks.ctx, (uint64_t)cycle * 3 / 2);
        int64_t start = sg_time_mono_ms();
        bool interrupted = false;
        if (client && mine) {
            size_t failed = 0, k = 0;
            check_credential(client, &cred_next);
            for (size_t i = 0; i < s->naccounts; i++) {
                const struct sg_account *a = &s->accounts[i];
                if (a->offer == SG_OFFER_NONE)
                    continue;
                if (k > 0 && !wait_until(w, start + (int64_t)k * spacing, &kicked)) {
                    interrupted = true;
                    break;
                }
                k++;
                size_t f = sg_watch_round(client, w->store, s, a, 1, &w->hooks,
                                              sg_time_real_ms());
                failed += f;
                int64_t waited = sg_ovh_budget_waited(client);
                if (waited > 0 && sg_log_ratelimit(&last_budget, 60)) {
                    char esc[300];
                    sg_log(LOG_INFO, "ovh: account=<%s> check delayed %lld ms by the API request "
                           "budget (%d a minute)", sg_log_esc(esc, sizeof(esc), a->address),
                           (long long)waited, SG_OVH_BUDGET);
                }
                if (atomic_load(&w->stopping)) {
                    interrupted = true;
                    break;
                }
            }
            if (!interrupted && failed == nacc) {
                /* Nothing worked: start from fresh credentials next time. */
                sg_ovh_free(client);
                client = NULL;
            }
        }
        sg_conf_unref(conf);
        if (interrupted)
            next = 0;                   /* a kick: a new round now; a stop: the loop ends */
        else
            next = start + (cycle > (int64_t)interval ? cycle : (int64_t)interval);
    }
    if (w->hooks.unlock)
        w->hooks.unlock(w->hooks.ctx);
    sg_ovh_free(client);
    if (client_conf)
        sg_conf_unref(client_conf);
    return NULL;
}

sg_watch_t *sg_watch_start(sg_conf_t *(*get_conf)(void), sg_store_t *store,
                           const struct sg_watch_hooks *hooks, char *err, size_t errlen)
{
    struct sg_watch *w;
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

void sg_watch_kick(sg_watch_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->kick = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void sg_watch_stop(sg_watch_t *w)
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
