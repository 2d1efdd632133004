/*
 * ctl_ovh.c - `sendguardctl ovh check|accounts|credential`: the OVHcloud
 * API from the postmaster's side.
 *
 *   check [ACCOUNT...] [--json]   block status per account; exit codes of a
 *                                 monitoring plugin: 0 none blocked, 2 at
 *                                 least one blocked, 3 could not check
 *   accounts                      every account the credentials can see, as
 *                                 ready-to-paste `accounts` entries
 *   credential [--redirection URL] [--allowed-ip ADDR]...
 *                                 request a consumer key with the access
 *                                 rules sendguard needs (restricted to the
 *                                 relays' addresses with --allowed-ip);
 *                                 prints the URL to validate it
 *   credential --check [--json]   the key in use: validated, expiry, rules
 *                                 against those sendguard needs; exit codes
 *                                 as check (0 fine, 2 a problem, 3 unknown)
 *
 * Must not: hold API logic (ovh/ has it), print a secret it did not just
 * create for the user (the new consumer key is the one exception), or take
 * secrets from argv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <jansson.h>

#include "ctl.h"
#include "sg_ovh.h"
#include "sg_time.h"

/* `ovh check` is also a Nagios plugin: its codes are Nagios's, not sysexits.h. */
#define NAGIOS_CRITICAL 2         /* blocked, or the credential refused */
#define NAGIOS_UNKNOWN  3

static void usage(FILE *f)
{
    fprintf(f, "usage: sendguardctl [-c FILE] ovh check [ACCOUNT...] [--json]\n"
               "       sendguardctl [-c FILE] ovh accounts\n"
               "       sendguardctl [-c FILE] ovh credential [--redirection URL] [--allowed-ip ADDR]...\n"
               "       sendguardctl [-c FILE] ovh credential --check [--json]\n"
               "check: exit 0 when no account is blocked, 2 when one is, 3 when the\n"
               "API could not tell.\n");
}

/* ---- check ---------------------------------------------------------------- */

struct row {
    const struct sg_account *a;
    bool ok;
    struct sg_ovh_status st;
    struct sg_ovh_err err;
};

static json_t *row_json(const struct row *r)
{
    json_t *o = json_object();

    json_object_set_new(o, "account", json_string(r->a->address));
    json_object_set_new(o, "offer", json_string(sg_offer_name(r->a->offer)));
    if (r->ok) {
        json_object_set_new(o, "blocked", json_boolean(r->st.blocked));
        json_object_set_new(o, "ticket", r->st.ticket >= 0 ? json_integer(r->st.ticket) : json_null());
        json_object_set_new(o, "state", *r->st.state ? json_string(r->st.state) : json_null());
    } else {
        char msg[1024];
        json_object_set_new(o, "blocked", json_null());
        json_object_set_new(o, "ticket", json_null());
        json_object_set_new(o, "state", json_null());
        json_t *e = json_object();
        json_object_set_new(e, "message", json_string(r->err.message));
        json_object_set_new(e, "code", *r->err.code ? json_string(r->err.code) : json_null());
        json_object_set_new(e, "http_status", r->err.http_status ? json_integer(r->err.http_status)
                                                                 : json_null());
        json_object_set_new(e, "query_id", *r->err.query_id ? json_string(r->err.query_id) : json_null());
        json_object_set_new(e, "text", json_string(sg_ovh_strerror(&r->err, msg, sizeof(msg))));
        json_object_set_new(o, "error", e);
    }
    return o;
}

