/* auth_int.h: what auth.c (token reviews, agents) and users.c (user authenticators and authorizers)
 * share: the object, its cache and the identity decoder. Private to src/auth.
 *
 * Thread model: mu guards cache, ring, pod_node and the counters; users.c's token file has its own
 * lock. */
#ifndef PW_AUTH_INT_H
#define PW_AUTH_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth/auth.h"

enum auth_authz { AUTHZ_ALLOW_ALL, AUTHZ_STATIC, AUTHZ_KUBERNETES };

#define AUTH_MAX_MODES 8

struct pw_auth {
    pw_k8s_client *client;
    int64_t ttl_ms, neg_ttl_ms;
    size_t max;
    pthread_mutex_t mu;
    json_t *cache;    /* key -> {"exp": ms, "ok": bool, "user": {...} | "error": "..."} */
    json_t *pod_node; /* pod uid -> node name: the nodes of agents' bound pods */
    char (*ring)[65]; /* keys in insertion order, max of them */
    size_t ring_head, ring_n;
    size_t reviews, hits, access_reviews;
    /* refresh ahead (auth.c): accepted tokens in the last quarter of their TTL are reviewed again by
     * a background thread (started on first use), so a busy caller never waits at the expiry */
    struct auth_refresh *rq_head, *rq_tail; /* queued (token, audience) to review, at most AUTH_RQ_MAX */
    json_t *rq_keys; /* cache keys queued or under review (entries themselves are never changed) */
    size_t rq_n, refreshes;
    bool rq_thread_on, rq_stop;
    pthread_t rq_thread;
    pthread_cond_t rq_cv;
    /* users (users.c) */
    int modes[AUTH_MAX_MODES]; /* enum auth_mode of users.c, in order */
    size_t n_modes;
    enum auth_authz authz;
    char *namespace_;
    struct auth_tokenfile *tokenfile; /* NULL without token-file: */
    struct auth_clientca *clientca;   /* NULL without a client CA file (x509.c) */
};

/* users.c: parses cfg's authn and authz into a; 0 or PW_EINVAL (why). */
int pw_auth_users_init(pw_auth *a, const struct pw_auth_config *cfg, char *why, size_t why_n);
void pw_auth_users_fini(pw_auth *a);

/* x509.c: loads cfg's client CA file into a; 0 or PW_EINVAL (why). */
int pw_auth_x509_init(pw_auth *a, const struct pw_auth_config *cfg, char *why, size_t why_n);
void pw_auth_x509_fini(pw_auth *a);

/* The hex SHA-256 of a (an bytes) then b (bn bytes). */
void pw_auth_sha256_hex(const char *a, size_t an, const char *b, size_t bn, char out[65]);
/* A live cache entry of key (a new reference) or NULL, counting a hit or one miss into *misses. */
json_t *pw_auth_cache_get(pw_auth *a, const char *key, int64_t now, size_t *misses);
/* Stores entry (takes ownership) under key, dropping the oldest entry when full. */
void pw_auth_cache_put(pw_auth *a, const char *key, json_t *entry);
/* Fills id from a TokenReview-shaped user object {username, uid, groups, extra}. */
void pw_auth_identity_from(const json_t *user, struct pw_identity *id);
/* Appends the group system:authenticated to id unless it has it, as kube-apiserver's authenticated
 * group adder does for every user its authenticators accept (token file, client certificate). */
void pw_auth_identity_authenticated(struct pw_identity *id);

#endif
