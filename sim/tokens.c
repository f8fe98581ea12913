/* tokens.c: kubesim's ServiceAccount tokens (see tokens.h): a chained hash table from token text to
 * claims, threaded on a list in issue order (the oldest is the first forgotten), and the review of a
 * token's claims against the store.
 *
 * Why a lower bound on the expiries (min_exp) rather than a heap: room is only made when the memory
 * is full, and a sweep over every token then is cheap next to the request that caused it; the bound
 * only has to tell, without a scan, that no token has expired yet. */
#include "sim/tokens.h"
#include "sim/objutil.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"

#define TOKEN_PREFIX "kubesim-sa-"
#define TOKEN_RANDOM_BYTES 24 /* 48 hex digits: 192 bits */

struct tok {
    struct tok *hnext;          /* the next in its bucket */
    struct tok *older, *newer;  /* issue order */
    struct sim_token_claims *c; /* owned: one allocation (claims_pack) */
    char text[SIM_TOKEN_SIZE];
};

struct sim_tokens {
    pthread_mutex_t mu; /* guards everything below */
    struct tok **buckets;
    size_t nbuckets; /* a power of two */
    struct tok *oldest, *newest;
    size_t n, max;
    int64_t min_exp; /* at most the smallest exp remembered (INT64_MAX when there is none) */
};

/* ---- claims as one allocation ---- */

static size_t size_of(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *put(char **p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*p, s, n);
    const char *at = *p;
    *p += n;
    return at;
}

/* A copy of c in one block: the struct, the audience pointers, then every string. */
static struct sim_token_claims *claims_pack(const struct sim_token_claims *c)
{
    size_t n = sizeof(*c) + c->naud * sizeof(char *);
    n += size_of(c->ns) + size_of(c->sa) + size_of(c->sa_uid) + size_of(c->jti) + size_of(c->bound_name) +
         size_of(c->bound_uid) + size_of(c->node_name) + size_of(c->node_uid);
    for (size_t i = 0; i < c->naud; i++)
        n += size_of(c->audiences[i]);
    struct sim_token_claims *o = pw_xmalloc(n);
    *o = *c;
    const char **auds = (const char **)(o + 1);
    char *p = (char *)(auds + c->naud);
    o->ns = put(&p, c->ns);
    o->sa = put(&p, c->sa);
    o->sa_uid = put(&p, c->sa_uid);
    o->jti = put(&p, c->jti);
    o->bound_name = put(&p, c->bound_name);
    o->bound_uid = put(&p, c->bound_uid);
    o->node_name = put(&p, c->node_name);
    o->node_uid = put(&p, c->node_uid);
    for (size_t i = 0; i < c->naud; i++)
        auds[i] = put(&p, c->audiences[i]);
    o->audiences = auds;
    assert(p == (char *)o + n);
    return o;
}

void sim_token_claims_free(struct sim_token_claims *c)
{
    free(c);
}

/* ---- the table ---- */

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static bool dead(const struct sim_token_claims *c, int64_t now)
{
    return now - SIM_TOKEN_LEEWAY_S > c->exp;
}

sim_tokens *sim_tokens_new(size_t max)
{
    sim_tokens *t = pw_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    t->max = max ? max : SIM_TOKENS_MAX;
    t->nbuckets = 16;
    while (t->nbuckets < t->max)
        t->nbuckets *= 2;
    t->buckets = pw_xcalloc(t->nbuckets, sizeof(*t->buckets));
    t->min_exp = INT64_MAX;
    return t;
}

void sim_tokens_free(sim_tokens *t)
{
    if (!t)
        return;
    for (struct tok *k = t->oldest, *next; k; k = next) {
        next = k->newer;
        sim_token_claims_free(k->c);
        free(k);
    }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Forgets k. The lock is held. */
static void drop(sim_tokens *t, struct tok *k)
{
    struct tok **pp = &t->buckets[hash(k->text) & (t->nbuckets - 1)];
    while (*pp != k)
        pp = &(*pp)->hnext;
    *pp = k->hnext;
    if (k->older)
        k->older->newer = k->newer;
    else
        t->oldest = k->newer;
    if (k->newer)
        k->newer->older = k->older;
    else
        t->newest = k->older;
    t->n--;
    sim_token_claims_free(k->c);
    free(k);
}

/* Makes room for one token: the dead ones go first, then the oldest. The lock is held. */
static void make_room(sim_tokens *t, int64_t now)
{
    if (t->min_exp != INT64_MAX && now - SIM_TOKEN_LEEWAY_S > t->min_exp) {
        int64_t min = INT64_MAX;
        for (struct tok *k = t->oldest, *next; k; k = next) {
            next = k->newer;
            if (dead(k->c, now))
                drop(t, k);
            else if (k->c->exp < min)
                min = k->c->exp;
        }
        t->min_exp = min;
    }
    while (t->n >= t->max)
        drop(t, t->oldest);
}

static int random_bytes(unsigned char *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return PW_EIO;
        got += (size_t)r;
    }
    return 0;
}

