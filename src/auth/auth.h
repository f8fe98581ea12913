/* auth.h: who is calling prewarmd. A bearer token is checked with the cluster's TokenReview
 * (authentication.k8s.io/v1) for an audience, and the answer cached per token (keyed by a SHA-256 of
 * audience and token, never the token itself) for at most the cache TTL, rejections for a shorter
 * one. One module for every caller: prewarm-agents (audience "prewarm", their projected
 * ServiceAccount tokens) and, with issue 10, users.
 *
 * Thread model: every call is safe from any thread; a review blocks on the API server (the cache
 * lock is not held meanwhile). Tokens never reach a log line. */
#ifndef PW_AUTH_H
#define PW_AUTH_H

#include <stddef.h>

#include <jansson.h>

typedef struct pw_k8s_client pw_k8s_client; /* k8s/k8s.h */
typedef struct pw_auth pw_auth;

/* What a review said of a caller. Owns everything (pw_identity_fini). */
struct pw_identity {
    char *user, *uid;
    char **groups;
    size_t n_groups;
    json_t *extra; /* {key: [strings]} */
};

#define PW_AUTH_DEFAULT_TTL_S 60
#define PW_AUTH_DEFAULT_NEGATIVE_TTL_S 10
#define PW_AUTH_DEFAULT_MAX_ENTRIES 10000

struct pw_auth_config {
    pw_k8s_client *client; /* borrowed; required */
    int cache_ttl_s;       /* authenticated answers (0: the default) */
    int negative_ttl_s;    /* rejections (0: the default) */
    size_t max_entries;    /* cache size (0: the default); the oldest entries go first */
};

int pw_auth_new(const struct pw_auth_config *cfg, pw_auth **out);
void pw_auth_free(pw_auth *a);

/* Reviews token for audience (NULL: the API server's own). 0 with *id filled (caller
 * pw_identity_fini); PW_EAUTH when the cluster rejects the token (why: the review's error);
 * PW_EUNAVAIL when no review could be made (why says so; nothing is cached). */
int pw_auth_review(pw_auth *a, const char *token, const char *audience, struct pw_identity *id, char *why,
                   size_t why_n);
/* Reviews made and answered from the cache (tests and metrics). */
void pw_auth_counts(pw_auth *a, size_t *reviews, size_t *hits);

/* Who may speak for a node (docs/agent.md): token must pass a review for the audience "prewarm",
 * belong to the ServiceAccount sa of namespace ns, and name the node, in the review's extra
 * (authentication.kubernetes.io/node-name) or through the pod the token is bound to (pod-name and
 * pod-uid -> that pod's spec.nodeName, read once per pod uid: pods never move). 0 with node set;
 * PW_EAUTH (a bad token), PW_EFORBIDDEN (another account, no node), PW_EUNAVAIL; why says which. */
int pw_auth_agent_node(pw_auth *a, const char *token, const char *ns, const char *sa, char *node, size_t n,
                       char *why, size_t why_n);

/* The first value of extra key, or NULL (borrowed from id). */
const char *pw_identity_extra(const struct pw_identity *id, const char *key);
void pw_identity_fini(struct pw_identity *id);

/* The token of an Authorization header value "Bearer <token>" (borrowed from header), or NULL. */
const char *pw_auth_bearer(const char *header);

#endif
