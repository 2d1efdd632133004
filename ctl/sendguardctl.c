/*
 * sendguardctl.c - the postmaster's tool: option parsing and dispatch to
 * one file per sub-command (ctl.h).
 *
 * Must not: hold logic of its own that policy/ or ovh/ already have.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "ctl.h"


static const struct {
    const char *name;
    int (*fn)(sg_conf_t *, int, char **);
    const char *help;
} commands[] = {
    { "check", sg_ctl_check, "check the configuration (exit 0, or 78 with FILE:LINE errors)" },
    { "limits", sg_ctl_limits, "print the effective limits of every account [ACCOUNT|IDENTITY]" },
    { "status", sg_ctl_status, "usage per limit, block state and evidence [ACCOUNT] [--json]" },
    { "reset", sg_ctl_reset, "forget an account's counters: reset ACCOUNT" },
    { "ovh", sg_ctl_ovh, "OVHcloud API: ovh check|accounts|credential" },
    { "lockdown", sg_ctl_lockdown, "hold an account's mail on every relay: lockdown ACCOUNT [--off]" },
    { "report", sg_ctl_report, "evidence and draft answers: report ACCOUNT [--json] [--since 24h]; "
      "report --flood: implicit identities of all relays" },
    { "unblock", sg_ctl_unblock, "answer the ticket / change the legacy password: unblock ACCOUNT "
                                 "[--draft] [--answers FILE] [--yes] [--show-password]" },
    { "rotate-password", sg_ctl_rotate, "new password for an account: rotate-password ACCOUNT "
                                        "[--yes] [--show-password]" },
    { "suggest-limits", sg_ctl_suggest, "limits from the traffic seen: suggest-limits [ACCOUNT] "
                                        "[--days N] [--max-hourly N] [--max-daily N] [--json]" },
    { "release-helper", sg_ctl_release_helper, "root: release held mail for the daemon (queue "
                                               "ids on stdin, or --listen SOCKET)" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sendguardctl [-c FILE] COMMAND [ARGS]\n"
               "  -c FILE  configuration (default /etc/sendguard/sendguard.conf)\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    const char *path = "/etc/sendguard/sendguard.conf";
    sg_conf_t *conf;
    int opt, rc;

    while ((opt = getopt(argc, argv, "+c:hV")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("sendguardctl %s\n", SG_VERSION); return 0;
        default: usage(stderr); return EX_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[optind], commands[i].name) != 0)
            continue;
        conf = sg_conf_load(path, NULL, NULL);
        if (conf == NULL)
            return EX_CONFIG;
        rc = commands[i].fn(conf, argc - optind, argv + optind);
        sg_conf_unref(conf);
        return rc;
    }
    fprintf(stderr, "sendguardctl: unknown command '%s'\n", argv[optind]);
    usage(stderr);
    return EX_USAGE;
}
