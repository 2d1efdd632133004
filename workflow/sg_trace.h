/*
 * sg_trace - trace the header sample of an OVHcloud spam ticket to the
 * message, the machine and the login that sent it (issue 18).
 *
 * Three steps, each pure (no I/O, no clock, no store of its own):
 *   1. sg_trace_parse: the sample(s) quoted in a ticket message's body
 *      (folded, "> "-quoted, HTML-ish, CRLF, truncated, several in one body)
 *      -> Message-ID, Date, From, X-Mailer/User-Agent and each Received: hop.
 *   2. sg_trace_match: those against what the relays recorded, through a
 *      lookup the caller provides (struct sg_trace_lookup): by a Received: hop
 *      written by one of our relays (its hostname and the queue id in `id`),
 *      then by Message-ID. The records are the store's struct sg_ev_msg
 *      (policy/sg_store.h; only that type is used).
 *   3. A conclusion: PASSED, NOT_OURS or CANNOT_TELL (with why), rendered
 *      as text for `sendguardctl report`, as JSON for --json, and as the
 *      answer to the ticket's question 1 in English or French.
 *
 * Every string of a sample or a record is outside data: the text renderings
 * escape it (sg_log_escape_text), the JSON one keeps it valid UTF-8.
 */
#ifndef SG_TRACE_H
#define SG_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sg_store.h"             /* struct sg_ev_msg only */

/* Bounds of the parser: what is beyond them is ignored (and said so). */
#define SG_TRACE_INPUT_MAX   (256 * 1024)  /* bytes of a body read */
#define SG_TRACE_MAX_SAMPLES 8
#define SG_TRACE_MAX_HOPS    16
#define SG_TRACE_HOST        128    /* a host name, cut */
#define SG_TRACE_VALUE       256    /* a header value (Message-ID, From, mailer), cut */

struct sg_trace_hop {             /* one Received: header, top (newest) first */
    char from[SG_TRACE_HOST];     /* the name the client gave (HELO) */
    char from_rdns[SG_TRACE_HOST];/* the receiver's reverse-DNS name ("unknown") */
    char ip[48];                  /* the client's address, from [..] */
    char auth[SG_TRACE_HOST];     /* "(Authenticated sender: X)" */
    char by[SG_TRACE_HOST];       /* the host that wrote the hop */
    char with[24];                /* protocol: ESMTPSA, ESMTP, LMTP... */
    char id[64];                  /* its queue id */
    int64_t t_ms;                 /* the date after ';', -1 none or unreadable */
};

struct sg_trace_sample {
    char msgid[SG_TRACE_VALUE];   /* without the <>, "" none */
    char from[SG_TRACE_VALUE];
    char mailer[SG_TRACE_VALUE];  /* X-Mailer, else User-Agent */
    int64_t date_ms;              /* Date:, -1 none or unreadable */
    bool date_seen;               /* a Date: header was there (readable or not) */
    struct sg_trace_hop hops[SG_TRACE_MAX_HOPS];
    size_t nhops;
    bool hops_cut;                /* more than SG_TRACE_MAX_HOPS */
    bool truncated;               /* the sample ends cut ("...", a hop without date, the bound) */
};

struct sg_trace_samples {        /* only s[0..n-1] and their hops[0..nhops-1] are set */
    struct sg_trace_sample s[SG_TRACE_MAX_SAMPLES];
    size_t n;
    bool more;                    /* more samples than SG_TRACE_MAX_SAMPLES */
    size_t unreadable;            /* header blocks with neither a Message-ID nor a hop (not kept) */
    bool input_cut;               /* the body was longer than SG_TRACE_INPUT_MAX */
};

/* Parse the header sample(s) of a ticket message's body: `len` bytes of
 * `body` (no NUL needed, never read past). Returns a malloc'd result (n may
 * be 0: no sample found), NULL only when out of memory. Free with free(). */
struct sg_trace_samples *sg_trace_parse(const char *body, size_t len);

