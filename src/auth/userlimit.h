/* userlimit.h: a request rate per user (--rate-limit): one token bucket per user name, refilled at
 * rate tokens a second up to burst. At most PW_USERLIMIT_MAX_USERS buckets are kept; past that the
 * table starts again empty (everyone gets a full bucket: a flood of distinct user names cannot grow
 * memory without bound, and honest users lose nothing).
 *
 * Thread model: any thread (one lock). */
#ifndef PW_AUTH_USERLIMIT_H
#define PW_AUTH_USERLIMIT_H

#include <stdint.h>

typedef struct pw_userlimit pw_userlimit;

#define PW_USERLIMIT_MAX_USERS 10000

/* A limiter of rate requests a second per user (> 0) with bursts of burst (< 1: max(1, 2 x rate)). */
pw_userlimit *pw_userlimit_new(double rate, int burst);
void pw_userlimit_free(pw_userlimit *l);
/* Takes one request of user at now_ms (monotonic): 0 when it may go, else the whole seconds (>= 1)
 * until it would (for Retry-After). */
int pw_userlimit_take(pw_userlimit *l, const char *user, int64_t now_ms);

#endif
