/*
 * sg_topk - a bounded "top values" counter (Space-Saving, Metwally et al.):
 * at most SG_TOPK_N values; a newcomer when full replaces the smallest and
 * inherits its count + 1, so a value seen more than total/N times is never
 * missed and every count is an upper bound; n - err is a lower bound (what
 * was certainly seen: err is what the value inherited). Private to policy/.
 * Not thread-safe: the caller holds its own lock.
 */
#ifndef SG_TOPK_H
#define SG_TOPK_H

#include <stddef.h>
#include <stdint.h>

#define SG_TOPK_N 32
#define SG_TOPK_LEN 96            /* bytes kept of a value */

struct sg_topk {
    size_t len;
    uint64_t n[SG_TOPK_N];
    uint64_t err[SG_TOPK_N];      /* count inherited on replacement */
    char v[SG_TOPK_N][SG_TOPK_LEN];
};

void sg_topk_add(struct sg_topk *t, const char *value, uint64_t by);
/* Index of the largest count, or -1 when empty. */
int sg_topk_max(const struct sg_topk *t);

#endif
