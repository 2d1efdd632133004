/*
 * sg_ovh_account.c - what sendguard asks of the API about mailboxes: the
 * block status on the four offers, listing accounts, password changes,
 * redirections, the spam ticket and its messages, ticket replies, and the
 * consumer key request with the access rules sendguard needs.
 *
 * Every reply is checked for its shape before use; a wrong shape is an
 * SG_OVH_E_REPLY error naming the call, never a crash or a guess.
 * Must not: decide anything (the watcher and the workflow do), log a
 * password or a reply's raw text, or post anything it was not asked to.
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

#define LIST_MAX 100000           /* entries accepted from one listing call */
#define TICKET_SCAN_MAX 20        /* tickets examined by the fallback search */

static const char *offer_label(enum sg_offer o)
{
    switch (o) {
    case SG_OFFER_EXCHANGE: return "Exchange";
    case SG_OFFER_EMAILPRO: return "Email Pro";
    case SG_OFFER_MXPLAN: return "MX Plan";
    case SG_OFFER_MXPLAN_LEGACY: return "MX Plan legacy";
    default: return "no offer";
    }
}

/* account_path - the account's route plus suffix ("" or "/changePassword") */
static char *account_path(const struct sg_account *a, const char *suffix, struct sg_ovh_err *err)
{
    char *base = NULL, *full = NULL, esc[256];
    const char *addr = a->address ? a->address : "";

    switch (a->offer) {
    case SG_OFFER_EXCHANGE:
        if (a->organization && a->service)
            base = sg_ovh_path("/email/exchange/%s/service/%s/account/%s",
                               a->organization, a->service, addr);
        break;
    case SG_OFFER_EMAILPRO:
        if (a->service)
            base = sg_ovh_path("/email/pro/%s/account/%s", a->service, addr);
        break;
    case SG_OFFER_MXPLAN:
        if (a->service)
            base = sg_ovh_path("/email/mxplan/%s/account/%s", a->service, addr);
        break;
    case SG_OFFER_MXPLAN_LEGACY:
        if (a->domain && a->local)
            base = sg_ovh_path("/email/domain/%s/account/%s", a->domain, a->local);
        break;
    default:
        sg_ovh_err_set(err, SG_OVH_E_CONFIG, "account <%s> has no OVHcloud offer",
                       sg_log_esc(esc, sizeof(esc), addr));
        return NULL;
    }
    if (!base) {
        sg_ovh_err_set(err, SG_OVH_E_CONFIG, "account <%s>: %s needs %s", sg_log_esc(esc, sizeof(esc), addr),
                       offer_label(a->offer),
                       a->offer == SG_OFFER_EXCHANGE ? "organization and service" :
                       a->offer == SG_OFFER_MXPLAN_LEGACY ? "an address with a domain" : "service");
        return NULL;
    }
    if (asprintf(&full, "%s%s", base, suffix) < 0) {
        full = NULL;
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
    }
    free(base);
    return full;
}

/* what - "GET <path>" for shape errors, escaped */
static const char *what(char *buf, size_t len, const char *method, const char *path)
{
    char esc[300];

    snprintf(buf, len, "%s %s", method, sg_log_esc(esc, sizeof(esc), path));
    return buf;
}

static void shape_error(struct sg_ovh_err *err, const char *w, const char *expected)
{
    sg_ovh_err_set(err, SG_OVH_E_REPLY, "reply to %s is not %s", w, expected);
}

int sg_ovh_account_status(sg_ovh_t *c, const struct sg_account *a,
                          struct sg_ovh_status *st, struct sg_ovh_err *err)
{
    char *path;
    json_t *j = NULL;
    char w[400];
    int rc = -1;

    sg_ovh_err_clear(err);
    memset(st, 0, sizeof(*st));
    st->ticket = -1;
    if (!(path = account_path(a, "", err)))
        return -1;
    what(w, sizeof(w), "GET", path);
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
        goto out;
    if (!json_is_object(j)) {
        shape_error(err, w, "an account object");
        goto out;
    }
    if (a->offer == SG_OFFER_MXPLAN_LEGACY) {
        if (!sg_ovh_json_bool(j, "isBlocked", &st->blocked, w, err))
            goto out;
    } else {
        char state[64];
        if (!sg_ovh_json_bool(j, "spamDetected", &st->blocked, w, err) ||
            !sg_ovh_json_int_or_null(j, "spamTicketNumber", &st->ticket, w, err) ||
            !sg_ovh_json_str(j, "state", state, sizeof(state), w, err))
            goto out;
        sg_log_esc(st->state, sizeof(st->state), state);
    }
    rc = 0;
out:
    json_decref(j);
    free(path);
    return rc;
}

