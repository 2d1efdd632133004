/*
 * ctl_check.c - `sendguardctl check` and `sendguardctl limits`: the
 * configuration as sendguard will apply it.
 *
 * Must not: decide which account a sender maps to by itself (sg_policy
 * does it, so this output cannot disagree with the daemon).
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "ctl.h"
#include "sg_policy.h"

int sg_ctl_check(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);

    (void)argc;
    (void)argv;
    printf("%s: ok (%zu accounts, %zu default limits, store %s)\n", sg_conf_path(conf),
           s->naccounts, s->nlimits, s->store_backend == SG_STORE_REDIS ? "redis" : "memory");
    return 0;
}

static void fmt_window(char *buf, size_t size, uint64_t ms)
{
    static const struct { uint64_t ms; char c; } u[] = {
        { 86400000, 'd' }, { 3600000, 'h' }, { 60000, 'm' }, { 1000, 's' } };

    for (size_t i = 0; i < 4; i++)
        if (ms % u[i].ms == 0) {
            snprintf(buf, size, "%llu%c", (unsigned long long)(ms / u[i].ms), u[i].c);
            return;
        }
    snprintf(buf, size, "%llums", (unsigned long long)ms);
}

static void print_limits(const struct sg_limit *l, size_t n)
{
    printf("  %-12s %-7s %10s %10s %12s %9s %-8s %s\n", "limit", "window", "messages",
           "recipients", "bytes", "distinct", "action", "warn_at");
    for (size_t i = 0; i < n; i++) {
        char win[24], cap[SG_UNIT_COUNT][24];

        fmt_window(win, sizeof(win), l[i].window_ms);
        for (int u = 0; u < SG_UNIT_COUNT; u++) {
            if (l[i].cap[u])
                snprintf(cap[u], sizeof(cap[u]), "%llu", (unsigned long long)l[i].cap[u]);
            else
                snprintf(cap[u], sizeof(cap[u]), "-");
        }
        printf("  %-12s %-7s %10s %10s %12s %9s %-8s %.2f\n", l[i].name, win,
               cap[SG_UNIT_MESSAGES], cap[SG_UNIT_RECIPIENTS], cap[SG_UNIT_BYTES],
               cap[SG_UNIT_DISTINCT], sg_action_name(l[i].action), l[i].warn_at);
    }
}

int sg_ctl_limits(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);

    if (argc > 2) {
        fprintf(stderr, "usage: sendguardctl limits [ACCOUNT|IDENTITY]\n");
        return EX_USAGE;
    }
    if (argc == 2) {
        struct sg_resolved r;

        sg_policy_resolve(s, argv[1], NULL, &r);
        if (r.acct == NULL)
            printf("%s: no configured account: its own implicit account, default limits\n",
                   r.identity);
        else
            printf("%s: account %s (%s)\n", r.identity, r.acct->address,
                   sg_offer_name(r.acct->offer));
        print_limits(r.limits, r.nlimits);
        return 0;
    }
    printf("default (any sender without a configured account):\n");
    print_limits(s->limits, s->nlimits);
    for (size_t i = 0; i < s->naccounts; i++) {
        const struct sg_account *a = &s->accounts[i];

        printf("\naccount %s (%s), on_block %s, senders:", a->address,
               sg_offer_name(a->offer), sg_action_name(a->on_block));
        for (size_t j = 0; j < a->nsenders; j++)
            printf(" %s", a->senders[j]);
        printf("\n");
        print_limits(a->limits, a->nlimits);
    }
    if (s->nallow) {
        printf("\nnever throttled (allow):");
        for (size_t i = 0; i < s->nallow; i++)
            printf(" %s", s->allow[i]);
        printf("\n");
    }
    return 0;
}
