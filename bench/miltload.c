/*
 * miltload.c - a load generator that plays the MTA side of the milter
 * protocol (version 6) against a filter, without libmilter.
 *
 *   cc -O2 -std=c11 -pthread -o miltload miltload.c
 *   miltload -s unix:/path/sock | -s inet:PORT@HOST
 *            [-c CONNS] [-n MESSAGES] [-k MSGS_PER_CONN] [-r RCPTS]
 *            [-a ACCOUNTS] [-o FIRST_ACCOUNT] [-l BODY_BYTES] [-w WARMUP] [-A] [-q]
 *
 * Each of CONNS threads opens a milter connection, negotiates (offering
 * every protocol flag, SMFIP_NR_* included, and every action), sends
 * CONNECT, then K messages (macros {i} and {auth_authen}, MAIL, RCPT x R,
 * a few headers, EOH, BODY, EOM), then QUIT, and opens a new connection
 * until the thread's share of MESSAGES is done. Postfix opens one milter
 * connection per SMTP session, so -k 1 (the default) is what an MTA fed by
 * smtp-source does; larger -k isolates the per-message cost.
 *
 * What the filter returns from the negotiation is honoured: a step it
 * negotiated away (SMFIP_NO*) is not sent, and a step it marked "no reply"
 * (SMFIP_NR_*) is not waited for. Replies are checked: a reply where none
 * is due shows up as a protocol error (the next read sees it).
 *
 * Writes follow Postfix's pattern by default: packets go through a buffer
 * that is written when a reply is awaited, when it holds 4 KiB, and at the
 * end of the envelope (Postfix's smtpd sends MAIL/RCPT, then cleanup sends
 * headers, body and end of message on the same socket). -P writes every
 * step as soon as it is built; -1 writes a message in as few writes as
 * replies allow. -D sets TCP_NODELAY on our side (Postfix does not).
 *
 * Measured per message: the latency from the moment EOM is written to the
 * final reply (accept/continue/reject/tempfail/discard/replycode), and the
 * whole transaction (MAIL written to final reply). Printed at the end:
 * decisions/s over the measured part, p50/p90/p99/max of both, the count of
 * every final reply, quarantines (hold), protocol errors, and what the filter
 * negotiated. -q prints one machine-readable line (key=value) as well.
 *
 * The first WARMUP messages of every thread are not measured (default 0).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* protocol steps (SMFIP_*) */
#define P_NOCONNECT 0x1
#define P_NOHELO 0x2
#define P_NOMAIL 0x4
#define P_NORCPT 0x8
#define P_NOBODY 0x10
#define P_NOHDRS 0x20
#define P_NOEOH 0x40
#define P_NR_HDR 0x80
#define P_NOUNKNOWN 0x100
#define P_NODATA 0x200
#define P_SKIP 0x400
#define P_RCPT_REJ 0x800
#define P_NR_CONN 0x1000
#define P_NR_HELO 0x2000
#define P_NR_MAIL 0x4000
#define P_NR_RCPT 0x8000
#define P_NR_DATA 0x10000
#define P_NR_UNKN 0x20000
#define P_NR_EOH 0x40000
#define P_NR_BODY 0x80000
#define P_HDR_LEADSPC 0x100000
#define P_ALL 0x1FFFFF
#define F_ALL 0x1FF

enum { R_ACCEPT, R_CONTINUE, R_REJECT, R_TEMPFAIL, R_DISCARD, R_REPLY4, R_REPLY5, R_OTHER,
       R_N };
static const char *rname[R_N] = { "accept", "continue", "reject", "tempfail", "discard",
                                  "reply4xx", "reply5xx", "other" };

/* Postfix writes through a VSTREAM buffer: packets that need no reply stay
 * in it until a reply is awaited, the buffer fills, or smtpd hands the
 * milter over to cleanup at DATA (envelope and content are two writes). */
#define OB_FLUSH_AT 4096

