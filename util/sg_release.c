/*
 * sg_release.c - queue id validation and the release helper's protocol
 * (see sg_release.h): the daemon's client and the helper's one-connection
 * server.
 *
 * Must not: pass to release_command anything but validated queue ids, one
 * per line; wait without a deadline on the other side; log an id without
 * escaping it.
 */
#include "sg_release.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sg_log.h"
#include "sg_run.h"
#include "sg_time.h"

#define QID_MAX 32
#define READ_LIMIT (SG_RELEASE_MAX_IDS * (QID_MAX + 1))
#define HELPER_READ_S 10           /* the client sends its ids at once */
#define RELEASE_TIMEOUT_S 60

bool sg_release_qid_valid(const char *qid)
{
    size_t n = 0;
    bool hex = true;

    if (qid == NULL)
        return false;
    for (const char *p = qid; *p; p++, n++) {
        char c = *p;
        bool digit = c >= '0' && c <= '9', upper = c >= 'A' && c <= 'Z',
             lower = c >= 'a' && c <= 'z';
        if (!digit && !upper && !lower)
            return false;
        hex = hex && (digit || (c >= 'A' && c <= 'F'));
        if (n >= QID_MAX)
            return false;
    }
    return n >= 8 || (n >= 6 && hex);
}

static int write_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        struct pollfd pf = { fd, POLLOUT, 0 };
        int64_t left = deadline - sg_time_mono_ms();
        ssize_t w;

        if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        w = write(fd, p, n);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read until EOF, limit bytes or the deadline. -1 on error/timeout/too big. */
static int read_all(int fd, char *buf, size_t limit, size_t *len, int64_t deadline)
{
    *len = 0;
    for (;;) {
        struct pollfd pf = { fd, POLLIN, 0 };
        int64_t left = deadline - sg_time_mono_ms();
        ssize_t r;

        if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        r = read(fd, buf + *len, limit - *len);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        *len += (size_t)r;
        if (*len == limit) {
            errno = EFBIG;
            return -1;
        }
    }
    buf[*len] = '\0';
    return 0;
}

int sg_release_ask(const char *path, const char *const *ids, size_t n, int timeout_s,
                   char *out, size_t outlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int64_t deadline = sg_time_mono_ms() + (long)timeout_s * 1000L;
    char reply[512], *text = NULL;
    size_t len = 0, o = 0;
    int fd = -1, rc = -1;

    out[0] = '\0';
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(out, outlen, "%s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    for (size_t i = 0; i < n; i++) {
        if (!sg_release_qid_valid(ids[i])) {
            snprintf(out, outlen, "not a queue id (refused before sending)");
            return -1;
        }
        len += strlen(ids[i]) + 1;
    }
    if ((text = malloc(len + 1)) == NULL) {
        snprintf(out, outlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        o += (size_t)sprintf(text + o, "%s\n", ids[i]);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* A unix socket connects at once or fails (EAGAIN: the helper's backlog
     * is full; retried at the next round like any failure). */
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(out, outlen, "release helper %s: %s", path, strerror(errno));
        goto done;
    }
    if (write_all(fd, text, o, deadline) != 0 || shutdown(fd, SHUT_WR) != 0 ||
        read_all(fd, reply, sizeof(reply) - 1, &len, deadline) != 0) {
        snprintf(out, outlen, "release helper %s: %s", path, strerror(errno));
        goto done;
    }
    reply[strcspn(reply, "\r\n")] = '\0';
    if (reply[0] == '\0')
        snprintf(out, outlen, "release helper %s closed without an answer (see its log)", path);
    else
        snprintf(out, outlen, "%s", reply);
    rc = strncmp(reply, "OK", 2) == 0 && (reply[2] == ' ' || reply[2] == '\0') ? 0 : -1;
done:
    if (fd >= 0)
        close(fd);
    free(text);
    return rc;
}

static int answer(int out, const char *line)
{
    char buf[600];
    int n = snprintf(buf, sizeof(buf), "%s\n", line);

    return write_all(out, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1,
                     sg_time_mono_ms() + 5000);
}

int sg_release_serve(int in, int out, const char *const *argv, size_t nargv, const char *peer)
{
    char *buf = malloc(READ_LIMIT + 1), line[600], cmdout[512], esc[200], esc2[600];
    size_t len = 0, nids = 0;
    int rc;

    if (buf == NULL) {
        answer(out, "ERR out of memory");
        return -1;
    }
    if (read_all(in, buf, READ_LIMIT, &len, sg_time_mono_ms() + HELPER_READ_S * 1000L) != 0) {
        sg_log(LOG_ERR, "release-helper: peer=%s: reading the queue ids: %s", peer,
               strerror(errno));
        snprintf(line, sizeof(line), "ERR reading the queue ids: %s", strerror(errno));
        answer(out, line);
        free(buf);
        return -1;
    }
    if (memchr(buf, '\0', len) != NULL) {
        sg_log(LOG_WARNING, "release-helper: peer=%s: refused: a NUL byte in the request; "
               "nothing released", peer);
        answer(out, "ERR refused: not a queue id (NUL byte)");
        free(buf);
        return -1;
    }
    /* Every line must be a queue id: one that is not refuses the request. */
    for (char *p = buf, *nl; p < buf + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (nl == NULL) {
            sg_log(LOG_WARNING, "release-helper: peer=%s: refused: last line not terminated "
                   "(qid=%s)", peer, sg_log_escape(esc, sizeof(esc), p,
                                                    (size_t)(buf + len - p)));
            answer(out, "ERR refused: a line without its newline");
            free(buf);
            return -1;
        }
        *nl = '\0';
        if (!sg_release_qid_valid(p) || nids >= SG_RELEASE_MAX_IDS) {
            sg_log(LOG_WARNING, "release-helper: peer=%s: refused: not a queue id: qid=%s "
                   "(line %zu); nothing released", peer, sg_log_esc(esc, sizeof(esc), p),
                   nids + 1);
            answer(out, "ERR refused: not a queue id");
            free(buf);
            return -1;
        }
        *nl = '\n';
        nids++;
    }
    if (nids == 0) {
        answer(out, "OK 0");
        free(buf);
        return 0;
    }
    rc = sg_run(argv, nargv, NULL, 0, buf, RELEASE_TIMEOUT_S, cmdout, sizeof(cmdout));
    free(buf);
    if (rc == 0) {
        sg_log(LOG_NOTICE, "release-helper: peer=%s: released messages=%zu", peer, nids);
        snprintf(line, sizeof(line), "OK %zu", nids);
        answer(out, line);
        return 0;
    }
    sg_log_esc(esc2, sizeof(esc2), cmdout);
    sg_log(LOG_ERR, "release-helper: peer=%s: %s failed (status %d) for %zu messages: %s",
           peer, argv[0], rc, nids, esc2);
    snprintf(line, sizeof(line), "ERR %s failed (status %d): %.400s", argv[0], rc, esc2);
    answer(out, line);
    return -1;
}
