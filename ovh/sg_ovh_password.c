/*
 * sg_ovh_password.c - the password of a mailbox on the four offers: the
 * offer's password rules, the change itself, the tasks the change answers
 * with, and the account's redirections (read before a reset, so a hidden
 * forward is seen).
 *
 * Every reply is checked for its shape before use; a wrong shape is an
 * SG_OVH_E_REPLY error naming the call, never a crash or a guess.
 * Must not: decide anything (the workflow does), log or report a password,
 * keep a password after the call, or post anything it was not asked to.
 */
#include "sg_ovh_internal.h"
#include "sg_log.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- password, redirections ----------------------------------------------- */

const char *sg_ovh_password_problem(enum sg_offer offer, const char *pw)
{
    size_t n = pw ? strlen(pw) : 0;

    if (n == 0)
        return "the password is empty";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)pw[i];
        if (ch < 0x20 || ch == 0x7f)
            return "the password holds a control character";
        if (offer == SG_OFFER_MXPLAN_LEGACY && ch >= 0x80)
            return "MX Plan legacy passwords take no accented (non-ASCII) characters";
    }
    if (offer == SG_OFFER_MXPLAN_LEGACY) {
        if (n < 9 || n > 30)
            return "MX Plan legacy passwords have 9 to 30 characters";
        if (pw[0] == ' ' || pw[n - 1] == ' ')
            return "MX Plan legacy passwords neither start nor end with a space";
    } else if (n > 256) {
        return "the password is too long";
    }
    return NULL;
}

int sg_ovh_change_password(sg_ovh_t *c, const struct sg_account *a, const char *password,
                           int64_t *task_id, struct sg_ovh_err *err)
{
    const char *why;
    char *path;
    json_t *body, *j = NULL, *id;
    int rc;

    sg_ovh_err_clear(err);
    if (task_id)
        *task_id = -1;
    if ((why = sg_ovh_password_problem(a->offer, password))) {
        sg_ovh_err_set(err, SG_OVH_E_INVAL, "%s", why);
        return -1;
    }
    if (!(path = sg_ovh_account_path(a, "/changePassword", err)))
        return -1;
    if (!(body = json_pack("{s:s}", "password", password))) {
        free(path);
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    rc = sg_ovh_call(c, "POST", path, body, true, &j, err);
    /* Wipe the password from the JSON tree before it goes back to the heap. */
    json_t *pv = json_object_get(body, "password");
    if (json_is_string(pv)) {
        explicit_bzero((char *)json_string_value(pv), json_string_length(pv));
    }
    json_decref(body);
    if (rc == 0 && task_id) {
        id = json_is_object(j) ? json_object_get(j, "id") : NULL;
        if (json_is_integer(id))
            *task_id = (int64_t)json_integer_value(id);
    }
    json_decref(j);
    free(path);
    return rc;
}

void sg_ovh_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int strv_add(char ***v, size_t *n, const char *s, struct sg_ovh_err *err)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(**v));

    if (!nv || !(nv[*n] = strdup(s))) {
        if (nv)
            *v = nv;
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    *v = nv;
    (*n)++;
    return 0;
}

int sg_ovh_redirections(sg_ovh_t *c, const struct sg_account *a, char ***to, size_t *n,
                        struct sg_ovh_err *err)
{
    char *path = NULL, w[400];
    json_t *j = NULL, *x;
    size_t i;
    int rc = -1;

    sg_ovh_err_clear(err);
    *to = NULL;
    *n = 0;
    if (a->offer == SG_OFFER_EXCHANGE) {
        json_t *fw;
        if (!(path = sg_ovh_account_path(a, "", err)) || sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
            goto out;
        sg_ovh_what(w, sizeof(w), "GET", path);
        fw = json_is_object(j) ? json_object_get(j, "forwardingEmail") : NULL;
        if (!json_is_object(j) || (fw && !json_is_null(fw) && !json_is_string(fw))) {
            sg_ovh_shape_error(err, w, "an Exchange account with a forwardingEmail string or null");
            goto out;
        }
        if (json_is_string(fw) && json_string_length(fw) > 0 &&
            strv_add(to, n, json_string_value(fw), err) != 0)
            goto out;
        rc = 0;
        goto out;
    }
    if (a->offer != SG_OFFER_MXPLAN_LEGACY) {
        sg_ovh_err_set(err, SG_OVH_E_NOTSUP, "the API shows no redirections for %s accounts",
                       sg_ovh_offer_label(a->offer));
        goto out;
    }
    if (!a->domain || !a->address) {
        sg_ovh_err_set(err, SG_OVH_E_CONFIG, "account has no domain");
        goto out;
    }
    if (!(path = sg_ovh_path("/email/domain/%s/redirection?from=%q", a->domain, a->address))) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        goto out;
    }
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
        goto out;
    sg_ovh_what(w, sizeof(w), "GET", path);
    if (!json_is_array(j) || json_array_size(j) > 1000) {
        sg_ovh_shape_error(err, w, "an array of redirection ids");
        goto out;
    }
    json_array_foreach(j, i, x) {
        char *rpath;
        json_t *r = NULL, *dest, *from;

        if (json_is_string(x))
            rpath = sg_ovh_path("/email/domain/%s/redirection/%s", a->domain, json_string_value(x));
        else if (json_is_integer(x))
            rpath = sg_ovh_path("/email/domain/%s/redirection/%I", a->domain,
                                (int64_t)json_integer_value(x));
        else {
            sg_ovh_shape_error(err, w, "an array of redirection ids");
            goto out;
        }
        if (!rpath) {
            sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
            goto out;
        }
        if (sg_ovh_call(c, "GET", rpath, NULL, true, &r, err) != 0) {
            free(rpath);
            goto out;
        }
        dest = json_is_object(r) ? json_object_get(r, "to") : NULL;
        from = json_is_object(r) ? json_object_get(r, "from") : NULL;
        if (!json_is_string(dest) || (from && !json_is_string(from))) {
            sg_ovh_shape_error(err, sg_ovh_what(w, sizeof(w), "GET", rpath), "a redirection {from, to}");
            json_decref(r);
            free(rpath);
            goto out;
        }
        free(rpath);
        /* The API filters on from=; keep only exact matches all the same. */
        if (!from || strcasecmp(json_string_value(from), a->address) == 0) {
            if (strv_add(to, n, json_string_value(dest), err) != 0) {
                json_decref(r);
                goto out;
            }
        }
        json_decref(r);
    }
    rc = 0;
out:
    if (rc != 0) {
        sg_ovh_strv_free(*to, *n);
        *to = NULL;
        *n = 0;
    }
    json_decref(j);
    free(path);
    return rc;
}

