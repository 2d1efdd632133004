/*
 * sg_run - run a configured command: an argv list, no shell, optional
 * data on its standard input and extra environment variables, bounded in
 * time. For release_command, after_password_change and alert.command.
 */
#ifndef SG_RUN_H
#define SG_RUN_H

#include <stddef.h>

/* Run argv (argv[n] need not be NULL; n entries are used). env: "KEY=value"
 * strings added to the inherited environment (may be NULL). input: written
 * to the child's stdin, then stdin is closed (NULL = /dev/null). The
 * child's stdout and stderr go to errbuf (first errsize-1 bytes, NUL-
 * terminated; may be NULL). Killed after timeout_s seconds.
 * Returns the exit status (0..255), 128+signal if killed, -1 if it could
 * not be started (errbuf says why). */
int sg_run(const char *const *argv, size_t n, const char *const *env, size_t nenv,
           const char *input, int timeout_s, char *errbuf, size_t errsize);

#endif
