/*
 * ctl_suggest.c - sendguardctl suggest-limits: limits drawn from the
 * traffic the store has seen. For each configured account, the hourly
 * counts the decide script keeps (15 days, messages tried = accepted +
 * refused, and recipients) give its busiest hour and day, the 99th
 * percentile of its hours, and a proposed `limits` block: the observed peak
 * with headroom, never above the ceilings the postmaster gives. A day far
 * above the account's usual days (a compromise, a runaway script) is
 * flagged and left out, so a bad day is never learned as normal.
 *
 * Must not: change anything (it only reads), or propose a limit above a
 * ceiling.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <jansson.h>

#include "ctl.h"
#include "sg_store.h"
#include "sg_time.h"

#define HOUR_MS 3600000LL
#define MAX_DAYS 14
#define ODD_FACTOR 4.0            /* a day above 4x the median day, ... */
#define ODD_MIN 50                /* ... above 50 messages and unlike any other is flagged */

struct hist {
    int64_t first_hour;           /* hour index of msgs[0] */
    int nhours;
    uint64_t msgs[MAX_DAYS * 24], rcpts[MAX_DAYS * 24];
};

struct suggestion {
    const char *account;
    int days;
    uint64_t total, peak_hour, peak_hour_rcpts, peak_day, peak_day_rcpts, p99_hour;
    int64_t peak_hour_at, peak_day_at;    /* hour index, day index */
    int nflagged;
    int64_t flagged_day[MAX_DAYS];
    uint64_t flagged_msgs[MAX_DAYS];
    uint64_t hourly_msgs, hourly_rcpts, daily_msgs, daily_rcpts;   /* proposal */
    bool capped;                  /* a ceiling cut the proposal */
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The hourly counts of one account out of its evidence. */
static int load_hist(sg_store_t *st, const char *account, int days, int64_t now_hour,
                     struct hist *h)
{
    struct sg_evidence_report ev;

