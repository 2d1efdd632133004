/*
 * ctl_block.c - the block workflow for the postmaster: `lockdown`,
 * `report`, `unblock` (and `unblock --force` for a legacy MX Plan account
 * that reads unblocked), `rotate-password`, and the pending password
 * change `status` finishes.
 *
 * Must not: post or change anything without the postmaster's confirmation
 * (a terminal prompt, or --yes), print a password unless --show-password,
 * write a state but through sg_wf_apply, or hold logic that lives in
 * workflow/sg_block.c and workflow/sg_unblock.c.
 */
#include <sysexits.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <jansson.h>

#include "sg_time.h"
#include "ctl.h"
#include "sg_block.h"
#include "sg_log.h"
#include "sg_ovh.h"
#include "sg_policy.h"
#include "sg_trace.h"
#include "sg_workflow.h"

#define H_MS 3600000LL
#define SINCE_MAX_MS (366 * 24 * H_MS)   /* report --since: at most a year back */

struct opts {
    const char *account, *answers, *since;
    bool json, draft, yes, show_password, off, force;
};

static int parse(int argc, char **argv, struct opts *o, const char *allowed, const char *usage)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0 && strchr(allowed, 'j'))
            o->json = true;
        else if (strcmp(a, "--draft") == 0 && strchr(allowed, 'd'))
            o->draft = true;
        else if (strcmp(a, "--yes") == 0 && strchr(allowed, 'y'))
            o->yes = true;
        else if (strcmp(a, "--show-password") == 0 && strchr(allowed, 'p'))
            o->show_password = true;
        else if (strcmp(a, "--off") == 0 && strchr(allowed, 'o'))
            o->off = true;
        else if (strcmp(a, "--force") == 0 && strchr(allowed, 'f'))
            o->force = true;
        else if (strcmp(a, "--answers") == 0 && strchr(allowed, 'a') && i + 1 < argc)
            o->answers = argv[++i];
        else if (strcmp(a, "--since") == 0 && strchr(allowed, 's') && i + 1 < argc)
            o->since = argv[++i];
        else if (a[0] != '-' && o->account == NULL)
            o->account = a;
        else {
            fprintf(stderr, "usage: sendguardctl %s\n", usage);
            return -1;
        }
    }
    if (o->account == NULL) {
        fprintf(stderr, "usage: sendguardctl %s\n", usage);
        return -1;
    }
    return 0;
}

static const struct sg_account *find(sg_conf_t *conf, const char *name)
{
    const struct sg_account *a = sg_conf_find_account(conf, name);

    if (a == NULL)
        fprintf(stderr, "sendguardctl: %s is not a configured account (see: sendguardctl limits)\n",
                name);
    else if (a->offer == SG_OFFER_NONE)
        fprintf(stderr, "sendguardctl: %s has no offer: sendguard cannot see it at OVHcloud\n",
                name);
    return a && a->offer != SG_OFFER_NONE ? a : NULL;
}

/* A time for the report, "-" when unknown. */
static void utc(char *buf, size_t size, int64_t ms)
{
    if (ms <= 0)
        snprintf(buf, size, "-");
    else
        sg_time_utc(buf, size, ms, SG_TIME_MINUTE);
}

static bool confirm(const char *question)
{
    char line[16];

    if (!isatty(0))
        return false;
    printf("%s [y/N] ", question);
    fflush(stdout);
    return fgets(line, sizeof(line), stdin) != NULL && (line[0] == 'y' || line[0] == 'Y');
}

/* --- lockdown ------------------------------------------------------------- */