static int cmd_check(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    bool json = false;
    size_t n = 0, width = 8;
    struct row *rows;
    int rc = EX_OK;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EX_OK;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "sendguardctl: ovh check: unknown option %s\n", argv[i]);
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (!(rows = calloc(s->naccounts + (size_t)argc, sizeof(*rows)))) {
        fprintf(stderr, "sendguardctl: out of memory\n");
        return NAGIOS_UNKNOWN;
    }
    bool named = false;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        named = true;
        const struct sg_account *a = sg_conf_find_account(conf, argv[i]);
        if (!a || a->offer == SG_OFFER_NONE) {
            fprintf(stderr, "sendguardctl: ovh check: %s is not an OVHcloud account of %s\n",
                    argv[i], sg_conf_path(conf));
            free(rows);
            return NAGIOS_UNKNOWN;
        }
        rows[n++].a = a;
    }
    if (!named)
        for (size_t i = 0; i < s->naccounts; i++)
            if (s->accounts[i].offer != SG_OFFER_NONE)
                rows[n++].a = &s->accounts[i];
    if (n == 0) {
        fprintf(stderr, "sendguardctl: ovh check: no OVHcloud account in %s (accounts with an offer)\n",
                sg_conf_path(conf));
        free(rows);
        return NAGIOS_UNKNOWN;
    }

    struct sg_ovh_err cerr;
    sg_ovh_t *c = sg_ovh_open(s, &cerr);
    const struct sg_ovh_err *fatal = c ? NULL : &cerr;
    for (size_t i = 0; i < n; i++) {
        if (fatal) {
            rows[i].err = *fatal;
            if (fatal != &cerr)         /* another account's call: say this one was skipped */
                snprintf(rows[i].err.request, sizeof(rows[i].err.request), "not checked");
            continue;
        }
        rows[i].ok = sg_ovh_account_status(c, rows[i].a, &rows[i].st, &rows[i].err) == 0;
        /* Refused credentials or no network: every other account would
         * fail alike, and slowly. */
        if (!rows[i].ok && (sg_ovh_err_is_auth(&rows[i].err) || rows[i].err.rc == SG_OVH_E_NET))
            fatal = &rows[i].err;
    }
    sg_ovh_free(c);

    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(rows[i].a->address);
        if (l > width)
            width = l;
        if (rows[i].ok && rows[i].st.blocked)
            rc = NAGIOS_CRITICAL;
        else if (!rows[i].ok && rc != NAGIOS_CRITICAL)
            rc = NAGIOS_UNKNOWN;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, row_json(&rows[i]));
        char *out = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (out)
            printf("%s\n", out);
        else
            rc = NAGIOS_UNKNOWN;
        free(out);
        json_decref(arr);
    } else {
        for (size_t i = 0; i < n; i++) {
            const struct row *r = &rows[i];
            char ticket[32] = "-", msg[1024];

            if (!r->ok) {
                printf("%-*s %-13s UNKNOWN %s\n", (int)width, r->a->address,
                       sg_offer_name(r->a->offer), sg_ovh_strerror(&r->err, msg, sizeof(msg)));
                continue;
            }
            if (r->st.ticket >= 0)
                snprintf(ticket, sizeof(ticket), "%lld", (long long)r->st.ticket);
            printf("%-*s %-13s %-7s ticket=%s state=%s\n", (int)width, r->a->address,
                   sg_offer_name(r->a->offer), r->st.blocked ? "BLOCKED" : "ok", ticket,
                   *r->st.state ? r->st.state : "-");
        }
    }
    if (fatal && !json) {
        char msg[1024];
        fprintf(stderr, "sendguardctl: ovh check: %s\n", sg_ovh_strerror(fatal, msg, sizeof(msg)));
    }
    free(rows);
    return rc;
}

/* ---- accounts ------------------------------------------------------------- */

