/* ha.h: leader election among prewarmd replicas with a coordination.k8s.io/v1 Lease, the way
 * client-go's leaderelection does it (KUBE-API-FACTS §8).
 *
 * The protocol. Every retry period an elector GETs the Lease. Absent (404): it POSTs one naming
 * itself (a 409 AlreadyExists means another replica was first). Held by another replica whose record
 * this elector has seen change within the lease duration: it waits. Free (no holder) or not changed
 * for a whole lease duration (the holder stopped renewing): it PUTs the Lease naming itself, with the
 * resourceVersion it read, so of several replicas trying at once exactly one succeeds and the others
 * get 409 Conflict. The leader renews the same way (PUT with the resourceVersion it read); a 409 on a
 * renewal means someone else wrote the Lease: it stops leading at once.
 *
 * Why two leaders never act at once. Expiry is judged on the observer's own monotonic clock from the
 * moment it saw the record change, never from renewTime (clocks of machines differ). The leader's
 * last successful renewal was sent at T; any other replica saw that record at >= T and takes over at
 * >= T + lease duration. The leader stops at T + renew deadline (< lease duration): pw_ha_is_leader
 * turns false at that instant by itself, even while a renewal request is still hanging, so the gate
 * closes before another replica can hold the Lease. Callers check pw_ha_is_leader before each
 * Kubernetes write and stop work when on_change says false.
 *
 * Stop releases the Lease when held (holder "" and leaseDurationSeconds 1, as client-go's
 * ReleaseOnCancel), so a successor takes over at its next retry instead of after the lease duration.
 *
 * Thread model: one elector thread per pw_ha; pw_ha_is_leader and pw_ha_holder from any thread;
 * on_change runs on the elector thread, with no lock held, and must not call pw_ha_free. */
#ifndef PW_HA_H
#define PW_HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pw_ha pw_ha;
typedef struct pw_k8s_client pw_k8s_client; /* k8s/k8s.h */

#define PW_HA_DEFAULT_LEASE_MS 15000
#define PW_HA_DEFAULT_RENEW_DEADLINE_MS 10000
#define PW_HA_DEFAULT_RETRY_MS 2000

struct pw_ha_config {
    pw_k8s_client *client;  /* borrowed; must outlive the elector. Give it few retries and a timeout
                             * below the renew deadline: a renewal that hangs longer is lost anyway */
    const char *namespace_; /* of the Lease (copied) */
    const char *name;       /* of the Lease (copied), e.g. "prewarmd" */
    const char *identity;   /* this replica's holderIdentity (copied), e.g. the pod name */
    int lease_ms;           /* 0: PW_HA_DEFAULT_LEASE_MS; whole seconds in the Lease */
    int renew_deadline_ms;  /* 0: PW_HA_DEFAULT_RENEW_DEADLINE_MS; must be < lease_ms */
    int retry_ms;           /* 0: PW_HA_DEFAULT_RETRY_MS; must be < renew_deadline_ms */
    void (*on_change)(void *arg, bool leading); /* may be NULL */
    void *arg;
};

/* *out: free with pw_ha_free. PW_EINVAL when a field is missing or the durations are not
 * retry < renew deadline < lease. Nothing runs until pw_ha_start. */
int pw_ha_new(const struct pw_ha_config *cfg, pw_ha **out);
/* Starts the elector thread; 0 or PW_EIO when the thread cannot start. */
int pw_ha_start(pw_ha *h);
/* True while this replica leads and its last renewal is younger than the renew deadline. */
bool pw_ha_is_leader(pw_ha *h);
/* The holder this elector last saw in the Lease into buf ("" when none or not yet read). */
void pw_ha_holder(pw_ha *h, char *buf, size_t n);
/* What GET /api/v1/leader and the metrics show: this replica and the Lease as last read. */
struct pw_ha_status {
    char identity[256];      /* this replica */
    char holder[256];        /* the Lease's holderIdentity as last seen ("" none or not read yet) */
    bool leading;            /* pw_ha_is_leader now */
    int64_t since_ms;        /* wall clock of this replica's last change of role (start: when created) */
    char acquire_time[40];   /* the Lease's acquireTime as last seen (RFC 3339, "" none) */
    char renew_time[40];     /* ... renewTime */
    long long lease_transitions; /* ... leaseTransitions */
    unsigned long long changes;  /* times this replica gained or lost leadership */
    char lease_namespace[128], lease_name[128];
    int lease_ms, renew_deadline_ms, retry_ms;
};
void pw_ha_status(pw_ha *h, struct pw_ha_status *out);
/* Stops the elector (on_change(false) if it led), releases the Lease if held, and frees. NULL: no-op.
 * Blocks for at most one API call. */
void pw_ha_free(pw_ha *h);

#endif
