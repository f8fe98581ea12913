/* clock.h: monotonic and wall-clock time, and RFC 3339 formatting as Kubernetes and our API use it.
 * Thread model: safe from any thread. */
#ifndef PW_CLOCK_H
#define PW_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds since an arbitrary start; for deadlines and durations. */
int64_t pw_clock_mono_ms(void);
/* Wall-clock milliseconds since the Unix epoch. */
int64_t pw_clock_real_ms(void);
/* Writes into *out the CLOCK_REALTIME instant ms milliseconds from now, for pthread_cond_timedwait
 * and friends (ms <= 0: now). */
void pw_clock_deadline_ts(int64_t ms, struct timespec *out);
/* Sleeps ms milliseconds (restarting on EINTR). */
void pw_clock_sleep_ms(int64_t ms);

#define PW_RFC3339_LEN 32
/* Writes "2026-11-27T10:00:00Z" (UTC, seconds) into out (at least PW_RFC3339_LEN bytes). */
void pw_time_rfc3339(time_t t, char *out);
/* Writes "2026-11-27T10:00:00.123456Z" (a Kubernetes MicroTime) for ms since the epoch. */
void pw_time_rfc3339_micro(int64_t real_ms, char *out);
/* Parses RFC 3339 (UTC "Z" or a numeric offset, optional fraction) into seconds since the epoch.
 * PW_EINVAL on bad input; *out is written only on success. */
int pw_time_parse_rfc3339(const char *s, time_t *out);

#endif