int sim_tokens_issue(sim_tokens *t, const struct sim_token_claims *c, int64_t now, char out[SIM_TOKEN_SIZE])
{
    unsigned char rnd[TOKEN_RANDOM_BYTES];
    if (random_bytes(rnd, sizeof(rnd)) != 0)
        return PW_EIO;
    struct tok *k = pw_xcalloc(1, sizeof(*k));
    static const char HEX[] = "0123456789abcdef";
    size_t at = sizeof(TOKEN_PREFIX) - 1;
    memcpy(k->text, TOKEN_PREFIX, at);
    for (size_t i = 0; i < sizeof(rnd); i++) {
        k->text[at++] = HEX[rnd[i] >> 4];
        k->text[at++] = HEX[rnd[i] & 15];
    }
    k->text[at] = '\0';
    static_assert(sizeof(TOKEN_PREFIX) - 1 + 2 * TOKEN_RANDOM_BYTES + 1 == SIM_TOKEN_SIZE, "token size");
    k->c = claims_pack(c);
    size_t b = hash(k->text) & (t->nbuckets - 1);
    pthread_mutex_lock(&t->mu);
    if (t->n >= t->max)
        make_room(t, now);
    k->hnext = t->buckets[b];
    t->buckets[b] = k;
    k->older = t->newest;
    if (t->newest)
        t->newest->newer = k;
    else
        t->oldest = k;
    t->newest = k;
    t->n++;
    if (c->exp < t->min_exp)
        t->min_exp = c->exp;
    memcpy(out, k->text, SIM_TOKEN_SIZE); /* under the lock: once it is released, k may be forgotten */
    pthread_mutex_unlock(&t->mu);
    return 0;
}

