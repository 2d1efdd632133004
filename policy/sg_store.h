/*
 * sg_store - where usage counters, account state and evidence live.
 *
 * Two backends behind one interface: "memory" (in-process, one relay) and
 * "redis" (shared by every relay; one Lua script call per message).
 * A backend decides and commits atomically: every limit is checked and the
 * message is charged only if all pass (or, with charge_refused, always).
 * Counters are changed only inside the backend, never read-modify-written
 * by callers.
 *
 * The limit algorithm, in both backends, is a bucketed sliding window that
 * counts its oldest bucket whole: with B = 60 buckets of width w = T/60,
 * the usage checked at time t is the sum of the buckets that intersect
 * [t-T, t], a superset of what was accepted in that window, so no sliding
 * window of length T ever holds more than the cap. Distinct recipients
 * are an exact set of 64-bit recipient hashes with their last-seen time.
 */
#ifndef SG_STORE_H
#define SG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sg_conf.h"

#define SG_STORE_MAX_LIMITS 32
#define SG_STORE_BUCKETS 60

typedef struct sg_store sg_store_t;

/* What one message costs. units[SG_UNIT_DISTINCT] is ignored: distinct
 * recipients come from rcpt_hashes (deduplicated by the caller). */
struct sg_charge {
    uint64_t units[SG_UNIT_COUNT];
    const uint64_t *rcpt_hashes;
    size_t nrcpt_hashes;
    /* An implicit identity (no configured account matched): it costs what
     * it uses (Redis: one hash, no evidence keys, counted in the relay-wide
     * flood summary instead; memory: sparse buckets, and past
     * implicit_max identities a new one is charged to the shared overflow
     * account). implicit_max 0 = the memory store's own default. */
    bool implicit;
    size_t implicit_max;
};

/* Who sent what, recorded with each decided message (Redis backend; the
 * memory backend keeps only a held queue id). Any pointer may be NULL. */
struct sg_evidence {
    const char *qid;
    const char *client_ip;
    const char *identity;
    const char *mailer;           /* User-Agent or X-Mailer */
    const char *msgid;
    const char *from_header_domain;
    bool from_mismatch;           /* From: domain is not the account's */
    const char *const *rcpt_domains; /* distinct, lower-cased */
    size_t nrcpt_domains;
    const char *relay;            /* this relay's name */
    /* The message is held (quarantined) if the account is locked down: then
     * the same call records qid in the relay's held list, as
     * sg_store_held_add would (result.held). The caller sets it only for a
     * valid queue id (sg_release_qid_valid). */
    bool hold_on_lockdown;
};

enum sg_store_status {
    SG_STORE_OK = 0,              /* all limits pass; charged */
    SG_STORE_OVER,                /* limits[limit] refused on unit */
    SG_STORE_ERROR,               /* backend unavailable: caller falls back */
};

struct sg_store_result {
    enum sg_store_status status;
    size_t limit;                 /* tripped limit (OVER), else the fullest one */
    enum sg_unit unit;
    uint64_t used;                /* usage in the window (before charging, if OVER) */
    uint64_t cap;
    uint64_t retry_after_ms;      /* OVER: when the charge would fit again */
    uint32_t warn_mask;           /* bit i: limit i crossed its warn_at, first time this window */
    bool lockdown;                /* account state says blocked: apply on_block */
    bool new_identity;            /* implicit: first message of this identity (no state) */
    bool overflow;                /* implicit: charged to the overflow account (memory bound) */
    bool held;                    /* lockdown + ev->hold_on_lockdown: ev->qid recorded */
};

/* The account new implicit identities share once the memory store holds
 * store.memory.max_identities of them. */
#define SG_STORE_OVERFLOW_ACCOUNT "(overflow)"

/* Usage of one limit, per unit, for status output. */
struct sg_usage {
    uint64_t used[SG_UNIT_COUNT];
};

/* The shared state of an account (block workflow). The workflow module
 * (workflow/sg_workflow.h) owns what phase means; the store keeps it and
 * applies a change only atomically (sg_store_state_cas). */
struct sg_account_state {
    uint64_t version;             /* bumped by each applied change; 0 = never written */
    bool blocked;                 /* lockdown on */
    int64_t ticket;               /* spamTicketNumber, -1 when none */
    int64_t since_ms;             /* when the current state began */
    int64_t checked_ms;           /* last API check, 0 = never */
    char state[32];               /* API "state" field, or "" */
    char phase[32];               /* workflow: ok, blocked, replied, unblocked */
    char note[256];               /* free text: reply time, who locked down... */
};