/* The date of a header (RFC 5322, tolerant: no weekday, 2-digit year,
 * missing seconds, named or missing zone, comments) in ms since the epoch,
 * or -1. Reads at most len bytes. */
int64_t sg_trace_date(const char *s, size_t len);

/* --- matching ------------------------------------------------------------ */

struct sg_trace_relay {           /* one of our relays */
    const char *host;             /* the name it writes in Received: "by HOST" (Postfix myhostname) */
    const char *relay;            /* its name in the records (sendguard's relay_name); NULL: host */
};

/* What the relays recorded, as the caller can look it up. The records
 * returned stay the caller's and must stay valid until sg_trace_match
 * returns; sg_trace_match copies what it keeps. */
struct sg_trace_lookup {
    void *ctx;
    /* The record of a Message-ID (without <>), or NULL. */
    const struct sg_ev_msg *(*by_msgid)(void *ctx, const char *msgid);
    /* The record of queue id `qid` on relay `relay` (a record name), or NULL. */
    const struct sg_ev_msg *(*by_qid)(void *ctx, const char *relay, const char *qid);
    /* Optional (NULL: none shown): the other messages of m's client IP or
     * login in the clock hour of m->t_ms, at most max into out; returns
     * how many there are in all (may be more than max). */
    size_t (*same_hour)(void *ctx, const struct sg_ev_msg *m, const struct sg_ev_msg **out,
                        size_t max);
    const struct sg_trace_relay *relays;
    size_t nrelays;
    int64_t oldest_ms;            /* start of the recorded period; -1 nothing recorded */
    int64_t now_ms;
};

/* A ready lookup over an array of records (the evidence report's recent
 * messages, a test's list): fills lk's callbacks and ctx (arr). The array
 * must outlive the lookup. oldest_ms is the oldest record's time. */
struct sg_trace_array {
    const struct sg_ev_msg *v;
    size_t n;
};
void sg_trace_lookup_array(struct sg_trace_lookup *lk, struct sg_trace_array *arr);

/* A lookup backed by the store's trace index (sg_store_trace_*;
 * sg_trace_store.c): relay_names are the relays' names as recorded
 * (relay_name); each is known in a Received: hop by a "by" host that is the
 * name, or the name and a domain (s: the samples, to find those hosts).
 * Fills lk; the handle keeps the records lk returns (free it after
 * sg_trace_match). NULL when out of memory. */
struct sg_trace_store;
struct sg_trace_store *sg_trace_store_new(sg_store_t *st, const char *account,
                                          const char *const *relay_names, size_t nnames,
                                          const struct sg_trace_samples *s, int64_t now_ms,
                                          struct sg_trace_lookup *lk);
/* A lookup failed (a store error): the store could not say. */
bool sg_trace_store_failed(const struct sg_trace_store *ts);
void sg_trace_store_free(struct sg_trace_store *ts);

/* --- the conclusion ------------------------------------------------------ */

enum sg_trace_verdict { SG_TRACE_PASSED, SG_TRACE_NOT_OURS, SG_TRACE_CANNOT_TELL };
enum sg_trace_why {
    SG_TRACE_WHY_NONE,            /* PASSED, NOT_OURS */
    SG_TRACE_WHY_NO_SAMPLE,       /* no header sample in the message */
    SG_TRACE_WHY_UNREADABLE,      /* neither a Message-ID nor a Received: hop */
    SG_TRACE_WHY_TRUNCATED,       /* cut before its Message-ID and Received: chain could tell */
    SG_TRACE_WHY_UNDATED,         /* no readable date: cannot say the record covers it */
    SG_TRACE_WHY_OLDER,           /* dated before the record starts */
    SG_TRACE_WHY_FUTURE,          /* dated more than a day after now */
    SG_TRACE_WHY_NO_RECORD,       /* nothing recorded for the account */
    SG_TRACE_WHY_NOT_RECORDED,    /* a hop of our relay, but no record of that queue id */
    SG_TRACE_WHY_NO_RELAYS,       /* no Message-ID, and no relay host names to know our hops by */
};
enum sg_trace_how { SG_TRACE_BY_HOP, SG_TRACE_BY_MSGID };

