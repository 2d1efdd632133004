/*
 * sg_log.c - syslog and stderr output, and escaping of outside data.
 *
 * Must not: allocate in the logging path beyond the stack, or print a byte
 * of outside data unescaped. Threads may log concurrently (syslog(3) and
 * one fprintf per line are atomic enough for line output).
 */
#include "sg_log.h"
#include "sg_time.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static atomic_bool log_stderr;
static atomic_int log_facility = LOG_MAIL;
static char log_ident[64] = "sendguard";

void sg_log_open(const char *ident, int facility, bool to_stderr)
{
    snprintf(log_ident, sizeof(log_ident), "%s", ident);
    atomic_store(&log_facility, facility);
    atomic_store(&log_stderr, to_stderr);
    openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
}

void sg_log_set_facility(int facility)
{
    if (facility >= 0 && facility != atomic_load(&log_facility)) {
        atomic_store(&log_facility, facility);
        closelog();
        openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
    }
}

static const char *prio_name(int prio)
{
    static const char *names[] = { "emerg", "alert", "crit", "error",
                                   "warning", "notice", "info", "debug" };
    return names[LOG_PRI(prio)];
}

void sg_log(int prio, const char *fmt, ...)
{
    char line[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    syslog(prio, "%s", line);
    if (atomic_load(&log_stderr)) {
        int64_t ms = sg_time_real_ms();
        time_t sec = (time_t)(ms / 1000);
        struct tm tm;
        char stamp[32];

        localtime_r(&sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ld %s[%s]: %s\n", stamp, (long)(ms % 1000),
                log_ident, prio_name(prio), line);
    }
}

/* The escaper of both: `plain` says which bytes pass as they are. */
static char *escape(char *dst, size_t dstsize, const char *src, size_t srclen,
                    int (*plain)(unsigned char c))
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (dstsize == 0)
        return dst;
    for (size_t i = 0; i < srclen; i++) {
        unsigned char c = (unsigned char)src[i];
        int keep = plain(c);
        size_t need = keep ? 1 : 4;

        if (o + need + 4 > dstsize) {       /* room for "..." and NUL */
            if (o + 4 <= dstsize) {
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (keep) {
            dst[o++] = c == '\t' ? ' ' : (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o < dstsize ? o : dstsize - 1] = '\0';
    return dst;
}

static int log_plain(unsigned char c)
{
    return c >= 0x21 && c < 0x7f && c != '\\' && c != '"' && c != '<' && c != '>' && c != '=';
}

static int text_plain(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

char *sg_log_escape(char *dst, size_t dstsize, const char *src, size_t srclen)
{
    return escape(dst, dstsize, src, srclen, log_plain);
}

char *sg_log_escape_text(char *dst, size_t dstsize, const char *src, size_t srclen)
{
    return escape(dst, dstsize, src, srclen, text_plain);
}

char *sg_log_esc(char *dst, size_t dstsize, const char *src)
{
    if (src == NULL)
        return sg_log_escape(dst, dstsize, "-", 1);
    return sg_log_escape(dst, dstsize, src, strlen(src));
}

bool sg_log_ratelimit(long *last, long interval_s)
{
    long now = (long)(sg_time_mono_ms() / 1000);
    long prev = __atomic_load_n(last, __ATOMIC_RELAXED);

    if (prev != 0 && now - prev < interval_s)
        return false;
    return __atomic_compare_exchange_n(last, &prev, now, false,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

int sg_log_facility(const char *name)
{
    static const struct { const char *n; int f; } tab[] = {
        { "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
        { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
        { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
        { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
        { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strcasecmp(name, tab[i].n) == 0)
            return tab[i].f;
    return -1;
}