/* ---- listing -------------------------------------------------------------- */

/* get_strings - GET path, which must answer an array of strings */
static int get_strings(sg_ovh_t *c, const char *path, json_t **arr, struct sg_ovh_err *err)
{
    char w[400];
    size_t i;
    json_t *v;

    if (sg_ovh_call(c, "GET", path, NULL, true, arr, err) != 0)
        return -1;
    if (!json_is_array(*arr) || json_array_size(*arr) > LIST_MAX)
        goto bad;
    json_array_foreach(*arr, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255 ||
            strlen(json_string_value(v)) != json_string_length(v))
            goto bad;
    }
    return 0;
bad:
    shape_error(err, what(w, sizeof(w), "GET", path), "an array of names");
    json_decref(*arr);
    *arr = NULL;
    return -1;
}

static int found_add(struct sg_ovh_found **v, size_t *n, enum sg_offer offer, const char *org,
                     const char *svc, const char *addr, struct sg_ovh_err *err)
{
    struct sg_ovh_found *nv = realloc(*v, (*n + 1) * sizeof(**v));

    if (!nv)
        goto oom;
    *v = nv;
    struct sg_ovh_found *f = &nv[*n];
    memset(f, 0, sizeof(*f));
    f->offer = offer;
    if (!(f->address = strdup(addr)) || (org && !(f->organization = strdup(org))) ||
        (svc && !(f->service = strdup(svc)))) {
        free(f->address);
        free(f->organization);
        free(f->service);
        goto oom;
    }
    for (char *p = f->address; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    (*n)++;
    return 0;
oom:
    sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
    return -1;
}

/* unconfigured - a slot of the offer that is no mailbox yet: a placeholder
 * address (OVHcloud names empty Exchange/Email Pro slots
 * xxx@configureme.me) or an account object with "configured": false. */
static int unconfigured(sg_ovh_t *c, const char *list_path, const char *addr, bool *skip,
                        struct sg_ovh_err *err)
{
    const char *at = strrchr(addr, '@');
    char *path, *enc, w[400];
    json_t *j = NULL, *cfg;

    *skip = at && strcasecmp(at + 1, "configureme.me") == 0;
    if (*skip)
        return 0;
    if (!(enc = sg_ovh_path("/%s", addr)) || asprintf(&path, "%s%s", list_path, enc) < 0) {
        free(enc);
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    free(enc);
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0) {
        free(path);
        return -1;
    }
    cfg = json_is_object(j) ? json_object_get(j, "configured") : NULL;
    if (!json_is_object(j) || (cfg && !json_is_boolean(cfg))) {
        shape_error(err, what(w, sizeof(w), "GET", path), "an account object");
        json_decref(j);
        free(path);
        return -1;
    }
    *skip = json_is_false(cfg);
    json_decref(j);
    free(path);
    return 0;
}

/* list_accounts_of - the accounts under one container (path of the list) */
static int list_leaf(sg_ovh_t *c, enum sg_offer offer, const char *org, const char *svc,
                     const char *domain, const char *path,
                     struct sg_ovh_found **v, size_t *n, struct sg_ovh_err *err)
{
    json_t *arr = NULL, *x;
    size_t i;
    int rc = 0;

    if (get_strings(c, path, &arr, err) != 0)
        return -1;
    json_array_foreach(arr, i, x) {
        const char *name = json_string_value(x);
        char addr[600];
        bool skip = false;

        if (!domain && (rc = unconfigured(c, path, name, &skip, err)) != 0)
            break;
        if (skip)
            continue;
        if (domain) {
            snprintf(addr, sizeof(addr), "%s@%s", name, domain);
            rc = found_add(v, n, offer, NULL, NULL, addr, err);
        } else {
            rc = found_add(v, n, offer, org, svc, name, err);
        }
        if (rc != 0)
            break;
    }
    json_decref(arr);
    return rc;
}

int sg_ovh_list_accounts(sg_ovh_t *c, enum sg_offer offer,
                         struct sg_ovh_found **v, size_t *n, struct sg_ovh_err *err)
{
    json_t *tops = NULL, *x;
    size_t i;
    int rc = -1;
    const char *top;

    sg_ovh_err_clear(err);
    *v = NULL;
    *n = 0;
    switch (offer) {
    case SG_OFFER_EXCHANGE: top = "/email/exchange"; break;
    case SG_OFFER_EMAILPRO: top = "/email/pro"; break;
    case SG_OFFER_MXPLAN: top = "/email/mxplan"; break;
    case SG_OFFER_MXPLAN_LEGACY: top = "/email/domain"; break;
    default:
        sg_ovh_err_set(err, SG_OVH_E_INVAL, "no such offer");
        return -1;
    }
    if (get_strings(c, top, &tops, err) != 0)
        goto out;
    json_array_foreach(tops, i, x) {
        const char *name = json_string_value(x);
        char *path = NULL;
        int r;

        if (offer == SG_OFFER_EXCHANGE) {
            json_t *svcs = NULL, *s;
            size_t k;

            if (!(path = sg_ovh_path("/email/exchange/%s/service", name)) ||
                get_strings(c, path, &svcs, err) != 0) {
                if (!path)
                    sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
                free(path);
                goto out;
            }
            free(path);
            r = 0;
            json_array_foreach(svcs, k, s) {
                const char *svc = json_string_value(s);
                if (!(path = sg_ovh_path("/email/exchange/%s/service/%s/account", name, svc))) {
                    sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
                    r = -1;
                    break;
                }
                r = list_leaf(c, offer, name, svc, NULL, path, v, n, err);
                free(path);
                if (r != 0)
                    break;
            }
            json_decref(svcs);
            if (r != 0)
                goto out;
            continue;
        }
        if (offer == SG_OFFER_MXPLAN_LEGACY) {
            /* A domain already migrated to MX Plan (new) is listed there. */
            json_t *d = NULL, *mig;
            char w[400];
            if (!(path = sg_ovh_path("/email/domain/%s", name))) {
                sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
                goto out;
            }
            r = sg_ovh_call(c, "GET", path, NULL, true, &d, err);
            mig = json_is_object(d) ? json_object_get(d, "migratedMXPlanServiceName") : NULL;
            if (r == 0 && (!json_is_object(d) || (mig && !json_is_null(mig) && !json_is_string(mig)))) {
                shape_error(err, what(w, sizeof(w), "GET", path), "a domain object");
                r = -1;
            }
            bool migrated = json_is_string(mig) && json_string_length(mig) > 0;
            json_decref(d);
            free(path);
            if (r != 0)
                goto out;
            if (migrated)
                continue;
        }
        path = sg_ovh_path(offer == SG_OFFER_EMAILPRO ? "/email/pro/%s/account" :
                           offer == SG_OFFER_MXPLAN ? "/email/mxplan/%s/account" :
                           "/email/domain/%s/account", name);
        if (!path) {
            sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
            goto out;
        }
        r = list_leaf(c, offer, NULL, offer == SG_OFFER_MXPLAN_LEGACY ? NULL : name,
                      offer == SG_OFFER_MXPLAN_LEGACY ? name : NULL, path, v, n, err);
        free(path);
        if (r != 0)
            goto out;
    }
    rc = 0;
out:
    json_decref(tops);
    if (rc != 0) {
        sg_ovh_found_free(*v, *n);
        *v = NULL;
        *n = 0;
    }
    return rc;
}

void sg_ovh_found_free(struct sg_ovh_found *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].address);
        free(v[i].organization);
        free(v[i].service);
    }
    free(v);
}

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
    if (!(path = account_path(a, "/changePassword", err)))
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
        if (!(path = account_path(a, "", err)) || sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
            goto out;
        what(w, sizeof(w), "GET", path);
        fw = json_is_object(j) ? json_object_get(j, "forwardingEmail") : NULL;
        if (!json_is_object(j) || (fw && !json_is_null(fw) && !json_is_string(fw))) {
            shape_error(err, w, "an Exchange account with a forwardingEmail string or null");
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
                       offer_label(a->offer));
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
    what(w, sizeof(w), "GET", path);
    if (!json_is_array(j) || json_array_size(j) > 1000) {
        shape_error(err, w, "an array of redirection ids");
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
            shape_error(err, w, "an array of redirection ids");
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
            shape_error(err, what(w, sizeof(w), "GET", rpath), "a redirection {from, to}");
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

/* ---- tickets -------------------------------------------------------------- */

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int get_ticket(sg_ovh_t *c, int64_t id, struct sg_ovh_ticket *t, struct sg_ovh_err *err)
{
    char *path = sg_ovh_path("/support/tickets/%I", id), w[400], buf[256];
    json_t *j = NULL;
    int rc = -1;

    if (!path) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    memset(t, 0, sizeof(*t));
    what(w, sizeof(w), "GET", path);
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
        goto out;
    json_t *tid = json_is_object(j) ? json_object_get(j, "ticketId") : NULL;
    json_t *num = json_is_object(j) ? json_object_get(j, "ticketNumber") : NULL;
    if (!json_is_integer(tid) || !json_is_integer(num)) {
        shape_error(err, w, "a ticket with ticketId and ticketNumber");
        goto out;
    }
    t->id = (int64_t)json_integer_value(tid);
    t->number = (int64_t)json_integer_value(num);
    if (!sg_ovh_json_str(j, "subject", buf, sizeof(buf), w, err))
        goto out;
    copy_str(t->subject, sizeof(t->subject), buf);
    if (!sg_ovh_json_str(j, "state", buf, sizeof(buf), w, err))
        goto out;
    sg_log_esc(t->state, sizeof(t->state), buf);
    if (!sg_ovh_json_str(j, "serviceName", buf, sizeof(buf), w, err))
        goto out;
    copy_str(t->service, sizeof(t->service), buf);
    if (!sg_ovh_json_str(j, "lastMessageFrom", buf, sizeof(buf), w, err))
        goto out;
    sg_log_esc(t->last_from, sizeof(t->last_from), buf);
    rc = 0;
out:
    json_decref(j);
    free(path);
    return rc;
}

/* get_ids - GET path answering an array of ticket ids */
static int get_ids(sg_ovh_t *c, const char *path, int64_t **ids, size_t *n, struct sg_ovh_err *err)
{
    json_t *j = NULL, *x;
    size_t i;
    char w[400];

    *ids = NULL;
    *n = 0;
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
        return -1;
    if (!json_is_array(j) || json_array_size(j) > LIST_MAX)
        goto bad;
    if (json_array_size(j) && !(*ids = calloc(json_array_size(j), sizeof(**ids)))) {
        json_decref(j);
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    json_array_foreach(j, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            free(*ids);
            *ids = NULL;
            goto bad;
        }
        (*ids)[i] = (int64_t)json_integer_value(x);
    }
    *n = json_array_size(j);
    json_decref(j);
    return 0;
bad:
    shape_error(err, what(w, sizeof(w), "GET", path), "an array of ids");
    json_decref(j);
    return -1;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    if (n == 0)
        return false;
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

int sg_ovh_ticket_find(sg_ovh_t *c, const struct sg_account *a, int64_t number,
                       struct sg_ovh_ticket *t, struct sg_ovh_err *err)
{
    int64_t *ids = NULL;
    size_t n = 0;
    char *path;
    char esc[256];

    sg_ovh_err_clear(err);
    if (number >= 0) {
        /* The spam ticket is generated by OVHcloud: never let the API
         * leave autogenerated tickets out. */
        if (!(path = sg_ovh_path("/support/tickets?ticketNumber=%I&excludeAutogenerated=false",
                                 number))) {
            sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
            return -1;
        }
        int r = get_ids(c, path, &ids, &n, err);
        free(path);
        if (r != 0)
            return -1;
        for (size_t i = 0; i < n && i < TICKET_SCAN_MAX; i++) {
            if (get_ticket(c, ids[i], t, err) != 0) {
                free(ids);
                return -1;
            }
            if (t->number == number) {
                free(ids);
                return 0;
            }
        }
        free(ids);
        ids = NULL;
    }

    /* Fallback: open tickets with the spam subject that name the address. */
    if (!(path = sg_ovh_path("/support/tickets?status=open&subject=%q&excludeAutogenerated=false",
                             SG_OVH_SPAM_SUBJECT))) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    int r = get_ids(c, path, &ids, &n, err);
    free(path);
    if (r != 0)
        return -1;
    if (n > 1)                                        /* ids is NULL when n == 0 */
        qsort(ids, n, sizeof(*ids), cmp_desc);        /* newest first */
    for (size_t i = 0; i < n && i < TICKET_SCAN_MAX; i++) {
        struct sg_ovh_message *m = NULL;
        size_t nm = 0;
        bool names = false;

        if (get_ticket(c, ids[i], t, err) != 0)
            goto fail;
        if (strncasecmp(t->subject, "Account locked for spam", 23) != 0 ||
            strcmp(t->state, "closed") == 0)
            continue;
        if (sg_ovh_ticket_messages(c, t->id, &m, &nm, err) != 0)
            goto fail;
        for (size_t k = 0; k < nm && !names; k++)
            names = a->address && contains_ci(m[k].body, a->address);
        sg_ovh_messages_free(m, nm);
        if (names) {
            free(ids);
            return 0;
        }
    }
    free(ids);
    memset(t, 0, sizeof(*t));
    if (number >= 0)
        sg_ovh_err_set(err, SG_OVH_E_NOTFOUND, "no ticket numbered %" PRId64 " nor open spam ticket naming <%s>",
                       number, sg_log_esc(esc, sizeof(esc), a->address));
    else
        sg_ovh_err_set(err, SG_OVH_E_NOTFOUND, "no open spam ticket naming <%s>",
                       sg_log_esc(esc, sizeof(esc), a->address));
    return -1;
fail:
    free(ids);
    return -1;
}

static int cmp_msg(const void *a, const void *b)
{
    const struct sg_ovh_message *x = a, *y = b;
    int d = strcmp(x->date, y->date);

    if (d)
        return d;
    return x->id < y->id ? -1 : x->id > y->id;
}

int sg_ovh_ticket_messages(sg_ovh_t *c, int64_t ticket_id, struct sg_ovh_message **v,
                           size_t *n, struct sg_ovh_err *err)
{
    char *path = sg_ovh_path("/support/tickets/%I/messages", ticket_id), w[400], buf[64];
    json_t *j = NULL, *x;
    size_t i;
    int rc = -1;

    sg_ovh_err_clear(err);
    *v = NULL;
    *n = 0;
    if (!path) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    what(w, sizeof(w), "GET", path);
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
        goto out;
    if (!json_is_array(j) || json_array_size(j) > 10000) {
        shape_error(err, w, "an array of messages");
        goto out;
    }
    if (json_array_size(j) && !(*v = calloc(json_array_size(j), sizeof(**v)))) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        goto out;
    }
    json_array_foreach(j, i, x) {
        struct sg_ovh_message *m = &(*v)[i];
        json_t *id = json_is_object(x) ? json_object_get(x, "messageId") : NULL;
        json_t *body = json_is_object(x) ? json_object_get(x, "body") : NULL;

        if (!json_is_integer(id) || !json_is_string(body)) {
            shape_error(err, w, "an array of messages with messageId and body");
            *n = i;
            goto out;
        }
        m->id = (int64_t)json_integer_value(id);
        if (!sg_ovh_json_str(x, "from", buf, sizeof(buf), w, err)) {
            *n = i;
            goto out;
        }
        sg_log_esc(m->from, sizeof(m->from), buf);
        if (!sg_ovh_json_str(x, "creationDate", buf, sizeof(buf), w, err)) {
            *n = i;
            goto out;
        }
        sg_log_esc(m->date, sizeof(m->date), buf);
        if (!(m->body = strndup(json_string_value(body), json_string_length(body)))) {
            sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
            *n = i;
            goto out;
        }
    }
    *n = json_array_size(j);
    if (*n > 1)                                       /* *v is NULL when n == 0 */
        qsort(*v, *n, sizeof(**v), cmp_msg);
    rc = 0;
out:
    if (rc != 0) {
        sg_ovh_messages_free(*v, *n);
        *v = NULL;
        *n = 0;
    }
    json_decref(j);
    free(path);
    return rc;
}

void sg_ovh_messages_free(struct sg_ovh_message *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].body);
    free(v);
}

