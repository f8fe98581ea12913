/* tokens.h: kubesim's ServiceAccount tokens: the memory of the tokens its TokenRequest subresource
 * issued, and the review of one of them as kube-apiserver's ServiceAccount token authenticator does it
 * (pkg/serviceaccount/jwt.go and claims.go): the audiences first, then the expiry with a minute of
 * leeway, then the ServiceAccount and the bound object (Pod, Secret or Node) that must still exist with
 * the uid they had when the token was issued.
 *
 * Tokens are opaque random strings ("kubesim-sa-" + 48 hex digits from getrandom()), not JWTs: nobody
 * can read claims out of them, so every claim lives here, keyed by the token. The memory is bounded:
 * when it is full, a new token first makes room by forgetting the tokens that can no longer
 * authenticate (expired past the leeway), then, if none, the oldest issued. A forgotten token reviews as
 * unknown ("invalid bearer token"), as a token signed with a rotated-out key would.
 *
 * Ownership: claims passed in are borrowed and copied; claims handed out are one allocation the caller
 * frees with sim_token_claims_free().
 *
 * Thread model: every sim_tokens_* function is safe from any thread (one mutex, a leaf lock: nothing
 * else is called while it is held). sim_tokens_review() reads the store (its own lock) and nothing of
 * the token memory. */
#ifndef SIM_TOKENS_H
#define SIM_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sim/store.h"

/* The API server's own audience: what a TokenRequest without audiences gets, and what a token must be
 * for to authenticate a request to the API server (and a TokenReview without spec.audiences). */
#define SIM_TOKEN_API_AUDIENCE "https://kubernetes.default.svc.cluster.local"
/* How many tokens the API server remembers. */
#define SIM_TOKENS_MAX 100000
/* The bytes of a token's text with its NUL: "kubesim-sa-" + 48 hex digits + NUL. */
#define SIM_TOKEN_SIZE 60
/* jwt.DefaultLeeway: a token authenticates until this long after its expiry. */
#define SIM_TOKEN_LEEWAY_S 60

enum sim_token_bound { SIM_TOKEN_UNBOUND = 0, SIM_TOKEN_POD, SIM_TOKEN_SECRET, SIM_TOKEN_NODE };

/* What a token says, as a bound token's JWT claims would. */
struct sim_token_claims {
    const char *ns, *sa, *sa_uid; /* the ServiceAccount */
    const char *const *audiences; /* naud strings, at least one */
    size_t naud;
    int64_t iat, exp; /* issued at, expires at: Unix seconds */
    const char *jti;  /* the token's id (a UUID) */
    enum sim_token_bound bound;
    const char *bound_name, *bound_uid; /* the bound Pod, Secret or Node; NULL when unbound */
    const char *node_name, *node_uid;   /* a bound pod's node at issue time, NULL when it had none;
                                           node_uid "" when that node did not exist */
};

typedef struct sim_tokens sim_tokens;

/* A new, empty memory of at most max tokens (0: SIM_TOKENS_MAX). Never fails (aborts on OOM). */
sim_tokens *sim_tokens_new(size_t max);
/* Forgets every token and frees the memory. NULL: no-op. */
void sim_tokens_free(sim_tokens *t);

/* Makes a new token with claims c (copied) and remembers it; now (Unix seconds) decides which tokens
 * have expired when room must be made. out gets the token's text. 0, or PW_EIO when no random bytes
 * could be read (nothing changed). */
int sim_tokens_issue(sim_tokens *t, const struct sim_token_claims *c, int64_t now, char out[SIM_TOKEN_SIZE]);

/* The claims of token: *out gets a copy (caller frees with sim_token_claims_free). PW_ENOTFOUND when
 * the token was never issued or has been forgotten (*out untouched). */
int sim_tokens_find(sim_tokens *t, const char *token, struct sim_token_claims **out);

/* Frees claims from sim_tokens_find. NULL: no-op. */
void sim_token_claims_free(struct sim_token_claims *c);

/* A test hook: moves every remembered token's issue and expiry times seconds into the past (seconds
 * >= 0), as if that much time had passed. */
void sim_tokens_age(sim_tokens *t, int64_t seconds);

/* How many tokens are remembered, and the bound. */
size_t sim_tokens_count(sim_tokens *t);
size_t sim_tokens_max(const sim_tokens *t);

/* Reviews claims c at time now (Unix seconds) for the audiences asked (a JSON array of strings; NULL or
 * empty: the API server's audience), reading the ServiceAccount and the bound objects from st. Returns a
 * new TokenReview status (caller decrefs): {authenticated: true, user: {username, uid, groups, extra},
 * audiences: [the asked audiences the token is for]} or {authenticated: false, error: "..."} with the
 * real authenticator's message. */
json_t *sim_tokens_review(sim_store *st, const struct sim_token_claims *c, const json_t *audiences, int64_t now);

#endif
