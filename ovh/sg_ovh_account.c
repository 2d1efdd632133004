/*
 * sg_ovh_account.c - what sendguard asks of the API about mailboxes: the
 * block status on the four offers and listing the accounts the credentials
 * see; and the small helpers the ovh/ request files share (offer labels,
 * an account's route, shape errors).
 *
 * Every reply is checked for its shape before use; a wrong shape is an
 * SG_OVH_E_REPLY error naming the call, never a crash or a guess.
 * Must not: decide anything (the watcher and the workflow do), log a
 * reply's raw text, or post anything (it only reads).
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

const char *sg_ovh_offer_label(enum sg_offer o)
{
    switch (o) {
    case SG_OFFER_EXCHANGE: return "Exchange";
    case SG_OFFER_EMAILPRO: return "Email Pro";
    case SG_OFFER_MXPLAN: return "MX Plan";
    case SG_OFFER_MXPLAN_LEGACY: return "MX Plan legacy";
    default: return "no offer";
    }
}

/* sg_ovh_account_path - the account's route plus suffix ("" or "/changePassword") */
char *sg_ovh_account_path(const struct sg_account *a, const char *suffix, struct sg_ovh_err *err)
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
                       sg_ovh_offer_label(a->offer),
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

/* sg_ovh_what - "GET <path>" for shape errors, escaped */
const char *sg_ovh_what(char *buf, size_t len, const char *method, const char *path)
{
    char esc[300];

    snprintf(buf, len, "%s %s", method, sg_log_esc(esc, sizeof(esc), path));
    return buf;
}

void sg_ovh_shape_error(struct sg_ovh_err *err, const char *w, const char *expected)
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
    if (!(path = sg_ovh_account_path(a, "", err)))
        return -1;
    sg_ovh_what(w, sizeof(w), "GET", path);
    if (sg_ovh_call(c, "GET", path, NULL, true, &j, err) != 0)
        goto out;
    if (!json_is_object(j)) {
        sg_ovh_shape_error(err, w, "an account object");
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
    if (!json_is_array(*arr) || json_array_size(*arr) > SG_OVH_LIST_MAX)
        goto bad;
    json_array_foreach(*arr, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255 ||
            strlen(json_string_value(v)) != json_string_length(v))
            goto bad;
    }
    return 0;
bad:
    sg_ovh_shape_error(err, sg_ovh_what(w, sizeof(w), "GET", path), "an array of names");
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
        sg_ovh_shape_error(err, sg_ovh_what(w, sizeof(w), "GET", path), "an account object");
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
                sg_ovh_shape_error(err, sg_ovh_what(w, sizeof(w), "GET", path), "a domain object");
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

