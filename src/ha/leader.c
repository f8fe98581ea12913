/* leader.c: the Lease-based leader elector of ha.h: one thread that reads, creates, takes and renews
 * a coordination.k8s.io/v1 Lease every retry period, and the leadership gate other threads read. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "ha/ha.h"
#include "k8s/k8s.h"

struct pw_ha {
    pw_k8s_client *client;
    char *ns, *name, *identity, *coll_path, *obj_path;
    int lease_ms, renew_deadline_ms, retry_ms;
    void (*on_change)(void *, bool);
    void *arg;
    pthread_t thread;
    bool started;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* stop was asked */
    bool stop;
    bool leading;
    int64_t renewed_ms;   /* mono time the last successful create/renewal was sent */
    char holder[256];     /* as last seen */
    char seen_rv[64];     /* the resourceVersion last seen ... */
    int64_t seen_ms;      /* ... and when it was first seen (mono) */
    char acquire[40], renew[40]; /* the spec's times as last seen */
    long long transitions;       /* the spec's leaseTransitions as last seen */
    int64_t since_ms;            /* wall clock of the last change of role */
    unsigned long long changes;
};

int pw_ha_new(const struct pw_ha_config *cfg, pw_ha **out)
{
    if (!cfg || !cfg->client || !cfg->namespace_ || !*cfg->namespace_ || !cfg->name || !*cfg->name ||
        !cfg->identity || !*cfg->identity || strlen(cfg->identity) >= 256)
        return PW_EINVAL;
    int lease = cfg->lease_ms ? cfg->lease_ms : PW_HA_DEFAULT_LEASE_MS;
    int renew = cfg->renew_deadline_ms ? cfg->renew_deadline_ms : PW_HA_DEFAULT_RENEW_DEADLINE_MS;
    int retry = cfg->retry_ms ? cfg->retry_ms : PW_HA_DEFAULT_RETRY_MS;
    if (retry <= 0 || renew <= retry || lease <= renew || lease < 1000)
        return PW_EINVAL;
    pw_ha *h = pw_xcalloc(1, sizeof *h);
    h->client = cfg->client;
    h->ns = pw_xstrdup(cfg->namespace_);
    h->name = pw_xstrdup(cfg->name);
    h->identity = pw_xstrdup(cfg->identity);
    h->coll_path = pw_xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases", h->ns);
    h->obj_path = pw_xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", h->ns, h->name);
    h->lease_ms = lease;
    h->renew_deadline_ms = renew;
    h->retry_ms = retry;
    h->on_change = cfg->on_change;
    h->arg = cfg->arg;
    h->since_ms = pw_clock_real_ms();
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    *out = h;
    return 0;
}

static const char *spec_str(const json_t *spec, const char *key)
{
    const char *v = json_string_value(json_object_get(spec, key));
    return v ? v : "";
}

/* A Lease spec naming holder (may be ""), renewed now. */
static json_t *lease_spec(const char *holder, int duration_s, const char *acquire, json_int_t transitions)
{
    char now[40];
    pw_time_rfc3339_micro(pw_clock_real_ms(), now);
    return json_pack("{s:s,s:i,s:s,s:s,s:I}", "holderIdentity", holder, "leaseDurationSeconds", duration_s,
                     "acquireTime", acquire ? acquire : now, "renewTime", now, "leaseTransitions", transitions);
}

/* Notes the record's resourceVersion and holder; the clock of expiry restarts when it changed. */
static void observe(pw_ha *h, const json_t *lease, int64_t now)
{
    const char *rv = json_string_value(json_object_get(json_object_get(lease, "metadata"), "resourceVersion"));
    const json_t *spec = json_object_get(lease, "spec");
    const char *holder = spec_str(spec, "holderIdentity");
    pthread_mutex_lock(&h->mu);
    snprintf(h->acquire, sizeof h->acquire, "%s", spec_str(spec, "acquireTime"));
    snprintf(h->renew, sizeof h->renew, "%s", spec_str(spec, "renewTime"));
    h->transitions = (long long)json_integer_value(json_object_get(spec, "leaseTransitions"));
    if (!rv || strcmp(rv, h->seen_rv) != 0) {
        snprintf(h->seen_rv, sizeof h->seen_rv, "%s", rv ? rv : "");
        h->seen_ms = now;
    }
    snprintf(h->holder, sizeof h->holder, "%s", holder);
    pthread_mutex_unlock(&h->mu);
}

