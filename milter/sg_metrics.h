/*
 * sg_metrics - the daemon's counters, and a thread that writes them as a
 * Prometheus text exposition file for node_exporter's textfile collector
 * (metrics.textfile, every metrics.interval). No HTTP listener.
 */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include <stdbool.h>

#include "sg_policy.h"
#include "sg_store.h"

/* One decision: action, limit, observe, store error, times in ms (the whole
 * decision, and the store call in it; store_ms < 0 when no store answered). */
void sg_metrics_decision(const struct sg_verdict *v, double decision_ms, double store_ms);

/* A configuration reload and whether it was taken. */
void sg_metrics_reload(bool ok);

/* An OVHcloud API call: "ok", "client_error" (4xx), "server_error" (5xx,
 * 429) or "failed" (no answer). */
void sg_metrics_api_call(const char *result);

/* Start the writer when the current configuration asks for it (and again
 * after a reload that changed metrics.*); stop it at exit. primary: the
 * configured store (block state, held messages, usage of the accounts). */
void sg_metrics_start(sg_store_t *primary, const char *relay);
void sg_metrics_reloaded(void);
void sg_metrics_stop(void);

#endif