/* suspicious_count - the number just before "suspicious"/"suspect" in a
 * support message ("We have detected 12 suspicious message(s)", "Nous avons
 * actuellement détecté **12** message(s) suspect(s)"); -1 when none. */
static long suspicious_count(const char *body)
{
    for (const char *p = body; *p; p++) {
        if (strncasecmp(p, "suspicious", 10) != 0 && strncasecmp(p, "suspect", 7) != 0)
            continue;
        /* Walk back at most 40 bytes to the last run of digits. */
        const char *q = p, *stop = p - 40 > body ? p - 40 : body;
        while (q > stop && !isdigit((unsigned char)q[-1]))
            q--;
        if (q > stop && isdigit((unsigned char)q[-1])) {
            const char *end = q;
            while (q > body && isdigit((unsigned char)q[-1]))
                q--;
            if (end - q <= 9)
                return strtol(q, NULL, 10);
        }
    }
    return -1;
}

/* header_sample - from the first line that looks like a mail header */
static const char *header_sample(const char *body)
{
    static const char *const starts[] = { "Received:", "Return-Path:", "From:", "Message-ID:",
                                          "Date:", "Subject:", "X-Mailer:", "Delivered-To:" };
    for (const char *line = body; line && *line;) {
        const char *s = line;
        while (*s == ' ' || *s == '>' || *s == '\t')
            s++;
        for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
            if (strncasecmp(s, starts[i], strlen(starts[i])) == 0)
                return line;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}

void sg_ovh_ticket_evidence(const struct sg_ovh_message *v, size_t n, struct sg_ovh_evidence *ev)
{
    ev->suspicious = -1;
    ev->headers = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].from, "customer") == 0 || !v[i].body)
            continue;
        if (ev->suspicious < 0)
            ev->suspicious = suspicious_count(v[i].body);
        if (!ev->headers) {
            const char *h = header_sample(v[i].body);
            if (h)
                ev->headers = strndup(h, 64 * 1024);
        }
    }
}

