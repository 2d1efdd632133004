/*
 * sg_policy - the decision for one message: identity, account, limits,
 * verdict. Pure: it takes a config snapshot, a request and the stores and
 * returns a verdict; it never calls libmilter, syslog, curl or exit().
 */
#ifndef SG_POLICY_H
#define SG_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sg_conf.h"
#include "sg_store.h"

#define SG_ADDR_MAX 320           /* identities longer than this are shortened (see README) */

/* One message as the MTA described it. Any string may be NULL (missing
 * macro); strings may hold any byte but NUL. */
struct sg_request {
    const char *auth_authen;      /* {auth_authen} */
    const char *envfrom;          /* MAIL FROM argument, with or without <> */
    const char *client_ip;
    const char *qid;              /* {i} */
    const char *mailer;           /* User-Agent / X-Mailer header */
    const char *from_header;      /* From: header value */
    const char *msgid;            /* Message-ID header */
    const char *const *rcpts;     /* RCPT TO arguments */
    size_t nrcpts;
    uint64_t size;                /* header + body bytes */
    const char *relay;            /* this relay's name */
};

struct sg_verdict {
    enum sg_action action;        /* accept, warn, tempfail, hold, reject */
    char identity[SG_ADDR_MAX + 1];
    char account[SG_ADDR_MAX + 1];
    const struct sg_account *acct;/* configured account, or NULL (implicit) */
    const struct sg_limit *limit; /* tripped limit, or the fullest one; may be NULL */
    enum sg_unit unit;
    uint64_t used, cap, retry_after_ms;
    bool allowed;                 /* sender on the allow list: never throttled */
    bool lockdown;                /* account blocked: on_block applied */
    bool held;                    /* lockdown hold: req->qid recorded in the store's held
                                     list (by the decision itself, no second call) */
    bool too_big;                 /* the message alone exceeds a cap */
    bool warned;                  /* a warn_at threshold was crossed */
    bool store_error;             /* primary store failed */
    double store_ms;              /* the store call that decided, ms; -1 when none did */
    bool observed;                /* mode "observe": action is what enforcement would do,
                                     the message is accepted all the same */
    const char *store;            /* name of the store that decided, or "none" */
    char smtp_code[4];            /* "451", "550", or "" */
    char smtp_xcode[8];           /* "4.7.1", "5.7.1", or "" */
    char reason[256];             /* text for SMTP reply / quarantine */
};

/* Normalise an address or login into out (SG_ADDR_MAX + 1 bytes): strip
 * one pair of <>, trim spaces, lower-case (if set), strip +tag (if set).
 * The null sender gives "<>". Over-long input is cut and suffixed with a
 * hash so distinct inputs stay distinct. Returns out. */
char *sg_policy_normalize(const struct sg_settings *s, const char *in, char *out);

/* The identity of an envelope sender: sg_policy_normalize, and before the
 * +tag is stripped, the rewrites that make senders unique undone when
 * enabled: SRS0/SRS1 (identity.srs) give the original sender, BATV
 * "prvs=TAG=local@domain" (identity.batv) gives local@domain; then an
 * identity matching an identity.verp pattern becomes that pattern (all of
 * a list's VERP bounces are one identity). Returns out. */
char *sg_policy_sender(const struct sg_settings *s, const char *in, char *out);

/* Pattern match: "*@domain", "user@*", "*", exact address or login. */
bool sg_policy_match(const char *pattern, const char *identity);

/* Identity → configured account (first whose senders match) or NULL. */
const struct sg_account *sg_policy_account(const struct sg_settings *s, const char *identity);

/* Who is charged, and under which limits: what sg_policy_resolve finds. */
struct sg_resolved {
    char identity[SG_ADDR_MAX + 1];   /* normalised login or sender */
    char account[SG_ADDR_MAX + 1];    /* acct->address, or the identity itself */
    const struct sg_account *acct;    /* configured account, or NULL (implicit) */
    const struct sg_limit *limits;    /* the account's, or the default limits */
    size_t nlimits;
    int observe;                      /* mode: the account's, or the top-level one */
};

/* sg_policy_resolve - identity → account → limits, the one way the daemon
 * and every sendguardctl command map a sender to what it is charged to.
 * The identity is the login when login is neither NULL nor empty
 * (sg_policy_normalize), else the envelope sender envfrom
 * (sg_policy_sender: SRS, BATV, VERP undone); the account is the first
 * configured one whose senders match it (sg_policy_account), else the
 * identity's own implicit account. sendguardctl passes its ACCOUNT or
 * IDENTITY argument as login: an address or login as written. */
void sg_policy_resolve(const struct sg_settings *s, const char *login, const char *envfrom,
                       struct sg_resolved *r);

/* 64-bit hash of a normalised recipient (for distinct_recipients). */
uint64_t sg_policy_rcpt_hash(const char *rcpt);

/* Decide. primary may fail (SG_STORE_ERROR): then store_on_error decides,
 * with fallback (an in-process memory store) for "accept". */
void sg_policy_decide(const sg_conf_t *conf, sg_store_t *primary, sg_store_t *fallback,
                      const struct sg_request *req, struct sg_verdict *v);

#endif
