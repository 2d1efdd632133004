/*
 * ctl_status.c - `sendguardctl status` and `sendguardctl reset`: the
 * shared state of accounts as every relay sees it (Redis store).
 *
 * Must not: change counters except through sg_store_reset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <jansson.h>

#include "ctl.h"
#include "sg_policy.h"
#include "sg_store.h"
#include "sg_block.h"
#include "sg_log.h"
#include "sg_ovh.h"
#include "sg_time.h"


sg_store_t *sg_ctl_store_open(const struct sg_settings *s, const char *what)
{
    char err[256] = "";
    sg_store_t *st;

    if (s->store_backend != SG_STORE_REDIS) {
        fprintf(stderr, "sendguardctl: store.backend is \"memory\": its counters and state live "
                        "inside each sendguard process; %s needs store.backend = \"redis\"\n",
                what);
        return NULL;
    }
    st = sg_store_redis_new(&s->redis, NULL, NULL, err, sizeof(err));
    if (st == NULL)
        fprintf(stderr, "sendguardctl: store: %s\n", err);
    return st;
}

static json_t *account_json(sg_store_t *st, const char *account,
                            const struct sg_limit *limits, size_t nlimits, int *err)
{
    struct sg_usage usage[SG_STORE_MAX_LIMITS];
    struct sg_account_state state;
    json_t *o = json_object(), *lims = json_array();

    memset(&state, 0, sizeof(state));     /* a store error must not print garbage */
    state.ticket = -1;
    if (sg_store_usage(st, account, limits, nlimits, usage) != 0 ||
        sg_store_state_get(st, account, &state) != 0)
        *err = 1;
    json_object_set_new(o, "account", json_string(account));
    json_object_set_new(o, "blocked", json_boolean(state.blocked));
    json_object_set_new(o, "phase", json_string(state.phase[0] ? state.phase : "ok"));
    json_object_set_new(o, "ticket", state.ticket >= 0 ? json_integer(state.ticket) : json_null());
    json_object_set_new(o, "api_state", json_string(state.state));
    json_object_set_new(o, "since_ms", json_integer(state.since_ms));
    json_object_set_new(o, "checked_ms", json_integer(state.checked_ms));
    json_object_set_new(o, "note", json_string(state.note));
    for (size_t i = 0; i < nlimits; i++) {
        json_t *l = json_object();

        json_object_set_new(l, "name", json_string(limits[i].name));
        json_object_set_new(l, "window_ms", json_integer((json_int_t)limits[i].window_ms));
        json_object_set_new(l, "action", json_string(sg_action_name(limits[i].action)));
        for (int u = 0; u < SG_UNIT_COUNT; u++) {
            json_t *x;
            if (limits[i].cap[u] == 0)
                continue;
            x = json_object();
            json_object_set_new(x, "used", json_integer((json_int_t)usage[i].used[u]));
            json_object_set_new(x, "cap", json_integer((json_int_t)limits[i].cap[u]));
            json_object_set_new(l, sg_unit_name((enum sg_unit)u), x);
        }
        json_array_append_new(lims, l);
    }
    json_object_set_new(o, "limits", lims);
    {
        struct sg_evidence_report ev;
        json_t *j = NULL;

        if (sg_store_evidence_get(st, account, &ev) == 0)
            j = sg_ctl_evidence_json(account, &ev);
        else
            *err = 1;
        sg_evidence_report_free(&ev);
        json_object_set_new(o, "evidence", j ? j : json_null());
    }
    return o;
}

/* For an account blocked at OVHcloud: where the ticket stands (the
 * support's answers since our reply), read through the API. */
