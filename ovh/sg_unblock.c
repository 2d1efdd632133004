/*
 * sg_unblock.c - the block workflow's steps that talk to the API: gather
 * a case (status, ticket, redirections, evidence), post the reply, change
 * a password and hand it to the relay's SASL map.
 *
 * Must not: post anything the caller did not pass in (the text is the
 * postmaster's, or the draft when the config says auto_reply), print or
 * log a password unless show_password, or write the SASL map before the
 * API accepted the new password.
 */
#include "sg_block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sg_log.h"
#include "sg_ovh.h"
#include "sg_run.h"
#include "sg_saslmap.h"
#include "sg_store.h"

#define PASSWORD_LEN 20

static void stamp(char *buf, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%d %H:%M UTC", &tm);
}

static bool looks_french(const char *text)
{
    static const char *words[] = { "Bonjour", "bloqu\u00e9", "\u00cates-vous", "Madame",
                                   "exp\u00e9diteur" };

    for (size_t i = 0; text && i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(text, words[i]) != NULL)
            return true;
    return false;
}

static void gather_ticket(sg_ovh_t *c, struct sg_block_case *bc)
{
    struct sg_ovh_ticket t;
    struct sg_ovh_message *m = NULL;
    struct sg_ovh_err err;
    size_t n = 0;

    if (bc->a->offer == SG_OFFER_MXPLAN_LEGACY ||
        sg_ovh_ticket_find(c, bc->a, bc->ticket_number, &t, &err) != 0)
        return;
    bc->have_ticket = true;
    bc->ticket_id = t.id;
    if (bc->ticket_number < 0)
        bc->ticket_number = t.number;
    snprintf(bc->ticket_state, sizeof(bc->ticket_state), "%s", t.state);
    snprintf(bc->ticket_last_from, sizeof(bc->ticket_last_from), "%s", t.last_from);
    if (sg_ovh_ticket_messages(c, t.id, &m, &n, &err) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].from, "support") == 0) {
            if (bc->ticket_message == NULL && m[i].body != NULL)
                bc->ticket_message = strdup(m[i].body);
            bc->support_since_reply++;
            if (bc->replied && m[i].body != NULL) {
                free(bc->support_latest);
                bc->support_latest = strdup(m[i].body);
            }
        } else {
            bc->replied = true;
            bc->support_since_reply = 0;
            free(bc->support_latest);
            bc->support_latest = NULL;
        }
    }
    {
        struct sg_ovh_evidence ev;
        sg_ovh_ticket_evidence(m, n, &ev);
        bc->suspicious = ev.suspicious;
        bc->header_sample = ev.headers;   /* taken over */
        ev.headers = NULL;
        sg_ovh_evidence_clear(&ev);
    }
    bc->french = looks_french(bc->ticket_message);
    sg_ovh_messages_free(m, n);
}

int sg_block_gather(sg_ovh_t *c, sg_store_t *st, const struct sg_account *a,
                    int64_t now_ms, int64_t since_ms, struct sg_block_case *bc)
{
    struct sg_ovh_status status;
    struct sg_ovh_err err;
    char *ev = NULL, why[128];
    int rc = 0;

    memset(bc, 0, sizeof(*bc));
    bc->a = a;
    bc->ticket_number = -1;
    bc->suspicious = -1;
    sg_store_state_get(st, a->address, &bc->state);
    bc->evidence_ok = sg_store_evidence_json(st, a->address, &ev) == 0 &&
                      sg_block_analyse(ev, now_ms, since_ms, &bc->facts, why, sizeof(why)) == 0;
    free(ev);
    bc->redir_readable = a->offer == SG_OFFER_EXCHANGE || a->offer == SG_OFFER_MXPLAN_LEGACY;
    if (c == NULL) {
        snprintf(bc->api_error, sizeof(bc->api_error), "no API client");
        return -1;
    }
    if (sg_ovh_account_status(c, a, &status, &err) != 0) {
        sg_ovh_strerror(&err, bc->api_error, sizeof(bc->api_error));
        rc = -1;
    } else {
        bc->api_ok = true;
        bc->blocked = status.blocked;
        bc->ticket_number = status.ticket;
        snprintf(bc->api_state, sizeof(bc->api_state), "%s", status.state);
        if (status.blocked || status.ticket >= 0)
            gather_ticket(c, bc);
    }
    if (bc->redir_readable && sg_ovh_redirections(c, a, &bc->redir, &bc->nredir, &err) != 0) {
        bc->redir_readable = false;       /* say so in the draft rather than guess */
        bc->redir = NULL;
        bc->nredir = 0;
    }
    return rc;
}