void sg_ovh_evidence_clear(struct sg_ovh_evidence *ev)
{
    free(ev->headers);
    ev->headers = NULL;
    ev->suspicious = -1;
}

int sg_ovh_ticket_reply(sg_ovh_t *c, int64_t ticket_id, const char *body, struct sg_ovh_err *err)
{
    char *path;
    json_t *j;
    int rc;

    sg_ovh_err_clear(err);
    if (!body || !*body) {
        sg_ovh_err_set(err, SG_OVH_E_INVAL, "empty reply");
        return -1;
    }
    if (!(path = sg_ovh_path("/support/tickets/%I/reply", ticket_id)) ||
        !(j = json_pack("{s:s}", "body", body))) {
        free(path);
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory (or the reply is not UTF-8)");
        return -1;
    }
    rc = sg_ovh_call(c, "POST", path, j, true, NULL, err);
    json_decref(j);
    free(path);
    return rc;
}

int sg_ovh_ticket_get(sg_ovh_t *c, int64_t ticket_id, struct sg_ovh_ticket *t,
                      struct sg_ovh_err *err)
{
    sg_ovh_err_clear(err);
    return get_ticket(c, ticket_id, t, err);
}

int sg_ovh_ticket_reopen(sg_ovh_t *c, int64_t ticket_id, struct sg_ovh_err *err)
{
    char *path;
    int rc;

    sg_ovh_err_clear(err);
    if (!(path = sg_ovh_path("/support/tickets/%I/reopen", ticket_id))) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    rc = sg_ovh_call(c, "POST", path, NULL, true, NULL, err);
    free(path);
    return rc;
}