enum try_result { TRY_LEAD, TRY_FOLLOW, TRY_LOST /* 409: someone else wrote the Lease */, TRY_ERROR };

/* One round: create, take or renew the Lease. sent gets the mono time the winning write was sent. */
static enum try_result try_acquire_or_renew(pw_ha *h, int64_t *sent)
{
    int status = 0;
    json_t *lease = NULL;
    if (pw_k8s_request(h->client, "GET", h->obj_path, NULL, NULL, &status, &lease) != 0)
        return TRY_ERROR;
    int64_t now = pw_clock_mono_ms();
    int duration_s = (h->lease_ms + 999) / 1000;
    if (status == 404) {
        json_decref(lease);
        json_t *obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
                                "metadata", "name", h->name, "namespace", h->ns, "spec",
                                lease_spec(h->identity, duration_s, NULL, 0));
        json_t *resp = NULL;
        *sent = pw_clock_mono_ms();
        int rc = pw_k8s_request(h->client, "POST", h->coll_path, obj, NULL, &status, &resp);
        json_decref(obj);
        if (rc == 0 && status == 201)
            observe(h, resp, *sent);
        json_decref(resp);
        return rc != 0 ? TRY_ERROR : status == 201 ? TRY_LEAD : status == 409 ? TRY_FOLLOW : TRY_ERROR;
    }
    if (status != 200 || !json_is_object(lease)) {
        json_decref(lease);
        return TRY_ERROR;
    }
    observe(h, lease, now);
    json_t *spec = json_object_get(lease, "spec");
    const char *holder = spec_str(spec, "holderIdentity");
    bool mine = strcmp(holder, h->identity) == 0;
    json_int_t their_s = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    pthread_mutex_lock(&h->mu);
    int64_t seen_ms = h->seen_ms;
    pthread_mutex_unlock(&h->mu);
    if (*holder && !mine && now - seen_ms < (their_s > 0 ? their_s : duration_s) * 1000) {
        json_decref(lease);
        return TRY_FOLLOW; /* held, and renewed within its duration as far as we have seen */
    }
    json_int_t transitions = json_integer_value(json_object_get(spec, "leaseTransitions"));
    json_t *nspec = lease_spec(h->identity, duration_s, mine ? spec_str(spec, "acquireTime") : NULL,
                               mine ? transitions : transitions + 1);
    json_object_set_new(lease, "spec", nspec); /* metadata (with its resourceVersion) stays as read */
    json_t *resp = NULL;
    *sent = pw_clock_mono_ms();
    int rc = pw_k8s_request(h->client, "PUT", h->obj_path, lease, NULL, &status, &resp);
    json_decref(lease);
    if (rc == 0 && status == 200)
        observe(h, resp, *sent);
    json_decref(resp);
    if (rc != 0)
        return TRY_ERROR;
    return status == 200 ? TRY_LEAD : status == 409 ? TRY_LOST : TRY_ERROR;
}

static void set_leading(pw_ha *h, bool leading, const char *why)
{
    pthread_mutex_lock(&h->mu);
    bool was = h->leading;
    h->leading = leading;
    if (was != leading) {
        h->since_ms = pw_clock_real_ms();
        h->changes++;
    }
    pthread_mutex_unlock(&h->mu);
    if (was == leading)
        return;
    if (leading)
        PW_INFO("leader election: %s now leads (Lease %s/%s)", h->identity, h->ns, h->name);
    else
        PW_WARN("leader election: %s stops leading: %s", h->identity, why);
    if (h->on_change)
        h->on_change(h->arg, leading);
}

