/*
 * sg_metrics.c - counters kept by the milter threads (lock-free where they
 * are hot: one atomic add per decision), and the writer thread that turns
 * them into a Prometheus text exposition file for node_exporter's textfile
 * collector, replaced atomically (a temporary file in the same directory,
 * fsync, rename) every metrics.interval.
 *
 * Must not: open a listening socket, block a milter thread on the store
 * (only the writer thread reads it), follow a symlink where it writes, or
 * put anything but configured account names and limit names in labels
 * (bounded cardinality).
 */
#include "sg_metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sg_log.h"
#include "sg_time.h"

#define NBUCKETS 13
static const double bucket_le[NBUCKETS] = {   /* seconds */
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0
};

struct histogram {
    atomic_ulong bucket[NBUCKETS + 1];        /* last: +Inf */
    atomic_ullong sum_ns;
};

#define MAX_SERIES 512                        /* decision series (action x limit x mode) */
struct series {
    enum sg_action action;
    bool observed;
    char limit[64];
    atomic_ulong n;
};

#define NAPI 4
static const char *const api_results[NAPI] = { "ok", "client_error", "server_error", "failed" };

static struct {
    pthread_mutex_t mu;                       /* series table growth; writer */
    struct series series[MAX_SERIES];
    atomic_size_t nseries;
    atomic_ulong overflow;                    /* decisions past MAX_SERIES series */
    struct histogram decision, store;
    atomic_ulong store_errors, store_fallback;
    atomic_int store_up;
    atomic_ulong reloads_ok, reloads_failed;
    atomic_ulong api[NAPI];
    /* writer */
    pthread_t thr;
    pthread_cond_t cv;
    bool running, stop, wake;
    sg_store_t *primary;
    char relay[256];
} M = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .store_up = 1 };

static void observe(struct histogram *h, double ms)
{
    double s = ms / 1000.0;
    int i = 0;

    while (i < NBUCKETS && s > bucket_le[i])
        i++;
    atomic_fetch_add(&h->bucket[i], 1);
    atomic_fetch_add(&h->sum_ns, (unsigned long long)(ms * 1e6));
}

static struct series *find_series(enum sg_action a, bool observed, const char *limit)
{
    size_t n = atomic_load(&M.nseries);

    for (size_t i = 0; i < n; i++)
        if (M.series[i].action == a && M.series[i].observed == observed &&
            strcmp(M.series[i].limit, limit) == 0)
            return &M.series[i];
    return NULL;
}

void sg_metrics_decision(const struct sg_verdict *v, double decision_ms, double store_ms)
{
    const char *limit = v->limit != NULL && v->action != SG_ACT_ACCEPT ? v->limit->name : "";
    struct series *s = find_series(v->action, v->observed, limit);

    if (s == NULL) {
        pthread_mutex_lock(&M.mu);
        s = find_series(v->action, v->observed, limit);
        if (s == NULL && atomic_load(&M.nseries) < MAX_SERIES) {
            s = &M.series[atomic_load(&M.nseries)];
            s->action = v->action;
            s->observed = v->observed;
            snprintf(s->limit, sizeof(s->limit), "%s", limit);
            atomic_fetch_add(&M.nseries, 1);      /* published after the fields */
        }
        pthread_mutex_unlock(&M.mu);
    }
    if (s != NULL)
        atomic_fetch_add(&s->n, 1);
    else
        atomic_fetch_add(&M.overflow, 1);
    observe(&M.decision, decision_ms);
    if (store_ms >= 0)
        observe(&M.store, store_ms);
    if (v->store_error) {
        atomic_fetch_add(&M.store_errors, 1);
        if (strcmp(v->store, "none") != 0)
            atomic_fetch_add(&M.store_fallback, 1);
    }
    atomic_store(&M.store_up, v->store_error ? 0 : 1);
}

void sg_metrics_reload(bool ok)
{
    atomic_fetch_add(ok ? &M.reloads_ok : &M.reloads_failed, 1);
}

void sg_metrics_api_call(const char *result)
{
    for (int i = 0; i < NAPI; i++)
        if (strcmp(result, api_results[i]) == 0) {
            atomic_fetch_add(&M.api[i], 1);
            return;
        }
}

/* --- exposition --------------------------------------------------------- */

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f), fputc(*v, f);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void histogram(FILE *f, const char *name, const char *help, struct histogram *h)
{
    unsigned long cum = 0;

    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i <= NBUCKETS; i++) {
        cum += atomic_load(&h->bucket[i]);
        if (i < NBUCKETS)
            fprintf(f, "%s_bucket{le=\"%g\"} %lu\n", name, bucket_le[i], cum);
        else
            fprintf(f, "%s_bucket{le=\"+Inf\"} %lu\n", name, cum);
    }
    fprintf(f, "%s_sum %.9f\n%s_count %lu\n", name,
            (double)atomic_load(&h->sum_ns) / 1e9, name, cum);
}

