/*
 * ctl_evidence.c - an account's evidence (the store's typed report,
 * sg_store_evidence_get) as the JSON object `sendguardctl status` prints:
 * the one place, with the Redis store's own replies, where evidence is
 * JSON.
 *
 * Must not: read the store (the caller passes the report), or parse JSON
 * back: every reader in the process uses the typed report.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl.h"

static json_t *ms_or_null(int64_t ms)
{
    return ms >= 0 ? json_integer(ms) : json_null();
}

/* A string the report holds is UTF-8 already; a name from the command line
 * may not be: its bytes above 0x7f become '?'. */
static json_t *str(const char *s)
{
    json_t *j = json_string(s ? s : "");
    char *t;

    if (j != NULL || (t = strdup(s)) == NULL)
        return j;
    for (unsigned char *p = (unsigned char *)t; *p; p++)
        if (*p > 0x7f)
            *p = '?';
    j = json_string(t);
    free(t);
    return j;
}

static json_t *seen_json(const struct sg_ev_seen *v, size_t n, bool first)
{
    json_t *o = json_object();

    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, v[i].value, first ?
            json_pack("{s:I,s:o}", "count", (json_int_t)v[i].count,
                      "first_seen", ms_or_null(v[i].first_seen_ms)) :
            json_integer((json_int_t)v[i].count));
    return o;
}

json_t *sg_ctl_evidence_json(const char *account, const struct sg_evidence_report *r)
{
    static const char *const act[] = { "ok", "over", "lockdown" };
    json_t *root = json_object(), *hourly = json_object(), *mis = json_array(),
           *recent = json_array();

    for (size_t i = 0; i < r->nhours; i++) {
        char h[32];

        snprintf(h, sizeof(h), "%lld", (long long)r->hours[i].hour);
        json_object_set_new(hourly, h, json_pack("{s:I,s:I,s:I}",
            "messages", (json_int_t)r->hours[i].messages,
            "recipients", (json_int_t)r->hours[i].recipients,
            "refused", (json_int_t)r->hours[i].refused));
    }
    for (size_t i = 0; i < r->nmismatches; i++) {
        const struct sg_ev_mismatch *m = &r->mismatches[i];

        json_array_append_new(mis, json_pack("{s:I,s:s,s:s,s:s,s:s}", "t", (json_int_t)m->t_ms,
                                             "qid", m->qid, "identity", m->identity,
                                             "from_domain", m->from_domain, "ip", m->ip));
    }
    for (size_t i = 0; i < r->nrecent; i++) {
        const struct sg_ev_msg *m = &r->recent[i];

        json_array_append_new(recent, json_pack(
            "{s:I,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:b}", "t", (json_int_t)m->t_ms,
            "qid", m->qid, "ip", m->ip, "identity", m->identity, "rcpts", (json_int_t)m->rcpts,
            "size", (json_int_t)m->size, "msgid", m->msgid, "mailer", m->mailer,
            "relay", m->relay, "action", act[m->action], "charged", m->charged));
    }
    json_object_set_new(root, "account", str(account));
    json_object_set_new(root, "last_seen", ms_or_null(r->last_seen_ms));
    json_object_set_new(root, "by_ip", seen_json(r->ips, r->nips, true));
    json_object_set_new(root, "by_mailer", seen_json(r->mailers, r->nmailers, true));
    json_object_set_new(root, "by_domain", seen_json(r->domains, r->ndomains, false));
    json_object_set_new(root, "from_mismatch", json_integer((json_int_t)r->from_mismatch));
    json_object_set_new(root, "from_mismatch_recent", mis);
    json_object_set_new(root, "hourly", hourly);
    json_object_set_new(root, "recent", recent);
    return root;
}