struct opts {
    const char *sock;
    int conns, perconn, rcpts, accounts, warmup, send_abort, quiet, nodelay, per_packet;
    long offset;                  /* -o: first account number (a flood in chunks) */
    int one_write;
    unsigned long offer;                /* protocol flags offered (-O) */
    long total;
    size_t body;
} o = { .conns = 10, .perconn = 1, .rcpts = 5, .accounts = 100, .total = 10000,
        .body = 4096, .send_abort = 1, .offer = P_ALL };

struct worker {
    pthread_t th;
    int id;
    long todo;
    double *lat_eom, *lat_txn;
    long nlat;
    long replies[R_N];
    long quarantined, errors, refused_early;
    unsigned long proto, actions;     /* what the filter negotiated (last seen) */
    char *macros_seen;
};

static atomic_long g_seq;
static double g_t0, g_t1;
static pthread_barrier_t g_start;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "miltload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* --- connection and framing ---------------------------------------------- */

static int dial(const char *spec)
{
    int fd;

    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *p = strchr(spec, ':') + 1;
        if (strlen(p) >= sizeof(sa.sun_path))
            die("socket path too long");
        strcpy(sa.sun_path, p);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        return fd;
    }
    if (strncmp(spec, "inet:", 5) == 0) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        char host[256] = "127.0.0.1";
        const char *at = strchr(spec, '@');
        int port = atoi(spec + 5), one = 1;
        if (at)
            snprintf(host, sizeof(host), "%s", at + 1);
        sa.sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
            die("inet: needs a numeric IPv4 address, got %s", host);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        /* Postfix does not set TCP_NODELAY on milter sockets: neither do we,
         * unless -D asks for it (to show where a Nagle delay comes from). */
        if (o.nodelay)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    die("socket spec must be unix:/path or inet:PORT@IP");
    return -1;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* An output buffer, flushed as Postfix's VSTREAM would be (see OB_FLUSH_AT),
 * or after every step with -P, or once per message with -1. */
struct obuf {
    char *b;
    size_t len, cap;
};

static void ob_put(struct obuf *ob, const void *p, size_t n)
{
    if (ob->len + n > ob->cap) {
        ob->cap = (ob->len + n) * 2;
        ob->b = realloc(ob->b, ob->cap);
        if (ob->b == NULL)
            die("out of memory");
    }
    memcpy(ob->b + ob->len, p, n);
    ob->len += n;
}

/* Start a packet: returns the offset of its length field. */
static size_t pk_begin(struct obuf *ob, char cmd)
{
    size_t off = ob->len;
    uint32_t z = 0;
    ob_put(ob, &z, 4);
    ob_put(ob, &cmd, 1);
    return off;
}

static void pk_str(struct obuf *ob, const char *s)
{
    ob_put(ob, s, strlen(s) + 1);
}

static void pk_end(struct obuf *ob, size_t off)
{
    uint32_t n = htonl((uint32_t)(ob->len - off - 4));
    memcpy(ob->b + off, &n, 4);
}

static int ob_flush(int fd, struct obuf *ob);

static int ob_flush(int fd, struct obuf *ob)
{
    int rc = write_all(fd, ob->b, ob->len);
    ob->len = 0;
    return rc;
}

/* Read one reply packet: its command in *cmd, data in buf (NUL-terminated). */
static int read_reply(int fd, char *cmd, char **buf, size_t *cap, size_t *dlen)
{
    uint32_t n;
    if (read_all(fd, &n, 4) != 0)
        return -1;
    n = ntohl(n);
    if (n == 0 || n > 64 * 1024 * 1024)
        return -1;
    if (read_all(fd, cmd, 1) != 0)
        return -1;
    n--;
    if (n + 1 > *cap) {
        *cap = n + 1;
        *buf = realloc(*buf, *cap);
        if (*buf == NULL)
            die("out of memory");
    }
    if (n && read_all(fd, *buf, n) != 0)
        return -1;
    (*buf)[n] = '\0';
    *dlen = n;
    return 0;
}