/* ---- consumer key --------------------------------------------------------- */

json_t *sg_ovh_access_rules(unsigned offers)
{
    static const char *const get_paths[] = {
        "/email/exchange", "/email/exchange/*", "/email/pro", "/email/pro/*",
        "/email/mxplan", "/email/mxplan/*", "/email/domain", "/email/domain/*",
        "/support/tickets", "/support/tickets/*",
    };
    static const struct { enum sg_offer offer; const char *path; } pw_paths[] = {
        { SG_OFFER_EXCHANGE, "/email/exchange/*/service/*/account/*/changePassword" },
        { SG_OFFER_EMAILPRO, "/email/pro/*/account/*/changePassword" },
        { SG_OFFER_MXPLAN, "/email/mxplan/*/account/*/changePassword" },
        { SG_OFFER_MXPLAN_LEGACY, "/email/domain/*/account/*/changePassword" },
    };
    json_t *rules = json_array();

    if (!rules)
        return NULL;
    for (size_t i = 0; i < sizeof(get_paths) / sizeof(get_paths[0]); i++)
        json_array_append_new(rules, json_pack("{s:s,s:s}", "method", "GET", "path", get_paths[i]));
    json_array_append_new(rules, json_pack("{s:s,s:s}", "method", "POST",
                                           "path", "/support/tickets/*/reply"));
    json_array_append_new(rules, json_pack("{s:s,s:s}", "method", "POST",
                                           "path", "/support/tickets/*/reopen"));
    for (size_t i = 0; i < sizeof(pw_paths) / sizeof(pw_paths[0]); i++)
        if (offers & (1u << pw_paths[i].offer))
            json_array_append_new(rules, json_pack("{s:s,s:s}", "method", "POST",
                                                   "path", pw_paths[i].path));
    return rules;
}

