/*
 * sg_run.c - fork/exec of a configured argv with a pipe on each side and
 * a deadline.
 *
 * Must not: go through a shell, pass message data in argv, hand the child
 * our environment (API secrets: OVH_*) or descriptors (Redis, libcurl
 * sockets), or block past its deadline: the child's process group is
 * killed then, and reaping it is bounded too.
 */
#include "sg_run.h"
#include "sg_time.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define TICK_MS 50                 /* how often a child that closed its output is checked */
#define REAP_GRACE_MS 3000         /* after SIGKILL: how long waitpid may take */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const char *const sg_run_kept_env[] = {
    "PATH", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", NULL,
};

static bool same_key(const char *a, const char *b)
{
    size_t ka = strcspn(a, "="), kb = strcspn(b, "=");
    return ka == kb && strncmp(a, b, ka) == 0;
}

/* build_env - the kept variables of ours (PATH defaulted) plus the extra
 * "KEY=value" strings, an extra replacing a kept one of the same name. The
 * strings are not copied: the array alone is freed. */
static char **build_env(const char *const *env, size_t nenv)
{
    static char default_path[] = "PATH=" DEFAULT_PATH;
    size_t nk = sizeof(sg_run_kept_env) / sizeof(sg_run_kept_env[0]), o = 0;
    char **envp = calloc(nk + nenv + 2, sizeof(*envp));

    if (envp == NULL)
        return NULL;
    for (size_t i = 0; sg_run_kept_env[i] != NULL; i++) {
        const char *name = sg_run_kept_env[i];
        char *v = getenv(name);
        bool replaced = false;

        for (size_t j = 0; j < nenv && !replaced; j++)
            replaced = strncmp(env[j], name, strlen(name)) == 0 && env[j][strlen(name)] == '=';
        if (replaced)
            continue;
        if (v != NULL)
            envp[o++] = v - strlen(name) - 1;          /* "NAME=value" in environ */
        else if (strcmp(name, "PATH") == 0)
            envp[o++] = default_path;
    }
    for (size_t j = 0; j < nenv; j++) {
        bool dup = false;
        for (size_t k = j + 1; k < nenv && !dup; k++)
            dup = same_key(env[j], env[k]);           /* a later extra wins */
        if (!dup && strchr(env[j], '=') != NULL)
            envp[o++] = (char *)env[j];
    }
    return envp;
}

/* In the child: every descriptor above 2 closed (inherited Redis or curl
 * sockets without O_CLOEXEC included). Async-signal-safe. */
static void close_from_3(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
        return;
#endif
    for (long fd = 3, max = sysconf(_SC_OPEN_MAX); fd < (max > 0 ? max : 65536); fd++)
        close((int)fd);
}

static void child(int in, int out, char **args, char **envp)
{
    static const char msg[] = "cannot execute the command\n";
    struct sigaction dfl;
    sigset_t none;

    setpgid(0, 0);                 /* its own group: the deadline kills it all */
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);        /* SIGKILL/SIGSTOP just fail */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        _exit(127);
    close_from_3();
    execvpe(args[0], args, envp);
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(127);
    _exit(127);
}

/* Reap pid within ms milliseconds. true when reaped (*status set). */
static bool reap(pid_t pid, int *status, long ms)
{
    int64_t until = sg_time_mono_ms() + ms;

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0 && errno == ECHILD) {   /* reaped by someone else (SIGCHLD ignored) */
            *status = -1;
            return true;
        }
        if (r < 0 && errno != EINTR)
            return false;
        if (sg_time_mono_ms() >= until)
            return false;
        poll(NULL, 0, 10);
    }
}

int sg_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;

    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