/* A clock in milliseconds since the epoch (tests inject their own). */
typedef uint64_t (*sg_clock_fn)(void *ctx);
uint64_t sg_clock_realtime_ms(void *ctx);

sg_store_t *sg_store_memory_new(sg_clock_fn clock, void *clock_ctx);
/* NULL only on bad settings (err filled); an unreachable Redis is not an
 * error here: decide() then returns SG_STORE_ERROR until it comes back.
 * clock NULL (the daemon): time is redis TIME, one clock for all relays;
 * else each script call is told clock(clock_ctx) as its "now" (tests). */
sg_store_t *sg_store_redis_new(const struct sg_redis_settings *rs, sg_clock_fn clock,
                               void *clock_ctx, char *err, size_t errlen);
void sg_store_free(sg_store_t *st);
const char *sg_store_name(const sg_store_t *st);
/* Does decide() record the evidence (Redis), or ignore it (memory)? */
bool sg_store_records_evidence(const sg_store_t *st);

/* The whole decision for one message of one account, atomically. */
/* The memory store's default bound on implicit identities, from the
 * machine's physical memory (see sendguard.conf(5)). */
size_t sg_store_memory_default_max(void);

/* The relay-wide summary of implicit identities (Redis only) for the last
 * `hours` hours, as a malloc'd JSON object (free() it): "hours" [{"hour":
 * unix hour, "messages", "refused", "identities" (estimated distinct)}],
 * "identities", "ips", "mailers": [{"value", "count"}] (top, counts are
 * upper bounds), "top_k". 0, or -1 (memory store, or a store error). */
int sg_store_flood_json(sg_store_t *st, unsigned hours, char **json_out);

int sg_store_decide(sg_store_t *st, const char *account,
                    const struct sg_limit *limits, size_t nlimits,
                    const struct sg_charge *charge,
                    const struct sg_evidence *ev, bool charge_refused,
                    struct sg_store_result *out);

/* sg_store_decide, and for an implicit identity, count it for the flood
 * log line ("flood: N new implicit identities in the last 10m (top ip=...,
 * mailer=...)", warning, once per 10 minutes when N >= flood_threshold;
 * 0 = never). */
int sg_store_decide_flood(sg_store_t *st, const char *account,
                          const struct sg_limit *limits, size_t nlimits,
                          const struct sg_charge *charge,
                          const struct sg_evidence *ev, bool charge_refused,
                          unsigned flood_threshold, struct sg_store_result *out);
/* The flood log's counter itself (tests drive it with their own clock). */
void sg_store_flood_note(uint64_t now_ms, bool fresh, bool overflow, const char *ip,
                         const char *mailer, unsigned threshold);

/* Current usage of each limit (usage[i] for limits[i]); 0 or -1. */
int sg_store_usage(sg_store_t *st, const char *account,
                   const struct sg_limit *limits, size_t nlimits,
                   struct sg_usage *usage);

/* Forget an account's counters (not its state). 0 or -1. */
int sg_store_reset(sg_store_t *st, const char *account);

/* Account state; a missing state reads as ok (blocked=false, ticket=-1). */
int sg_store_state_get(sg_store_t *st, const char *account, struct sg_account_state *out);
/* Compare and set: write `next` (its version field is ignored) only if the
 * stored state's version is still expect_version (0: nothing stored yet,
 * or a state written before versions existed). 1: applied, the stored
 * version is now expect_version + 1 (also set in *cur when cur is not
 * NULL); 0: lost the race, nothing written, *cur (if not NULL) holds the
 * state that won, to re-decide from; -1: store error (outcome unknown for
 * Redis: re-read). */
int sg_store_state_cas(sg_store_t *st, const char *account, uint64_t expect_version,
                       const struct sg_account_state *next, struct sg_account_state *cur);

/* Redis-era additions */

/* A named lease among relays (e.g. which one polls the OVH API): 1 when
 * acquired, or renewed because owner already held it (its ttl starts
 * again); 0 when another owner holds it; -1 on a store error. ttl_ms = 0
 * releases it if owner holds it (1 released or already free, 0 held by
 * another). owner must not be empty. */
int sg_store_lock(sg_store_t *st, const char *name, const char *owner, uint64_t ttl_ms);

