/*
 * sg_topk.c - Space-Saving top values (see sg_topk.h). Linear scans over
 * SG_TOPK_N entries: a few hundred byte compares per call.
 */
#include "sg_topk.h"

#include <stdio.h>
#include <string.h>

void sg_topk_add(struct sg_topk *t, const char *value, uint64_t by)
{
    char v[SG_TOPK_LEN];
    size_t low = 0;

    snprintf(v, sizeof(v), "%s", value ? value : "");
    for (size_t i = 0; i < t->len; i++) {
        if (strcmp(t->v[i], v) == 0) {
            t->n[i] += by;
            return;
        }
        if (t->n[i] < t->n[low])
            low = i;
    }
    if (t->len < SG_TOPK_N) {
        memcpy(t->v[t->len], v, sizeof(v));
        t->err[t->len] = 0;
        t->n[t->len++] = by;
        return;
    }
    memcpy(t->v[low], v, sizeof(v));
    t->err[low] = t->n[low];
    t->n[low] += by;
}

int sg_topk_max(const struct sg_topk *t)
{
    int best = -1;

    for (size_t i = 0; i < t->len; i++)
        if (best < 0 || t->n[i] > t->n[best])
            best = (int)i;
    return best;
}
