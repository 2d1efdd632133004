/*
 * sg_daemon_hooks - what the daemon starts beside the milter (the OVH
 * watcher): started once the socket is up and privileges are dropped,
 * told about reloads, stopped before exit.
 */
#ifndef SG_DAEMON_HOOKS_H
#define SG_DAEMON_HOOKS_H

#include "sg_store.h"

void sg_daemon_started(sg_store_t *store);
void sg_daemon_reloaded(void);
void sg_daemon_stopping(void);

#endif
