/* auth.h: who is calling prewarmd, and what they may do (docs/security.md). One module for every
 * caller: prewarm-agents (audience "prewarm", their projected ServiceAccount tokens) and users.
 *
 * Authentication: a bearer token is checked by the authenticators configured, in order:
 *   kubernetes       a TokenReview (authentication.k8s.io/v1) against the cluster;
 *   token-file:PATH  kube-apiserver's --token-auth-file CSV (token,user,uid,"group1,group2"),
 *                    re-read when the file changes;
 *   none             everyone is system:anonymous: alone, whatever the request carries; after others,
 *                    only requests with no token.
 * Authorization, one authorizer: kubernetes (a SubjectAccessReview on the virtual resource of group
 * prewarm.io in prewarmd's namespace), static (the groups prewarm:viewers, prewarm:editors,
 * prewarm:admins) or allow-all.
 * Reviews and access reviews are cached per SHA-256 of what was asked (never the token itself) for
 * at most the cache TTL, rejections for a shorter one; so a revoked token or a removed RoleBinding
 * stops working within the TTL.
 *
 * Thread model: every call is safe from any thread; a review blocks on the API server (no lock is
 * held meanwhile). Tokens never reach a log line, an error message or the cache's keys. */
#ifndef PW_AUTH_H
#define PW_AUTH_H

#include <stdbool.h>
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
    pw_k8s_client *client; /* borrowed; needed by agents and the kubernetes modes (else may be NULL) */
    int cache_ttl_s;       /* authenticated answers (0: the default) */
    int negative_ttl_s;    /* rejections (0: the default) */
    size_t max_entries;    /* cache size (0: the default); the oldest entries go first */
    const char *authn;     /* "kubernetes", "token-file:PATH", "none", comma-separated in order; NULL:
                            * no user is authenticated (agents only) */
    const char *authz;     /* "kubernetes" | "static" | "allow-all"; NULL: allow-all when authn is only
                            * none, static when it has a token file and no kubernetes, else kubernetes */
    const char *namespace_; /* the namespace of access reviews (prewarmd's) */
    const char *client_ca_file; /* PEM CA bundle (kube-apiserver's --client-ca-file): client certificates
                                 * it signed authenticate, ahead of the token modes; re-read when it
                                 * changes. NULL: no client certificates */
};

/* 0 with *out (pw_auth_free); PW_EINVAL with why (a mode unknown, a token file that does not load,
 * a kubernetes mode without a client). */
int pw_auth_new(const struct pw_auth_config *cfg, pw_auth **out, char *why, size_t why_n);
void pw_auth_free(pw_auth *a);

/* Reviews token for audience (NULL: the API server's own). 0 with *id filled (caller
 * pw_identity_fini); PW_EAUTH when the cluster rejects the token (why: the review's error);
 * PW_EUNAVAIL when no review could be made (why says so; nothing is cached). */
int pw_auth_review(pw_auth *a, const char *token, const char *audience, struct pw_identity *id, char *why,
                   size_t why_n);
/* Reviews made and answered from the cache (tests and metrics). */
void pw_auth_counts(pw_auth *a, size_t *reviews, size_t *hits);
/* Background refreshes of accepted tokens made so far (auth.c's refresh ahead: an acceptance used in
 * the last quarter of its TTL is reviewed again without the caller waiting). */
size_t pw_auth_refreshes(pw_auth *a);

/* Who may speak for a node (docs/agent.md): token must pass a review for the audience "prewarm",
 * belong to the ServiceAccount sa of namespace ns, and name the node, in the review's extra
 * (authentication.kubernetes.io/node-name) or through the pod the token is bound to (pod-name and
 * pod-uid -> that pod's spec.nodeName, read once per pod uid: pods never move). 0 with node set;
 * PW_EAUTH (a bad token), PW_EFORBIDDEN (another account, no node), PW_EUNAVAIL; why says which. */
int pw_auth_agent_node(pw_auth *a, const char *token, const char *ns, const char *sa, char *node, size_t n,
                       char *why, size_t why_n);
/* pw_auth_agent_node for an agent of another cluster (docs/multicluster.md): the review and the
 * read of the bound pod are made with that cluster's client (borrowed for the call; NULL: a's own,
 * and cluster is then ignored), and what they answered is cached apart under the cluster's name, so
 * a token is only ever accepted by the cluster that issued it. Another cluster's acceptances are not
 * refreshed ahead (auth.c): its agents' syncs review again at the expiry. */
