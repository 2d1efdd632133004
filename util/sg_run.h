/*
 * sg_run - run a configured command: an argv list, no shell, optional
 * data on its standard input and extra environment variables, bounded in
 * time. For release_command, after_password_change and alert.command.
 *
 * The child gets a minimal environment (PATH, TZ, LANG, LC_ALL, LC_CTYPE,
 * LC_MESSAGES of ours when set, then the extra variables: never OVH_* nor
 * anything else of the caller's), descriptors 0-2 only (close_range), the
 * default signal dispositions, and a process group of its own: at the
 * deadline the whole group is killed (SIGKILL), whether or not it closed
 * its output.
 */
#ifndef SG_RUN_H
#define SG_RUN_H

#include <stddef.h>

/* Run argv (argv[n] need not be NULL; n entries are used). env: "KEY=value"
 * strings added to the minimal environment (may be NULL). input: written
 * to the child's stdin, then stdin is closed (NULL = /dev/null). The
 * child's stdout and stderr go to errbuf (first errsize-1 bytes, NUL-
 * terminated; may be NULL). Its process group is killed after timeout_s
 * seconds; sg_run returns at most a few seconds after the deadline even if
 * the child cannot be reaped.
 * Returns the exit status (0..255), 128+signal if killed, -1 if it could
 * not be started (errbuf says why). */
/* write(2) until all n bytes are written (EINTR retried). 0, or -1. */
int sg_write_all(int fd, const void *buf, size_t n);

/* Read fd to its end into a NUL-terminated malloc'd buffer (*len bytes),
 * at most about max bytes (then NULL, errno EFBIG); buffers given up while
 * growing are wiped (they may hold a password). NULL on error. */
char *sg_read_fd(int fd, size_t max, size_t *len);

int sg_run(const char *const *argv, size_t n, const char *const *env, size_t nenv,
           const char *input, int timeout_s, char *errbuf, size_t errsize);

/* The variables a child keeps from our environment (NULL-terminated names). */
extern const char *const sg_run_kept_env[];

#endif
