/* userlimit.c: per-user token buckets (userlimit.h); the buckets live in a jansson object keyed by
 * user name, each an array [tokens, last_ms]. */
#include "auth/userlimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include <jansson.h>

#include "base/mem.h"

struct pw_userlimit {
    pthread_mutex_t mu;
    double rate, burst;
    json_t *buckets;
};

pw_userlimit *pw_userlimit_new(double rate, int burst)
{
    pw_userlimit *l = pw_xcalloc(1, sizeof *l);
    l->rate = rate;
    l->burst = burst >= 1 ? burst : fmax(1.0, 2.0 * rate);
    l->buckets = json_object();
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void pw_userlimit_free(pw_userlimit *l)
{
    if (!l)
        return;
    json_decref(l->buckets);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

int pw_userlimit_take(pw_userlimit *l, const char *user, int64_t now_ms)
{
    pthread_mutex_lock(&l->mu);
    json_t *b = json_object_get(l->buckets, user);
    if (!b) {
        if (json_object_size(l->buckets) >= PW_USERLIMIT_MAX_USERS)
            json_object_clear(l->buckets);
        b = json_pack("[f, I]", l->burst, (json_int_t)now_ms);
        json_object_set_new(l->buckets, user, b);
    }
    double tokens = json_real_value(json_array_get(b, 0));
    int64_t last = (int64_t)json_integer_value(json_array_get(b, 1));
    if (now_ms > last)
        tokens = fmin(l->burst, tokens + (double)(now_ms - last) * l->rate / 1000.0);
    int wait = 0; /* a refused request takes nothing: waiting wait seconds then finds a token */
    if (tokens >= 1.0)
        tokens -= 1.0;
    else
        wait = (int)ceil((1.0 - tokens) / l->rate);
    json_array_set_new(b, 0, json_real(tokens));
    json_array_set_new(b, 1, json_integer((json_int_t)(now_ms > last ? now_ms : last)));
    pthread_mutex_unlock(&l->mu);
    return wait;
}
