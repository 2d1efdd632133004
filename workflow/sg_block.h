/*
 * sg_block - the block workflow's own logic, apart from the API calls:
 * reading the evidence (spike, new client IPs and mailers), drafting the
 * three answers of the spam ticket, generating a password, rewriting the
 * relay's SASL password map, and the audit line.
 *
 * Pure where it can be: the analysis and the draft take data and `now`
 * and return text; only the SASL map rewrite touches a file. The steps
 * through the API (sg_unblock.c) move the account's phase only through
 * the workflow (sg_workflow.h).
 */
#ifndef SG_BLOCK_H
#define SG_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sg_conf.h"
#include "sg_store.h"

#define SG_BLOCK_HOURS 48

struct sg_block_seen {            /* a client IP or a mailer */
    char name[260];
    uint64_t count;
    int64_t first_seen_ms;        /* -1 unknown */
    bool is_new;                  /* first seen inside the period under review */
};

struct sg_block_facts {
    int64_t now_ms, since_ms;     /* the period under review: [since, now] */
    size_t nhours;                /* hours shown (<= SG_BLOCK_HOURS), oldest first */
    int64_t first_hour;           /* unix hour of hourly[0] */
    uint64_t msgs[SG_BLOCK_HOURS], rcpts[SG_BLOCK_HOURS], refused[SG_BLOCK_HOURS];
    uint64_t period_msgs, period_rcpts;
    bool have_baseline;           /* traffic seen before the period: "new" means something */
    bool spike;
    int64_t spike_from_ms, spike_to_ms;
    uint64_t spike_msgs, baseline_per_hour;   /* median of the non-zero hours before */
    struct sg_block_seen *ips, *mailers;
    size_t nips, nmailers, new_ips, new_mailers;
    char top_domains[5][130];
    uint64_t top_domain_count[5];
    size_t ntop;
    uint64_t from_mismatch;
};

/* Facts from the store's evidence (sg_store_evidence_get) over the period
 * [since_ms, now_ms] (a since_ms after now_ms is the empty period [now,
 * now]; at most the last SG_BLOCK_HOURS hours are shown). 0 or -1 (no
 * report, out of memory: err says why). Free with sg_block_facts_free. */
int sg_block_analyse(const struct sg_evidence_report *ev, int64_t now_ms, int64_t since_ms,
                     struct sg_block_facts *f, char *err, size_t errlen);
void sg_block_facts_free(struct sg_block_facts *f);

/* A spark line of n values ("▁▂▃▄▅▆▇█", UTF-8) into out. */
void sg_block_spark(const uint64_t *v, size_t n, char *out, size_t size);

/* Was it really us? True when the traffic came from known IPs and mailers
 * at normal volume. */
bool sg_block_looks_legitimate(const struct sg_block_facts *f);

struct sg_block_ticket_info {
    int64_t number;               /* -1: none (legacy MX Plan) */
    long suspicious;              /* from the ticket's message, -1 unknown */
    bool french;                  /* answer in French */
};

/* The draft reply to the ticket: the three questions answered from the
 * facts. redirections: what the API shows (n may be 0); redir_readable
 * false when the offer exposes none. Returns malloc'd text. */
char *sg_block_draft(const struct sg_account *a, const struct sg_block_facts *f,
                     const struct sg_block_ticket_info *t, const char *const *redirections,
                     size_t nredir, bool redir_readable);

/* A strong password within every offer's rules (legacy MX Plan: 9 to 30
 * characters, ASCII, no space): `len` characters (12..30) from a CSPRNG,
 * with upper, lower, digit and symbol. 0 or -1. */
int sg_block_password(char *out, size_t len);

/* The SASL map itself: sg_saslmap.h (util/). */

/* One line of evidence for alerts, from the store's evidence over the last
 * 24 hours: "messages_24h=N recipients_24h=N new_ips=N new_mailers=N
 * spike=yes|no from_mismatch=N top_ip=X top_mailer=Y" (escaped). */
void sg_block_summary(struct sg_store *st, const char *account, int64_t now_ms,
                      char *buf, size_t size);

/* Run alert.command (if configured) for an event ("blocked", "unblocked",
 * "lockdown", "released", ...), at most once per account and event per
 * alert.interval across relays (a store lock). The facts go in the
 * environment (SG_EVENT, SG_ACCOUNT, SG_OFFER, SG_TICKET, SG_RELAY,
 * SG_SUMMARY), never in argv. Returns the command's exit status, -1 if it
 * could not run, -2 when nothing ran (no command, or rate-limited). */
int sg_block_alert(const struct sg_settings *s, struct sg_store *st, const char *account,
                   enum sg_offer offer, const char *event, int64_t ticket,
                   const char *summary, const char *relay);

/* --- with the API (sg_unblock.c) ---------------------------------------- */

struct sg_ovh;                    /* sg_ovh.h */

struct sg_trace_result;            /* sg_trace.h */

