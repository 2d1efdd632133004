/*
 * sg_mproto.c - the filter side of the milter protocol: listen, accept,
 * give each MTA connection to a pooled worker thread, cut the byte
 * stream into packets, negotiate, keep macros, call the handlers, answer.
 *
 * A worker reads whatever the MTA has written (Postfix buffers a whole
 * envelope, then headers, body and end of message) with one read(), walks
 * every complete packet in it, and sends all its answers with one write
 * before it reads again. Every read and write is bounded by the I/O
 * timeout (SO_RCVTIMEO/SO_SNDTIMEO: no poll() per packet).
 *
 * Must not: decide anything (sg_milter.c does), trust a length or a
 * string from the wire (every packet is bounded, every string ends inside
 * its packet), or let one connection's failure reach another: a protocol
 * violation closes that connection only, and the MTA then applies its
 * milter_default_action (tempfail), so no mail is lost.
 */
#include "sg_mproto.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "sg_log.h"

#define IN_START (72u * 1024u)    /* a 64 KiB body packet fits in one read */
#define IN_KEEP (256u * 1024u)    /* a worker keeps a buffer up to this size */
#define IDLE_KEEP 8               /* idle workers kept after a burst */
#define STOP_WAIT_S 10            /* a stop waits this long for decisions in progress */

struct sg_msess {
    int fd;
    void *priv;
    bool negotiated;
    uint32_t actions, steps;      /* what the filter took */
    unsigned char *in;            /* bytes read, not yet handled */
    size_t inlen, incap;
    unsigned char *out;           /* answers not yet written */
    size_t outlen, outcap;
    char *macro[SG_MP_NSTAGES];   /* name\0value\0... as sent, plus a NUL */
    size_t maclen[SG_MP_NSTAGES];
    char *replytext;              /* set by sg_mproto_setreply */
    char *quarantine;             /* set by sg_mproto_quarantine */
};

/* A worker: blocked in accept() (idle), or serving one connection. Its
 * slot tells a stop which connection to cut; the slot's own mutex is only
 * ever contended by a stop. */
struct slot {
    pthread_mutex_t mu;
    int fd;                       /* the connection served, or -1 */
    struct slot *next;
};

static struct {
    pthread_mutex_t mu;           /* the slot list, rare: thread start and exit */
    struct slot *slots;
    atomic_uint idle, workers, active;
    atomic_bool stopping;
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER };

static const struct sg_mp_handlers *H;
static int io_timeout = 7210;
static int listen_fd = -1;
static int stop_pipe[2] = { -1, -1 };
static char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static struct stat unix_st;
static long warned_proto, warned_accept, warned_thread, warned_timeout;

/* --- listening ----------------------------------------------------------- */

static int listen_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    mode_t old;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    old = umask(0177);            /* no window where others could connect */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        umask(old);
        snprintf(err, errlen, "bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    umask(old);
    snprintf(unix_path, sizeof(unix_path), "%s", path);
    if (stat(path, &unix_st) != 0)
        unix_path[0] = '\0';
    return fd;
}