int sg_ctl_lockdown(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const char *usage = "lockdown ACCOUNT [--off]";
    struct sg_account_state st;
    struct sg_wf_step sp;
    char who[128], when[32], summary[512], note[256];
    struct sg_resolved r;
    const char *account;
    sg_store_t *store;
    struct opts o;
    int rc = 0;

    if (parse(argc, argv, &o, "o", usage) != 0)
        return EX_USAGE;
    /* An address or login maps to its account, as the daemon maps mail. */
    sg_policy_resolve(s, o.account, NULL, &r);
    account = r.account;
    if (r.acct == NULL)
        fprintf(stderr, "sendguardctl: %s is no configured account's sender: locking down its "
                        "own implicit account; its held mail is released by the relays that held "
                        "it while they run (else: postsuper -H)\n", r.identity);
    if ((store = sg_ctl_store_open(s, "the block workflow")) == NULL)
        return EX_UNAVAILABLE;
    sg_log_open("sendguardctl", s->syslog_facility, false);
    sg_block_who(who, sizeof(who));
    utc(when, sizeof(when), sg_time_real_ms());
    snprintf(note, sizeof(note), o.off ? "lockdown lifted by %s at %s" : "locked down by %s at %s",
             who, when);
    struct sg_wf_event_in in = { .event = o.off ? SG_WF_EV_LOCKDOWN_OFF : SG_WF_EV_LOCKDOWN,
                                 .now_ms = sg_time_real_ms(), .note = note, .ticket = -1 };
    switch (sg_wf_apply(store, account, &in, &sp, &st)) {
    case 1:
        break;
    case 0:
        if (sp.verdict == SG_WF_REFUSE) {
            fprintf(stderr, "sendguardctl: %s is blocked at OVHcloud (%s): the lockdown ends when "
                            "OVHcloud unblocks it (sendguardctl unblock %s)\n", account, st.phase,
                    account);
            rc = EXIT_FAILURE;
        } else if (o.off) {
            printf("%s is not locked down: nothing to do\n", account);
        } else {
            printf("%s is already locked down (%s): nothing to do\n", account, st.phase);
        }
        goto out;
    default:
        fprintf(stderr, "sendguardctl: cannot read or write the state of %s (is Redis up?)\n",
                account);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    sg_block_audit(who, o.off ? "lockdown_off" : "lockdown", account, NULL);
    sg_block_summary(store, account, sg_time_real_ms(), summary, sizeof(summary));
    if (!o.off) {
        char esc[400];
        sg_log(LOG_ALERT, "lockdown: account=<%s> by=<%s> %s", sg_log_esc(esc, sizeof(esc), account),
               who, summary);
    }
    sg_block_alert(s, store, account, r.acct ? r.acct->offer : SG_OFFER_NONE,
                   o.off ? "lockdown_off" : "lockdown", st.ticket, summary, s->relay_name);
    printf(o.off ? "%s: lockdown lifted; every relay releases the mail it held within seconds\n"
                 : "%s: locked down; every relay now applies on_block to its mail "
                   "(undo: sendguardctl lockdown %s --off)\n", account, account);
out:
    sg_store_free(store);
    return rc;
}

/* --- report --------------------------------------------------------------- */

static json_t *seen_json(const struct sg_block_seen *v, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:I,s:I,s:b}", "name", v[i].name,
                              "count", (json_int_t)v[i].count, "first_seen",
                              (json_int_t)v[i].first_seen_ms, "new", v[i].is_new));
    return arr;
}

