/*
 * sg_store_backend.h - private: the table of functions a store backend
 * fills in, and the memory backend's constructor. Only policy/ sees this.
 */
#ifndef SG_STORE_BACKEND_H
#define SG_STORE_BACKEND_H

#include "sg_store.h"

struct sg_store_ops {
    const char *name;
    bool evidence;                /* decide() records struct sg_evidence */
    int (*decide)(void *be, const char *account, const struct sg_limit *limits,
                  size_t nlimits, const struct sg_charge *charge,
                  const struct sg_evidence *ev, bool charge_refused,
                  struct sg_store_result *out);
    int (*usage)(void *be, const char *account, const struct sg_limit *limits,
                 size_t nlimits, struct sg_usage *usage);
    int (*reset)(void *be, const char *account);
    int (*state_get)(void *be, const char *account, struct sg_account_state *out);
    /* 1 applied, 0 lost (cur filled, pre-set to the missing state), -1 */
    int (*state_cas)(void *be, const char *account, uint64_t expect_version,
                     const struct sg_account_state *next, struct sg_account_state *cur);
    int (*lock)(void *be, const char *name, const char *owner, uint64_t ttl_ms);
    /* out is empty (last_seen_ms -1) on entry; NULL: records none */
    int (*evidence_get)(void *be, const char *account, struct sg_evidence_report *out);
    int (*held_add)(void *be, const char *account, const char *relay, const char *qid);
    int (*held_list)(void *be, const char *account, const char *relay, char ***qids, size_t *n);
    int (*held_del)(void *be, const char *account, const char *relay,
                    const char *const *qids, size_t n);
    int (*flood_json)(void *be, unsigned hours, char **json_out);   /* NULL: none */
    /* the trace index (sg_store_trace_*); NULL: records none */
    int (*trace_by_msgid)(void *be, const char *account, const char *msgid,
                          struct sg_ev_msg *out);
    int (*trace_by_qid)(void *be, const char *account, const char *relay, const char *qid,
                        struct sg_ev_msg *out);
    int (*trace_same_hour)(void *be, const char *account, const struct sg_ev_msg *m,
                           struct sg_ev_msg **v, size_t *n);
    int (*trace_oldest)(void *be, const char *account, int64_t *oldest_ms);
    void (*close)(void *be);
};

/* Copy src into dst (dstsize > 0) as valid UTF-8 without control
 * characters: anything else becomes '?'. Cut at a character boundary.
 * Returns the length written. (sg_store.c; every outside string a backend
 * stores or reports goes through it.) */
size_t sg_store_utf8_clean(char *dst, size_t dstsize, const char *src, size_t srclen);

struct sg_store_memory;
struct sg_store_memory *sg_store_memory_open(sg_clock_fn clock, void *clock_ctx);
extern const struct sg_store_ops sg_store_memory_ops;

#endif