static int classify(char cmd, const char *data)
{
    switch (cmd) {
    case 'a': return R_ACCEPT;
    case 'c': return R_CONTINUE;
    case 'r': return R_REJECT;
    case 't': return R_TEMPFAIL;
    case 'd': return R_DISCARD;
    case 'y': return data[0] == '4' ? R_REPLY4 : data[0] == '5' ? R_REPLY5 : R_OTHER;
    default: return -1;       /* not final */
    }
}

/* --- one connection -------------------------------------------------------- */

struct conn {
    int fd;
    unsigned long proto;
    struct obuf ob;
    char *rb;
    size_t rcap, rlen;
    char rcmd;
};

/* Wait for the single reply of a step (continue expected). Returns the
 * reply class, or -1 on a broken connection. */
static int step_reply(struct conn *c, struct worker *w)
{
    for (;;) {
        if (read_reply(c->fd, &c->rcmd, &c->rb, &c->rcap, &c->rlen) != 0)
            return -1;
        if (c->rcmd == 'p')          /* progress: keep waiting */
            continue;
        int r = classify(c->rcmd, c->rb);
        if (r < 0) {
            w->errors++;
            return -1;
        }
        return r;
    }
}

static int negotiate(struct conn *c, struct worker *w)
{
    size_t off = pk_begin(&c->ob, 'O');
    uint32_t v[3] = { htonl(6), htonl(F_ALL), htonl((uint32_t)o.offer) };

    ob_put(&c->ob, v, sizeof(v));
    pk_end(&c->ob, off);
    if (ob_flush(c->fd, &c->ob) != 0)
        return -1;
    if (read_reply(c->fd, &c->rcmd, &c->rb, &c->rcap, &c->rlen) != 0 || c->rcmd != 'O' ||
        c->rlen < 12)
        return -1;
    memcpy(v, c->rb, 12);
    w->actions = ntohl(v[1]);
    c->proto = w->proto = ntohl(v[2]);
    if (w->macros_seen == NULL && c->rlen > 12) {    /* requested macro lists */
        char tmp[1024] = "";
        size_t p = 12, tl = 0;
        while (p + 4 < c->rlen && tl < sizeof(tmp) - 64) {
            uint32_t st;
            memcpy(&st, c->rb + p, 4);
            p += 4;
            tl += (size_t)snprintf(tmp + tl, sizeof(tmp) - tl, "%s[%u]=\"%s\"", tl ? " " : "",
                                   ntohl(st), c->rb + p);
            p += strlen(c->rb + p) + 1;
        }
        w->macros_seen = strdup(tmp);
    }
    return 0;
}

static int send_step(struct conn *c, struct worker *w, unsigned long nr, int *early);

static int do_connect(struct conn *c, struct worker *w)
{
    size_t off;
    uint16_t port = htons(40000);

    if (c->proto & P_NOCONNECT)
        return 0;
    off = pk_begin(&c->ob, 'D');
    ob_put(&c->ob, "C", 1);
    pk_str(&c->ob, "j");
    pk_str(&c->ob, "relay.bench.example");
    pk_str(&c->ob, "{daemon_name}");
    pk_str(&c->ob, "smtpd");
    pk_str(&c->ob, "v");
    pk_str(&c->ob, "Postfix 3.7");
    pk_end(&c->ob, off);
    off = pk_begin(&c->ob, 'C');
    pk_str(&c->ob, "client.bench.example");
    ob_put(&c->ob, "4", 1);
    ob_put(&c->ob, &port, 2);
    pk_str(&c->ob, "127.0.0.1");
    pk_end(&c->ob, off);
    int early = -1;
    if (send_step(c, w, P_NR_CONN, &early) != 0)
        return -1;
    if (!(c->proto & P_NOHELO)) {
        off = pk_begin(&c->ob, 'H');
        pk_str(&c->ob, "client.bench.example");
        pk_end(&c->ob, off);
        if (send_step(c, w, P_NR_HELO, &early) != 0)
            return -1;
    }
    return 0;
}

