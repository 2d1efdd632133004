/*
 * sg_trace_render.c - a trace's conclusion (sg_trace.h) shown three ways:
 * text lines for `sendguardctl report`, a JSON object for --json, and the
 * answer to the ticket's question 1 in English or French, in the tone of
 * sg_block_draft (ovh/sg_block.c).
 *
 * Every value shown came from outside (the ticket's sample, or the MTA
 * through the record): text goes through sg_log_escape_text (no control
 * byte, so no forged line), JSON gets valid UTF-8 or an escaped copy.
 * Must NOT: decide anything (sg_trace.c concludes), do I/O.
 */
#include "sg_trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sg_log.h"

/* The texts are written to a memory stream (open_memstream). */
static FILE *out_open(char **s, size_t *n)
{
    *s = NULL;
    *n = 0;
    return open_memstream(s, n);
}

/* the text (the stream's buffer is only set once it is closed), NULL on error */
static char *out_close(FILE *f, char **s)
{
    bool bad = ferror(f) != 0;

    if (fclose(f) != 0 || bad) {
        free(*s);
        return NULL;
    }
    return *s;
}

/* escaped for a terminal or a draft: one line, "-" when empty */
#define ESC(buf, v) sg_log_escape_text((buf), sizeof(buf), (v)[0] ? (v) : "-", \
                                       (v)[0] ? strlen(v) : 1)

static const char *utc(char *out, size_t size, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms < 0 || gmtime_r(&t, &tm) == NULL) {
        snprintf(out, size, "-");
        return out;
    }
    strftime(out, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return out;
}

/* "<id>" escaped, or "none" / "aucun" */
static const char *mid(char *out, size_t size, const char *msgid, bool fr)
{
    char e[600];

    if (msgid[0] == '\0')
        snprintf(out, size, "%s", fr ? "aucun" : "none");
    else
        snprintf(out, size, "<%s>", sg_log_escape_text(e, sizeof(e), msgid, strlen(msgid)));
    return out;
}

const char *sg_trace_verdict_name(enum sg_trace_verdict v)
{
    return v == SG_TRACE_PASSED ? "passed" : v == SG_TRACE_NOT_OURS ? "not_ours" : "cannot_tell";
}

static const struct {
    const char *name, *en, *fr;
} whys[] = {
    [SG_TRACE_WHY_NONE] = { "", "", "" },
    [SG_TRACE_WHY_NO_SAMPLE] = { "no_sample", "the ticket shows no header sample",
                                 "le ticket ne montre aucun \u00e9chantillon d'en-t\u00eates" },
    [SG_TRACE_WHY_UNREADABLE] = { "unreadable", "the sample has neither a Message-ID nor a "
                                  "Received: header that can be read",
                                  "l'\u00e9chantillon n'a ni Message-ID ni en-t\u00eate "
                                  "Received: lisible" },
    [SG_TRACE_WHY_TRUNCATED] = { "truncated", "the sample is cut before its Message-ID, and "
                                 "what remains of its Received: headers does not name our relays",
                                 "l'\u00e9chantillon est coup\u00e9 avant son Message-ID, et ce "
                                 "qui reste de ses en-t\u00eates Received: ne nomme pas nos relais" },
    [SG_TRACE_WHY_UNDATED] = { "undated", "the sample has no readable date, so it cannot be "
                               "placed in the period our records cover",
                               "l'\u00e9chantillon n'a pas de date lisible : impossible de le "
                               "situer dans la p\u00e9riode couverte par nos relev\u00e9s" },
    [SG_TRACE_WHY_OLDER] = { "older", "the sample is older than our records",
                             "l'\u00e9chantillon est plus ancien que nos relev\u00e9s" },
    [SG_TRACE_WHY_FUTURE] = { "future", "the sample is dated in the future",
                              "l'\u00e9chantillon est dat\u00e9 dans le futur" },
    [SG_TRACE_WHY_NO_RECORD] = { "no_record", "our relays have no record for this account",
                                 "nos relais n'ont aucun relev\u00e9 pour ce compte" },
    [SG_TRACE_WHY_NOT_RECORDED] = { "not_recorded", "a Received: header names one of our relays, "
                                    "but our records have no message with that queue id",
                                    "un en-t\u00eate Received: nomme l'un de nos relais, mais nos "
                                    "relev\u00e9s n'ont aucun message avec cet identifiant" },
    [SG_TRACE_WHY_NO_RELAYS] = { "no_relays", "the sample has no Message-ID, and no host name of "
                                 "our relays was given to recognise their Received: headers",
                                 "l'\u00e9chantillon n'a pas de Message-ID, et aucun nom d'h\u00f4te "
                                 "de nos relais n'a \u00e9t\u00e9 donn\u00e9 pour reconna\u00eetre "
                                 "leurs en-t\u00eates Received:" },
};