/* ---- tasks (the password change answers with one) ------------------------- */

const char *sg_ovh_task_state_name(enum sg_ovh_task_state st)
{
    switch (st) {
    case SG_OVH_TASK_TODO: return "todo";
    case SG_OVH_TASK_DOING: return "doing";
    case SG_OVH_TASK_DONE: return "done";
    default: return "error";
    }
}

/* task_path - the account's task list (id < 0) or one task */
static char *task_path(const struct sg_account *a, int64_t id, struct sg_ovh_err *err)
{
    char suffix[64], *p;

    if (a->offer == SG_OFFER_MXPLAN_LEGACY) {
        if (!a->domain || !a->local) {
            sg_ovh_err_set(err, SG_OVH_E_CONFIG, "account has no domain");
            return NULL;
        }
        p = id < 0 ? sg_ovh_path("/email/domain/%s/task/account?name=%q", a->domain, a->local)
                   : sg_ovh_path("/email/domain/%s/task/account/%I", a->domain, id);
        if (!p)
            sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return p;
    }
    /* MX Plan (new) says "task", Exchange and Email Pro "tasks". */
    const char *word = a->offer == SG_OFFER_MXPLAN ? "/task" : "/tasks";
    if (id < 0)
        snprintf(suffix, sizeof(suffix), "%s", word);
    else
        snprintf(suffix, sizeof(suffix), "%s/%" PRId64, word, id);
    return sg_ovh_account_path(a, suffix, err);
}

int sg_ovh_password_tasks(sg_ovh_t *c, const struct sg_account *a, int64_t **ids, size_t *n,
                          struct sg_ovh_err *err)
{
    char *path;
    int rc;

    sg_ovh_err_clear(err);
    *ids = NULL;
    *n = 0;
    if (!(path = task_path(a, -1, err)))
        return -1;
    rc = sg_ovh_get_ids(c, path, ids, n, err);
    free(path);
    if (rc == 0 && *n > 1)
        qsort(*ids, *n, sizeof(**ids), sg_ovh_cmp_desc);
    /* sg_ovh_cmp_desc sorts newest first; callers want ascending: reverse. */
    for (size_t i = 0; rc == 0 && i < *n / 2; i++) {
        int64_t t = (*ids)[i];
        (*ids)[i] = (*ids)[*n - 1 - i];
        (*ids)[*n - 1 - i] = t;
    }
    return rc;
}

int sg_ovh_task_get(sg_ovh_t *c, const struct sg_account *a, int64_t id,
                    enum sg_ovh_task_state *st, struct sg_ovh_err *err)
{
    char *path, w[400], status[32];
    json_t *j = NULL;
    int rc = -1;

    sg_ovh_err_clear(err);
    if (!(path = task_path(a, id, err)))
        return -1;
    sg_ovh_what(w, sizeof(w), "GET", path);
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0) {
        if (a->offer == SG_OFFER_MXPLAN_LEGACY && err->rc == SG_OVH_E_API &&
            err->http_status == 404) {
            /* Legacy tasks are pending operations: once carried out, gone. */
            sg_ovh_err_clear(err);
            *st = SG_OVH_TASK_DONE;
            rc = 0;
        }
        goto out;
    }
    if (!json_is_object(j)) {
        sg_ovh_shape_error(err, w, "a task object");
        goto out;
    }
    if (a->offer == SG_OFFER_MXPLAN_LEGACY) {
        *st = SG_OVH_TASK_DOING;          /* listed: not carried out yet */
        rc = 0;
        goto out;
    }
    if (!sg_ovh_json_str(j, "status", status, sizeof(status), w, err))
        goto out;
    if (strcmp(status, "todo") == 0)
        *st = SG_OVH_TASK_TODO;
    else if (strcmp(status, "doing") == 0)
        *st = SG_OVH_TASK_DOING;
    else if (strcmp(status, "done") == 0)
        *st = SG_OVH_TASK_DONE;
    else if (strcmp(status, "error") == 0 || strcmp(status, "cancelled") == 0)
        *st = SG_OVH_TASK_ERROR;
    else {
        sg_ovh_shape_error(err, w, "a task with status todo, doing, done, error or cancelled");
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    free(path);
    return rc;
}

