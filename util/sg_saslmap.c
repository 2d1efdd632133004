/*
 * sg_saslmap.c - check and rewrite of a Postfix SASL password map source
 * file (see sg_saslmap.h for the rules).
 *
 * Must not: follow a symbolic link, change the map's mode, owner or group,
 * lose a concurrent writer's password (flock, and the lock re-taken on the
 * file that is at the path now), report success before the data and the
 * rename are on disk, or put a password in an error message. The map's
 * text (every account's password) is wiped from memory after use.
 */
#include "sg_saslmap.h"
#include "sg_run.h"
#include "sg_time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#define LOCK_WAIT_MS 10000
#define MAX_MAP (16u << 20)

/* The directory part of path (".", "/" included), in buf. */
static void dir_of(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        snprintf(buf, size, ".");
    else if (slash == path)
        snprintf(buf, size, "/");
    else
        snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

static bool not_regular(const char *path, const struct stat *st, char *err, size_t errlen)
{
    char target[512];
    ssize_t n;

    if (S_ISLNK(st->st_mode)) {
        n = readlink(path, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        snprintf(err, errlen, "%s is a symbolic link (to %s): sendguard does not follow it; set "
                 "sasl_map_file to the file itself", path, n > 0 ? target : "?");
        return true;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        return true;
    }
    if (st->st_nlink > 1) {        /* another name of it elsewhere: whose file is it? */
        snprintf(err, errlen, "%s has %lu hard links: sendguard rewrites only a map with one "
                 "name", path, (unsigned long)st->st_nlink);
        return true;
    }
    return false;
}

/* The user part of a map line ("KEY user:password"): *u and its length, up
 * to the first ':'. false for comments, blank and malformed lines. */
static bool line_user(const char *line, const char *end, const char **u, size_t *ulen,
                      const char **colon)
{
    const char *p = line, *c;

    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end || *p == '#')
        return false;
    while (p < end && *p != ' ' && *p != '\t')
        p++;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    c = memchr(p, ':', (size_t)(end - p));
    if (c == NULL)
        return false;
    *u = p;
    *ulen = (size_t)(c - p);
    *colon = c;
    return true;
}

static bool is_user(const char *u, size_t ulen, const char *user)
{
    return ulen == strlen(user) && strncasecmp(u, user, ulen) == 0;
}

static int count_user(const char *text, size_t len, const char *user)
{
    const char *p = text, *end = text + len;
    int n = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end, *u, *c;
        size_t ulen;

        if (line_user(p, eol, &u, &ulen, &c) && is_user(u, ulen, user))
            n++;
        p = nl ? nl + 1 : end;
    }
    return n;
}

/* Give fd the owner and group of st, when it does not have them already
 * (an unprivileged writer owning the map never needs chown). */
static int chown_like(int fd, const struct stat *st)
{
    struct stat now;

    if (fstat(fd, &now) != 0)
        return -1;
    if (now.st_uid == st->st_uid && now.st_gid == st->st_gid)
        return 0;
    return fchown(fd, st->st_uid, st->st_gid);
}