static void follow_ticket(const struct sg_settings *s, sg_store_t *st, const char *account,
                          sg_ovh_t **c, bool *tried, json_t *o)
{
    const struct sg_account *a = NULL;
    struct sg_block_case bc;
    struct sg_ovh_err e;
    int64_t now = sg_time_real_ms();

    for (size_t i = 0; i < s->naccounts; i++)
        if (strcmp(s->accounts[i].address, account) == 0)
            a = &s->accounts[i];
    if (a == NULL || a->offer == SG_OFFER_NONE || a->offer == SG_OFFER_MXPLAN_LEGACY)
        return;
    if (!*tried) {
        *tried = true;
        *c = sg_ovh_open(s, &e);
    }
    if (*c == NULL)
        return;
    sg_block_gather(*c, st, a, now, now - 3600000LL, &bc);
    if (bc.have_ticket) {
        json_object_set_new(o, "ticket_state", json_string(bc.ticket_state));
        json_object_set_new(o, "replied", json_boolean(bc.replied));
        json_object_set_new(o, "support_since_reply", json_integer((json_int_t)bc.support_since_reply));
        json_object_set_new(o, "support_latest", bc.support_latest ?
                            json_string(bc.support_latest) : json_null());
    }
    sg_block_case_free(&bc);
}

/* "name (count)" of the biggest entries of a {name: {count}} or {name: n} object. */
static void print_top(const char *title, json_t *obj)
{
    const char *k, *best[5] = { 0 };
    json_int_t cnt[5] = { 0 };
    json_t *v;
    char esc[300];
    int n = 0;

    json_object_foreach(obj, k, v) {
        json_int_t c = json_is_integer(v) ? json_integer_value(v)
                                          : json_integer_value(json_object_get(v, "count"));
        int pos = n < 5 ? n : 5;
        while (pos > 0 && cnt[pos - 1] < c)
            pos--;
        if (pos >= 5)
            continue;
        memmove(&best[pos + 1], &best[pos], (size_t)(4 - pos) * sizeof(best[0]));
        memmove(&cnt[pos + 1], &cnt[pos], (size_t)(4 - pos) * sizeof(cnt[0]));
        best[pos] = k;
        cnt[pos] = c;
        if (n < 5)
            n++;
    }
    printf("  %-16s", title);
    for (int i = 0; i < n; i++)
        printf("%s %s (%lld)", i ? "," : "", sg_log_escape_text(esc, sizeof(esc), best[i],
               strlen(best[i])), (long long)cnt[i]);
    printf("%s\n", n ? "" : " -");
}

static void print_evidence(const json_t *ev)
{
    json_t *recent = json_object_get(ev, "recent"), *m;
    size_t i;

    if (!json_is_object(ev))
        return;
    print_top("client IPs:", json_object_get(ev, "by_ip"));
    print_top("mailers:", json_object_get(ev, "by_mailer"));
    print_top("rcpt domains:", json_object_get(ev, "by_domain"));
    printf("  %-16s %lld\n", "From: mismatch:",
           (long long)json_integer_value(json_object_get(ev, "from_mismatch")));
    printf("  last messages:\n");
    json_array_foreach(recent, i, m) {
        char when[32], a[300], b[300];
        const char *qid = json_string_value(json_object_get(m, "qid"));
        const char *id = json_string_value(json_object_get(m, "identity"));

        if (i == 5)
            break;
        sg_time_utc(when, sizeof(when), (int64_t)json_integer_value(json_object_get(m, "t")),
                    "%Y-%m-%d %H:%M:%S");
        printf("    %s qid=%s identity=<%s> ip=%s rcpts=%lld size=%lld %s\n", when,
               sg_log_esc(a, sizeof(a), qid), sg_log_esc(b, sizeof(b), id),
               json_string_value(json_object_get(m, "ip")) ?
               json_string_value(json_object_get(m, "ip")) : "-",
               (long long)json_integer_value(json_object_get(m, "rcpts")),
               (long long)json_integer_value(json_object_get(m, "size")),
               json_string_value(json_object_get(m, "action")) ?
               json_string_value(json_object_get(m, "action")) : "");
    }
    if (json_array_size(recent) == 0)
        printf("    (none)\n");
}