int sg_ovh_credential_request(sg_ovh_t *c, unsigned offers, const char *redirection,
                              const char *const *allowed_ips, size_t nips,
                              struct sg_ovh_credential *out, struct sg_ovh_err *err)
{
    json_t *body, *j = NULL, *ck, *url;
    int rc = -1;
    char buf[64];

    sg_ovh_err_clear(err);
    memset(out, 0, sizeof(*out));
    body = json_pack("{s:o}", "accessRules", sg_ovh_access_rules(offers));
    if (body && redirection && *redirection)
        json_object_set_new(body, "redirection", json_string(redirection));
    if (body && nips > 0) {
        json_t *ips = json_array();
        for (size_t i = 0; ips && i < nips; i++)
            json_array_append_new(ips, json_string(allowed_ips[i]));
        json_object_set_new(body, "allowedIPs", ips);
    }
    if (!body) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    if (sg_ovh_call(c, "POST", "/auth/credential", body, false, &j, err) != 0)
        goto out;
    ck = json_is_object(j) ? json_object_get(j, "consumerKey") : NULL;
    url = json_is_object(j) ? json_object_get(j, "validationUrl") : NULL;
    if (!json_is_string(ck) || json_string_length(ck) == 0 || json_string_length(ck) > 256 ||
        !json_is_string(url) || strncmp(json_string_value(url), "http", 4) != 0 ||
        strpbrk(json_string_value(url), " \t\r\n\x1b") || strpbrk(json_string_value(ck), " \t\r\n\x1b")) {
        shape_error(err, "POST /auth/credential", "a credential with consumerKey and validationUrl");
        goto out;
    }
    if (!sg_ovh_json_str(j, "state", buf, sizeof(buf), "POST /auth/credential", err))
        goto out;
    sg_log_esc(out->state, sizeof(out->state), buf);
    if (!(out->consumer_key = strdup(json_string_value(ck))) ||
        !(out->validation_url = strdup(json_string_value(url)))) {
        sg_ovh_credential_clear(out);
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    json_decref(body);
    return rc;
}

void sg_ovh_credential_clear(struct sg_ovh_credential *cr)
{
    if (cr->consumer_key) {
        explicit_bzero(cr->consumer_key, strlen(cr->consumer_key));
        free(cr->consumer_key);
    }
    free(cr->validation_url);
    memset(cr, 0, sizeof(*cr));
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
    return account_path(a, suffix, err);
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
    rc = get_ids(c, path, ids, n, err);
    free(path);
    if (rc == 0 && *n > 1)
        qsort(*ids, *n, sizeof(**ids), cmp_desc);
    /* cmp_desc sorts newest first; callers want ascending: reverse. */
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
    what(w, sizeof(w), "GET", path);
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
        shape_error(err, w, "a task object");
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
        shape_error(err, w, "a task with status todo, doing, done, error or cancelled");
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    free(path);
    return rc;
}

/* ---- the consumer key in use ---------------------------------------------- */

/* iso_ms - "2024-01-15T10:20:30+01:00" (or Z, or fractions) to Unix ms; -1 */
static int64_t iso_ms(const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, n = 0;
    const char *p;
    long off = 0;

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return -1;
    p = s + n;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            ;
    if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
            return -1;
        off = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
    } else if (*p != 'Z' && *p != '\0') {
        return -1;
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return ((int64_t)timegm(&tm) - off) * 1000;
}

int sg_ovh_current_credential(sg_ovh_t *c, struct sg_ovh_current *out, struct sg_ovh_err *err)
{
    static const char w[] = "GET /auth/currentCredential";
    json_t *j = NULL, *rules, *ips;
    char buf[64];
    size_t i;
    json_t *r;
    int rc = -1;

    sg_ovh_err_clear(err);
    memset(out, 0, sizeof(*out));
    out->expires_ms = -1;
    if (sg_ovh_call(c, "GET", "/auth/currentCredential", NULL, true, &j, err) != 0)
        goto out;
    rules = json_is_object(j) ? json_object_get(j, "rules") : NULL;
    ips = json_is_object(j) ? json_object_get(j, "allowedIPs") : NULL;
    if (!json_is_array(rules) || (ips && !json_is_null(ips) && !json_is_array(ips))) {
        shape_error(err, w, "a credential with rules");
        goto out;
    }
    json_array_foreach(rules, i, r) {
        if (!json_is_string(json_object_get(r, "method")) ||
            !json_is_string(json_object_get(r, "path"))) {
            shape_error(err, w, "a credential with rules of method and path");
            goto out;
        }
    }
    if (!sg_ovh_json_str(j, "status", buf, sizeof(buf), w, err))
        goto out;
    sg_log_esc(out->status, sizeof(out->status), buf);
    if (!sg_ovh_json_str(j, "expiration", buf, sizeof(buf), w, err))
        goto out;
    sg_log_esc(out->expiration, sizeof(out->expiration), buf);
    if (*buf && (out->expires_ms = iso_ms(buf)) < 0) {
        shape_error(err, w, "a credential with an ISO 8601 expiration");
        goto out;
    }
    out->rules = json_incref(rules);
    out->allowed_ips = json_is_array(ips) ? json_incref(ips) : NULL;
    rc = 0;
out:
    json_decref(j);
    return rc;
}

void sg_ovh_current_clear(struct sg_ovh_current *cur)
{
    json_decref(cur->rules);
    json_decref(cur->allowed_ips);
    memset(cur, 0, sizeof(*cur));
    cur->expires_ms = -1;
}

/* glob - '*' in pat matches any run of characters, '/' included */
static bool glob(const char *pat, const char *s)
{
    if (*pat == '\0')
        return *s == '\0';
    if (*pat == '*') {
        for (;; s++) {
            if (glob(pat + 1, s))
                return true;
            if (*s == '\0')
                return false;
        }
    }
    return *s == *pat && glob(pat + 1, s + 1);
}

json_t *sg_ovh_rules_missing(const json_t *have, const json_t *needed)
{
    json_t *missing = json_array(), *n, *h;
    size_t i, k;

    if (!missing)
        return NULL;
    json_array_foreach(needed, i, n) {
        const char *nm = json_string_value(json_object_get(n, "method"));
        const char *np = json_string_value(json_object_get(n, "path"));
        bool covered = false;

        json_array_foreach(have, k, h) {
            const char *hm = json_string_value(json_object_get(h, "method"));
            const char *hp = json_string_value(json_object_get(h, "path"));
            if (nm && np && hm && hp && strcmp(hm, nm) == 0 && glob(hp, np)) {
                covered = true;
                break;
            }
        }
        if (!covered)
            json_array_append(missing, n);
    }
    return missing;
}
