/* auth.c: TokenReview with a cache, and agents' nodes (auth.h); users.c holds the user modes. The
 * cache is a JSON object keyed by the hex SHA-256 of audience NUL token; each entry holds its expiry
 * (monotonic ms) and either the identity or the rejection. Insertion order is kept in a ring of keys,
 * so the oldest entry goes first when full.
 *
 * Refresh ahead. A caller served an acceptance in the last quarter of its TTL queues the token for
 * one background review (a thread started on first use), which replaces the entry with a fresh one:
 * callers that keep coming (5,000 agents' syncs) are answered from the cache without ever waiting
 * on the API server at the expiry, while a revoked token still stops working within the TTL (the
 * refresh caches the rejection; a failed refresh leaves the old entry to expire). The queue holds a
 * copy of the token only until its review, and wipes it then. */
#include "auth/auth.h"
#include "auth/auth_int.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/digest.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "k8s/k8s.h"

static void refresh_stop(pw_auth *a);

int pw_auth_new(const struct pw_auth_config *cfg, pw_auth **out, char *why, size_t why_n)
{
    if (!cfg) {
        snprintf(why, why_n, "no configuration");
        return PW_EINVAL;
    }
    pw_auth *a = pw_xcalloc(1, sizeof *a);
    a->client = cfg->client;
    a->ttl_ms = (int64_t)(cfg->cache_ttl_s > 0 ? cfg->cache_ttl_s : PW_AUTH_DEFAULT_TTL_S) * 1000;
    a->neg_ttl_ms = (int64_t)(cfg->negative_ttl_s > 0 ? cfg->negative_ttl_s : PW_AUTH_DEFAULT_NEGATIVE_TTL_S) * 1000;
    if (a->neg_ttl_ms > a->ttl_ms)
        a->neg_ttl_ms = a->ttl_ms; /* a rejection is never remembered longer than an acceptance */
    a->max = cfg->max_entries ? cfg->max_entries : PW_AUTH_DEFAULT_MAX_ENTRIES;
    a->ring = pw_xcalloc(a->max, sizeof *a->ring);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->rq_cv, NULL);
    a->rq_keys = json_object();
    a->cache = json_object();
    a->pod_node = json_object();
    int rc = pw_auth_users_init(a, cfg, why, why_n);
    if (rc == 0)
        rc = pw_auth_x509_init(a, cfg, why, why_n);
    if (rc != 0) {
        pw_auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void pw_auth_free(pw_auth *a)
{
    if (!a)
        return;
    refresh_stop(a);
    pw_auth_users_fini(a);
    pw_auth_x509_fini(a);
    json_decref(a->cache);
    json_decref(a->rq_keys);
    json_decref(a->pod_node);
    free(a->ring);
    pthread_cond_destroy(&a->rq_cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

void pw_auth_counts(pw_auth *a, size_t *reviews, size_t *hits)
{
    pthread_mutex_lock(&a->mu);
    *reviews = a->reviews;
    *hits = a->hits;
    pthread_mutex_unlock(&a->mu);
}

const char *pw_auth_bearer(const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    const char *t = header + 7;
    while (*t == ' ')
        t++;
    return *t ? t : NULL;
}

void pw_auth_sha256_hex(const char *a, size_t an, const char *b, size_t bn, char out[65])
{
    const void *parts[2] = {a, b};
    size_t lens[2] = {an, bn};
    pw_sha256_hex(parts, lens, 2, out);
}

/* The cache key of token for audience, as reviewed by the cluster scope names (NULL: a's own
 * client's; a newline cannot be in a cluster name, so no scope's key is another's). */
static void cache_key(const char *scope, const char *audience, const char *token, char out[65])
{
    const char *aud = audience ? audience : "";
    char *pre = scope ? pw_xasprintf("%s\n%s", scope, aud) : NULL;
    const char *p = pre ? pre : aud;
    pw_auth_sha256_hex(p, strlen(p) + 1, token, strlen(token), out);
    free(pre);
}

void pw_auth_identity_from(const json_t *user, struct pw_identity *id)
{
    memset(id, 0, sizeof *id);
    const char *u = json_string_value(json_object_get(user, "username"));
    const char *uid = json_string_value(json_object_get(user, "uid"));
    id->user = pw_xstrdup(u ? u : "");
    id->uid = pw_xstrdup(uid ? uid : "");
    const json_t *groups = json_object_get(user, "groups");
    id->groups = pw_xcalloc(json_array_size(groups) + 1, sizeof *id->groups);
    size_t i;
    const json_t *g;
    json_array_foreach(groups, i, g) {
        if (json_is_string(g))
            id->groups[id->n_groups++] = pw_xstrdup(json_string_value(g));
    }
    const json_t *extra = json_object_get(user, "extra");
    id->extra = json_is_object(extra) ? json_deep_copy(extra) : json_object();
}

void pw_auth_identity_authenticated(struct pw_identity *id)
{
    for (size_t i = 0; i < id->n_groups; i++)
        if (strcmp(id->groups[i], "system:authenticated") == 0)
            return;
    id->groups = pw_xrealloc(id->groups, (id->n_groups + 1) * sizeof *id->groups);
    id->groups[id->n_groups++] = pw_xstrdup("system:authenticated");
}

void pw_identity_fini(struct pw_identity *id)
{
    free(id->user);
    free(id->uid);
    for (size_t i = 0; i < id->n_groups; i++)
        free(id->groups[i]);
    free(id->groups);
    json_decref(id->extra);
    memset(id, 0, sizeof *id);
}

const char *pw_identity_extra(const struct pw_identity *id, const char *key)
{
    return json_string_value(json_array_get(json_object_get(id->extra, key), 0));
}

void pw_auth_cache_put(pw_auth *a, const char *key, json_t *entry)
{
    pthread_mutex_lock(&a->mu);
    if (!json_object_get(a->cache, key)) {
        if (a->ring_n == a->max) {
            json_object_del(a->cache, a->ring[a->ring_head]);
            a->ring_head = (a->ring_head + 1) % a->max;
            a->ring_n--;
        }
        memcpy(a->ring[(a->ring_head + a->ring_n) % a->max], key, 65);
        a->ring_n++;
    }
    json_object_set_new(a->cache, key, entry);
    pthread_mutex_unlock(&a->mu);
}

json_t *pw_auth_cache_get(pw_auth *a, const char *key, int64_t now, size_t *misses)
{
    pthread_mutex_lock(&a->mu);
    json_t *hit = json_object_get(a->cache, key);
    json_t *e = NULL;
    if (hit && json_integer_value(json_object_get(hit, "exp")) > now) {
        e = json_incref(hit);
        a->hits++;
    } else {
        (*misses)++;
    }
    pthread_mutex_unlock(&a->mu);
    return e;
}

/* Applies a cached or fresh entry to the caller's outputs. */
static int answer(const json_t *entry, struct pw_identity *id, char *why, size_t why_n)
{
    if (json_is_true(json_object_get(entry, "ok"))) {
        pw_auth_identity_from(json_object_get(entry, "user"), id);
        return 0;
    }
    const char *err = json_string_value(json_object_get(entry, "error"));
    snprintf(why, why_n, "%s", err && *err ? err : "the token was not accepted");
    return PW_EAUTH;
}

/* Makes a TokenReview of token for audience and caches its answer under key: 0 with *entry (a new
 * reference) the cached entry, or PW_EUNAVAIL (why) when no review could be made (nothing cached). */
static int review_fresh(pw_auth *a, pw_k8s_client *client, const char *token, const char *audience, const char *key,
                        json_t **entry, char *why, size_t why_n)
{
    int64_t now = pw_clock_mono_ms();
    json_t *spec = json_pack("{s:s}", "token", token);
    if (audience)
        json_object_set_new(spec, "audiences", json_pack("[s]", audience));
    json_t *body = json_pack("{s:s, s:s, s:o}", "apiVersion", "authentication.k8s.io/v1", "kind", "TokenReview",
                             "spec", spec);
    int status = 0;
    json_t *resp = NULL;
    int rc = pw_k8s_request(client, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body, NULL, &status,
                            &resp);
    json_decref(body);
    if (rc != 0 || status != 201 || !json_is_object(json_object_get(resp, "status"))) {
        const char *m = pw_k8s_status_message(resp);
        snprintf(why, why_n, "the TokenReview could not be made: %s", rc != 0 ? pw_strerror(rc) : m ? m : "bad answer");
        PW_WARN("%s (HTTP %d)", why, status);
        json_decref(resp);
        return PW_EUNAVAIL;
    }
    const json_t *st = json_object_get(resp, "status");
    bool ok = json_is_true(json_object_get(st, "authenticated"));
    if (ok && !json_is_object(json_object_get(st, "user")))
        ok = false; /* an answer without a user says nothing of who calls */
    if (ok && audience) {
        /* the review must say the token is for our audience */
        bool aud = false;
        size_t i;
        const json_t *v;
        json_array_foreach(json_object_get(st, "audiences"), i, v) {
            aud |= json_is_string(v) && strcmp(json_string_value(v), audience) == 0;
        }
        if (!aud)
            ok = false;
    }
    json_t *e = ok ? json_pack("{s:I, s:b, s:O}", "exp", (json_int_t)(now + a->ttl_ms), "ok", 1, "user",
                               json_object_get(st, "user"))
                   : json_pack("{s:I, s:b, s:s}", "exp", (json_int_t)(now + a->neg_ttl_ms), "ok", 0, "error",
                               json_string_value(json_object_get(st, "error"))
                                   ? json_string_value(json_object_get(st, "error"))
                                   : "the token is not valid for this audience");
    json_decref(resp);
    pw_auth_cache_put(a, key, json_incref(e));
    *entry = e;
    return 0;
}

/* ---- refresh ahead ---- */

#define AUTH_RQ_MAX 20000 /* queued refreshes; past it a token simply waits for its expiry */

struct auth_refresh {
    struct auth_refresh *next;
    char key[65];
    char *token, *audience;
};

static void refresh_item_free(struct auth_refresh *r)
{
    explicit_bzero(r->token, strlen(r->token));
    free(r->token);
    free(r->audience);
    free(r);
}

static void *refresh_main(void *arg)
{
    pw_auth *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->rq_head && !a->rq_stop)
            pthread_cond_wait(&a->rq_cv, &a->mu);
        if (a->rq_stop)
            break;
        struct auth_refresh *r = a->rq_head;
        a->rq_head = r->next;
        if (!a->rq_head)
            a->rq_tail = NULL;
        a->rq_n--;
        pthread_mutex_unlock(&a->mu);
        json_t *e = NULL;
        char why[256];
        int rc = review_fresh(a, a->client, r->token, r->audience, r->key, &e, why, sizeof why);
        json_decref(e);
        pthread_mutex_lock(&a->mu);
        if (rc == 0)
            a->refreshes++;
        /* done either way; after a failure the old entry stays to its expiry and a later caller may
         * queue it again */
        json_object_del(a->rq_keys, r->key);
        pthread_mutex_unlock(&a->mu);
        refresh_item_free(r);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Queues a refresh of the acceptance under key when it is in the last quarter of its TTL and not
 * queued already. */
static void refresh_maybe(pw_auth *a, const char *key, const char *token, const char *audience, int64_t now)
{
    pthread_mutex_lock(&a->mu);
    json_t *e = json_object_get(a->cache, key);
    int64_t exp = json_integer_value(json_object_get(e, "exp"));
    if (!e || !json_is_true(json_object_get(e, "ok")) || json_object_get(a->rq_keys, key) ||
        exp - now > a->ttl_ms / 4 || a->rq_n >= AUTH_RQ_MAX || a->rq_stop) {
        pthread_mutex_unlock(&a->mu);
        return;
    }
    if (!a->rq_thread_on) {
        if (pthread_create(&a->rq_thread, NULL, refresh_main, a) != 0) {
            pthread_mutex_unlock(&a->mu);
            return; /* no thread: callers review at the expiry as before */
        }
        a->rq_thread_on = true;
    }
    json_object_set_new(a->rq_keys, key, json_true());
    struct auth_refresh *r = pw_xcalloc(1, sizeof *r);
    memcpy(r->key, key, sizeof r->key);
    r->token = pw_xstrdup(token);
    r->audience = audience ? pw_xstrdup(audience) : NULL;
    if (a->rq_tail)
        a->rq_tail->next = r;
    else
        a->rq_head = r;
    a->rq_tail = r;
    a->rq_n++;
    pthread_cond_signal(&a->rq_cv);
    pthread_mutex_unlock(&a->mu);
}

static void refresh_stop(pw_auth *a)
{
    pthread_mutex_lock(&a->mu);
    a->rq_stop = true;
    bool on = a->rq_thread_on;
    pthread_cond_broadcast(&a->rq_cv);
    pthread_mutex_unlock(&a->mu);
    if (on)
        pthread_join(a->rq_thread, NULL);
    while (a->rq_head) {
        struct auth_refresh *r = a->rq_head;
        a->rq_head = r->next;
        refresh_item_free(r);
    }
    a->rq_tail = NULL;
    a->rq_n = 0;
}

size_t pw_auth_refreshes(pw_auth *a)
{
    pthread_mutex_lock(&a->mu);
    size_t n = a->refreshes;
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* pw_auth_review by client (NULL: a's own) with the cache entries of scope (NULL: a's own client's).
 * Refresh ahead serves a's own client only: another cluster's client may be gone (its cluster
 * removed) by the time a background review would run, so its callers review at the expiry. */
static int review_in(pw_auth *a, pw_k8s_client *client, const char *scope, const char *token, const char *audience,
                     struct pw_identity *id, char *why, size_t why_n)
{
    if (!token || !*token) {
        snprintf(why, why_n, "no bearer token");
        return PW_EAUTH;
    }
    if (!client)
        client = a->client;
    if (!client) {
        snprintf(why, why_n, "no Kubernetes client to review tokens with");
        return PW_EUNAVAIL;
    }
    char key[65];
    cache_key(scope, audience, token, key);
    int64_t now = pw_clock_mono_ms();
    json_t *e = pw_auth_cache_get(a, key, now, &a->reviews);
    if (e) {
        int rc = answer(e, id, why, why_n);
        json_decref(e);
        if (rc == 0 && !scope)
            refresh_maybe(a, key, token, audience, now);
        return rc;
    }
    int rc = review_fresh(a, client, token, audience, key, &e, why, why_n);
    if (rc != 0)
        return rc;
    rc = answer(e, id, why, why_n);
    json_decref(e);
    return rc;
}

int pw_auth_review(pw_auth *a, const char *token, const char *audience, struct pw_identity *id, char *why,
                   size_t why_n)
{
    return review_in(a, NULL, NULL, token, audience, id, why, why_n);
}

/* ---- agents ---- */

#define AGENT_AUDIENCE "prewarm"

/* The node of the pod ns/pod (uid) a token is bound to, read with client in the cluster scope
 * names (NULL: a's own). 0, PW_EFORBIDDEN or PW_EUNAVAIL (why). */
static int bound_pod_node(pw_auth *a, pw_k8s_client *client, const char *scope, const char *ns, const char *pod,
                          const char *uid, char *node, size_t n, char *why, size_t why_n)
{
    /* a uid is unique within its cluster only: each cluster's apart in the memory of pods */
    char *ukey = uid ? (scope ? pw_xasprintf("%s/%s", scope, uid) : pw_xstrdup(uid)) : NULL;
    if (ukey) {
        pthread_mutex_lock(&a->mu);
        const char *hit = json_string_value(json_object_get(a->pod_node, ukey));
        if (hit)
            snprintf(node, n, "%s", hit);
        pthread_mutex_unlock(&a->mu);
        if (hit) {
            free(ukey);
            return 0;
        }
    }
    char *path = pw_xasprintf("/api/v1/namespaces/%s/pods/%s", ns, pod);
    int status = 0;
    json_t *obj = NULL;
    int rc = pw_k8s_request(client, "GET", path, NULL, NULL, &status, &obj);
    free(path);
    if (rc != 0 || (status != 200 && status != 404)) {
        json_decref(obj);
        free(ukey);
        snprintf(why, why_n, "cannot read the agent's pod %s/%s", ns, pod);
        return PW_EUNAVAIL;
    }
    const char *puid = json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
    const char *nn = json_string_value(json_object_get(json_object_get(obj, "spec"), "nodeName"));
    if (status == 404 || (uid && (!puid || strcmp(uid, puid) != 0)) || !nn || !*nn) {
        snprintf(why, why_n, "the token's pod %s/%s %s", ns, pod,
                 status == 404 ? "does not exist" : !nn || !*nn ? "is not on a node" : "was replaced");
        json_decref(obj);
        free(ukey);
        return PW_EFORBIDDEN;
    }
    snprintf(node, n, "%s", nn);
    if (ukey) {
        pthread_mutex_lock(&a->mu);
        if (json_object_size(a->pod_node) >= a->max)
            json_object_clear(a->pod_node);
        json_object_set_new(a->pod_node, ukey, json_string(nn));
        pthread_mutex_unlock(&a->mu);
    }
    json_decref(obj);
    free(ukey);
    return 0;
}

int pw_auth_agent_node_in(pw_auth *a, pw_k8s_client *client, const char *cluster, const char *token, const char *ns,
                          const char *sa, char *node, size_t n, char *why, size_t why_n)
{
    if (!client)
        cluster = NULL; /* a's own client: its own cache entries */
    struct pw_identity id;
    int rc = review_in(a, client, cluster, token, AGENT_AUDIENCE, &id, why, why_n);
    if (rc != 0)
        return rc;
    char *want = pw_xasprintf("system:serviceaccount:%s:%s", ns, sa);
    if (strcmp(id.user, want) != 0) {
        snprintf(why, why_n, "%s may not sync as an agent: only %s may", id.user, want);
        free(want);
        pw_identity_fini(&id);
        return PW_EFORBIDDEN;
    }
    free(want);
    const char *nn = pw_identity_extra(&id, "authentication.kubernetes.io/node-name");
    const char *pod = pw_identity_extra(&id, "authentication.kubernetes.io/pod-name");
    const char *uid = pw_identity_extra(&id, "authentication.kubernetes.io/pod-uid");
    if (nn && *nn) {
        snprintf(node, n, "%s", nn);
    } else if (pod && *pod) {
        rc = bound_pod_node(a, client ? client : a->client, cluster, ns, pod, uid, node, n, why, why_n);
    } else {
        snprintf(why, why_n, "the agent's token is bound to no pod or node: it cannot speak for a node");
        rc = PW_EFORBIDDEN;
    }
    pw_identity_fini(&id);
    return rc;
}

int pw_auth_agent_node(pw_auth *a, const char *token, const char *ns, const char *sa, char *node, size_t n,
                       char *why, size_t why_n)
{
    return pw_auth_agent_node_in(a, NULL, NULL, token, ns, sa, node, n, why, why_n);
}