const char *sg_trace_why_name(enum sg_trace_why w)
{
    return (size_t)w < sizeof(whys) / sizeof(whys[0]) ? whys[w].name : "";
}

static const char *why_text(enum sg_trace_why w, bool fr)
{
    if ((size_t)w >= sizeof(whys) / sizeof(whys[0]))
        w = SG_TRACE_WHY_UNREADABLE;
    return fr ? whys[w].fr : whys[w].en;
}

/* --- text for report -------------------------------------------------------- */

static void text_finding(FILE *b, const struct sg_trace_result *r, size_t i)
{
    const struct sg_trace_finding *f = &r->f[i];
    char e1[300], e2[300], e3[300], e4[620], t1[40], t2[40];

    fprintf(b, "  sample %zu: ", i + 1);
    switch (f->verdict) {
    case SG_TRACE_PASSED:
        fprintf(b, "passed through relay %s as queue id %s at %s (matched by its %s)\n",
                ESC(e1, f->msg.relay), ESC(e2, f->msg.qid), utc(t1, sizeof(t1), f->msg.t_ms),
                f->how == SG_TRACE_BY_HOP ? "Received: header" : "Message-ID");
        fprintf(b, "    client IP %s, login %s, mailer %s\n", ESC(e1, f->msg.ip),
                ESC(e2, f->msg.identity), ESC(e4, f->msg.mailer));
        if (f->others_total) {
            fprintf(b, "    the same client IP or login in that hour: %zu other message(s)%s\n",
                    f->others_total, f->others_total > f->nothers ? ", the first ones:" : ":");
            for (size_t k = 0; k < f->nothers; k++) {
                const struct sg_trace_msg *o = &f->others[k];
                fprintf(b, "      %s  qid %s  ip %s  login %s  mailer %s\n",
                        utc(t1, sizeof(t1), o->t_ms), ESC(e1, o->qid), ESC(e2, o->ip),
                        ESC(e3, o->identity), ESC(e4, o->mailer));
            }
        }
        break;
    case SG_TRACE_NOT_OURS:
        fprintf(b, "did not pass through any of our relays (Message-ID %s, dated %s; "
                "records since %s)\n", mid(e4, sizeof(e4), f->msgid, false), utc(t1, sizeof(t1), f->date_ms),
                utc(t2, sizeof(t2), r->oldest_ms));
        break;
    default:
        fprintf(b, "cannot tell: %s", why_text(f->why, false));
        if (f->why == SG_TRACE_WHY_NOT_RECORDED)
            fprintf(b, " (by %s, id %s)", ESC(e1, f->hop_host), ESC(e2, f->hop_id));
        if (f->why == SG_TRACE_WHY_OLDER || f->why == SG_TRACE_WHY_FUTURE)
            fprintf(b, " (dated %s, records since %s)", utc(t1, sizeof(t1), f->date_ms),
                    utc(t2, sizeof(t2), r->oldest_ms));
        fprintf(b, "\n");
        break;
    }
}

char *sg_trace_text(const struct sg_trace_result *r, const char *account)
{
    char e[300], *s;
    size_t n;
    FILE *b = out_open(&s, &n);

    if (b == NULL)
        return NULL;
    if (r->n == 0) {
        fprintf(b, "Header sample: cannot tell: %s.\n", why_text(r->why, false));
        return out_close(b, &s);
    }
    fprintf(b, "Header sample: %s (%zu sample%s: %zu passed through our relays, %zu did not, "
            "%zu cannot tell)\n", sg_trace_verdict_name(r->verdict), r->n, r->n == 1 ? "" : "s",
            r->npassed, r->nnot_ours, r->n - r->npassed - r->nnot_ours);
    for (size_t i = 0; i < r->n; i++)
        text_finding(b, r, i);
    if (r->npassed)
        fprintf(b, "  -> the client IP and login above are the machine or application to clean "
                "(antivirus, software using the account).\n");
    if (r->nnot_ours)
        fprintf(b, "  -> the account's password is used outside our relays: run "
                "`sendguardctl rotate-password %s` before asking for the unblock.\n",
                account ? sg_log_esc(e, sizeof(e), account) : "ACCOUNT");
    return out_close(b, &s);
}