/* print_cfg_string - a libconfig string literal */
static void print_cfg_string(const char *v)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static int cmd_accounts(sg_conf_t *conf, int argc, char **argv)
{
    static const enum sg_offer offers[] = { SG_OFFER_EXCHANGE, SG_OFFER_EMAILPRO,
                                            SG_OFFER_MXPLAN, SG_OFFER_MXPLAN_LEGACY };
    const struct sg_settings *s = sg_conf_settings(conf);
    struct sg_ovh_found *all[4] = { NULL };
    size_t nall[4] = { 0 }, total = 0;
    struct sg_ovh_err err;
    char msg[1024];
    int rc = EX_OK;

    if (argc > 1) {
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
            usage(stdout);
            return EX_OK;
        }
        fprintf(stderr, "sendguardctl: ovh accounts: unexpected argument %s\n", argv[1]);
        usage(stderr);
        return EX_USAGE;
    }
    sg_ovh_t *c = sg_ovh_open(s, &err);
    if (!c) {
        fprintf(stderr, "sendguardctl: ovh accounts: %s\n", sg_ovh_strerror(&err, msg, sizeof(msg)));
        return EXIT_FAILURE;
    }
    size_t listed = 0;
    for (size_t k = 0; k < 4; k++) {
        if (sg_ovh_list_accounts(c, offers[k], &all[k], &nall[k], &err) != 0) {
            fprintf(stderr, "sendguardctl: ovh accounts: %s accounts not listed: %s\n",
                    sg_offer_name(offers[k]), sg_ovh_strerror(&err, msg, sizeof(msg)));
            if (sg_ovh_err_is_auth(&err) || err.rc == SG_OVH_E_NET || err.rc == SG_OVH_E_ABORTED)
                break;
            continue;
        }
        listed++;
        total += nall[k];
    }
    sg_ovh_free(c);
    if (listed == 0) {
        rc = EXIT_FAILURE;
        goto out;
    }

    printf("# %zu OVHcloud e-mail account%s visible to the API credentials%s.\n"
           "# Paste into the configuration; add senders and limits where needed.\n",
           total, total == 1 ? "" : "s", listed < 4 ? " (some offers could not be listed: see stderr)" : "");
    printf("accounts = (");
    size_t printed = 0;
    bool already = false;
    for (size_t k = 0; k < 4; k++) {
        for (size_t i = 0; i < nall[k]; i++) {
            const struct sg_ovh_found *f = &all[k][i];
            printf("%s", printed ? (already ? ", # already configured\n" : ",\n") : "\n");
            printed++;
            already = sg_conf_find_account(conf, f->address) != NULL;
            printf("    { address = ");
            print_cfg_string(f->address);
            printf("; offer = ");
            print_cfg_string(sg_offer_name(f->offer));
            printf(";");
            if (f->organization) {
                printf(" organization = ");
                print_cfg_string(f->organization);
                printf(";");
            }
            if (f->service) {
                printf(" service = ");
                print_cfg_string(f->service);
                printf(";");
            }
            printf(" }");
        }
    }
    printf("%s);\n", !printed ? " " : already ? " # already configured\n" : "\n");
    if (listed < 4)
        rc = EXIT_FAILURE;
out:
    for (size_t k = 0; k < 4; k++)
        sg_ovh_found_free(all[k], nall[k]);
    return rc;
}

/* ---- credential ----------------------------------------------------------- */

static unsigned offers_in_use(const struct sg_settings *s)
{
    unsigned offers = 0;

    /* changePassword rules only for the offers in use (all when none is). */
    for (size_t i = 0; i < s->naccounts; i++)
        if (s->accounts[i].offer != SG_OFFER_NONE)
            offers |= 1u << s->accounts[i].offer;
    return offers ? offers : SG_OVH_OFFERS_ALL;
}

#define WEEK_MS (7 * 24 * 3600 * 1000LL)