static void print_account(const json_t *o)
{
    size_t i;
    json_t *l;

    printf("%s: %s", json_string_value(json_object_get(o, "account")),
           json_is_true(json_object_get(o, "blocked")) ? "BLOCKED" : "ok");
    if (json_is_integer(json_object_get(o, "ticket")))
        printf(", ticket %lld", (long long)json_integer_value(json_object_get(o, "ticket")));
    if (json_string_length(json_object_get(o, "note")) > 0)
        printf(" (%s)", json_string_value(json_object_get(o, "note")));
    printf("\n");
    if (json_is_string(json_object_get(o, "ticket_state"))) {
        const char *latest = json_string_value(json_object_get(o, "support_latest"));
        printf("  ticket: %s; ", json_string_value(json_object_get(o, "ticket_state")));
        if (!json_is_true(json_object_get(o, "replied")))
            printf("not answered yet (sendguardctl report %s)\n",
                   json_string_value(json_object_get(o, "account")));
        else if (latest == NULL)
            printf("answered; waiting for OVHcloud support\n");
        else {
            char esc[2048];
            printf("OVHcloud support wrote since your reply:\n");
            for (const char *p = latest; *p;) {
                size_t len = strcspn(p, "\n");
                printf("    | %s\n", sg_log_escape_text(esc, sizeof(esc), p, len));
                p += len + (p[len] == '\n');
            }
        }
    }
    json_array_foreach(json_object_get(o, "limits"), i, l) {
        printf("  %-12s", json_string_value(json_object_get(l, "name")));
        for (int u = 0; u < SG_UNIT_COUNT; u++) {
            json_t *x = json_object_get(l, sg_unit_name((enum sg_unit)u));
            long long used, cap;
            if (x == NULL)
                continue;
            used = json_integer_value(json_object_get(x, "used"));
            cap = json_integer_value(json_object_get(x, "cap"));
            printf("  %s %lld/%lld (%lld%%)", sg_unit_name((enum sg_unit)u), used, cap,
                   cap ? used * 100 / cap : 0);
        }
        printf("\n");
    }
    print_evidence(json_object_get(o, "evidence"));
}

int sg_ctl_status(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const char *only = NULL;
    int as_json = 0, err = 0, err_pending = 0;
    json_t *all = json_array(), *o;
    sg_store_t *st;
    sg_ovh_t *c = NULL;
    bool tried = false;
    size_t idx;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (only == NULL && argv[i][0] != '-')
            only = argv[i];
        else {
            fprintf(stderr, "usage: sendguardctl status [ACCOUNT] [--json]\n");
            json_decref(all);
            return EX_USAGE;
        }
    }
    if ((st = sg_ctl_store_open(s, "status")) == NULL) {
        json_decref(all);
        return EX_UNAVAILABLE;
    }
    /* A password change waiting for OVHcloud's task: finish it first. */
    if (sg_ctl_password_pending(conf, st, only, as_json ? stderr : stdout) != 0)
        err_pending = 1;
    if (only != NULL) {
        struct sg_resolved r;

        sg_policy_resolve(s, only, NULL, &r);   /* a configured address, or an identity */
        json_array_append_new(all, account_json(st, r.account, r.limits, r.nlimits, &err));
    } else {
        for (size_t i = 0; i < s->naccounts; i++)
            json_array_append_new(all, account_json(st, s->accounts[i].address,
                                                    s->accounts[i].limits,
                                                    s->accounts[i].nlimits, &err));
    }
    json_array_foreach(all, idx, o)
        if (json_is_true(json_object_get(o, "blocked")) &&
            strcmp(json_string_value(json_object_get(o, "phase")), "lockdown") != 0)
            follow_ticket(s, st, json_string_value(json_object_get(o, "account")), &c, &tried, o);
    sg_ovh_free(c);
    if (err) {
        fprintf(stderr, "sendguardctl: the store could not be read (is Redis up?)\n");
    } else if (as_json) {
        json_dumpf(all, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        json_array_foreach(all, idx, o)
            print_account(o);
    }
    json_decref(all);
    sg_store_free(st);
    return err ? EX_UNAVAILABLE : err_pending;
}

int sg_ctl_reset(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    struct sg_resolved r;
    sg_store_t *st;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: sendguardctl reset ACCOUNT\n");
        return EX_USAGE;
    }
    if ((st = sg_ctl_store_open(s, "reset")) == NULL)
        return EX_UNAVAILABLE;
    sg_policy_resolve(s, argv[1], NULL, &r);
    rc = sg_store_reset(st, r.account);
    sg_store_free(st);
    if (rc != 0) {
        fprintf(stderr, "sendguardctl: reset %s failed (is Redis up?)\n", r.account);
        return EX_UNAVAILABLE;
    }
    printf("%s: counters reset\n", r.account);
    return 0;
}