void sg_block_case_free(struct sg_block_case *bc)
{
    free(bc->ticket_message);
    free(bc->support_latest);
    free(bc->header_sample);
    sg_ovh_strv_free(bc->redir, bc->nredir);
    if (bc->evidence_ok)
        sg_block_facts_free(&bc->facts);
    memset(bc, 0, sizeof(*bc));
}

char *sg_block_case_draft(const struct sg_block_case *bc)
{
    struct sg_block_ticket_info t = { bc->ticket_number, bc->suspicious, bc->french };
    struct sg_block_facts none;

    if (!bc->evidence_ok) {
        memset(&none, 0, sizeof(none));
        return sg_block_draft(bc->a, &none, &t, (const char *const *)bc->redir, bc->nredir,
                              bc->redir_readable);
    }
    return sg_block_draft(bc->a, &bc->facts, &t, (const char *const *)bc->redir, bc->nredir,
                          bc->redir_readable);
}

/* phase NULL: keep it (only the note changes). */
static void state_note(sg_store_t *st, const char *account, const char *phase, const char *note)
{
    struct sg_account_state s;

    if (sg_store_state_get(st, account, &s) != 0)
        return;
    if (phase != NULL)
        snprintf(s.phase, sizeof(s.phase), "%s", phase);
    snprintf(s.note, sizeof(s.note), "%s", note);
    sg_store_state_set(st, account, &s);
}

static int rotate(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                  const struct sg_account *a, const char *who, bool show_password,
                  const char *phase, char *msg, size_t msglen)
{
    char pw[PASSWORD_LEN + 1], err[600], when[32], note[256];
    struct sg_ovh_err e;
    int64_t task = -1;
    int changed;

    if (a->sasl_map_file == NULL && !show_password) {
        snprintf(msg, msglen, "%s has no sasl_map_file: the new password would be lost. Set "
                 "sasl_map_file for the account, or pass --show-password", a->address);
        return -1;
    }
    /* Before the API: a map this process cannot rewrite would lose the new password. */
    if (a->sasl_map_file != NULL &&
        sg_saslmap_check(a->sasl_map_file, a->address, err, sizeof(err)) != 0) {
        snprintf(msg, msglen, "%s (nothing was changed)", err);
        return -1;
    }
    if (sg_block_password(pw, PASSWORD_LEN) != 0 || sg_ovh_password_problem(a->offer, pw)) {
        snprintf(msg, msglen, "could not generate a password");
        return -1;
    }
    if (sg_ovh_change_password(c, a, pw, &task, &e) != 0) {
        explicit_bzero(pw, sizeof(pw));
        snprintf(msg, msglen, "the API refused the password change (nothing was changed): %s",
                 sg_ovh_strerror(&e, err, sizeof(err)));
        sg_block_audit(who, "password_change_refused", a->address, err);
        return -1;
    }
    stamp(when, sizeof(when));
    snprintf(note, sizeof(note), "password changed at %s by %s", when, who);
    state_note(st, a->address, phase, note);
    sg_block_audit(who, "password_change", a->address, a->sasl_map_file);
    if (a->sasl_map_file != NULL) {
        changed = sg_saslmap_rewrite(a->sasl_map_file, a->address, pw, err, sizeof(err));
        if (changed <= 0) {
            sg_log(LOG_CRIT, "account=<%s>: password changed at OVHcloud but %s could not be "
                   "updated: %s", a->address, a->sasl_map_file, err);
            snprintf(msg, msglen, "the password was changed at OVHcloud but %s could not be "
                     "updated (%s)%s%s", a->sasl_map_file, err,
                     show_password ? "; new password: " : "; rerun with --show-password",
                     show_password ? pw : "");
            explicit_bzero(pw, sizeof(pw));
            return -1;
        }
    }
    if (s->nafter_password_change > 0) {
        int rc = sg_run(s->after_password_change, s->nafter_password_change, NULL, 0, NULL, 60,
                        err, sizeof(err));
        if (rc != 0) {
            snprintf(msg, msglen, "password changed and %s updated, but after_password_change "
                     "failed (status %d): run it yourself", a->sasl_map_file ? a->sasl_map_file :
                     "-", rc);
            explicit_bzero(pw, sizeof(pw));
            return -1;
        }
    }
    snprintf(msg, msglen, "password of %s changed (task %lld)%s%s%s%s", a->address,
             (long long)task, a->sasl_map_file ? ", written to " : "",
             a->sasl_map_file ? a->sasl_map_file : "",
             show_password ? "; new password: " : "", show_password ? pw : "");
    explicit_bzero(pw, sizeof(pw));
    return 0;
}