/* Send a step's packets; wait for its reply unless NR. Returns 0 to go on,
 * 1 if the filter ended the message early (accept/reject/...), -1 broken. */
static int send_step(struct conn *c, struct worker *w, unsigned long nr, int *early)
{
    if (c->proto & nr) {                 /* no reply due: flush only in -P mode */
        if (o.per_packet || c->ob.len >= OB_FLUSH_AT)
            return ob_flush(c->fd, &c->ob);
        return 0;
    }
    if (ob_flush(c->fd, &c->ob) != 0)
        return -1;
    int r = step_reply(c, w);
    if (r < 0)
        return -1;
    if (r == R_CONTINUE)
        return 0;
    *early = r;
    return 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One message. Returns 0, or -1 if the connection broke. */
static int do_message(struct conn *c, struct worker *w, long seq, int measure)
{
    char qid[32], auth[64], from[96], rcpt[96], hv[128];
    size_t off;
    int early = -1, rc;
    double t_mail, t_eom;
    unsigned long p = c->proto;

    snprintf(qid, sizeof(qid), "B%08lX", seq);
    snprintf(auth, sizeof(auth), "user%ld", o.offset + seq % o.accounts);
    snprintf(from, sizeof(from), "<user%ld@bench.example>", o.offset + seq % o.accounts);

    t_mail = now();
    if (!(p & P_NOMAIL)) {
        off = pk_begin(&c->ob, 'D');
        ob_put(&c->ob, "M", 1);
        pk_str(&c->ob, "i");
        pk_str(&c->ob, qid);
        pk_str(&c->ob, "{auth_authen}");
        pk_str(&c->ob, auth);
        pk_str(&c->ob, "{mail_addr}");
        pk_str(&c->ob, from + 1);       /* approximately; unused by most filters */
        pk_end(&c->ob, off);
        off = pk_begin(&c->ob, 'M');
        pk_str(&c->ob, from);
        pk_str(&c->ob, "SIZE=4096");
        pk_end(&c->ob, off);
        if ((rc = send_step(c, w, P_NR_MAIL, &early)) < 0)
            return -1;
        if (rc > 0)
            goto done;
    }
    if (!(p & P_NORCPT)) {
        for (int i = 0; i < o.rcpts; i++) {
            snprintf(rcpt, sizeof(rcpt), "<rcpt%d-%ld@dest%d.example>", i, seq % 1000, i % 7);
            off = pk_begin(&c->ob, 'D');
            ob_put(&c->ob, "R", 1);
            pk_str(&c->ob, "{rcpt_addr}");
            pk_str(&c->ob, rcpt + 1);
            pk_end(&c->ob, off);
            off = pk_begin(&c->ob, 'R');
            pk_str(&c->ob, rcpt);
            pk_end(&c->ob, off);
            if ((rc = send_step(c, w, P_NR_RCPT, &early)) < 0)
                return -1;
            if (rc > 0 && early != R_REJECT && early != R_TEMPFAIL && early != R_REPLY4 &&
                early != R_REPLY5)
                goto done;
            early = -1;         /* a refused recipient: go on with the others */
        }
    }
    if (!(p & P_NODATA)) {
        off = pk_begin(&c->ob, 'T');
        pk_end(&c->ob, off);
        if ((rc = send_step(c, w, P_NR_DATA, &early)) < 0)
            return -1;
        if (rc > 0)
            goto done;
    }
    /* smtpd flushes the envelope before cleanup takes over the content
     * (nothing left to flush if the DATA step waited for a reply) */
    if (!o.one_write && c->ob.len && ob_flush(c->fd, &c->ob) != 0)
        return -1;
    if (!(p & P_NOHDRS)) {
        const char *hn[] = { "Received", "From", "To", "Subject", "Date", "Message-ID",
                             "X-Mailer", "MIME-Version" };
        for (size_t i = 0; i < sizeof(hn) / sizeof(hn[0]); i++) {
            switch (i) {
            case 0: snprintf(hv, sizeof(hv), "from client.bench.example (localhost [127.0.0.1])"
                             " by relay.bench.example (Postfix) with ESMTP id %s", qid); break;
            case 1: snprintf(hv, sizeof(hv), "%s", from); break;
            case 2: snprintf(hv, sizeof(hv), "<rcpt0-%ld@dest0.example>", seq % 1000); break;
            case 3: snprintf(hv, sizeof(hv), "benchmark message %ld", seq); break;
            case 4: snprintf(hv, sizeof(hv), "Thu, 27 Nov 2025 10:00:00 +0000"); break;
            case 5: snprintf(hv, sizeof(hv), "<%s.%ld@bench.example>", qid, seq); break;
            case 6: snprintf(hv, sizeof(hv), "miltload 1.0"); break;
            default: snprintf(hv, sizeof(hv), "1.0"); break;
            }
            off = pk_begin(&c->ob, 'L');
            pk_str(&c->ob, hn[i]);
            pk_str(&c->ob, hv);
            pk_end(&c->ob, off);
            if ((rc = send_step(c, w, P_NR_HDR, &early)) < 0)
                return -1;
            if (rc > 0)
                goto done;
        }
    }
    if (!(p & P_NOEOH)) {
        off = pk_begin(&c->ob, 'N');
        pk_end(&c->ob, off);
        if ((rc = send_step(c, w, P_NR_EOH, &early)) < 0)
            return -1;
        if (rc > 0)
            goto done;
    }
    if (!(p & P_NOBODY) && o.body > 0) {
        static char line[] = "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ "
                             "the quick brown fox\r\n";
        size_t left = o.body;
        while (left > 0) {                 /* chunks of at most 64 KiB, as MTAs do */
            size_t chunk = left > 65535 ? 65535 : left;
            off = pk_begin(&c->ob, 'B');
            for (size_t i = 0; i < chunk; i += sizeof(line) - 1)
                ob_put(&c->ob, line, chunk - i < sizeof(line) - 1 ? chunk - i : sizeof(line) - 1);
            pk_end(&c->ob, off);
            left -= chunk;
            if ((rc = send_step(c, w, P_NR_BODY, &early)) < 0)
                return -1;
            if (rc > 0)
                goto done;
        }
    }
    /* end of message: macros, then EOB; always answered */
    off = pk_begin(&c->ob, 'D');
    ob_put(&c->ob, "E", 1);
    pk_str(&c->ob, "i");
    pk_str(&c->ob, qid);
    pk_end(&c->ob, off);
    off = pk_begin(&c->ob, 'E');
    pk_end(&c->ob, off);
    t_eom = now();
    if (ob_flush(c->fd, &c->ob) != 0)
        return -1;
    for (;;) {
        if (read_reply(c->fd, &c->rcmd, &c->rb, &c->rcap, &c->rlen) != 0)
            return -1;
        if (c->rcmd == 'q')
            w->quarantined++;
        int r = classify(c->rcmd, c->rb);
        if (r >= 0) {
            double t = now();
            w->replies[r]++;
            if (measure) {
                w->lat_eom[w->nlat] = (t - t_eom) * 1e3;
                w->lat_txn[w->nlat] = (t - t_mail) * 1e3;
                w->nlat++;
            }
            break;
        }
        /* modification actions (h, m, q, +, -, e, ...) and progress: go on */
    }
    goto reset;
done:
    w->refused_early++;
    if (early >= 0)
        w->replies[early]++;
reset:
    if (o.send_abort) {          /* Postfix ends every transaction with ABORT */
        off = pk_begin(&c->ob, 'A');      /* no reply: goes out with the next write */
        pk_end(&c->ob, off);
        if (o.per_packet && ob_flush(c->fd, &c->ob) != 0)
            return -1;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct conn c = { .fd = -1 };
    long done = 0, warm = o.warmup;

    pthread_barrier_wait(&g_start);
    while (done < w->todo) {
        c.fd = dial(o.sock);
        if (c.fd < 0) {
            w->errors++;
            usleep(10000);
            if (w->errors > 1000)
                break;
            continue;
        }
        if (negotiate(&c, w) != 0 || do_connect(&c, w) != 0) {
            w->errors++;
            close(c.fd);
            continue;
        }
        for (int k = 0; k < o.perconn && done < w->todo; k++) {
            long seq = atomic_fetch_add(&g_seq, 1);
            int measure = warm <= 0;
            if (!measure)
                warm--;
            if (do_message(&c, w, seq, measure) != 0) {
                w->errors++;
                break;
            }
            done++;
        }
        {
            size_t off = pk_begin(&c.ob, 'Q');
            pk_end(&c.ob, off);
            ob_flush(c.fd, &c.ob);
        }
        close(c.fd);
    }
    free(c.ob.b);
    free(c.rb);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: miltload -s unix:/path|inet:PORT@IP [-c conns] [-n messages] [-k per-conn]\n"
            "                [-r rcpts] [-a accounts] [-o first-account] [-l body-bytes]\n"
            "                [-w warmup-per-thread]\n"
            "                [-N (no ABORT after each message)] [-D (TCP_NODELAY)] [-q]\n"
            "                [-P (write every step at once) | -1 (one write per message)]\n"
            "                [-O protocol-flags-offered (default 0x1fffff: all)]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "s:c:n:k:r:a:o:l:w:NDPq1O:")) != -1) {
        switch (opt) {
        case 's': o.sock = optarg; break;
        case 'c': o.conns = atoi(optarg); break;
        case 'n': o.total = atol(optarg); break;
        case 'k': o.perconn = atoi(optarg); break;
        case 'r': o.rcpts = atoi(optarg); break;
        case 'a': o.accounts = atoi(optarg); break;
        case 'o': o.offset = atol(optarg); break;
        case 'l': o.body = (size_t)atol(optarg); break;
        case 'w': o.warmup = atoi(optarg); break;
        case 'N': o.send_abort = 0; break;
        case 'D': o.nodelay = 1; break;
        case 'P': o.per_packet = 1; break;
        case '1': o.one_write = 1; break;
        case 'O': o.offer = strtoul(optarg, NULL, 0); break;
        case 'q': o.quiet = 1; break;
        default: usage();
        }
    }
    if (o.sock == NULL || o.conns < 1 || o.total < 1 || o.perconn < 1 || o.rcpts < 0 ||
        o.accounts < 1)
        usage();
    if (o.conns > o.total)
        o.conns = (int)o.total;

    struct worker *ws = calloc((size_t)o.conns, sizeof(*ws));
    pthread_barrier_init(&g_start, NULL, (unsigned)o.conns + 1);
    for (int i = 0; i < o.conns; i++) {
        ws[i].id = i;
        ws[i].todo = o.total / o.conns + (i < o.total % o.conns);
        ws[i].lat_eom = calloc((size_t)ws[i].todo + 1, sizeof(double));
        ws[i].lat_txn = calloc((size_t)ws[i].todo + 1, sizeof(double));
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 256 * 1024);
        if (pthread_create(&ws[i].th, &a, worker_main, &ws[i]) != 0)
            die("pthread_create failed");
        pthread_attr_destroy(&a);
    }
    g_t0 = now();
    pthread_barrier_wait(&g_start);
    for (int i = 0; i < o.conns; i++)
        pthread_join(ws[i].th, NULL);
    g_t1 = now();

    long nlat = 0, replies[R_N] = { 0 }, quar = 0, errs = 0, early = 0, decided = 0;
    for (int i = 0; i < o.conns; i++) {
        nlat += ws[i].nlat;
        for (int r = 0; r < R_N; r++)
            replies[r] += ws[i].replies[r];
        quar += ws[i].quarantined;
        errs += ws[i].errors;
        early += ws[i].refused_early;
    }
    for (int r = 0; r < R_N; r++)
        decided += replies[r];
    double *le = malloc(sizeof(double) * (size_t)(nlat + 1));
    double *lt = malloc(sizeof(double) * (size_t)(nlat + 1));
    long k = 0;
    for (int i = 0; i < o.conns; i++) {
        memcpy(le + k, ws[i].lat_eom, sizeof(double) * (size_t)ws[i].nlat);
        memcpy(lt + k, ws[i].lat_txn, sizeof(double) * (size_t)ws[i].nlat);
        k += ws[i].nlat;
    }
    qsort(le, (size_t)nlat, sizeof(double), cmp_double);
    qsort(lt, (size_t)nlat, sizeof(double), cmp_double);
#define PCT(a, q) (nlat ? (a)[(long)((double)(nlat - 1) * (q) + 0.5)] : 0.0)
    double secs = g_t1 - g_t0;
    double rate = secs > 0 ? (double)decided / secs : 0;

    printf("miltload: %s conns=%d messages=%ld per_conn=%d rcpts=%d accounts=%d body=%zu\n",
           o.sock, o.conns, o.total, o.perconn, o.rcpts, o.accounts, o.body);
    printf("negotiated: protocol=0x%06lx actions=0x%03lx macros: %s\n", ws[0].proto,
           ws[0].actions, ws[0].macros_seen ? ws[0].macros_seen : "(none)");
    printf("  skipped steps:%s%s%s%s%s%s%s%s%s  no-reply steps:%s%s%s%s%s%s%s%s\n",
           ws[0].proto & P_NOCONNECT ? " connect" : "", ws[0].proto & P_NOHELO ? " helo" : "",
           ws[0].proto & P_NOMAIL ? " mail" : "", ws[0].proto & P_NORCPT ? " rcpt" : "",
           ws[0].proto & P_NODATA ? " data" : "", ws[0].proto & P_NOHDRS ? " headers" : "",
           ws[0].proto & P_NOEOH ? " eoh" : "", ws[0].proto & P_NOBODY ? " body" : "",
           ws[0].proto & P_NOUNKNOWN ? " unknown" : "",
           ws[0].proto & P_NR_CONN ? " connect" : "", ws[0].proto & P_NR_HELO ? " helo" : "",
           ws[0].proto & P_NR_MAIL ? " mail" : "", ws[0].proto & P_NR_RCPT ? " rcpt" : "",
           ws[0].proto & P_NR_DATA ? " data" : "", ws[0].proto & P_NR_HDR ? " header" : "",
           ws[0].proto & P_NR_EOH ? " eoh" : "", ws[0].proto & P_NR_BODY ? " body" : "");
    printf("decisions: %ld in %.3f s = %.0f/s  (errors %ld, ended before eom %ld, "
           "quarantined %ld)\n", decided, secs, rate, errs, early, quar);
    printf("replies:");
    for (int r = 0; r < R_N; r++)
        if (replies[r])
            printf(" %s=%ld", rname[r], replies[r]);
    printf("\n");
    printf("latency eom->reply ms: p50=%.3f p90=%.3f p99=%.3f max=%.3f (n=%ld)\n",
           PCT(le, 0.5), PCT(le, 0.9), PCT(le, 0.99), nlat ? le[nlat - 1] : 0.0, nlat);
    printf("latency mail->reply ms: p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", PCT(lt, 0.5),
           PCT(lt, 0.9), PCT(lt, 0.99), nlat ? lt[nlat - 1] : 0.0);
    if (o.quiet)
        printf("RESULT decisions=%ld secs=%.3f rate=%.1f p50=%.3f p99=%.3f txn_p50=%.3f "
               "txn_p99=%.3f errors=%ld accept=%ld continue=%ld tempfail=%ld reject=%ld "
               "quarantined=%ld proto=0x%lx\n",
               decided, secs, rate, PCT(le, 0.5), PCT(le, 0.99), PCT(lt, 0.5), PCT(lt, 0.99),
               errs, replies[R_ACCEPT], replies[R_CONTINUE], replies[R_TEMPFAIL] + replies[R_REPLY4],
               replies[R_REJECT] + replies[R_REPLY5], quar, ws[0].proto);
    return errs ? 1 : 0;
}