static int listen_inet(const char *spec, int family, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    const char *at = strchr(spec, '@');
    char port[8], *host = NULL;
    int fd = -1, one = 1, rc;

    if (at == NULL || at == spec || (size_t)(at - spec) >= sizeof(port)) {
        snprintf(err, errlen, "expected PORT@HOST: %s", spec);
        return -1;
    }
    memcpy(port, spec, (size_t)(at - spec));
    port[at - spec] = '\0';
    host = strdup(at + 1);
    if (host == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {     /* [::1] */
        host[strlen(host) - 1] = '\0';
        memmove(host, host + 1, strlen(host));
    }
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", at + 1, gai_strerror(rc));
        free(host);
        return -1;
    }
    free(host);
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Linux passes TCP_NODELAY on to accepted sockets: a quarantine
     * request followed by the final answer is one write anyway, but the
     * MTA must never wait for a delayed ACK of ours. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(err, errlen, "bind %s: %s", spec, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

int sg_mproto_listen(const char *spec, char *err, size_t errlen)
{
    int fd;

    if (strncmp(spec, "unix:", 5) == 0)
        fd = listen_unix(spec + 5, err, errlen);
    else if (strncmp(spec, "local:", 6) == 0)
        fd = listen_unix(spec + 6, err, errlen);
    else if (strncmp(spec, "inet:", 5) == 0)
        fd = listen_inet(spec + 5, AF_INET, err, errlen);
    else if (strncmp(spec, "inet6:", 6) == 0)
        fd = listen_inet(spec + 6, AF_INET6, err, errlen);
    else {
        snprintf(err, errlen, "unknown socket type: %s", spec);
        return -1;
    }
    if (fd < 0)
        return -1;
    if (listen(fd, SOMAXCONN) != 0) {
        snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    if (pipe2(stop_pipe, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        close(fd);
        return -1;
    }
    listen_fd = fd;
    return 0;
}

/* --- per-session helpers ------------------------------------------------- */

void *sg_mproto_getpriv(sg_msess_t *s)
{
    return s->priv;
}

void sg_mproto_setpriv(sg_msess_t *s, void *priv)
{
    s->priv = priv;
}

static int stage_of(unsigned char cmd)
{
    switch (cmd) {
    case SMFIC_CONNECT: return SMFIM_CONNECT;
    case SMFIC_HELO: return SMFIM_HELO;
    case SMFIC_MAIL: return SMFIM_ENVFROM;
    case SMFIC_RCPT: return SMFIM_ENVRCPT;
    case SMFIC_DATA: return SMFIM_DATA;
    case SMFIC_BODYEOB: return SMFIM_EOM;
    case SMFIC_EOH: return SMFIM_EOH;
    default: return -1;
    }
}

static void clear_macros(sg_msess_t *s, int from)
{
    for (int i = from; i < SG_MP_NSTAGES; i++) {
        free(s->macro[i]);
        s->macro[i] = NULL;
        s->maclen[i] = 0;
    }
}

/* Same name, "x" and "{x}" being the same. */
static bool macro_is(const char *have, const char *want)
{
    size_t hl, wl;

    if (strcmp(have, want) == 0)
        return true;
    if (have[0] == '{')
        have++;
    if (want[0] == '{')
        want++;
    hl = strcspn(have, "}");
    wl = strcspn(want, "}");
    return hl == wl && hl > 0 && strncmp(have, want, hl) == 0;
}

const char *sg_mproto_getsymval(sg_msess_t *s, const char *name)
{
    static const int order[] = { SMFIM_EOM, SMFIM_EOH, SMFIM_DATA, SMFIM_ENVRCPT,
                                 SMFIM_ENVFROM, SMFIM_HELO, SMFIM_CONNECT };

    for (size_t o = 0; o < sizeof(order) / sizeof(order[0]); o++) {
        const char *p = s->macro[order[o]], *end;

        if (p == NULL)
            continue;
        end = p + s->maclen[order[o]];       /* *end == '\0' (added) */
        while (p < end) {
            const char *n = p, *v;

            p += strlen(p) + 1;
            if (p > end)                      /* a name without its value */
                break;
            v = p;
            p += strlen(p) + 1;
            if (macro_is(n, name))
                return v;
        }
    }
    return NULL;
}

/* Text safe inside an SMTP reply: controls become spaces, '%' doubled
 * (Sendmail uses the text as a format; Postfix undoubles it). */
static char *reply_safe(const char *text)
{
    size_t n = 0;
    char *out, *o;

    for (const char *p = text; *p; p++)
        n += *p == '%' ? 2 : 1;
    out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    o = out;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '%') {
            *o++ = '%';
            *o++ = '%';
        } else {
            *o++ = (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p;
        }
    }
    *o = '\0';
    return out;
}

int sg_mproto_setreply(sg_msess_t *s, const char *rcode, const char *xcode, const char *text)
{
    char *safe, *line;
    size_t n;

    if (rcode == NULL || strlen(rcode) != 3 || (rcode[0] != '4' && rcode[0] != '5') ||
        xcode == NULL || xcode[0] != rcode[0] || strchr(xcode, ' ') != NULL)
        return -1;
    safe = reply_safe(text ? text : "");
    if (safe == NULL)
        return -1;
    n = strlen(rcode) + strlen(xcode) + strlen(safe) + 3;
    line = malloc(n);
    if (line == NULL) {
        free(safe);
        return -1;
    }
    snprintf(line, n, "%s %s %s", rcode, xcode, safe);
    free(safe);
    free(s->replytext);
    s->replytext = line;
    return 0;
}

int sg_mproto_quarantine(sg_msess_t *s, const char *reason)
{
    char *r;

    if (!(s->actions & SMFIF_QUARANTINE))
        return -1;
    r = reply_safe(reason && reason[0] ? reason : "held by sendguard");
    if (r == NULL)
        return -1;
    free(s->quarantine);
    s->quarantine = r;
    return 0;
}

/* --- output -------------------------------------------------------------- */

/* Make *buf (capacity *cap) hold at least `need` bytes, doubling. */
static bool grow(unsigned char **buf, size_t *cap, size_t need)
{
    size_t ncap = *cap ? *cap : 256;
    unsigned char *n;

    if (need <= *cap)
        return true;
    while (ncap < need)
        ncap *= 2;
    if ((n = realloc(*buf, ncap)) == NULL)
        return false;
    *buf = n;
    *cap = ncap;
    return true;
}

/* Queue one packet: cmd and data (len bytes). */
static bool put(sg_msess_t *s, unsigned char cmd, const void *data, size_t len)
{
    uint32_t n = htonl((uint32_t)(len + 1));

    if (!grow(&s->out, &s->outcap, s->outlen + 5 + len))
        return false;
    memcpy(s->out + s->outlen, &n, 4);
    s->out[s->outlen + 4] = cmd;
    if (len)
        memcpy(s->out + s->outlen + 5, data, len);
    s->outlen += 5 + len;
    return true;
}

static bool put_u32s(sg_msess_t *s, unsigned char cmd, const uint32_t *v, size_t nv,
                     const char *const *lists)
{
    unsigned char buf[12 + SG_MP_NSTAGES * (4 + 256)];
    size_t len = 0;

    for (size_t i = 0; i < nv; i++) {
        uint32_t x = htonl(v[i]);
        memcpy(buf + len, &x, 4);
        len += 4;
    }
    for (int i = 0; lists != NULL && i < SG_MP_NSTAGES; i++) {
        size_t l;
        uint32_t x = htonl((uint32_t)i);

        if (lists[i] == NULL || (l = strlen(lists[i])) >= 256)
            continue;
        memcpy(buf + len, &x, 4);
        memcpy(buf + len + 4, lists[i], l + 1);
        len += 4 + l + 1;
    }
    return put(s, cmd, buf, len);
}

static bool flush_out(sg_msess_t *s)
{
    size_t off = 0;

    while (off < s->outlen) {
        ssize_t n = send(s->fd, s->out + off, s->outlen - off, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (sg_log_ratelimit(&warned_timeout, 60))
                    sg_log(LOG_WARNING, "milter: the MTA did not read our answer for %d s:"
                           " connection closed", io_timeout);
            }
            return false;
        }
        off += (size_t)n;
    }
    s->outlen = 0;
    return true;
}

static bool answer(sg_msess_t *s, enum sg_mp_reply r)
{
    unsigned char c;

    switch (r) {
    case SG_MP_ACCEPT: c = SMFIR_ACCEPT; break;
    case SG_MP_TEMPFAIL: c = SMFIR_TEMPFAIL; break;
    case SG_MP_REJECT: c = SMFIR_REJECT; break;
    default: c = SMFIR_CONTINUE; break;
    }
    return put(s, c, NULL, 0);
}

/* The reply to a step, unless it was negotiated "no reply". */
static bool step_reply(sg_msess_t *s, uint32_t nr_flag, enum sg_mp_reply r)
{
    return (s->steps & nr_flag) ? true : answer(s, r);
}

/* --- packets ------------------------------------------------------------- */

/* Forget a message: its macros from stage `from` on and its pending
 * answers. */
static void end_message(sg_msess_t *s, int from)
{
    clear_macros(s, from);
    free(s->replytext);
    free(s->quarantine);
    s->replytext = s->quarantine = NULL;
}

static void proto_error(const char *what, unsigned char cmd)
{
    if (sg_log_ratelimit(&warned_proto, 60))
        sg_log(LOG_WARNING, "milter: protocol error (%s, command 0x%02x): connection closed;"
               " the MTA applies its default action", what, cmd);
}

/* Split NUL-separated strings; the packet is NUL-terminated by the caller. */
static int split_args(char *p, size_t n, char **argv, int max)
{
    int argc = 0;
    char *end = p + n;

    while (p < end && argc < max) {
        argv[argc++] = p;
        p += strlen(p) + 1;
    }
    argv[argc] = NULL;
    return argc;
}

static bool do_optneg(sg_msess_t *s, const unsigned char *d, size_t n)
{
    struct sg_mp_options o;
    uint32_t v[3], ver;

    if (n < 12) {
        proto_error("short option negotiation", SMFIC_OPTNEG);
        return false;
    }
    memcpy(v, d, 12);
    ver = ntohl(v[0]);
    if (ver < 2) {
        proto_error("protocol version below 2", SMFIC_OPTNEG);
        return false;
    }
    memset(&o, 0, sizeof(o));
    o.mta_actions = ntohl(v[1]);
    o.mta_steps = ntohl(v[2]);
    if (H->negotiate)
        H->negotiate(s, &o);
    o.actions &= o.mta_actions;
    o.steps &= o.mta_steps;
    bool lists = false;
    for (int i = 0; i < SG_MP_NSTAGES; i++)
        lists = lists || o.symlist[i] != NULL;
    if (lists && ver >= 6 && (o.mta_actions & SMFIF_SETSYMLIST))
        o.actions |= SMFIF_SETSYMLIST;
    else
        lists = false;
    s->actions = o.actions;
    s->steps = o.steps;
    s->negotiated = true;
    uint32_t r[3] = { ver < SG_MP_VERSION ? ver : SG_MP_VERSION, o.actions, o.steps };
    return put_u32s(s, SMFIC_OPTNEG, r, 3, lists ? o.symlist : NULL);
}

static bool do_connect(sg_msess_t *s, char *d, size_t n)
{
    char *host = d, *addr = NULL;
    size_t hl = strnlen(d, n);
    int family = 'U';

    if (hl < n && hl + 1 < n) {
        family = (unsigned char)d[hl + 1];
        if (family != 'U' && hl + 4 <= n)
            addr = d + hl + 4;                /* after the 2-byte port */
    }
    if (addr == NULL && family != 'U')
        family = 'U';
    enum sg_mp_reply r = H->connect ? H->connect(s, host, family, addr) : SG_MP_CONTINUE;
    return step_reply(s, SMFIP_NR_CONN, r);
}

static bool do_args(sg_msess_t *s, unsigned char cmd, char *d, size_t n)
{
    char *small[34], **argv = small;
    int max = 32, argc;
    enum sg_mp_reply r = SG_MP_CONTINUE;
    bool ok;

    if (n >= (size_t)max) {                   /* more strings than fit in small? */
        size_t nul = 0;
        for (size_t i = 0; i < n; i++)
            nul += d[i] == '\0';
        if (nul + 1 > (size_t)max) {
            max = (int)nul + 1;
            argv = malloc(((size_t)max + 1) * sizeof(*argv));
            if (argv == NULL)
                return false;
        }
    }
    argc = split_args(d, n, argv, max);
    if (cmd == SMFIC_MAIL) {
        /* a new message: what is left of an earlier one goes, but not the
         * MAIL macros, which the MTA sent just before this command */
        end_message(s, SMFIM_ENVRCPT);
        if (H->mail)
            r = H->mail(s, argv, argc);
        ok = step_reply(s, SMFIP_NR_MAIL, r);
    } else {
        if (H->rcpt)
            r = H->rcpt(s, argv, argc);
        ok = step_reply(s, SMFIP_NR_RCPT, r);
    }
    if (argv != small)
        free(argv);
    return ok;
}

static bool do_eom(sg_msess_t *s, const unsigned char *d, size_t n)
{
    enum sg_mp_reply r;
    bool ok = true;

    if (n > 0 && H->body)
        H->body(s, d, n);
    r = H->eom ? H->eom(s) : SG_MP_CONTINUE;
    if (s->quarantine != NULL && (r == SG_MP_CONTINUE || r == SG_MP_ACCEPT))
        ok = put(s, SMFIR_QUARANTINE, s->quarantine, strlen(s->quarantine) + 1);
    if (ok && s->replytext != NULL && (r == SG_MP_TEMPFAIL || r == SG_MP_REJECT))
        ok = put(s, SMFIR_REPLYCODE, s->replytext, strlen(s->replytext) + 1);
    else if (ok)
        ok = answer(s, r);
    end_message(s, SMFIM_ENVFROM);
    return ok;
}

/* One packet: cmd, then n bytes at d, with d[n] == '\0'. false: close. */
static bool handle(sg_msess_t *s, unsigned char cmd, unsigned char *d, size_t n, bool *quit)
{
    char *c = (char *)d;

    if (!s->negotiated && cmd != SMFIC_OPTNEG) {
        proto_error("command before option negotiation", cmd);
        return false;
    }
    switch (cmd) {
    case SMFIC_OPTNEG:
        if (s->negotiated) {
            proto_error("second option negotiation", cmd);
            return false;
        }
        return do_optneg(s, d, n);
    case SMFIC_MACRO: {
        int st = n > 0 ? stage_of(d[0]) : -1;
        if (st < 0)
            return true;                      /* unknown stage: ignored */
        char *copy = malloc(n);               /* n-1 bytes + the NUL */
        if (copy == NULL)
            return false;
        memcpy(copy, d + 1, n);               /* d[n] is the NUL */
        free(s->macro[st]);
        s->macro[st] = copy;
        s->maclen[st] = n - 1;
        return true;
    }
    case SMFIC_CONNECT:
        return do_connect(s, c, n);
    case SMFIC_HELO:
        return step_reply(s, SMFIP_NR_HELO, SG_MP_CONTINUE);
    case SMFIC_MAIL:
    case SMFIC_RCPT:
        return do_args(s, cmd, c, n);
    case SMFIC_DATA:
        return step_reply(s, SMFIP_NR_DATA, SG_MP_CONTINUE);
    case SMFIC_HEADER: {
        size_t nl = strlen(c);
        const char *value = nl < n ? c + nl + 1 : c + n;     /* no value: "" */
        enum sg_mp_reply r = H->header ? H->header(s, c, value) : SG_MP_CONTINUE;
        return step_reply(s, SMFIP_NR_HDR, r);
    }
    case SMFIC_EOH:
        return step_reply(s, SMFIP_NR_EOH, SG_MP_CONTINUE);
    case SMFIC_BODY: {
        enum sg_mp_reply r = H->body ? H->body(s, d, n) : SG_MP_CONTINUE;
        return step_reply(s, SMFIP_NR_BODY, r);
    }
    case SMFIC_BODYEOB:
        return do_eom(s, d, n);
    case SMFIC_ABORT:
        if (H->abort)
            H->abort(s);
        end_message(s, SMFIM_ENVFROM);
        return true;
    case SMFIC_UNKNOWN:
        return step_reply(s, SMFIP_NR_UNKN, SG_MP_CONTINUE);
    case SMFIC_QUIT_NC:                       /* a new SMTP connection follows */
        if (H->close)
            H->close(s);
        s->priv = NULL;
        end_message(s, SMFIM_CONNECT);
        return true;
    case SMFIC_QUIT:
        *quit = true;
        return true;
    default:
        proto_error("unknown command", cmd);
        return false;
    }
}

static void serve(sg_msess_t *s)
{
    bool quit = false;

    for (;;) {
        size_t off = 0;

        /* every complete packet already read */
        while (!quit && s->inlen - off >= 5) {
            uint32_t len;

            memcpy(&len, s->in + off, 4);
            len = ntohl(len);
            if (len == 0 || len > SG_MP_MAX_PACKET) {
                proto_error(len == 0 ? "empty packet" : "packet over 1 MiB", s->in[off + 4]);
                goto out;
            }
            if (s->inlen - off - 4 < len)
                break;
            unsigned char *d = s->in + off + 5, save;
            size_t n = len - 1;

            /* NUL-terminate the packet in place for the string parsers;
             * the byte there belongs to the next packet or is free (the
             * buffer always keeps one spare byte) and is put back. */
            save = d[n];
            d[n] = '\0';
            bool ok = handle(s, s->in[off + 4], d, n, &quit);
            d[n] = save;
            if (!ok)
                goto out;
            off += 4 + len;
        }
        if (off > 0) {
            memmove(s->in, s->in + off, s->inlen - off);
            s->inlen -= off;
        }
        if (s->outlen > 0 && !flush_out(s))
            goto out;
        if (quit)
            goto out;
        /* a partial packet: make room for all of it */
        size_t want = 4096;
        if (s->inlen >= 5) {
            uint32_t len;
            memcpy(&len, s->in, 4);
            len = ntohl(len);
            if (4 + (size_t)len > s->inlen)
                want = 4 + (size_t)len - s->inlen;
        }
        /* room after the unhandled bytes, plus the NUL slot */
        if (!grow(&s->in, &s->incap, s->inlen + want + 1))
            goto out;
        ssize_t got = read(s->fd, s->in + s->inlen, s->incap - s->inlen - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (sg_log_ratelimit(&warned_timeout, 60))
                sg_log(LOG_INFO, "milter: the MTA said nothing for %d s: connection closed",
                       io_timeout);
            goto out;
        }
        if (got <= 0)
            goto out;                         /* the MTA closed, or a stop */
        s->inlen += (size_t)got;
    }
out:
    if (H->close && s->negotiated)
        H->close(s);
    end_message(s, SMFIM_CONNECT);
}

/* --- the pool ------------------------------------------------------------ */

/* Workers accept() themselves (no hand-off between threads): the kernel
 * wakes one per connection. The one that takes the last idle place starts
 * another, so someone is always accepting; after a burst, a worker that
 * finds IDLE_KEEP others idle exits. */
static bool start_worker(void);

/* Take a worker's slot off the list and free it. */
static void slot_free(struct slot *sl)
{
    pthread_mutex_lock(&pool.mu);
    for (struct slot **pp = &pool.slots; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sl) {
            *pp = sl->next;
            break;
        }
    }
    pthread_mutex_unlock(&pool.mu);
    pthread_mutex_destroy(&sl->mu);
    free(sl);
}

static void session_run(struct slot *sl, int fd, unsigned char **buf, size_t *cap)
{
    sg_msess_t s = { .fd = fd, .in = *buf, .incap = *cap };
    struct timeval tv = { .tv_sec = io_timeout };

    if (s.in == NULL) {                       /* first connection of this worker */
        s.incap = IN_START;
        if ((s.in = malloc(s.incap)) == NULL) {
            sg_log(LOG_ERR, "milter: out of memory: connection closed");
            close(fd);
            return;
        }
    }

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    pthread_mutex_lock(&sl->mu);
    sl->fd = fd;
    pthread_mutex_unlock(&sl->mu);
    if (atomic_load(&pool.stopping))          /* a stop that swept before us */
        shutdown(fd, SHUT_RD);

    serve(&s);

    pthread_mutex_lock(&sl->mu);
    sl->fd = -1;
    pthread_mutex_unlock(&sl->mu);
    close(fd);
    free(s.out);
    if (s.incap > IN_KEEP) {                  /* give back what one big message took */
        unsigned char *n = realloc(s.in, IN_START);
        if (n != NULL) {
            s.in = n;
            s.incap = IN_START;
        }
    }
    *buf = s.in;
    *cap = s.incap;
}

static void *worker(void *arg)
{
    struct slot *sl = arg;
    size_t cap = 0;
    unsigned char *buf = NULL;            /* read buffer, kept between connections */
    bool idle = true;                     /* counted in pool.idle */

    pthread_setname_np(pthread_self(), "sg-milter");  /* top -H, ps -L */

    while (!atomic_load(&pool.stopping)) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (atomic_load(&pool.stopping) || errno == EINVAL || errno == EBADF)
                break;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                if (sg_log_ratelimit(&warned_accept, 60))
                    sg_log(LOG_ERR, "milter: accept: %s", strerror(errno));
                usleep(100000);
            }
            continue;
        }
        atomic_fetch_add(&pool.active, 1);
        idle = false;
        if (atomic_fetch_sub(&pool.idle, 1) == 1)
            start_worker();               /* we were the last one accepting */
        session_run(sl, fd, &buf, &cap);
        atomic_fetch_sub(&pool.active, 1);
        if (atomic_load(&pool.idle) >= IDLE_KEEP)
            break;                        /* enough others are accepting */
        atomic_fetch_add(&pool.idle, 1);
        idle = true;
    }
    if (idle)
        atomic_fetch_sub(&pool.idle, 1);
    slot_free(sl);
    free(buf);
    atomic_fetch_sub(&pool.workers, 1);
    return NULL;
}