static double usage_ratio(const struct sg_limit *l, const struct sg_usage *u)
{
    double r = 0;

    for (int k = 0; k < SG_UNIT_COUNT; k++)
        if (l->cap[k] != 0 && (double)u->used[k] / (double)l->cap[k] > r)
            r = (double)u->used[k] / (double)l->cap[k];
    return r;
}

/* The configured accounts, read from the store: block state, this relay's
 * held messages, usage of each limit. */
static void accounts(FILE *f, const struct sg_settings *s, sg_store_t *st, const char *relay)
{
    size_t nblocked = 0, nheld = 0;

    fputs("# HELP sendguard_account_blocked 1 when the account is blocked or locked down.\n"
          "# TYPE sendguard_account_blocked gauge\n", f);
    for (size_t i = 0; i < s->naccounts; i++) {
        struct sg_account_state as = { 0 };
        int ok = sg_store_state_get(st, s->accounts[i].address, &as) == 0;

        fputs("sendguard_account_blocked{account=\"", f);
        label(f, s->accounts[i].address);
        fprintf(f, "\"} %s\n", ok ? (as.blocked ? "1" : "0") : "NaN");
        nblocked += ok && as.blocked;
    }
    fputs("# HELP sendguard_held_messages Messages this relay holds for a blocked account.\n"
          "# TYPE sendguard_held_messages gauge\n", f);
    for (size_t i = 0; i < s->naccounts; i++) {
        char **ids = NULL;
        size_t n = 0;
        int ok = sg_store_held_list(st, s->accounts[i].address, relay, &ids, &n) == 0;

        fputs("sendguard_held_messages{account=\"", f);
        label(f, s->accounts[i].address);
        if (ok)
            fprintf(f, "\"} %zu\n", n);
        else
            fputs("\"} NaN\n", f);
        nheld += ok ? n : 0;
        sg_store_strv_free(ids, n);
    }
    fprintf(f, "# HELP sendguard_accounts_blocked Configured accounts blocked or locked down.\n"
               "# TYPE sendguard_accounts_blocked gauge\nsendguard_accounts_blocked %zu\n"
               "# HELP sendguard_held_messages_total_current Messages held by this relay, all "
               "accounts.\n# TYPE sendguard_held_messages_total_current gauge\n"
               "sendguard_held_messages_total_current %zu\n", nblocked, nheld);
    fputs("# HELP sendguard_limit_usage_ratio Usage of a limit in its window over its cap "
          "(the fullest unit).\n# TYPE sendguard_limit_usage_ratio gauge\n", f);
    for (size_t i = 0; i < s->naccounts; i++) {
        const struct sg_account *a = &s->accounts[i];
        struct sg_usage u[SG_STORE_MAX_LIMITS];

        if (a->nlimits == 0 || a->nlimits > SG_STORE_MAX_LIMITS ||
            sg_store_usage(st, a->address, a->limits, a->nlimits, u) != 0)
            continue;
        for (size_t j = 0; j < a->nlimits; j++) {
            fputs("sendguard_limit_usage_ratio{account=\"", f);
            label(f, a->address);
            fputs("\",limit=\"", f);
            label(f, a->limits[j].name);
            fprintf(f, "\"} %.4f\n", usage_ratio(&a->limits[j], &u[j]));
        }
    }
}

