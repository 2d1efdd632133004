/*
 * nullmilter.c - a do-nothing libmilter milter, the baseline sendguard is
 * compared with in the relay benchmark (bench/run).
 *
 *   cc -O2 -std=c11 -pthread -o nullmilter nullmilter.c -lmilter
 *   nullmilter -s unix:/path|inet:PORT@IP [-n [-d] | -g]
 *
 * Without -n it is the naive milter: every callback registered, no
 * negotiation, so the MTA sends every step and waits for every reply.
 * With -n it negotiates away every step but end of message (SMFIP_NO*) and
 * every reply but end of message's (SMFIP_NR_*), and asks for no macros:
 * the least any libmilter milter that decides at end of message can cost.
 * -d (with -n) keeps the DATA step, answered: on TCP that reply acknowledges
 * what Postfix's smtpd wrote before its cleanup writes the content, which
 * avoids the Nagle/delayed-ACK stall (see bench/README.md).
 * -g negotiates exactly what sendguard does (the quarantine action; HELO,
 * DATA, end of headers, unknown commands and the body skipped; CONNECT,
 * MAIL, RCPT and headers sent with no reply; {auth_authen} and i at MAIL, i
 * at end of message): the floor for sendguard itself.
 * Either way it accepts everything (SMFIS_CONTINUE).
 */
#define _GNU_SOURCE
#include <libmilter/mfapi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int optimal, answer_data, as_sendguard;

static sfsistat cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                             unsigned long f2, unsigned long f3, unsigned long *pf0,
                             unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    unsigned long want = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT |
                         SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN |
                         SMFIP_NODATA | SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL |
                         SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH |
                         SMFIP_NR_BODY | SMFIP_NR_HDR;

    (void)f2;
    (void)f3;
    if (as_sendguard) {
        *pf0 = f0 & SMFIF_QUARANTINE;
        *pf1 = f1 & (SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NOBODY |
                     SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                     SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY | SMFIP_NR_DATA | SMFIP_NR_UNKN);
        *pf2 = *pf3 = 0;
        if (f0 & SMFIF_SETSYMLIST) {
            smfi_setsymlist(ctx, SMFIM_ENVFROM, "{auth_authen} i");
            smfi_setsymlist(ctx, SMFIM_EOM, "i");
        }
        return SMFIS_CONTINUE;
    }
    if (!optimal)
        return SMFIS_ALL_OPTS;
    if (answer_data)
        want &= ~(unsigned long)(SMFIP_NODATA | SMFIP_NR_DATA);
    *pf0 = 0;
    *pf1 = f1 & want;
    *pf2 = *pf3 = 0;
    if (f0 & SMFIF_SETSYMLIST) {           /* the shortest lists libmilter takes */
        smfi_setsymlist(ctx, SMFIM_CONNECT, "_");
        smfi_setsymlist(ctx, SMFIM_HELO, "_");
        smfi_setsymlist(ctx, SMFIM_ENVFROM, "_");
        smfi_setsymlist(ctx, SMFIM_ENVRCPT, "_");
        smfi_setsymlist(ctx, SMFIM_DATA, "_");
        smfi_setsymlist(ctx, SMFIM_EOH, "_");
        smfi_setsymlist(ctx, SMFIM_EOM, "_");
    }
    return SMFIS_CONTINUE;
}

/* -g: no reply to the steps sendguard answers with none */
static sfsistat nr(void) { return as_sendguard ? SMFIS_NOREPLY : SMFIS_CONTINUE; }
static sfsistat cb_connect(SMFICTX *c, char *h, struct sockaddr *a) { (void)c; (void)h; (void)a; return nr(); }
static sfsistat cb_helo(SMFICTX *c, char *h) { (void)c; (void)h; return SMFIS_CONTINUE; }
static sfsistat cb_argv(SMFICTX *c, char **v) { (void)c; (void)v; return nr(); }
static sfsistat cb_header(SMFICTX *c, char *n, char *v) { (void)c; (void)n; (void)v; return nr(); }
static sfsistat cb_ctx(SMFICTX *c) { (void)c; return SMFIS_CONTINUE; }
static sfsistat cb_body(SMFICTX *c, unsigned char *b, size_t l) { (void)c; (void)b; (void)l; return SMFIS_CONTINUE; }
static sfsistat cb_unknown(SMFICTX *c, const char *s) { (void)c; (void)s; return SMFIS_CONTINUE; }

int main(int argc, char **argv)
{
    const char *sock = NULL;
    int opt;
    struct smfiDesc d = {
        .xxfi_name = "nullmilter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = 0,
        .xxfi_connect = cb_connect,
        .xxfi_helo = cb_helo,
        .xxfi_envfrom = cb_argv,
        .xxfi_envrcpt = cb_argv,
        .xxfi_header = cb_header,
        .xxfi_eoh = cb_ctx,
        .xxfi_body = cb_body,
        .xxfi_eom = cb_ctx,
        .xxfi_abort = cb_ctx,
        .xxfi_close = cb_ctx,
        .xxfi_unknown = cb_unknown,
        .xxfi_data = cb_ctx,
        .xxfi_negotiate = cb_negotiate,
    };

    while ((opt = getopt(argc, argv, "s:ndg")) != -1) {
        if (opt == 'g')
            as_sendguard = 1;
        else if (opt == 's')
            sock = optarg;
        else if (opt == 'n')
            optimal = 1;
        else if (opt == 'd')
            answer_data = 1;
        else
            return 64;
    }
    if (sock == NULL) {
        fprintf(stderr, "usage: nullmilter -s unix:/path|inet:PORT@IP [-n [-d] | -g]\n");
        return 64;
    }
    if (optimal)
        d.xxfi_flags = SMFIF_SETSYMLIST;
    if (as_sendguard)
        d.xxfi_flags = SMFIF_SETSYMLIST | SMFIF_QUARANTINE;
    if (strncmp(sock, "unix:", 5) == 0)
        unlink(sock + 5);
    signal(SIGPIPE, SIG_IGN);
    if (smfi_register(d) != MI_SUCCESS || smfi_setconn((char *)sock) != MI_SUCCESS ||
        smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "nullmilter: cannot listen on %s\n", sock);
        return 69;
    }
    if (strncmp(sock, "unix:", 5) == 0)
        chmod(sock + 5, 0666);
    return smfi_main() == MI_SUCCESS ? 0 : 70;
}
