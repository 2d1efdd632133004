/*
 * sg_unblock.c - the block workflow's steps that talk to the API: gather
 * a case (status, ticket, redirections, evidence), post the reply, change
 * a password and hand it to the relay's SASL map; the daemon's auto_reply
 * (the same steps with the watcher's client and ticket). Each step that
 * moves the account's phase is a workflow event (sg_wf_apply).
 *
 * Every write is done exactly once: a reply or a password change whose
 * answer was lost is never resent; the ticket's messages or the account's
 * tasks are read back to learn what happened. The SASL map gets the new
 * password only once the password task reads "done"; a task in "error"
 * leaves the map alone and the account locked down; a task still running
 * after a bounded wait is saved as pending (SG_BLOCK_PENDING_SUFFIX beside
 * the map, mode 0600) and finished by `sendguardctl status ACCOUNT`.
 *
 * Must not: post anything the caller did not pass in (the text is the
 * postmaster's, or the draft when the config says auto_reply), print or
 * log a password unless show_password, write the SASL map before the
 * password task is done, resend a write that may have been carried out,
 * or write the account's state but through sg_wf_apply.
 */
#include "sg_time.h"
#include "sg_block.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "sg_log.h"
#include "sg_ovh.h"
#include "sg_run.h"
#include "sg_saslmap.h"
#include "sg_store.h"
#include "sg_trace.h"
#include "sg_workflow.h"

#define PASSWORD_LEN 20
#define TASK_WAIT_MS (120 * 1000)         /* how long a password task is followed */
#define TASK_POLL_MAX_MS 15000            /* between two reads of it, at most */

static bool looks_french(const char *text)
{
    static const char *words[] = { "Bonjour", "bloqu\u00e9", "\u00cates-vous", "Madame",
                                   "exp\u00e9diteur" };

    for (size_t i = 0; text && i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(text, words[i]) != NULL)
            return true;
    return false;
}

/* gather_ticket - the ticket's messages into the case; t: the ticket
 * already found (the watcher's), or NULL to find it. */