static void expose(FILE *f, const struct sg_settings *s)
{
    size_t n = atomic_load(&M.nseries);

    fprintf(f, "# HELP sendguard_build_info The running sendguard.\n"
               "# TYPE sendguard_build_info gauge\n"
               "sendguard_build_info{version=\"%s\",store=\"%s\"} 1\n", SG_VERSION,
            sg_store_name(M.primary));
    fputs("# HELP sendguard_decisions_total Decisions by action and limit; observe=\"1\": "
          "mode observe, the message was accepted.\n# TYPE sendguard_decisions_total counter\n", f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "sendguard_decisions_total{action=\"%s\",limit=\"",
                sg_action_name(M.series[i].action));
        label(f, M.series[i].limit);
        fprintf(f, "\",observe=\"%d\"} %lu\n", M.series[i].observed,
                atomic_load(&M.series[i].n));
    }
    fprintf(f, "# HELP sendguard_decisions_unlabelled_total Decisions past the series bound.\n"
               "# TYPE sendguard_decisions_unlabelled_total counter\n"
               "sendguard_decisions_unlabelled_total %lu\n", atomic_load(&M.overflow));
    histogram(f, "sendguard_decision_duration_seconds",
              "Time from end of message to the verdict.", &M.decision);
    histogram(f, "sendguard_store_roundtrip_seconds",
              "Time of the store call of a decision (one EVALSHA with Redis).", &M.store);
    fprintf(f, "# HELP sendguard_store_errors_total Decisions the configured store failed.\n"
               "# TYPE sendguard_store_errors_total counter\nsendguard_store_errors_total %lu\n"
               "# HELP sendguard_store_fallback_total Of those, decided by the in-process "
               "memory store.\n# TYPE sendguard_store_fallback_total counter\n"
               "sendguard_store_fallback_total %lu\n"
               "# HELP sendguard_store_up 0 while the configured store fails (circuit breaker "
               "open), else 1.\n# TYPE sendguard_store_up gauge\nsendguard_store_up %d\n",
            atomic_load(&M.store_errors), atomic_load(&M.store_fallback),
            atomic_load(&M.store_up));
    fputs("# HELP sendguard_api_calls_total OVHcloud API calls by result.\n"
          "# TYPE sendguard_api_calls_total counter\n", f);
    for (int i = 0; i < NAPI; i++)
        fprintf(f, "sendguard_api_calls_total{result=\"%s\"} %lu\n", api_results[i],
                atomic_load(&M.api[i]));
    fprintf(f, "# HELP sendguard_config_reloads_total Configuration reloads by result.\n"
               "# TYPE sendguard_config_reloads_total counter\n"
               "sendguard_config_reloads_total{result=\"ok\"} %lu\n"
               "sendguard_config_reloads_total{result=\"failed\"} %lu\n",
            atomic_load(&M.reloads_ok), atomic_load(&M.reloads_failed));
    accounts(f, s, M.primary, M.relay);
    fprintf(f, "# HELP sendguard_metrics_written_timestamp_seconds When this file was written.\n"
               "# TYPE sendguard_metrics_written_timestamp_seconds gauge\n"
               "sendguard_metrics_written_timestamp_seconds %lld\n",
            (long long)(sg_time_real_ms() / 1000));
}

/* Write path atomically: a new file beside it, never through a symlink. */
static int write_file(const char *path, const char *text, size_t len)
{
    char tmp[4096];
    int fd;

    if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof(tmp))
        return -1;
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static long warned_write;

static void write_once(void)
{
    sg_conf_t *conf = sg_conf_current();
    const struct sg_settings *s = sg_conf_settings(conf);
    char *buf = NULL;
    size_t len = 0;
    FILE *f;

    if (s->metrics_textfile != NULL && (f = open_memstream(&buf, &len)) != NULL) {
        expose(f, s);
        if (fclose(f) == 0 && write_file(s->metrics_textfile, buf, len) != 0 &&
            sg_log_ratelimit(&warned_write, 3600))
            sg_log(LOG_WARNING, "metrics: cannot write %s: %s (its directory must be "
                   "writable by sendguard's user)", s->metrics_textfile, strerror(errno));
    }
    free(buf);
    sg_conf_unref(conf);
}

static void *writer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&M.mu);
    while (!M.stop) {
        sg_conf_t *conf;
        struct timespec until;
        long long iv;

        M.wake = false;
        pthread_mutex_unlock(&M.mu);
        write_once();
        conf = sg_conf_current();
        iv = sg_conf_settings(conf)->metrics_interval_ms;
        sg_conf_unref(conf);
        until = sg_time_deadline(iv);
        pthread_mutex_lock(&M.mu);
        while (!M.stop && !M.wake &&
               pthread_cond_timedwait(&M.cv, &M.mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&M.mu);
    write_once();                 /* the last figures */
    return NULL;
}

void sg_metrics_start(sg_store_t *primary, const char *relay)
{
    M.primary = primary;
    snprintf(M.relay, sizeof(M.relay), "%s", relay);
    M.stop = false;
    if (pthread_create(&M.thr, NULL, writer, NULL) != 0)
        sg_log(LOG_ERR, "metrics: cannot start the writer thread");
    else
        M.running = true;
}

void sg_metrics_reloaded(void)
{
    pthread_mutex_lock(&M.mu);
    M.wake = true;
    pthread_cond_signal(&M.cv);
    pthread_mutex_unlock(&M.mu);
}

void sg_metrics_stop(void)
{
    if (!M.running)
        return;
    pthread_mutex_lock(&M.mu);
    M.stop = true;
    pthread_cond_signal(&M.cv);
    pthread_mutex_unlock(&M.mu);
    pthread_join(M.thr, NULL);
    M.running = false;
}