#define SG_TRACE_MAX_OTHERS 10

struct sg_trace_msg {             /* a record, copied (cut) */
    int64_t t_ms;
    char qid[64], ip[48], identity[SG_TRACE_HOST], mailer[SG_TRACE_VALUE];
    char msgid[SG_TRACE_VALUE], relay[SG_TRACE_HOST];
    uint64_t rcpts;
};

struct sg_trace_finding {         /* one sample's conclusion */
    enum sg_trace_verdict verdict;
    enum sg_trace_why why;
    enum sg_trace_how how;        /* PASSED */
    struct sg_trace_msg msg;      /* PASSED: the matched record */
    struct sg_trace_msg others[SG_TRACE_MAX_OTHERS];   /* PASSED: same client/login, same hour */
    size_t nothers, others_total;
    char msgid[SG_TRACE_VALUE];   /* the sample's, "" none */
    char hop_host[SG_TRACE_HOST]; /* NOT_RECORDED: our relay's hop */
    char hop_id[64];
    int64_t date_ms;              /* the sample's date used (-1 none) */
};

struct sg_trace_result {
    enum sg_trace_verdict verdict;    /* PASSED if a sample passed, else NOT_OURS if one
                                       * did not, else CANNOT_TELL */
    enum sg_trace_why why;            /* CANNOT_TELL: the first sample's reason */
    struct sg_trace_finding f[SG_TRACE_MAX_SAMPLES];   /* f[0..n-1], others[0..nothers-1] set */
    size_t n;
    size_t npassed, nnot_ours;
    int64_t oldest_ms, now_ms;
};

/* Conclude on parsed samples (s may be NULL or empty: CANNOT_TELL,
 * NO_SAMPLE). Never fails; out is filled completely. */
void sg_trace_match(const struct sg_trace_samples *s, const struct sg_trace_lookup *lk,
                    struct sg_trace_result *out);

const char *sg_trace_verdict_name(enum sg_trace_verdict v);    /* "passed", "not_ours", "cannot_tell" */
const char *sg_trace_why_name(enum sg_trace_why w);            /* "older", ... ("" none) */

/* The whole trace for the block workflow: parse `text` (a ticket message's
 * body or its header sample; NULL: none), match it through the store.
 * relay_names NULL: our relays are the relay names the account's recorded
 * messages carry. A
 * store error makes what is not PASSED a CANNOT_TELL (NO_RECORD). The
 * memory store records nothing: CANNOT_TELL, NO_RECORD. malloc'd (free()),
 * NULL when out of memory. */
struct sg_trace_result *sg_trace_run(sg_store_t *st, const char *account,
                                     const char *const *relay_names, size_t nnames,
                                     const char *text, int64_t now_ms);

/* --- renderings (malloc'd; NULL only when out of memory) ----------------- */

/* For the block alert's line and alert.command's SG_SUMMARY: one line of
 * key=value, every outside value escaped ("trace=passed relay=R qid=Q
 * ip=I login=L", "trace=not_ours", "trace=cannot_tell why=older"). */
char *sg_trace_token(const struct sg_trace_result *r, char *buf, size_t size);
/* For `sendguardctl report`: a few lines, every outside value escaped. */
char *sg_trace_text(const struct sg_trace_result *r, const char *account);
/* For --json: an object {verdict, why, samples:[...]} (new reference). */
json_t *sg_trace_json(const struct sg_trace_result *r);
/* The answer to the ticket's question 1 ("Are you the sender of the e-mail
 * in question?"), in the tone of sg_block_draft: the answer text alone,
 * without the question line; "[to be completed ...]" where the postmaster
 * must act. account: for the rotate-password advice (NULL: "ACCOUNT"). */
char *sg_trace_answer(const struct sg_trace_result *r, const char *account, bool french);

#endif