char *sg_trace_token(const struct sg_trace_result *r, char *buf, size_t size)
{
    char relay[200], qid[140], ip[110], login[300];
    const struct sg_trace_finding *f = NULL;

    if (r == NULL) {
        snprintf(buf, size, "trace=cannot_tell why=none");
        return buf;
    }
    for (size_t i = 0; i < r->n && f == NULL; i++)
        if (r->f[i].verdict == SG_TRACE_PASSED)
            f = &r->f[i];
    if (r->verdict == SG_TRACE_PASSED && f != NULL)
        snprintf(buf, size, "trace=passed relay=%s qid=%s ip=%s login=%s",
                 sg_log_esc(relay, sizeof(relay), f->msg.relay),
                 sg_log_esc(qid, sizeof(qid), f->msg.qid),
                 sg_log_esc(ip, sizeof(ip), f->msg.ip[0] ? f->msg.ip : "-"),
                 sg_log_esc(login, sizeof(login), f->msg.identity[0] ? f->msg.identity : "-"));
    else if (r->verdict == SG_TRACE_NOT_OURS)
        snprintf(buf, size, "trace=not_ours");
    else
        snprintf(buf, size, "trace=cannot_tell why=%s",
                 *sg_trace_why_name(r->why) ? sg_trace_why_name(r->why) : "none");
    return buf;
}

/* --- JSON ------------------------------------------------------------------- */

static json_t *js(const char *s)
{
    json_t *v = json_string(s);
    char e[4 * SG_TRACE_VALUE + 8];

    if (v == NULL)                /* not UTF-8: an escaped ASCII copy */
        v = json_string(sg_log_escape(e, sizeof(e), s, strlen(s)));
    return v;
}

static json_t *jtime(int64_t ms)
{
    return ms < 0 ? json_null() : json_integer(ms);
}

static json_t *jmsg(const struct sg_trace_msg *m)
{
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:I}", "time", jtime(m->t_ms),
                     "relay", js(m->relay), "qid", js(m->qid), "ip", js(m->ip),
                     "login", js(m->identity), "mailer", js(m->mailer), "msgid", js(m->msgid),
                     "rcpts", (json_int_t)m->rcpts);
}

json_t *sg_trace_json(const struct sg_trace_result *r)
{
    json_t *o = json_object(), *arr = json_array();

    if (o == NULL || arr == NULL) {
        json_decref(o);
        json_decref(arr);
        return NULL;
    }
    json_object_set_new(o, "verdict", json_string(sg_trace_verdict_name(r->verdict)));
    json_object_set_new(o, "why", json_string(sg_trace_why_name(r->why)));
    json_object_set_new(o, "records_since", jtime(r->oldest_ms));
    for (size_t i = 0; i < r->n; i++) {
        const struct sg_trace_finding *f = &r->f[i];
        json_t *s = json_object();
        if (s == NULL)
            continue;
        json_object_set_new(s, "verdict", json_string(sg_trace_verdict_name(f->verdict)));
        json_object_set_new(s, "why", json_string(sg_trace_why_name(f->why)));
        json_object_set_new(s, "msgid", js(f->msgid));
        json_object_set_new(s, "date", jtime(f->date_ms));
        if (f->verdict == SG_TRACE_PASSED) {
            json_t *others = json_array();
            json_object_set_new(s, "matched_by",
                                json_string(f->how == SG_TRACE_BY_HOP ? "received" : "message-id"));
            json_object_set_new(s, "message", jmsg(&f->msg));
            for (size_t k = 0; others && k < f->nothers; k++)
                json_array_append_new(others, jmsg(&f->others[k]));
            json_object_set_new(s, "same_hour_total", json_integer((json_int_t)f->others_total));
            json_object_set_new(s, "same_hour", others);
        }
        if (f->why == SG_TRACE_WHY_NOT_RECORDED) {
            json_object_set_new(s, "hop_by", js(f->hop_host));
            json_object_set_new(s, "hop_id", js(f->hop_id));
        }
        json_array_append_new(arr, s);
    }
    json_object_set_new(o, "samples", arr);
    return o;
}

/* --- the answer to question 1 ----------------------------------------------- */

static const struct sg_trace_finding *first(const struct sg_trace_result *r,
                                            enum sg_trace_verdict v)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->f[i].verdict == v)
            return &r->f[i];
    return NULL;
}

