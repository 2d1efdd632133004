/*
 * sg_milter - the milter handlers and the process-wide runtime they
 * share with main(): current config, stores, relay name.
 */
#ifndef SG_MILTER_H
#define SG_MILTER_H

#include <stdbool.h>

#include "sg_mproto.h"

#include "sg_conf.h"
#include "sg_store.h"

struct sg_runtime {
    sg_store_t *primary;          /* memory or redis */
    sg_store_t *fallback;         /* memory: used while the primary is down */
    char relay[256];
    bool tcp;                     /* listening on inet: (read once at start) */
};

extern struct sg_runtime sg_rt;

/* The handlers to hand to sg_mproto_run. */
extern const struct sg_mp_handlers sg_milter_handlers;

#endif
