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

/* What smfi_register() is given. */
extern struct smfiDesc sg_milter_desc;

/* After smfi_main() returned: wait up to max_s seconds for decisions still
 * in progress. true when none is left. */
bool sg_milter_wait_idle(int max_s);

#endif