static json_t *case_json(const struct sg_block_case *bc, const char *draft)
{
    const struct sg_block_facts *f = &bc->facts;
    json_t *o = json_object(), *hours = json_array(), *doms = json_object(), *redir;

    json_object_set_new(o, "account", json_string(bc->a->address));
    json_object_set_new(o, "offer", json_string(sg_offer_name(bc->a->offer)));
    json_object_set_new(o, "api_ok", json_boolean(bc->api_ok));
    if (!bc->api_ok)
        json_object_set_new(o, "api_error", json_string(bc->api_error));
    json_object_set_new(o, "blocked", bc->api_ok ? json_boolean(bc->blocked) : json_null());
    json_object_set_new(o, "ticket", bc->ticket_number >= 0 ? json_integer(bc->ticket_number)
                                                            : json_null());
    json_object_set_new(o, "lockdown", json_boolean(bc->state.blocked));
    json_object_set_new(o, "phase", json_string(bc->state.phase));
    json_object_set_new(o, "note", json_string(bc->state.note));
    json_object_set_new(o, "suspicious", bc->suspicious >= 0 ? json_integer(bc->suspicious)
                                                             : json_null());
    json_object_set_new(o, "ticket_message", bc->ticket_message ?
                        json_string(bc->ticket_message) : json_null());
    for (size_t i = 0; i < f->nhours; i++)
        json_array_append_new(hours, json_pack("{s:I,s:I,s:I,s:I}", "hour",
                              (json_int_t)((f->first_hour + (int64_t)i) * H_MS), "messages",
                              (json_int_t)f->msgs[i], "recipients", (json_int_t)f->rcpts[i],
                              "refused", (json_int_t)f->refused[i]));
    json_object_set_new(o, "hourly", hours);
    json_object_set_new(o, "messages", json_integer((json_int_t)f->period_msgs));
    json_object_set_new(o, "recipients", json_integer((json_int_t)f->period_rcpts));
    json_object_set_new(o, "usual_per_hour", json_integer((json_int_t)f->baseline_per_hour));
    json_object_set_new(o, "spike", f->spike ? json_pack("{s:I,s:I,s:I}", "from",
                        (json_int_t)f->spike_from_ms, "to", (json_int_t)f->spike_to_ms,
                        "messages", (json_int_t)f->spike_msgs) : json_null());
    json_object_set_new(o, "client_ips", seen_json(f->ips, f->nips));
    json_object_set_new(o, "mailers", seen_json(f->mailers, f->nmailers));
    for (size_t i = 0; i < f->ntop; i++)
        json_object_set_new(doms, f->top_domains[i], json_integer((json_int_t)f->top_domain_count[i]));
    json_object_set_new(o, "top_domains", doms);
    json_object_set_new(o, "from_mismatch", json_integer((json_int_t)f->from_mismatch));
    if (bc->redir_readable) {
        redir = json_array();
        for (size_t i = 0; i < bc->nredir; i++)
            json_array_append_new(redir, json_string(bc->redir[i]));
    } else {
        redir = json_null();
    }
    json_object_set_new(o, "redirections", redir);
    json_object_set_new(o, "looks_legitimate", json_boolean(sg_block_looks_legitimate(f)));
    json_object_set_new(o, "trace", bc->trace ? sg_trace_json(bc->trace) : json_null());
    json_object_set_new(o, "draft", draft ? json_string(draft) : json_null());
    return o;
}

static void print_seen(const char *title, const struct sg_block_seen *v, size_t n)
{
    char when[32], esc[300];

    printf("%s\n", title);
    if (n == 0)
        printf("  (none recorded)\n");
    for (size_t i = 0; i < n && i < 10; i++) {
        utc(when, sizeof(when), v[i].first_seen_ms);
        printf("  %-40s %-4s %8llu  first seen %s\n",
               sg_log_escape_text(esc, sizeof(esc), v[i].name, strlen(v[i].name)),
               v[i].is_new ? "NEW" : "", (unsigned long long)v[i].count, when);
    }
}

/* The ticket's header sample traced to the message (issue 18). */
static void print_trace(const struct sg_block_case *bc)
{
    char *t;

    if (bc->trace == NULL || (t = sg_trace_text(bc->trace, bc->a->address)) == NULL)
        return;
    printf("\nThe ticket's header sample:\n");
    for (const char *p = t; *p;) {
        size_t len = strcspn(p, "\n");
        printf("  %.*s\n", (int)len, p);
        p += len + (p[len] == '\n');
    }
    free(t);
}

