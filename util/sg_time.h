/*
 * sg_time - the clocks and the UTC formatter, once for the whole tree.
 *
 * Wall-clock time (CLOCK_REALTIME) is for timestamps that are stored or
 * shown; monotonic time (CLOCK_MONOTONIC) is for durations, timeouts and
 * deadlines measured inside one process, which must not jump when the
 * system clock is set. Code that needs a clock a test can replace takes
 * one as a parameter (sg_clock_fn in policy/sg_store.h) instead.
 */
#ifndef SG_TIME_H
#define SG_TIME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SG_TIME_MINUTE "%Y-%m-%d %H:%M UTC"   /* the block workflow's notes and replies */

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t sg_time_real_ms(void);

/* Milliseconds of CLOCK_MONOTONIC: only differences mean anything. */
int64_t sg_time_mono_ms(void);

/* The same with the sub-millisecond fraction, for durations that are
 * logged or measured ("store_ms=0.42"). */
double sg_time_mono_msf(void);

/* The absolute CLOCK_REALTIME time ms from now, for
 * pthread_cond_timedwait (whose default clock is CLOCK_REALTIME). */
struct timespec sg_time_deadline(int64_t ms);

/* ms since the epoch as UTC text, in the strftime format fmt (such as
 * SG_TIME_MINUTE or "%Y-%m-%d %H:%M:%S"). Returns buf. */
char *sg_time_utc(char *buf, size_t size, int64_t ms, const char *fmt)
    __attribute__((format(strftime, 4, 0)));

#endif