/* Everything the report and the unblock need about one account. */
struct sg_block_case {
    const struct sg_account *a;
    struct sg_account_state state;        /* the store's */
    bool api_ok;                          /* the API answered for the account */
    bool blocked;                         /* the API says blocked */
    int64_t ticket_number;                /* -1 none */
    char api_state[32];
    char api_error[700];                  /* why api_ok is false */
    bool have_ticket;
    int64_t ticket_id;
    char ticket_state[16], ticket_last_from[16];
    char *ticket_message;                 /* OVHcloud's first support message (malloc'd) */
    long suspicious;                      /* from that message, -1 unknown */
    char *header_sample;                  /* malloc'd or NULL */
    size_t support_since_reply;           /* support messages after our last reply */
    char *support_latest;                 /* the newest of those (malloc'd), or NULL */
    bool replied;                         /* the ticket has a message of ours */
    char **redir;
    size_t nredir;
    bool redir_readable;                  /* the offer exposes redirections */
    bool evidence_ok;
    struct sg_block_facts facts;
    bool french;                          /* the ticket is in French */
    struct sg_trace_result *trace;        /* the ticket's sample traced (sg_trace.h),
                                           * malloc'd; NULL: no ticket message */
};

/* Gather the case: API status, ticket and its messages, redirections, the
 * store's evidence since since_ms. c may be NULL (no API: evidence only).
 * Always fills what it can; 0, or -1 when the account itself could not be
 * read from the API (api_error says why). */
int sg_block_gather(struct sg_ovh *c, struct sg_store *st, const struct sg_account *a,
                    int64_t now_ms, int64_t since_ms, struct sg_block_case *bc);
void sg_block_case_free(struct sg_block_case *bc);

struct sg_ovh_status;               /* sg_ovh.h */
struct sg_ovh_ticket;

/* The daemon's auto_reply, on a block the watcher just applied: the
 * unblock step without the postmaster, with the draft as the reply (or a
 * new password in the SASL map, legacy MX Plan), through the watcher's
 * client c; status: what the watcher read; t: the ticket it found, or NULL
 * (then found here). The outcome is logged. */
void sg_block_auto_reply(struct sg_ovh *c, struct sg_store *st, const struct sg_settings *s,
                         const struct sg_account *a, const struct sg_ovh_status *status,
                         const struct sg_ovh_ticket *t, int64_t now_ms);

/* The draft reply for a gathered case (malloc'd): question 1 answered
 * from the trace of the ticket's sample when it concludes (passed through
 * a relay, or not ours), the volume-based text kept beside a "cannot
 * tell". */
char *sg_block_case_draft(const struct sg_block_case *bc);

/* Unblock: Exchange, Email Pro, MX Plan new: post text on the ticket;
 * legacy MX Plan: a new password (sg_block_rotate). Applies the workflow
 * event (phase "replied" / "password_changed", note with the time) and an audit
 * line. Safe to run twice: an account the API no longer reports blocked,
 * or a ticket whose last message is this same text, is left alone.
 * msg gets a sentence for the postmaster. 0 done (or nothing to do), -1 failed. */
int sg_block_unblock(struct sg_ovh *c, struct sg_store *st, const struct sg_settings *s,
                     struct sg_block_case *bc, const char *text, const char *who,
                     bool show_password, char *msg, size_t msglen);

/* A new strong password for the account through the API, written into its
 * sasl_map_file (then after_password_change is run) once OVHcloud's
 * password task reads "done"; never resent after a lost answer (the
 * account's tasks are read back). Without a sasl_map_file the password is
 * printed only when show_password (else refused before anything changes).
 * 0 done, -1 failed or refused (a task in error: the map keeps the old
 * password), 1 the task is still pending after a bounded wait (the
 * password is kept in sasl_map_file + SG_BLOCK_PENDING_SUFFIX, mode 0600,
 * for sg_block_pending). msg says what happened. */
int sg_block_rotate(struct sg_ovh *c, struct sg_store *st, const struct sg_settings *s,
                    const struct sg_account *a, const char *who, bool show_password,
                    char *msg, size_t msglen);
/* The same as the unblock step of legacy MX Plan: also moves the account's
 * phase to "password_changed" (the watcher then lifts the lockdown when the
 * API reads the account unblocked). */
int sg_block_rotate_unblock(struct sg_ovh *c, struct sg_store *st, const struct sg_settings *s,
                            const struct sg_account *a, const char *who, bool show_password,
                            char *msg, size_t msglen);

/* A password change waiting for its task: the file beside the SASL map. */
#define SG_BLOCK_PENDING_SUFFIX ".sendguard-pending"

/* Finish a pending password change (what `sendguardctl status` does): 0
 * none pending, 1 still pending, 2 settled (done: the map written; error:
 * the map kept, the account locked down; msg says which), -1 the task or
 * the file could not be read. */
int sg_block_pending(struct sg_ovh *c, struct sg_store *st, const struct sg_settings *s,
                     const struct sg_account *a, const char *who, char *msg, size_t msglen);

/* Audit: one LOG_NOTICE line "audit: who=<...> what=... account=<...> ...". */
void sg_block_audit(const char *who, const char *what, const char *account,
                    const char *detail);

/* The invoking user, for audit lines ("root", "alice (sudo as root)"). */
const char *sg_block_who(char *buf, size_t size);

#endif
