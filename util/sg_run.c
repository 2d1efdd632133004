/*
 * sg_run.c - fork/exec of a configured argv with a pipe on each side and
 * a deadline.
 *
 * Must not: go through a shell, pass message data in argv, or block past
 * its deadline (the child is killed, then reaped).
 */
#include "sg_run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

extern char **environ;

/* environ plus the extra "KEY=value" strings (which win: later entries are
 * found last by getenv, so extras replacing a key drop the inherited one). */
static char **build_env(const char *const *env, size_t nenv)
{
    size_t ne = 0, o = 0;
    char **envp;

    while (environ && environ[ne])
        ne++;
    envp = calloc(ne + nenv + 1, sizeof(*envp));
    if (envp == NULL)
        return NULL;
    for (size_t i = 0; i < ne; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) + 1 : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < nenv && !replaced; j++)
            replaced = strncmp(env[j], environ[i], klen) == 0;
        if (!replaced)
            envp[o++] = environ[i];
    }
    for (size_t j = 0; j < nenv; j++)
        envp[o++] = (char *)env[j];
    return envp;
}

int sg_run(const char *const *argv, size_t n, const char *const *env, size_t nenv,
           const char *input, int timeout_s, char *errbuf, size_t errsize)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, status = 0;
    size_t inlen = input ? strlen(input) : 0, inoff = 0, outlen = 0;
    long deadline = mono_ms() + (long)timeout_s * 1000L;
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
    if (pid == 0) {                   /* only async-signal-safe calls from here */
        static const char msg[] = "cannot execute the command\n";
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        execvpe(args[0], args, envp);
        if (write(2, msg, sizeof(msg) - 1) < 0)
            _exit(127);
        _exit(127);
    }
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
    for (;;) {
        struct pollfd p[2] = { { out[0], POLLIN, 0 }, { in[1], POLLOUT, 0 } };
        long left = deadline - mono_ms();
        int np = in[1] >= 0 ? 2 : 1, r;

        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        r = poll(p, (nfds_t)np, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (np == 2 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(in[1], input + inoff, inlen - inoff);
            if (w > 0)
                inoff += (size_t)w;
            if (w < 0 || inoff == inlen) {
                close(in[1]);
                in[1] = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[512];
            ssize_t rd = read(out[0], buf, sizeof(buf));
            if (rd <= 0)
                break;
            if (errbuf && outlen + 1 < errsize) {
                size_t k = (size_t)rd < errsize - 1 - outlen ? (size_t)rd : errsize - 1 - outlen;
                memcpy(errbuf + outlen, buf, k);
                outlen += k;
                errbuf[outlen] = '\0';
            }
        }
    }
    if (in[1] >= 0)
        close(in[1]);
    close(out[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}