int sg_block_rotate(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                    const struct sg_account *a, const char *who, bool show_password,
                    char *msg, size_t msglen)
{
    return rotate(c, st, s, a, who, show_password, NULL, msg, msglen);
}

int sg_block_rotate_unblock(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                            const struct sg_account *a, const char *who, bool show_password,
                            char *msg, size_t msglen)
{
    return rotate(c, st, s, a, who, show_password, "password_changed", msg, msglen);
}

int sg_block_unblock(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                     struct sg_block_case *bc, const char *text, const char *who,
                     bool show_password, char *msg, size_t msglen)
{
    const struct sg_account *a = bc->a;
    struct sg_ovh_message *m = NULL;
    struct sg_ovh_err e;
    char err[700], when[32], note[256], detail[64];
    size_t n = 0;

    if (!bc->api_ok) {
        snprintf(msg, msglen, "cannot read %s from the API: %s", a->address, bc->api_error);
        return -1;
    }
    if (!bc->blocked) {
        snprintf(msg, msglen, "%s is not blocked at OVHcloud: nothing to do", a->address);
        return 0;
    }
    if (a->offer == SG_OFFER_MXPLAN_LEGACY)
        return sg_block_rotate_unblock(c, st, s, a, who, show_password, msg, msglen);
    if (!bc->have_ticket) {
        snprintf(msg, msglen, "no spam ticket found for %s (ticket number %lld): answer it in "
                 "the Control Panel", a->address, (long long)bc->ticket_number);
        return -1;
    }
    if (text == NULL || text[strspn(text, " \t\r\n")] == '\0') {
        snprintf(msg, msglen, "empty reply: nothing posted");
        return -1;
    }
    /* Already posted, word for word, as the last message? Then do not repeat it. */
    if (sg_ovh_ticket_messages(c, bc->ticket_id, &m, &n, &e) == 0 && n > 0 &&
        strcmp(m[n - 1].from, "customer") == 0 && m[n - 1].body &&
        strcmp(m[n - 1].body, text) == 0) {
        snprintf(msg, msglen, "this reply is already the last message of ticket %lld (%s): "
                 "not posted again", (long long)bc->ticket_number, m[n - 1].date);
        sg_ovh_messages_free(m, n);
        return 0;
    }
    sg_ovh_messages_free(m, n);
    snprintf(detail, sizeof(detail), "ticket=%lld", (long long)bc->ticket_number);
    if (sg_ovh_ticket_reply(c, bc->ticket_id, text, &e) != 0) {
        sg_ovh_strerror(&e, err, sizeof(err));
        snprintf(msg, msglen, "the API refused the reply on ticket %lld: %s",
                 (long long)bc->ticket_number, err);
        sg_block_audit(who, "reply_refused", a->address, detail);
        return -1;
    }
    stamp(when, sizeof(when));
    snprintf(note, sizeof(note), "reply sent at %s by %s; waiting for OVHcloud support", when,
             who);
    state_note(st, a->address, "replied", note);
    sg_block_audit(who, "reply", a->address, detail);
    snprintf(msg, msglen, "reply posted on ticket %lld; sendguard follows the account and "
             "releases its held mail once OVHcloud unblocks it", (long long)bc->ticket_number);
    return 0;
}
