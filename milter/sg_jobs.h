/*
 * sg_jobs - what the daemon runs beside the milter: the OVHcloud watcher
 * (one relay at a time polls the API) and, on every relay, the release of
 * the mail it held for an account once that account is unblocked.
 */
#ifndef SG_JOBS_H
#define SG_JOBS_H

#include "sg_store.h"

/* primary: the configured store; fallback: the in-process memory store
 * (holds recorded while the primary was down). relay: this relay's name. */
void sg_jobs_start(sg_store_t *primary, sg_store_t *fallback, const char *relay);
void sg_jobs_reloaded(void);
void sg_jobs_stop(void);

/* Record a message held because its account is locked down. */
void sg_jobs_held(const char *account, const char *qid);

#endif
