/* ratelimit.c: the client-side token bucket (qps sustained, burst at once) shared by every thread of a
 * client. Reservation style: a caller always takes its token at once, the balance may go negative, and
 * the caller sleeps for the time the bucket needs to pay it back. Waiters are thus served in arrival
 * order with no wake-up storms, and the arithmetic takes the clock as an argument so tests can drive it. */
#include "k8s/k8s_int.h"

#include <math.h>

void pw_k8s_rl_init(struct pw_k8s_ratelimit *rl, double qps, int burst, int64_t now_ms)
{
    pthread_mutex_init(&rl->mu, NULL);
    rl->qps = qps > 0 ? qps : 50;
    rl->burst = burst > 0 ? burst : 100;
    rl->tokens = rl->burst; /* a client starts with a full bucket */
    rl->last_ms = now_ms;
}

void pw_k8s_rl_fini(struct pw_k8s_ratelimit *rl)
{
    pthread_mutex_destroy(&rl->mu);
}

int64_t pw_k8s_rl_reserve(struct pw_k8s_ratelimit *rl, int64_t now_ms)
{
    pthread_mutex_lock(&rl->mu);
    if (now_ms > rl->last_ms) {
        rl->tokens += (double)(now_ms - rl->last_ms) * rl->qps / 1000.0;
        if (rl->tokens > rl->burst)
            rl->tokens = rl->burst;
        rl->last_ms = now_ms;
    }
    rl->tokens -= 1.0;
    double deficit = -rl->tokens;
    pthread_mutex_unlock(&rl->mu);
    if (deficit <= 0)
        return 0;
    return (int64_t)ceil(deficit * 1000.0 / rl->qps);
}
