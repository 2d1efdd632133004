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

/* A message of account was held (its queue id recorded by the decision):
 * if the config does not name the account (a manual lockdown of an
 * identity), the release thread follows it too while this process runs.
 * No store call: memory only, cheap enough for the milter's threads. */
void sg_jobs_follow(const char *account);

#endif
