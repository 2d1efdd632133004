/*
 * sg_jobs.c - background work of the daemon: starts the OVHcloud watcher
 * thread (workflow/sg_watch: it applies, alerts and answers the blocks
 * itself; here only its election by a store lock, so one relay polls, and
 * its wake-up of the release), and the release thread that hands the queue ids this relay held back to
 * the root release helper (release_helper), or to release_command itself,
 * once the account's lockdown is off.
 *
 * Must not: run in a libmilter callback's thread (sg_jobs_follow only
 * notes an account name in memory), release mail of an account still locked down, or record or
 * pass on anything but a Postfix/Sendmail queue id (the {i} macro comes
 * from the MTA, the store from whoever can write Redis: both are checked).
 */
#include "sg_time.h"
#include "sg_jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sg_block.h"
#include "sg_conf.h"
#include "sg_log.h"
#include "sg_release.h"
#include "sg_run.h"
#include "sg_watch.h"

#define RELEASE_EVERY_S 2
#define POLL_LOCK "ovh-poll"

static struct {
    sg_store_t *store, *fallback;
    sg_watch_t *watch;
    pthread_t thr;
    bool running, stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char relay[256], owner[320];
    char **extra;                 /* accounts no config names that this relay held mail for */
    size_t nextra;
} J = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static long last_release_fail;

/* --- watcher hooks ------------------------------------------------------- */

static bool hook_try_lock(void *ctx, uint64_t ttl_ms)
{
    (void)ctx;
    return sg_store_lock(J.store, POLL_LOCK, J.owner, ttl_ms) == 1;
}

static void hook_unlock(void *ctx)
{
    (void)ctx;
    sg_store_lock(J.store, POLL_LOCK, J.owner, 0);
}

/* The watcher applied a change (and alerted, and answered the ticket for
 * an account with auto_reply): release held mail now, not in 2 s. */
static void hook_on_change(void *ctx, const struct sg_account *a,
                           const struct sg_account_state *st)
{
    (void)ctx, (void)a, (void)st;
    pthread_mutex_lock(&J.mu);
    pthread_cond_signal(&J.cv);
    pthread_mutex_unlock(&J.mu);
}

/* --- release ------------------------------------------------------------- */

/* Drop from q the entries that are not queue ids (the store can be written
 * by others than us): logged, and removed from the store so they are not
 * met again. Returns the number kept (moved to the front). */
static size_t keep_valid(sg_store_t *st, const char *account, char **q, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (sg_release_qid_valid(q[i])) {
            char *t = q[k];
            q[k++] = q[i];
            q[i] = t;
            continue;
        }
        char esc[200], aesc[400];
        sg_log(LOG_WARNING, "release: account=<%s>: the store holds qid=%s, which is not a "
               "queue id: dropped from the held list, not released",
               sg_log_esc(aesc, sizeof(aesc), account), sg_log_esc(esc, sizeof(esc), q[i]));
        sg_store_held_del(st, account, J.relay, (const char *const *)&q[i], 1);
    }
    return k;
}

/* Run release_command ourselves with the ids on its stdin (when the daemon
 * runs as root, or the command needs no root). */
static int release_run(const struct sg_settings *s, char **q, size_t n, char *out, size_t outlen)
{
    size_t len = 0, o = 0;
    char *input;
    int rc;

    for (size_t i = 0; i < n; i++)
        len += strlen(q[i]) + 1;
    if ((input = malloc(len + 1)) == NULL) {
        snprintf(out, outlen, "out of memory");
        return -1;
    }
    input[0] = '\0';
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(input + o, "%s\n", q[i]);
    rc = sg_run(s->release_command, s->nrelease_command, NULL, 0, input, 60, out, outlen);
    free(input);
    return rc;
}

/* Hand this relay's held queue ids of one account, recorded in st, to the
 * release helper or release_command. The lockdown is always read from the
 * configured store (J.store), which is where the watcher and sendguardctl
 * write it, also for ids that had to be recorded in the fallback:
 * unreadable means still held. */