int sim_tokens_find(sim_tokens *t, const char *token, struct sim_token_claims **out)
{
    size_t b = hash(token) & (t->nbuckets - 1);
    int rc = PW_ENOTFOUND;
    pthread_mutex_lock(&t->mu);
    for (struct tok *k = t->buckets[b]; k; k = k->hnext) {
        if (strcmp(k->text, token) == 0) {
            *out = claims_pack(k->c);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void sim_tokens_age(sim_tokens *t, int64_t seconds)
{
    pthread_mutex_lock(&t->mu);
    for (struct tok *k = t->oldest; k; k = k->newer) {
        k->c->iat -= seconds;
        k->c->exp -= seconds;
    }
    if (t->min_exp != INT64_MAX)
        t->min_exp -= seconds;
    pthread_mutex_unlock(&t->mu);
}

size_t sim_tokens_count(sim_tokens *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

size_t sim_tokens_max(const sim_tokens *t)
{
    return t->max; /* set once by sim_tokens_new */
}

/* ---- review ---- */

/* A []string as Go's %q prints it: ["a" "b"]. */
static void go_quote_list(pw_buf *b, const char *const *v, size_t n)
{
    pw_buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            pw_buf_puts(b, " ");
        sim_go_quote(b, v[i]);
    }
    pw_buf_puts(b, "]");
}

/* {authenticated: false, error: msg}; takes msg. */
static json_t *denied(char *msg)
{
    json_t *st = json_pack("{s:b, s:s}", "authenticated", 0, "error", msg);
    free(msg);
    return st;
}

static bool has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* The audience error, worded as jwt.go words it. */
static json_t *audience_denied(const struct sim_token_claims *c, const char *const *want, size_t nwant)
{
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_buf_puts(&b, "token audiences ");
    go_quote_list(&b, c->audiences, c->naud);
    pw_buf_puts(&b, " is invalid for the target audiences ");
    go_quote_list(&b, want, nwant);
    return denied(pw_buf_steal(&b));
}

/* True when obj carries a deletionTimestamp before the given time. */
static bool deleted_before(const json_t *obj, int64_t before)
{
    const char *ts = json_string_value(json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp"));
    time_t t;
    return ts && pw_time_parse_rfc3339(ts, &t) == 0 && (int64_t)t < before;
}

static const char *uid_of(const json_t *obj)
{
    const char *u = json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
    return u ? u : "";
}

/* Checks that the bound object still exists with its uid, as claims.go does; NULL when it does, else
 * the denial. kind names the object in the uid message ("pod", "secret", "node"). */
static json_t *check_bound(sim_store *st, const char *resource, const char *ns, const char *kind, const char *name,
                           const char *uid, int64_t now)
{
    json_t *obj;
    if (sim_store_get(st, resource, ns, name, &obj) != 0)
        return denied(pw_xstrdup("service account token has been invalidated"));
    json_t *out = NULL;
    if (strcmp(uid_of(obj), uid) != 0)
        out = denied(
            pw_xasprintf("%s UID (%s) does not match service account %s ref claim (%s)", kind, uid_of(obj), kind, uid));
    else if (deleted_before(obj, now - SIM_TOKEN_LEEWAY_S))
        out = denied(pw_xstrdup("service account token has been invalidated"));
    json_decref(obj);
    return out;
}

/* The ServiceAccount and the bound object: NULL when they still hold, else the denial. */
static json_t *check_objects(sim_store *st, const struct sim_token_claims *c, int64_t now)
{
    json_t *sa;
    if (sim_store_get(st, "serviceaccounts", c->ns, c->sa, &sa) != 0)
        return denied(pw_xasprintf("serviceaccounts \"%s\" not found", c->sa));
    json_t *out = NULL;
    if (strcmp(uid_of(sa), c->sa_uid) != 0)
        out = denied(pw_xasprintf("service account UID (%s) does not match claim (%s)", uid_of(sa), c->sa_uid));
    else if (deleted_before(sa, now - SIM_TOKEN_LEEWAY_S))
        out = denied(pw_xasprintf("service account %s/%s has been deleted", c->ns, c->sa));
    json_decref(sa);
    if (out)
        return out;
    switch (c->bound) {
    case SIM_TOKEN_SECRET:
        return check_bound(st, "secrets", c->ns, "secret", c->bound_name, c->bound_uid, now);
    case SIM_TOKEN_POD:
        return check_bound(st, "pods", c->ns, "pod", c->bound_name, c->bound_uid, now);
    case SIM_TOKEN_NODE:
        return check_bound(st, "nodes", "", "node", c->bound_name, c->bound_uid, now);
    case SIM_TOKEN_UNBOUND:
        break;
    }
    return NULL;
}

static void extra_set(json_t *extra, const char *key, const char *value)
{
    json_object_set_new(extra, key, json_pack("[s]", value));
}

/* The user a valid token is: ServiceAccountInfo.UserInfo(). */
static json_t *user_of(const struct sim_token_claims *c)
{
    json_t *extra = json_object();
    char *cred = pw_xasprintf("JTI=%s", c->jti);
    extra_set(extra, "authentication.kubernetes.io/credential-id", cred);
    free(cred);
    const char *node = NULL, *node_uid = NULL;
    if (c->bound == SIM_TOKEN_POD) {
        extra_set(extra, "authentication.kubernetes.io/pod-name", c->bound_name);
        extra_set(extra, "authentication.kubernetes.io/pod-uid", c->bound_uid);
        node = c->node_name;
        node_uid = c->node_uid;
    } else if (c->bound == SIM_TOKEN_NODE) {
        node = c->bound_name;
        node_uid = c->bound_uid;
    }
    if (node && *node) {
        extra_set(extra, "authentication.kubernetes.io/node-name", node);
        if (node_uid && *node_uid) /* a pod's node that did not exist at issue time has no uid */
            extra_set(extra, "authentication.kubernetes.io/node-uid", node_uid);
    }
    char *username = pw_xasprintf("system:serviceaccount:%s:%s", c->ns, c->sa);
    char *group = pw_xasprintf("system:serviceaccounts:%s", c->ns);
    json_t *user = json_pack("{s:s, s:s, s:[s, s, s], s:o}", "username", username, "uid", c->sa_uid, "groups",
                             "system:serviceaccounts", group, "system:authenticated", "extra", extra);
    free(username);
    free(group);
    return user;
}

json_t *sim_tokens_review(sim_store *st, const struct sim_token_claims *c, const json_t *audiences, int64_t now)
{
    size_t nwant = 0, i;
    const json_t *v;
    const char **want = pw_xcalloc(json_array_size(audiences) + 1, sizeof(*want));
    json_array_foreach(audiences, i, v)
    {
        if (json_is_string(v))
            want[nwant++] = json_string_value(v);
    }
    if (nwant == 0)
        want[nwant++] = SIM_TOKEN_API_AUDIENCE;
    /* Audiences.Intersect: the asked audiences the token is for, in the order asked */
    json_t *auds = json_array();
    for (i = 0; i < nwant; i++)
        if (has(c->audiences, c->naud, want[i]))
            json_array_append_new(auds, json_string(want[i]));
    json_t *out = NULL;
    if (json_array_size(auds) == 0)
        out = audience_denied(c, want, nwant);
    else if (dead(c, now))
        out = denied(pw_xstrdup("service account token has expired"));
    else
        out = check_objects(st, c, now);
    free(want);
    if (out) {
        json_decref(auds);
        return out;
    }
    return json_pack("{s:b, s:o, s:o}", "authenticated", 1, "user", user_of(c), "audiences", auds);
}
