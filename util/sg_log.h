/*
 * sg_log - the one place sendguard writes log lines.
 *
 * Lines go to syslog and, when asked (-f), to stderr. Values that come from
 * the outside (addresses, headers, API replies) must go through
 * sg_log_escape() first, so no byte of theirs can break or forge a line.
 * Secrets never reach this module.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

void sg_log_open(const char *ident, int facility, bool to_stderr);
void sg_log_set_facility(int facility);
void sg_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copy src (at most srclen bytes) into dst, NUL-terminated, replacing every
 * byte outside printable ASCII, and the characters '\\', '"', '<', '>' and
 * '=', by \xHH. Never writes more than dstsize bytes; a cut value ends in
 * "...". Returns dst. */
char *sg_log_escape(char *dst, size_t dstsize, const char *src, size_t srclen);

/* For text shown on a terminal (ticket messages, mailer names): like
 * sg_log_escape but keeps spaces, quotes and bytes >= 0x80 (UTF-8), and
 * escapes only control characters (a tab becomes a space). */
char *sg_log_escape_text(char *dst, size_t dstsize, const char *src, size_t srclen);

/* Convenience for NUL-terminated input; NULL prints as "-". */
char *sg_log_esc(char *dst, size_t dstsize, const char *src);

/* Returns true at most once per `interval_s` seconds for a given *last
 * stamp: for "logged once per outage"-style rate limiting. Thread-safe. */
bool sg_log_ratelimit(long *last, long interval_s);

/* Parse a syslog facility name ("mail", "local0".."local7", "daemon",
 * "user"); -1 when unknown. */
int sg_log_facility(const char *name);

#endif
