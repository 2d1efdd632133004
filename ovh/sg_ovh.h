/*
 * sg_ovh - the OVHcloud API client: endpoints, request signing, the time
 * delta, OAuth2 client credentials, ovh.conf, and the calls sendguard makes
 * on the four e-mail offers (Exchange, Email Pro, MX Plan new and legacy)
 * and on support tickets.
 *
 * Threads: call sg_ovh_global_init() once before any thread starts. A client
 * (sg_ovh_t) holds one curl handle and is used by one thread at a time;
 * make one per thread. Credentials handles are read-only once loaded.
 *
 * Errors: every call that can fail fills a struct sg_ovh_err whose text
 * fields are already escaped (printable ASCII only) and never hold a
 * secret. Secrets (application secret, consumer key, client secret, OAuth2
 * token, passwords) never reach a log line, an error text or argv.
 */
#ifndef SG_OVH_H
#define SG_OVH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sg_conf.h"

/* ---- errors --------------------------------------------------------------- */

enum sg_ovh_rc {
    SG_OVH_OK = 0,
    SG_OVH_E_CONFIG,              /* local problem: credentials, endpoint */
    SG_OVH_E_NET,                 /* no usable reply: connect, timeout, cut short */
    SG_OVH_E_API,                 /* the API answered with an error status */
    SG_OVH_E_REPLY,               /* a success reply that is not JSON, too big, or the wrong shape */
    SG_OVH_E_NOTFOUND,            /* a search found nothing (e.g. no ticket) */
    SG_OVH_E_NOTSUP,              /* the offer has no such route */
    SG_OVH_E_INVAL,               /* a bad argument (e.g. a password the offer refuses) */
    SG_OVH_E_NOMEM,
    SG_OVH_E_ABORTED,             /* the abort hook said stop */
};

struct sg_ovh_err {
    enum sg_ovh_rc rc;
    long http_status;             /* 0 when there was no HTTP reply */
    char code[64];                /* API errorCode, "" when none */
    char message[512];            /* API message or a local explanation */
    char query_id[96];            /* X-Ovh-QueryID of the failed call, "" when none */
    char request[320];            /* "GET /email/pro/x/account/y", "" when none */
    /* A write whose outcome is unknown: the request may have reached the
     * server (timeout, connection cut, no or a 5xx answer). The caller must
     * read back before deciding; it is never resent. */
    bool unknown_outcome;
};

/* "GET /x: HTTP 403 INVALID_CREDENTIAL: This credential is not valid
 * (query id EU.ext-3)". Returns buf. */
char *sg_ovh_strerror(const struct sg_ovh_err *e, char *buf, size_t len);

/* True for the errors that say the credentials themselves are refused
 * (INVALID_CREDENTIAL, INVALID_KEY, NOT_CREDENTIAL, an expired OAuth2
 * client): retrying another account is pointless. */
bool sg_ovh_err_is_auth(const struct sg_ovh_err *e);

/* ---- endpoints and signing ------------------------------------------------ */

/* Base URL of an endpoint: an alias of the official clients (ovh-eu, ovh-ca,
 * ovh-us, kimsufi-eu/ca, soyoustart-eu/ca) or a literal http(s) URL (any
 * value containing '/'; trailing '/' removed). Plain http is accepted for
 * loopback hosts only. False when unknown or too long. */
bool sg_ovh_endpoint_url(const char *endpoint, char *buf, size_t len);

/* OAuth2 token URL for an endpoint. Fixed per region, never derived from
 * the API host: ovh-eu https://www.ovh.com/auth/oauth2/token, ovh-ca
 * https://ca.ovh.com/..., ovh-us https://us.ovhcloud.com/... (also for a
 * literal URL equal to a region's API URL). A literal loopback URL (a
 * stand-in) gets "<scheme://host:port>/auth/oauth2/token". False otherwise
 * (kimsufi, soyoustart, another host). */
bool sg_ovh_endpoint_token_url(const char *endpoint, char *buf, size_t len);

#define SG_OVH_SIG_SIZE 44        /* "$1$" + 40 hex + NUL */

/* X-Ovh-Signature: "$1$" + sha1hex(AS+"+"+CK+"+"+METHOD+"+"+URL+"+"+BODY+"+"+TS).
 * body may be NULL (= empty). */
void sg_ovh_sign(const char *as, const char *ck, const char *method,
                 const char *url, const char *body, size_t bodylen,
                 int64_t ts, char out[SG_OVH_SIG_SIZE]);

/* ---- credentials (ovh.conf + OVH_* environment) --------------------------- */

typedef struct sg_ovh_creds sg_ovh_creds_t;

