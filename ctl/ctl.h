/*
 * ctl.h - the sub-commands of sendguardctl, one file each. Each takes the
 * loaded config (never NULL) and the arguments after its own name, and
 * returns the process exit code.
 */
#ifndef SG_CTL_H
#define SG_CTL_H

#include <stdbool.h>
#include <sys/types.h>
#include <stdio.h>

#include "sg_conf.h"
#include "sg_store.h"

/* The shared store for the commands that need it (Redis); NULL with a
 * message on stderr when the config has the memory store or it fails. */
sg_store_t *sg_ctl_store_open(const struct sg_settings *s, const char *what);

/* ctl_user.c: the invoking user's files under sudo (the sudoedit model). */
bool sg_ctl_sudo_user(uid_t *uid, gid_t *gid);      /* root through sudo? */
char *sg_ctl_read_user_file(const char *path);      /* read as SUDO_UID; NULL on error */
char *sg_ctl_edit_as_user(const char *draft);       /* $EDITOR as SUDO_UID; NULL on error */

int sg_ctl_release_helper(sg_conf_t *conf, int argc, char **argv);  /* ctl_release.c */
int sg_ctl_check(sg_conf_t *conf, int argc, char **argv);     /* ctl_check.c */
int sg_ctl_limits(sg_conf_t *conf, int argc, char **argv);    /* ctl_check.c */
int sg_ctl_status(sg_conf_t *conf, int argc, char **argv);    /* ctl_status.c */
int sg_ctl_reset(sg_conf_t *conf, int argc, char **argv);     /* ctl_status.c */
int sg_ctl_ovh(sg_conf_t *conf, int argc, char **argv);       /* ctl_ovh.c */
int sg_ctl_lockdown(sg_conf_t *conf, int argc, char **argv);  /* ctl_block.c */
int sg_ctl_report(sg_conf_t *conf, int argc, char **argv);    /* ctl_block.c */
int sg_ctl_report_flood(sg_conf_t *conf, int argc, char **argv); /* ctl_flood.c */
int sg_ctl_unblock(sg_conf_t *conf, int argc, char **argv);   /* ctl_block.c */
int sg_ctl_rotate(sg_conf_t *conf, int argc, char **argv);    /* ctl_block.c */
int sg_ctl_suggest(sg_conf_t *conf, int argc, char **argv);   /* ctl_suggest.c */
/* An account's evidence as the JSON object `status` prints ("account",
 * "last_seen", "by_ip", "by_mailer", "by_domain", "from_mismatch",
 * "from_mismatch_recent", "hourly", "recent"; see sendguardctl(8)); NULL
 * out of memory. (ctl_evidence.c) */
struct json_t;
struct json_t *sg_ctl_evidence_json(const char *account, const struct sg_evidence_report *r);
/* Finish the pending password changes (of `only`, or of every account):
 * the task done, the SASL map written; a line on `out` for each (errors on
 * stderr). 0, or 1 when one failed. (ctl_block.c; `status` calls it first.) */
int sg_ctl_password_pending(sg_conf_t *conf, sg_store_t *store, const char *only, FILE *out);

#endif