static void release_account(const struct sg_settings *s, sg_store_t *st, const char *account)
{
    struct sg_account_state state;
    char **q = NULL, out[512], esc[400], detail[320];
    size_t n = 0, nall;
    int rc;

    if (sg_store_held_list(st, account, J.relay, &q, &n) != 0 || n == 0)
        return;
    if (sg_store_state_get(J.store, account, &state) != 0 || state.blocked) {
        sg_store_strv_free(q, n);
        return;
    }
    nall = n;
    if ((n = keep_valid(st, account, q, n)) == 0) {
        sg_store_strv_free(q, nall);
        return;
    }
    if (n > SG_RELEASE_MAX_IDS)
        n = SG_RELEASE_MAX_IDS;                    /* the rest at the next round */
    out[0] = '\0';
    if (s->release_helper != NULL)
        rc = sg_release_ask(s->release_helper, (const char *const *)q, n, 75, out, sizeof(out));
    else
        rc = release_run(s, q, n, out, sizeof(out));
    sg_log_esc(esc, sizeof(esc), account);
    if (rc == 0 && sg_store_held_del(st, account, J.relay, (const char *const *)q, n) == 0) {
        sg_log(LOG_NOTICE, "released account=<%s> relay=%s messages=%zu", esc, J.relay, n);
        snprintf(detail, sizeof(detail), "messages=%zu relay=%s", n, J.relay);
        sg_block_audit("sendguard", "release", account, detail);
    } else if (sg_log_ratelimit(&last_release_fail, 300)) {
        char o[600];
        sg_log(LOG_ERR, "release of %zu held messages of account=<%s> failed (%s %d): %s;"
               " will retry", n, esc, s->release_helper ? "helper" : "status", rc,
               sg_log_esc(o, sizeof(o), out));
    }
    sg_store_strv_free(q, nall);
}

static void *release_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&J.mu);
    while (!J.stop) {
        struct timespec ts;
        sg_conf_t *conf;
        const struct sg_settings *s;

        pthread_mutex_unlock(&J.mu);
        conf = sg_conf_current();
        s = sg_conf_settings(conf);
        for (size_t i = 0; i < s->naccounts; i++) {
            release_account(s, J.store, s->accounts[i].address);
            if (J.fallback != J.store)
                release_account(s, J.fallback, s->accounts[i].address);
        }
        pthread_mutex_lock(&J.mu);
        for (size_t i = 0; i < J.nextra; i++) {
            char *acct = strdup(J.extra[i]);
            pthread_mutex_unlock(&J.mu);
            if (acct != NULL) {
                release_account(s, J.store, acct);
                release_account(s, J.fallback, acct);
                free(acct);
            }
            pthread_mutex_lock(&J.mu);
        }
        pthread_mutex_unlock(&J.mu);
        sg_conf_unref(conf);
        pthread_mutex_lock(&J.mu);
        if (J.stop)
            break;
        ts = sg_time_deadline(RELEASE_EVERY_S * 1000);
        pthread_cond_timedwait(&J.cv, &J.mu, &ts);
    }
    pthread_mutex_unlock(&J.mu);
    return NULL;
}

void sg_jobs_follow(const char *account)
{
    sg_conf_t *conf = sg_conf_current();
    bool known = sg_conf_find_account(conf, account) != NULL;
    char **v;

    sg_conf_unref(conf);
    if (known)
        return;
    pthread_mutex_lock(&J.mu);
    for (size_t i = 0; i < J.nextra; i++)
        if (strcmp(J.extra[i], account) == 0)
            known = true;
    if (!known && J.nextra < 1024 && (v = realloc(J.extra, (J.nextra + 1) * sizeof(*v)))) {
        J.extra = v;
        if ((v[J.nextra] = strdup(account)) != NULL)
            J.nextra++;
    }
    pthread_mutex_unlock(&J.mu);
}

/* --- lifecycle ----------------------------------------------------------- */

void sg_jobs_start(sg_store_t *primary, sg_store_t *fallback, const char *relay)
{
    struct sg_watch_hooks hooks = {
        .try_lock = hook_try_lock, .unlock = hook_unlock, .on_change = hook_on_change,
        .ctx = NULL,
    };
    char err[256];

    /* Nothing is read relative to where the daemon was started: the
     * standard ovh.conf lookup (ovh.credentials unset) would read
     * ./ovh.conf, a file whoever owns that directory writes. */
    if (chdir("/") != 0)
        sg_log(LOG_WARNING, "chdir /: %s", strerror(errno));
    J.store = primary;
    J.fallback = fallback;
    snprintf(J.relay, sizeof(J.relay), "%s", relay);
    snprintf(J.owner, sizeof(J.owner), "%s:%ld", relay, (long)getpid());
    J.watch = sg_watch_start(sg_conf_current, primary, &hooks, err, sizeof(err));
    if (J.watch == NULL)
        sg_log(LOG_ERR, "OVHcloud watcher not started: %s", err);
    J.stop = false;
    J.running = pthread_create(&J.thr, NULL, release_thread, NULL) == 0;
    if (!J.running)
        sg_log(LOG_ERR, "release thread not started: held mail must be released by hand");
}

void sg_jobs_reloaded(void)
{
    if (J.watch != NULL)
        sg_watch_kick(J.watch);
}

void sg_jobs_stop(void)
{
    sg_watch_stop(J.watch);
    J.watch = NULL;
    if (J.running) {
        pthread_mutex_lock(&J.mu);
        J.stop = true;
        pthread_cond_signal(&J.cv);
        pthread_mutex_unlock(&J.mu);
        pthread_join(J.thr, NULL);
        J.running = false;
    }
    for (size_t i = 0; i < J.nextra; i++)
        free(J.extra[i]);
    free(J.extra);
    J.extra = NULL;
    J.nextra = 0;
}