/* credential --check: GET /auth/currentCredential against what sendguard needs */
static int cmd_credential_check(sg_conf_t *conf, bool json)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    struct sg_ovh_current cur;
    struct sg_ovh_err err;
    char msg[1024];
    sg_ovh_t *c = sg_ovh_open(s, &err);
    int rc = EX_OK;

    if (!c || sg_ovh_current_credential(c, &cur, &err) != 0) {
        sg_ovh_free(c);
        if (json) {
            json_t *o = json_pack("{s:s,s:s?,s:o,s:o}", "error", sg_ovh_strerror(&err, msg, sizeof(msg)),
                                  "code", *err.code ? err.code : NULL,
                                  "http_status", err.http_status ? json_integer(err.http_status) : json_null(),
                                  "query_id", *err.query_id ? json_string(err.query_id) : json_null());
            char *out = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("%s\n", out ? out : "{}");
            free(out);
            json_decref(o);
        } else {
            printf("credential UNKNOWN %s\n", sg_ovh_strerror(&err, msg, sizeof(msg)));
        }
        /* A refused key is a finding (2); no answer at all is unknown (3). */
        return sg_ovh_err_is_auth(&err) && err.rc == SG_OVH_E_API ? NAGIOS_CRITICAL : NAGIOS_UNKNOWN;
    }
    sg_ovh_free(c);
    json_t *needed = sg_ovh_access_rules(offers_in_use(s));
    json_t *missing = sg_ovh_rules_missing(cur.rules, needed);
    bool validated = strcmp(cur.status, "validated") == 0;
    int64_t left = cur.expires_ms >= 0 ? cur.expires_ms - sg_time_real_ms() : -1;
    bool expiring = cur.expires_ms >= 0 && left < WEEK_MS;
    if (!validated || json_array_size(missing) > 0 || expiring)
        rc = NAGIOS_CRITICAL;
    if (json) {
        json_t *o = json_pack("{s:s,s:b,s:o,s:o,s:O,s:O,s:O}", "status", cur.status,
                              "validated", validated,
                              "expiration", *cur.expiration ? json_string(cur.expiration) : json_null(),
                              "expires_within_a_week", json_boolean(expiring),
                              "rules", cur.rules, "needed", needed, "missing", missing);
        json_object_set(o, "allowed_ips", cur.allowed_ips ? cur.allowed_ips : json_null());
        char *out = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", out ? out : "{}");
        free(out);
        json_decref(o);
    } else {
        size_t i;
        json_t *r;
        printf("status: %s%s\n", cur.status, validated ? "" : "  (PROBLEM: not validated: open "
               "the validation URL, or request a new key with `sendguardctl ovh credential`)");
        if (cur.expires_ms < 0)
            printf("expires: never\n");
        else
            printf("expires: %s%s\n", cur.expiration,
                   left <= 0 ? "  (PROBLEM: expired)" : expiring ? "  (PROBLEM: within a week)" : "");
        printf("allowed IPs: ");
        if (!cur.allowed_ips || json_array_size(cur.allowed_ips) == 0)
            printf("any\n");
        else
            json_array_foreach(cur.allowed_ips, i, r)
                printf("%s%s", json_string_value(r) ? json_string_value(r) : "?",
                       i + 1 < json_array_size(cur.allowed_ips) ? ", " : "\n");
        printf("rules granted:\n");
        json_array_foreach(cur.rules, i, r)
            printf("   %-6s %s\n", json_string_value(json_object_get(r, "method")),
                   json_string_value(json_object_get(r, "path")));
        if (json_array_size(missing) == 0) {
            printf("rules sendguard needs: all granted\n");
        } else {
            printf("rules sendguard needs and the key lacks (PROBLEM):\n");
            json_array_foreach(missing, i, r)
                printf("   %-6s %s\n", json_string_value(json_object_get(r, "method")),
                       json_string_value(json_object_get(r, "path")));
            printf("request a key with them: sendguardctl ovh credential\n");
        }
    }
    json_decref(needed);
    json_decref(missing);
    sg_ovh_current_clear(&cur);
    return rc;
}