int pw_auth_agent_node_in(pw_auth *a, pw_k8s_client *client, const char *cluster, const char *token, const char *ns,
                          const char *sa, char *node, size_t n, char *why, size_t why_n);

/* ---- users ---- */

/* Whether the authenticators include none (prewarmd then refuses non-loopback listeners), and the
 * authorizer's name ("kubernetes", "static", "allow-all"; borrowed). */
bool pw_auth_allows_anonymous(const pw_auth *a);
const char *pw_auth_authorizer(const pw_auth *a);

/* Who sends a request with this Authorization header value (NULL: none). 0 with *id (caller
 * pw_identity_fini); PW_EAUTH (no or a bad credential), PW_EUNAVAIL (the cluster cannot be asked);
 * why says which without the token. */
int pw_auth_user(pw_auth *a, const char *authorization, struct pw_identity *id, char *why, size_t why_n);

/* ---- client certificates (kube-apiserver's x509 authenticator) ---- */

/* Who presents the certificate chain der[0..n) (DER, the leaf first, then any intermediates, as the
 * TLS handshake carried it), verified against the client CA file (looked at, at most once a second,
 * and re-read when its inode, size or mtime change; a file that no longer loads leaves the previous
 * CAs in force) for client authentication (an extendedKeyUsage, when present, must allow clientAuth)
 * at the current time. 0 with *id (pw_auth_x509_subject's; caller pw_identity_fini); PW_ENOTFOUND when n
 * is 0 or no client CA is configured; PW_EAUTH when the chain does not verify (why: "the client
 * certificate "CN" is not accepted: certificate has expired", unknown authority, ...). */
int pw_auth_user_x509(pw_auth *a, const unsigned char *const *der, const size_t *len, size_t n,
                      struct pw_identity *id, char *why, size_t why_n);

/* The user a certificate (DER) names, as kube-apiserver's CommonNameUserConversion does it: the
 * subject's common name (the last one when there are several) is the user, its organization values,
 * in order, the groups, then system:authenticated (which the API server adds to every authenticated
 * user); no uid, no extra. Pure. 0 with *id (caller pw_identity_fini); PW_EINVAL (why) when der is
 * not an X.509 certificate or its subject has no common name (kube-apiserver does not authenticate
 * such a certificate either). */
int pw_auth_x509_subject(const unsigned char *der, size_t len, struct pw_identity *id, char *why, size_t why_n);
/* Client CA file reloads that succeeded since start (tests). */
unsigned pw_auth_client_ca_reloads(pw_auth *a);

/* What a request asks: verb ("get", "list", "create", "delete") on resource ("tasks", "policies",
 * "agents"), optionally one object (name), or, when resource is NULL, verb on a non-resource path
 * ("/metrics"). */
struct pw_auth_attrs {
    const char *verb;
    const char *resource;
    const char *name;
    const char *path;
};

/* May id do attrs? 0 yes; PW_EFORBIDDEN (why: who, what, and the authorizer's reason);
 * PW_EUNAVAIL (the SubjectAccessReview could not be made; nothing cached). */
int pw_auth_authorize(pw_auth *a, const struct pw_identity *id, const struct pw_auth_attrs *attrs, char *why,
                      size_t why_n);

/* The identity of system:anonymous (caller pw_identity_fini). */
void pw_identity_anonymous(struct pw_identity *id);

/* ---- the token file (kube-apiserver --token-auth-file) ---- */

/* Parses the CSV text (len bytes): one "token,user,uid[,\"group1,group2\"]" per line, blank lines and
 * lines starting with '#' skipped. 0 with *out a new object {sha256-hex of token: {"username",
 * "uid", "groups"}} (caller decrefs); PW_EINVAL with why naming the line (never its token). */
int pw_auth_tokenfile_parse(const char *text, size_t len, json_t **out, char *why, size_t why_n);

/* The first value of extra key, or NULL (borrowed from id). */
const char *pw_identity_extra(const struct pw_identity *id, const char *key);
void pw_identity_fini(struct pw_identity *id);

/* The token of an Authorization header value "Bearer <token>" (borrowed from header), or NULL. */
const char *pw_auth_bearer(const char *header);

#endif