    memset(h, 0, sizeof(*h));
    /* whole UTC days: the last `days` of them, today included */
    h->first_hour = (now_hour / 24 - days + 1) * 24;
    h->nhours = (int)(now_hour - h->first_hour + 1);
    if (sg_store_evidence_get(st, account, &ev) != 0)
        return -1;
    for (size_t i = 0; i < ev.nhours; i++) {
        const struct sg_ev_hour *x = &ev.hours[i];

        if (x->hour < h->first_hour || x->hour > now_hour)
            continue;
        h->msgs[x->hour - h->first_hour] = x->messages + x->refused;
        h->rcpts[x->hour - h->first_hour] = x->recipients;
    }
    sg_evidence_report_free(&ev);
    return 0;
}

static uint64_t up(double v)
{
    return v <= 0 ? 0 : (uint64_t)ceil(v);
}

static uint64_t ceiling(uint64_t v, uint64_t max, bool *capped)
{
    if (max != 0 && v > max) {
        *capped = true;
        return max;
    }
    return v;
}

static void analyse(const struct hist *h, double headroom, uint64_t max_hourly,
                    uint64_t max_daily, struct suggestion *g)
{
    int ndays = (h->nhours + 23) / 24;
    uint64_t day[MAX_DAYS] = { 0 }, dayr[MAX_DAYS] = { 0 }, sorted[MAX_DAYS];
    uint64_t hours[MAX_DAYS * 24];
    bool odd[MAX_DAYS] = { false };
    size_t nh = 0;
    double median;

    g->days = ndays;
    for (int i = 0; i < h->nhours; i++) {
        day[i / 24] += h->msgs[i];
        dayr[i / 24] += h->rcpts[i];
        g->total += h->msgs[i];
    }
    memcpy(sorted, day, sizeof(sorted));
    qsort(sorted, (size_t)ndays, sizeof(sorted[0]), cmp_u64);
    median = ndays % 2 ? (double)sorted[ndays / 2]
                       : ((double)sorted[ndays / 2 - 1] + (double)sorted[ndays / 2]) / 2;
    /* A day far above the usual ones (4x the median day) that no other day
     * comes near (within a factor 2) is an accident, not a pattern: a
     * weekly newsletter's days recur, a compromise does not. */
    for (int d = 0; d < ndays; d++) {
        int alike = 0;

        if (day[d] <= ODD_MIN || (double)day[d] <= ODD_FACTOR * (median > 1 ? median : 1))
            continue;
        for (int e = 0; e < ndays; e++)
            alike += e != d && 2 * day[e] >= day[d];
        if (alike == 0) {
            odd[d] = true;
            g->flagged_day[g->nflagged] = (h->first_hour / 24) + d;
            g->flagged_msgs[g->nflagged++] = day[d];
        }
    }
    for (int i = 0; i < h->nhours; i++) {
        if (odd[i / 24])
            continue;
        hours[nh++] = h->msgs[i];
        if (h->msgs[i] > g->peak_hour) {
            g->peak_hour = h->msgs[i];
            g->peak_hour_at = h->first_hour + i;
        }
        if (h->rcpts[i] > g->peak_hour_rcpts)
            g->peak_hour_rcpts = h->rcpts[i];
    }
    for (int d = 0; d < ndays; d++) {
        if (odd[d])
            continue;
        if (day[d] > g->peak_day) {
            g->peak_day = day[d];
            g->peak_day_at = h->first_hour / 24 + d;
        }
        if (dayr[d] > g->peak_day_rcpts)
            g->peak_day_rcpts = dayr[d];
    }
    if (nh > 0) {
        qsort(hours, nh, sizeof(hours[0]), cmp_u64);
        g->p99_hour = hours[(size_t)ceil(0.99 * (double)nh) - 1];
    }
    /* the peak with headroom; at least a few messages so a quiet account
     * can still send a reply or two */
    g->hourly_msgs = ceiling(up((double)g->peak_hour * headroom) > 10 ?
                             up((double)g->peak_hour * headroom) : 10, max_hourly, &g->capped);
    g->hourly_rcpts = up((double)g->peak_hour_rcpts * headroom) > 20 ?
                      up((double)g->peak_hour_rcpts * headroom) : 20;
    g->daily_msgs = ceiling(up((double)g->peak_day * headroom) > 50 ?
                            up((double)g->peak_day * headroom) : 50, max_daily, &g->capped);
    if (g->daily_msgs < g->hourly_msgs)
        g->daily_msgs = g->hourly_msgs;
    g->daily_rcpts = up((double)g->peak_day_rcpts * headroom) > 100 ?
                     up((double)g->peak_day_rcpts * headroom) : 100;
}

static void utc_day(int64_t day, char *buf, size_t size)
{
    sg_time_utc(buf, size, day * 86400000, "%Y-%m-%d");
}

static void utc_hour(int64_t hour, char *buf, size_t size)
{
    sg_time_utc(buf, size, hour * 3600000, "%Y-%m-%d %H:00");
}

static void print_text(const struct suggestion *g)
{
    char hbuf[32], dbuf[32];

    utc_hour(g->peak_hour_at, hbuf, sizeof(hbuf));
    utc_day(g->peak_day_at, dbuf, sizeof(dbuf));
    printf("account %s: %llu messages in %d days\n", g->account,
           (unsigned long long)g->total, g->days);
    printf("  busiest hour: %llu messages (%s UTC); busiest day: %llu messages (%s)\n",
           (unsigned long long)g->peak_hour, g->peak_hour ? hbuf : "-",
           (unsigned long long)g->peak_day, g->peak_day ? dbuf : "-");
    printf("  99th percentile of its hours: %llu messages\n", (unsigned long long)g->p99_hour);
    for (int i = 0; i < g->nflagged; i++) {
        utc_day(g->flagged_day[i], dbuf, sizeof(dbuf));
        printf("  FLAGGED %s: %llu messages, far above its usual days (a compromise? a runaway "
               "script?): left out of the proposal; `sendguardctl report %s` for the evidence\n",
               dbuf, (unsigned long long)g->flagged_msgs[i], g->account);
    }
    if (g->capped)
        printf("  the observed peak with headroom is above your ceiling: the ceiling is proposed\n");
    printf("  proposed, inside its accounts entry:\n"
           "    limits = (\n"
           "      { name = \"hourly\"; window = \"1h\"; messages = %llu; recipients = %llu; "
           "action = \"tempfail\"; },\n"
           "      { name = \"daily\";  window = \"1d\"; messages = %llu; recipients = %llu; "
           "action = \"tempfail\"; }\n"
           "    );\n",
           (unsigned long long)g->hourly_msgs, (unsigned long long)g->hourly_rcpts,
           (unsigned long long)g->daily_msgs, (unsigned long long)g->daily_rcpts);
}

static json_t *to_json(const struct suggestion *g)
{
    json_t *flagged = json_array();

    for (int i = 0; i < g->nflagged; i++)
        json_array_append_new(flagged, json_pack("{s:I,s:I}", "day_start_s",
                                                 (json_int_t)(g->flagged_day[i] * 86400),
                                                 "messages", (json_int_t)g->flagged_msgs[i]));
    return json_pack("{s:s,s:i,s:I,s:{s:I,s:I},s:{s:I,s:I},s:I,s:o,s:b,s:[{s:s,s:s,s:I,s:I},"
                     "{s:s,s:s,s:I,s:I}]}",
                     "account", g->account, "days", g->days, "messages", (json_int_t)g->total,
                     "busiest_hour", "start_s", (json_int_t)(g->peak_hour_at * 3600),
                     "messages", (json_int_t)g->peak_hour,
                     "busiest_day", "start_s", (json_int_t)(g->peak_day_at * 86400),
                     "messages", (json_int_t)g->peak_day,
                     "p99_hour", (json_int_t)g->p99_hour, "flagged_days", flagged,
                     "capped", g->capped,
                     "limits", "name", "hourly", "window", "1h",
                     "messages", (json_int_t)g->hourly_msgs,
                     "recipients", (json_int_t)g->hourly_rcpts,
                     "name", "daily", "window", "1d",
                     "messages", (json_int_t)g->daily_msgs,
                     "recipients", (json_int_t)g->daily_rcpts);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);

