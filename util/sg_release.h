/*
 * sg_release - the one privileged path of sendguard: releasing held mail.
 *
 * The daemon runs unprivileged; `postsuper -H` (Postfix) and `sendmail
 * -qQ -Q` (Sendmail) need root. So the daemon hands queue ids, one per
 * line, to a root helper (`sendguardctl release-helper`, socket-activated
 * by systemd or listening by itself) over a unix socket; the helper
 * accepts nothing but queue ids, runs the release_command of its own
 * root-owned configuration with them on its standard input, and answers
 * one status line ("OK N" or "ERR why").
 */
#ifndef SG_RELEASE_H
#define SG_RELEASE_H

#include <stdbool.h>
#include <stddef.h>

#define SG_RELEASE_MAX_IDS 10000

/* A Postfix or Sendmail queue id, nothing else: Postfix short ids
 * [0-9A-F]{6,}, long ids [0-9A-Za-z]{10,}, Sendmail [0-9A-Za-z]{8,20};
 * at most 32 characters. No space, newline, '-' or anything a command
 * could read as an option or a separator. */
bool sg_release_qid_valid(const char *qid);

/* Daemon side: send ids[0..n) (all valid) to the helper listening on the
 * unix socket path, wait up to timeout_s for its status line. 0 when the
 * helper answered OK; -1 otherwise, out says why (helper's line or error). */
int sg_release_ask(const char *path, const char *const *ids, size_t n, int timeout_s,
                   char *out, size_t outlen);

/* Helper side: serve one connection on fds in/out: read queue id lines
 * until EOF (bounded in number, size and time), refuse the whole request
 * when a line is not a queue id (logged), else run argv (release_command)
 * with the ids on its stdin; write the status line. peer: for the log
 * ("uid=N" or "-"). Returns 0 when released, -1 otherwise. */
int sg_release_serve(int in, int out, const char *const *argv, size_t nargv, const char *peer);

#endif
