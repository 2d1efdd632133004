/*
 * ctl.h - the sub-commands of sendguardctl, one file each. Each takes the
 * loaded config (never NULL) and the arguments after its own name, and
 * returns the process exit code.
 */
#ifndef SG_CTL_H
#define SG_CTL_H

#include "sg_conf.h"
#include "sg_store.h"

/* The shared store for the commands that need it (Redis); NULL with a
 * message on stderr when the config has the memory store or it fails. */
sg_store_t *sg_ctl_store_open(const struct sg_settings *s, const char *what);

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

#endif