static bool start_worker(void)
{
    struct slot *sl = calloc(1, sizeof(*sl));
    pthread_attr_t a;
    pthread_t t;
    int rc;

    if (sl == NULL)
        return false;
    pthread_mutex_init(&sl->mu, NULL);
    sl->fd = -1;
    pthread_mutex_lock(&pool.mu);
    sl->next = pool.slots;
    pool.slots = sl;
    pthread_mutex_unlock(&pool.mu);
    atomic_fetch_add(&pool.idle, 1);
    atomic_fetch_add(&pool.workers, 1);
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &a, worker, sl);
    pthread_attr_destroy(&a);
    if (rc == 0)
        return true;
    atomic_fetch_sub(&pool.idle, 1);
    atomic_fetch_sub(&pool.workers, 1);
    slot_free(sl);
    if (sg_log_ratelimit(&warned_thread, 60))
        sg_log(LOG_ERR, "milter: cannot start a worker thread: %s", strerror(rc));
    return false;
}

void sg_mproto_stop(void)
{
    char c = 1;

    if (stop_pipe[1] >= 0 && write(stop_pipe[1], &c, 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
}

int sg_mproto_run(const struct sg_mp_handlers *h, int io_timeout_s)
{
    char c;
    unsigned busy = 0;

    H = h;
    if (io_timeout_s > 0)
        io_timeout = io_timeout_s;
    if (listen_fd < 0 || !start_worker())
        return -1;
    while (read(stop_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;

    /* stop: no new connection (accept() fails at once after shutdown); a
     * connection waiting for the MTA is ended (the MTA retries the message
     * later), one inside a decision answers first. */
    atomic_store(&pool.stopping, true);
    shutdown(listen_fd, SHUT_RDWR);
    if (unix_path[0]) {
        struct stat st;
        if (stat(unix_path, &st) == 0 && st.st_ino == unix_st.st_ino &&
            st.st_dev == unix_st.st_dev)
            unlink(unix_path);
    }
    pthread_mutex_lock(&pool.mu);
    for (struct slot *sl = pool.slots; sl != NULL; sl = sl->next) {
        pthread_mutex_lock(&sl->mu);
        if (sl->fd >= 0)
            shutdown(sl->fd, SHUT_RD);
        pthread_mutex_unlock(&sl->mu);
    }
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < STOP_WAIT_S * 100; i++) {
        if (atomic_load(&pool.workers) == 0)
            break;
        usleep(10000);
    }
    busy = atomic_load(&pool.active);
    if (atomic_load(&pool.workers) > 0 && busy > 0) {
        sg_log(LOG_WARNING, "milter: %u connections still busy after %d s: exiting anyway",
               busy, STOP_WAIT_S);
        return 1;
    }
    close(listen_fd);
    listen_fd = -1;
    return 0;
}
