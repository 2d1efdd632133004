/*
 * ctl_flood.c - `sendguardctl report --flood [--since 24h] [--json]`: the
 * relay-wide summary of implicit identities (senders no configured
 * account matches) that every relay writes into Redis: messages and new
 * identities per hour, and the top identities, client IPs and mailers.
 * A flood of random envelope senders shows as many new identities from
 * few IPs or one mailer.
 * Must not: change anything in the store.
 */
#include "ctl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "sg_log.h"
#include "sg_time.h"


static void print_top(const char *title, json_t *list)
{
    size_t i;
    json_t *v;

    printf("%s:\n", title);
    if (json_array_size(list) == 0)
        printf("  (none)\n");
    json_array_foreach(list, i, v) {
        char buf[512];
        const char *s = json_string_value(json_object_get(v, "value"));

        sg_log_escape_text(buf, sizeof(buf), s ? s : "", s ? strlen(s) : 0);
        printf("  %10lld  %s\n", (long long)json_integer_value(json_object_get(v, "count")), buf);
    }
}

int sg_ctl_report_flood(sg_conf_t *conf, int argc, char **argv)
{
    const struct sg_settings *s = sg_conf_settings(conf);
    uint64_t since_ms = 24 * 3600000ULL;
    bool json = false;
    sg_store_t *st;
    char *text = NULL;
    json_t *root;
    json_error_t je;
    int rc;

    for (int i = 1; i < argc; i++) {             /* argv[0] is "report" */
        if (strcmp(argv[i], "--flood") == 0)
            continue;
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc &&
                   sg_conf_parse_duration(argv[i + 1], &since_ms)) {
            i++;
        } else {
            fprintf(stderr, "usage: sendguardctl report --flood [--json] [--since 24h]\n");
            return EX_USAGE;
        }
    }
    if ((st = sg_ctl_store_open(s, "report --flood")) == NULL)
        return EX_UNAVAILABLE;
    rc = sg_store_flood_json(st, (unsigned)((since_ms + 3599999) / 3600000), &text);
    sg_store_free(st);
    if (rc != 0 || (root = json_loads(text, 0, &je)) == NULL) {
        fprintf(stderr, "sendguardctl: cannot read the flood summary from Redis\n");
        free(text);
        return EX_UNAVAILABLE;
    }
    free(text);
    if (json) {
        json_dumpf(root, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        size_t i;
        json_t *h;

        printf("Implicit identities (senders no configured account matches), all relays, "
               "last %lluh:\n", (unsigned long long)((since_ms + 3599999) / 3600000));
        printf("  messages %lld, new identities %lld\n",
               (long long)json_integer_value(json_object_get(root, "messages")),
               (long long)json_integer_value(json_object_get(root, "new")));
        printf("  hour (UTC)        messages  new identities\n");
        json_array_foreach(json_object_get(root, "hours"), i, h) {
            char when[32];

            sg_time_utc(when, sizeof(when),
                        (int64_t)json_integer_value(json_object_get(h, "hour")) * 3600000,
                        "%Y-%m-%d %H:00");
            printf("  %s  %9lld  %14lld\n", when,
                   (long long)json_integer_value(json_object_get(h, "messages")),
                   (long long)json_integer_value(json_object_get(h, "new")));
        }
        print_top("Top identities", json_object_get(root, "identities"));
        print_top("Top client IPs", json_object_get(root, "ips"));
        print_top("Top mailers", json_object_get(root, "mailers"));
        printf("(top lists: counts are lower bounds, each relay adds what it certainly saw; "
               "each hour keeps the top %lld)\n",
               (long long)json_integer_value(json_object_get(root, "top_k")));
    }
    json_decref(root);
    return 0;
}