static int cmd_credential(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    const char *redirection = NULL;
    const char *ips[64];
    size_t nips = 0;
    bool check = false, json = false;
    struct sg_ovh_err err;
    struct sg_ovh_credential cr;
    char msg[1024];
    unsigned offers = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--allowed-ip") == 0 && i + 1 < argc && nips < 64) {
            const char *ip = argv[++i];
            if (!*ip || strspn(ip, "0123456789abcdefABCDEF.:/") != strlen(ip)) {
                fprintf(stderr, "sendguardctl: ovh credential: --allowed-ip takes an address or "
                                "a block (192.0.2.10, 192.0.2.0/24, 2001:db8::/64)\n");
                return EX_USAGE;
            }
            ips[nips++] = ip;
        } else if (strcmp(argv[i], "--redirection") == 0 && i + 1 < argc) {
            redirection = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EX_OK;
        } else {
            fprintf(stderr, "sendguardctl: ovh credential: unexpected argument %s\n", argv[i]);
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (check && (redirection || nips)) {
        fprintf(stderr, "sendguardctl: ovh credential: --check takes no --redirection nor --allowed-ip\n");
        usage(stderr);
        return EX_USAGE;
    }
    if (json && !check) {
        fprintf(stderr, "sendguardctl: ovh credential: --json goes with --check\n");
        usage(stderr);
        return EX_USAGE;
    }
    if (check)
        return cmd_credential_check(conf, json);
    if (redirection && strncmp(redirection, "https://", 8) != 0 && strncmp(redirection, "http://", 7) != 0) {
        fprintf(stderr, "sendguardctl: ovh credential: --redirection takes an http(s) URL\n");
        return EX_USAGE;
    }
    offers = offers_in_use(s);

    char cerr[1024];
    sg_ovh_creds_t *creds = sg_ovh_creds_load(s->ovh_credentials, s->ovh_endpoint, cerr, sizeof(cerr));
    if (!creds) {
        fprintf(stderr, "sendguardctl: ovh credential: %s\n", cerr);
        return EXIT_FAILURE;
    }
    if (sg_ovh_creds_auth(creds) != SG_OVH_AUTH_SIGNED) {
        fprintf(stderr, "sendguardctl: ovh credential: these credentials are OAuth2 "
                        "(client_id/client_secret), which need no consumer key\n");
        sg_ovh_creds_free(creds);
        return EXIT_FAILURE;
    }
    char endpoint[256], files[1024];
    snprintf(endpoint, sizeof(endpoint), "%s", sg_ovh_creds_endpoint(creds));
    snprintf(files, sizeof(files), "%s", sg_ovh_creds_files(creds));
    sg_ovh_t *c = sg_ovh_new(creds, NULL, &err);
    sg_ovh_creds_free(creds);
    if (!c || sg_ovh_credential_request(c, offers, redirection, ips, nips, &cr, &err) != 0) {
        fprintf(stderr, "sendguardctl: ovh credential: %s\n", sg_ovh_strerror(&err, msg, sizeof(msg)));
        sg_ovh_free(c);
        return EXIT_FAILURE;
    }
    sg_ovh_free(c);

    json_t *rules = sg_ovh_access_rules(offers);
    printf("A consumer key was requested for endpoint %s (state: %s).\n\n"
           "1. Open this URL, log in as the OVHcloud account that owns the e-mail\n"
           "   services, and approve the access (choose an unlimited validity):\n\n"
           "   %s\n\n"
           "2. Then put the key under [%s] in %s:\n\n"
           "   consumer_key=%s\n\n"
           "Access rules requested:\n",
           endpoint, *cr.state ? cr.state : "-", cr.validation_url, endpoint,
           *files ? files : "your ovh.conf", cr.consumer_key);
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
        printf("   %-4s %s\n", json_string_value(json_object_get(r, "method")),
               json_string_value(json_object_get(r, "path")));
    json_decref(rules);
    if (nips) {
        printf("Usable only from:");
        for (size_t k = 0; k < nips; k++)
            printf(" %s", ips[k]);
        printf("\n");
    } else {
        printf("Usable from any address: --allowed-ip ADDR (once per relay) restricts it.\n");
    }
    printf("Check it once validated: sendguardctl ovh credential --check\n");
    sg_ovh_credential_clear(&cr);
    return EX_OK;
}

int sg_ctl_ovh(sg_conf_t *conf, int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(conf, argc - 1, argv + 1);
    if (strcmp(argv[1], "accounts") == 0)
        return cmd_accounts(conf, argc - 1, argv + 1);
    if (strcmp(argv[1], "credential") == 0)
        return cmd_credential(conf, argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return EX_OK;
    }
    fprintf(stderr, "sendguardctl: ovh: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}
