/*
 * sg_saslmap - the Postfix SASL password map source file of an account
 * (smtp_sasl_password_maps, "KEY user:password" lines): checked before a
 * password change, rewritten after it.
 *
 * The map must be the file itself: a symbolic link, or a file with more
 * than one hard link, is refused (by the check, before any API call, and
 * by the rewrite: O_NOFOLLOW). A rewrite
 * holds flock(LOCK_EX) on the map (re-taken when another writer replaced
 * the file meanwhile), writes a temporary file in the same directory with
 * the map's mode, owner and group, fsyncs it, renames it over the map and
 * fsyncs the directory. Two rewrites at once both keep their password.
 */
#ifndef SG_SASLMAP_H
#define SG_SASLMAP_H

#include <stddef.h>

/* Before the API is called: path is a regular file (not a symlink), has a
 * line for user, and this process can replace it keeping its owner, group
 * and mode (a probe file is created, chowned and removed in its
 * directory). 0, or -1 with err saying why and what to do. */
int sg_saslmap_check(const char *path, const char *user, char *err, size_t errlen);

/* Every line whose user is `user` (case-insensitive) gets `password`.
 * Returns the number of lines changed (0 = no line for user: nothing
 * written) or -1 (err says why, never with a password). */
int sg_saslmap_rewrite(const char *path, const char *user, const char *password,
                       char *err, size_t errlen);

#endif