static void *elector_main(void *arg)
{
    pw_ha *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        bool stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            break;
        int64_t sent = 0;
        enum try_result r = try_acquire_or_renew(h, &sent);
        pthread_mutex_lock(&h->mu);
        if (r == TRY_LEAD)
            h->renewed_ms = sent;
        bool expired = h->leading && pw_clock_mono_ms() - h->renewed_ms >= h->renew_deadline_ms;
        pthread_mutex_unlock(&h->mu);
        if (r == TRY_LEAD)
            set_leading(h, true, "");
        else if (r == TRY_LOST || r == TRY_FOLLOW)
            set_leading(h, false, r == TRY_LOST ? "the Lease was written by another replica (409 Conflict)"
                                                : "another replica holds the Lease");
        else if (expired)
            set_leading(h, false, "no renewal succeeded within the renew deadline");
        pthread_mutex_lock(&h->mu);
        struct timespec deadline;
        pw_clock_deadline_ts(h->retry_ms, &deadline);
        while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mu, &deadline) == 0) {
        }
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

int pw_ha_start(pw_ha *h)
{
    if (h->started)
        return 0;
    if (pthread_create(&h->thread, NULL, elector_main, h) != 0)
        return PW_EIO;
    h->started = true;
    return 0;
}

bool pw_ha_is_leader(pw_ha *h)
{
    pthread_mutex_lock(&h->mu);
    bool yes = h->leading && pw_clock_mono_ms() - h->renewed_ms < h->renew_deadline_ms;
    pthread_mutex_unlock(&h->mu);
    return yes;
}

void pw_ha_holder(pw_ha *h, char *buf, size_t n)
{
    pthread_mutex_lock(&h->mu);
    snprintf(buf, n, "%s", h->holder);
    pthread_mutex_unlock(&h->mu);
}

void pw_ha_status(pw_ha *h, struct pw_ha_status *out)
{
    memset(out, 0, sizeof *out);
    bool leading = pw_ha_is_leader(h);
    pthread_mutex_lock(&h->mu);
    snprintf(out->identity, sizeof out->identity, "%s", h->identity);
    snprintf(out->holder, sizeof out->holder, "%s", h->holder);
    snprintf(out->acquire_time, sizeof out->acquire_time, "%s", h->acquire);
    snprintf(out->renew_time, sizeof out->renew_time, "%s", h->renew);
    out->lease_transitions = h->transitions;
    out->since_ms = h->since_ms;
    out->changes = h->changes;
    pthread_mutex_unlock(&h->mu);
    out->leading = leading;
    snprintf(out->lease_namespace, sizeof out->lease_namespace, "%s", h->ns);
    snprintf(out->lease_name, sizeof out->lease_name, "%s", h->name);
    out->lease_ms = h->lease_ms;
    out->renew_deadline_ms = h->renew_deadline_ms;
    out->retry_ms = h->retry_ms;
}

/* Gives the Lease up if this replica still holds it (holder "", duration 1 s, like client-go). */
static void release(pw_ha *h)
{
    int status = 0;
    json_t *lease = NULL;
    if (pw_k8s_request(h->client, "GET", h->obj_path, NULL, NULL, &status, &lease) != 0 || status != 200) {
        json_decref(lease);
        return;
    }
    json_t *spec = json_object_get(lease, "spec");
    if (strcmp(spec_str(spec, "holderIdentity"), h->identity) == 0) {
        json_t *nspec = lease_spec("", 1, spec_str(spec, "acquireTime"),
                                   json_integer_value(json_object_get(spec, "leaseTransitions")));
        json_object_set_new(lease, "spec", nspec);
        json_t *resp = NULL;
        if (pw_k8s_request(h->client, "PUT", h->obj_path, lease, NULL, &status, &resp) == 0 && status == 200)
            PW_INFO("leader election: %s released the Lease %s/%s", h->identity, h->ns, h->name);
        json_decref(resp);
    }
    json_decref(lease);
}

void pw_ha_free(pw_ha *h)
{
    if (!h)
        return;
    if (h->started) {
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
        bool led = h->leading;
        set_leading(h, false, "stopping");
        if (led)
            release(h);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->ns);
    free(h->name);
    free(h->identity);
    free(h->coll_path);
    free(h->obj_path);
    free(h);
}