char *sg_read_fd(int fd, size_t max, size_t *len)
{
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);

    while (buf != NULL) {
        ssize_t r;

        if (cap - n < 4096) {             /* grow; the old buffer is wiped */
            char *nb = cap >= max ? NULL : malloc(cap * 2);
            if (nb == NULL) {
                explicit_bzero(buf, cap);
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            memcpy(nb, buf, n);
            explicit_bzero(buf, cap);
            free(buf);
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            explicit_bzero(buf, cap);
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

int sg_run(const char *const *argv, size_t n, const char *const *env, size_t nenv,
           const char *input, int timeout_s, char *errbuf, size_t errsize)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, status = 0;
    size_t inlen = input ? strlen(input) : 0, inoff = 0, outlen = 0;
    int64_t deadline = sg_time_mono_ms() + (long)timeout_s * 1000L;
    bool reaped = false, killed = false;
    char **args, **envp;
    pid_t pid;

    if (errbuf && errsize)
        errbuf[0] = '\0';
    if (n == 0 || argv[0] == NULL) {
        if (errbuf)
            snprintf(errbuf, errsize, "empty command");
        return -1;
    }
    args = calloc(n + 1, sizeof(*args));
    if (args == NULL || pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        if (errbuf)
            snprintf(errbuf, errsize, "%s", strerror(errno));
        free(args);
        if (in[0] >= 0) { close(in[0]); close(in[1]); }
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        args[i] = (char *)argv[i];
    envp = build_env(env, nenv);
    if (envp == NULL) {
        if (errbuf)
            snprintf(errbuf, errsize, "out of memory");
        free(args);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        if (errbuf)
            snprintf(errbuf, errsize, "fork: %s", strerror(errno));
        free(args);
        free(envp);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        return -1;
    }
    if (pid == 0)                  /* only async-signal-safe calls in there */
        child(in[0], out[1], args, envp);
    setpgid(pid, pid);             /* also here: no race with an early kill */
    free(args);
    free(envp);
    close(in[0]);
    close(out[1]);
    if (inlen == 0) {
        close(in[1]);
        in[1] = -1;
    } else {
        fcntl(in[1], F_SETFL, O_NONBLOCK);
    }
    /* Until the child is reaped and its output closed (either may come
     * first: a child may close its output and go on), or the deadline. */
    while (!reaped || out[0] >= 0) {
        struct pollfd p[2];
        int64_t left = deadline - sg_time_mono_ms();
        nfds_t np = 0;
        int r, tick = (int)(left < TICK_MS ? left : TICK_MS);

        if (left <= 0) {
            kill(-pid, SIGKILL);   /* the group: what it started dies too */
            killed = !reaped;      /* a straggler holding the output: the status stands */
            break;
        }
        if (out[0] >= 0)
            p[np++] = (struct pollfd){ out[0], POLLIN, 0 };
        if (in[1] >= 0)
            p[np++] = (struct pollfd){ in[1], POLLOUT, 0 };
        r = poll(p, np, reaped ? (int)left : tick);
        if (r < 0 && errno != EINTR)
            break;
        for (nfds_t i = 0; r > 0 && i < np; i++) {
            if (p[i].fd == in[1] && (p[i].revents & (POLLOUT | POLLERR | POLLHUP))) {
                ssize_t w = write(in[1], input + inoff, inlen - inoff);
                if (w > 0)
                    inoff += (size_t)w;
                if ((w < 0 && errno != EAGAIN) || inoff == inlen) {
                    close(in[1]);
                    in[1] = -1;
                }
            } else if (p[i].fd == out[0] && (p[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                char buf[512];
                ssize_t rd = read(out[0], buf, sizeof(buf));
                if (rd <= 0) {
                    close(out[0]);
                    out[0] = -1;
                } else if (errbuf && outlen + 1 < errsize) {
                    size_t k = (size_t)rd < errsize - 1 - outlen ? (size_t)rd
                                                                : errsize - 1 - outlen;
                    memcpy(errbuf + outlen, buf, k);
                    outlen += k;
                    errbuf[outlen] = '\0';
                }
            }
        }
        if (!reaped)
            reaped = reap(pid, &status, 0);
        if (reaped && in[1] >= 0) {
            close(in[1]);
            in[1] = -1;
        }
    }
    if (in[1] >= 0)
        close(in[1]);
    if (out[0] >= 0)
        close(out[0]);
    if (!reaped && !reap(pid, &status, killed ? REAP_GRACE_MS : 0)) {
        kill(-pid, SIGKILL);
        if (errbuf)
            snprintf(errbuf, errsize, "the command could not be reaped after SIGKILL");
        return 128 + SIGKILL;
    }
    if (killed)
        return 128 + SIGKILL;
    if (status == -1) {
        if (errbuf)
            snprintf(errbuf, errsize, "the command's exit status is unknown (SIGCHLD ignored)");
        return -1;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}