static void print_case(const struct sg_block_case *bc, const char *draft)
{
    const struct sg_block_facts *f = &bc->facts;
    char spark[SG_BLOCK_HOURS * 4 + 1], t1[32], t2[32];
    uint64_t max = 0;

    for (size_t i = 0; i < f->nhours; i++)
        if (f->msgs[i] > max)
            max = f->msgs[i];

    printf("%s (%s): ", bc->a->address, sg_offer_name(bc->a->offer));
    if (!bc->api_ok)
        printf("API not reachable (%s)\n", bc->api_error);
    else if (bc->blocked)
        printf("BLOCKED at OVHcloud%s", bc->ticket_number >= 0 ? "" : "\n");
    else
        printf("not blocked at OVHcloud\n");
    if (bc->api_ok && bc->blocked && bc->ticket_number >= 0)
        printf(", ticket %lld (%s, last message from %s)\n", (long long)bc->ticket_number,
               bc->ticket_state[0] ? bc->ticket_state : "?",
               bc->ticket_last_from[0] ? bc->ticket_last_from : "?");
    printf("sendguard: %s%s%s\n", bc->state.blocked ? "lockdown ON" : "lockdown off",
           bc->state.note[0] ? " - " : "", bc->state.note);
    if (!bc->evidence_ok) {
        printf("\n(no evidence in the store)\n");
    } else {
        utc(t1, sizeof(t1), f->first_hour * H_MS);
        sg_block_spark(f->msgs, f->nhours, spark, sizeof(spark));
        printf("\nMessages per hour since %s (%zu hours, max %llu):\n  |%s|\n", t1, f->nhours,
               (unsigned long long)max, spark);
        printf("  %llu messages, %llu recipients; usual hour about %llu messages\n",
               (unsigned long long)f->period_msgs, (unsigned long long)f->period_rcpts,
               (unsigned long long)f->baseline_per_hour);
        if (f->spike) {
            utc(t1, sizeof(t1), f->spike_from_ms);
            utc(t2, sizeof(t2), f->spike_to_ms);
            printf("  SPIKE: %llu messages between %s and %s\n",
                   (unsigned long long)f->spike_msgs, t1, t2);
        }
        printf("\n");
        print_seen("Client IPs (messages)", f->ips, f->nips);
        print_seen("Mailers (messages)", f->mailers, f->nmailers);
        printf("Top recipient domains:");
        for (size_t i = 0; i < f->ntop; i++)
            printf(" %s (%llu)", f->top_domains[i], (unsigned long long)f->top_domain_count[i]);
        printf("%s\nFrom: header not of the account's domain: %llu messages\n",
               f->ntop ? "" : " (none)", (unsigned long long)f->from_mismatch);
    }
    if (bc->ticket_message) {
        printf("\nOVHcloud's message on the ticket");
        if (bc->suspicious >= 0)
            printf(" (%ld suspicious messages)", bc->suspicious);
        printf(":\n");
        for (const char *p = bc->ticket_message; *p;) {
            size_t len = strcspn(p, "\n");
            char esc[400];
            printf("  | %s\n", sg_log_escape_text(esc, sizeof(esc), p, len < 300 ? len : 300));
            p += len + (p[len] == '\n');
        }
    }
    print_trace(bc);
    printf("\nRedirections: ");
    if (!bc->redir_readable)
        printf("could not be read through the API for this offer\n");
    else if (bc->nredir == 0)
        printf("none\n");
    else
        for (size_t i = 0; i < bc->nredir; i++)
            printf("%s%s", bc->redir[i], i + 1 < bc->nredir ? ", " : "\n");
    if (draft) {
        printf("\nDraft reply (%s):\n", bc->french ? "French, as the ticket" : "English");
        for (const char *p = draft; *p;) {
            size_t len = strcspn(p, "\n");
            printf("  > %.*s\n", (int)len, p);
            p += len + (p[len] == '\n');
        }
    }
}

