/*
 * fuzz_stubs.c - linked into every fuzz target with -Wl,--wrap=syslog:
 * sendguard's log lines are still formatted (sg_log), but not sent to the
 * machine's syslog millions of times.
 */
#include <syslog.h>

void __wrap_syslog(int prio, const char *fmt, ...);

void __wrap_syslog(int prio, const char *fmt, ...)
{
    (void)prio;
    (void)fmt;
}