enum sg_ovh_auth {
    SG_OVH_AUTH_SIGNED = 1,       /* application_key/secret (+ consumer_key) */
    SG_OVH_AUTH_OAUTH2,           /* client_id/client_secret */
};

/* Load credentials the way the official clients do.
 * path: the `ovh.credentials` config value: when set, only that file is
 *   read; when NULL, /etc/ovh.conf, ~/.ovh.conf, ./ovh.conf in that order,
 *   a later file winning key by key (missing files skipped).
 * endpoint: the `ovh.endpoint` config value, or NULL: then OVH_ENDPOINT,
 *   then [default] endpoint= of the files.
 * OVH_APPLICATION_KEY, OVH_APPLICATION_SECRET, OVH_CONSUMER_KEY,
 * OVH_CLIENT_ID, OVH_CLIENT_SECRET override the files.
 * Every file read must not be readable or writable by group or others:
 * it is refused with "FILE: mode 0644 lets other users read the API
 * secrets; run: chmod 600 FILE". NULL on error, err filled. */
sg_ovh_creds_t *sg_ovh_creds_load(const char *path, const char *endpoint,
                                  char *err, size_t errlen);
void sg_ovh_creds_free(sg_ovh_creds_t *c);
const char *sg_ovh_creds_endpoint(const sg_ovh_creds_t *c);  /* alias or URL, as configured */
enum sg_ovh_auth sg_ovh_creds_auth(const sg_ovh_creds_t *c);
/* The files that were read, ", "-separated ("" when none: environment only). */
const char *sg_ovh_creds_files(const sg_ovh_creds_t *c);
/* A credential field by ovh.conf key name ("application_key", ...); NULL
 * when unset. For tests and for checks; never print the secret ones. */
const char *sg_ovh_creds_get(const sg_ovh_creds_t *c, const char *key);

/* ---- the client ----------------------------------------------------------- */

typedef struct sg_ovh sg_ovh_t;

struct sg_ovh_opts {
    int timeout_ms;               /* per attempt; default 60000 (writes: at least 60000) */
    int attempts;                 /* tries for timeouts, 5xx and 429 (GET and the
                                   * OAuth2 token only; a write is resent only after
                                   * a connect error); default 3 */
    int backoff_ms;               /* first pause, doubled each time, capped at 5 s; default 200 */
    int retry_after_max_s;        /* cap on an honoured Retry-After; default 30 */
    size_t max_reply;             /* bytes; default 4 MiB */
};

void sg_ovh_opts_default(struct sg_ovh_opts *o);

/* curl_global_init, once per process (safe to call more than once). Call
 * it from main() before threads start. 0 or -1. */
/* Every HTTP exchange of the process ends by calling fn (if set) with
 * "ok", "client_error" (4xx), "server_error" (5xx, 429) or "failed" (no
 * answer): the daemon's metrics. Set once, before any thread. */
void sg_ovh_set_call_observer(void (*fn)(const char *result));

int sg_ovh_global_init(void);

/* A client on creds (copied: creds may be freed after). opts NULL = defaults.
 * NULL on error, err filled. */
sg_ovh_t *sg_ovh_new(const sg_ovh_creds_t *creds, const struct sg_ovh_opts *opts,
                     struct sg_ovh_err *err);
void sg_ovh_free(sg_ovh_t *c);

/* A client as the configuration says: credentials from ovh.credentials (or
 * the standard ovh.conf lookup and OVH_* variables), ovh.endpoint,
 * ovh.timeout. NULL on error, err filled (never with a secret). */
sg_ovh_t *sg_ovh_open(const struct sg_settings *s, struct sg_ovh_err *err);

/* A hook polled during transfers and pauses; returning true aborts the
 * call with SG_OVH_E_ABORTED (the watcher's stop). */
void sg_ovh_set_abort(sg_ovh_t *c, bool (*fn)(void *ctx), void *ctx);

/* The request budget: every HTTP request of the process (all clients, all
 * threads: watcher, auto-reply, commands) goes through one sliding window
 * of SG_OVH_BUDGET requests per minute (OVHcloud publishes no limit; its
 * maintainers advise staying under ~60 a minute per key). A request over
 * the budget waits for its slot; a 429's Retry-After holds every request
 * of the process. For tests only, SG_OVH_TEST_MINUTE_MS shortens the
 * "minute" (1000 to 60000). */
#define SG_OVH_BUDGET 60
int64_t sg_ovh_budget_minute_ms(void);
/* Milliseconds this client's requests waited for the budget since the
 * last call of this function (the watcher logs it). */
int64_t sg_ovh_budget_waited(sg_ovh_t *c);

/* The cached server time delta (server - local, seconds), fetching it when
 * not known yet. 0 or -1. */
int sg_ovh_time_delta(sg_ovh_t *c, int64_t *delta, struct sg_ovh_err *err);

