/*
 * sg_mproto - the filter side of the Sendmail/Postfix milter protocol
 * (version 2 to 6): listening socket, one worker thread per MTA
 * connection taken from a pool, packet framing, option negotiation,
 * macros, replies. It knows nothing of policy: sg_milter.c gives it the
 * handlers.
 *
 * Why not libmilter: it polls and reads twice per packet (79 poll() and
 * 49 read() calls per message measured here) and starts a thread per
 * connection; this engine reads whatever the MTA has written in one call
 * and answers in one write. It also survives packets that crash Debian's
 * libmilter (a macro name without a value).
 */
#ifndef SG_MPROTO_H
#define SG_MPROTO_H

#include <stddef.h>
#include <stdint.h>

/* Protocol constants (the wire format; same values as libmilter's mfdef.h). */
#define SG_MP_VERSION 6

#define SMFIC_ABORT 'A'
#define SMFIC_BODY 'B'
#define SMFIC_CONNECT 'C'
#define SMFIC_MACRO 'D'
#define SMFIC_BODYEOB 'E'
#define SMFIC_HELO 'H'
#define SMFIC_QUIT_NC 'K'
#define SMFIC_HEADER 'L'
#define SMFIC_MAIL 'M'
#define SMFIC_EOH 'N'
#define SMFIC_OPTNEG 'O'
#define SMFIC_QUIT 'Q'
#define SMFIC_RCPT 'R'
#define SMFIC_DATA 'T'
#define SMFIC_UNKNOWN 'U'

#define SMFIR_ACCEPT 'a'
#define SMFIR_CONTINUE 'c'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT 'r'
#define SMFIR_TEMPFAIL 't'
#define SMFIR_REPLYCODE 'y'

#define SMFIF_QUARANTINE 0x20u
#define SMFIF_SETSYMLIST 0x100u

#define SMFIP_NOCONNECT 0x1u
#define SMFIP_NOHELO 0x2u
#define SMFIP_NOMAIL 0x4u
#define SMFIP_NORCPT 0x8u
#define SMFIP_NOBODY 0x10u
#define SMFIP_NOHDRS 0x20u
#define SMFIP_NOEOH 0x40u
#define SMFIP_NR_HDR 0x80u
#define SMFIP_NOUNKNOWN 0x100u
#define SMFIP_NODATA 0x200u
#define SMFIP_NR_CONN 0x1000u
#define SMFIP_NR_HELO 0x2000u
#define SMFIP_NR_MAIL 0x4000u
#define SMFIP_NR_RCPT 0x8000u
#define SMFIP_NR_DATA 0x10000u
#define SMFIP_NR_UNKN 0x20000u
#define SMFIP_NR_EOH 0x40000u
#define SMFIP_NR_BODY 0x80000u

#define SMFIM_CONNECT 0
#define SMFIM_HELO 1
#define SMFIM_ENVFROM 2
#define SMFIM_ENVRCPT 3
#define SMFIM_DATA 4
#define SMFIM_EOM 5
#define SMFIM_EOH 6
#define SG_MP_NSTAGES 7

/* Largest packet accepted (Postfix sends at most 64 KiB of body per
 * packet; a header may reach header_size_limit, 100 KiB by default). */
#define SG_MP_MAX_PACKET (1024u * 1024u)

typedef struct sg_msess sg_msess_t;

/* What a handler answers. For a step negotiated "no reply" the engine
 * sends nothing whatever the handler returns. */
enum sg_mp_reply { SG_MP_CONTINUE, SG_MP_ACCEPT, SG_MP_TEMPFAIL, SG_MP_REJECT };

/* The negotiation: what the MTA offers, what the filter takes, and the
 * macro names it wants per stage (SMFIM_*; NULL = the MTA's default). */
struct sg_mp_options {
    uint32_t mta_actions, mta_steps;   /* in */
    uint32_t actions, steps;           /* out: subsets of the above */
    const char *symlist[SG_MP_NSTAGES]; /* out */
};

struct sg_mp_handlers {
    void (*negotiate)(sg_msess_t *s, struct sg_mp_options *o);
    enum sg_mp_reply (*connect)(sg_msess_t *s, const char *host, int family, const char *addr);
    enum sg_mp_reply (*mail)(sg_msess_t *s, char **argv, int argc);
    enum sg_mp_reply (*rcpt)(sg_msess_t *s, char **argv, int argc);
    enum sg_mp_reply (*header)(sg_msess_t *s, const char *name, const char *value);
    enum sg_mp_reply (*body)(sg_msess_t *s, const unsigned char *p, size_t len);
    enum sg_mp_reply (*eom)(sg_msess_t *s);
    void (*abort)(sg_msess_t *s);      /* the message is abandoned */
    void (*close)(sg_msess_t *s);      /* the connection ends: free priv */
};

/* Listen on "unix:/path", "local:/path", "inet:PORT@HOST" or
 * "inet6:PORT@HOST". A unix socket is created with mode 0600 and left for
 * the caller to chmod/chown. TCP sockets get TCP_NODELAY. 0, or -1 with
 * the reason in err. */
int sg_mproto_listen(const char *spec, char *err, size_t errlen);

/* Serve until sg_mproto_stop(): accept, hand each connection to a worker.
 * io_timeout_s bounds every read and write (the MTA's silence). Returns 0
 * after a stop, once connections in a decision have been answered. */
int sg_mproto_run(const struct sg_mp_handlers *h, int io_timeout_s);

/* Ask the server to stop (from any thread; not from a signal handler). */
void sg_mproto_stop(void);

/* Per connection: the handler's own context. */
void *sg_mproto_getpriv(sg_msess_t *s);
void sg_mproto_setpriv(sg_msess_t *s, void *priv);

/* The newest value of macro NAME ("i" and "{i}" are the same name), or NULL. */
const char *sg_mproto_getsymval(sg_msess_t *s, const char *name);

/* At end of message, before returning SG_MP_TEMPFAIL or SG_MP_REJECT: the
 * SMTP reply to use ("451", "4.7.1", text). '%' is doubled and CR/LF and
 * other controls are replaced, so the text cannot break the reply. */
int sg_mproto_setreply(sg_msess_t *s, const char *rcode, const char *xcode, const char *text);

/* At end of message: put the message on hold (the MTA's quarantine). -1 if
 * the MTA did not offer it. */
int sg_mproto_quarantine(sg_msess_t *s, const char *reason);

#endif