static void gather_ticket(sg_ovh_t *c, struct sg_block_case *bc, const struct sg_ovh_ticket *t)
{
    struct sg_ovh_ticket found;
    struct sg_ovh_message *m = NULL;
    struct sg_ovh_err err;
    size_t n = 0;

    if (bc->a->offer == SG_OFFER_MXPLAN_LEGACY)
        return;
    if (t == NULL) {
        if (sg_ovh_ticket_find(c, bc->a, bc->ticket_number, &found, &err) != 0)
            return;
        t = &found;
    }
    bc->have_ticket = true;
    bc->ticket_id = t->id;
    if (bc->ticket_number < 0)
        bc->ticket_number = t->number;
    snprintf(bc->ticket_state, sizeof(bc->ticket_state), "%s", t->state);
    snprintf(bc->ticket_last_from, sizeof(bc->ticket_last_from), "%s", t->last_from);
    if (sg_ovh_ticket_messages(c, t->id, &m, &n, &err) != 0)
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

/* gather_trace - the ticket's header sample traced through the store's
 * trace index (issue 18): the first support message's body, else the
 * sample sg_ovh_ticket_evidence cut from the messages. Our relays: the
 * relay names the account's recent records carry. */
static void gather_trace(sg_store_t *st, struct sg_block_case *bc, int64_t now_ms)
{
    if (bc->ticket_message == NULL && bc->header_sample == NULL)
        return;
    bc->trace = sg_trace_run(st, bc->a->address, NULL, 0,
                             bc->ticket_message ? bc->ticket_message : bc->header_sample,
                             now_ms);
    if (bc->trace != NULL && bc->trace->n == 0 && bc->ticket_message && bc->header_sample) {
        free(bc->trace);
        bc->trace = sg_trace_run(st, bc->a->address, NULL, 0, bc->header_sample, now_ms);
    }
}

/* gather - the case; status and t: what the caller already read from the
 * API (NULL: read it here). */
static int gather(sg_ovh_t *c, sg_store_t *st, const struct sg_account *a, int64_t now_ms,
                  int64_t since_ms, const struct sg_ovh_status *known,
                  const struct sg_ovh_ticket *t, struct sg_block_case *bc)
{
    struct sg_ovh_status status;
    struct sg_ovh_err err;
    struct sg_evidence_report ev;
    char why[128];
    int rc = 0;

    memset(bc, 0, sizeof(*bc));
    bc->a = a;
    bc->ticket_number = -1;
    bc->suspicious = -1;
    sg_store_state_get(st, a->address, &bc->state);
    bc->evidence_ok = sg_store_evidence_get(st, a->address, &ev) == 0 &&
                      sg_block_analyse(&ev, now_ms, since_ms, &bc->facts, why, sizeof(why)) == 0;
    sg_evidence_report_free(&ev);
    bc->redir_readable = a->offer == SG_OFFER_EXCHANGE || a->offer == SG_OFFER_MXPLAN_LEGACY;
    if (c == NULL) {
        snprintf(bc->api_error, sizeof(bc->api_error), "no API client");
        return -1;
    }
    if (known == NULL && sg_ovh_account_status(c, a, &status, &err) != 0) {
        sg_ovh_strerror(&err, bc->api_error, sizeof(bc->api_error));
        rc = -1;
    } else {
        if (known != NULL)
            status = *known;
        bc->api_ok = true;
        bc->blocked = status.blocked;
        bc->ticket_number = status.ticket;
        snprintf(bc->api_state, sizeof(bc->api_state), "%s", status.state);
        if (status.blocked || status.ticket >= 0)
            gather_ticket(c, bc, t);
        gather_trace(st, bc, now_ms);
    }
    if (bc->redir_readable && sg_ovh_redirections(c, a, &bc->redir, &bc->nredir, &err) != 0) {
        bc->redir_readable = false;       /* say so in the draft rather than guess */
        bc->redir = NULL;
        bc->nredir = 0;
    }
    return rc;
}

int sg_block_gather(sg_ovh_t *c, sg_store_t *st, const struct sg_account *a,
                    int64_t now_ms, int64_t since_ms, struct sg_block_case *bc)
{
    return gather(c, st, a, now_ms, since_ms, NULL, NULL, bc);
}

void sg_block_case_free(struct sg_block_case *bc)
{
    free(bc->ticket_message);
    free(bc->support_latest);
    free(bc->header_sample);
    free(bc->trace);
    sg_ovh_strv_free(bc->redir, bc->nredir);
    if (bc->evidence_ok)
        sg_block_facts_free(&bc->facts);
    memset(bc, 0, sizeof(*bc));
}

/* The draft with question 1 answered from the trace: a PASSED or NOT_OURS
 * answer replaces the volume-based text; a CANNOT_TELL one goes after it
 * (the volume is then all there is). draft is freed; NULL on no memory. */
static char *with_trace(char *draft, const struct sg_block_case *bc)
{
    const char *q = bc->french ? "1. \u00cates-vous l'exp\u00e9diteur" : "1. Are you the sender";
    char *ans, *out, *p, *end, *nl;
    bool replace;
    size_t n;

    if (draft == NULL || bc->trace == NULL)
        return draft;
    if ((p = strstr(draft, q)) == NULL || (nl = strchr(p, '\n')) == NULL ||
        (end = strstr(nl, "\n\n2. ")) == NULL)
        return draft;
    if ((ans = sg_trace_answer(bc->trace, bc->a->address, bc->french)) == NULL) {
        free(draft);
        return NULL;
    }
    replace = bc->trace->verdict != SG_TRACE_CANNOT_TELL;
    n = strlen(draft) + strlen(ans) + 2;
    if ((out = malloc(n)) != NULL) {
        size_t head = (size_t)(replace ? nl + 1 - draft : end + 1 - draft);
        size_t al = strlen(ans);
        memcpy(out, draft, head);
        memcpy(out + head, ans, al);
        if (al > 0 && ans[al - 1] != '\n')
            out[head + al++] = '\n';
        strcpy(out + head + al, end + 1);
    }
    free(ans);
    free(draft);
    return out;
}

char *sg_block_case_draft(const struct sg_block_case *bc)
{
    struct sg_block_ticket_info t = { bc->ticket_number, bc->suspicious, bc->french };
    struct sg_block_facts none;

    if (!bc->evidence_ok) {
        memset(&none, 0, sizeof(none));
        return with_trace(sg_block_draft(bc->a, &none, &t, (const char *const *)bc->redir,
                                         bc->nredir, bc->redir_readable), bc);
    }
    return with_trace(sg_block_draft(bc->a, &bc->facts, &t, (const char *const *)bc->redir,
                                     bc->nredir, bc->redir_readable), bc);
}

/* state_note - one workflow event with its note (sg_wf_apply: the phase
 * moves only where the transition table says, never by a blind write). */
static void state_note(sg_store_t *st, const char *account, enum sg_wf_event event,
                       const char *note)
{
    struct sg_wf_event_in in = { .event = event, .now_ms = sg_time_real_ms(), .note = note,
                                 .ticket = -1 };
    char esc[300];

    if (sg_wf_apply(st, account, &in, NULL, NULL) < 0)
        sg_log(LOG_WARNING, "account=<%s>: cannot record %s in the store (%s)",
               sg_log_esc(esc, sizeof(esc), account), sg_wf_event_name(event),
               sg_store_name(st));
}

/* ---- the password task ----------------------------------------------------- */

static int64_t task_wait_ms(void)
{
    /* Test-only: a shorter bound, so a "still pending" test takes seconds. */
    const char *v = getenv("SG_OVH_TEST_TASK_WAIT_MS");
    long long ms = v && *v ? strtoll(v, NULL, 10) : 0;

    return ms >= 100 && ms <= TASK_WAIT_MS ? ms : TASK_WAIT_MS;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* follow_task - read the task until done or error, or the bounded wait
 * ends (then *state is todo/doing). -1 when it cannot be read at all. */
static int follow_task(sg_ovh_t *c, const struct sg_account *a, int64_t task,
                       enum sg_ovh_task_state *state, struct sg_ovh_err *e)
{
    int64_t until = sg_time_mono_ms() + task_wait_ms(), pause = 500;

    for (;;) {
        if (sg_ovh_task_get(c, a, task, state, e) != 0)
            return -1;
        if (*state == SG_OVH_TASK_DONE || *state == SG_OVH_TASK_ERROR)
            return 0;
        int64_t left = until - sg_time_mono_ms();
        if (left <= 0)
            return 0;
        sleep_ms(pause < left ? pause : left);
        pause = pause * 2 < TASK_POLL_MAX_MS ? pause * 2 : TASK_POLL_MAX_MS;
    }
}

/* new_task - after a change whose answer was lost: the account's task that
 * was not there before it (the newest), or -1 when there is none. */
static int new_task(sg_ovh_t *c, const struct sg_account *a, const int64_t *before, size_t nb,
                    int64_t *task, struct sg_ovh_err *e)
{
    int64_t *ids = NULL;
    size_t n = 0;

    *task = -1;
    if (sg_ovh_password_tasks(c, a, &ids, &n, e) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        bool old = false;
        for (size_t k = 0; k < nb && !old; k++)
            old = ids[i] == before[k];
        if (!old && ids[i] > *task)
            *task = ids[i];
    }
    free(ids);
    return 0;
}

/* ---- a password waiting for its task (pending file) ------------------------ */

static void pending_path(const struct sg_account *a, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", a->sasl_map_file, SG_BLOCK_PENDING_SUFFIX);
}

/* pending_save - the new password and its task, for `sendguardctl status`
 * to finish: mode 0600, the map's owner, written whole then renamed. */
static int pending_save(const struct sg_account *a, int64_t task, const char *pw,
                        char *err, size_t errlen)
{
    char path[4096], tmp[4200];
    json_t *j = json_pack("{s:s,s:I,s:s,s:I}", "account", a->address, "task", (json_int_t)task,
                          "password", pw, "since_ms", (json_int_t)sg_time_real_ms());
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    struct stat mst;
    int fd = -1, rc = -1;

    pending_path(a, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if ((fd = mkstemp(tmp)) < 0) {
        snprintf(err, errlen, "cannot create a file beside %s: %s", path, strerror(errno));
        goto out;
    }
    if (stat(a->sasl_map_file, &mst) == 0 && fchown(fd, mst.st_uid, mst.st_gid) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t len = strlen(text);
    if (fchmod(fd, 0600) != 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0 ||
        close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "replacing %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        unlink(tmp);
    if (text) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    if (j) {
        json_t *pv = json_object_get(j, "password");
        explicit_bzero((char *)json_string_value(pv), json_string_length(pv));
        json_decref(j);
    }
    return rc;
}

/* pending_load - 1 and the task and password when a change is pending, 0
 * when none, -1 when the file cannot be read. */
static int pending_load(const struct sg_account *a, int64_t *task, char *pw, size_t pwsize,
                        char *err, size_t errlen)
{
    char path[4096];
    json_error_t je;
    json_t *j, *t, *p;

    if (a->sasl_map_file == NULL)
        return 0;
    pending_path(a, path, sizeof(path));
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return 0;
    if ((j = json_load_file(path, 0, &je)) == NULL) {
        snprintf(err, errlen, "%s: %s", path, je.text);
        return -1;
    }
    t = json_object_get(j, "task");
    p = json_object_get(j, "password");
    if (!json_is_integer(t) || !json_is_string(p) || json_string_length(p) >= pwsize) {
        snprintf(err, errlen, "%s: not a pending password change", path);
        json_decref(j);
        return -1;
    }
    *task = (int64_t)json_integer_value(t);
    snprintf(pw, pwsize, "%s", json_string_value(p));
    explicit_bzero((char *)json_string_value(p), json_string_length(p));
    json_decref(j);
    return 1;
}

static void pending_drop(const struct sg_account *a)
{
    char path[4096];

    if (a->sasl_map_file == NULL)
        return;
    pending_path(a, path, sizeof(path));
    unlink(path);
}

/* ---- the change itself -------------------------------------------------------- */

/* apply - the task is done: the new password goes into the relay's SASL
 * map, then after_password_change runs. */
static int apply(const struct sg_settings *s, const struct sg_account *a, const char *pw,
                 int64_t task, bool show_password, char *msg, size_t msglen)
{
    char err[600];
    int changed;

    if (a->sasl_map_file != NULL) {
        changed = sg_saslmap_rewrite(a->sasl_map_file, a->address, pw, err, sizeof(err));
        if (changed <= 0) {
            sg_log(LOG_CRIT, "account=<%s>: password changed at OVHcloud but %s could not be "
                   "updated: %s", a->address, a->sasl_map_file, err);
            snprintf(msg, msglen, "the password was changed at OVHcloud but %s could not be "
                     "updated (%s)%s%s", a->sasl_map_file, err,
                     show_password ? "; new password: " : "; rerun with --show-password",
                     show_password ? pw : "");
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
            return -1;
        }
    }
    snprintf(msg, msglen, "password of %s changed (task %lld done)%s%s%s%s", a->address,
             (long long)task, a->sasl_map_file ? ", written to " : "",
             a->sasl_map_file ? a->sasl_map_file : "",
             show_password ? "; new password: " : "", show_password ? pw : "");
    return 0;
}

/* settle - what a password task's state means for the map and the account */
static int settle(sg_store_t *st, const struct sg_settings *s, const struct sg_account *a,
                  const char *who, bool show_password, bool unblocking, int64_t task,
                  enum sg_ovh_task_state ts, const char *pw, char *msg, size_t msglen)
{
    char when[32], note[256], detail[64], err[600];

    sg_time_utc(when, sizeof(when), sg_time_real_ms(), SG_TIME_MINUTE);
    snprintf(detail, sizeof(detail), "task=%lld", (long long)task);
    if (ts == SG_OVH_TASK_DONE) {
        snprintf(note, sizeof(note), "password changed at %s by %s", when, who);
        state_note(st, a->address, unblocking ? SG_WF_EV_PASSWORD_DONE : SG_WF_EV_NOTE, note);
        sg_block_audit(who, "password_change", a->address, detail);
        if (apply(s, a, pw, task, show_password, msg, msglen) != 0) {
            /* Keep (or save) it: `sendguardctl status` tries the map again. */
            if (a->sasl_map_file != NULL)
                pending_save(a, task, pw, err, sizeof(err));
            return -1;
        }
        pending_drop(a);
        return 0;
    }
    if (ts == SG_OVH_TASK_ERROR) {
        pending_drop(a);
        snprintf(note, sizeof(note), "password change failed at OVHcloud (task %lld in error) "
                 "at %s; old password kept", (long long)task, when);
        /* In the unblock workflow the account stays locked down. */
        state_note(st, a->address, unblocking ? SG_WF_EV_PASSWORD_FAILED : SG_WF_EV_NOTE, note);
        sg_block_audit(who, "password_change_failed", a->address, detail);
        sg_log(LOG_ERR, "account=<%s>: OVHcloud's password task %lld ended in error: the old "
               "password stays in %s", a->address, (long long)task,
               a->sasl_map_file ? a->sasl_map_file : "-");
        snprintf(msg, msglen, "OVHcloud's password change task %lld ended in error: the password "
                 "did not change and %s keeps the old one%s", (long long)task,
                 a->sasl_map_file ? a->sasl_map_file : "the relay",
                 unblocking ? "; the account stays locked down" : "");
        return -1;
    }
    /* Still todo/doing after the bounded wait: keep the password for later. */
    if (a->sasl_map_file != NULL && pending_save(a, task, pw, err, sizeof(err)) != 0) {
        snprintf(msg, msglen, "password task %lld still pending and it could not be saved (%s)%s%s",
                 (long long)task, err,
                 show_password ? "; new password: " : "; the new password is lost: run "
                 "rotate-password once the task is done", show_password ? pw : "");
        return -1;
    }
    snprintf(note, sizeof(note), "password change pending (task %lld) since %s by %s: "
             "sendguardctl status %s", (long long)task, when, who, a->address);
    state_note(st, a->address, unblocking ? SG_WF_EV_PASSWORD_START : SG_WF_EV_NOTE, note);
    sg_block_audit(who, "password_change_pending", a->address, detail);
    snprintf(msg, msglen, "OVHcloud's password task %lld is still pending (%s): nothing written "
             "to %s yet; still pending: run `sendguardctl status %s`%s%s", (long long)task,
             sg_ovh_task_state_name(ts), a->sasl_map_file ? a->sasl_map_file : "the relay",
             a->address, show_password ? "; new password, valid once the task is done: " : "",
             show_password ? pw : "");
    return 1;
}

static int rotate(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                  const struct sg_account *a, const char *who, bool show_password,
                  bool unblocking, char *msg, size_t msglen)
{
    char pw[PASSWORD_LEN + 1], err[600];
    struct sg_ovh_err e;
    int64_t task = -1, *before = NULL, ptask;
    size_t nbefore = 0;
    enum sg_ovh_task_state ts = SG_OVH_TASK_TODO;
    int rc;

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
    if ((rc = pending_load(a, &ptask, pw, sizeof(pw), err, sizeof(err))) != 0) {
        explicit_bzero(pw, sizeof(pw));
        if (rc > 0)
            snprintf(msg, msglen, "a password change of %s is pending (task %lld): run "
                     "`sendguardctl status %s` first", a->address, (long long)ptask, a->address);
        else
            snprintf(msg, msglen, "%s", err);
        return -1;
    }
    if (sg_block_password(pw, PASSWORD_LEN) != 0 || sg_ovh_password_problem(a->offer, pw)) {
        snprintf(msg, msglen, "could not generate a password");
        return -1;
    }
    /* The tasks before the change: after a lost answer, ours is the new one. */
    if (sg_ovh_password_tasks(c, a, &before, &nbefore, &e) != 0) {
        explicit_bzero(pw, sizeof(pw));
        snprintf(msg, msglen, "cannot read the account's tasks (nothing was changed): %s",
                 sg_ovh_strerror(&e, err, sizeof(err)));
        return -1;
    }
    if (sg_ovh_change_password(c, a, pw, &task, &e) != 0 && !e.unknown_outcome) {
        free(before);
        explicit_bzero(pw, sizeof(pw));
        snprintf(msg, msglen, "the API refused the password change (nothing was changed): %s",
                 sg_ovh_strerror(&e, err, sizeof(err)));
        sg_block_audit(who, "password_change_refused", a->address, err);
        return -1;
    }
    if (task < 0) {
        /* The answer was lost (or had no task id): the account's new task
         * says whether the change was taken. Never sent again. */
        char lost[600];
        sg_ovh_strerror(&e, lost, sizeof(lost));
        if (new_task(c, a, before, nbefore, &task, &e) != 0 || task < 0) {
            free(before);
            explicit_bzero(pw, sizeof(pw));
            if (task < 0 && e.rc == SG_OVH_OK)
                snprintf(msg, msglen, "the answer to the password change was lost (%s) and the "
                         "account shows no new task: %s keeps the old password. If the account "
                         "still cannot send, run `sendguardctl rotate-password %s`", lost,
                         a->sasl_map_file ? a->sasl_map_file : "the relay", a->address);
            else
                snprintf(msg, msglen, "the answer to the password change was lost (%s) and its "
                         "task cannot be read (%s): nothing written; run `sendguardctl "
                         "rotate-password %s` once the API answers", lost,
                         sg_ovh_strerror(&e, err, sizeof(err)), a->address);
            sg_block_audit(who, "password_change_unknown", a->address, lost);
            return -1;
        }
    }
    free(before);
    if (unblocking) {
        /* The unblock workflow: the lockdown holds until the map has the
         * new password (the watcher leaves password_pending alone). */
        char note[256];
        snprintf(note, sizeof(note), "password change in progress (task %lld) by %s",
                 (long long)task, who);
        state_note(st, a->address, SG_WF_EV_PASSWORD_START, note);
    }
    if (follow_task(c, a, task, &ts, &e) != 0)
        ts = SG_OVH_TASK_TODO;           /* unreadable now: pending, read again later */
    rc = settle(st, s, a, who, show_password, unblocking, task, ts, pw, msg, msglen);
    explicit_bzero(pw, sizeof(pw));
    return rc < 0 ? -1 : rc;
}

int sg_block_pending(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                     const struct sg_account *a, const char *who, char *msg, size_t msglen)
{
    char pw[PASSWORD_LEN + 32], err[600];
    struct sg_account_state state;
    enum sg_ovh_task_state ts;
    struct sg_ovh_err e;
    int64_t task;
    int rc;

    msg[0] = '\0';
    if ((rc = pending_load(a, &task, pw, sizeof(pw), err, sizeof(err))) <= 0) {
        if (rc < 0)
            snprintf(msg, msglen, "%s", err);
        return rc < 0 ? -1 : 0;
    }
    if (c == NULL || sg_ovh_task_get(c, a, task, &ts, &e) != 0) {
        explicit_bzero(pw, sizeof(pw));
        snprintf(msg, msglen, "password change of %s pending (task %lld): cannot read the task: "
                 "%s", a->address, (long long)task,
                 c ? sg_ovh_strerror(&e, err, sizeof(err)) : "no API client");
        return -1;
    }
    if (ts != SG_OVH_TASK_DONE && ts != SG_OVH_TASK_ERROR) {
        explicit_bzero(pw, sizeof(pw));
        snprintf(msg, msglen, "password change of %s still pending (task %lld %s): nothing "
                 "written to %s yet", a->address, (long long)task, sg_ovh_task_state_name(ts),
                 a->sasl_map_file);
        return 1;
    }
    /* The unblock workflow's phase moves on; a plain rotation's stays. */
    bool unblocking = sg_store_state_get(st, a->address, &state) == 0 &&
                      sg_wf_state_parse(state.phase) == SG_WF_PASSWORD_PENDING;
    rc = settle(st, s, a, who, false, unblocking, task, ts, pw, msg, msglen);
    explicit_bzero(pw, sizeof(pw));
    return rc < 0 ? -1 : 2;
}

int sg_block_rotate(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                    const struct sg_account *a, const char *who, bool show_password,
                    char *msg, size_t msglen)
{
    return rotate(c, st, s, a, who, show_password, false, msg, msglen);
}

int sg_block_rotate_unblock(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                            const struct sg_account *a, const char *who, bool show_password,
                            char *msg, size_t msglen)
{
    return rotate(c, st, s, a, who, show_password, true, msg, msglen);
}

/* reply_is_on_ticket - after a reply whose answer was lost: 1 when the
 * ticket's last message of ours is that text, 0 when not, -1 unreadable. */
static int reply_is_on_ticket(sg_ovh_t *c, int64_t ticket_id, const char *text)
{
    struct sg_ovh_message *m = NULL;
    struct sg_ovh_err e;
    size_t n = 0;
    int found = 0;

    if (sg_ovh_ticket_messages(c, ticket_id, &m, &n, &e) != 0)
        return -1;
    for (size_t i = n; i-- > 0;) {
        if (strcmp(m[i].from, "customer") == 0) {
            found = m[i].body && strcmp(m[i].body, text) == 0;
            break;
        }
    }
    sg_ovh_messages_free(m, n);
    return found;
}

/* reopen - POST .../reopen once; after a lost answer, the ticket's state
 * says whether it took. */
static int reopen(sg_ovh_t *c, struct sg_block_case *bc, char *err, size_t errlen)
{
    struct sg_ovh_ticket t;
    struct sg_ovh_err e, e2;

    if (sg_ovh_ticket_reopen(c, bc->ticket_id, &e) == 0) {
        snprintf(bc->ticket_state, sizeof(bc->ticket_state), "open");
        return 0;
    }
    sg_ovh_strerror(&e, err, errlen);
    if (!e.unknown_outcome)
        return -1;
    if (sg_ovh_ticket_get(c, bc->ticket_id, &t, &e2) == 0 && strcmp(t.state, "closed") != 0) {
        snprintf(bc->ticket_state, sizeof(bc->ticket_state), "%s", t.state);
        return 0;
    }
    return -1;
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
    /* Support closed the ticket but the account is still blocked: reopen it
     * (OVHcloud refuses a reply on a closed ticket). */
    if (strcmp(bc->ticket_state, "closed") == 0) {
        if (reopen(c, bc, err, sizeof(err)) != 0) {
            snprintf(msg, msglen, "ticket %lld is closed and could not be reopened: %s",
                     (long long)bc->ticket_number, err);
            sg_block_audit(who, "reopen_refused", a->address, detail);
            return -1;
        }
        sg_block_audit(who, "reopen", a->address, detail);
    }
    if (sg_ovh_ticket_reply(c, bc->ticket_id, text, &e) != 0) {
        sg_ovh_strerror(&e, err, sizeof(err));
        if (!e.unknown_outcome) {
            snprintf(msg, msglen, "the API refused the reply on ticket %lld: %s",
                     (long long)bc->ticket_number, err);
            sg_block_audit(who, "reply_refused", a->address, detail);
            return -1;
        }
        /* The answer was lost: the ticket says whether the reply is on it. */
        int on = reply_is_on_ticket(c, bc->ticket_id, text);
        if (on <= 0) {
            snprintf(msg, msglen, on == 0
                     ? "the answer to the reply on ticket %lld was lost (%s) and the reply is "
                       "not on the ticket: nothing posted; run the unblock again"
                     : "the answer to the reply on ticket %lld was lost (%s) and the ticket "
                       "cannot be read: it may have been posted; check with `sendguardctl "
                       "report` before running the unblock again (a repeat of the same text "
                       "is recognised and not posted twice)",
                     (long long)bc->ticket_number, err);
            sg_block_audit(who, on == 0 ? "reply_lost" : "reply_unknown", a->address, detail);
            return -1;
        }
    }
    sg_time_utc(when, sizeof(when), sg_time_real_ms(), SG_TIME_MINUTE);
    snprintf(note, sizeof(note), "reply sent at %s by %s; waiting for OVHcloud support", when,
             who);
    state_note(st, a->address, SG_WF_EV_REPLIED, note);
    sg_block_audit(who, "reply", a->address, detail);
    snprintf(msg, msglen, "reply posted on ticket %lld; sendguard follows the account and "
             "releases its held mail once OVHcloud unblocks it", (long long)bc->ticket_number);
    return 0;
}

void sg_block_auto_reply(sg_ovh_t *c, sg_store_t *st, const struct sg_settings *s,
                         const struct sg_account *a, const struct sg_ovh_status *status,
                         const struct sg_ovh_ticket *t, int64_t now_ms)
{
    struct sg_block_case bc;
    char msg[1024], out[1200], esc[400], *draft;
    int rc;

    sg_log_esc(esc, sizeof(esc), a->address);
    gather(c, st, a, now_ms, now_ms - 24 * 3600000LL, status, t, &bc);
    draft = sg_block_case_draft(&bc);
    rc = sg_block_unblock(c, st, s, &bc, draft, "sendguard (auto_reply)", false, msg,
                          sizeof(msg));
    sg_log(rc == 0 ? LOG_NOTICE : LOG_ERR, "auto_reply: account=<%s>: %s", esc,
           sg_log_escape_text(out, sizeof(out), msg, strlen(msg)));
    free(draft);
    sg_block_case_free(&bc);
}