/* Can this process create a file in dir with owner uid, group gid? */
static int probe_dir(const char *path, const struct stat *st, char *err, size_t errlen)
{
    char tmp[4096];
    int fd;

    if (snprintf(tmp, sizeof(tmp), "%s.sgXXXXXX", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        char dir[4096];
        dir_of(path, dir, sizeof(dir));
        snprintf(err, errlen, "cannot create a file in %s (%s) as uid %ld: the new password "
                 "could not be written into %s. Give the map its own directory that this "
                 "user owns (e.g. /etc/postfix/sendguard/)", dir, strerror(errno),
                 (long)geteuid(), path);
        return -1;
    }
    if (chown_like(fd, st) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        snprintf(err, errlen, "%s: owner %ld:%ld could not be kept by uid %ld (%s): chown it "
                 "to the user sendguard runs as", path, (long)st->st_uid, (long)st->st_gid,
                 (long)geteuid(), strerror(e));
        return -1;
    }
    close(fd);
    unlink(tmp);
    return 0;
}

int sg_saslmap_check(const char *path, const char *user, char *err, size_t errlen)
{
    struct stat st;
    size_t len = 0;
    char *text;
    int fd, n;

    if (lstat(path, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (not_regular(path, &st, err, errlen))
        return -1;
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)) < 0 ||
        (text = sg_read_fd(fd, MAX_MAP, &len)) == NULL) {
        snprintf(err, errlen, "%s: cannot read it: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    n = count_user(text, len, user);
    explicit_bzero(text, len);
    free(text);
    if (n == 0) {
        snprintf(err, errlen, "%s has no line for %s: nothing would use the new password",
                 path, user);
        return -1;
    }
    return probe_dir(path, &st, err, errlen);
}

/* open + flock(LOCK_EX) the file that is at path *now*: when another writer
 * renamed a new map over it while we waited, take the new one. */
static int lock_map(const char *path, struct stat *st, char *err, size_t errlen)
{
    int64_t t0 = sg_time_mono_ms();

    for (;;) {
        struct stat now;
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);

        if (fd < 0) {
            if (errno == ELOOP && lstat(path, &now) == 0 && not_regular(path, &now, err, errlen))
                return -1;
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            if (errno != EWOULDBLOCK && errno != EINTR) {
                snprintf(err, errlen, "%s: lock: %s", path, strerror(errno));
                close(fd);
                return -1;
            }
            if (sg_time_mono_ms() - t0 > LOCK_WAIT_MS) {
                snprintf(err, errlen, "%s: still locked by another writer after %d s", path,
                         LOCK_WAIT_MS / 1000);
                close(fd);
                return -1;
            }
            usleep(5000);
        }
        if (fstat(fd, st) != 0 || lstat(path, &now) != 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (st->st_dev == now.st_dev && st->st_ino == now.st_ino) {
            if (not_regular(path, st, err, errlen)) {
                close(fd);
                return -1;
            }
            return fd;
        }
        close(fd);                 /* replaced while we waited: lock the new one */
    }
}

/* The new text: every line of user with password; *changed lines. */
static char *replace(const char *text, size_t len, const char *user, const char *password,
                     size_t *outlen, int *changed)
{
    size_t pwlen = strlen(password), cap = len + 1, o = 0;
    const char *p = text, *end = text + len;
    char *out;

    *changed = count_user(text, len, user);
    cap += (size_t)*changed * (pwlen + 1);
    if ((out = malloc(cap)) == NULL)
        return NULL;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end, *u, *c;
        size_t ulen;

        if (line_user(p, eol, &u, &ulen, &c) && is_user(u, ulen, user)) {
            memcpy(out + o, p, (size_t)(c + 1 - p));
            o += (size_t)(c + 1 - p);
            memcpy(out + o, password, pwlen);
            o += pwlen;
            out[o++] = '\n';
        } else {
            memcpy(out + o, p, (size_t)(eol - p) + (nl ? 1 : 0));
            o += (size_t)(eol - p) + (nl ? 1 : 0);
        }
        p = nl ? nl + 1 : end;
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

int sg_saslmap_rewrite(const char *path, const char *user, const char *password,
                       char *err, size_t errlen)
{
    char tmp[4096], dir[4096], *text = NULL, *out = NULL;
    size_t len = 0, outlen = 0;
    struct stat st;
    int lockfd, fd = -1, dfd = -1, changed = 0, rc = -1;
    bool tmp_made = false;

    if (strchr(password, '\n') != NULL || strchr(user, '\n') != NULL) {
        snprintf(err, errlen, "a user or password with a newline cannot go into a map");
        return -1;
    }
    if ((lockfd = lock_map(path, &st, err, errlen)) < 0)
        return -1;
    if ((text = sg_read_fd(lockfd, MAX_MAP, &len)) == NULL) {
        snprintf(err, errlen, "%s: cannot read it: %s", path, strerror(errno));
        goto out;
    }
    if ((out = replace(text, len, user, password, &outlen, &changed)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (changed == 0) {
        snprintf(err, errlen, "%s: no line for user %s", path, user);
        rc = 0;
        goto out;
    }
    dir_of(path, dir, sizeof(dir));
    if (snprintf(tmp, sizeof(tmp), "%s.sgXXXXXX", path) >= (int)sizeof(tmp) ||
        (fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cannot create a file in %s: %s", dir, strerror(errno));
        fd = -1;
        goto out;
    }
    tmp_made = true;
    /* Owner and mode first (mkostemp made it 0600): the text never sits
     * in a file more open than the map was. */
    if (chown_like(fd, &st) != 0 || fchmod(fd, st.st_mode & 07777) != 0 ||
        sg_write_all(fd, out, outlen) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "writing %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "writing %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "replacing %s: %s", path, strerror(errno));
        goto out;
    }
    tmp_made = false;              /* renamed: nothing to remove */
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(dfd) != 0) {
        snprintf(err, errlen, "%s replaced, but syncing %s failed: %s", path, dir,
                 strerror(errno));
        goto out;
    }
    rc = changed;
out:
    if (fd >= 0)
        close(fd);
    if (tmp_made)
        unlink(tmp);
    if (dfd >= 0)
        close(dfd);
    if (text != NULL) {
        explicit_bzero(text, len);
        free(text);
    }
    if (out != NULL) {
        explicit_bzero(out, outlen);
        free(out);
    }
    close(lockfd);                 /* the lock goes last: after the rename */
    return rc;
}
