/*
 * sg_milter - the libmilter callbacks and the process-wide runtime they
 * share with main(): current config, stores, relay name.
 */
#ifndef SG_MILTER_H
#define SG_MILTER_H

#include <stdbool.h>

#include <libmilter/mfapi.h>

#include "sg_conf.h"
#include "sg_store.h"

struct sg_runtime {
    sg_store_t *primary;          /* memory or redis */
    sg_store_t *fallback;         /* memory: used while the primary is down */
    char relay[256];
    bool tcp;                     /* listening on inet: (read once at start) */
};

extern struct sg_runtime sg_rt;

/* The filter description to hand to smfi_register. */
extern struct smfiDesc sg_milter_desc;

#endif
