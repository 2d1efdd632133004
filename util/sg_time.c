/*
 * sg_time.c - the clocks (wall and monotonic, in milliseconds), a
 * condition-variable deadline and the UTC formatter.
 *
 * Must not: cache a time, sleep, or use local time (every time sendguard
 * shows or stores is UTC, except the stderr log stamp of sg_log).
 */
#include "sg_time.h"

int64_t sg_time_real_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sg_time_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double sg_time_mono_msf(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct timespec sg_time_deadline(int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

char *sg_time_utc(char *buf, size_t size, int64_t ms, const char *fmt)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (size == 0)
        return buf;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"   /* checked at each caller */
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, fmt, &tm) == 0)
        buf[0] = '\0';
#pragma GCC diagnostic pop
    return buf;
}