static void answer_passed(FILE *b, const struct sg_trace_result *r, bool fr)
{
    const struct sg_trace_finding *f = first(r, SG_TRACE_PASSED);
    char e1[300], e2[300], e3[300], e4[300], e5[600], t[40];

    fprintf(b, fr ? "Oui. Le message de l'\u00e9chantillon d'en-t\u00eates est pass\u00e9 par "
                    "notre relais %s sous l'identifiant %s le %s, depuis l'adresse IP cliente %s "
                    "(identifiant %s, logiciel d'envoi %s)."
                  : "Yes. The message of the header sample passed through our relay %s as queue "
                    "id %s on %s, from the client IP address %s (login %s, mail program %s).",
            ESC(e1, f->msg.relay), ESC(e2, f->msg.qid), utc(t, sizeof(t), f->msg.t_ms),
            ESC(e3, f->msg.ip), ESC(e4, f->msg.identity), ESC(e5, f->msg.mailer));
    if (f->others_total)
        fprintf(b, fr ? " Dans la m\u00eame heure, ce client ou cet identifiant a envoy\u00e9 %zu "
                        "autre(s) message(s)."
                      : " In the same hour the same client or login sent %zu other message(s).",
                f->others_total);
    fprintf(b, fr ? "\nC'est le poste ou l'application \u00e0 l'origine de l'envoi ; nous avons "
                    "pris les mesures suivantes : [\u00e0 compl\u00e9ter : poste analys\u00e9 par "
                    "l'antivirus, logiciel utilisant le compte corrig\u00e9, mot de passe "
                    "chang\u00e9].\n"
                  : "\nThis is the machine or application that sent it; we have taken these "
                    "measures: [to be completed: machine scanned for viruses, software using the "
                    "account fixed, password changed].\n");
    if (r->nnot_ours)
        fprintf(b, fr ? "%zu autre(s) \u00e9chantillon(s) ne sont pass\u00e9s par aucun de nos "
                        "relais : le mot de passe du compte est aussi utilis\u00e9 ailleurs ; nous "
                        "le changeons.\n"
                      : "%zu other sample(s) did not pass through any of our relays: the "
                        "account's password is also used elsewhere; we are changing it.\n",
                r->nnot_ours);
}

static void answer_not_ours(FILE *b, const struct sg_trace_result *r, const char *account,
                            bool fr)
{
    const struct sg_trace_finding *f = first(r, SG_TRACE_NOT_OURS);
    char e1[620], e2[300], t1[40], t2[40];
    const char *acc = account ? sg_log_esc(e2, sizeof(e2), account) : "ACCOUNT";

    fprintf(b, fr ? "Non. Le message de l'\u00e9chantillon d'en-t\u00eates (Message-ID %s, "
                    "dat\u00e9 du %s) n'est pass\u00e9 par aucun de nos relais : aucun de ses "
                    "en-t\u00eates Received: n'a \u00e9t\u00e9 \u00e9crit par eux, et notre "
                    "relev\u00e9 de tout ce qu'ils ont envoy\u00e9 pour ce compte depuis le %s ne "
                    "le contient pas. Le mot de passe du compte est donc utilis\u00e9 en dehors "
                    "de nos relais ; nous l'avons chang\u00e9.\n[\u00e0 compl\u00e9ter : changer "
                    "d'abord le mot de passe (sendguardctl rotate-password %s), puis envoyer "
                    "cette r\u00e9ponse.]\n"
                  : "No. The message of the header sample (Message-ID %s, dated %s) did not "
                    "pass through any of our relays: none of its Received: headers was written "
                    "by them, and our record of everything they sent for this account since %s "
                    "does not have it. The account's password is therefore used outside our "
                    "relays; we have changed it.\n[to be completed: change the password first "
                    "(sendguardctl rotate-password %s), then send this reply.]\n",
            mid(e1, sizeof(e1), f->msgid, fr), utc(t1, sizeof(t1), f->date_ms),
            utc(t2, sizeof(t2), r->oldest_ms), acc);
}

char *sg_trace_answer(const struct sg_trace_result *r, const char *account, bool french)
{
    char *s;
    size_t n;
    FILE *b = out_open(&s, &n);

    if (b == NULL)
        return NULL;
    if (r->verdict == SG_TRACE_PASSED && first(r, SG_TRACE_PASSED))
        answer_passed(b, r, french);
    else if (r->verdict == SG_TRACE_NOT_OURS && first(r, SG_TRACE_NOT_OURS))
        answer_not_ours(b, r, account, french);
    else
        fprintf(b, french ? "[\u00e0 compl\u00e9ter : l'\u00e9chantillon d'en-t\u00eates n'a "
                             "pas pu \u00eatre rapproch\u00e9 des relev\u00e9s de nos relais : "
                             "%s.]\n"
                           : "[to be completed: the header sample could not be traced in our "
                             "relays' records: %s.]\n",
                why_text(r->why, french));
    return out_close(b, &s);
}