/* One API call. path starts with '/', relative to the base URL ("/v1/" and
 * "/v2/" paths replace the "/1.0" of the base), already percent-encoded
 * (see sg_ovh_path). body NULL = none; it is sent as compact JSON. signed_
 * calls carry the credentials; unsigned ones only X-Ovh-Application.
 * On success *reply (if reply is not NULL) gets the decoded JSON (JSON null
 * for an empty body); json_decref it. 0 or -1. */
int sg_ovh_call(sg_ovh_t *c, const char *method, const char *path, const json_t *body,
                bool signed_, json_t **reply, struct sg_ovh_err *err);

/* Build a path: fmt is copied, each "%s" replaced by the next argument
 * percent-encoded as a path segment ('@' kept, '/' encoded), each "%q" by
 * the next argument encoded as a query value, "%I" by an int64_t. Returns
 * a malloc'd string, or NULL (out of memory, or a "%s" argument "." or
 * "..", which would be a dot segment). */
char *sg_ovh_path(const char *fmt, ...);

/* ---- accounts on the four offers ------------------------------------------ */

struct sg_ovh_status {
    bool blocked;                 /* spamDetected / isBlocked */
    int64_t ticket;               /* spamTicketNumber, -1 when none (always for legacy) */
    char state[32];               /* API state, "" for legacy MX Plan (no such field) */
};

/* The block status of a configured account (a->offer must not be NONE). */
int sg_ovh_account_status(sg_ovh_t *c, const struct sg_account *a,
                          struct sg_ovh_status *st, struct sg_ovh_err *err);

/* An account found by listing (strings malloc'd; NULL when not relevant). */
struct sg_ovh_found {
    enum sg_offer offer;
    char *address;
    char *organization;           /* exchange */
    char *service;                /* exchange, emailpro, mxplan */
};

/* Every account the credentials can see on one offer. 0 or -1. */
int sg_ovh_list_accounts(sg_ovh_t *c, enum sg_offer offer,
                         struct sg_ovh_found **v, size_t *n, struct sg_ovh_err *err);
void sg_ovh_found_free(struct sg_ovh_found *v, size_t n);

/* Change an account's password (POST .../changePassword) on any offer.
 * The password is checked first against what the offer accepts (legacy:
 * 9 to 30 characters, no leading/trailing space, ASCII only). *task_id
 * (may be NULL) gets the task id, or -1 when the reply has none. Never
 * resent: on error, err->unknown_outcome says whether it may have been
 * carried out (then find the task with sg_ovh_password_tasks). */
int sg_ovh_change_password(sg_ovh_t *c, const struct sg_account *a, const char *password,
                           int64_t *task_id, struct sg_ovh_err *err);

/* The state of an account's task (the password change answers with one). */
enum sg_ovh_task_state {
    SG_OVH_TASK_TODO,
    SG_OVH_TASK_DOING,
    SG_OVH_TASK_DONE,
    SG_OVH_TASK_ERROR,            /* error or cancelled: nothing changed */
};
const char *sg_ovh_task_state_name(enum sg_ovh_task_state s);

/* The ids of the account's tasks (Exchange/Email Pro .../tasks, MX Plan
 * .../task, legacy /email/domain/{d}/task/account?name=), ascending. */
int sg_ovh_password_tasks(sg_ovh_t *c, const struct sg_account *a, int64_t **ids, size_t *n,
                          struct sg_ovh_err *err);
/* One task's state. Exchange, Email Pro, MX Plan: its status (todo, doing,
 * done, error, cancelled). Legacy MX Plan tasks have no status: a task
 * still listed is pending (doing), one gone (404) is done. */
int sg_ovh_task_get(sg_ovh_t *c, const struct sg_account *a, int64_t id,
                    enum sg_ovh_task_state *st, struct sg_ovh_err *err);
/* Local check of a password for an offer; NULL when fine, else why not. */
const char *sg_ovh_password_problem(enum sg_offer offer, const char *password);

/* Redirections of an account: Exchange forwardingEmail (0 or 1), legacy MX
 * Plan /email/domain/{domain}/redirection?from=. Email Pro and MX Plan new
 * expose none: SG_OVH_E_NOTSUP. *to is a malloc'd array of malloc'd
 * strings (free with sg_ovh_strv_free). */
int sg_ovh_redirections(sg_ovh_t *c, const struct sg_account *a, char ***to, size_t *n,
                        struct sg_ovh_err *err);
void sg_ovh_strv_free(char **v, size_t n);

/* ---- support tickets ------------------------------------------------------ */

#define SG_OVH_SPAM_SUBJECT "Account locked for spam."