static int load_case(sg_conf_t *conf, const struct opts *o, sg_store_t **store, sg_ovh_t **c,
                     struct sg_block_case *bc)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const struct sg_account *a = find(conf, o->account);
    uint64_t since = 24 * H_MS;
    struct sg_ovh_err e;
    char msg[700];

    if (a == NULL)
        return EX_USAGE;
    if (o->since && !sg_conf_parse_duration(o->since, &since)) {
        fprintf(stderr, "sendguardctl: --since %s: not a duration (24h, 2d...)\n", o->since);
        return EX_USAGE;
    }
    if (since > SINCE_MAX_MS || (int64_t)since > sg_time_real_ms()) {
        fprintf(stderr, "sendguardctl: --since %s: longer than %d days: the evidence goes back "
                "days, not years\n", o->since, (int)(SINCE_MAX_MS / (24 * H_MS)));
        return EX_USAGE;
    }
    if ((*store = sg_ctl_store_open(s, "the block workflow")) == NULL)
        return EX_UNAVAILABLE;
    *c = sg_ovh_open(s, &e);
    if (*c == NULL)
        fprintf(stderr, "sendguardctl: OVHcloud API: %s\n", sg_ovh_strerror(&e, msg, sizeof(msg)));
    sg_block_gather(*c, *store, a, sg_time_real_ms(), sg_time_real_ms() - (int64_t)since, bc);
    return 0;
}

int sg_ctl_report(sg_conf_t *conf, int argc, char **argv)
{
    struct sg_block_case bc;
    sg_store_t *store = NULL;
    sg_ovh_t *c = NULL;
    char *draft = NULL;
    struct opts o;
    int rc;

    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--flood") == 0)
            return sg_ctl_report_flood(conf, argc, argv);
    if (parse(argc, argv, &o, "js", "report ACCOUNT [--json] [--since 24h]") != 0)
        return EX_USAGE;
    if ((rc = load_case(conf, &o, &store, &c, &bc)) != 0)
        return rc;
    draft = bc.a->offer == SG_OFFER_MXPLAN_LEGACY ? NULL : sg_block_case_draft(&bc);
    if (o.json) {
        json_t *j = case_json(&bc, draft);
        json_dumpf(j, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(j);
    } else {
        /* Legacy MX Plan has no ticket: no answers to draft. */
        print_case(&bc, bc.api_ok && bc.blocked && bc.a->offer != SG_OFFER_MXPLAN_LEGACY
                        ? draft : NULL);
        if (!bc.api_ok)
            printf("\nNext: fix the API access above, then: sendguardctl report %s\n", o.account);
        else if (bc.blocked && bc.a->offer == SG_OFFER_MXPLAN_LEGACY)
            printf("\nNext: sendguardctl unblock %s   (changes the password and the relay's "
                   "SASL map)\n", bc.a->address);
        else if (bc.blocked)
            printf("\nNext: sendguardctl unblock %s   (edit and post the reply; --draft only "
                   "prints it)\n", bc.a->address);
        else
            printf("\nNothing to do at OVHcloud. Status: sendguardctl status %s\n", bc.a->address);
    }
    rc = bc.api_ok ? 0 : EX_UNAVAILABLE;
    free(draft);
    sg_block_case_free(&bc);
    sg_ovh_free(c);
    sg_store_free(store);
    return rc;
}

/* --- unblock -------------------------------------------------------------- */

static char *read_file(const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 8192);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        buf[len] = '\0';
        if (n == 0 || len > 256 * 1024)
            break;
    }
    if (f != stdin)
        fclose(f);
    return buf;
}