    if (*s < '0' || *s > '9' || *end != '\0')
        return false;
    *out = v;
    return true;
}

int sg_ctl_suggest(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const char *only = NULL;
    uint64_t days = MAX_DAYS, max_hourly = 0, max_daily = 0;
    double headroom = 1.5;
    bool json = false, found = false;
    json_t *out = json_array();
    sg_store_t *st;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        char *end;

        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc && parse_u64(argv[i + 1], &days) &&
                 days >= 1 && days <= MAX_DAYS)
            i++;
        else if (strcmp(argv[i], "--max-hourly") == 0 && i + 1 < argc &&
                 parse_u64(argv[i + 1], &max_hourly))
            i++;
        else if (strcmp(argv[i], "--max-daily") == 0 && i + 1 < argc &&
                 parse_u64(argv[i + 1], &max_daily))
            i++;
        else if (strcmp(argv[i], "--headroom") == 0 && i + 1 < argc &&
                 (headroom = strtod(argv[i + 1], &end)) >= 1.0 && headroom <= 10.0 && *end == '\0')
            i++;
        else if (argv[i][0] != '-' && only == NULL)
            only = argv[i];
        else {
            fprintf(stderr, "usage: sendguardctl suggest-limits [ACCOUNT] [--days 1..14] "
                            "[--headroom 1.0..10] [--max-hourly N] [--max-daily N] [--json]\n");
            json_decref(out);
            return EX_USAGE;
        }
    }
    st = sg_ctl_store_open(s, "suggest-limits");
    if (st == NULL) {
        json_decref(out);
        return EX_UNAVAILABLE;
    }
    for (size_t a = 0; a < s->naccounts; a++) {
        const char *acct = s->accounts[a].address;
        struct hist h;
        struct suggestion g = { .account = acct };

        if (only != NULL && strcmp(only, acct) != 0)
            continue;
        found = true;
        if (load_hist(st, acct, (int)days, sg_time_real_ms() / 3600000, &h) != 0) {
            fprintf(stderr, "sendguardctl: suggest-limits: cannot read the counts of %s\n", acct);
            rc = EX_UNAVAILABLE;
            continue;
        }
        analyse(&h, headroom, max_hourly, max_daily, &g);
        if (json)
            json_array_append_new(out, to_json(&g));
        else
            print_text(&g);
    }
    if (!found) {
        fprintf(stderr, "sendguardctl: suggest-limits: %s\n", only != NULL ?
                "no configured account has that address" : "no accounts configured");
        rc = EX_USAGE;
    } else if (json) {
        char *text = json_dumps(out, JSON_INDENT(2));

        if (text != NULL)
            printf("%s\n", text);
        free(text);
    }
    json_decref(out);
    sg_store_free(st);
    return rc;
}