/* The evidence recorded for an account, typed: the client IPs, mailers and
 * recipient domains seen, the From: mismatches, the hourly counts (49
 * hours), the recent messages. Times in ms since the epoch. Strings are
 * malloc'd, never NULL ("" when the store had nothing), already
 * UTF-8-clean; free with sg_evidence_report_free. Every reader in the
 * process uses this report; JSON is made only by `sendguardctl status`
 * (ctl/ctl_evidence.c). */
struct sg_ev_seen {               /* a client IP, a mailer or a recipient domain */
    char *value;
    uint64_t count;
    int64_t first_seen_ms;        /* -1 unknown (always for domains) */
};
struct sg_ev_hour {
    int64_t hour;                 /* unix time / 3600 */
    uint64_t messages, recipients, refused;
};
struct sg_ev_mismatch {           /* a From: domain that is not the account's */
    int64_t t_ms;
    char *qid, *identity, *from_domain, *ip;
};
enum sg_ev_action { SG_EV_OK, SG_EV_OVER, SG_EV_LOCKDOWN };
struct sg_ev_msg {                /* one decided message */
    int64_t t_ms;
    char *qid, *ip, *identity, *msgid, *mailer, *relay;
    uint64_t rcpts, size;
    enum sg_ev_action action;
    bool charged;
};
struct sg_evidence_report {
    int64_t last_seen_ms;         /* -1 never */
    struct sg_ev_seen *ips, *mailers, *domains;
    size_t nips, nmailers, ndomains;
    uint64_t from_mismatch;
    struct sg_ev_mismatch *mismatches;     /* newest first */
    size_t nmismatches;
    struct sg_ev_hour *hours;     /* the hours with traffic, oldest first */
    size_t nhours;
    struct sg_ev_msg *recent;     /* newest first */
    size_t nrecent;
};
/* 0 (an account with no record gives an empty report, last_seen_ms -1), or
 * -1 on a store error. The memory store records no evidence: an empty
 * report. */
int sg_store_evidence_get(sg_store_t *st, const char *account, struct sg_evidence_report *out);
void sg_evidence_report_free(struct sg_evidence_report *r);
/* Free one record's strings (the struct itself is the caller's). */
void sg_ev_msg_clear(struct sg_ev_msg *m);

/* The trace index (issue 18): every message an account sent through any
 * relay in the last 7 days (store.redis.trace_max at most, 50,000 by
 * default; the oldest go first), written by decide in its own round trip,
 * so that a ticket's header sample can be traced to the message.
 * The memory store records none: each lookup says "nothing recorded"
 * (0, and oldest -1), and sg_trace then concludes "cannot tell".
 * by_msgid: the Message-ID as in a header (its content inside <...>,
 * spaces removed, is what counts: sg_trace's rule). by_qid: relay is
 * the relay's name as recorded (relay_name), qid the queue id Postfix
 * gave. Both: 1 found (out filled, sg_ev_msg_clear it), 0 none, -1 store
 * error. */
int sg_store_trace_by_msgid(sg_store_t *st, const char *account, const char *msgid,
                            struct sg_ev_msg *out);
int sg_store_trace_by_qid(sg_store_t *st, const char *account, const char *relay,
                          const char *qid, struct sg_ev_msg *out);
/* The other messages of m's client IP or login in the clock hour of
 * m->t_ms (at most 2,000 read), m itself left out: *v malloc'd (free with
 * sg_ev_msgv_free), *n of them. 0 or -1. */
int sg_store_trace_same_hour(sg_store_t *st, const char *account, const struct sg_ev_msg *m,
                             struct sg_ev_msg **v, size_t *n);
void sg_ev_msgv_free(struct sg_ev_msg *v, size_t n);
/* Where the account's index starts (its oldest record), -1 when it holds
 * nothing. 0 or -1. */
int sg_store_trace_oldest(sg_store_t *st, const char *account, int64_t *oldest_ms);

/* Mail held because the account is locked down, by relay: the queue ids a
 * relay must release (release_command) once the account is unblocked.
 * list returns a malloc'd array of malloc'd strings (sg_store_strv_free).
 * Kept 30 days at most. 0 or -1. */
int sg_store_held_add(sg_store_t *st, const char *account, const char *relay, const char *qid);
int sg_store_held_list(sg_store_t *st, const char *account, const char *relay,
                       char ***qids, size_t *n);
int sg_store_held_del(sg_store_t *st, const char *account, const char *relay,
                      const char *const *qids, size_t n);
void sg_store_strv_free(char **v, size_t n);

#endif