struct sg_ovh_ticket {
    int64_t id;                   /* ticketId, used in paths */
    int64_t number;               /* ticketNumber, what the customer sees */
    char subject[160];
    char state[16];               /* open, closed, unknown */
    char service[128];            /* serviceName, "" when null */
    char last_from[16];           /* customer, support */
};

/* Find the spam ticket of an account: by number (?ticketNumber=) when
 * number >= 0, else (or when that finds nothing) the newest open ticket
 * whose subject is SG_OVH_SPAM_SUBJECT and whose messages name the address.
 * SG_OVH_E_NOTFOUND when there is none. */
int sg_ovh_ticket_find(sg_ovh_t *c, const struct sg_account *a, int64_t number,
                       struct sg_ovh_ticket *t, struct sg_ovh_err *err);

struct sg_ovh_message {
    int64_t id;
    char from[16];                /* customer, support */
    char date[40];                /* creationDate as sent */
    char *body;                   /* malloc'd, as sent (not escaped) */
};

/* A ticket's messages, oldest first. Free with sg_ovh_messages_free. */
int sg_ovh_ticket_messages(sg_ovh_t *c, int64_t ticket_id, struct sg_ovh_message **v,
                           size_t *n, struct sg_ovh_err *err);
void sg_ovh_messages_free(struct sg_ovh_message *v, size_t n);

/* What OVHcloud gives as evidence in the ticket's support messages. */
struct sg_ovh_evidence {
    long suspicious;              /* "N suspicious message(s)" / "N message(s) suspect(s)"; -1 unknown */
    char *headers;                /* malloc'd header sample (from the first header line), or NULL */
};
void sg_ovh_ticket_evidence(const struct sg_ovh_message *v, size_t n, struct sg_ovh_evidence *ev);
void sg_ovh_evidence_clear(struct sg_ovh_evidence *ev);

/* POST /support/tickets/{id}/reply {"body": body}. Never resent: on error,
 * err->unknown_outcome says whether it may have been posted (then read the
 * messages back). */
int sg_ovh_ticket_reply(sg_ovh_t *c, int64_t ticket_id, const char *body, struct sg_ovh_err *err);

/* GET /support/tickets/{id} (state, last_from...). */
int sg_ovh_ticket_get(sg_ovh_t *c, int64_t ticket_id, struct sg_ovh_ticket *t,
                      struct sg_ovh_err *err);
/* POST /support/tickets/{id}/reopen (a ticket support closed). Never
 * resent; read the ticket back after an unknown outcome. */
int sg_ovh_ticket_reopen(sg_ovh_t *c, int64_t ticket_id, struct sg_ovh_err *err);

/* ---- consumer key request ------------------------------------------------- */

/* Offers as a bit mask (1u << SG_OFFER_x) for the changePassword rules. */
#define SG_OVH_OFFERS_ALL ((1u << SG_OFFER_EXCHANGE) | (1u << SG_OFFER_EMAILPRO) | \
                           (1u << SG_OFFER_MXPLAN) | (1u << SG_OFFER_MXPLAN_LEGACY))

/* The access rules sendguard needs, as the JSON array POST /auth/credential
 * takes (new reference). */
json_t *sg_ovh_access_rules(unsigned offers);

struct sg_ovh_credential {
    char *consumer_key;           /* malloc'd */
    char *validation_url;         /* malloc'd */
    char state[32];               /* pendingValidation, ... */
};

/* POST /auth/credential with sg_ovh_access_rules(offers); redirection may
 * be NULL; allowed_ips (n may be 0) restricts the key to those addresses
 * or blocks ("192.0.2.10/32"). Needs only the application key. */
int sg_ovh_credential_request(sg_ovh_t *c, unsigned offers, const char *redirection,
                              const char *const *allowed_ips, size_t nips,
                              struct sg_ovh_credential *out, struct sg_ovh_err *err);
void sg_ovh_credential_clear(struct sg_ovh_credential *cr);

/* GET /auth/currentCredential: the consumer key in use. */
struct sg_ovh_current {
    char status[32];              /* validated, pendingValidation, expired, refused */
    char expiration[40];          /* as sent, "" = never */
    int64_t expires_ms;           /* -1 never / unreadable */
    json_t *rules;                /* [{method, path}] (new reference) */
    json_t *allowed_ips;          /* array or NULL */
};
int sg_ovh_current_credential(sg_ovh_t *c, struct sg_ovh_current *out, struct sg_ovh_err *err);
void sg_ovh_current_clear(struct sg_ovh_current *cur);
/* The rules of `needed` no rule of `have` covers ('*' matches any run of
 * characters, '/' included, as the API does): a new array (maybe empty). */
json_t *sg_ovh_rules_missing(const json_t *have, const json_t *needed);

#endif
