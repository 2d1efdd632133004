/*
 * sg_daemon_hooks.c - background work beside the milter. For now: none;
 * the OVHcloud watcher is wired here.
 */
#include "sg_daemon_hooks.h"

void sg_daemon_started(sg_store_t *store)
{
    (void)store;
}

void sg_daemon_reloaded(void)
{
}

void sg_daemon_stopping(void)
{
}