int sg_ctl_unblock(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    struct sg_block_case bc;
    sg_store_t *store = NULL;
    sg_ovh_t *c = NULL;
    char *text = NULL, msg[1024], who[128];
    struct opts o;
    int rc;

    if (parse(argc, argv, &o, "daypf",
              "unblock ACCOUNT [--draft] [--answers FILE] [--yes] [--show-password] [--force]") != 0)
        return EX_USAGE;
    if ((rc = load_case(conf, &o, &store, &c, &bc)) != 0)
        return rc;
    sg_log_open("sendguardctl", s->syslog_facility, false);
    sg_block_who(who, sizeof(who));
    rc = EXIT_FAILURE;
    if (c == NULL || !bc.api_ok) {
        fprintf(stderr, "sendguardctl: cannot read %s from the API%s%s: nothing done\n",
                bc.a->address, bc.api_error[0] ? ": " : "", bc.api_error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    bool legacy = bc.a->offer == SG_OFFER_MXPLAN_LEGACY;
    if (!bc.blocked && legacy && !o.force) {
        /* OVHcloud's guide: "Bloqué pour SPAM" can read "No" on a blocked
         * legacy address; the remedy (a new password) is the same. */
        fprintf(stderr, "sendguardctl: %s reads unblocked at OVHcloud (isBlocked = false), but a "
                "legacy MX Plan address can be blocked while it reads so (OVHcloud's guide). If "
                "it still cannot send, change its password: sendguardctl unblock %s --force\n",
                bc.a->address, bc.a->address);
        goto out;
    }
    if (!bc.blocked && !(legacy && o.force)) {
        printf("%s is not blocked at OVHcloud: nothing to do", bc.a->address);
        if (bc.state.blocked && strcmp(bc.state.phase, "lockdown") == 0)
            printf(" (it is locked down by hand: sendguardctl lockdown %s --off)", bc.a->address);
        else if (bc.state.blocked)
            printf(" (sendguard lifts its lockdown at the next poll)");
        printf("\n");
        rc = 0;
        goto out;
    }
    if (legacy) {
        if (!bc.blocked)
            printf("%s reads unblocked at OVHcloud; --force: its password is changed all the "
                   "same (a legacy address can be blocked while it reads unblocked).\n",
                   bc.a->address);
        printf("%s is a legacy MX Plan account: unblocking means a new password.\n"
               "sendguard will generate one, set it through the API, write it into %s%s%s.\n",
               bc.a->address, bc.a->sasl_map_file ? bc.a->sasl_map_file : "(no sasl_map_file)",
               s->nafter_password_change ? " and run " : "",
               s->nafter_password_change ? s->after_password_change[0] : "");
        if (o.draft) {
            rc = 0;
            goto out;
        }
    } else {
        /* --answers FILE is read, and the draft edited, as the user who ran
         * sudo (ctl_user.c), never with root's rights. */
        text = o.answers == NULL ? sg_block_case_draft(&bc) :
               strcmp(o.answers, "-") == 0 ? read_file("-") : sg_ctl_read_user_file(o.answers);
        if (text == NULL) {
            fprintf(stderr, "sendguardctl: %s: cannot read it%s\n", o.answers,
                    getenv("SUDO_UID") ? " as the user who ran sudo" : "");
            goto out;
        }
        if (o.draft) {
            fputs(text, stdout);
            rc = 0;
            goto out;
        }
        if (o.answers == NULL && !o.yes && isatty(0) && isatty(1)) {
            char *edited = sg_ctl_edit_as_user(text);
            free(text);
            if ((text = edited) == NULL)
                goto out;
        }
        printf("Reply to post on ticket %lld:\n----\n%s%s----\n", (long long)bc.ticket_number,
               text, text[0] && text[strlen(text) - 1] == '\n' ? "" : "\n");
    }
    if (!o.yes && !confirm(bc.a->offer == SG_OFFER_MXPLAN_LEGACY ? "Change the password now?"
                                                                : "Post this reply now?")) {
        fprintf(stderr, "sendguardctl: not confirmed%s: nothing done\n",
                isatty(0) ? "" : " (not a terminal: pass --yes)");
        goto out;
    }
    if (legacy && !bc.blocked)          /* --force: the API's flag says no, the remedy is the same */
        rc = sg_block_rotate_unblock(c, store, s, bc.a, who, o.show_password, msg, sizeof(msg));
    else
        rc = sg_block_unblock(c, store, s, &bc, text, who, o.show_password, msg, sizeof(msg));
    rc = rc == 0 ? 0 : rc == 1 ? EX_TEMPFAIL : EXIT_FAILURE;
    fprintf(rc == 0 ? stdout : stderr, "%s%s\n", rc == 0 ? "" : "sendguardctl: ", msg);
    if (rc == 0)
        printf("Next: sendguardctl status %s   (where it stands; held mail is released when "
               "OVHcloud unblocks the account)\n", bc.a->address);
out:
    free(text);
    sg_block_case_free(&bc);
    sg_ovh_free(c);
    sg_store_free(store);
    return rc;
}

int sg_ctl_rotate(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const struct sg_account *a;
    struct sg_ovh_err e;
    sg_store_t *store;
    sg_ovh_t *c;
    char msg[1024], who[128];
    struct opts o;
    int rc;

    if (parse(argc, argv, &o, "yp", "rotate-password ACCOUNT [--yes] [--show-password]") != 0)
        return EX_USAGE;
    if ((a = find(conf, o.account)) == NULL)
        return EX_USAGE;
    if ((store = sg_ctl_store_open(s, "the block workflow")) == NULL)
        return EX_UNAVAILABLE;
    if ((c = sg_ovh_open(s, &e)) == NULL) {
        fprintf(stderr, "sendguardctl: OVHcloud API: %s\n", sg_ovh_strerror(&e, msg, sizeof(msg)));
        sg_store_free(store);
        return EX_UNAVAILABLE;
    }
    sg_log_open("sendguardctl", s->syslog_facility, false);
    printf("A new password for %s, set through the API%s%s.\n", a->address,
           a->sasl_map_file ? " and written into " : "",
           a->sasl_map_file ? a->sasl_map_file : "");
    if (!o.yes && !confirm("Change it now?")) {
        fprintf(stderr, "sendguardctl: not confirmed%s: nothing done\n",
                isatty(0) ? "" : " (not a terminal: pass --yes)");
        rc = EXIT_FAILURE;
    } else {
        rc = sg_block_rotate(c, store, s, a, sg_block_who(who, sizeof(who)), o.show_password,
                             msg, sizeof(msg));
        rc = rc == 0 ? 0 : rc == 1 ? EX_TEMPFAIL : EXIT_FAILURE;
        fprintf(rc == 0 ? stdout : stderr, "%s%s\n", rc == 0 ? "" : "sendguardctl: ", msg);
    }
    sg_ovh_free(c);
    sg_store_free(store);
    return rc;
}

/* --- a pending password change (sendguardctl status) --------------------------- */

int sg_ctl_password_pending(sg_conf_t *conf, sg_store_t *store, const char *only, FILE *out)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    sg_ovh_t *c = NULL;
    struct sg_ovh_err e;
    char msg[1024], who[128], path[4200];
    bool tried = false;
    int worst = 0;

    for (size_t i = 0; i < s->naccounts; i++) {
        const struct sg_account *a = &s->accounts[i];
        if (a->sasl_map_file == NULL || a->offer == SG_OFFER_NONE ||
            (only && sg_conf_find_account(conf, only) != a))
            continue;
        snprintf(path, sizeof(path), "%s%s", a->sasl_map_file, SG_BLOCK_PENDING_SUFFIX);
        if (access(path, F_OK) != 0)
            continue;
        if (!tried) {
            tried = true;
            sg_log_open("sendguardctl", s->syslog_facility, false);
            sg_block_who(who, sizeof(who));
            if ((c = sg_ovh_open(s, &e)) == NULL)
                fprintf(stderr, "sendguardctl: OVHcloud API: %s\n",
                        sg_ovh_strerror(&e, msg, sizeof(msg)));
        }
        int rc = sg_block_pending(c, store, s, a, who, msg, sizeof(msg));
        if (rc != 0)
            fprintf(rc < 0 ? stderr : out, "%s%s\n", rc < 0 ? "sendguardctl: " : "", msg);
        if (rc < 0 || (rc == 2 && strstr(msg, "ended in error")))
            worst = EXIT_FAILURE;
    }
    sg_ovh_free(c);
    return worst;
}
